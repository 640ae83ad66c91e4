//! Writes what the reconcile core decided back to the Kubernetes API: status through the status
//! subresource, and only when it changed (an unchanged reconcile writes nothing); generated
//! credentials Secrets, created once and never written over (a Secret that already exists, or
//! appears between the read and the write, is left exactly as it is).

use crate::reconcile::Reconciled;
use crate::secrets::{generate_client_secret, generated_secret};
use gatehouse_crd::{OAuthClient, Tenant};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

/// What one write pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ClusterReport {
    /// `Tenant/name` or `OAuthClient/namespace/name` whose status was written.
    pub statuses_written: Vec<String>,
    /// `namespace/name` of Secrets created.
    pub secrets_created: Vec<String>,
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
}

impl ClusterWriter {
    pub fn new(client: Client) -> Self {
        ClusterWriter { client }
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
        let params = PatchParams::default();
        for outcome in &reconciled.tenants {
            let current = tenants
                .iter()
                .find(|t| t.name_any() == outcome.name)
                .and_then(|t| t.status.as_ref());
            if current != Some(&outcome.status) {
                let api: Api<Tenant> = Api::all(self.client.clone());
                api.patch_status(
                    &outcome.name,
                    &params,
                    &Patch::Merge(json!({ "status": outcome.status })),
                )
                .await?;
                report
                    .statuses_written
                    .push(format!("Tenant/{}", outcome.name));
            }
        }
        for outcome in &reconciled.clients {
            let current = clients
                .iter()
                .find(|c| {
                    c.namespace().as_deref() == Some(outcome.namespace.as_str())
                        && c.name_any() == outcome.name
                })
                .and_then(|c| c.status.as_ref());
            if current != Some(&outcome.status) {
                let api: Api<OAuthClient> =
                    Api::namespaced(self.client.clone(), &outcome.namespace);
                api.patch_status(
                    &outcome.name,
                    &params,
                    &Patch::Merge(json!({ "status": outcome.status })),
                )
                .await?;
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
                Ok(_) => report
                    .secrets_created
                    .push(format!("{}/{}", request.namespace, request.name)),
                // Someone (GitOps, external-secrets) created it in the meantime: theirs wins.
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests;
