//! The HTTP mapping, driven through `router()` with `tower::ServiceExt::oneshot`: status
//! codes, headers, body shapes, pages and redirects, and that every error reaches the error
//! metric. The rules behind them are the flows' (tested there).

use crate::metrics::Metrics;
use crate::{AppState, Services, TenantDirectory, router};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::response::Response;
use gatehouse_core::clock::ManualClock;
use gatehouse_core::keys::{KeyEncryptionKey, KeyState, generate_signing_key};
use gatehouse_core::secret::{HashCost, hash_secret_with};
use gatehouse_core::{
    ClientAuthMethod, ClientConfig, GrantType, SigningAlgorithm, TenantConfig, TokenFormat,
};
use gatehouse_store::{MemoryStore, Store};
use std::sync::Arc;
use tower::ServiceExt;

pub(super) const SECRET: &str = "s3cret";

pub(super) fn tenant() -> TenantConfig {
    TenantConfig {
        name: "acme".into(),
        display_name: Some("Acme".into()),
        grant_types: vec![GrantType::ClientCredentials, GrantType::AuthorizationCode],
        access_token_format: TokenFormat::Jwt,
        access_token_ttl_secs: 900,
        refresh_token_ttl_secs: 3600,
        refresh_token_rotation: true,
        authorization_code_ttl_secs: 60,
        pkce_required: true,
        signing_algorithm: SigningAlgorithm::ES256,
        scopes: vec![],
        users: vec![],
        review_service_account_tokens: false,
    }
}

pub(super) fn client() -> ClientConfig {
    ClientConfig {
        client_id: "app".into(),
        source: "acme/app".into(),
        client_name: None,
        public: false,
        grant_types: vec![GrantType::ClientCredentials, GrantType::AuthorizationCode],
        redirect_uris: vec!["https://app.example.com/cb".into()],
        post_logout_redirect_uris: vec![],
        scopes: vec!["openid".into()],
        audiences: vec![],
        token_endpoint_auth_method: ClientAuthMethod::ClientSecretPost,
        secret_hash: Some(hash_secret_with(SECRET, HashCost::RandomKey).unwrap()),
        jwks: None,
        may_assert: gatehouse_core::config::AssertableSubjects::default(),
        incarnation: "i".into(),
        workload: None,
        federated: None,
        extra: std::collections::BTreeMap::default(),
    }
}

async fn app() -> (axum::Router, Arc<Metrics>) {
    let clock = ManualClock::at(1_700_000_000);
    let store: Arc<dyn Store> = Arc::new(MemoryStore::with_clock(clock.clone()));
    let kek = Arc::new(KeyEncryptionKey::generate().unwrap().0);
    let key =
        generate_signing_key("acme", SigningAlgorithm::ES256, KeyState::Active, &kek, 1).unwrap();
    store.put_signing_keys("acme", &[key]).await.unwrap();
    store.put_tenant(&tenant()).await.unwrap();
    store.put_client("acme", &client()).await.unwrap();
    let directory = Arc::new(TenantDirectory::new(
        store.clone(),
        kek,
        "https://auth.example.com",
    ));
    directory.refresh().await.unwrap();
    let metrics = Arc::new(Metrics::new());
    let services = Services::new(store, clock, gatehouse_core::random::system());
    (
        router(AppState::new(directory, services, metrics.clone())),
        metrics,
    )
}

fn post(uri: &str, body: &str) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

async fn send(app: &axum::Router, request: Request<Body>) -> Response {
    app.clone().oneshot(request).await.unwrap()
}

async fn json(response: Response) -> serde_json::Value {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

async fn text(response: Response) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn header(r: &Response, name: header::HeaderName) -> &str {
    r.headers().get(name).map_or("", |v| v.to_str().unwrap())
}

#[tokio::test]
async fn a_token_is_json_that_is_never_cached() {
    let (app, metrics) = app().await;
    let r = send(
        &app,
        post(
            "/acme/oauth2/token",
            &format!("grant_type=client_credentials&client_id=app&client_secret={SECRET}"),
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, header::CACHE_CONTROL), "no-store");
    assert_eq!(header(&r, header::PRAGMA), "no-cache");
    let body = json(r).await;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert!(metrics.render().contains(
        r#"gatehouse_tokens_issued_total{tenant="acme",grant_type="client_credentials"} 1"#
    ));
}

#[tokio::test]
async fn token_errors_are_rfc_6749_json_with_the_right_status_and_are_counted() {
    let (app, metrics) = app().await;
    let r = send(
        &app,
        post(
            "/acme/oauth2/token",
            "grant_type=client_credentials&client_id=app&client_secret=wrong",
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(header(&r, header::WWW_AUTHENTICATE).starts_with("Basic realm="));
    assert_eq!(header(&r, header::CACHE_CONTROL), "no-store");
    assert_eq!(json(r).await["error"], "invalid_client");

    // The log line names the client the credentials claim, from the form or the Basic header.
    let basic = Request::post("/acme/oauth2/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::AUTHORIZATION, "Basic YXBwOndyb25n") // app:wrong
        .body(Body::from("grant_type=client_credentials"))
        .unwrap();
    let r = send(&app, basic).await;
    let failure = r.extensions().get::<crate::error::Failure>().unwrap();
    assert_eq!(
        (failure.client.as_deref(), failure.detail.as_deref()),
        (Some("app"), None)
    );

    let r = send(
        &app,
        post(
            "/acme/oauth2/token",
            &format!("grant_type=password&client_id=app&client_secret={SECRET}"),
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(r).await["error"], "unsupported_grant_type");

    let r = send(
        &app,
        post(
            "/acme/oauth2/token",
            "grant_type=client_credentials&scope=a&scope=b",
        ),
    )
    .await;
    assert_eq!(
        json(r).await["error_description"],
        "parameter scope is repeated"
    );

    let r = send(
        &app,
        Request::post("/acme/oauth2/token")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{}"))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(r).await["error"], "invalid_request");

    let rendered = metrics.render();
    for needle in [
        r#"gatehouse_oauth_errors_total{tenant="acme",error="invalid_client"} 2"#,
        r#"gatehouse_oauth_errors_total{tenant="acme",error="unsupported_grant_type"} 1"#,
        r#"gatehouse_oauth_errors_total{tenant="acme",error="invalid_request"} 2"#,
    ] {
        assert!(rendered.contains(needle), "{needle} in {rendered}");
    }
}

#[tokio::test]
async fn an_unknown_tenant_is_a_404_in_the_shape_of_the_endpoint() {
    let (app, _) = app().await;
    let r = send(
        &app,
        post("/nope/oauth2/token", "grant_type=client_credentials"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(json(r).await["error_description"], "no tenant named nope");

    let r = send(&app, get("/nope/oauth2/authorize?client_id=app")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(header(&r, header::CONTENT_TYPE).starts_with("text/html"));
    assert!(text(r).await.contains("There is no tenant named nope."));

    let r = send(&app, get("/nope/userinfo")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(header(&r, header::WWW_AUTHENTICATE).starts_with("Bearer error=\"invalid_request\""));

    let r = send(&app, get("/acme/no-such-endpoint")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(json(r).await["error"], "invalid_request");
}

#[tokio::test]
async fn userinfo_answers_bearer_challenges() {
    let (app, _) = app().await;
    let r = send(&app, get("/acme/userinfo")).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(&r, header::WWW_AUTHENTICATE), "Bearer");
    let r = send(
        &app,
        Request::get("/acme/userinfo")
            .header(header::AUTHORIZATION, "Bearer not-a-token")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(header(&r, header::WWW_AUTHENTICATE).starts_with("Bearer error=\"invalid_token\""));

    // A client-credentials token carries no openid scope.
    let token = json(send(&app, post("/acme/oauth2/token", &format!("grant_type=client_credentials&client_id=app&client_secret={SECRET}&scope=openid"))).await)
        .await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = send(
        &app,
        Request::get("/acme/userinfo")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "openid, but no user behind the token"
    );
    assert!(header(&r, header::WWW_AUTHENTICATE).contains("not issued for a user"));
}

#[tokio::test]
async fn browser_errors_are_pages_or_redirects_to_registered_uris_only() {
    let (app, metrics) = app().await;
    let challenge = gatehouse_core::pkce::s256(&"v".repeat(43));
    let r = send(&app, get("/acme/oauth2/authorize?client_id=app&response_type=code&redirect_uri=https%3A%2F%2Fevil.example.com%2F")).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(header(&r, header::LOCATION), "", "never redirected");
    assert_eq!(header(&r, header::X_FRAME_OPTIONS), "DENY");
    let page = text(r).await;
    assert!(page.contains("redirect_uri is not registered"));
    // The tenant as people know it (its display name), not its slug.
    assert!(page.contains("<header><p>Acme</p>"), "{page}");

    let uri = format!(
        "/acme/oauth2/authorize?client_id=app&response_type=code&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&state=s&prompt=none&code_challenge={challenge}&code_challenge_method=S256"
    );
    let r = send(&app, get(&uri)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        header(&r, header::LOCATION),
        "https://app.example.com/cb?error=login_required&error_description=nobody+is+signed+in&state=s&iss=https%3A%2F%2Fauth.example.com%2Facme"
    );

    // Without prompt=none: to sign-in, with a browser binding cookie scoped to the tenant.
    let uri = uri.replace("&prompt=none", "");
    let r = send(&app, get(&uri)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        header(&r, header::LOCATION).starts_with("https://auth.example.com/acme/login?request=")
    );
    let cookie = header(&r, header::SET_COOKIE);
    assert!(
        cookie.starts_with("gatehouse_browser=")
            && cookie.contains("Path=/acme; HttpOnly; SameSite=Lax; Secure"),
        "{cookie}"
    );

    // A sign-in form posted without its binding: refused, as a page.
    let r = send(
        &app,
        post("/acme/login", "request=x&csrf=y&username=a&password=b"),
    )
    .await;
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "an unknown request has expired"
    );
    let rendered = metrics.render();
    assert!(
        rendered
            .contains(r#"gatehouse_oauth_errors_total{tenant="acme",error="login_required"} 1"#),
        "{rendered}"
    );
}

#[tokio::test]
async fn discovery_names_the_endpoints_and_may_be_cached_briefly() {
    let (app, _) = app().await;
    for path in [
        "/.well-known/oauth-authorization-server/acme",
        "/acme/.well-known/oauth-authorization-server",
        "/acme/.well-known/openid-configuration",
    ] {
        let r = send(&app, get(path)).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&r, header::CACHE_CONTROL), "public, max-age=300");
        assert_eq!(header(&r, header::ACCESS_CONTROL_ALLOW_ORIGIN), "*");
        let doc = json(r).await;
        assert_eq!(doc["issuer"], "https://auth.example.com/acme");
        assert_eq!(
            doc["token_endpoint"],
            "https://auth.example.com/acme/oauth2/token"
        );
        assert_eq!(
            doc["grant_types_supported"],
            serde_json::json!(["client_credentials", "authorization_code"])
        );
    }
    let r = send(&app, get("/acme/jwks.json")).await;
    assert_eq!(header(&r, header::CONTENT_TYPE), "application/jwk-set+json");
    assert_eq!(json(r).await["keys"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_issuer_url_in_a_browser_is_a_page_of_the_tenants_endpoints() {
    let (app, _) = app().await;
    let r = send(&app, get("/acme")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, header::X_FRAME_OPTIONS), "DENY");
    assert!(header(&r, header::CONTENT_TYPE).starts_with("text/html"));
    let page = text(r).await;
    assert!(
        page.contains("<header><p>Acme</p><h1>Endpoints</h1>"),
        "{page}"
    );
    for url in [
        "https://auth.example.com/acme/.well-known/openid-configuration",
        "https://auth.example.com/acme/oauth2/token",
        "https://auth.example.com/acme/jwks.json",
    ] {
        assert!(
            page.contains(&format!("<a href=\"{url}\">")),
            "{url} in {page}"
        );
    }
    assert_eq!(
        send(&app, get("/nope")).await.status(),
        StatusCode::NOT_FOUND
    );
}
