//! Command-line interface. Every flag can also come from a `GATEHOUSE_*` environment variable.

use crate::{crdgen, serve, standalone};
use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use gatehouse_server::proxies::TrustedRange;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "Multi-tenant OAuth 2.0 / OpenID Connect authorization server for Kubernetes"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Reconcile a directory of manifests (Tenant, OAuthClient, Secret) and serve them, in one process.
    Standalone(StandaloneArgs),
    /// Run a token service replica that serves what the operator published to the store.
    Server(ServerArgs),
    /// Reconcile Tenant and OAuthClient resources of a Kubernetes cluster into the store.
    Operator(OperatorArgs),
    /// Print the CustomResourceDefinitions as YAML (or write them to a directory).
    Crdgen(CrdgenArgs),
    /// Print the argon2id PHC string of a password: asked twice without echo on a terminal,
    /// else read from standard input.
    HashPassword,
    /// Sign in as a registered client and show what the tenant issues: the browser flow with
    /// PKCE (the callback received on a loopback redirect URI), or another grant; the tokens,
    /// the verified claims, userinfo and a refresh.
    DemoClient(crate::demo_client::DemoClientArgs),
    /// Print the operator's RBAC (a ClusterRole and a Role for its own namespace) as YAML.
    Rbac(RbacArgs),
    /// Let a user locked out by failed sign-ins sign in again at once, from every address.
    UnlockUser(UnlockUserArgs),
    /// Sign a user out everywhere: revoke every grant they made (refresh and access tokens)
    /// and end every browser session.
    SignOutUser(UnlockUserArgs),
}

#[derive(Args)]
pub struct UnlockUserArgs {
    /// The store the token service uses: `redis://host:port/db`, `rediss://...` or
    /// `redis+cluster://host:port,...` or `redis+sentinel://host:26379,.../primary-name[/db]`
    /// (a password from `GATEHOUSE_STORE_PASSWORD`).
    #[arg(long, env = "GATEHOUSE_STORE")]
    store: String,
    #[command(flatten)]
    store_access: StoreAccessArgs,
    /// The tenant's name.
    #[arg(long)]
    tenant: String,
    /// The username.
    #[arg(long)]
    username: String,
}

#[derive(Args)]
pub struct RbacArgs {
    /// Name of the roles.
    #[arg(long, default_value = "gatehouse-operator")]
    name: String,
    /// The operator's namespace.
    #[arg(long, default_value = "gatehouse")]
    namespace: String,
}

#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Args, Clone)]
pub struct CommonArgs {
    /// Address of the HTTP listener.
    #[arg(long, env = "GATEHOUSE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Base URL clients reach the server at; each tenant's issuer is `{public-url}/{tenant}`.
    /// Defaults to `http://<listen>`.
    #[arg(long, env = "GATEHOUSE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Address of the operations listener (`/metrics`, `/healthz`, `/readyz`); off when unset.
    #[arg(long, env = "GATEHOUSE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// File holding the key-encryption key: 32 random bytes, base64 (`head -c32 /dev/urandom | base64`).
    #[arg(long, env = "GATEHOUSE_KEY_ENCRYPTION_KEY_FILE")]
    pub key_encryption_key_file: Option<PathBuf>,
    /// Proxies in front (an ingress controller, a load balancer) whose `X-Forwarded-For`
    /// entries name the client, as comma-separated CIDR ranges or addresses
    /// (`10.0.0.0/8,192.168.1.5`). Sign-in throttling counts per client address: the header is
    /// read only on connections from these ranges, from the right, past entries that are
    /// themselves trusted proxies. None by default: the TCP peer is the client, and behind a
    /// proxy every client shares its address.
    #[arg(long, env = "GATEHOUSE_TRUSTED_PROXIES", value_name = "CIDR,...",
          value_delimiter = ',', value_parser = trusted_range)]
    pub trusted_proxies: Vec<TrustedRange>,
    /// Log format.
    #[arg(long, env = "GATEHOUSE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub connections: ConnectionArgs,
}

/// How long clients may take and how many connections are kept (see the guide's
/// "Connections and shutdown").
#[derive(Args, Clone)]
pub struct ConnectionArgs {
    /// Time from a request's first byte to the end of its head; slower clients are cut.
    #[arg(long, env = "GATEHOUSE_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub header_read_timeout: Duration,
    /// Time a request body may take to arrive; slower bodies are answered 408.
    #[arg(long, env = "GATEHOUSE_BODY_READ_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub body_read_timeout: Duration,
    /// Time a keep-alive connection may wait for its next request. Keep it above the idle
    /// timeout of a proxy in front (60 s for most ingress controllers).
    #[arg(long, env = "GATEHOUSE_IDLE_TIMEOUT", default_value = "75s", value_parser = duration)]
    pub idle_timeout: Duration,
    /// Connections kept open at once; at the cap, the one that has waited longest without a
    /// request in flight is closed to make room.
    #[arg(long, env = "GATEHOUSE_MAX_CONNECTIONS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// After SIGTERM, time requests in flight may take before the process exits anyway.
    #[arg(long, env = "GATEHOUSE_SHUTDOWN_TIMEOUT", default_value = "25s", value_parser = duration)]
    pub shutdown_timeout: Duration,
}

fn trusted_range(s: &str) -> Result<TrustedRange, String> {
    s.parse()
        .map_err(|e: gatehouse_server::proxies::BadRange| e.to_string())
}

fn duration(s: &str) -> Result<Duration, String> {
    match gatehouse_core::duration::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be more than 0s".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

impl CommonArgs {
    pub fn public_url(&self) -> anyhow::Result<String> {
        let url = self
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen));
        let url = url.trim_end_matches('/').to_string();
        if !(url.starts_with("http://") || url.starts_with("https://"))
            || url.contains('?')
            || url.contains('#')
        {
            anyhow::bail!(
                "--public-url must be an http(s) URL without query or fragment, got {url:?}"
            );
        }
        Ok(url)
    }
}

/// How to get into Redis besides the URL. The password comes from `GATEHOUSE_STORE_PASSWORD`,
/// and for `redis+sentinel://` the Sentinels' own from `GATEHOUSE_STORE_SENTINEL_PASSWORD`
/// (environment only: never in a process listing).
#[derive(Args, Clone, Default)]
pub struct StoreAccessArgs {
    /// An ACL user (Redis 6+) to authenticate as, with the password of
    /// `GATEHOUSE_STORE_PASSWORD`; `default` when unset.
    #[arg(long, env = "GATEHOUSE_STORE_USERNAME")]
    pub store_username: Option<String>,
    /// PEM CA certificates that sign a `rediss://` server's certificate (a private CA);
    /// trusted instead of the web's roots.
    #[arg(long, env = "GATEHOUSE_STORE_CA_FILE")]
    pub store_ca_file: Option<PathBuf>,
    /// How Redis keeps the grant families started from now on: `compact` (one small hash per
    /// family, whose access tokens name it), `hash` (the previous version's: one hash per
    /// family listing its tokens and spent marks) or `sets` (the layout of servers from before
    /// the hash). For a rolling upgrade from an earlier version, roll every server to this one
    /// with that version's layout, then switch to `compact`. Families already written are read
    /// in any layout.
    #[arg(long, env = "GATEHOUSE_FAMILY_LAYOUT", value_enum, default_value_t = FamilyLayoutArg::Compact)]
    pub family_layout: FamilyLayoutArg,
}

/// `--family-layout` (see [`gatehouse_store::FamilyLayout`]).
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FamilyLayoutArg {
    /// One hash per family of a size that does not grow with rotation.
    #[default]
    Compact,
    /// One hash per family listing its tokens and spent marks.
    Hash,
    /// A set per family, each mark a key of its own.
    Sets,
}

impl From<FamilyLayoutArg> for gatehouse_store::FamilyLayout {
    fn from(arg: FamilyLayoutArg) -> Self {
        match arg {
            FamilyLayoutArg::Compact => gatehouse_store::FamilyLayout::Compact,
            FamilyLayoutArg::Hash => gatehouse_store::FamilyLayout::Hash,
            FamilyLayoutArg::Sets => gatehouse_store::FamilyLayout::Sets,
        }
    }
}

/// Whether to start on a Redis that may evict keys.
#[derive(Args, Clone, Copy)]
pub struct StoreSafetyArgs {
    /// Start even when Redis may evict keys (a memory limit with a `maxmemory-policy` other
    /// than `noeviction`): an evicted replay marker lets a spent code or refresh token be used
    /// again. Only for a Redis known never to fill.
    #[arg(long, env = "GATEHOUSE_ALLOW_EVICTING_STORE")]
    pub allow_evicting_store: bool,
}

/// How the keys of Tenants' `trustedIssuers` are read (by `operator` and `standalone`; the
/// token service never calls out).
#[derive(Args, Clone)]
pub struct TrustedIssuerArgs {
    /// Also trust the CA certificates in this PEM file when reading trusted issuers' keys
    /// (public web roots are always trusted).
    #[arg(long, env = "GATEHOUSE_TRUSTED_ISSUER_CA_FILE")]
    pub trusted_issuer_ca_file: Option<PathBuf>,
    /// Let trusted issuers' URLs (and their redirects and discovery documents) reach private,
    /// loopback and link-local addresses: for an issuer inside your network.
    #[arg(long, env = "GATEHOUSE_ALLOW_PRIVATE_ISSUER_ADDRESSES")]
    pub allow_private_issuer_addresses: bool,
    /// How often trusted issuers' keys are read again (a failed read is retried within 30 s).
    #[arg(long, env = "GATEHOUSE_TRUSTED_ISSUER_REFRESH", default_value = "5m", value_parser = duration)]
    pub trusted_issuer_refresh: Duration,
}

impl TrustedIssuerArgs {
    /// The reader these settings describe.
    pub fn fetcher(&self) -> anyhow::Result<gatehouse_controller::issuers::fetch::Fetcher> {
        gatehouse_controller::issuers::fetch::Fetcher::new(
            self.trusted_issuer_ca_file.as_deref(),
            self.allow_private_issuer_addresses,
        )
        .context("--trusted-issuer-ca-file")
    }
}

#[derive(Args)]
pub struct StandaloneArgs {
    /// Directory of YAML manifests (multi-document files allowed); edits are picked up live.
    #[arg(long, env = "GATEHOUSE_MANIFESTS", default_value = "examples")]
    pub manifests: PathBuf,
    /// Store URL: `memory://`, `redis://host:port/db`, `rediss://...`, `redis+cluster://host:port,...`, `rediss+cluster://...`, `redis+sentinel://host:26379,.../primary-name[/db]` or `rediss+sentinel://...`.
    #[arg(long, env = "GATEHOUSE_STORE", default_value = "memory://")]
    pub store: String,
    #[command(flatten)]
    pub store_safety: StoreSafetyArgs,
    #[command(flatten)]
    pub store_access: StoreAccessArgs,
    #[command(flatten)]
    pub trusted_issuers: TrustedIssuerArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Args)]
pub struct ServerArgs {
    /// Store URL: `redis://host:port/db`, `rediss://...`, `redis+cluster://host:port,...`, `rediss+cluster://...`, `redis+sentinel://host:26379,.../primary-name[/db]` or `rediss+sentinel://...`.
    #[arg(long, env = "GATEHOUSE_STORE")]
    pub store: String,
    #[command(flatten)]
    pub store_safety: StoreSafetyArgs,
    #[command(flatten)]
    pub store_access: StoreAccessArgs,
    /// Review ServiceAccount tokens with the API server (TokenReview) for tenants with
    /// `reviewServiceAccountTokens`; needs Kubernetes credentials (in-cluster or KUBECONFIG)
    /// allowed to create tokenreviews.
    #[arg(long, env = "GATEHOUSE_TOKEN_REVIEW")]
    pub token_review: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Args)]
pub struct OperatorArgs {
    /// Store URL: `redis://host:port/db`, `rediss://...`, `redis+cluster://host:port,...`, `rediss+cluster://...`, `redis+sentinel://host:26379,.../primary-name[/db]` or `rediss+sentinel://...`.
    #[arg(long, env = "GATEHOUSE_STORE")]
    pub store: String,
    #[command(flatten)]
    pub store_safety: StoreSafetyArgs,
    #[command(flatten)]
    pub store_access: StoreAccessArgs,
    /// Base URL of the token service (the servers' --public-url), for the issuers in statuses
    /// and generated Secrets.
    #[arg(long, env = "GATEHOUSE_PUBLIC_URL")]
    pub public_url: String,
    /// File holding the key-encryption key (the same as the servers').
    #[arg(long, env = "GATEHOUSE_KEY_ENCRYPTION_KEY_FILE")]
    pub key_encryption_key_file: Option<PathBuf>,
    /// The operator's namespace (its leader Lease and the tenants' signing-key Secrets).
    /// Defaults to the pod's namespace in a cluster, else the kubeconfig's namespace.
    #[arg(long, env = "GATEHOUSE_NAMESPACE")]
    pub namespace: Option<String>,
    /// This replica's identity in the leader Lease; defaults to the pod name (POD_NAME) or
    /// the host name.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Address of the operations listener (`/metrics`, `/healthz`, `/readyz`); off when unset.
    #[arg(long, env = "GATEHOUSE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Log format.
    #[arg(long, env = "GATEHOUSE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub trusted_issuers: TrustedIssuerArgs,
}

#[derive(Args)]
struct CrdgenArgs {
    /// Write one file per CRD into this directory instead of printing.
    #[arg(long)]
    output_dir: Option<PathBuf>,
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Crdgen(args) => {
            if let Some(dir) = args.output_dir {
                crdgen::write(&dir)
            } else {
                write_stdout(&crdgen::render()?)
            }
        }
        Command::HashPassword => hash_password(),
        Command::DemoClient(args) => run_to_end(crate::demo_client::run(args)),
        Command::Rbac(args) => {
            let (cluster, role) = gatehouse_controller::rbac::roles(&args.name, &args.namespace);
            let mut out = String::new();
            for doc in [cluster, role] {
                out.push_str("---\n");
                out.push_str(&serde_saphyr::to_string(&doc)?);
            }
            write_stdout(&out)
        }
        Command::UnlockUser(args) => run_to_end(unlock_user(args)),
        Command::SignOutUser(args) => run_to_end(sign_out_user(args)),
        Command::Standalone(args) => {
            crate::logging::init(args.common.log_format)?;
            run_to_end(standalone::run(args))
        }
        Command::Operator(args) => {
            crate::logging::init(args.log_format)?;
            run_to_end(crate::operator::run(args))
        }
        Command::Server(args) => {
            crate::logging::init(args.common.log_format)?;
            run_to_end(serve::run_server(args))
        }
    }
}

/// Runs `main` to its end, then leaves without waiting for blocking work still running (a
/// read of standard input, a file write): shutdown has its own deadline and must keep it.
fn run_to_end(main: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    let runtime = runtime()?;
    let result = runtime.block_on(main);
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// The async runtime: multi-threaded, or a single-threaded one when the process may use only
/// one core (a CPU-limited pod, `taskset`), where work stealing has nothing to steal from and
/// only costs.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let mut builder = if cores == 1 {
        tracing::info!("one core available: running on a single-threaded async runtime");
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder
        .enable_all()
        .build()
        .context("starting the async runtime")
}

async fn unlock_user(args: UnlockUserArgs) -> anyhow::Result<()> {
    if args.store.starts_with("memory:") {
        anyhow::bail!(
            "--store memory:// lives inside one process; a standalone server's lockouts end with its window ({} minutes) or a restart",
            gatehouse_core::throttle::WINDOW_SECS / 60
        );
    }
    let store = serve::open_store(
        &args.store,
        &args.store_access,
        StoreSafetyArgs {
            allow_evicting_store: true,
        },
    )
    .await?;
    let now = gatehouse_core::clock::Clock::now(&gatehouse_core::clock::SystemClock);
    gatehouse_flows::sign_in::unlock(&*store, &args.tenant, &args.username, now)
        .await
        .map_err(|e| {
            anyhow::anyhow!("unlocking {} of tenant {}: {e}", args.username, args.tenant)
        })?;
    write_stdout(&format!(
        "{} of tenant {} may sign in again\n",
        args.username, args.tenant
    ))
}

async fn sign_out_user(args: UnlockUserArgs) -> anyhow::Result<()> {
    if args.store.starts_with("memory:") {
        anyhow::bail!(
            "--store memory:// lives inside one process; restart standalone to end every session"
        );
    }
    let store = serve::open_store(
        &args.store,
        &args.store_access,
        StoreSafetyArgs {
            allow_evicting_store: true,
        },
    )
    .await?;
    let settings = store
        .tenant_settings(&args.tenant)
        .await
        .map_err(|e| anyhow::anyhow!("reading tenant {}: {e}", args.tenant))?;
    let Some(config) = settings.config else {
        anyhow::bail!(
            "no tenant {} in {}",
            args.tenant,
            gatehouse_store::redact_url(&args.store)
        );
    };
    if config.user(&args.username).is_none() {
        eprintln!(
            "note: {} is not a user of tenant {} now; signing the name out anyway",
            args.username, args.tenant
        );
    }
    // Longer than anything issued before can live: refresh tokens, codes, device codes,
    // sessions, access tokens.
    let keep = [
        config.refresh_token_ttl_secs,
        config.authorization_code_ttl_secs,
        config.access_token_ttl_secs,
        gatehouse_flows::browser::session::SESSION_TTL_SECS,
        gatehouse_core::grant::device_code::DEVICE_CODE_TTL_SECS,
    ]
    .into_iter()
    .max()
    .unwrap_or_default();
    let now = gatehouse_core::clock::Clock::now(&gatehouse_core::clock::SystemClock);
    gatehouse_flows::sign_in::sign_out_everywhere(&*store, &args.tenant, &args.username, now, keep)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "signing {} of tenant {} out: {e}",
                args.username,
                args.tenant
            )
        })?;
    write_stdout(&format!(
        "{} of tenant {} is signed out everywhere: sessions, refresh tokens and codes from before now are refused\n",
        args.username, args.tenant
    ))
}

fn hash_password() -> anyhow::Result<()> {
    use std::io::{IsTerminal, Read};
    let password = if std::io::stdin().is_terminal() {
        crate::password_prompt::twice()?
    } else {
        let mut input = zeroize::Zeroizing::new(String::new());
        std::io::stdin()
            .read_to_string(&mut input)
            .context("reading the password from standard input")?;
        let password = input
            .strip_suffix('\n')
            .map_or(input.as_str(), |p| p.strip_suffix('\r').unwrap_or(p));
        zeroize::Zeroizing::new(password.to_string())
    };
    if password.is_empty() {
        anyhow::bail!("empty password");
    }
    write_stdout(&format!(
        "{}\n",
        gatehouse_core::secret::hash_secret(&password)?
    ))
}

/// Writes `text` to standard output, or says why it could not (a closed pipe, a full disk)
/// instead of panicking as `print!` does.
pub(crate) fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("writing to standard output")
}
