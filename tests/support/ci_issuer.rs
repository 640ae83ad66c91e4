//! A CI system as a trusted issuer: a real HTTPS server with its own CA publishing discovery
//! and keys, and the ES256 job tokens it signs.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_testkit::https::{HttpsServer, Reply};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// The subject the tests map: a job on the main branch.
pub const MAIN: &str = "repo:forge/app:ref:refs/heads/main";

/// A signing key and its public JWK.
pub struct Key {
    pkcs8: Vec<u8>,
    pub jwk: Value,
}

impl Key {
    pub fn new(kid: &str) -> Key {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap();
        let p = pair.public_key().as_ref();
        let jwk = json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..65])});
        Key {
            pkcs8: doc.as_ref().to_vec(),
            jwk,
        }
    }
}

pub fn now() -> u64 {
    gatehouse_core::clock::Clock::now(&gatehouse_core::clock::SystemClock)
}

/// The issuer: `issuer` is the server's root URL.
pub struct CiIssuer {
    pub server: HttpsServer,
    pub issuer: String,
}

impl CiIssuer {
    pub fn start(keys: &[&Key]) -> CiIssuer {
        let server = HttpsServer::start();
        let issuer = server.url("");
        server.set(
            "/.well-known/openid-configuration",
            Reply::json(&json!({"issuer": issuer, "jwks_uri": server.url("/.well-known/jwks")})),
        );
        let ci = CiIssuer { server, issuer };
        ci.publish(keys);
        ci
    }

    /// Publishes exactly `keys`.
    pub fn publish(&self, keys: &[&Key]) {
        self.server.set(
            "/.well-known/jwks",
            Reply::json(&json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})),
        );
    }

    /// A job token for `audience` (`sub` MAIN, five minutes), with `change` applied.
    pub fn token(&self, key: &Key, audience: &str, change: impl FnOnce(&mut Value)) -> String {
        let mut claims = json!({"iss": self.issuer, "sub": MAIN, "aud": audience,
            "iat": now() - 5, "nbf": now() - 5, "exp": now() + 300, "jti": "run-1"});
        change(&mut claims);
        let mut h = Header::new(Algorithm::ES256);
        h.kid = key.jwk["kid"].as_str().map(String::from);
        jsonwebtoken::encode(&h, &claims, &EncodingKey::from_ec_der(&key.pkcs8)).unwrap()
    }

    /// The environment that lets `operator` or `standalone` read this issuer (its CA, a
    /// loopback address, a one-second refresh).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "GATEHOUSE_TRUSTED_ISSUER_CA_FILE",
                self.server.ca_file().display().to_string(),
            ),
            (
                "GATEHOUSE_ALLOW_PRIVATE_ISSUER_ADDRESSES",
                "true".to_string(),
            ),
            ("GATEHOUSE_TRUSTED_ISSUER_REFRESH", "1s".to_string()),
        ]
    }
}

/// `client_credentials` for `client_id`, authenticated by `assertion`.
pub async fn sign_in(token_url: &str, client_id: &str, assertion: &str) -> super::Reply {
    super::post_form(
        token_url,
        None,
        &super::form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion),
        ]),
    )
    .await
}
