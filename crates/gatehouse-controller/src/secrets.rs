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
/// Annotation on an OAuthClient: a new value asks for a fresh secret in its (owned) Secret.
pub const ROTATE_ANNOTATION: &str = "gatehouse.dev/rotate-secret";
/// Annotation on a generated Secret: the rotation value it was last rotated for.
pub const ROTATED_FOR_ANNOTATION: &str = "gatehouse.dev/rotated-for";
/// Label naming the OAuthClient a generated Secret belongs to.
pub const CLIENT_LABEL: &str = "gatehouse.dev/client";

/// The credentials Secret generated for a client: `client_id`, a random `client_secret`,
/// `issuer` and `token_endpoint`, labelled, and owned by the OAuthClient when its uid is known
/// (so Kubernetes garbage-collects it with the client).
pub fn generated_secret(request: &SecretRequest, client_secret: &str) -> Secret {
    let mut secret = Secret::default();
    secret.metadata.name = Some(request.name.clone());
    secret.metadata.namespace = Some(request.namespace.clone());
    secret.metadata.labels = Some(BTreeMap::from([
        (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
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
}
