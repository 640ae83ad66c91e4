//! The Kubernetes operator: two kube-runtime controllers, one for Tenants and one for
//! OAuthClients, over shared watches of Tenants, OAuthClients and the Secrets labelled for
//! Gatehouse ([`watches`]). Each
//! reconcile looks at one object and what it depends on (found through the [`index`], never by
//! scanning the caches), runs the pure core on it, then makes the store and the cluster match.
//!
//! Level-triggered and idempotent: any reconcile can be repeated, a restarted operator
//! converges from whatever it finds, and finalizers make deletions survive a restart midway.
//! Only the replica holding the leader Lease runs the controllers ([`leader`]).

mod client;
mod context;
mod controllers;
pub mod index;
pub mod leader;
mod lookup;
pub mod metrics;
mod tenant;
mod watches;
mod workloads;

pub use client::reconcile_client;
pub use context::{Caches, Context, Setting, time_of};
pub use controllers::{lost_tenants, pending};
pub use tenant::reconcile_tenant;

use crate::cluster::{ClusterError, Kube};
use crate::publish::{PublishError, Publisher};
use gatehouse_core::clock::Clock;
use gatehouse_core::keys::KeyEncryptionKey;
use gatehouse_core::random::Randomness;
use gatehouse_store::Store;
use kube::Client;
use kube::runtime::controller::Action;
use kube::runtime::finalizer;
use leader::{LEASE_DURATION, LeaderElector};
use metrics::OperatorMetrics;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The finalizer on every Tenant and OAuthClient the operator has seen.
pub const FINALIZER: &str = "gatehouse.dev/cleanup";
/// Every object is reconciled at least this often, even without changes.
pub const RESYNC: Duration = Duration::from_secs(300);
/// How often the store is checked for lost configuration (a flushed or replaced Redis).
const DRIFT_CHECK: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Cluster(ClusterError),
    #[error("store: {0}")]
    Publish(#[from] PublishError),
    #[error("signing keys Secret {secret} cannot be read ({why})")]
    KeysSecret { secret: String, why: String },
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// The cached object was older than the cluster's (an optimistic-concurrency miss); the
    /// watch is about to deliver the new one.
    #[error("the object changed meanwhile: {0}")]
    Conflict(String),
    /// The object's namespace is being deleted, and the object with it: nothing to fix.
    #[error("{0}")]
    NamespaceTerminating(String),
}

impl From<ClusterError> for ReconcileError {
    fn from(e: ClusterError) -> Self {
        match e {
            ClusterError::Stale(why) => ReconcileError::Conflict(why),
            ClusterError::NamespaceTerminating(namespace) => ReconcileError::NamespaceTerminating(
                format!("namespace {namespace} is being deleted"),
            ),
            other => ReconcileError::Cluster(other),
        }
    }
}

impl From<finalizer::Error<ReconcileError>> for ReconcileError {
    fn from(e: finalizer::Error<ReconcileError>) -> Self {
        match e {
            finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
            finalizer::Error::AddFinalizer(kube::Error::Api(s))
            | finalizer::Error::RemoveFinalizer(kube::Error::Api(s))
                if s.code == 409 || s.code == 422 =>
            {
                ReconcileError::Conflict(s.message)
            }
            other => ReconcileError::Finalizer(other.to_string()),
        }
    }
}

impl ReconcileError {
    /// A short label for metrics.
    /// Every value [`ReconcileError::label`] takes (the metrics start each at zero).
    pub const LABELS: &'static [&'static str] = &[
        "kubernetes",
        "store",
        "keys_secret",
        "finalizer",
        "conflict",
        "namespace_terminating",
    ];

    pub fn label(&self) -> &'static str {
        match self {
            ReconcileError::Cluster(_) => "kubernetes",
            ReconcileError::Publish(_) => "store",
            ReconcileError::KeysSecret { .. } => "keys_secret",
            ReconcileError::Finalizer(_) => "finalizer",
            ReconcileError::Conflict(_) => "conflict",
            ReconcileError::NamespaceTerminating(_) => "namespace_terminating",
        }
    }
}

/// Retries a failed object with exponential backoff; the failure is logged and counted, and
/// its condition (where it has one) was written by the reconcile.
#[allow(clippy::needless_pass_by_value)] // the signature kube-runtime calls
pub fn error_policy<K: kube::Resource>(
    object: Arc<K>,
    error: &ReconcileError,
    ctx: Arc<Context>,
    kind: &'static str,
) -> Action {
    let key = format!(
        "{kind}/{}{}",
        object
            .meta()
            .namespace
            .as_deref()
            .map(|n| format!("{n}/"))
            .unwrap_or_default(),
        object.meta().name.as_deref().unwrap_or_default()
    );
    if let ReconcileError::NamespaceTerminating(why) = error {
        // Not a failure: the object goes with its namespace, and its deletion is reconciled.
        tracing::debug!(object = %key, %why, "waiting for the namespace's deletion");
        return Action::requeue(Duration::from_secs(5));
    }
    ctx.metrics.error(kind, error.label());
    if let ReconcileError::Conflict(_) = error {
        tracing::debug!(object = %key, error = %error, "stale cache; retrying");
        return Action::requeue(Duration::from_secs(1));
    }
    let wait = ctx.failed(&key);
    tracing::warn!(object = %key, error = %error, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error(
        "lost the leader lease (not renewed for {0:?}); stopping so another replica takes over"
    )]
    LostLease(Duration),
    #[error("the watch runtime handed out no subscriber to a shared cache")]
    NoSubscriber,
}

pub struct OperatorConfig {
    pub public_url: String,
    /// The operator's namespace: its Lease and the tenants' keys Secrets live there.
    pub namespace: String,
    /// This replica's name in the Lease (the pod name).
    pub identity: String,
    /// The process's one clock and randomness.
    pub clock: Arc<dyn Clock>,
    pub random: Arc<dyn Randomness>,
    /// How Tenants' trusted issuers' keys are read, and how often.
    pub fetcher: crate::issuers::fetch::Fetcher,
    pub issuer_refresh: Duration,
}

/// A future that resolves once `shutdown` has, as often as it is asked.
fn stop_signal(
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> impl Fn() -> futures::future::BoxFuture<'static, ()> + Clone {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = tx.send(true);
    });
    move || {
        let mut rx = rx.clone();
        futures::FutureExt::boxed(async move {
            let _ = rx.wait_for(|s| *s).await;
        })
    }
}

/// Runs until `shutdown` resolves (Ok) or the lease is lost (Err). `ready` is true while
/// standing by for the lease and once leading with filled caches; false in between and after
/// stopping. (A standby replica is ready, so rolling updates of several replicas progress.)
pub async fn run(
    client: Client,
    store: Arc<dyn Store>,
    kek: Arc<KeyEncryptionKey>,
    config: OperatorConfig,
    metrics: Arc<OperatorMetrics>,
    ready: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), OperatorError> {
    let stopped = stop_signal(shutdown);
    let elector = LeaderElector::new(
        client.clone(),
        &config.namespace,
        config.identity.clone(),
        config.clock.clone(),
    );
    tracing::info!(
        identity = elector.identity(),
        "waiting for the leader lease"
    );
    ready.store(true, Ordering::Relaxed);
    if !leader::acquire(&elector, stopped()).await {
        return Ok(());
    }
    tracing::info!(
        identity = elector.identity(),
        "leading; starting controllers"
    );
    metrics.leader.set(1);
    // Not ready from taking the lead until the caches are filled.
    ready.store(false, Ordering::Relaxed);
    let renewing = LeaderElector::new(
        client.clone(),
        &config.namespace,
        config.identity.clone(),
        config.clock.clone(),
    );
    let leadership = leader::Leadership::keep(renewing, stopped());

    let (watches, watching) = watches::watch_all(&client, &config.namespace)?;
    let caches = watches.caches.clone();
    let (requeue_tx, requeued) = futures::channel::mpsc::unbounded();
    let setting = Setting {
        public_url: config.public_url.clone(),
        namespace: config.namespace.clone(),
        clock: config.clock.clone(),
        fetcher: config.fetcher.clone(),
        issuer_refresh: config.issuer_refresh,
    };
    let ctx = Arc::new(Context::new(
        Kube::new(client.clone(), config.clock.clone(), config.random.clone()),
        caches.clone(),
        Publisher::new(store, kek, config.random.clone()),
        setting,
        metrics.clone(),
        requeue_tx,
    ));
    let readiness = {
        let ready = ready.clone();
        async move {
            if caches.filled().await {
                tracing::info!("caches filled; reconciling");
                ready.store(true, Ordering::Relaxed);
            }
            futures::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = controllers::run(watches, ctx, requeued, leadership.end()) => {}
        () = watching => {}
        () = readiness => {}
    }
    ready.store(false, Ordering::Relaxed);
    metrics.leader.set(0);
    if leadership.lost() {
        return Err(OperatorError::LostLease(LEASE_DURATION));
    }
    if let Err(e) = elector.release().await {
        tracing::warn!(error = %e, "could not release the leader lease; it expires by itself");
    }
    tracing::info!("operator stopped");
    Ok(())
}
