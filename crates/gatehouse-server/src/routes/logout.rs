//! The end-session endpoint (OpenID Connect RP-Initiated Logout 1.0): ends the browser's
//! session and, when asked, returns to a post-logout URI registered for the client.

use super::authorize::{failure_page, page_error, see_other, unknown_tenant};
use crate::AppState;
use crate::form::Form;
use crate::pages;
use crate::session::{self, SESSION_COOKIE};
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use gatehouse_core::token::verify_id_token_hint;

pub async fn end_session(
    State(state): State<AppState>,
    Path(name): Path<String>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(tenant) = state.directory.get(&name) else {
        return unknown_tenant(&name);
    };
    let form = if method == Method::POST {
        Form::read(&headers, body).await
    } else {
        Form::parse(query.unwrap_or_default().as_bytes())
    };
    let form = match form {
        Ok(f) => f,
        Err(e) => {
            return page_error(
                &name,
                StatusCode::BAD_REQUEST,
                "Invalid request",
                &e.description,
            );
        }
    };
    let hint = form
        .get("id_token_hint")
        .and_then(|t| verify_id_token_hint(t, &tenant.issuer, &tenant.verification_keys));
    if form.get("id_token_hint").is_some() && hint.is_none() {
        return page_error(
            &name,
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "id_token_hint is not an ID token of this issuer.",
        );
    }
    let client_id = form
        .get("client_id")
        .map(str::to_string)
        .or_else(|| hint.as_ref().map(|h| h.aud.clone()));
    if let (Some(param), Some(h)) = (form.get("client_id"), &hint)
        && param != h.aud
    {
        return page_error(
            &name,
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "client_id does not match the id_token_hint.",
        );
    }
    let redirect = match form.get("post_logout_redirect_uri") {
        None => None,
        Some(uri) => {
            let client = client_id.as_deref().and_then(|id| tenant.client(id));
            match client {
                Some(c) if c.post_logout_redirect_uris.iter().any(|r| r == uri) => {
                    Some(uri.to_string())
                }
                Some(_) => {
                    return page_error(
                        &name,
                        StatusCode::BAD_REQUEST,
                        "Invalid request",
                        "post_logout_redirect_uri is not registered for this client.",
                    );
                }
                None => {
                    return page_error(
                        &name,
                        StatusCode::BAD_REQUEST,
                        "Invalid request",
                        "post_logout_redirect_uri needs id_token_hint or client_id.",
                    );
                }
            }
        }
    };
    if let Err(e) = session::end(&state, &name, &headers).await {
        return failure_page(&name, e);
    }
    let mut response = match redirect {
        Some(uri) => {
            let location = match form.get("state") {
                Some(s) => {
                    let sep = if uri.contains('?') { '&' } else { '?' };
                    format!(
                        "{uri}{sep}{}",
                        form_urlencoded::Serializer::new(String::new())
                            .append_pair("state", s)
                            .finish()
                    )
                }
                None => uri,
            };
            see_other(&location)
        }
        None => pages::html(
            StatusCode::OK,
            pages::signed_out(tenant.config.display_name.as_deref().unwrap_or(&name)),
        ),
    };
    response.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(&state, &name, SESSION_COOKIE, "", Some(0)),
    );
    response
}
