//! Signed assertions a client presents (RFC 7523): as its credentials (`private_key_jwt`) or as
//! the grant itself (the jwt-bearer grant). Each is verified against the client's registered
//! keys for this tenant (audience: its issuer or token endpoint) and works once: its `jti` is
//! kept in the store until the assertion expires, so a replay on any replica is refused.

use crate::{Error, ServedTenant, Services};
use gatehouse_core::assertion::{self, AssertionClaims};
use gatehouse_core::token::opaque_token_id;
use gatehouse_core::workload;
use gatehouse_core::{ClientConfig, OAuthError, endpoints};
use gatehouse_store::RecordKind;

/// Said of an assertion whose `jti` was spent already.
pub const REPLAYED: &str = "the assertion was already used (jti replay)";

/// Verifies an assertion and spends its `jti`. Problems are `invalid_grant`; client
/// authentication turns them into `invalid_client`.
///
/// # Errors
/// As above, or the store failing.
pub async fn verify_once(
    services: &Services,
    tenant: &ServedTenant,
    client: &ClientConfig,
    token: &str,
) -> Result<AssertionClaims, Error> {
    let token_endpoint = tenant.endpoint(endpoints::TOKEN);
    let audiences = [tenant.issuer.as_str(), token_endpoint.as_str()];
    let claims = assertion::verify(token, client.jwks.as_ref(), &audiences, services.now())
        .map_err(|e| OAuthError::invalid_grant(e.to_string()))?;
    let jti = claims
        .jti
        .as_deref()
        .ok_or_else(|| OAuthError::invalid_grant("the assertion has no jti"))?;
    let id = opaque_token_id(&format!("{}\0{jti}", client.client_id));
    let keep = claims.exp + assertion::CLOCK_SKEW_SECS;
    if !services
        .store
        .claim_once(tenant.name(), RecordKind::AssertionJti, &id, keep)
        .await?
    {
        return Err(OAuthError::invalid_grant(REPLAYED).into());
    }
    Ok(claims)
}

/// A verified workload token: whom it is for and when it ends (a token exchange bounds its
/// result by them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadToken {
    /// Its `aud`.
    pub aud: Vec<String>,
    /// Its real end (`exp`, or an extended ServiceAccount token's `warnafter`).
    pub ends_at: u64,
}

/// Whether `client` authenticates with workload tokens: a Kubernetes ServiceAccount's or a
/// trusted issuer's, instead of a key of its own.
pub fn has_workload_identity(client: &ClientConfig) -> bool {
    client.workload.is_some() || client.federated.is_some()
}

/// Verifies a workload token presented as the credentials of `client`: a ServiceAccount token
/// of the account it is bound to, or a trusted issuer's token of a subject mapped to it
/// (audience: the tenant's issuer or token endpoint). No `jti` is spent: a pod or a CI job
/// reuses its token until it is replaced; its age is bounded instead. The error says why,
/// for the log only.
///
/// # Errors
/// Why the token does not authenticate the client.
pub fn verify_workload_token(
    services: &Services,
    tenant: &ServedTenant,
    client: &ClientConfig,
    token: &str,
) -> Result<WorkloadToken, String> {
    let token_endpoint = tenant.endpoint(endpoints::TOKEN);
    let audiences = [tenant.issuer.as_str(), token_endpoint.as_str()];
    let now = services.now();
    if let Some(identity) = &client.workload {
        return workload::verify_service_account_token(token, identity, &audiences, now)
            .map(|c| WorkloadToken {
                ends_at: c.ends_at(),
                aud: c.aud.0,
            })
            .map_err(|e| format!("ServiceAccount token refused: {e}"));
    }
    if let Some(identity) = &client.federated {
        return workload::verify_federated_token(token, identity, &audiences, now)
            .map(|c| WorkloadToken {
                ends_at: c.exp,
                aud: c.aud.0,
            })
            .map_err(|e| format!("token of trusted issuer {} refused: {e}", identity.issuer));
    }
    Err("the client has no workload identity".to_string())
}
