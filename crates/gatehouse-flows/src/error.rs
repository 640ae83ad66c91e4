//! The one error of the flows. A refusal carries the RFC error the client sees; the other
//! variants are trouble the client only learns the kind of (`temporarily_unavailable`,
//! `server_error`) while the log gets the detail. No conversion here logs anything: the HTTP
//! layer logs each failed request once.

use gatehouse_core::keys::KeyError;
use gatehouse_core::random::NoRandomness;
use gatehouse_core::{ErrorCode, OAuthError};
use gatehouse_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The protocol says no; the error goes to the client as it is.
    #[error(transparent)]
    Refused(#[from] OAuthError),
    /// A sign-in form whose pending request is gone: expired, or already completed.
    #[error("the sign-in request has expired or was already completed")]
    SignInExpired,
    /// A sign-in form posted from another browser, or with the wrong CSRF token.
    #[error("the form was not opened in this browser")]
    ForeignForm,
    /// The store did not answer; the request may be retried.
    #[error("store unavailable: {0}")]
    StoreUnavailable(String),
    #[error("store: {0}")]
    Store(StoreError),
    #[error(transparent)]
    NoRandomness(#[from] NoRandomness),
    #[error("signing failed: {0}")]
    Signing(KeyError),
    /// The argon2 workers stopped: the process is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// Too many password and secret checks are waiting already.
    #[error("the argon2 queue is full")]
    Busy,
    /// The Kubernetes API server could not review a ServiceAccount token (TokenReview).
    #[error("token review unavailable: {0}")]
    ReviewUnavailable(String),
}

impl From<gatehouse_core::argon2_workers::Refused> for Error {
    fn from(e: gatehouse_core::argon2_workers::Refused) -> Self {
        match e {
            gatehouse_core::argon2_workers::Refused::Busy => Error::Busy,
            gatehouse_core::argon2_workers::Refused::Stopped(_) => Error::ShuttingDown,
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(reason) => Error::StoreUnavailable(reason),
            other => Error::Store(other),
        }
    }
}

impl Error {
    /// What the client is told.
    #[must_use]
    pub fn to_oauth(&self) -> OAuthError {
        match self {
            Error::Refused(e) => e.clone(),
            Error::SignInExpired => OAuthError::invalid_request(
                "this sign-in request has expired or was already completed",
            ),
            Error::ForeignForm => OAuthError::new(
                ErrorCode::AccessDenied,
                "this form was not opened in this browser, or it has expired",
            ),
            Error::StoreUnavailable(_) => {
                OAuthError::temporarily_unavailable("the token store is unavailable; retry shortly")
            }
            Error::Store(_) => OAuthError::server_error("internal storage error"),
            Error::NoRandomness(e) => (*e).into(),
            Error::Signing(_) => OAuthError::server_error("could not sign the token"),
            Error::ShuttingDown => {
                OAuthError::temporarily_unavailable("the server is shutting down")
            }
            Error::ReviewUnavailable(_) => OAuthError::temporarily_unavailable(
                "the Kubernetes API server could not review the ServiceAccount token; retry shortly",
            ),
            Error::Busy => OAuthError::temporarily_unavailable(
                "too many sign-ins are being checked; retry in a moment",
            ),
        }
    }

    /// The RFC error code.
    #[must_use]
    pub fn code(&self) -> ErrorCode {
        self.to_oauth().code
    }

    /// What only the log may say: the cause behind a `server_error` or
    /// `temporarily_unavailable` (never a secret: store and key errors name keys, not values).
    #[must_use]
    pub fn detail(&self) -> Option<String> {
        match self {
            Error::Refused(_) | Error::SignInExpired | Error::ForeignForm => None,
            other => Some(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_trouble_reaches_the_client_only_as_its_kind() {
        let e: Error = StoreError::Unavailable("connection refused".into()).into();
        assert_eq!(e.code(), ErrorCode::TemporarilyUnavailable);
        assert!(!e.to_oauth().description.contains("refused"));
        assert_eq!(
            e.detail().as_deref(),
            Some("store unavailable: connection refused")
        );
        let e = Error::Signing(KeyError::Sign);
        assert_eq!(e.code(), ErrorCode::ServerError);
        let e: Error = OAuthError::invalid_grant("no").into();
        assert_eq!((e.code(), e.detail()), (ErrorCode::InvalidGrant, None));
    }
}
