//! `gatehouse crdgen`: the CRDs as a multi-document YAML stream, the form `crds/` holds.

use anyhow::Context;

/// Renders every CRD, each as its own YAML document.
pub fn render() -> anyhow::Result<String> {
    let mut out = String::new();
    for crd in gatehouse_crd::crds() {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&crd).context("serialising a CRD")?);
    }
    Ok(out)
}

/// The file name under `crds/` of each CRD (`<plural>.<group>.yaml`).
pub fn files() -> anyhow::Result<Vec<(String, String)>> {
    gatehouse_crd::crds()
        .into_iter()
        .map(|crd| {
            let name = crd.metadata.name.clone().unwrap_or_default();
            let yaml = serde_saphyr::to_string(&crd).context("serialising a CRD")?;
            Ok((format!("{name}.yaml"), format!("---\n{yaml}")))
        })
        .collect()
}

/// Writes each CRD to `dir/<name>.yaml`.
pub fn write(dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, yaml) in files()? {
        let path = dir.join(name);
        std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
