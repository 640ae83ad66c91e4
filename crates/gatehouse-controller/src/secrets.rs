//! Reading Kubernetes Secrets the way the apiserver stores them (`data`, base64) and the way
//! people write them in manifests (`stringData`), and the contents of generated ones.

use k8s_openapi::api::core::v1::Secret;
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
pub fn generate_client_secret() -> Result<Zeroizing<String>, aws_lc_rs::error::Unspecified> {
    use base64::Engine;
    let mut bytes = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(&mut bytes[..])?;
    Ok(Zeroizing::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes[..]),
    ))
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
