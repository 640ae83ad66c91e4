//! Starting the HTTP listeners shared by `server` and `standalone`.

use crate::cli::{CommonArgs, ConnectionArgs, ServerArgs, StoreAccessArgs, StoreSafetyArgs};
use anyhow::Context;
use gatehouse_core::keys::KeyEncryptionKey;
use gatehouse_core::{clock, random};
use gatehouse_server::connections::{self, ConnectionLimits};
use gatehouse_server::metrics::Metrics;
use gatehouse_server::ops::{OpsState, ops_router};
use gatehouse_server::proxies::TrustedProxies;
use gatehouse_server::{AppState, Services, Shared, TenantDirectory, router};
use gatehouse_store::{Store, StoreError};
use std::sync::Arc;
use std::time::Duration;

/// How often servers look for configuration changes in the store.
pub const REFRESH_INTERVAL: Duration = Duration::from_millis(250);

/// Reads the key-encryption key from its file.
pub fn load_kek(args: &CommonArgs) -> anyhow::Result<Option<KeyEncryptionKey>> {
    read_kek(args.key_encryption_key_file.as_deref())
}

pub fn read_kek(path: Option<&std::path::Path>) -> anyhow::Result<Option<KeyEncryptionKey>> {
    let Some(path) = path else {
        return Ok(None);
    };
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("reading the key-encryption key from {}", path.display()))?,
    );
    let kek = KeyEncryptionKey::from_base64(&text)
        .with_context(|| format!("key-encryption key in {}", path.display()))?;
    Ok(Some(kek))
}

/// Opens the store; a Redis password in `GATEHOUSE_STORE_PASSWORD` (environment only, so it
/// stays out of process listings and URLs) is added to the URL's nodes, with the ACL user and
/// CA file of `access`. A Redis that may evict keys is refused unless allowed.
pub async fn open_store(
    url: &str,
    access: &StoreAccessArgs,
    safety: StoreSafetyArgs,
) -> anyhow::Result<Arc<dyn Store>> {
    let password = std::env::var("GATEHOUSE_STORE_PASSWORD").ok();
    let sentinel_password = std::env::var("GATEHOUSE_STORE_SENTINEL_PASSWORD").ok();
    let ca_pem = match &access.store_ca_file {
        Some(path) => Some(
            std::fs::read(path)
                .with_context(|| format!("reading --store-ca-file {}", path.display()))?,
        ),
        None => None,
    };
    let store = gatehouse_store::open_with(
        url,
        &gatehouse_store::Access {
            username: access.store_username.as_deref(),
            password: password.as_deref(),
            ca_pem,
            sentinel_password: sentinel_password.as_deref(),
            new_families: access.family_layout.into(),
        },
    )
    .await
    .map_err(|e| {
        let message = e.to_string();
        let hint = if message.contains("certificate") && access.store_ca_file.is_none() {
            " (signed by a private CA? give it with --store-ca-file)"
        } else if message.contains("NOAUTH") {
            " (a password is missing: GATEHOUSE_STORE_PASSWORD for Redis, GATEHOUSE_STORE_SENTINEL_PASSWORD for Sentinels)"
        } else {
            ""
        };
        anyhow::anyhow!(
            "opening the store {}: {e}{hint}",
            gatehouse_store::redact_url(url)
        )
    })?;
    match store.check_settings().await {
        Ok(()) => {}
        Err(StoreError::Unsafe(why)) if safety.allow_evicting_store => {
            tracing::warn!(%why, "starting on an evicting store (--allow-evicting-store)");
        }
        Err(StoreError::Unsafe(why)) => anyhow::bail!(
            "refusing to start: {why} (or pass --allow-evicting-store if this Redis never fills)"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot read the store's settings"),
    }
    Ok(store)
}

/// Checks the store's settings again every half minute (a failover or a reconnect may land on
/// a Redis configured otherwise) and says so when they turn unsafe or safe again.
pub fn watch_store_settings(store: Arc<dyn Store>, safety: StoreSafetyArgs) {
    if safety.allow_evicting_store {
        return;
    }
    tokio::spawn(async move {
        let mut unsafe_before = false;
        loop {
            tokio::time::sleep(Duration::from_secs(30)).await;
            match store.check_settings().await {
                Err(StoreError::Unsafe(why)) => {
                    if !unsafe_before {
                        tracing::error!(%why, "the store's settings turned unsafe");
                    }
                    unsafe_before = true;
                }
                Ok(()) if unsafe_before => {
                    tracing::info!("the store's settings are safe again");
                    unsafe_before = false;
                }
                _ => {}
            }
        }
    });
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
    tracing::info!("shutting down");
}

/// Serves the OAuth router (and the operations listener, if asked) until a shutdown signal.
pub async fn serve(
    services: Services,
    directory: Arc<TenantDirectory>,
    common: &CommonArgs,
    safety: StoreSafetyArgs,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    // Each store call timed by operation, and sign-ins counted, for /metrics.
    let mut services = services;
    let timing = metrics.clone();
    services.store = Arc::new(gatehouse_store::timed::TimedStore::new(
        services.store.clone(),
        Arc::new(move |operation, elapsed, ok| timing.store_call(operation, elapsed, ok)),
    ));
    services.observer = metrics.clone();
    let store = services.store.clone();
    tokio::spawn(directory.clone().run(REFRESH_INTERVAL));
    let listener = tokio::net::TcpListener::bind(common.listen)
        .await
        .with_context(|| format!("listening on {}", common.listen))?;
    if let Some(addr) = common.metrics_listen {
        let ops = ops_router(OpsState::new(
            metrics.clone(),
            store.clone(),
            directory.clone(),
            !safety.allow_evicting_store,
        ));
        let ops_listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr} (--metrics-listen)"))?;
        tracing::info!(%addr, "operations listener: /metrics /healthz /readyz");
        tokio::spawn(async move {
            if let Err(e) = axum::serve(ops_listener, ops).await {
                tracing::error!(error = %e, "operations listener failed");
            }
        });
    }
    let mut state = Shared::new(directory.clone(), services, metrics);
    // Computed once before serving so the first unknown-user sign-in is not slower than the rest.
    state
        .services
        .argon2
        .run(|| {
            gatehouse_core::secret::decoy_hash();
        })
        .await
        .context("preparing sign-in")?;
    state.trusted_proxies = TrustedProxies::new(common.trusted_proxies.iter().copied());
    state.body_read_timeout = common.connections.body_read_timeout;
    let app = router(AppState::from(state));
    let limits = connection_limits(&common.connections);
    tracing::info!(listen = %common.listen, public_url = %directory.public_url(), "serving OAuth endpoints");
    connections::serve(listener, app, limits, shutdown_signal())
        .await
        .context("serving HTTP")?;
    tracing::info!("all connections closed");
    Ok(())
}

/// The limits asked for, with the connection cap kept under the process's file limit (a
/// cap the process cannot reach would let accepting fail first).
fn connection_limits(args: &ConnectionArgs) -> ConnectionLimits {
    // Room for the store's connections, the operations listener and files.
    const RESERVED_FILES: usize = 128;
    let mut max_connections = usize::try_from(args.max_connections).unwrap_or(usize::MAX);
    if let Some(files) = open_files_limit() {
        let reachable = files.saturating_sub(RESERVED_FILES).max(1);
        if max_connections > reachable {
            tracing::warn!(
                asked = max_connections,
                open_files_limit = files,
                using = reachable,
                "--max-connections is above what the open-files limit allows; raise `ulimit -n` to keep more"
            );
            max_connections = reachable;
        }
    }
    ConnectionLimits {
        header_read_timeout: args.header_read_timeout,
        idle_timeout: args.idle_timeout,
        max_connections,
        shutdown_timeout: args.shutdown_timeout,
    }
}

/// The soft limit on open files, where the system says (Linux).
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

pub async fn run_server(args: ServerArgs) -> anyhow::Result<()> {
    let kek = load_kek(&args.common)?.context(
        "a key-encryption key is required: pass --key-encryption-key-file or set GATEHOUSE_KEY_ENCRYPTION_KEY_FILE",
    )?;
    let public_url = args.common.public_url()?;
    if args.store.starts_with("memory:") {
        anyhow::bail!(
            "--store memory:// holds no configuration for a server; use redis://, or run `gatehouse standalone`"
        );
    }
    let store = open_store(&args.store, &args.store_access, args.store_safety).await?;
    let directory = Arc::new(TenantDirectory::new(
        store.clone(),
        Arc::new(kek),
        &public_url,
    ));
    if let Err(e) = directory.refresh().await {
        tracing::warn!(error = %e, "store not reachable at start; will keep trying");
    }
    let mut services = Services::new(store, clock::system(), random::system());
    if args.token_review {
        let client = kube::Client::try_default().await.context(
            "--token-review: connecting to Kubernetes (in-cluster service account or kubeconfig)",
        )?;
        tracing::info!("reviewing ServiceAccount tokens with the API server for tenants that ask");
        services = services.with_token_review(Arc::new(
            crate::token_review::KubeTokenReviewer::new(client),
        ));
    }
    serve(services, directory, &args.common, args.store_safety).await
}
