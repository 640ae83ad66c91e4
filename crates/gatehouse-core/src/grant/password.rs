//! The resource owner password credentials grant (RFC 6749 section 4.3), against the tenant's
//! static users. The password check itself (argon2) and the brute-force counters live with the
//! caller; this decides what a verified user gets.

use super::{GrantContext, check_grant_allowed, resolve_audience};
use crate::config::UserConfig;
use crate::error::OAuthError;
use crate::model::GrantType;
use crate::scope::granted_scopes;
use crate::token::AccessTokenClaims;

/// Checks that the client may use the grant at all (before any password is looked at).
pub fn check_password_grant(ctx: &GrantContext<'_>) -> Result<(), OAuthError> {
    check_grant_allowed(ctx.tenant, ctx.client, GrantType::Password)?;
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
    Ok(AccessTokenClaims {
        iss: ctx.issuer.to_string(),
        sub: user.username.clone(),
        aud,
        exp: ctx.now + ctx.tenant.access_token_ttl_secs,
        iat: ctx.now,
        nbf: ctx.now,
        jti,
        client_id: ctx.client.client_id.clone(),
        scope: if scopes.is_empty() {
            None
        } else {
            Some(scopes.join(" "))
        },
    })
}
