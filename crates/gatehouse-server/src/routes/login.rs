//! The sign-in and consent pages of the browser flow.

use super::browser::{self, login_page};
use crate::AppState;
use crate::cookies;
use crate::error::HttpError;
use crate::extract::{Page, PeerAddress, PendingForm, Served};
use crate::form;
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::Response;
use gatehouse_flows::browser::login::{self, SignIn};
use gatehouse_flows::browser::{consent, pending};

pub async fn show_login(
    State(state): State<AppState>,
    Served(tenant, _): Served<Page>,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    let params = form::query(query.as_deref()).unwrap_or_default();
    let id = params.get("request").unwrap_or_default();
    let pending = pending::find(&state.services, &tenant, Some(id))
        .await
        .map_err(|e| HttpError::page(tenant.display_name(), &e))?;
    Ok(login_page(&tenant, id, &pending, "", None))
}

pub async fn submit_login(
    State(state): State<AppState>,
    PeerAddress(address): PeerAddress,
    posted: PendingForm,
) -> Result<Response, HttpError> {
    let PendingForm {
        tenant,
        params,
        id,
        pending,
        ..
    } = posted;
    let username = params.get("username").unwrap_or_default();
    let form = login::Form {
        username,
        password: params.get("password").unwrap_or_default(),
        address,
    };
    let client = pending.request.as_ref().map(|r| r.client_id.as_str());
    let outcome = login::sign_in(&state.services, &tenant, &id, &pending, form)
        .await
        .map_err(|e| HttpError::page(tenant.display_name(), &e).for_client_if(client))?;
    Ok(match outcome {
        SignIn::Retry { message } => login_page(&tenant, &id, &pending, username, Some(message)),
        SignIn::SignedIn {
            session_cookie,
            step,
        } => {
            let mut response = browser::render(&state, &tenant, step);
            response.headers_mut().append(
                header::SET_COOKIE,
                cookies::set(
                    &state,
                    tenant.name(),
                    cookies::SESSION,
                    &session_cookie,
                    None,
                ),
            );
            response
        }
    })
}

pub async fn submit_consent(
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
    let allow = params.get("decision") == Some("allow");
    let step = consent::answer(
        &state.services,
        &tenant,
        &id,
        &pending,
        cookies.session.as_deref(),
        allow,
    )
    .await
    .map_err(|e| {
        let client = pending.request.as_ref().map(|r| r.client_id.as_str());
        HttpError::page(tenant.display_name(), &e).for_client_if(client)
    })?;
    Ok(browser::render(&state, &tenant, step))
}
