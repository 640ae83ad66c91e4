//! The in-memory store: one process only (`standalone` without Redis, tests).

use crate::{
    Issue, Issued, Joining, RecordKind, Store, StoreError, TenantBundle, TenantSettings, Version,
};
use async_trait::async_trait;
use gatehouse_core::clock::{Clock, SystemClock};
use gatehouse_core::keys::SigningKeyRecord;
use gatehouse_core::token::AccessTokenClaims;
use gatehouse_core::{ClientConfig, TenantConfig};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// A grant family: until when it is known (0: never started, only revoked), the access tokens
/// it issued (`jti`, `exp`) and, once revoked, until when.
#[derive(Default)]
struct Family {
    until: u64,
    issued: Vec<(String, u64)>,
    revoked_until: Option<u64>,
}

#[derive(Default)]
struct TenantData {
    config: Option<TenantConfig>,
    keys: Vec<SigningKeyRecord>,
    clients: BTreeMap<String, ClientConfig>,
    version: Version,
    opaque: HashMap<String, AccessTokenClaims>,
    revoked: HashMap<String, u64>,
    /// key → (count, window end)
    failures: HashMap<String, (u64, u64)>,
    /// (kind, id) → (json, expires at)
    records: HashMap<(RecordKind, String), (String, u64)>,
    /// (kind, id) → until when it counts as used (kept apart from the record, as in Redis).
    used: HashMap<(RecordKind, String), u64>,
    /// (kind, id) of a spent token → the mark its spending left: (attempt, refresh token issued).
    marks: HashMap<(RecordKind, String), (String, Option<String>)>,
    /// (kind, id) spent without its answer reaching the client → until when a retry is allowed.
    unanswered: HashMap<(RecordKind, String), u64>,
    families: HashMap<String, Family>,
    /// user → (signed out up to, kept until).
    signed_out: HashMap<String, (u64, u64)>,
}

impl TenantData {
    /// Marks `(kind, id)` used until `until`; false if it already is.
    fn spend(&mut self, kind: RecordKind, id: &str, until: u64, now: u64) -> bool {
        let key = (kind, id.to_string());
        if self.used.get(&key).is_some_and(|u| *u > now) {
            return false;
        }
        if self.used.len() % 1024 == 1023 {
            self.used.retain(|_, u| *u > now);
            let used = &self.used;
            self.marks.retain(|k, _| used.contains_key(k));
            self.unanswered.retain(|_, u| *u > now);
        }
        self.used.insert(key, until);
        true
    }
}

impl TenantData {
    /// A second presentation of `key` after an unanswered spending: allowed once, retiring the
    /// refresh token the lost answer carried (unless it was presented already: then a reuse).
    fn retry(&mut self, key: &(RecordKind, String), issue: &Issue<'_>, now: u64) -> bool {
        if self.unanswered.get(key).is_none_or(|u| *u <= now) {
            return false;
        }
        let lost = self.marks.get(key).and_then(|(_, s)| s.clone());
        if let Some(lost) = lost {
            let until = issue.retired_until();
            if !self.spend(RecordKind::RefreshToken, &lost, until, now) {
                return false;
            }
        }
        self.unanswered.remove(key);
        true
    }
}

/// Versions come from one counter for all tenants, so a tenant deleted and created again never
/// reuses a version a server has already seen.
#[derive(Default)]
struct State {
    tenants: HashMap<String, TenantData>,
    sequence: Version,
}

/// Expiry follows the store's clock: the system's, or a test's (so expiry is tested by moving
/// the clock, not by sleeping).
pub struct MemoryStore {
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store on the system clock.
    #[must_use]
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// An empty store whose records expire by `clock`.
    #[must_use]
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        MemoryStore {
            state: Mutex::new(State::default()),
            clock,
        }
    }

    fn now(&self) -> u64 {
        self.clock.now()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, TenantData>) -> R) -> R {
        f(&mut self.lock().tenants)
    }

    fn write_config<R>(&self, tenant: &str, f: impl FnOnce(&mut TenantData) -> R) -> R {
        let mut state = self.lock();
        state.sequence += 1;
        let version = state.sequence;
        let data = state.tenants.entry(tenant.to_string()).or_default();
        let r = f(data);
        data.version = version;
        r
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn put_tenant(&self, config: &TenantConfig) -> Result<(), StoreError> {
        self.write_config(&config.name, |d| d.config = Some(config.clone()));
        Ok(())
    }

    async fn put_signing_keys(
        &self,
        tenant: &str,
        keys: &[SigningKeyRecord],
    ) -> Result<(), StoreError> {
        self.write_config(tenant, |d| d.keys = keys.to_vec());
        Ok(())
    }

    async fn put_client(&self, tenant: &str, client: &ClientConfig) -> Result<(), StoreError> {
        self.write_config(tenant, |d| {
            d.clients.insert(client.client_id.clone(), client.clone());
        });
        Ok(())
    }

    async fn delete_client(&self, tenant: &str, client_id: &str) -> Result<(), StoreError> {
        let exists = self.with(|all| {
            all.get(tenant)
                .is_some_and(|d| d.clients.contains_key(client_id))
        });
        if exists {
            self.write_config(tenant, |d| d.clients.remove(client_id));
        }
        Ok(())
    }

    async fn delete_tenant(&self, tenant: &str) -> Result<(), StoreError> {
        self.with(|all| {
            if let Some(d) = all.get_mut(tenant) {
                d.config = None;
                d.keys.clear();
                d.clients.clear();
            }
        });
        Ok(())
    }

    async fn purge_tenant(&self, tenant: &str) -> Result<u64, StoreError> {
        Ok(self.with(|all| {
            let Some(d) = all.get_mut(tenant) else {
                return 0;
            };
            let n = d.opaque.len()
                + d.revoked.len()
                + d.failures.len()
                + d.records.len()
                + d.used.len()
                + d.families.len();
            d.opaque.clear();
            d.revoked.clear();
            d.failures.clear();
            d.records.clear();
            d.used.clear();
            d.marks.clear();
            d.unanswered.clear();
            d.families.clear();
            n as u64
        }))
    }

    async fn get_client(
        &self,
        tenant: &str,
        client_id: &str,
    ) -> Result<Option<ClientConfig>, StoreError> {
        Ok(self.with(|all| all.get(tenant)?.clients.get(client_id).cloned()))
    }

    async fn tenant_versions(&self) -> Result<BTreeMap<String, Version>, StoreError> {
        Ok(self.with(|all| {
            all.iter()
                .filter(|(_, d)| d.config.is_some() || !d.clients.is_empty() || !d.keys.is_empty())
                .map(|(name, d)| (name.clone(), d.version))
                .collect()
        }))
    }

    async fn load_tenant(&self, tenant: &str) -> Result<Option<TenantBundle>, StoreError> {
        Ok(self.with(|all| {
            let d = all.get(tenant)?;
            Some(TenantBundle {
                config: d.config.clone()?,
                keys: d.keys.clone(),
                clients: d.clients.values().cloned().collect(),
            })
        }))
    }

    async fn tenant_settings(&self, tenant: &str) -> Result<TenantSettings, StoreError> {
        Ok(self.with(|all| {
            all.get(tenant)
                .map(|d| TenantSettings {
                    config: d.config.clone(),
                    keys: d.keys.clone(),
                })
                .unwrap_or_default()
        }))
    }

    async fn put_opaque_token(
        &self,
        tenant: &str,
        id: &str,
        claims: &AccessTokenClaims,
    ) -> Result<(), StoreError> {
        let now = self.now();
        self.with(|all| {
            let d = all.entry(tenant.to_string()).or_default();
            // Expired entries are dropped as new ones arrive, so the map cannot grow without
            // bound under steady load.
            if d.opaque.len() % 1024 == 1023 {
                d.opaque.retain(|_, c| c.exp > now);
            }
            d.opaque.insert(id.to_string(), claims.clone());
        });
        Ok(())
    }

    async fn get_opaque_token(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<AccessTokenClaims>, StoreError> {
        let now = self.now();
        Ok(self.with(|all| {
            all.get(tenant)?
                .opaque
                .get(id)
                .filter(|c| c.exp > now)
                .cloned()
        }))
    }

    async fn delete_opaque_token(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        Ok(self.with(|all| {
            all.get_mut(tenant)
                .is_some_and(|d| d.opaque.remove(id).is_some())
        }))
    }

    async fn revoke_jti(&self, tenant: &str, jti: &str, until: u64) -> Result<(), StoreError> {
        let now = self.now();
        self.with(|all| {
            let d = all.entry(tenant.to_string()).or_default();
            if d.revoked.len() % 1024 == 1023 {
                d.revoked.retain(|_, u| *u > now);
            }
            d.revoked.insert(jti.to_string(), until);
        });
        Ok(())
    }

    async fn is_revoked(&self, tenant: &str, jti: &str) -> Result<bool, StoreError> {
        let now = self.now();
        Ok(self.with(|all| {
            all.get(tenant)
                .and_then(|d| d.revoked.get(jti))
                .is_some_and(|u| *u > now)
        }))
    }

    async fn is_token_revoked(
        &self,
        tenant: &str,
        jti: &str,
        family: Option<&str>,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        Ok(self.with(|all| {
            all.get(tenant).is_some_and(|d| {
                d.revoked.get(jti).is_some_and(|u| *u > now)
                    || family
                        .and_then(|f| d.families.get(f))
                        .and_then(|f| f.revoked_until)
                        .is_some_and(|u| u > now)
            })
        }))
    }

    async fn record_failure(
        &self,
        tenant: &str,
        key: &str,
        window_secs: u64,
    ) -> Result<u64, StoreError> {
        let now = self.now();
        Ok(self.with(|all| {
            let d = all.entry(tenant.to_string()).or_default();
            let entry = d
                .failures
                .entry(key.to_string())
                .or_insert((0, now + window_secs));
            if entry.1 <= now {
                *entry = (0, now + window_secs);
            }
            entry.0 += 1;
            entry.0
        }))
    }

    async fn failure_count(&self, tenant: &str, key: &str) -> Result<u64, StoreError> {
        let now = self.now();
        Ok(self.with(|all| {
            all.get(tenant)
                .and_then(|d| d.failures.get(key))
                .filter(|(_, end)| *end > now)
                .map_or(0, |(n, _)| *n)
        }))
    }

    async fn clear_failures(&self, tenant: &str, key: &str) -> Result<(), StoreError> {
        self.with(|all| all.get_mut(tenant).map(|d| d.failures.remove(key)));
        Ok(())
    }

    async fn forgive_failure(&self, tenant: &str, key: &str) -> Result<(), StoreError> {
        self.with(|all| {
            if let Some(entry) = all.get_mut(tenant).and_then(|d| d.failures.get_mut(key)) {
                entry.0 = entry.0.saturating_sub(1);
            }
        });
        Ok(())
    }

    async fn put_record(
        &self,
        tenant: &str,
        kind: RecordKind,
        id: &str,
        json: &str,
        expires_at: u64,
    ) -> Result<(), StoreError> {
        let now = self.now();
        self.with(|all| {
            let d = all.entry(tenant.to_string()).or_default();
            if d.records.len() % 1024 == 1023 {
                d.records.retain(|_, (_, exp)| *exp > now);
            }
            // The used mark lives apart (as in Redis): a record written again stays used.
            d.records
                .insert((kind, id.to_string()), (json.to_string(), expires_at));
        });
        Ok(())
    }

    async fn get_record(
        &self,
        tenant: &str,
        kind: RecordKind,
        id: &str,
    ) -> Result<Option<String>, StoreError> {
        let now = self.now();
        Ok(self.with(|all| {
            all.get(tenant)?
                .records
                .get(&(kind, id.to_string()))
                .filter(|(_, exp)| *exp > now)
                .map(|(json, _)| json.clone())
        }))
    }

    async fn mark_used(
        &self,
        tenant: &str,
        kind: RecordKind,
        id: &str,
        until: u64,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        Ok(self.with(|all| {
            let d = all.entry(tenant.to_string()).or_default();
            d.spend(kind, id, until, now)
        }))
    }

    async fn claim_once(
        &self,
        tenant: &str,
        kind: RecordKind,
        id: &str,
        until: u64,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        Ok(self.with(|all| {
            let d = all.entry(tenant.to_string()).or_default();
            let key = (kind, id.to_string());
            if d.used.get(&key).is_some_and(|u| *u > now) {
                return false;
            }
            d.used.insert(key, until);
            true
        }))
    }

    async fn delete_record(
        &self,
        tenant: &str,
        kind: RecordKind,
        id: &str,
    ) -> Result<(), StoreError> {
        self.with(|all| {
            if let Some(d) = all.get_mut(tenant) {
                let key = (kind, id.to_string());
                d.records.remove(&key);
                d.used.remove(&key);
                d.marks.remove(&key);
                d.unanswered.remove(&key);
            }
        });
        Ok(())
    }

    async fn issue(&self, tenant: &str, issue: &Issue<'_>) -> Result<Issued, StoreError> {
        let now = self.now();
        Ok(self.with(|all| {
            let d = all.entry(tenant.to_string()).or_default();
            if let Some((user, signed_in)) = issue.signed_in
                && d.signed_out
                    .get(user)
                    .is_some_and(|(at, until)| *until > now && signed_in <= *at)
            {
                return Issued::SignedOut;
            }
            if let Some(member) = &issue.family {
                let family = d.families.get(member.family);
                if family
                    .and_then(|f| f.revoked_until)
                    .is_some_and(|u| u > now)
                {
                    return Issued::Revoked;
                }
                if member.joining.must_exist() && family.is_none_or(|f| f.until <= now) {
                    return Issued::Unknown;
                }
            }
            if let Some(spend) = &issue.spend {
                let key = (spend.kind, spend.id.to_string());
                // A refusal only spends: a mark found is a replay, whatever answer was lost.
                let refusal = spend.attempt == crate::Spend::REFUSED;
                if !d.spend(spend.kind, spend.id, spend.until, now)
                    && (refusal || !d.retry(&key, issue, now))
                {
                    return Issued::Spent;
                }
                let successor = issue.successor.map(str::to_string);
                d.marks.insert(key, (spend.attempt.to_string(), successor));
            }
            if let Some(member) = &issue.family {
                let family = d.families.entry(member.family.to_string()).or_default();
                if member.joining != Joining::Existing {
                    family.until = family.until.max(member.until);
                }
                // Only live tokens need revoking: the list stays as long as the family's
                // live access tokens, however often it rotates.
                family.issued.retain(|(_, exp)| *exp > now);
                family.issued.push((member.jti.to_string(), member.exp));
            }
            if let Some((id, claims)) = issue.opaque {
                d.opaque.insert(id.to_string(), claims.clone());
            }
            Issued::Done
        }))
    }

    async fn start_family(&self, tenant: &str, family: &str, until: u64) -> Result<(), StoreError> {
        self.with(|all| {
            let d = all.entry(tenant.to_string()).or_default();
            let f = d.families.entry(family.to_string()).or_default();
            f.until = f.until.max(until);
        });
        Ok(())
    }

    async fn revoke_family(
        &self,
        tenant: &str,
        family: &str,
        until: u64,
    ) -> Result<usize, StoreError> {
        Ok(self.with(|all| {
            let d = all.entry(tenant.to_string()).or_default();
            let f = d.families.entry(family.to_string()).or_default();
            f.revoked_until = Some(until);
            let issued = f.issued.clone();
            for (jti, exp) in &issued {
                d.revoked.insert(jti.clone(), *exp);
            }
            issued.len()
        }))
    }

    async fn sign_out_user(
        &self,
        tenant: &str,
        user: &str,
        at: u64,
        until: u64,
    ) -> Result<(), StoreError> {
        let now = self.now();
        self.with(|all| {
            let d = all.entry(tenant.to_string()).or_default();
            d.signed_out.retain(|_, (_, u)| *u > now);
            let mark = d.signed_out.entry(user.to_string()).or_insert((at, until));
            if at >= mark.0 {
                *mark = (at, until.max(mark.1));
            }
        });
        Ok(())
    }

    async fn signed_out_at(&self, tenant: &str, user: &str) -> Result<Option<u64>, StoreError> {
        let now = self.now();
        Ok(self.with(|all| {
            all.get(tenant)
                .and_then(|d| d.signed_out.get(user))
                .filter(|(_, until)| *until > now)
                .map(|(at, _)| *at)
        }))
    }

    async fn is_family_live(&self, tenant: &str, family: &str) -> Result<bool, StoreError> {
        let now = self.now();
        Ok(self.with(|all| {
            all.get(tenant)
                .and_then(|d| d.families.get(family))
                .is_some_and(|f| f.until > now && f.revoked_until.is_none_or(|u| u <= now))
        }))
    }

    async fn spent_by(
        &self,
        tenant: &str,
        kind: RecordKind,
        id: &str,
        _family: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        let now = self.now();
        Ok(self.with(|all| {
            let d = all.get(tenant)?;
            let key = (kind, id.to_string());
            d.used.get(&key).filter(|u| **u > now)?;
            Some(
                d.marks
                    .get(&key)
                    .map_or_else(|| "1".to_string(), |(attempt, _)| attempt.clone()),
            )
        }))
    }

    async fn mark_unanswered(
        &self,
        tenant: &str,
        kind: RecordKind,
        id: &str,
        until: u64,
    ) -> Result<(), StoreError> {
        self.with(|all| {
            let d = all.entry(tenant.to_string()).or_default();
            d.unanswered.insert((kind, id.to_string()), until);
        });
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
