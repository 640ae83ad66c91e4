//! The error vocabulary of RFC 6749 section 5.2 (and the codes later RFCs add).
//!
//! One enum of codes, one error type carrying a human description. Only the HTTP layer decides
//! status codes and headers; this module only says what went wrong.

use std::fmt;

/// Error codes a client can see on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// A parameter is missing, repeated, or malformed.
    InvalidRequest,
    /// Client authentication failed.
    InvalidClient,
    /// The code, refresh token, device code or assertion is not valid (any more).
    InvalidGrant,
    /// The client may not use this grant.
    UnauthorizedClient,
    /// The tenant does not enable this grant.
    UnsupportedGrantType,
    /// A scope is unknown, or not the client's to ask for.
    InvalidScope,
    /// RFC 8707: a `resource` the client may not ask for.
    InvalidTarget,
    /// RFC 7009: the token type cannot be revoked.
    UnsupportedTokenType,
    /// The person (or the tenant's policy) said no.
    AccessDenied,
    /// RFC 6749 4.1.2.1.
    UnsupportedResponseType,
    /// OpenID Connect Core 3.1.2.6: `prompt=none` and nobody is signed in.
    LoginRequired,
    /// OpenID Connect Core 3.1.2.6: `prompt=none` and consent is missing.
    ConsentRequired,
    /// OpenID Connect Core 3.1.2.6.
    RequestNotSupported,
    /// RFC 6750: a missing, expired or revoked bearer token.
    InvalidToken,
    /// RFC 6750: the token lacks a scope the resource needs.
    InsufficientScope,
    /// RFC 8628 section 3.5.
    AuthorizationPending,
    /// RFC 8628 section 3.5: polling faster than the interval.
    SlowDown,
    /// RFC 8628 section 3.5: the device code expired.
    ExpiredToken,
    /// Something broke on our side.
    ServerError,
    /// The store is unreachable or the server is shutting down; retry.
    TemporarilyUnavailable,
}

impl ErrorCode {
    /// The code as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::InvalidTarget => "invalid_target",
            ErrorCode::UnsupportedTokenType => "unsupported_token_type",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::LoginRequired => "login_required",
            ErrorCode::ConsentRequired => "consent_required",
            ErrorCode::RequestNotSupported => "request_not_supported",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::AuthorizationPending => "authorization_pending",
            ErrorCode::SlowDown => "slow_down",
            ErrorCode::ExpiredToken => "expired_token",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An OAuth error: a code from the RFCs plus a description safe to show the client.
///
/// Descriptions never contain secrets or tokens; they may name parameters and client ids.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {description}")]
pub struct OAuthError {
    /// What the client is told went wrong, by RFC name.
    pub code: ErrorCode,
    /// In words; safe to show (never a secret or token).
    pub description: String,
}

impl OAuthError {
    /// An error of any code.
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        OAuthError {
            code,
            description: description.into(),
        }
    }
    /// `invalid_request`.
    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, d)
    }
    /// `invalid_client`.
    pub fn invalid_client(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidClient, d)
    }
    /// `invalid_grant`.
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidGrant, d)
    }
    /// `unauthorized_client`: the client may not use this grant.
    pub fn unauthorized_client(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::UnauthorizedClient, d)
    }
    /// `unsupported_grant_type`: the tenant does not enable this grant.
    pub fn unsupported_grant_type(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::UnsupportedGrantType, d)
    }
    /// `invalid_scope`.
    pub fn invalid_scope(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidScope, d)
    }
    /// `invalid_target` (RFC 8707).
    pub fn invalid_target(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidTarget, d)
    }
    /// `server_error`: our fault; the description stays generic.
    pub fn server_error(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::ServerError, d)
    }
    /// `temporarily_unavailable`: retry shortly.
    pub fn temporarily_unavailable(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::TemporarilyUnavailable, d)
    }
}
