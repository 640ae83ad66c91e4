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
    /// The scope value clients ask for.
    pub name: String,
    /// What the consent page says the scope allows.
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
    /// Shown on the sign-in and consent pages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The grants the tenant's server enables.
    pub grant_types: Vec<GrantType>,
    /// JWT (RFC 9068) or opaque.
    pub access_token_format: TokenFormat,
    /// How long access tokens (and ID tokens) live.
    pub access_token_ttl_secs: u64,
    /// How long a grant can be refreshed: a family's lifetime, not extended by rotation.
    pub refresh_token_ttl_secs: u64,
    /// Whether each refresh hands out a successor and spends the presented token.
    pub refresh_token_rotation: bool,
    /// How long an authorization code may wait to be redeemed.
    pub authorization_code_ttl_secs: u64,
    /// Whether every authorization-code request must carry a PKCE S256 challenge.
    pub pkce_required: bool,
    /// What the tenant's keys sign with.
    pub signing_algorithm: SigningAlgorithm,
    /// Declared scopes (the built-in ones are implied, see [`BUILT_IN_SCOPES`]).
    pub scopes: Vec<ScopeConfig>,
    /// Static users (from the tenant's users Secret) for login and the password grant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<UserConfig>,
    /// Whether each ServiceAccount token a workload presents is also reviewed by the API
    /// server (TokenReview), so a token bound to a deleted pod stops at once.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub review_service_account_tokens: bool,
}

/// A user of a tenant. Only an argon2id hash of the password is ever held.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserConfig {
    /// What the person types to sign in.
    pub username: String,
    /// argon2id PHC string of the password.
    pub password_hash: String,
    /// Released with the `email` scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Released with the `profile` scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Released with `profile` or `email`.
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
    /// Whether the tenant's server serves `grant`.
    pub fn enables(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }

    /// Whether `scope` is part of the tenant's vocabulary.
    pub fn knows_scope(&self, scope: &str) -> bool {
        BUILT_IN_SCOPES.contains(&scope) || self.scopes.iter().any(|s| s.name == scope)
    }

    /// The static user with this username.
    pub fn user(&self, username: &str) -> Option<&UserConfig> {
        self.users.iter().find(|u| u.username == username)
    }
}

/// A client as the token service sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientConfig {
    /// Unique within the tenant; what clients authenticate as.
    pub client_id: String,
    /// `namespace/name` of the `OAuthClient` this came from, for logs and metrics.
    pub source: String,
    /// Shown on the consent page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// A public client has no secret: it authenticates with `none` and must use PKCE.
    pub public: bool,
    /// The effective grant types: requested by the client and enabled by the tenant.
    pub grant_types: Vec<GrantType>,
    /// Exact-match redirect URIs (authorization code, implicit).
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Where the end-session endpoint may send the browser afterwards.
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// Scopes the client may ask for.
    pub scopes: Vec<String>,
    /// `resource` values (RFC 8707) the client may ask tokens for; its tokens' `aud`.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// How the client authenticates at the token endpoint.
    pub token_endpoint_auth_method: ClientAuthMethod,
    /// argon2id PHC string of the client secret; `None` for public and `private_key_jwt` clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_hash: Option<String>,
    /// The client's public JWK Set, as registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    /// Subjects other than itself this client may assert with the JWT bearer grant, as its
    /// Tenant's `spec.subjectAssertions` grants them (empty: only itself).
    #[serde(default, skip_serializing_if = "AssertableSubjects::is_empty")]
    pub may_assert: AssertableSubjects,
    /// Random, fixed when the registration is first written and new for every re-creation:
    /// refresh tokens carry it, so deleting a client revokes them all, even if a client with
    /// the same id is registered again later.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub incarnation: String,
    /// For a client that authenticates with a Kubernetes ServiceAccount token: the account it
    /// is bound to and the keys that sign such tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadIdentity>,
    /// For a client that authenticates with tokens of one of its tenant's trusted issuers:
    /// the subjects mapped to it and the issuer's keys as last read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federated: Option<FederatedIdentity>,
    /// Free-form annotations for later features; kept so records stay forward compatible.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

/// What binds a client to one Kubernetes ServiceAccount: the operator resolves it (the
/// account's uid, the cluster's token issuer and its keys) so that the token service verifies
/// ServiceAccount tokens without calling out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadIdentity {
    /// `system:serviceaccount:<namespace>:<name>`: the tokens' `sub`.
    pub subject: String,
    /// The ServiceAccount's uid when it was resolved: a token of an account deleted and
    /// created again under the same name is someone else's.
    pub service_account_uid: String,
    /// The cluster's ServiceAccount token issuer (`iss`).
    pub issuer: String,
    /// Its public keys (a JWK Set), as the API server publishes them.
    pub jwks: serde_json::Value,
}

/// What binds a client to subjects of an issuer outside the cluster (a Tenant's trusted
/// issuer): the operator reads the issuer's keys and writes them here, so that the token
/// service verifies those tokens without calling out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FederatedIdentity {
    /// The name of the tenant's trusted issuer (`spec.trustedIssuers[].name`) it came from.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The tokens' `iss`.
    pub issuer: String,
    /// The `sub` values that authenticate this client (exact matches).
    pub subjects: Vec<String>,
    /// The issuer's public keys (a JWK Set); empty once they are too old to trust.
    pub jwks: serde_json::Value,
}

/// Whom a client may name as the subject of an RFC 7523 assertion besides itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssertableSubjects {
    /// Usernames; `"*"` for every user of the tenant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// Clients it may act as.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clients: Vec<ClientRef>,
    /// Token exchange without an actor token (impersonation) is allowed for these subjects.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub impersonation: bool,
}

/// A client named by its namespace and client id (a client id alone may change hands).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ClientRef {
    /// The OAuthClient's namespace.
    pub namespace: String,
    /// Its client id.
    pub client_id: String,
}

impl AssertableSubjects {
    /// True when the client may assert only itself.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.clients.is_empty()
    }

    /// Whether the user `username` may be asserted (whether the user exists is asked apart).
    #[must_use]
    pub fn user(&self, username: &str) -> bool {
        self.users.iter().any(|u| u == "*" || u == username)
    }

    /// Whether the client `client_id`, registered from `namespace`, may be asserted.
    #[must_use]
    pub fn client(&self, namespace: &str, client_id: &str) -> bool {
        self.clients
            .iter()
            .any(|c| c.namespace == namespace && c.client_id == client_id)
    }
}

impl ClientConfig {
    /// The namespace of the `OAuthClient` this came from.
    #[must_use]
    pub fn namespace(&self) -> &str {
        self.source.split_once('/').map_or("", |(ns, _)| ns)
    }

    /// Whether the client may use `grant` (its effective grant types).
    pub fn may_use(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }
}
