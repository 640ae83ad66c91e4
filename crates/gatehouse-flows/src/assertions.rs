//! Signed assertions a client presents (RFC 7523): as its credentials (`private_key_jwt`) or as
//! the grant itself (the jwt-bearer grant). Each is verified against the client's registered
//! keys for this tenant (audience: its issuer or token endpoint) and works once: its `jti` is
//! kept in the store until the assertion expires, so a replay on any replica is refused.

use crate::{Error, ServedTenant, Services};
use gatehouse_core::assertion::{self, AssertionClaims};
use gatehouse_core::config::WorkloadIdentity;
use gatehouse_core::token::opaque_token_id;
use gatehouse_core::workload::ServiceAccountClaims;
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

/// Verifies a Kubernetes ServiceAccount token presented as the credentials of the client
/// `identity` binds (audience: the tenant's issuer or token endpoint). No `jti` is spent: a pod
/// reuses its token until the kubelet replaces it. The error says why, for the log only.
///
/// # Errors
/// Why the token does not authenticate the client.
pub fn verify_workload(
    services: &Services,
    tenant: &ServedTenant,
    identity: &WorkloadIdentity,
    token: &str,
) -> Result<(), String> {
    verify_workload_claims(services, tenant, identity, token).map(|_| ())
}

/// [`verify_workload`], with the token's claims (a token exchange bounds its result by them).
///
/// # Errors
/// Why the token does not authenticate the client.
pub fn verify_workload_claims(
    services: &Services,
    tenant: &ServedTenant,
    identity: &WorkloadIdentity,
    token: &str,
) -> Result<ServiceAccountClaims, String> {
    let token_endpoint = tenant.endpoint(endpoints::TOKEN);
    let audiences = [tenant.issuer.as_str(), token_endpoint.as_str()];
    gatehouse_core::workload::verify_service_account_token(
        token,
        identity,
        &audiences,
        services.now(),
    )
    .map_err(|e| format!("ServiceAccount token refused: {e}"))
}
