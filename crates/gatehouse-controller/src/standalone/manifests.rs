//! Loading a directory of manifests for `standalone`: the YAML files an operator would
//! `kubectl apply`, parsed into typed objects, with errors that name the file, the document and
//! the field.

use gatehouse_crd::{API_VERSION, OAuthClient, Tenant};
use k8s_openapi::api::core::v1::Secret;
use serde_json::Value;
use std::fmt;
use std::path::{Path, PathBuf};

/// Subdirectory where standalone writes the credentials Secrets it generates.
pub const GENERATED_DIR: &str = "generated";

#[derive(Default, Debug)]
pub struct Manifests {
    pub tenants: Vec<Tenant>,
    pub clients: Vec<OAuthClient>,
    pub secrets: Vec<Secret>,
}

/// One problem in one document.
#[derive(Debug)]
pub struct ManifestError {
    pub file: PathBuf,
    /// 1-based index of the document in its file (0 when the file itself is unreadable).
    pub document: usize,
    pub object: Option<String>,
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.document > 0 {
            write!(f, ", document {}", self.document)?;
        }
        if let Some(o) = &self.object {
            write!(f, " ({o})")?;
        }
        if let Some(field) = &self.field {
            write!(f, ", field {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The YAML files of `dir` (and of its `generated/`), sorted, so output is stable.
pub fn files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for d in [dir.to_path_buf(), dir.join(GENERATED_DIR)] {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if d != dir && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let path = entry?.path();
            let is_yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
            if is_yaml && path.is_file() {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Parses every manifest of `dir`. All problems are reported, not only the first.
pub fn load(dir: &Path) -> Result<Manifests, Vec<ManifestError>> {
    let mut manifests = Manifests::default();
    let mut errors = Vec::new();
    let paths = match files(dir) {
        Ok(p) => p,
        Err(e) => {
            return Err(vec![ManifestError {
                file: dir.into(),
                document: 0,
                object: None,
                field: None,
                message: e.to_string(),
            }]);
        }
    };
    for path in paths {
        match std::fs::read_to_string(&path) {
            Ok(text) => parse_file(&path, &text, &mut manifests, &mut errors),
            Err(e) => errors.push(ManifestError {
                file: path,
                document: 0,
                object: None,
                field: None,
                message: e.to_string(),
            }),
        }
    }
    check_duplicates(&manifests, &mut errors);
    if errors.is_empty() {
        Ok(manifests)
    } else {
        Err(errors)
    }
}

fn parse_file(path: &Path, text: &str, out: &mut Manifests, errors: &mut Vec<ManifestError>) {
    let docs: Vec<Value> = match serde_saphyr::from_multiple(text) {
        Ok(d) => d,
        Err(e) => {
            errors.push(ManifestError {
                file: path.into(),
                document: 0,
                object: None,
                field: None,
                message: format!("not valid YAML: {e}"),
            });
            return;
        }
    };
    for (i, doc) in docs.into_iter().enumerate() {
        let document = i + 1;
        if doc.is_null() {
            continue;
        }
        let err = |object: Option<String>, field: Option<String>, message: String| ManifestError {
            file: path.into(),
            document,
            object,
            field,
            message,
        };
        let Some(obj) = doc.as_object() else {
            errors.push(err(
                None,
                None,
                "a manifest must be a mapping with apiVersion, kind and metadata".into(),
            ));
            continue;
        };
        let api_version = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let kind = obj
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let name = obj
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let label = Some(format!(
            "{kind} {}",
            name.clone().unwrap_or_else(|| "<unnamed>".into())
        ));
        if name.as_deref().is_none_or(str::is_empty) {
            errors.push(err(label, Some("metadata.name".into()), "required".into()));
            continue;
        }
        match (api_version.as_str(), kind.as_str()) {
            (API_VERSION, "Tenant") => match typed::<Tenant>(doc) {
                Ok(t) => out.tenants.push(t),
                Err((field, message)) => errors.push(err(label, field, message)),
            },
            (API_VERSION, "OAuthClient") => match typed::<OAuthClient>(doc) {
                Ok(mut c) => {
                    c.metadata.namespace.get_or_insert_with(|| "default".into());
                    out.clients.push(c);
                }
                Err((field, message)) => errors.push(err(label, field, message)),
            },
            ("v1", "Secret") => match typed::<Secret>(doc) {
                Ok(mut s) => {
                    s.metadata.namespace.get_or_insert_with(|| "default".into());
                    out.secrets.push(s);
                }
                Err((field, message)) => errors.push(err(label, field, message)),
            },
            (_, "Tenant" | "OAuthClient") => errors.push(err(
                label,
                Some("apiVersion".into()),
                format!("expected {API_VERSION}, got {api_version:?}"),
            )),
            _ => {
                tracing::warn!(file = %path.display(), document, %kind, "ignoring a manifest standalone does not use");
            }
        }
    }
}

/// Deserialises with the path of the offending field.
fn typed<T: serde::de::DeserializeOwned>(doc: Value) -> Result<T, (Option<String>, String)> {
    serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { None } else { Some(path) };
        (field, e.into_inner().to_string())
    })
}

fn check_duplicates(m: &Manifests, errors: &mut Vec<ManifestError>) {
    use kube::ResourceExt;
    let mut seen = std::collections::BTreeSet::new();
    let keys = m
        .tenants
        .iter()
        .map(|t| format!("Tenant {}", t.name_any()))
        .chain(m.clients.iter().map(|c| {
            format!(
                "OAuthClient {}/{}",
                c.namespace().unwrap_or_default(),
                c.name_any()
            )
        }))
        .chain(m.secrets.iter().map(|s| {
            format!(
                "Secret {}/{}",
                s.namespace().unwrap_or_default(),
                s.name_any()
            )
        }));
    for key in keys {
        if !seen.insert(key.clone()) {
            errors.push(ManifestError {
                file: PathBuf::from("<manifests>"),
                document: 0,
                object: Some(key),
                field: None,
                message: "defined more than once".into(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Manifests, Vec<ManifestError>) {
        let mut m = Manifests::default();
        let mut e = Vec::new();
        parse_file(Path::new("t.yaml"), text, &mut m, &mut e);
        (m, e)
    }

    #[test]
    fn reads_all_three_kinds_from_one_file() {
        let (m, e) = parse(
            "apiVersion: gatehouse.dev/v1alpha1\nkind: Tenant\nmetadata: {name: acme}\nspec: {grantTypes: [client_credentials]}\n---\n\
             apiVersion: gatehouse.dev/v1alpha1\nkind: OAuthClient\nmetadata: {name: b, namespace: acme}\nspec: {tenantRef: acme, grantTypes: [client_credentials]}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: acme}\nstringData: {client_secret: x}\n---\n",
        );
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(
            (m.tenants.len(), m.clients.len(), m.secrets.len()),
            (1, 1, 1)
        );
    }

    #[test]
    fn errors_name_file_document_and_field() {
        let (_, e) = parse(
            "apiVersion: gatehouse.dev/v1alpha1\nkind: Tenant\nmetadata: {name: ok}\nspec: {grantTypes: [client_credentials]}\n---\n\
             apiVersion: gatehouse.dev/v1alpha1\nkind: Tenant\nmetadata: {name: acme}\nspec: {grantTypes: [client_credentials, teleport]}\n",
        );
        assert_eq!(e.len(), 1);
        let msg = e[0].to_string();
        assert!(msg.starts_with("t.yaml, document 2 (Tenant acme), field spec.grantTypes[1]: unknown variant `teleport`"), "{msg}");
    }

    #[test]
    fn bad_yaml_and_missing_names_are_reported() {
        let (_, e) = parse("kind: Tenant\n  bad: [indent");
        assert!(e[0].to_string().contains("not valid YAML"), "{}", e[0]);
        let (_, e) = parse("apiVersion: v1\nkind: Secret\nmetadata: {}\n");
        assert_eq!(e[0].field.as_deref(), Some("metadata.name"));
        let (_, e) = parse("apiVersion: gatehouse.dev/v1\nkind: Tenant\nmetadata: {name: a}\n");
        assert_eq!(e[0].field.as_deref(), Some("apiVersion"));
    }
}
