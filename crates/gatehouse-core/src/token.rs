//! Access tokens: RFC 9068 JWTs and opaque handles, their claims, and their validation.

use crate::keys::{KeyError, SigningKey, SigningKeyRecord};
use crate::model::SigningAlgorithm;
use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{DecodingKey, Validation, jwk::Jwk};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The JOSE `typ` of RFC 9068 access tokens; checked on the way in so an ID token (or any other
/// JWT the tenant signs) is never accepted as an access token.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// `aud`: a single string when there is one audience, an array otherwise (RFC 7519 4.1.3).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Audience(pub Vec<String>);

impl Serialize for Audience {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => s.serialize_str(one),
            many => many.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Audience {
    /// One string or an array of them (RFC 7519 section 4.1.3), read in one pass: an
    /// untagged enum would buffer the value first, on every refresh token and code opened.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct OneOrMany;
        impl<'de> serde::de::Visitor<'de> for OneOrMany {
            type Value = Audience;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: serde::de::Error>(self, one: &str) -> Result<Audience, E> {
                Ok(Audience(vec![one.to_string()]))
            }
            fn visit_string<E: serde::de::Error>(self, one: String) -> Result<Audience, E> {
                Ok(Audience(vec![one]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Audience, A::Error> {
                let mut many = Vec::with_capacity(seq.size_hint().unwrap_or(1).min(16));
                while let Some(one) = seq.next_element::<String>()? {
                    many.push(one);
                }
                Ok(Audience(many))
            }
        }
        d.deserialize_any(OneOrMany)
    }
}

/// Claims of an access token (RFC 9068 section 2.2), the same for JWT and opaque tokens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    /// The tenant's issuer.
    pub iss: String,
    /// Who the token is about: a user, or the client itself.
    pub sub: String,
    /// The resource servers it is for.
    pub aud: Audience,
    /// Unix seconds.
    pub exp: u64,
    /// Unix seconds.
    pub iat: u64,
    /// Unix seconds.
    pub nbf: u64,
    /// The token's id: what revocation is keyed by.
    pub jti: String,
    /// The client it was issued to.
    pub client_id: String,
    /// The granted scope, space-delimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Who acts for the subject (RFC 8693 section 4.1), for a token issued by delegation:
    /// `{"sub": …}`, with the prior actors nested in its own `act`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<serde_json::Value>,
    /// The grant family the token was issued into (a refresh-token grant's): revoking the
    /// family revokes the token, checked where the token is checked, so that the store need
    /// not list a family's access tokens. A server-side handle, random and meaningless
    /// outside this issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fam: Option<String>,
}

/// SHA-256 of a token, for in-memory lookups that must not keep the token itself.
pub fn token_digest(token: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, token.as_bytes()).as_ref());
    out
}

/// The store key of an opaque token: its SHA-256, so a store dump holds no usable token.
pub fn opaque_token_id(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, token.as_bytes()).as_ref())
}

/// Heuristic the introspection and revocation endpoints use to pick a lookup: JWS compact
/// serialisation has exactly two dots; opaque handles are base64url and have none.
pub fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}

/// Serialises and signs a JWT with a cached key.
pub fn encode_jwt<T: Serialize>(
    key: &SigningKey,
    typ: &str,
    claims: &T,
) -> Result<String, KeyError> {
    UnsignedJwt::new(key, typ, claims)?.sign(key)
}

/// A JWT's signing input (`header.payload`), serialised and waiting for its signature: the
/// two steps apart, so a server can sign several tokens back to back (see the server's
/// `issue` module).
pub struct UnsignedJwt {
    text: String,
}

impl UnsignedJwt {
    /// The signing input for `claims` under `key`'s algorithm and id.
    pub fn new<T: Serialize>(key: &SigningKey, typ: &str, claims: &T) -> Result<Self, KeyError> {
        #[derive(Serialize)]
        struct Header<'a> {
            alg: &'a str,
            typ: &'a str,
            kid: &'a str,
        }
        let header = serde_json::to_vec(&Header {
            alg: key.algorithm.as_str(),
            typ,
            kid: &key.kid,
        })
        .map_err(|_| KeyError::Sign)?;
        let payload = serde_json::to_vec(claims).map_err(|_| KeyError::Sign)?;
        let mut text = String::with_capacity(64 + payload.len() * 4 / 3 + 128);
        URL_SAFE_NO_PAD.encode_string(&header, &mut text);
        text.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut text);
        Ok(UnsignedJwt { text })
    }

    /// Signs with `key` (the key the input was made for) and returns the compact JWT.
    pub fn sign(mut self, key: &SigningKey) -> Result<String, KeyError> {
        let signature = key.sign(self.text.as_bytes())?;
        self.text.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut self.text);
        Ok(self.text)
    }
}

/// A public key a tenant's tokens may verify against.
pub struct VerificationKey {
    /// The key's id, matched against a JWT's `kid`.
    pub kid: String,
    algorithm: jsonwebtoken::Algorithm,
    key: DecodingKey,
}

impl VerificationKey {
    /// Builds the verification key of a stored record; the algorithm comes from the record,
    /// never from a token header.
    pub fn from_record(record: &SigningKeyRecord) -> Option<Self> {
        let jwk: Jwk = serde_json::from_value(record.public_jwk.clone()).ok()?;
        Some(VerificationKey {
            kid: record.kid.clone(),
            algorithm: jose_algorithm(record.algorithm),
            key: DecodingKey::from_jwk(&jwk).ok()?,
        })
    }
}

/// The JWS algorithm a tenant's signing algorithm is.
pub fn jose_algorithm(alg: SigningAlgorithm) -> jsonwebtoken::Algorithm {
    match alg {
        SigningAlgorithm::ES256 => jsonwebtoken::Algorithm::ES256,
        SigningAlgorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
        SigningAlgorithm::RS256 => jsonwebtoken::Algorithm::RS256,
    }
}

/// Why a presented JWT access token is not valid. Introspection reports all of these as
/// `active: false`; the reason is for logs and tests.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    /// Not a JWS compact serialisation.
    #[error("not a JWT")]
    Malformed,
    /// Another kind of JWT (an ID token, say): `typ` is not `at+jwt`.
    #[error("not an access token (typ)")]
    WrongType,
    /// Signed by no key of this tenant.
    #[error("unknown signing key")]
    UnknownKey,
    /// The signature, algorithm or claims are wrong.
    #[error("bad signature or claims")]
    Invalid,
    /// `exp` has passed.
    #[error("expired")]
    Expired,
    /// `nbf` lies in the future.
    #[error("not yet valid")]
    NotYetValid,
    /// Issued by another tenant.
    #[error("issued by another issuer")]
    WrongIssuer,
}

/// Verifies an RFC 9068 access token of `issuer` against its keys, at time `now`.
pub fn verify_access_token(
    token: &str,
    issuer: &str,
    keys: &[VerificationKey],
    now: u64,
) -> Result<AccessTokenClaims, TokenRejection> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenRejection::Malformed)?;
    let typ_ok = header.typ.as_deref().is_some_and(|t| {
        t.eq_ignore_ascii_case(ACCESS_TOKEN_TYP) || t.eq_ignore_ascii_case("application/at+jwt")
    });
    if !typ_ok {
        return Err(TokenRejection::WrongType);
    }
    let kid = header.kid.ok_or(TokenRejection::UnknownKey)?;
    let key = keys
        .iter()
        .find(|k| k.kid == kid)
        .ok_or(TokenRejection::UnknownKey)?;
    if header.alg != key.algorithm {
        return Err(TokenRejection::Invalid);
    }
    let mut validation = Validation::new(key.algorithm);
    // Time and issuer are checked below against the caller's clock and with precise reasons.
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<AccessTokenClaims>(token, &key.key, &validation)
        .map_err(|_| TokenRejection::Invalid)?;
    let claims = data.claims;
    if claims.iss != issuer {
        return Err(TokenRejection::WrongIssuer);
    }
    if claims.exp <= now {
        return Err(TokenRejection::Expired);
    }
    if claims.nbf > now + 5 {
        return Err(TokenRejection::NotYetValid);
    }
    Ok(claims)
}

/// Verifies an ID token this issuer signed, ignoring expiry: what `id_token_hint` needs at
/// the end-session endpoint (OpenID Connect RP-Initiated Logout, section 2).
pub fn verify_id_token_hint(
    token: &str,
    issuer: &str,
    keys: &[VerificationKey],
) -> Option<crate::id_token::IdTokenClaims> {
    let header = jsonwebtoken::decode_header(token).ok()?;
    if header
        .typ
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case(ACCESS_TOKEN_TYP))
    {
        return None;
    }
    let key = keys
        .iter()
        .find(|k| Some(k.kid.as_str()) == header.kid.as_deref())?;
    if header.alg != key.algorithm {
        return None;
    }
    let mut validation = Validation::new(key.algorithm);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    validation.set_issuer(&[issuer]);
    jsonwebtoken::decode(token, &key.key, &validation)
        .ok()
        .map(|d| d.claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeyEncryptionKey, KeyState, generate_signing_key};

    fn claims(now: u64) -> AccessTokenClaims {
        AccessTokenClaims {
            iss: "http://x/acme".into(),
            sub: "c".into(),
            aud: Audience(vec!["api".into()]),
            exp: now + 60,
            iat: now,
            nbf: now,
            jti: crate::random::system().id().unwrap(),
            client_id: "c".into(),
            scope: Some("a b".into()),
            act: None,
            fam: None,
        }
    }

    fn key(alg: SigningAlgorithm) -> (SigningKey, VerificationKey) {
        let kek = KeyEncryptionKey::generate().unwrap().0;
        let rec = generate_signing_key("acme", alg, KeyState::Active, &kek, 0).unwrap();
        (
            SigningKey::open("acme", &rec, &kek).unwrap(),
            VerificationKey::from_record(&rec).unwrap(),
        )
    }

    #[test]
    fn round_trips_for_every_algorithm() {
        for alg in [
            SigningAlgorithm::ES256,
            SigningAlgorithm::EdDSA,
            SigningAlgorithm::RS256,
        ] {
            let (sk, vk) = key(alg);
            let c = claims(1000);
            let jwt = encode_jwt(&sk, ACCESS_TOKEN_TYP, &c).unwrap();
            assert!(looks_like_jwt(&jwt));
            assert_eq!(
                verify_access_token(&jwt, "http://x/acme", &[vk], 1000).unwrap(),
                c
            );
        }
    }

    #[test]
    fn audience_serialises_as_string_or_array() {
        assert_eq!(
            serde_json::to_string(&Audience(vec!["a".into()])).unwrap(),
            "\"a\""
        );
        assert_eq!(
            serde_json::to_string(&Audience(vec!["a".into(), "b".into()])).unwrap(),
            "[\"a\",\"b\"]"
        );
        let a: Audience = serde_json::from_str("\"x\"").unwrap();
        assert_eq!(a.0, vec!["x"]);
        let a: Audience = serde_json::from_str("[\"x\",\"y\\u0041\"]").unwrap();
        assert_eq!(a.0, vec!["x", "yA"]);
        let a: Audience = serde_json::from_str("[]").unwrap();
        assert!(a.0.is_empty());
        for wrong in ["1", "{}", "[1]", "null", "[\"x\",null]"] {
            let e = serde_json::from_str::<Audience>(wrong).unwrap_err();
            assert!(e.is_data(), "{wrong}: {e}");
        }
    }

    #[test]
    fn rejects_with_precise_reasons() {
        let (sk, vk) = key(SigningAlgorithm::ES256);
        let (_, other) = key(SigningAlgorithm::ES256);
        let c = claims(1000);
        let jwt = encode_jwt(&sk, ACCESS_TOKEN_TYP, &c).unwrap();
        let keys = [vk];
        assert_eq!(
            verify_access_token(&jwt, "http://x/acme", &keys, 1060),
            Err(TokenRejection::Expired)
        );
        assert_eq!(
            verify_access_token(&jwt, "http://x/other", &keys, 1000),
            Err(TokenRejection::WrongIssuer)
        );
        assert_eq!(
            verify_access_token(&jwt, "http://x/acme", &[other], 1000),
            Err(TokenRejection::UnknownKey)
        );
        assert_eq!(
            verify_access_token("abc", "http://x/acme", &keys, 1000),
            Err(TokenRejection::Malformed)
        );
        let id_token = encode_jwt(&sk, "JWT", &c).unwrap();
        assert_eq!(
            verify_access_token(&id_token, "http://x/acme", &keys, 1000),
            Err(TokenRejection::WrongType)
        );
        // Flip a payload byte: the signature no longer matches.
        let mut parts: Vec<String> = jwt.split('.').map(String::from).collect();
        let mut payload = URL_SAFE_NO_PAD.decode(&parts[1]).unwrap();
        payload[10] ^= 1;
        parts[1] = URL_SAFE_NO_PAD.encode(payload);
        assert_eq!(
            verify_access_token(&parts.join("."), "http://x/acme", &keys, 1000),
            Err(TokenRejection::Invalid)
        );
    }

    #[test]
    fn opaque_tokens_are_random_and_stored_by_digest() {
        let random = crate::random::system();
        let (a, b) = (random.token().unwrap(), random.token().unwrap());
        assert_ne!(a, b);
        assert!(!looks_like_jwt(&a));
        assert_ne!(opaque_token_id(&a), a);
        assert_eq!(opaque_token_id(&a), opaque_token_id(&a));
    }
}
