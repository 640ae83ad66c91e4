//! The `Tenant` resource: one issuer, its grant types, token lifetimes, keys, scopes and users.

use gatehouse_core::{GrantType, SigningAlgorithm, TokenFormat};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A DNS-1123 label, as the tenant name and namespaces are.
pub const DNS_LABEL_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// Kubernetes-style duration, as `gatehouse_core::duration` parses it.
pub const DURATION_PATTERN: &str = gatehouse_core::duration::DURATION_PATTERN;

/// A tenant of the authorization server: its own issuer (`{public-url}/{name}`), signing keys,
/// enabled grant types, token lifetimes, scopes and users.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "gatehouse.dev",
    version = "v1alpha1",
    kind = "Tenant",
    shortname = "tn",
    category = "gatehouse",
    status = "TenantStatus",
    derive = "PartialEq",
    doc = "A Gatehouse tenant: one OAuth 2.0 / OpenID Connect issuer with its own keys, grant types and clients.",
    printcolumn(name = "Issuer", type_ = "string", json_path = ".status.issuer"),
    printcolumn(name = "Grants", type_ = "string", json_path = ".spec.grantTypes"),
    printcolumn(name = "Clients", type_ = "integer", json_path = ".status.clients"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.users) || has(self.users.secretRef)", "message": "users needs a secretRef", "fieldPath": ".users"},
]))]
pub struct TenantSpec {
    /// Name shown on the tenant's login and consent pages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub display_name: Option<String>,

    /// The grant types this tenant's server enables. A grant not listed here is absent from the
    /// tenant's metadata and refused with `unsupported_grant_type`.
    #[schemars(length(min = 1, max = 8), extend("x-kubernetes-list-type" = "set"))]
    pub grant_types: Vec<GrantType>,

    /// Namespaces whose OAuthClients may join this tenant; `"*"` allows every namespace.
    /// Defaults to the namespace named like the tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 64),
        inner(
            regex(pattern = r"^(\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$"),
            length(max = 63)
        )
    )]
    pub client_namespaces: Option<Vec<String>>,

    /// Access token format and lifetime.
    #[serde(default)]
    pub access_token: AccessTokenSpec,

    /// Refresh token lifetime and rotation.
    #[serde(default)]
    pub refresh_token: RefreshTokenSpec,

    /// Authorization code lifetime.
    #[serde(default)]
    pub authorization_code: AuthorizationCodeSpec,

    /// Proof Key for Code Exchange (RFC 7636) policy.
    #[serde(default)]
    pub pkce: PkceSpec,

    /// Signing algorithm and key rotation.
    #[serde(default)]
    pub signing: SigningSpec,

    /// The tenant's scope vocabulary. `openid`, `profile`, `email` and `offline_access` are
    /// built in and need not be listed.
    #[serde(default)]
    #[schemars(length(max = 256), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub scopes: Vec<ScopeSpec>,

    /// The resource servers clients may name (RFC 8707 `resource`, the tokens' `aud`). An
    /// OAuthClient may list only audiences declared here, and only those its namespace may hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub audiences: Vec<AudienceSpec>,

    /// Let clients register plain `http` redirect URIs to hosts other than the loopback
    /// interface (RFC 8252 allows `http` only for `127.0.0.1`, `[::1]` and `localhost`). Off by
    /// default: a code sent over plain http can be read on the way.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_http_redirect_uris: bool,

    /// Which clients may assert which subjects: with the JWT bearer grant (RFC 7523 section
    /// 2.1), and as the subject tokens of a token exchange (RFC 8693). By default a client may
    /// assert only itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub subject_assertions: Vec<SubjectAssertionSpec>,

    /// Issuers besides this cluster whose signed tokens identify workloads (another cluster, a
    /// CI system): the operator reads their keys (https only), and each maps token subjects to
    /// clients that name it in `workloadIdentity.trustedIssuer`. The cluster's own
    /// ServiceAccount issuer needs no entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub trusted_issuers: Vec<TrustedIssuerSpec>,

    /// Ask the API server (TokenReview) about every ServiceAccount token a workload presents,
    /// so that a token bound to a pod stops working as soon as the pod is gone, not only when
    /// it expires. The token service then calls the API server at such sign-ins (answers kept
    /// 10 s) and needs the chart's `server.tokenReview.enabled`; without it those sign-ins
    /// answer 503.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub review_service_account_tokens: bool,

    /// Static users for the login page and the password grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<UsersSpec>,
}

/// An issuer whose tokens authenticate the clients it names, as their workload identity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!self.gracePeriod.matches('^(0+([.]0+)?(ms|s|m|h))+$')",
     "message": "must be more than zero", "fieldPath": ".gracePeriod"},
]))]
pub struct TrustedIssuerSpec {
    /// What clients call it (`workloadIdentity.trustedIssuer`).
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
        length(min = 1, max = 63)
    )]
    pub name: String,
    /// The tokens' `iss`, exactly: an `https` URL without query or fragment.
    #[schemars(
        length(min = 9, max = 512),
        regex(pattern = r"^https://[^/@?#\p{Cc}\p{Z}]+([/][^?#\p{Cc}\p{Z}]*)?$")
    )]
    pub issuer: String,
    /// Where its public keys are (`https`). Default: the `jwks_uri` of
    /// `{issuer}/.well-known/openid-configuration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 9, max = 512),
        regex(pattern = r"^https://[^/@?#\p{Cc}\p{Z}]+([/][^?#\p{Cc}\p{Z}]*)?$")
    )]
    pub jwks_uri: Option<String>,
    /// Which token subject (`sub`, matched exactly) authenticates which client.
    #[serde(default)]
    #[schemars(length(max = 256), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["subject"]))]
    pub subjects: Vec<IssuerSubjectSpec>,
    /// How long the keys last read keep working while the issuer cannot be reached. Default
    /// `24h`.
    #[serde(default = "default_issuer_grace")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"), length(max = 32))]
    pub grace_period: String,
}

fn default_issuer_grace() -> String {
    "24h".into()
}

/// One subject of a trusted issuer and the client its tokens authenticate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerSubjectSpec {
    /// The tokens' `sub`, matched exactly (say `repo:acme/billing:ref:refs/heads/main`).
    #[schemars(length(min = 1, max = 512), regex(pattern = r"^[^\p{Cc}]+$"))]
    pub subject: String,
    /// The client those tokens authenticate; it must name this issuer in
    /// `workloadIdentity.trustedIssuer`.
    pub client: ClientRefSpec,
}

/// A resource server clients of this tenant may ask tokens for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AudienceSpec {
    /// The `resource` value and the tokens' `aud`: an absolute URI or a plain name.
    #[schemars(length(min = 1, max = 512))]
    pub name: String,
    /// Namespaces whose clients may hold this audience; default: every namespace the tenant
    /// admits. `"*"` also means every admitted namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 64),
        inner(
            regex(pattern = r"^(\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$"),
            length(max = 63)
        )
    )]
    pub namespaces: Option<Vec<String>>,
}

/// One grant of the right to assert subjects other than oneself (RFC 7523 section 2.1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubjectAssertionSpec {
    /// The client whose registered keys sign the assertions.
    pub signer: ClientRefSpec,
    /// Usernames the signer may assert; `"*"` for every user of the tenant. A user must exist
    /// when the assertion is presented.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 256)))]
    pub users: Vec<String>,
    /// Clients the signer may act as (asserted as `client:<client_id>`), each named by its
    /// namespace and client id: a freed id claimed from another namespace is someone else.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub clients: Vec<ClientRefSpec>,
    /// In a token exchange (RFC 8693), the signer may also act as these subjects without an
    /// actor token (impersonation: the new token has no `act` claim). Without it, a subject
    /// token of these subjects is exchanged only with the signer's own actor token
    /// (delegation, named in `act`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub impersonation: bool,
}

/// A client, named by its namespace and client id: a client id alone could be claimed by
/// another namespace once freed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientRefSpec {
    /// The OAuthClient's namespace.
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
        length(min = 1, max = 63)
    )]
    pub namespace: String,
    /// Its client id.
    #[schemars(length(min = 1, max = 128))]
    pub client_id: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessTokenSpec {
    /// `jwt` (RFC 9068, verifiable offline) or `opaque` (introspection only, revocable at once).
    #[serde(default)]
    pub format: TokenFormat,
    /// Lifetime, e.g. `15m`.
    #[serde(default = "default_access_ttl")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"), length(max = 32))]
    pub ttl: String,
}

impl Default for AccessTokenSpec {
    fn default() -> Self {
        AccessTokenSpec {
            format: TokenFormat::default(),
            ttl: default_access_ttl(),
        }
    }
}

fn default_access_ttl() -> String {
    "15m".into()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefreshTokenSpec {
    /// Lifetime, e.g. `720h`.
    #[serde(default = "default_refresh_ttl")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"), length(max = 32))]
    pub ttl: String,
    /// Issue a new refresh token on every use and revoke the whole family when a used one is
    /// presented again.
    #[serde(default = "default_true")]
    pub rotation: bool,
}

impl Default for RefreshTokenSpec {
    fn default() -> Self {
        RefreshTokenSpec {
            ttl: default_refresh_ttl(),
            rotation: true,
        }
    }
}

fn default_refresh_ttl() -> String {
    "720h".into()
}

fn default_true() -> bool {
    true
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationCodeSpec {
    /// Lifetime, e.g. `60s`. Codes are single-use whatever their lifetime.
    #[serde(default = "default_code_ttl")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"), length(max = 32))]
    pub ttl: String,
}

impl Default for AuthorizationCodeSpec {
    fn default() -> Self {
        AuthorizationCodeSpec {
            ttl: default_code_ttl(),
        }
    }
}

fn default_code_ttl() -> String {
    "60s".into()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PkceSpec {
    /// Require PKCE with S256 from every authorization_code client (public clients always must).
    #[serde(default = "default_true")]
    pub required: bool,
}

impl Default for PkceSpec {
    fn default() -> Self {
        PkceSpec { required: true }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SigningSpec {
    /// `ES256` (default), `EdDSA` or `RS256`.
    #[serde(default)]
    pub algorithm: SigningAlgorithm,
    /// How often the signing key is rotated, e.g. `720h`.
    #[serde(default = "default_refresh_ttl")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"), length(max = 32))]
    pub rotation_interval: String,
}

impl Default for SigningSpec {
    fn default() -> Self {
        SigningSpec {
            algorithm: SigningAlgorithm::default(),
            rotation_interval: default_refresh_ttl(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScopeSpec {
    /// The scope token (RFC 6749 section 3.3 characters only).
    #[schemars(
        regex(pattern = r"^[\x21\x23-\x5B\x5D-\x7E]+$"),
        length(min = 1, max = 128)
    )]
    pub name: String,
    /// Shown on the consent page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub description: Option<String>,
    /// Namespaces whose clients may hold this scope; default: every namespace the tenant
    /// admits. `"*"` also means every admitted namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 64),
        inner(
            regex(pattern = r"^(\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$"),
            length(max = 63)
        )
    )]
    pub namespaces: Option<Vec<String>>,
}

/// Whether a `namespaces` list (of a scope or an audience) lets `namespace`'s clients hold it.
#[must_use]
pub fn namespaces_allow(namespaces: Option<&[String]>, namespace: &str) -> bool {
    namespaces.is_none_or(|list| list.iter().any(|n| n == "*" || n == namespace))
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsersSpec {
    /// A Secret with key `users.yaml` listing users with argon2id password hashes.
    pub secret_ref: NamespacedSecretRef,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespacedSecretRef {
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
        length(min = 1, max = 253)
    )]
    pub name: String,
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
        length(min = 1, max = 63)
    )]
    pub namespace: String,
}

/// What the controller last observed and did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantStatus {
    /// The tenant's issuer URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: the tenant is live in the token service.
    #[serde(default)]
    #[schemars(schema_with = "crate::schema::conditions")]
    pub conditions: Vec<Condition>,
    /// OAuthClients currently registered with this tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clients: Option<i32>,
    /// The tenant's signing keys and their state.
    #[serde(default)]
    pub signing_keys: Vec<SigningKeyStatus>,
    /// What the operator last read from each of `spec.trustedIssuers`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_issuers: Vec<TrustedIssuerStatus>,
}

/// One trusted issuer as last read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrustedIssuerStatus {
    pub name: String,
    /// The issuer read (`spec.trustedIssuers[].issuer`).
    pub issuer: String,
    /// `Ready`, `IssuerUnreachable` (the last keys read still work until `keysValidUntil`),
    /// `KeysExpired` (unreachable for longer than the grace period: its tokens are refused),
    /// or `Pending` (not read yet).
    pub state: String,
    /// The last error, or what was read.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Where the keys were read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// How many keys the last good read held.
    #[serde(default)]
    pub keys: i32,
    /// When the keys were last read successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_read_time: Option<Time>,
    /// Until when the keys last read are used if the issuer stays unreachable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys_valid_until: Option<Time>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SigningKeyStatus {
    pub kid: String,
    pub algorithm: SigningAlgorithm,
    /// `active` signs, `next` is published ahead of rotation, `retired` verifies until expiry.
    pub state: String,
    pub created_at: Time,
}
