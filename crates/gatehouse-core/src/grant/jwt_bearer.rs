//! The JWT bearer grant (RFC 7523 section 2.1): the client presents an assertion it signed
//! with a key registered in its `jwks`, naming the subject the token is for.

use super::{GrantContext, check_grant_allowed, resolve_audience};
use crate::assertion::AssertionClaims;
use crate::error::OAuthError;
use crate::model::GrantType;
use crate::scope::granted_scopes;
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
    check_grant_allowed(ctx.tenant, ctx.client, GrantType::JwtBearer)?;
    if assertion.iss != ctx.client.client_id {
        return Err(OAuthError::invalid_grant(
            "the assertion's issuer is not the authenticated client",
        ));
    }
    if assertion.sub.is_empty() {
        return Err(OAuthError::invalid_grant("the assertion has no subject"));
    }
    let scopes = granted_scopes(scope, ctx.client, ctx.tenant)?;
    Ok(AccessTokenClaims {
        iss: ctx.issuer.to_string(),
        sub: assertion.sub.clone(),
        aud: resolve_audience(ctx.client, resources)?,
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
