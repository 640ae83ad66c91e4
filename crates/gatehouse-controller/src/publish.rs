//! Makes the store hold what the reconcile core decided, writing only what changed.
//!
//! Writes go in an order a server can read at any moment: a tenant's keys before its settings
//! (a tenant without settings is not served), settings before clients, and removals last.
//! Client secrets are hashed here (argon2id) and the hash is reused while the secret stays the
//! same, so an unchanged client is never rewritten and servers keep their verification cache.

use crate::reconcile::{ClientRegistration, Reconciled};
use aws_lc_rs::digest;
use gatehouse_core::keys::{
    KeyEncryptionKey, KeyError, KeyState, SigningKey, SigningKeyRecord, generate_signing_key,
};
use gatehouse_core::secret::{SecretError, hash_secret, verify_secret};
use gatehouse_core::{ClientConfig, SigningAlgorithm, TenantConfig};
use gatehouse_store::{Store, StoreError};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Retired keys kept published (newest first) so tokens they signed still verify.
const RETIRED_KEYS_KEPT: usize = 3;

/// Copies the published signing keys into the tenants' statuses (`status.signingKeys`).
pub fn record_signing_keys(reconciled: &mut Reconciled, report: &PublishReport) {
    use gatehouse_crd::tenant::SigningKeyStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    for tenant in &mut reconciled.tenants {
        if let Some(keys) = report.signing_keys.get(&tenant.name) {
            tenant.status.signing_keys = keys
                .iter()
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
                        Timestamp::from_second(k.created_at as i64)
                            .unwrap_or(Timestamp::UNIX_EPOCH),
                    ),
                })
                .collect();
        }
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
}

type SecretDigest = [u8; 32];

pub struct Publisher {
    store: Arc<dyn Store>,
    kek: Arc<KeyEncryptionKey>,
    /// `(tenant, client_id)` → (SHA-256 of the plain secret, its argon2id hash). In memory only:
    /// the operator holds the plain secrets anyway, having read the Secrets.
    hashes: Mutex<HashMap<(String, String), (SecretDigest, String)>>,
    /// The store's tenant versions right after the last publish; anything else found there
    /// later means someone else changed (or flushed) the store.
    published_versions: Mutex<Option<BTreeMap<String, gatehouse_store::Version>>>,
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
    pub fn new(store: Arc<dyn Store>, kek: Arc<KeyEncryptionKey>) -> Self {
        Publisher {
            store,
            kek,
            hashes: Mutex::new(HashMap::new()),
            published_versions: Mutex::new(None),
        }
    }

    /// Whether the store no longer holds what the last publish left there (a flushed or
    /// replaced Redis, or another writer). One cheap read; callers publish again when true.
    pub async fn drifted(&self) -> Result<bool, PublishError> {
        let now = self.store.tenant_versions().await?;
        Ok(self
            .published_versions
            .lock()
            .map(|v| v.as_ref() != Some(&now))
            .unwrap_or(true))
    }

    pub async fn publish(
        &self,
        reconciled: &Reconciled,
        now: u64,
    ) -> Result<PublishReport, PublishError> {
        let mut report = PublishReport::default();
        let stored_tenants = self.store.tenant_versions().await?;
        let desired: BTreeMap<&str, &TenantConfig> = reconciled
            .tenants
            .iter()
            .filter_map(|t| t.registration.as_ref().map(|r| (t.name.as_str(), r)))
            .collect();

        for (&name, &config) in &desired {
            let existing = self.store.load_tenant(name).await?;
            let existing_keys = existing
                .as_ref()
                .map(|b| b.keys.clone())
                .unwrap_or_default();
            let (keys, generated) = self
                .ensure_keys(name, config.signing_algorithm, existing_keys.clone(), now)
                .await?;
            if keys != existing_keys {
                self.store.put_signing_keys(name, &keys).await?;
            }
            if generated {
                report.keys_generated.push(name.to_string());
            }
            report.signing_keys.insert(name.to_string(), keys);
            if existing.as_ref().map(|b| &b.config) != Some(config) {
                self.store.put_tenant(config).await?;
            }

            let stored: HashMap<&str, &ClientConfig> = existing
                .as_ref()
                .map(|b| {
                    b.clients
                        .iter()
                        .map(|c| (c.client_id.as_str(), c))
                        .collect()
                })
                .unwrap_or_default();
            let wanted: Vec<&ClientRegistration> = reconciled
                .clients
                .iter()
                .filter(|c| c.tenant == name)
                .filter_map(|c| c.registration.as_ref())
                .collect();
            for registration in &wanted {
                let id = registration.config.client_id.as_str();
                let config = self
                    .with_secret_hash(name, registration, stored.get(id).copied())
                    .await?;
                if stored.get(id).copied() != Some(&config) {
                    self.store.put_client(name, &config).await?;
                    report
                        .clients_written
                        .push((name.to_string(), id.to_string()));
                }
            }
            for id in stored.keys() {
                if !wanted.iter().any(|r| r.config.client_id == *id) {
                    self.store.delete_client(name, id).await?;
                    report
                        .clients_removed
                        .push((name.to_string(), id.to_string()));
                }
            }
        }

        for name in stored_tenants.keys() {
            if !desired.contains_key(name.as_str()) {
                self.store.delete_tenant(name).await?;
                report.tenants_removed.push(name.clone());
            }
        }
        let versions = self.store.tenant_versions().await?;
        if let Ok(mut v) = self.published_versions.lock() {
            *v = Some(versions);
        }
        Ok(report)
    }

    /// Keeps an active key of the tenant's algorithm that this process can open; otherwise
    /// makes one and retires the rest (their public halves keep verifying what they signed).
    async fn ensure_keys(
        &self,
        tenant: &str,
        algorithm: SigningAlgorithm,
        mut keys: Vec<SigningKeyRecord>,
        now: u64,
    ) -> Result<(Vec<SigningKeyRecord>, bool), PublishError> {
        let usable = keys.iter().any(|k| {
            k.state == KeyState::Active
                && k.algorithm == algorithm
                && SigningKey::open(tenant, k, &self.kek).is_ok()
        });
        if usable {
            return Ok((keys, false));
        }
        let kek = self.kek.clone();
        let owner = tenant.to_string();
        let fresh =
            blocking(move || generate_signing_key(&owner, algorithm, KeyState::Active, &kek, now))
                .await??;
        for k in &mut keys {
            k.state = KeyState::Retired;
        }
        keys.sort_by_key(|k| std::cmp::Reverse(k.created_at));
        keys.truncate(RETIRED_KEYS_KEPT);
        keys.insert(0, fresh);
        Ok((keys, true))
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
        let Some(secret) = registration.secret.as_ref() else {
            return Ok(config);
        };
        let key = (tenant.to_string(), config.client_id.clone());
        let digest = sha256(secret);
        let remembered = self
            .hashes
            .lock()
            .map(|m| {
                m.get(&key)
                    .filter(|(d, _)| *d == digest)
                    .map(|(_, phc)| phc.clone())
            })
            .unwrap_or(None);
        let phc = match remembered {
            Some(phc) => phc,
            None => {
                let stored_phc = stored.and_then(|c| c.secret_hash.clone());
                let plain = secret.clone();
                blocking(move || -> Result<String, SecretError> {
                    match stored_phc {
                        Some(phc) if verify_secret(&plain, &phc) => Ok(phc),
                        _ => hash_secret(&plain),
                    }
                })
                .await??
            }
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
        s.data = Some([("client_secret".to_string(), ByteString(secret.to_vec()))].into());
        (vec![t], vec![c], vec![s])
    }

    fn reconciled(secret: &[u8], alg: &str) -> Reconciled {
        let (t, c, s) = objects(secret, alg);
        reconcile(&Observed {
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
        let publisher = Publisher::new(store.clone(), kek.clone());

        let first = publisher
            .publish(&reconciled(b"one", "ES256"), 10)
            .await
            .unwrap();
        assert_eq!(first.keys_generated, vec!["acme"]);
        assert_eq!(first.clients_written.len(), 1);
        let bundle = store.load_tenant("acme").await.unwrap().unwrap();
        let phc = bundle.clients[0].secret_hash.clone().unwrap();
        assert!(verify_secret("one", &phc));
        assert_eq!(bundle.keys.len(), 1);
        let version = store.tenant_versions().await.unwrap()["acme"];

        assert!(!publisher.drifted().await.unwrap());
        let again = publisher
            .publish(&reconciled(b"one", "ES256"), 20)
            .await
            .unwrap();
        assert!(again.keys_generated.is_empty() && again.clients_written.is_empty());
        assert_eq!(
            store.tenant_versions().await.unwrap()["acme"],
            version,
            "no write at all"
        );

        // A fresh publisher (a restarted process) reuses the stored hash after one verification.
        let restarted = Publisher::new(store.clone(), kek.clone());
        let after_restart = restarted
            .publish(&reconciled(b"one", "ES256"), 30)
            .await
            .unwrap();
        assert!(after_restart.clients_written.is_empty());

        let rotated = publisher
            .publish(&reconciled(b"two", "ES256"), 40)
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
    async fn an_algorithm_change_retires_the_old_key_and_removal_clears_the_tenant() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let kek = Arc::new(KeyEncryptionKey::generate().unwrap().0);
        let publisher = Publisher::new(store.clone(), kek);
        publisher
            .publish(&reconciled(b"s", "ES256"), 10)
            .await
            .unwrap();
        let report = publisher
            .publish(&reconciled(b"s", "EdDSA"), 20)
            .await
            .unwrap();
        let keys = &report.signing_keys["acme"];
        assert_eq!(keys.len(), 2);
        assert_eq!(
            (keys[0].state, keys[0].algorithm),
            (KeyState::Active, SigningAlgorithm::EdDSA)
        );
        assert_eq!(
            (keys[1].state, keys[1].algorithm),
            (KeyState::Retired, SigningAlgorithm::ES256)
        );

        store.delete_tenant("acme").await.unwrap();
        assert!(
            publisher.drifted().await.unwrap(),
            "a store emptied behind our back is noticed"
        );
        publisher
            .publish(&reconciled(b"s", "EdDSA"), 25)
            .await
            .unwrap();
        assert!(!publisher.drifted().await.unwrap());
        let removed = publisher.publish(&Reconciled::default(), 30).await.unwrap();
        assert_eq!(removed.tenants_removed, vec!["acme"]);
        assert!(store.load_tenant("acme").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn keys_this_process_cannot_open_are_replaced_not_used() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let first = Publisher::new(
            store.clone(),
            Arc::new(KeyEncryptionKey::generate().unwrap().0),
        );
        first.publish(&reconciled(b"s", "ES256"), 10).await.unwrap();
        let other_kek = Publisher::new(
            store.clone(),
            Arc::new(KeyEncryptionKey::generate().unwrap().0),
        );
        let report = other_kek
            .publish(&reconciled(b"s", "ES256"), 20)
            .await
            .unwrap();
        assert_eq!(report.keys_generated, vec!["acme"]);
        assert_eq!(report.signing_keys["acme"][1].state, KeyState::Retired);
    }
}
