//! Tenants' trusted issuers (`spec.trustedIssuers`): their keys as last read, when to read them
//! again, and what that means for the clients bound to them. The operator and standalone read
//! the keys ([`fetch::Fetcher`]) and write them into those clients' registrations, so the
//! token service never calls out. A failed read keeps the last good keys for the issuer's
//! grace period; after it, its tokens are refused until a read succeeds.

pub mod fetch;

use fetch::{Fetched, Fetcher};
use gatehouse_core::duration::parse_duration;
use gatehouse_crd::Tenant;
use gatehouse_crd::tenant::{TrustedIssuerSpec, TrustedIssuerStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often an issuer's keys are read again after a good read, by default.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
/// How soon a failed read is tried again (or the refresh interval, if shorter).
const RETRY: Duration = Duration::from_secs(30);
/// How long a reconcile waits for the reads it started; slower ones finish in the background.
pub const READ_WAIT: Duration = Duration::from_secs(2);
/// How soon a tenant is looked at again while a read of its issuers is in flight.
const IN_FLIGHT_POLL: Duration = Duration::from_secs(2);

/// The states `status.trustedIssuers[].state` shows.
pub mod states {
    pub const READY: &str = "Ready";
    pub const PENDING: &str = "Pending";
    pub const UNREACHABLE: &str = "IssuerUnreachable";
    pub const KEYS_EXPIRED: &str = "KeysExpired";
}

/// What a client bound to a trusted issuer can be given.
#[derive(Clone, Debug, PartialEq)]
pub enum IssuerKeys {
    /// Keys within their grace period.
    Current { issuer: String, jwks: Value },
    /// None read by this process yet, but an earlier one's read of the same issuer is within
    /// the grace period: the store keeps the registration it has.
    Held { why: String },
    /// No usable keys: none ever read, or the last read is older than the grace period. The
    /// client stays registered (its tokens and grants are kept) but no token authenticates it.
    Missing { why: String, expired: bool },
}

/// One trusted issuer of one tenant.
#[derive(Clone, Debug)]
struct Entry {
    /// The spec it was read for: another issuer or URL starts afresh.
    issuer: String,
    jwks_uri: Option<String>,
    grace_secs: u64,
    good: Option<(Fetched, u64)>,
    /// A good read an earlier process made (from the Tenant's status), without its keys.
    earlier_read_at: Option<u64>,
    error: Option<String>,
    next_read_at: u64,
    /// What [`TrustedKeys::report`] last reported, to tell when bound clients need
    /// reconciling (a read, or a grace period running out).
    reported: Option<IssuerKeys>,
    /// A read is in flight.
    reading: bool,
}

impl Entry {
    fn new(spec: &TrustedIssuerSpec, earlier_read_at: Option<u64>) -> Self {
        Entry {
            issuer: spec.issuer.clone(),
            jwks_uri: spec.jwks_uri.clone(),
            grace_secs: grace_secs(spec),
            good: None,
            earlier_read_at,
            error: None,
            next_read_at: 0,
            reported: None,
            reading: false,
        }
    }

    /// Records a read that started at `started`.
    fn record(
        &mut self,
        tenant: &str,
        read: Result<Fetched, fetch::FetchError>,
        started: u64,
        refresh: Duration,
    ) {
        self.reading = false;
        match read {
            Ok(good) => {
                if self.error.is_some() {
                    tracing::info!(tenant, issuer = %self.issuer, "trusted issuer's keys read again");
                }
                self.good = Some((good, started));
                self.error = None;
                self.next_read_at = started + refresh.as_secs().max(1);
            }
            Err(e) => {
                tracing::warn!(tenant, issuer = %self.issuer, error = %e, "cannot read a trusted issuer's keys; the last keys read keep working for its grace period");
                self.error = Some(e.to_string());
                self.next_read_at = started + refresh.min(RETRY).as_secs().max(1);
            }
        }
    }

    fn is_for(&self, spec: &TrustedIssuerSpec) -> bool {
        self.issuer == spec.issuer && self.jwks_uri == spec.jwks_uri
    }

    fn last_read_at(&self) -> Option<u64> {
        self.good
            .as_ref()
            .map(|(_, at)| *at)
            .or(self.earlier_read_at)
    }

    fn valid_until(&self) -> Option<u64> {
        self.last_read_at()
            .map(|at| at.saturating_add(self.grace_secs))
    }

    fn keys(&self, now: u64) -> IssuerKeys {
        let failed = self
            .error
            .as_ref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        if self.valid_until().is_some_and(|until| now >= until) {
            return IssuerKeys::Missing {
                why: format!(
                    "the keys of {} were last read longer ago than its gracePeriod{failed}",
                    self.issuer
                ),
                expired: true,
            };
        }
        match (&self.good, self.earlier_read_at) {
            (Some((fetched, _)), _) => IssuerKeys::Current {
                issuer: self.issuer.clone(),
                jwks: fetched.jwks.clone(),
            },
            (None, Some(_)) => IssuerKeys::Held {
                why: format!("the keys of {} are not read yet{failed}", self.issuer),
            },
            (None, None) => IssuerKeys::Missing {
                why: format!("the keys of {} are not read yet{failed}", self.issuer),
                expired: false,
            },
        }
    }
}

/// The grace period in whole seconds, rounded up: `500ms` is not zero.
fn grace_secs(spec: &TrustedIssuerSpec) -> u64 {
    parse_duration(&spec.grace_period).map_or(0, |d| {
        u64::try_from(d.as_millis().div_ceil(1000)).unwrap_or(u64::MAX)
    })
}

/// Every tenant's trusted issuers as last read.
pub struct TrustedKeys {
    /// Shared with the reads in flight, which record their results themselves.
    entries: Entries,
    refresh: Duration,
}

impl Default for TrustedKeys {
    fn default() -> Self {
        TrustedKeys::new(DEFAULT_REFRESH)
    }
}

type Entries = Arc<Mutex<HashMap<(String, String), Entry>>>;

/// One read in flight: when it ends, by whatever path, its entry is no longer being read.
struct InFlight {
    entries: Entries,
    key: (String, String),
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut entries) = self.entries.lock()
            && let Some(entry) = entries.get_mut(&self.key)
        {
            entry.reading = false;
        }
    }
}

/// Reads started by [`TrustedKeys::start_reads`]. They go on by themselves: a slow issuer's
/// read records its result whenever it ends, for the next reconcile to find.
#[must_use = "reads go on anyway; settle() waits for them, for a while"]
pub struct Reads(Vec<tokio::task::JoinHandle<()>>);

impl Reads {
    /// Waits at most `within` for the reads to end: one hanging issuer must not hold up the
    /// reconcile of its tenant (nor, in standalone, of every other tenant).
    pub async fn settle(self, within: Duration) {
        let _ = tokio::time::timeout(within, futures::future::join_all(self.0)).await;
    }
}

impl TrustedKeys {
    /// Keys are read again every `refresh` after a good read.
    #[must_use]
    pub fn new(refresh: Duration) -> Self {
        TrustedKeys {
            entries: Arc::new(Mutex::new(HashMap::new())),
            refresh,
        }
    }

    /// Reads the keys of `tenant`'s issuers that are due, waiting at most [`READ_WAIT`] for
    /// them, and reports as [`Self::report`] does.
    pub async fn refresh(
        &self,
        tenant: &Tenant,
        fetcher: &Fetcher,
        now: u64,
    ) -> (Vec<String>, Option<u64>) {
        self.start_reads(tenant, fetcher, now)
            .settle(READ_WAIT)
            .await;
        self.report(tenant, now)
    }

    /// Starts reading the keys of `tenant`'s issuers whose time has come (all of them the
    /// first time), each in a task of its own, one read per issuer at a time; forgets issuers
    /// no longer listed.
    pub fn start_reads(&self, tenant: &Tenant, fetcher: &Fetcher, now: u64) -> Reads {
        let tenant_name = tenant.name_any();
        let due: Vec<TrustedIssuerSpec> = {
            let Ok(mut entries) = self.entries.lock() else {
                return Reads(Vec::new());
            };
            entries.retain(|(t, name), _| {
                t != &tenant_name || tenant.spec.trusted_issuers.iter().any(|s| &s.name == name)
            });
            let mut due = Vec::new();
            for spec in &tenant.spec.trusted_issuers {
                let key = (tenant_name.clone(), spec.name.clone());
                let fresh = entries.get(&key).is_none_or(|e| !e.is_for(spec));
                if fresh {
                    entries.insert(key.clone(), Entry::new(spec, earlier_read(tenant, spec)));
                }
                if let Some(entry) = entries.get_mut(&key) {
                    entry.grace_secs = grace_secs(spec);
                    if entry.next_read_at <= now && !entry.reading {
                        entry.reading = true;
                        due.push(spec.clone());
                    }
                }
            }
            due
        };
        let reads = due
            .into_iter()
            .map(|spec| {
                let entries = Arc::clone(&self.entries);
                let fetcher = fetcher.clone();
                let tenant_name = tenant_name.clone();
                let refresh = self.refresh;
                tokio::spawn(async move {
                    let key = (tenant_name.clone(), spec.name.clone());
                    // However the read ends (a panic too), the issuer may be read again.
                    let _reading = InFlight {
                        entries: Arc::clone(&entries),
                        key: key.clone(),
                    };
                    let read = fetcher.keys(&spec.issuer, spec.jwks_uri.as_deref()).await;
                    let Ok(mut entries) = entries.lock() else {
                        return;
                    };
                    if let Some(entry) = entries.get_mut(&key).filter(|e| e.is_for(&spec)) {
                        entry.record(&tenant_name, read, now, refresh);
                    }
                })
            })
            .collect();
        Reads(reads)
    }

    /// Forgets the issuers of tenants that are gone.
    pub fn retain_tenants(&self, keep: impl Fn(&str) -> bool) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|(tenant, _), _| keep(tenant));
        }
    }

    /// The names of `tenant`'s issuers whose keys changed since the last report, and when it
    /// should be looked at again (Unix seconds; soon while a read is in flight), if it has
    /// issuers.
    pub fn report(&self, tenant: &Tenant, now: u64) -> (Vec<String>, Option<u64>) {
        let tenant_name = tenant.name_any();
        let Ok(mut entries) = self.entries.lock() else {
            return (Vec::new(), None);
        };
        let mut changed = Vec::new();
        for spec in &tenant.spec.trusted_issuers {
            if let Some(entry) = entries.get_mut(&(tenant_name.clone(), spec.name.clone())) {
                let view = entry.keys(now);
                if entry.reported.as_ref() != Some(&view) {
                    changed.push(spec.name.clone());
                    entry.reported = Some(view);
                }
            }
        }
        let next = tenant
            .spec
            .trusted_issuers
            .iter()
            .filter_map(|s| entries.get(&(tenant_name.clone(), s.name.clone())))
            .map(|e| {
                if e.reading {
                    return now + IN_FLIGHT_POLL.as_secs();
                }
                // A grace period that ends before the next read ends the keys' use on time.
                let until = e.valid_until().filter(|&u| u > now).unwrap_or(u64::MAX);
                e.next_read_at.min(until)
            })
            .min();
        (changed, next)
    }

    /// What a client bound to `tenant`'s issuer `name` can be given at `now`; `None` when the
    /// tenant has no such issuer.
    pub fn keys(&self, tenant: &Tenant, name: &str, now: u64) -> Option<IssuerKeys> {
        let spec = tenant
            .spec
            .trusted_issuers
            .iter()
            .find(|s| s.name == name)?;
        let entries = self.entries.lock().ok()?;
        Some(match entries.get(&(tenant.name_any(), name.to_string())) {
            Some(entry) if entry.is_for(spec) => entry.keys(now),
            // Not read by this process yet: an earlier one's read may still be in its grace.
            _ => Entry::new(spec, earlier_read(tenant, spec)).keys(now),
        })
    }

    /// The keys of each of `tenant`'s trusted issuers at `now`, by name (see [`Self::keys`]).
    pub fn all_keys(&self, tenant: &Tenant, now: u64) -> Vec<(String, IssuerKeys)> {
        tenant
            .spec
            .trusted_issuers
            .iter()
            .filter_map(|s| Some((s.name.clone(), self.keys(tenant, &s.name, now)?)))
            .collect()
    }

    /// `status.trustedIssuers` of `tenant` at `now`.
    pub fn statuses(&self, tenant: &Tenant, now: u64) -> Vec<TrustedIssuerStatus> {
        let Ok(entries) = self.entries.lock() else {
            return Vec::new();
        };
        tenant
            .spec
            .trusted_issuers
            .iter()
            .map(|spec| {
                let entry = entries
                    .get(&(tenant.name_any(), spec.name.clone()))
                    .filter(|e| e.is_for(spec))
                    .cloned()
                    .unwrap_or_else(|| Entry::new(spec, earlier_read(tenant, spec)));
                status_of(spec, &entry, now)
            })
            .collect()
    }
}

fn status_of(spec: &TrustedIssuerSpec, entry: &Entry, now: u64) -> TrustedIssuerStatus {
    let keys = entry
        .good
        .as_ref()
        .and_then(|(f, _)| f.jwks.get("keys").and_then(Value::as_array).map(Vec::len))
        .unwrap_or(0);
    let (state, message) = match (entry.keys(now), &entry.error) {
        (IssuerKeys::Missing { why, expired: true }, _) => (states::KEYS_EXPIRED, why),
        (_, Some(e)) if entry.last_read_at().is_some() => (
            states::UNREACHABLE,
            format!("{e}; the last keys read keep working until keysValidUntil"),
        ),
        (_, Some(e)) => (states::UNREACHABLE, e.clone()),
        (IssuerKeys::Current { .. }, None) => (states::READY, format!("{keys} keys read")),
        (_, None) => (states::PENDING, "keys not read yet".to_string()),
    };
    TrustedIssuerStatus {
        name: spec.name.clone(),
        issuer: spec.issuer.clone(),
        state: state.to_string(),
        message,
        jwks_uri: entry.good.as_ref().map(|(f, _)| f.jwks_uri.clone()),
        keys: i32::try_from(keys).unwrap_or(i32::MAX),
        last_read_time: entry.last_read_at().map(crate::operator::time_of),
        keys_valid_until: entry.valid_until().map(crate::operator::time_of),
    }
}

/// When an earlier process last read `spec`'s keys, as the Tenant's status says.
fn earlier_read(tenant: &Tenant, spec: &TrustedIssuerSpec) -> Option<u64> {
    let status = tenant.status.as_ref()?;
    // Only a read of this very issuer: keys of one the spec replaced never count.
    let previous = status.trusted_issuers.iter().find(|s| {
        s.name == spec.name
            && s.issuer == spec.issuer
            && spec
                .jwks_uri
                .as_ref()
                .is_none_or(|uri| s.jwks_uri.as_ref() == Some(uri))
    })?;
    previous
        .last_read_time
        .as_ref()
        .and_then(|t: &Time| u64::try_from(t.0.as_second()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_testkit::https::{HttpsServer, Reply};
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;

    fn tenant(issuer: &str, jwks_uri: &str, status: Option<Value>) -> Tenant {
        let mut t = json!({
            "apiVersion": "gatehouse.dev/v1alpha1", "kind": "Tenant",
            "metadata": {"name": "acme"},
            "spec": {"grantTypes": ["client_credentials"], "trustedIssuers": [{
                "name": "ci", "issuer": issuer, "jwksUri": jwks_uri, "gracePeriod": "1h",
                "subjects": [{"subject": "job", "client": {"namespace": "acme", "clientId": "deployer"}}]
            }]}
        });
        if let Some(s) = status {
            t["status"] = s;
        }
        serde_json::from_value(t).unwrap()
    }

    fn serving() -> (HttpsServer, Fetcher) {
        let server = HttpsServer::start();
        server.set(
            "/keys",
            Reply::json(
                &json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "a", "x": "AA", "y": "AA"}]}),
            ),
        );
        let fetcher = Fetcher::new(Some(&server.ca_file()), true).unwrap();
        (server, fetcher)
    }

    #[tokio::test]
    async fn the_last_keys_read_keep_working_for_the_grace_period_and_not_after() {
        let (server, fetcher) = serving();
        let t = tenant(&server.url(""), &server.url("/keys"), None);
        let keys = TrustedKeys::new(Duration::from_secs(300));
        assert!(matches!(
            keys.keys(&t, "ci", NOW),
            Some(IssuerKeys::Missing { expired: false, .. })
        ));
        assert_eq!(keys.statuses(&t, NOW)[0].state, states::PENDING);
        let (changed, next) = keys.refresh(&t, &fetcher, NOW).await;
        assert_eq!(changed, vec!["ci".to_string()]);
        assert_eq!(next, Some(NOW + 300));
        assert!(matches!(
            keys.keys(&t, "ci", NOW),
            Some(IssuerKeys::Current { .. })
        ));
        assert_eq!(keys.statuses(&t, NOW)[0].state, states::READY);
        assert_eq!(keys.statuses(&t, NOW)[0].keys, 1);
        // Not due yet: nothing is read.
        keys.refresh(&t, &fetcher, NOW + 10).await;
        assert_eq!(server.hits("/keys"), 1);

        server.set_down(true);
        let (changed, next) = keys.refresh(&t, &fetcher, NOW + 300).await;
        assert!(changed.is_empty(), "the last keys still work");
        assert_eq!(next, Some(NOW + 330), "retried within 30 s");
        assert!(matches!(
            keys.keys(&t, "ci", NOW + 300),
            Some(IssuerKeys::Current { .. })
        ));
        let status = &keys.statuses(&t, NOW + 300)[0];
        assert_eq!(status.state, states::UNREACHABLE);
        assert!(
            status.message.contains("keysValidUntil"),
            "{}",
            status.message
        );
        // An hour after the last good read the keys are dropped.
        let (changed, _) = keys.refresh(&t, &fetcher, NOW + 3600).await;
        assert_eq!(changed, vec!["ci".to_string()]);
        assert!(matches!(
            keys.keys(&t, "ci", NOW + 3600),
            Some(IssuerKeys::Missing { expired: true, .. })
        ));
        assert_eq!(keys.statuses(&t, NOW + 3600)[0].state, states::KEYS_EXPIRED);
        // Back: read again, and current again.
        server.set_down(false);
        let (changed, _) = keys.refresh(&t, &fetcher, NOW + 3630).await;
        assert_eq!(changed, vec!["ci".to_string()]);
        assert!(matches!(
            keys.keys(&t, "ci", NOW + 3630),
            Some(IssuerKeys::Current { .. })
        ));
        // No issuer by that name.
        assert_eq!(keys.keys(&t, "other", NOW), None);
    }

    #[tokio::test]
    async fn a_restarted_process_holds_what_the_store_has_only_within_an_earlier_reads_grace() {
        let (server, fetcher) = serving();
        let issuer = server.url("");
        let keys_uri = server.url("/keys");
        let read_at = |at: u64| {
            json!({"trustedIssuers": [{"name": "ci", "issuer": issuer, "state": "Ready", "keys": 1,
                "jwksUri": keys_uri,
                "lastReadTime": crate::operator::time_of(at)}]})
        };
        let t = tenant(&issuer, &server.url("/keys"), Some(read_at(NOW - 60)));
        let keys = TrustedKeys::default();
        assert!(matches!(
            keys.keys(&t, "ci", NOW),
            Some(IssuerKeys::Held { .. })
        ));
        server.set_down(true);
        keys.refresh(&t, &fetcher, NOW).await;
        assert!(matches!(
            keys.keys(&t, "ci", NOW),
            Some(IssuerKeys::Held { .. })
        ));
        assert!(matches!(
            keys.keys(&t, "ci", NOW + 3600),
            Some(IssuerKeys::Missing { expired: true, .. })
        ));
        // A read of another key URL under the same name does not count.
        let moved = tenant(&issuer, &server.url("/other"), Some(read_at(NOW - 60)));
        assert!(matches!(
            TrustedKeys::default().keys(&moved, "ci", NOW),
            Some(IssuerKeys::Missing { expired: false, .. })
        ));
        // A read of another issuer under the same name does not count.
        let replaced = tenant(
            "https://other.example",
            &server.url("/keys"),
            Some(read_at(NOW - 60)),
        );
        assert!(matches!(
            TrustedKeys::default().keys(&replaced, "ci", NOW),
            Some(IssuerKeys::Missing { expired: false, .. })
        ));
    }
}

#[cfg(test)]
mod slow_issuers {
    use super::*;
    use gatehouse_testkit::https::{HttpsServer, Reply};
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;

    /// A tenant with a hanging issuer and a prompt one, each under its own path.
    fn tenant(server: &HttpsServer) -> Tenant {
        let entry = |name: &str, path: &str| {
            json!({"name": name, "issuer": server.url(""), "jwksUri": server.url(path),
                   "subjects": [{"subject": name, "client": {"namespace": "acme", "clientId": "deployer"}}]})
        };
        serde_json::from_value(json!({
            "apiVersion": "gatehouse.dev/v1alpha1", "kind": "Tenant",
            "metadata": {"name": "acme"},
            "spec": {"grantTypes": ["client_credentials"],
                     "trustedIssuers": [entry("hanging", "/hanging"), entry("prompt", "/prompt")]}
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn a_hanging_issuer_holds_up_no_reconcile_and_its_read_ends_in_the_background() {
        let server = HttpsServer::start();
        let jwks =
            json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "a", "x": "AA", "y": "AA"}]});
        server.set("/prompt", Reply::json(&jwks));
        server.set("/hanging", Reply::json(&jwks).after(Duration::from_secs(4)));
        let fetcher = Fetcher::new(Some(&server.ca_file()), true).unwrap();
        let t = tenant(&server);
        let keys = TrustedKeys::new(Duration::from_secs(300));

        let (changed, next) = keys.refresh(&t, &fetcher, NOW).await;
        // Within READ_WAIT: the prompt issuer is read, the hanging one is still in flight.
        assert!(matches!(
            keys.keys(&t, "prompt", NOW),
            Some(IssuerKeys::Current { .. })
        ));
        assert!(matches!(
            keys.keys(&t, "hanging", NOW),
            Some(IssuerKeys::Missing { expired: false, .. })
        ));
        assert!(changed.contains(&"prompt".to_string()));
        assert_eq!(
            next,
            Some(NOW + IN_FLIGHT_POLL.as_secs()),
            "looked at again soon"
        );
        // A second reconcile meanwhile starts no second read of it.
        keys.refresh(&t, &fetcher, NOW + 1).await;
        // The read ends by itself and is there for the next reconcile.
        let mut waited = 0;
        while !matches!(
            keys.keys(&t, "hanging", NOW + 5),
            Some(IssuerKeys::Current { .. })
        ) {
            assert!(waited < 100, "the background read never ended");
            tokio::time::sleep(Duration::from_millis(100)).await;
            waited += 1;
        }
        assert_eq!(server.hits("/hanging"), 1);
        let (changed, _) = keys.report(&t, NOW + 5);
        assert_eq!(changed, ["hanging"]);

        // A deleted tenant's issuers are forgotten.
        keys.retain_tenants(|name| name != "acme");
        assert!(keys.entries.lock().unwrap().is_empty());
    }
}

#[cfg(test)]
mod grace {
    use super::*;

    #[test]
    fn a_grace_period_below_a_second_is_not_zero() {
        let spec = |grace: &str| -> TrustedIssuerSpec {
            serde_json::from_value(serde_json::json!({
                "name": "ci", "issuer": "https://ci.example.com", "gracePeriod": grace
            }))
            .unwrap()
        };
        assert_eq!(grace_secs(&spec("500ms")), 1);
        assert_eq!(grace_secs(&spec("1m")), 60);
        assert_eq!(grace_secs(&spec("1500ms")), 2);
    }
}
