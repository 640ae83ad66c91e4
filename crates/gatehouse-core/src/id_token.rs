//! OpenID Connect ID tokens and the user claims released by scope (Core 1.0 sections 2, 5.4).

use crate::config::UserConfig;
use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::model::SigningAlgorithm;

/// The JOSE `typ` of ID tokens (distinct from access tokens' `at+jwt`).
pub const ID_TOKEN_TYP: &str = "JWT";

/// The claims of an ID token (OpenID Connect Core 2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IdTokenClaims {
    /// The tenant's issuer.
    pub iss: String,
    /// The user.
    pub sub: String,
    /// The client it is for.
    pub aud: String,
    /// The client it was issued to (the same as `aud`).
    pub azp: String,
    /// Unix seconds.
    pub exp: u64,
    /// Unix seconds.
    pub iat: u64,
    /// When the user signed in (unix seconds).
    pub auth_time: u64,
    /// The authorization request's `nonce`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Binds the ID token to its access token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_hash: Option<String>,
    /// The sign-in session, for logout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Profile and email claims the scopes release.
    #[serde(flatten)]
    pub user_claims: Map<String, Value>,
}

/// `at_hash`: the left half of the hash of the access token, with the hash of the signing
/// algorithm (SHA-256 for ES256 and RS256, SHA-512 for EdDSA with Ed25519).
pub fn at_hash(access_token: &str, alg: SigningAlgorithm) -> String {
    let algorithm = match alg {
        SigningAlgorithm::EdDSA => &digest::SHA512,
        _ => &digest::SHA256,
    };
    let d = digest::digest(algorithm, access_token.as_bytes());
    let bytes = d.as_ref();
    URL_SAFE_NO_PAD.encode(&bytes[..bytes.len() / 2])
}

/// Claims about the user released by `scopes`: `profile` → name, `email` → email and
/// email_verified (addresses come from the operator, so they count as verified), and groups
/// with either.
pub fn user_claims(user: &UserConfig, scopes: &[&str]) -> Map<String, Value> {
    let mut out = Map::new();
    let profile = scopes.contains(&"profile");
    let email = scopes.contains(&"email");
    if profile {
        out.insert("preferred_username".into(), json!(user.username));
        if let Some(name) = &user.name {
            out.insert("name".into(), json!(name));
        }
    }
    if email && let Some(address) = &user.email {
        out.insert("email".into(), json!(address));
        out.insert("email_verified".into(), json!(true));
    }
    if (profile || email) && !user.groups.is_empty() {
        out.insert("groups".into(), json!(user.groups));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_hash_matches_the_openid_example() {
        // OpenID Connect Core, appendix A.3 (RS256).
        assert_eq!(
            at_hash(
                "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y",
                SigningAlgorithm::RS256
            ),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
    }

    #[test]
    fn claims_follow_scopes() {
        let user = UserConfig {
            username: "alice".into(),
            password_hash: String::new(),
            email: Some("alice@example.com".into()),
            name: Some("Alice".into()),
            groups: vec!["finance".into()],
        };
        assert!(user_claims(&user, &["openid"]).is_empty());
        let p = user_claims(&user, &["openid", "profile"]);
        assert_eq!(p["name"], "Alice");
        assert!(p.get("email").is_none());
        let e = user_claims(&user, &["openid", "email"]);
        assert_eq!(
            (e["email"].clone(), e["email_verified"].clone()),
            (json!("alice@example.com"), json!(true))
        );
        assert_eq!(e["groups"], json!(["finance"]));
    }
}
