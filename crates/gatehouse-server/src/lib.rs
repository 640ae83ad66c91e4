//! The HTTP face of Gatehouse: per-tenant OAuth endpoints (axum) and the operations listener.
//!
//! This crate only translates. A handler extracts (tenant, form, cookies, client credentials),
//! calls one flow of `gatehouse-flows`, and renders what comes back as JSON, a page or a
//! redirect; every failure is one [`error::HttpError`], logged and counted once by the
//! metrics middleware. Tenant and client configuration comes from an in-process snapshot
//! ([`TenantDirectory`]), so the token endpoint's hot path makes no store round trip for it.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod connections;
mod cookies;
mod cors;
pub mod error;
mod extract;
mod form;
pub mod metrics;
pub mod ops;
mod pages;
pub mod proxies;
mod request_body;
mod routes;

pub use gatehouse_flows::{Services, TenantDirectory};
pub use routes::router;

use std::sync::Arc;

/// Shared state of the OAuth router: one `Arc`, because axum clones the state for every
/// extractor and middleware of every request.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl From<Shared> for AppState {
    fn from(shared: Shared) -> Self {
        AppState(Arc::new(shared))
    }
}

impl AppState {
    #[must_use]
    pub fn new(
        directory: Arc<TenantDirectory>,
        services: Services,
        metrics: Arc<metrics::Metrics>,
    ) -> Self {
        Shared::new(directory, services, metrics).into()
    }
}

/// What [`AppState`] holds; settable until it becomes one.
pub struct Shared {
    pub directory: Arc<TenantDirectory>,
    /// Store, clock, randomness and argon2 workers: what every flow works with.
    pub services: Services,
    pub metrics: Arc<metrics::Metrics>,
    /// Proxies in front whose `X-Forwarded-For` entries name the client's address (sign-in
    /// throttling counts per address); none by default.
    pub trusted_proxies: proxies::TrustedProxies,
    /// How long a request body may take to arrive.
    pub body_read_timeout: std::time::Duration,
}

impl Shared {
    #[must_use]
    pub fn new(
        directory: Arc<TenantDirectory>,
        services: Services,
        metrics: Arc<metrics::Metrics>,
    ) -> Self {
        Shared {
            directory,
            services,
            metrics,
            trusted_proxies: proxies::TrustedProxies::default(),
            body_read_timeout: std::time::Duration::from_secs(10),
        }
    }
}
