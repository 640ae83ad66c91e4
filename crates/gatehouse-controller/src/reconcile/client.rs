//! OAuthClients: admission by their tenant, client-id uniqueness, effective grants, secrets.

use super::{ClientOutcome, ClientRegistration, Index, Observed, SecretRequest};
use crate::conditions::{Verdict, to_conditions};
use crate::secrets::{CLIENT_SECRET_KEY, is_generated, string_value};
use gatehouse_core::secret::HashCost;
use gatehouse_core::{ClientConfig, GrantType, TenantConfig, endpoints};
use gatehouse_crd::condition::{reasons, types};
use gatehouse_crd::validate::validate_client;
use gatehouse_crd::{OAuthClient, OAuthClientStatus, Tenant};
use kube::ResourceExt;
use std::collections::{BTreeMap, BTreeSet};

/// Why a client gets no token, as (reason, message) for both conditions.
struct Refusal(&'static str, String);

pub(super) fn reconcile_clients(
    observed: &Observed<'_>,
    index: &Index<'_>,
    tenants: &BTreeMap<&str, (&Tenant, &TenantConfig)>,
) -> Vec<ClientOutcome> {
    // Oldest first, so an established client keeps its id when a newcomer collides with it.
    let mut order: Vec<&OAuthClient> = observed.clients.iter().collect();
    fn age_key(c: &OAuthClient) -> (Option<k8s_openapi::jiff::Timestamp>, &str, &str) {
        (
            c.metadata.creation_timestamp.as_ref().map(|t| t.0),
            c.metadata.namespace.as_deref().unwrap_or_default(),
            c.metadata.name.as_deref().unwrap_or_default(),
        )
    }
    order.sort_by(|a, b| age_key(a).cmp(&age_key(b)));
    let mut taken: BTreeSet<(String, String)> = BTreeSet::new();
    let mut out: Vec<ClientOutcome> = order
        .into_iter()
        .map(|c| reconcile_client(c, observed, index, tenants, &mut taken))
        .collect();
    // Unstable: (namespace, name) is unique, and a stable sort would copy every outcome.
    out.sort_unstable_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    out
}

fn tenant_admits(tenant: &Tenant, namespace: &str) -> bool {
    match &tenant.spec.client_namespaces {
        Some(list) => list.iter().any(|n| n == "*" || n == namespace),
        None => tenant.name_any() == namespace,
    }
}

fn reconcile_client(
    client: &OAuthClient,
    observed: &Observed<'_>,
    index: &Index<'_>,
    tenants: &BTreeMap<&str, (&Tenant, &TenantConfig)>,
    taken: &mut BTreeSet<(String, String)>,
) -> ClientOutcome {
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
    };
    let mut outcome = ClientOutcome {
        namespace: namespace.clone(),
        name: name.clone(),
        tenant: spec.tenant_ref.clone(),
        registration: None,
        status: OAuthClientStatus::default(),
        secret_request: None,
        secret_rotation: None,
    };

    let admitted = admit(client, &namespace, &client_id, observed, tenants, taken);
    let (tenant, effective, accepted) = match admitted {
        Err(Refusal(reason, message)) => {
            let verdicts = [
                Verdict::new(types::ACCEPTED, false, reason, message.clone()),
                Verdict::new(types::READY, false, reason, message),
            ];
            status.conditions = to_conditions(&verdicts, previous, generation, &observed.now);
            outcome.status = status;
            return outcome;
        }
        Ok(a) => a,
    };
    status.grant_types = effective.clone();

    // Credentials.
    let issuer = endpoints::issuer(observed.public_url, &tenant.name_any());
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
        let found = index.secret(&namespace, &secret_ref.name);
        match found {
            Some(s) => match string_value(s, CLIENT_SECRET_KEY) {
                Ok(Some(value)) if !value.is_empty() => {
                    if is_generated(s, &value) {
                        secret_cost = HashCost::RandomKey;
                    }
                    secret = Some(value);
                    outcome.secret_rotation =
                        rotation_asked(client, s).map(|wanted| (secret_request.clone(), wanted));
                }
                Ok(_) => {
                    ready = Verdict::new(
                        types::READY,
                        false,
                        reasons::SECRET_INVALID,
                        format!("Secret {} has no {CLIENT_SECRET_KEY}", secret_ref.name),
                    );
                }
                Err(why) => {
                    ready = Verdict::new(
                        types::READY,
                        false,
                        reasons::SECRET_INVALID,
                        format!("Secret {}: {why}", secret_ref.name),
                    );
                }
            },
            None if secret_ref.generate => {
                ready = Verdict::new(
                    types::READY,
                    false,
                    reasons::SECRET_PENDING,
                    format!("creating Secret {}", secret_ref.name),
                );
                outcome.secret_request = Some(secret_request.clone());
            }
            None => {
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
    if ready.ok {
        outcome.registration = Some(ClientRegistration {
            config: ClientConfig {
                client_id: client_id.clone(),
                source: format!("{namespace}/{name}"),
                client_name: spec.client_name.clone(),
                public: spec.public,
                grant_types: effective,
                redirect_uris: spec.redirect_uris.clone(),
                post_logout_redirect_uris: spec.post_logout_redirect_uris.clone(),
                scopes: spec.scopes.clone(),
                audiences: spec.audiences.clone(),
                token_endpoint_auth_method: spec.effective_auth_method(),
                secret_hash: None,
                jwks: spec
                    .jwks
                    .as_ref()
                    .map(|j| serde_json::json!({ "keys": j.keys })),
                // The publisher keeps the stored one, or makes one for a new registration.
                incarnation: String::new(),
                extra: Default::default(),
            },
            secret,
            secret_cost,
        });
    }
    status.conditions = to_conditions(&[accepted, ready], previous, generation, &observed.now);
    outcome.status = status;
    outcome
}

type Admitted<'a> = (&'a Tenant, Vec<GrantType>, Verdict);

/// Whether the tenant takes this client, and with which grants.
fn admit<'a>(
    client: &OAuthClient,
    namespace: &str,
    client_id: &str,
    observed: &Observed<'_>,
    tenants: &BTreeMap<&str, (&'a Tenant, &'a TenantConfig)>,
    taken: &mut BTreeSet<(String, String)>,
) -> Result<Admitted<'a>, Refusal> {
    let spec = &client.spec;
    let problems = validate_client(spec);
    if !problems.is_empty() {
        let message = problems
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        return Err(Refusal(reasons::INVALID_SPEC, message));
    }
    let Some(&(tenant, config)) = tenants.get(spec.tenant_ref.as_str()) else {
        if observed
            .tenants
            .iter()
            .any(|t| t.name_any() == spec.tenant_ref)
        {
            return Err(Refusal(
                reasons::TENANT_NOT_READY,
                format!(
                    "tenant {} is not ready; see its Ready condition",
                    spec.tenant_ref
                ),
            ));
        }
        return Err(Refusal(
            reasons::TENANT_NOT_FOUND,
            format!("tenant {} does not exist", spec.tenant_ref),
        ));
    };
    if !tenant_admits(tenant, namespace) {
        return Err(Refusal(
            reasons::NAMESPACE_NOT_ALLOWED,
            format!(
                "tenant {} does not accept clients from namespace {namespace} (spec.clientNamespaces)",
                spec.tenant_ref
            ),
        ));
    }
    if !taken.insert((spec.tenant_ref.clone(), client_id.to_string())) {
        return Err(Refusal(
            reasons::CLIENT_ID_CONFLICT,
            format!(
                "client id {client_id} is already used by another client of tenant {}",
                spec.tenant_ref
            ),
        ));
    }
    let (effective, refused): (Vec<GrantType>, Vec<GrantType>) =
        spec.grant_types.iter().partition(|g| config.enables(**g));
    if effective.is_empty() {
        // The id stays reserved: a client that is fixed later must not find it stolen.
        return Err(Refusal(
            reasons::GRANT_TYPE_NOT_ENABLED,
            format!(
                "tenant {} enables none of {}",
                spec.tenant_ref,
                list(&refused)
            ),
        ));
    }
    let accepted = if refused.is_empty() {
        Verdict::new(
            types::ACCEPTED,
            true,
            reasons::ACCEPTED,
            format!("accepted by tenant {}", spec.tenant_ref),
        )
    } else {
        Verdict::new(
            types::ACCEPTED,
            false,
            reasons::GRANT_TYPE_NOT_ENABLED,
            format!(
                "tenant {} does not enable {}; the client keeps {}",
                spec.tenant_ref,
                list(&refused),
                list(&effective)
            ),
        )
    };
    Ok((tenant, effective, accepted))
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
