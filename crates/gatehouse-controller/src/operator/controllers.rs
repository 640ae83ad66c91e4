//! The two controllers, Tenants and OAuthClients, over the shared watches. A client is
//! reconciled again when its Tenant or credentials Secret changes (or is deleted), and when a
//! rival for its client id changes; a tenant when its clients (their number live) or its users
//! or keys Secret change. Every object is also looked at again when the store lost what was
//! published (a flushed or replaced Redis).

use super::context::Context;
use super::watches::{Watches, spec_changes};
use super::{DRIFT_CHECK, client, error_policy, tenant, workloads};
use futures::channel::mpsc::UnboundedReceiver;
use futures::{Future, StreamExt};
use gatehouse_crd::condition::{ConditionStatus, types};
use gatehouse_crd::{OAuthClient, Tenant};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::runtime::Controller;
use kube::runtime::controller::Config;
use kube::runtime::reflector::ObjectRef;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Reconciles of different clients that may run at once. Unbounded, a cold start with 100,000
/// clients opens as many requests to the API server at once, runs out of connections and backs
/// off; a few dozen keep the API server and Redis busy without queueing at either.
const CLIENT_CONCURRENCY: u16 = 32;
/// Tenants are few; their reconciles are cheap but write Secrets and keys.
const TENANT_CONCURRENCY: u16 = 4;
/// How often the backlog (`gatehouse_operator_objects_pending`) is counted.
const BACKLOG_SAMPLE: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs both controllers until `end` resolves.
pub async fn run(
    watches: Watches,
    ctx: Arc<Context>,
    requeued: UnboundedReceiver<ObjectRef<OAuthClient>>,
    end: impl Future<Output = ()> + Clone + Send + Sync + 'static,
) {
    let (drift_tenants_tx, drift_tenants) = futures::channel::mpsc::unbounded::<()>();
    let (drift_clients_tx, drift_clients) = futures::channel::mpsc::unbounded::<()>();
    let store = ctx.publisher.store();
    let ctx_for_workloads = ctx.clone();
    let metrics = ctx.metrics.clone();
    let drift = {
        let tenants = watches.caches.tenants.clone();
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
    let backlog = {
        let (tenants, clients) = (
            watches.caches.tenants.clone(),
            watches.caches.clients.clone(),
        );
        let metrics = metrics.clone();
        async move {
            loop {
                let t = pending(&tenants.state(), |t: &Tenant| {
                    t.status.as_ref().and_then(|s| s.observed_generation)
                });
                let c = pending(&clients.state(), |c: &OAuthClient| {
                    c.status.as_ref().and_then(|s| s.observed_generation)
                });
                metrics.set_pending(tenant::KIND, t);
                metrics.set_pending(client::KIND, c);
                tokio::time::sleep(BACKLOG_SAMPLE).await;
            }
        }
    };
    let index = watches.caches.index.clone();
    let namespace = ctx.namespace.clone();
    let tenant_controller = {
        let index = index.clone();
        Controller::for_shared_stream(watches.tenants_for_tenants, watches.caches.tenants.clone())
            .watches_shared_stream(watches.clients_for_tenants, |c: Arc<OAuthClient>| {
                Some(ObjectRef::<Tenant>::new(&c.spec.tenant_ref))
            })
            .watches_shared_stream(watches.secrets_for_tenants, move |s: Arc<Secret>| {
                index.tenants_of_secret(&s, &namespace)
            })
            .with_config(Config::default().concurrency(TENANT_CONCURRENCY))
            .reconcile_on(watches.tenants_to_revisit)
            .reconcile_all_on(drift_tenants)
            .graceful_shutdown_on(end.clone())
            .run(
                tenant::reconcile_tenant,
                |t, e, ctx| error_policy(t, e, ctx, tenant::KIND),
                ctx.clone(),
            )
            .for_each(|_| async {})
    };
    let client_controller = {
        let (by_tenant, by_secret) = (index.clone(), index);
        Controller::for_shared_stream(watches.clients_for_clients, watches.caches.clients.clone())
            .watches_shared_stream(
                spec_changes(watches.tenants_for_clients),
                move |t: Arc<Tenant>| by_tenant.clients_of_tenant(&t.name_any()),
            )
            .watches_shared_stream(watches.secrets_for_clients, move |s: Arc<Secret>| {
                by_secret.clients_of_secret(&s)
            })
            .with_config(Config::default().concurrency(CLIENT_CONCURRENCY))
            .reconcile_on(requeued)
            .reconcile_on(watches.clients_to_revisit)
            .reconcile_all_on(drift_clients)
            .graceful_shutdown_on(end)
            .run(
                client::reconcile_client,
                |c, e, ctx| error_policy(c, e, ctx, client::KIND),
                ctx,
            )
            .for_each(|_| async {})
    };
    // Read before the first reconcile, so that workload-identity clients need not wait.
    workloads::refresh_issuer(&ctx_for_workloads).await;
    tokio::select! {
        _ = futures::future::join(tenant_controller, client_controller) => {}
        () = drift => {}
        () = backlog => {}
        () = workloads::run(ctx_for_workloads) => {}
    }
    // No longer leading: the backlog is another replica's to report.
    metrics.set_pending(tenant::KIND, 0);
    metrics.set_pending(client::KIND, 0);
}

/// Objects whose latest generation has not been reconciled (never, or an older one), or whose
/// deletion waits for its finalizer: what the controller has yet to get to.
pub fn pending<K: kube::Resource>(
    objects: &[Arc<K>],
    observed: impl Fn(&K) -> Option<i64>,
) -> usize {
    objects
        .iter()
        .filter(|o| {
            o.meta().deletion_timestamp.is_some()
                || o.meta().generation.is_some_and(|g| observed(o) != Some(g))
        })
        .count()
}

/// Tenants that are Ready (so were published) but that the store no longer holds: the sign
/// of a flushed or replaced Redis, answered by reconciling everything again.
pub fn lost_tenants<V>(tenants: &[Arc<Tenant>], stored: &BTreeMap<String, V>) -> Vec<String> {
    tenants
        .iter()
        .filter(|t| t.metadata.deletion_timestamp.is_none())
        .filter(|t| {
            t.status.as_ref().is_some_and(|s| {
                ConditionStatus::of(&s.conditions, types::READY) == ConditionStatus::True
            })
        })
        .map(|t| t.name_any())
        .filter(|n| !stored.contains_key(n))
        .collect()
}
