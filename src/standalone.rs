//! `gatehouse standalone`: the reconcile core fed from a directory of manifests, plus the
//! server, in one process. Edits to the directory are picked up while it runs; a broken edit is
//! reported (file, document, field) and the last good state keeps serving.

use crate::cli::StandaloneArgs;
use crate::manifests::{self, GENERATED_DIR, Manifests};
use crate::serve::{load_kek, open_store, serve};
use anyhow::Context;
use gatehouse_controller::publish::{PublishReport, Publisher, record_signing_keys};
use gatehouse_controller::{Observed, Reconciled, SecretRequest, reconcile};
use gatehouse_core::keys::KeyEncryptionKey;
use gatehouse_crd::condition::types;
use gatehouse_crd::{OAuthClientStatus, TenantStatus};
use gatehouse_server::TenantDirectory;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How often the manifests directory is checked for edits.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);
/// How often the store is checked for drift (a flushed or replaced Redis) and, at the latest,
/// fully re-published even without edits.
const DRIFT_CHECK_INTERVAL: Duration = Duration::from_secs(1);
const RESYNC_INTERVAL: Duration = Duration::from_secs(60);

/// The interval for background work that took `spent` the last time: at least `base`, and
/// long enough that the work stays under 5 % of a core however large the directory grows
/// (checking 100,000 generated Secret files takes ~0.2 s; reconciling them, seconds).
fn paced(base: Duration, spent: Duration) -> Duration {
    base.max(spent * 20)
}

pub async fn run(args: StandaloneArgs) -> anyhow::Result<()> {
    let public_url = args.common.public_url()?;
    let kek = match load_kek(&args.common)? {
        Some(k) => k,
        None => {
            tracing::warn!(
                "no --key-encryption-key-file given: generated a throw-away key-encryption key; \
                 signing keys stored by this process will not be usable after a restart"
            );
            KeyEncryptionKey::generate()
                .context("generating a key-encryption key")?
                .0
        }
    };
    let kek = Arc::new(kek);
    let store = open_store(&args.store).await?;
    let directory = Arc::new(TenantDirectory::new(
        store.clone(),
        kek.clone(),
        &public_url,
    ));
    let mut driver = Driver {
        dir: args.manifests.clone(),
        public_url,
        publisher: Publisher::new(store.clone(), kek),
        tenant_status: HashMap::new(),
        client_status: HashMap::new(),
        last_table: String::new(),
    };
    let manifests = manifests::load(&driver.dir).map_err(|errors| {
        let list: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
        anyhow::anyhow!(
            "invalid manifests in {}:\n{}",
            driver.dir.display(),
            list.join("\n")
        )
    })?;
    let mut seen = fingerprint(&driver.dir);
    let started = std::time::Instant::now();
    let written = driver
        .apply(manifests)
        .await
        .context("publishing the manifests to the store")?;
    seen ^= fingerprint_of(&written);
    let mut resync_every = paced(RESYNC_INTERVAL, started.elapsed());
    directory
        .refresh()
        .await
        .context("loading the published configuration")?;

    tokio::spawn(async move {
        let mut last_sync = tokio::time::Instant::now();
        let mut last_drift_check = tokio::time::Instant::now();
        let mut watch_every = WATCH_INTERVAL;
        loop {
            tokio::time::sleep(watch_every).await;
            let started = std::time::Instant::now();
            let current = fingerprint(&driver.dir);
            watch_every = paced(WATCH_INTERVAL, started.elapsed());
            let mut drifted = false;
            if last_drift_check.elapsed() >= DRIFT_CHECK_INTERVAL {
                last_drift_check = tokio::time::Instant::now();
                drifted = driver.publisher.drifted().await.unwrap_or(false);
                if drifted {
                    tracing::warn!(
                        "the store no longer holds the published configuration; publishing it again"
                    );
                }
            }
            if current == seen && !drifted && last_sync.elapsed() < resync_every {
                continue;
            }
            let edited = current != seen;
            seen = current;
            last_sync = tokio::time::Instant::now();
            let started = std::time::Instant::now();
            match manifests::load(&driver.dir) {
                Ok(m) => {
                    if edited {
                        tracing::info!(dir = %driver.dir.display(), "manifests changed; reconciling");
                    }
                    match driver.apply(m).await {
                        Ok(written) => seen ^= fingerprint_of(&written),
                        Err(e) => {
                            tracing::error!(error = %format!("{e:#}"), "could not publish the manifests; will retry")
                        }
                    }
                }
                Err(errors) => {
                    for e in errors {
                        tracing::error!("{e}");
                    }
                    tracing::error!("manifests rejected; still serving the last valid set");
                }
            }
            resync_every = paced(RESYNC_INTERVAL, started.elapsed());
        }
    });
    serve(store, directory, &args.common).await
}

struct Driver {
    dir: PathBuf,
    public_url: String,
    publisher: Publisher,
    tenant_status: HashMap<String, TenantStatus>,
    client_status: HashMap<(String, String), (String, OAuthClientStatus)>,
    last_table: String,
}

impl Driver {
    /// Reconciles and publishes `m`; returns the Secret files it generated (already part of
    /// what it published, so they are not an edit to react to).
    async fn apply(&mut self, mut m: Manifests) -> anyhow::Result<Vec<PathBuf>> {
        for t in &mut m.tenants {
            t.status = self.tenant_status.get(&t.name_any()).cloned();
        }
        for c in &mut m.clients {
            c.status = self
                .client_status
                .get(&(c.namespace().unwrap_or_default(), c.name_any()))
                .map(|(_, s)| s.clone());
        }
        let mut reconciled = self.reconcile(&m);
        let mut written = Vec::new();
        let requests: Vec<SecretRequest> = reconciled
            .clients
            .iter()
            .filter_map(|c| c.secret_request.clone())
            .collect();
        if !requests.is_empty() {
            for request in &requests {
                match write_generated_secret(&self.dir, request) {
                    Ok((path, secret)) => {
                        println!(
                            "generated Secret {}/{} for client {} in {}",
                            request.namespace,
                            request.name,
                            request.client_id,
                            path.display()
                        );
                        m.secrets.push(secret);
                        written.push(path);
                    }
                    Err(e) => {
                        tracing::error!(secret = %format!("{}/{}", request.namespace, request.name), error = %format!("{e:#}"), "cannot write a generated Secret")
                    }
                }
            }
            reconciled = self.reconcile(&m);
        }
        let now = gatehouse_store::unix_now();
        let report = self.publisher.publish(&reconciled, now).await?;
        self.record(reconciled, &report);
        self.print_table();
        Ok(written)
    }

    fn reconcile(&self, m: &Manifests) -> Reconciled {
        reconcile(&Observed {
            tenants: &m.tenants,
            clients: &m.clients,
            secrets: &m.secrets,
            public_url: &self.public_url,
            now: Time(Timestamp::now()),
        })
    }

    fn record(&mut self, mut reconciled: Reconciled, report: &PublishReport) {
        record_signing_keys(&mut reconciled, report);
        self.tenant_status = reconciled
            .tenants
            .into_iter()
            .map(|t| (t.name, t.status))
            .collect();
        self.client_status = reconciled
            .clients
            .into_iter()
            .map(|c| ((c.namespace, c.name), (c.tenant, c.status)))
            .collect();
    }

    /// Prints the kubectl-like status table when it changed.
    fn print_table(&mut self) {
        let table = render_table(&self.tenant_status, &self.client_status);
        if table != self.last_table {
            println!("{table}");
            self.last_table = table;
        }
    }
}

fn condition<'a>(
    conditions: &'a [k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> (&'a str, &'a str, &'a str) {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.as_str(), c.reason.as_str(), c.message.as_str()))
        .unwrap_or(("Unknown", "", ""))
}

fn columns(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .map(|(i, cell)| format!("{cell:<width$}", width = widths[i]))
                .collect::<Vec<_>>()
                .join("   ")
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn render_table(
    tenants: &HashMap<String, TenantStatus>,
    clients: &HashMap<(String, String), (String, OAuthClientStatus)>,
) -> String {
    let mut out = String::new();
    let mut problems = Vec::new();
    let mut rows = vec![
        ["TENANT", "ISSUER", "CLIENTS", "READY", "REASON"]
            .map(String::from)
            .to_vec(),
    ];
    let mut names: Vec<&String> = tenants.keys().collect();
    names.sort();
    for name in names {
        let s = &tenants[name];
        let (ready, reason, message) = condition(&s.conditions, types::READY);
        if ready != "True" {
            problems.push(format!("Tenant {name}: {reason}: {message}"));
        }
        let (users, users_reason, users_message) = condition(&s.conditions, types::USERS_LOADED);
        if users == "False" {
            problems.push(format!("Tenant {name}: {users_reason}: {users_message}"));
        }
        rows.push(vec![
            name.clone(),
            s.issuer.clone().unwrap_or_else(|| "-".into()),
            s.clients
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into()),
            ready.into(),
            reason.into(),
        ]);
    }
    out.push_str(&columns(&rows));
    out.push_str("\n\n");
    let mut rows = vec![
        [
            "OAUTHCLIENT",
            "TENANT",
            "CLIENT-ID",
            "GRANTS",
            "ACCEPTED",
            "READY",
            "REASON",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let mut keys: Vec<&(String, String)> = clients.keys().collect();
    keys.sort();
    for key in keys {
        let (tenant, s) = &clients[key];
        let (accepted, a_reason, a_message) = condition(&s.conditions, types::ACCEPTED);
        let (ready, r_reason, r_message) = condition(&s.conditions, types::READY);
        let reason = if accepted != "True" {
            a_reason
        } else {
            r_reason
        };
        if accepted != "True" {
            problems.push(format!(
                "OAuthClient {}/{}: {a_reason}: {a_message}",
                key.0, key.1
            ));
        } else if ready != "True" {
            problems.push(format!(
                "OAuthClient {}/{}: {r_reason}: {r_message}",
                key.0, key.1
            ));
        }
        let grants = if s.grant_types.is_empty() {
            "-".to_string()
        } else {
            s.grant_types
                .iter()
                .map(|g| g.as_str())
                .collect::<Vec<_>>()
                .join(",")
        };
        rows.push(vec![
            format!("{}/{}", key.0, key.1),
            tenant.clone(),
            s.client_id.clone().unwrap_or_default(),
            grants,
            accepted.into(),
            ready.into(),
            reason.into(),
        ]);
    }
    out.push_str(&columns(&rows));
    if !problems.is_empty() {
        out.push_str("\n\n");
        out.push_str(&problems.join("\n"));
    }
    out.push('\n');
    out
}

/// Writes a generated credentials Secret as a manifest under `dir/generated/`, readable by the
/// owner only, and returns it as an object too.
fn write_generated_secret(
    dir: &Path,
    request: &SecretRequest,
) -> anyhow::Result<(PathBuf, Secret)> {
    let value = gatehouse_controller::secrets::generate_client_secret()
        .map_err(|_| anyhow::anyhow!("no randomness available"))?;
    let secret = gatehouse_controller::secrets::generated_secret(request, &value);
    let mut doc = serde_json::to_value(&secret)?;
    doc["apiVersion"] = "v1".into();
    doc["kind"] = "Secret".into();
    let yaml = serde_saphyr::to_string(&doc)?;
    let folder = dir.join(GENERATED_DIR);
    std::fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
    let path = folder.join(format!("{}.{}.yaml", request.namespace, request.name));
    write_private(
        &path,
        &format!(
            "# Generated by gatehouse standalone for OAuthClient {}/{}.\n---\n{yaml}",
            request.namespace, request.owner_name
        ),
    )?;
    Ok((path, secret))
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// A cheap summary of the directory's YAML files: names, sizes, modification times and inodes
/// (any edit, addition, removal or replacement changes it), without reading their contents,
/// which with 100,000 generated Secrets would cost the server a core every interval. Files
/// combine by XOR, so the files Gatehouse writes itself can be added to a summary taken
/// before it wrote them.
fn fingerprint(dir: &Path) -> u64 {
    manifests::files(dir)
        .map(|files| fingerprint_of(&files))
        .unwrap_or(0)
}

fn fingerprint_of(files: &[PathBuf]) -> u64 {
    files.iter().fold(0, |summary, f| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        f.hash(&mut h);
        if let Ok(meta) = std::fs::metadata(f) {
            meta.len().hash(&mut h);
            meta.modified().ok().hash(&mut h);
            #[cfg(unix)]
            std::os::unix::fs::MetadataExt::ino(&meta).hash(&mut h);
        }
        summary ^ h.finish()
    })
}
