//! A Tenant's registration and status.

use super::{Held, TenantOutcome};
use crate::conditions::{Verdict, to_conditions};
use crate::issuers::states;
use crate::secrets::{SecretView, not_labelled, string_value};
use crate::users::{USERS_KEY, parse_users};
use gatehouse_core::config::ScopeConfig;
use gatehouse_core::duration::parse_duration;
use gatehouse_core::key_rotation::RotationPolicy;
use gatehouse_core::{TenantConfig, endpoints};
use gatehouse_crd::condition::{reasons, types};
use gatehouse_crd::tenant::TrustedIssuerStatus;
use gatehouse_crd::validate::validate_tenant;
use gatehouse_crd::{Tenant, TenantStatus};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

/// For a spec that failed validation (it is not served, so the value only fills the field).
const DEFAULT_ROTATION_SECS: u64 = 720 * 3600;

fn secs(s: &str) -> u64 {
    // Validated before use; a parse failure cannot reach here.
    parse_duration(s).map_or(1, |d| d.as_secs().max(1))
}

/// The users a readable users Secret holds; the error names the Secret and what is wrong.
fn read_users(
    secret: &Secret,
    namespace: &str,
    name: &str,
) -> Result<Vec<gatehouse_core::config::UserConfig>, String> {
    let text = string_value(secret, USERS_KEY)
        .map_err(|e| format!("Secret {namespace}/{name}: {e}"))?
        .ok_or_else(|| format!("Secret {namespace}/{name} has no key {USERS_KEY}"))?;
    parse_users(&text).map_err(|e| format!("Secret {namespace}/{name}: {e}"))
}

/// A Tenant's registration and status from the Tenant and the users Secret its
/// `spec.users.secretRef` names. `status.clients` is left for the caller, who knows how many
/// clients are live.
#[must_use]
pub fn reconcile_tenant(
    tenant: &Tenant,
    users_secret: SecretView<'_>,
    public_url: &str,
    trusted_issuers: Vec<TrustedIssuerStatus>,
    now: &Time,
) -> TenantOutcome {
    let name = tenant.name_any();
    let previous = tenant
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let generation = tenant.metadata.generation;
    let spec = &tenant.spec;
    let problems = validate_tenant(&name, spec);
    let mut verdicts = Vec::new();
    let (registration, decided, issuer, held) = if problems.is_empty() {
        // A users Secret that cannot be read: the tenant serves, but nobody can sign in.
        let mut users_problem = None;
        let users = match &spec.users {
            None => Vec::new(),
            Some(u) => {
                let r = &u.secret_ref;
                let loaded = match users_secret {
                    SecretView::Readable(s) => read_users(s, &r.namespace, &r.name)
                        .map_err(|e| (reasons::USERS_SECRET_INVALID, e)),
                    SecretView::NotLabelled => Err((
                        reasons::SECRET_NOT_LABELLED,
                        not_labelled(&r.namespace, &r.name),
                    )),
                    SecretView::Missing => Err((
                        reasons::USERS_SECRET_INVALID,
                        format!("Secret {}/{} not found", r.namespace, r.name),
                    )),
                };
                match loaded {
                    Ok(users) => {
                        verdicts.push(Verdict::new(
                            types::USERS_LOADED,
                            true,
                            reasons::USERS_LOADED,
                            format!("{} users", users.len()),
                        ));
                        users
                    }
                    Err((reason, message)) => {
                        let message = format!("{message}; nobody can sign in until it is fixed");
                        verdicts.push(Verdict::new(
                            types::USERS_LOADED,
                            false,
                            reason,
                            message.clone(),
                        ));
                        users_problem = Some((reason, message));
                        Vec::new()
                    }
                }
            }
        };
        let config = TenantConfig {
            name: name.clone(),
            display_name: spec.display_name.clone(),
            grant_types: spec.grant_types.clone(),
            access_token_format: spec.access_token.format,
            access_token_ttl_secs: secs(&spec.access_token.ttl),
            refresh_token_ttl_secs: secs(&spec.refresh_token.ttl),
            refresh_token_rotation: spec.refresh_token.rotation,
            authorization_code_ttl_secs: secs(&spec.authorization_code.ttl),
            pkce_required: spec.pkce.required,
            signing_algorithm: spec.signing.algorithm,
            scopes: spec
                .scopes
                .iter()
                .map(|s| ScopeConfig {
                    name: s.name.clone(),
                    description: s.description.clone(),
                })
                .collect(),
            users,
            review_service_account_tokens: spec.review_service_account_tokens,
        };
        if !spec.trusted_issuers.is_empty() {
            verdicts.push(issuers_verdict(&trusted_issuers));
        }
        let issuer = endpoints::issuer(public_url, &name);
        let ready = match users_problem {
            None => Verdict::new(
                types::READY,
                true,
                reasons::RECONCILED,
                format!("serving as {issuer}"),
            ),
            // Shown where people look first (READY, REASON), not only in UsersLoaded.
            Some((reason, message)) => Verdict::new(
                types::READY,
                false,
                reason,
                format!("serving as {issuer}, but its users Secret: {message}"),
            ),
        };
        let accepted = Verdict::new(types::ACCEPTED, true, reasons::ACCEPTED, "spec accepted");
        (Some(config), vec![ready, accepted], Some(issuer), None)
    } else {
        let message = problems
            .iter()
            .map(std::string::ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        let mut held = Held::refused_spec(previous, generation, &message, now);
        held.issuer = Some(endpoints::issuer(public_url, &name));
        let refused = |type_| Verdict::new(type_, false, reasons::INVALID_SPEC, message.clone());
        (
            None,
            vec![refused(types::READY), refused(types::ACCEPTED)],
            None,
            Some(held),
        )
    };
    let key_policy = RotationPolicy::new(
        spec.signing.algorithm,
        parse_duration(&spec.signing.rotation_interval)
            .map_or(DEFAULT_ROTATION_SECS, |d| d.as_secs()),
        // Everything a key signs (access and ID tokens) lives at most an access-token TTL.
        registration.as_ref().map_or(0, |c| c.access_token_ttl_secs),
    );
    TenantOutcome {
        name,
        registration,
        held,
        key_policy,
        status: TenantStatus {
            issuer,
            observed_generation: generation,
            conditions: to_conditions(&[decided, verdicts].concat(), previous, generation, now),
            clients: None,
            signing_keys: tenant
                .status
                .as_ref()
                .map(|s| s.signing_keys.clone())
                .unwrap_or_default(),
            trusted_issuers,
        },
    }
}

/// `TrustedIssuersRead`: true when every trusted issuer's keys are current.
fn issuers_verdict(issuers: &[TrustedIssuerStatus]) -> Verdict {
    let failing: Vec<String> = issuers
        .iter()
        .filter(|i| i.state != states::READY)
        .map(|i| format!("{} ({}): {}", i.name, i.state, i.message))
        .collect();
    if failing.is_empty() {
        Verdict::new(
            types::TRUSTED_ISSUERS_READ,
            true,
            reasons::ISSUERS_READ,
            format!("keys of {} trusted issuers read", issuers.len()),
        )
    } else {
        Verdict::new(
            types::TRUSTED_ISSUERS_READ,
            false,
            reasons::ISSUER_UNREACHABLE,
            failing.join("; "),
        )
    }
}
