//! The OAuth router: every tenant's endpoints under `/{tenant}`, plus RFC 8414's
//! path-inserted metadata URL at the root. One module per endpoint; `browser` renders the
//! steps of the browser flow that the authorization, sign-in, consent and device pages share.

mod authorize;
mod browser;
mod device;
mod discovery;
mod introspect;
mod login;
mod logout;
mod revoke;
mod token;
mod userinfo;

use crate::AppState;
use crate::error::{HttpError, Kind};
use axum::Router;
use axum::routing::{get, post};
use gatehouse_core::endpoints;

/// The OAuth router for `state`. If the public URL has a path (`https://host/auth`), routes are
/// nested under it so the issuer URLs resolve as published.
pub fn router(state: AppState) -> Router {
    let prefix = url_path(state.directory.public_url());
    let at = |path: &str| format!("/{{tenant}}{path}");
    let per_tenant = Router::new()
        .route(&at(endpoints::TOKEN), post(token::token))
        .route(&at(endpoints::INTROSPECTION), post(introspect::introspect))
        .route(&at(endpoints::REVOCATION), post(revoke::revoke))
        .route("/{tenant}", get(discovery::landing))
        .route(&at(endpoints::JWKS), get(discovery::jwks))
        .route(
            &at(endpoints::OPENID_CONFIGURATION),
            get(discovery::openid_configuration),
        )
        .route(
            &at(endpoints::OAUTH_AUTHORIZATION_SERVER),
            get(discovery::oauth_metadata),
        )
        .route(
            &format!("{}/{{tenant}}", endpoints::OAUTH_AUTHORIZATION_SERVER),
            get(discovery::oauth_metadata),
        )
        .route(
            &at(endpoints::AUTHORIZATION),
            get(authorize::authorize_get).post(authorize::authorize_post),
        )
        .route(
            &at(endpoints::LOGIN),
            get(login::show_login).post(login::submit_login),
        )
        .route(&at(endpoints::CONSENT), post(login::submit_consent))
        .route(
            &at(endpoints::DEVICE_AUTHORIZATION),
            post(device::device_authorization),
        )
        .route(
            &at(endpoints::DEVICE),
            get(device::show).post(device::submit),
        )
        .route(
            &at(endpoints::USERINFO),
            get(userinfo::userinfo).post(userinfo::userinfo),
        )
        .route(
            &at(endpoints::END_SESSION),
            get(logout::end_session).post(logout::end_session),
        )
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::request_body::read_first,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::cors::cors,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::track,
        ))
        .with_state(state);
    if prefix.is_empty() {
        per_tenant
    } else {
        Router::new().nest(&prefix, per_tenant)
    }
}

/// The path of a URL without its trailing slash (`""` for none).
pub(crate) fn url_path(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, r)| r);
    match after_scheme.find('/') {
        Some(i) => after_scheme[i..].trim_end_matches('/').to_string(),
        None => String::new(),
    }
}

/// The endpoints whose errors are pages: a person is looking at them.
const PAGE_ENDPOINTS: [&str; 5] = [
    endpoints::AUTHORIZATION,
    endpoints::LOGIN,
    endpoints::CONSENT,
    endpoints::DEVICE,
    endpoints::END_SESSION,
];

async fn method_not_allowed(
    method: axum::http::Method,
    uri: axum::http::Uri,
    params: axum::extract::RawPathParams,
) -> HttpError {
    let tenant = params
        .iter()
        .find_map(|(name, value)| (name == "tenant").then_some(value))
        .unwrap_or_default();
    let path = uri.path();
    let kind = if PAGE_ENDPOINTS.iter().any(|e| path.ends_with(e)) {
        Kind::Page
    } else {
        Kind::Json
    };
    HttpError::method_not_allowed(&method, tenant, kind)
}

async fn not_found() -> HttpError {
    HttpError::not_found("no such endpoint; discover endpoints from the tenant's metadata")
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
