//! `gatehouse standalone`: the reconcile driver (`gatehouse_controller::standalone`) fed from a
//! directory of manifests, plus the server, in one process.

use crate::cli::StandaloneArgs;
use crate::serve::{load_kek, open_store, serve};
use anyhow::Context;
use gatehouse_controller::publish::Publisher;
use gatehouse_controller::standalone::kept_keys::{KEK_FILE, KekOrigin, kept_key_encryption_key};
use gatehouse_controller::standalone::{Driver, Setting};
use gatehouse_core::keys::KeyEncryptionKey;
use gatehouse_core::{clock, random};
use gatehouse_server::{Services, TenantDirectory};
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
    let store = open_store(&args.store, args.store_safety).await?;
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
