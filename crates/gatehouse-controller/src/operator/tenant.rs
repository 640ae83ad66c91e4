//! Reconciling one Tenant: its settings and signing keys into the store (keys kept in a
//! Secret in the operator's namespace, the source of truth), its status, and on deletion the
//! removal of its issuer and everything its server wrote.

use super::context::Context;
use super::lookup::{self, Found};
use super::{FINALIZER, RESYNC, ReconcileError};
use crate::cluster::{ClusterError, keys_secret_name, read_keys_secret as read_keys};
use crate::conditions::{Verdict, set};
use crate::events::EventType;
use crate::publish::key_statuses;
use crate::reconcile::{TenantView, reconcile_tenant as decide};
use crate::secrets::{KEYS_ROTATED_FOR_ANNOTATION, ROTATE_KEYS_ANNOTATION, WATCH_LABEL};
use gatehouse_core::keys::KeyState;
use gatehouse_crd::Tenant;
use gatehouse_crd::condition::{reasons, types};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event, finalizer};
use kube::{Resource, ResourceExt};
use std::sync::Arc;
use std::time::Duration;

pub const KIND: &str = "Tenant";

pub async fn reconcile_tenant(
    tenant: Arc<Tenant>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let _timer = ctx.metrics.start(KIND);
    let api: Api<Tenant> = Api::all(ctx.kube.client.clone());
    let key = format!("{KIND}/{}", tenant.name_any());
    let result = finalizer(&api, FINALIZER, tenant, |event| async {
        match event {
            Event::Apply(t) => apply(&t, &ctx).await,
            Event::Cleanup(t) => cleanup(&t, &ctx).await,
        }
    })
    .await
    .map_err(ReconcileError::from);
    if result.is_ok() {
        ctx.succeeded(&key);
    }
    result
}

async fn apply(tenant: &Tenant, ctx: &Context) -> Result<Action, ReconcileError> {
    let name = tenant.name_any();
    let now = ctx.now();
    let now_time = ctx.now_time();
    let users = match &tenant.spec.users {
        // People supply it: never adopted.
        Some(u) => lookup::secret(ctx, &u.secret_ref.namespace, &u.secret_ref.name, None).await?,
        None => Found::Missing,
    };
    let mut wait = RESYNC;
    if !tenant.spec.trusted_issuers.is_empty()
        && matches!(TenantView::of(Some(tenant)), TenantView::Valid(_))
    {
        let (changed, next) = ctx.trusted.refresh(tenant, &ctx.fetcher, now).await;
        if !changed.is_empty() {
            // Their registrations carry the keys: written again now (held ones too, whose
            // stored registration may carry them whatever their current spec says).
            for client in ctx.caches.index.clients_of_tenant(&name) {
                let bound = ctx.caches.clients.get(&client).is_some_and(|c| {
                    let names_issuer = c
                        .spec
                        .workload_identity
                        .as_ref()
                        .is_some_and(|w| w.trusted_issuer.is_some());
                    let held = c.status.as_ref().is_some_and(|s| {
                        s.conditions.iter().any(|c| {
                            c.type_ == types::READY && c.reason == reasons::SERVING_LAST_VALID
                        })
                    });
                    names_issuer || held
                });
                if bound {
                    let _ = ctx.requeue_clients.unbounded_send(client);
                }
            }
        }
        if let Some(next) = next {
            wait = wait.min(Duration::from_secs(next.saturating_sub(now).max(1)));
        }
    }
    let issuers = ctx.trusted.statuses(tenant, now);
    let mut outcome = decide(tenant, users.view(), &ctx.public_url, issuers, &now_time);
    let mut status = outcome.status.clone();
    if outcome.registration.is_some() || outcome.held.is_some() {
        // Counted by the index from the clients' own statuses, not by looking at each client.
        let live = ctx.caches.index.live_clients(&name);
        status.clients = Some(i32::try_from(live).unwrap_or(i32::MAX));
    }
    let keys_name = keys_secret_name(&name);
    let result: Result<(), ReconcileError> = async {
        let Some(config) = &outcome.registration else {
            if let Some(value) = replacement_requested(tenant, ctx.secret(&ctx.namespace, &keys_name).as_deref()) {
                let note = format!(
                    "keys NOT replaced ({ROTATE_KEYS_ANNOTATION}={value}): the Tenant's spec is refused; fix it and the replacement follows"
                );
                ctx.kube
                    .event(&tenant.object_ref(&()), EventType::Warning, "KeysReplacementPending", &note)
                    .await;
            }
            // A refused spec: the last valid version (settings, keys, clients, tokens) stays
            // in the store untouched, and keeps serving if it is there.
            if ctx.publisher.serves_tenant(&name).await? {
                outcome.still_serving();
                let clients = status.clients;
                status = outcome.status.clone();
                status.clients = clients;
            }
            return Ok(());
        };
        let keys_secret = ctx.secret(&ctx.namespace, &keys_name).map(|s| (*s).clone());
        let existing = match &keys_secret {
            None => Vec::new(),
            Some(s) => read_keys(s).map_err(|why| ReconcileError::KeysSecret {
                secret: format!("{}/{keys_name}", ctx.namespace),
                why,
            })?,
        };
        let replace_for = replacement_requested(tenant, keys_secret.as_ref());
        let plan = match replace_for {
            Some(_) if !existing.is_empty() => {
                ctx.publisher
                    .replace_keys(&name, existing.clone(), outcome.key_policy, now)
                    .await?
            }
            _ => {
                ctx.publisher
                    .plan_keys(&name, existing.clone(), outcome.key_policy, now)
                    .await?
            }
        };
        if plan.keys != existing || replace_for.is_some() {
            // The Secret first: the store is a copy of it, never the other way round.
            let written = ctx
                .kube
                .write_keys_secret(
                    &ctx.namespace,
                    tenant,
                    keys_secret.as_ref(),
                    &plan.keys,
                    requested_replacement(tenant),
                )
                .await;
            match written {
                Err(ClusterError::Stale(_)) if keys_secret.is_none() => {
                    return Err(unseen_keys_secret(ctx, tenant, &keys_name).await);
                }
                other => other?,
            }
        }
        let published = ctx.publisher.publish_tenant(config, &plan.keys).await?;
        if published.restored {
            // A tenant the store had lost (a flushed or replaced Redis) lost its clients with
            // it: they are written again now, not at the next drift check or resync.
            for client in ctx.caches.index.clients_of_tenant(&name) {
                let _ = ctx.requeue_clients.unbounded_send(client);
            }
        }
        if let Some(value) = replace_for
            && !existing.is_empty()
        {
            let active = plan.active().map(|k| k.kid.as_str()).unwrap_or_default();
            let note = format!(
                "keys replaced on request ({ROTATE_KEYS_ANNOTATION}={value}): key {active} now signs; withdrawn from JWKS at once: {} (tokens they signed no longer verify)",
                plan.expired.join(", ")
            );
            ctx.kube
                .event(
                    &tenant.object_ref(&()),
                    EventType::Warning,
                    "KeysReplaced",
                    &note,
                )
                .await;
        } else if plan.rotated && !existing.is_empty() {
            let active = plan.active().map(|k| k.kid.as_str()).unwrap_or_default();
            let retired: Vec<&str> = existing
                .iter()
                .filter(|k| k.state == KeyState::Active && k.kid != active)
                .map(|k| k.kid.as_str())
                .collect();
            let note = format!(
                "key {active} now signs; retired {} (still published until its tokens expire)",
                retired.join(", ")
            );
            ctx.kube
                .event(
                    &tenant.object_ref(&()),
                    EventType::Normal,
                    "KeyRotated",
                    &note,
                )
                .await;
        }
        status.signing_keys = key_statuses(&plan.keys);
        wait = wait.min(Duration::from_secs(
            plan.next_change_at.saturating_sub(now).max(1),
        ));
        Ok(())
    }
    .await;
    if let Err(e) = &result {
        let reason = match e {
            ReconcileError::KeysSecret { .. } => Some(reasons::SIGNING_KEYS_INVALID),
            ReconcileError::Publish(_) => Some(reasons::STORE_UNAVAILABLE),
            _ => None,
        };
        if let Some(reason) = reason {
            let verdict = Verdict::new(types::READY, false, reason, format!("{e}; retrying"));
            let generation = status.observed_generation;
            set(&mut status.conditions, &verdict, generation, &now_time);
        }
    }
    let api: Api<Tenant> = Api::all(ctx.kube.client.clone());
    ctx.kube.write_status(&api, tenant, &status).await?;
    result.map(|()| Action::requeue(wait))
}

/// The Tenant's `rotate-keys` value, if it has one.
fn requested_replacement(tenant: &Tenant) -> Option<&str> {
    tenant
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ROTATE_KEYS_ANNOTATION))
        .map(String::as_str)
}

/// The `rotate-keys` value still to act on: set on the Tenant and not the one its keys Secret
/// records. Keys made for the first time under a value record it, so it replaces nothing.
fn replacement_requested<'a>(tenant: &'a Tenant, keys_secret: Option<&Secret>) -> Option<&'a str> {
    let wanted = requested_replacement(tenant)?;
    let done = keys_secret
        .and_then(|s| s.metadata.annotations.as_ref())
        .and_then(|a| a.get(KEYS_ROTATED_FOR_ANNOTATION));
    (done.map(String::as_str) != Some(wanted)).then_some(wanted)
}

/// Why a keys Secret the cache lacks exists in the cluster: the cache is behind, or it is an
/// unlabelled one Gatehouse made for this tenant (labelled now; either way, retried), or
/// someone else's under that name, which is reported and never written over.
async fn unseen_keys_secret(ctx: &Context, tenant: &Tenant, name: &str) -> ReconcileError {
    let uid = tenant.metadata.uid.as_deref().unwrap_or_default();
    match lookup::uncached(ctx, &ctx.namespace, name, Some(uid)).await {
        Ok(Found::NotLabelled) => ReconcileError::KeysSecret {
            secret: format!("{}/{name}", ctx.namespace),
            why: format!(
                "it exists without the label {}={} and was not made by Gatehouse for this tenant; restore the tenant's keys Secret from a backup (with the label), or delete it to start with new keys",
                WATCH_LABEL.0, WATCH_LABEL.1
            ),
        },
        Ok(Found::Cached(_) | Found::Missing) => {
            ReconcileError::Conflict(format!("Secret {}/{name} came and went", ctx.namespace))
        }
        Err(e) => e,
    }
}

async fn cleanup(tenant: &Tenant, ctx: &Context) -> Result<Action, ReconcileError> {
    let name = tenant.name_any();
    let removed = ctx.publisher.unpublish_tenant(&name, true).await?;
    ctx.kube.delete_keys_secret(&ctx.namespace, &name).await?;
    ctx.trusted.retain_tenants(|t| t != name);
    let issuer = gatehouse_core::endpoints::issuer(&ctx.public_url, &name);
    let note = format!(
        "issuer {issuer} taken out of service with its clients; {removed} tokens, codes and sessions deleted"
    );
    ctx.kube
        .event(
            &tenant.object_ref(&()),
            EventType::Normal,
            "TenantRemoved",
            &note,
        )
        .await;
    Ok(Action::await_change())
}
