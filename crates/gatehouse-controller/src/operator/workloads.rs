//! Workload identity's view of the cluster: the ServiceAccount token issuer and its keys, read
//! from the API server's discovery documents at start and then every [`RECHECK`], and the
//! workload-identity clients looked at again on the same beat, so that a rotated cluster key
//! reaches their registrations and a deleted ServiceAccount takes its client out of service.
//! A failed read keeps the last good keys (the cluster still signs with them) and is logged.

use super::context::Context;
use gatehouse_crd::OAuthClient;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use std::sync::Arc;
use std::time::Duration;

/// How often the issuer is read and workload-identity clients are reconciled again.
pub const RECHECK: Duration = Duration::from_secs(20);

/// Reads the issuer once: true when it changed.
pub async fn refresh_issuer(ctx: &Context) -> bool {
    match ctx.kube.service_account_issuer().await {
        Ok(issuer) => {
            let name = issuer.issuer.clone();
            let changed = ctx.set_cluster_issuer(issuer);
            if changed {
                tracing::info!(issuer = %name, "ServiceAccount token issuer and keys read from the API server");
            }
            changed
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the cluster's ServiceAccount issuer; workload-identity clients keep the last keys read");
            false
        }
    }
}

/// Every workload-identity client in the cache.
fn workload_clients(ctx: &Context) -> Vec<ObjectRef<OAuthClient>> {
    ctx.caches
        .clients
        .state()
        .iter()
        .filter(|c| c.spec.workload_identity.is_some())
        .map(|c| ObjectRef::new(&c.name_any()).within(&c.namespace().unwrap_or_default()))
        .collect()
}

/// The loop; ends with the operator's leadership.
pub async fn run(ctx: Arc<Context>) {
    loop {
        tokio::time::sleep(RECHECK).await;
        refresh_issuer(&ctx).await;
        for client in workload_clients(&ctx) {
            if ctx.requeue_clients.unbounded_send(client).is_err() {
                return;
            }
        }
    }
}
