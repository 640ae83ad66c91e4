//! Condition types and reasons: the vocabulary of `status.conditions`, shared by the reconcile
//! core, standalone's table and the operator's events. `kubectl describe` shows these words to
//! users, so each says what is wrong, not how the code got there.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// A condition's `status`, typed (API conventions: `True`, `False`, `Unknown`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    #[must_use]
    pub fn from_bool(ok: bool) -> Self {
        if ok {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        }
    }

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }

    /// The status as written in a condition (anything unexpected is `Unknown`).
    #[must_use]
    pub fn parse(status: &str) -> Self {
        match status {
            "True" => ConditionStatus::True,
            "False" => ConditionStatus::False,
            _ => ConditionStatus::Unknown,
        }
    }

    /// The status of the condition `type_` among `conditions` (`Unknown` when absent).
    #[must_use]
    pub fn of(conditions: &[Condition], type_: &str) -> Self {
        conditions
            .iter()
            .find(|c| c.type_ == type_)
            .map_or(ConditionStatus::Unknown, |c| {
                ConditionStatus::parse(&c.status)
            })
    }
}

impl std::fmt::Display for ConditionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

pub mod types {
    pub const READY: &str = "Ready";
    pub const ACCEPTED: &str = "Accepted";
    /// The tenant's users Secret was read (only on tenants with `spec.users`).
    pub const USERS_LOADED: &str = "UsersLoaded";
    /// Every trusted issuer's keys are current (only on tenants with `spec.trustedIssuers`).
    pub const TRUSTED_ISSUERS_READ: &str = "TrustedIssuersRead";
}

pub mod reasons {
    /// Tenant or client is live in the token service.
    pub const RECONCILED: &str = "Reconciled";
    /// The spec breaks a rule the CRD schema states (standalone checks what an apiserver would).
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// The tenant's users Secret is missing or malformed; the tenant serves without users.
    pub const USERS_SECRET_INVALID: &str = "UsersSecretInvalid";
    /// The users Secret was read.
    pub const USERS_LOADED: &str = "UsersLoaded";
    /// The client's `tenantRef` names no Tenant.
    pub const TENANT_NOT_FOUND: &str = "TenantNotFound";
    /// The client's tenant is not Ready itself.
    pub const TENANT_NOT_READY: &str = "TenantNotReady";
    /// The client's namespace is not in the tenant's `clientNamespaces`.
    pub const NAMESPACE_NOT_ALLOWED: &str = "NamespaceNotAllowed";
    /// Some (or all) of the client's grant types are not enabled by its tenant.
    pub const GRANT_TYPE_NOT_ENABLED: &str = "GrantTypeNotEnabled";
    /// Another client of the same tenant already has this clientId.
    pub const CLIENT_ID_CONFLICT: &str = "ClientIdConflict";
    /// The client asks for a scope its tenant does not define or does not grant its namespace.
    pub const SCOPE_NOT_ALLOWED: &str = "ScopeNotAllowed";
    /// The client asks for an audience its tenant does not declare or does not grant its
    /// namespace (or its client id, the default audience, names such an audience).
    pub const AUDIENCE_NOT_ALLOWED: &str = "AudienceNotAllowed";
    /// A plain-http redirect URI beyond loopback, which the tenant does not allow.
    pub const REDIRECT_URI_NOT_ALLOWED: &str = "RedirectUriNotAllowed";
    /// The credentials Secret does not exist and `generate` is false.
    pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
    /// The ServiceAccount a workloadIdentity client names does not exist.
    pub const SERVICE_ACCOUNT_NOT_FOUND: &str = "ServiceAccountNotFound";
    /// The cluster's ServiceAccount issuer (or its keys) could not be read.
    pub const SERVICE_ACCOUNT_ISSUER_UNKNOWN: &str = "ServiceAccountIssuerUnknown";
    /// `workloadIdentity.trustedIssuer` names no entry of the tenant's `trustedIssuers`.
    pub const TRUSTED_ISSUER_NOT_FOUND: &str = "TrustedIssuerNotFound";
    /// The tenant maps no subject of the named trusted issuer to this client.
    pub const WORKLOAD_SUBJECT_NOT_MAPPED: &str = "WorkloadSubjectNotMapped";
    /// A trusted issuer's keys could not be read (the last keys read work for its grace period).
    pub const ISSUER_UNREACHABLE: &str = "IssuerUnreachable";
    /// Every trusted issuer's keys were read.
    pub const ISSUERS_READ: &str = "IssuersRead";
    /// workloadIdentity where there is no Kubernetes API server (standalone).
    pub const WORKLOAD_IDENTITY_UNAVAILABLE: &str = "WorkloadIdentityUnavailable";
    /// The credentials Secret exists but has no usable `client_secret`.
    pub const SECRET_INVALID: &str = "SecretInvalid";
    /// The credentials Secret is being created.
    pub const SECRET_PENDING: &str = "SecretPending";
    /// A referenced Secret (credentials, users) exists without the label Gatehouse reads
    /// Secrets by (`gatehouse.dev/watch=true`); the message says how to add it.
    pub const SECRET_NOT_LABELLED: &str = "SecretNotLabelled";
    /// The Secret holding the tenant's signing keys cannot be read; fix or delete it.
    pub const SIGNING_KEYS_INVALID: &str = "SigningKeysInvalid";
    /// Writing to the store failed; retried.
    pub const STORE_UNAVAILABLE: &str = "StoreUnavailable";
    /// Spec accepted as written (on a client: with every grant it asks for).
    pub const ACCEPTED: &str = "Accepted";
    /// The current spec was refused; the last valid version (still in the store) keeps serving.
    pub const SERVING_LAST_VALID: &str = "ServingLastValid";
}
