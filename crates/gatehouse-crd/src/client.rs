//! The `OAuthClient` resource: a client registration that joins a tenant.

use gatehouse_core::{ClientAuthMethod, GrantType};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An OAuth 2.0 client of a tenant. Its Secret (see `secretRef`) holds the credentials.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "gatehouse.dev",
    version = "v1alpha1",
    kind = "OAuthClient",
    namespaced,
    shortname = "oac",
    category = "gatehouse",
    status = "OAuthClientStatus",
    derive = "PartialEq",
    doc = "An OAuth 2.0 / OpenID Connect client registered with a Gatehouse tenant.",
    printcolumn(name = "Tenant", type_ = "string", json_path = ".spec.tenantRef"),
    printcolumn(name = "Client-ID", type_ = "string", json_path = ".status.clientId"),
    printcolumn(name = "Grants", type_ = "string", json_path = ".status.grantTypes"),
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
    {"rule": "!self.public || !has(self.tokenEndpointAuthMethod) || self.tokenEndpointAuthMethod == 'none'",
     "message": "public clients have no secret: tokenEndpointAuthMethod must be none",
     "fieldPath": ".tokenEndpointAuthMethod"},
    {"rule": "self.public || !has(self.tokenEndpointAuthMethod) || self.tokenEndpointAuthMethod != 'none'",
     "message": "tokenEndpointAuthMethod none is only for public clients",
     "fieldPath": ".tokenEndpointAuthMethod"},
    {"rule": "!self.public || !self.grantTypes.exists(g, g == 'client_credentials' || g == 'password')",
     "message": "public clients cannot use client_credentials or password",
     "fieldPath": ".grantTypes"},
    {"rule": "!self.grantTypes.exists(g, g == 'authorization_code' || g == 'implicit') || size(self.redirectUris) > 0",
     "message": "authorization_code and implicit need at least one redirectUris entry",
     "fieldPath": ".redirectUris"},
    {"rule": "!(has(self.tokenEndpointAuthMethod) && self.tokenEndpointAuthMethod == 'private_key_jwt') || has(self.workloadIdentity) || (has(self.jwks) && size(self.jwks.keys) > 0)",
     "message": "private_key_jwt needs the client's public keys in jwks",
     "fieldPath": ".jwks"},
    {"rule": "!self.grantTypes.exists(g, g == 'urn:ietf:params:oauth:grant-type:jwt-bearer') || (has(self.jwks) && size(self.jwks.keys) > 0)",
     "message": "the jwt-bearer grant needs the assertion signers' public keys in jwks",
     "fieldPath": ".jwks"},
    {"rule": "!has(self.workloadIdentity) || !self.public",
     "message": "workloadIdentity is for confidential clients: public must be false",
     "fieldPath": ".workloadIdentity"},
    {"rule": "!has(self.workloadIdentity) || !has(self.tokenEndpointAuthMethod) || self.tokenEndpointAuthMethod == 'private_key_jwt'",
     "message": "a workloadIdentity client authenticates with its ServiceAccount token (private_key_jwt): leave tokenEndpointAuthMethod unset",
     "fieldPath": ".tokenEndpointAuthMethod"},
    {"rule": "!has(self.workloadIdentity) || !has(self.workloadIdentity.serviceAccountName) || self.workloadIdentity.serviceAccountName != 'default'",
     "message": "bind a ServiceAccount of its own: every pod of the namespace that names none runs as default",
     "fieldPath": ".workloadIdentity.serviceAccountName"},
    {"rule": "!has(self.workloadIdentity) || !has(self.secretRef)",
     "message": "a workloadIdentity client uses no Secret: remove secretRef",
     "fieldPath": ".secretRef"},
    {"rule": "!has(oldSelf.clientId) || (has(self.clientId) && self.clientId == oldSelf.clientId)",
     "message": "clientId cannot change once set",
     "fieldPath": ".clientId"},
    {"rule": "self.tenantRef == oldSelf.tenantRef",
     "message": "tenantRef cannot change; create a new OAuthClient to join another tenant",
     "fieldPath": ".tenantRef"},
]))]
pub struct OAuthClientSpec {
    /// Name of the Tenant this client joins.
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
        length(min = 1, max = 63)
    )]
    pub tenant_ref: String,

    /// The OAuth client_id. Defaults to `{namespace}-{name}`; must be unique within the tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._~-]*$"),
        length(min = 1, max = 128)
    )]
    pub client_id: Option<String>,

    /// Human-readable name shown on the consent page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub client_name: Option<String>,

    /// Public clients (browser and native apps) have no secret, authenticate with `none` and
    /// must use PKCE.
    #[serde(default)]
    pub public: bool,

    /// Grant types this client may use; grants the tenant does not enable are dropped (and
    /// reported in the Accepted condition).
    #[schemars(length(min = 1, max = 8), extend("x-kubernetes-list-type" = "set"))]
    pub grant_types: Vec<GrantType>,

    /// Redirect URIs for authorization_code and implicit, matched exactly.
    #[serde(default)]
    #[schemars(
        length(max = 32),
        inner(
            regex(pattern = r"^[A-Za-z][A-Za-z0-9+.-]*:[^#\s]+$"),
            length(max = 2048)
        )
    )]
    pub redirect_uris: Vec<String>,

    /// Where the end-session endpoint may send the browser after logout, matched exactly.
    #[serde(default)]
    #[schemars(
        length(max = 32),
        inner(
            regex(pattern = r"^[A-Za-z][A-Za-z0-9+.-]*:[^#\s]+$"),
            length(max = 2048)
        )
    )]
    pub post_logout_redirect_uris: Vec<String>,

    /// Scopes this client may request (from the tenant's vocabulary or the built-in ones).
    #[serde(default)]
    #[schemars(
        length(max = 256),
        inner(regex(pattern = r"^[\x21\x23-\x5B\x5D-\x7E]+$"), length(max = 128))
    )]
    pub scopes: Vec<String>,

    /// Audiences (`resource` values, RFC 8707) this client may request tokens for.
    #[serde(default)]
    #[schemars(length(max = 32), inner(length(min = 1, max = 2048)))]
    pub audiences: Vec<String>,

    /// How the client authenticates at the token endpoint. Defaults to `client_secret_basic`,
    /// or `none` for public clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_method: Option<ClientAuthMethod>,

    /// Public keys (a JWK Set) for `private_key_jwt` and jwt-bearer assertions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<JwkSet>,

    /// The Secret (in this namespace) holding `client_secret`. Defaults to
    /// `{name}-credentials`, generated if missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<ClientSecretRef>,

    /// Authenticate with the projected token of a ServiceAccount in this namespace instead of
    /// a secret: no Secret is read or generated, and the client authenticates with
    /// `private_key_jwt` whose assertion is the ServiceAccount token (audience: the tenant's
    /// issuer or token endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_identity: Option<WorkloadIdentitySpec>,
}

/// Whose signed tokens authenticate a client instead of a secret: a ServiceAccount of the
/// client's own namespace, or the subjects its Tenant maps to it from one of the Tenant's
/// `trustedIssuers`. Exactly one of the two.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.serviceAccountName) != has(self.trustedIssuer)",
     "message": "name either serviceAccountName or trustedIssuer, not both"},
]))]
pub struct WorkloadIdentitySpec {
    /// A ServiceAccount in the client's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
        length(min = 1, max = 253)
    )]
    pub service_account_name: Option<String>,
    /// The `name` of one of the Tenant's `trustedIssuers`: tokens of the subjects the Tenant
    /// maps to this client (`trustedIssuers[].subjects`) authenticate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
        length(min = 1, max = 63)
    )]
    pub trusted_issuer: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.keys.all(k, !has(k.d) && !has(k.p) && !has(k.q) && !has(k.dp) && !has(k.dq) && !has(k.qi) && !has(k.k))",
     "message": "register public keys only: no private or symmetric member (d, p, q, dp, dq, qi, k)",
     "fieldPath": ".keys"},
    {"rule": "self.keys.all(k, (has(k.use) && k.use == 'enc') || (has(k.kty) && k.kty in ['EC', 'RSA', 'OKP']))",
     "message": "each signing key must be an EC, RSA or OKP public key (kty)",
     "fieldPath": ".keys"},
]))]
pub struct JwkSet {
    /// JSON Web Keys (RFC 7517), public members only.
    #[schemars(schema_with = "crate::schema::jwk_objects")]
    pub keys: Vec<serde_json::Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientSecretRef {
    /// Secret name in the client's namespace.
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
        length(min = 1, max = 253)
    )]
    pub name: String,
    /// Create the Secret with a random `client_secret` when it does not exist. With `false`,
    /// the client waits (reason `SecretNotFound`) until something else provides it.
    #[serde(default = "default_true")]
    pub generate: bool,
}

fn default_true() -> bool {
    true
}

/// What the controller last observed and did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OAuthClientStatus {
    /// The effective client_id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Accepted`: the spec is valid and allowed by the tenant. `Ready`: live in the server.
    #[serde(default)]
    #[schemars(schema_with = "crate::schema::conditions")]
    pub conditions: Vec<Condition>,
    /// The grant types the server honours for this client.
    #[serde(default)]
    pub grant_types: Vec<GrantType>,
    /// The Secret holding the client's credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// For workload identity: the token subject the client is bound to
    /// (`system:serviceaccount:<namespace>:<name>`), or for a trusted issuer the subjects its
    /// Tenant maps to it, comma-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_subject: Option<String>,
}

impl OAuthClientSpec {
    /// The client_id in effect: the explicit one, or `{namespace}-{name}`.
    pub fn effective_client_id(&self, namespace: &str, name: &str) -> String {
        self.client_id
            .clone()
            .unwrap_or_else(|| format!("{namespace}-{name}"))
    }

    /// The authentication method in effect.
    pub fn effective_auth_method(&self) -> ClientAuthMethod {
        if self.workload_identity.is_some() {
            return ClientAuthMethod::PrivateKeyJwt;
        }
        self.token_endpoint_auth_method.unwrap_or(if self.public {
            ClientAuthMethod::None
        } else {
            ClientAuthMethod::ClientSecretBasic
        })
    }

    /// Whether this client authenticates with a shared secret (and so needs a Secret).
    pub fn needs_secret(&self) -> bool {
        matches!(
            self.effective_auth_method(),
            ClientAuthMethod::ClientSecretBasic | ClientAuthMethod::ClientSecretPost
        )
    }

    /// The credentials Secret reference in effect.
    pub fn effective_secret_ref(&self, name: &str) -> ClientSecretRef {
        self.secret_ref.clone().unwrap_or_else(|| ClientSecretRef {
            name: format!("{name}-credentials"),
            generate: true,
        })
    }
}
