//! The checks a kube-apiserver makes against the CRD schemas (patterns, sizes, CEL rules),
//! repeated in Rust for `standalone`, where no apiserver stands between the YAML and the
//! reconcile core. Each finding names the field, the way `kubectl apply` would.

use crate::client::OAuthClientSpec;
use crate::tenant::TenantSpec;
use gatehouse_core::duration::parse_duration;
use gatehouse_core::{ClientAuthMethod, GrantType};
use serde_json::Value;
use std::sync::OnceLock;

/// One violated rule: the field path (`spec.grantTypes`) and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn err(out: &mut Vec<FieldError>, field: impl Into<String>, message: impl Into<String>) {
    out.push(FieldError {
        field: field.into(),
        message: message.into(),
    });
}

/// A value as quoted in a finding: long values are cut, so a finding stays a line.
fn shown(value: &str) -> String {
    const SHOWN: usize = 64;
    if value.chars().count() <= SHOWN {
        format!("{value:?}")
    } else {
        let head: String = value.chars().take(SHOWN).collect();
        format!("{head:?}… ({} characters)", value.chars().count())
    }
}

/// The spec schema of a CRD, as `crdgen` writes it.
fn spec_schema(kind: &str) -> Option<&'static Value> {
    static SCHEMAS: OnceLock<Vec<(String, Value)>> = OnceLock::new();
    let schemas = SCHEMAS.get_or_init(|| {
        crate::crds()
            .into_iter()
            .filter_map(|crd| {
                let schema = crd
                    .spec
                    .versions
                    .first()?
                    .schema
                    .clone()?
                    .open_api_v3_schema?;
                let spec = serde_json::to_value(schema)
                    .ok()?
                    .get("properties")?
                    .get("spec")?
                    .clone();
                Some((crd.spec.names.kind, spec))
            })
            .collect()
    });
    schemas.iter().find(|(k, _)| k == kind).map(|(_, s)| s)
}

/// The size limits of the CRD schema (`maxLength`, `minLength`, `maxItems`, `minItems`),
/// checked the way an apiserver checks them, from the very schema `crdgen` writes: standalone
/// and a cluster cannot disagree on what is too long.
fn check_sizes(schema: &Value, value: &Value, path: &str, out: &mut Vec<FieldError>) {
    let limit = |name: &str| schema.get(name).and_then(Value::as_u64);
    match value {
        Value::String(s) => {
            let length = s.chars().count() as u64;
            if let Some(max) = limit("maxLength").filter(|max| length > *max) {
                err(out, path, format!("at most {max} characters, got {length}"));
            }
            if let Some(min) = limit("minLength").filter(|min| length < *min) {
                err(out, path, format!("at least {min} characters"));
            }
        }
        Value::Array(items) => {
            let count = items.len() as u64;
            if let Some(max) = limit("maxItems").filter(|max| count > *max) {
                err(out, path, format!("at most {max} entries, got {count}"));
            }
            if let Some(min) = limit("minItems").filter(|min| count < *min) {
                err(out, path, format!("at least {min} entries"));
            }
            if let Some(item) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    check_sizes(item, v, &format!("{path}[{i}]"), out);
                }
            }
        }
        Value::Object(members) => {
            for (name, v) in members {
                let member = schema
                    .get("properties")
                    .and_then(|p| p.get(name))
                    .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()));
                if let Some(member) = member {
                    check_sizes(member, v, &format!("{path}.{name}"), out);
                }
            }
        }
        _ => {}
    }
}

/// The rules' findings, then the schema's size findings on fields the rules said nothing
/// about: one finding per field.
fn with_sizes(kind: &str, spec: &impl serde::Serialize, rules: Vec<FieldError>) -> Vec<FieldError> {
    let mut sizes = Vec::new();
    if let (Some(schema), Ok(value)) = (spec_schema(kind), serde_json::to_value(spec)) {
        check_sizes(schema, &value, "spec", &mut sizes);
    }
    let mut out = rules;
    for finding in sizes {
        if !out.iter().any(|f| f.field == finding.field) {
            out.push(finding);
        }
    }
    out
}

pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

fn is_uri_without_fragment(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let scheme_ok = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c));
    scheme_ok
        && !rest.is_empty()
        && !s.contains('#')
        && !s.chars().any(char::is_whitespace)
        && s.len() <= 2048
}

/// Why a redirect URI's scheme can never be one (RFC 8252 section 7): only `https`, `http`
/// and the private-use schemes of native apps in reverse-domain form (`com.example.app:/cb`);
/// `javascript:`, `data:`, `file:` and other one-word schemes would run or read something in
/// the browser instead of reaching an app.
fn redirect_scheme_problem(uri: &str) -> Option<&'static str> {
    let (scheme, rest) = uri.split_once(':')?;
    // Browsers read `\` as `/` and skip user information: `http://evil\@127.0.0.1/` goes to
    // `evil`. Neither has a place in a redirect URI.
    if uri.contains('\\') {
        return Some("a redirect URI must not contain a backslash");
    }
    let authority = rest
        .strip_prefix("//")
        .map(|r| r.split(['/', '?']).next().unwrap_or_default());
    if authority.is_some_and(|a| a.contains('@')) {
        return Some("a redirect URI must not carry user information (user@host)");
    }
    match scheme.to_ascii_lowercase().as_str() {
        "https" | "http" => None,
        s if s.contains('.') => None,
        _ => Some(
            "only https, http (loopback) and private-use schemes in reverse-domain form (com.example.app:/callback) may be redirect URIs",
        ),
    }
}

/// Whether `uri` is plain `http` to a host other than the loopback interface (RFC 8252
/// section 7.3 allows `http` only there); a Tenant must allow those explicitly.
#[must_use]
pub fn is_http_beyond_loopback(uri: &str) -> bool {
    let Some(rest) = uri
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case("http://"))
        .map(|_| &uri[7..])
    else {
        return false;
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    !loopback
}

const CLIENT_ID_RULE: &str =
    "letters, digits and . _ ~ - only, starting with a letter or digit, at most 128";

fn is_client_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._~-".contains(c))
}

fn check_namespaces(out: &mut Vec<FieldError>, field: &str, namespaces: Option<&[String]>) {
    for (i, ns) in namespaces.unwrap_or_default().iter().enumerate() {
        if ns != "*" && !is_dns_label(ns) {
            err(
                out,
                format!("{field}[{i}]"),
                format!("{} is neither \"*\" nor a namespace name", shown(ns)),
            );
        }
    }
}

fn check_duration(out: &mut Vec<FieldError>, field: &str, value: &str) {
    if value.len() > 32 {
        err(out, field, "at most 32 characters");
    } else if let Err(e) = parse_duration(value) {
        err(out, field, e.to_string());
    } else if parse_duration(value).is_ok_and(|d| d.is_zero()) {
        err(out, field, "must be longer than zero");
    }
}

fn check_unique<T: PartialEq + std::fmt::Display>(
    out: &mut Vec<FieldError>,
    field: &str,
    items: &[T],
) {
    for (i, item) in items.iter().enumerate() {
        if items[..i].contains(item) {
            err(
                out,
                format!("{field}[{i}]"),
                format!("duplicate value {item}"),
            );
        }
    }
}

pub fn validate_tenant(name: &str, spec: &TenantSpec) -> Vec<FieldError> {
    with_sizes("Tenant", spec, tenant_rules(name, spec))
}

fn tenant_rules(name: &str, spec: &TenantSpec) -> Vec<FieldError> {
    let mut out = Vec::new();
    if !is_dns_label(name) {
        err(
            &mut out,
            "metadata.name",
            "a Tenant's name is its issuer path segment: a DNS-1123 label (lowercase letters, digits, '-'; at most 63)",
        );
    }
    if spec.grant_types.is_empty() {
        err(
            &mut out,
            "spec.grantTypes",
            "must list at least one grant type",
        );
    }
    check_unique(&mut out, "spec.grantTypes", &spec.grant_types);
    check_namespaces(
        &mut out,
        "spec.clientNamespaces",
        spec.client_namespaces.as_deref(),
    );
    check_duration(&mut out, "spec.accessToken.ttl", &spec.access_token.ttl);
    check_duration(&mut out, "spec.refreshToken.ttl", &spec.refresh_token.ttl);
    check_duration(
        &mut out,
        "spec.authorizationCode.ttl",
        &spec.authorization_code.ttl,
    );
    check_duration(
        &mut out,
        "spec.signing.rotationInterval",
        &spec.signing.rotation_interval,
    );
    for (i, scope) in spec.scopes.iter().enumerate() {
        if !is_scope_token(&scope.name) {
            err(
                &mut out,
                format!("spec.scopes[{i}].name"),
                format!(
                    "{} is not a valid scope token (RFC 6749 section 3.3)",
                    shown(&scope.name)
                ),
            );
        }
        if spec.scopes[..i].iter().any(|s| s.name == scope.name) {
            err(
                &mut out,
                format!("spec.scopes[{i}].name"),
                format!("duplicate scope {}", shown(&scope.name)),
            );
        }
    }
    for (i, scope) in spec.scopes.iter().enumerate() {
        check_namespaces(
            &mut out,
            &format!("spec.scopes[{i}].namespaces"),
            scope.namespaces.as_deref(),
        );
    }
    for (i, aud) in spec.audiences.iter().enumerate() {
        let field = format!("spec.audiences[{i}]");
        if aud.name.is_empty() || aud.name.len() > 512 || aud.name.contains('#') {
            err(
                &mut out,
                format!("{field}.name"),
                "must be 1 to 512 characters without a fragment (RFC 8707)",
            );
        }
        if spec.audiences[..i].iter().any(|a| a.name == aud.name) {
            err(
                &mut out,
                format!("{field}.name"),
                format!("duplicate audience {}", shown(&aud.name)),
            );
        }
        check_namespaces(
            &mut out,
            &format!("{field}.namespaces"),
            aud.namespaces.as_deref(),
        );
    }
    for (i, grant) in spec.subject_assertions.iter().enumerate() {
        let field = format!("spec.subjectAssertions[{i}]");
        if !is_dns_label(&grant.signer.namespace) {
            err(
                &mut out,
                format!("{field}.signer.namespace"),
                "must be a namespace name",
            );
        }
        if !is_client_id(&grant.signer.client_id) {
            err(&mut out, format!("{field}.signer.clientId"), CLIENT_ID_RULE);
        }
        for (j, user) in grant.users.iter().enumerate() {
            if user != "*"
                && let Some(problem) = gatehouse_core::subject::username_problem(user)
            {
                err(
                    &mut out,
                    format!("{field}.users[{j}]"),
                    format!("\"*\" or a username, which {problem}"),
                );
            }
        }
        for (j, client) in grant.clients.iter().enumerate() {
            if !is_dns_label(&client.namespace) {
                err(
                    &mut out,
                    format!("{field}.clients[{j}].namespace"),
                    "must be a namespace name",
                );
            }
            if !is_client_id(&client.client_id) {
                err(
                    &mut out,
                    format!("{field}.clients[{j}].clientId"),
                    CLIENT_ID_RULE,
                );
            }
        }
    }
    trusted_issuer_rules(&mut out, spec);
    if let Some(users) = &spec.users {
        if !is_dns_subdomain(&users.secret_ref.name) {
            err(
                &mut out,
                "spec.users.secretRef.name",
                "must be a Secret name",
            );
        }
        if !is_dns_label(&users.secret_ref.namespace) {
            err(
                &mut out,
                "spec.users.secretRef.namespace",
                "must be a namespace name",
            );
        }
    }
    out
}

/// `spec.trustedIssuers`: unique names, `https` URLs without query or fragment (an issuer
/// identifier, OpenID Connect Discovery section 3), subjects mapped once, a grace period.
fn trusted_issuer_rules(out: &mut Vec<FieldError>, spec: &TenantSpec) {
    for (i, issuer) in spec.trusted_issuers.iter().enumerate() {
        let field = format!("spec.trustedIssuers[{i}]");
        if !is_dns_label(&issuer.name) {
            err(out, format!("{field}.name"), "must be a DNS-1123 label");
        }
        if spec.trusted_issuers[..i]
            .iter()
            .any(|t| t.name == issuer.name)
        {
            err(
                out,
                format!("{field}.name"),
                format!("duplicate trusted issuer {}", shown(&issuer.name)),
            );
        }
        if let Some(problem) = https_url_problem(&issuer.issuer) {
            err(out, format!("{field}.issuer"), problem);
        }
        if let Some(uri) = &issuer.jwks_uri
            && let Some(problem) = https_url_problem(uri)
        {
            err(out, format!("{field}.jwksUri"), problem);
        }
        for (j, mapping) in issuer.subjects.iter().enumerate() {
            let at = format!("{field}.subjects[{j}]");
            if mapping.subject.is_empty()
                || mapping.subject.len() > 512
                || mapping.subject.chars().any(char::is_control)
            {
                err(
                    out,
                    format!("{at}.subject"),
                    "must be 1 to 512 characters without control characters",
                );
            }
            if issuer.subjects[..j]
                .iter()
                .any(|m| m.subject == mapping.subject)
            {
                err(
                    out,
                    format!("{at}.subject"),
                    format!(
                        "duplicate subject {}: a subject authenticates one client",
                        shown(&mapping.subject)
                    ),
                );
            }
            if !is_dns_label(&mapping.client.namespace) {
                err(
                    out,
                    format!("{at}.client.namespace"),
                    "must be a namespace name",
                );
            }
            if !is_client_id(&mapping.client.client_id) {
                err(out, format!("{at}.client.clientId"), CLIENT_ID_RULE);
            }
        }
        check_duration(out, &format!("{field}.gracePeriod"), &issuer.grace_period);
    }
}

/// Why `value` is not an absolute `https` URL with a host and without query or fragment.
fn https_url_problem(value: &str) -> Option<String> {
    let Some(rest) = value.strip_prefix("https://") else {
        return Some(format!("{} must be an https URL", shown(value)));
    };
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || host.contains('@') {
        return Some(format!("{} must name a host (and no user)", shown(value)));
    }
    if value.contains('?') || value.contains('#') {
        return Some(format!("{} must have no query or fragment", shown(value)));
    }
    if value.len() > 512 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("must be at most 512 characters without spaces".to_string());
    }
    None
}

/// Why `default` cannot be a workload identity.
pub const DEFAULT_ACCOUNT_REFUSED: &str =
    "bind a ServiceAccount of its own: every pod of the namespace that names none runs as default";

pub fn validate_client(spec: &OAuthClientSpec) -> Vec<FieldError> {
    with_sizes("OAuthClient", spec, client_rules(spec))
}

fn client_rules(spec: &OAuthClientSpec) -> Vec<FieldError> {
    let mut out = Vec::new();
    if !is_dns_label(&spec.tenant_ref) {
        err(&mut out, "spec.tenantRef", "must be a Tenant name");
    }
    if let Some(id) = &spec.client_id
        && !is_client_id(id)
    {
        err(&mut out, "spec.clientId", CLIENT_ID_RULE);
    }
    if spec.grant_types.is_empty() {
        err(
            &mut out,
            "spec.grantTypes",
            "must list at least one grant type",
        );
    }
    check_unique(&mut out, "spec.grantTypes", &spec.grant_types);
    for (field, uris) in [
        ("spec.redirectUris", &spec.redirect_uris),
        (
            "spec.postLogoutRedirectUris",
            &spec.post_logout_redirect_uris,
        ),
    ] {
        for (i, uri) in uris.iter().enumerate() {
            if !is_uri_without_fragment(uri) {
                err(
                    &mut out,
                    format!("{field}[{i}]"),
                    format!("{} is not an absolute URI without a fragment", shown(uri)),
                );
            } else if let Some(problem) = redirect_scheme_problem(uri) {
                err(
                    &mut out,
                    format!("{field}[{i}]"),
                    format!("{}: {problem}", shown(uri)),
                );
            }
        }
    }
    for (i, scope) in spec.scopes.iter().enumerate() {
        if !is_scope_token(scope) {
            err(
                &mut out,
                format!("spec.scopes[{i}]"),
                format!(
                    "{} is not a valid scope token (RFC 6749 section 3.3)",
                    shown(scope)
                ),
            );
        }
    }
    for (i, aud) in spec.audiences.iter().enumerate() {
        if aud.is_empty() || aud.len() > 2048 {
            err(
                &mut out,
                format!("spec.audiences[{i}]"),
                "must be 1 to 2048 characters",
            );
        }
    }
    let method = spec.token_endpoint_auth_method;
    let has_jwks = spec.jwks.as_ref().is_some_and(|j| !j.keys.is_empty());
    let uses = |g: GrantType| spec.grant_types.contains(&g);
    if spec.public && method.is_some_and(|m| m != ClientAuthMethod::None) {
        err(
            &mut out,
            "spec.tokenEndpointAuthMethod",
            "public clients have no secret: tokenEndpointAuthMethod must be none",
        );
    }
    if !spec.public && method == Some(ClientAuthMethod::None) {
        err(
            &mut out,
            "spec.tokenEndpointAuthMethod",
            "tokenEndpointAuthMethod none is only for public clients",
        );
    }
    if spec.public && (uses(GrantType::ClientCredentials) || uses(GrantType::Password)) {
        err(
            &mut out,
            "spec.grantTypes",
            "public clients cannot use client_credentials or password",
        );
    }
    if (uses(GrantType::AuthorizationCode) || uses(GrantType::Implicit))
        && spec.redirect_uris.is_empty()
    {
        err(
            &mut out,
            "spec.redirectUris",
            "authorization_code and implicit need at least one redirectUris entry",
        );
    }
    if let Some(w) = &spec.workload_identity {
        if spec.public {
            err(
                &mut out,
                "spec.workloadIdentity",
                "workloadIdentity is for confidential clients: public must be false",
            );
        }
        if method.is_some_and(|m| m != ClientAuthMethod::PrivateKeyJwt) {
            err(
                &mut out,
                "spec.tokenEndpointAuthMethod",
                "a workloadIdentity client authenticates with its ServiceAccount token (private_key_jwt): leave tokenEndpointAuthMethod unset",
            );
        }
        if spec.secret_ref.is_some() {
            err(
                &mut out,
                "spec.secretRef",
                "a workloadIdentity client uses no Secret: remove secretRef",
            );
        }
        match (&w.service_account_name, &w.trusted_issuer) {
            (Some(account), None) => {
                if !is_dns_subdomain(account) {
                    err(
                        &mut out,
                        "spec.workloadIdentity.serviceAccountName",
                        "must be a ServiceAccount name",
                    );
                } else if account == "default" {
                    err(
                        &mut out,
                        "spec.workloadIdentity.serviceAccountName",
                        DEFAULT_ACCOUNT_REFUSED,
                    );
                }
            }
            (None, Some(issuer)) => {
                if !is_dns_label(issuer) {
                    err(
                        &mut out,
                        "spec.workloadIdentity.trustedIssuer",
                        "must be the name of one of the tenant's trustedIssuers",
                    );
                }
            }
            _ => err(
                &mut out,
                "spec.workloadIdentity",
                "name either serviceAccountName or trustedIssuer, not both",
            ),
        }
    }
    if method == Some(ClientAuthMethod::PrivateKeyJwt)
        && !has_jwks
        && spec.workload_identity.is_none()
    {
        err(
            &mut out,
            "spec.jwks",
            "private_key_jwt needs the client's public keys in jwks",
        );
    }
    if uses(GrantType::JwtBearer) && !has_jwks {
        err(
            &mut out,
            "spec.jwks",
            "the jwt-bearer grant needs the assertion signers' public keys in jwks",
        );
    }
    for (i, key) in spec.jwks.iter().flat_map(|j| &j.keys).enumerate() {
        if let Some(why) = gatehouse_core::assertion::unusable_public_jwk(key) {
            err(&mut out, format!("spec.jwks.keys[{i}]"), why);
        }
    }
    if let Some(r) = &spec.secret_ref
        && !is_dns_subdomain(&r.name)
    {
        err(&mut out, "spec.secretRef.name", "must be a Secret name");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::JwkSet;

    fn client() -> OAuthClientSpec {
        serde_json::from_value(serde_json::json!({
            "tenantRef": "acme", "grantTypes": ["client_credentials"], "scopes": ["billing.read"]
        }))
        .unwrap()
    }

    fn tenant() -> TenantSpec {
        serde_json::from_value(serde_json::json!({"grantTypes": ["client_credentials"]})).unwrap()
    }

    #[test]
    fn a_workload_client_has_no_secret_no_other_method_and_a_valid_account_name() {
        let workload = |extra: serde_json::Value| {
            let mut v = serde_json::json!({"tenantRef": "acme", "grantTypes": ["client_credentials"],
                "workloadIdentity": {"serviceAccountName": "invoicer"}});
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            validate_client(&serde_json::from_value(v).unwrap())
        };
        assert_eq!(workload(serde_json::json!({})), vec![]);
        let spec: OAuthClientSpec = serde_json::from_value(serde_json::json!({"tenantRef": "acme",
            "grantTypes": ["client_credentials"], "workloadIdentity": {"serviceAccountName": "x"}}))
        .unwrap();
        assert!(!spec.needs_secret());
        assert_eq!(
            spec.effective_auth_method(),
            ClientAuthMethod::PrivateKeyJwt
        );
        // Explicitly private_key_jwt needs no jwks: the ServiceAccount token is the key.
        assert_eq!(
            workload(serde_json::json!({"tokenEndpointAuthMethod": "private_key_jwt"})),
            vec![]
        );
        let fields =
            |errors: Vec<FieldError>| errors.into_iter().map(|e| e.field).collect::<Vec<_>>();
        assert_eq!(
            fields(workload(serde_json::json!({"secretRef": {"name": "x"}}))),
            ["spec.secretRef"]
        );
        assert_eq!(
            fields(workload(
                serde_json::json!({"tokenEndpointAuthMethod": "client_secret_post"})
            )),
            ["spec.tokenEndpointAuthMethod"]
        );
        assert!(
            fields(workload(serde_json::json!({"public": true})))
                .contains(&"spec.workloadIdentity".to_string())
        );
        assert!(
            fields(workload(
                serde_json::json!({"workloadIdentity": {"serviceAccountName": "Bad_Name"}})
            ))
            .contains(&"spec.workloadIdentity.serviceAccountName".to_string())
        );
    }

    #[test]
    fn a_trusted_issuer_client_names_one_issuer_and_nothing_else() {
        let with = |identity: serde_json::Value| {
            validate_client(
                &serde_json::from_value(serde_json::json!({"tenantRef": "acme",
                    "grantTypes": ["client_credentials"], "workloadIdentity": identity}))
                .unwrap(),
            )
            .into_iter()
            .map(|e| e.field)
            .collect::<Vec<_>>()
        };
        assert_eq!(
            with(serde_json::json!({"trustedIssuer": "ci"})),
            Vec::<String>::new()
        );
        assert_eq!(
            with(serde_json::json!({"trustedIssuer": "ci", "serviceAccountName": "x"})),
            ["spec.workloadIdentity"]
        );
        assert_eq!(with(serde_json::json!({})), ["spec.workloadIdentity"]);
        assert_eq!(
            with(serde_json::json!({"trustedIssuer": "Not A Name"})),
            ["spec.workloadIdentity.trustedIssuer"]
        );
    }

    #[test]
    fn trusted_issuers_are_https_unique_and_map_each_subject_once() {
        let with = |issuers: serde_json::Value| {
            let mut t = tenant();
            t.trusted_issuers = serde_json::from_value(issuers).unwrap();
            validate_tenant("acme", &t)
                .into_iter()
                .map(|e| e.field)
                .collect::<Vec<_>>()
        };
        let good = serde_json::json!({"name": "ci", "issuer": "https://ci.example.com",
            "subjects": [{"subject": "repo:a:ref:refs/heads/main", "client": {"namespace": "acme", "clientId": "acme-ci"}}]});
        assert_eq!(with(serde_json::json!([good])), Vec::<String>::new());
        let edit = |change: &dyn Fn(&mut serde_json::Value)| {
            let mut v = good.clone();
            change(&mut v);
            v
        };
        for (issuer, field) in [
            (
                edit(&|v| v["issuer"] = "http://ci.example.com".into()),
                "spec.trustedIssuers[0].issuer",
            ),
            (
                edit(&|v| v["issuer"] = "https://ci.example.com/?x=1".into()),
                "spec.trustedIssuers[0].issuer",
            ),
            (
                edit(&|v| v["issuer"] = "https://user@ci.example.com".into()),
                "spec.trustedIssuers[0].issuer",
            ),
            (
                edit(&|v| v["jwksUri"] = "http://ci.example.com/jwks".into()),
                "spec.trustedIssuers[0].jwksUri",
            ),
            (
                edit(&|v| v["gracePeriod"] = "0s".into()),
                "spec.trustedIssuers[0].gracePeriod",
            ),
            (
                edit(&|v| v["subjects"][0]["subject"] = "".into()),
                "spec.trustedIssuers[0].subjects[0].subject",
            ),
            (
                edit(&|v| v["subjects"][0]["client"]["namespace"] = "Bad".into()),
                "spec.trustedIssuers[0].subjects[0].client.namespace",
            ),
        ] {
            assert!(
                with(serde_json::json!([issuer])).contains(&field.to_string()),
                "{issuer}"
            );
        }
        let twice = edit(&|v| {
            let first = v["subjects"][0].clone();
            v["subjects"].as_array_mut().unwrap().push(first);
        });
        assert_eq!(
            with(serde_json::json!([twice])),
            ["spec.trustedIssuers[0].subjects[1].subject"]
        );
        assert_eq!(
            with(serde_json::json!([good, good])),
            ["spec.trustedIssuers[1].name"]
        );
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(validate_tenant("acme", &tenant()), vec![]);
        assert_eq!(validate_client(&client()), vec![]);
        let t = tenant();
        assert_eq!(t.access_token.ttl, "15m");
        assert!(t.refresh_token.rotation && t.pkce.required);
    }

    #[test]
    fn every_size_limit_of_the_schema_holds_and_findings_stay_short() {
        let long = "a".repeat(70_000);
        let mut c = client();
        c.client_id = Some(long.clone());
        c.client_name = Some(long.clone());
        c.redirect_uris = vec![format!("https://{long}")];
        c.audiences = vec!["https://api".into(); 33];
        let found = validate_client(&c);
        let fields: Vec<&str> = found.iter().map(|f| f.field.as_str()).collect();
        for field in [
            "spec.clientId",
            "spec.clientName",
            "spec.redirectUris[0]",
            "spec.audiences",
        ] {
            assert!(fields.contains(&field), "{field} in {found:?}");
        }
        for f in &found {
            assert!(f.to_string().len() < 300, "{f}");
        }

        let mut t = tenant();
        t.display_name = Some(long.clone());
        t.access_token.ttl = "1s".repeat(1000);
        t.scopes = serde_json::from_value(serde_json::json!([
            {"name": "a", "description": long},
            {"name": long}
        ]))
        .unwrap();
        let found = validate_tenant("acme", &t);
        let fields: Vec<&str> = found.iter().map(|f| f.field.as_str()).collect();
        for field in [
            "spec.displayName",
            "spec.accessToken.ttl",
            "spec.scopes[0].description",
            "spec.scopes[1].name",
        ] {
            assert!(fields.contains(&field), "{field} in {found:?}");
        }
        for f in &found {
            assert!(f.to_string().len() < 300, "{f}");
        }
    }

    #[test]
    fn tenant_findings_name_the_field() {
        let mut t = tenant();
        t.grant_types.clear();
        t.access_token.ttl = "15 minutes".into();
        t.client_namespaces = Some(vec!["Bad_NS".into()]);
        let found: Vec<String> = validate_tenant("Acme.Corp", &t)
            .iter()
            .map(|e| e.field.clone())
            .collect();
        assert_eq!(
            found,
            [
                "metadata.name",
                "spec.grantTypes",
                "spec.clientNamespaces[0]",
                "spec.accessToken.ttl"
            ]
        );
    }

    #[test]
    fn redirect_uri_schemes_and_loopback_http() {
        for bad in [
            "javascript:alert(1)",
            "data:text/html,x",
            "file:///etc/passwd",
            "myapp:/cb",
        ] {
            let mut c = client();
            c.grant_types = vec![GrantType::AuthorizationCode];
            c.redirect_uris = vec![bad.into()];
            let problems = validate_client(&c);
            assert!(
                problems
                    .iter()
                    .any(|p| p.to_string().contains("spec.redirectUris[0]")),
                "{bad}: {problems:?}"
            );
        }
        let mut c = client();
        c.grant_types = vec![GrantType::AuthorizationCode];
        c.redirect_uris = vec![
            "com.example.app:/cb".into(),
            "https://app.example.com/cb".into(),
            "http://127.0.0.1:9999/cb".into(),
        ];
        assert!(validate_client(&c).is_empty());
        for (uri, beyond) in [
            ("http://127.0.0.1:8080/cb", false),
            ("http://[::1]/cb", false),
            ("http://localhost/cb", false),
            ("HTTP://app.example.com/cb", true),
            ("http://127.0.0.1.evil.com/cb", true),
            ("http://user@127.0.0.1/cb", false),
            ("https://app.example.com/cb", false),
        ] {
            assert_eq!(is_http_beyond_loopback(uri), beyond, "{uri}");
        }
    }

    #[test]
    fn client_cross_field_rules() {
        let mut c = client();
        c.public = true;
        let e = validate_client(&c);
        assert_eq!(e[0].field, "spec.grantTypes");
        let mut c = client();
        c.grant_types = vec![GrantType::AuthorizationCode];
        assert_eq!(validate_client(&c)[0].field, "spec.redirectUris");
        c.redirect_uris = vec!["https://app/cb#frag".into()];
        assert_eq!(validate_client(&c)[0].field, "spec.redirectUris[0]");
        let mut c = client();
        c.token_endpoint_auth_method = Some(ClientAuthMethod::PrivateKeyJwt);
        assert_eq!(validate_client(&c)[0].field, "spec.jwks");
        c.jwks = Some(JwkSet {
            keys: vec![serde_json::json!({"kty": "EC"})],
        });
        assert_eq!(validate_client(&c)[0].field, "spec.jwks.keys[0]");
        c.jwks = Some(JwkSet {
            keys: vec![serde_json::json!({"kty": "EC", "crv": "P-256",
                "x": "pDPyG0M9IzX9fXd4b9UPwTsP6WCVsIkEgBA63fdjAzQ",
                "y": "0MjEgT0Z6kBLTOEsGrtgvUfaSZzllDmhPdmTwEMGJp0"})],
        });
        assert_eq!(validate_client(&c), vec![]);
        let mut c = client();
        c.token_endpoint_auth_method = Some(ClientAuthMethod::None);
        assert_eq!(validate_client(&c)[0].field, "spec.tokenEndpointAuthMethod");
    }
}
