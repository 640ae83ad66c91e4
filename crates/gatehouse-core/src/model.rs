//! The small vocabularies shared by the CRDs, the store records and the protocol logic.
//!
//! They live here, once, so that the string a user writes in a `Tenant` is the same value the
//! token endpoint compares against.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// An OAuth 2.0 grant type, spelled as on the wire (`grant_type` parameter, RFC 8414 metadata).
// The variants carry plain comments: doc comments would become descriptions in the CRD
// schema, turning its `enum` into a `oneOf`.
#[allow(missing_docs)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum GrantType {
    // RFC 6749 section 4.1, always with PKCE (RFC 7636) support.
    #[serde(rename = "authorization_code")]
    AuthorizationCode,
    // RFC 6749 section 4.2 (legacy).
    #[serde(rename = "implicit")]
    Implicit,
    // RFC 6749 section 4.3, resource owner password credentials.
    #[serde(rename = "password")]
    Password,
    // RFC 6749 section 4.4.
    #[serde(rename = "client_credentials")]
    ClientCredentials,
    // RFC 6749 section 6.
    #[serde(rename = "refresh_token")]
    RefreshToken,
    // RFC 7523 section 2.1.
    #[serde(rename = "urn:ietf:params:oauth:grant-type:jwt-bearer")]
    JwtBearer,
    // RFC 8628.
    #[serde(rename = "urn:ietf:params:oauth:grant-type:device_code")]
    DeviceCode,
    // RFC 8693.
    #[serde(rename = "urn:ietf:params:oauth:grant-type:token-exchange")]
    TokenExchange,
}

impl GrantType {
    /// Every grant, in the order the CRD documents them.
    pub const ALL: [GrantType; 8] = [
        GrantType::AuthorizationCode,
        GrantType::Implicit,
        GrantType::Password,
        GrantType::ClientCredentials,
        GrantType::RefreshToken,
        GrantType::JwtBearer,
        GrantType::DeviceCode,
        GrantType::TokenExchange,
    ];

    /// The `grant_type` value (and the CRD's spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::Implicit => "implicit",
            GrantType::Password => "password",
            GrantType::ClientCredentials => "client_credentials",
            GrantType::RefreshToken => "refresh_token",
            GrantType::JwtBearer => "urn:ietf:params:oauth:grant-type:jwt-bearer",
            GrantType::DeviceCode => "urn:ietf:params:oauth:grant-type:device_code",
            GrantType::TokenExchange => "urn:ietf:params:oauth:grant-type:token-exchange",
        }
    }

    /// A short name for tables: the URNs without their `urn:ietf:params:oauth:grant-type:`
    /// prefix, `authorization_code` as `code`, `refresh_token` as `refresh`.
    pub fn short_name(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "code",
            GrantType::RefreshToken => "refresh",
            GrantType::JwtBearer => "jwt-bearer",
            GrantType::DeviceCode => "device_code",
            GrantType::TokenExchange => "token-exchange",
            other => other.as_str(),
        }
    }

    // Parses the `grant_type` request parameter. `implicit` is not a token-endpoint grant
    // (it has no `grant_type` value in RFC 6749), so it never parses here.
    /// Parses the `grant_type` request parameter. `implicit` is not a token-endpoint grant (it has
    /// no `grant_type` value in RFC 6749), so it never parses here.
    pub fn from_token_request(value: &str) -> Option<GrantType> {
        GrantType::ALL
            .into_iter()
            .find(|g| *g != GrantType::Implicit && g.as_str() == value)
    }
}

impl fmt::Display for GrantType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// JWS algorithms a tenant may sign with.
// The variants carry plain comments: doc comments would become descriptions in the CRD
// schema, turning its `enum` into a `oneOf`.
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum SigningAlgorithm {
    // ECDSA with P-256 and SHA-256: small keys, fast signatures; the default.
    #[default]
    ES256,
    // Ed25519: the fastest to sign and verify.
    EdDSA,
    // RSASSA-PKCS1-v1_5 with SHA-256 and a 2048-bit key, for relying parties that know nothing else.
    RS256,
}

impl SigningAlgorithm {
    /// The JWS `alg` value.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlgorithm::ES256 => "ES256",
            SigningAlgorithm::EdDSA => "EdDSA",
            SigningAlgorithm::RS256 => "RS256",
        }
    }
}

impl fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How access tokens are represented.
// The variants carry plain comments: doc comments would become descriptions in the CRD
// schema, turning its `enum` into a `oneOf`.
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TokenFormat {
    // RFC 9068 JWT access tokens, verifiable offline against the tenant's JWKS.
    #[default]
    Jwt,
    // Random handles; resource servers must introspect them (RFC 7662). Revocation is immediate.
    Opaque,
}

/// Client authentication methods at the token, introspection and revocation endpoints
/// (names from the IANA "OAuth Token Endpoint Authentication Methods" registry).
// The variants carry plain comments: doc comments would become descriptions in the CRD
// schema, turning its `enum` into a `oneOf`.
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMethod {
    // HTTP Basic with the form-encoded client id and secret (RFC 6749 section 2.3.1).
    #[default]
    ClientSecretBasic,
    // `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    // A JWT assertion signed by a key in the client's `jwks` (RFC 7523 section 2.2).
    PrivateKeyJwt,
    // Public clients: no authentication, `client_id` only.
    None,
}

impl ClientAuthMethod {
    /// The name as registered with IANA and written in the CRDs.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuthMethod::ClientSecretBasic => "client_secret_basic",
            ClientAuthMethod::ClientSecretPost => "client_secret_post",
            ClientAuthMethod::PrivateKeyJwt => "private_key_jwt",
            ClientAuthMethod::None => "none",
        }
    }
}

impl fmt::Display for ClientAuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_types_round_trip_through_their_wire_names() {
        for g in GrantType::ALL {
            let json = serde_json::to_string(&g).unwrap();
            assert_eq!(json, format!("\"{}\"", g.as_str()));
            assert_eq!(serde_json::from_str::<GrantType>(&json).unwrap(), g);
        }
        assert_eq!(GrantType::from_token_request("implicit"), None);
        assert_eq!(
            GrantType::from_token_request("urn:ietf:params:oauth:grant-type:jwt-bearer"),
            Some(GrantType::JwtBearer)
        );
    }
}
