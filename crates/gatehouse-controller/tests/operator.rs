//! The operator's reconcilers against a mock Kubernetes API and a real in-memory store: for
//! each path, the exact API calls, the status bodies, the events and what the store holds.

mod support;

use gatehouse_controller::cluster::{KEYS_SECRET_KEY, keys_secret_name};
use gatehouse_controller::operator::{
    error_policy, lost_tenants, pending, reconcile_client, reconcile_tenant,
};
use gatehouse_core::keys::{KeyEncryptionKey, KeyState, SigningKeyRecord, generate_signing_key};
use gatehouse_core::secret::verify_secret;
use gatehouse_core::{GrantType, SigningAlgorithm};
use gatehouse_crd::{OAuthClient, Tenant};
use gatehouse_store::{MemoryStore, RecordKind, Store};
use http::{Method, Response};
use kube::client::Body;
use kube::runtime::controller::Action;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use support::*;

const TENANT_PATH: &str = "/apis/gatehouse.dev/v1alpha1/tenants/acme";
const TENANT_STATUS: &str = "/apis/gatehouse.dev/v1alpha1/tenants/acme/status";
const KEYS_SECRETS: &str = "/api/v1/namespaces/gatehouse/secrets";
const ACME_SECRETS: &str = "/api/v1/namespaces/acme/secrets";

fn client_path(name: &str) -> String {
    format!("/apis/gatehouse.dev/v1alpha1/namespaces/acme/oauthclients/{name}")
}

fn memory() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new())
}

fn cc_tenant() -> Tenant {
    tenant(json!({"grantTypes": ["client_credentials", "refresh_token"]}))
}

fn billing(spec: Value) -> OAuthClient {
    oauth_client("billing", spec)
}

fn cc_spec() -> Value {
    json!({"tenantRef": "acme", "grantTypes": ["client_credentials"], "scopes": []})
}

fn with_status<K: serde::Serialize + serde::de::DeserializeOwned>(object: &K, status: &Value) -> K {
    let mut v = serde_json::to_value(object).unwrap();
    v["status"] = status.clone();
    serde_json::from_value(v).unwrap()
}

fn json_of<K: serde::Serialize>(object: &K) -> Value {
    serde_json::to_value(object).unwrap()
}

/// Reconciles the tenant once (keys Secret created, status written) and feeds the results
/// back into the caches, as the watches would. Returns the tenant as now cached.
async fn settle_tenant(world: &mut World, t: &Tenant) -> Tenant {
    world.put_tenant(t);
    let task = tokio::spawn(reconcile_tenant(Arc::new(t.clone()), world.ctx.clone()));
    let keys = world
        .api
        .expect(Method::POST, KEYS_SECRETS, 201, None)
        .await;
    let status = world
        .api
        .expect(Method::PATCH, TENANT_STATUS, 200, Some(json_of(t)))
        .await;
    world.api.expect_event("default").await;
    task.await.unwrap().unwrap();
    let mut keys: k8s_openapi::api::core::v1::Secret = serde_json::from_value(keys).unwrap();
    keys.metadata.resource_version = Some("100".into());
    world.put_secret(&keys);
    let t = with_status(t, &status["status"]);
    world.put_tenant(&t);
    t
}

/// Expects the status patch of client `c`; answers with `c`; returns the patch body.
async fn expect_client_status(world: &mut World, c: &OAuthClient) -> Value {
    let path = format!(
        "{}/status",
        client_path(c.metadata.name.as_deref().unwrap())
    );
    world
        .api
        .expect(Method::PATCH, &path, 200, Some(json_of(c)))
        .await
}

/// A runtime record of tenant acme that lives ten more minutes.
async fn put_live_record(world: &World, kind: RecordKind, id: &str) {
    let until = gatehouse_core::clock::Clock::now(&gatehouse_core::clock::SystemClock) + 600;
    world
        .store
        .put_record("acme", kind, id, "{}", until)
        .await
        .unwrap();
}

/// Runs one client reconcile in the background.
fn spawn_client(
    world: &World,
    c: &OAuthClient,
) -> tokio::task::JoinHandle<Result<Action, gatehouse_controller::operator::ReconcileError>> {
    tokio::spawn(reconcile_client(Arc::new(c.clone()), world.ctx.clone()))
}

#[tokio::test]
async fn a_new_object_first_gets_the_finalizer_and_nothing_else() {
    let mut world = World::new(memory());
    let mut t = cc_tenant();
    t.metadata.finalizers = None;
    world.put_tenant(&t);
    let task = tokio::spawn(reconcile_tenant(Arc::new(t.clone()), world.ctx.clone()));
    let patch = world
        .api
        .expect(Method::PATCH, TENANT_PATH, 200, Some(json_of(&t)))
        .await;
    assert_eq!(
        patch,
        json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": ["gatehouse.dev/cleanup"]}
        ])
    );
    assert_eq!(task.await.unwrap().unwrap(), Action::await_change());
    world.api.expect_nothing().await;
    assert!(world.store.tenant_versions().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_tenant_is_created_with_keys_in_a_secret_then_a_resync_writes_nothing() {
    let mut world = World::new(memory());
    let t = cc_tenant();
    world.put_tenant(&t);
    let task = tokio::spawn(reconcile_tenant(Arc::new(t.clone()), world.ctx.clone()));

    let keys = world
        .api
        .expect(Method::POST, KEYS_SECRETS, 201, None)
        .await;
    assert_eq!(keys["metadata"]["name"], "gatehouse-keys-acme");
    assert_eq!(keys["metadata"]["labels"]["gatehouse.dev/tenant"], "acme");
    assert_eq!(
        keys["metadata"]["labels"]["gatehouse.dev/watch"], "true",
        "its own Secrets are watched"
    );
    assert_eq!(
        keys["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "gatehouse"
    );
    assert_eq!(
        keys["metadata"]["ownerReferences"][0],
        json!({"apiVersion": "gatehouse.dev/v1alpha1", "kind": "Tenant", "name": "acme",
               "uid": "tenant-uid", "controller": true})
    );
    let records: Vec<SigningKeyRecord> =
        serde_json::from_str(&secret_value(&keys, KEYS_SECRET_KEY)).unwrap();
    assert_eq!(
        records.iter().map(|k| k.state).collect::<Vec<_>>(),
        [KeyState::Active, KeyState::Next]
    );
    assert!(!secret_value(&keys, KEYS_SECRET_KEY).contains("PRIVATE KEY"));

    let applied = world.api.expect_apply(TENANT_STATUS, json_of(&t)).await;
    assert_eq!(
        (&applied["apiVersion"], &applied["kind"]),
        (&json!("gatehouse.dev/v1alpha1"), &json!("Tenant")),
        "status by server-side apply"
    );
    let status = &applied["status"];
    assert_eq!(status["issuer"], "https://auth.example.com/acme");
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(status["clients"], 0);
    assert_eq!(
        condition(status, "Ready"),
        ("True".into(), "Reconciled".into())
    );
    assert_eq!(status["conditions"][0]["lastTransitionTime"], NOW_RFC3339);
    assert_eq!(status["conditions"][0]["observedGeneration"], 1);
    assert_eq!(status["signingKeys"][0]["state"], "active");
    assert_eq!(status["signingKeys"][1]["state"], "next");
    assert_eq!(status["signingKeys"][0]["kid"], records[0].kid.as_str());
    let event = world.api.expect_event("default").await;
    assert_eq!(
        (event.0.as_str(), event.1.as_str(), event.2.as_str()),
        ("Normal", "Reconciled", "Tenant/acme")
    );
    let action = task.await.unwrap().unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));

    let stored = world.store.load_tenant("acme").await.unwrap().unwrap();
    assert_eq!(
        stored.keys, records,
        "the store holds a copy of the Secret's keys"
    );
    assert_eq!(
        stored.config.grant_types,
        [GrantType::ClientCredentials, GrantType::RefreshToken]
    );
    let version = world.store.tenant_versions().await.unwrap()["acme"];

    // The watches deliver what was written; the next pass changes nothing and says nothing.
    let mut keys: k8s_openapi::api::core::v1::Secret = serde_json::from_value(keys).unwrap();
    keys.metadata.resource_version = Some("100".into());
    world.put_secret(&keys);
    let t = with_status(&t, status);
    world.put_tenant(&t);
    reconcile_tenant(Arc::new(t), world.ctx.clone())
        .await
        .unwrap();
    world.api.expect_nothing().await;
    assert_eq!(
        world.store.tenant_versions().await.unwrap()["acme"],
        version
    );
    let metrics = world.ctx.metrics.encode();
    assert!(
        metrics.contains("gatehouse_operator_reconciliations_total{kind=\"Tenant\"} 2"),
        "{metrics}"
    );
}

/// A status write carries the resourceVersion its object was read at. A cache that has not
/// caught up with the operator's own last status write gets a 409 and announces nothing:
/// otherwise the same transition would be evented twice ("Reconciled (x2)").
#[tokio::test]
async fn a_stale_copy_writes_no_status_and_announces_nothing() {
    let mut world = World::new(memory());
    let mut t = settle_tenant(&mut world, &cc_tenant()).await;
    // The watch delivered the tenant as it was before its status was written.
    t.status = None;
    t.metadata.resource_version = Some("41".into());
    world.put_tenant(&t);
    let task = tokio::spawn(reconcile_tenant(Arc::new(t.clone()), world.ctx.clone()));
    let applied = world
        .api
        .expect(
            Method::PATCH,
            TENANT_STATUS,
            409,
            Some(json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "reason": "Conflict", "code": 409,
                        "message": "the object has been modified; please apply your changes to the latest version and try again"})),
        )
        .await;
    assert_eq!(applied["metadata"]["resourceVersion"], "41");
    let error = task.await.unwrap().unwrap_err();
    assert_eq!(error.label(), "conflict", "{error}");
    world.api.expect_nothing().await;
    assert_eq!(
        error_policy(Arc::new(t), &error, world.ctx.clone(), "Tenant"),
        Action::requeue(Duration::from_secs(1)),
        "retried as soon as the watch has had time to deliver"
    );
}

#[tokio::test]
async fn a_client_gets_a_generated_owned_secret_then_goes_live() {
    let mut world = World::new(memory());
    settle_tenant(&mut world, &cc_tenant()).await;
    let c = billing(cc_spec());
    world.put_client(&c);

    let task = spawn_client(&world, &c);
    let created = world
        .api
        .expect(Method::POST, ACME_SECRETS, 201, None)
        .await;
    assert_eq!(created["metadata"]["name"], "billing-credentials");
    assert_eq!(
        created["metadata"]["ownerReferences"][0]["uid"], "billing-uid",
        "garbage-collected with its client"
    );
    assert_eq!(
        created["metadata"]["ownerReferences"][0]["kind"],
        "OAuthClient"
    );
    assert_eq!(
        created["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "gatehouse"
    );
    assert_eq!(
        created["metadata"]["labels"]["gatehouse.dev/watch"], "true",
        "the operator's watch sees what it generated"
    );
    assert_eq!(secret_value(&created, "client_id"), "acme-billing");
    assert_eq!(
        secret_value(&created, "issuer"),
        "https://auth.example.com/acme"
    );
    assert_eq!(
        secret_value(&created, "token_endpoint"),
        "https://auth.example.com/acme/oauth2/token"
    );
    let generated = secret_value(&created, "client_secret");
    assert_eq!(generated.len(), 43, "256 random bits, base64url");
    let event = world.api.expect_event("acme").await;
    assert_eq!(
        (event.0.as_str(), event.1.as_str(), event.2.as_str()),
        ("Normal", "SecretGenerated", "OAuthClient/billing")
    );
    let status = expect_client_status(&mut world, &c).await;
    let status = &status["status"];
    assert_eq!(status["clientId"], "acme-billing");
    assert_eq!(status["secretName"], "billing-credentials");
    assert_eq!(status["grantTypes"], json!(["client_credentials"]));
    assert_eq!(status["observedGeneration"], 2);
    assert_eq!(
        condition(status, "Accepted"),
        ("True".into(), "Accepted".into())
    );
    assert_eq!(
        condition(status, "Ready"),
        ("False".into(), "SecretPending".into())
    );
    task.await.unwrap().unwrap();
    world.api.expect_nothing().await;
    assert!(
        world
            .store
            .get_client("acme", "acme-billing")
            .await
            .unwrap()
            .is_none()
    );

    // The Secret arrives through the watch: the client goes live.
    let s = secret(
        "acme",
        "billing-credentials",
        &[("client_secret", generated.as_bytes())],
    );
    world.put_secret(&s);
    let c = with_status(&c, status);
    world.put_client(&c);
    let task = spawn_client(&world, &c);
    let status = expect_client_status(&mut world, &c).await;
    assert_eq!(
        condition(&status["status"], "Ready"),
        ("True".into(), "Reconciled".into())
    );
    let event = world.api.expect_event("acme").await;
    assert_eq!(
        (event.0.as_str(), event.1.as_str()),
        ("Normal", "Reconciled")
    );
    task.await.unwrap().unwrap();
    let stored = world
        .store
        .get_client("acme", "acme-billing")
        .await
        .unwrap()
        .unwrap();
    assert!(verify_secret(
        &generated,
        stored.secret_hash.as_deref().unwrap()
    ));
    assert_eq!(stored.source, "acme/billing");

    // No-op resync.
    let c = with_status(&c, &status["status"]);
    world.put_client(&c);
    let version = world.store.tenant_versions().await.unwrap()["acme"];
    reconcile_client(Arc::new(c.clone()), world.ctx.clone())
        .await
        .unwrap();
    world.api.expect_nothing().await;
    assert_eq!(
        world.store.tenant_versions().await.unwrap()["acme"],
        version
    );

    // Spec change: a new generation with another grant.
    let mut changed = c.clone();
    changed.metadata.generation = Some(3);
    changed.spec.grant_types.push(GrantType::RefreshToken);
    world.put_client(&changed);
    let task = spawn_client(&world, &changed);
    let status = expect_client_status(&mut world, &changed).await;
    assert_eq!(status["status"]["observedGeneration"], 3);
    assert_eq!(
        status["status"]["grantTypes"],
        json!(["client_credentials", "refresh_token"])
    );
    assert_eq!(status["status"]["conditions"][0]["observedGeneration"], 3);
    assert_eq!(
        status["status"]["conditions"][0]["lastTransitionTime"], NOW_RFC3339,
        "no transition, the time stays"
    );
    task.await.unwrap().unwrap();
    world.api.expect_nothing().await;
    let stored = world
        .store
        .get_client("acme", "acme-billing")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.grant_types,
        [GrantType::ClientCredentials, GrantType::RefreshToken]
    );
}

/// A refused client: its status, one warning event, no Secret and nothing in the store.
async fn refused(world: &mut World, c: OAuthClient, reason: &str) -> Value {
    world.put_client(&c);
    let task = spawn_client(world, &c);
    let status = world
        .api
        .expect(
            Method::PATCH,
            &format!("{}/status", client_path(&c.metadata.name.clone().unwrap())),
            200,
            Some(json_of(&c)),
        )
        .await;
    let status = status["status"].clone();
    assert_eq!(
        condition(&status, "Accepted"),
        ("False".into(), reason.into())
    );
    assert_eq!(condition(&status, "Ready"), ("False".into(), reason.into()));
    let event = world.api.expect_event("acme").await;
    assert_eq!((event.0.as_str(), event.1.as_str()), ("Warning", reason));
    task.await.unwrap().unwrap();
    world.api.expect_nothing().await;
    let source = format!("acme/{}", c.metadata.name.as_deref().unwrap());
    let registered = world
        .store
        .get_client(&c.spec.tenant_ref, "acme-billing")
        .await
        .unwrap();
    assert!(
        registered.is_none_or(|r| r.source != source),
        "refused clients get no token"
    );
    status
}

#[tokio::test]
async fn a_client_of_a_missing_tenant_is_refused() {
    let mut world = World::new(memory());
    let c = billing(json!({"tenantRef": "nope", "grantTypes": ["client_credentials"]}));
    world.put_client(&c);
    let task = spawn_client(&world, &c);
    // The cache lacks the tenant: one list by name, metadata only, makes sure the cluster
    // lacks it too before the client is told so.
    answer_tenant_lookup(&mut world, "nope", json!([])).await;
    let status = world
        .api
        .expect(
            Method::PATCH,
            &format!("{}/status", client_path("billing")),
            200,
            Some(json_of(&c)),
        )
        .await;
    let status = status["status"].clone();
    assert_eq!(
        condition(&status, "Ready"),
        ("False".into(), "TenantNotFound".into())
    );
    assert_eq!(
        status["conditions"][0]["message"],
        "tenant nope does not exist"
    );
    let event = world.api.expect_event("acme").await;
    assert_eq!(
        (event.0.as_str(), event.1.as_str()),
        ("Warning", "TenantNotFound")
    );
    task.await.unwrap().unwrap();
    world.api.expect_nothing().await;
}

/// Answers the operator's list of the Tenant `name` (metadata only) with `items`.
async fn answer_tenant_lookup(world: &mut World, name: &str, items: Value) {
    let (seen, send) = world.api.next().await;
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("GET", "/apis/gatehouse.dev/v1alpha1/tenants")
    );
    assert!(
        seen.query
            .contains(&format!("fieldSelector=metadata.name%3D{name}")),
        "{}",
        seen.query
    );
    assert!(
        seen.accept.contains("as=PartialObjectMetadataList"),
        "{}",
        seen.accept
    );
    let reply = json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
                       "metadata": {}, "items": items});
    send.send_response(
        Response::builder()
            .status(200)
            .body(Body::from(serde_json::to_vec(&reply).unwrap()))
            .unwrap(),
    );
}

/// A Tenant applied together with its clients can reach the cache after them: the client
/// waits for it (a retry), with no TenantNotFound status or event meanwhile.
#[tokio::test]
async fn a_client_whose_tenant_the_cache_has_yet_to_see_waits_for_it() {
    let mut world = World::new(memory());
    let c = billing(json!({"tenantRef": "acme", "grantTypes": ["client_credentials"]}));
    world.put_client(&c);
    let task = spawn_client(&world, &c);
    answer_tenant_lookup(
        &mut world,
        "acme",
        json!([{"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                "metadata": {"name": "acme"}}]),
    )
    .await;
    let error = task.await.unwrap().unwrap_err();
    assert!(
        matches!(
            error,
            gatehouse_controller::operator::ReconcileError::Conflict(_)
        ),
        "{error}"
    );
    world.api.expect_nothing().await;
}

#[tokio::test]
async fn a_client_from_a_namespace_the_tenant_does_not_allow_is_refused() {
    let mut world = World::new(memory());
    settle_tenant(
        &mut world,
        &tenant(json!({"grantTypes": ["client_credentials"], "clientNamespaces": ["finance"]})),
    )
    .await;
    let status = refused(&mut world, billing(cc_spec()), "NamespaceNotAllowed").await;
    assert!(
        status["conditions"][0]["message"]
            .as_str()
            .unwrap()
            .contains("spec.clientNamespaces")
    );
}

#[tokio::test]
async fn a_client_asking_for_grants_the_tenant_does_not_enable_keeps_the_others() {
    let mut world = World::new(memory());
    settle_tenant(&mut world, &cc_tenant()).await;
    world.put_secret(&secret(
        "acme",
        "billing-credentials",
        &[("client_secret", b"s3cret-value")],
    ));
    let c = billing(json!({"tenantRef": "acme", "grantTypes": ["client_credentials", "password"]}));
    world.put_client(&c);
    let task = spawn_client(&world, &c);
    let status = expect_client_status(&mut world, &c).await;
    let status = &status["status"];
    assert_eq!(
        condition(status, "Accepted"),
        ("False".into(), "GrantTypeNotEnabled".into())
    );
    assert_eq!(
        condition(status, "Ready"),
        ("True".into(), "Reconciled".into())
    );
    assert_eq!(status["grantTypes"], json!(["client_credentials"]));
    let warning = world.api.expect_event("acme").await;
    assert_eq!(
        (warning.0.as_str(), warning.1.as_str()),
        ("Warning", "GrantTypeNotEnabled")
    );
    assert!(
        warning.3.contains("does not enable password"),
        "{}",
        warning.3
    );
    let ready = world.api.expect_event("acme").await;
    assert_eq!(
        (ready.0.as_str(), ready.1.as_str()),
        ("Normal", "Reconciled")
    );
    task.await.unwrap().unwrap();
    let stored = world
        .store
        .get_client("acme", "acme-billing")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.grant_types, [GrantType::ClientCredentials]);
}

#[tokio::test]
async fn a_user_supplied_secret_is_waited_for_used_followed_and_never_written() {
    let mut world = World::new(memory());
    settle_tenant(&mut world, &cc_tenant()).await;
    let spec = json!({"tenantRef": "acme", "grantTypes": ["client_credentials"],
                      "secretRef": {"name": "from-vault", "generate": false}});
    let c = billing(spec);
    world.put_client(&c);
    let task = spawn_client(&world, &c);
    // Not in the cache: does it exist without the label?
    world.api.expect_lookup("acme", "from-vault", None).await;
    let status = expect_client_status(&mut world, &c).await;
    assert_eq!(
        condition(&status["status"], "Ready"),
        ("False".into(), "SecretNotFound".into())
    );
    let event = world.api.expect_event("acme").await;
    assert_eq!(
        (event.0.as_str(), event.1.as_str()),
        ("Warning", "SecretNotFound")
    );
    task.await.unwrap().unwrap();
    world.api.expect_nothing().await; // no Secret is created
    let c = with_status(&c, &status["status"]);
    world.put_client(&c);

    // GitOps delivers it without the label: the watch never shows it, the lookup finds it,
    // and the condition says which label to add. Its data is never asked for.
    let task = spawn_client(&world, &c);
    world
        .api
        .expect_lookup(
            "acme",
            "from-vault",
            Some(json!({"name": "from-vault", "namespace": "acme"})),
        )
        .await;
    let status = expect_client_status(&mut world, &c).await;
    let (ready, message) = {
        let c = status["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        (
            (
                c["status"].as_str().unwrap().to_string(),
                c["reason"].as_str().unwrap().to_string(),
            ),
            c["message"].as_str().unwrap().to_string(),
        )
    };
    assert_eq!(ready, ("False".into(), "SecretNotLabelled".into()));
    assert!(
        message.contains("kubectl label secret -n acme from-vault gatehouse.dev/watch=true"),
        "{message}"
    );
    let event = world.api.expect_event("acme").await;
    assert_eq!(
        (event.0.as_str(), event.1.as_str()),
        ("Warning", "SecretNotLabelled")
    );
    task.await.unwrap().unwrap();
    world.api.expect_nothing().await; // nothing written to it

    // Labelled, it reaches the cache through the watch; the client goes live with it.
    let theirs = secret("acme", "from-vault", &[("client_secret", b"first-secret")]);
    world.put_secret(&theirs);
    let c = with_status(&c, &status["status"]);
    world.put_client(&c);
    let task = spawn_client(&world, &c);
    let status = expect_client_status(&mut world, &c).await;
    assert_eq!(
        condition(&status["status"], "Ready"),
        ("True".into(), "Reconciled".into())
    );
    world.api.expect_event("acme").await;
    task.await.unwrap().unwrap();
    let hash = world
        .store
        .get_client("acme", "acme-billing")
        .await
        .unwrap()
        .unwrap()
        .secret_hash
        .unwrap();
    assert!(verify_secret("first-secret", &hash));

    // They rotate it: the change takes effect without touching the OAuthClient, and a rotate
    // annotation never makes the operator write a Secret it does not own.
    let mut c = with_status(&c, &status["status"]);
    c.metadata.annotations =
        Some([("gatehouse.dev/rotate-secret".to_string(), "now".to_string())].into());
    world.put_client(&c);
    world.put_secret(&secret(
        "acme",
        "from-vault",
        &[("client_secret", b"second-secret")],
    ));
    reconcile_client(Arc::new(c), world.ctx.clone())
        .await
        .unwrap();
    world.api.expect_nothing().await;
    let hash = world
        .store
        .get_client("acme", "acme-billing")
        .await
        .unwrap()
        .unwrap()
        .secret_hash
        .unwrap();
    assert!(verify_secret("second-secret", &hash) && !verify_secret("first-secret", &hash));
}

#[tokio::test]
async fn the_rotation_annotation_puts_a_fresh_secret_into_an_owned_secret_once() {
    let mut world = World::new(memory());
    settle_tenant(&mut world, &cc_tenant()).await;
    let mut owned = secret(
        "acme",
        "billing-credentials",
        &[("client_secret", b"old-secret")],
    );
    owned.metadata.labels.get_or_insert_default().insert(
        "app.kubernetes.io/managed-by".to_string(),
        "gatehouse".to_string(),
    );
    world.put_secret(&owned);
    let mut c = billing(cc_spec());
    world.put_client(&c);
    let task = spawn_client(&world, &c);
    let status = expect_client_status(&mut world, &c).await;
    world.api.expect_event("acme").await;
    task.await.unwrap().unwrap();
    c = with_status(&c, &status["status"]);

    c.metadata.annotations = Some(
        [(
            "gatehouse.dev/rotate-secret".to_string(),
            "2026-11".to_string(),
        )]
        .into(),
    );
    world.put_client(&c);
    let task = spawn_client(&world, &c);
    let patch = world
        .api
        .expect(
            Method::PATCH,
            &format!("{ACME_SECRETS}/billing-credentials"),
            200,
            None,
        )
        .await;
    assert_eq!(
        patch["metadata"]["annotations"]["gatehouse.dev/rotated-for"],
        "2026-11"
    );
    let fresh = patch["stringData"]["client_secret"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(fresh.len(), 43);
    assert_ne!(fresh, "old-secret");
    let event = world.api.expect_event("acme").await;
    assert_eq!(
        (event.0.as_str(), event.1.as_str()),
        ("Normal", "SecretRotated")
    );
    task.await.unwrap().unwrap();
    world.api.expect_nothing().await;

    // The watch brings the rotated Secret back: the new secret is live and no second
    // rotation happens for the same annotation value.
    let mut rotated = secret(
        "acme",
        "billing-credentials",
        &[("client_secret", fresh.as_bytes())],
    );
    rotated.metadata.labels = owned.metadata.labels.clone();
    rotated.metadata.annotations = Some(
        [(
            "gatehouse.dev/rotated-for".to_string(),
            "2026-11".to_string(),
        )]
        .into(),
    );
    world.put_secret(&rotated);
    reconcile_client(Arc::new(c), world.ctx.clone())
        .await
        .unwrap();
    world.api.expect_nothing().await;
    let hash = world
        .store
        .get_client("acme", "acme-billing")
        .await
        .unwrap()
        .unwrap()
        .secret_hash
        .unwrap();
    assert!(verify_secret(&fresh, &hash));
}

#[tokio::test]
async fn deleting_a_client_deregisters_it_once_even_across_a_failed_finalizer_removal() {
    let mut world = World::new(memory());
    settle_tenant(&mut world, &cc_tenant()).await;
    world.put_secret(&secret(
        "acme",
        "billing-credentials",
        &[("client_secret", b"s3cret-value")],
    ));
    let c = billing(cc_spec());
    world.put_client(&c);
    let task = spawn_client(&world, &c);
    let status = expect_client_status(&mut world, &c).await;
    world.api.expect_event("acme").await;
    task.await.unwrap().unwrap();
    let c = with_status(&c, &status["status"]);
    // A younger rival claims the same client id and loses it.
    let mut rival = oauth_client(
        "billing-copy",
        json!({"tenantRef": "acme", "clientId": "acme-billing", "grantTypes": ["client_credentials"]}),
    );
    rival.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        "2023-11-10T00:00:00Z".parse().unwrap(),
    ));
    refused(&mut world, rival.clone(), "ClientIdConflict").await;
    assert!(
        world
            .store
            .get_client("acme", "acme-billing")
            .await
            .unwrap()
            .is_some(),
        "the loser leaves the winner alone"
    );

    let mut deleting = c.clone();
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2023-11-14T22:13:20Z".parse().unwrap(),
        ));
    world.put_client(&deleting);
    let task = spawn_client(&world, &deleting);
    let event = world.api.expect_event("acme").await;
    assert_eq!(
        (event.0.as_str(), event.1.as_str()),
        ("Normal", "Deregistered")
    );
    let patch = world
        .api
        .expect(Method::PATCH, &client_path("billing"), 500, Some(json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "etcd timeout", "reason": "InternalError", "code": 500})))
        .await;
    assert_eq!(
        patch,
        json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": "gatehouse.dev/cleanup"},
            {"op": "remove", "path": "/metadata/finalizers/0"}
        ])
    );
    assert!(task.await.unwrap().is_err(), "the finalizer stays; retried");
    assert!(
        world
            .store
            .get_client("acme", "acme-billing")
            .await
            .unwrap()
            .is_none()
    );

    // The retry (or a restarted operator) finds it already deregistered: no second event.
    let task = spawn_client(&world, &deleting);
    world
        .api
        .expect(
            Method::PATCH,
            &client_path("billing"),
            200,
            Some(json_of(&deleting)),
        )
        .await;
    task.await.unwrap().unwrap();
    world.api.expect_nothing().await;
    let mut requeued = Vec::new();
    while let Ok(r) = world.requeued.try_recv() {
        requeued.push(r.name);
    }
    assert!(
        requeued.contains(&"billing-copy".to_string()),
        "the rival is looked at again: {requeued:?}"
    );
}

#[tokio::test]
async fn deleting_a_tenant_takes_its_issuer_out_and_purges_its_runtime_data() {
    let mut world = World::new(memory());
    let t = settle_tenant(&mut world, &cc_tenant()).await;
    put_live_record(&world, RecordKind::RefreshToken, "r1").await;
    assert!(
        world
            .store
            .get_record("acme", RecordKind::RefreshToken, "r1")
            .await
            .unwrap()
            .is_some()
    );
    let mut deleting = t.clone();
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2023-11-14T22:13:20Z".parse().unwrap(),
        ));
    world.put_tenant(&deleting);
    let task = tokio::spawn(reconcile_tenant(
        Arc::new(deleting.clone()),
        world.ctx.clone(),
    ));
    world
        .api
        .expect(
            Method::DELETE,
            &format!("{KEYS_SECRETS}/{}", keys_secret_name("acme")),
            200,
            Some(json!({})),
        )
        .await;
    let event = world.api.expect_event("default").await;
    assert_eq!(
        (event.0.as_str(), event.1.as_str()),
        ("Normal", "TenantRemoved")
    );
    assert!(
        event.3.contains("https://auth.example.com/acme"),
        "{}",
        event.3
    );
    world
        .api
        .expect(Method::PATCH, TENANT_PATH, 200, Some(json_of(&deleting)))
        .await;
    task.await.unwrap().unwrap();
    assert!(world.store.load_tenant("acme").await.unwrap().is_none());
    assert!(
        world
            .store
            .get_record("acme", RecordKind::RefreshToken, "r1")
            .await
            .unwrap()
            .is_none()
    );

    // Again (a restart midway): the keys Secret is already gone (404) and that is fine.
    let task = tokio::spawn(reconcile_tenant(
        Arc::new(deleting.clone()),
        world.ctx.clone(),
    ));
    world
        .api
        .expect(Method::DELETE, &format!("{KEYS_SECRETS}/{}", keys_secret_name("acme")), 404, Some(json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404})))
        .await;
    world.api.expect_event("default").await;
    world
        .api
        .expect(Method::PATCH, TENANT_PATH, 200, Some(json_of(&deleting)))
        .await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_store_outage_shows_in_status_and_is_retried_with_backoff() {
    let redis = gatehouse_testkit::RedisServer::start();
    let store = gatehouse_store::open(&redis.url()).await.unwrap();
    let mut world = World::new(store);
    settle_tenant(&mut world, &cc_tenant()).await;
    world.put_secret(&secret(
        "acme",
        "billing-credentials",
        &[("client_secret", b"s3cret-value")],
    ));
    drop(redis);
    let c = billing(cc_spec());
    world.put_client(&c);
    let task = spawn_client(&world, &c);
    let status = expect_client_status(&mut world, &c).await;
    assert_eq!(
        condition(&status["status"], "Accepted"),
        ("True".into(), "Accepted".into())
    );
    assert_eq!(
        condition(&status["status"], "Ready"),
        ("False".into(), "StoreUnavailable".into())
    );
    let event = world.api.expect_event("acme").await;
    assert_eq!(
        (event.0.as_str(), event.1.as_str()),
        ("Warning", "StoreUnavailable")
    );
    let error = task.await.unwrap().unwrap_err();
    let object = Arc::new(c);
    let first = error_policy(object.clone(), &error, world.ctx.clone(), "OAuthClient");
    let second = error_policy(object, &error, world.ctx.clone(), "OAuthClient");
    assert_eq!(first, Action::requeue(Duration::from_secs(1)));
    assert_eq!(second, Action::requeue(Duration::from_secs(2)));
    assert!(
        world
            .ctx
            .metrics
            .encode()
            .contains("reconcile_errors_total{kind=\"OAuthClient\",error=\"store\"} 2")
    );
}

fn keys_secret(records: &[SigningKeyRecord]) -> k8s_openapi::api::core::v1::Secret {
    let mut s = secret(
        OPERATOR_NAMESPACE,
        &keys_secret_name("acme"),
        &[(
            KEYS_SECRET_KEY,
            serde_json::to_vec(records).unwrap().as_slice(),
        )],
    );
    s.metadata
        .labels
        .get_or_insert_default()
        .insert("gatehouse.dev/tenant".to_string(), "acme".to_string());
    s
}

#[tokio::test]
async fn keys_rotate_on_the_interval_with_the_next_key_already_published() {
    let kek = Arc::new(KeyEncryptionKey::generate().unwrap().0);
    let mut world = World::with_kek(memory(), kek.clone());
    let day = 24 * 3600;
    let created = NOW - 31 * day;
    let old = generate_signing_key(
        "acme",
        SigningAlgorithm::ES256,
        KeyState::Active,
        &kek,
        created,
    )
    .unwrap();
    let next = generate_signing_key(
        "acme",
        SigningAlgorithm::ES256,
        KeyState::Next,
        &kek,
        created,
    )
    .unwrap();
    world.put_secret(&keys_secret(&[old.clone(), next.clone()]));
    let t = cc_tenant();
    world.put_tenant(&t);
    let task = tokio::spawn(reconcile_tenant(Arc::new(t.clone()), world.ctx.clone()));
    let patch = world
        .api
        .expect(
            Method::PATCH,
            &format!("{KEYS_SECRETS}/{}", keys_secret_name("acme")),
            200,
            None,
        )
        .await;
    assert_eq!(
        patch["metadata"]["resourceVersion"], "100",
        "optimistic concurrency"
    );
    let records: Vec<SigningKeyRecord> =
        serde_json::from_str(&secret_value(&patch, KEYS_SECRET_KEY)).unwrap();
    assert_eq!(
        records[0].kid, next.kid,
        "the key published for a whole interval now signs"
    );
    assert_eq!(records[0].state, KeyState::Active);
    assert_eq!(records[1].state, KeyState::Next);
    assert_eq!(
        (records[2].kid.as_str(), records[2].state),
        (old.kid.as_str(), KeyState::Retired)
    );
    assert_eq!(records[2].retired_at, Some(NOW));
    let rotated = world.api.expect_event("default").await;
    assert_eq!(
        (rotated.0.as_str(), rotated.1.as_str()),
        ("Normal", "KeyRotated")
    );
    assert!(
        rotated.3.contains(&next.kid) && rotated.3.contains(&old.kid),
        "{}",
        rotated.3
    );
    let status = world
        .api
        .expect(Method::PATCH, TENANT_STATUS, 200, Some(json_of(&t)))
        .await;
    assert_eq!(
        status["status"]["signingKeys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["state"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["active", "next", "retired"]
    );
    assert_eq!(world.api.expect_event("default").await.1, "Reconciled");
    let action = task.await.unwrap().unwrap();
    // The retired key may leave JWKS in 20 minutes (15 min tokens + 5 min slack); the
    // periodic resync comes first.
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
    let stored = world.store.load_tenant("acme").await.unwrap().unwrap();
    assert_eq!(stored.keys, records);
}

#[tokio::test]
async fn a_tenant_that_turns_invalid_keeps_its_last_valid_version_serving() {
    let mut world = World::new(memory());
    let t = settle_tenant(&mut world, &cc_tenant()).await;
    put_live_record(&world, RecordKind::Session, "s1").await;
    let served = world.store.load_tenant("acme").await.unwrap();
    assert!(served.is_some());
    let mut broken = t.clone();
    broken.metadata.generation = Some(2);
    broken.spec.access_token.ttl = "forever".into();
    world.put_tenant(&broken);
    let task = tokio::spawn(reconcile_tenant(
        Arc::new(broken.clone()),
        world.ctx.clone(),
    ));
    let status = world
        .api
        .expect(Method::PATCH, TENANT_STATUS, 200, Some(json_of(&broken)))
        .await;
    let status = &status["status"];
    assert_eq!(
        condition(status, "Ready"),
        ("True".into(), "ServingLastValid".into()),
        "{status}"
    );
    assert_eq!(
        condition(status, "Accepted"),
        ("False".into(), "InvalidSpec".into()),
        "{status}"
    );
    let accepted = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Accepted")
        .unwrap();
    assert!(
        accepted["message"]
            .as_str()
            .unwrap()
            .contains("spec.accessToken.ttl"),
        "{accepted}"
    );
    assert_eq!(
        status["issuer"], "https://auth.example.com/acme",
        "the issuer still answers: {status}"
    );
    assert_eq!(world.api.expect_event("default").await.1, "InvalidSpec");
    task.await.unwrap().unwrap();
    assert_eq!(
        world.store.load_tenant("acme").await.unwrap(),
        served,
        "the last valid version stays as it was"
    );
    assert!(
        world
            .store
            .get_record("acme", RecordKind::Session, "s1")
            .await
            .unwrap()
            .is_some(),
        "its sessions are untouched"
    );
}

#[tokio::test]
async fn an_unreadable_keys_secret_is_reported_not_replaced() {
    let mut world = World::new(memory());
    let mut broken = keys_secret(&[]);
    broken.data = Some(
        [(
            KEYS_SECRET_KEY.to_string(),
            k8s_openapi::ByteString(b"{not json".to_vec()),
        )]
        .into(),
    );
    world.put_secret(&broken);
    let t = cc_tenant();
    world.put_tenant(&t);
    let task = tokio::spawn(reconcile_tenant(Arc::new(t.clone()), world.ctx.clone()));
    let status = world
        .api
        .expect(Method::PATCH, TENANT_STATUS, 200, Some(json_of(&t)))
        .await;
    assert_eq!(
        condition(&status["status"], "Ready"),
        ("False".into(), "SigningKeysInvalid".into())
    );
    let event = world.api.expect_event("default").await;
    assert_eq!(
        (event.0.as_str(), event.1.as_str()),
        ("Warning", "SigningKeysInvalid")
    );
    assert!(task.await.unwrap().is_err());
    world.api.expect_nothing().await;
    assert!(world.store.load_tenant("acme").await.unwrap().is_none());
}

#[tokio::test]
async fn mappers_find_what_depends_on_a_changed_object() {
    let mut world = World::new(memory());
    let t = tenant(
        json!({"grantTypes": ["password"], "users": {"secretRef": {"name": "acme-users", "namespace": "acme"}}}),
    );
    world.put_tenant(&t);
    let c = billing(cc_spec());
    world.put_client(&c);
    let names = |refs: Vec<kube::runtime::reflector::ObjectRef<OAuthClient>>| {
        refs.into_iter().map(|r| r.name).collect::<Vec<_>>()
    };
    let index = world.index.clone();
    assert_eq!(names(index.clients_of_tenant("acme")), ["billing"]);
    assert!(index.clients_of_tenant("other").is_empty());
    let creds = secret("acme", "billing-credentials", &[]);
    assert_eq!(names(index.clients_of_secret(&creds)), ["billing"]);
    assert!(
        index
            .clients_of_secret(&secret("elsewhere", "billing-credentials", &[]))
            .is_empty()
    );
    let users = secret("acme", "acme-users", &[]);
    let tenants: Vec<String> = index
        .tenants_of_secret(&users, OPERATOR_NAMESPACE)
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(tenants, ["acme"]);
    let keys: Vec<String> = index
        .tenants_of_secret(&keys_secret(&[]), OPERATOR_NAMESPACE)
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(keys, ["acme"]);
    // Deletions come back as the objects they matter to (shared streams do not pass them on).
    assert_eq!(names(world.remove_secret(&creds).clients), ["billing"]);
    let gone = world.remove_client(&c);
    assert_eq!(
        gone.tenants.into_iter().map(|t| t.name).collect::<Vec<_>>(),
        ["acme"]
    );
    assert!(index.clients_of_tenant("acme").is_empty());
}

#[test]
fn a_ready_tenant_missing_from_the_store_means_the_store_lost_data() {
    let ready = with_status(
        &cc_tenant(),
        &json!({"conditions": [{"type": "Ready", "status": "True", "reason": "Reconciled", "message": "", "lastTransitionTime": NOW_RFC3339}]}),
    );
    let invalid = with_status(
        &tenant(json!({"grantTypes": ["password"]})),
        &json!({"conditions": [{"type": "Ready", "status": "False", "reason": "InvalidSpec", "message": "", "lastTransitionTime": NOW_RFC3339}]}),
    );
    let mut stored = std::collections::BTreeMap::new();
    assert_eq!(
        lost_tenants(&[Arc::new(ready.clone()), Arc::new(invalid)], &stored),
        ["acme"]
    );
    stored.insert("acme".to_string(), 1u64);
    assert!(lost_tenants(&[Arc::new(ready)], &stored).is_empty());
}

/// What the API server answers a create of an object that exists.
fn already_exists(name: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "AlreadyExists",
           "message": format!("secrets \"{name}\" already exists"), "code": 409})
}

#[tokio::test]
async fn a_secret_that_exists_without_the_label_is_never_generated_over_nor_read() {
    let mut world = World::new(memory());
    settle_tenant(&mut world, &cc_tenant()).await;
    // billing's credentials Secret would be generated, but a Secret by that name is there
    // already (another team's, holding a database password), and not labelled for Gatehouse.
    let c = billing(cc_spec());
    world.put_client(&c);
    let task = spawn_client(&world, &c);
    world
        .api
        .expect(
            Method::POST,
            ACME_SECRETS,
            409,
            Some(already_exists("billing-credentials")),
        )
        .await;
    world
        .api
        .expect_lookup(
            "acme",
            "billing-credentials",
            Some(json!({"name": "billing-credentials", "namespace": "acme",
                        "labels": {"team": "payments"}})),
        )
        .await;
    let status = expect_client_status(&mut world, &c).await;
    assert_eq!(
        condition(&status["status"], "Ready"),
        ("False".into(), "SecretNotLabelled".into())
    );
    let event = world.api.expect_event("acme").await;
    assert_eq!(
        (event.0.as_str(), event.1.as_str()),
        ("Warning", "SecretNotLabelled")
    );
    assert!(
        event
            .3
            .contains("kubectl label secret -n acme billing-credentials gatehouse.dev/watch=true"),
        "{}",
        event.3
    );
    task.await.unwrap().unwrap();
    world.api.expect_nothing().await; // never patched, never read
    assert!(
        world
            .store
            .get_client("acme", "acme-billing")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn secrets_gatehouse_made_before_it_labelled_them_get_the_label() {
    // A credentials Secret generated for billing by an operator that did not label them yet.
    let mut world = World::new(memory());
    settle_tenant(&mut world, &cc_tenant()).await;
    let c = billing(cc_spec());
    world.put_client(&c);
    let task = spawn_client(&world, &c);
    world
        .api
        .expect(
            Method::POST,
            ACME_SECRETS,
            409,
            Some(already_exists("billing-credentials")),
        )
        .await;
    let made = json!({"name": "billing-credentials", "namespace": "acme",
        "labels": {"app.kubernetes.io/managed-by": "gatehouse", "gatehouse.dev/client": "billing"},
        "ownerReferences": [{"apiVersion": "gatehouse.dev/v1alpha1", "kind": "OAuthClient",
                             "name": "billing", "uid": "billing-uid", "controller": true}]});
    world
        .api
        .expect_lookup("acme", "billing-credentials", Some(made))
        .await;
    let patch = world
        .api
        .expect(
            Method::PATCH,
            &format!("{ACME_SECRETS}/billing-credentials"),
            200,
            Some(json!({})),
        )
        .await;
    assert_eq!(
        patch,
        json!({"metadata": {"labels": {"gatehouse.dev/watch": "true"}}}),
        "only the label, nothing else"
    );
    let error = task.await.unwrap().unwrap_err();
    assert_eq!(
        error.label(),
        "conflict",
        "retried once the watch delivers it: {error}"
    );
    world.api.expect_nothing().await;

    // A keys Secret of this tenant from then: labelled too. Someone else's by that name: not
    // touched, and the tenant says so.
    let mut world = World::new(memory());
    let t = cc_tenant();
    world.put_tenant(&t);
    let task = tokio::spawn(reconcile_tenant(Arc::new(t.clone()), world.ctx.clone()));
    world
        .api
        .expect(
            Method::POST,
            KEYS_SECRETS,
            409,
            Some(already_exists("gatehouse-keys-acme")),
        )
        .await;
    let made = json!({"name": "gatehouse-keys-acme", "namespace": "gatehouse",
        "labels": {"app.kubernetes.io/managed-by": "gatehouse", "gatehouse.dev/tenant": "acme"},
        "ownerReferences": [{"apiVersion": "gatehouse.dev/v1alpha1", "kind": "Tenant",
                             "name": "acme", "uid": "tenant-uid", "controller": true}]});
    world
        .api
        .expect_lookup(OPERATOR_NAMESPACE, "gatehouse-keys-acme", Some(made))
        .await;
    let patch = world
        .api
        .expect(
            Method::PATCH,
            &format!("{KEYS_SECRETS}/gatehouse-keys-acme"),
            200,
            Some(json!({})),
        )
        .await;
    assert_eq!(
        patch,
        json!({"metadata": {"labels": {"gatehouse.dev/watch": "true"}}})
    );
    world
        .api
        .expect(Method::PATCH, TENANT_STATUS, 200, Some(json_of(&t)))
        .await;
    world.api.expect_event("default").await;
    assert_eq!(task.await.unwrap().unwrap_err().label(), "conflict");
    assert!(
        world.store.load_tenant("acme").await.unwrap().is_none(),
        "no new keys were published over the old ones"
    );

    let mut world = World::new(memory());
    world.put_tenant(&t);
    let task = tokio::spawn(reconcile_tenant(Arc::new(t.clone()), world.ctx.clone()));
    world
        .api
        .expect(
            Method::POST,
            KEYS_SECRETS,
            409,
            Some(already_exists("gatehouse-keys-acme")),
        )
        .await;
    world
        .api
        .expect_lookup(
            OPERATOR_NAMESPACE,
            "gatehouse-keys-acme",
            Some(json!({"name": "gatehouse-keys-acme", "namespace": "gatehouse"})),
        )
        .await;
    let status = world
        .api
        .expect(Method::PATCH, TENANT_STATUS, 200, Some(json_of(&t)))
        .await;
    assert_eq!(
        condition(&status["status"], "Ready"),
        ("False".into(), "SigningKeysInvalid".into())
    );
    world.api.expect_event("default").await;
    assert!(task.await.unwrap().is_err());
    world.api.expect_nothing().await;
}

#[tokio::test]
async fn an_unlabelled_users_secret_is_named_not_read() {
    let mut world = World::new(memory());
    let t = tenant(json!({"grantTypes": ["password", "client_credentials"],
                          "users": {"secretRef": {"name": "people", "namespace": "acme"}}}));
    world.put_tenant(&t);
    let task = tokio::spawn(reconcile_tenant(Arc::new(t.clone()), world.ctx.clone()));
    world
        .api
        .expect_lookup(
            "acme",
            "people",
            Some(json!({"name": "people", "namespace": "acme"})),
        )
        .await;
    world
        .api
        .expect(Method::POST, KEYS_SECRETS, 201, None)
        .await;
    let status = world
        .api
        .expect(Method::PATCH, TENANT_STATUS, 200, Some(json_of(&t)))
        .await;
    assert_eq!(
        condition(&status["status"], "UsersLoaded"),
        ("False".into(), "SecretNotLabelled".into())
    );
    assert_eq!(
        condition(&status["status"], "Ready"),
        ("False".into(), "SecretNotLabelled".into()),
        "the tenant serves, without users, and says so where people look first"
    );
    let mut reasons = vec![
        world.api.expect_event("default").await.1,
        world.api.expect_event("default").await.1,
    ];
    reasons.sort();
    // One event per condition that changed: Ready and UsersLoaded both name the Secret.
    assert_eq!(reasons, ["SecretNotLabelled", "SecretNotLabelled"]);
    task.await.unwrap().unwrap();
    world.api.expect_nothing().await;
    let stored = world.store.load_tenant("acme").await.unwrap().unwrap();
    assert!(stored.config.users.is_empty());
}

#[test]
fn the_backlog_counts_what_the_controller_has_not_reconciled_yet() {
    let observed = |t: &Tenant| t.status.as_ref().and_then(|s| s.observed_generation);
    let at = |generation: i64, status: Option<Value>| {
        let mut t = cc_tenant();
        t.metadata.generation = Some(generation);
        match status {
            Some(s) => with_status(&t, &s),
            None => t,
        }
    };
    let done = at(2, Some(json!({"observedGeneration": 2})));
    let edited = at(3, Some(json!({"observedGeneration": 2})));
    let new = at(1, None);
    let mut deleting = done.clone();
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
    let all: Vec<Arc<Tenant>> = [done.clone(), edited, new, deleting]
        .into_iter()
        .map(Arc::new)
        .collect();
    assert_eq!(pending(&all, observed), 3);
    assert_eq!(pending(&[Arc::new(done)], observed), 0);
}
