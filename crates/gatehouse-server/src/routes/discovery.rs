//! RFC 8414 / OpenID Connect discovery documents and the JWKS, pre-rendered per tenant.

use crate::extract::{Api, Page, Served};
use crate::pages;
use axum::http::StatusCode;
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

/// `GET /{tenant}`: the issuer URL opened in a browser shows a page of the tenant's endpoints
/// (the JSON stays at the metadata URLs).
pub async fn landing(Served(tenant, _): Served<Page>) -> Response {
    let metadata: serde_json::Value =
        serde_json::from_str(&tenant.openid_metadata).unwrap_or_default();
    let issuer = tenant.issuer.clone();
    let mut links: Vec<(&str, String)> = vec![
        (
            "OpenID Connect discovery",
            format!("{issuer}/.well-known/openid-configuration"),
        ),
        (
            "OAuth 2.0 metadata (RFC 8414)",
            format!("{issuer}/.well-known/oauth-authorization-server"),
        ),
    ];
    for (label, member) in [
        ("Public keys (JWKS)", "jwks_uri"),
        ("Authorization (browser sign-in)", "authorization_endpoint"),
        ("Token", "token_endpoint"),
        ("Userinfo", "userinfo_endpoint"),
        ("Device authorization", "device_authorization_endpoint"),
        ("Introspection", "introspection_endpoint"),
        ("Revocation", "revocation_endpoint"),
        ("Sign-out", "end_session_endpoint"),
    ] {
        if let Some(url) = metadata[member].as_str() {
            links.push((label, url.to_string()));
        }
    }
    let grants: Vec<String> = metadata["grant_types_supported"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g.as_str().map(str::to_string))
        .collect();
    pages::html(
        StatusCode::OK,
        pages::landing(tenant.display_name(), &issuer, &links, &grants),
    )
}
