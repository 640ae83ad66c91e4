//! Trusted issuers (`Tenant.spec.trustedIssuers`) through the real binary: a CI system's
//! signed token, served keys and all by a real HTTPS issuer with its own CA, authenticates the
//! client the Tenant maps its subject to, and nothing else; the issuer's key rotation reaches
//! the token service without a restart; an unreachable issuer's last keys work for the grace
//! period and not after; and a private address is read only when the operator allows it.

mod support;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_testkit::https::{HttpsServer, Reply as Canned};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use support::*;

const MAIN: &str = "repo:forge/app:ref:refs/heads/main";
const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

struct Key {
    pkcs8: Vec<u8>,
    jwk: Value,
}

fn key(kid: &str) -> Key {
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap();
    let p = pair.public_key().as_ref();
    let jwk = json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
        "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..65])});
    Key {
        pkcs8: doc.as_ref().to_vec(),
        jwk,
    }
}

fn now() -> u64 {
    gatehouse_core::clock::Clock::now(&gatehouse_core::clock::SystemClock)
}

/// The CI system: an issuer at the server's root, with discovery and keys.
fn ci_issuer(keys: &[&Key]) -> (HttpsServer, String) {
    let server = HttpsServer::start();
    let issuer = server.url("");
    server.set(
        "/.well-known/openid-configuration",
        Canned::json(&json!({"issuer": issuer, "jwks_uri": server.url("/.well-known/jwks")})),
    );
    publish(&server, keys);
    (server, issuer)
}

fn publish(server: &HttpsServer, keys: &[&Key]) {
    server.set(
        "/.well-known/jwks",
        Canned::json(&json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})),
    );
}

/// A CI job's token: `sub` the job, `aud` the tenant's issuer, valid for five minutes.
fn ci_token(key: &Key, issuer: &str, audience: &str, change: impl FnOnce(&mut Value)) -> String {
    let mut claims = json!({"iss": issuer, "sub": MAIN, "aud": audience,
        "iat": now() - 5, "nbf": now() - 5, "exp": now() + 300, "jti": "run-1"});
    change(&mut claims);
    let mut h = Header::new(Algorithm::ES256);
    h.kid = key.jwk["kid"].as_str().map(String::from);
    jsonwebtoken::encode(&h, &claims, &EncodingKey::from_ec_der(&key.pkcs8)).unwrap()
}

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

fn start(server: &HttpsServer, issuer: &str, grace: &str, allow_private: bool) -> Gatehouse {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("forge.yaml"), manifests(issuer, grace)).unwrap();
    let ca = server.ca_file().display().to_string();
    let mut env = vec![
        ("GATEHOUSE_TRUSTED_ISSUER_CA_FILE", ca.as_str()),
        ("GATEHOUSE_TRUSTED_ISSUER_REFRESH", "1s"),
    ];
    if allow_private {
        env.push(("GATEHOUSE_ALLOW_PRIVATE_ISSUER_ADDRESSES", "true"));
    }
    Gatehouse::start_with_env("memory://", dir, &env)
}

async fn sign_in(token_url: &str, client_id: &str, assertion: &str) -> support::Reply {
    post_form(
        token_url,
        None,
        &form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion),
        ]),
    )
    .await
}

#[tokio::test]
async fn a_ci_jobs_token_authenticates_the_client_its_subject_is_mapped_to_and_nothing_else() {
    let k1 = key("ci-1");
    let (server, issuer) = ci_issuer(&[&k1]);
    let g = start(&server, &issuer, "24h", true);
    let token_url = g.endpoint("forge", "token_endpoint").await;
    let audience = g.issuer("forge");
    let good = ci_token(&k1, &issuer, &audience, |_| {});

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
    let for_endpoint = ci_token(&k1, &issuer, &token_url, |_| {});
    assert_eq!(
        sign_in(&token_url, "forge-deployer", &for_endpoint)
            .await
            .status,
        200
    );

    // Each refusal is a plain invalid_client (401), whatever is wrong.
    let stranger = key("ci-1");
    let refused = [
        (
            "another branch",
            ci_token(&k1, &issuer, &audience, |c| {
                c["sub"] = json!("repo:forge/app:ref:refs/heads/feature");
            }),
        ),
        (
            "a pull request",
            ci_token(&k1, &issuer, &audience, |c| {
                c["sub"] = json!("repo:forge/app:pull_request");
            }),
        ),
        (
            "another audience",
            ci_token(&k1, &issuer, &audience, |c| {
                c["aud"] = json!("https://elsewhere.example");
            }),
        ),
        (
            "expired",
            ci_token(&k1, &issuer, &audience, |c| {
                c["iat"] = json!(now() - 600);
                c["exp"] = json!(now() - 120);
            }),
        ),
        (
            "another issuer",
            ci_token(&k1, &issuer, &audience, |c| {
                c["iss"] = json!("https://other.example");
            }),
        ),
        (
            "a stranger's key under the issuer's kid",
            ci_token(&stranger, &issuer, &audience, |_| {}),
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
    let k2 = key("ci-2");
    publish(&server, &[&k2]);
    let rotated = ci_token(&k2, &issuer, &audience, |_| {});
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
    let k1 = key("ci-1");
    let (server, issuer) = ci_issuer(&[&k1]);
    let g = start(&server, &issuer, "10s", true);
    let token_url = g.endpoint("forge", "token_endpoint").await;
    let good = ci_token(&k1, &issuer, &g.issuer("forge"), |_| {});
    assert_eq!(
        sign_in(&token_url, "forge-deployer", &good).await.status,
        200
    );

    server.set_down(true);
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

    server.set_down(false);
    eventually(15, "the issuer's keys read again", || async {
        sign_in(&token_url, "forge-deployer", &good).await.status == 200
    })
    .await;
}

#[tokio::test]
async fn a_private_address_is_read_only_when_allowed() {
    let k1 = key("ci-1");
    let (server, issuer) = ci_issuer(&[&k1]);
    let g = start(&server, &issuer, "24h", false);
    let token_url = g.endpoint("forge", "token_endpoint").await;
    let good = ci_token(&k1, &issuer, &g.issuer("forge"), |_| {});
    let r = sign_in(&token_url, "forge-deployer", &good).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(server.hits("/.well-known/openid-configuration"), 0);
    let out = g.stdout();
    assert!(out.contains("IssuerUnreachable"), "{out}");
    assert!(
        g.stderr().contains("--allow-private-issuer-addresses"),
        "{}",
        g.stderr()
    );
}
