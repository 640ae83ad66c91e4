//! Device authorization (RFC 8628): the device authorization endpoint, and the page behind
//! sign-in where a person enters the device's user code and allows or denies it.

use super::authorize::begun_response;
use super::browser;
use crate::AppState;
use crate::cookies::Jar;
use crate::error::{HttpError, no_store};
use crate::extract::{ClientRequest, Page, PeerAddress, PendingForm, Served};
use crate::form;
use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use gatehouse_flows::browser::device::{self, Answer};
use gatehouse_flows::browser::pending;
use gatehouse_flows::device_authorization;

pub async fn device_authorization(
    State(state): State<AppState>,
    request: ClientRequest,
) -> Result<Response, HttpError> {
    let started = device_authorization::start(
        &state.services,
        &request.tenant,
        &request.client,
        request.params.get("scope"),
    )
    .await
    .map_err(|e| HttpError::json(&e).for_client(&request.client.client_id))?;
    let mut response = Json(started).into_response();
    no_store(&mut response);
    Ok(response)
}

/// `GET /device[?user_code=...]`: sign in if needed, then the code entry page.
pub async fn show(
    State(state): State<AppState>,
    Served(tenant, _): Served<Page>,
    PeerAddress(address): PeerAddress,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let user_code = form::query(query.as_deref())
        .ok()
        .and_then(|p| p.owned("user_code"));
    let jar = Jar::of(&headers);
    let begun = pending::begin(
        &state.services,
        &tenant,
        None,
        user_code,
        jar.browser(address),
    )
    .await
    .map_err(|e| HttpError::page(tenant.display_name(), &e))?;
    Ok(begun_response(&state, &tenant, begun))
}

/// `POST /device`: look the code up, then allow or deny on a consent page.
pub async fn submit(
    State(state): State<AppState>,
    posted: PendingForm,
) -> Result<Response, HttpError> {
    let PendingForm {
        tenant,
        params,
        id,
        pending,
        cookies,
    } = posted;
    let answer = Answer {
        user_code: params.get("user_code").unwrap_or_default(),
        allow: params.get("decision").map(|d| d == "allow"),
    };
    let step = device::confirm(
        &state.services,
        &tenant,
        &id,
        pending,
        cookies.session.as_deref(),
        answer,
    )
    .await
    .map_err(|e| HttpError::page(tenant.display_name(), &e))?;
    Ok(browser::render(&state, &tenant, step))
}
