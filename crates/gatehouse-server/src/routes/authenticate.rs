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
use gatehouse_core::client_auth::{
    AuthProgress, finish_secret_check, precheck, presented_credentials,
};
use gatehouse_core::{ClientConfig, OAuthError};
use std::sync::Arc;

async fn authenticate_client(
    state: &AppState,
    tenant: &TenantRuntime,
    headers: &HeaderMap,
    form: &Form,
) -> Result<Arc<ClientConfig>, HttpError> {
    if form.get("client_assertion").is_some() || form.get("client_assertion_type").is_some() {
        return Err(OAuthError::invalid_client(
            "client assertions (private_key_jwt) are not accepted by this server yet",
        )
        .into());
    }
    let authorization = match headers.get(header::AUTHORIZATION) {
        Some(v) => Some(v.to_str().map_err(|_| {
            OAuthError::invalid_client("malformed Basic authorization header: not ASCII")
        })?),
        None => None,
    };
    let creds = presented_credentials(
        authorization,
        form.get("client_id"),
        form.get("client_secret"),
    )?;
    let client = tenant.client(creds.client_id()).cloned().ok_or_else(|| {
        OAuthError::invalid_client(format!("unknown client {}", creds.client_id()))
    })?;
    match precheck(&tenant.config.name, &client, &creds, &state.secrets)? {
        AuthProgress::Authenticated => Ok(client),
        AuthProgress::NeedsArgon2 { phc } => {
            let _permit =
                state.argon2_permits.acquire().await.map_err(|_| {
                    OAuthError::temporarily_unavailable("the server is shutting down")
                })?;
            let cache = state.secrets.clone();
            let tenant_name = tenant.config.name.clone();
            let client_id = client.client_id.clone();
            tokio::task::spawn_blocking(move || {
                finish_secret_check(&tenant_name, &client_id, &phc, &creds, &cache)
            })
            .await
            .map_err(|_| OAuthError::server_error("client authentication was interrupted"))??;
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
        let address = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        Ok(ClientRequest {
            tenant,
            client,
            form,
            address,
        })
    }
}

/// The peer's address, when the server knows it (brute-force counters are kept per address).
pub struct PeerAddress(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(PeerAddress(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}
