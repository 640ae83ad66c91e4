//! The operator's least-privilege RBAC, generated from the list of API calls its code makes.
//! The mock-API tests check every request the operator sends against [`CALLS`], so a new call
//! that is not declared here fails a test instead of failing in a cluster with 403. RBAC
//! cannot restrict a list or watch by label, so each call also declares what it asks for
//! ([`Asks`]), and the same check holds every request to that: the operator's Secret cache
//! holds only labelled Secrets however much the ClusterRole would let it read.

use crate::secrets::WATCH_SELECTOR;
use serde_json::{Value, json};

/// Where a call is made: in every namespace (ClusterRole) or only the operator's own (Role).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    Cluster,
    OwnNamespace,
}

/// What a list or watch asks for. RBAC grants `list` and `watch` on a resource whole and
/// cannot look at labels; the operator asks for less than it is granted, and every request
/// the tests see is held to what its call declares here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asks {
    /// Whatever the verb allows.
    Anything,
    /// Only the objects this label selector selects (`labelSelector` exactly this).
    Labelled(&'static str),
    /// One object of one namespace by name (`fieldSelector=metadata.name=…`), metadata only
    /// (`Accept: …;as=PartialObjectMetadataList`): whether it exists and its labels and owner,
    /// never its data.
    OneByNameMetadataOnly,
}

/// One kind of request: API group, resource (with subresource), verb, reach, what it asks
/// for, and why.
#[derive(Clone, Copy, Debug)]
pub struct Call {
    pub group: &'static str,
    pub resource: &'static str,
    pub verb: &'static str,
    pub reach: Reach,
    pub asks: Asks,
    pub why: &'static str,
}

const fn call(
    group: &'static str,
    resource: &'static str,
    verb: &'static str,
    reach: Reach,
    why: &'static str,
) -> Call {
    narrowed(group, resource, verb, reach, Asks::Anything, why)
}

const fn narrowed(
    group: &'static str,
    resource: &'static str,
    verb: &'static str,
    reach: Reach,
    asks: Asks,
    why: &'static str,
) -> Call {
    Call {
        group,
        resource,
        verb,
        reach,
        asks,
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
    narrowed(
        "",
        "secrets",
        "list",
        Cluster,
        Asks::Labelled(WATCH_SELECTOR),
        "cache of the Secrets labelled for Gatehouse: credentials, users and signing keys",
    ),
    narrowed(
        "",
        "secrets",
        "watch",
        Cluster,
        Asks::Labelled(WATCH_SELECTOR),
        "a changed labelled Secret takes effect",
    ),
    narrowed(
        "",
        "secrets",
        "list",
        Cluster,
        Asks::OneByNameMetadataOnly,
        "whether a referenced Secret the cache lacks exists without the label (to say so)",
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
        "rotate-secret annotation on owned Secrets; the watch label on Secrets Gatehouse made",
    ),
    call(
        "",
        "secrets",
        "delete",
        OwnNamespace,
        "keys Secret of a deleted tenant",
    ),
    call(
        "",
        "serviceaccounts",
        "get",
        Cluster,
        "whether a workload-identity client's ServiceAccount exists, and its uid (metadata only)",
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

/// Paths outside the resource API the operator reads (`get`), and why.
pub const NON_RESOURCE_URLS: &[(&str, &str)] = &[
    (
        crate::cluster::SERVICE_ACCOUNT_ISSUER_DISCOVERY,
        "the cluster's ServiceAccount token issuer, for workload identity",
    ),
    (
        crate::cluster::SERVICE_ACCOUNT_JWKS,
        "the keys that sign ServiceAccount tokens, for workload identity",
    ),
];

/// Whether a request (group, resource, verb, namespace or none) is granted by [`CALLS`]: what
/// RBAC decides, without looking at what a list or watch asks for.
pub fn allows(
    group: &str,
    resource: &str,
    verb: &str,
    namespace: Option<&str>,
    operator_namespace: &str,
) -> bool {
    granting(group, resource, verb, namespace, operator_namespace)
        .next()
        .is_some()
}

fn granting<'a>(
    group: &'a str,
    resource: &'a str,
    verb: &'a str,
    namespace: Option<&'a str>,
    operator_namespace: &'a str,
) -> impl Iterator<Item = &'static Call> + 'a {
    CALLS.iter().filter(move |c| {
        c.group == group
            && c.resource == resource
            && c.verb == verb
            && (c.reach == Cluster || namespace == Some(operator_namespace))
    })
}

fn rules(reach: Reach) -> Vec<Value> {
    // One rule per (group, resource), verbs in declaration order, each once.
    let mut out: Vec<(&str, &str, Vec<&str>)> = Vec::new();
    for c in CALLS.iter().filter(|c| c.reach == reach) {
        match out
            .iter_mut()
            .find(|(g, r, _)| *g == c.group && *r == c.resource)
        {
            Some((_, _, verbs)) if verbs.contains(&c.verb) => {}
            Some((_, _, verbs)) => verbs.push(c.verb),
            None => out.push((c.group, c.resource, vec![c.verb])),
        }
    }
    let mut rules: Vec<Value> = out
        .into_iter()
        .map(|(g, r, verbs)| json!({"apiGroups": [g], "resources": [r], "verbs": verbs}))
        .collect();
    if reach == Cluster {
        let urls: Vec<&str> = NON_RESOURCE_URLS.iter().map(|(u, _)| *u).collect();
        rules.push(json!({"nonResourceURLs": urls, "verbs": ["get"]}));
    }
    rules
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

/// One request to the API server, as a test saw it.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// The query string, still encoded.
    pub query: &'a str,
    /// The `Accept` header.
    pub accept: &'a str,
}

/// Classifies a request and checks it against [`CALLS`]: granted, and asking for no more than
/// its call declares. The error says what is missing.
pub fn check(request: &Request<'_>, operator_namespace: &str) -> Result<Attributes, String> {
    let Request {
        method,
        path,
        query,
        accept,
    } = *request;
    if method == "GET" && NON_RESOURCE_URLS.iter().any(|(u, _)| *u == path) {
        return Ok((String::new(), path.to_string(), "get".into(), None));
    }
    let (group, resource, verb, namespace) = classify(method, path, query)
        .ok_or_else(|| format!("{method} {path} is not a Kubernetes API request"))?;
    let declared: Vec<Asks> = granting(
        &group,
        &resource,
        &verb,
        namespace.as_deref(),
        operator_namespace,
    )
    .map(|c| c.asks)
    .collect();
    if declared.is_empty() {
        return Err(format!(
            "{method} {path}: {verb} {group}/{resource} in {namespace:?} is not in the operator's RBAC (rbac::CALLS)"
        ));
    }
    let params = query_params(query);
    let param = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let fits = |asks: &Asks| match *asks {
        Asks::Anything => true,
        Asks::Labelled(selector) => param("labelSelector") == Some(selector),
        Asks::OneByNameMetadataOnly => {
            namespace.is_some()
                && verb == "list"
                && param("labelSelector").is_none()
                && param("fieldSelector").is_some_and(|f| {
                    f.strip_prefix("metadata.name=")
                        .is_some_and(|name| !name.is_empty() && !name.contains(','))
                })
                && accept.contains("as=PartialObjectMetadataList")
        }
    };
    if !declared.iter().any(fits) {
        return Err(format!(
            "{method} {path}?{query} (Accept {accept:?}): {verb} {group}/{resource} asks for more than rbac::CALLS declares ({declared:?})"
        ));
    }
    Ok((group, resource, verb, namespace))
}

/// The decoded parameters of a query string.
fn query_params(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
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

    fn get(path: &str, query: &str, accept: &str) -> Result<Attributes, String> {
        check(
            &Request {
                method: "GET",
                path,
                query,
                accept,
            },
            "gatehouse",
        )
    }

    #[test]
    fn secrets_are_listed_and_watched_only_by_the_watch_label_or_one_name_at_a_time() {
        let json = "application/json";
        let metadata = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
        let labelled = "labelSelector=gatehouse.dev%2Fwatch%3Dtrue";
        assert!(get("/api/v1/secrets", labelled, json).is_ok());
        assert!(
            get(
                "/api/v1/secrets",
                &format!("watch=true&{labelled}&resourceVersion=5"),
                json
            )
            .is_ok()
        );
        // Everything, or another label, or a selector that only adds to the label.
        for query in [
            "",
            "watch=true",
            "labelSelector=team%3Dx",
            "labelSelector=gatehouse.dev%2Fwatch",
            "labelSelector=gatehouse.dev%2Fwatch%3Dtrue%2Cteam%3Dx",
        ] {
            let e = get("/api/v1/secrets", query, json).unwrap_err();
            assert!(e.contains("asks for more"), "{query}: {e}");
        }
        // One Secret by name, metadata only.
        let one = "fieldSelector=metadata.name%3Dbilling-credentials";
        assert!(get("/api/v1/namespaces/acme/secrets", one, metadata).is_ok());
        assert!(
            get("/api/v1/namespaces/acme/secrets", one, json).is_err(),
            "with its data"
        );
        assert!(
            get("/api/v1/secrets", one, metadata).is_err(),
            "in every namespace"
        );
        assert!(
            get(
                "/api/v1/namespaces/acme/secrets",
                &format!("watch=true&{one}"),
                metadata
            )
            .is_err(),
            "watched"
        );
        assert!(
            get(
                "/api/v1/namespaces/acme/secrets",
                "fieldSelector=type%3DOpaque",
                metadata
            )
            .is_err()
        );
        assert!(get("/api/v1/namespaces/acme/secrets", "", metadata).is_err());
        // Reading one by name is not granted at all.
        assert!(
            get(
                "/api/v1/namespaces/acme/secrets/billing-credentials",
                "",
                json
            )
            .is_err()
        );
        // Other resources ask for what they like.
        assert!(get("/apis/gatehouse.dev/v1alpha1/tenants", "watch=true", json).is_ok());
        // The role grants each verb once, whatever the calls ask.
        let (cluster, _) = roles("gatehouse-operator", "gatehouse");
        let secrets = cluster["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resources"] == serde_json::json!(["secrets"]))
            .unwrap();
        assert_eq!(
            secrets["verbs"],
            serde_json::json!(["list", "watch", "create", "patch"])
        );
        for c in CALLS.iter().filter(|c| c.resource == "secrets") {
            if c.verb == "list" || c.verb == "watch" {
                assert_ne!(c.asks, Asks::Anything, "{c:?}");
            }
        }
    }
}
