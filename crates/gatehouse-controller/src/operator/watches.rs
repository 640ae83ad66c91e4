//! The operator's watches: one per kind (Tenants, OAuthClients, and the Secrets carrying the
//! watch label `gatehouse.dev/watch=true`), each feeding the
//! [`Index`], a shared cache, and the controllers subscribed to it (kube-runtime's shared
//! streams). Watch failures are logged and ridden out with backoff. Deletions, which shared
//! streams do not pass on, reach the controllers as the objects the index says they affect.

use super::context::Caches;
use super::index::{Index, Triggers};
use crate::secrets::WATCH_SELECTOR;
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use futures::{Stream, StreamExt, TryStreamExt};
use gatehouse_crd::{OAuthClient, Tenant};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{self, ObjectRef, ReflectHandle};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

/// How many events a slow subscriber may lag behind before the watch waits for it.
const SUBSCRIBER_BUFFER: usize = 1024;

/// What the controllers consume.
pub struct Watches {
    pub caches: Caches,
    /// Each kind, once for each controller that follows it.
    pub tenants_for_tenants: ReflectHandle<Tenant>,
    pub tenants_for_clients: ReflectHandle<Tenant>,
    pub clients_for_clients: ReflectHandle<OAuthClient>,
    pub clients_for_tenants: ReflectHandle<OAuthClient>,
    pub secrets_for_tenants: ReflectHandle<Secret>,
    pub secrets_for_clients: ReflectHandle<Secret>,
    /// Objects to reconcile because something they depend on was deleted.
    pub tenants_to_revisit: UnboundedReceiver<ObjectRef<Tenant>>,
    pub clients_to_revisit: UnboundedReceiver<ObjectRef<OAuthClient>>,
}

/// Senders of [`Triggers`].
#[derive(Clone)]
struct Triggered {
    tenants: UnboundedSender<ObjectRef<Tenant>>,
    clients: UnboundedSender<ObjectRef<OAuthClient>>,
}

impl Triggered {
    fn send(&self, triggers: Triggers) {
        for t in triggers.tenants {
            let _ = self.tenants.unbounded_send(t);
        }
        for c in triggers.clients {
            let _ = self.clients.unbounded_send(c);
        }
    }
}

/// A writer made by `store_shared` always hands out subscribers; `None` would be a bug of the
/// runtime, reported rather than panicking.
fn subscriber<K>(writer: &Writer<K>) -> Result<ReflectHandle<K>, super::OperatorError>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Default,
{
    writer.subscribe().ok_or(super::OperatorError::NoSubscriber)
}

/// Starts nothing yet: returns what the controllers consume and the future that drives the
/// three watches (run it alongside the controllers).
pub fn watch_all(
    client: &Client,
    operator_namespace: &str,
) -> Result<(Watches, impl Future<Output = ()> + Send + use<>), super::OperatorError> {
    let index = Index::default();
    let (tenants, tenant_writer) = reflector::store_shared::<Tenant>(SUBSCRIBER_BUFFER);
    let (clients, client_writer) = reflector::store_shared::<OAuthClient>(SUBSCRIBER_BUFFER);
    let (secrets, secret_writer) = reflector::store_shared::<Secret>(SUBSCRIBER_BUFFER);
    let (tenants_tx, tenants_to_revisit) = unbounded();
    let (clients_tx, clients_to_revisit) = unbounded();
    let triggered = Triggered {
        tenants: tenants_tx,
        clients: clients_tx,
    };
    let watches = Watches {
        caches: Caches {
            tenants,
            clients,
            secrets,
            index: index.clone(),
        },
        tenants_for_tenants: subscriber(&tenant_writer)?,
        tenants_for_clients: subscriber(&tenant_writer)?,
        clients_for_clients: subscriber(&client_writer)?,
        clients_for_tenants: subscriber(&client_writer)?,
        secrets_for_tenants: subscriber(&secret_writer)?,
        secrets_for_clients: subscriber(&secret_writer)?,
        tenants_to_revisit,
        clients_to_revisit,
    };
    let tenant_feed = {
        let (index, triggered) = (index.clone(), triggered.clone());
        watch(
            Api::<Tenant>::all(client.clone()),
            watcher::Config::default(),
            tenant_writer,
            move |e| {
                triggered.send(index.tenant_event(e));
            },
        )
    };
    let client_feed = {
        let (index, triggered) = (index.clone(), triggered.clone());
        watch(
            Api::<OAuthClient>::all(client.clone()),
            watcher::Config::default(),
            client_writer,
            move |e| {
                triggered.send(index.client_event(e));
            },
        )
    };
    let secret_feed = {
        let namespace = operator_namespace.to_string();
        // Only the Secrets labelled for Gatehouse, wherever they are: the cache never holds
        // the cluster's other Secrets. One that loses the label leaves the cache (the watch
        // reports it deleted) and one that gains it enters.
        watch(
            Api::<Secret>::all(client.clone()),
            watcher::Config::default().labels(WATCH_SELECTOR),
            secret_writer,
            move |e| {
                triggered.send(index.secret_event(e, &namespace));
            },
        )
    };
    let drive = async move {
        Box::pin(futures::future::join3(
            tenant_feed,
            client_feed,
            secret_feed,
        ))
        .await;
    };
    Ok((watches, drive))
}

/// Watches `api` as `config` selects: every event goes to `on_event` (the index), then into
/// the shared cache and its subscribers.
fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
    writer: Writer<K>,
    on_event: impl Fn(&watcher::Event<K>) + Send + 'static,
) -> impl Future<Output = ()> + Send
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let events = watcher(api, config).default_backoff().map_ok(move |event| {
        on_event(&event);
        event
    });
    drain(events.reflect_shared(writer))
}

/// Only the Tenant changes its clients depend on: a new spec (its generation), deletion, or a
/// new object under the same name. A tenant's status changes each time its client count
/// does; passing those on would reconcile every client of the tenant again and again.
pub fn spec_changes(
    tenants: impl Stream<Item = Arc<Tenant>> + Send + 'static,
) -> impl Stream<Item = Arc<Tenant>> + Send + 'static {
    let mut seen: HashMap<String, (Option<i64>, bool, Option<String>)> = HashMap::new();
    tenants.filter(move |t| {
        let now = (
            t.metadata.generation,
            t.metadata.deletion_timestamp.is_some(),
            t.metadata.uid.clone(),
        );
        let changed = seen.insert(t.name_any(), now.clone()) != Some(now);
        futures::future::ready(changed)
    })
}

async fn drain<T>(stream: impl Stream<Item = Result<T, watcher::Error>> + Send) {
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        if let Err(e) = event {
            tracing::warn!(error = %e, "watch failed; retrying");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tenant(generation: i64, clients: i64, deleting: bool) -> Arc<Tenant> {
        let mut t = json!({
            "apiVersion": "gatehouse.dev/v1alpha1", "kind": "Tenant",
            "metadata": {"name": "acme", "uid": "u1", "generation": generation},
            "spec": {"grantTypes": ["client_credentials"]},
            "status": {"clients": clients}
        });
        if deleting {
            t["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        Arc::new(serde_json::from_value(t).unwrap())
    }

    #[tokio::test]
    async fn clients_hear_of_a_new_spec_or_a_deletion_not_of_a_new_count() {
        let events = futures::stream::iter(vec![
            tenant(1, 0, false),
            tenant(1, 1, false),
            tenant(1, 2, false),
            tenant(2, 2, false),
            tenant(2, 2, true),
        ]);
        let passed: Vec<(Option<i64>, bool)> = spec_changes(events)
            .map(|t| {
                (
                    t.metadata.generation,
                    t.metadata.deletion_timestamp.is_some(),
                )
            })
            .collect()
            .await;
        assert_eq!(
            passed,
            [(Some(1), false), (Some(2), false), (Some(2), true)]
        );
    }
}
