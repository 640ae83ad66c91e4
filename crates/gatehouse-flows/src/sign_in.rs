//! Verifying a user's password with brute-force protection: counts of failures per username
//! and per client address live in the store (shared by every replica); an unknown username
//! costs the same argon2 verification as a wrong password, so timing tells nothing.

use crate::{Error, ServedTenant, Services};
use gatehouse_core::OAuthError;
use gatehouse_core::config::UserConfig;
use gatehouse_core::secret::{decoy_hash, verify_secret};
use gatehouse_core::throttle;
use std::net::IpAddr;
use zeroize::Zeroizing;

/// Why a sign-in failed, in words safe to show: never whether the user exists.
pub const WRONG_CREDENTIALS: &str = "wrong username or password";
pub const LOCKED: &str = "too many failed sign-in attempts; try again later";

/// The user whose password this is, or `invalid_grant` ([`WRONG_CREDENTIALS`] or [`LOCKED`]).
///
/// # Errors
/// As above, the store failing, or the process shutting down.
pub async fn verify_password(
    services: &Services,
    tenant: &ServedTenant,
    username: &str,
    password: &str,
    address: Option<IpAddr>,
) -> Result<UserConfig, Error> {
    let name = tenant.name();
    let store = services.store();
    let user_key = throttle::user_key(username);
    let address_key = address.map(|a| throttle::address_key(&a.to_string()));
    let user_failures = store.failure_count(name, &user_key).await?;
    let address_failures = match &address_key {
        Some(k) => store.failure_count(name, k).await?,
        None => 0,
    };
    if throttle::locked(user_failures, address_failures) {
        tracing::info!(tenant = %name, "sign-in refused: locked out");
        return Err(OAuthError::invalid_grant(LOCKED).into());
    }
    let user = tenant.config.user(username).cloned();
    let hash = user
        .as_ref()
        .map_or_else(|| decoy_hash().to_string(), |u| u.password_hash.clone());
    let presented = Zeroizing::new(password.to_string());
    let matches = services
        .argon2
        .run(move || verify_secret(&presented, &hash))
        .await
        .map_err(|_| Error::ShuttingDown)?;
    match user {
        Some(user) if matches => {
            if user_failures > 0 {
                store.clear_failures(name, &user_key).await?;
            }
            Ok(user)
        }
        _ => {
            store
                .record_failure(name, &user_key, throttle::WINDOW_SECS)
                .await?;
            if let Some(k) = &address_key {
                store.record_failure(name, k, throttle::WINDOW_SECS).await?;
            }
            Err(OAuthError::invalid_grant(WRONG_CREDENTIALS).into())
        }
    }
}
