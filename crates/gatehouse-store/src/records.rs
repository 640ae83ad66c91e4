//! Typed access to the store's short-lived records (refresh tokens, codes, sessions, ...):
//! each record type names its [`RecordKind`] once, and is stored as JSON. A stored record that
//! no longer decodes is treated as absent (and logged), not as a server error, so a format
//! change between releases cannot break sign-in.

use crate::{RecordKind, Store, StoreError};
use gatehouse_core::grant::authorization_code::CodeRecord;
use gatehouse_core::grant::device_code::DeviceRecord;
use gatehouse_core::grant::refresh_token::RefreshTokenRecord;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A value kept as a record of one kind.
pub trait Record: Serialize + DeserializeOwned {
    /// The key space it lives in.
    const KIND: RecordKind;
}

impl Record for CodeRecord {
    const KIND: RecordKind = RecordKind::AuthorizationCode;
}

impl Record for RefreshTokenRecord {
    const KIND: RecordKind = RecordKind::RefreshToken;
}

impl Record for DeviceRecord {
    const KIND: RecordKind = RecordKind::DeviceCode;
}

/// Stores `record` under `id` until `expires_at` (unix seconds).
///
/// # Errors
/// The store's, or [`StoreError::Encode`].
pub async fn put<R: Record>(
    store: &dyn Store,
    tenant: &str,
    id: &str,
    record: &R,
    expires_at: u64,
) -> Result<(), StoreError> {
    let json = serde_json::to_string(record).map_err(|e| StoreError::Encode {
        kind: R::KIND,
        reason: e.to_string(),
    })?;
    store
        .put_record(tenant, R::KIND, id, &json, expires_at)
        .await
}

/// The live record under `id`, if any.
///
/// # Errors
/// The store's.
pub async fn get<R: Record>(
    store: &dyn Store,
    tenant: &str,
    id: &str,
) -> Result<Option<R>, StoreError> {
    let Some(json) = store.get_record(tenant, R::KIND, id).await? else {
        return Ok(None);
    };
    match serde_json::from_str(&json) {
        Ok(value) => Ok(Some(value)),
        Err(e) => {
            tracing::warn!(tenant, kind = ?R::KIND, error = %e, "ignoring a record that does not decode");
            Ok(None)
        }
    }
}

/// Removes the record under `id`; an absent one is fine.
///
/// # Errors
/// The store's.
pub async fn delete<R: Record>(
    store: &dyn Store,
    tenant: &str,
    id: &str,
) -> Result<(), StoreError> {
    store.delete_record(tenant, R::KIND, id).await
}

/// Marks the record under `id` used until `until`; true for exactly one caller, however many
/// race.
///
/// # Errors
/// The store's.
pub async fn mark_used<R: Record>(
    store: &dyn Store,
    tenant: &str,
    id: &str,
    until: u64,
) -> Result<bool, StoreError> {
    store.mark_used(tenant, R::KIND, id, until).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;
    use gatehouse_core::clock::ManualClock;
    use gatehouse_core::grant::device_code::DeviceState;
    use std::sync::Arc;

    fn device() -> DeviceRecord {
        DeviceRecord {
            client_id: "tv".into(),
            scope: None,
            user_code: "BCDF-GHJK".into(),
            state: DeviceState::Pending,
            expires_at: 200,
            interval: 5,
            last_poll: 0,
        }
    }

    #[tokio::test]
    async fn records_round_trip_expire_with_the_clock_and_undecodable_ones_are_absent() {
        let clock = ManualClock::at(100);
        let store = MemoryStore::with_clock(clock.clone());
        put(&store, "acme", "d1", &device(), 200).await.unwrap();
        let got = get::<DeviceRecord>(&store, "acme", "d1").await.unwrap();
        assert_eq!(got, Some(device()));
        assert!(
            mark_used::<DeviceRecord>(&store, "acme", "d1", 300)
                .await
                .unwrap()
        );
        assert!(
            !mark_used::<DeviceRecord>(&store, "acme", "d1", 300)
                .await
                .unwrap(),
            "once"
        );
        clock.set(200);
        assert_eq!(
            get::<DeviceRecord>(&store, "acme", "d1").await.unwrap(),
            None
        );

        store
            .put_record("acme", RecordKind::DeviceCode, "bad", "{not json", 500)
            .await
            .unwrap();
        assert_eq!(
            get::<DeviceRecord>(&store, "acme", "bad").await.unwrap(),
            None
        );
        let _: Arc<dyn Store> = Arc::new(store);
    }
}
