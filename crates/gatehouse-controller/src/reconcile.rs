//! The pure reconcile function: observed objects in, registrations and statuses out.

mod client;
mod tenant;

use gatehouse_core::key_rotation::RotationPolicy;
use gatehouse_core::secret::HashCost;
use gatehouse_core::{ClientConfig, TenantConfig};
use gatehouse_crd::{OAuthClient, OAuthClientStatus, Tenant, TenantStatus};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::{BTreeMap, HashMap};
use zeroize::Zeroizing;

/// What the reconcile core looks at. Secrets are those of the clients' namespaces (and the
/// tenants' users Secrets); others are ignored.
pub struct Observed<'a> {
    pub tenants: &'a [Tenant],
    pub clients: &'a [OAuthClient],
    pub secrets: &'a [Secret],
    /// Base URL of the token service; a tenant's issuer is `{public_url}/{name}`.
    pub public_url: &'a str,
    pub now: Time,
}

/// Lookups made once per object, built once per pass so that a pass stays linear in the
/// number of objects (100,000 clients each looking through 100,000 Secrets would not be).
struct Index<'a> {
    secrets: HashMap<(&'a str, &'a str), &'a Secret>,
}

impl<'a> Index<'a> {
    fn new(observed: &Observed<'a>) -> Self {
        let mut secrets = HashMap::with_capacity(observed.secrets.len());
        for s in observed.secrets {
            if let (Some(ns), Some(name)) = (&s.metadata.namespace, &s.metadata.name) {
                secrets.entry((ns.as_str(), name.as_str())).or_insert(s);
            }
        }
        Index { secrets }
    }

    fn secret(&self, namespace: &str, name: &str) -> Option<&'a Secret> {
        self.secrets.get(&(namespace, name)).copied()
    }
}

/// The outcome for one Tenant.
#[derive(Debug)]
pub struct TenantOutcome {
    pub name: String,
    /// What the store should hold; `None` takes the tenant out of service.
    pub registration: Option<TenantConfig>,
    /// How its signing keys rotate.
    pub key_policy: RotationPolicy,
    pub status: TenantStatus,
}

/// The outcome for one OAuthClient.
#[derive(Debug)]
pub struct ClientOutcome {
    pub namespace: String,
    pub name: String,
    pub tenant: String,
    /// What the store should hold (without the secret hash, which the publisher computes);
    /// `None` means the client gets no token at all.
    pub registration: Option<ClientRegistration>,
    pub status: OAuthClientStatus,
    /// A credentials Secret to create (its absence is what keeps the client from being Ready).
    pub secret_request: Option<SecretRequest>,
    /// A fresh `client_secret` for the client's Secret (owned by Gatehouse), asked for with the
    /// `gatehouse.dev/rotate-secret` annotation; the value is what the Secret records as done.
    pub secret_rotation: Option<(SecretRequest, String)>,
}

/// A client registration and the plain secret the publisher hashes before storing it.
pub struct ClientRegistration {
    pub config: ClientConfig,
    pub secret: Option<Zeroizing<String>>,
    /// How hard the secret's hash must be: cheap only for a value Gatehouse generated.
    pub secret_cost: HashCost,
}

impl std::fmt::Debug for ClientRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientRegistration")
            .field("config", &self.config)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("secret_cost", &self.secret_cost)
            .finish()
    }
}

/// A Secret the driver must create: a random `client_secret` for `client_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretRequest {
    pub namespace: String,
    pub name: String,
    pub client_id: String,
    pub issuer: String,
    /// The OAuthClient that will own the Secret.
    pub owner_name: String,
    pub owner_uid: Option<String>,
}

#[derive(Debug, Default)]
pub struct Reconciled {
    pub tenants: Vec<TenantOutcome>,
    pub clients: Vec<ClientOutcome>,
}

impl Reconciled {
    pub fn tenant(&self, name: &str) -> Option<&TenantOutcome> {
        self.tenants.iter().find(|t| t.name == name)
    }

    pub fn client(&self, namespace: &str, name: &str) -> Option<&ClientOutcome> {
        self.clients
            .iter()
            .find(|c| c.namespace == namespace && c.name == name)
    }
}

/// Reconciles everything observed at once. Clients compete for client ids, so a client's
/// outcome depends on the others: the oldest (then alphabetically first) keeps a contested id.
pub fn reconcile(observed: &Observed<'_>) -> Reconciled {
    let index = Index::new(observed);
    let tenants: Vec<TenantOutcome> = observed
        .tenants
        .iter()
        .map(|t| tenant::reconcile_tenant(t, observed, &index))
        .collect();
    let registered: BTreeMap<&str, (&Tenant, &TenantConfig)> = tenants
        .iter()
        .zip(observed.tenants)
        .filter_map(|(o, t)| o.registration.as_ref().map(|r| (o.name.as_str(), (t, r))))
        .collect();
    let clients = client::reconcile_clients(observed, &index, &registered);
    let mut registered_clients: HashMap<&str, usize> = HashMap::new();
    for c in clients.iter().filter(|c| c.registration.is_some()) {
        *registered_clients.entry(c.tenant.as_str()).or_default() += 1;
    }
    let counts: HashMap<String, usize> = registered_clients
        .into_iter()
        .map(|(t, n)| (t.to_string(), n))
        .collect();
    let mut out = Reconciled { tenants, clients };
    for t in &mut out.tenants {
        if t.registration.is_some() {
            let n = counts.get(&t.name).copied().unwrap_or(0);
            t.status.clients = Some(i32::try_from(n).unwrap_or(i32::MAX));
        }
    }
    out
}

#[cfg(test)]
mod tests;
