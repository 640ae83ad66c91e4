//! The reconcile core shared by `gatehouse standalone` and the Kubernetes operator.
//!
//! [`reconcile`] is pure: the observed Tenants, OAuthClients and Secrets (and the time) go in;
//! the store registrations, each object's status and the Secrets to create come out.
//! [`publish::Publisher`] then makes the store match, writing only what changed. Standalone
//! feeds the core from files; the operator ([`operator`]) from watches.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod cluster;
pub mod conditions;
pub mod events;
pub mod issuers;
pub mod operator;
pub mod publish;
pub mod rbac;
pub mod reconcile;
pub mod secrets;
pub mod standalone;
pub mod users;

pub use reconcile::{ClientOutcome, Observed, Reconciled, SecretRequest, TenantOutcome, reconcile};
