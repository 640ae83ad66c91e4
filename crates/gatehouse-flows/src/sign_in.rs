//! Verifying a user's password with brute-force protection (`gatehouse_core::throttle`):
//! every attempt takes its place in the store's counts before argon2 runs, so a burst of
//! guesses gets no more verifications than the limits allow, however many race. An unknown
//! username costs the same argon2 verification as a wrong password, so timing tells nothing.

use crate::{Error, ServedTenant, Services, SignInOutcome};
use gatehouse_core::OAuthError;
use gatehouse_core::config::UserConfig;
use gatehouse_core::secret::{decoy_hash, verify_secret};
use gatehouse_core::throttle::{self, Verdict};
use gatehouse_store::records;
use std::net::IpAddr;
use std::time::Duration;
use tracing::Instrument;
use zeroize::Zeroizing;

/// Why a sign-in failed, in words safe to show: never whether the user exists.
pub const WRONG_CREDENTIALS: &str = "wrong username or password";
pub const LOCKED: &str = "too many failed sign-in attempts; try again later";

/// The user whose password this is, or `invalid_grant` ([`WRONG_CREDENTIALS`] or [`LOCKED`]).
///
/// # Errors
/// As above, the store failing, or the process shutting down.
#[tracing::instrument(
    target = "gatehouse::trace",
    level = "trace",
    name = "sign_in",
    skip_all
)]
pub async fn verify_password(
    services: &Services,
    tenant: &ServedTenant,
    username: &str,
    password: &str,
    address: Option<IpAddr>,
) -> Result<UserConfig, Error> {
    let name = tenant.name();
    let store = services.store();
    let window = throttle::WINDOW_SECS;
    let address = throttle::address_bucket(address);
    let address_key = throttle::address_key(&address);
    let unlocked_at = records::get::<Unlocked>(store, name, &throttle::user_key(username))
        .await?
        .map_or(0, |u| u.0);
    let pair_key = throttle::pair_key(username, unlocked_at, &address);
    let user_key = throttle::user_key(username);

    let address_attempts = store.record_failure(name, &address_key, window).await?;
    let pair_attempts = store.record_failure(name, &pair_key, window).await?;
    if throttle::judge_address(address_attempts, pair_attempts) == Verdict::Locked {
        tracing::info!(tenant = %name, "sign-in refused: locked out (this address)");
        services.observer.sign_in(name, SignInOutcome::Locked);
        return Err(OAuthError::invalid_grant(LOCKED).into());
    }
    let user_attempts = store.record_failure(name, &user_key, window).await?;
    let Verdict::Verify { delay_secs } = throttle::judge_user(user_attempts) else {
        tracing::warn!(tenant = %name, "sign-in refused: username locked after failures from many addresses");
        services.observer.sign_in(name, SignInOutcome::Locked);
        return Err(OAuthError::invalid_grant(LOCKED).into());
    };
    if delay_secs > 0 {
        tracing::info!(tenant = %name, delay_secs, "sign-in slowed down: username under attack");
        tokio::time::sleep(Duration::from_secs(delay_secs)).await;
    }

    let user = tenant.config.user(username).cloned();
    let hash = user
        .as_ref()
        .map_or_else(|| decoy_hash().to_string(), |u| u.password_hash.clone());
    let presented = Zeroizing::new(password.to_string());
    let matches = match services
        .argon2
        .try_run(move || verify_secret(&presented, &hash))
        .instrument(tracing::trace_span!(target: "gatehouse::trace", "argon2"))
        .await
    {
        Ok(matches) => matches,
        Err(refused) => {
            // Not checked, so no failure: a flood that fills the queue must not lock out the
            // people who retry after the 503.
            store.forgive_failure(name, &address_key).await?;
            store.forgive_failure(name, &user_key).await?;
            store.forgive_failure(name, &pair_key).await?;
            return Err(refused.into());
        }
    };
    match user {
        Some(user) if matches => {
            // A success is no failure: its places in the counts are given back.
            store.forgive_failure(name, &address_key).await?;
            store.forgive_failure(name, &user_key).await?;
            store.clear_failures(name, &pair_key).await?;
            services.observer.sign_in(name, SignInOutcome::Success);
            Ok(user)
        }
        _ => {
            services.observer.sign_in(name, SignInOutcome::Failure);
            Err(OAuthError::invalid_grant(WRONG_CREDENTIALS).into())
        }
    }
}

/// Signs `username` out everywhere: every sign-in up to now is over — its browser sessions,
/// the grants that came of it (refresh tokens, codes and device codes not yet redeemed) and
/// their access tokens at introspection and userinfo — while a sign-in after this second is
/// not. For operators (`gatehouse sign-out-user`), after a stolen device or a leaked
/// password. Remembered for `keep_secs`: longer than anything issued before can live.
///
/// # Errors
/// The store failing.
pub async fn sign_out_everywhere(
    store: &dyn gatehouse_store::Store,
    tenant: &str,
    username: &str,
    now: u64,
    keep_secs: u64,
) -> Result<(), Error> {
    store
        .sign_out_user(tenant, username, now, now.saturating_add(keep_secs))
        .await?;
    Ok(())
}

/// Lets `username` sign in again at once, from everywhere: its count is cleared and every
/// (username, address) count starts afresh. For operators (`gatehouse unlock-user`).
///
/// # Errors
/// The store failing.
pub async fn unlock(
    store: &dyn gatehouse_store::Store,
    tenant: &str,
    username: &str,
    now: u64,
) -> Result<(), Error> {
    let key = throttle::user_key(username);
    store.clear_failures(tenant, &key).await?;
    // Kept as long as a pair count lives: once it is gone, every pair key named with it (or
    // written before it) has expired too, and no later unlock has the same time.
    records::put(
        store,
        tenant,
        &key,
        &Unlocked(now),
        now + throttle::WINDOW_SECS,
    )
    .await?;
    Ok(())
}

/// When a username was last unlocked (unix seconds).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
struct Unlocked(u64);

impl records::Record for Unlocked {
    const KIND: gatehouse_store::RecordKind = gatehouse_store::RecordKind::Unlock;
}
