//! Leader election on a Lease, and the whole operator starting, leading, filling its caches
//! and shutting down gracefully, against a mock Kubernetes API.

mod support;

use gatehouse_controller::operator::leader::{LEASE_NAME, LeaderElector};
use gatehouse_controller::operator::metrics::OperatorMetrics;
use gatehouse_controller::operator::{OperatorConfig, run};
use gatehouse_controller::rbac;
use gatehouse_core::keys::KeyEncryptionKey;
use gatehouse_store::MemoryStore;
use http::{Method, Request, Response};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tower_test::mock;

const LEASE_PATH: &str =
    "/apis/coordination.k8s.io/v1/namespaces/gatehouse/leases/gatehouse-operator";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/gatehouse/leases";

fn lease(holder: Option<&str>, renewed: Timestamp) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": LEASE_NAME, "namespace": "gatehouse", "resourceVersion": "7"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                 "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
                 "leaseTransitions": 3}
    })
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404})
}

async fn elect(
    replies: Vec<(Method, &'static str, u16, Option<Value>)>,
    act: impl FnOnce(LeaderElector) -> tokio::task::JoinHandle<Result<bool, kube::Error>>,
) -> (bool, Vec<Value>) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let mut api = support::ApiServer::from_handle(handle);
    let elector = LeaderElector::new(
        Client::new(service, "default"),
        "gatehouse",
        "me".into(),
        gatehouse_core::clock::system(),
    );
    let task = act(elector);
    let mut bodies = Vec::new();
    for (method, path, status, reply) in replies {
        bodies.push(api.expect(method, path, status, reply).await);
    }
    api.expect_nothing().await;
    (task.await.unwrap().unwrap(), bodies)
}

#[tokio::test]
async fn the_first_replica_creates_the_lease() {
    let (won, bodies) = elect(
        vec![
            (Method::GET, LEASE_PATH, 404, Some(not_found())),
            (Method::POST, LEASES, 201, None),
        ],
        |e| tokio::spawn(async move { e.try_acquire().await }),
    )
    .await;
    assert!(won);
    assert_eq!(bodies[1]["spec"]["holderIdentity"], "me");
    assert_eq!(bodies[1]["spec"]["leaseDurationSeconds"], 15);
}

#[tokio::test]
async fn a_lease_held_and_renewed_by_another_replica_is_left_alone() {
    let (won, _) = elect(
        vec![(
            Method::GET,
            LEASE_PATH,
            200,
            Some(lease(Some("other"), Timestamp::now())),
        )],
        |e| tokio::spawn(async move { e.try_acquire().await }),
    )
    .await;
    assert!(!won, "no write while the holder keeps renewing");
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_with_optimistic_concurrency() {
    let stale = Timestamp::now() - SignedDuration::from_secs(60);
    let (won, bodies) = elect(
        vec![
            (
                Method::GET,
                LEASE_PATH,
                200,
                Some(lease(Some("other"), stale)),
            ),
            (Method::PUT, LEASE_PATH, 200, None),
        ],
        |e| tokio::spawn(async move { e.try_acquire().await }),
    )
    .await;
    assert!(won);
    let put = &bodies[1];
    assert_eq!(
        put["metadata"]["resourceVersion"], "7",
        "a concurrent winner makes this a 409"
    );
    assert_eq!(put["spec"]["holderIdentity"], "me");
    assert_eq!(put["spec"]["leaseTransitions"], 4);

    let (won, _) = elect(
        vec![
            (Method::GET, LEASE_PATH, 200, Some(lease(Some("other"), stale))),
            (Method::PUT, LEASE_PATH, 409, Some(json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409}))),
        ],
        |e| tokio::spawn(async move { e.try_acquire().await }),
    )
    .await;
    assert!(!won, "losing the race is not an error");
}

#[tokio::test]
async fn release_gives_the_lease_up_for_the_next_replica() {
    let (_, bodies) = elect(
        vec![
            (
                Method::GET,
                LEASE_PATH,
                200,
                Some(lease(Some("me"), Timestamp::now())),
            ),
            (Method::PUT, LEASE_PATH, 200, None),
        ],
        |e| tokio::spawn(async move { e.release().await.map(|()| true) }),
    )
    .await;
    assert!(
        bodies[1]["spec"]
            .get("holderIdentity")
            .is_none_or(Value::is_null)
    );
}

/// The operator end to end: it waits for the lease, lists and watches Tenants, OAuthClients
/// and Secrets, reports ready, and on shutdown stops and releases the lease. Every request
/// is checked against the generated RBAC.
#[tokio::test]
async fn the_operator_leads_fills_its_caches_and_shuts_down_cleanly() {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let metrics = Arc::new(OperatorMetrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let operator = tokio::spawn(run(
        client,
        Arc::new(MemoryStore::new()),
        Arc::new(KeyEncryptionKey::generate().unwrap().0),
        OperatorConfig {
            public_url: "https://auth.example.com".into(),
            namespace: "gatehouse".into(),
            identity: "me".into(),
            clock: gatehouse_core::clock::system(),
            random: gatehouse_core::random::system(),
            fetcher: gatehouse_controller::issuers::fetch::Fetcher::new(None, false).unwrap(),
            issuer_refresh: gatehouse_controller::issuers::DEFAULT_REFRESH,
        },
        metrics.clone(),
        ready.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    let mut seen = Vec::new();
    let mut held_watches = Vec::new();
    let mut lease_body: Option<Value> = None;
    let mut stop = Some(stop);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let next = tokio::time::timeout_at(deadline, handle.next_request()).await;
        let Ok(Some((request, send))) = next else {
            break;
        };
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let query = request.uri().query().unwrap_or_default().to_string();
        let accept = request
            .headers()
            .get("accept")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let call = rbac::Request {
            method: method.as_str(),
            path: &path,
            query: &query,
            accept: &accept,
        };
        let (_group, resource, verb, _namespace) =
            rbac::check(&call, "gatehouse").unwrap_or_else(|e| panic!("{e}"));
        seen.push(format!("{verb} {resource}"));
        let body = request.into_body().collect_bytes().await.unwrap();
        let body: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap()
        };
        let reply = |status: u16, v: &Value| {
            Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(v).unwrap()))
                .unwrap()
        };
        match (verb.as_str(), resource.as_str()) {
            ("get", "leases") => match &lease_body {
                None => send.send_response(reply(404, &not_found())),
                Some(l) => send.send_response(reply(200, l)),
            },
            ("create" | "update", "leases") => {
                let mut l = body.clone();
                l["metadata"]["resourceVersion"] = json!("8");
                send.send_response(reply(200, &l));
                lease_body = Some(l);
                if verb == "update" && body["spec"]["holderIdentity"].is_null() {
                    break; // released: the operator is done
                }
            }
            ("list", kind) => {
                let list_kind = match kind {
                    "tenants" => "TenantList",
                    "oauthclients" => "OAuthClientList",
                    _ => "SecretList",
                };
                let api_version = if kind == "secrets" {
                    "v1"
                } else {
                    "gatehouse.dev/v1alpha1"
                };
                send.send_response(reply(200, &json!({"apiVersion": api_version, "kind": list_kind, "metadata": {"resourceVersion": "1"}, "items": []})));
            }
            ("watch", _) => held_watches.push(send),
            // Workload identity's issuer discovery, read once the operator leads.
            ("get", "/.well-known/openid-configuration") => send.send_response(reply(
                200,
                &json!({"issuer": "https://kubernetes.default.svc", "jwks_uri": "https://10.0.0.1/openid/v1/jwks"}),
            )),
            ("get", "/openid/v1/jwks") => send.send_response(reply(
                200,
                &json!({"keys": [{"kty": "RSA", "kid": "k", "alg": "RS256", "use": "sig", "n": "sXch", "e": "AQAB"}]}),
            )),
            other => panic!("unexpected {other:?}"),
        }
        let watching = seen.iter().filter(|s| s.starts_with("watch ")).count() == 3;
        if watching
            && ready.load(Ordering::Relaxed)
            && let Some(stop) = stop.take()
        {
            assert_eq!(
                metrics
                    .encode()
                    .lines()
                    .find(|l| l.starts_with("gatehouse_operator_leader ")),
                Some("gatehouse_operator_leader 1")
            );
            let _ = stop.send(());
        }
    }
    assert!(
        stop.is_none(),
        "the operator never became ready; saw {seen:?}"
    );
    tokio::time::timeout(Duration::from_secs(5), operator)
        .await
        .expect("the operator stops on shutdown")
        .unwrap()
        .unwrap();
    for call in [
        "create leases",
        "list tenants",
        "list oauthclients",
        "list secrets",
        "watch tenants",
        "watch oauthclients",
        "watch secrets",
        "update leases",
    ] {
        assert!(
            seen.iter().any(|s| s == call),
            "{call} missing from {seen:?}"
        );
    }
    assert!(!ready.load(Ordering::Relaxed));
}
