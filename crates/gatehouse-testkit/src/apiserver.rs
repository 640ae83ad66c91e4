//! A small in-memory Kubernetes API server for end-to-end tests of `gatehouse operator`: the
//! real binary connects to it through a kubeconfig. It keeps objects, resourceVersions,
//! finalizer-aware deletion, the status subresource, JSON and merge patches, `stringData`,
//! and watch streams (replayed from the requested resourceVersion). Lists and watches honour
//! namespaces and label and field selectors as the apiserver does (an object that stops
//! matching a watch's selector is `DELETED` from it, one that starts is `ADDED`), and
//! metadata-only lists (`as=PartialObjectMetadataList`). Every request is recorded, with its
//! `Accept` header, so tests can check it against the operator's RBAC. Status writes by server-side
//! apply replace the status (the operator is its only writer). Big enough for scale runs:
//! watches find their next event by binary search, not by scanning the whole history.

use crate::selectors::Selector;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// (group/version path prefix, plural) → kind.
fn kind_of(resource: &str) -> (&'static str, &'static str) {
    match resource {
        "tenants" => ("gatehouse.dev/v1alpha1", "Tenant"),
        "oauthclients" => ("gatehouse.dev/v1alpha1", "OAuthClient"),
        "secrets" => ("v1", "Secret"),
        "leases" => ("coordination.k8s.io/v1", "Lease"),
        _ => ("events.k8s.io/v1", "Event"),
    }
}

type Key = (String, Option<String>, String); // resource, namespace, name

/// One change of an object: its resourceVersion, the event type, the object after it and
/// before it (for a selecting watch, which must tell whether it entered or left the selection).
#[derive(Clone)]
struct Change {
    rv: u64,
    kind: &'static str,
    object: Value,
    before: Option<Value>,
}

/// A request as the server saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    /// The `Accept` header (a metadata-only list asks for `as=PartialObjectMetadataList`).
    pub accept: String,
}

#[derive(Default)]
struct Inner {
    objects: BTreeMap<Key, Value>,
    /// Per resource: its changes, in order. One history per resource, so a watch of a quiet
    /// resource does not look through every other resource's events.
    log: std::collections::HashMap<String, Vec<Change>>,
    rv: u64,
    requests: Vec<Recorded>,
}

/// What a watch of `namespace` (or all) with `selector` sees of `change`, if anything.
fn seen(change: &Change, namespace: Option<&str>, selector: &Selector) -> Option<Value> {
    if namespace.is_some() && change.object["metadata"]["namespace"].as_str() != namespace {
        return None;
    }
    let now = change.kind != "DELETED" && selector.matches(&change.object);
    let before = change.before.as_ref().is_some_and(|b| selector.matches(b));
    let kind = match (before, now) {
        (false, true) => "ADDED",
        (true, true) => change.kind,
        (true, false) => "DELETED",
        (false, false) => return None,
    };
    Some(json!({"type": kind, "object": change.object}))
}

/// An object as a metadata-only list returns it.
fn metadata_only(object: &Value) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
           "metadata": object["metadata"]})
}

#[derive(Clone, Default)]
pub struct FakeApiServer {
    inner: Arc<Mutex<Inner>>,
    changed: Arc<tokio::sync::Notify>,
}

fn error(code: u16, reason: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(code).unwrap(),
        axum::Json(
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                          "reason": reason, "message": message, "code": code}),
        ),
    )
        .into_response()
}

fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let t = target.as_object_mut().unwrap();
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// What the apiserver does to a Secret's `stringData` on write.
fn fold_string_data(object: &mut Value) {
    if let Some(Value::Object(sd)) = object.as_object_mut().and_then(|o| o.remove("stringData")) {
        for (k, v) in sd {
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap_or_default());
            object["data"][k] = json!(encoded);
        }
    }
}

impl FakeApiServer {
    /// Serves on a free port; returns the base URL.
    pub async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        base
    }

    /// Writes a kubeconfig for `base` into `dir`.
    pub fn kubeconfig(base: &str, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster: {{server: \"{base}\"}}\nusers:\n- name: operator\n  user: {{token: test-token}}\ncontexts:\n- name: test\n  context: {{cluster: test, user: operator, namespace: gatehouse}}\ncurrent-context: test\n"
            ),
        )
        .unwrap();
        path
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().requests.clone()
    }

    pub fn get(&self, resource: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let key = (
            resource.to_string(),
            namespace.map(String::from),
            name.to_string(),
        );
        self.inner.lock().unwrap().objects.get(&key).cloned()
    }

    pub fn list(&self, resource: &str) -> Vec<Value> {
        let inner = self.inner.lock().unwrap();
        inner
            .objects
            .iter()
            .filter(|((r, _, _), _)| r == resource)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Creates or replaces an object as `kubectl apply` would.
    pub fn apply(&self, resource: &str, mut object: Value) {
        let namespace = object["metadata"]["namespace"].as_str().map(String::from);
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        let previous = self.get(resource, namespace.as_deref(), &name);
        if object["metadata"]["uid"].is_null() {
            object["metadata"]["uid"] = json!(format!("uid-{resource}-{name}"));
        }
        if object["metadata"]["creationTimestamp"].is_null() {
            object["metadata"]["creationTimestamp"] = json!("2026-11-22T10:00:00Z");
        }
        let generation = previous
            .as_ref()
            .and_then(|p| p["metadata"]["generation"].as_i64())
            .unwrap_or(0)
            + 1;
        object["metadata"]["generation"] = json!(generation);
        if let Some(p) = &previous {
            object["status"] = p["status"].clone();
            object["metadata"]["finalizers"] = p["metadata"]["finalizers"].clone();
        }
        fold_string_data(&mut object);
        self.store(
            resource,
            namespace,
            name,
            object,
            if previous.is_some() {
                "MODIFIED"
            } else {
                "ADDED"
            },
        );
    }

    /// Deletes as the apiserver does: with finalizers, only marks it.
    pub fn delete(&self, resource: &str, namespace: Option<&str>, name: &str) -> bool {
        let Some(mut object) = self.get(resource, namespace, name) else {
            return false;
        };
        let finalizers = object["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if finalizers {
            object["metadata"]["deletionTimestamp"] = json!("2026-11-22T11:00:00Z");
            self.store(
                resource,
                namespace.map(String::from),
                name.to_string(),
                object,
                "MODIFIED",
            );
        } else {
            self.remove(
                resource,
                namespace.map(String::from),
                name.to_string(),
                object,
            );
        }
        true
    }

    fn store(
        &self,
        resource: &str,
        namespace: Option<String>,
        name: String,
        mut object: Value,
        event: &'static str,
    ) -> Value {
        let mut inner = self.inner.lock().unwrap();
        inner.rv += 1;
        let rv = inner.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let (api_version, kind) = kind_of(resource);
        object["apiVersion"] = json!(api_version);
        object["kind"] = json!(kind);
        let before = inner
            .objects
            .insert((resource.to_string(), namespace, name), object.clone());
        inner
            .log
            .entry(resource.to_string())
            .or_default()
            .push(Change {
                rv,
                kind: event,
                object: object.clone(),
                before,
            });
        drop(inner);
        self.changed.notify_waiters();
        object
    }

    fn remove(&self, resource: &str, namespace: Option<String>, name: String, mut object: Value) {
        let mut inner = self.inner.lock().unwrap();
        inner.rv += 1;
        let rv = inner.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let before = inner
            .objects
            .remove(&(resource.to_string(), namespace, name));
        inner
            .log
            .entry(resource.to_string())
            .or_default()
            .push(Change {
                rv,
                kind: "DELETED",
                object,
                before,
            });
        drop(inner);
        self.changed.notify_waiters();
    }

    fn watch(
        &self,
        resource: String,
        namespace: Option<String>,
        selector: Selector,
        from: u64,
    ) -> Body {
        let server = self.clone();
        let stream = futures::stream::unfold(from, move |mut cursor| {
            let server = server.clone();
            let resource = resource.clone();
            let namespace = namespace.clone();
            let selector = selector.clone();
            async move {
                loop {
                    let notified = server.changed.notified();
                    let next = {
                        let inner = server.inner.lock().unwrap();
                        inner.log.get(&resource).and_then(|changes| {
                            let start = changes.partition_point(|c| c.rv <= cursor);
                            changes[start..].iter().find_map(|c| {
                                cursor = c.rv;
                                seen(c, namespace.as_deref(), &selector).map(|e| (c.rv, e))
                            })
                        })
                    };
                    if let Some((rv, event)) = next {
                        let mut line = serde_json::to_vec(&event).unwrap();
                        line.push(b'\n');
                        return Some((Ok::<_, std::io::Error>(line), rv));
                    }
                    notified.await;
                }
            }
        });
        Body::from_stream(stream)
    }
}

async fn handle(State(server): State<FakeApiServer>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    let applied = request
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/apply-patch"));
    let accept = request
        .headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    server.inner.lock().unwrap().requests.push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        accept: accept.clone(),
    });
    let bytes = axum::body::to_bytes(request.into_body(), 16 << 20)
        .await
        .unwrap();
    let body: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };

    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let rest: &[&str] = match parts.as_slice() {
        ["api", "v1", rest @ ..] | ["apis", _, _, rest @ ..] => rest,
        _ => return error(404, "NotFound", "no such API"),
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_string()), rest),
        _ => (None, rest),
    };
    let (resource, name, sub) = match rest {
        [r] => (*r, None, None),
        [r, n] => (*r, Some((*n).to_string()), None),
        [r, n, s] => (*r, Some((*n).to_string()), Some(*s)),
        _ => return error(404, "NotFound", "no such path"),
    };
    let watching = query
        .split('&')
        .any(|p| p == "watch=true" || p == "watch=1");
    let selector = match (&method, &name) {
        (&Method::GET, None) => match Selector::from_query(&query) {
            Ok(s) => s,
            Err(why) => return error(400, "BadRequest", &why),
        },
        _ => Selector::default(),
    };
    match (&method, name) {
        (&Method::GET, None) if watching => {
            let from = query
                .split('&')
                .find_map(|p| p.strip_prefix("resourceVersion="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            Response::builder()
                .header("content-type", "application/json")
                .body(server.watch(resource.to_string(), namespace, selector, from))
                .unwrap()
        }
        (&Method::GET, None) => {
            let metadata = accept.contains("as=PartialObjectMetadataList");
            let inner = server.inner.lock().unwrap();
            let items: Vec<Value> = inner
                .objects
                .iter()
                .filter(|((r, ns, _), v)| {
                    r == resource
                        && (namespace.is_none() || *ns == namespace)
                        && selector.matches(v)
                })
                .map(|(_, v)| {
                    if metadata {
                        metadata_only(v)
                    } else {
                        v.clone()
                    }
                })
                .collect();
            let (api_version, kind) = kind_of(resource);
            let (api_version, kind) = if metadata {
                ("meta.k8s.io/v1", "PartialObjectMetadataList".to_string())
            } else {
                (api_version, format!("{kind}List"))
            };
            axum::Json(json!({"apiVersion": api_version, "kind": kind,
                              "metadata": {"resourceVersion": inner.rv.to_string()}, "items": items}))
                .into_response()
        }
        (&Method::GET, Some(name)) => match server.get(resource, namespace.as_deref(), &name) {
            Some(o) => axum::Json(o).into_response(),
            None => error(404, "NotFound", &format!("{resource} {name} not found")),
        },
        (&Method::POST, None) => {
            let mut object = body;
            let name = object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if server.get(resource, namespace.as_deref(), &name).is_some() {
                return error(
                    409,
                    "AlreadyExists",
                    &format!("{resource} {name} already exists"),
                );
            }
            object["metadata"]["namespace"] = json!(namespace);
            object["metadata"]["uid"] = json!(format!("uid-{resource}-{name}"));
            fold_string_data(&mut object);
            let stored = server.store(resource, namespace, name, object, "ADDED");
            (StatusCode::CREATED, axum::Json(stored)).into_response()
        }
        (&Method::PUT, Some(name)) => {
            let Some(current) = server.get(resource, namespace.as_deref(), &name) else {
                return error(404, "NotFound", "not found");
            };
            if body["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
                return error(409, "Conflict", "the object has been modified");
            }
            let stored = server.store(resource, namespace, name, body, "MODIFIED");
            axum::Json(stored).into_response()
        }
        (&Method::PATCH, Some(name)) => {
            let Some(mut current) = server.get(resource, namespace.as_deref(), &name) else {
                return error(404, "NotFound", "not found");
            };
            if resource == "events" {
                return axum::Json(current).into_response();
            }
            if let Value::Array(_) = body {
                // As the apiserver's JSON patch does, `test` of an absent member against null
                // succeeds.
                if current["metadata"].get("finalizers").is_none() {
                    current["metadata"]["finalizers"] = Value::Null;
                }
                let operations: json_patch::Patch = serde_json::from_value(body).unwrap();
                if json_patch::patch(&mut current, &operations).is_err() {
                    return error(422, "Invalid", "json patch test failed");
                }
            } else {
                let wanted_rv = body["metadata"]["resourceVersion"].clone();
                if !wanted_rv.is_null() && wanted_rv != current["metadata"]["resourceVersion"] {
                    return error(409, "Conflict", "the object has been modified");
                }
                match sub {
                    Some("status") if applied => current["status"] = body["status"].clone(),
                    Some("status") => merge(&mut current["status"], &body["status"]),
                    _ => merge(&mut current, &body),
                }
                fold_string_data(&mut current);
            }
            let deleting = !current["metadata"]["deletionTimestamp"].is_null();
            let finalizers = current["metadata"]["finalizers"]
                .as_array()
                .is_some_and(|f| !f.is_empty());
            if deleting && !finalizers {
                server.remove(resource, namespace, name, current.clone());
                return axum::Json(current).into_response();
            }
            let stored = server.store(resource, namespace, name, current, "MODIFIED");
            axum::Json(stored).into_response()
        }
        (&Method::DELETE, Some(name)) => {
            if server.delete(resource, namespace.as_deref(), &name) {
                axum::Json(json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}))
                    .into_response()
            } else {
                error(404, "NotFound", "not found")
            }
        }
        _ => error(405, "MethodNotAllowed", "not supported here"),
    }
}
