//! The end-session endpoint (OpenID Connect RP-Initiated Logout 1.0), by GET and by POST.

use crate::AppState;
use crate::cookies::{self, Jar};
use crate::error::{HttpError, see_other};
use crate::extract::{Page, Served};
use crate::form;
use crate::pages;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use gatehouse_flows::browser::logout;

pub async fn end_session(
    State(state): State<AppState>,
    Served(tenant, _): Served<Page>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, HttpError> {
    let page_error = |e: &gatehouse_flows::Error| HttpError::page(tenant.display_name(), e);
    let params = if method == Method::POST {
        form::read(&headers, body).await
    } else {
        form::query(query.as_deref())
    }
    .map_err(|e| page_error(&e.into()))?;
    let jar = Jar::of(&headers);
    let outcome = logout::end_session(&state.services, &tenant, &params, jar.session.as_deref())
        .await
        .map_err(|e| page_error(&e))?;
    let signed_out = match outcome {
        logout::EndSession::SignedOut(signed_out) => signed_out,
        logout::EndSession::Confirm { fields } => {
            let action = tenant.endpoint(gatehouse_core::endpoints::END_SESSION);
            return Ok(pages::html(
                StatusCode::OK,
                pages::confirm_sign_out(tenant.display_name(), &action, &fields),
            ));
        }
    };
    let mut response = match signed_out.redirect {
        Some(location) => see_other(&location),
        None => pages::html(StatusCode::OK, pages::signed_out(tenant.display_name())),
    };
    response.headers_mut().append(
        header::SET_COOKIE,
        cookies::set(&state, tenant.name(), cookies::SESSION, "", Some(0)),
    );
    Ok(response)
}
