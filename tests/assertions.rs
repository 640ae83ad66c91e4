//! JWT assertions (RFC 7523): the jwt-bearer grant (2.1) and private_key_jwt client
//! authentication (2.2), each with the attacks the RFCs warn about.

mod support;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use support::*;

struct Key {
    pkcs8: Vec<u8>,
    jwk: Value,
}

fn key(kid: &str) -> Key {
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap();
    let p = pair.public_key().as_ref();
    let jwk = json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..65])});
    Key {
        pkcs8: doc.as_ref().to_vec(),
        jwk,
    }
}

fn sign(key: &Key, claims: &Value) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.kid = key.jwk["kid"].as_str().map(String::from);
    jsonwebtoken::encode(&h, claims, &EncodingKey::from_ec_der(&key.pkcs8)).unwrap()
}

fn now() -> u64 {
    gatehouse_core::clock::Clock::now(&gatehouse_core::clock::SystemClock)
}

fn manifests(jwk: &Value) -> String {
    format!(
        r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Tenant
metadata: {{name: hooli}}
spec:
  grantTypes: [client_credentials, "urn:ietf:params:oauth:grant-type:jwt-bearer"]
  scopes: [{{name: api}}]
  users: {{secretRef: {{name: hooli-users, namespace: hooli}}}}
  # svc may act for alice@hooli and as the batch client; nothing else.
  subjectAssertions:
    - signer: {{namespace: hooli, clientId: hooli-svc}}
      users: [alice@hooli]
      clients: [{{namespace: hooli, clientId: hooli-batch}}]
---
apiVersion: v1
kind: Secret
metadata: {{name: hooli-users, namespace: hooli, labels: {{gatehouse.dev/watch: 'true'}}}}
stringData:
  users.yaml: |
    - username: alice@hooli
      passwordHash: "$argon2id$v=19$m=19456,t=2,p=1$yxZgyeenk6eyB64gIdCApQ$jkr4ytvV4HHADYPN5XK51q7e8fubRml7/6Zo0FGD0WM"
      email: alice@hooli.example
    - username: bob@hooli
      passwordHash: "$argon2id$v=19$m=19456,t=2,p=1$yxZgyeenk6eyB64gIdCApQ$jkr4ytvV4HHADYPN5XK51q7e8fubRml7/6Zo0FGD0WM"
---
apiVersion: gatehouse.dev/v1alpha1
kind: OAuthClient
metadata: {{name: batch, namespace: hooli}}
spec:
  tenantRef: hooli
  grantTypes: [client_credentials]
  scopes: [api]
  secretRef: {{name: batch-credentials, generate: false}}
---
apiVersion: v1
kind: Secret
metadata: {{name: batch-credentials, namespace: hooli, labels: {{gatehouse.dev/watch: 'true'}}}}
stringData: {{client_secret: batch-secret}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: OAuthClient
metadata: {{name: svc, namespace: hooli}}
spec:
  tenantRef: hooli
  grantTypes: [client_credentials, "urn:ietf:params:oauth:grant-type:jwt-bearer"]
  scopes: [api]
  tokenEndpointAuthMethod: private_key_jwt
  jwks: {{keys: [{jwk}]}}
"#
    )
}

struct Fixture {
    _redis: RedisServer,
    g: Gatehouse,
    key: Key,
    token_endpoint: String,
}

async fn fixture() -> Fixture {
    let redis = RedisServer::start();
    let key = key("svc-1");
    let g = Gatehouse::start(&redis.url(), &[("hooli.yaml", &manifests(&key.jwk))]);
    let token_endpoint = g.endpoint("hooli", "token_endpoint").await;
    Fixture {
        _redis: redis,
        g,
        key,
        token_endpoint,
    }
}

fn client_assertion(f: &Fixture, key: &Key, overrides: Value) -> String {
    let mut claims = json!({"iss": "hooli-svc", "sub": "hooli-svc", "aud": f.token_endpoint, "exp": now() + 60, "iat": now(),
                            "jti": format!("ca-{}", rand_id())});
    let Value::Object(overrides) = overrides else {
        panic!("overrides are an object")
    };
    for (k, v) in overrides {
        claims[k] = v;
    }
    sign(key, &claims)
}

fn rand_id() -> String {
    gatehouse_core::random::system().id().unwrap()
}

async fn with_client_assertion(f: &Fixture, assertion: &str, extra: &[(&str, &str)]) -> Reply {
    let mut pairs = vec![
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", assertion),
    ];
    pairs.extend_from_slice(extra);
    post_form(&f.token_endpoint, None, &form(&pairs)).await
}

#[tokio::test]
async fn private_key_jwt_authenticates_once_per_assertion() {
    let f = fixture().await;
    let meta = f.g.metadata("hooli").await;
    assert!(
        meta["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("private_key_jwt"))
    );
    let cc = [("grant_type", "client_credentials")];
    let assertion = client_assertion(&f, &f.key, json!({}));
    let r = with_client_assertion(&f, &assertion, &cc).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        jwt_payload(r.body["access_token"].as_str().unwrap())["client_id"],
        "hooli-svc"
    );

    let replay = with_client_assertion(&f, &assertion, &cc).await;
    assert_eq!((replay.status, replay.error()), (401, "invalid_client"));
    assert!(
        replay.body["error_description"]
            .as_str()
            .unwrap()
            .contains("jti replay")
    );
    for (what, assertion) in [
        (
            "wrong audience",
            client_assertion(
                &f,
                &f.key,
                json!({"aud": "https://elsewhere.example.com/token"}),
            ),
        ),
        (
            "expired",
            client_assertion(&f, &f.key, json!({"exp": now() - 3600})),
        ),
        ("no jti", client_assertion(&f, &f.key, json!({"jti": null}))),
        (
            "another key",
            client_assertion(&f, &key("svc-1"), json!({})),
        ),
        (
            "iss is not the client",
            client_assertion(&f, &f.key, json!({"iss": "someone-else"})),
        ),
    ] {
        let r = with_client_assertion(&f, &assertion, &cc).await;
        assert_eq!(
            (r.status, r.error()),
            (401, "invalid_client"),
            "{what}: {}",
            r.body
        );
    }
    let r = with_client_assertion(
        &f,
        &client_assertion(&f, &f.key, json!({})),
        &[("grant_type", "client_credentials"), ("client_secret", "x")],
    )
    .await;
    assert_eq!(r.error(), "invalid_request", "two authentication methods");
}

#[tokio::test]
async fn the_jwt_bearer_grant_issues_tokens_for_the_asserted_subject_once() {
    let f = fixture().await;
    let grant = "urn:ietf:params:oauth:grant-type:jwt-bearer";
    let bearer = |claims: Value, key: &Key| sign(key, &claims);
    let base = |jti: &str| json!({"iss": "hooli-svc", "sub": "alice@hooli", "aud": f.g.issuer("hooli"), "exp": now() + 120, "iat": now(), "jti": jti});
    let f = &f;
    let request = |assertion: String| async move {
        let auth = client_assertion(f, &f.key, json!({}));
        with_client_assertion(
            f,
            &auth,
            &[
                ("grant_type", grant),
                ("assertion", &assertion),
                ("scope", "api"),
            ],
        )
        .await
    };
    let good = bearer(base("g-1"), &f.key);
    let r = request(good.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let claims = jwt_payload(r.body["access_token"].as_str().unwrap());
    assert_eq!(
        (claims["sub"].as_str(), claims["scope"].as_str()),
        (Some("alice@hooli"), Some("api"))
    );
    assert!(r.body.get("refresh_token").is_none());

    let replay = request(good).await;
    assert_eq!(
        (replay.status, replay.error()),
        (400, "invalid_grant"),
        "replayed jti"
    );

    let mut wrong_aud = base("g-2");
    wrong_aud["aud"] = json!("https://elsewhere.example.com");
    let mut foreign_issuer = base("g-3");
    foreign_issuer["iss"] = json!("another-client");
    let header_none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"svc-1"}"#);
    let unsigned = format!(
        "{header_none}.{}.",
        URL_SAFE_NO_PAD.encode(base("g-4").to_string())
    );
    let mut hmac_header = Header::new(Algorithm::HS256);
    hmac_header.kid = Some("svc-1".into());
    let hmac = jsonwebtoken::encode(
        &hmac_header,
        &base("g-5"),
        &EncodingKey::from_secret(f.key.jwk.to_string().as_bytes()),
    )
    .unwrap();
    // The subject policy is the Tenant's: svc may act for alice@hooli and as hooli-batch, as
    // itself, and for nobody else, not even for users that exist or subjects that look like them.
    let about = |sub: &str, jti: &str| {
        let mut claims = base(jti);
        claims["sub"] = json!(sub);
        bearer(claims, &f.key)
    };
    for (sub, jti, expected_sub) in [
        ("hooli-batch", "s-1", None),
        ("client:hooli-batch", "s-2", Some("client:hooli-batch")),
        ("hooli-svc", "s-3", Some("client:hooli-svc")),
    ] {
        let r = request(about(sub, jti)).await;
        match expected_sub {
            Some(expected) => {
                assert_eq!(r.status, 200, "{sub}: {}", r.body);
                let claims = jwt_payload(r.body["access_token"].as_str().unwrap());
                assert_eq!(claims["sub"], expected, "{sub}");
                let info = reqwest::Client::new()
                    .get(f.g.endpoint("hooli", "userinfo_endpoint").await)
                    .bearer_auth(r.body["access_token"].as_str().unwrap())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(info.status(), 401, "a client's token reads no userinfo");
            }
            None => assert_eq!(
                (r.status, r.error()),
                (400, "invalid_grant"),
                "a bare client id that is not the signer's names a user, and none such exists: {}",
                r.body
            ),
        }
    }
    for (sub, jti) in [
        ("bob@hooli", "s-4"),
        ("nobody@hooli", "s-5"),
        ("client:hooli-other", "s-6"),
        ("system:admin", "s-7"),
    ] {
        let r = request(about(sub, jti)).await;
        assert_eq!(
            (r.status, r.error()),
            (400, "invalid_grant"),
            "{sub}: {}",
            r.body
        );
        assert!(
            r.body["error_description"]
                .as_str()
                .unwrap()
                .contains("may not assert"),
            "{sub}: {}",
            r.body
        );
    }

    for (what, assertion) in [
        ("bad signature", bearer(base("g-6"), &key("svc-1"))),
        ("wrong audience", bearer(wrong_aud, &f.key)),
        ("issuer is not the client", bearer(foreign_issuer, &f.key)),
        ("alg none", unsigned),
        ("HMAC keyed with the public key", hmac),
        ("not a JWT", "garbage".to_string()),
    ] {
        let r = request(assertion).await;
        assert_eq!(
            (r.status, r.error()),
            (400, "invalid_grant"),
            "{what}: {}",
            r.body
        );
    }
}
