//! Client authentication for the token, introspection, revocation and device authorization
//! endpoints (RFC 6749 section 2.3). The cheap checks are the core's; what needs the store
//! (assertion replay, failure counts) or argon2 (a secret the cache cannot vouch for) happens
//! here. Argon2 runs on its own bounded workers so a burst of wrong secrets never stalls the
//! async workers nor queues every sign-in behind it.
//!
//! Every way of failing looks the same from outside (one message, and an unknown client costs
//! an argon2 verification like a wrong secret), so the endpoint tells nobody which client ids
//! exist; the log says what happened. Wrong secrets are counted per (client, address) and per
//! address before argon2 runs, as sign-in counts passwords.

use crate::{Error, Params, ServedTenant, Services, assertions};
use gatehouse_core::client_auth::{
    AuthProgress, PresentedCredentials, finish_secret_check, precheck, presented_credentials,
};
use gatehouse_core::secret::{decoy_hash, verify_secret};
use gatehouse_core::throttle;
use gatehouse_core::token::token_digest;
use gatehouse_core::{ClientConfig, ErrorCode, OAuthError};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use tracing::Instrument;
use zeroize::Zeroizing;

/// What the client is told whenever its authentication fails.
pub const AUTHENTICATION_FAILED: &str = "client authentication failed";
/// What the client is told once its address has failed too often.
pub const TOO_MANY_FAILURES: &str = "too many failed client authentications; try again later";

/// The credentials of a request: its `Authorization` header (as text), its parameters, and
/// the address it came from (for the failure counts).
pub struct Credentials<'a> {
    pub authorization: Option<&'a str>,
    pub params: &'a Params,
    pub address: Option<IpAddr>,
}

/// The client the credentials prove, or why they do not.
///
/// # Errors
/// `invalid_client` (or `invalid_request` for a request mixing methods), the store failing,
/// too many checks waiting (`temporarily_unavailable`), or the process shutting down.
#[tracing::instrument(
    target = "gatehouse::trace",
    level = "trace",
    name = "client_authentication",
    skip_all
)]
pub async fn authenticate(
    services: &Services,
    tenant: &ServedTenant,
    credentials: Credentials<'_>,
) -> Result<Arc<ClientConfig>, Error> {
    let params = credentials.params;
    let assertion = params
        .get("client_assertion")
        .map(|a| (params.get("client_assertion_type"), a));
    if assertion.is_none() && params.get("client_assertion_type").is_some() {
        return Err(
            OAuthError::invalid_request("client_assertion_type without client_assertion").into(),
        );
    }
    let creds = presented_credentials(
        credentials.authorization,
        params.get("client_id"),
        params.get("client_secret"),
        assertion,
    )?;
    let address = throttle::address_bucket(credentials.address);
    let Some(client) = tenant.client(creds.client_id()).cloned() else {
        // Costs and counts what a wrong secret does, so neither time nor answer tells.
        return Err(decoy_failure(services, tenant, &creds, &address, "unknown client").await);
    };
    let progress = match precheck(tenant.name(), &client, &creds, &services.secrets) {
        Ok(progress) => progress,
        // A secret sent by the wrong method (or to a client without one) fails like a wrong
        // secret too.
        Err(e) => {
            return Err(decoy_failure(services, tenant, &creds, &address, &e.description).await);
        }
    };
    match progress {
        AuthProgress::Authenticated => Ok(client),
        AuthProgress::VerifyAssertion => {
            let PresentedCredentials::Assertion { assertion, .. } = &creds else {
                return Err(failed(
                    tenant,
                    &client.client_id,
                    "client assertion missing",
                ));
            };
            if assertions::has_workload_identity(&client) {
                return match assertions::verify_workload_token(services, tenant, &client, assertion)
                    .await
                {
                    Ok(_) => Ok(client),
                    Err(assertions::WorkloadRefusal::Unavailable(e)) => Err(e),
                    Err(assertions::WorkloadRefusal::Refused(why)) => {
                        Err(failed(tenant, &client.client_id, &why))
                    }
                };
            }
            let claims = assertions::verify_once(services, tenant, &client, assertion)
                .await
                .map_err(|e| match e {
                    // Only the holder of the client's key can replay a valid assertion: telling
                    // it so reveals nothing.
                    Error::Refused(e) if e.description == assertions::REPLAYED => {
                        Error::Refused(OAuthError::invalid_client(e.description))
                    }
                    Error::Refused(e) if e.code == ErrorCode::InvalidGrant => {
                        failed(tenant, &client.client_id, &e.description)
                    }
                    other => other,
                })?;
            if claims.iss != client.client_id || claims.sub != client.client_id {
                return Err(failed(
                    tenant,
                    &client.client_id,
                    "the client assertion's iss and sub must both be the client id",
                ));
            }
            Ok(client)
        }
        AuthProgress::NeedsArgon2 { phc } => {
            // A burst of requests with the same secret (a client starting many workers) waits
            // for the first check: then the secret is known good, or each one is counted.
            let secret = presented_secret(&creds).unwrap_or_default();
            let _turn = services
                .secret_checks
                .take_turn(tenant.name(), &client.client_id, secret)
                .await;
            if let Ok(AuthProgress::Authenticated) =
                precheck(tenant.name(), &client, &creds, &services.secrets)
            {
                return Ok(client);
            }
            let attempt = Attempt::reserve(services, tenant, &client.client_id, &address).await?;
            let cache = services.secrets.clone();
            let tenant_name = tenant.name().to_string();
            let client_id = client.client_id.clone();
            let checked = match services
                .argon2
                .try_run(move || {
                    finish_secret_check(&tenant_name, &client_id, &phc, &creds, &cache)
                })
                .instrument(tracing::trace_span!(target: "gatehouse::trace", "argon2"))
                .await
            {
                Ok(checked) => checked,
                Err(refused) => {
                    attempt.not_checked().await?;
                    return Err(refused.into());
                }
            };
            match checked {
                Ok(()) => {
                    attempt.succeeded().await?;
                    Ok(client)
                }
                Err(e) => Err(failed(tenant, &client.client_id, &e.description)),
            }
        }
    }
}

/// Fails an authentication that never reaches the registered secret's check, at the same cost
/// and count as a wrong secret when a secret was presented.
async fn decoy_failure(
    services: &Services,
    tenant: &ServedTenant,
    creds: &PresentedCredentials,
    address: &str,
    reason: &str,
) -> Error {
    let client_id = creds.client_id();
    let Some(secret) = presented_secret(creds) else {
        return failed(tenant, client_id, reason);
    };
    let attempt = match Attempt::reserve(services, tenant, client_id, address).await {
        Ok(attempt) => attempt,
        Err(e) => return e,
    };
    let secret = Zeroizing::new(secret.to_string());
    if let Err(refused) = services
        .argon2
        .try_run(move || verify_secret(&secret, decoy_hash()))
        .instrument(tracing::trace_span!(target: "gatehouse::trace", "argon2"))
        .await
    {
        return match attempt.not_checked().await {
            Ok(()) => refused.into(),
            Err(e) => e,
        };
    }
    // The attempt keeps its place: it is a failure.
    failed(tenant, client_id, reason)
}

/// The one answer to a failed authentication; the reason goes to the log only.
fn failed(tenant: &ServedTenant, client_id: &str, reason: &str) -> Error {
    tracing::info!(tenant = %tenant.name(), client = %client_id, %reason, "client authentication failed");
    OAuthError::invalid_client(AUTHENTICATION_FAILED).into()
}

fn presented_secret(creds: &PresentedCredentials) -> Option<&str> {
    match creds {
        PresentedCredentials::Basic { secret, .. } | PresentedCredentials::Post { secret, .. } => {
            Some(secret.as_str())
        }
        PresentedCredentials::ClientIdOnly { .. } | PresentedCredentials::Assertion { .. } => None,
    }
}

/// An attempt's places in the failure counts, taken before argon2 runs so that the limits
/// hold however many attempts race; given back when the secret turns out right.
struct Attempt<'a> {
    services: &'a Services,
    tenant: &'a str,
    keys: [String; 2],
}

impl<'a> Attempt<'a> {
    async fn reserve(
        services: &'a Services,
        tenant: &'a ServedTenant,
        client_id: &str,
        address: &str,
    ) -> Result<Attempt<'a>, Error> {
        let store = services.store();
        let name = tenant.name();
        let keys = [
            throttle::client_address_key(address),
            throttle::client_pair_key(client_id, address),
        ];
        let by_address = store
            .record_failure(name, &keys[0], throttle::WINDOW_SECS)
            .await?;
        let by_pair = store
            .record_failure(name, &keys[1], throttle::WINDOW_SECS)
            .await?;
        if !throttle::client_may_try(by_address, by_pair) {
            tracing::info!(tenant = %name, client = %client_id, "client authentication refused: too many failures from this address");
            return Err(OAuthError::invalid_client(TOO_MANY_FAILURES).into());
        }
        Ok(Attempt {
            services,
            tenant: name,
            keys,
        })
    }

    /// The check did not run (the argon2 queue was full): the attempt is no failure.
    async fn not_checked(self) -> Result<(), Error> {
        let store = self.services.store();
        for key in &self.keys {
            store.forgive_failure(self.tenant, key).await?;
        }
        Ok(())
    }

    async fn succeeded(self) -> Result<(), Error> {
        let store = self.services.store();
        store.forgive_failure(self.tenant, &self.keys[0]).await?;
        store.clear_failures(self.tenant, &self.keys[1]).await?;
        Ok(())
    }
}

/// Checks of one and the same (tenant, client, secret) run one at a time, so that the first
/// success lets the others through from the cache instead of each costing argon2 and a place
/// in the failure counts. Only digests are kept, and only while someone waits.
#[derive(Default)]
pub struct SameSecretChecks {
    turns: std::sync::Mutex<HashMap<[u8; 32], Arc<tokio::sync::Mutex<()>>>>,
}

/// The right to check one secret now; the next in line goes when it is dropped.
pub struct Turn<'a> {
    checks: &'a SameSecretChecks,
    key: [u8; 32],
    line: Arc<tokio::sync::Mutex<()>>,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl SameSecretChecks {
    async fn take_turn(&self, tenant: &str, client_id: &str, secret: &str) -> Turn<'_> {
        let key = token_digest(&format!("{tenant}\0{client_id}\0{secret}"));
        let line = {
            let mut turns = self
                .turns
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            turns.entry(key).or_default().clone()
        };
        let guard = line.clone().lock_owned().await;
        Turn {
            checks: self,
            key,
            line,
            _guard: guard,
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut turns = self
            .checks
            .turns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Nobody else in line (the map's handle, this turn's, and the guard's): forget the key.
        if Arc::strong_count(&self.line) <= 3 {
            turns.remove(&self.key);
        }
    }
}
