//! The sign-in and consent pages of the browser flow.

use super::authenticate::PeerAddress;
use super::authorize::{
    Pending, PendingForm, complete, failure_page, page_error, proceed, redirect_error,
    remember_consent, see_other, unknown_tenant,
};
use crate::AppState;
use crate::form::Form;
use crate::pages::{self, LoginPage};
use crate::records;
use crate::session::{self, SESSION_COOKIE};
use crate::sign_in::verify_password;
use crate::tenant::TenantRuntime;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use gatehouse_core::{ErrorCode, OAuthError, endpoints};
use gatehouse_store::RecordKind;

fn login_page(
    tenant: &TenantRuntime,
    id: &str,
    pending: &Pending,
    username: &str,
    error: Option<&str>,
) -> Response {
    let client_name = match &pending.request {
        Some(req) => tenant
            .client(&req.client_id)
            .and_then(|c| c.client_name.clone())
            .unwrap_or_else(|| req.client_id.clone()),
        None => "device sign-in".to_string(),
    };
    let action = format!("{}{}", tenant.issuer, endpoints::LOGIN);
    pages::html(
        StatusCode::OK,
        pages::login(&LoginPage {
            tenant: tenant
                .config
                .display_name
                .as_deref()
                .unwrap_or(&tenant.config.name),
            client: &client_name,
            action: &action,
            request: id,
            csrf: &pending.csrf,
            username,
            error,
        }),
    )
}

pub async fn show_login(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(tenant) = state.directory.get(&name) else {
        return unknown_tenant(&name);
    };
    let form = Form::parse(query.unwrap_or_default().as_bytes()).ok();
    let id = form
        .as_ref()
        .and_then(|f| f.get("request"))
        .unwrap_or_default()
        .to_string();
    match records::get::<Pending>(&*state.store, &name, RecordKind::AuthorizationRequest, &id).await
    {
        Ok(Some((pending, _))) => login_page(&tenant, &id, &pending, "", None),
        Ok(None) => page_error(
            &name,
            StatusCode::BAD_REQUEST,
            "Sign-in expired",
            "This sign-in request has expired or was already completed.",
        ),
        Err(e) => failure_page(&name, e),
    }
}

pub async fn submit_login(
    State(state): State<AppState>,
    PeerAddress(address): PeerAddress,
    posted: PendingForm,
) -> Response {
    let PendingForm {
        tenant,
        form,
        id,
        pending,
        ..
    } = posted;
    let name = tenant.config.name.clone();
    let username = form.get("username").unwrap_or_default();
    let password = form.get("password").unwrap_or_default();
    if username.is_empty() || password.is_empty() {
        return login_page(
            &tenant,
            &id,
            &pending,
            username,
            Some("Enter your username and password."),
        );
    }
    match verify_password(&state, &tenant, username, password, address).await {
        Err(e) if e.error.code == ErrorCode::InvalidGrant => {
            let message = if e.error.description == crate::sign_in::LOCKED {
                "Too many failed attempts. Wait a few minutes, then try again."
            } else {
                "Wrong username or password."
            };
            login_page(&tenant, &id, &pending, username, Some(message))
        }
        Err(e) => failure_page(&name, e),
        Ok(user) => {
            let result = async {
                let (cookie, session) = session::start(&state, &name, &user.username).await?;
                let mut response =
                    proceed(&state, &tenant, &id, &pending, Some(session), true).await?;
                response.headers_mut().append(
                    header::SET_COOKIE,
                    session::set_cookie(&state, &name, SESSION_COOKIE, &cookie, None),
                );
                Ok::<_, crate::error::HttpError>(response)
            }
            .await;
            result.unwrap_or_else(|e| failure_page(&name, e))
        }
    }
}

pub async fn submit_consent(State(state): State<AppState>, posted: PendingForm) -> Response {
    let PendingForm {
        tenant,
        form,
        id,
        pending,
        headers,
    } = posted;
    let name = tenant.config.name.clone();
    let result = async {
        let Some(session) = session::current(&state, &name, &headers).await? else {
            return Ok(see_other(&format!(
                "{}{}?request={id}",
                tenant.issuer,
                endpoints::LOGIN
            )));
        };
        let Some(req) = &pending.request else {
            return Ok(page_error(
                &name,
                StatusCode::BAD_REQUEST,
                "Invalid request",
                "This sign-in has no consent to give.",
            ));
        };
        if form.get("decision") != Some("allow") {
            state
                .store
                .delete_record(&name, RecordKind::AuthorizationRequest, &id)
                .await?;
            let e = OAuthError::new(ErrorCode::AccessDenied, "the user denied access");
            return Ok(redirect_error(
                &tenant,
                &req.redirect_uri,
                req.response_type,
                req.state.as_deref(),
                &e,
            ));
        }
        remember_consent(&state, &name, &session.username, req).await?;
        complete(&state, &tenant, &id, &pending, &session).await
    }
    .await;
    result.unwrap_or_else(|e| failure_page(&name, e))
}
