//! The authorization code flow with PKCE in real headless Chromium (driven over WebDriver by
//! chromedriver), through the real sign-in and consent pages, ending at a client callback that
//! exchanges the code. Also a wrong password and a denied consent, as a person would meet them.

mod support;

use axum::extract::{RawQuery, State};
use axum::response::Html;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use support::*;

/// The relying party: a callback that exchanges the code, as a web app's backend does.
#[derive(Clone)]
struct App {
    token_endpoint: String,
    client_id: String,
    redirect_uri: String,
    verifier: String,
}

async fn callback(State(app): State<Arc<App>>, RawQuery(query): RawQuery) -> Html<String> {
    let q: HashMap<String, String> = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    if let Some(error) = q.get("error") {
        return Html(format!("<h1>Access denied</h1><p id=\"error\">{error}</p>"));
    }
    let body = form(&[
        ("grant_type", "authorization_code"),
        (
            "code",
            q.get("code").map(String::as_str).unwrap_or_default(),
        ),
        ("redirect_uri", &app.redirect_uri),
        ("client_id", &app.client_id),
        ("code_verifier", &app.verifier),
    ]);
    let r = post_form(&app.token_endpoint, None, &body).await;
    match r.body["id_token"].as_str() {
        Some(id_token) => Html(format!(
            "<h1 id=\"who\">Signed in as {}</h1>",
            jwt_payload(id_token)["name"].as_str().unwrap_or("?")
        )),
        None => Html(format!(
            "<h1>Token exchange failed</h1><pre>{}</pre>",
            r.body
        )),
    }
}

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromedriver() -> (Driver, u16) {
    let binary = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("chromedriver is not installed: run the README's test command (.ci/run), which installs chromium and chromium-driver");
    let port = gatehouse_testkit::free_port();
    let child = Command::new(binary)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while http_status(&format!("http://127.0.0.1:{port}/status")).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "chromedriver did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    (Driver(child), port)
}

async fn browser(port: u16, profile: &std::path::Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--window-size=1000,800", format!("--user-data-dir={}", profile.display()),
        ]}),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("connecting to chromedriver")
}

async fn text(c: &Client, css: &str) -> String {
    c.wait()
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

/// Waits until the element's text is `expected` (pages change under the driver after a click).
async fn wait_text(c: &Client, css: &str, expected: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut last = String::new();
    while std::time::Instant::now() < deadline {
        if let Ok(e) = c.find(Locator::Css(css)).await
            && let Ok(t) = e.text().await
        {
            if t == expected {
                return;
            }
            last = t;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!(
        "{css} never read {expected:?} (last: {last:?}) on:\n{}",
        c.source().await.unwrap_or_default()
    );
}

async fn fill(c: &Client, name: &str, value: &str) {
    let field = c
        .find(Locator::Css(&format!("input[name={name}]")))
        .await
        .unwrap();
    field.clear().await.unwrap();
    field.send_keys(value).await.unwrap();
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
}

async fn screenshot(c: &Client, name: &str) {
    if let Ok(png) = c.screenshot().await {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join(format!("{name}.png")), png);
    }
}

#[tokio::test]
async fn a_person_signs_in_consents_and_lands_signed_in() {
    let redis = RedisServer::start();
    let app_port = gatehouse_testkit::free_port();
    let redirect_uri = format!("http://127.0.0.1:{app_port}/callback");
    let manifests = format!(
        r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Tenant
metadata: {{name: acme}}
spec:
  displayName: Acme Corp
  grantTypes: [authorization_code]
  scopes: [{{name: invoices.read, description: Read your invoices}}]
  users: {{secretRef: {{name: people, namespace: acme}}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: people, namespace: acme, labels: {{gatehouse.dev/watch: 'true'}}}}
stringData:
  users.yaml: |
    - username: alice
      passwordHash: "$argon2id$v=19$m=19456,t=2,p=1$yxZgyeenk6eyB64gIdCApQ$jkr4ytvV4HHADYPN5XK51q7e8fubRml7/6Zo0FGD0WM"
      name: Alice Liddell
---
apiVersion: gatehouse.dev/v1alpha1
kind: OAuthClient
metadata: {{name: portal, namespace: acme}}
spec:
  tenantRef: acme
  clientName: Customer Portal
  public: true
  grantTypes: [authorization_code]
  redirectUris: ["{redirect_uri}"]
  scopes: [openid, profile, invoices.read]
"#
    );
    let g = Gatehouse::start(&redis.url(), &[("acme.yaml", &manifests)]);
    let (verifier, challenge) = pkce_pair();
    let app = Arc::new(App {
        token_endpoint: g.endpoint("acme", "token_endpoint").await,
        client_id: "acme-portal".into(),
        redirect_uri: redirect_uri.clone(),
        verifier,
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", app_port))
        .await
        .unwrap();
    let router = axum::Router::new()
        .route("/callback", axum::routing::get(callback))
        .with_state(app);
    tokio::spawn(async move { axum::serve(listener, router).await });

    let authorize = format!(
        "{}?{}",
        g.endpoint("acme", "authorization_endpoint").await,
        form(&[
            ("client_id", "acme-portal"),
            ("redirect_uri", &redirect_uri),
            ("response_type", "code"),
            ("scope", "openid profile invoices.read"),
            ("state", "s1"),
            ("nonce", "n1"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ])
    );
    let (_driver, port) = chromedriver();
    let profile = tempfile::tempdir().unwrap();
    let c = browser(port, profile.path()).await;
    let outcome = async {
        // Sign in: a wrong password first.
        c.goto(&authorize).await.unwrap();
        // The tenant's display name heads the page (rendered in small capitals by the style).
        assert_eq!(text(&c, "header p").await.to_lowercase(), "acme corp");
        wait_text(&c, "h1", "Sign in").await;
        assert!(c.source().await.unwrap().contains("Customer Portal"));
        screenshot(&c, "1-sign-in").await;
        fill(&c, "username", "alice").await;
        fill(&c, "password", "not-her-password").await;
        click(&c, "button[type=submit]").await;
        wait_text(&c, "p.error", "Wrong username or password.").await;
        screenshot(&c, "2-wrong-password").await;
        fill(&c, "password", "wonderland").await;
        click(&c, "button[type=submit]").await;
        // Consent lists the client and the scopes with their descriptions.
        wait_text(&c, "h1", "Allow access?").await;
        let consent = c.source().await.unwrap();
        assert!(
            consent.contains("Customer Portal") && consent.contains("Read your invoices"),
            "{consent}"
        );
        screenshot(&c, "3-consent").await;
        click(&c, "button[value=allow]").await;
        wait_text(&c, "#who", "Signed in as Alice Liddell").await;
        assert!(
            c.current_url()
                .await
                .unwrap()
                .as_str()
                .starts_with(&redirect_uri)
        );

        // A second visit with prompt=consent, denied this time.
        c.goto(&format!("{authorize}&prompt=consent"))
            .await
            .unwrap();
        c.wait()
            .for_element(Locator::Css("button[value=deny]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_text(&c, "#error", "access_denied").await;
    }
    .await;
    let _ = c.close().await;
    let () = outcome;
}

/// The README's browser walk-through: `gatehouse demo-client` against the examples prints the
/// authorization URL, a person signs in in the browser, and the command receives the callback
/// on its loopback redirect URI, exchanges the code and shows the verified tokens and userinfo.
#[tokio::test]
async fn the_demo_client_takes_a_person_through_the_browser_to_verified_tokens() {
    use std::io::BufRead;
    // The examples, with the single-page app's redirect URI on a port free here.
    let port = gatehouse_testkit::free_port();
    let redirect_uri = format!("http://127.0.0.1:{port}/spa");
    let dir = tempfile::tempdir().unwrap();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path)
                .unwrap()
                .replace("http://127.0.0.1:9999/spa", &redirect_uri);
            std::fs::write(dir.path().join(path.file_name().unwrap()), text).unwrap();
        }
    }
    let g = Gatehouse::start_in("memory://", dir);
    let issuer = g.issuer("acme");
    let mut demo = Command::new(binary())
        .args([
            "demo-client",
            "--issuer",
            &issuer,
            "--client-id",
            "acme-spa",
            "--redirect-uri",
            &redirect_uri,
            "--scope",
            "openid profile billing.read",
            "--wait",
            "60",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reader = {
        let lines = lines.clone();
        let stdout = demo.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                lines.lock().unwrap().push(line);
            }
        })
    };
    let authorize = {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let found = lines.lock().unwrap().iter().find_map(|l| {
                l.trim()
                    .strip_prefix(&format!("{issuer}/"))
                    .map(|rest| format!("{issuer}/{rest}"))
            });
            if let Some(url) = found {
                break url;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no authorization URL: {:?}",
                lines.lock().unwrap()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    assert!(authorize.contains("code_challenge_method=S256") && authorize.contains("nonce="));

    let (_driver, driver_port) = chromedriver();
    let profile = tempfile::tempdir().unwrap();
    let c = browser(driver_port, profile.path()).await;
    let outcome = async {
        c.goto(&authorize).await.unwrap();
        wait_text(&c, "h1", "Sign in").await;
        fill(&c, "username", "alice").await;
        fill(&c, "password", "wonderland").await;
        click(&c, "button[type=submit]").await;
        wait_text(&c, "h1", "Allow access?").await;
        click(&c, "button[value=allow]").await;
        wait_text(&c, "h1", "Back in the terminal").await;
        screenshot(&c, "demo-client-done").await;
        // The issuer URL itself, opened in the browser: a page of the tenant's endpoints.
        c.goto(&issuer).await.unwrap();
        wait_text(&c, "h1", "Endpoints").await;
        assert_eq!(text(&c, "header p").await.to_lowercase(), "acme corp");
        screenshot(&c, "landing").await;
    }
    .await;
    let _ = c.close().await;
    let () = outcome;

    let status = demo.wait().unwrap();
    reader.join().unwrap();
    let out = lines.lock().unwrap().join("\n");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut demo.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{out}\n{err}");
    assert!(
        out.contains("ID token: verified signature") && out.contains("aud, nonce"),
        "{out}"
    );
    assert!(out.contains("\"sub\": \"alice\""), "{out}");
    assert!(
        out.contains("Userinfo") && out.contains("Alice Liddell"),
        "{out}"
    );
}
