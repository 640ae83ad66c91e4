//! OAuthClients: admission by their tenant, client-id uniqueness, effective grants, secrets.
//! One client at a time, against a view of what it depends on ([`ClientInputs`]).

use super::held::HeldWithin;
use super::{ClientOutcome, ClientRegistration, Held, SecretRequest};
use crate::conditions::{Verdict, to_conditions};
use crate::issuers::IssuerKeys;
use crate::secrets::{CLIENT_SECRET_KEY, SecretView, is_generated, not_labelled, string_value};
use gatehouse_core::config::{
    AssertableSubjects, BUILT_IN_SCOPES, FederatedIdentity, WorkloadIdentity,
};
use gatehouse_core::secret::HashCost;
use gatehouse_core::workload::service_account_subject;
use gatehouse_core::{ClientConfig, GrantType, endpoints};
use gatehouse_crd::condition::{reasons, types};
use gatehouse_crd::tenant::namespaces_allow;
use gatehouse_crd::validate::{is_http_beyond_loopback, validate_client, validate_tenant};
use gatehouse_crd::{OAuthClient, OAuthClientStatus, Tenant};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

/// Why a client's current spec gets no token, as (reason, message) for both conditions.
pub(super) struct Refusal {
    reason: &'static str,
    message: String,
    /// A refusal of a spec (the client's or its tenant's) rather than a decision: the last
    /// valid registration stays as it is.
    holds: bool,
}

impl Refusal {
    fn decided(reason: &'static str, message: String) -> Self {
        Refusal {
            reason,
            message,
            holds: false,
        }
    }

    fn invalid(reason: &'static str, message: String) -> Self {
        Refusal {
            reason,
            message,
            holds: true,
        }
    }
}

/// A client's tenant as the client sees it.
#[derive(Clone, Copy, Debug)]
pub enum TenantView<'a> {
    /// No Tenant by that name.
    Missing,
    /// The Tenant exists but its spec is invalid, so it is not served.
    Invalid,
    /// A valid Tenant.
    Valid(&'a Tenant),
}

impl<'a> TenantView<'a> {
    #[must_use]
    pub fn of(tenant: Option<&'a Tenant>) -> Self {
        match tenant {
            None => TenantView::Missing,
            Some(t) if validate_tenant(&t.name_any(), &t.spec).is_empty() => TenantView::Valid(t),
            Some(_) => TenantView::Invalid,
        }
    }
}

/// The cluster's ServiceAccount token issuer and its public keys, as the operator last read
/// them from the API server's discovery documents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterIssuer {
    /// The `issuer` of `/.well-known/openid-configuration`: the tokens' `iss`.
    pub issuer: String,
    /// The JWK Set of `/openid/v1/jwks`.
    pub jwks: serde_json::Value,
}

/// What the cluster says of the ServiceAccount a workload-identity client names.
#[derive(Clone, Copy, Debug)]
pub enum ServiceAccountView<'a> {
    /// Nothing to ask: no API server (standalone).
    Unavailable,
    /// No ServiceAccount by that name in the client's namespace.
    Missing,
    /// It exists, with this uid; and the cluster's issuer, if it could be read.
    Found {
        uid: &'a str,
        issuer: Option<&'a ClusterIssuer>,
    },
}

/// What one client's outcome depends on besides itself.
#[derive(Clone, Copy, Debug)]
pub struct ClientInputs<'a> {
    pub tenant: TenantView<'a>,
    /// Whether the client holds its client id (see [`super::ClientIds`]). Only asked of a
    /// client that may claim one ([`may_claim_id`]); others are refused before it matters.
    pub holds_id: bool,
    /// The client's credentials Secret, as Gatehouse may see it.
    pub secret: SecretView<'a>,
    /// The ServiceAccount of a workload-identity client (ignored for the others).
    pub service_account: ServiceAccountView<'a>,
    /// The keys of the tenant's trusted issuers, by name, as this process knows them (only
    /// needed for a client that names one in `workloadIdentity.trustedIssuer`, or is held).
    pub issuer_keys: &'a [(String, IssuerKeys)],
    /// Base URL of the token service; a tenant's issuer is `{public_url}/{name}`.
    pub public_url: &'a str,
    pub now: &'a Time,
}

pub(super) fn tenant_admits(tenant: &Tenant, namespace: &str) -> bool {
    match &tenant.spec.client_namespaces {
        Some(list) => list.iter().any(|n| n == "*" || n == namespace),
        None => tenant.name_any() == namespace,
    }
}

/// Whether `client` takes part in the contest for its client id in `tenant`: a valid spec in
/// a namespace the tenant admits, and not being deleted (a client on its way out frees its id
/// for the next claimant).
#[must_use]
pub fn may_claim_id(client: &OAuthClient, tenant: &Tenant) -> bool {
    client.metadata.deletion_timestamp.is_none()
        && validate_client(&client.spec).is_empty()
        && tenant_admits(tenant, &client.namespace().unwrap_or_default())
}

/// A client's registration, status and Secret requests.
#[must_use]
pub fn reconcile_client(client: &OAuthClient, inputs: &ClientInputs<'_>) -> ClientOutcome {
    let namespace = client.namespace().unwrap_or_default();
    let name = client.name_any();
    let spec = &client.spec;
    let generation = client.metadata.generation;
    let previous = client
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let client_id = spec.effective_client_id(&namespace, &name);
    let secret_ref = spec.effective_secret_ref(&name);
    let mut status = OAuthClientStatus {
        client_id: Some(client_id.clone()),
        observed_generation: generation,
        conditions: Vec::new(),
        grant_types: Vec::new(),
        secret_name: spec.needs_secret().then(|| secret_ref.name.clone()),
        workload_subject: None,
    };
    let mut outcome = ClientOutcome {
        namespace: namespace.clone(),
        name: name.clone(),
        tenant: spec.tenant_ref.clone(),
        registration: None,
        held: None,
        held_within: None,
        status: OAuthClientStatus::default(),
        secret_request: None,
        secret_rotation: None,
    };

    let admitted = admit(client, &namespace, &client_id, inputs);
    let (tenant, granted, accepted) = match admitted {
        Err(Refusal {
            reason,
            message,
            holds,
        }) => {
            if holds {
                outcome.held = Some(if reason == reasons::INVALID_SPEC {
                    Held::refused_spec(previous, generation, &message, inputs.now)
                } else {
                    Held::new(previous, &message, inputs.now)
                });
            }
            let verdicts = [
                Verdict::new(types::ACCEPTED, false, reason, message.clone()),
                Verdict::new(types::READY, false, reason, message),
            ];
            status.conditions = to_conditions(&verdicts, previous, generation, inputs.now);
            outcome.status = status;
            outcome.held_within = HeldWithin::of(&outcome, &namespace, inputs);
            return outcome;
        }
        Ok(a) => a,
    };
    status.grant_types.clone_from(&granted.grant_types);

    // Credentials.
    let issuer = endpoints::issuer(inputs.public_url, &tenant.name_any());
    let mut secret = None;
    let mut secret_cost = HashCost::Guessable;
    // The Secret this client's credentials live in, for generation and rotation alike.
    let secret_request = SecretRequest {
        namespace: namespace.clone(),
        name: secret_ref.name.clone(),
        client_id: client_id.clone(),
        issuer: issuer.clone(),
        owner_name: name.clone(),
        owner_uid: client.metadata.uid.clone(),
    };
    let mut ready = Verdict::new(
        types::READY,
        true,
        reasons::RECONCILED,
        format!("client {client_id} is live at {issuer}"),
    );
    if spec.needs_secret() {
        match inputs.secret {
            SecretView::Readable(s) => match string_value(s, CLIENT_SECRET_KEY) {
                Ok(Some(value)) if !value.is_empty() => {
                    if is_generated(s, &value) {
                        secret_cost = HashCost::RandomKey;
                    }
                    secret = Some(value);
                    outcome.secret_rotation =
                        rotation_asked(client, s).map(|wanted| (secret_request.clone(), wanted));
                }
                Ok(_) => {
                    let why = format!("Secret {} has no {CLIENT_SECRET_KEY}", secret_ref.name);
                    outcome.held = Some(Held::new(previous, &why, inputs.now));
                    ready = Verdict::new(types::READY, false, reasons::SECRET_INVALID, why);
                }
                Err(why) => {
                    let why = format!("Secret {}: {why}", secret_ref.name);
                    outcome.held = Some(Held::new(previous, &why, inputs.now));
                    ready = Verdict::new(types::READY, false, reasons::SECRET_INVALID, why);
                }
            },
            // Never generated over nor read: someone else's Secret by that name. A registered
            // client keeps its last secret meanwhile, as with an unusable one.
            SecretView::NotLabelled => {
                let why = not_labelled(&namespace, &secret_ref.name);
                outcome.held = Some(Held::new(previous, &why, inputs.now));
                ready = Verdict::new(types::READY, false, reasons::SECRET_NOT_LABELLED, why);
            }
            SecretView::Missing if secret_ref.generate => {
                ready = Verdict::new(
                    types::READY,
                    false,
                    reasons::SECRET_PENDING,
                    format!("creating Secret {}", secret_ref.name),
                );
                outcome.secret_request = Some(secret_request.clone());
            }
            SecretView::Missing => {
                ready = Verdict::new(
                    types::READY,
                    false,
                    reasons::SECRET_NOT_FOUND,
                    format!(
                        "waiting for Secret {} with key {CLIENT_SECRET_KEY} (secretRef.generate is false)",
                        secret_ref.name
                    ),
                );
            }
        }
    }
    let mut workload = None;
    let mut federated = None;
    let mut keep_unready = false;
    if let Some(issuer_name) = spec
        .workload_identity
        .as_ref()
        .and_then(|w| w.trusted_issuer.as_ref())
    {
        let bound = bind_trusted_issuer(tenant, issuer_name, &namespace, &client_id, inputs);
        match bound {
            Bound::Refused(reason, why) => {
                ready = Verdict::new(types::READY, false, reason, why);
            }
            Bound::Held(why) => {
                outcome.held = Some(Held::new(previous, &why, inputs.now));
                ready = Verdict::new(types::READY, false, reasons::ISSUER_UNREACHABLE, why);
            }
            // Registered without keys: its grants and tokens are kept, none of its tokens
            // authenticates until the keys are read again.
            Bound::WithoutKeys(identity, why) if ready.ok => {
                status.workload_subject = Some(identity.subjects.join(", "));
                ready = Verdict::new(types::READY, false, reasons::ISSUER_UNREACHABLE, why);
                federated = Some(identity);
                keep_unready = true;
            }
            Bound::Live(identity) if ready.ok => {
                status.workload_subject = Some(identity.subjects.join(", "));
                ready = Verdict::new(
                    types::READY,
                    true,
                    reasons::RECONCILED,
                    format!(
                        "client {client_id} is live at {issuer}; it authenticates with tokens of {} for {}",
                        identity.issuer,
                        identity.subjects.join(", ")
                    ),
                );
                federated = Some(identity);
            }
            Bound::WithoutKeys(..) | Bound::Live(_) => {}
        }
    }
    if let Some(account_name) = spec
        .workload_identity
        .as_ref()
        .and_then(|w| w.service_account_name.as_ref())
    {
        let subject = service_account_subject(&namespace, account_name);
        let account = format!("ServiceAccount {namespace}/{account_name}");
        match inputs.service_account {
            ServiceAccountView::Unavailable => {
                ready = Verdict::new(
                    types::READY,
                    false,
                    reasons::WORKLOAD_IDENTITY_UNAVAILABLE,
                    "workloadIdentity needs the operator: without a Kubernetes API server there are no ServiceAccount tokens to verify",
                );
            }
            // Deliberate: the account's tokens stop working with it.
            ServiceAccountView::Missing => {
                ready = Verdict::new(
                    types::READY,
                    false,
                    reasons::SERVICE_ACCOUNT_NOT_FOUND,
                    format!(
                        "{account} not found; create it or fix spec.workloadIdentity.serviceAccountName"
                    ),
                );
            }
            ServiceAccountView::Found { issuer: None, .. } => {
                let why = "the cluster's ServiceAccount issuer could not be read from the API server (/.well-known/openid-configuration, /openid/v1/jwks); retrying";
                outcome.held = Some(Held::new(previous, why, inputs.now));
                ready = Verdict::new(
                    types::READY,
                    false,
                    reasons::SERVICE_ACCOUNT_ISSUER_UNKNOWN,
                    why,
                );
            }
            // Only ever lowers `ready`: a client otherwise not ready stays so.
            ServiceAccountView::Found {
                uid,
                issuer: Some(issuer),
            } if ready.ok => {
                status.workload_subject = Some(subject.clone());
                ready = Verdict::new(
                    types::READY,
                    true,
                    reasons::RECONCILED,
                    format!(
                        "client {client_id} is live at {issuer_url}; it authenticates with tokens of {account}",
                        issuer_url = endpoints::issuer(inputs.public_url, &tenant.name_any())
                    ),
                );
                workload = Some(WorkloadIdentity {
                    subject,
                    service_account_uid: uid.to_string(),
                    issuer: issuer.issuer.clone(),
                    jwks: issuer.jwks.clone(),
                });
            }
            ServiceAccountView::Found { .. } => {}
        }
    }
    if ready.ok || keep_unready {
        outcome.registration = Some(ClientRegistration {
            config: ClientConfig {
                client_id: client_id.clone(),
                source: format!("{namespace}/{name}"),
                client_name: spec.client_name.clone(),
                public: spec.public,
                grant_types: granted.grant_types,
                redirect_uris: granted.redirect_uris,
                post_logout_redirect_uris: granted.post_logout_redirect_uris,
                scopes: granted.scopes,
                audiences: granted.audiences,
                token_endpoint_auth_method: spec.effective_auth_method(),
                secret_hash: None,
                jwks: spec
                    .jwks
                    .as_ref()
                    .map(|j| serde_json::json!({ "keys": j.keys })),
                may_assert: granted.may_assert,
                // The publisher keeps the stored one, or makes one for a new registration.
                incarnation: String::new(),
                workload,
                federated,
                extra: std::collections::BTreeMap::default(),
            },
            secret,
            secret_cost,
        });
    }
    status.conditions = to_conditions(&[accepted, ready], previous, generation, inputs.now);
    outcome.status = status;
    outcome.held_within = HeldWithin::of(&outcome, &namespace, inputs);
    outcome
}

/// What a trusted-issuer client is bound to.
enum Bound {
    /// Not at all: (reason, message).
    Refused(&'static str, String),
    /// Keys not read by this process yet; the store keeps what it has.
    Held(String),
    /// Registered without keys (none read, or too old): why.
    WithoutKeys(FederatedIdentity, String),
    Live(FederatedIdentity),
}

/// Binds a client to the subjects its tenant maps to it from the trusted issuer it names.
fn bind_trusted_issuer(
    tenant: &Tenant,
    issuer_name: &str,
    namespace: &str,
    client_id: &str,
    inputs: &ClientInputs<'_>,
) -> Bound {
    let tenant_name = tenant.name_any();
    let Some(spec) = tenant
        .spec
        .trusted_issuers
        .iter()
        .find(|t| t.name == issuer_name)
    else {
        return Bound::Refused(
            reasons::TRUSTED_ISSUER_NOT_FOUND,
            format!(
                "tenant {tenant_name} has no trusted issuer {issuer_name} (spec.trustedIssuers)"
            ),
        );
    };
    let subjects = mapped_subjects(spec, namespace, client_id);
    if subjects.is_empty() {
        return Bound::Refused(
            reasons::WORKLOAD_SUBJECT_NOT_MAPPED,
            format!(
                "tenant {tenant_name} maps no subject of trusted issuer {issuer_name} to {namespace}/{client_id} (spec.trustedIssuers[].subjects)"
            ),
        );
    }
    let identity = |jwks| FederatedIdentity {
        name: spec.name.clone(),
        issuer: spec.issuer.clone(),
        subjects: subjects.clone(),
        jwks,
    };
    match keys_named(inputs.issuer_keys, issuer_name) {
        Some(IssuerKeys::Current { jwks, .. }) => Bound::Live(identity(jwks.clone())),
        Some(IssuerKeys::Held { why }) => Bound::Held(format!("{why}; retrying")),
        Some(IssuerKeys::Missing { why, .. }) => Bound::WithoutKeys(
            identity(no_keys()),
            format!("{why}; its tokens are refused until they are read"),
        ),
        None => Bound::WithoutKeys(
            identity(no_keys()),
            format!("the keys of {} are not read yet", spec.issuer),
        ),
    }
}

/// An empty JWK Set: a federated identity that no token matches until keys are read.
pub(super) fn no_keys() -> serde_json::Value {
    serde_json::json!({"keys": []})
}

/// The keys of the trusted issuer called `name`, if this process looked them up.
pub(super) fn keys_named<'k>(
    keys: &'k [(String, IssuerKeys)],
    name: &str,
) -> Option<&'k IssuerKeys> {
    keys.iter().find(|(n, _)| n == name).map(|(_, k)| k)
}

/// The subjects of one trusted issuer that its tenant maps to this client, exactly.
pub(super) fn mapped_subjects(
    spec: &gatehouse_crd::tenant::TrustedIssuerSpec,
    namespace: &str,
    client_id: &str,
) -> Vec<String> {
    spec.subjects
        .iter()
        .filter(|m| m.client.namespace == namespace && m.client.client_id == client_id)
        .map(|m| m.subject.clone())
        .collect()
}

type Admitted<'a> = (&'a Tenant, Granted, Verdict);

/// What the tenant grants a client: the part of what it asks for that the tenant enables for its
/// namespace, plus the subjects it may assert.
pub(super) struct Granted {
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<GrantType>,
    pub scopes: Vec<String>,
    pub audiences: Vec<String>,
    pub may_assert: AssertableSubjects,
}

/// The tenant's answer to one kind of request (grants, scopes, audiences): what is refused and why.
pub(super) struct Withheld {
    reason: &'static str,
    message: String,
}

/// The client's scopes its tenant defines and grants its namespace, and why the others are not.
fn granted_scopes(
    tenant: &Tenant,
    namespace: &str,
    asked: &[String],
) -> (Vec<String>, Option<Withheld>) {
    let mut undefined = Vec::new();
    let mut not_granted = Vec::new();
    let mut kept = Vec::new();
    for scope in asked {
        // A declared scope (a built-in one too, say offline_access) goes by its declaration.
        match tenant.spec.scopes.iter().find(|s| &s.name == scope) {
            Some(s) if !namespaces_allow(s.namespaces.as_deref(), namespace) => {
                not_granted.push(scope.as_str());
            }
            Some(_) => kept.push(scope.clone()),
            None if BUILT_IN_SCOPES.contains(&scope.as_str()) => kept.push(scope.clone()),
            None => undefined.push(scope.as_str()),
        }
    }
    let mut why = Vec::new();
    if !undefined.is_empty() {
        why.push(format!(
            "tenant {} does not define scope {} (spec.scopes)",
            tenant.name_any(),
            undefined.join(", ")
        ));
    }
    if !not_granted.is_empty() {
        why.push(format!(
            "tenant {} does not grant scope {} to namespace {namespace} (spec.scopes[].namespaces)",
            tenant.name_any(),
            not_granted.join(", ")
        ));
    }
    let withheld = (!why.is_empty()).then(|| Withheld {
        reason: reasons::SCOPE_NOT_ALLOWED,
        message: why.join("; "),
    });
    (kept, withheld)
}

/// The redirect URIs the tenant lets a client use, and those it does not (plain `http` beyond
/// loopback, unless `spec.allowHttpRedirectUris`).
fn allowed_redirect_uris<'u>(tenant: &Tenant, uris: &'u [String]) -> (Vec<String>, Vec<&'u str>) {
    let mut kept = Vec::new();
    let mut refused = Vec::new();
    for uri in uris {
        if is_http_beyond_loopback(uri) && !tenant.spec.allow_http_redirect_uris {
            refused.push(uri.as_str());
        } else {
            kept.push(uri.clone());
        }
    }
    (kept, refused)
}

/// The client's audiences its tenant declares for its namespace, and why the others are not.
fn granted_audiences(
    tenant: &Tenant,
    namespace: &str,
    asked: &[String],
) -> (Vec<String>, Option<Withheld>) {
    let (kept, refused): (Vec<String>, Vec<String>) = asked
        .iter()
        .cloned()
        .partition(|a| audience_allowed(tenant, namespace, a));
    let withheld = (!refused.is_empty()).then(|| Withheld {
        reason: reasons::AUDIENCE_NOT_ALLOWED,
        message: format!(
            "tenant {} does not declare audience {} for namespace {namespace} (spec.audiences)",
            tenant.name_any(),
            refused.join(", ")
        ),
    });
    (kept, withheld)
}

fn audience_allowed(tenant: &Tenant, namespace: &str, audience: &str) -> bool {
    tenant
        .spec
        .audiences
        .iter()
        .any(|a| a.name == audience && namespaces_allow(a.namespaces.as_deref(), namespace))
}

/// The subjects the tenant lets this client (by namespace and client id) assert.
fn assertable_subjects(tenant: &Tenant, namespace: &str, client_id: &str) -> AssertableSubjects {
    let mut out = AssertableSubjects::default();
    for grant in &tenant.spec.subject_assertions {
        if grant.signer.namespace == namespace && grant.signer.client_id == client_id {
            // Granted per signer: any of its grants that allows impersonation allows it for
            // the subjects of all of them.
            out.impersonation |= grant.impersonation;
            out.users.extend(grant.users.iter().cloned());
            out.clients.extend(
                grant
                    .clients
                    .iter()
                    .map(|c| gatehouse_core::config::ClientRef {
                        namespace: c.namespace.clone(),
                        client_id: c.client_id.clone(),
                    }),
            );
        }
    }
    out.users.sort();
    out.users.dedup();
    out.clients.sort();
    out.clients.dedup();
    out
}

/// Whether the tenant takes this client, and with which grants.
fn admit<'a>(
    client: &OAuthClient,
    namespace: &str,
    client_id: &str,
    inputs: &ClientInputs<'a>,
) -> Result<Admitted<'a>, Refusal> {
    let spec = &client.spec;
    let problems = validate_client(spec);
    if !problems.is_empty() {
        let message = problems
            .iter()
            .map(std::string::ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        return Err(Refusal::invalid(reasons::INVALID_SPEC, message));
    }
    let tenant = match inputs.tenant {
        TenantView::Valid(t) => t,
        TenantView::Invalid => {
            return Err(Refusal::invalid(
                reasons::TENANT_NOT_READY,
                format!(
                    "tenant {}'s current spec is refused (see its Accepted condition)",
                    spec.tenant_ref
                ),
            ));
        }
        TenantView::Missing => {
            return Err(Refusal::decided(
                reasons::TENANT_NOT_FOUND,
                format!("tenant {} does not exist", spec.tenant_ref),
            ));
        }
    };
    if !tenant_admits(tenant, namespace) {
        return Err(Refusal::decided(
            reasons::NAMESPACE_NOT_ALLOWED,
            format!(
                "tenant {} does not accept clients from namespace {namespace} (spec.clientNamespaces)",
                spec.tenant_ref
            ),
        ));
    }
    if !inputs.holds_id {
        return Err(Refusal::decided(
            reasons::CLIENT_ID_CONFLICT,
            format!(
                "client id {client_id} is already used by another client of tenant {}",
                spec.tenant_ref
            ),
        ));
    }
    let asked = Asked {
        grant_types: &spec.grant_types,
        redirect_uris: &spec.redirect_uris,
        post_logout_redirect_uris: &spec.post_logout_redirect_uris,
        scopes: &spec.scopes,
        audiences: &spec.audiences,
    };
    let (granted, withheld) = grant(tenant, namespace, client_id, &asked)?;
    let accepted = match withheld.first() {
        None => Verdict::new(
            types::ACCEPTED,
            true,
            reasons::ACCEPTED,
            format!("accepted by tenant {}", spec.tenant_ref),
        ),
        Some(first) => Verdict::new(
            types::ACCEPTED,
            false,
            first.reason,
            withheld
                .iter()
                .map(|w| w.message.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        ),
    };
    Ok((tenant, granted, accepted))
}

/// What a client asks its tenant for: its spec, or (for a held client) its stored registration.
pub(super) struct Asked<'s> {
    pub grant_types: &'s [GrantType],
    pub redirect_uris: &'s [String],
    pub post_logout_redirect_uris: &'s [String],
    pub scopes: &'s [String],
    pub audiences: &'s [String],
}

/// The part of what a client (by namespace and id, in a namespace the tenant admits) asks for
/// that its tenant grants, and why the rest is withheld; or why it gets nothing. The one place
/// that decides, for a client's current spec and for a held client's stored registration alike.
pub(super) fn grant(
    tenant: &Tenant,
    namespace: &str,
    client_id: &str,
    asked: &Asked<'_>,
) -> Result<(Granted, Vec<Withheld>), Refusal> {
    let tenant_name = tenant.name_any();
    // A client left with no audiences (none asked for, or all refused) gets tokens for its own
    // client id: an id that names a declared audience would hand the client that audience.
    if tenant.spec.audiences.iter().any(|a| a.name == client_id)
        && !audience_allowed(tenant, namespace, client_id)
    {
        return Err(Refusal::decided(
            reasons::AUDIENCE_NOT_ALLOWED,
            format!(
                "client id {client_id} names an audience of tenant {tenant_name} (spec.audiences) that namespace {namespace} may not hold",
            ),
        ));
    }
    let (effective, refused): (Vec<GrantType>, Vec<GrantType>) = asked
        .grant_types
        .iter()
        .partition(|g| tenant.spec.grant_types.contains(g));
    if effective.is_empty() {
        // The id stays reserved: a client that is fixed later must not find it stolen.
        return Err(Refusal::decided(
            reasons::GRANT_TYPE_NOT_ENABLED,
            format!("tenant {tenant_name} enables none of {}", list(&refused)),
        ));
    }
    let mut withheld = Vec::new();
    if !refused.is_empty() {
        withheld.push(Withheld {
            reason: reasons::GRANT_TYPE_NOT_ENABLED,
            message: format!(
                "tenant {tenant_name} does not enable {}; the client keeps {}",
                list(&refused),
                list(&effective)
            ),
        });
    }
    let (redirect_uris, refused_uris) = allowed_redirect_uris(tenant, asked.redirect_uris);
    let (post_logout_redirect_uris, refused_logout_uris) =
        allowed_redirect_uris(tenant, asked.post_logout_redirect_uris);
    let refused_uris: Vec<&str> = refused_uris
        .into_iter()
        .chain(refused_logout_uris)
        .collect();
    if !refused_uris.is_empty() {
        withheld.push(Withheld {
            reason: reasons::REDIRECT_URI_NOT_ALLOWED,
            message: format!(
                "tenant {tenant_name} does not allow plain-http redirect URIs beyond loopback (spec.allowHttpRedirectUris): {}",
                refused_uris.join(", ")
            ),
        });
    }
    let (scopes, refused_scopes) = granted_scopes(tenant, namespace, asked.scopes);
    let (audiences, refused_audiences) = granted_audiences(tenant, namespace, asked.audiences);
    withheld.extend(refused_scopes);
    withheld.extend(refused_audiences);
    let granted = Granted {
        redirect_uris,
        post_logout_redirect_uris,
        grant_types: effective,
        scopes,
        audiences,
        may_assert: assertable_subjects(tenant, namespace, client_id),
    };
    Ok((granted, withheld))
}

fn list(grants: &[GrantType]) -> String {
    grants
        .iter()
        .map(|g| g.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The rotation a client asks for with the `gatehouse.dev/rotate-secret` annotation, if its
/// Secret is Gatehouse's own and has not had that rotation yet. Secrets someone else manages
/// are never rotated (their owner rotates them; a change takes effect by itself).
fn rotation_asked(
    client: &OAuthClient,
    secret: &k8s_openapi::api::core::v1::Secret,
) -> Option<String> {
    use crate::secrets::{ROTATE_ANNOTATION, ROTATED_FOR_ANNOTATION, is_managed};
    let wanted = client.annotations().get(ROTATE_ANNOTATION)?;
    let ours = is_managed(secret);
    let done = secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ROTATED_FOR_ANNOTATION));
    (ours && done != Some(wanted)).then(|| wanted.clone())
}
