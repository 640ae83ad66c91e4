//! The UserInfo endpoint (OpenID Connect Core 5.3): claims about the signed-in user, released
//! by the scopes of a bearer access token (RFC 6750).

use crate::introspection::active_claims;
use crate::{Error, ServedTenant, Services};
use gatehouse_core::id_token::user_claims;
use gatehouse_core::scope::issued_scopes;
use gatehouse_core::subject::is_user_subject;
use gatehouse_core::{ErrorCode, OAuthError};
use serde_json::{Map, Value, json};

/// The claims `token` may read, or an RFC 6750 error (`invalid_token`, `insufficient_scope`).
///
/// # Errors
/// As above, or the store failing.
pub async fn userinfo(
    services: &Services,
    tenant: &ServedTenant,
    token: &str,
) -> Result<Map<String, Value>, Error> {
    let Some(claims) = active_claims(services, tenant, token).await? else {
        return Err(OAuthError::new(
            ErrorCode::InvalidToken,
            "the access token is invalid, expired or revoked",
        )
        .into());
    };
    if !is_user_subject(&claims.sub) {
        // A client's own token (client credentials, a client asserting itself) is about no
        // person, so there is nothing to release (DESIGN.md, "The tenant trust boundary").
        return Err(OAuthError::new(
            ErrorCode::InvalidToken,
            "the access token was not issued for a user",
        )
        .into());
    }
    let scopes = issued_scopes(claims.scope.as_deref());
    if !scopes.contains(&"openid") {
        return Err(OAuthError::new(
            ErrorCode::InsufficientScope,
            "the access token was not issued for the openid scope",
        )
        .into());
    }
    let Some(user) = tenant.config.user(&claims.sub) else {
        return Err(
            OAuthError::new(ErrorCode::InvalidToken, "the token's user no longer exists").into(),
        );
    };
    let mut body = user_claims(user, &scopes);
    body.insert("sub".into(), json!(user.username));
    Ok(body)
}
