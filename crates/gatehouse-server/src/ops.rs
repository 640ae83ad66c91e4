//! The operations listener: `/metrics`, `/healthz` (the process answers) and `/readyz` (the
//! tenant snapshot is loaded and the store answers now).

use crate::TenantDirectory;
use crate::metrics::Metrics;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use gatehouse_store::{Store, StoreError};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(Clone)]
pub struct OpsState {
    pub metrics: Arc<Metrics>,
    pub store: Arc<dyn Store>,
    pub directory: Arc<TenantDirectory>,
    /// Whether a store that may evict keys makes the server unready.
    check_store_settings: bool,
    /// Whether the last check found them unsafe, to log only the changes.
    store_unsafe: Arc<AtomicBool>,
}

impl OpsState {
    #[must_use]
    pub fn new(
        metrics: Arc<Metrics>,
        store: Arc<dyn Store>,
        directory: Arc<TenantDirectory>,
        check_store_settings: bool,
    ) -> Self {
        OpsState {
            metrics,
            store,
            directory,
            check_store_settings,
            store_unsafe: Arc::new(AtomicBool::new(false)),
        }
    }
}

pub fn ops_router(state: OpsState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(State(state): State<OpsState>) -> impl IntoResponse {
    // Derived when scraped rather than kept current on every request.
    let tenants = i64::try_from(state.directory.tenant_count()).unwrap_or(i64::MAX);
    state.metrics.tenants.set(tenants);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

async fn readyz(State(state): State<OpsState>) -> (StatusCode, String) {
    if !state.directory.is_loaded() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "tenant configuration not loaded yet\n".into(),
        );
    }
    match tokio::time::timeout(Duration::from_secs(1), state.store.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
        Err(_) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "store did not answer within 1s\n".into(),
            );
        }
    }
    if state.check_store_settings {
        // Checked on every probe: a failover or a reconnect may land on a Redis set up
        // otherwise than the one checked at start.
        let checked = tokio::time::timeout(Duration::from_secs(1), state.store.check_settings());
        if let Ok(Err(StoreError::Unsafe(why))) = checked.await {
            if !state.store_unsafe.swap(true, Ordering::Relaxed) {
                tracing::error!(%why, "the store's settings turned unsafe: not ready");
            }
            return (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n"));
        }
        if state.store_unsafe.swap(false, Ordering::Relaxed) {
            tracing::info!("the store's settings are safe again");
        }
    }
    (StatusCode::OK, "ready\n".into())
}
