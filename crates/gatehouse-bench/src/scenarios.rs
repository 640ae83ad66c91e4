//! What is measured: each scenario makes one conversation per connection. Token pools,
//! refresh chains and authorization codes are made beforehand through the real endpoints.

use crate::http::{self, Browser, basic, form, json_str};
use crate::load::{Conversation, Post, drive};
use crate::setup::{SECRET, WEB_REDIRECT};
use bytes::Bytes;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const VERIFIER: &str = "bench-verifier-0123456789-0123456789-0123456789";

/// The same request every time; the answer must be 200 and hold `expect`.
struct Repeat {
    path: String,
    body: String,
    auth: String,
    expect: &'static [u8],
}

impl Conversation for Repeat {
    fn next(&mut self) -> Option<Post<'_>> {
        Some(Post {
            path: &self.path,
            auth: &self.auth,
            body: Cow::Borrowed(&self.body),
        })
    }
    fn check(&mut self, status: u16, body: &[u8]) -> Result<(), String> {
        check_ok(status, body, self.expect)
    }
}

fn check_ok(status: u16, body: &[u8], expect: &[u8]) -> Result<(), String> {
    if status != 200 {
        return Err(format!(
            "status {status}: {}",
            String::from_utf8_lossy(body)
        ));
    }
    if !contains(body, expect) {
        return Err(format!(
            "no {} in {}",
            String::from_utf8_lossy(expect),
            String::from_utf8_lossy(body)
        ));
    }
    Ok(())
}

/// Whether `needle` occurs in `body` (the standard library's substring search: the load
/// generator shares its core with Redis, and what it spends there is taken from the server's
/// measured rate).
fn contains(body: &[u8], needle: &[u8]) -> bool {
    match (std::str::from_utf8(body), std::str::from_utf8(needle)) {
        (Ok(body), Ok(needle)) => body.contains(needle),
        _ => body.windows(needle.len()).any(|w| w == needle),
    }
}

/// The `refresh_token` member of a token response, read without building the whole JSON value.
fn refresh_token_of(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Answer<'a> {
        #[serde(borrow)]
        refresh_token: std::borrow::Cow<'a, str>,
    }
    serde_json::from_slice::<Answer<'_>>(body)
        .ok()
        .map(|a| a.refresh_token.into_owned())
}

/// Where a token service takes client_credentials and introspection, and how to log in.
#[derive(Clone)]
pub struct Target {
    pub token: String,
    pub introspect: String,
    pub auth: String,
}

impl Target {
    /// One of the benchmark's Gatehouse tenants (`es256`, `eddsa`, `opaque`).
    pub fn tenant(tenant: &str) -> Target {
        Target {
            token: format!("/{tenant}/oauth2/token"),
            introspect: format!("/{tenant}/oauth2/introspect"),
            auth: basic(&format!("cc-{tenant}"), SECRET),
        }
    }
}

fn cc_request(target: &Target) -> Repeat {
    Repeat {
        path: target.token.clone(),
        body: "grant_type=client_credentials&scope=bench.read".into(),
        auth: target.auth.clone(),
        expect: b"\"access_token\"",
    }
}

/// client_credentials, the same request on every connection.
pub fn client_credentials(target: &Target, connections: usize) -> Vec<Box<dyn Conversation>> {
    (0..connections)
        .map(|_| Box::new(cc_request(target)) as Box<dyn Conversation>)
        .collect()
}

/// Collects `target` access tokens of a tenant into `sink`.
struct Mint {
    inner: Repeat,
    sink: Arc<Mutex<Vec<String>>>,
    target: usize,
}

impl Conversation for Mint {
    fn next(&mut self) -> Option<Post<'_>> {
        let have = self.sink.lock().map_or(usize::MAX, |s| s.len());
        (have < self.target).then(|| self.inner.next()).flatten()
    }
    fn check(&mut self, status: u16, body: &[u8]) -> Result<(), String> {
        self.inner.check(status, body)?;
        let token = json_str(body, "access_token").ok_or("no access_token")?;
        if let Ok(mut s) = self.sink.lock() {
            s.push(token);
        }
        Ok(())
    }
}

/// Asks for tokens on one connection for a moment, so the client's secret has been verified
/// (argon2 once, then cached) before anything is measured. `Err` holds the first wrong answer.
pub async fn warm(addr: SocketAddr, tenant: &str) -> Result<(), String> {
    let o = drive(
        addr,
        client_credentials(&Target::tenant(tenant), 1),
        Duration::from_millis(200),
    )
    .await;
    match o.errors {
        0 => Ok(()),
        _ => Err(format!("warming {tenant}: {:?}", o.first_error)),
    }
}

/// `count` live access tokens, minted through the token endpoint.
pub async fn token_pool(
    addr: SocketAddr,
    target: &Target,
    count: usize,
) -> anyhow::Result<Arc<Vec<String>>> {
    let sink = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let minters = (0..16)
        .map(|_| {
            Box::new(Mint {
                inner: cc_request(target),
                sink: sink.clone(),
                target: count,
            }) as Box<dyn Conversation>
        })
        .collect();
    let outcome = drive(addr, minters, Duration::from_secs(600)).await;
    if outcome.errors > 0 {
        anyhow::bail!("minting tokens: {:?}", outcome.first_error);
    }
    let tokens = sink.lock().map(|s| s.clone()).unwrap_or_default();
    anyhow::ensure!(
        tokens.len() >= count,
        "minted {} of {count} tokens",
        tokens.len()
    );
    Ok(Arc::new(tokens))
}

/// Introspection of the pool's tokens, round robin, each connection from its own offset.
struct Introspect {
    path: String,
    auth: String,
    pool: Arc<Vec<String>>,
    at: usize,
}

impl Conversation for Introspect {
    fn next(&mut self) -> Option<Post<'_>> {
        let token = &self.pool[self.at % self.pool.len()];
        self.at += 1;
        Some(Post {
            path: &self.path,
            auth: &self.auth,
            body: Cow::Owned(format!("token={token}")),
        })
    }
    fn check(&mut self, status: u16, body: &[u8]) -> Result<(), String> {
        check_ok(status, body, b"\"active\":true")
    }
}

pub fn introspection(
    target: &Target,
    pool: &Arc<Vec<String>>,
    connections: usize,
) -> Vec<Box<dyn Conversation>> {
    (0..connections)
        .map(|i| {
            Box::new(Introspect {
                path: target.introspect.clone(),
                auth: target.auth.clone(),
                pool: pool.clone(),
                at: i * pool.len() / connections.max(1),
            }) as Box<dyn Conversation>
        })
        .collect()
}

/// A refresh-token chain: each answer's refresh token is the next request's.
struct RefreshChain {
    path: String,
    auth: String,
    token: String,
}

impl Conversation for RefreshChain {
    fn next(&mut self) -> Option<Post<'_>> {
        let body = refresh_form(&self.token);
        Some(Post {
            path: &self.path,
            auth: &self.auth,
            body: Cow::Owned(body),
        })
    }
    fn check(&mut self, status: u16, body: &[u8]) -> Result<(), String> {
        check_ok(status, body, b"\"access_token\"")?;
        self.token = refresh_token_of(body)
            .ok_or_else(|| format!("no refresh_token in {}", String::from_utf8_lossy(body)))?;
        Ok(())
    }
}

/// The form presenting `token`. The load generator shares its core with Redis, so what it
/// spends is taken from the rate it measures: a token of form-safe bytes only (a signed
/// refresh token is base64url and dots) is appended as it is, instead of byte by byte through
/// the general encoder, which cost a refresh request close to a microsecond here.
fn refresh_form(token: &str) -> String {
    const PREFIX: &str = "grant_type=refresh_token&refresh_token=";
    let form_safe = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'*');
    if token.as_bytes().iter().all(form_safe) {
        let mut body = String::with_capacity(PREFIX.len() + token.len());
        body.push_str(PREFIX);
        body.push_str(token);
        body
    } else {
        form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
    }
}

/// Refresh chains of the client `app-{tenant}`, one per connection, each started by alice's
/// password grant.
pub async fn refresh_chains(
    addr: SocketAddr,
    tenant: &str,
    connections: usize,
) -> anyhow::Result<Vec<Box<dyn Conversation>>> {
    let auth = basic(&format!("app-{tenant}"), SECRET);
    let path = format!("/{tenant}/oauth2/token");
    let mut browser = Browser::connect(addr).await?;
    let mut out: Vec<Box<dyn Conversation>> = Vec::new();
    for _ in 0..connections {
        let body = form(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "bench-password"),
            ("scope", "bench.read offline_access"),
        ]);
        let answer = browser
            .send(http::post(&path, Bytes::from(body), Some(&auth)))
            .await?;
        anyhow::ensure!(answer.status == 200, "password grant: {}", answer.body);
        let token = json_str(answer.body.as_bytes(), "refresh_token")
            .ok_or_else(|| anyhow::anyhow!("no refresh token: {}", answer.body))?;
        out.push(Box::new(RefreshChain {
            path: path.clone(),
            auth: auth.clone(),
            token,
        }));
    }
    Ok(out)
}

/// RFC 8693 token exchange: on each connection, a service exchanges one of its own access
/// tokens (a user's would cost the same: one verification of a token the server has seen
/// before, and a revocation check) for a token narrowed to `bench.read`.
pub async fn token_exchange(
    addr: SocketAddr,
    tenant: &str,
    connections: usize,
) -> anyhow::Result<Vec<Box<dyn Conversation>>> {
    let auth = basic(&format!("tx-{tenant}"), SECRET);
    let path = format!("/{tenant}/oauth2/token");
    let mut browser = Browser::connect(addr).await?;
    let mut out: Vec<Box<dyn Conversation>> = Vec::new();
    for _ in 0..connections {
        let body = form(&[("grant_type", "client_credentials")]);
        let answer = browser
            .send(http::post(&path, Bytes::from(body), Some(&auth)))
            .await?;
        anyhow::ensure!(answer.status == 200, "client_credentials: {}", answer.body);
        let subject = json_str(answer.body.as_bytes(), "access_token")
            .ok_or_else(|| anyhow::anyhow!("no access token: {}", answer.body))?;
        let body = form(&[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", &subject),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
            ("scope", "bench.read"),
        ]);
        out.push(Box::new(Repeat {
            path: path.clone(),
            body,
            auth: auth.clone(),
            expect: b"\"issued_token_type\"",
        }));
    }
    Ok(out)
}

fn authorize_path(tenant: &str) -> String {
    format!(
        "/{tenant}/oauth2/authorize?{}",
        form(&[
            ("client_id", &format!("web-{tenant}")),
            ("redirect_uri", WEB_REDIRECT),
            ("response_type", "code"),
            ("scope", "bench.read"),
            ("state", "s"),
            ("code_challenge", &gatehouse_core::pkce::s256(VERIFIER)),
            ("code_challenge_method", "S256"),
        ])
    )
}

/// Signs alice in and consents once; returns the session cookie header.
pub async fn sign_in(addr: SocketAddr, tenant: &str) -> anyhow::Result<String> {
    let mut b = Browser::connect(addr).await?;
    let start = b.send(http::get(&authorize_path(tenant), "")).await?;
    let login_url = start
        .location
        .ok_or_else(|| anyhow::anyhow!("authorize did not redirect: {}", start.body))?;
    let login_path = login_url
        .split_once("127.0.0.1")
        .map(|(_, r)| {
            r.split_once('/')
                .map(|(_, p)| format!("/{p}"))
                .unwrap_or_default()
        })
        .unwrap_or(login_url.clone());
    let login = b.send(http::get(&login_path, "")).await?;
    anyhow::ensure!(
        login.status == 200,
        "login page: {} {}",
        login.status,
        login.body
    );
    let f = |page: &str, name: &str| {
        http::field(page, name).ok_or_else(|| anyhow::anyhow!("no {name} in {page}"))
    };
    let consent = b
        .send(http::post(
            &format!("/{tenant}/login"),
            Bytes::from(form(&[
                ("request", &f(&login.body, "request")?),
                ("csrf", &f(&login.body, "csrf")?),
                ("username", "alice"),
                ("password", "bench-password"),
            ])),
            None,
        ))
        .await?;
    // Consent given before (an earlier sign-in of alice) is remembered: straight back.
    if consent
        .location
        .as_deref()
        .is_some_and(|l| l.starts_with(WEB_REDIRECT))
    {
        return Ok(b.cookie_header());
    }
    let done = b
        .send(http::post(
            &format!("/{tenant}/consent"),
            Bytes::from(form(&[
                ("request", &f(&consent.body, "request")?),
                ("csrf", &f(&consent.body, "csrf")?),
                ("decision", "allow"),
            ])),
            None,
        ))
        .await?;
    anyhow::ensure!(
        done.location
            .as_deref()
            .is_some_and(|l| l.starts_with(WEB_REDIRECT)),
        "consent did not return to the client: {} {:?}",
        done.status,
        done.location
    );
    Ok(b.cookie_header())
}

/// Mints `count` authorization codes through the authorize endpoint with alice's session
/// (the codes come back in Location headers, read with the small setup client).
pub async fn mint_codes(
    addr: SocketAddr,
    tenant: &str,
    cookie: &str,
    count: usize,
    connections: usize,
) -> anyhow::Result<Arc<Mutex<Vec<String>>>> {
    let sink = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let path = authorize_path(tenant);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (sink, cookie, path) = (sink.clone(), cookie.to_string(), path.clone());
        tasks.push(tokio::spawn(async move {
            let mut b = Browser::connect(addr).await?;
            loop {
                if sink
                    .lock()
                    .map_or(true, |s: std::sync::MutexGuard<'_, Vec<String>>| {
                        s.len() >= count
                    })
                {
                    return Ok::<_, anyhow::Error>(());
                }
                let a = b.send(http::get(&path, &cookie)).await?;
                let code = a.location.as_deref().and_then(|l| http::param(l, "code"));
                let Some(code) = code else {
                    anyhow::bail!(
                        "authorize gave no code: {} {:?} {}",
                        a.status,
                        a.location,
                        a.body
                    );
                };
                if let Ok(mut s) = sink.lock() {
                    s.push(code);
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(sink)
}

/// Exchanges pre-minted codes; ends when they run out.
struct Exchange {
    path: String,
    auth: String,
    codes: Arc<Mutex<Vec<String>>>,
    /// The parameters every exchange sends alike, encoded once.
    rest: String,
}

impl Conversation for Exchange {
    fn next(&mut self) -> Option<Post<'_>> {
        let code = self.codes.lock().ok()?.pop()?;
        let mut body = form(&[("grant_type", "authorization_code"), ("code", &code)]);
        body.push('&');
        body.push_str(&self.rest);
        Some(Post {
            path: &self.path,
            auth: &self.auth,
            body: Cow::Owned(body),
        })
    }
    fn check(&mut self, status: u16, body: &[u8]) -> Result<(), String> {
        check_ok(status, body, b"\"access_token\"")
    }
}

pub fn code_exchange(
    codes: &Arc<Mutex<Vec<String>>>,
    tenant: &str,
    connections: usize,
) -> Vec<Box<dyn Conversation>> {
    (0..connections)
        .map(|_| {
            Box::new(Exchange {
                path: format!("/{tenant}/oauth2/token"),
                auth: basic(&format!("web-{tenant}"), SECRET),
                codes: codes.clone(),
                rest: form(&[("redirect_uri", WEB_REDIRECT), ("code_verifier", VERIFIER)]),
            }) as Box<dyn Conversation>
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_checked_as_strictly_as_before() {
        let answer = br#"{"access_token":"a","token_type":"Bearer","refresh_token":"r.\u0041"}"#;
        assert!(check_ok(200, answer, b"\"access_token\"").is_ok());
        assert!(check_ok(200, b"{}", b"\"access_token\"").is_err());
        assert!(check_ok(400, answer, b"\"access_token\"").is_err());
        assert!(contains(b"\xff\"active\":true", b"\"active\":true"));
        assert_eq!(refresh_token_of(answer).as_deref(), Some("r.A"));
        assert_eq!(refresh_token_of(br#"{"access_token":"a"}"#), None);
        assert_eq!(refresh_token_of(b"not json"), None);
    }

    #[test]
    fn a_refresh_form_is_what_the_general_encoder_writes() {
        for token in ["rt1.AbC-_x.sig*", "with space+and%25/slash", "ünï", ""] {
            assert_eq!(
                refresh_form(token),
                form(&[("grant_type", "refresh_token"), ("refresh_token", token)]),
                "{token}"
            );
        }
    }
}
