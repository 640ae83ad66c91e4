//! The grants of `examples/`, each driven the way its client would use it, against any
//! Gatehouse serving those manifests (standalone in `tests/examples.rs`, the operator on a real
//! API server in `tests/kubernetes.rs`). `base` is the public URL (`http://127.0.0.1:PORT`).

use super::*;

/// The redirect URI `examples/web-app.yaml` registers.
pub const CALLBACK: &str = "http://127.0.0.1:9999/callback";

async fn metadata(base: &str, tenant: &str) -> Value {
    let url = format!("{base}/.well-known/oauth-authorization-server/{tenant}");
    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status(), 200, "metadata of {tenant}");
    r.json().await.unwrap()
}

/// One endpoint of a tenant, read from its discovery document.
pub async fn endpoint(base: &str, tenant: &str, name: &str) -> String {
    metadata(base, tenant).await[name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} in metadata"))
        .to_string()
}

/// examples/m2m-client.yaml: the README's first token.
pub async fn billing_client_credentials(base: &str) {
    let r = post_form(
        &format!("{base}/acme/oauth2/token"),
        Some(&basic("acme-billing", "quickstart-secret-change-me")),
        "grant_type=client_credentials&scope=billing.read",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        jwt_payload(r.body["access_token"].as_str().unwrap())["sub"],
        "client:acme-billing"
    );
}

/// examples/password-app.yaml: alice's password, then a refresh.
pub async fn mobile_password_and_refresh(base: &str) {
    let token = format!("{base}/acme/oauth2/token");
    let r = post_form(&token, Some(&basic("acme-mobile", "mobile-secret-change-me")), "grant_type=password&username=alice&password=wonderland&scope=openid%20offline_access%20billing.read").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let rt = r.body["refresh_token"].as_str().unwrap();
    let r = post_form(
        &token,
        Some(&basic("acme-mobile", "mobile-secret-change-me")),
        &form(&[("grant_type", "refresh_token"), ("refresh_token", rt)]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Posts alice's password to the sign-in page `login`; returns the page that follows.
async fn log_in(b: &mut Browser, base: &str, tenant: &str, login: &Page) -> Page {
    b.post(
        &format!("{base}/{tenant}/login"),
        &[
            ("request", &login.field("request")),
            ("csrf", &login.field("csrf")),
            ("username", "alice"),
            ("password", "wonderland"),
        ],
    )
    .await
}

/// Signs alice in and consents, from an authorization URL; returns the final redirect.
pub async fn sign_in(b: &mut Browser, base: &str, tenant: &str, url: &str) -> Page {
    let to_login = b.get(url).await;
    assert_eq!(to_login.status, 303, "{}", to_login.body);
    let login = b.get(to_login.location.as_deref().unwrap()).await;
    let consent = log_in(b, base, tenant, &login).await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    b.post(
        &format!("{base}/{tenant}/consent"),
        &[
            ("request", &consent.field("request")),
            ("csrf", &consent.field("csrf")),
            ("decision", "allow"),
        ],
    )
    .await
}

/// examples/web-app.yaml and examples/single-page-app.yaml: code + PKCE, with and without a
/// secret.
pub async fn portal_and_spa_code_with_pkce(base: &str) {
    let token = endpoint(base, "acme", "token_endpoint").await;
    let authorize = endpoint(base, "acme", "authorization_endpoint").await;
    for (client, redirect, secret) in [
        ("acme-portal", CALLBACK, Some("portal-secret-change-me")),
        ("acme-spa", "http://127.0.0.1:9999/spa", None),
    ] {
        let (verifier, challenge) = pkce_pair();
        let url = format!(
            "{authorize}?{}",
            form(&[
                ("client_id", client),
                ("redirect_uri", redirect),
                ("response_type", "code"),
                ("scope", "openid profile billing.read"),
                ("state", "s1"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ])
        );
        let mut b = Browser::new();
        let back = sign_in(&mut b, base, "acme", &url).await;
        assert!(
            back.location.as_deref().unwrap().starts_with(redirect),
            "{client}"
        );
        assert_eq!(back.param("state").as_deref(), Some("s1"));
        let code = back.param("code").unwrap();
        let mut pairs = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect),
            ("code_verifier", verifier.as_str()),
        ];
        if secret.is_none() {
            pairs.push(("client_id", client));
        }
        let auth = secret.map(|s| basic(client, s));
        let r = post_form(&token, auth.as_deref(), &form(&pairs)).await;
        assert_eq!(r.status, 200, "{client}: {}", r.body);
        assert!(r.body["id_token"].is_string(), "{client}");
        assert_eq!(
            jwt_payload(r.body["access_token"].as_str().unwrap())["sub"],
            "alice"
        );
    }
}

/// examples/device.yaml: the TV shows a code, alice approves it elsewhere, the TV gets tokens.
pub async fn tv_device_code(base: &str) {
    let d = post_form(
        &endpoint(base, "acme", "device_authorization_endpoint").await,
        None,
        "client_id=acme-tv&scope=offline_access%20billing.read",
    )
    .await;
    assert_eq!(d.status, 200, "{}", d.body);
    approve_tv(
        base,
        d.body["verification_uri_complete"].as_str().unwrap(),
        d.body["user_code"].as_str().unwrap(),
    )
    .await;
    let r = post_form(
        &endpoint(base, "acme", "token_endpoint").await,
        None,
        &form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("client_id", "acme-tv"),
            ("device_code", d.body["device_code"].as_str().unwrap()),
        ]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["refresh_token"].is_string());
}

/// alice approves the device of examples/device.yaml showing `user_code`: she opens
/// `verification_uri_complete`, signs in, confirms the code and allows.
pub async fn approve_tv(base: &str, verification_uri_complete: &str, user_code: &str) {
    let mut b = Browser::new();
    let to_login = b.get(verification_uri_complete).await;
    let login = b.get(to_login.location.as_deref().unwrap()).await;
    let device_page = format!("{base}/acme/device");
    let entry = log_in(&mut b, base, "acme", &login).await;
    let consent = b
        .post(
            &device_page,
            &[
                ("request", &entry.field("request")),
                ("csrf", &entry.field("csrf")),
                ("user_code", user_code),
            ],
        )
        .await;
    assert!(consent.body.contains("Acme TV"), "{}", consent.body);
    let done = b
        .post(
            &device_page,
            &[
                ("request", &consent.field("request")),
                ("csrf", &consent.field("csrf")),
                ("user_code", &consent.field("user_code")),
                ("decision", "allow"),
            ],
        )
        .await;
    assert!(done.body.contains("Device connected"), "{}", done.body);
}

/// examples/jwt-bearer-service.yaml: the service signs with the fixture key whose public half
/// the example registers, both to authenticate and to ask for alice's token.
pub async fn reporter_jwt_bearer(base: &str) {
    use base64::Engine;
    let token = endpoint(base, "acme", "token_endpoint").await;
    let pem = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reporter-es256.pem"),
    )
    .unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    let key = jsonwebtoken::EncodingKey::from_ec_der(&der);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let sign = |sub: &str, jti: &str| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("reporter-2026".into());
        let claims = serde_json::json!({"iss": "acme-reporter", "sub": sub, "aud": token,
            "iat": now, "exp": now + 60, "jti": jti});
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    };
    let r = post_form(
        &token,
        None,
        &form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", &sign("alice", "grant-1")),
            ("scope", "billing.read"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &sign("acme-reporter", "client-1")),
        ]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let claims = jwt_payload(r.body["access_token"].as_str().unwrap());
    assert_eq!(
        (claims["sub"].as_str(), claims["client_id"].as_str()),
        (Some("alice"), Some("acme-reporter"))
    );
}

/// examples/legacy-implicit.yaml: a tenant that enables only the implicit grant serves that
/// and refuses the rest.
pub async fn legacy_implicit(base: &str) {
    let url = format!(
        "{}?{}",
        endpoint(base, "legacy", "authorization_endpoint").await,
        form(&[
            ("client_id", "legacy-dashboard"),
            ("redirect_uri", "http://127.0.0.1:9999/dashboard"),
            ("response_type", "token"),
            ("scope", "reports.read"),
            ("state", "s2"),
        ])
    );
    let mut b = Browser::new();
    let back = sign_in(&mut b, base, "legacy", &url).await;
    let location = back.location.clone().unwrap();
    assert!(location.contains('#'), "token in the fragment: {location}");
    assert!(back.param("access_token").is_some(), "{location}");
    let metadata = metadata(base, "legacy").await;
    assert_eq!(
        metadata["grant_types_supported"],
        serde_json::json!(["implicit"])
    );
    let r = post_form(
        &endpoint(base, "legacy", "token_endpoint").await,
        None,
        "grant_type=client_credentials&client_id=legacy-dashboard",
    )
    .await;
    assert_eq!(r.error(), "unsupported_grant_type", "{}", r.body);
}
