//! JWT assertions (RFC 7523): verification of assertions signed by a key in a client's
//! registered JWK Set, for the jwt-bearer grant (section 2.1) and `private_key_jwt` client
//! authentication (section 2.2).
//!
//! The algorithm always comes from the registered key (its `alg`, or its type and curve),
//! never from the token alone: `none`, HMAC with a public key as the secret, or any header
//! algorithm that differs from the key's is refused.

use crate::token::Audience;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

/// `client_assertion_type` for `private_key_jwt` (RFC 7523 section 2.2).
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Leeway for clock differences on `exp`, `nbf` and `iat`.
pub const CLOCK_SKEW_SECS: u64 = 60;
/// Longest lifetime an assertion may claim; bounds how long its `jti` must be remembered.
pub const MAX_LIFETIME_SECS: u64 = 3600;

/// The claims Gatehouse reads from a signed assertion (RFC 7523 section 3).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct AssertionClaims {
    /// Who signed it: a client id.
    pub iss: String,
    /// Who it is about.
    pub sub: String,
    /// Who it is for: the tenant's issuer or token endpoint.
    pub aud: Audience,
    /// Unix seconds; required.
    pub exp: u64,
    /// Unix seconds, if given.
    #[serde(default)]
    pub nbf: Option<u64>,
    /// Unix seconds, if given.
    #[serde(default)]
    pub iat: Option<u64>,
    /// The assertion's id, which makes it usable once.
    #[serde(default)]
    pub jti: Option<String>,
}

/// Why an assertion is refused (callers map it to `invalid_grant` or `invalid_client`).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    /// Not a JWS compact serialisation with a JSON payload.
    #[error("the assertion is not a well-formed JWT")]
    Malformed,
    /// The `kid` names no registered key (or no key has the right type).
    #[error("no registered key of the client matches the assertion")]
    UnknownKey,
    /// The header's `alg` is not the registered key's algorithm.
    #[error("the assertion's algorithm {0} is not the registered key's")]
    AlgorithmMismatch(String),
    /// The signature does not verify.
    #[error("the assertion's signature does not verify")]
    BadSignature,
    /// `exp` has passed (beyond the clock skew allowed).
    #[error("the assertion has expired")]
    Expired,
    /// `nbf` or `iat` lies in the future.
    #[error("the assertion is not valid yet")]
    NotYetValid,
    /// Valid for longer than an assertion may be.
    #[error("the assertion claims a lifetime over {MAX_LIFETIME_SECS} seconds")]
    TooLong,
    /// `aud` names neither the issuer nor the token endpoint.
    #[error("the assertion's audience is not this server")]
    WrongAudience,
    /// `iss` is not the expected signer.
    #[error("the assertion's issuer is not the client")]
    WrongIssuer,
    /// No `jti`, so a replay could not be told apart.
    #[error("the assertion has no jti")]
    MissingJti,
}

/// The algorithm a registered JWK signs with: its `alg` member, or else what its type and
/// curve imply.
pub fn jwk_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    match (&jwk.common.key_algorithm, &jwk.algorithm) {
        (Some(KeyAlgorithm::ES256), _) => Some(Algorithm::ES256),
        (Some(KeyAlgorithm::ES384), _) => Some(Algorithm::ES384),
        (Some(KeyAlgorithm::EdDSA), _) => Some(Algorithm::EdDSA),
        (Some(KeyAlgorithm::RS256), _) | (None, AlgorithmParameters::RSA(_)) => {
            Some(Algorithm::RS256)
        }
        (Some(KeyAlgorithm::PS256), _) => Some(Algorithm::PS256),
        (None, AlgorithmParameters::EllipticCurve(ec)) => match ec.curve {
            EllipticCurve::P256 => Some(Algorithm::ES256),
            EllipticCurve::P384 => Some(Algorithm::ES384),
            _ => None,
        },
        (None, AlgorithmParameters::OctetKeyPair(okp)) if okp.curve == EllipticCurve::Ed25519 => {
            Some(Algorithm::EdDSA)
        }
        _ => None,
    }
}

/// Members of a JWK that only a private or symmetric key has (RFC 7518 section 6).
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Why a registered JWK cannot verify anything, if it cannot: a private member (the secret
/// half must never be registered), a shape no verifier reads, or no algorithm Gatehouse
/// accepts. A member named `true` or `false` is a YAML 1.1 boolean key (an unquoted `y:` or
/// `n:`, as Kubernetes' YAML reads them): the message says to quote it.
pub fn unusable_public_jwk(value: &Value) -> Option<String> {
    let Some(members) = value.as_object() else {
        return Some("must be a JSON Web Key object".into());
    };
    if let Some(private) = PRIVATE_MEMBERS.iter().find(|m| members.contains_key(**m)) {
        return Some(format!(
            "has the private member \"{private}\": register the public key only"
        ));
    }
    if members.contains_key("true") || members.contains_key("false") {
        return Some(
            "has a member named \"true\" or \"false\": YAML 1.1 (which Kubernetes uses) reads an unquoted y: or n: as a boolean; quote the key (\"y\": ...)"
                .into(),
        );
    }
    // An encryption key in a JWK Set copied from elsewhere verifies nothing and harms
    // nothing: assertions are only checked against signing keys.
    if members.get("use").and_then(Value::as_str) == Some("enc") {
        return None;
    }
    let jwk: Jwk = match serde_json::from_value(value.clone()) {
        Ok(jwk) => jwk,
        Err(e) => return Some(format!("is not a usable JSON Web Key: {e}")),
    };
    let Some(alg) = jwk_algorithm(&jwk) else {
        return Some(
            "has no algorithm Gatehouse verifies (ES256, ES384, EdDSA, RS256, PS256)".into(),
        );
    };
    let fits = match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(ec) => matches!(
            (alg, &ec.curve),
            (Algorithm::ES256, EllipticCurve::P256) | (Algorithm::ES384, EllipticCurve::P384)
        ),
        AlgorithmParameters::RSA(_) => matches!(alg, Algorithm::RS256 | Algorithm::PS256),
        AlgorithmParameters::OctetKeyPair(okp) => {
            alg == Algorithm::EdDSA && okp.curve == EllipticCurve::Ed25519
        }
        _ => false,
    };
    if !fits {
        return Some(format!(
            "says alg {alg:?}, which its key type and curve cannot verify"
        ));
    }
    DecodingKey::from_jwk(&jwk)
        .err()
        .map(|e| format!("is not a usable public key: {e}"))
}

/// The `sub` of an assertion before verification: only to find whose keys verify it.
pub fn unverified_subject(token: &str) -> Option<String> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    value.get("sub")?.as_str().map(str::to_string)
}

/// Verifies `token` against the keys of `jwks` (a JWK Set as registered), expecting one of
/// `audiences`, at time `now`. The issuer check is the caller's (it differs per use).
pub fn verify(
    token: &str,
    jwks: Option<&Value>,
    audiences: &[&str],
    now: u64,
) -> Result<AssertionClaims, AssertionError> {
    check_claims(verify_signature(token, jwks)?, audiences, now)
}

/// The claims of `token` once its signature verifies with a key of `jwks` (chosen by `kid`,
/// its algorithm the key's); no claim is checked.
pub fn verify_signature<T: serde::de::DeserializeOwned>(
    token: &str,
    jwks: Option<&Value>,
) -> Result<T, AssertionError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| AssertionError::Malformed)?;
    let keys: Vec<Jwk> = jwks
        .and_then(|j| j.get("keys"))
        .and_then(|k| serde_json::from_value::<Vec<Value>>(k.clone()).ok())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|k| serde_json::from_value(k).ok())
        .collect();
    let candidates: Vec<&Jwk> = match &header.kid {
        Some(kid) => keys
            .iter()
            .filter(|k| k.common.key_id.as_deref() == Some(kid))
            .collect(),
        None => keys.iter().collect(),
    };
    if candidates.is_empty() {
        return Err(AssertionError::UnknownKey);
    }
    let mut last = AssertionError::AlgorithmMismatch(format!("{:?}", header.alg));
    for jwk in candidates {
        let Some(alg) = jwk_algorithm(jwk) else {
            continue;
        };
        if alg != header.alg {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        let mut validation = Validation::new(alg);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        match jsonwebtoken::decode::<T>(token, &key, &validation) {
            Ok(data) => return Ok(data.claims),
            Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature) => {
                last = AssertionError::BadSignature;
            }
            Err(_) => last = AssertionError::Malformed,
        }
    }
    Err(last)
}

fn check_claims(
    c: AssertionClaims,
    audiences: &[&str],
    now: u64,
) -> Result<AssertionClaims, AssertionError> {
    if c.exp + CLOCK_SKEW_SECS <= now {
        return Err(AssertionError::Expired);
    }
    if c.nbf.is_some_and(|nbf| nbf > now + CLOCK_SKEW_SECS)
        || c.iat.is_some_and(|iat| iat > now + CLOCK_SKEW_SECS)
    {
        return Err(AssertionError::NotYetValid);
    }
    if c.exp > now + MAX_LIFETIME_SECS + CLOCK_SKEW_SECS {
        return Err(AssertionError::TooLong);
    }
    if !c.aud.0.iter().any(|a| audiences.contains(&a.as_str())) {
        return Err(AssertionError::WrongAudience);
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    fn keypair() -> (Vec<u8>, Value) {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap();
        let p = pair.public_key().as_ref();
        let jwk = json!({"kty": "EC", "crv": "P-256", "kid": "k1", "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..65])});
        (doc.as_ref().to_vec(), json!({"keys": [jwk]}))
    }

    fn sign(pkcs8: &[u8], alg: Algorithm, claims: &Value) -> String {
        let mut h = Header::new(alg);
        h.kid = Some("k1".into());
        jsonwebtoken::encode(&h, claims, &EncodingKey::from_ec_der(pkcs8)).unwrap()
    }

    fn claims(now: u64) -> Value {
        json!({"iss": "c", "sub": "c", "aud": "https://as/t/token", "exp": now + 60, "iat": now, "jti": "j1"})
    }

    #[test]
    fn verifies_and_checks_claims() {
        let (key, jwks) = keypair();
        let token = sign(&key, Algorithm::ES256, &claims(1000));
        let c = verify(&token, Some(&jwks), &["https://as/t/token"], 1000).unwrap();
        assert_eq!((c.sub.as_str(), c.jti.as_deref()), ("c", Some("j1")));
        assert_eq!(
            verify(&token, Some(&jwks), &["https://elsewhere"], 1000),
            Err(AssertionError::WrongAudience)
        );
        assert_eq!(
            verify(&token, Some(&jwks), &["https://as/t/token"], 1200),
            Err(AssertionError::Expired)
        );
        let long = sign(
            &key,
            Algorithm::ES256,
            &json!({"iss": "c", "sub": "c", "aud": "https://as/t/token", "exp": 1000 + 7200}),
        );
        assert_eq!(
            verify(&long, Some(&jwks), &["https://as/t/token"], 1000),
            Err(AssertionError::TooLong)
        );
        let (other, _) = keypair();
        let forged = sign(&other, Algorithm::ES256, &claims(1000));
        assert_eq!(
            verify(&forged, Some(&jwks), &["https://as/t/token"], 1000),
            Err(AssertionError::BadSignature)
        );
        assert_eq!(
            verify(&token, None, &["https://as/t/token"], 1000),
            Err(AssertionError::UnknownKey)
        );
    }

    #[test]
    fn a_registered_key_must_be_a_usable_public_key() {
        let ec = serde_json::json!({"kty": "EC", "crv": "P-256", "kid": "k", "alg": "ES256",
            "x": "pDPyG0M9IzX9fXd4b9UPwTsP6WCVsIkEgBA63fdjAzQ",
            "y": "0MjEgT0Z6kBLTOEsGrtgvUfaSZzllDmhPdmTwEMGJp0"});
        assert_eq!(unusable_public_jwk(&ec), None);
        let mut yaml11 = ec.clone();
        let y = yaml11.as_object_mut().unwrap().remove("y").unwrap();
        yaml11["true"] = y;
        assert!(
            unusable_public_jwk(&yaml11)
                .unwrap()
                .contains("quote the key")
        );
        let mut private = ec.clone();
        private["d"] = "c2VjcmV0".into();
        assert!(
            unusable_public_jwk(&private)
                .unwrap()
                .contains("private member \"d\"")
        );
        let hmac = serde_json::json!({"kty": "oct", "k": "c2VjcmV0"});
        assert!(unusable_public_jwk(&hmac).is_some());
        assert!(unusable_public_jwk(&serde_json::json!("key")).is_some());
        let mut no_y = ec.clone();
        no_y.as_object_mut().unwrap().remove("y");
        assert!(unusable_public_jwk(&no_y).is_some());
        let mut mismatched = ec.clone();
        mismatched["alg"] = "RS256".into();
        assert!(
            unusable_public_jwk(&mismatched)
                .unwrap()
                .contains("alg RS256")
        );
        let mut encryption = ec;
        encryption["use"] = "enc".into();
        encryption["alg"] = "ECDH-ES".into();
        assert_eq!(
            unusable_public_jwk(&encryption),
            None,
            "ignored, not refused"
        );
    }

    #[test]
    fn refuses_none_and_hmac_with_the_public_key() {
        let (_, jwks) = keypair();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"k1"}"#);
        let body = URL_SAFE_NO_PAD.encode(claims(1000).to_string());
        assert!(
            verify(
                &format!("{header}.{body}."),
                Some(&jwks),
                &["https://as/t/token"],
                1000
            )
            .is_err()
        );
        // HS256 keyed with the public JWK's text: the classic confusion attack.
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("k1".into());
        let secret = jwks["keys"][0].to_string();
        let hmac = jsonwebtoken::encode(
            &h,
            &claims(1000),
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap();
        assert!(matches!(
            verify(&hmac, Some(&jwks), &["https://as/t/token"], 1000),
            Err(AssertionError::AlgorithmMismatch(_))
        ));
    }
}
