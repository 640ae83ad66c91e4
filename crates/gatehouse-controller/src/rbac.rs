//! The operator's least-privilege RBAC, generated from the list of API calls its code makes.
//! The mock-API tests check every request the operator sends against [`CALLS`], so a new call
//! that is not declared here fails a test instead of failing in a cluster with 403.

use serde_json::{Value, json};

/// Where a call is made: in every namespace (ClusterRole) or only the operator's own (Role).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    Cluster,
    OwnNamespace,
}

/// One kind of request: API group, resource (with subresource), verb, reach, and why.
#[derive(Clone, Copy, Debug)]
pub struct Call {
    pub group: &'static str,
    pub resource: &'static str,
    pub verb: &'static str,
    pub reach: Reach,
    pub why: &'static str,
}

const fn call(
    group: &'static str,
    resource: &'static str,
    verb: &'static str,
    reach: Reach,
    why: &'static str,
) -> Call {
    Call {
        group,
        resource,
        verb,
        reach,
        why,
    }
}

use Reach::{Cluster, OwnNamespace};

/// Every request the operator makes.
pub const CALLS: &[Call] = &[
    call(
        "gatehouse.dev",
        "tenants",
        "list",
        Cluster,
        "cache of Tenants",
    ),
    call(
        "gatehouse.dev",
        "tenants",
        "watch",
        Cluster,
        "cache of Tenants",
    ),
    call(
        "gatehouse.dev",
        "tenants",
        "patch",
        Cluster,
        "add and remove the finalizer",
    ),
    call(
        "gatehouse.dev",
        "tenants/status",
        "patch",
        Cluster,
        "status",
    ),
    call(
        "gatehouse.dev",
        "oauthclients",
        "list",
        Cluster,
        "cache of OAuthClients",
    ),
    call(
        "gatehouse.dev",
        "oauthclients",
        "watch",
        Cluster,
        "cache of OAuthClients",
    ),
    call(
        "gatehouse.dev",
        "oauthclients",
        "patch",
        Cluster,
        "add and remove the finalizer",
    ),
    call(
        "gatehouse.dev",
        "oauthclients/status",
        "patch",
        Cluster,
        "status",
    ),
    call(
        "",
        "secrets",
        "list",
        Cluster,
        "credentials and users Secrets of every namespace",
    ),
    call(
        "",
        "secrets",
        "watch",
        Cluster,
        "a changed Secret takes effect",
    ),
    call(
        "",
        "secrets",
        "create",
        Cluster,
        "generated credentials Secrets in clients' namespaces",
    ),
    call(
        "",
        "secrets",
        "patch",
        Cluster,
        "rotate-secret annotation on owned Secrets",
    ),
    call(
        "",
        "secrets",
        "delete",
        OwnNamespace,
        "keys Secret of a deleted tenant",
    ),
    call(
        "events.k8s.io",
        "events",
        "create",
        Cluster,
        "events on Tenants and OAuthClients",
    ),
    call(
        "events.k8s.io",
        "events",
        "patch",
        Cluster,
        "repeated events become a series",
    ),
    call(
        "coordination.k8s.io",
        "leases",
        "get",
        OwnNamespace,
        "leader election",
    ),
    call(
        "coordination.k8s.io",
        "leases",
        "create",
        OwnNamespace,
        "leader election",
    ),
    call(
        "coordination.k8s.io",
        "leases",
        "update",
        OwnNamespace,
        "leader election",
    ),
];

/// Whether a request (group, resource, verb, namespace or none) is declared in [`CALLS`].
pub fn allows(
    group: &str,
    resource: &str,
    verb: &str,
    namespace: Option<&str>,
    operator_namespace: &str,
) -> bool {
    CALLS.iter().any(|c| {
        c.group == group
            && c.resource == resource
            && c.verb == verb
            && (c.reach == Cluster || namespace == Some(operator_namespace))
    })
}

fn rules(reach: Reach) -> Vec<Value> {
    // One rule per (group, resource), verbs in declaration order.
    let mut out: Vec<(&str, &str, Vec<&str>)> = Vec::new();
    for c in CALLS.iter().filter(|c| c.reach == reach) {
        match out
            .iter_mut()
            .find(|(g, r, _)| *g == c.group && *r == c.resource)
        {
            Some((_, _, verbs)) => verbs.push(c.verb),
            None => out.push((c.group, c.resource, vec![c.verb])),
        }
    }
    out.into_iter()
        .map(|(g, r, verbs)| json!({"apiGroups": [g], "resources": [r], "verbs": verbs}))
        .collect()
}

/// The ClusterRole and, for the operator's namespace, the Role with exactly [`CALLS`].
pub fn roles(name: &str, namespace: &str) -> (Value, Value) {
    (
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": rules(Cluster),
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": name, "namespace": namespace},
            "rules": rules(OwnNamespace),
        }),
    )
}

/// A request as the authorizer sees it: (group, resource, verb, namespace).
pub type Attributes = (String, String, String, Option<String>);

/// Classifies a request and checks it against [`CALLS`]; the error says what is missing.
pub fn check(
    method: &str,
    path: &str,
    query: &str,
    operator_namespace: &str,
) -> Result<Attributes, String> {
    let (group, resource, verb, namespace) = classify(method, path, query)
        .ok_or_else(|| format!("{method} {path} is not a Kubernetes API request"))?;
    if allows(
        &group,
        &resource,
        &verb,
        namespace.as_deref(),
        operator_namespace,
    ) {
        Ok((group, resource, verb, namespace))
    } else {
        Err(format!(
            "{method} {path}: {verb} {group}/{resource} in {namespace:?} is not in the operator's RBAC (rbac::CALLS)"
        ))
    }
}

/// Maps a request path and method to (group, resource, verb, namespace) the way the
/// apiserver's authorizer does, for checking requests against [`CALLS`].
pub fn classify(
    method: &str,
    path: &str,
    query: &str,
) -> Option<(String, String, String, Option<String>)> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => (String::new(), rest),
        ["apis", group, _version, rest @ ..] => ((*group).to_string(), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_string()), rest),
        _ => (None, rest),
    };
    let (resource, named) = match rest {
        [resource] => ((*resource).to_string(), false),
        [resource, _name] => ((*resource).to_string(), true),
        [resource, _name, sub] => (format!("{resource}/{sub}"), true),
        _ => return None,
    };
    let watching = query
        .split('&')
        .any(|p| p == "watch=true" || p == "watch=1");
    let verb = match (method, named) {
        ("GET", false) if watching => "watch",
        ("GET", false) => "list",
        ("GET", true) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", _) => "delete",
        _ => return None,
    };
    Some((group, resource, verb.to_string(), namespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_classify_like_the_apiserver_authorizer() {
        assert_eq!(
            classify(
                "PATCH",
                "/apis/gatehouse.dev/v1alpha1/namespaces/acme/oauthclients/b/status",
                ""
            ),
            Some((
                "gatehouse.dev".into(),
                "oauthclients/status".into(),
                "patch".into(),
                Some("acme".into())
            ))
        );
        assert_eq!(
            classify("GET", "/api/v1/secrets", "watch=true&resourceVersion=1"),
            Some((String::new(), "secrets".into(), "watch".into(), None))
        );
        assert_eq!(
            classify(
                "GET",
                "/apis/coordination.k8s.io/v1/namespaces/gh/leases/gatehouse-operator",
                ""
            ),
            Some((
                "coordination.k8s.io".into(),
                "leases".into(),
                "get".into(),
                Some("gh".into())
            ))
        );
    }

    #[test]
    fn secrets_may_be_deleted_only_in_the_operator_namespace() {
        assert!(allows(
            "",
            "secrets",
            "delete",
            Some("gatehouse"),
            "gatehouse"
        ));
        assert!(!allows("", "secrets", "delete", Some("acme"), "gatehouse"));
        assert!(!allows("", "secrets", "update", Some("acme"), "gatehouse"));
        let (cluster, role) = roles("gatehouse-operator", "gatehouse");
        let text = cluster.to_string();
        assert!(!text.contains("\"*\""), "no wildcards: {text}");
        assert!(
            !text.contains("delete"),
            "nothing is deleted cluster-wide: {text}"
        );
        assert_eq!(role["rules"].as_array().unwrap().len(), 2);
    }
}
