//! The Kubernetes operator: two kube-runtime controllers, one for Tenants and one for
//! OAuthClients, over shared watches of Tenants, OAuthClients and Secrets. Each reconcile runs
//! the same core as standalone over the slice of cached state its object depends on, then
//! makes the store and the cluster match. Mappers reconcile a client again when its Tenant or
//! credentials Secret changes, and a tenant when its clients or users Secret change.
//!
//! Level-triggered and idempotent: any reconcile can be repeated, a restarted operator
//! converges from whatever it finds, and finalizers make deletions survive a restart midway.
//! Only the replica holding the leader Lease runs the controllers.

mod client;
mod context;
pub mod leader;
pub mod metrics;
mod tenant;
#[cfg(test)]
mod tests;

pub use client::reconcile_client;
pub use context::{Context, Scope};
pub use tenant::reconcile_tenant;

use crate::cluster::{ClusterError, Kube, TENANT_LABEL};
use crate::publish::{PublishError, Publisher};
use crate::reconcile::Observed;
use futures::{FutureExt, StreamExt};
use gatehouse_core::keys::KeyEncryptionKey;
use gatehouse_crd::condition::types;
use gatehouse_crd::{OAuthClient, Tenant};
use gatehouse_store::Store;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, finalizer, watcher};
use kube::{Client, ResourceExt};
use leader::{LEASE_DURATION, LeaderElector, RENEW_INTERVAL};
use metrics::OperatorMetrics;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The finalizer on every Tenant and OAuthClient the operator has seen.
pub const FINALIZER: &str = "gatehouse.dev/cleanup";
/// Every object is reconciled at least this often, even without changes.
pub const RESYNC: Duration = Duration::from_secs(300);
/// How often the store is checked for lost configuration (a flushed or replaced Redis).
const DRIFT_CHECK: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
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
    pub fn label(&self) -> &'static str {
        match self {
            ReconcileError::Cluster(_) => "kubernetes",
            ReconcileError::Publish(_) => "store",
            ReconcileError::KeysSecret { .. } => "keys_secret",
            ReconcileError::Finalizer(_) => "finalizer",
            ReconcileError::Conflict(_) => "conflict",
        }
    }
}

/// The core's input for a scope at unix time `now`.
pub(crate) fn observed_at<'a>(scope: &'a Scope, public_url: &'a str, now: u64) -> Observed<'a> {
    Observed {
        tenants: &scope.tenants,
        clients: &scope.clients,
        secrets: &scope.secrets,
        public_url,
        now: Time(
            Timestamp::from_second(i64::try_from(now).unwrap_or(i64::MAX))
                .unwrap_or(Timestamp::UNIX_EPOCH),
        ),
    }
}

/// Retries a failed object with exponential backoff; the failure is logged and counted, and
/// its condition (where it has one) was written by the reconcile.
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
}

pub struct OperatorConfig {
    pub public_url: String,
    /// The operator's namespace: its Lease and the tenants' keys Secrets live there.
    pub namespace: String,
    /// This replica's name in the Lease (the pod name).
    pub identity: String,
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
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    let elector = LeaderElector::new(client.clone(), &config.namespace, config.identity.clone());
    tracing::info!(
        identity = elector.identity(),
        "waiting for the leader lease"
    );
    ready.store(true, Ordering::Relaxed);
    loop {
        match elector.try_acquire().await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the leader lease; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(RENEW_INTERVAL) => {}
            _ = stopped() => return Ok(()),
        }
    }
    tracing::info!(
        identity = elector.identity(),
        "leading; starting controllers"
    );
    metrics.leader.set(1);
    // Not ready from taking the lead until the caches are filled.
    ready.store(false, Ordering::Relaxed);

    // Renew the lease; losing it stops the controllers and ends the process with an error.
    let (lost_tx, lost_rx) = tokio::sync::watch::channel(false);
    let renewer = {
        let elector =
            LeaderElector::new(client.clone(), &config.namespace, config.identity.clone());
        let mut stop = stopped().boxed();
        tokio::spawn(async move {
            let mut last = Instant::now();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(RENEW_INTERVAL) => {}
                    _ = &mut stop => return,
                }
                match elector.try_acquire().await {
                    Ok(true) => last = Instant::now(),
                    Ok(false) => {
                        let _ = lost_tx.send(true);
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot renew the leader lease"),
                }
                if last.elapsed() >= LEASE_DURATION {
                    let _ = lost_tx.send(true);
                    return;
                }
            }
        })
    };
    let end = {
        let stop = stopped();
        let mut lost = lost_rx.clone();
        async move {
            tokio::select! {
                _ = stop => {}
                _ = lost.wait_for(|l| *l) => {}
            }
        }
        .shared()
    };

    // One watch per kind, each feeding a cache and, through a fan-out, both controllers.
    // Deletions are passed on too (a deleted Secret must reach the client that used it).
    let (tenants, tenant_writer) = reflector::store::<Tenant>();
    let (clients, client_writer) = reflector::store::<OAuthClient>();
    let (secrets, secret_writer) = reflector::store::<Secret>();
    let (tenant_feed, [tenants_for_tenants, tenants_for_clients]) =
        fan_out(watch(Api::<Tenant>::all(client.clone()), tenant_writer));
    let (client_feed, [clients_for_clients, clients_for_tenants]) = fan_out(watch(
        Api::<OAuthClient>::all(client.clone()),
        client_writer,
    ));
    let (secret_feed, [secrets_for_tenants, secrets_for_clients]) =
        fan_out(watch(Api::<Secret>::all(client.clone()), secret_writer));
    let reflectors = futures::future::join3(tenant_feed, client_feed, secret_feed);

    let (requeue_tx, requeue_rx) = futures::channel::mpsc::unbounded();
    let ctx = Arc::new(Context::new(
        Kube::new(client.clone()),
        tenants.clone(),
        clients.clone(),
        secrets.clone(),
        Publisher::new(store.clone(), kek),
        config.public_url.clone(),
        config.namespace.clone(),
        metrics.clone(),
        requeue_tx,
    ));

    let (drift_tenants_tx, drift_tenants_rx) = futures::channel::mpsc::unbounded::<()>();
    let (drift_clients_tx, drift_clients_rx) = futures::channel::mpsc::unbounded::<()>();
    let drift = {
        let (tenants, store) = (tenants.clone(), store.clone());
        async move {
            loop {
                tokio::time::sleep(DRIFT_CHECK).await;
                let Ok(stored) = store.tenant_versions().await else {
                    continue; // unreachable: reconciles surface it
                };
                let lost = lost_tenants(&tenants.state(), &stored);
                if !lost.is_empty() {
                    tracing::warn!(tenants = ?lost, "the store lost published configuration; restoring everything");
                    let _ = drift_tenants_tx.unbounded_send(());
                    let _ = drift_clients_tx.unbounded_send(());
                }
            }
        }
    };

    let tenant_controller = {
        let tenants_cache = tenants.clone();
        let namespace = config.namespace.clone();
        Controller::for_stream(tenants_for_tenants, tenants.clone())
            .watches_stream(clients_for_tenants, |c: OAuthClient| {
                Some(ObjectRef::<Tenant>::new(&c.spec.tenant_ref))
            })
            .watches_stream(secrets_for_tenants, move |s: Secret| {
                tenants_of_secret(&s, &tenants_cache, &namespace)
            })
            .reconcile_all_on(drift_tenants_rx)
            .graceful_shutdown_on(end.clone())
            .run(
                reconcile_tenant,
                |t, e, ctx| error_policy(t, e, ctx, tenant::KIND),
                ctx.clone(),
            )
            .for_each(|_| async {})
    };
    let client_controller = {
        let by_tenant = clients.clone();
        let by_secret = clients.clone();
        Controller::for_stream(clients_for_clients, clients.clone())
            .watches_stream(tenants_for_clients, move |t: Tenant| {
                clients_of_tenant(&t.name_any(), &by_tenant)
            })
            .watches_stream(secrets_for_clients, move |s: Secret| {
                clients_of_secret(&s, &by_secret)
            })
            .reconcile_on(requeue_rx)
            .reconcile_all_on(drift_clients_rx)
            .graceful_shutdown_on(end.clone())
            .run(
                reconcile_client,
                |c, e, ctx| error_policy(c, e, ctx, client::KIND),
                ctx.clone(),
            )
            .for_each(|_| async {})
    };
    let readiness = {
        let ready = ready.clone();
        async move {
            let synced = futures::future::join3(
                tenants.wait_until_ready(),
                clients.wait_until_ready(),
                secrets.wait_until_ready(),
            )
            .await;
            if let (Ok(()), Ok(()), Ok(())) = synced {
                tracing::info!("caches filled; reconciling");
                ready.store(true, Ordering::Relaxed);
            }
            futures::future::pending::<()>().await
        }
    };

    tokio::select! {
        _ = futures::future::join(tenant_controller, client_controller) => {}
        _ = reflectors => {}
        _ = drift => {}
        _ = readiness => {}
    }
    ready.store(false, Ordering::Relaxed);
    metrics.leader.set(0);
    renewer.abort();
    if *lost_rx.borrow() {
        return Err(OperatorError::LostLease(LEASE_DURATION));
    }
    if let Err(e) = elector.release().await {
        tracing::warn!(error = %e, "could not release the leader lease; it expires by itself");
    }
    tracing::info!("operator stopped");
    Ok(())
}

/// Tenants that are Ready (so were published) but that the store no longer holds: the sign
/// of a flushed or replaced Redis, answered by reconciling everything again.
pub fn lost_tenants<V>(
    tenants: &[Arc<Tenant>],
    stored: &std::collections::BTreeMap<String, V>,
) -> Vec<String> {
    tenants
        .iter()
        .filter(|t| t.metadata.deletion_timestamp.is_none())
        .filter(|t| {
            t.status.as_ref().is_some_and(|s| {
                crate::conditions::find(&s.conditions, types::READY)
                    .is_some_and(|c| c.status == "True")
            })
        })
        .map(|t| t.name_any())
        .filter(|n| !stored.contains_key(n))
        .collect()
}

/// Watches `api` into a cache; yields every object applied or deleted. Watch failures are
/// logged and ridden out with backoff.
fn watch<K>(
    api: Api<K>,
    writer: reflector::store::Writer<K>,
) -> impl futures::Stream<Item = K> + Send
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).default_backoff(),
    )
    .touched_objects()
    .filter_map(|event| async move {
        match event {
            Ok(object) => Some(object),
            Err(e) => {
                tracing::warn!(error = %e, "watch failed; retrying");
                None
            }
        }
    })
}

/// Copies a stream to `N` bounded channels (a slow consumer slows the watch, never loses an
/// event). The returned future drives it.
#[allow(clippy::type_complexity)]
fn fan_out<K: Clone + Send + 'static, const N: usize>(
    stream: impl futures::Stream<Item = K> + Send + 'static,
) -> (
    impl Future<Output = ()> + Send,
    [futures::channel::mpsc::Receiver<Result<K, watcher::Error>>; N],
) {
    let mut senders = Vec::with_capacity(N);
    let receivers = std::array::from_fn(|_| {
        let (tx, rx) = futures::channel::mpsc::channel(256);
        senders.push(tx);
        rx
    });
    let drive = async move {
        futures::pin_mut!(stream);
        let mut senders = senders;
        while let Some(object) = stream.next().await {
            for tx in &mut senders {
                use futures::SinkExt;
                let _ = tx.send(Ok(object.clone())).await;
            }
        }
    };
    (drive, receivers)
}

/// Tenants to reconcile when `secret` changes: those whose users it holds, and the one whose
/// signing keys it holds.
pub fn tenants_of_secret(
    secret: &Secret,
    tenants: &reflector::Store<Tenant>,
    operator_namespace: &str,
) -> Vec<ObjectRef<Tenant>> {
    let namespace = secret.namespace().unwrap_or_default();
    let name = secret.name_any();
    let mut out: Vec<ObjectRef<Tenant>> = tenants
        .state()
        .iter()
        .filter(|t| {
            t.spec
                .users
                .as_ref()
                .is_some_and(|u| u.secret_ref.namespace == namespace && u.secret_ref.name == name)
        })
        .map(|t| ObjectRef::from_obj(&**t))
        .collect();
    if namespace == operator_namespace
        && let Some(tenant) = secret.labels().get(TENANT_LABEL)
    {
        out.push(ObjectRef::new(tenant));
    }
    out
}

/// Clients of `tenant`, to reconcile when it changes.
pub fn clients_of_tenant(
    tenant: &str,
    clients: &reflector::Store<OAuthClient>,
) -> Vec<ObjectRef<OAuthClient>> {
    clients
        .state()
        .iter()
        .filter(|c| c.spec.tenant_ref == tenant)
        .map(|c| ObjectRef::from_obj(&**c))
        .collect()
}

/// Clients whose credentials live in `secret`.
pub fn clients_of_secret(
    secret: &Secret,
    clients: &reflector::Store<OAuthClient>,
) -> Vec<ObjectRef<OAuthClient>> {
    let namespace = secret.namespace();
    let name = secret.name_any();
    clients
        .state()
        .iter()
        .filter(|c| {
            c.namespace() == namespace && c.spec.effective_secret_ref(&c.name_any()).name == name
        })
        .map(|c| ObjectRef::from_obj(&**c))
        .collect()
}
