//! The pure reconcile core: observed objects in, registrations and statuses out, one object
//! at a time. [`reconcile_tenant`] looks at a Tenant and its users Secret;
//! [`reconcile_client`] at an OAuthClient, a view of its tenant, whether it holds its client
//! id ([`ClientIds`]) and its Secret. The operator calls them per object from its caches;
//! standalone calls [`reconcile`], a loop over them for a whole directory of manifests.

mod claims;
mod client;
mod held;
mod tenant;

pub use claims::{Claimant, ClientIds};
pub use client::{
    ClientInputs, ClusterIssuer, ServiceAccountView, TenantView, may_claim_id, reconcile_client,
};
pub use held::HeldWithin;
pub use tenant::reconcile_tenant;

use crate::issuers::TrustedKeys;
use crate::secrets::SecretView;
use gatehouse_core::key_rotation::RotationPolicy;
use gatehouse_core::secret::HashCost;
use gatehouse_core::{ClientConfig, TenantConfig};
use gatehouse_crd::condition::{reasons, types};
use gatehouse_crd::{OAuthClient, OAuthClientStatus, Tenant, TenantStatus};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;
use std::collections::HashMap;
use zeroize::Zeroizing;

/// What the reconcile core looks at. Secrets are those of the clients' namespaces (and the
/// tenants' users Secrets); others are ignored, and one that is referenced is read only when
/// it carries the watch label ([`crate::secrets::WATCH_LABEL`]), as in a cluster.
pub struct Observed<'a> {
    pub tenants: &'a [Tenant],
    pub clients: &'a [OAuthClient],
    pub secrets: &'a [Secret],
    /// Base URL of the token service; a tenant's issuer is `{public_url}/{name}`.
    pub public_url: &'a str,
    /// Tenants' trusted issuers' keys as last read.
    pub trusted: &'a TrustedKeys,
    pub now: Time,
}

/// Secrets by (namespace, name), built once per pass so that a pass stays linear in the
/// number of objects (100,000 clients each looking through 100,000 Secrets would not be).
struct SecretIndex<'a> {
    secrets: HashMap<(&'a str, &'a str), &'a Secret>,
}

impl<'a> SecretIndex<'a> {
    fn new(secrets: &'a [Secret]) -> Self {
        let mut by_name = HashMap::with_capacity(secrets.len());
        for s in secrets {
            if let (Some(ns), Some(name)) = (&s.metadata.namespace, &s.metadata.name) {
                by_name.entry((ns.as_str(), name.as_str())).or_insert(s);
            }
        }
        SecretIndex { secrets: by_name }
    }

    fn get(&self, namespace: &str, name: &str) -> Option<&'a Secret> {
        self.secrets.get(&(namespace, name)).copied()
    }
}

/// What a refused spec leaves in service: the last valid version, if the store still holds
/// it. Drivers neither write nor remove anything for a held object; when they find its
/// registration still stored they show [`Held::ready`] instead of the refusal.
#[derive(Clone, Debug)]
pub struct Held {
    /// `Ready=True`, reason `ServingLastValid`, with the generation that keeps serving when
    /// the object's previous status knew it.
    pub ready: Condition,
    /// The tenant's issuer (clients leave it empty).
    pub issuer: Option<String>,
}

impl Held {
    /// A held object's `Ready` condition: the previous `Ready=True` (its generation and
    /// transition time kept), saying what keeps serving and `why` the current version does not.
    fn new(previous: &[Condition], why: &str, now: &Time) -> Self {
        let serving = previous
            .iter()
            .find(|c| c.type_ == types::READY && c.status == "True");
        let message = match serving.and_then(|c| c.observed_generation) {
            Some(g) => format!("generation {g} keeps serving; {why}"),
            None => format!("the last valid version keeps serving; {why}"),
        };
        Held {
            ready: Condition {
                type_: types::READY.to_string(),
                status: "True".to_string(),
                reason: reasons::SERVING_LAST_VALID.to_string(),
                message,
                observed_generation: serving.and_then(|c| c.observed_generation),
                last_transition_time: serving
                    .map_or_else(|| now.clone(), |c| c.last_transition_time.clone()),
            },
            issuer: None,
        }
    }

    /// Held because the spec of `generation` breaks a rule: `problems` names the fields.
    fn refused_spec(
        previous: &[Condition],
        generation: Option<i64>,
        problems: &str,
        now: &Time,
    ) -> Self {
        let current = generation.map_or_else(
            || "the current spec".to_string(),
            |g| format!("generation {g}"),
        );
        Held::new(previous, &format!("{current} was refused: {problems}"), now)
    }
}

/// Replaces the `Ready` condition with a held object's.
fn show_held(conditions: &mut Vec<Condition>, held: Held) {
    conditions.retain(|c| c.type_ != types::READY);
    conditions.insert(0, held.ready);
}

/// The outcome for one Tenant.
#[derive(Debug)]
pub struct TenantOutcome {
    pub name: String,
    /// What the store should hold; `None` takes the tenant out of service, unless it is
    /// [`TenantOutcome::held`].
    pub registration: Option<TenantConfig>,
    /// Set when the spec is refused: the store keeps the last valid version untouched.
    pub held: Option<Held>,
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
    /// `None` means the client gets no token at all, unless it is [`ClientOutcome::held`].
    pub registration: Option<ClientRegistration>,
    /// Set when the client's spec (or its tenant's) is refused, or something it needs cannot
    /// be read: the store keeps the last valid registration, cut back to `held_within`.
    pub held: Option<Held>,
    /// What its tenant grants now, for a held client of a valid tenant: a held registration
    /// never keeps what the tenant has since taken away (a namespace, a grant, a scope, an
    /// audience, a trusted-issuer subject). `None` while the tenant itself is held: its last
    /// valid version, clients included, stays as it was.
    pub held_within: Option<HeldWithin>,
    pub status: OAuthClientStatus,
    /// A credentials Secret to create (its absence is what keeps the client from being Ready).
    pub secret_request: Option<SecretRequest>,
    /// A fresh `client_secret` for the client's Secret (owned by Gatehouse), asked for with the
    /// `gatehouse.dev/rotate-secret` annotation; the value is what the Secret records as done.
    pub secret_rotation: Option<(SecretRequest, String)>,
}

impl TenantOutcome {
    /// The store still holds the last valid version of this held tenant: say so in its status.
    pub fn still_serving(&mut self) {
        if let Some(held) = self.held.clone() {
            self.status.issuer.clone_from(&held.issuer);
            show_held(&mut self.status.conditions, held);
        }
    }
}

impl ClientOutcome {
    /// The store still holds the last valid registration of this held client: say so in its
    /// status.
    pub fn still_serving(&mut self) {
        if let Some(held) = self.held.clone() {
            show_held(&mut self.status.conditions, held);
        }
    }
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

/// Reconciles everything observed: each tenant, then each client against its tenant, the
/// claims of every client on client ids, and its Secret. `status.clients` counts the clients
/// each tenant serves.
#[must_use]
pub fn reconcile(observed: &Observed<'_>) -> Reconciled {
    let secrets = SecretIndex::new(observed.secrets);
    let now = u64::try_from(observed.now.0.as_second()).unwrap_or(0);
    let tenants: Vec<TenantOutcome> = observed
        .tenants
        .iter()
        .map(|t| {
            let users = t
                .spec
                .users
                .as_ref()
                .and_then(|u| secrets.get(&u.secret_ref.namespace, &u.secret_ref.name));
            let issuers = observed.trusted.statuses(t, now);
            reconcile_tenant(
                t,
                SecretView::of(users),
                observed.public_url,
                issuers,
                &observed.now,
            )
        })
        .collect();
    let tenant_objects: HashMap<String, &Tenant> =
        observed.tenants.iter().map(|t| (t.name_any(), t)).collect();
    let mut ids = ClientIds::default();
    let mut by_name: HashMap<(String, String), &OAuthClient> =
        HashMap::with_capacity(observed.clients.len());
    for c in observed.clients {
        ids.insert(c);
        by_name.insert((c.namespace().unwrap_or_default(), c.name_any()), c);
    }
    let mut clients: Vec<ClientOutcome> = observed
        .clients
        .iter()
        .map(|c| {
            let tenant = tenant_objects.get(&c.spec.tenant_ref).copied();
            let view = TenantView::of(tenant);
            let holds_id = holds_id(&ids, c, tenant, |namespace, name| {
                by_name
                    .get(&(namespace.to_string(), name.to_string()))
                    .copied()
            });
            let secret_name = c.spec.effective_secret_ref(&c.name_any()).name;
            let issuer_keys = tenant
                .map(|t| observed.trusted.all_keys(t, now))
                .unwrap_or_default();
            let inputs = ClientInputs {
                tenant: view,
                holds_id,
                secret: SecretView::of(
                    secrets.get(&c.namespace().unwrap_or_default(), &secret_name),
                ),
                // No API server to resolve a ServiceAccount with.
                service_account: ServiceAccountView::Unavailable,
                issuer_keys: &issuer_keys,
                public_url: observed.public_url,
                now: &observed.now,
            };
            reconcile_client(c, &inputs)
        })
        .collect();
    // Unstable: (namespace, name) is unique, and a stable sort would copy every outcome.
    clients.sort_unstable_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let mut live: HashMap<&str, usize> = HashMap::new();
    for c in clients.iter().filter(|c| c.registration.is_some()) {
        *live.entry(c.tenant.as_str()).or_default() += 1;
    }
    let counts: HashMap<String, usize> =
        live.into_iter().map(|(t, n)| (t.to_string(), n)).collect();
    let mut out = Reconciled { tenants, clients };
    for t in &mut out.tenants {
        if t.registration.is_some() {
            let n = counts.get(&t.name).copied().unwrap_or(0);
            t.status.clients = Some(i32::try_from(n).unwrap_or(i32::MAX));
        }
    }
    out
}

/// Whether `client` holds its client id in `tenant`: it is the oldest claimant that may claim
/// it. `lookup` finds a claimant's object.
pub fn holds_id<'a>(
    ids: &ClientIds,
    client: &OAuthClient,
    tenant: Option<&Tenant>,
    lookup: impl Fn(&str, &str) -> Option<&'a OAuthClient>,
) -> bool {
    let Some(tenant) = tenant else {
        return false;
    };
    let (tenant_name, id) = ClientIds::claim_of(client);
    let holder = ids.holder(&tenant_name, &id, |c| {
        lookup(&c.namespace, &c.name).is_some_and(|rival| may_claim_id(rival, tenant))
    });
    holder.is_some_and(|h| {
        h.namespace == client.namespace().unwrap_or_default() && h.name == client.name_any()
    })
}

#[cfg(test)]
mod tests;
