//! The OAuth router: every tenant's endpoints under `/{tenant}`, plus RFC 8414's
//! path-inserted metadata URL at the root.

mod authenticate;
mod discovery;
mod introspect;
mod revoke;
mod token;

use crate::AppState;
use crate::error::HttpError;
use crate::tenant::TenantRuntime;
use axum::Router;
use axum::routing::{get, post};
use gatehouse_core::endpoints;
use std::sync::Arc;

/// The OAuth router for `state`. If the public URL has a path (`https://host/auth`), routes are
/// nested under it so the issuer URLs resolve as published.
pub fn router(state: AppState) -> Router {
    let per_tenant = Router::new()
        .route(
            &format!("/{{tenant}}{}", endpoints::TOKEN),
            post(token::token),
        )
        .route(
            &format!("/{{tenant}}{}", endpoints::INTROSPECTION),
            post(introspect::introspect),
        )
        .route(
            &format!("/{{tenant}}{}", endpoints::REVOCATION),
            post(revoke::revoke),
        )
        .route(
            &format!("/{{tenant}}{}", endpoints::JWKS),
            get(discovery::jwks),
        )
        .route(
            &format!("/{{tenant}}{}", endpoints::OPENID_CONFIGURATION),
            get(discovery::openid_configuration),
        )
        .route(
            &format!("/{{tenant}}{}", endpoints::OAUTH_AUTHORIZATION_SERVER),
            get(discovery::oauth_metadata),
        )
        .route(
            &format!("{}/{{tenant}}", endpoints::OAUTH_AUTHORIZATION_SERVER),
            get(discovery::oauth_metadata),
        )
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::track,
        ))
        .with_state(state.clone());
    let prefix = url_path(state.directory.public_url());
    if prefix.is_empty() {
        per_tenant
    } else {
        Router::new().nest(&prefix, per_tenant)
    }
}

/// The path of a URL without its trailing slash (`""` for none).
fn url_path(url: &str) -> String {
    let after_scheme = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    match after_scheme.find('/') {
        Some(i) => after_scheme[i..].trim_end_matches('/').to_string(),
        None => String::new(),
    }
}

async fn not_found() -> HttpError {
    HttpError::not_found("no such endpoint; discover endpoints from the tenant's metadata")
}

/// The tenant a request names, or a 404.
fn tenant(state: &AppState, name: &str) -> Result<Arc<TenantRuntime>, HttpError> {
    state
        .directory
        .get(name)
        .ok_or_else(|| HttpError::not_found(format!("no tenant named {name}")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn url_paths() {
        assert_eq!(super::url_path("http://127.0.0.1:8080"), "");
        assert_eq!(super::url_path("https://h/"), "");
        assert_eq!(super::url_path("https://h/auth/"), "/auth");
    }
}
