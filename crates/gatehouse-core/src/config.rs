//! The registrations the reconcile core writes to the store and the server reads back.
//!
//! These are the validated, effective settings: a `Tenant` or `OAuthClient` spec becomes one of
//! these only after the reconcile core accepted it, so the server never re-validates them.

use crate::model::{ClientAuthMethod, GrantType, SigningAlgorithm, TokenFormat};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A scope of the tenant's vocabulary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeConfig {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The scopes every tenant understands without declaring them.
pub const BUILT_IN_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// A tenant as the token service sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantConfig {
    /// The tenant's name: the issuer's path segment and the store's partition.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    pub grant_types: Vec<GrantType>,
    pub access_token_format: TokenFormat,
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,
    pub refresh_token_rotation: bool,
    pub authorization_code_ttl_secs: u64,
    pub pkce_required: bool,
    pub signing_algorithm: SigningAlgorithm,
    /// Declared scopes (the built-in ones are implied, see [`BUILT_IN_SCOPES`]).
    pub scopes: Vec<ScopeConfig>,
    /// Static users (from the tenant's users Secret) for login and the password grant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<UserConfig>,
}

/// A user of a tenant. Only an argon2id hash of the password is ever held.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserConfig {
    pub username: String,
    pub password_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

impl std::fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserConfig")
            .field("username", &self.username)
            .field("password_hash", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl TenantConfig {
    pub fn enables(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }

    /// Whether `scope` is part of the tenant's vocabulary.
    pub fn knows_scope(&self, scope: &str) -> bool {
        BUILT_IN_SCOPES.contains(&scope) || self.scopes.iter().any(|s| s.name == scope)
    }

    pub fn user(&self, username: &str) -> Option<&UserConfig> {
        self.users.iter().find(|u| u.username == username)
    }
}

/// A client as the token service sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientConfig {
    pub client_id: String,
    /// `namespace/name` of the `OAuthClient` this came from, for logs and metrics.
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    pub public: bool,
    /// The effective grant types: requested by the client and enabled by the tenant.
    pub grant_types: Vec<GrantType>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    #[serde(default)]
    pub audiences: Vec<String>,
    pub token_endpoint_auth_method: ClientAuthMethod,
    /// argon2id PHC string of the client secret; `None` for public and `private_key_jwt` clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_hash: Option<String>,
    /// The client's public JWK Set, as registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    /// Random, fixed when the registration is first written and new for every re-creation:
    /// refresh tokens carry it, so deleting a client revokes them all, even if a client with
    /// the same id is registered again later.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub incarnation: String,
    /// Free-form annotations for later features; kept so records stay forward compatible.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

impl ClientConfig {
    pub fn may_use(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }
}
