//! The authorization code flow with PKCE (RFC 6749 4.1, RFC 7636) and OpenID Connect, the
//! implicit grant, sessions, consent and logout, driven over HTTP as a browser would.

mod support;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::Value;
use support::*;

const TENANT: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Tenant
metadata: {name: umbrella}
spec:
  displayName: Umbrella Corp
  grantTypes: [authorization_code, refresh_token, implicit]
  authorizationCode: {ttl: 30s}
  scopes: [{name: files.read, description: Read your files}]
  users: {secretRef: {name: people, namespace: umbrella}}
---
apiVersion: v1
kind: Secret
metadata: {name: people, namespace: umbrella, labels: {gatehouse.dev/watch: 'true'}}
stringData:
  users.yaml: |
    - username: alice
      passwordHash: "$argon2id$v=19$m=19456,t=2,p=1$yxZgyeenk6eyB64gIdCApQ$jkr4ytvV4HHADYPN5XK51q7e8fubRml7/6Zo0FGD0WM"
      email: alice@example.com
      name: Alice Liddell
      groups: [finance]
---
apiVersion: gatehouse.dev/v1alpha1
kind: OAuthClient
metadata: {name: spa, namespace: umbrella}
spec:
  tenantRef: umbrella
  clientName: Files SPA
  public: true
  grantTypes: [authorization_code, refresh_token, implicit]
  redirectUris: [http://127.0.0.1:9/callback]
  postLogoutRedirectUris: [http://127.0.0.1:9/bye]
  scopes: [openid, profile, email, offline_access, files.read]
---
apiVersion: gatehouse.dev/v1alpha1
kind: OAuthClient
metadata: {name: web, namespace: umbrella}
spec:
  tenantRef: umbrella
  clientName: Files Web
  grantTypes: [authorization_code]
  redirectUris: [http://127.0.0.1:9/web/callback]
  scopes: [openid, files.read]
  secretRef: {name: web-credentials, generate: false}
---
apiVersion: v1
kind: Secret
metadata: {name: web-credentials, namespace: umbrella, labels: {gatehouse.dev/watch: 'true'}}
stringData: {client_secret: web-secret}
"#;

const SPA: &str = "umbrella-spa";
const CALLBACK: &str = "http://127.0.0.1:9/callback";

fn start(redis: &RedisServer) -> Gatehouse {
    Gatehouse::start(&redis.url(), &[("umbrella.yaml", TENANT)])
}

fn authorize_url(g: &Gatehouse, extra: &[(&str, &str)], challenge: &str) -> String {
    let mut pairs = vec![
        ("client_id", SPA),
        ("redirect_uri", CALLBACK),
        ("response_type", "code"),
        ("scope", "openid profile email offline_access files.read"),
        ("state", "st-123"),
        ("nonce", "n-456"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ];
    for (k, v) in extra {
        pairs.retain(|(key, _)| key != k);
        pairs.push((k, v));
    }
    format!("{}/umbrella/oauth2/authorize?{}", g.base, form(&pairs))
}

/// Signs in and consents from the start of a flow; returns the final redirect.
async fn sign_in_and_consent(b: &mut Browser, g: &Gatehouse, url: &str) -> Page {
    let page = b.get(url).await;
    assert_eq!(page.status, 303, "{}", page.body);
    let login_url = page.location.clone().unwrap();
    assert!(
        login_url.starts_with(&format!("{}/umbrella/login?request=", g.base)),
        "{login_url}"
    );
    let login = b.get(&login_url).await;
    assert_eq!(login.status, 200);
    assert!(
        login.body.contains("Umbrella Corp") && login.body.contains("Files SPA"),
        "{}",
        login.body
    );
    let consent = b
        .post(
            &format!("{}/umbrella/login", g.base),
            &[
                ("request", &login.field("request")),
                ("csrf", &login.field("csrf")),
                ("username", "alice"),
                ("password", "wonderland"),
            ],
        )
        .await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    assert!(
        consent.body.contains("Read your files") && consent.body.contains("Allow"),
        "{}",
        consent.body
    );
    b.post(
        &format!("{}/umbrella/consent", g.base),
        &[
            ("request", &consent.field("request")),
            ("csrf", &consent.field("csrf")),
            ("decision", "allow"),
        ],
    )
    .await
}

async fn exchange(g: &Gatehouse, code: &str, verifier: &str) -> Reply {
    let body = form(&[
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", CALLBACK),
        ("client_id", SPA),
        ("code_verifier", verifier),
    ]);
    post_form(&format!("{}/umbrella/oauth2/token", g.base), None, &body).await
}

#[tokio::test]
async fn code_flow_with_pkce_issues_verified_tokens_and_userinfo() {
    let redis = RedisServer::start();
    let g = start(&redis);
    let meta = g.metadata("umbrella").await;
    assert_eq!(
        meta["authorization_endpoint"],
        format!("{}/umbrella/oauth2/authorize", g.base)
    );
    assert_eq!(
        meta["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(
        meta["response_types_supported"],
        serde_json::json!(["code", "token"])
    );

    let (verifier, challenge) = pkce_pair();
    let mut b = Browser::new();
    let done = sign_in_and_consent(&mut b, &g, &authorize_url(&g, &[], &challenge)).await;
    assert_eq!(done.status, 303);
    assert!(done.location.as_deref().unwrap().starts_with(CALLBACK));
    assert_eq!(done.param("state").as_deref(), Some("st-123"));
    assert_eq!(done.param("iss"), Some(g.issuer("umbrella")), "RFC 9207");
    let code = done.param("code").unwrap();

    let r = exchange(&g, &code, &verifier).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (at, id_token) = (
        r.body["access_token"].as_str().unwrap(),
        r.body["id_token"].as_str().unwrap(),
    );
    assert!(
        r.body["refresh_token"].is_string(),
        "offline_access was granted"
    );

    let jwks: JwkSet = reqwest::get(g.endpoint("umbrella", "jwks_uri").await)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(id_token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    let key = DecodingKey::from_jwk(jwks.find(header.kid.as_deref().unwrap()).unwrap()).unwrap();
    let mut v = Validation::new(header.alg);
    v.set_issuer(&[g.issuer("umbrella")]);
    v.set_audience(&[SPA]);
    let claims: Value = jsonwebtoken::decode(id_token, &key, &v).unwrap().claims;
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["nonce"], "n-456");
    assert_eq!(claims["name"], "Alice Liddell");
    assert_eq!(claims["email"], "alice@example.com");
    assert!(claims["sid"].is_string() && claims["auth_time"].is_u64());
    assert_eq!(
        claims["at_hash"].as_str().unwrap(),
        gatehouse_core::id_token::at_hash(at, gatehouse_core::SigningAlgorithm::ES256)
    );

    let client = reqwest::Client::new();
    let info: Value = client
        .get(g.endpoint("umbrella", "userinfo_endpoint").await)
        .bearer_auth(at)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            info["sub"].as_str(),
            info["email"].as_str(),
            info["email_verified"].as_bool()
        ),
        (Some("alice"), Some("alice@example.com"), Some(true))
    );
    assert_eq!(info["groups"], serde_json::json!(["finance"]));
    let denied = client
        .get(g.endpoint("umbrella", "userinfo_endpoint").await)
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);
    assert!(
        denied.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );

    // Session and consent are remembered: the next authorization goes straight back.
    let again = b.get(&authorize_url(&g, &[], &challenge)).await;
    assert_eq!(again.status, 303);
    assert!(again.param("code").is_some(), "{:?}", again.location);
    // prompt=consent asks again; prompt=login signs in again.
    assert_eq!(
        b.get(&authorize_url(&g, &[("prompt", "consent")], &challenge))
            .await
            .status,
        200
    );
    let relogin = b
        .get(&authorize_url(&g, &[("prompt", "login")], &challenge))
        .await;
    assert!(
        relogin
            .location
            .unwrap()
            .contains("/umbrella/login?request=")
    );
}

#[tokio::test]
async fn codes_are_single_use_and_checked_to_the_letter() {
    let redis = RedisServer::start();
    let g = start(&redis);
    let (verifier, challenge) = pkce_pair();
    let mut b = Browser::new();
    let code = sign_in_and_consent(&mut b, &g, &authorize_url(&g, &[], &challenge))
        .await
        .param("code")
        .unwrap();

    let wrong_verifier = exchange(&g, &code, &format!("{verifier}x")).await;
    assert_eq!(
        (wrong_verifier.status, wrong_verifier.error()),
        (400, "invalid_grant")
    );
    // A failed attempt spent the code: it is now a replay, and nothing was issued to revoke.
    let r = exchange(&g, &code, &verifier).await;
    assert_eq!(r.error(), "invalid_grant");

    // Replaying a code revokes what its first use issued.
    let code = b
        .get(&authorize_url(&g, &[], &challenge))
        .await
        .param("code")
        .unwrap();
    let first = exchange(&g, &code, &verifier).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let replay = exchange(&g, &code, &verifier).await;
    assert_eq!((replay.status, replay.error()), (400, "invalid_grant"));
    let introspect = post_form(
        &format!("{}/umbrella/oauth2/introspect", g.base),
        Some(&basic("umbrella-web", "web-secret")),
        &form(&[("token", first.body["access_token"].as_str().unwrap())]),
    )
    .await;
    assert_eq!(
        introspect.body["active"], false,
        "the replay revoked the first access token"
    );
    let r = post_form(
        &format!("{}/umbrella/oauth2/token", g.base),
        None,
        &form(&[
            ("grant_type", "refresh_token"),
            (
                "refresh_token",
                first.body["refresh_token"].as_str().unwrap(),
            ),
            ("client_id", SPA),
        ]),
    )
    .await;
    assert_eq!(r.error(), "invalid_grant", "and its refresh token");

    // Wrong redirect_uri at the token endpoint.
    let code = b
        .get(&authorize_url(&g, &[], &challenge))
        .await
        .param("code")
        .unwrap();
    let body = form(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", "http://127.0.0.1:9/other"),
        ("client_id", SPA),
        ("code_verifier", &verifier),
    ]);
    let r = post_form(&format!("{}/umbrella/oauth2/token", g.base), None, &body).await;
    assert_eq!(r.error(), "invalid_grant");
}

#[tokio::test]
async fn authorization_errors_redirect_only_to_registered_uris() {
    let redis = RedisServer::start();
    let g = start(&redis);
    let (_, challenge) = pkce_pair();
    let mut b = Browser::new();
    // Unregistered redirect URI: an error page, never a redirect.
    let page = b
        .get(&authorize_url(
            &g,
            &[("redirect_uri", "https://evil.example.com/cb")],
            &challenge,
        ))
        .await;
    assert_eq!((page.status, page.location.is_none()), (400, true));
    assert!(
        page.body.contains("redirect_uri is not registered"),
        "{}",
        page.body
    );
    let page = b
        .get(&authorize_url(&g, &[("client_id", "nobody")], &challenge))
        .await;
    assert_eq!((page.status, page.location.is_none()), (400, true));
    // Other errors go back to the client with state and iss.
    for (extra, code) in [
        (vec![("code_challenge_method", "plain")], "invalid_request"),
        (
            vec![("response_type", "id_token")],
            "unsupported_response_type",
        ),
        (vec![("scope", "openid admin")], "invalid_scope"),
        (vec![("prompt", "none")], "login_required"),
    ] {
        let page = b.get(&authorize_url(&g, &extra, &challenge)).await;
        assert_eq!(page.status, 303, "{extra:?}");
        assert!(page.location.as_deref().unwrap().starts_with(CALLBACK));
        assert_eq!(page.param("error").as_deref(), Some(code), "{extra:?}");
        assert_eq!(page.param("state").as_deref(), Some("st-123"));
    }
    // A public client must use PKCE.
    let url =
        authorize_url(&g, &[], &challenge).replace(&format!("&code_challenge={challenge}"), "");
    assert_eq!(
        b.get(&url).await.param("error").as_deref(),
        Some("invalid_request")
    );
}

#[tokio::test]
async fn wrong_passwords_denied_consent_and_forged_forms() {
    let redis = RedisServer::start();
    let g = start(&redis);
    let (_, challenge) = pkce_pair();
    let mut b = Browser::new();
    let login_url = b
        .get(&authorize_url(&g, &[], &challenge))
        .await
        .location
        .unwrap();
    let login = b.get(&login_url).await;
    let retry = b
        .post(
            &format!("{}/umbrella/login", g.base),
            &[
                ("request", &login.field("request")),
                ("csrf", &login.field("csrf")),
                ("username", "alice"),
                ("password", "nope"),
            ],
        )
        .await;
    assert_eq!(retry.status, 200);
    assert!(
        retry.body.contains("Wrong username or password."),
        "{}",
        retry.body
    );
    assert!(
        retry.body.contains("value=\"alice\""),
        "the username is kept"
    );

    // The same form posted from another browser (no binding cookie) is refused.
    let mut other = Browser::new();
    let forged = other
        .post(
            &format!("{}/umbrella/login", g.base),
            &[
                ("request", &login.field("request")),
                ("csrf", &login.field("csrf")),
                ("username", "alice"),
                ("password", "wonderland"),
            ],
        )
        .await;
    assert_eq!(forged.status, 403);

    let consent = b
        .post(
            &format!("{}/umbrella/login", g.base),
            &[
                ("request", &retry.field("request")),
                ("csrf", &retry.field("csrf")),
                ("username", "alice"),
                ("password", "wonderland"),
            ],
        )
        .await;
    let denied = b
        .post(
            &format!("{}/umbrella/consent", g.base),
            &[
                ("request", &consent.field("request")),
                ("csrf", &consent.field("csrf")),
                ("decision", "deny"),
            ],
        )
        .await;
    assert_eq!(denied.param("error").as_deref(), Some("access_denied"));
    assert_eq!(denied.param("state").as_deref(), Some("st-123"));
    // The request is gone once answered.
    let again = b
        .post(
            &format!("{}/umbrella/consent", g.base),
            &[
                ("request", &consent.field("request")),
                ("csrf", &consent.field("csrf")),
                ("decision", "allow"),
            ],
        )
        .await;
    assert_eq!(again.status, 400);
    assert!(again.body.contains("expired"));
}

#[tokio::test]
async fn implicit_returns_a_token_in_the_fragment_and_logout_ends_the_session() {
    let redis = RedisServer::start();
    let g = start(&redis);
    let (verifier, challenge) = pkce_pair();
    let mut b = Browser::new();
    let done = sign_in_and_consent(&mut b, &g, &authorize_url(&g, &[], &challenge)).await;
    let tokens = exchange(&g, &done.param("code").unwrap(), &verifier).await;
    let id_token = tokens.body["id_token"].as_str().unwrap().to_string();

    let url = authorize_url(
        &g,
        &[("response_type", "token"), ("scope", "files.read")],
        &challenge,
    );
    let page = b.get(&url).await;
    let location = page.location.clone().unwrap();
    assert!(
        location.starts_with(&format!("{CALLBACK}#access_token=")),
        "{location}"
    );
    assert_eq!(page.param("token_type").as_deref(), Some("Bearer"));
    assert!(
        page.param("refresh_token").is_none(),
        "implicit never issues refresh tokens"
    );
    assert_eq!(page.param("state").as_deref(), Some("st-123"));

    // Logout with a registered post-logout URI.
    let end = format!(
        "{}/umbrella/oauth2/logout?{}",
        g.base,
        form(&[
            ("id_token_hint", &id_token),
            ("post_logout_redirect_uri", "http://127.0.0.1:9/bye"),
            ("state", "s2")
        ])
    );
    let out = b.get(&end).await;
    assert_eq!(
        out.location.as_deref(),
        Some("http://127.0.0.1:9/bye?state=s2")
    );
    let after = b
        .get(&authorize_url(&g, &[("prompt", "none")], &challenge))
        .await;
    assert_eq!(
        after.param("error").as_deref(),
        Some("login_required"),
        "the session ended"
    );
    let bad = b
        .get(&format!(
            "{}/umbrella/oauth2/logout?{}",
            g.base,
            form(&[
                ("id_token_hint", &id_token),
                ("post_logout_redirect_uri", "https://evil.example.com")
            ])
        ))
        .await;
    assert_eq!((bad.status, bad.location.is_none()), (400, true));
}

/// F15 of the trust boundary: a sign-out link without an `id_token_hint` (an `<img>` on any
/// page) ends nothing; the person is asked, and only their answer from this browser signs out.
#[tokio::test]
async fn logout_without_a_hint_asks_first() {
    let redis = RedisServer::start();
    let g = start(&redis);
    let (_, challenge) = pkce_pair();
    let mut b = Browser::new();
    sign_in_and_consent(&mut b, &g, &authorize_url(&g, &[], &challenge)).await;
    let still_signed_in = |b: &mut Browser| {
        let url = authorize_url(&g, &[("prompt", "none")], &challenge);
        let mut b2 = Browser::new();
        b2.cookies.clone_from(&b.cookies);
        async move { b2.get(&url).await.param("code").is_some() }
    };
    let logout = format!("{}/umbrella/oauth2/logout", g.base);
    let asked = b.get(&format!("{logout}?state=s3")).await;
    assert_eq!(asked.status, 200, "{}", asked.body);
    assert!(asked.body.contains("Sign out?"), "{}", asked.body);
    assert!(
        still_signed_in(&mut b).await,
        "a hint-less GET ends nothing"
    );
    // A forged answer (another site cannot know the confirmation) asks again.
    let forged = b
        .post(&logout, &[("confirm", "00000000000000000000000000000000")])
        .await;
    assert!(forged.body.contains("Sign out?"), "{}", forged.body);
    assert!(still_signed_in(&mut b).await);
    let out = b
        .post(
            &logout,
            &[("confirm", &asked.field("confirm")), ("state", "s3")],
        )
        .await;
    assert_eq!(out.status, 200, "{}", out.body);
    assert!(out.body.contains("You are signed out"), "{}", out.body);
    assert!(
        !still_signed_in(&mut b).await,
        "the person's answer signs out"
    );
}

#[tokio::test]
async fn browser_apps_get_cors_for_their_registered_origins_and_max_age_forces_sign_in() {
    let redis = RedisServer::start();
    let g = start(&redis);
    let token = format!("{}/umbrella/oauth2/token", g.base);
    let client = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, &token)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let ok = preflight("http://127.0.0.1:9").await.unwrap();
    assert_eq!(ok.status(), 204);
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "http://127.0.0.1:9"
    );
    assert!(
        ok.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    let other = preflight("https://evil.example.com").await.unwrap();
    assert!(
        other.headers().get("access-control-allow-origin").is_none(),
        "unregistered origins get nothing"
    );
    let post = client
        .post(&token)
        .header("origin", "http://127.0.0.1:9")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=refresh_token&refresh_token=x&client_id=umbrella-spa")
        .send()
        .await
        .unwrap();
    assert_eq!(
        post.headers()["access-control-allow-origin"],
        "http://127.0.0.1:9"
    );

    // max_age: a recent sign-in satisfies it (an older one asking for a fresh sign-in is
    // the browser flow's test, with a clock it moves instead of sleeping).
    let (_, challenge) = pkce_pair();
    let mut b = Browser::new();
    sign_in_and_consent(&mut b, &g, &authorize_url(&g, &[], &challenge)).await;
    let page = b
        .get(&authorize_url(&g, &[("max_age", "3600")], &challenge))
        .await;
    assert!(page.param("code").is_some());
}

#[tokio::test]
async fn the_memory_store_runs_the_browser_flow_refresh_reuse_and_code_replay_too() {
    let g = Gatehouse::start("memory://", &[("umbrella.yaml", TENANT)]);
    let (verifier, challenge) = pkce_pair();
    let mut b = Browser::new();
    let code = sign_in_and_consent(&mut b, &g, &authorize_url(&g, &[], &challenge))
        .await
        .param("code")
        .unwrap();
    let first = exchange(&g, &code, &verifier).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(
        exchange(&g, &code, &verifier).await.error(),
        "invalid_grant"
    );
    let token = format!("{}/umbrella/oauth2/token", g.base);
    let rt = first.body["refresh_token"].as_str().unwrap();
    let refresh = |rt: String| {
        let token = token.clone();
        async move {
            post_form(
                &token,
                None,
                &form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &rt),
                    ("client_id", SPA),
                ]),
            )
            .await
        }
    };
    assert_eq!(
        refresh(rt.to_string()).await.error(),
        "invalid_grant",
        "the replayed code revoked its refresh token"
    );
    let code = b
        .get(&authorize_url(&g, &[], &challenge))
        .await
        .param("code")
        .unwrap();
    let fresh = exchange(&g, &code, &verifier).await;
    let rt1 = fresh.body["refresh_token"].as_str().unwrap().to_string();
    let second = refresh(rt1.clone()).await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(refresh(rt1).await.error(), "invalid_grant", "reuse");
    assert_eq!(
        refresh(second.body["refresh_token"].as_str().unwrap().to_string())
            .await
            .error(),
        "invalid_grant",
        "family revoked"
    );
}
