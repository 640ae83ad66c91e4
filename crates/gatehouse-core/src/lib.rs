//! The OAuth 2.0 protocol core of Gatehouse.
//!
//! Pure logic only: grants, client authentication rules, scopes, token minting and validation,
//! signing keys and the error vocabulary of RFC 6749. Nothing here knows about HTTP, Redis or
//! Kubernetes; callers pass parsed requests and the current time in, and get typed results or
//! one [`OAuthError`] back.
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod argon2_workers;
pub mod assertion;
pub mod client_auth;
pub mod clock;
mod compact;
pub mod config;
pub mod duration;
pub mod endpoints;
pub mod error;
pub mod grant;
pub mod hex;
pub mod id_token;
pub mod key_rotation;
pub mod keys;
pub mod model;
pub mod pkce;
pub mod random;
pub mod scope;
pub mod secret;
pub mod subject;
pub mod throttle;
pub mod token;
pub mod workload;

pub use config::{ClientConfig, TenantConfig};
pub use error::{ErrorCode, OAuthError};
pub use model::{ClientAuthMethod, GrantType, SigningAlgorithm, TokenFormat};

#[cfg(test)]
pub(crate) mod testing;
