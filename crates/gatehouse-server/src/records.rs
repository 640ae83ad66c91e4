//! Typed access to the store's short-lived records (refresh tokens, codes, sessions, ...):
//! JSON in, JSON out, and a record that no longer decodes is treated as absent (logged), not as
//! a server error, so a format change between releases cannot break sign-in.

use crate::error::HttpError;
use gatehouse_store::{RecordKind, Store};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub async fn put<T: Serialize>(
    store: &dyn Store,
    tenant: &str,
    kind: RecordKind,
    id: &str,
    value: &T,
    expires_at: u64,
) -> Result<(), HttpError> {
    let json = serde_json::to_string(value).map_err(|e| {
        tracing::error!(?kind, error = %e, "cannot encode record");
        gatehouse_core::OAuthError::server_error("internal error")
    })?;
    store
        .put_record(tenant, kind, id, &json, expires_at)
        .await?;
    Ok(())
}

/// The record and whether it was marked used.
pub async fn get<T: DeserializeOwned>(
    store: &dyn Store,
    tenant: &str,
    kind: RecordKind,
    id: &str,
) -> Result<Option<(T, bool)>, HttpError> {
    let Some((json, used)) = store.get_record(tenant, kind, id).await? else {
        return Ok(None);
    };
    match serde_json::from_str(&json) {
        Ok(value) => Ok(Some((value, used))),
        Err(e) => {
            tracing::warn!(tenant, ?kind, error = %e, "ignoring a record that does not decode");
            Ok(None)
        }
    }
}
