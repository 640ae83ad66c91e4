//! What handlers take from a request: the tenant the path names, an authenticated client with
//! its form, the client's address, and a form posted from a pending sign-in. Each rejection is
//! an [`HttpError`] in the shape of the endpoint asked.

use crate::AppState;
use crate::cookies::Jar;
use crate::error::{HttpError, Kind};
use crate::form;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request};
use axum::http::header;
use axum::http::request::Parts;
use gatehouse_core::client_auth::parse_basic;
use gatehouse_core::{ClientConfig, OAuthError};
use gatehouse_flows::browser::pending::{self, Pending};
use gatehouse_flows::client_auth::{self, Credentials};
use gatehouse_flows::{Error, Params, ServedTenant};
use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The shape of an endpoint's errors, as a type.
pub trait Shaped: Send + Sync {
    const KIND: Kind;
}

/// Endpoints answering JSON (token, introspection, revocation, discovery, device).
pub struct Api;
/// Endpoints a browser sees (authorization, sign-in, consent, device page, sign-out).
pub struct Page;
/// Resources protected by a bearer token (userinfo).
pub struct Protected;

impl Shaped for Api {
    const KIND: Kind = Kind::Json;
}
impl Shaped for Page {
    const KIND: Kind = Kind::Page;
}
impl Shaped for Protected {
    const KIND: Kind = Kind::Bearer;
}

/// The tenant the path's `{tenant}` names, or a 404 in the endpoint's shape.
pub struct Served<K: Shaped>(pub Arc<ServedTenant>, pub PhantomData<K>);

impl<K: Shaped> FromRequestParts<AppState> for Served<K> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, HttpError> {
        let Path(name) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| HttpError::unknown_tenant("this address", K::KIND))?;
        state
            .directory
            .get(&name)
            .map(|t| Served(t, PhantomData))
            .ok_or_else(|| HttpError::unknown_tenant(&name, K::KIND))
    }
}

/// A form POST from an authenticated client of the tenant the path names: what the token,
/// introspection, revocation and device authorization endpoints all start from.
pub struct ClientRequest {
    pub tenant: Arc<ServedTenant>,
    pub client: Arc<ClientConfig>,
    pub params: Params,
    /// The peer address (brute-force counters are kept per address).
    pub address: Option<IpAddr>,
}

impl FromRequest<AppState> for ClientRequest {
    type Rejection = HttpError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, HttpError> {
        let (mut parts, body) = request.into_parts();
        let Served(tenant, _) = Served::<Api>::from_request_parts(&mut parts, state).await?;
        let params = form::read(&parts.headers, body)
            .await
            .map_err(|e| HttpError::json(&e.into()))?;
        // For the log line of a failure: the client the request names (never its secret).
        let presented = params.owned("client_id").or_else(|| {
            let header = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
            parse_basic(header).ok().map(|(id, _)| id)
        });
        // Only a grant Gatehouse knows is named in the log, never the raw parameter.
        let grant = params
            .get("grant_type")
            .and_then(gatehouse_core::GrantType::from_token_request)
            .map(gatehouse_core::GrantType::as_str);
        let failed = |e: &Error| {
            let error = HttpError::json(e).for_grant(grant);
            match &presented {
                Some(id) => error.for_client(id),
                None => error,
            }
        };
        let authorization = match parts.headers.get(header::AUTHORIZATION) {
            Some(v) => Some(v.to_str().map_err(|_| {
                failed(
                    &OAuthError::invalid_client("malformed Basic authorization header: not ASCII")
                        .into(),
                )
            })?),
            None => None,
        };
        let address = client_address(state, &parts);
        let credentials = Credentials {
            authorization,
            params: &params,
            address,
        };
        let client = client_auth::authenticate(&state.services, &tenant, credentials)
            .await
            .map_err(|e| failed(&e))?;
        Ok(ClientRequest {
            tenant,
            client,
            params,
            address,
        })
    }
}

/// The client's address, when the server knows it (brute-force counters are kept per
/// address): the TCP peer, or, behind a proxy the operator trusts (`--trusted-proxies`), the
/// address that proxy put into `X-Forwarded-For` (see [`crate::proxies`]).
pub struct PeerAddress(pub Option<IpAddr>);

fn client_address(state: &AppState, parts: &Parts) -> Option<IpAddr> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if state.trusted_proxies.is_empty() {
        return peer;
    }
    // Read lossily rather than skipped: a line the client made unreadable may end with the
    // entry a trusted proxy appended, and skipping it would move the walk onto client-written
    // lines further left.
    let forwarded: Vec<std::borrow::Cow<'_, str>> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()))
        .collect();
    state
        .trusted_proxies
        .client_address(peer, forwarded.iter().map(AsRef::as_ref))
}

impl FromRequestParts<AppState> for PeerAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(PeerAddress(client_address(state, parts)))
    }
}

/// A form posted from a page of a pending sign-in: the tenant, the form, the browser's
/// cookies, and the pending request, already checked to belong to this browser and this form
/// (CSRF).
pub struct PendingForm {
    pub tenant: Arc<ServedTenant>,
    pub params: Params,
    pub id: String,
    pub pending: Pending,
    pub cookies: Jar,
}

impl FromRequest<AppState> for PendingForm {
    type Rejection = HttpError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, HttpError> {
        let (mut parts, body) = request.into_parts();
        let Served(tenant, _) = Served::<Page>::from_request_parts(&mut parts, state).await?;
        let page_error = |e: &Error| HttpError::page(tenant.display_name(), e);
        let params = form::read(&parts.headers, body)
            .await
            .map_err(|e| page_error(&e.into()))?;
        let cookies = Jar::of(&parts.headers);
        let (id, pending) = pending::load(
            &state.services,
            &tenant,
            params.get("request"),
            cookies.binding.as_deref(),
            params.get("csrf"),
        )
        .await
        .map_err(|e| page_error(&e))?;
        Ok(PendingForm {
            tenant,
            params,
            id,
            pending,
            cookies,
        })
    }
}
