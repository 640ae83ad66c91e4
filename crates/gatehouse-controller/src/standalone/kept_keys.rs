//! Standalone keeps each tenant's sealed signing keys beside the manifests, in
//! `generated/gatehouse-keys-<tenant>.yaml`: a Secret manifest in the format of the operator's
//! keys Secrets (`keys.json`, private halves sealed with the key-encryption key). The store is a
//! copy of these files, so a store that loses everything (a Redis restarted empty) gets the
//! same keys back, and every token already issued still verifies against JWKS.

use super::files::{fingerprint_of, replace_private};
use super::manifests::GENERATED_DIR;
use crate::cluster::{KEYS_SECRET_KEY, TENANT_LABEL, keys_secret_name, read_keys_secret};
use crate::publish::KeyKeeper;
use crate::secrets::{MANAGED_BY, WATCH_LABEL};
use gatehouse_core::keys::SigningKeyRecord;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The namespace of the kept keys' Secret manifests (the operator's release namespace).
pub const KEYS_NAMESPACE: &str = "gatehouse";

/// The kept keys of a manifests directory, as loaded with the manifests, and the files this
/// run changed.
pub struct KeptKeys {
    dir: PathBuf,
    kept: HashMap<String, Result<Vec<SigningKeyRecord>, String>>,
    /// Each file written or removed, with its fingerprint before (see [`super::files`]): what
    /// the edit watcher must not take for an edit.
    pub touched: Vec<(PathBuf, u64)>,
}

impl KeptKeys {
    /// The kept keys among the Secrets of the manifests in `dir`.
    #[must_use]
    pub fn from_manifests(dir: &Path, secrets: &[Secret]) -> Self {
        let kept = secrets
            .iter()
            .filter(|s| s.metadata.namespace.as_deref() == Some(KEYS_NAMESPACE))
            .filter_map(|s| {
                let tenant = s
                    .metadata
                    .name
                    .as_deref()?
                    .strip_prefix("gatehouse-keys-")?;
                let keys = read_keys_secret(s).map_err(|why| {
                    format!(
                        "Secret {KEYS_NAMESPACE}/{}: {why}",
                        keys_secret_name(tenant)
                    )
                });
                Some((tenant.to_string(), keys))
            })
            .collect();
        KeptKeys {
            dir: dir.to_path_buf(),
            kept,
            touched: Vec::new(),
        }
    }

    fn path(&self, tenant: &str) -> PathBuf {
        self.dir
            .join(GENERATED_DIR)
            .join(format!("{}.yaml", keys_secret_name(tenant)))
    }

    /// Notes a file's share of the directory's fingerprint before it is first changed (none
    /// when it does not exist yet, as the directory's fingerprint counts only files there).
    fn touch(&mut self, path: &Path) {
        if self.touched.iter().any(|(p, _)| p == path) {
            return;
        }
        let before = if path.exists() {
            fingerprint_of(&[path.to_path_buf()])
        } else {
            0
        };
        self.touched.push((path.to_path_buf(), before));
    }

    /// The change the touched files made to the directory's fingerprint.
    #[must_use]
    pub fn fingerprint_change(&self) -> u64 {
        self.touched.iter().fold(0, |change, (path, before)| {
            let after = if path.exists() {
                fingerprint_of(std::slice::from_ref(path))
            } else {
                0
            };
            change ^ before ^ after
        })
    }
}

fn keys_manifest(tenant: &str, keys: &[SigningKeyRecord]) -> Result<String, String> {
    let json = serde_json::to_vec(keys).map_err(|e| e.to_string())?;
    let mut secret = Secret::default();
    secret.metadata.name = Some(keys_secret_name(tenant));
    secret.metadata.namespace = Some(KEYS_NAMESPACE.to_string());
    secret.metadata.labels = Some(
        [
            (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
            (WATCH_LABEL.0.to_string(), WATCH_LABEL.1.to_string()),
            (TENANT_LABEL.to_string(), tenant.to_string()),
        ]
        .into(),
    );
    secret.type_ = Some("Opaque".into());
    secret.data = Some([(KEYS_SECRET_KEY.to_string(), ByteString(json))].into());
    let mut doc = serde_json::to_value(&secret).map_err(|e| e.to_string())?;
    doc["apiVersion"] = "v1".into();
    doc["kind"] = "Secret".into();
    let yaml = serde_saphyr::to_string(&doc).map_err(|e| e.to_string())?;
    Ok(format!(
        "# The signing keys of tenant {tenant}, kept by gatehouse standalone (private halves\n\
         # sealed with the key-encryption key). Back it up with that key; never edit it.\n---\n{yaml}"
    ))
}

impl KeyKeeper for KeptKeys {
    fn kept(&self, tenant: &str) -> Result<Option<Vec<SigningKeyRecord>>, String> {
        self.kept.get(tenant).cloned().transpose()
    }

    fn keep(&mut self, tenant: &str, keys: &[SigningKeyRecord]) -> Result<(), String> {
        let contents = keys_manifest(tenant, keys)?;
        let path = self.path(tenant);
        self.touch(&path);
        replace_private(&path, &contents).map_err(|e| e.to_string())?;
        self.kept.insert(tenant.to_string(), Ok(keys.to_vec()));
        Ok(())
    }

    fn forget(&mut self, tenant: &str) -> Result<(), String> {
        let path = self.path(tenant);
        self.kept.remove(tenant);
        if !path.exists() {
            return Ok(());
        }
        self.touch(&path);
        std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Where standalone keeps the key-encryption key it generates when none is given.
pub const KEK_FILE: &str = "key-encryption-key";

/// Whether [`kept_key_encryption_key`] read the key or made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KekOrigin {
    Read,
    Generated,
}

/// The key-encryption key kept in `dir/generated/key-encryption-key` (base64, owner-only), made
/// on first use: the kept signing keys are sealed with it, so both must survive together.
///
/// # Errors
/// The file cannot be read or written, or does not hold a key.
pub fn kept_key_encryption_key(
    dir: &Path,
) -> Result<(gatehouse_core::keys::KeyEncryptionKey, KekOrigin, PathBuf), String> {
    use gatehouse_core::keys::KeyEncryptionKey;
    let path = dir.join(GENERATED_DIR).join(KEK_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let text = zeroize::Zeroizing::new(text);
            let kek = KeyEncryptionKey::from_base64(&text)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok((kek, KekOrigin::Read, path))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (kek, encoded) = KeyEncryptionKey::generate().map_err(|e| e.to_string())?;
            replace_private(&path, &format!("{}\n", encoded.as_str()))
                .map_err(|e| e.to_string())?;
            Ok((kek, KekOrigin::Generated, path))
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::standalone::files::fingerprint;

    /// Files standalone writes itself are no edit to react to: what they change in the
    /// directory's fingerprint is exactly what the keeper reports, first write or not.
    #[test]
    fn kept_files_account_for_their_own_change_of_the_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<SigningKeyRecord> = Vec::new();
        for round in 0..2 {
            let before = fingerprint(dir.path());
            let mut keeper = KeptKeys::from_manifests(dir.path(), &[]);
            keeper.keep("acme", &keys).unwrap();
            keeper.keep("acme", &keys).unwrap();
            keeper.keep("globex", &keys).unwrap();
            assert_eq!(
                before ^ keeper.fingerprint_change(),
                fingerprint(dir.path()),
                "round {round}"
            );
        }
    }
}
