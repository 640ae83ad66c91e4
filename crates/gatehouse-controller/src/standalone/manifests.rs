//! Loading a directory of manifests for `standalone`: the YAML files an operator would
//! `kubectl apply`, parsed into typed objects, with errors that name the file, the document and
//! the field.

use gatehouse_crd::validate::{is_dns_label, is_dns_subdomain};
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
    /// Where each object was read, by [`object_key`].
    pub origins: Origins,
}

/// Where each object was read, by [`object_key`] (`Tenant acme`, `OAuthClient ns/name`).
pub type Origins = std::collections::BTreeMap<String, Origin>;

/// A file and the document in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    /// 1-based.
    pub document: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, document {}", self.file.display(), self.document)
    }
}

/// How objects are named in origins, errors and the status table's problem lines.
#[must_use]
pub fn object_key(kind: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
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
    // Origins are shown beside problems in the status table: relative to the directory.
    for origin in manifests.origins.values_mut() {
        if let Ok(relative) = origin.file.strip_prefix(dir) {
            origin.file = relative.to_path_buf();
        }
    }
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
                message: format!("not valid YAML: {}", capped(&e.to_string())),
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
            "{} {}",
            short(&kind),
            name.as_deref().map_or_else(|| "<unnamed>".into(), short)
        ));
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            errors.push(err(label, Some("metadata.name".into()), "required".into()));
            continue;
        };
        let namespace = obj
            .get("metadata")
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str);
        let ours = matches!(kind.as_str(), "Tenant" | "OAuthClient" | "Secret");
        if ours && !is_dns_subdomain(&name) {
            errors.push(err(
                label,
                Some("metadata.name".into()),
                "must be a DNS-1123 subdomain (lowercase letters, digits, '-' and '.'; at most 253)"
                    .into(),
            ));
            continue;
        }
        if ours && namespace.is_some_and(|ns| !is_dns_label(ns)) {
            errors.push(err(
                label,
                Some("metadata.namespace".into()),
                "must be a namespace name (a DNS-1123 label: lowercase letters, digits, '-'; at most 63)"
                    .into(),
            ));
            continue;
        }
        let origin = Origin {
            file: path.into(),
            document,
        };
        let namespaced = namespace.unwrap_or("default");
        let key = match kind.as_str() {
            "Tenant" => object_key("Tenant", None, &name),
            other => object_key(other, Some(namespaced), &name),
        };
        if ours && let Some(first) = out.origins.get(&key) {
            errors.push(err(
                label,
                Some("metadata.name".into()),
                format!("{key} is already defined in {first}"),
            ));
            continue;
        }
        match (api_version.as_str(), kind.as_str()) {
            (API_VERSION, "Tenant" | "OAuthClient")
                if let Some((field, message)) = unknown_fields(&doc, &kind).into_iter().next() =>
            {
                errors.push(err(label, Some(field), message));
            }
            (API_VERSION, "Tenant") => match typed::<Tenant>(doc) {
                Ok(t) => {
                    out.origins.insert(key, origin);
                    out.tenants.push(t);
                }
                Err((field, message)) => errors.push(err(label, field, message)),
            },
            (API_VERSION, "OAuthClient") => match typed::<OAuthClient>(doc) {
                Ok(mut c) => {
                    c.metadata.namespace.get_or_insert_with(|| "default".into());
                    out.origins.insert(key, origin);
                    out.clients.push(c);
                }
                Err((field, message)) => errors.push(err(label, field, message)),
            },
            ("v1", "Secret") => match typed::<Secret>(doc) {
                Ok(mut s) => {
                    s.metadata.namespace.get_or_insert_with(|| "default".into());
                    out.origins.insert(key, origin);
                    out.secrets.push(s);
                }
                Err((field, message)) => errors.push(err(label, field, message)),
            },
            (_, "Tenant" | "OAuthClient") => errors.push(err(
                label,
                Some("apiVersion".into()),
                capped(&format!("expected {API_VERSION}, got {api_version:?}")),
            )),
            _ => {
                tracing::warn!(file = %path.display(), document, kind = %short(&kind), "ignoring a manifest standalone does not use");
            }
        }
    }
}

/// A name as shown in an error: long ones are cut.
fn short(name: &str) -> String {
    const SHOWN: usize = 64;
    if name.chars().count() <= SHOWN {
        name.to_string()
    } else {
        format!("{}…", name.chars().take(SHOWN).collect::<String>())
    }
}

/// A parser's message as reported: it may quote the offending value whole, and a value can
/// be a megabyte long.
fn capped(message: &str) -> String {
    const LONGEST: usize = 300;
    if message.chars().count() <= LONGEST {
        message.to_string()
    } else {
        format!("{}…", message.chars().take(LONGEST).collect::<String>())
    }
}

/// The fields of a Tenant or OAuthClient document its CRD schema does not declare, as (path,
/// message): what an API server's strict field validation refuses (`clientID:` written for
/// `clientId:` would otherwise be dropped without a word).
fn unknown_fields(doc: &Value, kind: &str) -> Vec<(String, String)> {
    use kube::CustomResourceExt;
    use std::sync::OnceLock;
    static SCHEMAS: OnceLock<(Value, Value)> = OnceLock::new();
    let (tenant, client) = SCHEMAS.get_or_init(|| {
        let schema = |crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition| {
            crd.spec
                .versions
                .first()
                .and_then(|v| v.schema.as_ref())
                .and_then(|s| serde_json::to_value(&s.open_api_v3_schema).ok())
                .unwrap_or(Value::Null)
        };
        (schema(Tenant::crd()), schema(OAuthClient::crd()))
    });
    let schema = if kind == "Tenant" { tenant } else { client };
    let mut out = Vec::new();
    let Some(fields) = doc.as_object() else {
        return out;
    };
    for (key, value) in fields {
        match key.as_str() {
            "apiVersion" | "kind" | "metadata" | "status" => {}
            "spec" => unknown_within(value, &schema["properties"]["spec"], "spec", &mut out),
            other => out.push((capped(other), unknown(other, &["spec"]))),
        }
    }
    out
}

fn unknown_within(value: &Value, schema: &Value, path: &str, out: &mut Vec<(String, String)>) {
    let open = schema["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true);
    match value {
        Value::Object(fields) => {
            let declared = schema["properties"].as_object();
            for (key, inner) in fields {
                let at = format!("{path}.{key}");
                match (
                    declared.and_then(|d| d.get(key)),
                    schema.get("additionalProperties"),
                ) {
                    (Some(s), _) => unknown_within(inner, s, &at, out),
                    (None, Some(s)) if s.is_object() => unknown_within(inner, s, &at, out),
                    (None, _) if open || declared.is_none() => {}
                    (None, _) => {
                        let names: Vec<&str> = declared
                            .into_iter()
                            .flatten()
                            .map(|(k, _)| k.as_str())
                            .collect();
                        out.push((capped(&at), unknown(key, &names)));
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    unknown_within(item, s, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// "unknown field", with the declared name meant when only its case differs.
fn unknown(key: &str, declared: &[&str]) -> String {
    match declared.iter().find(|d| d.eq_ignore_ascii_case(key)) {
        Some(meant) => format!("unknown field (did you mean {meant}?)"),
        None => "unknown field".to_string(),
    }
}

/// Deserialises with the path of the offending field.
fn typed<T: serde::de::DeserializeOwned>(doc: Value) -> Result<T, (Option<String>, String)> {
    serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            None
        } else {
            Some(capped(&path))
        };
        (field, capped(&e.into_inner().to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_testkit::fuzz::{self, Rng};

    fn parse(text: &str) -> (Manifests, Vec<ManifestError>) {
        let mut m = Manifests::default();
        let mut e = Vec::new();
        parse_file(Path::new("t.yaml"), text, &mut m, &mut e);
        (m, e)
    }

    #[test]
    fn an_unknown_field_is_refused_with_its_path_and_the_name_meant() {
        let (m, e) = parse(
            "apiVersion: gatehouse.dev/v1alpha1\nkind: OAuthClient\nmetadata: {name: b, namespace: acme}\n\
             spec: {tenantRef: acme, clientID: acme-b, grantTypes: [client_credentials]}\n",
        );
        assert!(m.clients.is_empty());
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].field.as_deref(), Some("spec.clientID"));
        assert_eq!(e[0].message, "unknown field (did you mean clientId?)");
        assert!(e[0].to_string().contains("t.yaml"), "{}", e[0]);

        let (_, e) = parse(
            "apiVersion: gatehouse.dev/v1alpha1\nkind: Tenant\nmetadata: {name: acme}\n\
             spec: {grantTypes: [client_credentials], trustedIssuers: [{name: ci, issuer: 'https://ci.example.com',\
                    subjects: [{subject: job, client: {namespace: acme, clientId: a, tenant: acme}}]}]}\n",
        );
        assert_eq!(
            e[0].field.as_deref(),
            Some("spec.trustedIssuers[0].subjects[0].client.tenant")
        );
        assert_eq!(e[0].message, "unknown field");
        let (_, e) = parse(
            "apiVersion: gatehouse.dev/v1alpha1\nkind: Tenant\nmetadata: {name: acme}\nspecs: {}\nspec: {grantTypes: [client_credentials]}\n",
        );
        assert_eq!(e[0].field.as_deref(), Some("specs"));

        // A JWK's members are the key's own: any of them is kept.
        let (m, e) = parse(
            "apiVersion: gatehouse.dev/v1alpha1\nkind: OAuthClient\nmetadata: {name: b, namespace: acme}\n\
             spec: {tenantRef: acme, grantTypes: [client_credentials], tokenEndpointAuthMethod: private_key_jwt,\
                    jwks: {keys: [{kty: EC, crv: P-256, x: AA, y: AA, x5c: [abc], key_ops: [verify]}]}}\n",
        );
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(m.clients.len(), 1);
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

    #[test]
    fn names_are_kubernetes_names_and_errors_stay_short() {
        let long = "a".repeat(70_000);
        for (field, doc) in [
            (
                "metadata.name",
                format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: {long}}}\n"),
            ),
            (
                "metadata.name",
                "apiVersion: v1\nkind: Secret\nmetadata: {name: Not_A_Name}\n".to_string(),
            ),
            (
                "metadata.namespace",
                format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: s, namespace: {long}}}\n"),
            ),
        ] {
            let (m, e) = parse(&doc);
            assert!(m.secrets.is_empty());
            assert_eq!(e.len(), 1, "{e:?}");
            assert_eq!(e[0].field.as_deref(), Some(field));
            assert!(e[0].to_string().len() < 300, "{}", e[0]);
        }
    }

    #[test]
    fn a_duplicate_names_where_the_first_was_read() {
        let doc = "apiVersion: gatehouse.dev/v1alpha1\nkind: OAuthClient\nmetadata: {name: b, namespace: acme}\nspec: {tenantRef: acme, grantTypes: [client_credentials]}\n";
        let mut m = Manifests::default();
        let mut e = Vec::new();
        parse_file(Path::new("first.yaml"), doc, &mut m, &mut e);
        let second = format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\n---\n{doc}");
        parse_file(Path::new("second.yaml"), &second, &mut m, &mut e);
        assert_eq!(m.clients.len(), 1);
        assert_eq!(
            e[0].to_string(),
            "second.yaml, document 2 (OAuthClient b), field metadata.name: \
             OAuthClient acme/b is already defined in first.yaml, document 1"
        );
        assert_eq!(
            m.origins["OAuthClient acme/b"].to_string(),
            "first.yaml, document 1"
        );
    }

    /// What a mutation may splice in: YAML syntax, names of our fields, values of the wrong
    /// type or size.
    const PIECES: &[&str] = &[
        "\n",
        ": ",
        "- ",
        "{",
        "}",
        "[",
        "]",
        ",",
        "'",
        "\"",
        "&a ",
        "*a",
        "!!binary ",
        "---\n",
        "~",
        "null",
        "true",
        "0",
        "-1",
        "1e999",
        "0s",
        "15 mins",
        "99999999999h",
        "\u{0}",
        "é",
        "\t",
        "kind: Tenant",
        "kind: OAuthClient",
        "kind: Secret",
        "apiVersion: v1",
        "apiVersion: gatehouse.dev/v1alpha1",
        "metadata: {name: x}",
        "clientId: ",
        "grantTypes: ",
        "ttl: ",
        "scopes: ",
        "redirectUris: ",
        "jwks: {keys: [{}]}",
        "secretRef: {name: s}",
        "data: {client_secret: '!!!'}",
        "stringData: ",
        "namespace: ",
        "clientNamespaces: ['*']",
    ];

    fn mutate(rng: &mut Rng, text: &str) -> String {
        let mut out: Vec<char> = text.chars().collect();
        for _ in 0..=rng.below(4) {
            let at = rng.below(out.len() + 1);
            match rng.below(5) {
                0 if !out.is_empty() => {
                    let end = (at + rng.below(20)).min(out.len());
                    out.drain(at.min(end)..end);
                }
                1 => {
                    let long = "z".repeat(1 + rng.below(70_000));
                    out.splice(at..at, long.chars());
                }
                2 if !out.is_empty() => {
                    let from = rng.below(out.len());
                    let end = (from + rng.below(80)).min(out.len());
                    let copy: Vec<char> = out[from..end].to_vec();
                    out.splice(at..at, copy);
                }
                _ => {
                    let piece = PIECES[rng.below(PIECES.len())];
                    out.splice(at..at, piece.chars());
                }
            }
        }
        out.into_iter().collect()
    }

    #[test]
    fn mutated_manifests_are_refused_or_accepted_never_a_crash() {
        let (seed, cases) = fuzz::settings(0x9e37_79b9_7f4a_7c15, 1_500);
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let seeds: Vec<String> = files(&examples)
            .unwrap()
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        let mut rng = Rng(seed);
        for case in 0..cases {
            let original = &seeds[rng.below(seeds.len())];
            let text = mutate(&mut rng, original);
            let outcome = std::panic::catch_unwind(|| {
                let (m, errors) = parse(&text);
                for e in &errors {
                    let line = e.to_string();
                    assert!(line.len() < 2_000, "an error too long to read: {line:.200}");
                }
                for t in &m.tenants {
                    for f in gatehouse_crd::validate::validate_tenant(
                        &t.metadata.name.clone().unwrap_or_default(),
                        &t.spec,
                    ) {
                        assert!(f.to_string().len() < 2_000, "{f:.200}");
                    }
                }
                for c in &m.clients {
                    for f in gatehouse_crd::validate::validate_client(&c.spec) {
                        assert!(f.to_string().len() < 2_000, "{f:.200}");
                    }
                }
            });
            assert!(
                outcome.is_ok(),
                "case {case} of seed {seed} broke the loader; input:\n{text:.2000}"
            );
        }
    }
}
