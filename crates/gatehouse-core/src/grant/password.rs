//! The resource owner password credentials grant (RFC 6749 section 4.3), against the tenant's
//! static users. The password check itself (argon2) and the brute-force counters live with the
//! caller; this decides what a verified user gets.

use super::{GrantContext, resolve_audience};
use crate::config::UserConfig;
use crate::error::OAuthError;
use crate::scope::{granted_scopes, scope_string};
use crate::token::AccessTokenClaims;

/// Checks that the client may use the grant at all (before any password is looked at): public
/// clients may not, whatever they are registered for.
pub fn check_password_grant(ctx: &GrantContext<'_>) -> Result<(), OAuthError> {
    if ctx.client.public {
        return Err(OAuthError::unauthorized_client(
            "public clients cannot use the password grant",
        ));
    }
    Ok(())
}

/// Claims of the access token for a user whose password was verified.
pub fn password_claims(
    ctx: &GrantContext<'_>,
    user: &UserConfig,
    scope: Option<&str>,
    resources: &[String],
    jti: String,
) -> Result<AccessTokenClaims, OAuthError> {
    let scopes = granted_scopes(scope, ctx.client, ctx.tenant)?;
    let aud = resolve_audience(ctx.client, resources)?;
    Ok(ctx.access_token_claims(user.username.clone(), aud, scope_string(&scopes), jti))
}
