//! `gatehouse standalone`: the reconcile driver (`gatehouse_controller::standalone`) fed from a
//! directory of manifests, plus the server, in one process.

use crate::cli::StandaloneArgs;
use crate::serve::{load_kek, open_store, serve};
use anyhow::Context;
use gatehouse_controller::publish::Publisher;
use gatehouse_controller::standalone::kept_keys::{KEK_FILE, KekOrigin, kept_key_encryption_key};
use gatehouse_controller::standalone::{Driver, Setting, TenantSummary};
use gatehouse_core::keys::KeyEncryptionKey;
use gatehouse_core::{clock, random};
use gatehouse_server::{Services, TenantDirectory};
use std::fmt::Write as _;
use std::sync::Arc;

/// Without `--key-encryption-key-file`, the key kept beside the manifests (made on first use),
/// so that the signing keys kept there still open after a restart. A directory that cannot be
/// written gets a throw-away key, said loudly.
fn kept_kek(dir: &std::path::Path) -> anyhow::Result<KeyEncryptionKey> {
    match kept_key_encryption_key(dir) {
        Ok((kek, origin, path)) => {
            let verb = match origin {
                KekOrigin::Read => "using",
                KekOrigin::Generated => "generated",
            };
            tracing::info!(
                path = %path.display(),
                "{verb} the key-encryption key kept beside the manifests (back it up with generated/gatehouse-keys-*.yaml)"
            );
            Ok(kek)
        }
        Err(why) if std::fs::metadata(dir.join("generated").join(KEK_FILE)).is_err() => {
            tracing::warn!(
                error = %why,
                "cannot keep a key-encryption key beside the manifests; using a throw-away one: \
                 signing keys will not be usable after a restart (give --key-encryption-key-file)"
            );
            Ok(KeyEncryptionKey::generate()
                .context("generating a key-encryption key")?
                .0)
        }
        Err(why) => Err(anyhow::anyhow!("the kept key-encryption key: {why}")),
    }
}

pub async fn run(args: StandaloneArgs) -> anyhow::Result<()> {
    let public_url = args.common.public_url()?;
    let kek = if let Some(k) = load_kek(&args.common)? {
        k
    } else {
        kept_kek(&args.manifests)?
    };
    let kek = Arc::new(kek);
    let store = open_store(&args.store, &args.store_access, args.store_safety).await?;
    let directory = Arc::new(TenantDirectory::new(
        store.clone(),
        kek.clone(),
        &public_url,
    ));
    let (clock, random) = (clock::system(), random::system());
    let setting = Setting {
        dir: args.manifests.clone(),
        public_url,
        clock: clock.clone(),
        random: random.clone(),
        fetcher: args.trusted_issuers.fetcher()?,
        issuer_refresh: args.trusted_issuers.trusted_issuer_refresh,
    };
    let mut driver = Driver::new(setting, Publisher::new(store.clone(), kek, random.clone()));
    let first = driver.start().await?;
    crate::cli::write_stdout(&banner(&args, &driver.served_tenants()))?;
    directory
        .refresh()
        .await
        .context("loading the published configuration")?;
    tokio::spawn(driver.follow(first));
    serve(
        Services::new(store, clock, random),
        directory,
        &args.common,
        args.store_safety,
    )
    .await
}

/// What a person starting standalone needs first: where the state lives, where each tenant
/// is, whom to sign in as, and what to run next.
fn banner(args: &StandaloneArgs, tenants: &[TenantSummary]) -> String {
    let mut out = format!(
        "Gatehouse standalone: serving the manifests in {} (edits apply within a second)\n",
        args.manifests.display()
    );
    let store = gatehouse_store::redact_url(&args.store);
    if args.store.starts_with("memory:") {
        let _ = writeln!(
            out,
            "  store:   {store} (in memory: everything is lost on exit)"
        );
    } else {
        let _ = writeln!(out, "  store:   {store}");
    }
    for t in tenants {
        let _ = writeln!(
            out,
            "  tenant {}: {}/.well-known/openid-configuration",
            t.name, t.issuer
        );
        if !t.usernames.is_empty() {
            let _ = writeln!(out, "    users: {}", t.usernames.join(", "));
        }
    }
    if let Some(first) = tenants.first() {
        let _ = writeln!(
            out,
            "  next:    gatehouse demo-client --issuer {}\n           (a browser sign-in as one of its clients: --client-id, --help)",
            first.issuer
        );
    }
    out
}
