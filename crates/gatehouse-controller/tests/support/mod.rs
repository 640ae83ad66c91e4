//! A mock Kubernetes API (kube's tower-test pattern) and a world of cached objects for
//! driving the operator's reconcilers one call at a time. Every request the operator makes
//! is also checked against its declared RBAC (`gatehouse_controller::rbac::CALLS`).
#![allow(dead_code)]

use gatehouse_controller::cluster::Kube;
use gatehouse_controller::operator::index::{Index, Triggers};
use gatehouse_controller::operator::metrics::OperatorMetrics;
use gatehouse_controller::operator::{Caches, Context, Setting};
use gatehouse_controller::publish::Publisher;
use gatehouse_controller::rbac;
use gatehouse_core::keys::KeyEncryptionKey;
use gatehouse_crd::{OAuthClient, Tenant};
use gatehouse_store::Store;
use http::{Method, Request, Response};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::client::Body;
use kube::runtime::reflector::{self, ObjectRef, store::Writer};
use kube::runtime::watcher;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tower_test::mock::{self, Handle};

pub const OPERATOR_NAMESPACE: &str = "gatehouse";
pub const PUBLIC_URL: &str = "https://auth.example.com";
/// The fixed "now" of every test (unix seconds).
pub const NOW: u64 = 1_700_000_000;
pub const NOW_RFC3339: &str = "2023-11-14T22:13:20Z";

pub fn now() -> u64 {
    NOW
}

pub struct ApiServer {
    handle: Handle<Request<Body>, Response<Body>>,
}

/// One request the operator made.
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub accept: String,
    pub body: Value,
}

fn header(request: &Request<Body>, name: &str) -> String {
    request
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

fn call<'a>(
    method: &'a Method,
    path: &'a str,
    query: &'a str,
    accept: &'a str,
) -> rbac::Request<'a> {
    rbac::Request {
        method: method.as_str(),
        path,
        query,
        accept,
    }
}

impl ApiServer {
    pub fn from_handle(handle: Handle<Request<Body>, Response<Body>>) -> Self {
        ApiServer { handle }
    }

    /// Answers every request in the background as an apiserver would (echoing what was
    /// written) and records it, for tests about what the token service serves rather than
    /// which calls were made. Requests are still checked against the RBAC.
    pub fn autopilot(mut self) -> Arc<std::sync::Mutex<Vec<Seen>>> {
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = log.clone();
        tokio::spawn(async move {
            loop {
                let next = self.handle.next_request().await;
                let Some((request, send)) = next else { return };
                let method = request.method().clone();
                let path = request.uri().path().to_string();
                let query = request.uri().query().unwrap_or_default().to_string();
                let accept = header(&request, "accept");
                let (_group, resource, verb, _namespace) =
                    rbac::check(&call(&method, &path, &query, &accept), OPERATOR_NAMESPACE)
                        .unwrap_or_else(|e| panic!("{e}"));
                let bytes = request.into_body().collect_bytes().await.unwrap();
                let body: Value = if bytes.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&bytes).unwrap()
                };
                let reply = match resource.split('/').next().unwrap_or_default() {
                    // A lookup of a Secret the cache lacks: none exists.
                    _ if verb == "list" => json!({"metadata": {}, "items": []}),
                    "tenants" => json!({"apiVersion": "gatehouse.dev/v1alpha1", "kind": "Tenant",
                        "metadata": {"name": "x"}, "spec": {"grantTypes": ["client_credentials"]}}),
                    "oauthclients" => {
                        json!({"apiVersion": "gatehouse.dev/v1alpha1", "kind": "OAuthClient",
                        "metadata": {"name": "x", "namespace": "x"},
                        "spec": {"tenantRef": "x", "grantTypes": ["client_credentials"]}})
                    }
                    _ if body.is_object() => body.clone(),
                    _ => json!({}),
                };
                send.send_response(
                    Response::builder()
                        .status(200)
                        .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                        .unwrap(),
                );
                if let Ok(mut log) = record.lock() {
                    log.push(Seen {
                        method,
                        path,
                        query,
                        content_type: String::new(),
                        accept,
                        body,
                    });
                }
            }
        });
        log
    }

    /// A server nobody talks to, to stand in for one handed to [`ApiServer::autopilot`].
    pub fn detached() -> Self {
        let (_service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        ApiServer { handle }
    }

    /// Waits for the next request; asserts it is allowed by the declared RBAC.
    pub async fn next(&mut self) -> (Seen, tower_test::mock::SendResponse<Response<Body>>) {
        let (request, send) =
            tokio::time::timeout(Duration::from_secs(5), self.handle.next_request())
                .await
                .expect("the operator made no further request")
                .expect("client dropped");
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let query = request.uri().query().unwrap_or_default().to_string();
        let content_type = header(&request, "content-type");
        let accept = header(&request, "accept");
        rbac::check(&call(&method, &path, &query, &accept), OPERATOR_NAMESPACE)
            .unwrap_or_else(|e| panic!("{e}"));
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (
            Seen {
                method,
                path,
                query,
                content_type,
                accept,
                body,
            },
            send,
        )
    }

    /// Expects `method path`; answers `status` with `reply` (or echoes the body when `None`).
    pub async fn expect(
        &mut self,
        method: Method,
        path: &str,
        status: u16,
        reply: Option<Value>,
    ) -> Value {
        let (seen, send) = self.next().await;
        assert_eq!(
            (&seen.method, seen.path.as_str()),
            (&method, path),
            "unexpected request (body {})",
            seen.body
        );
        let reply = match reply {
            Some(r) => r,
            None => seen.body.clone(),
        };
        send.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                .unwrap(),
        );
        seen.body
    }

    /// Expects a server-side apply of `path` under the operator's field manager, forced;
    /// answers `reply`; returns the applied body.
    pub async fn expect_apply(&mut self, path: &str, reply: Value) -> Value {
        let (seen, send) = self.next().await;
        assert_eq!((&seen.method, seen.path.as_str()), (&Method::PATCH, path));
        assert_eq!(seen.content_type, "application/apply-patch+yaml");
        let params: Vec<&str> = seen.query.split('&').collect();
        assert!(
            params.contains(&"fieldManager=gatehouse-operator") && params.contains(&"force=true"),
            "{}",
            seen.query
        );
        send.send_response(
            Response::builder()
                .status(200)
                .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                .unwrap(),
        );
        seen.body
    }

    /// Expects an Event (events.k8s.io/v1) in `namespace`; returns (type, reason, regarding kind/name).
    /// A repeat of a recent event is a PATCH that bumps its series, which is accepted too.
    pub async fn expect_event(&mut self, namespace: &str) -> (String, String, String, String) {
        let path = format!("/apis/events.k8s.io/v1/namespaces/{namespace}/events");
        let (seen, send) = self.next().await;
        assert!(
            (seen.method == Method::POST && seen.path == path)
                || (seen.method == Method::PATCH && seen.path.starts_with(&format!("{path}/"))),
            "expected an event, got {} {} ({})",
            seen.method,
            seen.path,
            seen.body
        );
        send.send_response(
            Response::builder()
                .status(201)
                .body(Body::from(serde_json::to_vec(&seen.body).unwrap()))
                .unwrap(),
        );
        let body = seen.body;
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        (
            s(&body["type"]),
            s(&body["reason"]),
            format!(
                "{}/{}",
                s(&body["regarding"]["kind"]),
                s(&body["regarding"]["name"])
            ),
            s(&body["note"]),
        )
    }

    /// Expects the metadata-only lookup of Secret `namespace/name` (one the cache lacks);
    /// answers with `metadata` as the one item, or no item.
    pub async fn expect_lookup(&mut self, namespace: &str, name: &str, metadata: Option<Value>) {
        let (seen, send) = self.next().await;
        assert_eq!(
            (&seen.method, seen.path.as_str()),
            (
                &Method::GET,
                format!("/api/v1/namespaces/{namespace}/secrets").as_str()
            ),
            "expected a lookup of Secret {namespace}/{name}"
        );
        let params: Vec<(String, String)> = form_urlencoded::parse(seen.query.as_bytes())
            .into_owned()
            .collect();
        assert!(
            params.contains(&("fieldSelector".into(), format!("metadata.name={name}"))),
            "{}",
            seen.query
        );
        assert!(
            seen.accept.contains("as=PartialObjectMetadataList"),
            "{}",
            seen.accept
        );
        let items: Vec<Value> = metadata
            .into_iter()
            .map(|m| json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": m}))
            .collect();
        let reply = json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
                           "metadata": {"resourceVersion": "100"}, "items": items});
        send.send_response(
            Response::builder()
                .status(200)
                .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                .unwrap(),
        );
    }

    /// Fails on any further request.
    pub async fn expect_nothing(&mut self) {
        if let Ok(Some((request, _))) =
            tokio::time::timeout(Duration::from_millis(300), self.handle.next_request()).await
        {
            panic!("unexpected request {} {}", request.method(), request.uri());
        }
    }
}

pub struct World {
    pub tenants: Writer<Tenant>,
    pub clients: Writer<OAuthClient>,
    pub secrets: Writer<Secret>,
    /// The index, fed with every object put into the caches, as the watches feed it.
    pub index: Index,
    pub ctx: Arc<Context>,
    pub api: ApiServer,
    pub store: Arc<dyn Store>,
    pub requeued: futures::channel::mpsc::UnboundedReceiver<ObjectRef<OAuthClient>>,
}

impl World {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self::with_kek(store, Arc::new(KeyEncryptionKey::generate().unwrap().0))
    }

    pub fn with_kek(store: Arc<dyn Store>, kek: Arc<KeyEncryptionKey>) -> Self {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let (tenant_cache, tenants) = reflector::store();
        let (client_cache, clients) = reflector::store();
        let (secret_cache, secrets) = reflector::store();
        let (tx, requeued) = futures::channel::mpsc::unbounded();
        let index = Index::default();
        let caches = Caches {
            tenants: tenant_cache,
            clients: client_cache,
            secrets: secret_cache,
            index: index.clone(),
        };
        let clock = gatehouse_core::clock::ManualClock::at(NOW);
        let setting = Setting {
            public_url: PUBLIC_URL.into(),
            namespace: OPERATOR_NAMESPACE.into(),
            clock: clock.clone(),
            fetcher: gatehouse_controller::issuers::fetch::Fetcher::new(None, false)
                .expect("the public roots"),
            issuer_refresh: gatehouse_controller::issuers::DEFAULT_REFRESH,
        };
        let ctx = Context::new(
            Kube::new(client, clock, gatehouse_core::random::system()),
            caches,
            Publisher::new(store.clone(), kek, gatehouse_core::random::system()),
            setting,
            Arc::new(OperatorMetrics::new()),
            tx,
        );
        World {
            tenants,
            clients,
            secrets,
            index,
            ctx: Arc::new(ctx),
            api: ApiServer { handle },
            store,
            requeued,
        }
    }

    pub fn put_tenant(&mut self, t: &Tenant) {
        let event = watcher::Event::Apply(t.clone());
        self.index.tenant_event(&event);
        self.tenants.apply_watcher_event(&event);
    }
    pub fn put_client(&mut self, c: &OAuthClient) {
        let event = watcher::Event::Apply(c.clone());
        self.index.client_event(&event);
        self.clients.apply_watcher_event(&event);
    }
    pub fn remove_client(&mut self, c: &OAuthClient) -> Triggers {
        let event = watcher::Event::Delete(c.clone());
        let triggers = self.index.client_event(&event);
        self.clients.apply_watcher_event(&event);
        triggers
    }
    /// Caches `s` as the Secret watch delivers it, which only Secrets with the watch label are.
    pub fn put_secret(&mut self, s: &Secret) {
        assert!(
            gatehouse_controller::secrets::is_watched(s),
            "the operator's watch never delivers a Secret without the watch label: {:?}",
            s.metadata
        );
        let event = watcher::Event::Apply(s.clone());
        self.index.secret_event(&event, OPERATOR_NAMESPACE);
        self.secrets.apply_watcher_event(&event);
    }
    pub fn remove_secret(&mut self, s: &Secret) -> Triggers {
        let event = watcher::Event::Delete(s.clone());
        let triggers = self.index.secret_event(&event, OPERATOR_NAMESPACE);
        self.secrets.apply_watcher_event(&event);
        triggers
    }
}

pub fn tenant(spec: Value) -> Tenant {
    let mut t = json!({
        "apiVersion": "gatehouse.dev/v1alpha1", "kind": "Tenant",
        "metadata": {"name": "acme", "generation": 1, "uid": "tenant-uid",
                     "finalizers": ["gatehouse.dev/cleanup"]}
    });
    t["spec"] = spec;
    serde_json::from_value(t).unwrap()
}

pub fn oauth_client(name: &str, spec: Value) -> OAuthClient {
    let mut c = json!({
        "apiVersion": "gatehouse.dev/v1alpha1", "kind": "OAuthClient",
        "metadata": {"name": name, "namespace": "acme", "generation": 2, "uid": format!("{name}-uid"),
                     "finalizers": ["gatehouse.dev/cleanup"],
                     "creationTimestamp": "2023-11-01T00:00:00Z"}
    });
    c["spec"] = spec;
    serde_json::from_value(c).unwrap()
}

/// A Secret carrying the watch label (as everything the operator caches does).
pub fn secret(namespace: &str, name: &str, data: &[(&str, &[u8])]) -> Secret {
    let mut s = Secret::default();
    s.metadata.namespace = Some(namespace.into());
    s.metadata.name = Some(name.into());
    s.metadata.labels = Some([("gatehouse.dev/watch".to_string(), "true".to_string())].into());
    s.metadata.resource_version = Some("100".into());
    s.data = Some(
        data.iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
            .collect(),
    );
    s
}

/// The condition of `type_` in a status body: (status, reason).
pub fn condition(status: &Value, type_: &str) -> (String, String) {
    let c = status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"));
    (
        c["status"].as_str().unwrap().to_string(),
        c["reason"].as_str().unwrap().to_string(),
    )
}

/// Decodes a Secret body's data or stringData value.
pub fn secret_value(body: &Value, key: &str) -> String {
    use base64::Engine;
    if let Some(v) = body["stringData"][key].as_str() {
        return v.to_string();
    }
    let raw = body["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {body}"));
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(raw)
            .unwrap(),
    )
    .unwrap()
}
