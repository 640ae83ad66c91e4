//! What every reconcile of the operator shares: the caches the watches fill, the store
//! publisher, the cluster handle, and how to cut the cached state down to one tenant.

use super::metrics::OperatorMetrics;
use crate::cluster::Kube;
use crate::publish::Publisher;
use gatehouse_crd::{OAuthClient, Tenant};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store as Cache};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The Kubernetes objects one reconcile looks at.
#[derive(Default)]
pub struct Scope {
    pub tenants: Vec<Tenant>,
    pub clients: Vec<OAuthClient>,
    pub secrets: Vec<Secret>,
}

pub struct Context {
    pub kube: Kube,
    pub tenants: Cache<Tenant>,
    pub clients: Cache<OAuthClient>,
    pub secrets: Cache<Secret>,
    pub publisher: Publisher,
    pub public_url: String,
    /// The operator's own namespace, where tenants' keys Secrets live.
    pub namespace: String,
    pub metrics: Arc<OperatorMetrics>,
    /// Clients whose outcome may have changed because another one did (a contested client id
    /// freed or taken): the client controller reconciles them next.
    pub requeue_clients: futures::channel::mpsc::UnboundedSender<ObjectRef<OAuthClient>>,
    /// Unix seconds now (a parameter so tests can move time).
    pub clock: fn() -> u64,
    /// Consecutive failures per object, for backoff.
    failures: Mutex<HashMap<String, u32>>,
}

/// Longest wait between retries of a failing object.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

impl Context {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kube: Kube,
        tenants: Cache<Tenant>,
        clients: Cache<OAuthClient>,
        secrets: Cache<Secret>,
        publisher: Publisher,
        public_url: String,
        namespace: String,
        metrics: Arc<OperatorMetrics>,
        requeue_clients: futures::channel::mpsc::UnboundedSender<ObjectRef<OAuthClient>>,
    ) -> Self {
        Context {
            kube,
            tenants,
            clients,
            secrets,
            publisher,
            public_url,
            namespace,
            metrics,
            requeue_clients,
            clock: gatehouse_store::unix_now,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn secret(&self, namespace: &str, name: &str) -> Option<Secret> {
        self.secrets
            .get(&ObjectRef::new(name).within(namespace))
            .map(|s| (*s).clone())
    }

    /// The clients of tenant `tenant` (by `tenantRef`), optionally only those claiming `id`.
    fn clients_of(&self, tenant: &str, id: Option<&str>) -> Vec<OAuthClient> {
        self.clients
            .state()
            .iter()
            .filter(|c| c.spec.tenant_ref == tenant)
            .filter(|c| {
                id.is_none_or(|id| {
                    c.spec
                        .effective_client_id(&c.namespace().unwrap_or_default(), &c.name_any())
                        == id
                })
            })
            .map(|c| (**c).clone())
            .collect()
    }

    /// Everything a tenant's outcome depends on: itself, its users Secret, its clients and
    /// their credentials Secrets (the client count counts clients that are live).
    pub fn tenant_scope(&self, tenant: &str) -> Scope {
        let clients = self.clients_of(tenant, None);
        self.scope(tenant, clients)
    }

    /// Everything one client's outcome depends on: its tenant and the clients of that tenant
    /// claiming the same client id (the oldest keeps it), with their Secrets.
    pub fn client_scope(&self, client: &OAuthClient) -> Scope {
        let id = client
            .spec
            .effective_client_id(&client.namespace().unwrap_or_default(), &client.name_any());
        let mut clients = self.clients_of(&client.spec.tenant_ref, Some(&id));
        if !clients.iter().any(|c| c.uid() == client.uid()) {
            clients.push(client.clone());
        }
        self.scope(&client.spec.tenant_ref, clients)
    }

    fn scope(&self, tenant: &str, clients: Vec<OAuthClient>) -> Scope {
        let tenant = self
            .tenants
            .get(&ObjectRef::new(tenant))
            .map(|t| (*t).clone());
        let mut secrets = Vec::new();
        if let Some(users) = tenant.as_ref().and_then(|t| t.spec.users.as_ref()) {
            let r = &users.secret_ref;
            secrets.extend(self.secret(&r.namespace, &r.name));
        }
        for c in &clients {
            let namespace = c.namespace().unwrap_or_default();
            let name = c.spec.effective_secret_ref(&c.name_any()).name;
            secrets.extend(self.secret(&namespace, &name));
        }
        Scope {
            tenants: tenant.into_iter().collect(),
            clients,
            secrets,
        }
    }

    /// The wait before retrying `key` after its `n`th consecutive failure: 1 s, doubling, up
    /// to five minutes.
    pub fn failed(&self, key: &str) -> Duration {
        let n = self
            .failures
            .lock()
            .map(|mut f| {
                let n = f.entry(key.to_string()).or_insert(0);
                *n = n.saturating_add(1);
                *n
            })
            .unwrap_or(1);
        Duration::from_secs(1u64 << n.min(9).saturating_sub(1)).min(MAX_BACKOFF)
    }

    pub fn succeeded(&self, key: &str) {
        if let Ok(mut f) = self.failures.lock() {
            f.remove(key);
        }
    }
}
