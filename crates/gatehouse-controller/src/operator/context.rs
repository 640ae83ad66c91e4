//! What every reconcile of the operator shares: the caches the watches fill, the index of
//! relations between objects, the store publisher, the cluster handle, and the clock.

use super::index::Index;
use super::metrics::OperatorMetrics;
use crate::cluster::Kube;
use crate::issuers::TrustedKeys;
use crate::issuers::fetch::Fetcher;
use crate::publish::Publisher;
use crate::reconcile::ClusterIssuer;
use gatehouse_core::clock::Clock;
use gatehouse_crd::{OAuthClient, Tenant};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::{ObjectRef, Store as Cache};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The caches of the three watched kinds and the index built alongside them.
#[derive(Clone)]
pub struct Caches {
    pub tenants: Cache<Tenant>,
    pub clients: Cache<OAuthClient>,
    pub secrets: Cache<Secret>,
    pub index: Index,
}

impl Caches {
    /// Waits until the three caches hold their first full list; false if a watch ended first.
    pub async fn filled(&self) -> bool {
        let synced = futures::future::join3(
            self.tenants.wait_until_ready(),
            self.clients.wait_until_ready(),
            self.secrets.wait_until_ready(),
        )
        .await;
        matches!(synced, (Ok(()), Ok(()), Ok(())))
    }
}

pub struct Context {
    pub kube: Kube,
    pub caches: Caches,
    pub publisher: Publisher,
    pub public_url: String,
    /// The operator's own namespace, where tenants' keys Secrets live.
    pub namespace: String,
    pub metrics: Arc<OperatorMetrics>,
    /// Clients whose outcome may have changed because another one did (a contested client id
    /// freed or taken): the client controller reconciles them next.
    pub requeue_clients: futures::channel::mpsc::UnboundedSender<ObjectRef<OAuthClient>>,
    /// The process's one clock.
    pub clock: Arc<dyn Clock>,
    /// Tenants' trusted issuers' keys as last read (see [`crate::issuers`]).
    pub trusted: TrustedKeys,
    /// What reads them.
    pub fetcher: Fetcher,
    /// The cluster's ServiceAccount issuer as last read (see [`super::workloads`]).
    cluster_issuer: std::sync::RwLock<Option<ClusterIssuer>>,
    /// Consecutive failures per object, for backoff.
    failures: Mutex<HashMap<String, u32>>,
}

/// Longest wait between retries of a failing object.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Where the operator publishes and what it reports as.
pub struct Setting {
    pub public_url: String,
    pub namespace: String,
    pub clock: Arc<dyn Clock>,
    /// How trusted issuers' keys are read, and how often.
    pub fetcher: Fetcher,
    pub issuer_refresh: Duration,
}

impl Context {
    pub fn new(
        kube: Kube,
        caches: Caches,
        publisher: Publisher,
        setting: Setting,
        metrics: Arc<OperatorMetrics>,
        requeue_clients: futures::channel::mpsc::UnboundedSender<ObjectRef<OAuthClient>>,
    ) -> Self {
        Context {
            kube,
            caches,
            publisher,
            public_url: setting.public_url,
            namespace: setting.namespace,
            metrics,
            requeue_clients,
            clock: setting.clock,
            trusted: TrustedKeys::new(setting.issuer_refresh),
            fetcher: setting.fetcher,
            cluster_issuer: std::sync::RwLock::new(None),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The cluster's ServiceAccount issuer and keys, once read.
    pub fn cluster_issuer(&self) -> Option<ClusterIssuer> {
        self.cluster_issuer.read().ok().and_then(|i| i.clone())
    }

    /// Records what discovery read; true when it differs from what was known.
    pub fn set_cluster_issuer(&self, issuer: ClusterIssuer) -> bool {
        let Ok(mut known) = self.cluster_issuer.write() else {
            return false;
        };
        if known.as_ref() == Some(&issuer) {
            return false;
        }
        *known = Some(issuer);
        true
    }

    /// Unix seconds now.
    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Now, as the time of a condition.
    pub fn now_time(&self) -> Time {
        time_of(self.now())
    }

    /// A cached Secret.
    pub fn secret(&self, namespace: &str, name: &str) -> Option<Arc<Secret>> {
        self.caches
            .secrets
            .get(&ObjectRef::new(name).within(namespace))
    }

    /// A cached Tenant.
    pub fn tenant(&self, name: &str) -> Option<Arc<Tenant>> {
        self.caches.tenants.get(&ObjectRef::new(name))
    }

    /// The wait before retrying `key` after its `n`th consecutive failure: 1 s, doubling, up
    /// to five minutes.
    pub fn failed(&self, key: &str) -> Duration {
        let n = self.failures.lock().map_or(1, |mut f| {
            let n = f.entry(key.to_string()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        });
        Duration::from_secs(1u64 << n.min(9).saturating_sub(1)).min(MAX_BACKOFF)
    }

    pub fn succeeded(&self, key: &str) {
        if let Ok(mut f) = self.failures.lock() {
            f.remove(key);
        }
    }
}

/// Unix seconds as a Kubernetes timestamp.
pub fn time_of(unix: u64) -> Time {
    Time(
        Timestamp::from_second(i64::try_from(unix).unwrap_or(i64::MAX))
            .unwrap_or(Timestamp::UNIX_EPOCH),
    )
}
