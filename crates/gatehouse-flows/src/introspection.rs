//! Which access tokens are live (introspection, RFC 7662; also what revocation and userinfo
//! ask): a JWT of this tenant that verifies and is not revoked, or an opaque token the store
//! still holds.

use crate::{Error, ServedTenant, Services};
use gatehouse_core::token::{
    AccessTokenClaims, Audience, looks_like_jwt, opaque_token_id, token_digest, verify_access_token,
};
use serde::Serialize;
use std::sync::Arc;

/// The live claims of `token` at this tenant, or `None` if it is not an active access token
/// here (unknown, expired, revoked, another tenant's, or not an access token at all).
///
/// # Errors
/// The store failing.
pub async fn active_claims(
    services: &Services,
    tenant: &ServedTenant,
    token: &str,
) -> Result<Option<AccessTokenClaims>, Error> {
    let now = services.now();
    let store = services.store();
    if looks_like_jwt(token) {
        let digest = token_digest(token);
        let claims = if let Some(claims) = tenant.verified_tokens.get(&digest, now) {
            claims
        } else {
            match verify_access_token(token, &tenant.issuer, &tenant.verification_keys, now) {
                Ok(claims) => {
                    let claims = Arc::new(claims);
                    tenant.verified_tokens.insert(digest, claims.clone());
                    claims
                }
                Err(reason) => {
                    tracing::debug!(tenant = %tenant.name(), %reason, "inactive JWT");
                    return Ok(None);
                }
            }
        };
        if store.is_revoked(tenant.name(), &claims.jti).await? {
            return Ok(None);
        }
        Ok(Some(Arc::unwrap_or_clone(claims)))
    } else {
        let claims = store
            .get_opaque_token(tenant.name(), &opaque_token_id(token))
            .await?;
        match claims.filter(|c| c.exp > now && c.iss == tenant.issuer) {
            // Opaque tokens of a revoked refresh-token family are revoked by jti too.
            Some(c) if !store.is_revoked(tenant.name(), &c.jti).await? => Ok(Some(c)),
            _ => Ok(None),
        }
    }
}

/// An introspection response (RFC 7662 section 2.2).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Introspection {
    Active(ActiveToken),
    Inactive { active: bool },
}

#[derive(Debug, Serialize)]
pub struct ActiveToken {
    active: bool,
    token_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    client_id: String,
    sub: String,
    aud: Audience,
    iss: String,
    exp: u64,
    iat: u64,
    nbf: u64,
    jti: String,
}

/// What introspection says about `token`.
///
/// # Errors
/// The store failing.
pub async fn introspect(
    services: &Services,
    tenant: &ServedTenant,
    token: &str,
) -> Result<Introspection, Error> {
    Ok(match active_claims(services, tenant, token).await? {
        Some(c) => Introspection::Active(ActiveToken {
            active: true,
            token_type: "Bearer",
            scope: c.scope,
            client_id: c.client_id,
            sub: c.sub,
            aud: c.aud,
            iss: c.iss,
            exp: c.exp,
            iat: c.iat,
            nbf: c.nbf,
            jti: c.jti,
        }),
        None => Introspection::Inactive { active: false },
    })
}
