//! Cross-origin access for browser apps (single-page apps calling the token, userinfo and
//! revocation endpoints): an origin is allowed when it is the origin of a redirect URI some
//! client of the tenant registered, so no separate list can drift from the registrations.
//! Discovery documents and JWKS are public and answer `*` on their own.

use crate::AppState;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

fn tenant_segment<'a>(state: &AppState, path: &'a str) -> Option<&'a str> {
    let prefix = crate::routes::url_path(state.directory.public_url());
    path.strip_prefix(prefix.as_str())?
        .trim_start_matches('/')
        .split('/')
        .next()
}

pub async fn cors(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(str::to_string);
    let Some(origin) = origin else {
        return next.run(request).await;
    };
    let allowed = tenant_segment(&state, request.uri().path())
        .and_then(|t| state.directory.get(t))
        .is_some_and(|t| t.cors_origins.contains(&origin));
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = if preflight {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    if allowed && !headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        if let Ok(v) = HeaderValue::from_str(&origin) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        }
        if preflight {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST"),
            );
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("authorization, content-type"),
            );
            headers.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
        }
    }
    response
}
