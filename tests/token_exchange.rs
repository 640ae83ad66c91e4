//! Token exchange (RFC 8693) through the real binary: a user's token, received by API A, is
//! exchanged by A (with its own token as the actor) for a narrower token for API B, which a
//! resource server verifies with a standard JOSE library; and each refusal RFC 8693 section
//! 2.2.2 names, with its error code.

mod support;

use jsonwebtoken::{DecodingKey, Validation, jwk::JwkSet};
use serde_json::{Value, json};
use support::*;

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
const API_B: &str = "https://b.umbrella.example";

const MANIFESTS: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Tenant
metadata: {name: umbrella}
spec:
  grantTypes: [client_credentials, password, "urn:ietf:params:oauth:grant-type:token-exchange"]
  scopes: [{name: api.read}, {name: api.write}]
  audiences: [{name: umbrella-api-a}, {name: "https://b.umbrella.example"}]
  users: {secretRef: {name: umbrella-users, namespace: umbrella}}
  # API A may act for alice (with its own token as the actor: no impersonation).
  subjectAssertions:
    - signer: {namespace: umbrella, clientId: umbrella-api-a}
      users: [alice]
---
apiVersion: v1
kind: Secret
metadata: {name: umbrella-users, namespace: umbrella, labels: {gatehouse.dev/watch: 'true'}}
stringData:
  users.yaml: |
    - username: alice
      passwordHash: "$argon2id$v=19$m=19456,t=2,p=1$yxZgyeenk6eyB64gIdCApQ$jkr4ytvV4HHADYPN5XK51q7e8fubRml7/6Zo0FGD0WM"
---
# The app alice signs in to; its tokens are for API A.
apiVersion: gatehouse.dev/v1alpha1
kind: OAuthClient
metadata: {name: app, namespace: umbrella}
spec:
  tenantRef: umbrella
  grantTypes: [password]
  scopes: [api.read, api.write]
  audiences: [umbrella-api-a]
  secretRef: {name: app-credentials, generate: false}
---
apiVersion: v1
kind: Secret
metadata: {name: app-credentials, namespace: umbrella, labels: {gatehouse.dev/watch: 'true'}}
stringData: {client_secret: app-secret}
---
# API A: calls API B for the user.
apiVersion: gatehouse.dev/v1alpha1
kind: OAuthClient
metadata: {name: api-a, namespace: umbrella}
spec:
  tenantRef: umbrella
  clientId: umbrella-api-a
  grantTypes: [client_credentials, "urn:ietf:params:oauth:grant-type:token-exchange"]
  scopes: [api.read]
  audiences: ["https://b.umbrella.example"]
  secretRef: {name: api-a-credentials, generate: false}
---
apiVersion: v1
kind: Secret
metadata: {name: api-a-credentials, namespace: umbrella, labels: {gatehouse.dev/watch: 'true'}}
stringData: {client_secret: api-a-secret}
---
# Another service that may exchange, but alice's token was not for it.
apiVersion: gatehouse.dev/v1alpha1
kind: OAuthClient
metadata: {name: api-c, namespace: umbrella}
spec:
  tenantRef: umbrella
  grantTypes: [client_credentials, "urn:ietf:params:oauth:grant-type:token-exchange"]
  scopes: [api.read]
  audiences: ["https://b.umbrella.example"]
  secretRef: {name: api-c-credentials, generate: false}
---
apiVersion: v1
kind: Secret
metadata: {name: api-c-credentials, namespace: umbrella, labels: {gatehouse.dev/watch: 'true'}}
stringData: {client_secret: api-c-secret}
"#;

async fn exchange(token_url: &str, client: (&str, &str), pairs: &[(&str, &str)]) -> Reply {
    let mut all = vec![("grant_type", EXCHANGE)];
    all.extend_from_slice(pairs);
    post_form(token_url, Some(&basic(client.0, client.1)), &form(&all)).await
}

#[tokio::test]
async fn a_users_token_is_narrowed_for_the_next_api_with_the_actor_named() {
    let redis = RedisServer::start();
    let g = Gatehouse::start(&redis.url(), &[("umbrella.yaml", MANIFESTS)]);
    let meta = g.metadata("umbrella").await;
    assert!(
        meta["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!(EXCHANGE)),
        "{meta}"
    );
    let token_url = g.endpoint("umbrella", "token_endpoint").await;
    let api_a = ("umbrella-api-a", "api-a-secret");

    let signed_in = post_form(
        &token_url,
        Some(&basic("umbrella-app", "app-secret")),
        "grant_type=password&username=alice&password=wonderland&scope=api.read%20api.write",
    )
    .await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.body);
    let alice = signed_in.body["access_token"].as_str().unwrap().to_string();
    assert_eq!(jwt_payload(&alice)["aud"], "umbrella-api-a");
    let own = post_form(
        &token_url,
        Some(&basic(api_a.0, api_a.1)),
        "grant_type=client_credentials",
    )
    .await;
    let own = own.body["access_token"].as_str().unwrap().to_string();

    let subject = [
        ("subject_token", alice.as_str()),
        ("subject_token_type", ACCESS_TOKEN),
    ];
    let actor = [
        ("actor_token", own.as_str()),
        ("actor_token_type", ACCESS_TOKEN),
    ];
    let mut asked: Vec<(&str, &str)> = subject.to_vec();
    asked.extend_from_slice(&actor);
    asked.extend_from_slice(&[("audience", API_B), ("scope", "api.read")]);
    let r = exchange(&token_url, api_a, &asked).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["issued_token_type"], ACCESS_TOKEN);
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(r.body["scope"], "api.read");
    assert!(r.body.get("refresh_token").is_none(), "{}", r.body);
    let narrowed = r.body["access_token"].as_str().unwrap().to_string();

    // API B verifies it with a standard JOSE library and the tenant's published keys.
    let jwks: JwkSet = reqwest::get(g.endpoint("umbrella", "jwks_uri").await)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(&narrowed).unwrap();
    let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[API_B]);
    validation.set_issuer(&[meta["issuer"].as_str().unwrap()]);
    let verified =
        jsonwebtoken::decode::<Value>(&narrowed, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
            .unwrap()
            .claims;
    assert_eq!(verified["sub"], "alice");
    assert_eq!(verified["client_id"], "umbrella-api-a");
    assert_eq!(verified["act"], json!({"sub": "client:umbrella-api-a"}));
    assert!(verified["exp"].as_u64() <= jwt_payload(&alice)["exp"].as_u64());
    // Introspection says so too.
    let introspected = post_form(
        &g.endpoint("umbrella", "introspection_endpoint").await,
        Some(&basic(api_a.0, api_a.1)),
        &form(&[("token", narrowed.as_str())]),
    )
    .await;
    assert_eq!(introspected.body["active"], true);
    assert_eq!(introspected.body["act"]["sub"], "client:umbrella-api-a");

    // Refusals, each with its code.
    let refused = |r: &Reply, status: u16, error: &str| {
        assert_eq!((r.status, r.error()), (status, error), "{}", r.body);
    };
    // Impersonation (no actor) is not granted to API A: unacceptable by policy.
    refused(
        &exchange(&token_url, api_a, &subject).await,
        400,
        "invalid_request",
    );
    // Scopes only narrow.
    let mut wider = subject.to_vec();
    wider.extend_from_slice(&actor);
    wider.push(("scope", "api.read api.write"));
    refused(
        &exchange(&token_url, api_a, &wider).await,
        400,
        "invalid_scope",
    );
    // An audience API A may not name.
    let mut elsewhere = subject.to_vec();
    elsewhere.extend_from_slice(&actor);
    elsewhere.push(("resource", "https://c.umbrella.example"));
    refused(
        &exchange(&token_url, api_a, &elsewhere).await,
        400,
        "invalid_target",
    );
    // Alice's token was not for API C.
    let c_own = post_form(
        &token_url,
        Some(&basic("umbrella-api-c", "api-c-secret")),
        "grant_type=client_credentials",
    )
    .await;
    let c_own = c_own.body["access_token"].as_str().unwrap().to_string();
    let mut not_for_c = subject.to_vec();
    not_for_c.extend_from_slice(&[
        ("actor_token", c_own.as_str()),
        ("actor_token_type", ACCESS_TOKEN),
    ]);
    refused(
        &exchange(&token_url, ("umbrella-api-c", "api-c-secret"), &not_for_c).await,
        400,
        "invalid_request",
    );
    // An actor token of someone else.
    let mut wrong_actor = subject.to_vec();
    wrong_actor.extend_from_slice(&[
        ("actor_token", c_own.as_str()),
        ("actor_token_type", ACCESS_TOKEN),
    ]);
    refused(
        &exchange(&token_url, api_a, &wrong_actor).await,
        400,
        "invalid_request",
    );
    // Malformed requests and tokens: invalid_request.
    refused(
        &exchange(&token_url, api_a, &[("subject_token", alice.as_str())]).await,
        400,
        "invalid_request",
    );
    refused(
        &exchange(
            &token_url,
            api_a,
            &[
                ("subject_token", "not-a-token"),
                ("subject_token_type", ACCESS_TOKEN),
            ],
        )
        .await,
        400,
        "invalid_request",
    );
    refused(
        &exchange(
            &token_url,
            api_a,
            &[
                ("subject_token", alice.as_str()),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:saml2",
                ),
            ],
        )
        .await,
        400,
        "invalid_request",
    );
    let mut saml = asked.clone();
    saml.push((
        "requested_token_type",
        "urn:ietf:params:oauth:token-type:saml2",
    ));
    refused(
        &exchange(&token_url, api_a, &saml).await,
        400,
        "invalid_request",
    );
    let mut lone_actor = subject.to_vec();
    lone_actor.push(("actor_token", own.as_str()));
    refused(
        &exchange(&token_url, api_a, &lone_actor).await,
        400,
        "invalid_request",
    );
    // A client without the grant.
    refused(
        &exchange(&token_url, ("umbrella-app", "app-secret"), &asked).await,
        400,
        "unauthorized_client",
    );
    // A revoked subject token is no longer exchangeable.
    let revoked = post_form(
        &g.endpoint("umbrella", "revocation_endpoint").await,
        Some(&basic("umbrella-app", "app-secret")),
        &form(&[("token", alice.as_str())]),
    )
    .await;
    assert_eq!(revoked.status, 200);
    refused(
        &exchange(&token_url, api_a, &asked).await,
        400,
        "invalid_request",
    );
}
