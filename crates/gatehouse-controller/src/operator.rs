//! The Kubernetes operator: watches Tenants, OAuthClients and Secrets into in-memory caches,
//! and on every change (and periodically) runs the same reconcile core as standalone over the
//! whole cached state, publishes the result to the store and writes statuses and generated
//! Secrets back through [`ClusterWriter`]. Level-triggered: any pass can be repeated, and a
//! restarted operator converges from whatever it finds.
//!
//! Not yet here (see issue 4): finalizers, events, leader election, signing keys kept in a
//! Secret with rotation, and per-kind controllers with mappers.

use crate::cluster::ClusterWriter;
use crate::conditions::{Verdict, set};
use crate::publish::{Publisher, record_signing_keys};
use crate::reconcile::{Observed, Reconciled, reconcile};
use futures::StreamExt;
use gatehouse_core::keys::KeyEncryptionKey;
use gatehouse_crd::condition::{reasons, types};
use gatehouse_crd::{OAuthClient, Tenant};
use gatehouse_store::Store;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::reflector::{self, Store as Cache};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// A full pass runs at least this often, even without changes (refills a flushed store).
const RESYNC: Duration = Duration::from_secs(30);
/// Changes arriving together are handled in one pass.
const DEBOUNCE: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Watches `api` into a cache, waking `notify` on every change.
fn watch<K>(api: Api<K>, notify: Arc<Notify>) -> Cache<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let (cache, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).default_backoff(),
    )
    .touched_objects();
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => notify.notify_one(),
                Err(e) => tracing::warn!(error = %e, "watch failed; retrying"),
            }
        }
    });
    cache
}

fn owned<K>(cache: &Cache<K>) -> Vec<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    cache.state().iter().map(|k| (**k).clone()).collect()
}

/// Marks everything not ready because the store could not be written; the next pass clears it.
fn store_unavailable(reconciled: &mut Reconciled, message: &str, now: &Time) {
    let verdict = Verdict::new(
        types::READY,
        false,
        reasons::STORE_UNAVAILABLE,
        format!("cannot write to the store: {message}; retrying"),
    );
    for t in &mut reconciled.tenants {
        let generation = t.status.observed_generation;
        set(&mut t.status.conditions, &verdict, generation, now);
    }
    for c in &mut reconciled.clients {
        let generation = c.status.observed_generation;
        set(&mut c.status.conditions, &verdict, generation, now);
    }
}

/// Runs until `shutdown` resolves.
pub async fn run(
    client: Client,
    store: Arc<dyn Store>,
    kek: Arc<KeyEncryptionKey>,
    public_url: String,
    shutdown: impl Future<Output = ()>,
) -> Result<(), kube::runtime::reflector::store::WriterDropped> {
    let notify = Arc::new(Notify::new());
    let tenants = watch(Api::<Tenant>::all(client.clone()), notify.clone());
    let clients = watch(Api::<OAuthClient>::all(client.clone()), notify.clone());
    let secrets = watch(Api::<Secret>::all(client.clone()), notify.clone());
    tenants.wait_until_ready().await?;
    clients.wait_until_ready().await?;
    secrets.wait_until_ready().await?;
    tracing::info!("caches synced; reconciling");
    let publisher = Publisher::new(store, kek);
    let writer = ClusterWriter::new(client);
    let mut backoff = Duration::from_millis(500);
    futures::pin_mut!(shutdown);
    loop {
        let (t, c, s) = (owned(&tenants), owned(&clients), owned(&secrets));
        let now = Time(Timestamp::now());
        let mut reconciled = reconcile(&Observed {
            tenants: &t,
            clients: &c,
            secrets: &s,
            public_url: &public_url,
            now: now.clone(),
        });
        let mut retry = false;
        match publisher
            .publish(&reconciled, gatehouse_store::unix_now())
            .await
        {
            Ok(report) => record_signing_keys(&mut reconciled, &report),
            Err(e) => {
                tracing::error!(error = %e, "publishing to the store failed");
                store_unavailable(&mut reconciled, &e.to_string(), &now);
                retry = true;
            }
        }
        match writer.write(&reconciled, &t, &c, &s).await {
            Ok(report)
                if !report.statuses_written.is_empty() || !report.secrets_created.is_empty() =>
            {
                tracing::info!(statuses = ?report.statuses_written, secrets = ?report.secrets_created, "cluster updated");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "writing to the cluster failed");
                retry = true;
            }
        }
        let wait = if retry {
            backoff = (backoff * 2).min(MAX_BACKOFF);
            backoff
        } else {
            backoff = Duration::from_millis(500);
            RESYNC
        };
        tokio::select! {
            _ = notify.notified() => tokio::time::sleep(DEBOUNCE).await,
            _ = tokio::time::sleep(wait) => {}
            _ = &mut shutdown => {
                tracing::info!("operator stopping");
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_store_outage_shows_as_ready_false_until_the_next_pass() {
        let tenant: Tenant = serde_json::from_value(json!({
            "apiVersion": "gatehouse.dev/v1alpha1", "kind": "Tenant",
            "metadata": {"name": "acme", "generation": 3}, "spec": {"grantTypes": ["client_credentials"]}
        }))
        .unwrap();
        let now = Time(Timestamp::from_second(1_700_000_000).unwrap());
        let mut reconciled = reconcile(&Observed {
            tenants: &[tenant],
            clients: &[],
            secrets: &[],
            public_url: "http://x",
            now: now.clone(),
        });
        let later = Time(Timestamp::from_second(1_700_000_100).unwrap());
        store_unavailable(&mut reconciled, "connection refused", &later);
        let ready = crate::conditions::find(&reconciled.tenants[0].status.conditions, types::READY)
            .unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", reasons::STORE_UNAVAILABLE)
        );
        assert!(ready.message.contains("connection refused"));
        assert_eq!(ready.last_transition_time, later, "a real transition");
        assert_eq!(ready.observed_generation, Some(3));
        assert_eq!(
            reconciled.tenants[0].status.conditions.len(),
            1,
            "replaced, not duplicated"
        );
    }
}
