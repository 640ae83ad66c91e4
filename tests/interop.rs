//! Interoperability: the `oauth2` crate, a client nobody here wrote, talks to Gatehouse for
//! client credentials (with its RFC 6749 2.3.1 Basic encoding), introspection, the
//! password grant, refresh tokens, and the authorization code flow with PKCE.

mod support;

use oauth2::basic::{BasicClient, BasicTokenType};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IntrospectionUrl,
    PkceCodeChallenge, RedirectUrl, ResourceOwnerPassword, ResourceOwnerUsername, Scope,
    TokenIntrospectionResponse, TokenResponse, TokenUrl,
};
use support::*;

/// The HTTP transport handed to the library: plain reqwest, no redirects.
async fn http(request: oauth2::HttpRequest) -> Result<oauth2::HttpResponse, std::io::Error> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(std::io::Error::other)?;
    let (parts, body) = request.into_parts();
    let mut req = client
        .request(parts.method, parts.uri.to_string())
        .body(body);
    for (name, value) in &parts.headers {
        req = req.header(name, value);
    }
    let r = req.send().await.map_err(std::io::Error::other)?;
    let mut builder = axum::http::Response::builder().status(r.status().as_u16());
    for (name, value) in r.headers() {
        builder = builder.header(name, value);
    }
    let bytes = r.bytes().await.map_err(std::io::Error::other)?;
    builder.body(bytes.to_vec()).map_err(std::io::Error::other)
}

const INITECH: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Tenant
metadata: {name: initech}
spec:
  grantTypes: [authorization_code, password, refresh_token]
  scopes: [{name: reports}]
  users: {secretRef: {name: people, namespace: initech}}
---
apiVersion: v1
kind: Secret
metadata: {name: people, namespace: initech, labels: {gatehouse.dev/watch: 'true'}}
stringData:
  users.yaml: |
    - username: alice
      passwordHash: "$argon2id$v=19$m=19456,t=2,p=1$yxZgyeenk6eyB64gIdCApQ$jkr4ytvV4HHADYPN5XK51q7e8fubRml7/6Zo0FGD0WM"
---
apiVersion: gatehouse.dev/v1alpha1
kind: OAuthClient
metadata: {name: app, namespace: initech}
spec:
  tenantRef: initech
  grantTypes: [authorization_code, password, refresh_token]
  redirectUris: [http://127.0.0.1:9/cb]
  scopes: [reports, offline_access]
  secretRef: {name: app-credentials, generate: false}
---
apiVersion: v1
kind: Secret
metadata: {name: app-credentials, namespace: initech, labels: {gatehouse.dev/watch: 'true'}}
stringData: {client_secret: "app secret/with:specials"}
"#;

#[tokio::test]
async fn the_oauth2_crate_gets_introspects_and_revokes_client_credentials_tokens() {
    let redis = RedisServer::start();
    let g = Gatehouse::start(&redis.url(), &fixtures());
    let client = BasicClient::new(ClientId::new("acme-billing".into()))
        .set_client_secret(ClientSecret::new(BILLING_SECRET.into()))
        .set_token_uri(TokenUrl::new(g.endpoint("acme", "token_endpoint").await).unwrap())
        .set_introspection_url(
            IntrospectionUrl::new(g.endpoint("acme", "introspection_endpoint").await).unwrap(),
        );
    let token = client
        .exchange_client_credentials()
        .add_scope(Scope::new("billing.read".into()))
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(*token.token_type(), BasicTokenType::Bearer);
    assert_eq!(token.scopes().unwrap()[0].as_str(), "billing.read");
    let info = client
        .introspect(token.access_token())
        .request_async(&http)
        .await
        .unwrap();
    assert!(info.active());
    assert_eq!(info.client_id().map(|c| c.as_str()), Some("acme-billing"));
    // The library refuses revocation over plain http (these tests run on loopback http), so
    // revoke directly and let the library see the result.
    let revocation = g.endpoint("acme", "revocation_endpoint").await;
    let r = post_form(
        &revocation,
        Some(&basic("acme-billing", BILLING_SECRET)),
        &form(&[("token", token.access_token().secret())]),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        !client
            .introspect(token.access_token())
            .request_async(&http)
            .await
            .unwrap()
            .active()
    );
    // A wrong secret surfaces as the library's typed invalid_client error.
    let wrong = BasicClient::new(ClientId::new("acme-billing".into()))
        .set_client_secret(ClientSecret::new("nope".into()))
        .set_token_uri(TokenUrl::new(g.endpoint("acme", "token_endpoint").await).unwrap());
    let err = wrong
        .exchange_client_credentials()
        .request_async(&http)
        .await
        .unwrap_err();
    assert!(
        format!("{err:?}").contains("error: invalid_client"),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_oauth2_crate_runs_password_refresh_and_code_with_pkce() {
    let redis = RedisServer::start();
    let g = Gatehouse::start(&redis.url(), &[("initech.yaml", INITECH)]);
    let client = BasicClient::new(ClientId::new("initech-app".into()))
        .set_client_secret(ClientSecret::new("app secret/with:specials".into()))
        .set_auth_uri(AuthUrl::new(g.endpoint("initech", "authorization_endpoint").await).unwrap())
        .set_token_uri(TokenUrl::new(g.endpoint("initech", "token_endpoint").await).unwrap())
        .set_redirect_uri(RedirectUrl::new("http://127.0.0.1:9/cb".into()).unwrap());

    let token = client
        .exchange_password(
            &ResourceOwnerUsername::new("alice".into()),
            &ResourceOwnerPassword::new("wonderland".into()),
        )
        .add_scope(Scope::new("reports".into()))
        .request_async(&http)
        .await
        .unwrap();
    let refreshed = client
        .exchange_refresh_token(token.refresh_token().unwrap())
        .request_async(&http)
        .await
        .unwrap();
    assert_ne!(
        refreshed.refresh_token().unwrap().secret(),
        token.refresh_token().unwrap().secret()
    );

    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf) = client
        .authorize_url(CsrfToken::new_random)
        .add_scope(Scope::new("reports".into()))
        .set_pkce_challenge(challenge)
        .url();
    let mut b = Browser::new();
    let to_login = b.get(url.as_str()).await.location.unwrap();
    let login = b.get(&to_login).await;
    let consent = b
        .post(
            &format!("{}/initech/login", g.base),
            &[
                ("request", &login.field("request")),
                ("csrf", &login.field("csrf")),
                ("username", "alice"),
                ("password", "wonderland"),
            ],
        )
        .await;
    let back = b
        .post(
            &format!("{}/initech/consent", g.base),
            &[
                ("request", &consent.field("request")),
                ("csrf", &consent.field("csrf")),
                ("decision", "allow"),
            ],
        )
        .await;
    assert_eq!(back.param("state").as_deref(), Some(csrf.secret().as_str()));
    let code = AuthorizationCode::new(back.param("code").unwrap());
    let token = client
        .exchange_code(code)
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(jwt_payload(token.access_token().secret())["sub"], "alice");
}
