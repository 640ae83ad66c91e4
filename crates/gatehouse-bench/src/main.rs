//! `gatehouse-bench`: Gatehouse under load on this machine, next to the signing limit.
//!
//! Starts a real redis-server and `gatehouse standalone` (release build) on a generated
//! manifest set, pins the server to one core, this load generator to another and Redis to a
//! third (on two cores, beside the load generator), drives every scenario at each connection
//! count for a fixed time, checks every answer, and prints a table (and writes JSON) with
//! requests/s, p50, p99, server CPU per request, server RSS, and the ratio to the raw signing
//! rate measured in the same run.

// Report arithmetic: request counts, byte sizes and durations are far below 2^52, and rates
// are rounded for printing.
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

mod http;
mod load;
mod memory;
mod monitor;
mod peer;
mod procfs;
mod scale;
mod scenarios;
mod setup;
mod signing;

use anyhow::Context;
use clap::Parser;
use gatehouse_core::SigningAlgorithm;
use scenarios::Target;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "Gatehouse under load, beside the signing limit")]
struct Args {
    /// Seconds each scenario runs at each connection count.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Connection counts to run every scenario at.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    connections: Vec<usize>,
    /// Only these scenarios (default: all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// The gatehouse binary (default: next to this one, i.e. the same cargo profile).
    #[arg(long)]
    gatehouse: Option<PathBuf>,
    /// Extra tenants and clients registered beside the benchmark's own.
    #[arg(long, default_value_t = 0)]
    extra_tenants: usize,
    #[arg(long, default_value_t = 0)]
    extra_clients: usize,
    /// Distinct live tokens introspection cycles through.
    #[arg(long, default_value_t = 10_000)]
    introspection_pool: usize,
    #[command(flatten)]
    skip: Skip,
    /// Where to write the results as JSON.
    #[arg(long, default_value = DEFAULT_JSON)]
    json: PathBuf,
    /// Instead of the scenarios: the scale curves (token rate and memory with up to 100,000
    /// clients and 1,000 tenants, and the time to reconcile them), at the largest of
    /// --connections; JSON to target/bench/scale.json.
    #[arg(long)]
    scale: bool,
    /// Measure the scenarios in turns of one second, --seconds turns each, the order rotating
    /// every round, instead of one after another: on a machine whose speed drifts, their
    /// rates are then compared under the same conditions. Everything is prepared before the
    /// first turn (authorization codes live 10 minutes: keep the whole run well under that),
    /// and a refresh chain broken by an error stays broken (the errors are reported).
    #[arg(long)]
    interleave: bool,
}

/// Parts of the run that can be left out.
#[derive(clap::Args)]
struct Skip {
    /// Skip the node-oidc-provider peer even if node and npm are there.
    #[arg(long)]
    no_peer: bool,
    /// Skip counting the Redis commands of each operation.
    #[arg(long)]
    no_commands: bool,
    /// Skip measuring Redis memory per live token, code and session.
    #[arg(long)]
    no_memory: bool,
}

const DEFAULT_JSON: &str = "target/bench/results.json";

/// Tokens in the peer's introspection pool (its default store keeps 1,000 entries).
const PEER_POOL: usize = 500;

const SCENARIOS: &[&str] = &[
    "client_credentials_es256",
    "client_credentials_eddsa",
    "client_credentials_opaque",
    "introspect_jwt",
    "introspect_opaque",
    "refresh_token",
    "refresh_token_opaque",
    "authorization_code",
    "authorization_code_opaque",
    "token_exchange",
];

struct Row {
    scenario: String,
    connections: usize,
    outcome: load::Outcome,
    cpu_per_request_us: f64,
    /// Redis's CPU time per request (on the load generator's core when there are two).
    redis_cpu_per_request_us: Option<f64>,
    /// This load generator's CPU time per request: on two cores, where Redis runs too, the
    /// two tell which core bounds the rate.
    load_cpu_per_request_us: f64,
    rss: (u64, u64),
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let pinning = setup::Pinning::decide();
    pinning.pin_self()?;
    // One thread: the load generator stays on its core and leaves the other to the server.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args, pinning))
}

async fn run(args: Args, pinning: setup::Pinning) -> anyhow::Result<()> {
    let binary = match &args.gatehouse {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("gatehouse"),
    };
    anyhow::ensure!(
        binary.exists(),
        "{} not found: build it first (cargo build --release)",
        binary.display()
    );
    anyhow::ensure!(
        gatehouse_testkit::find_redis_server().is_some(),
        gatehouse_testkit::REDIS_SERVER_MISSING
    );
    let duration = Duration::from_secs(args.seconds);
    let selected: Vec<&str> = SCENARIOS
        .iter()
        .copied()
        .filter(|s| args.only.is_empty() || args.only.iter().any(|o| o == s))
        .collect();

    println!("pinning: {}", pinning.describe());
    if args.scale {
        let connections = args.connections.iter().copied().max().unwrap_or(64);
        let json = if args.json == Path::new(DEFAULT_JSON) {
            PathBuf::from("target/bench/scale.json")
        } else {
            args.json.clone()
        };
        return scale::run(&binary, &pinning, args.seconds, connections, &json).await;
    }
    println!("raw signing, one core, cached key (gatehouse-core's signer):");
    let raw_es256 = signing::raw_signing_rate(SigningAlgorithm::ES256, Duration::from_secs(3))?;
    let raw_eddsa = signing::raw_signing_rate(SigningAlgorithm::EdDSA, Duration::from_secs(3))?;
    println!("  ES256 {raw_es256:>9.0} signatures/s\n  EdDSA {raw_eddsa:>9.0} signatures/s");

    let redis = gatehouse_testkit::RedisServer::start();
    pinning.pin_redis(redis.pid())?;
    let standalone = setup::Server::start(
        &binary,
        &redis,
        &pinning,
        args.extra_tenants,
        args.extra_clients,
    )?;
    let server = &standalone.server;
    println!(
        "gatehouse {} ready in {:.2} s ({} extra tenants, {} extra clients), RSS {:.1} MiB",
        binary.display(),
        server.startup.as_secs_f64(),
        args.extra_tenants,
        args.extra_clients,
        procfs::rss(server.pid).map_or(0.0, |r| r.0 as f64 / 1_048_576.0)
    );
    let addr = server.addr;

    // Warm every client's secret verification (argon2 once per client, then cached).
    for tenant in ["es256", "eddsa", "opaque"] {
        if let Err(e) = scenarios::warm(addr, tenant).await {
            anyhow::bail!("{e}\n{}", server.log());
        }
    }

    let mut prepared = Prepared {
        addr,
        seconds: args.seconds,
        introspection_pool: args.introspection_pool,
        pools: std::collections::BTreeMap::new(),
        sessions: std::collections::BTreeMap::new(),
    };
    let pids = (server.pid, Some(redis.pid()));
    let mut rows = Vec::new();
    if args.interleave {
        let mut runs = Vec::new();
        for scenario in &selected {
            for &connections in &args.connections {
                let talks = prepared.conversations(scenario, connections).await?;
                runs.push((*scenario, connections, talks, Sample::default()));
            }
        }
        // Each round gives every run one turn, starting one further along each time.
        for round in 0..runs.len() * args.seconds as usize {
            let at = (round + round / runs.len()) % runs.len();
            let (_, _, talks, sample) = &mut runs[at];
            let (slice, kept) = measure(addr, pids, std::mem::take(talks), TURN).await;
            *talks = kept;
            sample.add(slice);
        }
        for (scenario, connections, _, sample) in runs {
            let row = sample.row(scenario, connections);
            print_row(&row, rows.is_empty());
            rows.push(row);
        }
    } else {
        for scenario in &selected {
            for &connections in &args.connections {
                let talks = prepared.conversations(scenario, connections).await?;
                let (sample, _) = measure(addr, pids, talks, duration).await;
                let row = sample.row(scenario, connections);
                print_row(&row, rows.is_empty());
                rows.push(row);
            }
        }
    }
    let Prepared {
        sessions, pools, ..
    } = prepared;

    // Commands per operation, each scenario on one connection for a second, less what the
    // idle server sends meanwhile (its configuration polling).
    let mut commands = std::collections::BTreeMap::new();
    if !args.skip.no_commands {
        let monitor = monitor::Monitor::start(redis.port)?;
        println!("\nRedis commands per operation (MONITOR, script-internal commands excluded):");
        for scenario in &selected {
            let conversations = match *scenario {
                "client_credentials_es256" => {
                    scenarios::client_credentials(&Target::tenant("es256"), 1)
                }
                "client_credentials_eddsa" => {
                    scenarios::client_credentials(&Target::tenant("eddsa"), 1)
                }
                "client_credentials_opaque" => {
                    scenarios::client_credentials(&Target::tenant("opaque"), 1)
                }
                "introspect_jwt" => {
                    scenarios::introspection(&Target::tenant("es256"), &pools["es256"], 1)
                }
                "introspect_opaque" => {
                    scenarios::introspection(&Target::tenant("opaque"), &pools["opaque"], 1)
                }
                "refresh_token" | "refresh_token_opaque" => {
                    scenarios::refresh_chains(addr, flow_tenant(scenario), 1).await?
                }
                "authorization_code" | "authorization_code_opaque" => {
                    let tenant = flow_tenant(scenario);
                    let cookie = sessions.get(tenant).cloned().unwrap_or_default();
                    let codes = scenarios::mint_codes(addr, tenant, &cookie, 5_000, 4).await?;
                    scenarios::code_exchange(&codes, tenant, 1)
                }
                "token_exchange" => scenarios::token_exchange(addr, "es256", 1).await?,
                _ => continue,
            };
            tokio::time::sleep(Duration::from_secs(1)).await;
            monitor.take();
            tokio::time::sleep(Duration::from_secs(1)).await;
            let idle = monitor.take();
            let outcome = load::drive(addr, conversations, Duration::from_secs(1)).await;
            let sent = monitor.take().saturating_sub(idle);
            let per_operation = sent as f64 / outcome.ok.max(1) as f64;
            println!("  {scenario:<28} {per_operation:>5.2}");
            commands.insert(scenario.to_string(), per_operation);
        }
    }

    // Memory per live object, on the same Redis after the runs (their objects stay put: no
    // TTL runs out within the bench).
    let mut memory = serde_json::Map::new();
    if !args.skip.no_memory {
        println!("\nRedis memory per live object (INFO memory used_memory, before and after):");
        for o in memory::per_object(addr, redis.port).await? {
            println!("  {:<58} {:>6.0} bytes ({} made)", o.what, o.bytes, o.count);
            memory.insert(o.what.to_string(), json!(o.bytes));
        }
        println!(
            "  by key (MEMORY USAGE, average of a sample; the keyspace adds about 50 bytes per key):"
        );
        for tenant in ["es256", "opaque"] {
            for k in memory::per_key(redis.port, tenant)? {
                println!(
                    "    {:<28} {:>5} sampled {:>6.0} bytes",
                    k.pattern, k.count, k.bytes
                );
                memory.insert(k.pattern.clone(), json!(k.bytes));
            }
        }
    }

    let startup = server.startup;
    drop(standalone);

    // The peer, on the core Gatehouse had.
    let mut peer_version = String::new();
    let peer_note = match (args.skip.no_peer, peer::available()) {
        (true, _) => "skipped (--no-peer)".to_string(),
        (false, Err(why)) => why,
        (false, Ok(())) => match peer::install() {
            Err(e) => format!("could not install oidc-provider: {e:#}"),
            Ok(installed) => {
                for format in ["jwt", "opaque"] {
                    let p = peer::Peer::start(&pinning, format, &installed)?;
                    peer_version = p.version.clone();
                    let target = Target {
                        token: "/token".into(),
                        introspect: "/token/introspection".into(),
                        auth: http::basic("bench", setup::SECRET),
                    };
                    let warm = load::drive(
                        p.addr,
                        scenarios::client_credentials(&target, 1),
                        Duration::from_millis(300),
                    )
                    .await;
                    anyhow::ensure!(warm.errors == 0, "peer ({format}): {:?}", warm.first_error);
                    for &connections in &args.connections {
                        let name = format!("peer_client_credentials_{format}");
                        let (sample, _) = measure(
                            p.addr,
                            (p.pid, None),
                            scenarios::client_credentials(&target, connections),
                            duration,
                        )
                        .await;
                        let row = sample.row(&name, connections);
                        print_row(&row, false);
                        rows.push(row);
                        // It does not introspect JWT access tokens at all; and its default
                        // in-memory adapter keeps the last 1,000 entries, so the pool is small
                        // and minted just before.
                        if format == "jwt" {
                            continue;
                        }
                        let size = args.introspection_pool.min(PEER_POOL);
                        let pool = scenarios::token_pool(p.addr, &target, size).await?;
                        let name = format!("peer_introspect_{format}");
                        let (sample, _) = measure(
                            p.addr,
                            (p.pid, None),
                            scenarios::introspection(&target, &pool, connections),
                            duration,
                        )
                        .await;
                        let row = sample.row(&name, connections);
                        print_row(&row, false);
                        rows.push(row);
                    }
                }
                format!("oidc-provider {peer_version} on node")
            }
        },
    };
    println!("peer: {peer_note}");
    let best = |scenario: &str| {
        rows.iter()
            .filter(|r| r.scenario == scenario)
            .map(|r| r.outcome.rate())
            .fold(0.0_f64, f64::max)
    };
    let mut versus_peer = serde_json::Map::new();
    for (ours, theirs) in [
        ("client_credentials_es256", "peer_client_credentials_jwt"),
        (
            "client_credentials_opaque",
            "peer_client_credentials_opaque",
        ),
        ("introspect_opaque", "peer_introspect_opaque"),
    ] {
        let (a, b) = (best(ours), best(theirs));
        if a > 0.0 && b > 0.0 {
            println!("gatehouse ÷ peer, {ours}: {:.1}×", a / b);
            versus_peer.insert(ours.to_string(), json!(a / b));
        }
    }

    let ratio = |scenario: &str, raw: f64| {
        rows.iter()
            .filter(|r| r.scenario == scenario)
            .map(|r| r.outcome.rate() / raw)
            .fold(0.0_f64, f64::max)
    };
    let es = ratio("client_credentials_es256", raw_es256);
    let ed = ratio("client_credentials_eddsa", raw_eddsa);
    println!(
        "\nserver tokens/s ÷ raw signatures/s (best connection count): ES256 {:.0} %, EdDSA {:.0} %",
        es * 100.0,
        ed * 100.0
    );
    let errors: u64 = rows.iter().map(|r| r.outcome.errors).sum();
    println!("errors: {errors}");

    let results = json!({
        "machine": {"cores": pinning.cores, "pinning": pinning.describe()},
        "seconds_per_run": args.seconds,
        "extra_tenants": args.extra_tenants,
        "extra_clients": args.extra_clients,
        "startup_seconds": startup.as_secs_f64(),
        "raw_signatures_per_second": {"ES256": raw_es256, "EdDSA": raw_eddsa},
        "ratio_to_raw_signing": {"ES256": es, "EdDSA": ed},
        "peer": peer_note,
        "gatehouse_over_peer": versus_peer,
        "redis_bytes_per_live_object": memory,
        "runs": rows.iter().map(|r| json!({
            "scenario": r.scenario,
            "connections": r.connections,
            "requests_per_second": r.outcome.rate(),
            "ok": r.outcome.ok,
            "errors": r.outcome.errors,
            "first_error": r.outcome.first_error,
            "p50_ms": r.outcome.percentile_ms(0.50),
            "p99_ms": r.outcome.percentile_ms(0.99),
            "server_cpu_us_per_request": r.cpu_per_request_us,
            "redis_cpu_us_per_request": r.redis_cpu_per_request_us,
            "load_generator_cpu_us_per_request": r.load_cpu_per_request_us,
            "server_rss_bytes": r.rss.0,
            "redis_commands_per_operation": commands.get(&r.scenario),
            "server_peak_rss_bytes": r.rss.1,
        })).collect::<Vec<_>>(),
    });
    if let Some(dir) = args.json.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(&results)?)?;
    println!("JSON: {}", args.json.display());
    anyhow::ensure!(
        errors == 0,
        "{errors} answers were wrong; see first_error in the JSON"
    );
    Ok(())
}

/// One turn of a scenario in `--interleave` mode.
const TURN: Duration = Duration::from_secs(1);

/// What one or more runs of a scenario measured: answers, and the server's and Redis's CPU.
#[derive(Default)]
struct Sample {
    outcome: load::Outcome,
    cpu: Duration,
    redis_cpu: Option<Duration>,
    load_cpu: Duration,
    /// The server's (current, peak) RSS after the latest run.
    rss: (u64, u64),
}

impl Sample {
    fn add(&mut self, other: Sample) {
        self.outcome.elapsed += other.outcome.elapsed;
        self.outcome.add(other.outcome);
        self.cpu += other.cpu;
        self.load_cpu += other.load_cpu;
        self.rss = other.rss;
        self.redis_cpu = match (self.redis_cpu, other.redis_cpu) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
    }

    fn row(mut self, scenario: &str, connections: usize) -> Row {
        // Percentiles read the latencies sorted; turns added are each sorted, not together.
        self.outcome.latencies_us.sort_unstable();
        let requests = (self.outcome.ok + self.outcome.errors).max(1) as f64;
        Row {
            scenario: scenario.to_string(),
            connections,
            cpu_per_request_us: self.cpu.as_secs_f64() * 1e6 / requests,
            redis_cpu_per_request_us: self.redis_cpu.map(|c| c.as_secs_f64() * 1e6 / requests),
            load_cpu_per_request_us: self.load_cpu.as_secs_f64() * 1e6 / requests,
            rss: self.rss,
            outcome: self.outcome,
        }
    }
}

/// Runs one scenario and reads the server's (and Redis's) CPU time around it; hands the
/// conversations back for another turn.
async fn measure(
    addr: std::net::SocketAddr,
    (pid, redis_pid): (u32, Option<u32>),
    conversations: Vec<Box<dyn load::Conversation>>,
    duration: Duration,
) -> (Sample, Vec<Box<dyn load::Conversation>>) {
    let cpu_before = procfs::cpu_time(pid).unwrap_or_default();
    let redis_before = redis_pid.and_then(procfs::cpu_time);
    let load_before = procfs::cpu_time(std::process::id()).unwrap_or_default();
    let (outcome, kept) = load::drive_keeping(addr, conversations, duration).await;
    let load_cpu = procfs::cpu_time(std::process::id())
        .unwrap_or_default()
        .saturating_sub(load_before);
    let rss = procfs::rss(pid).unwrap_or((0, 0));
    let cpu = procfs::cpu_time(pid)
        .unwrap_or_default()
        .saturating_sub(cpu_before);
    let redis_cpu = redis_pid
        .and_then(procfs::cpu_time)
        .zip(redis_before)
        .map(|(after, before)| after.saturating_sub(before));
    (
        Sample {
            outcome,
            cpu,
            redis_cpu,
            load_cpu,
            rss,
        },
        kept,
    )
}

/// What the scenarios are set up with, made once and shared: token pools for introspection,
/// alice's sessions for the code flows.
struct Prepared {
    addr: std::net::SocketAddr,
    seconds: u64,
    introspection_pool: usize,
    pools: std::collections::BTreeMap<&'static str, Arc<Vec<String>>>,
    sessions: std::collections::BTreeMap<&'static str, String>,
}

impl Prepared {
    /// One conversation per connection for `scenario`, its tokens, chains or codes made.
    async fn conversations(
        &mut self,
        scenario: &str,
        connections: usize,
    ) -> anyhow::Result<Vec<Box<dyn load::Conversation>>> {
        let addr = self.addr;
        Ok(match scenario {
            "client_credentials_es256" => {
                scenarios::client_credentials(&Target::tenant("es256"), connections)
            }
            "client_credentials_eddsa" => {
                scenarios::client_credentials(&Target::tenant("eddsa"), connections)
            }
            "client_credentials_opaque" => {
                scenarios::client_credentials(&Target::tenant("opaque"), connections)
            }
            "introspect_jwt" | "introspect_opaque" => {
                let tenant = if scenario == "introspect_jwt" {
                    "es256"
                } else {
                    "opaque"
                };
                let target = Target::tenant(tenant);
                if !self.pools.contains_key(tenant) {
                    let pool =
                        scenarios::token_pool(addr, &target, self.introspection_pool).await?;
                    self.pools.insert(tenant, pool);
                }
                scenarios::introspection(&target, &self.pools[tenant], connections)
            }
            "refresh_token" => scenarios::refresh_chains(addr, "es256", connections).await?,
            "refresh_token_opaque" => {
                scenarios::refresh_chains(addr, "opaque", connections).await?
            }
            "authorization_code" | "authorization_code_opaque" => {
                let tenant = flow_tenant(scenario);
                if !self.sessions.contains_key(tenant) {
                    let cookie = scenarios::sign_in(addr, tenant)
                        .await
                        .context("signing alice in")?;
                    self.sessions.insert(tenant, cookie);
                }
                let cookie = self.sessions[tenant].clone();
                // Enough codes for the run at a generous rate; the run ends early if they
                // run out (the rate is over the time actually spent).
                let count = (connections.min(8) as u64 * 4_000 * self.seconds) as usize;
                let codes =
                    scenarios::mint_codes(addr, tenant, &cookie, count.max(1_000), 16).await?;
                scenarios::code_exchange(&codes, tenant, connections)
            }
            "token_exchange" => scenarios::token_exchange(addr, "es256", connections).await?,
            other => anyhow::bail!("unknown scenario {other}"),
        })
    }
}

/// The tenant a refresh or code scenario runs in: the signing one, or the opaque one.
fn flow_tenant(scenario: &str) -> &'static str {
    if scenario.ends_with("_opaque") {
        "opaque"
    } else {
        "es256"
    }
}

fn print_row(row: &Row, header: bool) {
    if header {
        println!(
            "\n{:<28} {:>5} {:>10} {:>8} {:>8} {:>10} {:>12} {:>11} {:>9} {:>7}",
            "scenario",
            "conns",
            "req/s",
            "p50 ms",
            "p99 ms",
            "cpu µs/req",
            "redis µs/req",
            "load µs/req",
            "RSS MiB",
            "errors"
        );
    }
    let o = &row.outcome;
    println!(
        "{:<28} {:>5} {:>10.0} {:>8.3} {:>8.3} {:>10.1} {:>12} {:>11.1} {:>9.1} {:>7}",
        row.scenario,
        row.connections,
        o.rate(),
        o.percentile_ms(0.50),
        o.percentile_ms(0.99),
        row.cpu_per_request_us,
        row.redis_cpu_per_request_us
            .map_or(String::new(), |us| format!("{us:.1}")),
        row.load_cpu_per_request_us,
        row.rss.0 as f64 / 1_048_576.0,
        o.errors
    );
    if let Some(e) = &o.first_error {
        println!("    first error: {e}");
    }
}
