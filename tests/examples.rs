//! The manifests in `examples/` load cleanly (every object Ready) and the README's commands
//! against them work.

mod support;

use support::*;

fn examples() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    dir
}

#[tokio::test]
async fn every_example_is_ready_and_the_readme_commands_work() {
    let g = Gatehouse::start_in("memory://", examples());
    let out = g.stdout();
    assert!(!out.contains(": "), "some example is not ready:\n{out}");
    for client in [
        "acme/billing",
        "acme/portal",
        "acme/spa",
        "acme/mobile",
        "acme/tv",
        "acme/reporter",
        "acme/old-dashboard",
    ] {
        let row = out
            .lines()
            .find(|l| l.starts_with(client))
            .unwrap_or_else(|| panic!("{client} in:\n{out}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!((cells[4], cells[5]), ("True", "True"), "{row}");
    }
    let token = format!("{}/acme/oauth2/token", g.base);
    let r = post_form(
        &token,
        Some(&basic("acme-billing", "quickstart-secret-change-me")),
        "grant_type=client_credentials&scope=billing.read",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
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
    let r = post_form(
        &format!("{}/acme/oauth2/device_authorization", g.base),
        None,
        "client_id=acme-tv&scope=billing.read",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let legacy = g.metadata("legacy").await;
    assert_eq!(
        legacy["response_types_supported"],
        serde_json::json!(["token"])
    );
}

const CALLBACK: &str = "http://127.0.0.1:9999/callback";

/// Signs alice in and consents, from an authorization URL; returns the final redirect.
async fn sign_in(b: &mut Browser, g: &Gatehouse, tenant: &str, url: &str) -> Page {
    let to_login = b.get(url).await;
    assert_eq!(to_login.status, 303, "{}", to_login.body);
    let login = b.get(to_login.location.as_deref().unwrap()).await;
    let consent = b
        .post(
            &format!("{}/{tenant}/login", g.base),
            &[
                ("request", &login.field("request")),
                ("csrf", &login.field("csrf")),
                ("username", "alice"),
                ("password", "wonderland"),
            ],
        )
        .await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    b.post(
        &format!("{}/{tenant}/consent", g.base),
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
#[tokio::test]
async fn the_web_app_and_the_spa_sign_users_in_with_pkce() {
    let g = Gatehouse::start_in("memory://", examples());
    let token = g.endpoint("acme", "token_endpoint").await;
    let authorize = g.endpoint("acme", "authorization_endpoint").await;
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
        let back = sign_in(&mut b, &g, "acme", &url).await;
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
#[tokio::test]
async fn the_device_example_is_approved_from_another_device() {
    let g = Gatehouse::start_in("memory://", examples());
    let d = post_form(
        &g.endpoint("acme", "device_authorization_endpoint").await,
        None,
        "client_id=acme-tv&scope=offline_access%20billing.read",
    )
    .await;
    assert_eq!(d.status, 200, "{}", d.body);
    let mut b = Browser::new();
    let to_login = b
        .get(d.body["verification_uri_complete"].as_str().unwrap())
        .await;
    let login = b.get(to_login.location.as_deref().unwrap()).await;
    let device_page = format!("{}/acme/device", g.base);
    let entry = b
        .post(
            &format!("{}/acme/login", g.base),
            &[
                ("request", &login.field("request")),
                ("csrf", &login.field("csrf")),
                ("username", "alice"),
                ("password", "wonderland"),
            ],
        )
        .await;
    let consent = b
        .post(
            &device_page,
            &[
                ("request", &entry.field("request")),
                ("csrf", &entry.field("csrf")),
                ("user_code", d.body["user_code"].as_str().unwrap()),
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
    let r = post_form(
        &g.endpoint("acme", "token_endpoint").await,
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

/// examples/jwt-bearer-service.yaml: the service signs with the fixture key whose public half
/// the example registers, both to authenticate and to ask for alice's token.
#[tokio::test]
async fn the_jwt_bearer_service_example_uses_its_own_key() {
    use base64::Engine;
    let g = Gatehouse::start_in("memory://", examples());
    let token = g.endpoint("acme", "token_endpoint").await;
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
#[tokio::test]
async fn the_partial_tenant_serves_its_one_grant_and_nothing_else() {
    let g = Gatehouse::start_in("memory://", examples());
    let url = format!(
        "{}?{}",
        g.endpoint("legacy", "authorization_endpoint").await,
        form(&[
            ("client_id", "legacy-dashboard"),
            ("redirect_uri", "http://127.0.0.1:9999/dashboard"),
            ("response_type", "token"),
            ("scope", "reports.read"),
            ("state", "s2"),
        ])
    );
    let mut b = Browser::new();
    let back = sign_in(&mut b, &g, "legacy", &url).await;
    let location = back.location.clone().unwrap();
    assert!(location.contains('#'), "token in the fragment: {location}");
    assert!(back.param("access_token").is_some(), "{location}");
    let metadata = g.metadata("legacy").await;
    assert_eq!(
        metadata["grant_types_supported"],
        serde_json::json!(["implicit"])
    );
    let r = post_form(
        &g.endpoint("legacy", "token_endpoint").await,
        None,
        "grant_type=client_credentials&client_id=legacy-dashboard",
    )
    .await;
    assert_eq!(r.error(), "unsupported_grant_type", "{}", r.body);
}
