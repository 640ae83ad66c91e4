//! RFC 8414 / OpenID Connect discovery documents and the JWKS, pre-rendered per tenant.

use super::tenant;
use crate::AppState;
use crate::error::HttpError;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

fn public_json(body: String, max_age: &'static str) -> Response {
    let mut r = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(max_age));
    // Browser apps read these documents cross-origin.
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}

pub async fn oauth_metadata(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, HttpError> {
    Ok(public_json(
        tenant(&state, &name)?.oauth_metadata.clone(),
        "public, max-age=300",
    ))
}

pub async fn openid_configuration(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, HttpError> {
    Ok(public_json(
        tenant(&state, &name)?.openid_metadata.clone(),
        "public, max-age=300",
    ))
}

/// Short cache lifetime: a key published ahead of rotation must reach verifiers in time.
pub async fn jwks(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, HttpError> {
    let t = tenant(&state, &name)?;
    let mut r = public_json(t.jwks.clone(), "public, max-age=60");
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jwk-set+json"),
    );
    Ok(r)
}
