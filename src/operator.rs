//! `gatehouse operator`: the Kubernetes controller's process (`gatehouse_controller::operator`)
//! with its kube client, leader identity and operations listener.

use crate::cli::OperatorArgs;
use crate::serve::{open_store, read_kek, shutdown_signal};
use anyhow::Context;
use gatehouse_controller::operator::OperatorConfig;
use gatehouse_controller::operator::metrics::OperatorMetrics;
use gatehouse_core::{clock, random};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub async fn run(args: OperatorArgs) -> anyhow::Result<()> {
    let kek = read_kek(args.key_encryption_key_file.as_deref())?.context(
        "a key-encryption key is required: pass --key-encryption-key-file or set GATEHOUSE_KEY_ENCRYPTION_KEY_FILE",
    )?;
    let public_url = args.public_url.trim_end_matches('/').to_string();
    if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
        anyhow::bail!("--public-url must be an http(s) URL, got {public_url:?}");
    }
    if args.store.starts_with("memory:") {
        anyhow::bail!("--store memory:// would be invisible to the servers; use redis://");
    }
    let store = open_store(&args.store, &args.store_access, args.store_safety).await?;
    crate::serve::watch_store_settings(store.clone(), args.store_safety);
    let client = kube::Client::try_default()
        .await
        .context("connecting to Kubernetes (in-cluster service account or kubeconfig)")?;
    let namespace = args
        .namespace
        .clone()
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| client.default_namespace().to_string());
    let identity = match args.identity.clone() {
        Some(id) => id,
        None => std::fs::read_to_string("/proc/sys/kernel/hostname").map_or_else(
            |_| format!("gatehouse-operator-{}", std::process::id()),
            |h| h.trim().to_string(),
        ),
    };
    let metrics = Arc::new(OperatorMetrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    if let Some(addr) = args.metrics_listen {
        let app = operator_ops_router(metrics.clone(), ready.clone());
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr} (--metrics-listen)"))?;
        tracing::info!(%addr, "operations listener: /metrics /healthz /readyz");
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "operations listener failed");
            }
        });
    }
    tracing::info!(%namespace, %identity, store = %gatehouse_store::redact_url(&args.store), "operator starting");
    let config = OperatorConfig {
        fetcher: args.trusted_issuers.fetcher()?,
        issuer_refresh: args.trusted_issuers.trusted_issuer_refresh,
        public_url,
        clock: clock::system(),
        random: random::system(),
        namespace,
        identity,
    };
    Box::pin(gatehouse_controller::operator::run(
        client,
        store,
        Arc::new(kek),
        config,
        metrics,
        ready,
        shutdown_signal(),
    ))
    .await
    .context("the operator stopped")
}

/// `/metrics` (the operator's), `/healthz` (the process runs) and `/readyz` (standing by, or
/// leading with caches filled).
fn operator_ops_router(metrics: Arc<OperatorMetrics>, ready: Arc<AtomicBool>) -> axum::Router {
    use axum::http::{StatusCode, header};
    use axum::routing::get;
    axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.encode(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.load(Ordering::Relaxed);
                async move {
                    if ready {
                        (StatusCode::OK, "ready")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "caches not filled yet")
                    }
                }
            }),
        )
}
