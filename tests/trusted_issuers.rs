//! Trusted issuers (`Tenant.spec.trustedIssuers`) through the real binary: a CI system's
//! signed token, served keys and all by a real HTTPS issuer with its own CA, authenticates the
//! client the Tenant maps its subject to, and nothing else; the issuer's key rotation reaches
//! the token service without a restart; an unreachable issuer's last keys work for the grace
//! period and not after; and a private address is read only when the operator allows it.

mod support;

use serde_json::json;
use support::ci_issuer::{CiIssuer, Key, MAIN, now, sign_in};
use support::*;

const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn manifests(issuer: &str, grace: &str) -> String {
    format!(
        r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Tenant
metadata: {{name: forge}}
spec:
  grantTypes: [client_credentials, "urn:ietf:params:oauth:grant-type:token-exchange"]
  scopes: [{{name: deploy}}]
  trustedIssuers:
    - name: ci
      issuer: "{issuer}"
      gracePeriod: {grace}
      subjects:
        - subject: "{MAIN}"
          client: {{namespace: forge, clientId: forge-deployer}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: OAuthClient
metadata: {{name: deployer, namespace: forge}}
spec:
  tenantRef: forge
  clientId: forge-deployer
  grantTypes: [client_credentials, "urn:ietf:params:oauth:grant-type:token-exchange"]
  scopes: [deploy]
  workloadIdentity: {{trustedIssuer: ci}}
---
# Names the issuer too, but the Tenant maps no subject to it.
apiVersion: gatehouse.dev/v1alpha1
kind: OAuthClient
metadata: {{name: intruder, namespace: forge}}
spec:
  tenantRef: forge
  clientId: forge-intruder
  grantTypes: [client_credentials]
  scopes: [deploy]
  workloadIdentity: {{trustedIssuer: ci}}
"#
    )
}

fn start(ci: &CiIssuer, grace: &str, allow_private: bool) -> Gatehouse {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("forge.yaml"), manifests(&ci.issuer, grace)).unwrap();
    let env: Vec<(&str, String)> = ci
        .env()
        .into_iter()
        .filter(|(k, _)| allow_private || !k.contains("PRIVATE"))
        .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Gatehouse::start_with_env("memory://", dir, &env)
}

#[tokio::test]
async fn a_ci_jobs_token_authenticates_the_client_its_subject_is_mapped_to_and_nothing_else() {
    let k1 = Key::new("ci-1");
    let ci = CiIssuer::start(&[&k1]);
    let g = start(&ci, "24h", true);
    let token_url = g.endpoint("forge", "token_endpoint").await;
    let audience = g.issuer("forge");
    let good = ci.token(&k1, &audience, |_| {});

    let r = sign_in(&token_url, "forge-deployer", &good).await;
    assert_eq!(r.status, 200, "{}\n{}", r.body, g.stderr());
    let access = jwt_payload(r.body["access_token"].as_str().unwrap());
    assert_eq!(access["client_id"], "forge-deployer");
    assert_eq!(access["scope"], "deploy");
    // Not single-use: the job may use its token again while it lives.
    assert_eq!(
        sign_in(&token_url, "forge-deployer", &good).await.status,
        200
    );
    // The token endpoint is a valid audience too.
    let for_endpoint = ci.token(&k1, &token_url, |_| {});
    assert_eq!(
        sign_in(&token_url, "forge-deployer", &for_endpoint)
            .await
            .status,
        200
    );

    // Each refusal is a plain invalid_client (401), whatever is wrong.
    let stranger = Key::new("ci-1");
    let refused = [
        (
            "another branch",
            ci.token(&k1, &audience, |c| {
                c["sub"] = json!("repo:forge/app:ref:refs/heads/feature");
            }),
        ),
        (
            "a pull request",
            ci.token(&k1, &audience, |c| {
                c["sub"] = json!("repo:forge/app:pull_request");
            }),
        ),
        (
            "another audience",
            ci.token(&k1, &audience, |c| {
                c["aud"] = json!("https://elsewhere.example");
            }),
        ),
        (
            "expired",
            ci.token(&k1, &audience, |c| {
                c["iat"] = json!(now() - 600);
                c["exp"] = json!(now() - 120);
            }),
        ),
        (
            "another issuer",
            ci.token(&k1, &audience, |c| {
                c["iss"] = json!("https://other.example");
            }),
        ),
        (
            "a stranger's key under the issuer's kid",
            ci.token(&stranger, &audience, |_| {}),
        ),
    ];
    for (what, token) in refused {
        let r = sign_in(&token_url, "forge-deployer", &token).await;
        assert_eq!(
            (r.status, r.error()),
            (401, "invalid_client"),
            "{what}: {}",
            r.body
        );
    }
    // A client that names the issuer but has no subject mapped gets nothing, with the reason
    // shown; the mapped job's token does not work for it either.
    let r = sign_in(&token_url, "forge-intruder", &good).await;
    assert_eq!((r.status, r.error()), (401, "invalid_client"), "{}", r.body);
    assert!(
        g.stdout().contains("WorkloadSubjectNotMapped"),
        "{}",
        g.stdout()
    );
    // Presented as a secret, it is no secret.
    let r = post_form(
        &token_url,
        Some(&basic("forge-deployer", &good)),
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);

    // The job exchanges its own token (RFC 8693) for an access token.
    let r = post_form(
        &token_url,
        None,
        &form(&[
            ("grant_type", EXCHANGE),
            ("client_id", "forge-deployer"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &good),
            ("subject_token", &good),
            ("subject_token_type", JWT_TYPE),
            ("scope", "deploy"),
        ]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    let exchanged = jwt_payload(r.body["access_token"].as_str().unwrap());
    assert!(
        exchanged["exp"].as_u64().unwrap() <= now() + 300,
        "never outlives the CI token"
    );

    // The issuer rotates: the new key works within a few seconds, the withdrawn one stops.
    let k2 = Key::new("ci-2");
    ci.publish(&[&k2]);
    let rotated = ci.token(&k2, &audience, |_| {});
    eventually(15, "the rotated key to be read", || async {
        sign_in(&token_url, "forge-deployer", &rotated).await.status == 200
    })
    .await;
    let r = sign_in(&token_url, "forge-deployer", &good).await;
    assert_eq!(
        r.status, 401,
        "the withdrawn key no longer verifies: {}",
        r.body
    );
}

#[tokio::test]
async fn an_unreachable_issuers_last_keys_work_for_the_grace_period_and_not_after() {
    let k1 = Key::new("ci-1");
    let ci = CiIssuer::start(&[&k1]);
    let g = start(&ci, "10s", true);
    let token_url = g.endpoint("forge", "token_endpoint").await;
    let good = ci.token(&k1, &g.issuer("forge"), |_| {});
    assert_eq!(
        sign_in(&token_url, "forge-deployer", &good).await.status,
        200
    );

    ci.server.set_down(true);
    let went_down = std::time::Instant::now();
    // Reads fail (the tenant says so) while the last keys read keep working.
    eventually(8, "the outage to show", || async {
        g.stdout().contains("ci (IssuerUnreachable)")
    })
    .await;
    let r = sign_in(&token_url, "forge-deployer", &good).await;
    assert_eq!(r.status, 200, "within the grace period: {}", r.body);
    eventually(25, "the keys to expire after the grace period", || async {
        sign_in(&token_url, "forge-deployer", &good).await.status == 401
    })
    .await;
    // The grace period counts from the last good read, at most a second before the outage.
    assert!(went_down.elapsed() >= std::time::Duration::from_secs(8));
    assert!(g.stdout().contains("ci (KeysExpired)"), "{}", g.stdout());

    ci.server.set_down(false);
    eventually(15, "the issuer's keys read again", || async {
        sign_in(&token_url, "forge-deployer", &good).await.status == 200
    })
    .await;
}

#[tokio::test]
async fn a_private_address_is_read_only_when_allowed() {
    let k1 = Key::new("ci-1");
    let ci = CiIssuer::start(&[&k1]);
    let g = start(&ci, "24h", false);
    let token_url = g.endpoint("forge", "token_endpoint").await;
    let good = ci.token(&k1, &g.issuer("forge"), |_| {});
    let r = sign_in(&token_url, "forge-deployer", &good).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(ci.server.hits("/.well-known/openid-configuration"), 0);
    let out = g.stdout();
    assert!(out.contains("IssuerUnreachable"), "{out}");
    assert!(
        g.stderr().contains("--allow-private-issuer-addresses"),
        "{}",
        g.stderr()
    );
}

/// A namespace user cannot keep a subject the Tenant withdraws by breaking their own client on
/// purpose: the held registration keeps serving its tokens, but loses the subject.
#[tokio::test]
async fn a_client_broken_on_purpose_keeps_no_subject_its_tenant_withdraws() {
    let k1 = Key::new("ci-1");
    let ci = CiIssuer::start(&[&k1]);
    let g = start(&ci, "24h", true);
    let token_url = g.endpoint("forge", "token_endpoint").await;
    let good = ci.token(&k1, &g.issuer("forge"), |_| {});
    assert_eq!(
        sign_in(&token_url, "forge-deployer", &good).await.status,
        200
    );

    // A spec only Gatehouse's own rules refuse: held, still serving.
    let original = manifests(&ci.issuer, "24h");
    let broken = original.replace(
        "  clientId: forge-deployer\n  grantTypes: [client_credentials,",
        "  clientId: forge-deployer\n  grantTypes: [client_credentials, client_credentials,",
    );
    assert_ne!(broken, original);
    g.write_manifest("forge.yaml", &broken);
    eventually(10, "the broken client to be held", || async {
        g.stdout().contains("last valid version keeps serving")
    })
    .await;
    assert_eq!(
        sign_in(&token_url, "forge-deployer", &good).await.status,
        200,
        "a typo costs the workload nothing"
    );

    // The Tenant maps the subject elsewhere: the held client loses it at once.
    let withdrawn = broken.replace(
        "client: {namespace: forge, clientId: forge-deployer}",
        "client: {namespace: elsewhere, clientId: forge-deployer}",
    );
    assert_ne!(withdrawn, broken);
    g.write_manifest("forge.yaml", &withdrawn);
    eventually(10, "the withdrawn subject to be refused", || async {
        sign_in(&token_url, "forge-deployer", &good).await.status == 401
    })
    .await;
}
