//! The authorization endpoint (RFC 6749 section 3.1), by GET and by POST (OpenID Connect
//! Core 3.1.2.1).

use super::browser;
use crate::AppState;
use crate::cookies::{self, Jar};
use crate::error::HttpError;
use crate::extract::{Page, PeerAddress, Served};
use crate::form;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use gatehouse_flows::browser::authorize;
use gatehouse_flows::browser::pending::Begun;
use gatehouse_flows::{Params, ServedTenant};
use std::sync::Arc;

pub async fn authorize_get(
    State(state): State<AppState>,
    Served(tenant, _): Served<Page>,
    PeerAddress(address): PeerAddress,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let params = form::query_noting_repeats(query.as_deref());
    authorize(&state, &tenant, &params, &headers, address).await
}

pub async fn authorize_post(
    State(state): State<AppState>,
    Served(tenant, _): Served<Page>,
    PeerAddress(address): PeerAddress,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, HttpError> {
    let params = form::read_noting_repeats(&headers, body)
        .await
        .map_err(|e| HttpError::page(tenant.display_name(), &e.into()))?;
    authorize(&state, &tenant, &params, &headers, address).await
}

async fn authorize(
    state: &AppState,
    tenant: &Arc<ServedTenant>,
    params: &Params,
    headers: &HeaderMap,
    address: Option<std::net::IpAddr>,
) -> Result<Response, HttpError> {
    let jar = Jar::of(headers);
    let begun = authorize::authorize(&state.services, tenant, params, jar.browser(address))
        .await
        .map_err(|e| {
            HttpError::page(tenant.display_name(), &e).for_client_if(params.get("client_id"))
        })?;
    Ok(begun_response(state, tenant, begun))
}

/// The first step of a started sign-in, setting the browser binding cookie it chose.
pub fn begun_response(state: &AppState, tenant: &ServedTenant, begun: Begun) -> Response {
    let mut response = browser::render(state, tenant, begun.step);
    if let Some(binding) = begun.new_browser {
        let cookie = cookies::set(
            state,
            tenant.name(),
            cookies::BROWSER,
            &binding,
            Some(cookies::BROWSER_MAX_AGE),
        );
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}
