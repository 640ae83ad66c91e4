//! The tenant trust boundary (DESIGN.md): what an OAuthClient author in an admitted namespace
//! can and cannot obtain, each shown by performing the attack against the real binary.

mod support;

use serde_json::Value;
use support::*;

const ALICE_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$yxZgyeenk6eyB64gIdCApQ$jkr4ytvV4HHADYPN5XK51q7e8fubRml7/6Zo0FGD0WM";

/// Tenant `corp`: users alice, admits namespaces `billing` and `evil`; `billing.write` and the
/// billing API are the billing namespace's alone.
fn corp() -> String {
    format!(
        r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Tenant
metadata: {{name: corp}}
spec:
  grantTypes: [client_credentials, password, refresh_token, authorization_code]
  clientNamespaces: [billing, evil]
  scopes:
    - {{name: billing.read}}
    - {{name: billing.write, namespaces: [billing]}}
  audiences:
    - {{name: https://billing.example.com, namespaces: [billing]}}
    - {{name: https://status.example.com}}
    - {{name: billing-api, namespaces: [billing]}}
  users: {{secretRef: {{name: corp-users, namespace: billing}}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: corp-users, namespace: billing, labels: {{gatehouse.dev/watch: 'true'}}}}
stringData:
  users.yaml: |
    - username: alice
      passwordHash: "{ALICE_HASH}"
      email: alice@corp.example
      name: Alice
"#
    )
}

const CLIENTS: &str = r"
apiVersion: gatehouse.dev/v1alpha1
kind: OAuthClient
metadata: {name: payments, namespace: billing}
spec:
  tenantRef: corp
  clientId: payments
  grantTypes: [client_credentials]
  scopes: [billing.read, billing.write]
  audiences: [https://billing.example.com]
  secretRef: {name: payments-credentials, generate: false}
---
apiVersion: v1
kind: Secret
metadata: {name: payments-credentials, namespace: billing, labels: {gatehouse.dev/watch: 'true'}}
stringData: {client_secret: payments-secret}
---
# F1: a service that names itself like a user.
apiVersion: gatehouse.dev/v1alpha1
kind: OAuthClient
metadata: {name: impostor, namespace: evil}
spec:
  tenantRef: corp
  clientId: alice
  grantTypes: [client_credentials]
  scopes: [openid, profile, email, billing.read]
  audiences: [https://status.example.com]
  secretRef: {name: impostor-credentials, generate: false}
---
apiVersion: v1
kind: Secret
metadata: {name: impostor-credentials, namespace: evil, labels: {gatehouse.dev/watch: 'true'}}
stringData: {client_secret: impostor-secret}
---
# F6: another namespace giving itself billing's scope and API.
apiVersion: gatehouse.dev/v1alpha1
kind: OAuthClient
metadata: {name: greedy, namespace: evil}
spec:
  tenantRef: corp
  clientId: greedy
  grantTypes: [client_credentials]
  scopes: [billing.read, billing.write, admin]
  audiences: [https://billing.example.com, https://status.example.com, https://undeclared.example.com]
  secretRef: {name: greedy-credentials, generate: false}
---
apiVersion: v1
kind: Secret
metadata: {name: greedy-credentials, namespace: evil, labels: {gatehouse.dev/watch: 'true'}}
stringData: {client_secret: greedy-secret}
---
# F5: a public client: its client id is all it proves.
apiVersion: gatehouse.dev/v1alpha1
kind: OAuthClient
metadata: {name: spa, namespace: evil}
spec:
  tenantRef: corp
  clientId: spa
  public: true
  grantTypes: [authorization_code]
  redirectUris: [http://127.0.0.1:9999/cb]
---
# F6: a client id that is the billing API's audience, with no audiences of its own.
apiVersion: gatehouse.dev/v1alpha1
kind: OAuthClient
metadata: {name: lookalike, namespace: evil}
spec:
  tenantRef: corp
  clientId: billing-api
  grantTypes: [client_credentials]
  secretRef: {name: greedy-credentials, generate: false}
";

fn start() -> (RedisServer, Gatehouse) {
    let redis = RedisServer::start();
    let corp = corp();
    let g = Gatehouse::start(
        &redis.url(),
        &[("corp.yaml", &corp), ("clients.yaml", CLIENTS)],
    );
    (redis, g)
}

async fn userinfo(g: &Gatehouse, token: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .get(g.endpoint("corp", "userinfo_endpoint").await)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let challenge = r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, challenge)
}

#[tokio::test]
async fn f1_a_client_named_like_a_user_never_speaks_for_that_user() {
    let (_redis, g) = start();
    let r = client_credentials(
        &g,
        "corp",
        "alice",
        "impostor-secret",
        &[("scope", "openid email")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let token = r.body["access_token"].as_str().unwrap();
    let claims = jwt_payload(token);
    assert_eq!(
        claims["sub"], "client:alice",
        "a client's subject is reserved"
    );
    assert_eq!(claims["client_id"], "alice");
    let (status, challenge) = userinfo(&g, token).await;
    assert_eq!(status, 401);
    assert!(challenge.contains("not issued for a user"), "{challenge}");

    // The real alice's token is about alice, and her userinfo is hers.
    let r = post_form(
        &g.endpoint("corp", "token_endpoint").await,
        Some(&basic("payments", "payments-secret")),
        &form(&[("grant_type", "password")]),
    )
    .await;
    assert_eq!(
        r.error(),
        "unauthorized_client",
        "payments may not use password"
    );

    // A users Secret cannot later introduce a user whose subject is a client's.
    g.write_manifest(
        "corp.yaml",
        &corp().replace(
            "      name: Alice\n",
            &format!("      name: Alice\n    - username: \"client:payments\"\n      passwordHash: \"{ALICE_HASH}\"\n"),
        ),
    );
    eventually(
        20,
        "the users Secret with a reserved username is refused",
        || {
            let out = g.stdout();
            async move { out.contains("must not contain ':'") }
        },
    )
    .await;
}

fn token_claims(r: &Reply) -> Value {
    assert_eq!(r.status, 200, "{}", r.body);
    jwt_payload(r.body["access_token"].as_str().unwrap())
}

#[tokio::test]
async fn f6_a_namespace_holds_only_the_scopes_and_audiences_its_tenant_grants_it() {
    let (_redis, g) = start();
    let out = g.stdout();
    assert!(
        has_problem(
            &out,
            "OAuthClient evil/greedy",
            "ScopeNotAllowed: tenant corp does not define scope admin (spec.scopes); tenant corp does not grant scope billing.write to namespace evil (spec.scopes[].namespaces); tenant corp does not declare audience https://billing.example.com, https://undeclared.example.com for namespace evil (spec.audiences)"
        ),
        "{out}"
    );
    assert!(
        has_problem(
            &out,
            "OAuthClient evil/lookalike",
            "AudienceNotAllowed: client id billing-api names an audience"
        ),
        "{out}"
    );

    // What greedy may hold, it gets; what it gave itself, it does not.
    let all = client_credentials(&g, "corp", "greedy", "greedy-secret", &[]).await;
    let claims = token_claims(&all);
    assert_eq!(claims["scope"], "billing.read");
    assert_eq!(claims["aud"], "https://status.example.com");
    let r = client_credentials(
        &g,
        "corp",
        "greedy",
        "greedy-secret",
        &[("scope", "billing.write")],
    )
    .await;
    assert_eq!(r.error(), "invalid_scope", "{}", r.body);
    let r = client_credentials(
        &g,
        "corp",
        "greedy",
        "greedy-secret",
        &[("resource", "https://billing.example.com")],
    )
    .await;
    assert_eq!(r.error(), "invalid_target", "{}", r.body);
    let r = client_credentials(&g, "corp", "billing-api", "greedy-secret", &[]).await;
    assert_eq!(
        r.error(),
        "invalid_client",
        "the look-alike gets no token: {}",
        r.body
    );

    // The billing namespace keeps what the tenant grants it.
    let r = client_credentials(
        &g,
        "corp",
        "payments",
        "payments-secret",
        &[("scope", "billing.write")],
    )
    .await;
    let claims = token_claims(&r);
    assert_eq!(claims["aud"], "https://billing.example.com");
    assert_eq!(claims["scope"], "billing.write");
}

#[tokio::test]
async fn f5_a_public_client_cannot_introspect_and_metadata_says_who_can() {
    let (_redis, g) = start();
    let r = client_credentials(&g, "corp", "payments", "payments-secret", &[]).await;
    let token = r.body["access_token"].as_str().unwrap().to_string();
    let introspection = g.endpoint("corp", "introspection_endpoint").await;
    let r = post_form(
        &introspection,
        None,
        &form(&[("client_id", "spa"), ("token", &token)]),
    )
    .await;
    assert_eq!((r.status, r.error()), (401, "invalid_client"), "{}", r.body);
    let r = post_form(
        &introspection,
        Some(&basic("payments", "payments-secret")),
        &form(&[("token", &token)]),
    )
    .await;
    assert_eq!(r.body["active"], true, "{}", r.body);
    // A public client may still revoke (its own tokens, RFC 7009).
    let r = post_form(
        &g.endpoint("corp", "revocation_endpoint").await,
        None,
        &form(&[("client_id", "spa"), ("token", "unknown")]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);

    let meta = g.metadata("corp").await;
    assert_eq!(
        meta["introspection_endpoint_auth_methods_supported"],
        serde_json::json!([
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt"
        ])
    );
    assert_eq!(
        meta["revocation_endpoint_auth_methods_supported"],
        serde_json::json!([
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
            "none"
        ])
    );
}
