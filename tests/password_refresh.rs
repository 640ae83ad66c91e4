//! The password grant (RFC 6749 4.3) against a tenant's users Secret, with brute-force
//! protection, and refresh tokens (RFC 6749 6) with rotation and reuse detection.

mod support;

use serde_json::Value;
use support::*;

const INITECH: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Tenant
metadata: {name: initech}
spec:
  grantTypes: [password, refresh_token, client_credentials]
  scopes: [{name: reports}, {name: tps}]
  users: {secretRef: {name: initech-users, namespace: initech}}
---
apiVersion: v1
kind: Secret
metadata: {name: initech-users, namespace: initech, labels: {gatehouse.dev/watch: 'true'}}
stringData:
  users.yaml: |
    - username: alice
      passwordHash: "$argon2id$v=19$m=19456,t=2,p=1$yxZgyeenk6eyB64gIdCApQ$jkr4ytvV4HHADYPN5XK51q7e8fubRml7/6Zo0FGD0WM"
      email: alice@example.com
      name: Alice Liddell
    - username: bob
      passwordHash: "$argon2id$v=19$m=19456,t=2,p=1$qBYlMG/yWV7IzFLwzp94qA$lWAKoI9uUensynKlTcUNMZDxF2uBlpsj7K06zcNihXk"
---
apiVersion: gatehouse.dev/v1alpha1
kind: OAuthClient
metadata: {name: app, namespace: initech}
spec:
  tenantRef: initech
  grantTypes: [password, refresh_token]
  scopes: [openid, offline_access, reports, tps]
  secretRef: {name: app-credentials, generate: false}
---
apiVersion: v1
kind: Secret
metadata: {name: app-credentials, namespace: initech, labels: {gatehouse.dev/watch: 'true'}}
stringData: {client_secret: app-secret}
---
apiVersion: gatehouse.dev/v1alpha1
kind: OAuthClient
metadata: {name: kiosk, namespace: initech}
spec:
  tenantRef: initech
  grantTypes: [password, refresh_token]
  scopes: [reports]
  secretRef: {name: kiosk-credentials, generate: false}
---
apiVersion: v1
kind: Secret
metadata: {name: kiosk-credentials, namespace: initech, labels: {gatehouse.dev/watch: 'true'}}
stringData: {client_secret: kiosk-secret}
---
apiVersion: gatehouse.dev/v1alpha1
kind: OAuthClient
metadata: {name: norefresh, namespace: initech}
spec:
  tenantRef: initech
  grantTypes: [password]
  scopes: [reports]
  secretRef: {name: kiosk-credentials, generate: false}
"#;

const APP: (&str, &str) = ("initech-app", "app-secret");
const KIOSK: (&str, &str) = ("initech-kiosk", "kiosk-secret");

async fn token(g: &Gatehouse, (id, secret): (&str, &str), pairs: &[(&str, &str)]) -> Reply {
    let url = format!("{}/initech/oauth2/token", g.base);
    post_form(&url, Some(&basic(id, secret)), &form(pairs)).await
}

async fn password(
    g: &Gatehouse,
    client: (&str, &str),
    user: &str,
    pass: &str,
    scope: &str,
) -> Reply {
    token(
        g,
        client,
        &[
            ("grant_type", "password"),
            ("username", user),
            ("password", pass),
            ("scope", scope),
        ],
    )
    .await
}

async fn refresh(g: &Gatehouse, client: (&str, &str), rt: &str, scope: Option<&str>) -> Reply {
    let mut pairs = vec![("grant_type", "refresh_token"), ("refresh_token", rt)];
    if let Some(s) = scope {
        pairs.push(("scope", s));
    }
    token(g, client, &pairs).await
}

async fn active(g: &Gatehouse, token: &str) -> bool {
    let url = format!("{}/initech/oauth2/introspect", g.base);
    let r = post_form(&url, Some(&basic(APP.0, APP.1)), &form(&[("token", token)])).await;
    assert_eq!(r.status, 200);
    r.body["active"] == Value::Bool(true)
}

fn start(redis: &RedisServer) -> Gatehouse {
    Gatehouse::start(&redis.url(), &[("initech.yaml", INITECH)])
}

#[tokio::test]
async fn password_grant_issues_tokens_for_the_user_and_refuses_wrong_credentials_alike() {
    let redis = RedisServer::start();
    let g = start(&redis);
    let meta = g.metadata("initech").await;
    assert_eq!(
        meta["grant_types_supported"],
        serde_json::json!(["password", "refresh_token", "client_credentials"])
    );

    let r = password(&g, APP, "alice", "wonderland", "reports").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let claims = jwt_payload(r.body["access_token"].as_str().unwrap());
    assert_eq!(
        (
            claims["sub"].as_str(),
            claims["client_id"].as_str(),
            claims["scope"].as_str()
        ),
        (Some("alice"), Some("initech-app"), Some("reports"))
    );
    assert!(
        r.body["refresh_token"]
            .as_str()
            .is_some_and(|t| t.len() >= 43)
    );

    let wrong = password(&g, APP, "alice", "looking-glass", "reports").await;
    let unknown = password(&g, APP, "mallory", "looking-glass", "reports").await;
    assert_eq!((wrong.status, wrong.error()), (400, "invalid_grant"));
    assert_eq!(
        wrong.body, unknown.body,
        "an unknown user is indistinguishable from a wrong password"
    );

    let r = token(
        &g,
        APP,
        &[("grant_type", "password"), ("username", "alice")],
    )
    .await;
    assert_eq!(
        (r.status, r.error()),
        (400, "invalid_request"),
        "missing password"
    );
    let r = password(
        &g,
        ("initech-norefresh", "kiosk-secret"),
        "bob",
        "builder",
        "reports",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.get("refresh_token").is_none(),
        "no refresh token for a client without the grant"
    );
    let r = password(&g, APP, "alice", "wonderland", "tps admin").await;
    assert_eq!((r.status, r.error()), (400, "invalid_scope"));
    assert!(!g.stderr().contains("looking-glass") && !g.stderr().contains("wonderland"));
}

/// `gatehouse sign-out-user`: alice's refresh tokens and access tokens from before stop
/// working (introspection says inactive), bob's do not, and a sign-in after it works.
#[tokio::test]
async fn an_operator_signs_a_user_out_everywhere() {
    let redis = RedisServer::start();
    let g = start(&redis);
    let grant = |user: &'static str, secret: &'static str| {
        let g = &g;
        async move {
            let r = password(g, APP, user, secret, "reports").await;
            assert_eq!(r.status, 200, "{}", r.body);
            (
                r.body["access_token"].as_str().unwrap().to_string(),
                r.body["refresh_token"].as_str().unwrap().to_string(),
            )
        }
    };
    let (alice_access, alice_refresh) = grant("alice", "wonderland").await;
    let (_, alice_refresh2) = grant("alice", "wonderland").await;
    let (bob_access, bob_refresh) = grant("bob", "builder").await;
    assert!(active(&g, &alice_access).await);

    let sign_out = |tenant: &str, user: &str| {
        std::process::Command::new(binary())
            .args([
                "sign-out-user",
                "--store",
                &redis.url(),
                "--tenant",
                tenant,
                "--username",
                user,
            ])
            .output()
            .unwrap()
    };
    let out = sign_out("initech", "alice");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "alice of tenant initech is signed out everywhere: sessions, refresh tokens and codes from before now are refused\n"
    );
    for rt in [&alice_refresh, &alice_refresh2] {
        let r = token(
            &g,
            APP,
            &[("grant_type", "refresh_token"), ("refresh_token", rt)],
        )
        .await;
        assert_eq!((r.status, r.error()), (400, "invalid_grant"), "{}", r.body);
    }
    assert!(
        !active(&g, &alice_access).await,
        "her access token is inactive"
    );
    assert!(active(&g, &bob_access).await, "bob's is not");
    let r = token(
        &g,
        APP,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &bob_refresh),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Sign-ins are counted in seconds: one in a later second than the sign-out is new.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (fresh_access, fresh_refresh) = grant("alice", "wonderland").await;
    assert!(active(&g, &fresh_access).await);
    let r = token(
        &g,
        APP,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &fresh_refresh),
        ],
    )
    .await;
    assert_eq!(
        r.status, 200,
        "a grant after the sign-out works: {}",
        r.body
    );
    // A mistyped tenant is an error; an unknown name is signed out with a note.
    let out = sign_out("initek", "alice");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no tenant initek"));
    let out = sign_out("initech", "alicee");
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("alicee is not a user of tenant initech")
    );
    // A store that lives in one process cannot be reached from another.
    let out = std::process::Command::new(binary())
        .args([
            "sign-out-user",
            "--store",
            "memory://",
            "--tenant",
            "t",
            "--username",
            "u",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("memory://"));
}

#[tokio::test]
async fn repeated_failures_lock_the_user_then_the_address() {
    let redis = RedisServer::start();
    let g = start(&redis);
    for _ in 0..5 {
        assert_eq!(
            password(&g, APP, "alice", "guess", "reports").await.error(),
            "invalid_grant"
        );
    }
    let r = password(&g, APP, "alice", "wonderland", "reports").await;
    assert_eq!(
        (r.status, r.error()),
        (400, "invalid_grant"),
        "locked even with the right password"
    );
    assert!(
        r.body["error_description"]
            .as_str()
            .unwrap()
            .contains("too many failed sign-in attempts")
    );
    // The lockout lives in the store, where every replica reads it.
    let count =
        gatehouse_testkit::redis_command(redis.port, &["GET", "{t:initech}:fail:user:616c696365"])
            .unwrap();
    assert_eq!(count, "5");
    // An operator unlocks alice: she signs in again from the same address.
    let out = std::process::Command::new(binary())
        .args([
            "unlock-user",
            "--store",
            &redis.url(),
            "--tenant",
            "initech",
            "--username",
            "alice",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "alice of tenant initech may sign in again\n"
    );
    let r = password(&g, APP, "alice", "wonderland", "reports").await;
    assert_eq!(r.status, 200, "unlocked: {}", r.body);
    // Another user is not affected until the address as a whole has failed too often.
    assert_eq!(
        password(&g, APP, "bob", "builder", "reports").await.status,
        200
    );
    for i in 0..14 {
        password(&g, APP, &format!("nobody{i}"), "guess", "reports").await;
    }
    let r = password(&g, APP, "bob", "builder", "reports").await;
    assert!(
        r.body["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains("too many"),
        "address locked: {}",
        r.body
    );
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_revokes_the_whole_family() {
    let redis = RedisServer::start();
    let g = start(&redis);
    let first = password(&g, APP, "alice", "wonderland", "reports tps").await;
    let (at1, rt1) = (
        first.body["access_token"].as_str().unwrap().to_string(),
        first.body["refresh_token"].as_str().unwrap().to_string(),
    );

    let second = refresh(&g, APP, &rt1, Some("reports")).await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(second.body["scope"], "reports", "scope narrowed");
    let (at2, rt2) = (
        second.body["access_token"].as_str().unwrap().to_string(),
        second.body["refresh_token"].as_str().unwrap().to_string(),
    );
    assert_ne!(rt1, rt2, "rotated");
    assert_eq!(jwt_payload(&at2)["sub"], "alice");
    let r = refresh(&g, APP, &rt2, Some("reports tps")).await;
    assert_eq!(
        (r.status, r.error()),
        (400, "invalid_scope"),
        "narrowed scope cannot widen again"
    );
    assert!(active(&g, &at1).await && active(&g, &at2).await);
    let third = refresh(&g, APP, &rt2, None).await;
    assert_eq!(third.status, 200, "{}", third.body);
    let rt3 = third.body["refresh_token"].as_str().unwrap().to_string();
    let at3 = third.body["access_token"].as_str().unwrap().to_string();
    // Every access token of the grant names it, and only it.
    let family = jwt_payload(&at1)["fam"].clone();
    assert!(family.is_string(), "{}", jwt_payload(&at1));
    assert_eq!(jwt_payload(&at3)["fam"], family);
    let other = password(&g, APP, "alice", "wonderland", "reports").await;
    let other_at = other.body["access_token"].as_str().unwrap();
    assert_ne!(jwt_payload(other_at)["fam"], family, "a grant of its own");

    // Presenting rt1 again (its successor was used, so this is no retry of a lost answer):
    // reuse. Everything of the grant is revoked: through the family its tokens name, with no
    // list of them kept, and nothing of another grant.
    let r = refresh(&g, APP, &rt1, None).await;
    assert_eq!((r.status, r.error()), (400, "invalid_grant"));
    assert!(
        !active(&g, &at1).await && !active(&g, &at2).await && !active(&g, &at3).await,
        "the family's access tokens are revoked"
    );
    assert!(active(&g, other_at).await, "another grant's token lives on");
    let fam_key = format!("{{t:initech}}:fam:{}", family.as_str().unwrap());
    let redis_says = |args: &[&str]| gatehouse_testkit::redis_command(redis.port, args).unwrap();
    assert_eq!(redis_says(&["KEYS", "*:rv:*"]), "*0", "no mark per token");
    assert_eq!(redis_says(&["HGET", &fam_key, "r"]), "1");
    assert_eq!(redis_says(&["OBJECT", "ENCODING", &fam_key]), "listpack");
    let r = refresh(&g, APP, &rt3, None).await;
    assert_eq!(
        (r.status, r.error()),
        (400, "invalid_grant"),
        "the newest token is dead too"
    );
    let r = refresh(&g, APP, "never-issued", None).await;
    assert_eq!((r.status, r.error()), (400, "invalid_grant"));
}

#[tokio::test]
async fn refresh_tokens_belong_to_their_client_and_can_be_revoked() {
    let redis = RedisServer::start();
    let g = start(&redis);
    let r = password(&g, APP, "alice", "wonderland", "reports").await;
    let (at, rt) = (
        r.body["access_token"].as_str().unwrap().to_string(),
        r.body["refresh_token"].as_str().unwrap().to_string(),
    );
    let r = refresh(&g, KIOSK, &rt, None).await;
    assert_eq!(
        (r.status, r.error()),
        (400, "invalid_grant"),
        "another client's refresh token"
    );
    let r = refresh(&g, APP, &rt, None).await;
    assert_eq!(
        r.status, 200,
        "the theft attempt did not spend the owner's token: {}",
        r.body
    );
    let rt = r.body["refresh_token"].as_str().unwrap().to_string();

    let url = format!("{}/initech/oauth2/revoke", g.base);
    let r = post_form(
        &url,
        Some(&basic(KIOSK.0, KIOSK.1)),
        &form(&[("token", &rt), ("token_type_hint", "refresh_token")]),
    )
    .await;
    assert_eq!((r.status, r.error()), (400, "unauthorized_client"));
    let r = post_form(
        &url,
        Some(&basic(APP.0, APP.1)),
        &form(&[("token", &rt), ("token_type_hint", "refresh_token")]),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(refresh(&g, APP, &rt, None).await.error(), "invalid_grant");
    assert!(
        !active(&g, &at).await,
        "revoking the refresh token revoked its grant's access tokens"
    );
}

#[tokio::test]
async fn openid_requests_get_a_refresh_token_only_with_offline_access() {
    let redis = RedisServer::start();
    let g = start(&redis);
    let r = password(&g, APP, "alice", "wonderland", "openid reports").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.get("refresh_token").is_none());
    let r = password(
        &g,
        APP,
        "alice",
        "wonderland",
        "openid offline_access reports",
    )
    .await;
    assert!(r.body["refresh_token"].is_string());
}

/// A password-grant attempt for `user` from the test's own address (127.0.0.1), claiming in
/// `X-Forwarded-For` to relay `from` (after an entry the client wrote itself); the JSON answer.
async fn attempt_via(g: &Gatehouse, from: &str, user: &str, pass: &str) -> Value {
    let body = form(&[
        ("grant_type", "password"),
        ("username", user),
        ("password", pass),
        ("scope", "reports"),
    ]);
    reqwest::Client::new()
        .post(format!("{}/initech/oauth2/token", g.base))
        .header("authorization", basic(APP.0, APP.1))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-forwarded-for", format!("198.51.100.7, {from}"))
        .body(body)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()
}

fn too_many(answer: &Value) -> bool {
    answer["error_description"]
        .as_str()
        .unwrap_or_default()
        .contains("too many")
}

fn start_with_trusted_proxies(redis: &RedisServer, proxies: &str) -> Gatehouse {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("initech.yaml"), INITECH).unwrap();
    Gatehouse::start_with_env(&redis.url(), dir, &[("GATEHOUSE_TRUSTED_PROXIES", proxies)])
}

#[tokio::test]
async fn behind_a_trusted_proxy_addresses_come_from_x_forwarded_for() {
    let redis = RedisServer::start();
    // The test connects from 127.0.0.1: it is the proxy here.
    let g = start_with_trusted_proxies(&redis, "10.0.0.0/8,127.0.0.1/32");
    for i in 0..20 {
        attempt_via(&g, "203.0.113.9", &format!("nobody{i}"), "guess").await;
    }
    let locked = attempt_via(&g, "203.0.113.9", "bob", "builder").await;
    assert!(too_many(&locked), "{locked}");
    let other = attempt_via(&g, "203.0.113.10", "bob", "builder").await;
    assert!(
        other["access_token"].is_string(),
        "another client behind the same proxy is not locked: {other}"
    );
    // A chain: the client's entry, then a second trusted proxy (10.1.1.1) that relayed it.
    let chained = attempt_via(&g, "203.0.113.9, 10.1.1.1", "bob", "builder").await;
    assert!(
        too_many(&chained),
        "trusted hops are walked past to the client: {chained}"
    );
}

#[tokio::test]
async fn a_caller_that_is_not_a_trusted_proxy_cannot_pick_its_address() {
    let redis = RedisServer::start();
    // Only 10.0.0.0/8 is trusted; the test connects from 127.0.0.1, as an in-cluster caller
    // would from outside the ingress controller's range.
    let g = start_with_trusted_proxies(&redis, "10.0.0.0/8");
    for i in 0..20 {
        let fresh = format!("203.0.113.{}", i + 1);
        attempt_via(&g, &fresh, &format!("nobody{i}"), "guess").await;
    }
    let locked = attempt_via(&g, "203.0.113.200", "bob", "builder").await;
    assert!(
        too_many(&locked),
        "a new X-Forwarded-For each time must not escape the per-address limit: {locked}"
    );
}

/// The `kid` of a JWT's header.
fn kid(token: &str) -> String {
    use base64::Engine;
    let header = token.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    serde_json::from_slice::<Value>(&bytes).unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn published_kids(g: &Gatehouse) -> Vec<String> {
    let jwks: Value = reqwest::get(g.endpoint("initech", "jwks_uri").await)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

/// Rotates `rt` and checks that everything the last valid version issued still works: the
/// new access token is signed with a published key, has the old TTL, and is active.
async fn still_serving(g: &Gatehouse, rt: &str, kids: &[String], what: &str) -> String {
    let r = refresh(g, APP, rt, None).await;
    assert_eq!(r.status, 200, "{what}: {}", r.body);
    let at = r.body["access_token"].as_str().unwrap();
    assert!(
        kids.contains(&kid(at)),
        "{what}: signed with a published key"
    );
    assert_eq!(
        r.body["expires_in"], 900,
        "{what}: the last valid TTL (the default)"
    );
    assert!(active(g, at).await, "{what}");
    assert_eq!(published_kids(g).await, kids, "{what}: the same keys");
    r.body["refresh_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn invalid_edits_keep_the_last_valid_version_serving_and_the_fix_simply_takes_effect() {
    let redis = RedisServer::start();
    let mut g = start(&redis);
    let first = password(&g, APP, "alice", "wonderland", "reports").await;
    assert_eq!(first.status, 200, "{}", first.body);
    let first_access = first.body["access_token"].as_str().unwrap().to_string();
    let kids = published_kids(&g).await;
    let mut rt = first.body["refresh_token"].as_str().unwrap().to_string();

    // Values that parse but fail validation: a zero TTL, then a TTL in words.
    for (ttl, why) in [("0s", "must be longer than zero"), ("15 mins", "15 mins")] {
        let edited = INITECH.replace(
            "  grantTypes: [password, refresh_token, client_credentials]",
            &format!("  grantTypes: [password, refresh_token, client_credentials]\n  accessToken: {{ttl: {ttl}}}"),
        );
        g.write_manifest("initech.yaml", &edited);
        eventually(10, "the refusal is reported", || async {
            g.stdout().lines().any(|l| {
                l.starts_with("Tenant initech (initech.yaml, document 1): InvalidSpec: the last valid version keeps serving; the current spec was refused")
                    && l.contains("spec.accessToken.ttl")
                    && l.contains(why)
            })
        })
        .await;
        assert!(active(&g, &first_access).await);
        rt = still_serving(&g, &rt, &kids, ttl).await;
    }
    let table = g.stdout();
    assert!(
        table.lines().any(|l| l.starts_with("initech ")
            && l.split_whitespace().skip(3).collect::<Vec<_>>()
                == ["False", "True", "InvalidSpec"]),
        "ACCEPTED False, READY True:\n{table}"
    );

    // Restarted while the spec is invalid: what the store holds keeps serving.
    let manifests = std::mem::replace(&mut g.manifests, tempfile::tempdir().unwrap());
    drop(g);
    let g = Gatehouse::start_in(&redis.url(), manifests);
    // (On another port, so another issuer: access tokens from before carry the old `iss`.)
    rt = still_serving(&g, &rt, &kids, "after a restart").await;

    // The tenant fixed, the client broken: the client's last valid registration serves on.
    let broken_client = INITECH.replace(
        "  scopes: [openid, offline_access, reports, tps]",
        "  scopes: [openid, offline_access, reports, tps]\n  redirectUris: [not-a-uri]",
    );
    g.write_manifest("initech.yaml", &broken_client);
    eventually(10, "the client's refusal is reported", || async {
        g.stdout().lines().any(|l| {
            l.starts_with("OAuthClient initech/app (initech.yaml, document 3): InvalidSpec:")
                && l.contains("keeps serving")
                && l.contains("spec.redirectUris")
        })
    })
    .await;
    rt = still_serving(&g, &rt, &kids, "client refused").await;

    // Fixed: nothing was lost on the way.
    g.write_manifest("initech.yaml", INITECH);
    let fixed = g.stdout().len();
    eventually(10, "the fix is picked up", || async {
        let out = g.stdout();
        out.len() > fixed && !out[fixed..].contains("InvalidSpec")
    })
    .await;
    still_serving(&g, &rt, &kids, "fixed").await;
}

/// Rotates one refresh chain until `stop`: a 503 (Redis away) retries the same token, as a
/// client does; any other refusal loses the chain. Returns the chain's last token, or why it
/// was lost, and how many rotations and 503s it saw.
async fn rotate_until(
    g: &Gatehouse,
    mut rt: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (Result<String, String>, u32, u32) {
    let (mut rotations, mut unavailable) = (0, 0);
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let r = refresh(g, APP, &rt, None).await;
        match r.status {
            200 => {
                rt = r.body["refresh_token"].as_str().unwrap().to_string();
                rotations += 1;
            }
            503 => {
                unavailable += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            _ => {
                return (
                    Err(format!("{} {}", r.status, r.body)),
                    rotations,
                    unavailable,
                );
            }
        }
    }
    (Ok(rt), rotations, unavailable)
}

/// A rotating chain: its last token or why it was lost, its rotations and its 503s.
type Chain = tokio::task::JoinHandle<(Result<String, String>, u32, u32)>;

/// Six of alice's grants, each rotating its refresh token in a task until `stop`.
async fn start_chains(
    g: &std::sync::Arc<Gatehouse>,
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<Chain> {
    let mut chains = Vec::new();
    for _ in 0..6 {
        let r = password(g, APP, "alice", "wonderland", "reports offline_access").await;
        assert_eq!(r.status, 200, "{}", r.body);
        let rt = r.body["refresh_token"].as_str().unwrap().to_string();
        let (g, stop) = (g.clone(), stop.clone());
        chains.push(tokio::spawn(
            async move { rotate_until(&g, rt, stop).await },
        ));
    }
    chains
}

/// Waits for the chains (stopped): each one still standing must rotate once more, its new
/// access token live. Returns why the others were lost, and the rotations and 503s seen.
async fn settle_chains(g: &Gatehouse, chains: Vec<Chain>) -> (Vec<String>, u32, u32) {
    let (mut lost, mut rotations, mut unavailable) = (Vec::new(), 0, 0);
    for chain in chains {
        let (outcome, r, u) = chain.await.unwrap();
        rotations += r;
        unavailable += u;
        match outcome {
            Ok(rt) => {
                let r = refresh(g, APP, &rt, None).await;
                assert_eq!(r.status, 200, "{}", r.body);
                assert!(active(g, r.body["access_token"].as_str().unwrap()).await);
            }
            Err(why) => lost.push(why),
        }
    }
    (lost, rotations, unavailable)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_loses_no_rotating_chain() {
    let data = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start_persistent(data.path(), None);
    let port = redis.port;
    let g = std::sync::Arc::new(start(&redis));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let chains = start_chains(&g, &stop).await;
    // Short outages (a request waits them out and answers after all) and one longer than a
    // request waits (answered 503; the server records what it learns once Redis is back).
    for (round, down_ms) in [(0, 300), (1, 300), (2, 3_000)] {
        tokio::time::sleep(std::time::Duration::from_millis(700 + 150 * round)).await;
        redis.kill();
        tokio::time::sleep(std::time::Duration::from_millis(down_ms)).await;
        redis = RedisServer::start_persistent(data.path(), Some(port));
    }
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (lost, rotations, unavailable) = settle_chains(&g, chains).await;
    assert!(unavailable > 0, "the kills were noticed");
    assert!(rotations > 60, "the chains rotated under load: {rotations}");
    assert!(
        lost.is_empty(),
        "lost {} of 6 chains over {rotations} rotations and {unavailable} 503s: {lost:?}",
        lost.len()
    );
}

/// Redis behind Sentinel: the primary is killed under load, the Sentinels promote its
/// replica, and the server follows without a restart. Meanwhile requests get 503 (nothing else),
/// and afterwards every chain goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_under_load_loses_no_rotating_chain() {
    let mut set = gatehouse_testkit::SentinelSet::start(3);
    let g = std::sync::Arc::new(Gatehouse::start(&set.url(), &[("initech.yaml", INITECH)]));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let chains = start_chains(&g, &stop).await;
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let old = set.kill_primary();
    let new = tokio::task::spawn_blocking(move || {
        let new = set.wait_for_failover(old, std::time::Duration::from_secs(30));
        (set, new)
    })
    .await
    .unwrap();
    let (_set, new) = new;
    assert_ne!(new, old);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (lost, rotations, unavailable) = settle_chains(&g, chains).await;
    assert!(rotations > 60, "the chains rotated under load: {rotations}");
    assert!(
        lost.is_empty(),
        "lost {} of 6 chains over {rotations} rotations and {unavailable} 503s: {lost:?}",
        lost.len()
    );
    // The server met the failover and looked for the new primary. Requests meanwhile waited
    // for the store up to their limit, then answered 503 (or their tokens, if their write had
    // reached the replica): `rotate_until` took nothing else.
    assert!(
        g.stderr().contains("asking the Sentinels"),
        "the server says it looked for the new primary"
    );
    // A new grant after the failover is written to the new primary.
    let r = password(&g, APP, "alice", "wonderland", "reports offline_access").await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Sentinels and a primary that each require a password: the primary's comes from
/// `GATEHOUSE_STORE_PASSWORD`, the Sentinels' from `GATEHOUSE_STORE_SENTINEL_PASSWORD`; without
/// the latter the start fails and says why.
#[tokio::test]
async fn sentinels_and_primary_with_passwords_of_their_own() {
    let set = gatehouse_testkit::SentinelSet::start_with_passwords(
        1,
        Some("primary-secret"),
        Some("sentinel-secret"),
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("initech.yaml"), INITECH).unwrap();
    let manifests = dir.path().to_str().unwrap();
    let mut refused = spawn(
        dir.path(),
        "no-sentinel-password",
        &[
            "standalone",
            "--manifests",
            manifests,
            "--store",
            &set.url(),
        ],
        &[("GATEHOUSE_STORE_PASSWORD", "primary-secret")],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = refused.try_wait() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "{}", refused.log());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(!status.success());
    let log = refused.log();
    assert!(
        log.contains("gatehouse-primary") && log.contains("NOAUTH"),
        "names the primary and the refusal: {log}"
    );
    assert!(!log.contains("secret"), "no password in the log: {log}");
    assert!(
        log.contains("GATEHOUSE_STORE_SENTINEL_PASSWORD"),
        "says where a password goes: {log}"
    );

    let g = Gatehouse::start_with_env(
        &set.url(),
        dir,
        &[
            ("GATEHOUSE_STORE_PASSWORD", "primary-secret"),
            ("GATEHOUSE_STORE_SENTINEL_PASSWORD", "sentinel-secret"),
        ],
    );
    let r = password(&g, APP, "alice", "wonderland", "reports offline_access").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let rt = r.body["refresh_token"].as_str().unwrap();
    assert_eq!(refresh(&g, APP, rt, None).await.status, 200);
}
