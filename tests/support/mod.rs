//! Harness for end-to-end tests: the real `gatehouse` binary on free ports, with a temporary
//! manifests directory, talking to a real redis-server, driven over HTTP like any client.
#![allow(dead_code, unused_imports)]

use base64::Engine;
use gatehouse_testkit::free_port;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use gatehouse_testkit::RedisServer;

pub mod ci_issuer;
pub mod example_grants;
pub mod monitoring;

/// A `gatehouse` process other than standalone (`operator`, `server`), killed on drop; its log
/// is printed when the test fails.
pub struct Process {
    pub child: Child,
    pub log: std::path::PathBuf,
}

impl Process {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its exit status, if it has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "did not stop on SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- {} ---\n{}", self.log.display(), self.log());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the `gatehouse` binary with `args`, its standard error in `dir/NAME.log`.
pub fn spawn(dir: &std::path::Path, name: &str, args: &[&str], env: &[(&str, &str)]) -> Process {
    let log = dir.join(format!("{name}.log"));
    let child = Command::new(binary())
        .args(args)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    Process { child, log }
}

/// A running `gatehouse standalone`.
pub struct Gatehouse {
    child: Child,
    pub port: u16,
    pub ops_port: u16,
    pub base: String,
    pub manifests: tempfile::TempDir,
    log: PathBuf,
    out: PathBuf,
    _logs: tempfile::TempDir,
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_gatehouse")
}

impl Gatehouse {
    /// Writes `files` (name, YAML) into a fresh manifests directory and starts standalone on it.
    pub fn start(store: &str, files: &[(&str, &str)]) -> Gatehouse {
        let manifests = tempfile::tempdir().unwrap();
        for (name, yaml) in files {
            std::fs::write(manifests.path().join(name), yaml).unwrap();
        }
        Self::start_in(store, manifests)
    }

    pub fn start_in(store: &str, manifests: tempfile::TempDir) -> Gatehouse {
        Self::start_with_env(store, manifests, &[])
    }

    /// Starts with extra `GATEHOUSE_*` settings in the environment.
    pub fn start_with_env(
        store: &str,
        manifests: tempfile::TempDir,
        env: &[(&str, &str)],
    ) -> Gatehouse {
        Self::spawn(|| Command::new(binary()), store, manifests, env)
    }

    /// Starts pinned to one core (`taskset -c 0`), as in a pod limited to one CPU.
    pub fn start_on_one_core(store: &str, files: &[(&str, &str)]) -> Gatehouse {
        let manifests = tempfile::tempdir().unwrap();
        for (name, yaml) in files {
            std::fs::write(manifests.path().join(name), yaml).unwrap();
        }
        let command = || {
            let mut command = Command::new("taskset");
            command.args(["-c", "0"]).arg(binary());
            command
        };
        Self::spawn(command, store, manifests, &[])
    }

    /// Starts `command` (made anew for each try) and waits until it is ready. The ports are
    /// picked free, but another process may take one before Gatehouse binds it: a start that
    /// fails on an address in use is tried again on other ports.
    fn spawn(
        command: impl Fn() -> Command,
        store: &str,
        mut manifests: tempfile::TempDir,
        env: &[(&str, &str)],
    ) -> Gatehouse {
        for attempt in 1.. {
            let mut g = Self::spawn_once(command(), store, manifests, env);
            match g.wait_ready() {
                Ok(()) => return g,
                Err(why) if attempt < 5 && why.contains("Address already in use") => {
                    manifests = std::mem::replace(&mut g.manifests, tempfile::tempdir().unwrap());
                }
                Err(why) => panic!("{why}"),
            }
        }
        unreachable!("the loop returns or panics")
    }

    fn spawn_once(
        mut command: Command,
        store: &str,
        manifests: tempfile::TempDir,
        env: &[(&str, &str)],
    ) -> Gatehouse {
        let logs = tempfile::tempdir().unwrap();
        let (log, out) = (
            logs.path().join("stderr.log"),
            logs.path().join("stdout.log"),
        );
        let (port, ops_port) = (free_port(), free_port());
        let child = command
            .args(["standalone", "--manifests"])
            .arg(manifests.path())
            .args([
                "--store",
                store,
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--metrics-listen",
                &format!("127.0.0.1:{ops_port}"),
            ])
            .env("RUST_LOG", "debug")
            .envs(env.iter().copied())
            .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .expect("starting gatehouse standalone");
        Gatehouse {
            child,
            port,
            ops_port,
            base: format!("http://127.0.0.1:{port}"),
            manifests,
            log,
            out,
            _logs: logs,
        }
    }

    /// Waits until the process answers `/readyz`; `Err` says why it will not.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "gatehouse exited early with {status}\nstdout:\n{}\nstderr:\n{}",
                    self.stdout(),
                    self.stderr()
                ));
            }
            if let Ok(r) = http_status(&format!("http://127.0.0.1:{}/readyz", self.ops_port))
                && r == 200
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "gatehouse did not become ready\nstderr:\n{}",
            self.stderr()
        ))
    }

    /// Sends SIGTERM and waits up to `within` for the process to exit: its status, or `None`
    /// if it is still running.
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    pub fn issuer(&self, tenant: &str) -> String {
        format!("{}/{tenant}", self.base)
    }

    pub fn write_manifest(&self, name: &str, yaml: &str) {
        // Write then rename, as editors and ConfigMap updates do, so the watcher never reads
        // half a file.
        let tmp = self.manifests.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, yaml).unwrap();
        std::fs::rename(&tmp, self.manifests.path().join(name)).unwrap();
    }

    pub fn remove_manifest(&self, name: &str) {
        std::fs::remove_file(self.manifests.path().join(name)).unwrap();
    }

    /// What the operations listener's `/metrics` shows now.
    pub async fn metrics(&self) -> String {
        scrape(&format!("127.0.0.1:{}", self.ops_port)).await
    }

    pub fn manifests_path(&self) -> &Path {
        self.manifests.path()
    }

    /// The tenant's discovery document.
    pub async fn metadata(&self, tenant: &str) -> Value {
        let url = format!(
            "{}/.well-known/oauth-authorization-server/{tenant}",
            self.base
        );
        let r = reqwest::get(&url).await.unwrap();
        assert_eq!(r.status(), 200, "metadata of {tenant}");
        r.json().await.unwrap()
    }

    pub async fn endpoint(&self, tenant: &str, name: &str) -> String {
        self.metadata(tenant).await[name]
            .as_str()
            .unwrap_or_else(|| panic!("{name} in metadata"))
            .to_string()
    }
}

impl Drop for Gatehouse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- gatehouse stdout ----\n{}\n---- gatehouse stderr (tail) ----",
                self.stdout()
            );
            let err = self.stderr();
            let tail: Vec<&str> = err.lines().rev().take(60).collect();
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// A response: status, headers and JSON body (or `Null`).
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("<no error>")
    }
}

/// What the `/metrics` of an operations listener at `address` (`host:port`) shows now.
pub async fn scrape(address: &str) -> String {
    reqwest::get(format!("http://{address}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

pub fn basic(id: &str, secret: &str) -> String {
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
    )
}

pub fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// POSTs a form with optional Authorization header.
pub async fn post_form(url: &str, authorization: Option<&str>, body: &str) -> Reply {
    post_raw(
        url,
        authorization,
        Some("application/x-www-form-urlencoded"),
        body.to_string(),
    )
    .await
}

pub async fn post_raw(
    url: &str,
    authorization: Option<&str>,
    content_type: Option<&str>,
    body: String,
) -> Reply {
    let client = reqwest::Client::new();
    let mut req = client.post(url).body(body);
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap_or_default();
    Reply {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

/// Polls `check` until it returns true or `secs` pass.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Sends `request` until it is answered `want` or `secs` pass, and returns the last answer
/// (for a change the token service takes on its next configuration poll).
pub async fn reply_becomes<F, Fut>(secs: u64, want: u16, mut request: F) -> Reply
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let reply = request().await;
        if reply.status == want || Instant::now() > deadline {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Decodes a JWT's payload without verifying it (for asserting on claims after verification
/// was checked separately).
pub fn jwt_payload(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("JWT payload");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

/// Status code of a plain GET, without an async runtime (used while waiting for start-up).
pub fn http_status(url: &str) -> std::io::Result<u16> {
    use std::io::Write;
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    // The status line is all that is needed; some servers keep the connection open anyway.
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(s), &mut line)?;
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad response"))
}

pub const ACME: &str = r"
apiVersion: gatehouse.dev/v1alpha1
kind: Tenant
metadata: {name: acme}
spec:
  displayName: Acme Corp
  grantTypes: [client_credentials, refresh_token]
  scopes:
    - {name: billing.read, description: Read invoices}
    - {name: billing.write}
  audiences:
    - {name: https://billing.example.com}
    - {name: https://ledger.example.com, namespaces: [acme]}
";

pub const GLOBEX: &str = r"
apiVersion: gatehouse.dev/v1alpha1
kind: Tenant
metadata: {name: globex}
spec:
  grantTypes: [client_credentials]
  accessToken: {format: opaque, ttl: 5m}
  signing: {algorithm: EdDSA}
  scopes: [{name: ops}]
";

/// The secret of acme's `billing` client: characters that must be form-encoded in Basic auth.
pub const BILLING_SECRET: &str = "s3cret:with/special+chars&=%";

pub const ACME_CLIENTS: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: OAuthClient
metadata: {name: billing, namespace: acme}
spec:
  tenantRef: acme
  clientId: acme-billing
  grantTypes: [client_credentials]
  scopes: [billing.read, billing.write]
  audiences: [https://billing.example.com, https://ledger.example.com]
  secretRef: {name: billing-credentials, generate: false}
---
apiVersion: v1
kind: Secret
metadata: {name: billing-credentials, namespace: acme, labels: {gatehouse.dev/watch: 'true'}}
stringData: {client_secret: "s3cret:with/special+chars&=%"}
---
apiVersion: gatehouse.dev/v1alpha1
kind: OAuthClient
metadata: {name: poster, namespace: acme}
spec:
  tenantRef: acme
  grantTypes: [client_credentials]
  scopes: [billing.read]
  tokenEndpointAuthMethod: client_secret_post
  secretRef: {name: poster-credentials, generate: false}
---
apiVersion: v1
kind: Secret
metadata: {name: poster-credentials, namespace: acme, labels: {gatehouse.dev/watch: 'true'}}
data: {client_secret: cG9zdGVyLXNlY3JldA==}   # poster-secret
---
apiVersion: gatehouse.dev/v1alpha1
kind: OAuthClient
metadata: {name: limited, namespace: acme}
spec:
  tenantRef: acme
  grantTypes: [refresh_token]
  secretRef: {name: limited-credentials, generate: false}
---
apiVersion: v1
kind: Secret
metadata: {name: limited-credentials, namespace: acme, labels: {gatehouse.dev/watch: 'true'}}
stringData: {client_secret: limited-secret}
"#;

pub const GLOBEX_CLIENTS: &str = r"
apiVersion: gatehouse.dev/v1alpha1
kind: OAuthClient
metadata: {name: ops, namespace: globex}
spec:
  tenantRef: globex
  grantTypes: [client_credentials]
  scopes: [ops]
  secretRef: {name: ops-credentials, generate: false}
---
apiVersion: v1
kind: Secret
metadata: {name: ops-credentials, namespace: globex, labels: {gatehouse.dev/watch: 'true'}}
stringData: {client_secret: globex-secret}
";

/// The standard fixture set: acme (JWT, ES256) and globex (opaque, EdDSA) with their clients.
pub fn fixtures() -> Vec<(&'static str, &'static str)> {
    vec![
        ("acme.yaml", ACME),
        ("globex.yaml", GLOBEX),
        ("acme-clients.yaml", ACME_CLIENTS),
        ("globex-clients.yaml", GLOBEX_CLIENTS),
    ]
}

/// Asks for a client_credentials token with HTTP Basic.
pub async fn client_credentials(
    g: &Gatehouse,
    tenant: &str,
    id: &str,
    secret: &str,
    extra: &[(&str, &str)],
) -> Reply {
    let mut pairs = vec![("grant_type", "client_credentials")];
    pairs.extend_from_slice(extra);
    post_form(
        &g.endpoint(tenant, "token_endpoint").await,
        Some(&basic(id, secret)),
        &form(&pairs),
    )
    .await
}

/// A minimal browser for flow tests: keeps cookies, does not follow redirects, reads forms.
pub struct Browser {
    client: reqwest::Client,
    pub cookies: std::collections::BTreeMap<String, String>,
}

pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

impl Page {
    /// The value of a hidden input of the page's form.
    pub fn field(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self
            .body
            .find(&marker)
            .unwrap_or_else(|| panic!("no field {name} in:\n{}", self.body))
            + marker.len();
        self.body[start..start + self.body[start..].find('"').unwrap()].replace("&amp;", "&")
    }

    /// A query (or fragment) parameter of the redirect location.
    pub fn param(&self, name: &str) -> Option<String> {
        let location = self.location.as_deref()?;
        let query = location.split_once(['?', '#'])?.1;
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Self {
        Browser {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: std::collections::BTreeMap::default(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn finish(&mut self, r: reqwest::Response) -> Page {
        for v in r.headers().get_all("set-cookie") {
            let text = v.to_str().unwrap();
            let (pair, attrs) = text.split_once(';').unwrap_or((text, ""));
            let (k, val) = pair.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), val.to_string());
            }
        }
        let status = r.status().as_u16();
        let location = r
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_string());
        Page {
            status,
            location,
            body: r.text().await.unwrap_or_default(),
        }
    }

    pub async fn get(&mut self, url: &str) -> Page {
        let r = self
            .client
            .get(url)
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.finish(r).await
    }

    pub async fn post(&mut self, url: &str, pairs: &[(&str, &str)]) -> Page {
        let r = self
            .client
            .post(url)
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(pairs))
            .send()
            .await
            .unwrap();
        self.finish(r).await
    }
}

/// A PKCE pair (verifier, S256 challenge).
pub fn pkce_pair() -> (String, String) {
    let verifier = format!("verifier-{}-{}", std::process::id(), "x".repeat(40));
    (verifier.clone(), gatehouse_core::pkce::s256(&verifier))
}
pub use gatehouse_testkit::apiserver;

/// Whether the status table's problem lines say `problem` about `object` (`OAuthClient ns/name`,
/// `Tenant name`), which is followed by where it was read: `OAuthClient ns/name (file.yaml,
/// document 2): Reason: message`.
pub fn has_problem(table: &str, object: &str, problem: &str) -> bool {
    table.lines().any(|l| {
        l.strip_prefix(object)
            .and_then(|rest| rest.strip_prefix(" ("))
            .and_then(|rest| rest.split_once("): "))
            .is_some_and(|(_, said)| said.starts_with(problem))
    })
}

/// helm: the one `.ci/install-test-tools` put in `target/tools`, else one on the PATH.
pub fn helm_binary() -> PathBuf {
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/helm");
    if local.exists() {
        return local;
    }
    let on_path = Command::new("helm").arg("version").output();
    assert!(
        on_path.is_ok_and(|o| o.status.success()),
        "helm not found: run `bash .ci/install-test-tools` (it puts helm in target/tools)"
    );
    PathBuf::from("helm")
}
