//! What the operator knows about the relations between objects, kept up to date from its
//! watches event by event, so that no reconcile and no mapper scans every cached object:
//! which clients belong to a tenant, which use a Secret, who claims a client id, how many of
//! a tenant's clients are live, and which tenants read a users Secret.
//!
//! The watches feed it before the caches and controllers see an event. Deletions, which
//! kube-runtime's shared streams do not pass on, come back from here as the objects to
//! reconcile because of them.

use crate::cluster::TENANT_LABEL;
use crate::reconcile::{Claimant, ClientIds, may_claim_id};
use gatehouse_crd::condition::{ConditionStatus, types};
use gatehouse_crd::{OAuthClient, Tenant};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

type Key = (String, String);

/// What the index remembers of one client.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ClientEntry {
    tenant: String,
    secret: Key,
    live: bool,
}

#[derive(Default)]
struct Clients {
    ids: ClientIds,
    entries: HashMap<Key, ClientEntry>,
    by_tenant: HashMap<String, HashSet<Key>>,
    by_secret: HashMap<Key, HashSet<Key>>,
    live: HashMap<String, usize>,
}

impl Clients {
    fn insert(&mut self, client: &OAuthClient) {
        let key = (client.namespace().unwrap_or_default(), client.name_any());
        let entry = ClientEntry {
            tenant: client.spec.tenant_ref.clone(),
            secret: (key.0.clone(), client.spec.effective_secret_ref(&key.1).name),
            live: client.status.as_ref().is_some_and(|s| {
                ConditionStatus::of(&s.conditions, types::READY) == ConditionStatus::True
            }),
        };
        self.ids.insert(client);
        if self.entries.get(&key) == Some(&entry) {
            return;
        }
        self.forget(&key);
        self.by_tenant
            .entry(entry.tenant.clone())
            .or_default()
            .insert(key.clone());
        self.by_secret
            .entry(entry.secret.clone())
            .or_default()
            .insert(key.clone());
        if entry.live {
            *self.live.entry(entry.tenant.clone()).or_default() += 1;
        }
        self.entries.insert(key, entry);
    }

    fn remove(&mut self, namespace: &str, name: &str) {
        self.ids.remove(namespace, name);
        self.forget(&(namespace.to_string(), name.to_string()));
    }

    fn forget(&mut self, key: &Key) {
        let Some(old) = self.entries.remove(key) else {
            return;
        };
        remove_from(&mut self.by_tenant, &old.tenant, key);
        remove_from(&mut self.by_secret, &old.secret, key);
        if old.live
            && let Some(n) = self.live.get_mut(&old.tenant)
        {
            *n = n.saturating_sub(1);
        }
    }
}

fn remove_from<K: std::hash::Hash + Eq, V: std::hash::Hash + Eq>(
    map: &mut HashMap<K, HashSet<V>>,
    at: &K,
    value: &V,
) {
    if let Some(set) = map.get_mut(at) {
        set.remove(value);
        if set.is_empty() {
            map.remove(at);
        }
    }
}

#[derive(Default)]
struct Tenants {
    users_secret: HashMap<String, Key>,
    by_users_secret: HashMap<Key, HashSet<String>>,
}

impl Tenants {
    fn insert(&mut self, tenant: &Tenant) {
        let name = tenant.name_any();
        self.remove(&name);
        if let Some(users) = &tenant.spec.users {
            let key = (
                users.secret_ref.namespace.clone(),
                users.secret_ref.name.clone(),
            );
            self.by_users_secret
                .entry(key.clone())
                .or_default()
                .insert(name.clone());
            self.users_secret.insert(name, key);
        }
    }

    fn remove(&mut self, name: &str) {
        if let Some(key) = self.users_secret.remove(name) {
            remove_from(&mut self.by_users_secret, &key, &name.to_string());
        }
    }
}

#[derive(Default)]
struct State {
    clients: Clients,
    tenants: Tenants,
    /// Objects listed so far during a relist (between `Init` and `InitDone`).
    relisting_clients: Option<Clients>,
    relisting_tenants: Option<Tenants>,
}

/// The operator's index; cheap to clone (one shared state).
#[derive(Clone, Default)]
pub struct Index {
    state: Arc<RwLock<State>>,
}

/// Objects to reconcile because something they depend on was deleted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Triggers {
    pub tenants: Vec<ObjectRef<Tenant>>,
    pub clients: Vec<ObjectRef<OAuthClient>>,
}

fn client_refs(keys: Option<&HashSet<Key>>) -> Vec<ObjectRef<OAuthClient>> {
    let mut out: Vec<ObjectRef<OAuthClient>> = keys
        .into_iter()
        .flatten()
        .map(|(ns, name)| ObjectRef::new(name).within(ns))
        .collect();
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    out
}

impl Index {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes in an event of the OAuthClient watch.
    pub fn client_event(&self, event: &watcher::Event<OAuthClient>) -> Triggers {
        let mut state = self.write();
        match event {
            watcher::Event::Apply(c) => state.clients.insert(c),
            watcher::Event::Delete(c) => {
                state
                    .clients
                    .remove(&c.namespace().unwrap_or_default(), &c.name_any());
                // Its tenant counts one client less; the clients that wanted its id may win it.
                let (tenant, id) = ClientIds::claim_of(c);
                let rivals = state
                    .clients
                    .ids
                    .claimants(&tenant, &id)
                    .map(|r| ObjectRef::new(&r.name).within(&r.namespace))
                    .collect();
                return Triggers {
                    tenants: vec![ObjectRef::new(&tenant)],
                    clients: rivals,
                };
            }
            watcher::Event::Init => state.relisting_clients = Some(Clients::default()),
            watcher::Event::InitApply(c) => {
                if let Some(relisting) = state.relisting_clients.as_mut() {
                    relisting.insert(c);
                }
            }
            watcher::Event::InitDone => {
                if let Some(relisted) = state.relisting_clients.take() {
                    state.clients = relisted;
                }
            }
        }
        Triggers::default()
    }

    /// Takes in an event of the Tenant watch.
    pub fn tenant_event(&self, event: &watcher::Event<Tenant>) -> Triggers {
        let mut state = self.write();
        match event {
            watcher::Event::Apply(t) => state.tenants.insert(t),
            watcher::Event::Delete(t) => {
                let name = t.name_any();
                state.tenants.remove(&name);
                // Its clients lose their tenant.
                return Triggers {
                    tenants: Vec::new(),
                    clients: client_refs(state.clients.by_tenant.get(&name)),
                };
            }
            watcher::Event::Init => state.relisting_tenants = Some(Tenants::default()),
            watcher::Event::InitApply(t) => {
                if let Some(relisting) = state.relisting_tenants.as_mut() {
                    relisting.insert(t);
                }
            }
            watcher::Event::InitDone => {
                if let Some(relisted) = state.relisting_tenants.take() {
                    state.tenants = relisted;
                }
            }
        }
        Triggers::default()
    }

    /// Takes in an event of the Secret watch (Secrets are only looked up, never indexed; a
    /// deleted one matters to whoever used it).
    pub fn secret_event(
        &self,
        event: &watcher::Event<Secret>,
        operator_namespace: &str,
    ) -> Triggers {
        match event {
            watcher::Event::Delete(s) => Triggers {
                tenants: self.tenants_of_secret(s, operator_namespace),
                clients: self.clients_of_secret(s),
            },
            _ => Triggers::default(),
        }
    }

    /// The clients of `tenant`.
    #[must_use]
    pub fn clients_of_tenant(&self, tenant: &str) -> Vec<ObjectRef<OAuthClient>> {
        client_refs(self.read().clients.by_tenant.get(tenant))
    }

    /// The clients whose credentials live in `secret`.
    #[must_use]
    pub fn clients_of_secret(&self, secret: &Secret) -> Vec<ObjectRef<OAuthClient>> {
        let key = (secret.namespace().unwrap_or_default(), secret.name_any());
        client_refs(self.read().clients.by_secret.get(&key))
    }

    /// The tenants `secret` matters to: those whose users it holds, and the one whose signing
    /// keys it holds (in the operator's namespace, labelled with the tenant).
    #[must_use]
    pub fn tenants_of_secret(
        &self,
        secret: &Secret,
        operator_namespace: &str,
    ) -> Vec<ObjectRef<Tenant>> {
        let namespace = secret.namespace().unwrap_or_default();
        let key = (namespace.clone(), secret.name_any());
        let mut out: Vec<ObjectRef<Tenant>> = self
            .read()
            .tenants
            .by_users_secret
            .get(&key)
            .into_iter()
            .flatten()
            .map(|t| ObjectRef::new(t))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        if namespace == operator_namespace
            && let Some(tenant) = secret.labels().get(TENANT_LABEL)
        {
            out.push(ObjectRef::new(tenant));
        }
        out
    }

    /// How many of `tenant`'s clients say they are live (their `Ready` condition).
    #[must_use]
    pub fn live_clients(&self, tenant: &str) -> usize {
        self.read().clients.live.get(tenant).copied().unwrap_or(0)
    }

    /// The clients claiming `client`'s id in its tenant, oldest first (itself included).
    #[must_use]
    pub fn rivals(&self, client: &OAuthClient) -> Vec<Claimant> {
        let (tenant, id) = ClientIds::claim_of(client);
        self.read()
            .clients
            .ids
            .claimants(&tenant, &id)
            .cloned()
            .collect()
    }

    /// Whether `client` holds its client id in `tenant`: the oldest claimant that may claim it,
    /// each claimant as `clients` has it now.
    #[must_use]
    pub fn holds_id(
        &self,
        client: &OAuthClient,
        tenant: Option<&Tenant>,
        clients: &Store<OAuthClient>,
    ) -> bool {
        let Some(tenant) = tenant else {
            return false;
        };
        let namespace = client.namespace().unwrap_or_default();
        let name = client.name_any();
        for claimant in self.rivals(client) {
            let object = if claimant.namespace == namespace && claimant.name == name {
                Some(Arc::new(client.clone()))
            } else {
                clients.get(&ObjectRef::new(&claimant.name).within(&claimant.namespace))
            };
            if object.is_some_and(|c| may_claim_id(&c, tenant)) {
                return claimant.namespace == namespace && claimant.name == name;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn client(name: &str, created: i64, secret: &str, ready: Option<&str>) -> OAuthClient {
        let mut c: OAuthClient = serde_json::from_value(json!({
            "apiVersion": "gatehouse.dev/v1alpha1", "kind": "OAuthClient",
            "metadata": {"name": name, "namespace": "acme",
                         "creationTimestamp": k8s_openapi::jiff::Timestamp::from_second(created).unwrap().to_string()},
            "spec": {"tenantRef": "acme", "clientId": "shared", "grantTypes": ["client_credentials"],
                     "secretRef": {"name": secret}}
        }))
        .unwrap();
        if let Some(status) = ready {
            c.status = Some(
                serde_json::from_value(json!({"conditions": [{
                "type": "Ready", "status": status, "reason": "R", "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z"}]}))
                .unwrap(),
            );
        }
        c
    }

    #[test]
    fn relations_follow_each_event_and_deletions_name_who_to_reconcile() {
        let index = Index::default();
        let a = client("a", 10, "shared-secret", Some("True"));
        let b = client("b", 20, "b-secret", Some("False"));
        index.client_event(&watcher::Event::Apply(a.clone()));
        index.client_event(&watcher::Event::Apply(b.clone()));
        assert_eq!(index.clients_of_tenant("acme").len(), 2);
        assert_eq!(index.live_clients("acme"), 1);
        let mut secret = Secret::default();
        secret.metadata.namespace = Some("acme".into());
        secret.metadata.name = Some("shared-secret".into());
        assert_eq!(
            index.clients_of_secret(&secret),
            vec![ObjectRef::new("a").within("acme")]
        );

        // b goes live, then a moves to another Secret and stops being live.
        index.client_event(&watcher::Event::Apply(client(
            "b",
            20,
            "b-secret",
            Some("True"),
        )));
        index.client_event(&watcher::Event::Apply(client(
            "a",
            10,
            "other",
            Some("False"),
        )));
        assert_eq!(index.live_clients("acme"), 1);
        assert!(index.clients_of_secret(&secret).is_empty());
        assert_eq!(index.rivals(&a).len(), 2);

        let triggers = index.client_event(&watcher::Event::Delete(a.clone()));
        assert_eq!(triggers.tenants, vec![ObjectRef::new("acme")]);
        assert_eq!(
            triggers.clients,
            vec![ObjectRef::new("b").within("acme")],
            "b may now hold the id"
        );
        let triggers = index.secret_event(
            &watcher::Event::Delete({
                let mut s = secret.clone();
                s.metadata.name = Some("b-secret".into());
                s
            }),
            "gatehouse",
        );
        assert_eq!(triggers.clients, vec![ObjectRef::new("b").within("acme")]);

        // A relist replaces everything at once.
        index.client_event(&watcher::Event::Init);
        index.client_event(&watcher::Event::InitApply(client(
            "c",
            30,
            "c-secret",
            Some("True"),
        )));
        assert_eq!(
            index.clients_of_tenant("acme").len(),
            1,
            "the old view serves until the relist is done"
        );
        index.client_event(&watcher::Event::InitDone);
        assert_eq!(
            index.clients_of_tenant("acme"),
            vec![ObjectRef::new("c").within("acme")]
        );
        assert_eq!(index.live_clients("acme"), 1);
    }
}
