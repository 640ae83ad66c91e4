//! Issuing, verifying, introspecting and revoking tokens over HTTP against standalone with the
//! Redis store, the way a client and a resource server would.

mod support;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::Value;
use support::*;

async fn jwks(g: &Gatehouse, tenant: &str) -> JwkSet {
    let url = g.endpoint(tenant, "jwks_uri").await;
    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.headers()["content-type"], "application/jwk-set+json");
    r.json().await.unwrap()
}

/// Verifies a JWT access token the way a resource server does: key by `kid` from the JWKS,
/// algorithm from the key, issuer and audience checked.
fn verify(
    token: &str,
    set: &JwkSet,
    issuer: &str,
    audience: &str,
) -> Result<Value, jsonwebtoken::errors::Error> {
    let header = jsonwebtoken::decode_header(token)?;
    let jwk = set
        .find(header.kid.as_deref().unwrap_or_default())
        .ok_or(jsonwebtoken::errors::ErrorKind::InvalidKeyFormat)?;
    let alg = jwk
        .common
        .key_algorithm
        .and_then(|a| a.to_string().parse().ok())
        .unwrap_or(header.alg);
    let mut v = Validation::new(alg);
    v.set_issuer(&[issuer]);
    v.set_audience(&[audience]);
    Ok(jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk)?, &v)?.claims)
}

#[tokio::test]
async fn issues_rfc9068_tokens_that_verify_against_the_published_jwks() {
    let redis = RedisServer::start();
    let g = Gatehouse::start(&redis.url(), &fixtures());
    let meta = g.metadata("acme").await;
    assert_eq!(meta["issuer"], g.issuer("acme"));
    assert_eq!(
        meta["grant_types_supported"],
        serde_json::json!(["client_credentials", "refresh_token"])
    );
    let oidc: Value = reqwest::get(format!(
        "{}/.well-known/openid-configuration",
        g.issuer("acme")
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(oidc["token_endpoint"], meta["token_endpoint"]);
    let at_issuer: Value = reqwest::get(format!(
        "{}/.well-known/oauth-authorization-server",
        g.issuer("acme")
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(at_issuer, meta);

    let r = client_credentials(
        &g,
        "acme",
        "acme-billing",
        BILLING_SECRET,
        &[
            ("scope", "billing.read"),
            ("resource", "https://ledger.example.com"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(r.body["expires_in"], 900);
    assert_eq!(r.body["scope"], "billing.read");
    assert!(
        r.body.get("refresh_token").is_none(),
        "client_credentials never returns a refresh token"
    );
    let token = r.body["access_token"].as_str().unwrap();

    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    let claims = verify(
        token,
        &jwks(&g, "acme").await,
        &g.issuer("acme"),
        "https://ledger.example.com",
    )
    .expect("verifies against JWKS");
    assert_eq!(claims["sub"], "client:acme-billing");
    assert_eq!(claims["client_id"], "acme-billing");
    assert_eq!(claims["aud"], "https://ledger.example.com");
    assert_eq!(claims["scope"], "billing.read");
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        900
    );

    // Without scope or resource: all of the client's scopes and audiences.
    let r = client_credentials(&g, "acme", "acme-billing", BILLING_SECRET, &[]).await;
    let claims = jwt_payload(r.body["access_token"].as_str().unwrap());
    assert_eq!(claims["scope"], "billing.read billing.write");
    assert_eq!(
        claims["aud"],
        serde_json::json!(["https://billing.example.com", "https://ledger.example.com"])
    );
}

#[tokio::test]
async fn client_secret_post_works_for_clients_registered_for_it() {
    let redis = RedisServer::start();
    let g = Gatehouse::start(&redis.url(), &fixtures());
    let token_endpoint = g.endpoint("acme", "token_endpoint").await;
    let body = form(&[
        ("grant_type", "client_credentials"),
        ("client_id", "acme-poster"),
        ("client_secret", "poster-secret"),
    ]);
    let r = post_form(&token_endpoint, None, &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // The same client over Basic is refused: it registered client_secret_post.
    let r = client_credentials(&g, "acme", "acme-poster", "poster-secret", &[]).await;
    assert_eq!((r.status, r.error()), (401, "invalid_client"));
}

async fn introspect(g: &Gatehouse, tenant: &str, (id, secret): (&str, &str), token: &str) -> Value {
    let url = g.endpoint(tenant, "introspection_endpoint").await;
    let r = post_form(&url, Some(&basic(id, secret)), &form(&[("token", token)])).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
    r.body
}

async fn revoke(g: &Gatehouse, tenant: &str, (id, secret): (&str, &str), token: &str) -> Reply {
    let url = g.endpoint(tenant, "revocation_endpoint").await;
    post_form(
        &url,
        Some(&basic(id, secret)),
        &form(&[("token", token), ("token_type_hint", "access_token")]),
    )
    .await
}

#[tokio::test]
async fn introspection_before_and_after_revocation_for_jwt_and_opaque_tokens() {
    let redis = RedisServer::start();
    let g = Gatehouse::start(&redis.url(), &fixtures());
    let billing = ("acme-billing", BILLING_SECRET);
    let other = ("acme-limited", "limited-secret");
    let ops = ("globex-ops", "globex-secret");

    // JWT (acme).
    let jwt = client_credentials(&g, "acme", billing.0, billing.1, &[])
        .await
        .body["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let info = introspect(&g, "acme", other, &jwt).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["client_id"], "acme-billing");
    assert_eq!(info["iss"], g.issuer("acme"));
    assert_eq!(info["token_type"], "Bearer");
    // Another client may not revoke it.
    let r = revoke(&g, "acme", other, &jwt).await;
    assert_eq!((r.status, r.error()), (400, "unauthorized_client"));
    assert_eq!(introspect(&g, "acme", other, &jwt).await["active"], true);
    let r = revoke(&g, "acme", billing, &jwt).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        introspect(&g, "acme", other, &jwt).await,
        serde_json::json!({"active": false})
    );
    // Revoking again, or revoking garbage, is fine (RFC 7009 section 2.2).
    assert_eq!(revoke(&g, "acme", billing, &jwt).await.status, 200);
    assert_eq!(revoke(&g, "acme", billing, "not-a-token").await.status, 200);

    // Opaque (globex).
    let r = client_credentials(&g, "globex", ops.0, ops.1, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["expires_in"], 300);
    let opaque = r.body["access_token"].as_str().unwrap().to_string();
    assert!(!opaque.contains('.'), "opaque tokens are not JWTs");
    let info = introspect(&g, "globex", ops, &opaque).await;
    assert_eq!(
        (
            info["active"].clone(),
            info["scope"].clone(),
            info["sub"].clone()
        ),
        (true.into(), "ops".into(), "client:globex-ops".into())
    );
    assert_eq!(revoke(&g, "globex", ops, &opaque).await.status, 200);
    assert_eq!(
        introspect(&g, "globex", ops, &opaque).await["active"],
        false
    );
    // The store holds opaque tokens by digest only.
    let keys = gatehouse_testkit::redis_command(redis.port, &["KEYS", "*"]).unwrap_or_default();
    assert!(!keys.contains(&opaque));
}

#[tokio::test]
async fn tenants_are_isolated() {
    let redis = RedisServer::start();
    let g = Gatehouse::start(&redis.url(), &fixtures());
    let acme_token = client_credentials(&g, "acme", "acme-billing", BILLING_SECRET, &[])
        .await
        .body["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let globex_token = client_credentials(&g, "globex", "globex-ops", "globex-secret", &[])
        .await
        .body["access_token"]
        .as_str()
        .unwrap()
        .to_string();

    // acme's JWT is not active at globex, and does not verify against globex's keys.
    assert_eq!(
        introspect(&g, "globex", ("globex-ops", "globex-secret"), &acme_token).await["active"],
        false
    );
    let globex_keys = jwks(&g, "globex").await;
    assert!(
        verify(
            &acme_token,
            &globex_keys,
            &g.issuer("acme"),
            "https://billing.example.com"
        )
        .is_err()
    );
    let acme_keys = jwks(&g, "acme").await;
    assert!(
        acme_keys.keys.iter().all(|k| globex_keys
            .find(k.common.key_id.as_deref().unwrap())
            .is_none()),
        "no shared key"
    );
    // globex's opaque token is unknown at acme.
    assert_eq!(
        introspect(&g, "acme", ("acme-billing", BILLING_SECRET), &globex_token).await["active"],
        false
    );
    // A client of one tenant is unknown at the other.
    let r = client_credentials(&g, "globex", "acme-billing", BILLING_SECRET, &[]).await;
    assert_eq!((r.status, r.error()), (401, "invalid_client"));
    // Each tenant signs with its own algorithm.
    assert_eq!(
        acme_keys.keys[0]
            .common
            .key_algorithm
            .map(|a| a.to_string()),
        Some("ES256".into())
    );
    assert_eq!(
        globex_keys.keys[0]
            .common
            .key_algorithm
            .map(|a| a.to_string()),
        Some("EdDSA".into())
    );
}

#[tokio::test]
async fn the_memory_store_serves_the_same_flow() {
    let g = Gatehouse::start("memory://", &fixtures());
    let r = client_credentials(&g, "globex", "globex-ops", "globex-secret", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let token = r.body["access_token"].as_str().unwrap();
    assert_eq!(
        introspect(&g, "globex", ("globex-ops", "globex-secret"), token).await["active"],
        true
    );
}

/// With one core (a pod limited to one CPU), the server runs a single-threaded runtime, and
/// the token endpoint takes turns signing (it yields around each signature): a burst of
/// concurrent requests must still all get valid tokens.
#[tokio::test]
async fn one_core_serves_a_burst_of_concurrent_token_requests() {
    let redis = RedisServer::start();
    let g = Gatehouse::start_on_one_core(&redis.url(), &fixtures());
    assert!(
        g.stderr().contains("single-threaded async runtime"),
        "{}",
        g.stderr()
    );
    let set = jwks(&g, "acme").await;
    let replies = futures::future::join_all((0..64).map(|_| {
        client_credentials(
            &g,
            "acme",
            "acme-billing",
            BILLING_SECRET,
            &[("resource", "https://ledger.example.com")],
        )
    }))
    .await;
    let mut ids = std::collections::HashSet::new();
    for r in replies {
        assert_eq!(r.status, 200, "{}", r.body);
        let claims = verify(
            r.body["access_token"].as_str().unwrap(),
            &set,
            &g.issuer("acme"),
            "https://ledger.example.com",
        )
        .expect("verifies against JWKS");
        ids.insert(claims["jti"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 64, "every token is distinct");
}
