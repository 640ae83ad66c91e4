//! Makes the store hold what the reconcile core decided, writing only what changed.
//!
//! Writes go in an order a server can read at any moment: a tenant's keys before its settings
//! (a tenant without settings is not served), settings before clients, and removals last.
//! Client secrets are hashed here (argon2id) and the hash is reused while the secret stays the
//! same, so an unchanged client is never rewritten and servers keep their verification cache.

use crate::conditions::{Verdict, set};
use crate::reconcile::{ClientRegistration, HeldWithin, Reconciled};
use aws_lc_rs::digest;
use gatehouse_core::argon2_workers::Argon2Workers;
use gatehouse_core::key_rotation::{KeyPlan, RotationPolicy, plan_keys, replace_keys};
use gatehouse_core::keys::{
    KeyEncryptionKey, KeyError, KeyState, SigningKey, SigningKeyRecord, generate_signing_key,
};
use gatehouse_core::random::{NoRandomness, Randomness};
use gatehouse_core::secret::{SecretError, hash_secret_with, verify_secret};
use gatehouse_core::{ClientConfig, TenantConfig};
use gatehouse_crd::condition::{ConditionStatus, reasons, types};
use gatehouse_store::{Store, StoreError};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// The `status.signingKeys` entries of these keys.
pub fn key_statuses(keys: &[SigningKeyRecord]) -> Vec<gatehouse_crd::tenant::SigningKeyStatus> {
    use gatehouse_crd::tenant::SigningKeyStatus;
    use k8s_openapi::jiff::Timestamp;
    keys.iter()
        .map(|k| SigningKeyStatus {
            kid: k.kid.clone(),
            algorithm: k.algorithm,
            state: match k.state {
                KeyState::Active => "active",
                KeyState::Next => "next",
                KeyState::Retired => "retired",
            }
            .into(),
            created_at: Time(
                Timestamp::from_second(i64::try_from(k.created_at).unwrap_or(i64::MAX))
                    .unwrap_or(Timestamp::UNIX_EPOCH),
            ),
        })
        .collect()
}

/// Copies what a publish run found into the statuses: the signing keys
/// (`status.signingKeys`), the held objects whose last valid version still serves, and each
/// tenant's count of clients whose `Ready` is `True`.
pub fn record_report(reconciled: &mut Reconciled, report: &PublishReport, now: &Time) {
    for client in &mut reconciled.clients {
        if report
            .clients_still_serving
            .contains(&(client.namespace.clone(), client.name.clone()))
        {
            client.still_serving();
        }
    }
    let mut live: HashMap<&str, i32> = HashMap::new();
    for c in &reconciled.clients {
        if ConditionStatus::of(&c.status.conditions, types::READY) == ConditionStatus::True {
            *live.entry(c.tenant.as_str()).or_default() += 1;
        }
    }
    for tenant in &mut reconciled.tenants {
        if let Some(keys) = report.signing_keys.get(&tenant.name) {
            tenant.status.signing_keys = key_statuses(keys);
        }
        if report.tenants_still_serving.contains(&tenant.name) {
            tenant.still_serving();
        }
        if let Some((_, why)) = report.keys_invalid.iter().find(|(t, _)| *t == tenant.name) {
            let verdict = Verdict::new(
                types::READY,
                false,
                reasons::SIGNING_KEYS_INVALID,
                format!(
                    "{why}; restore the file from a backup, or delete it to start with new keys"
                ),
            );
            let generation = tenant.status.observed_generation;
            set(&mut tenant.status.conditions, &verdict, generation, now);
        }
        if tenant.registration.is_some() || report.tenants_still_serving.contains(&tenant.name) {
            tenant.status.clients = Some(live.get(tenant.name.as_str()).copied().unwrap_or(0));
        }
    }
}

/// Where standalone keeps each tenant's sealed signing keys besides the store: the copy the
/// store is restored from when it loses them (the operator's equivalent is its
/// `gatehouse-keys-<tenant>` Secrets). Keys it keeps are reused as they are; keys it cannot
/// keep are logged and live in the store only.
pub trait KeyKeeper: Send {
    /// The keys kept for `tenant` (`None`: nothing kept yet); an error names what is broken.
    fn kept(&self, tenant: &str) -> Result<Option<Vec<SigningKeyRecord>>, String>;
    /// Keeps `keys` as `tenant`'s, before the store gets them.
    fn keep(&mut self, tenant: &str, keys: &[SigningKeyRecord]) -> Result<(), String>;
    /// Forgets a deleted tenant's keys.
    fn forget(&mut self, tenant: &str) -> Result<(), String>;
}

/// Keeps nothing: the store is the only copy.
pub struct StoreOnly;

impl KeyKeeper for StoreOnly {
    fn kept(&self, _: &str) -> Result<Option<Vec<SigningKeyRecord>>, String> {
        Ok(None)
    }
    fn keep(&mut self, _: &str, _: &[SigningKeyRecord]) -> Result<(), String> {
        Ok(())
    }
    fn forget(&mut self, _: &str) -> Result<(), String> {
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    NoRandomness(#[from] NoRandomness),
    #[error("background task failed: {0}")]
    Task(String),
}

/// What a publish run did, for statuses and the operator's events.
#[derive(Debug, Default)]
pub struct PublishReport {
    /// Each served tenant's keys after the run.
    pub signing_keys: BTreeMap<String, Vec<SigningKeyRecord>>,
    /// Tenants that got a new active key in this run.
    pub keys_generated: Vec<String>,
    /// `(tenant, client_id)` written in this run.
    pub clients_written: Vec<(String, String)>,
    pub clients_removed: Vec<(String, String)>,
    pub tenants_removed: Vec<String>,
    /// Held tenants (refused spec) whose last valid version the store still serves.
    pub tenants_still_serving: Vec<String>,
    /// Held clients, as `(namespace, name)`, whose last valid registration the store still
    /// serves.
    pub clients_still_serving: Vec<(String, String)>,
    /// Tenants whose kept keys cannot be read, with why: left as the store holds them.
    pub keys_invalid: Vec<(String, String)>,
}

type SecretDigest = [u8; 32];

/// What [`Publisher::publish_tenant`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TenantPublished {
    /// Settings or keys were written.
    pub wrote: bool,
    /// The store did not hold the tenant at all (new, or lost with a flushed or replaced
    /// Redis): its clients must be written again too.
    pub restored: bool,
}

pub struct Publisher {
    store: Arc<dyn Store>,
    kek: Arc<KeyEncryptionKey>,
    random: Arc<dyn Randomness>,
    /// `(tenant, client_id)` → (SHA-256 of the plain secret, its argon2id hash). In memory only:
    /// the operator holds the plain secrets anyway, having read the Secrets.
    hashes: Mutex<HashMap<(String, String), (SecretDigest, String)>>,
    /// The store's tenant versions right after the last publish; anything else found there
    /// later means someone else changed (or flushed) the store.
    published_versions: Mutex<Option<BTreeMap<String, gatehouse_store::Version>>>,
}

fn new_incarnation(random: &dyn Randomness) -> Result<String, PublishError> {
    let bytes: [u8; 16] = random.bytes()?;
    Ok(gatehouse_core::hex::encode(&bytes))
}

fn sha256(s: &str) -> SecretDigest {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, s.as_bytes()).as_ref());
    out
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, PublishError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PublishError::Task(e.to_string()))
}

impl Publisher {
    pub fn new(
        store: Arc<dyn Store>,
        kek: Arc<KeyEncryptionKey>,
        random: Arc<dyn Randomness>,
    ) -> Self {
        Publisher {
            store,
            kek,
            random,
            hashes: Mutex::new(HashMap::new()),
            published_versions: Mutex::new(None),
        }
    }

    /// The store it writes to.
    #[must_use]
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// Whether the store no longer holds what the last publish left there (a flushed or
    /// replaced Redis, or another writer). One cheap read; callers publish again when true.
    pub async fn drifted(&self) -> Result<bool, PublishError> {
        let now = self.store.tenant_versions().await?;
        Ok(self
            .published_versions
            .lock()
            .map_or(true, |v| v.as_ref() != Some(&now)))
    }

    /// Moves a tenant's keys forward under its rotation policy (see
    /// [`gatehouse_core::key_rotation`]); keys this process cannot open are replaced.
    pub async fn plan_keys(
        &self,
        tenant: &str,
        existing: Vec<SigningKeyRecord>,
        policy: RotationPolicy,
        now: u64,
    ) -> Result<KeyPlan, PublishError> {
        let kek = self.kek.clone();
        let owner = tenant.to_string();
        // Generating an RSA key takes long enough to keep it off the async workers.
        blocking(move || {
            plan_keys(
                existing,
                &policy,
                now,
                |k| SigningKey::open(&owner, k, &kek).is_ok(),
                |state| generate_signing_key(&owner, policy.algorithm, state, &kek, now),
            )
        })
        .await?
        .map_err(PublishError::from)
    }

    /// Replaces all of a tenant's keys at once (see [`replace_keys`]): the emergency rotation.
    pub async fn replace_keys(
        &self,
        tenant: &str,
        existing: Vec<SigningKeyRecord>,
        policy: RotationPolicy,
        now: u64,
    ) -> Result<KeyPlan, PublishError> {
        let kek = self.kek.clone();
        let owner = tenant.to_string();
        blocking(move || {
            replace_keys(existing, &policy, now, |state| {
                generate_signing_key(&owner, policy.algorithm, state, &kek, now)
            })
        })
        .await?
        .map_err(PublishError::from)
    }

    /// Makes the store hold this tenant configuration and these keys (keys first: a server
    /// must never see settings without a key to sign with). One read, however many clients
    /// the tenant has.
    pub async fn publish_tenant(
        &self,
        config: &TenantConfig,
        keys: &[SigningKeyRecord],
    ) -> Result<TenantPublished, PublishError> {
        let existing = self.store.tenant_settings(&config.name).await?;
        let restored = existing.config.is_none();
        let mut wrote = false;
        if existing.keys != keys {
            self.store.put_signing_keys(&config.name, keys).await?;
            wrote = true;
        }
        if existing.config.as_ref() != Some(config) {
            self.store.put_tenant(config).await?;
            wrote = true;
        }
        Ok(TenantPublished { wrote, restored })
    }

    /// Makes the store hold this client registration. True if it was written.
    pub async fn publish_client(
        &self,
        tenant: &str,
        registration: &ClientRegistration,
    ) -> Result<bool, PublishError> {
        let id = registration.config.client_id.as_str();
        let stored = self.store.get_client(tenant, id).await?;
        let config = self
            .with_secret_hash(tenant, registration, stored.as_ref())
            .await?;
        if stored.as_ref() == Some(&config) {
            return Ok(false);
        }
        self.store.put_client(tenant, &config).await?;
        Ok(true)
    }

    /// Whether the store serves this tenant (it has its settings).
    pub async fn serves_tenant(&self, tenant: &str) -> Result<bool, PublishError> {
        Ok(self.store.tenant_settings(tenant).await?.config.is_some())
    }

    /// Keeps a held client's stored registration (of `client_id`, from `source`,
    /// `namespace/name`), cut back to what its tenant grants now (`within`; `None` keeps it as
    /// it is), or removes it once the tenant grants it nothing. True if it still serves.
    pub async fn hold_client(
        &self,
        tenant: &str,
        client_id: &str,
        source: &str,
        within: Option<&HeldWithin>,
    ) -> Result<bool, PublishError> {
        let stored = self.store.get_client(tenant, client_id).await?;
        let Some(stored) = stored.filter(|c| c.source == source) else {
            return Ok(false);
        };
        let Some(within) = within else {
            return Ok(true);
        };
        match within.clamp(&stored) {
            Some(config) if config == stored => Ok(true),
            Some(config) => {
                self.store.put_client(tenant, &config).await?;
                Ok(true)
            }
            None => Ok(!self.unpublish_client(tenant, client_id, source).await?),
        }
    }

    /// Whether the store holds a registration of `client_id` that came from `source`
    /// (`namespace/name`).
    pub async fn serves_client(
        &self,
        tenant: &str,
        client_id: &str,
        source: &str,
    ) -> Result<bool, PublishError> {
        let stored = self.store.get_client(tenant, client_id).await?;
        Ok(stored.is_some_and(|c| c.source == source))
    }

    /// Removes a client registration if it is there and came from `source` (`namespace/name`):
    /// a client that lost a contested id must not take the winner's registration with it.
    /// True if something was removed.
    pub async fn unpublish_client(
        &self,
        tenant: &str,
        client_id: &str,
        source: &str,
    ) -> Result<bool, PublishError> {
        let stored = self.store.get_client(tenant, client_id).await?;
        if stored.is_none_or(|c| c.source != source) {
            return Ok(false);
        }
        self.store.delete_client(tenant, client_id).await?;
        if let Ok(mut m) = self.hashes.lock() {
            m.remove(&(tenant.to_string(), client_id.to_string()));
        }
        Ok(true)
    }

    /// Takes a tenant out of service; with `purge`, also deletes everything its server wrote
    /// (for a tenant that is gone, not one that is merely invalid for a while).
    pub async fn unpublish_tenant(&self, tenant: &str, purge: bool) -> Result<u64, PublishError> {
        self.store.delete_tenant(tenant).await?;
        let removed = if purge {
            self.store.purge_tenant(tenant).await?
        } else {
            0
        };
        if let Ok(mut m) = self.hashes.lock() {
            m.retain(|(t, _), _| t != tenant);
        }
        Ok(removed)
    }

    /// Publishes a whole reconciled state (standalone): every served tenant with its keys
    /// (those `keeper` holds, else the store's, moved forward and kept before the store gets
    /// them) and its clients, and removal of whatever the store holds beyond it.
    pub async fn publish(
        &self,
        reconciled: &Reconciled,
        now: u64,
        keeper: &mut dyn KeyKeeper,
    ) -> Result<PublishReport, PublishError> {
        let mut report = PublishReport::default();
        let stored_tenants = self.store.tenant_versions().await?;
        let mut registrations: HashMap<&str, Vec<&ClientRegistration>> = HashMap::new();
        // Sources (`namespace/name`) of held clients: what the store holds of them stays, cut
        // back to what their tenant grants now.
        let mut held: HashMap<(&str, String), Option<&HeldWithin>> = HashMap::new();
        for c in &reconciled.clients {
            if let Some(r) = &c.registration {
                registrations.entry(c.tenant.as_str()).or_default().push(r);
            } else if c.held.is_some() {
                let source = format!("{}/{}", c.namespace, c.name);
                held.insert((c.tenant.as_str(), source), c.held_within.as_ref());
            }
        }
        for outcome in &reconciled.tenants {
            let Some(config) = outcome.registration.as_ref() else {
                if outcome.held.is_some() && stored_tenants.contains_key(&outcome.name) {
                    let keys = self.store.tenant_settings(&outcome.name).await?.keys;
                    report.signing_keys.insert(outcome.name.clone(), keys);
                    report.tenants_still_serving.push(outcome.name.clone());
                }
                continue;
            };
            let name = outcome.name.as_str();
            let kept = match keeper.kept(name) {
                Ok(kept) => kept,
                Err(why) => {
                    tracing::error!(tenant = name, error = %why, "the kept signing keys cannot be read; leaving the tenant as the store holds it");
                    report.keys_invalid.push((name.to_string(), why));
                    continue;
                }
            };
            let existing = self.store.load_tenant(name).await?;
            let existing_keys = match &kept {
                Some(keys) => keys.clone(),
                None => existing
                    .as_ref()
                    .map(|b| b.keys.clone())
                    .unwrap_or_default(),
            };
            let plan = self
                .plan_keys(name, existing_keys, outcome.key_policy, now)
                .await?;
            if plan.rotated {
                report.keys_generated.push(name.to_string());
            }
            if kept.as_ref() != Some(&plan.keys)
                && let Err(why) = keeper.keep(name, &plan.keys)
            {
                tracing::error!(tenant = name, error = %why, "cannot keep the signing keys beside the store; they live in the store only");
            }
            self.publish_tenant(config, &plan.keys).await?;
            report.signing_keys.insert(name.to_string(), plan.keys);

            let wanted = registrations.remove(name).unwrap_or_default();
            let stored_clients = existing.map(|b| b.clients).unwrap_or_default();
            let stored: HashMap<&str, &ClientConfig> = stored_clients
                .iter()
                .map(|c| (c.client_id.as_str(), c))
                .collect();
            // All at once: the secrets that need argon2 queue on its workers (one per core).
            let configs = futures::future::try_join_all(wanted.iter().map(|r| {
                let current = stored.get(r.config.client_id.as_str()).copied();
                self.with_secret_hash(name, r, current)
            }))
            .await?;
            for config in &configs {
                if stored.get(config.client_id.as_str()).copied() != Some(config) {
                    self.store.put_client(name, config).await?;
                    report
                        .clients_written
                        .push((name.to_string(), config.client_id.clone()));
                }
            }
            let wanted_ids: std::collections::HashSet<&str> =
                wanted.iter().map(|r| r.config.client_id.as_str()).collect();
            for stale in stored_clients
                .iter()
                .filter(|c| !wanted_ids.contains(c.client_id.as_str()))
            {
                let kept = match held.get(&(name, stale.source.clone())) {
                    Some(None) => continue,
                    Some(Some(within)) => within.clamp(stale),
                    None => None,
                };
                if let Some(config) = kept {
                    if &config != stale {
                        self.store.put_client(name, &config).await?;
                        report
                            .clients_written
                            .push((name.to_string(), config.client_id.clone()));
                    }
                    continue;
                }
                self.store.delete_client(name, &stale.client_id).await?;
                report
                    .clients_removed
                    .push((name.to_string(), stale.client_id.clone()));
            }
        }
        for c in reconciled.clients.iter().filter(|c| c.held.is_some()) {
            let id = c.status.client_id.as_deref().unwrap_or_default();
            let source = format!("{}/{}", c.namespace, c.name);
            if self.serves_client(&c.tenant, id, &source).await? {
                report
                    .clients_still_serving
                    .push((c.namespace.clone(), c.name.clone()));
            }
        }
        for name in stored_tenants.keys() {
            let observed = reconciled.tenant(name);
            if observed.is_some_and(|t| t.registration.is_some() || t.held.is_some()) {
                continue;
            }
            // Invalid for now: out of service, sessions kept. Gone: everything goes.
            self.unpublish_tenant(name, observed.is_none()).await?;
            if observed.is_none()
                && let Err(why) = keeper.forget(name)
            {
                tracing::error!(tenant = %name, error = %why, "cannot remove the kept signing keys of a deleted tenant");
            }
            report.tenants_removed.push(name.clone());
        }
        let versions = self.store.tenant_versions().await?;
        if let Ok(mut v) = self.published_versions.lock() {
            *v = Some(versions);
        }
        Ok(report)
    }

    /// The registration as stored: with the argon2id hash of its secret, reusing the hash
    /// already stored (or computed earlier) while the secret is unchanged.
    async fn with_secret_hash(
        &self,
        tenant: &str,
        registration: &ClientRegistration,
        stored: Option<&ClientConfig>,
    ) -> Result<ClientConfig, PublishError> {
        let mut config = registration.config.clone();
        // The same OAuthClient keeps its incarnation; a new one (or another object taking the
        // id over) gets a fresh one, which voids refresh tokens issued before.
        config.incarnation = match stored.filter(|c| c.source == config.source) {
            Some(c) if !c.incarnation.is_empty() => c.incarnation.clone(),
            _ => new_incarnation(&*self.random)?,
        };
        let Some(secret) = registration.secret.as_ref() else {
            return Ok(config);
        };
        let key = (tenant.to_string(), config.client_id.clone());
        let digest = sha256(secret);
        let cost = registration.secret_cost;
        let remembered = self.hashes.lock().map_or(None, |m| {
            m.get(&key)
                .filter(|(d, phc)| *d == digest && cost.made(phc))
                .map(|(_, phc)| phc.clone())
        });
        let phc = if let Some(phc) = remembered {
            phc
        } else {
            let stored_phc = stored
                .and_then(|c| c.secret_hash.clone())
                .filter(|phc| cost.made(phc));
            let plain = secret.clone();
            Argon2Workers::shared()
                .run(move || -> Result<String, SecretError> {
                    match stored_phc {
                        Some(phc) if verify_secret(&plain, &phc) => Ok(phc),
                        _ => hash_secret_with(&plain, cost),
                    }
                })
                .await
                .map_err(|e| PublishError::Task(e.to_string()))??
        };
        if let Ok(mut m) = self.hashes.lock() {
            m.insert(key, (digest, phc.clone()));
        }
        config.secret_hash = Some(phc);
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::{Observed, reconcile};
    use gatehouse_core::SigningAlgorithm;
    use gatehouse_crd::{OAuthClient, Tenant};
    use gatehouse_store::MemoryStore;
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::Secret;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::json;

    fn objects(secret: &[u8], alg: &str) -> (Vec<Tenant>, Vec<OAuthClient>, Vec<Secret>) {
        let t: Tenant = serde_json::from_value(json!({
            "apiVersion": "gatehouse.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": "acme"},
            "spec": {"grantTypes": ["client_credentials"], "signing": {"algorithm": alg}}
        }))
        .unwrap();
        let c: OAuthClient = serde_json::from_value(json!({
            "apiVersion": "gatehouse.dev/v1alpha1", "kind": "OAuthClient",
            "metadata": {"name": "billing", "namespace": "acme"},
            "spec": {"tenantRef": "acme", "grantTypes": ["client_credentials"]}
        }))
        .unwrap();
        let mut s = Secret::default();
        s.metadata.namespace = Some("acme".into());
        s.metadata.name = Some("billing-credentials".into());
        s.metadata.labels = Some(
            [(
                crate::secrets::WATCH_LABEL.0.to_string(),
                crate::secrets::WATCH_LABEL.1.to_string(),
            )]
            .into(),
        );
        s.data = Some([("client_secret".to_string(), ByteString(secret.to_vec()))].into());
        (vec![t], vec![c], vec![s])
    }

    fn reconciled(secret: &[u8], alg: &str) -> Reconciled {
        let (t, c, s) = objects(secret, alg);
        reconcile(&Observed {
            trusted: &crate::issuers::TrustedKeys::default(),
            tenants: &t,
            clients: &c,
            secrets: &s,
            public_url: "http://x",
            now: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        })
    }

    #[tokio::test]
    async fn publishes_once_then_writes_nothing_until_something_changes() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let kek = Arc::new(KeyEncryptionKey::generate().unwrap().0);
        let publisher =
            Publisher::new(store.clone(), kek.clone(), gatehouse_core::random::system());

        let first = publisher
            .publish(&reconciled(b"one", "ES256"), 10, &mut StoreOnly)
            .await
            .unwrap();
        assert_eq!(first.keys_generated, vec!["acme"]);
        assert_eq!(first.clients_written.len(), 1);
        let bundle = store.load_tenant("acme").await.unwrap().unwrap();
        let phc = bundle.clients[0].secret_hash.clone().unwrap();
        assert!(verify_secret("one", &phc));
        assert_eq!(
            bundle.keys.iter().map(|k| k.state).collect::<Vec<_>>(),
            [KeyState::Active, KeyState::Next]
        );
        assert!(!bundle.clients[0].incarnation.is_empty());
        let version = store.tenant_versions().await.unwrap()["acme"];

        assert!(!publisher.drifted().await.unwrap());
        let again = publisher
            .publish(&reconciled(b"one", "ES256"), 20, &mut StoreOnly)
            .await
            .unwrap();
        assert!(again.keys_generated.is_empty() && again.clients_written.is_empty());
        assert_eq!(
            store.tenant_versions().await.unwrap()["acme"],
            version,
            "no write at all"
        );

        // A fresh publisher (a restarted process) reuses the stored hash after one verification.
        let restarted =
            Publisher::new(store.clone(), kek.clone(), gatehouse_core::random::system());
        let after_restart = restarted
            .publish(&reconciled(b"one", "ES256"), 30, &mut StoreOnly)
            .await
            .unwrap();
        assert!(after_restart.clients_written.is_empty());

        let rotated = publisher
            .publish(&reconciled(b"two", "ES256"), 40, &mut StoreOnly)
            .await
            .unwrap();
        assert_eq!(rotated.clients_written.len(), 1);
        let phc2 = store.load_tenant("acme").await.unwrap().unwrap().clients[0]
            .secret_hash
            .clone()
            .unwrap();
        assert!(verify_secret("two", &phc2) && !verify_secret("one", &phc2));
    }

    #[tokio::test]
    async fn generated_secrets_get_a_cheap_hash_and_chosen_ones_the_full_cost() {
        use crate::secrets::{MANAGED_BY, generate_client_secret};
        use gatehouse_core::secret::HashCost;
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let kek = Arc::new(KeyEncryptionKey::generate().unwrap().0);
        let publisher = Publisher::new(store.clone(), kek, gatehouse_core::random::system());
        let stored_hash = || async {
            store.load_tenant("acme").await.unwrap().unwrap().clients[0]
                .secret_hash
                .clone()
                .unwrap()
        };
        let value = generate_client_secret(&gatehouse_core::random::SystemRandom).unwrap();
        let publish = |labelled: bool, at: u64| {
            let (t, c, mut s) = objects(value.as_bytes(), "ES256");
            if labelled {
                s[0].metadata
                    .labels
                    .get_or_insert_default()
                    .insert(MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string());
            }
            let publisher = &publisher;
            async move {
                let reconciled = reconcile(&Observed {
                    trusted: &crate::issuers::TrustedKeys::default(),
                    tenants: &t,
                    clients: &c,
                    secrets: &s,
                    public_url: "http://x",
                    now: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
                });
                publisher
                    .publish(&reconciled, at, &mut StoreOnly)
                    .await
                    .unwrap()
            }
        };

        publish(true, 10).await;
        let cheap = stored_hash().await;
        assert!(HashCost::RandomKey.made(&cheap) && verify_secret(&value, &cheap));

        // The same value in a Secret that is no longer Gatehouse's: someone may have chosen
        // it, so it is hashed again at the full cost.
        let report = publish(false, 20).await;
        assert_eq!(report.clients_written.len(), 1);
        let full = stored_hash().await;
        assert!(HashCost::Guessable.made(&full) && verify_secret(&value, &full));
        assert!(publish(false, 30).await.clients_written.is_empty());
    }

    #[tokio::test]
    async fn an_algorithm_change_retires_the_old_key_and_removal_clears_the_tenant() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let kek = Arc::new(KeyEncryptionKey::generate().unwrap().0);
        let publisher = Publisher::new(store.clone(), kek, gatehouse_core::random::system());
        publisher
            .publish(&reconciled(b"s", "ES256"), 10, &mut StoreOnly)
            .await
            .unwrap();
        let report = publisher
            .publish(&reconciled(b"s", "EdDSA"), 20, &mut StoreOnly)
            .await
            .unwrap();
        let keys = &report.signing_keys["acme"];
        assert_eq!(keys.len(), 3);
        assert_eq!(
            (keys[0].state, keys[0].algorithm),
            (KeyState::Active, SigningAlgorithm::EdDSA)
        );
        assert_eq!(
            (keys[2].state, keys[2].algorithm),
            (KeyState::Retired, SigningAlgorithm::ES256)
        );

        store.delete_tenant("acme").await.unwrap();
        assert!(
            publisher.drifted().await.unwrap(),
            "a store emptied behind our back is noticed"
        );
        publisher
            .publish(&reconciled(b"s", "EdDSA"), 25, &mut StoreOnly)
            .await
            .unwrap();
        assert!(!publisher.drifted().await.unwrap());
        let removed = publisher
            .publish(&Reconciled::default(), 30, &mut StoreOnly)
            .await
            .unwrap();
        assert_eq!(removed.tenants_removed, vec!["acme"]);
        assert!(store.load_tenant("acme").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn keys_this_process_cannot_open_are_replaced_not_used() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let first = Publisher::new(
            store.clone(),
            Arc::new(KeyEncryptionKey::generate().unwrap().0),
            gatehouse_core::random::system(),
        );
        first
            .publish(&reconciled(b"s", "ES256"), 10, &mut StoreOnly)
            .await
            .unwrap();
        let other_kek = Publisher::new(
            store.clone(),
            Arc::new(KeyEncryptionKey::generate().unwrap().0),
            gatehouse_core::random::system(),
        );
        let report = other_kek
            .publish(&reconciled(b"s", "ES256"), 20, &mut StoreOnly)
            .await
            .unwrap();
        assert_eq!(report.keys_generated, vec!["acme"]);
        let states: Vec<KeyState> = report.signing_keys["acme"]
            .iter()
            .map(|k| k.state)
            .collect();
        assert_eq!(
            states,
            [KeyState::Active, KeyState::Next, KeyState::Retired],
            "the foreign active key retires (it still verifies), its next key never signed"
        );
    }

    #[tokio::test]
    async fn a_refused_edit_leaves_the_store_as_it_was_and_the_fix_simply_takes_effect() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let kek = Arc::new(KeyEncryptionKey::generate().unwrap().0);
        let publisher = Publisher::new(store.clone(), kek, gatehouse_core::random::system());
        let run = |t: &[Tenant], c: &[OAuthClient], s: &[Secret]| {
            reconcile(&Observed {
                trusted: &crate::issuers::TrustedKeys::default(),
                tenants: t,
                clients: c,
                secrets: s,
                public_url: "http://x",
                now: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
            })
        };
        let (t, c, s) = objects(b"s", "ES256");
        publisher
            .publish(&run(&t, &c, &s), 10, &mut StoreOnly)
            .await
            .unwrap();
        let before = store.load_tenant("acme").await.unwrap().unwrap();
        let version = store.tenant_versions().await.unwrap()["acme"];

        let mut typo = t.clone();
        typo[0].spec.access_token.ttl = "15 mins".into();
        let mut reconciled = run(&typo, &c, &s);
        let report = publisher
            .publish(&reconciled, 20, &mut StoreOnly)
            .await
            .unwrap();
        assert_eq!(report.tenants_still_serving, vec!["acme"]);
        assert_eq!(
            report.clients_still_serving,
            vec![("acme".to_string(), "billing".to_string())]
        );
        assert!(report.tenants_removed.is_empty() && report.clients_removed.is_empty());
        assert_eq!(
            store.tenant_versions().await.unwrap()["acme"],
            version,
            "nothing written"
        );
        record_report(
            &mut reconciled,
            &report,
            &Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        );
        let tenant = &reconciled.tenants[0];
        assert_eq!(
            ConditionStatus::of(&tenant.status.conditions, types::READY),
            ConditionStatus::True
        );
        assert_eq!(tenant.status.clients, Some(1));
        assert_eq!(
            tenant.status.signing_keys.len(),
            2,
            "the keys it still signs with"
        );

        let mut bad_client = c.clone();
        bad_client[0].spec.redirect_uris = vec!["relative/path".into()];
        let report = publisher
            .publish(&run(&t, &bad_client, &s), 30, &mut StoreOnly)
            .await
            .unwrap();
        assert!(report.clients_removed.is_empty() && report.clients_written.is_empty());
        assert_eq!(report.clients_still_serving.len(), 1);

        // Fixed: the same keys and the same incarnation (its refresh tokens still work).
        let report = publisher
            .publish(&run(&t, &c, &s), 40, &mut StoreOnly)
            .await
            .unwrap();
        assert!(report.keys_generated.is_empty() && report.clients_written.is_empty());
        let after = store.load_tenant("acme").await.unwrap().unwrap();
        assert_eq!(after.keys, before.keys);
        assert_eq!(after.clients, before.clients);

        // Only deletion takes it away.
        let report = publisher
            .publish(&run(&[], &c, &s), 50, &mut StoreOnly)
            .await
            .unwrap();
        assert_eq!(report.tenants_removed, vec!["acme"]);
    }
}
