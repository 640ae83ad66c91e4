//! `gatehouse standalone`: the reconcile driver (`gatehouse_controller::standalone`) fed from a
//! directory of manifests, plus the server, in one process.

use crate::cli::StandaloneArgs;
use crate::serve::{load_kek, open_store, serve};
use anyhow::Context;
use gatehouse_controller::publish::Publisher;
use gatehouse_controller::standalone::{Driver, Setting};
use gatehouse_core::keys::KeyEncryptionKey;
use gatehouse_core::{clock, random};
use gatehouse_server::{Services, TenantDirectory};
use std::sync::Arc;

pub async fn run(args: StandaloneArgs) -> anyhow::Result<()> {
    let public_url = args.common.public_url()?;
    let kek = if let Some(k) = load_kek(&args.common)? {
        k
    } else {
        tracing::warn!(
            "no --key-encryption-key-file given: generated a throw-away key-encryption key; \
             signing keys stored by this process will not be usable after a restart"
        );
        KeyEncryptionKey::generate()
            .context("generating a key-encryption key")?
            .0
    };
    let kek = Arc::new(kek);
    let store = open_store(&args.store).await?;
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
    };
    let mut driver = Driver::new(setting, Publisher::new(store.clone(), kek, random.clone()));
    let first = driver.start().await?;
    directory
        .refresh()
        .await
        .context("loading the published configuration")?;
    tokio::spawn(driver.follow(first));
    serve(Services::new(store, clock, random), directory, &args.common).await
}
