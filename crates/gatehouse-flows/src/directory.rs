//! The in-process snapshot of every tenant, kept current by polling the store's per-tenant
//! configuration versions (a cheap `HGETALL` of one small hash) a few times a second and
//! reloading only the tenants whose version moved. Requests read the snapshot without touching
//! the store; if the store is unreachable the last snapshot keeps serving.

use crate::tenant::ServedTenant;
use gatehouse_core::keys::KeyEncryptionKey;
use gatehouse_store::{Store, StoreError, Version};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

type Snapshot = HashMap<String, (Version, Arc<ServedTenant>)>;

pub struct TenantDirectory {
    store: Arc<dyn Store>,
    kek: Arc<KeyEncryptionKey>,
    public_url: String,
    tenants: RwLock<Arc<Snapshot>>,
    loaded: AtomicBool,
    healthy: AtomicBool,
}

impl TenantDirectory {
    pub fn new(store: Arc<dyn Store>, kek: Arc<KeyEncryptionKey>, public_url: &str) -> Self {
        TenantDirectory {
            store,
            kek,
            public_url: public_url.trim_end_matches('/').to_string(),
            tenants: RwLock::new(Arc::new(HashMap::new())),
            loaded: AtomicBool::new(false),
            healthy: AtomicBool::new(true),
        }
    }

    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        match self.tenants.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The tenant as served, if it is.
    pub fn get(&self, name: &str) -> Option<Arc<ServedTenant>> {
        self.snapshot().get(name).map(|(_, t)| t.clone())
    }

    pub fn tenant_count(&self) -> usize {
        self.snapshot().len()
    }

    /// True once a first full load succeeded.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Relaxed)
    }

    /// Brings the snapshot up to date with the store.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let versions = self.store.tenant_versions().await?;
        let current = self.snapshot();
        let mut next: Snapshot = HashMap::with_capacity(versions.len());
        let mut changed = versions.len() != current.len();
        for (name, version) in versions {
            match current.get(&name) {
                Some((v, runtime)) if *v == version => {
                    next.insert(name, (*v, runtime.clone()));
                }
                _ => {
                    changed = true;
                    if let Some(bundle) = self.store.load_tenant(&name).await? {
                        let runtime = ServedTenant::build(bundle, &self.public_url, &self.kek);
                        tracing::info!(tenant = %name, clients = runtime.clients.len(), version, "tenant configuration loaded");
                        next.insert(name, (version, Arc::new(runtime)));
                    }
                }
            }
        }
        if changed {
            for name in current.keys().filter(|n| !next.contains_key(*n)) {
                tracing::info!(tenant = %name, "tenant removed");
            }
            match self.tenants.write() {
                Ok(mut g) => *g = Arc::new(next),
                Err(p) => *p.into_inner() = Arc::new(next),
            }
        }
        self.loaded.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Refreshes every `interval` until the process ends, logging store trouble once per
    /// outage rather than on every poll.
    pub async fn run(self: Arc<Self>, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match self.refresh().await {
                Ok(()) => {
                    if !self.healthy.swap(true, Ordering::Relaxed) {
                        tracing::info!("tenant configuration in sync with the store");
                    }
                }
                Err(e) => {
                    if self.healthy.swap(false, Ordering::Relaxed) {
                        tracing::warn!(error = %e, "cannot refresh tenant configuration; serving the last known one");
                    }
                }
            }
        }
    }
}
