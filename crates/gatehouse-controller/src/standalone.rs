//! `gatehouse standalone`'s reconcile driver: the same core as the operator, fed from a
//! directory of manifests instead of watches. It reconciles the whole directory (a loop over
//! the per-object functions, see [`crate::reconcile::reconcile`]), publishes the result,
//! writes the credentials Secrets it generates beside the manifests, prints a status table,
//! and follows edits: a broken edit is reported (file, document, field) while the last valid
//! set keeps serving.

pub mod files;
pub mod kept_keys;
pub mod manifests;
pub mod table;

use crate::issuers::fetch::Fetcher;
use crate::issuers::{READ_WAIT, Reads, TrustedKeys};
use crate::operator::time_of;
use crate::publish::{PublishError, PublishReport, Publisher, record_report};
use crate::reconcile::{Observed, Reconciled, SecretRequest, TenantView, reconcile};
use files::{fingerprint, fingerprint_of, write_generated_secret};
use futures::FutureExt;
use gatehouse_core::clock::Clock;
use gatehouse_core::random::Randomness;
use kept_keys::KeptKeys;
use kube::ResourceExt;
use manifests::{ManifestError, Manifests};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use table::{ClientStatuses, TenantStatuses};

/// How often the manifests directory is checked for edits.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);
/// How often the store is checked for drift (a flushed or replaced Redis).
const DRIFT_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// How often everything is published again at the latest, even without edits.
const RESYNC_INTERVAL: Duration = Duration::from_secs(60);

/// The interval for background work that took `spent` the last time: at least `base`, and
/// long enough that the work stays under 5 % of a core however large the directory grows
/// (checking 100,000 generated Secret files takes ~0.2 s; reconciling them, seconds).
fn paced(base: Duration, spent: Duration) -> Duration {
    base.max(spent * 20)
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Every problem of the directory, each naming its file, document and field.
    #[error("invalid manifests in {dir}:\n{}", list(.problems))]
    Invalid {
        dir: String,
        problems: Vec<ManifestError>,
    },
    #[error("publishing the manifests to the store: {0}")]
    Publish(#[from] PublishError),
}

fn list(problems: &[ManifestError]) -> String {
    problems
        .iter()
        .map(|p| format!("  {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Where the manifests are and what the driver works with.
pub struct Setting {
    pub dir: PathBuf,
    pub public_url: String,
    pub clock: Arc<dyn Clock>,
    pub random: Arc<dyn Randomness>,
    /// How Tenants' trusted issuers' keys are read, and how often.
    pub fetcher: Fetcher,
    pub issuer_refresh: Duration,
}

pub struct Driver {
    setting: Setting,
    publisher: Publisher,
    tenant_status: TenantStatuses,
    client_status: ClientStatuses,
    last_table: String,
    /// Where each object of the last accepted manifests was read, for the table's problem lines.
    origins: manifests::Origins,
    /// The directory's fingerprint as last reconciled (see [`files::fingerprint`]).
    seen: u64,
    /// Tenants' trusted issuers' keys as last read, and when a read is next due.
    trusted: TrustedKeys,
    next_issuer_read: Option<u64>,
    /// The usernames of each served tenant, as last reconciled (for the start-up banner).
    usernames: HashMap<String, Vec<String>>,
}

/// A served tenant as the start-up banner shows it.
pub struct TenantSummary {
    pub name: String,
    pub issuer: String,
    pub usernames: Vec<String>,
}

impl Driver {
    #[must_use]
    pub fn new(setting: Setting, publisher: Publisher) -> Self {
        Driver {
            publisher,
            tenant_status: HashMap::new(),
            client_status: HashMap::new(),
            last_table: String::new(),
            origins: manifests::Origins::new(),
            seen: 0,
            trusted: TrustedKeys::new(setting.issuer_refresh),
            next_issuer_read: None,
            usernames: HashMap::new(),
            setting,
        }
    }

    /// Loads and publishes the directory once: the process refuses to start on any problem.
    ///
    /// # Errors
    /// Every problem of the manifests, or the store refusing the first publish.
    pub async fn start(&mut self) -> Result<Duration, StartError> {
        let dir = self.setting.dir.clone();
        let manifests = manifests::load(&dir).map_err(|problems| StartError::Invalid {
            dir: dir.display().to_string(),
            problems,
        })?;
        self.seen = fingerprint(&dir);
        let started = std::time::Instant::now();
        self.seen ^= self.apply(manifests).await?;
        Ok(started.elapsed())
    }

    /// Follows the directory until the process ends: edits within a second, drift of the store
    /// within a second, and a full publish every minute at the latest. `first` is how long the
    /// first publish took (it paces the resync).
    pub async fn follow(mut self, first: Duration) {
        let mut resync_every = paced(RESYNC_INTERVAL, first);
        let mut last_sync = tokio::time::Instant::now();
        let mut last_drift_check = tokio::time::Instant::now();
        let mut watch_every = WATCH_INTERVAL;
        loop {
            tokio::time::sleep(watch_every).await;
            let started = std::time::Instant::now();
            let current = fingerprint(&self.setting.dir);
            watch_every = paced(WATCH_INTERVAL, started.elapsed());
            let mut drifted = false;
            if last_drift_check.elapsed() >= DRIFT_CHECK_INTERVAL {
                last_drift_check = tokio::time::Instant::now();
                drifted = self.publisher.drifted().await.unwrap_or(false);
                if drifted {
                    tracing::warn!(
                        "the store no longer holds the published configuration; publishing it again"
                    );
                }
            }
            let issuers_due = self
                .next_issuer_read
                .is_some_and(|at| at <= self.setting.clock.now());
            if current == self.seen
                && !drifted
                && !issuers_due
                && last_sync.elapsed() < resync_every
            {
                continue;
            }
            let edited = current != self.seen;
            self.seen = current;
            last_sync = tokio::time::Instant::now();
            let started = std::time::Instant::now();
            // A bug in reloading must not end the watching: the process would keep serving
            // the old set and never read an edit again.
            let reloaded = std::panic::AssertUnwindSafe(self.reload(edited))
                .catch_unwind()
                .await;
            if let Err(panic) = reloaded {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(panic = %what, "reloading the manifests failed (a bug); still serving the last valid set and watching for edits");
            }
            resync_every = paced(RESYNC_INTERVAL, started.elapsed());
        }
    }

    async fn reload(&mut self, edited: bool) {
        let dir = self.setting.dir.clone();
        match manifests::load(&dir) {
            Ok(m) => {
                if edited {
                    tracing::info!(dir = %dir.display(), "manifests changed; reconciling");
                }
                match self.apply(m).await {
                    Ok(change) => self.seen ^= change,
                    Err(e) => {
                        tracing::error!(error = %e, "could not publish the manifests; will retry");
                    }
                }
            }
            Err(errors) => {
                for e in errors {
                    tracing::error!("{e}");
                }
                tracing::error!("manifests rejected; still serving the last valid set");
            }
        }
    }

    /// Reconciles and publishes `m`; returns how the files it wrote itself (generated Secrets,
    /// kept keys) changed the directory's fingerprint: they are not an edit to react to.
    async fn apply(&mut self, mut m: Manifests) -> Result<u64, PublishError> {
        self.origins = std::mem::take(&mut m.origins);
        for t in &mut m.tenants {
            t.status = self.tenant_status.get(&t.name_any()).cloned();
        }
        for c in &mut m.clients {
            c.status = self
                .client_status
                .get(&(c.namespace().unwrap_or_default(), c.name_any()))
                .map(|(_, s)| s.clone());
        }
        self.read_issuers(&m).await;
        let mut reconciled = self.reconcile(&m);
        let mut written = Vec::new();
        let requests: Vec<SecretRequest> = reconciled
            .clients
            .iter()
            .filter_map(|c| c.secret_request.clone())
            .collect();
        if !requests.is_empty() {
            for request in &requests {
                match write_generated_secret(&self.setting.dir, request, &*self.setting.random) {
                    Ok((path, secret)) => {
                        say(&format!(
                            "generated Secret {}/{} for client {} in {}",
                            request.namespace,
                            request.name,
                            request.client_id,
                            path.display()
                        ));
                        m.secrets.push(secret);
                        written.push(path);
                    }
                    Err(e) => {
                        tracing::error!(secret = %format!("{}/{}", request.namespace, request.name), error = %e, "cannot write a generated Secret");
                    }
                }
            }
            reconciled = self.reconcile(&m);
        }
        let now = self.setting.clock.now();
        let mut keeper = KeptKeys::from_manifests(&self.setting.dir, &m.secrets);
        let report = self
            .publisher
            .publish(&reconciled, now, &mut keeper)
            .await?;
        self.record(reconciled, &report);
        self.print_table();
        Ok(fingerprint_of(&written) ^ keeper.fingerprint_change())
    }

    /// The tenants served (those whose status names an issuer), with their users' names.
    #[must_use]
    pub fn served_tenants(&self) -> Vec<TenantSummary> {
        let mut out: Vec<TenantSummary> = self
            .tenant_status
            .iter()
            .filter_map(|(name, status)| {
                Some(TenantSummary {
                    name: name.clone(),
                    issuer: status.issuer.clone()?,
                    usernames: self.usernames.get(name).cloned().unwrap_or_default(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Reads the keys of the valid tenants' trusted issuers that are due, all at once and
    /// waiting a short while at most: a slow issuer's read ends in the background, and the
    /// next pass (soon: [`TrustedKeys::report`]) publishes it.
    async fn read_issuers(&mut self, m: &Manifests) {
        let now = self.setting.clock.now();
        let valid: Vec<&gatehouse_crd::Tenant> = m
            .tenants
            .iter()
            .filter(|t| {
                !t.spec.trusted_issuers.is_empty()
                    && matches!(TenantView::of(Some(t)), TenantView::Valid(_))
            })
            .collect();
        self.trusted
            .retain_tenants(|name| m.tenants.iter().any(|t| t.name_any() == name));
        let reads: Vec<Reads> = valid
            .iter()
            .map(|t| self.trusted.start_reads(t, &self.setting.fetcher, now))
            .collect();
        futures::future::join_all(reads.into_iter().map(|r| r.settle(READ_WAIT))).await;
        self.next_issuer_read = valid
            .iter()
            .filter_map(|t| self.trusted.report(t, now).1)
            .min();
    }

    fn reconcile(&self, m: &Manifests) -> Reconciled {
        reconcile(&Observed {
            tenants: &m.tenants,
            clients: &m.clients,
            secrets: &m.secrets,
            public_url: &self.setting.public_url,
            trusted: &self.trusted,
            now: time_of(self.setting.clock.now()),
        })
    }

    fn record(&mut self, mut reconciled: Reconciled, report: &PublishReport) {
        record_report(&mut reconciled, report, &time_of(self.setting.clock.now()));
        // What the reconcile read from each users Secret already: their names, for the banner.
        self.usernames = reconciled
            .tenants
            .iter()
            .filter_map(|t| {
                let users = &t.registration.as_ref()?.users;
                Some((
                    t.name.clone(),
                    users.iter().map(|u| u.username.clone()).collect(),
                ))
            })
            .collect();
        self.tenant_status = reconciled
            .tenants
            .into_iter()
            .map(|t| (t.name, t.status))
            .collect();
        self.client_status = reconciled
            .clients
            .into_iter()
            .map(|c| ((c.namespace, c.name), (c.tenant, c.status)))
            .collect();
    }

    /// Prints the kubectl-like status table when it changed.
    fn print_table(&mut self) {
        let table = table::render(&self.tenant_status, &self.client_status, &self.origins);
        if table != self.last_table {
            say(&table);
            self.last_table = table;
        }
    }
}

/// Prints a line for the person running standalone. Standard output may be closed or full
/// (a pipe whose reader went away): that must not stop the reconciling, so it is only logged.
fn say(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush()) {
        tracing::warn!(error = %e, "cannot write to standard output");
    }
}
