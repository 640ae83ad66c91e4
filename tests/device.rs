//! Device authorization (RFC 8628): a device gets codes, polls, and a person approves or
//! denies it on the user-code page behind sign-in.

mod support;

use support::*;

const TENANT: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Tenant
metadata: {name: tv}
spec:
  displayName: Stream TV
  grantTypes: ["urn:ietf:params:oauth:grant-type:device_code", refresh_token]
  scopes: [{name: watch, description: Watch your shows}]
  users: {secretRef: {name: people, namespace: tv}}
---
apiVersion: v1
kind: Secret
metadata: {name: people, namespace: tv, labels: {gatehouse.dev/watch: 'true'}}
stringData:
  users.yaml: |
    - username: alice
      passwordHash: "$argon2id$v=19$m=19456,t=2,p=1$yxZgyeenk6eyB64gIdCApQ$jkr4ytvV4HHADYPN5XK51q7e8fubRml7/6Zo0FGD0WM"
---
apiVersion: gatehouse.dev/v1alpha1
kind: OAuthClient
metadata: {name: box, namespace: tv}
spec:
  tenantRef: tv
  clientName: Living-room box
  public: true
  grantTypes: ["urn:ietf:params:oauth:grant-type:device_code", refresh_token]
  scopes: [watch, offline_access]
"#;

const GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

async fn start_device(g: &Gatehouse) -> serde_json::Value {
    let url = g.endpoint("tv", "device_authorization_endpoint").await;
    let r = post_form(
        &url,
        None,
        &form(&[("client_id", "tv-box"), ("scope", "watch offline_access")]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
    r.body
}

async fn poll(g: &Gatehouse, device_code: &str) -> Reply {
    post_form(
        &format!("{}/tv/oauth2/token", g.base),
        None,
        &form(&[
            ("grant_type", GRANT),
            ("device_code", device_code),
            ("client_id", "tv-box"),
        ]),
    )
    .await
}

/// Signs in through the verification link and returns the code entry page.
async fn open_link(b: &mut Browser, g: &Gatehouse, link: &str) -> Page {
    let to_login = b.get(link).await;
    assert_eq!(to_login.status, 303, "{}", to_login.body);
    let login = b.get(to_login.location.as_deref().unwrap()).await;
    assert!(login.body.contains("device sign-in"), "{}", login.body);
    b.post(
        &format!("{}/tv/login", g.base),
        &[
            ("request", &login.field("request")),
            ("csrf", &login.field("csrf")),
            ("username", "alice"),
            ("password", "wonderland"),
        ],
    )
    .await
}

#[tokio::test]
async fn a_device_polls_while_a_person_approves_it() {
    let redis = RedisServer::start();
    let g = Gatehouse::start(&redis.url(), &[("tv.yaml", TENANT)]);
    let d = start_device(&g).await;
    let (device_code, user_code) = (
        d["device_code"].as_str().unwrap(),
        d["user_code"].as_str().unwrap(),
    );
    assert_eq!(d["verification_uri"], format!("{}/tv/device", g.base));
    assert_eq!(d["interval"], 5);
    assert_eq!(d["expires_in"], 600);
    assert!(
        user_code.len() == 9 && user_code.as_bytes()[4] == b'-',
        "{user_code}"
    );

    let r = poll(&g, device_code).await;
    assert_eq!((r.status, r.error()), (400, "authorization_pending"));
    let r = poll(&g, device_code).await;
    assert_eq!(
        (r.status, r.error()),
        (400, "slow_down"),
        "polled again at once"
    );

    let mut b = Browser::new();
    let entry = open_link(&mut b, &g, d["verification_uri_complete"].as_str().unwrap()).await;
    assert!(entry.body.contains("Connect a device"), "{}", entry.body);
    assert!(
        entry.body.contains(&format!("value=\"{user_code}\"")),
        "the code from the link is filled in"
    );
    let typed = user_code.to_lowercase().replace('-', " ");
    let consent = b
        .post(
            &format!("{}/tv/device", g.base),
            &[
                ("request", &entry.field("request")),
                ("csrf", &entry.field("csrf")),
                ("user_code", &typed),
            ],
        )
        .await;
    assert!(
        consent.body.contains("Living-room box") && consent.body.contains("Watch your shows"),
        "{}",
        consent.body
    );
    // Against phishing: which device, with which code, and when to deny.
    assert!(
        consent.body.contains(&format!(
            "You are connecting <strong>Living-room box</strong> with the code <strong>{user_code}</strong>"
        )) && consent.body.contains("If someone sent you this link or code, deny."),
        "{}",
        consent.body
    );
    assert!(consent.body.contains("Not "), "{}", consent.body);
    let done = b
        .post(
            &format!("{}/tv/device", g.base),
            &[
                ("request", &consent.field("request")),
                ("csrf", &consent.field("csrf")),
                ("user_code", &consent.field("user_code")),
                ("decision", "allow"),
            ],
        )
        .await;
    assert!(done.body.contains("Device connected"), "{}", done.body);

    let r = poll(&g, device_code).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        jwt_payload(r.body["access_token"].as_str().unwrap())["sub"],
        "alice"
    );
    assert!(r.body["refresh_token"].is_string());
    let r = poll(&g, device_code).await;
    assert_eq!(r.error(), "invalid_grant", "a device code is used once");
}

#[tokio::test]
async fn denied_devices_and_wrong_codes() {
    let redis = RedisServer::start();
    let g = Gatehouse::start(&redis.url(), &[("tv.yaml", TENANT)]);
    let d = start_device(&g).await;
    let mut b = Browser::new();
    let entry = open_link(&mut b, &g, &format!("{}/tv/device", g.base)).await;
    let wrong = b
        .post(
            &format!("{}/tv/device", g.base),
            &[
                ("request", &entry.field("request")),
                ("csrf", &entry.field("csrf")),
                ("user_code", "BCDF-BCDF"),
            ],
        )
        .await;
    assert!(
        wrong
            .body
            .contains("That code is not valid or has expired."),
        "{}",
        wrong.body
    );
    let consent = b
        .post(
            &format!("{}/tv/device", g.base),
            &[
                ("request", &wrong.field("request")),
                ("csrf", &wrong.field("csrf")),
                ("user_code", d["user_code"].as_str().unwrap()),
            ],
        )
        .await;
    let done = b
        .post(
            &format!("{}/tv/device", g.base),
            &[
                ("request", &consent.field("request")),
                ("csrf", &consent.field("csrf")),
                ("user_code", &consent.field("user_code")),
                ("decision", "deny"),
            ],
        )
        .await;
    assert!(done.body.contains("Request denied"));
    let r = poll(&g, d["device_code"].as_str().unwrap()).await;
    assert_eq!((r.status, r.error()), (400, "access_denied"));
    assert_eq!(poll(&g, "no-such-code").await.error(), "invalid_grant");
}
