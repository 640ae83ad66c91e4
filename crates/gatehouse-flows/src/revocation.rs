//! Token revocation (RFC 7009) of access and refresh tokens. Revoking an unknown or already
//! invalid token succeeds, as the RFC asks; revoking another client's token is refused.

use crate::introspection::active_claims;
use crate::{Error, ServedTenant, Services, family, refresh_tokens};
use gatehouse_core::token::{looks_like_jwt, opaque_token_id};
use gatehouse_core::{ClientConfig, OAuthError};

/// Revokes `token` if it is live and `client`'s.
///
/// # Errors
/// `unauthorized_client` for another client's token, or the store failing.
pub async fn revoke(
    services: &Services,
    tenant: &ServedTenant,
    client: &ClientConfig,
    token: &str,
) -> Result<(), Error> {
    let store = services.store();
    let name = tenant.name();
    let not_yours = || {
        Error::from(OAuthError::unauthorized_client(
            "the token was not issued to this client",
        ))
    };
    if let Some(claims) = active_claims(services, tenant, token).await? {
        if claims.client_id != client.client_id {
            return Err(not_yours());
        }
        if looks_like_jwt(token) {
            store.revoke_jti(name, &claims.jti, claims.exp).await?;
        } else {
            store
                .delete_opaque_token(name, &opaque_token_id(token))
                .await?;
        }
        tracing::info!(tenant = %name, client = %client.client_id, jti = %claims.jti, "access token revoked");
    } else if let Some(record) = refresh_tokens::record_of(services, tenant, token).await? {
        // RFC 7009 section 2.1: revoking a refresh token revokes what its grant issued.
        if record.client_id != client.client_id {
            return Err(not_yours());
        }
        family::revoke(store, name, &record.family, record.expires_at).await?;
        tracing::info!(tenant = %name, client = %client.client_id, family = %record.family, "refresh token revoked");
    }
    Ok(())
}
