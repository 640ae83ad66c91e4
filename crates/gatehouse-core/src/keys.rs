//! Tenant signing keys: generation, their public JWKs, encryption at rest, and signing.
//!
//! Private keys are PKCS#8 documents sealed with AES-256-GCM under the process's
//! key-encryption key (KEK), bound to their tenant and `kid` as associated data, so a sealed
//! key copied to another tenant's record does not open. Parsed key pairs are built once per key
//! (not per token): parsing a PKCS#8 document costs more than an ES256 signature.

use crate::grant::authorization_code::CodeKey;
use crate::grant::refresh_token::RefreshTokenKey;
use crate::model::SigningAlgorithm;
use crate::random::{NoRandomness, Randomness};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256,
    RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use zeroize::Zeroizing;

/// Why a key could not be made, read, opened or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key-encryption key has the wrong length.
    #[error("key-encryption key must be 32 bytes, base64-encoded (got {0} bytes)")]
    KekLength(usize),
    /// The key-encryption key is not base64.
    #[error("key-encryption key is not valid base64")]
    KekEncoding,
    /// The crypto library could not make a key.
    #[error("could not generate a {0} key")]
    Generate(SigningAlgorithm),
    /// A sealed key does not open: another key-encryption key sealed it, or it was altered.
    #[error("sealed private key of {kid} does not open with this key-encryption key")]
    Unseal {
        /// The key's id.
        kid: String,
    },
    /// An opened key is not what its record says.
    #[error("private key of {kid} is not a valid {algorithm} key")]
    BadPrivateKey {
        /// The key's id.
        kid: String,
        /// What it claims to be.
        algorithm: SigningAlgorithm,
    },
    /// The crypto library could not sign.
    #[error("signing failed")]
    Sign,
    /// No randomness for a nonce or a key.
    #[error(transparent)]
    NoRandomness(#[from] NoRandomness),
}

/// The key-encryption key that seals signing keys at rest.
pub struct KeyEncryptionKey {
    key: LessSafeKey,
    /// The root of every tenant's refresh-token key: a MAC of a fixed label under the KEK, so
    /// the KEK itself never keys anything but the seal.
    refresh_root: hmac::Key,
    /// The root of every tenant's authorization-code key, made the same way.
    code_root: hmac::Key,
}

impl std::fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyEncryptionKey(..)")
    }
}

impl KeyEncryptionKey {
    /// The key from its 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() != 32 {
            return Err(KeyError::KekLength(bytes.len()));
        }
        let unbound =
            UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| KeyError::KekLength(bytes.len()))?;
        let kek = hmac::Key::new(hmac::HMAC_SHA256, bytes);
        let root = hmac::sign(&kek, b"gatehouse refresh tokens v1");
        let code_root = hmac::sign(&kek, b"gatehouse authorization codes v1");
        Ok(KeyEncryptionKey {
            key: LessSafeKey::new(unbound),
            refresh_root: hmac::Key::new(hmac::HMAC_SHA256, root.as_ref()),
            code_root: hmac::Key::new(hmac::HMAC_SHA256, code_root.as_ref()),
        })
    }

    /// The key that signs `tenant`'s refresh tokens: every replica holding this KEK derives
    /// the same one, and no two tenants share it (a token copied to another tenant does not
    /// verify there).
    #[must_use]
    pub fn refresh_token_key(&self, tenant: &str) -> RefreshTokenKey {
        RefreshTokenKey::from_material(hmac::sign(&self.refresh_root, tenant.as_bytes()).as_ref())
    }

    /// The key that seals `tenant`'s authorization codes: the same on every replica holding
    /// this KEK, and another for every tenant (a code copied to another tenant does not open).
    #[must_use]
    pub fn code_key(&self, tenant: &str) -> CodeKey {
        CodeKey::from_material(hmac::sign(&self.code_root, tenant.as_bytes()).as_ref())
    }

    /// Parses the file format DESIGN.md fixes: 32 random bytes, base64 (surrounding whitespace
    /// ignored, standard or URL-safe alphabet).
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let bytes = Zeroizing::new(
            STANDARD
                .decode(text)
                .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
                .map_err(|_| KeyError::KekEncoding)?,
        );
        Self::from_bytes(&bytes)
    }

    /// A fresh random key and its base64 form (for `standalone` and tests).
    pub fn generate() -> Result<(Self, Zeroizing<String>), KeyError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        crate::random::SystemRandom.fill(&mut bytes[..])?;
        let encoded = Zeroizing::new(STANDARD.encode(&bytes[..]));
        Ok((Self::from_bytes(&bytes[..])?, encoded))
    }

    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<String, KeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        crate::random::SystemRandom.fill(&mut nonce)?;
        let mut buf = Zeroizing::new(plaintext.to_vec());
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut *buf,
            )
            .map_err(|_| KeyError::Sign)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    fn open(&self, aad: &[u8], sealed: &str, kid: &str) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let unseal = || KeyError::Unseal {
            kid: kid.to_string(),
        };
        let raw = URL_SAFE_NO_PAD.decode(sealed).map_err(|_| unseal())?;
        if raw.len() < NONCE_LEN {
            return Err(unseal());
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| unseal())?;
        let mut buf = Zeroizing::new(ct.to_vec());
        let len = self
            .key
            .open_in_place(nonce, Aad::from(aad), &mut buf)
            .map_err(|_| unseal())?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

/// Where a key is in its life: `next` keys are published before they sign, `retired` keys stay
/// published until the tokens they signed have expired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Signs now.
    Active,
    /// Published in JWKS, signs after the next rotation (so verifiers know it in time).
    Next,
    /// Signs no more; published until every token it signed has expired.
    Retired,
}

/// A signing key as stored: public JWK in the clear, private key sealed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKeyRecord {
    /// The key's id, in JWKS and in every JWT header it signs.
    pub kid: String,
    /// What it signs with.
    pub algorithm: SigningAlgorithm,
    /// Where it is in its life.
    pub state: KeyState,
    /// Unix seconds.
    pub created_at: u64,
    /// When it started signing (unix seconds); rotation is due an interval later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated_at: Option<u64>,
    /// When it stopped signing (unix seconds); it leaves JWKS once its tokens have expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<u64>,
    /// The public half, as published in JWKS.
    pub public_jwk: Value,
    /// base64url(nonce || AES-256-GCM(PKCS#8)).
    pub sealed_private_key: String,
}

fn aad(tenant: &str, kid: &str) -> Vec<u8> {
    format!("gatehouse signing key\0{tenant}\0{kid}").into_bytes()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// RFC 7638 thumbprint of the required members, used as the `kid`.
fn thumbprint(required_members_json: &str) -> String {
    b64(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, required_members_json.as_bytes())
            .as_ref(),
    )
}

/// The public JWK (with `kid`, `alg`, `use`) and the PKCS#8 of a fresh key.
fn generate_key_material(alg: SigningAlgorithm) -> Result<(Value, Zeroizing<Vec<u8>>), KeyError> {
    let fail = || KeyError::Generate(alg);
    let rng = SystemRandom::new();
    let (mut jwk, pkcs8) = match alg {
        SigningAlgorithm::ES256 => {
            let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| fail())?;
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref())
                .map_err(|_| fail())?;
            let point = pair.public_key().as_ref();
            if point.len() != 65 {
                return Err(fail());
            }
            let (x, y) = (b64(&point[1..33]), b64(&point[33..65]));
            let tp = thumbprint(&format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#
            ));
            (
                json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": tp}),
                Zeroizing::new(doc.as_ref().to_vec()),
            )
        }
        SigningAlgorithm::EdDSA => {
            let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| fail())?;
            let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).map_err(|_| fail())?;
            let x = b64(pair.public_key().as_ref());
            let tp = thumbprint(&format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#));
            (
                json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": tp}),
                Zeroizing::new(doc.as_ref().to_vec()),
            )
        }
        SigningAlgorithm::RS256 => {
            let pair = aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048).map_err(|_| fail())?;
            let der = pair.as_der().map_err(|_| fail())?;
            let public = pair.public_key();
            let n = b64(public.modulus().big_endian_without_leading_zero());
            let e = b64(public.exponent().big_endian_without_leading_zero());
            let tp = thumbprint(&format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#));
            (
                json!({"kty": "RSA", "n": n, "e": e, "kid": tp}),
                Zeroizing::new(der.as_ref().to_vec()),
            )
        }
    };
    jwk["alg"] = json!(alg.as_str());
    jwk["use"] = json!("sig");
    Ok((jwk, pkcs8))
}

/// Generates a new signing key for `tenant`, sealed under `kek`.
pub fn generate_signing_key(
    tenant: &str,
    alg: SigningAlgorithm,
    state: KeyState,
    kek: &KeyEncryptionKey,
    now: u64,
) -> Result<SigningKeyRecord, KeyError> {
    let (jwk, pkcs8) = generate_key_material(alg)?;
    let kid = jwk["kid"].as_str().unwrap_or_default().to_string();
    let sealed_private_key = kek.seal(&aad(tenant, &kid), &pkcs8)?;
    Ok(SigningKeyRecord {
        kid,
        algorithm: alg,
        state,
        created_at: now,
        activated_at: (state == KeyState::Active).then_some(now),
        retired_at: None,
        public_jwk: jwk,
        sealed_private_key,
    })
}

enum PairKind {
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

/// A parsed, ready-to-sign private key.
pub struct SigningKey {
    /// The key's id, for the JWT header.
    pub kid: String,
    /// What it signs with.
    pub algorithm: SigningAlgorithm,
    pair: PairKind,
    rng: SystemRandom,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({} {})", self.algorithm, self.kid)
    }
}

impl SigningKey {
    /// Unseals a stored key; fails if the KEK, tenant or kid do not match what sealed it.
    pub fn open(
        tenant: &str,
        record: &SigningKeyRecord,
        kek: &KeyEncryptionKey,
    ) -> Result<Self, KeyError> {
        let pkcs8 = kek.open(
            &aad(tenant, &record.kid),
            &record.sealed_private_key,
            &record.kid,
        )?;
        let bad = || KeyError::BadPrivateKey {
            kid: record.kid.clone(),
            algorithm: record.algorithm,
        };
        let pair = match record.algorithm {
            SigningAlgorithm::ES256 => PairKind::Ec(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
                    .map_err(|_| bad())?,
            ),
            SigningAlgorithm::EdDSA => {
                PairKind::Ed(Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| bad())?)
            }
            SigningAlgorithm::RS256 => {
                PairKind::Rsa(RsaKeyPair::from_pkcs8(&pkcs8).map_err(|_| bad())?)
            }
        };
        Ok(SigningKey {
            kid: record.kid.clone(),
            algorithm: record.algorithm,
            pair,
            rng: SystemRandom::new(),
        })
    }

    /// Signs `message` (a JWS signing input) and returns the raw signature.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &self.pair {
            PairKind::Ec(pair) => pair
                .sign(&self.rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyError::Sign),
            PairKind::Ed(pair) => Ok(pair.sign(message).as_ref().to_vec()),
            PairKind::Rsa(pair) => {
                let mut sig = vec![0u8; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &self.rng, message, &mut sig)
                    .map_err(|_| KeyError::Sign)?;
                Ok(sig)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, jwk::Jwk};

    fn kek() -> KeyEncryptionKey {
        KeyEncryptionKey::generate().unwrap().0
    }

    #[test]
    fn every_algorithm_signs_what_its_published_jwk_verifies() {
        let kek = kek();
        for alg in [
            SigningAlgorithm::ES256,
            SigningAlgorithm::EdDSA,
            SigningAlgorithm::RS256,
        ] {
            let rec = generate_signing_key("acme", alg, KeyState::Active, &kek, 1).unwrap();
            assert_eq!(rec.public_jwk["kid"], rec.kid.as_str());
            assert_eq!(rec.public_jwk["alg"], alg.as_str());
            assert!(
                rec.public_jwk.get("d").is_none(),
                "no private member in the public JWK"
            );
            let key = SigningKey::open("acme", &rec, &kek).unwrap();
            let msg = b"header.payload";
            let sig = b64(&key.sign(msg).unwrap());
            let jwk: Jwk = serde_json::from_value(rec.public_jwk.clone()).unwrap();
            let dk = DecodingKey::from_jwk(&jwk).unwrap();
            let jalg = match alg {
                SigningAlgorithm::ES256 => jsonwebtoken::Algorithm::ES256,
                SigningAlgorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
                SigningAlgorithm::RS256 => jsonwebtoken::Algorithm::RS256,
            };
            assert!(
                jsonwebtoken::crypto::verify(&sig, msg, &dk, jalg).unwrap(),
                "{alg}"
            );
        }
    }

    #[test]
    fn sealed_keys_are_bound_to_kek_tenant_and_kid() {
        let kek = kek();
        let rec = generate_signing_key("acme", SigningAlgorithm::ES256, KeyState::Active, &kek, 1)
            .unwrap();
        assert!(!rec.sealed_private_key.contains("PRIVATE"));
        assert!(matches!(
            SigningKey::open("other", &rec, &kek),
            Err(KeyError::Unseal { .. })
        ));
        assert!(matches!(
            SigningKey::open("acme", &rec, &self::kek()),
            Err(KeyError::Unseal { .. })
        ));
        let mut moved = rec.clone();
        moved.kid = "different".into();
        assert!(SigningKey::open("acme", &moved, &kek).is_err());
    }

    #[test]
    fn kek_parsing_names_the_problem() {
        let (_, text) = KeyEncryptionKey::generate().unwrap();
        KeyEncryptionKey::from_base64(&format!("  {}\n", text.as_str())).unwrap();
        assert!(matches!(
            KeyEncryptionKey::from_base64("c2hvcnQ="),
            Err(KeyError::KekLength(5))
        ));
        assert!(matches!(
            KeyEncryptionKey::from_base64("***"),
            Err(KeyError::KekEncoding)
        ));
    }
}
