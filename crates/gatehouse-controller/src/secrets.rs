//! Reading Kubernetes Secrets the way the apiserver stores them (`data`, base64) and the way
//! people write them in manifests (`stringData`), and the contents of generated ones.

use crate::reconcile::SecretRequest;
use gatehouse_core::random::{NoRandomness, Randomness};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use std::collections::BTreeMap;
use zeroize::Zeroizing;

/// Keys of a client credentials Secret.
pub const CLIENT_SECRET_KEY: &str = "client_secret";
pub const CLIENT_ID_KEY: &str = "client_id";
pub const ISSUER_KEY: &str = "issuer";
pub const TOKEN_ENDPOINT_KEY: &str = "token_endpoint";

/// The value of `key`, from `stringData` (which the apiserver would merge over `data`) or
/// `data`. `Err` carries why it is unusable.
pub fn string_value(secret: &Secret, key: &str) -> Result<Option<Zeroizing<String>>, String> {
    if let Some(v) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
        return Ok(Some(Zeroizing::new(v.clone())));
    }
    match secret.data.as_ref().and_then(|d| d.get(key)) {
        None => Ok(None),
        Some(bytes) => String::from_utf8(bytes.0.clone())
            .map(|s| Some(Zeroizing::new(s)))
            .map_err(|_| format!("key {key} is not UTF-8 text")),
    }
}

/// A random client secret: 256 bits, base64url (43 characters, safe in Basic auth unencoded).
pub fn generate_client_secret(random: &dyn Randomness) -> Result<Zeroizing<String>, NoRandomness> {
    use base64::Engine;
    let mut bytes = Zeroizing::new([0u8; 32]);
    random.fill(&mut bytes[..])?;
    Ok(Zeroizing::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes[..]),
    ))
}

/// Whether `secret` carries Gatehouse's managed-by label: it is Gatehouse's to rewrite.
pub fn is_managed(secret: &Secret) -> bool {
    secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY.0))
        .is_some_and(|v| v == MANAGED_BY.1)
}

/// Whether `value`, read from `secret`, is one Gatehouse generated: the Secret carries
/// Gatehouse's managed-by label (which the operator treats as "ours to rewrite") and the value
/// has exactly the shape [`generate_client_secret`] gives. Such a value is 256 random bits, so
/// its hash need not be slow ([`HashCost::RandomKey`]); anything else might have been chosen
/// by a person and gets the full cost.
///
/// [`HashCost::RandomKey`]: gatehouse_core::secret::HashCost::RandomKey
pub fn is_generated(secret: &Secret, value: &str) -> bool {
    let labelled = is_managed(secret);
    let shaped = value.len() == 43
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    labelled && shaped
}

/// The `stringData` of a generated credentials Secret.
pub fn credentials_data(
    client_id: &str,
    client_secret: &str,
    issuer: &str,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        (CLIENT_ID_KEY.to_string(), client_id.to_string()),
        (CLIENT_SECRET_KEY.to_string(), client_secret.to_string()),
        (ISSUER_KEY.to_string(), issuer.to_string()),
        (
            TOKEN_ENDPOINT_KEY.to_string(),
            format!("{issuer}{}", gatehouse_core::endpoints::TOKEN),
        ),
    ])
}

/// Label on every Secret Gatehouse creates; Secrets without it are never written to.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "gatehouse");
/// The label a Secret must carry for Gatehouse to read it: the operator watches (and caches)
/// only Secrets with it, so it never holds the other Secrets of the cluster. Its own Secrets
/// carry it; a Secret someone supplies (users, credentials with `generate: false`) needs it
/// added. Standalone asks the same of the manifests it reads, so a directory that works there
/// works when applied to a cluster.
pub const WATCH_LABEL: (&str, &str) = ("gatehouse.dev/watch", "true");
/// [`WATCH_LABEL`] as a label selector.
pub const WATCH_SELECTOR: &str = "gatehouse.dev/watch=true";

/// Whether `secret` carries [`WATCH_LABEL`].
pub fn is_watched(secret: &Secret) -> bool {
    secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(WATCH_LABEL.0))
        .is_some_and(|v| v == WATCH_LABEL.1)
}

/// A Secret an object refers to (a client's credentials, a tenant's users), as Gatehouse may
/// see it.
#[derive(Clone, Copy, Debug)]
pub enum SecretView<'a> {
    /// It exists and carries [`WATCH_LABEL`]: its contents are read.
    Readable(&'a Secret),
    /// It exists without [`WATCH_LABEL`]: Gatehouse does not read it, and says which label
    /// to add ([`not_labelled`]).
    NotLabelled,
    /// No Secret by that name.
    Missing,
}

impl<'a> SecretView<'a> {
    /// The view of a Secret found by name (or not found).
    #[must_use]
    pub fn of(secret: Option<&'a Secret>) -> Self {
        match secret {
            Some(s) if is_watched(s) => SecretView::Readable(s),
            Some(_) => SecretView::NotLabelled,
            None => SecretView::Missing,
        }
    }
}

/// Whether a Secret (by its metadata) is one Gatehouse made for the object with `owner_uid`:
/// it carries the managed-by label and names that object as its controlling owner. Such a
/// Secret made before Gatehouse labelled its own for watching gets [`WATCH_LABEL`] added;
/// any other unlabelled Secret is left as it is.
pub fn made_by_gatehouse_for(
    metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    owner_uid: &str,
) -> bool {
    let managed = metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY.0))
        .is_some_and(|v| v == MANAGED_BY.1);
    let controlled = metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.uid == owner_uid);
    managed && controlled
}

/// What a condition says of a referenced Secret without [`WATCH_LABEL`]: exactly which label
/// to add, and how.
pub fn not_labelled(namespace: &str, name: &str) -> String {
    let (key, value) = WATCH_LABEL;
    format!(
        "Secret {namespace}/{name} lacks the label {key}={value}, and Gatehouse reads only Secrets that carry it; add it: kubectl label secret -n {namespace} {name} {key}={value}"
    )
}
/// Annotation on an OAuthClient: a new value asks for a fresh secret in its (owned) Secret.
pub const ROTATE_ANNOTATION: &str = "gatehouse.dev/rotate-secret";
/// Annotation on a generated Secret: the rotation value it was last rotated for.
pub const ROTATED_FOR_ANNOTATION: &str = "gatehouse.dev/rotated-for";
/// Annotation on a Tenant: a new value replaces all its signing keys at once (the emergency
/// rotation; tokens signed before stop verifying).
pub const ROTATE_KEYS_ANNOTATION: &str = "gatehouse.dev/rotate-keys";
/// Annotation on a tenant's keys Secret: the `rotate-keys` value its keys were last replaced
/// for (or first made under).
pub const KEYS_ROTATED_FOR_ANNOTATION: &str = "gatehouse.dev/keys-rotated-for";
/// Label naming the OAuthClient a generated Secret belongs to.
pub const CLIENT_LABEL: &str = "gatehouse.dev/client";

/// The credentials Secret generated for a client: `client_id`, a random `client_secret`,
/// `issuer` and `token_endpoint`, labelled (managed by Gatehouse, watched by it), and owned by the OAuthClient when its uid is known
/// (so Kubernetes garbage-collects it with the client).
pub fn generated_secret(request: &SecretRequest, client_secret: &str) -> Secret {
    let mut secret = Secret::default();
    secret.metadata.name = Some(request.name.clone());
    secret.metadata.namespace = Some(request.namespace.clone());
    secret.metadata.labels = Some(BTreeMap::from([
        (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
        (WATCH_LABEL.0.to_string(), WATCH_LABEL.1.to_string()),
        (CLIENT_LABEL.to_string(), request.owner_name.clone()),
    ]));
    secret.metadata.owner_references = request.owner_uid.as_ref().map(|uid| {
        vec![OwnerReference {
            api_version: gatehouse_crd::API_VERSION.to_string(),
            kind: "OAuthClient".to_string(),
            name: request.owner_name.clone(),
            uid: uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]
    });
    secret.type_ = Some("Opaque".to_string());
    secret.string_data = Some(credentials_data(
        &request.client_id,
        client_secret,
        &request.issuer,
    ));
    secret
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> SecretRequest {
        SecretRequest {
            namespace: "acme".into(),
            name: "billing-credentials".into(),
            client_id: "acme-billing".into(),
            issuer: "https://auth.example.com/acme".into(),
            owner_name: "billing".into(),
            owner_uid: None,
        }
    }

    #[test]
    fn only_gatehouse_shaped_values_in_gatehouse_labelled_secrets_count_as_generated() {
        let value = generate_client_secret(&gatehouse_core::random::SystemRandom).unwrap();
        let ours = generated_secret(&request(), &value);
        assert!(is_generated(&ours, &value));
        // A person's choice in our Secret (edited by hand), or ours copied elsewhere.
        assert!(!is_generated(&ours, "correct horse battery staple"));
        assert!(!is_generated(&ours, &value[..42]));
        assert!(!is_generated(&ours, &format!("{}!", &value[..42])));
        let mut theirs = ours.clone();
        theirs.metadata.labels = None;
        assert!(!is_generated(&theirs, &value));
    }

    #[test]
    fn only_secrets_with_the_watch_label_are_read() {
        let ours = generated_secret(&request(), "x");
        assert!(matches!(
            SecretView::of(Some(&ours)),
            SecretView::Readable(_)
        ));
        let mut theirs = ours.clone();
        theirs.metadata.labels = Some(BTreeMap::from([(
            WATCH_LABEL.0.to_string(),
            "yes".to_string(),
        )]));
        assert!(matches!(
            SecretView::of(Some(&theirs)),
            SecretView::NotLabelled
        ));
        theirs.metadata.labels = None;
        assert!(matches!(
            SecretView::of(Some(&theirs)),
            SecretView::NotLabelled
        ));
        assert!(matches!(SecretView::of(None), SecretView::Missing));
        assert_eq!(
            WATCH_SELECTOR,
            format!("{}={}", WATCH_LABEL.0, WATCH_LABEL.1)
        );
        // Gatehouse's own (managed, controlled by the object) may be adopted; nothing else.
        let mut made = generated_secret(
            &SecretRequest {
                owner_uid: Some("client-uid".into()),
                ..request()
            },
            "x",
        );
        assert!(made_by_gatehouse_for(&made.metadata, "client-uid"));
        assert!(!made_by_gatehouse_for(&made.metadata, "another-uid"));
        made.metadata.labels = None;
        assert!(
            !made_by_gatehouse_for(&made.metadata, "client-uid"),
            "not managed"
        );
        let message = not_labelled("acme", "vault-creds");
        assert!(
            message.ends_with("kubectl label secret -n acme vault-creds gatehouse.dev/watch=true"),
            "{message}"
        );
    }
}
