//! Writes what the reconcile core decided back to the Kubernetes API: status through the status
//! subresource, and only when it changed (an unchanged reconcile writes nothing); generated
//! credentials Secrets, created once and never written over (a Secret that already exists, or
//! appears between the read and the write, is left exactly as it is).

use crate::reconcile::Reconciled;
use crate::secrets::{generate_client_secret, generated_secret};
use gatehouse_crd::condition::{reasons, types};
use gatehouse_crd::{OAuthClient, Tenant};
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::object::HasStatus;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

/// The events a status change deserves: a condition that flipped (or is new), or a refusal
/// whose reason changed. A resync that changes nothing emits nothing.
pub fn transition_events(
    previous: &[Condition],
    next: &[Condition],
) -> Vec<(EventType, String, String)> {
    let mut out = Vec::new();
    let refused = next
        .iter()
        .any(|c| c.type_ == types::ACCEPTED && c.status == "False");
    for c in next {
        let before = previous.iter().find(|p| p.type_ == c.type_);
        let changed = before.is_none_or(|p| p.status != c.status || p.reason != c.reason);
        if !changed {
            continue;
        }
        match (c.type_.as_str(), c.status.as_str()) {
            (types::READY, "True") => {
                out.push((EventType::Normal, c.reason.clone(), c.message.clone()))
            }
            // One warning per refusal: Ready=False repeats Accepted=False's reason.
            (types::READY, "False") if refused => {}
            // Waiting for a Secret being generated is not worth a warning.
            (types::READY, "False") if c.reason == reasons::SECRET_PENDING => {}
            (_, "False") => out.push((EventType::Warning, c.reason.clone(), c.message.clone())),
            _ => {}
        }
    }
    out
}

/// What one write pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ClusterReport {
    /// `Tenant/name` or `OAuthClient/namespace/name` whose status was written.
    pub statuses_written: Vec<String>,
    /// `namespace/name` of Secrets created.
    pub secrets_created: Vec<String>,
    /// `namespace/name` of Secrets given a fresh client_secret.
    pub secrets_rotated: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("no randomness available to generate a client secret")]
    Randomness,
}

pub struct ClusterWriter {
    client: Client,
    recorder: Recorder,
}

impl ClusterWriter {
    pub fn new(client: Client) -> Self {
        let reporter = Reporter {
            controller: "gatehouse-operator".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        ClusterWriter {
            recorder: Recorder::new(client.clone(), reporter),
            client,
        }
    }

    /// Publishes an event; a failure is logged, never fatal (events are best effort).
    async fn event(&self, reference: &ObjectReference, type_: EventType, reason: &str, note: &str) {
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note.chars().take(1024).collect()),
            action: "Reconcile".to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, reference).await {
            tracing::warn!(error = %e, reason, "could not publish an event");
        }
    }

    /// Applies `reconciled` given the objects it was computed from.
    pub async fn write(
        &self,
        reconciled: &Reconciled,
        tenants: &[Tenant],
        clients: &[OAuthClient],
        secrets: &[Secret],
    ) -> Result<ClusterReport, ClusterError> {
        let mut report = ClusterReport::default();
        for outcome in &reconciled.tenants {
            let object = tenants.iter().find(|t| t.name_any() == outcome.name);
            let api: Api<Tenant> = Api::all(self.client.clone());
            if self
                .write_status(&api, &outcome.name, object, &outcome.status)
                .await?
            {
                report
                    .statuses_written
                    .push(format!("Tenant/{}", outcome.name));
            }
        }
        let find_client = |namespace: &str, name: &str| {
            clients
                .iter()
                .find(|c| c.namespace().as_deref() == Some(namespace) && c.name_any() == name)
        };
        for outcome in &reconciled.clients {
            let object = find_client(&outcome.namespace, &outcome.name);
            let api: Api<OAuthClient> = Api::namespaced(self.client.clone(), &outcome.namespace);
            if self
                .write_status(&api, &outcome.name, object, &outcome.status)
                .await?
            {
                report.statuses_written.push(format!(
                    "OAuthClient/{}/{}",
                    outcome.namespace, outcome.name
                ));
            }
        }
        for request in reconciled
            .clients
            .iter()
            .filter_map(|c| c.secret_request.as_ref())
        {
            let exists = secrets.iter().any(|s| {
                s.metadata.namespace.as_deref() == Some(request.namespace.as_str())
                    && s.metadata.name.as_deref() == Some(request.name.as_str())
            });
            if exists || request.owner_uid.is_none() {
                // Exists (never overwritten), or the client is not persisted yet (no uid to own it).
                continue;
            }
            let value = generate_client_secret().map_err(|_| ClusterError::Randomness)?;
            let api: Api<Secret> = Api::namespaced(self.client.clone(), &request.namespace);
            match api
                .create(&PostParams::default(), &generated_secret(request, &value))
                .await
            {
                Ok(_) => {
                    report
                        .secrets_created
                        .push(format!("{}/{}", request.namespace, request.name));
                    if let Some(owner) = find_client(&request.namespace, &request.owner_name) {
                        let note = format!(
                            "created Secret {} with the client's credentials",
                            request.name
                        );
                        self.event(
                            &owner.object_ref(&()),
                            EventType::Normal,
                            "SecretGenerated",
                            &note,
                        )
                        .await;
                    }
                }
                // Someone (GitOps, external-secrets) created it in the meantime: theirs wins.
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        for (request, wanted) in reconciled
            .clients
            .iter()
            .filter_map(|c| c.secret_rotation.as_ref())
        {
            let value = generate_client_secret().map_err(|_| ClusterError::Randomness)?;
            let api: Api<Secret> = Api::namespaced(self.client.clone(), &request.namespace);
            let patch = json!({
                "metadata": {"annotations": {crate::secrets::ROTATED_FOR_ANNOTATION: wanted}},
                "stringData": {crate::secrets::CLIENT_SECRET_KEY: value.as_str()},
            });
            api.patch(&request.name, &PatchParams::default(), &Patch::Merge(patch))
                .await?;
            report
                .secrets_rotated
                .push(format!("{}/{}", request.namespace, request.name));
            if let Some(owner) = find_client(&request.namespace, &request.owner_name) {
                let note = format!(
                    "issued a new client_secret in Secret {} (rotation {wanted})",
                    request.name
                );
                self.event(
                    &owner.object_ref(&()),
                    EventType::Normal,
                    "SecretRotated",
                    &note,
                )
                .await;
            }
        }
        Ok(report)
    }

    /// Writes `status` when it differs from the object's, then publishes the events its
    /// condition transitions deserve. True if it wrote.
    async fn write_status<K, S>(
        &self,
        api: &Api<K>,
        name: &str,
        object: Option<&K>,
        status: &S,
    ) -> Result<bool, ClusterError>
    where
        K: Resource<DynamicType = ()>
            + HasStatus<Status = S>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        S: serde::Serialize + PartialEq + HasConditions,
    {
        let current = object.and_then(|o| o.status());
        if current == Some(status) {
            return Ok(false);
        }
        api.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await?;
        if let Some(object) = object {
            let previous = current.map(|s| s.conditions()).unwrap_or_default();
            for (type_, reason, note) in transition_events(previous, status.conditions()) {
                self.event(&object.object_ref(&()), type_, &reason, &note)
                    .await;
            }
        }
        Ok(true)
    }
}

/// The conditions of a status, generically.
pub trait HasConditions {
    fn conditions(&self) -> &[Condition];
}

impl HasConditions for gatehouse_crd::TenantStatus {
    fn conditions(&self) -> &[Condition] {
        &self.conditions
    }
}

impl HasConditions for gatehouse_crd::OAuthClientStatus {
    fn conditions(&self) -> &[Condition] {
        &self.conditions
    }
}

#[cfg(test)]
mod tests;
