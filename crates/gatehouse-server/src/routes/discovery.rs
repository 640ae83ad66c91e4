//! RFC 8414 / OpenID Connect discovery documents and the JWKS, pre-rendered per tenant.

use crate::extract::{Api, Served};
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

pub async fn oauth_metadata(Served(tenant, _): Served<Api>) -> Response {
    public_json(tenant.oauth_metadata.clone(), "public, max-age=300")
}

pub async fn openid_configuration(Served(tenant, _): Served<Api>) -> Response {
    public_json(tenant.openid_metadata.clone(), "public, max-age=300")
}

/// Short cache lifetime: a key published ahead of rotation must reach verifiers in time.
pub async fn jwks(Served(tenant, _): Served<Api>) -> Response {
    let mut r = public_json(tenant.jwks.clone(), "public, max-age=60");
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jwk-set+json"),
    );
    r
}
