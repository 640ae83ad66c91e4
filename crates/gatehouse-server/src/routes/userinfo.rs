//! The UserInfo endpoint (OpenID Connect Core 5.3), protected by a bearer access token
//! (RFC 6750): claims about the signed-in user, released by the token's scopes.

use super::introspect::active_claims;
use crate::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gatehouse_core::id_token::user_claims;
use serde_json::json;

/// An RFC 6750 section 3 error: status and `WWW-Authenticate: Bearer ...`.
fn bearer_error(status: StatusCode, code: Option<&str>, description: &str) -> Response {
    let challenge = match code {
        Some(c) => format!(
            "Bearer error=\"{c}\", error_description=\"{}\"",
            description.replace('"', "'")
        ),
        None => "Bearer".to_string(),
    };
    let body = match code {
        Some(c) => json!({"error": c, "error_description": description}),
        None => json!({"error": "invalid_request", "error_description": description}),
    };
    let mut r = (status, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub async fn userinfo(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(tenant) = state.directory.get(&name) else {
        return bearer_error(
            StatusCode::NOT_FOUND,
            Some("invalid_request"),
            "unknown tenant",
        );
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_string());
    let Some(token) = token else {
        return bearer_error(
            StatusCode::UNAUTHORIZED,
            None,
            "a bearer access token is required",
        );
    };
    let claims = match active_claims(&state, &tenant, &token).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return bearer_error(
                StatusCode::UNAUTHORIZED,
                Some("invalid_token"),
                "the access token is invalid, expired or revoked",
            );
        }
        Err(e) => return axum::response::IntoResponse::into_response(e),
    };
    let scopes: Vec<&str> = claims
        .scope
        .as_deref()
        .map(|s| s.split(' ').collect())
        .unwrap_or_default();
    if !scopes.contains(&"openid") {
        return bearer_error(
            StatusCode::FORBIDDEN,
            Some("insufficient_scope"),
            "the access token was not issued for the openid scope",
        );
    }
    let Some(user) = tenant.config.user(&claims.sub) else {
        return bearer_error(
            StatusCode::UNAUTHORIZED,
            Some("invalid_token"),
            "the token's user no longer exists",
        );
    };
    let mut body = user_claims(user, &scopes);
    body.insert("sub".into(), json!(user.username));
    let mut r = Json(body).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
