//! Every endpoint's parameter parsing under mutated requests: random forms and queries built
//! from the parameters the endpoints know, wrong values, repeated and oversized parameters,
//! broken percent-encoding, odd headers. Each answer must be a deliberate one (never a panic,
//! never a 500), and a JSON answer must be JSON. Deterministic: a failure names its seed and
//! case (`GATEHOUSE_FUZZ_SEED`, `GATEHOUSE_FUZZ_CASES` replay or widen it).

use super::tests::{SECRET, client, tenant};
use crate::metrics::Metrics;
use crate::{AppState, Services, TenantDirectory, router};
use axum::body::Body;
use axum::http::{Method, Request, header};
use gatehouse_core::GrantType;
use gatehouse_core::SigningAlgorithm;
use gatehouse_core::clock::ManualClock;
use gatehouse_core::keys::{KeyEncryptionKey, KeyState, generate_signing_key};
use gatehouse_store::{MemoryStore, Store};
use gatehouse_testkit::fuzz::{self, Rng};
use std::sync::Arc;
use tower::ServiceExt;

const ENDPOINTS: &[(&str, &str)] = &[
    ("POST", "/acme/oauth2/token"),
    ("POST", "/acme/oauth2/introspect"),
    ("POST", "/acme/oauth2/revoke"),
    ("POST", "/acme/oauth2/device_authorization"),
    ("GET", "/acme/oauth2/authorize"),
    ("POST", "/acme/oauth2/authorize"),
    ("GET", "/acme/login"),
    ("POST", "/acme/login"),
    ("POST", "/acme/consent"),
    ("GET", "/acme/device"),
    ("POST", "/acme/device"),
    ("GET", "/acme/userinfo"),
    ("POST", "/acme/userinfo"),
    ("GET", "/acme/oauth2/logout"),
    ("POST", "/acme/oauth2/logout"),
    ("GET", "/acme/jwks.json"),
    ("GET", "/acme/.well-known/openid-configuration"),
    ("GET", "/.well-known/oauth-authorization-server/acme"),
    ("DELETE", "/acme/oauth2/token"),
    ("POST", "/nosuch/oauth2/token"),
];

const NAMES: &[&str] = &[
    "grant_type",
    "client_id",
    "client_secret",
    "scope",
    "code",
    "redirect_uri",
    "code_verifier",
    "refresh_token",
    "username",
    "password",
    "device_code",
    "assertion",
    "client_assertion",
    "client_assertion_type",
    "token",
    "token_type_hint",
    "response_type",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "max_age",
    "audience",
    "resource",
    "request",
    "csrf",
    "decision",
    "user_code",
    "id_token_hint",
    "post_logout_redirect_uri",
    "response_mode",
    "login_hint",
    "ui_locales",
    "",
    "a[]",
    "%00",
];

const VALUES: &[&str] = &[
    "",
    "client_credentials",
    "authorization_code",
    "refresh_token",
    "password",
    "implicit",
    "urn:ietf:params:oauth:grant-type:jwt-bearer",
    "urn:ietf:params:oauth:grant-type:device_code",
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    "app",
    SECRET,
    "openid",
    "code",
    "token",
    "id_token",
    "code id_token",
    "S256",
    "plain",
    "none",
    "login consent",
    "-1",
    "99999999999999999999",
    "0",
    "https://app.example.com/cb",
    "https://evil.example/cb",
    "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
    "eyJ.eyJ.sig",
    "a.b.c",
    "%",
    "%zz",
    "%00",
    "%FF%FE",
    "+",
    "&",
    "=",
    "é",
    "\u{0}",
    "allow",
    "deny",
    "ABCD-EFGH",
    "access_token",
];

fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A form or query: parameters from the dictionaries, sometimes raw (unencoded, so broken
/// percent-encoding reaches the parser), repeated, or very long.
fn parameters(rng: &mut Rng) -> String {
    let mut pairs = Vec::new();
    for _ in 0..rng.below(8) {
        let name = rng.pick(NAMES);
        let value = match rng.below(10) {
            0 => "x".repeat(rng.below(80_000)),
            1 => format!("{}{}", rng.pick(VALUES), rng.pick(VALUES)),
            _ => rng.pick(VALUES).to_string(),
        };
        if rng.below(4) == 0 {
            pairs.push(format!("{name}={value}"));
        } else {
            pairs.push(format!("{}={}", encode(name), encode(&value)));
        }
        if rng.below(6) == 0 {
            pairs.push(pairs[pairs.len() - 1].clone());
        }
    }
    let glue = if rng.below(10) == 0 { "&&" } else { "&" };
    pairs.join(glue)
}

fn request(rng: &mut Rng) -> Request<Body> {
    let (method, path) = ENDPOINTS[rng.below(ENDPOINTS.len())];
    let query = parameters(rng);
    let uri = if method == "GET" || rng.below(5) == 0 {
        format!("{path}?{query}")
    } else {
        path.to_string()
    };
    let mut builder = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(
            uri.parse::<axum::http::Uri>()
                .unwrap_or_else(|_| path.parse().unwrap()),
        );
    let content_type = match rng.below(6) {
        0 => "text/plain",
        1 => "application/x-www-form-urlencoded; charset=latin1",
        2 => "application/json",
        _ => "application/x-www-form-urlencoded",
    };
    builder = builder.header(header::CONTENT_TYPE, content_type);
    match rng.below(5) {
        0 => builder = builder.header(header::AUTHORIZATION, "Basic YXBwOnMzY3JldA=="),
        1 => builder = builder.header(header::AUTHORIZATION, "Basic %%%"),
        2 => builder = builder.header(header::AUTHORIZATION, "Bearer a.b.c"),
        _ => {}
    }
    if rng.below(4) == 0 {
        builder = builder.header(header::COOKIE, "gh_session=x; gh_csrf=%zz; =;");
    }
    let body = if method == "GET" {
        String::new()
    } else {
        parameters(rng)
    };
    builder.body(Body::from(body)).unwrap()
}

async fn app() -> axum::Router {
    let clock = ManualClock::at(1_700_000_000);
    let store: Arc<dyn Store> = Arc::new(MemoryStore::with_clock(clock.clone()));
    let kek = Arc::new(KeyEncryptionKey::generate().unwrap().0);
    let key =
        generate_signing_key("acme", SigningAlgorithm::ES256, KeyState::Active, &kek, 1).unwrap();
    store.put_signing_keys("acme", &[key]).await.unwrap();
    let mut t = tenant();
    t.grant_types = GrantType::ALL.to_vec();
    store.put_tenant(&t).await.unwrap();
    let mut c = client();
    c.grant_types = GrantType::ALL.to_vec();
    store.put_client("acme", &c).await.unwrap();
    let directory = Arc::new(TenantDirectory::new(
        store.clone(),
        kek,
        "https://auth.example.com",
    ));
    directory.refresh().await.unwrap();
    let services = Services::new(store, clock, gatehouse_core::random::system());
    router(AppState::new(directory, services, Arc::new(Metrics::new())))
}

#[tokio::test]
async fn mutated_requests_get_deliberate_answers_at_every_endpoint() {
    let (seed, cases) = fuzz::settings(0x2545_f491_4f6c_dd1d, 2_000);
    let app = app().await;
    let mut rng = Rng(seed);
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for case in 0..cases {
        let request = request(&mut rng);
        let what = format!(
            "case {case} of seed {seed}: {} {}",
            request.method(),
            request.uri()
        );
        let response = tokio::spawn(app.clone().oneshot(request))
            .await
            .unwrap_or_else(|e| panic!("{what} panicked: {e}"))
            .unwrap();
        let status = response.status();
        *statuses.entry(status.as_u16()).or_default() += 1;
        assert!(status.as_u16() < 500, "{what}: {status}");
        let json = response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        if json {
            assert!(
                serde_json::from_slice::<serde_json::Value>(&body).is_ok(),
                "{what}: not JSON: {}",
                String::from_utf8_lossy(&body)
            );
        }
    }
    // The requests reach past routing into the flows: answers of many kinds, some accepted.
    eprintln!("statuses: {statuses:?}");
    assert!(statuses.keys().any(|s| *s < 300), "{statuses:?}");
    assert!(statuses.len() >= 6, "{statuses:?}");
}
