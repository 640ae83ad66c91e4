//! The JWT bearer grant (RFC 7523 section 2.1): the client presents an assertion it signed
//! with a key registered in its `jwks`, naming the subject the token is for.

use super::{GrantContext, resolve_audience};
use crate::assertion::AssertionClaims;
use crate::error::OAuthError;
use crate::scope::{granted_scopes, scope_string};
use crate::token::AccessTokenClaims;

/// Claims of the access token for a verified assertion. The assertion's issuer must be the
/// client itself: a client can only vouch for subjects with its own keys.
pub fn jwt_bearer_claims(
    ctx: &GrantContext<'_>,
    assertion: &AssertionClaims,
    scope: Option<&str>,
    resources: &[String],
    jti: String,
) -> Result<AccessTokenClaims, OAuthError> {
    if assertion.iss != ctx.client.client_id {
        return Err(OAuthError::invalid_grant(
            "the assertion's issuer is not the authenticated client",
        ));
    }
    if assertion.sub.is_empty() {
        return Err(OAuthError::invalid_grant("the assertion has no subject"));
    }
    let scopes = granted_scopes(scope, ctx.client, ctx.tenant)?;
    let aud = resolve_audience(ctx.client, resources)?;
    Ok(ctx.access_token_claims(assertion.sub.clone(), aud, scope_string(&scopes), jti))
}
