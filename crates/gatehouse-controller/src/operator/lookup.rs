//! Finding a Secret an object refers to. The operator's cache holds only Secrets with the
//! watch label (`gatehouse.dev/watch=true`); a referenced one it lacks is either missing or
//! unlabelled, and the two call for different conditions. One list by name, metadata only,
//! tells them apart without reading the Secret's data. A Secret Gatehouse itself made for the
//! object before it labelled its own is adopted (the label added), so an upgrade needs no hand.

use super::ReconcileError;
use super::context::Context;
use crate::secrets::{SecretView, WATCH_LABEL, made_by_gatehouse_for};
use k8s_openapi::api::core::v1::Secret;
use std::sync::Arc;

/// A referenced Secret, as the operator found it.
#[derive(Clone, Debug)]
pub enum Found {
    /// In the cache, so labelled: readable.
    Cached(Arc<Secret>),
    /// Exists without the watch label (only its metadata was seen).
    NotLabelled,
    /// No Secret by that name.
    Missing,
}

impl Found {
    /// What the reconcile core may see of it.
    #[must_use]
    pub fn view(&self) -> SecretView<'_> {
        match self {
            Found::Cached(s) => SecretView::Readable(s),
            Found::NotLabelled => SecretView::NotLabelled,
            Found::Missing => SecretView::Missing,
        }
    }
}

/// The Secret `namespace/name`: from the cache, else whether it exists at all. `owner` is the
/// uid of the object it belongs to if Gatehouse may have made it (to adopt it), `None` for a
/// Secret people supply (a users Secret).
pub async fn secret(
    ctx: &Context,
    namespace: &str,
    name: &str,
    owner: Option<&str>,
) -> Result<Found, ReconcileError> {
    match ctx.secret(namespace, name) {
        Some(s) => Ok(Found::Cached(s)),
        None => uncached(ctx, namespace, name, owner).await,
    }
}

/// The Secret `namespace/name` as the API server has it, when the cache does not: missing, or
/// unlabelled. A labelled one means the cache is behind, and a Gatehouse-made one is adopted:
/// either way the watch is about to deliver it, and the reconcile is retried
/// ([`ReconcileError::Conflict`]).
pub async fn uncached(
    ctx: &Context,
    namespace: &str,
    name: &str,
    owner: Option<&str>,
) -> Result<Found, ReconcileError> {
    let Some(metadata) = ctx.kube.secret_metadata(namespace, name).await? else {
        return Ok(Found::Missing);
    };
    let labelled = metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(WATCH_LABEL.0))
        .is_some_and(|v| v == WATCH_LABEL.1);
    if labelled {
        return Err(ReconcileError::Conflict(format!(
            "Secret {namespace}/{name} is not in the cache yet"
        )));
    }
    if owner.is_some_and(|uid| made_by_gatehouse_for(&metadata, uid)) {
        ctx.kube.label_for_watch(namespace, name).await?;
        tracing::info!(secret = %format!("{namespace}/{name}"), "labelled a Secret Gatehouse made earlier for watching");
        return Err(ReconcileError::Conflict(format!(
            "Secret {namespace}/{name} labelled for watching"
        )));
    }
    Ok(Found::NotLabelled)
}
