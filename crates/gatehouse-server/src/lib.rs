//! The HTTP face of Gatehouse: per-tenant OAuth endpoints (axum) and the operations listener.
//!
//! This crate only translates: it parses requests into the protocol core's types, asks the core
//! what to do, reads and writes the store, and turns the core's errors into RFC 6749 responses.
//! Tenant and client configuration comes from an in-process snapshot ([`directory`]), so the
//! token endpoint's hot path makes no store round trip for it.

mod cors;
pub mod directory;
mod error;
mod form;
mod issue;
pub mod metrics;
pub mod ops;
mod pages;
mod records;
mod routes;
mod session;
mod sign_in;
mod tenant;
mod verified;

pub use directory::TenantDirectory;
pub use routes::router;

use gatehouse_core::argon2_workers::Argon2Workers;
use gatehouse_core::secret::VerifiedSecretCache;
use gatehouse_store::Store;
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
    pub fn new(
        directory: Arc<TenantDirectory>,
        store: Arc<dyn Store>,
        metrics: Arc<metrics::Metrics>,
    ) -> Self {
        Shared::new(directory, store, metrics).into()
    }
}

/// What [`AppState`] holds; settable until it becomes one.
pub struct Shared {
    pub directory: Arc<TenantDirectory>,
    pub store: Arc<dyn Store>,
    pub secrets: Arc<VerifiedSecretCache>,
    /// Where argon2id verifications run (see [`Argon2Workers`]).
    pub argon2: Arc<Argon2Workers>,
    pub metrics: Arc<metrics::Metrics>,
    /// Take the client address from `X-Forwarded-For` (set by a trusted proxy in front).
    pub trust_forwarded_for: bool,
    /// Current unix time in seconds; injectable so tests can move time.
    pub clock: Arc<dyn Fn() -> u64 + Send + Sync>,
}

impl Shared {
    pub fn new(
        directory: Arc<TenantDirectory>,
        store: Arc<dyn Store>,
        metrics: Arc<metrics::Metrics>,
    ) -> Self {
        Shared {
            directory,
            store,
            secrets: Arc::new(VerifiedSecretCache::new(100_000)),
            argon2: Argon2Workers::shared(),
            metrics,
            trust_forwarded_for: false,
            clock: Arc::new(gatehouse_store::unix_now),
        }
    }

    pub fn now(&self) -> u64 {
        (self.clock)()
    }
}
