//! The operator's paths with a real Redis store, checked by what the real token service (the
//! server router, reading the same Redis) then serves: a client the operator registers gets
//! tokens; a refused, deleted or out-of-tenant one does not; a flushed Redis is restored.

mod support;

use gatehouse_controller::operator::{reconcile_client, reconcile_tenant};
use gatehouse_core::keys::KeyEncryptionKey;
use gatehouse_crd::{OAuthClient, Tenant};
use gatehouse_server::{AppState, TenantDirectory, router};
use gatehouse_testkit::{RedisServer, redis_command};
use http::Method;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use support::*;

struct Setup {
    world: World,
    log: Arc<Mutex<Vec<Seen>>>,
    directory: Arc<TenantDirectory>,
    base: String,
    http: reqwest::Client,
    redis: RedisServer,
    kek: Arc<KeyEncryptionKey>,
}

async fn setup() -> Setup {
    let redis = RedisServer::start();
    let store = gatehouse_store::open(&redis.url()).await.unwrap();
    let kek = Arc::new(KeyEncryptionKey::generate().unwrap().0);
    let mut world = World::with_kek(store.clone(), kek.clone());
    let operator_kek = kek.clone();
    let log = std::mem::replace(&mut world.api, ApiServer::detached()).autopilot();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let directory = Arc::new(TenantDirectory::new(store.clone(), kek, &base));
    let services = gatehouse_server::Services::new(
        store,
        gatehouse_core::clock::system(),
        gatehouse_core::random::system(),
    );
    let state = AppState::new(
        directory.clone(),
        services,
        Arc::new(gatehouse_server::metrics::Metrics::new()),
    );
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Setup {
        world,
        log,
        directory,
        base,
        http: reqwest::Client::new(),
        redis,
        kek: operator_kek,
    }
}

impl Setup {
    /// Reconciles the tenant, then the clients, twice over (the second pass sees the first
    /// pass's statuses and Secrets, as the watches would deliver them), and lets the token
    /// service pick the result up.
    async fn converge(&mut self, tenant: Option<&Tenant>, clients: &[OAuthClient]) {
        for _ in 0..2 {
            if let Some(t) = tenant {
                self.world.put_tenant(t);
                let _ = reconcile_tenant(Arc::new(t.clone()), self.world.ctx.clone()).await;
            }
            for c in clients {
                self.world.put_client(c);
                let _ = reconcile_client(Arc::new(c.clone()), self.world.ctx.clone()).await;
            }
            self.absorb_created_secrets();
        }
        self.directory.refresh().await.unwrap();
    }

    /// Secrets the operator created (or patched) go into the cache, as the watch would.
    fn absorb_created_secrets(&mut self) {
        let created: Vec<Value> = self
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path.ends_with("/secrets") && s.method == Method::POST)
            .map(|s| s.body.clone())
            .collect();
        for body in created {
            let (namespace, name) = (
                body["metadata"]["namespace"].as_str().unwrap_or_default(),
                body["metadata"]["name"].as_str().unwrap_or_default(),
            );
            let reference = kube::runtime::reflector::ObjectRef::new(name).within(namespace);
            if self.world.ctx.caches.secrets.get(&reference).is_some() {
                continue; // already delivered (and perhaps changed since)
            }
            let mut secret: k8s_openapi::api::core::v1::Secret =
                serde_json::from_value(body).unwrap();
            secret.metadata.resource_version = Some("1".into());
            self.world.put_secret(&secret);
        }
    }

    /// The status last written for the object at `path` (`.../tenants/acme`), as the watch
    /// would deliver it back.
    fn last_status(&self, path: &str) -> Value {
        let log = self.log.lock().unwrap();
        log.iter()
            .rev()
            .find(|s| s.path.ends_with(&format!("{path}/status")))
            .map_or_else(
                || panic!("no status written for {path}"),
                |s| s.body["status"].clone(),
            )
    }

    /// A restarted operator: fresh caches, index and publisher, the same store and
    /// key-encryption key, and the Secrets the cluster still holds.
    async fn restart_operator(&mut self) {
        let created: Vec<Value> = {
            let log = self.log.lock().unwrap();
            log.iter()
                .filter(|s| s.path.ends_with("/secrets") && s.method == Method::POST)
                .map(|s| s.body.clone())
                .collect()
        };
        let store = gatehouse_store::open(&self.redis.url()).await.unwrap();
        self.world = World::with_kek(store, self.kek.clone());
        self.log = std::mem::replace(&mut self.world.api, ApiServer::detached()).autopilot();
        for body in created {
            let mut secret: k8s_openapi::api::core::v1::Secret =
                serde_json::from_value(body).unwrap();
            secret.metadata.resource_version = Some("1".into());
            self.world.put_secret(&secret);
        }
    }

    fn generated_secret(&self, name: &str) -> String {
        let log = self.log.lock().unwrap();
        let body = log
            .iter()
            .find(|s| s.method == Method::POST && s.body["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no Secret {name} was generated"));
        secret_value(&body.body, "client_secret")
    }

    async fn token(&self, client_id: &str, secret: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/acme/oauth2/token", self.base))
            .basic_auth(client_id, Some(secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(form)
                    .finish(),
            )
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// The password grant for alice.
const ALICE_SIGNS_IN: [(&str, &str); 3] = [
    ("grant_type", "password"),
    ("username", "alice"),
    ("password", "wonderland"),
];

fn acme() -> Tenant {
    tenant(json!({
        "grantTypes": ["client_credentials", "password", "refresh_token"],
        "users": {"secretRef": {"name": "acme-users", "namespace": "acme"}}
    }))
}

fn users_secret() -> k8s_openapi::api::core::v1::Secret {
    let hash = gatehouse_core::secret::hash_secret("wonderland").unwrap();
    let users = format!("- username: alice\n  passwordHash: {hash}\n");
    secret("acme", "acme-users", &[("users.yaml", users.as_bytes())])
}

fn deleting<K: Clone + kube::Resource>(object: &K) -> K {
    let mut k = object.clone();
    k.meta_mut().deletion_timestamp = Some(Time("2023-11-14T22:13:20Z".parse().unwrap()));
    k
}

#[tokio::test]
async fn registered_clients_get_tokens_and_deleted_ones_lose_them_with_their_refresh_tokens() {
    let mut s = setup().await;
    s.world.put_secret(&users_secret());
    let billing = oauth_client(
        "billing",
        json!({"tenantRef": "acme", "grantTypes": ["client_credentials"]}),
    );
    let app = oauth_client(
        "app",
        json!({"tenantRef": "acme", "grantTypes": ["password", "refresh_token"], "clientId": "acme-app"}),
    );
    let t = acme();
    s.converge(Some(&t), &[billing.clone(), app.clone()]).await;

    let billing_secret = s.generated_secret("billing-credentials");
    let (status, body) = s
        .token(
            "acme-billing",
            &billing_secret,
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let app_secret = s.generated_secret("app-credentials");
    let (status, body) = s.token("acme-app", &app_secret, &ALICE_SIGNS_IN).await;
    assert_eq!(status, 200, "{body}");
    let refresh = body["refresh_token"].as_str().unwrap().to_string();

    // Deleting the app client: it gets nothing any more.
    let gone = deleting(&app);
    s.converge(None, std::slice::from_ref(&gone)).await;
    let (status, body) = s
        .token(
            "acme-app",
            &app_secret,
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );

    // Re-created under the same client id and Secret: its old refresh tokens stay revoked.
    let mut again = app.clone();
    again.metadata.uid = Some("app-uid-2".into());
    s.world
        .clients
        .apply_watcher_event(&kube::runtime::watcher::Event::Delete(gone));
    s.converge(None, std::slice::from_ref(&again)).await;
    let (status, body) = s
        .token(
            "acme-app",
            &app_secret,
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let (status, _) = s.token("acme-app", &app_secret, &ALICE_SIGNS_IN).await;
    assert_eq!(status, 200, "the new registration itself works");

    // The billing client was never touched.
    let (status, _) = s
        .token(
            "acme-billing",
            &billing_secret,
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn refused_clients_get_no_token_and_restricted_ones_only_what_the_tenant_enables() {
    let mut s = setup().await;
    let t = tenant(json!({"grantTypes": ["client_credentials"], "clientNamespaces": ["acme"]}));
    let mut outsider = oauth_client(
        "outsider",
        json!({"tenantRef": "acme", "grantTypes": ["client_credentials"]}),
    );
    outsider.metadata.namespace = Some("elsewhere".into());
    let orphan = oauth_client(
        "orphan",
        json!({"tenantRef": "nope", "grantTypes": ["client_credentials"]}),
    );
    let greedy = oauth_client(
        "greedy",
        json!({"tenantRef": "acme", "grantTypes": ["client_credentials", "password"]}),
    );
    s.world.put_secret(&secret(
        "elsewhere",
        "outsider-credentials",
        &[("client_secret", b"outsider-secret")],
    ));
    s.world.put_secret(&secret(
        "acme",
        "orphan-credentials",
        &[("client_secret", b"orphan-secret")],
    ));
    s.converge(Some(&t), &[outsider, orphan, greedy]).await;

    let (status, body) = s
        .token(
            "elsewhere-outsider",
            "outsider-secret",
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "namespace not allowed"
    );
    let (status, _) = s
        .token(
            "acme-orphan",
            "orphan-secret",
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(status, 401, "its tenant does not exist");

    let greedy_secret = s.generated_secret("greedy-credentials");
    let (status, _) = s
        .token(
            "acme-greedy",
            &greedy_secret,
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(status, 200, "keeps the grant the tenant enables");
    let (status, body) = s
        .token(
            "acme-greedy",
            &greedy_secret,
            &[
                ("grant_type", "password"),
                ("username", "a"),
                ("password", "b"),
            ],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
}

#[tokio::test]
async fn a_flushed_redis_is_restored_and_a_deleted_tenant_stops_serving() {
    let mut s = setup().await;
    let billing = oauth_client(
        "billing",
        json!({"tenantRef": "acme", "grantTypes": ["client_credentials"]}),
    );
    let t = tenant(json!({"grantTypes": ["client_credentials"]}));
    s.converge(Some(&t), std::slice::from_ref(&billing)).await;
    let secret = s.generated_secret("billing-credentials");
    let (status, body) = s
        .token(
            "acme-billing",
            &secret,
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(status, 200);
    let kid_before = jwt_kid(body["access_token"].as_str().unwrap());

    redis_command(s.redis.port, &["FLUSHALL"]).unwrap();
    s.directory.refresh().await.unwrap();
    let (status, _) = s
        .token(
            "acme-billing",
            &secret,
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(status, 404, "the issuer is gone with the data");

    // What the drift check triggers: every object reconciled again. The keys come back from
    // their Secret, so tokens signed before the flush still verify.
    s.converge(Some(&t), std::slice::from_ref(&billing)).await;
    let (status, body) = s
        .token(
            "acme-billing",
            &secret,
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(jwt_kid(body["access_token"].as_str().unwrap()), kid_before);

    s.converge(Some(&deleting(&t)), &[]).await;
    let discovery = s
        .http
        .get(format!("{}/acme/.well-known/openid-configuration", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(discovery.status(), 404);
    assert!(s.world.store.tenant_versions().await.unwrap().is_empty());
}

fn jwt_kid(token: &str) -> String {
    use base64::Engine;
    let header = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    header["kid"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn secret_changes_and_rotations_take_effect_at_the_token_service() {
    let mut s = setup().await;
    let t = tenant(json!({"grantTypes": ["client_credentials"]}));
    let theirs = oauth_client(
        "vaulted",
        json!({"tenantRef": "acme", "grantTypes": ["client_credentials"],
               "secretRef": {"name": "from-vault", "generate": false}}),
    );
    let ours = oauth_client(
        "billing",
        json!({"tenantRef": "acme", "grantTypes": ["client_credentials"]}),
    );
    s.converge(Some(&t), &[theirs.clone(), ours.clone()]).await;
    let cc = [("grant_type", "client_credentials")];
    let (status, _) = s.token("acme-vaulted", "anything", &cc).await;
    assert_eq!(status, 401, "no Secret yet: not registered");

    // GitOps delivers the Secret, later rotates it.
    s.world.put_secret(&secret(
        "acme",
        "from-vault",
        &[("client_secret", b"first")],
    ));
    s.converge(None, std::slice::from_ref(&theirs)).await;
    assert_eq!(s.token("acme-vaulted", "first", &cc).await.0, 200);
    s.world.put_secret(&secret(
        "acme",
        "from-vault",
        &[("client_secret", b"second")],
    ));
    s.converge(None, std::slice::from_ref(&theirs)).await;
    assert_eq!(s.token("acme-vaulted", "second", &cc).await.0, 200);
    assert_eq!(s.token("acme-vaulted", "first", &cc).await.0, 401);

    // The rotation annotation on a client whose Secret Gatehouse generated.
    let generated = s.generated_secret("billing-credentials");
    assert_eq!(s.token("acme-billing", &generated, &cc).await.0, 200);
    let mut rotate = ours.clone();
    rotate.metadata.annotations =
        Some([("gatehouse.dev/rotate-secret".to_string(), "1".to_string())].into());
    s.converge(None, std::slice::from_ref(&rotate)).await;
    let patched = s
        .log
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|r| r.method == Method::PATCH && r.path.ends_with("/secrets/billing-credentials"))
        .map(|r| r.body.clone())
        .expect("the owned Secret was patched");
    let fresh = patched["stringData"]["client_secret"]
        .as_str()
        .unwrap()
        .to_string();
    let mut rotated = secret(
        "acme",
        "billing-credentials",
        &[("client_secret", fresh.as_bytes())],
    );
    rotated.metadata.labels.get_or_insert_default().insert(
        "app.kubernetes.io/managed-by".to_string(),
        "gatehouse".to_string(),
    );
    rotated.metadata.annotations =
        Some([("gatehouse.dev/rotated-for".to_string(), "1".to_string())].into());
    s.world.put_secret(&rotated);
    s.converge(None, std::slice::from_ref(&rotate)).await;
    assert_eq!(s.token("acme-billing", &fresh, &cc).await.0, 200);
    assert_eq!(s.token("acme-billing", &generated, &cc).await.0, 401);
}

/// A refresh-token rotation for alice at acme-app: the new refresh token and the access
/// token's `kid`, after checking the access token is active and has the last valid TTL.
async fn rotates(s: &Setup, secret: &str, refresh: &str, what: &str) -> (String, String) {
    let (status, body) = s
        .token(
            "acme-app",
            secret,
            &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
        )
        .await;
    assert_eq!(status, 200, "{what}: {body}");
    assert_eq!(body["expires_in"], 900, "{what}: the last valid TTL");
    let access = body["access_token"].as_str().unwrap();
    let response = s
        .http
        .post(format!("{}/acme/oauth2/introspect", s.base))
        .basic_auth("acme-app", Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={access}"))
        .send()
        .await
        .unwrap();
    let introspected: Value = response.json().await.unwrap();
    assert_eq!(introspected["active"], true, "{what}");
    (
        body["refresh_token"].as_str().unwrap().to_string(),
        jwt_kid(access),
    )
}

#[tokio::test]
async fn refused_edits_keep_the_last_valid_version_serving_even_across_a_restart() {
    let mut s = setup().await;
    s.world.put_secret(&users_secret());
    let app = oauth_client(
        "app",
        json!({"tenantRef": "acme", "grantTypes": ["password", "refresh_token"], "clientId": "acme-app"}),
    );
    let good = acme();
    s.converge(Some(&good), std::slice::from_ref(&app)).await;
    let secret = s.generated_secret("app-credentials");
    let (status, body) = s.token("acme-app", &secret, &ALICE_SIGNS_IN).await;
    assert_eq!(status, 200, "{body}");
    let mut refresh = body["refresh_token"].as_str().unwrap().to_string();
    let kid = jwt_kid(body["access_token"].as_str().unwrap());
    let versions = s.world.store.tenant_versions().await.unwrap();

    // Generation 2 sets a zero TTL; the watch delivers it with the status written for 1.
    let mut typo = good.clone();
    typo.metadata.generation = Some(2);
    typo.spec.access_token.ttl = "0s".into();
    typo.status = Some(serde_json::from_value(s.last_status("/tenants/acme")).unwrap());
    let mut app_seen = app.clone();
    app_seen.status = Some(serde_json::from_value(s.last_status("/oauthclients/app")).unwrap());
    s.converge(Some(&typo), std::slice::from_ref(&app_seen))
        .await;
    let status = s.last_status("/tenants/acme");
    assert_eq!(
        condition(&status, "Accepted"),
        ("False".into(), "InvalidSpec".into())
    );
    assert_eq!(
        condition(&status, "Ready"),
        ("True".into(), "ServingLastValid".into())
    );
    let ready = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready["observedGeneration"], 1, "the generation that serves");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains("generation 2 was refused: spec.accessToken.ttl"),
        "{ready}"
    );
    assert_eq!(status["issuer"], format!("{PUBLIC_URL}/acme"));
    assert_eq!(
        condition(&s.last_status("/oauthclients/app"), "Ready"),
        ("True".into(), "ServingLastValid".into())
    );
    assert_eq!(
        s.world.store.tenant_versions().await.unwrap(),
        versions,
        "nothing written"
    );
    let (next, signed_with) = rotates(&s, &secret, &refresh, "tenant refused").await;
    assert_eq!(signed_with, kid);
    refresh = next;

    // The operator restarts while the spec is invalid, knowing nothing of the statuses.
    s.restart_operator().await;
    s.world.put_secret(&users_secret());
    let mut unseen = typo.clone();
    unseen.status = None;
    s.converge(Some(&unseen), std::slice::from_ref(&app)).await;
    assert_eq!(
        condition(&s.last_status("/tenants/acme"), "Ready"),
        ("True".into(), "ServingLastValid".into()),
        "the store still holds the last valid version"
    );
    assert_eq!(
        s.world.store.tenant_versions().await.unwrap(),
        versions,
        "nothing written"
    );
    let (next, signed_with) = rotates(&s, &secret, &refresh, "after a restart").await;
    assert_eq!(signed_with, kid);
    refresh = next;

    // The tenant fixed, the client's redirect URI broken: the client serves on.
    let mut broken = app.clone();
    broken.metadata.generation = Some(3);
    broken.spec.redirect_uris = vec!["not a uri".into()];
    s.converge(Some(&good), std::slice::from_ref(&broken)).await;
    let app_status = s.last_status("/oauthclients/app");
    assert_eq!(
        condition(&app_status, "Accepted"),
        ("False".into(), "InvalidSpec".into())
    );
    assert_eq!(
        condition(&app_status, "Ready"),
        ("True".into(), "ServingLastValid".into())
    );
    let (next, _) = rotates(&s, &secret, &refresh, "client refused").await;
    refresh = next;

    // Both fixed: nothing was lost on the way.
    s.converge(Some(&good), std::slice::from_ref(&app)).await;
    assert_eq!(
        condition(&s.last_status("/oauthclients/app"), "Ready"),
        ("True".into(), "Reconciled".into())
    );
    assert_eq!(
        condition(&s.last_status("/tenants/acme"), "Accepted"),
        ("True".into(), "Accepted".into())
    );
    let (_, signed_with) = rotates(&s, &secret, &refresh, "fixed").await;
    assert_eq!(signed_with, kid);
}
