//! Client authentication for the token, introspection, revocation and device authorization
//! endpoints (RFC 6749 section 2.3). The cheap checks are the core's; what needs the store
//! (assertion replay) or argon2 (a secret the cache cannot vouch for) happens here. Argon2 runs
//! on its own workers so a burst of new clients never stalls the async workers.

use crate::{Error, Params, ServedTenant, Services, assertions};
use gatehouse_core::client_auth::{
    AuthProgress, PresentedCredentials, finish_secret_check, precheck, presented_credentials,
};
use gatehouse_core::{ClientConfig, ErrorCode, OAuthError};
use std::sync::Arc;

/// The credentials of a request: its `Authorization` header (as text) and its parameters.
pub struct Credentials<'a> {
    pub authorization: Option<&'a str>,
    pub params: &'a Params,
}

/// The client the credentials prove, or why they do not.
///
/// # Errors
/// `invalid_client` (or `invalid_request` for a request mixing methods), the store failing,
/// or the process shutting down.
pub async fn authenticate(
    services: &Services,
    tenant: &ServedTenant,
    credentials: Credentials<'_>,
) -> Result<Arc<ClientConfig>, Error> {
    let params = credentials.params;
    let assertion = params
        .get("client_assertion")
        .map(|a| (params.get("client_assertion_type"), a));
    if assertion.is_none() && params.get("client_assertion_type").is_some() {
        return Err(
            OAuthError::invalid_request("client_assertion_type without client_assertion").into(),
        );
    }
    let creds = presented_credentials(
        credentials.authorization,
        params.get("client_id"),
        params.get("client_secret"),
        assertion,
    )?;
    let client = tenant.client(creds.client_id()).cloned().ok_or_else(|| {
        OAuthError::invalid_client(format!("unknown client {}", creds.client_id()))
    })?;
    match precheck(tenant.name(), &client, &creds, &services.secrets)? {
        AuthProgress::Authenticated => Ok(client),
        AuthProgress::VerifyAssertion => {
            let PresentedCredentials::Assertion { assertion, .. } = &creds else {
                return Err(OAuthError::invalid_client("client assertion missing").into());
            };
            let claims = assertions::verify_once(services, tenant, &client, assertion)
                .await
                .map_err(|e| match e {
                    Error::Refused(e) if e.code == ErrorCode::InvalidGrant => {
                        Error::Refused(OAuthError::invalid_client(e.description))
                    }
                    other => other,
                })?;
            if claims.iss != client.client_id {
                return Err(OAuthError::invalid_client(
                    "the client assertion's iss must be the client id",
                )
                .into());
            }
            Ok(client)
        }
        AuthProgress::NeedsArgon2 { phc } => {
            let cache = services.secrets.clone();
            let tenant_name = tenant.name().to_string();
            let client_id = client.client_id.clone();
            services
                .argon2
                .run(move || finish_secret_check(&tenant_name, &client_id, &phc, &creds, &cache))
                .await
                .map_err(|_| Error::ShuttingDown)??;
            Ok(client)
        }
    }
}
