//! Asking the Kubernetes API server whether it still accepts a ServiceAccount token
//! (TokenReview), for tenants that want a token bound to a pod to stop with the pod
//! (`TenantConfig::review_service_account_tokens`). The token service's only call out, and only
//! for those tenants; the binary provides the client that makes it.

use std::future::Future;
use std::pin::Pin;

/// What the API server says of a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Review {
    /// Whether it accepts the token at all (a bound pod or Secret deleted: no).
    pub authenticated: bool,
    /// The user the token authenticates (`system:serviceaccount:<namespace>:<name>`).
    pub username: String,
    /// That user's uid (the ServiceAccount's).
    pub uid: String,
}

/// A review under way; the error says why the API server could not be asked.
pub type Reviewing<'a> = Pin<Box<dyn Future<Output = Result<Review, String>> + Send + 'a>>;

/// Reviews tokens with the API server.
pub trait TokenReviewer: Send + Sync {
    /// Reviews `token` for `audiences` (the audiences it was verified for).
    fn review<'a>(&'a self, token: &'a str, audiences: &'a [String]) -> Reviewing<'a>;
}
