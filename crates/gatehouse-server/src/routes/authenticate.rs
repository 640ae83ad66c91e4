//! Client authentication for the token, introspection and revocation endpoints. The argon2
//! check, when the cache cannot vouch for the secret, runs on the blocking pool so a burst of
//! new clients never stalls the async workers.

use super::tenant;
use crate::AppState;
use crate::error::HttpError;
use crate::form::Form;
use crate::tenant::TenantRuntime;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::{HeaderMap, header};
use gatehouse_core::assertion::{self, AssertionClaims};
use gatehouse_core::client_auth::{
    AuthProgress, PresentedCredentials, finish_secret_check, precheck, presented_credentials,
};
use gatehouse_core::token::opaque_token_id;
use gatehouse_core::{ClientConfig, ErrorCode, OAuthError, endpoints};
use gatehouse_store::RecordKind;
use std::sync::Arc;

async fn authenticate_client(
    state: &AppState,
    tenant: &TenantRuntime,
    headers: &HeaderMap,
    form: &Form,
) -> Result<Arc<ClientConfig>, HttpError> {
    let authorization = match headers.get(header::AUTHORIZATION) {
        Some(v) => Some(v.to_str().map_err(|_| {
            OAuthError::invalid_client("malformed Basic authorization header: not ASCII")
        })?),
        None => None,
    };
    let assertion = form
        .get("client_assertion")
        .map(|a| (form.get("client_assertion_type"), a));
    if assertion.is_none() && form.get("client_assertion_type").is_some() {
        return Err(
            OAuthError::invalid_request("client_assertion_type without client_assertion").into(),
        );
    }
    let creds = presented_credentials(
        authorization,
        form.get("client_id"),
        form.get("client_secret"),
        assertion,
    )?;
    let client = tenant.client(creds.client_id()).cloned().ok_or_else(|| {
        OAuthError::invalid_client(format!("unknown client {}", creds.client_id()))
    })?;
    match precheck(&tenant.config.name, &client, &creds, &state.secrets)? {
        AuthProgress::Authenticated => Ok(client),
        AuthProgress::VerifyAssertion => {
            let PresentedCredentials::Assertion { assertion, .. } = &creds else {
                return Err(OAuthError::invalid_client("client assertion missing").into());
            };
            let claims = verify_assertion(state, tenant, &client, assertion)
                .await
                .map_err(|e| match e.error.code {
                    ErrorCode::InvalidGrant => {
                        OAuthError::invalid_client(e.error.description).into()
                    }
                    _ => e,
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
            let cache = state.secrets.clone();
            let tenant_name = tenant.config.name.clone();
            let client_id = client.client_id.clone();
            state
                .argon2
                .run(move || finish_secret_check(&tenant_name, &client_id, &phc, &creds, &cache))
                .await
                .map_err(|_| {
                    OAuthError::temporarily_unavailable("the server is shutting down")
                })??;
            Ok(client)
        }
    }
}

/// A form POST from an authenticated client of the tenant the path names: what the token,
/// introspection and revocation endpoints all start from.
pub struct ClientRequest {
    pub tenant: Arc<TenantRuntime>,
    pub client: Arc<ClientConfig>,
    pub form: Form,
    /// The peer address (brute-force counters are kept per address).
    pub address: Option<std::net::IpAddr>,
}

impl FromRequest<AppState> for ClientRequest {
    type Rejection = HttpError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, HttpError> {
        let (mut parts, body) = request.into_parts();
        let Path(name) = Path::<String>::from_request_parts(&mut parts, state)
            .await
            .map_err(|_| HttpError::not_found("no such tenant"))?;
        let tenant = tenant(state, &name)?;
        let form = Form::read(&parts.headers, body).await?;
        let client = authenticate_client(state, &tenant, &parts.headers, &form).await?;
        let address = client_address(state, &parts);
        Ok(ClientRequest {
            tenant,
            client,
            form,
            address,
        })
    }
}

/// The client's address, when the server knows it (brute-force counters are kept per
/// address): the TCP peer, or, when the operator says a proxy in front sets it, the last entry
/// of `X-Forwarded-For` (the one that proxy appended; earlier entries are the client's to forge).
pub struct PeerAddress(pub Option<std::net::IpAddr>);

pub fn client_address(
    state: &AppState,
    parts: &axum::http::request::Parts,
) -> Option<std::net::IpAddr> {
    if state.trust_forwarded_for {
        return parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse().ok())
            .next_back();
    }
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

impl FromRequestParts<AppState> for PeerAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(PeerAddress(client_address(state, parts)))
    }
}

/// Verifies an assertion signed by one of the client's registered keys, for this tenant
/// (audience: its issuer or token endpoint), once: its `jti` is kept in the store until the
/// assertion expires, so a replay on any replica is refused. Problems are `invalid_grant`;
/// client authentication turns them into `invalid_client`.
pub async fn verify_assertion(
    state: &AppState,
    tenant: &TenantRuntime,
    client: &ClientConfig,
    token: &str,
) -> Result<AssertionClaims, HttpError> {
    let token_endpoint = format!("{}{}", tenant.issuer, endpoints::TOKEN);
    let audiences = [tenant.issuer.as_str(), token_endpoint.as_str()];
    let claims = assertion::verify(token, client.jwks.as_ref(), &audiences, state.now())
        .map_err(|e| OAuthError::invalid_grant(e.to_string()))?;
    let jti = claims
        .jti
        .as_deref()
        .ok_or_else(|| OAuthError::invalid_grant("the assertion has no jti"))?;
    let id = opaque_token_id(&format!("{}\0{jti}", client.client_id));
    let keep = claims.exp + assertion::CLOCK_SKEW_SECS;
    let name = &tenant.config.name;
    state
        .store
        .put_record(name, RecordKind::AssertionJti, &id, "1", keep)
        .await?;
    if !state
        .store
        .mark_used(name, RecordKind::AssertionJti, &id, keep)
        .await?
    {
        return Err(
            OAuthError::invalid_grant("the assertion was already used (jti replay)").into(),
        );
    }
    Ok(claims)
}
