//! What each endpoint of a tenant does, without HTTP: the half of every grant and browser flow
//! that touches the store. Functions take the [`Services`] (store, clock, randomness, argon2
//! workers), the tenant as served, and parsed input; they return typed results or one
//! [`Error`]. The HTTP layer extracts, calls one flow, and renders what it returns; the
//! protocol rules themselves (claims, PKCE, scopes, polling intervals) stay in
//! `gatehouse-core`, which knows neither HTTP nor the store.
//!
//! A newcomer finds a behaviour by its endpoint: [`token`] (one module per grant under it),
//! [`introspection`], [`revocation`], [`userinfo`], [`device_authorization`], and the browser
//! flow ([`browser`]: authorization, sign-in, consent, device confirmation, sign-out).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod assertions;
pub mod browser;
pub mod client_auth;
pub mod codes;
pub mod device_authorization;
pub mod directory;
pub mod error;
pub mod family;
pub mod introspection;
pub mod metadata;
pub mod mint;
pub mod params;
pub mod redirect;
pub mod refresh_tokens;
pub mod revocation;
pub mod sign_in;
pub mod tenant;
pub mod token;
pub mod token_review;
mod unanswered;
pub mod userinfo;
pub mod verified_tokens;

#[cfg(test)]
mod testing;

pub use directory::TenantDirectory;
pub use error::Error;
pub use params::Params;
pub use tenant::ServedTenant;

use gatehouse_core::argon2_workers::Argon2Workers;
use gatehouse_core::clock::Clock;
use gatehouse_core::random::Randomness;
use gatehouse_core::secret::VerifiedSecretCache;
use gatehouse_store::Store;
use std::sync::Arc;

/// Client secrets remembered as verified (see [`VerifiedSecretCache`]): enough for every client
/// of a large installation, about 3 MiB when full.
const VERIFIED_SECRETS: usize = 100_000;

/// How a password sign-in ended (the sign-in page and the password grant alike).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignInOutcome {
    Success,
    /// A wrong username or password.
    Failure,
    /// Refused without checking: too many failures (brute-force protection).
    Locked,
}

impl SignInOutcome {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            SignInOutcome::Success => "success",
            SignInOutcome::Failure => "failure",
            SignInOutcome::Locked => "locked",
        }
    }
}

/// What the flows report as it happens, for the process's metrics (the HTTP layer counts);
/// by default nobody listens.
pub trait Observer: Send + Sync {
    /// A password sign-in of `tenant` ended.
    fn sign_in(&self, _tenant: &str, _outcome: SignInOutcome) {}
}

/// Reports nowhere.
pub struct NoObserver;

impl Observer for NoObserver {}

/// What every flow works with: the store, the clock, the randomness, and where argon2 runs.
#[derive(Clone)]
pub struct Services {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub random: Arc<dyn Randomness>,
    /// Where argon2id verifications run (see [`Argon2Workers`]).
    pub argon2: Arc<Argon2Workers>,
    /// Client secrets already verified, so the token endpoint does not pay argon2 per request.
    pub secrets: Arc<VerifiedSecretCache>,
    /// Checks of one and the same client secret take turns (see [`client_auth::SameSecretChecks`]).
    pub secret_checks: Arc<client_auth::SameSecretChecks>,
    /// The API server's TokenReview, for tenants that review ServiceAccount tokens; `None`
    /// where the process has no Kubernetes access (their workload sign-ins then answer 503).
    pub token_review: Option<Arc<dyn token_review::TokenReviewer>>,
    /// Who hears of sign-ins (see [`Observer`]).
    pub observer: Arc<dyn Observer>,
}

impl Services {
    #[must_use]
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, random: Arc<dyn Randomness>) -> Self {
        Services {
            store,
            clock,
            random,
            argon2: Argon2Workers::shared(),
            secrets: Arc::new(VerifiedSecretCache::new(VERIFIED_SECRETS)),
            secret_checks: Arc::default(),
            token_review: None,
            observer: Arc::new(NoObserver),
        }
    }

    /// The same services, reviewing ServiceAccount tokens with `reviewer`.
    #[must_use]
    pub fn with_token_review(mut self, reviewer: Arc<dyn token_review::TokenReviewer>) -> Self {
        self.token_review = Some(reviewer);
        self
    }

    /// Reports sign-ins to `observer`.
    #[must_use]
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = observer;
        self
    }

    /// Unix seconds, from the one clock.
    #[must_use]
    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    fn store(&self) -> &dyn Store {
        &*self.store
    }
}
