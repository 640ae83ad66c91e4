//! The operations listener: `/metrics`, `/healthz` (the process answers) and `/readyz` (the
//! tenant snapshot is loaded and the store answers now).

use crate::TenantDirectory;
use crate::metrics::Metrics;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use gatehouse_store::Store;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct OpsState {
    pub metrics: Arc<Metrics>,
    pub store: Arc<dyn Store>,
    pub directory: Arc<TenantDirectory>,
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
        Ok(Ok(())) => (StatusCode::OK, "ready\n".into()),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "store did not answer within 1s\n".into(),
        ),
    }
}
