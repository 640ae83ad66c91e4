//! The cluster writer against a mock Kubernetes API (tower-test): each test states the exact
//! requests it expects, answers them as an apiserver would, and fails on any other call.

use super::*;
use crate::reconcile::{Observed, reconcile};
use http::{Method, Request, Response};
use k8s_openapi::ByteString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle};

type Server = Handle<Request<Body>, Response<Body>>;

fn mock_client() -> (Client, Server) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), handle)
}

fn tenant() -> Tenant {
    serde_json::from_value(json!({
        "apiVersion": "gatehouse.dev/v1alpha1", "kind": "Tenant",
        "metadata": {"name": "acme", "generation": 1, "uid": "t-uid"},
        "spec": {"grantTypes": ["client_credentials"]}
    }))
    .unwrap()
}

fn oauth_client(spec: Value) -> OAuthClient {
    serde_json::from_value(json!({
        "apiVersion": "gatehouse.dev/v1alpha1", "kind": "OAuthClient",
        "metadata": {"name": "billing", "namespace": "acme", "generation": 2, "uid": "c-uid"},
        "spec": spec
    }))
    .unwrap()
}

fn secret(name: &str, value: &[u8]) -> Secret {
    let mut s = Secret::default();
    s.metadata.namespace = Some("acme".into());
    s.metadata.name = Some(name.into());
    s.data = Some([("client_secret".to_string(), ByteString(value.to_vec()))].into());
    s
}

fn run(tenants: &[Tenant], clients: &[OAuthClient], secrets: &[Secret]) -> Reconciled {
    let now = Time(Timestamp::from_second(1_700_000_000).unwrap());
    reconcile(&Observed {
        tenants,
        clients,
        secrets,
        public_url: "https://auth.example.com",
        now,
    })
}

/// Expects one request; answers with `reply` (status 200 unless given) and returns the body.
async fn expect(server: &mut Server, method: Method, path: &str, reply: (u16, Value)) -> Value {
    let (request, send) =
        tokio::time::timeout(std::time::Duration::from_secs(2), server.next_request())
            .await
            .unwrap_or_else(|_| panic!("no request arrived; expected {method} {path}"))
            .expect("service dropped");
    assert_eq!((request.method(), request.uri().path()), (&method, path));
    let body = request.into_body().collect_bytes().await.unwrap();
    let json: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap()
    };
    send.send_response(
        Response::builder()
            .status(reply.0)
            .body(Body::from(serde_json::to_vec(&reply.1).unwrap()))
            .unwrap(),
    );
    json
}

/// Expects one Event (events.k8s.io/v1) in `namespace`; answers as created; returns it.
async fn expect_event(server: &mut Server, namespace: &str) -> Value {
    let path = format!("/apis/events.k8s.io/v1/namespaces/{namespace}/events");
    let (request, send) =
        tokio::time::timeout(std::time::Duration::from_secs(2), server.next_request())
            .await
            .unwrap_or_else(|_| panic!("no request arrived; expected an event in {namespace}"))
            .expect("service dropped");
    assert_eq!(
        (request.method(), request.uri().path()),
        (&Method::POST, path.as_str())
    );
    let body = request.into_body().collect_bytes().await.unwrap();
    send.send_response(
        Response::builder()
            .status(201)
            .body(Body::from(body.clone()))
            .unwrap(),
    );
    serde_json::from_slice(&body).unwrap()
}

/// Fails if the writer makes any request it should not have.
async fn expect_nothing(server: &mut Server) {
    let extra =
        tokio::time::timeout(std::time::Duration::from_millis(200), server.next_request()).await;
    if let Ok(Some((request, _))) = extra {
        panic!("unexpected request {} {}", request.method(), request.uri());
    }
}

#[tokio::test]
async fn a_new_client_gets_its_status_written_and_an_owned_secret_generated() {
    let (client, mut server) = mock_client();
    let (t, c) = (
        tenant(),
        oauth_client(json!({"tenantRef": "acme", "grantTypes": ["client_credentials"]})),
    );
    let reconciled = run(std::slice::from_ref(&t), std::slice::from_ref(&c), &[]);
    let writer = ClusterWriter::new(client);
    let task = tokio::spawn(async move { writer.write(&reconciled, &[t], &[c], &[]).await });

    let body = expect(
        &mut server,
        Method::PATCH,
        "/apis/gatehouse.dev/v1alpha1/tenants/acme/status",
        (200, tenant_json()),
    )
    .await;
    assert_eq!(body["status"]["issuer"], "https://auth.example.com/acme");
    assert_eq!(body["status"]["conditions"][0]["type"], "Ready");
    assert_eq!(body["status"]["conditions"][0]["observedGeneration"], 1);
    let event = expect_event(&mut server, "default").await;
    assert_eq!(
        (event["type"].as_str(), event["reason"].as_str()),
        (Some("Normal"), Some("Reconciled"))
    );
    assert_eq!(
        (
            event["regarding"]["kind"].as_str(),
            event["regarding"]["name"].as_str()
        ),
        (Some("Tenant"), Some("acme"))
    );

    let body = expect(
        &mut server,
        Method::PATCH,
        "/apis/gatehouse.dev/v1alpha1/namespaces/acme/oauthclients/billing/status",
        (200, client_json()),
    )
    .await;
    let conditions = &body["status"]["conditions"];
    assert_eq!(
        (
            conditions[0]["type"].as_str(),
            conditions[0]["status"].as_str()
        ),
        (Some("Accepted"), Some("True"))
    );
    assert_eq!(
        (
            conditions[1]["reason"].as_str(),
            conditions[1]["observedGeneration"].as_i64()
        ),
        (Some("SecretPending"), Some(2))
    );
    assert_eq!(body["status"]["secretName"], "billing-credentials");

    let secret = expect(&mut server, Method::POST, "/api/v1/namespaces/acme/secrets", (201, json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "billing-credentials"}}))).await;
    assert_eq!(secret["metadata"]["name"], "billing-credentials");
    assert_eq!(
        secret["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "gatehouse"
    );
    let owner = &secret["metadata"]["ownerReferences"][0];
    assert_eq!(
        (
            owner["kind"].as_str(),
            owner["uid"].as_str(),
            owner["controller"].as_bool()
        ),
        (Some("OAuthClient"), Some("c-uid"), Some(true))
    );
    assert_eq!(secret["stringData"]["client_id"], "acme-billing");
    assert_eq!(
        secret["stringData"]["token_endpoint"],
        "https://auth.example.com/acme/oauth2/token"
    );
    assert!(
        secret["stringData"]["client_secret"]
            .as_str()
            .is_some_and(|s| s.len() >= 43)
    );
    let event = expect_event(&mut server, "acme").await;
    assert_eq!(
        (
            event["reason"].as_str(),
            event["regarding"]["name"].as_str()
        ),
        (Some("SecretGenerated"), Some("billing"))
    );
    assert!(
        !event
            .to_string()
            .contains(secret["stringData"]["client_secret"].as_str().unwrap()),
        "no secret in events"
    );

    let report = task.await.unwrap().unwrap();
    assert_eq!(report.secrets_created, vec!["acme/billing-credentials"]);
    expect_nothing(&mut server).await;
}

fn tenant_json() -> Value {
    serde_json::to_value(tenant()).unwrap()
}

fn client_json() -> Value {
    serde_json::to_value(oauth_client(
        json!({"tenantRef": "acme", "grantTypes": ["client_credentials"]}),
    ))
    .unwrap()
}

#[tokio::test]
async fn an_unchanged_reconcile_writes_nothing() {
    let (client, mut server) = mock_client();
    let mut t = tenant();
    let mut c = oauth_client(json!({"tenantRef": "acme", "grantTypes": ["client_credentials"]}));
    let secrets = [secret("billing-credentials", b"s3cret")];
    // The statuses an earlier pass wrote are what the objects now carry.
    let first = run(std::slice::from_ref(&t), std::slice::from_ref(&c), &secrets);
    t.status = Some(first.tenants[0].status.clone());
    c.status = Some(first.clients[0].status.clone());
    let later = Time(Timestamp::from_second(1_700_009_999).unwrap());
    let again = reconcile(&Observed {
        tenants: std::slice::from_ref(&t),
        clients: std::slice::from_ref(&c),
        secrets: &secrets,
        public_url: "https://auth.example.com",
        now: later,
    });
    let report = ClusterWriter::new(client)
        .write(&again, &[t], &[c], &secrets)
        .await
        .unwrap();
    assert_eq!(report, ClusterReport::default());
    expect_nothing(&mut server).await;
}

#[tokio::test]
async fn a_user_supplied_secret_is_used_and_never_written() {
    let (client, mut server) = mock_client();
    let (t, c) = (
        tenant(),
        oauth_client(
            json!({"tenantRef": "acme", "grantTypes": ["client_credentials"], "secretRef": {"name": "from-vault", "generate": false}}),
        ),
    );
    let secrets = [secret("from-vault", b"vault-secret")];
    let reconciled = run(std::slice::from_ref(&t), std::slice::from_ref(&c), &secrets);
    assert_eq!(
        reconciled.clients[0]
            .registration
            .as_ref()
            .unwrap()
            .secret
            .as_deref()
            .map(|s| s.as_str()),
        Some("vault-secret")
    );
    let writer = ClusterWriter::new(client);
    let task = tokio::spawn(async move { writer.write(&reconciled, &[t], &[c], &secrets).await });
    expect(
        &mut server,
        Method::PATCH,
        "/apis/gatehouse.dev/v1alpha1/tenants/acme/status",
        (200, tenant_json()),
    )
    .await;
    expect_event(&mut server, "default").await;
    let body = expect(
        &mut server,
        Method::PATCH,
        "/apis/gatehouse.dev/v1alpha1/namespaces/acme/oauthclients/billing/status",
        (200, client_json()),
    )
    .await;
    assert_eq!(body["status"]["conditions"][1]["reason"], "Reconciled");
    let event = expect_event(&mut server, "acme").await;
    assert_eq!(
        (event["type"].as_str(), event["reason"].as_str()),
        (Some("Normal"), Some("Reconciled"))
    );
    let report = task.await.unwrap().unwrap();
    assert!(report.secrets_created.is_empty());
    expect_nothing(&mut server).await;
}

#[tokio::test]
async fn a_missing_tenant_is_reported_and_no_secret_is_made_for_a_refused_client() {
    let (client, mut server) = mock_client();
    let c = oauth_client(json!({"tenantRef": "nope", "grantTypes": ["client_credentials"]}));
    let reconciled = run(&[], std::slice::from_ref(&c), &[]);
    let writer = ClusterWriter::new(client);
    let task = tokio::spawn(async move { writer.write(&reconciled, &[], &[c], &[]).await });
    let body = expect(
        &mut server,
        Method::PATCH,
        "/apis/gatehouse.dev/v1alpha1/namespaces/acme/oauthclients/billing/status",
        (200, client_json()),
    )
    .await;
    assert_eq!(body["status"]["conditions"][0]["reason"], "TenantNotFound");
    assert_eq!(body["status"]["conditions"][1]["status"], "False");
    let event = expect_event(&mut server, "acme").await;
    assert_eq!(
        (event["type"].as_str(), event["reason"].as_str()),
        (Some("Warning"), Some("TenantNotFound"))
    );
    assert!(
        event["note"]
            .as_str()
            .unwrap()
            .contains("tenant nope does not exist")
    );
    task.await.unwrap().unwrap();
    expect_nothing(&mut server).await;
}

#[tokio::test]
async fn a_secret_created_by_someone_else_in_the_meantime_wins() {
    let (client, mut server) = mock_client();
    let (t, c) = (
        tenant(),
        oauth_client(json!({"tenantRef": "acme", "grantTypes": ["client_credentials"]})),
    );
    let mut t2 = t.clone();
    let first = run(std::slice::from_ref(&t), std::slice::from_ref(&c), &[]);
    t2.status = Some(first.tenants[0].status.clone());
    let mut c2 = c.clone();
    c2.status = Some(first.clients[0].status.clone());
    let writer = ClusterWriter::new(client);
    let task = tokio::spawn(async move { writer.write(&first, &[t2], &[c2], &[]).await });
    let conflict = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "AlreadyExists", "code": 409, "message": "secrets \"billing-credentials\" already exists"});
    expect(
        &mut server,
        Method::POST,
        "/api/v1/namespaces/acme/secrets",
        (409, conflict),
    )
    .await;
    let report = task.await.unwrap().unwrap();
    assert!(report.secrets_created.is_empty() && report.statuses_written.is_empty());
    expect_nothing(&mut server).await;
}

#[tokio::test]
async fn api_failures_surface_as_errors() {
    let (client, mut server) = mock_client();
    let t = tenant();
    let reconciled = run(std::slice::from_ref(&t), &[], &[]);
    let writer = ClusterWriter::new(client);
    let task = tokio::spawn(async move { writer.write(&reconciled, &[t], &[], &[]).await });
    let failure = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "InternalError", "code": 500, "message": "etcd is sad"});
    expect(
        &mut server,
        Method::PATCH,
        "/apis/gatehouse.dev/v1alpha1/tenants/acme/status",
        (500, failure),
    )
    .await;
    let err = task.await.unwrap().unwrap_err();
    assert!(err.to_string().contains("etcd is sad"), "{err}");
}

#[test]
fn only_real_transitions_make_events() {
    use crate::conditions::{Verdict, to_conditions};
    let now = Time(Timestamp::from_second(1).unwrap());
    let ready = to_conditions(
        &[
            Verdict::new("Accepted", true, "Accepted", "ok"),
            Verdict::new("Ready", true, "Reconciled", "live"),
        ],
        &[],
        Some(1),
        &now,
    );
    assert_eq!(transition_events(&ready, &ready), vec![], "nothing changed");
    let events = transition_events(&[], &ready);
    assert_eq!(events.len(), 1, "accepted=True is no news; ready=True is");
    let refused = to_conditions(
        &[
            Verdict::new("Accepted", false, "NamespaceNotAllowed", "no"),
            Verdict::new("Ready", false, "NamespaceNotAllowed", "no"),
        ],
        &ready,
        Some(2),
        &now,
    );
    let events = transition_events(&ready, &refused);
    assert_eq!(events.len(), 1, "one warning per refusal");
    assert_eq!(events[0].1, "NamespaceNotAllowed");
    let pending = to_conditions(
        &[
            Verdict::new("Accepted", true, "Accepted", "ok"),
            Verdict::new("Ready", false, "SecretPending", "creating"),
        ],
        &[],
        Some(1),
        &now,
    );
    assert!(
        transition_events(&[], &pending).is_empty(),
        "a Secret being created is not a warning"
    );
}

#[tokio::test]
async fn the_rotation_annotation_patches_our_secret_and_records_it() {
    let (client, mut server) = mock_client();
    let t = tenant();
    let mut c = oauth_client(json!({"tenantRef": "acme", "grantTypes": ["client_credentials"]}));
    c.metadata.annotations =
        Some([("gatehouse.dev/rotate-secret".to_string(), "r1".to_string())].into());
    let mut ours = secret("billing-credentials", b"old-secret");
    ours.metadata.labels = Some(
        [(
            "app.kubernetes.io/managed-by".to_string(),
            "gatehouse".to_string(),
        )]
        .into(),
    );
    let secrets = vec![ours];
    let first = run(std::slice::from_ref(&t), std::slice::from_ref(&c), &secrets);
    let (mut t2, mut c2) = (t.clone(), c.clone());
    t2.status = Some(first.tenants[0].status.clone());
    c2.status = Some(first.clients[0].status.clone());
    let writer = ClusterWriter::new(client);
    let task = tokio::spawn(async move { writer.write(&first, &[t2], &[c2], &secrets).await });
    let body = expect(&mut server, Method::PATCH, "/api/v1/namespaces/acme/secrets/billing-credentials", (200, json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "billing-credentials"}}))).await;
    assert_eq!(
        body["metadata"]["annotations"]["gatehouse.dev/rotated-for"],
        "r1"
    );
    let fresh = body["stringData"]["client_secret"].as_str().unwrap();
    assert!(fresh.len() >= 43 && fresh != "old-secret");
    let event = expect_event(&mut server, "acme").await;
    assert_eq!(event["reason"], "SecretRotated");
    assert!(!event.to_string().contains(fresh), "no secret in events");
    let report = task.await.unwrap().unwrap();
    assert_eq!(report.secrets_rotated, vec!["acme/billing-credentials"]);
    expect_nothing(&mut server).await;
}
