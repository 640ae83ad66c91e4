//! The operator at scale: one tenant with N clients, then one OAuthClient edited. Reports the
//! time from the edit reaching the API server to the client's new status being written, and
//! every command the store received in the seconds after the edit (read with Redis MONITOR,
//! so commands inside scripts are not counted).
//!
//! `cargo bench -p gatehouse-controller --bench edit_at_scale -- [--clients 1000,10000,100000]`
//!
//! Everything is real except the Kubernetes API, which is the in-memory API server of the test
//! kit (it keeps objects, watches, the status subresource and server-side apply of statuses):
//! a real `redis-server`, and the operator's own `run` (leader election, shared watches, both
//! controllers) talking HTTP to that API server.

use gatehouse_controller::operator::metrics::OperatorMetrics;
use gatehouse_controller::operator::{OperatorConfig, run};
use gatehouse_core::keys::KeyEncryptionKey;
use gatehouse_testkit::RedisServer;
use gatehouse_testkit::apiserver::FakeApiServer;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NAMESPACE: &str = "apps";

fn tenant() -> Value {
    json!({
        "apiVersion": "gatehouse.dev/v1alpha1", "kind": "Tenant",
        "metadata": {"name": "acme", "finalizers": ["gatehouse.dev/cleanup"]},
        "spec": {"grantTypes": ["authorization_code", "refresh_token"], "clientNamespaces": ["*"]}
    })
}

fn client(i: usize, client_name: &str) -> Value {
    json!({
        "apiVersion": "gatehouse.dev/v1alpha1", "kind": "OAuthClient",
        "metadata": {"name": format!("app-{i:06}"), "namespace": NAMESPACE,
                     "finalizers": ["gatehouse.dev/cleanup"]},
        "spec": {"tenantRef": "acme", "public": true, "clientName": client_name,
                 "grantTypes": ["authorization_code", "refresh_token"],
                 "redirectUris": [format!("https://app-{i}.example.com/cb")]}
    })
}

/// Commands Redis received from connections other than scripts (the name and its first
/// arguments, enough to tell whose key it touched).
#[derive(Default)]
struct Monitor {
    commands: Arc<Mutex<Vec<Vec<String>>>>,
}

impl Monitor {
    fn start(port: u16) -> Self {
        let commands = Arc::new(Mutex::new(Vec::new()));
        let seen = commands.clone();
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("redis");
        stream.write_all(b"MONITOR\r\n").expect("monitor");
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { return };
                // +1700000000.123456 [0 127.0.0.1:50000] "HGET" "key" ...; scripts show as [0 lua].
                if line.contains(" lua]") || !line.starts_with('+') {
                    continue;
                }
                let words: Vec<String> = line
                    .split('"')
                    .skip(1)
                    .step_by(2)
                    .take(3)
                    .map(str::to_string)
                    .collect();
                if !words.is_empty()
                    && let Ok(mut all) = seen.lock()
                {
                    all.push(words);
                }
            }
        });
        Monitor { commands }
    }

    fn take(&self) -> Vec<Vec<String>> {
        self.commands
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default()
    }
}

fn ready(status: &Value, generation: i64) -> bool {
    status["observedGeneration"] == json!(generation)
        && status["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

struct Point {
    clients: usize,
    converged: Duration,
    edit_to_status: Duration,
    /// Commands on the edited client's keys or its tenant's, by name.
    commands: BTreeMap<String, usize>,
    /// Commands for other clients in the same window (their periodic resync), a count.
    background: usize,
    /// Failed reconciles until everything was Ready (retried), by error.
    errors: BTreeMap<String, u64>,
}

async fn point(clients: usize) -> Point {
    let redis = RedisServer::start();
    let api = FakeApiServer::default();
    api.apply("tenants", tenant());
    for i in 0..clients {
        api.apply("oauthclients", client(i, "App"));
    }
    let base = api.start().await;
    let config = kube::Config::new(base.parse().expect("url"));
    let kube_client = kube::Client::try_from(config).expect("client");
    let store = gatehouse_store::open(&redis.url()).await.expect("store");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let metrics = Arc::new(OperatorMetrics::new());
    let started = Instant::now();
    let operator = tokio::spawn(run(
        kube_client,
        store,
        Arc::new(KeyEncryptionKey::generate().expect("kek").0),
        OperatorConfig {
            public_url: "https://auth.example.com".into(),
            namespace: "gatehouse".into(),
            identity: "bench".into(),
            clock: gatehouse_core::clock::system(),
            random: gatehouse_core::random::system(),
            fetcher: gatehouse_controller::issuers::fetch::Fetcher::new(None, false)
                .expect("the public roots"),
            issuer_refresh: gatehouse_controller::issuers::DEFAULT_REFRESH,
        },
        metrics.clone(),
        Arc::new(AtomicBool::new(false)),
        async move {
            let _ = stop_rx.await;
        },
    ));
    // Converged: every client live with its status written, and the tenant counting them.
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let tenant = api.get("tenants", None, "acme").unwrap_or_default();
        if tenant["status"]["clients"] == json!(clients) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3600),
            "no convergence"
        );
    }
    let converged = started.elapsed();
    // Let the last status writes echo through the watches.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let monitor = Monitor::start(redis.port);
    tokio::time::sleep(Duration::from_millis(200)).await;
    monitor.take();
    let edited = clients / 2;
    let name = format!("app-{edited:06}");
    let edit_started = Instant::now();
    api.apply("oauthclients", client(edited, "App, renamed"));
    let generation = api
        .get("oauthclients", Some(NAMESPACE), &name)
        .expect("client")["metadata"]["generation"]
        .as_i64()
        .expect("generation");
    let edit_to_status = loop {
        let object = api
            .get("oauthclients", Some(NAMESPACE), &name)
            .expect("client");
        if ready(&object["status"], generation) {
            break edit_started.elapsed();
        }
        assert!(
            edit_started.elapsed() < Duration::from_secs(60),
            "the edit was never reconciled"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    // Whatever follows from the edit (the status write's own echo, the tenant's recount).
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A command on a client's key names the client id (HGET/HSET of the tenant's clients
    // hash); one for another client is that client's periodic resync, not the edit.
    let edited_id = format!("{NAMESPACE}-app-{edited:06}");
    let mut commands = BTreeMap::new();
    let mut background = 0;
    for words in monitor.take() {
        let on_clients = words.get(1).is_some_and(|key| key.ends_with(":clients"));
        if on_clients && words.get(2) != Some(&edited_id) {
            background += 1;
            continue;
        }
        *commands.entry(words[0].to_ascii_uppercase()).or_default() += 1;
    }
    let mut errors = BTreeMap::new();
    for line in metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("gatehouse_operator_reconcile_errors_total"))
    {
        let label = line
            .split("error=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or("?")
            .to_string();
        let n: u64 = line
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        *errors.entry(label).or_default() += n;
    }
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), operator).await;
    Point {
        clients,
        converged,
        edit_to_status,
        commands,
        background,
        errors,
    }
}

fn sizes() -> Vec<usize> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--clients")
        .and_then(|i| args.get(i + 1))
        .map_or_else(
            || vec![1_000, 10_000, 100_000],
            |list| {
                list.split(',')
                    .filter_map(|n| n.trim().parse().ok())
                    .collect()
            },
        )
}

fn main() {
    // `cargo bench` also passes `--bench`; anything else is ours.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "| clients in the tenant | operator start to all Ready (failed reconciles) | edit → status written | store commands the edit caused | other clients' resync meanwhile |"
    );
    println!("| --- | --- | --- | --- | --- |");
    for clients in sizes() {
        let p = runtime.block_on(point(clients));
        let total: usize = p.commands.values().sum();
        let detail: Vec<String> = p.commands.iter().map(|(c, n)| format!("{n} {c}")).collect();
        let failed: Vec<String> = p.errors.iter().map(|(e, n)| format!("{n} {e}")).collect();
        println!(
            "| {} | {:.1} s ({}) | {:.0} ms | {total} ({}) | {} |",
            p.clients,
            p.converged.as_secs_f64(),
            if failed.is_empty() {
                "none".to_string()
            } else {
                failed.join(", ")
            },
            p.edit_to_status.as_secs_f64() * 1000.0,
            detail.join(", "),
            p.background
        );
    }
}
