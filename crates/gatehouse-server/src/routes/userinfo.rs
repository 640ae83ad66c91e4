//! The UserInfo endpoint (OpenID Connect Core 5.3), protected by a bearer access token
//! (RFC 6750).

use crate::AppState;
use crate::error::HttpError;
use crate::extract::{Protected, Served};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use gatehouse_flows::userinfo;

/// The token of an `Authorization: Bearer` header.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
}

pub async fn userinfo(
    State(state): State<AppState>,
    Served(tenant, _): Served<Protected>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let token = bearer_token(&headers).ok_or_else(HttpError::bearer_missing)?;
    let claims = userinfo::userinfo(&state.services, &tenant, token)
        .await
        .map_err(|e| HttpError::bearer(&e))?;
    let mut r = Json(claims).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}
