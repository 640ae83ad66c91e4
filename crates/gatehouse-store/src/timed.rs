//! A store that reports how long each call took, by operation, for the servers' metrics (and
//! whether it failed), each call a trace span; it changes nothing else.

use crate::{
    AccessTokenClaims, Issue, Issued, RecordKind, SigningKeyRecord, Store, StoreError,
    TenantBundle, TenantSettings, Version,
};
use async_trait::async_trait;
use gatehouse_core::{ClientConfig, TenantConfig};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Told of every call: the operation (the [`Store`] method's name), how long it took, and
/// whether it succeeded.
pub type OnCall = Arc<dyn Fn(&'static str, Duration, bool) + Send + Sync>;

/// Wraps a store; see the module's documentation.
pub struct TimedStore {
    inner: Arc<dyn Store>,
    on_call: OnCall,
}

impl TimedStore {
    /// `inner`, each call reported to `on_call`.
    #[must_use]
    pub fn new(inner: Arc<dyn Store>, on_call: OnCall) -> Self {
        TimedStore { inner, on_call }
    }
}

macro_rules! timed {
    ($self:ident, $operation:literal, $call:expr) => {{
        let started = Instant::now();
        let span = tracing::trace_span!(target: "gatehouse::trace", "store", db.operation = $operation);
        let result = tracing::Instrument::instrument($call, span).await;
        ($self.on_call)($operation, started.elapsed(), result.is_ok());
        result
    }};
}

#[async_trait]
impl Store for TimedStore {
    async fn put_tenant(&self, config: &TenantConfig) -> Result<(), StoreError> {
        timed!(self, "put_tenant", self.inner.put_tenant(config))
    }

    async fn put_signing_keys(
        &self,
        tenant: &str,
        keys: &[SigningKeyRecord],
    ) -> Result<(), StoreError> {
        timed!(
            self,
            "put_signing_keys",
            self.inner.put_signing_keys(tenant, keys)
        )
    }

    async fn put_client(&self, tenant: &str, client: &ClientConfig) -> Result<(), StoreError> {
        timed!(self, "put_client", self.inner.put_client(tenant, client))
    }

    async fn delete_client(&self, tenant: &str, client_id: &str) -> Result<(), StoreError> {
        timed!(
            self,
            "delete_client",
            self.inner.delete_client(tenant, client_id)
        )
    }

    async fn delete_tenant(&self, tenant: &str) -> Result<(), StoreError> {
        timed!(self, "delete_tenant", self.inner.delete_tenant(tenant))
    }

    async fn purge_tenant(&self, tenant: &str) -> Result<u64, StoreError> {
        timed!(self, "purge_tenant", self.inner.purge_tenant(tenant))
    }

    async fn get_client(
        &self,
        tenant: &str,
        client_id: &str,
    ) -> Result<Option<ClientConfig>, StoreError> {
        timed!(self, "get_client", self.inner.get_client(tenant, client_id))
    }

    async fn tenant_versions(&self) -> Result<BTreeMap<String, Version>, StoreError> {
        timed!(self, "tenant_versions", self.inner.tenant_versions())
    }

    async fn load_tenant(&self, tenant: &str) -> Result<Option<TenantBundle>, StoreError> {
        timed!(self, "load_tenant", self.inner.load_tenant(tenant))
    }

    async fn tenant_settings(&self, tenant: &str) -> Result<TenantSettings, StoreError> {
        timed!(self, "tenant_settings", self.inner.tenant_settings(tenant))
    }

    async fn put_opaque_token(
        &self,
        tenant: &str,
        id: &str,
        claims: &AccessTokenClaims,
    ) -> Result<(), StoreError> {
        timed!(
            self,
            "put_opaque_token",
            self.inner.put_opaque_token(tenant, id, claims)
        )
    }

    async fn get_opaque_token(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<AccessTokenClaims>, StoreError> {
        timed!(
            self,
            "get_opaque_token",
            self.inner.get_opaque_token(tenant, id)
        )
    }

    async fn delete_opaque_token(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        timed!(
            self,
            "delete_opaque_token",
            self.inner.delete_opaque_token(tenant, id)
        )
    }

    async fn revoke_jti(&self, tenant: &str, jti: &str, until: u64) -> Result<(), StoreError> {
        timed!(
            self,
            "revoke_jti",
            self.inner.revoke_jti(tenant, jti, until)
        )
    }

    async fn is_revoked(&self, tenant: &str, jti: &str) -> Result<bool, StoreError> {
        timed!(self, "is_revoked", self.inner.is_revoked(tenant, jti))
    }

    async fn is_token_revoked(
        &self,
        tenant: &str,
        jti: &str,
        family: Option<&str>,
    ) -> Result<bool, StoreError> {
        timed!(
            self,
            "is_token_revoked",
            self.inner.is_token_revoked(tenant, jti, family)
        )
    }

    async fn record_failure(
        &self,
        tenant: &str,
        key: &str,
        window_secs: u64,
    ) -> Result<u64, StoreError> {
        timed!(
            self,
            "record_failure",
            self.inner.record_failure(tenant, key, window_secs)
        )
    }

    async fn failure_count(&self, tenant: &str, key: &str) -> Result<u64, StoreError> {
        timed!(self, "failure_count", self.inner.failure_count(tenant, key))
    }

    async fn clear_failures(&self, tenant: &str, key: &str) -> Result<(), StoreError> {
        timed!(
            self,
            "clear_failures",
            self.inner.clear_failures(tenant, key)
        )
    }

    async fn forgive_failure(&self, tenant: &str, key: &str) -> Result<(), StoreError> {
        timed!(
            self,
            "forgive_failure",
            self.inner.forgive_failure(tenant, key)
        )
    }

    async fn put_record(
        &self,
        tenant: &str,
        kind: RecordKind,
        id: &str,
        json: &str,
        expires_at: u64,
    ) -> Result<(), StoreError> {
        timed!(
            self,
            "put_record",
            self.inner.put_record(tenant, kind, id, json, expires_at)
        )
    }

    async fn get_record(
        &self,
        tenant: &str,
        kind: RecordKind,
        id: &str,
    ) -> Result<Option<String>, StoreError> {
        timed!(self, "get_record", self.inner.get_record(tenant, kind, id))
    }

    async fn mark_used(
        &self,
        tenant: &str,
        kind: RecordKind,
        id: &str,
        until: u64,
    ) -> Result<bool, StoreError> {
        timed!(
            self,
            "mark_used",
            self.inner.mark_used(tenant, kind, id, until)
        )
    }

    async fn claim_once(
        &self,
        tenant: &str,
        kind: RecordKind,
        id: &str,
        until: u64,
    ) -> Result<bool, StoreError> {
        timed!(
            self,
            "claim_once",
            self.inner.claim_once(tenant, kind, id, until)
        )
    }

    async fn delete_record(
        &self,
        tenant: &str,
        kind: RecordKind,
        id: &str,
    ) -> Result<(), StoreError> {
        timed!(
            self,
            "delete_record",
            self.inner.delete_record(tenant, kind, id)
        )
    }

    async fn issue(&self, tenant: &str, issue: &Issue<'_>) -> Result<Issued, StoreError> {
        timed!(self, "issue", self.inner.issue(tenant, issue))
    }

    async fn start_family(&self, tenant: &str, family: &str, until: u64) -> Result<(), StoreError> {
        timed!(
            self,
            "start_family",
            self.inner.start_family(tenant, family, until)
        )
    }

    async fn revoke_family(
        &self,
        tenant: &str,
        family: &str,
        until: u64,
    ) -> Result<usize, StoreError> {
        timed!(
            self,
            "revoke_family",
            self.inner.revoke_family(tenant, family, until)
        )
    }

    async fn sign_out_user(
        &self,
        tenant: &str,
        user: &str,
        at: u64,
        until: u64,
    ) -> Result<(), StoreError> {
        timed!(
            self,
            "sign_out_user",
            self.inner.sign_out_user(tenant, user, at, until)
        )
    }

    async fn signed_out_at(&self, tenant: &str, user: &str) -> Result<Option<u64>, StoreError> {
        timed!(
            self,
            "signed_out_at",
            self.inner.signed_out_at(tenant, user)
        )
    }

    async fn is_family_live(&self, tenant: &str, family: &str) -> Result<bool, StoreError> {
        timed!(
            self,
            "is_family_live",
            self.inner.is_family_live(tenant, family)
        )
    }

    async fn spent_by(
        &self,
        tenant: &str,
        kind: RecordKind,
        id: &str,
        family: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        timed!(
            self,
            "spent_by",
            self.inner.spent_by(tenant, kind, id, family)
        )
    }

    async fn mark_unanswered(
        &self,
        tenant: &str,
        kind: RecordKind,
        id: &str,
        until: u64,
    ) -> Result<(), StoreError> {
        timed!(
            self,
            "mark_unanswered",
            self.inner.mark_unanswered(tenant, kind, id, until)
        )
    }

    async fn ping(&self) -> Result<(), StoreError> {
        timed!(self, "ping", self.inner.ping())
    }

    async fn check_settings(&self) -> Result<(), StoreError> {
        timed!(self, "check_settings", self.inner.check_settings())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;
    use std::sync::Mutex;

    #[tokio::test]
    async fn every_call_is_reported_by_operation_and_outcome() {
        let seen: Arc<Mutex<Vec<(&'static str, bool)>>> = Arc::default();
        let log = seen.clone();
        let store = TimedStore::new(
            Arc::new(MemoryStore::new()),
            Arc::new(move |operation, _, ok| log.lock().unwrap().push((operation, ok))),
        );
        store.ping().await.unwrap();
        assert!(!store.is_revoked("acme", "jti-1").await.unwrap());
        assert_eq!(
            *seen.lock().unwrap(),
            [("ping", true), ("is_revoked", true)]
        );
    }
}
