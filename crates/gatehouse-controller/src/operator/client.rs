//! Reconciling one OAuthClient: its registration in the store, its credentials Secret, its
//! status, and on deletion its removal (which revokes its refresh tokens). It looks only at
//! what it depends on: its tenant, the claims on its client id, and its Secret (read only
//! when it carries the watch label; see [`super::lookup`]).

use super::context::Context;
use super::lookup::{self, Found};
use super::{FINALIZER, RESYNC, ReconcileError};
use crate::conditions::{Verdict, set};
use crate::events::EventType;
use crate::reconcile::{ClientInputs, ServiceAccountView, TenantView, reconcile_client as decide};
use gatehouse_crd::condition::{ConditionStatus, reasons, types};
use gatehouse_crd::{OAuthClient, OAuthClientStatus};
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use std::sync::Arc;

pub const KIND: &str = "OAuthClient";

pub async fn reconcile_client(
    client: Arc<OAuthClient>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let _timer = ctx.metrics.start(KIND);
    let namespace = client.namespace().unwrap_or_default();
    let api: Api<OAuthClient> = Api::namespaced(ctx.kube.client.clone(), &namespace);
    let key = format!("{KIND}/{namespace}/{}", client.name_any());
    let result = finalizer(&api, FINALIZER, client, |event| async {
        match event {
            Event::Apply(c) => apply(&c, &ctx).await,
            Event::Cleanup(c) => cleanup(&c, &ctx).await,
        }
    })
    .await
    .map_err(ReconcileError::from);
    if result.is_ok() {
        ctx.succeeded(&key);
    }
    result
}

fn identity(client: &OAuthClient) -> (String, String, String) {
    let namespace = client.namespace().unwrap_or_default();
    let name = client.name_any();
    let id = client.spec.effective_client_id(&namespace, &name);
    (namespace, name, id)
}

/// The id the store knew this client by, if not `id`: a `clientId` set later replaces the
/// derived one, and the registration under the old id is this client's too.
fn previous_id(client: &OAuthClient, id: &str) -> Option<String> {
    client
        .status
        .as_ref()
        .and_then(|s| s.client_id.clone())
        .filter(|p| p != id)
}

/// Asks the controller to look again at the other clients claiming the same id: one of them
/// may now win it, or lose it.
fn requeue_rivals(client: &OAuthClient, ctx: &Context) {
    let (namespace, name, _) = identity(client);
    for rival in ctx.caches.index.rivals(client) {
        if rival.namespace == namespace && rival.name == name {
            continue;
        }
        let reference = ObjectRef::new(&rival.name).within(&rival.namespace);
        if ctx.requeue_clients.unbounded_send(reference).is_err() {
            tracing::debug!("client controller stopped; not requeueing rivals");
        }
    }
}

/// The client's credentials Secret. One to be generated is not looked for beyond the cache:
/// creating it says whether it exists (a lookup per new client would double a cold start's
/// requests).
async fn credentials(
    client: &OAuthClient,
    namespace: &str,
    name: &str,
    ctx: &Context,
) -> Result<Found, ReconcileError> {
    if !client.spec.needs_secret() {
        return Ok(Found::Missing);
    }
    let secret_ref = client.spec.effective_secret_ref(name);
    if secret_ref.generate {
        return Ok(ctx
            .secret(namespace, &secret_ref.name)
            .map_or(Found::Missing, Found::Cached));
    }
    lookup::secret(
        ctx,
        namespace,
        &secret_ref.name,
        client.metadata.uid.as_deref(),
    )
    .await
}

async fn apply(client: &OAuthClient, ctx: &Context) -> Result<Action, ReconcileError> {
    let (namespace, name, id) = identity(client);
    let now = ctx.now_time();
    let tenant = ctx.tenant(&client.spec.tenant_ref);
    if tenant.is_none() && ctx.kube.tenant_exists(&client.spec.tenant_ref).await? {
        // Not "TenantNotFound": the watch has yet to deliver it, and will reconcile us again.
        return Err(ReconcileError::Conflict(format!(
            "Tenant {} is not in the cache yet",
            client.spec.tenant_ref
        )));
    }
    let holds_id = ctx
        .caches
        .index
        .holds_id(client, tenant.as_deref(), &ctx.caches.clients);
    let account = client
        .spec
        .workload_identity
        .as_ref()
        .and_then(|w| w.service_account_name.as_deref());
    let account_uid = match account {
        Some(account) => ctx.kube.service_account_uid(&namespace, account).await?,
        None => None,
    };
    // Copied (keys and all) only for the clients that need it.
    let cluster_issuer = account_uid.as_ref().and_then(|_| ctx.cluster_issuer());
    let service_account = match (account, &account_uid) {
        (None, _) => ServiceAccountView::Unavailable,
        (Some(_), None) => ServiceAccountView::Missing,
        (Some(_), Some(uid)) => ServiceAccountView::Found {
            uid,
            issuer: cluster_issuer.as_ref(),
        },
    };
    let issuer_keys = tenant
        .as_deref()
        .map(|t| ctx.trusted.all_keys(t, ctx.now()))
        .unwrap_or_default();
    let decide_with = |secret: &Found| {
        decide(
            client,
            &ClientInputs {
                tenant: TenantView::of(tenant.as_deref()),
                holds_id,
                secret: secret.view(),
                service_account,
                issuer_keys: &issuer_keys,
                public_url: &ctx.public_url,
                now: &now,
            },
        )
    };
    let secret = credentials(client, &namespace, &name, ctx).await?;
    let mut outcome = decide_with(&secret);
    // Before anything is published: a Secret that turns out to exist already (someone else's,
    // unlabelled) changes the outcome.
    if let Some(request) = &outcome.secret_request
        && request.owner_uid.is_some()
        && !ctx.kube.create_credentials_secret(request, client).await?
    {
        let uid = client.metadata.uid.as_deref();
        let secret = lookup::uncached(ctx, &request.namespace, &request.name, uid).await?;
        if let Found::Missing = secret {
            return Err(ReconcileError::Conflict(format!(
                "Secret {}/{} came and went",
                request.namespace, request.name
            )));
        }
        outcome = decide_with(&secret);
    }
    let tenant_name = &client.spec.tenant_ref;
    let source = format!("{namespace}/{name}");
    let previous_id = previous_id(client, &id);
    let published = if let Some(registration) = &outcome.registration {
        if let Some(previous) = &previous_id {
            ctx.publisher
                .unpublish_client(tenant_name, previous, &source)
                .await?;
        }
        ctx.publisher
            .publish_client(tenant_name, registration)
            .await
    } else if outcome.held.is_some() {
        // A refused spec (its own or its tenant's), or an input that cannot be read: the last
        // valid registration stays, cut back to what the tenant grants now, and keeps serving
        // if it is there.
        let within = outcome.held_within.as_ref();
        let mut serving = Ok(false);
        for held_id in std::iter::once(&id).chain(&previous_id) {
            serving = ctx
                .publisher
                .hold_client(tenant_name, held_id, &source, within)
                .await;
            match serving {
                Ok(true) => outcome.status.client_id = Some(held_id.clone()),
                // The status keeps naming the id the store knew, or that registration would
                // be forgotten, never cut back nor removed.
                Err(_) => {
                    if previous_id.is_some() {
                        outcome.status.client_id.clone_from(&previous_id);
                    }
                }
                Ok(false) => continue,
            }
            break;
        }
        match serving {
            Ok(true) => {
                outcome.still_serving();
                Ok(false)
            }
            other => other,
        }
    } else {
        if let Some(previous) = &previous_id {
            ctx.publisher
                .unpublish_client(tenant_name, previous, &source)
                .await?;
        }
        ctx.publisher
            .unpublish_client(tenant_name, &id, &source)
            .await
    };
    let mut status = outcome.status.clone();
    if let Err(e) = &published {
        let verdict = Verdict::new(
            types::READY,
            false,
            reasons::STORE_UNAVAILABLE,
            format!("cannot write to the store: {e}; retrying"),
        );
        let generation = status.observed_generation;
        set(&mut status.conditions, &verdict, generation, &now);
    }
    if let Some((request, wanted)) = &outcome.secret_rotation {
        ctx.kube
            .rotate_credentials_secret(request, wanted, client)
            .await?;
    }
    let before = client
        .status
        .as_ref()
        .map(|s| s.client_id.is_some() && is_live(s));
    let api: Api<OAuthClient> = Api::namespaced(ctx.kube.client.clone(), &namespace);
    if ctx.kube.write_status(&api, client, &status).await? && before != Some(is_live(&status)) {
        requeue_rivals(client, ctx);
    }
    published?;
    Ok(Action::requeue(RESYNC))
}

fn is_live(status: &OAuthClientStatus) -> bool {
    ConditionStatus::of(&status.conditions, types::READY) == ConditionStatus::True
}

async fn cleanup(client: &OAuthClient, ctx: &Context) -> Result<Action, ReconcileError> {
    let (namespace, name, id) = identity(client);
    let tenant = &client.spec.tenant_ref;
    let source = format!("{namespace}/{name}");
    let previous_id = previous_id(client, &id);
    if let Some(previous) = &previous_id {
        ctx.publisher
            .unpublish_client(tenant, previous, &source)
            .await?;
    }
    if ctx.publisher.unpublish_client(tenant, &id, &source).await? {
        let note =
            format!("client {id} removed from tenant {tenant}; its refresh tokens no longer work");
        ctx.kube
            .event(
                &client.object_ref(&()),
                EventType::Normal,
                "Deregistered",
                &note,
            )
            .await;
    }
    // A client being deleted claims its id no more.
    requeue_rivals(client, ctx);
    Ok(Action::await_change())
}
