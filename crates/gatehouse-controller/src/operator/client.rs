//! Reconciling one OAuthClient: its registration in the store, its credentials Secret, its
//! status, and on deletion its removal (which revokes its refresh tokens).

use super::context::Context;
use super::{FINALIZER, RESYNC, ReconcileError, observed_at};
use crate::conditions::{Verdict, set};
use crate::reconcile::reconcile;
use gatehouse_crd::OAuthClient;
use gatehouse_crd::condition::{reasons, types};
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
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

/// Asks the controller to look again at the other clients claiming the same id: one of them
/// may now win it, or lose it.
fn requeue_rivals(client: &OAuthClient, rivals: &[OAuthClient], ctx: &Context) {
    for rival in rivals.iter().filter(|r| r.uid() != client.uid()) {
        let reference = ObjectRef::from_obj(rival);
        if ctx.requeue_clients.unbounded_send(reference).is_err() {
            tracing::debug!("client controller stopped; not requeueing rivals");
        }
    }
}

async fn apply(client: &OAuthClient, ctx: &Context) -> Result<Action, ReconcileError> {
    let (namespace, name, id) = identity(client);
    let now = (ctx.clock)();
    let mut scope = ctx.client_scope(client);
    for c in &mut scope.clients {
        if c.uid() == client.uid() {
            *c = client.clone();
        }
    }
    let observed = observed_at(&scope, &ctx.public_url, now);
    let reconciled = reconcile(&observed);
    let Some(outcome) = reconciled.client(&namespace, &name) else {
        return Ok(Action::await_change());
    };
    let mut status = outcome.status.clone();
    let tenant = &client.spec.tenant_ref;
    let published = match &outcome.registration {
        Some(registration) => ctx.publisher.publish_client(tenant, registration).await,
        None => {
            let source = format!("{namespace}/{name}");
            ctx.publisher.unpublish_client(tenant, &id, &source).await
        }
    };
    if let Err(e) = &published {
        let verdict = Verdict::new(
            types::READY,
            false,
            reasons::STORE_UNAVAILABLE,
            format!("cannot write to the store: {e}; retrying"),
        );
        let generation = status.observed_generation;
        set(&mut status.conditions, &verdict, generation, &observed.now);
    }
    if let Some(request) = &outcome.secret_request
        && request.owner_uid.is_some()
    {
        ctx.kube.create_credentials_secret(request, client).await?;
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
        requeue_rivals(client, &scope.clients, ctx);
    }
    published?;
    Ok(Action::requeue(RESYNC))
}

fn is_live(status: &gatehouse_crd::OAuthClientStatus) -> bool {
    crate::conditions::find(&status.conditions, types::READY).is_some_and(|c| c.status == "True")
}

async fn cleanup(client: &OAuthClient, ctx: &Context) -> Result<Action, ReconcileError> {
    let (namespace, name, id) = identity(client);
    let tenant = &client.spec.tenant_ref;
    let source = format!("{namespace}/{name}");
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
    let rivals = ctx.client_scope(client).clients;
    requeue_rivals(client, &rivals, ctx);
    Ok(Action::await_change())
}
