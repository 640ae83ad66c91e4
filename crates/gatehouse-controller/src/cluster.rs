//! Writes to the Kubernetes API, one object at a time: status through the status subresource,
//! and only when it changed (an unchanged reconcile writes nothing); Events on real
//! transitions; generated credentials Secrets, created once and never written over; and the
//! Secrets that hold tenants' signing keys.

use crate::events::{EventType, Note, Recorder};
use crate::reconcile::ClusterIssuer;
use crate::reconcile::SecretRequest;
use crate::secrets::{
    CLIENT_SECRET_KEY, KEYS_ROTATED_FOR_ANNOTATION, MANAGED_BY, ROTATED_FOR_ANNOTATION,
    WATCH_LABEL, generate_client_secret, generated_secret,
};
use gatehouse_core::clock::Clock;
use gatehouse_core::keys::SigningKeyRecord;
use gatehouse_core::random::Randomness;
use gatehouse_crd::condition::{ConditionStatus, reasons, types};
use gatehouse_crd::{OAuthClient, Tenant};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ObjectReference, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::object::HasStatus;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use std::sync::Arc;

/// The field manager of the operator's server-side applies.
pub const FIELD_MANAGER: &str = "gatehouse-operator";

/// Where the API server publishes its ServiceAccount token issuer (OIDC discovery).
pub const SERVICE_ACCOUNT_ISSUER_DISCOVERY: &str = "/.well-known/openid-configuration";
/// Where it publishes the issuer's public keys.
pub const SERVICE_ACCOUNT_JWKS: &str = "/openid/v1/jwks";

/// Key of the keys Secret holding the sealed [`SigningKeyRecord`]s as JSON.
pub const KEYS_SECRET_KEY: &str = "keys.json";
/// Label naming the tenant whose keys a Secret holds.
pub const TENANT_LABEL: &str = "gatehouse.dev/tenant";

/// The Secret (in the operator's namespace) that holds a tenant's signing keys.
pub fn keys_secret_name(tenant: &str) -> String {
    format!("gatehouse-keys-{tenant}")
}

/// The keys a keys Secret holds; the error names what is wrong with it.
pub fn read_keys_secret(secret: &Secret) -> Result<Vec<SigningKeyRecord>, String> {
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(KEYS_SECRET_KEY))
        .ok_or_else(|| format!("no key {KEYS_SECRET_KEY}"))?;
    serde_json::from_slice(&bytes.0).map_err(|e| format!("{KEYS_SECRET_KEY}: {e}"))
}

/// The events a status change deserves: a condition that flipped (or is new), or a refusal
/// whose reason changed. A resync that changes nothing emits nothing.
pub fn transition_events(
    previous: &[Condition],
    next: &[Condition],
) -> Vec<(EventType, String, String)> {
    let mut out = Vec::new();
    let refused = ConditionStatus::of(next, types::ACCEPTED) == ConditionStatus::False;
    for c in next {
        let before = previous.iter().find(|p| p.type_ == c.type_);
        let changed = before.is_none_or(|p| p.status != c.status || p.reason != c.reason);
        if !changed {
            continue;
        }
        match (c.type_.as_str(), ConditionStatus::parse(&c.status)) {
            // Still serving the last valid version, but something is wrong: a warning, once
            // (Accepted=False's own warning says why when the spec was refused).
            (types::READY, ConditionStatus::True) if c.reason == reasons::SERVING_LAST_VALID => {
                if refused {
                    continue;
                }
                out.push((EventType::Warning, c.reason.clone(), c.message.clone()));
            }
            (types::READY, ConditionStatus::True) => {
                out.push((EventType::Normal, c.reason.clone(), c.message.clone()));
            }
            // One warning per refusal: Ready=False repeats Accepted=False's reason.
            (types::READY, ConditionStatus::False) if refused => {}
            // Waiting for a Secret being generated is not worth a warning.
            (types::READY, ConditionStatus::False) if c.reason == reasons::SECRET_PENDING => {}
            (_, ConditionStatus::False) => {
                out.push((EventType::Warning, c.reason.clone(), c.message.clone()));
            }
            _ => {}
        }
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error(transparent)]
    NoRandomness(#[from] gatehouse_core::random::NoRandomness),
    #[error("cannot encode JSON: {0}")]
    Encode(#[from] serde_json::Error),
    /// The cluster is ahead of the cache (an object the watch has not delivered yet).
    #[error("the cache is behind: {0}")]
    Stale(String),
    /// The API server's ServiceAccount issuer discovery answered something unusable.
    #[error("ServiceAccount issuer discovery: {0}")]
    Discovery(String),
    /// The namespace is being deleted: the API server takes nothing new in it, and the
    /// objects in it are about to go.
    #[error("namespace {0} is being deleted")]
    NamespaceTerminating(String),
}

/// Whether the API server refused a write because its namespace is being deleted (403 with
/// the cause `NamespaceTerminating`): not a permission problem, and retrying will not help.
pub fn namespace_terminating(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 403
    && status.details.as_ref().is_some_and(|d| {
        d.causes.iter().any(|c| c.reason == "NamespaceTerminating")
    }))
}

/// The operator's handle on the cluster.
#[derive(Clone)]
pub struct Kube {
    pub client: Client,
    recorder: Arc<Recorder>,
    /// Where generated client secrets come from.
    random: Arc<dyn Randomness>,
}

impl Kube {
    pub fn new(client: Client, clock: Arc<dyn Clock>, random: Arc<dyn Randomness>) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            FIELD_MANAGER,
            std::env::var("POD_NAME").ok(),
            clock,
            random.clone(),
        );
        Kube {
            recorder: Arc::new(recorder),
            client,
            random,
        }
    }

    /// Publishes an event; a failure is logged, never fatal (events are best effort).
    pub async fn event(
        &self,
        reference: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: &str,
    ) {
        let event = Note {
            type_,
            reason,
            note,
        };
        if let Err(e) = self.recorder.publish(reference, &event).await {
            if namespace_terminating(&e) {
                tracing::debug!(reason, "no event: its namespace is being deleted");
                return;
            }
            tracing::warn!(error = %e, reason, "could not publish an event");
        }
    }

    /// Writes `status` when it differs from the object's, by server-side apply under the
    /// operator's field manager (forced: the status is the operator's alone), then publishes
    /// the events its condition transitions deserve. True if it wrote.
    ///
    /// The apply carries the resourceVersion the object was read at: the events are worked
    /// out against that copy's status, so a cache that has not seen this operator's last
    /// write yet must not write (and announce the same transition twice); it gets a 409,
    /// [`ClusterError::Stale`], and the retry reads the newer copy.
    pub async fn write_status<K, S>(
        &self,
        api: &Api<K>,
        object: &K,
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
        let current = object.status();
        if current == Some(status) {
            return Ok(false);
        }
        // Applied whole: what the status no longer has is dropped with it.
        let mut body = json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": status,
        });
        if let Some(read_at) = &object.meta().resource_version {
            body["metadata"] = json!({ "resourceVersion": read_at });
        }
        match api
            .patch_status(
                &object.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(body),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(reply)) if reply.code == 409 => {
                return Err(ClusterError::Stale(format!(
                    "the status of {} {} changed since it was read",
                    K::kind(&()),
                    object.name_any()
                )));
            }
            Err(e) => return Err(e.into()),
        }
        let previous = current.map(HasConditions::conditions).unwrap_or_default();
        for (type_, reason, note) in transition_events(previous, status.conditions()) {
            self.event(&object.object_ref(&()), type_, &reason, &note)
                .await;
        }
        Ok(true)
    }

    /// Creates the client's credentials Secret with a fresh random secret. Someone else
    /// creating it in the meantime (GitOps, external-secrets) wins: false, nothing written.
    pub async fn create_credentials_secret(
        &self,
        request: &SecretRequest,
        owner: &OAuthClient,
    ) -> Result<bool, ClusterError> {
        let value = generate_client_secret(&*self.random)?;
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &request.namespace);
        match api
            .create(&PostParams::default(), &generated_secret(request, &value))
            .await
        {
            Ok(_) => {
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
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) if namespace_terminating(&e) => Err(ClusterError::NamespaceTerminating(
                request.namespace.clone(),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Puts a fresh `client_secret` into an owned credentials Secret and records which
    /// rotation request it answers.
    pub async fn rotate_credentials_secret(
        &self,
        request: &SecretRequest,
        wanted: &str,
        owner: &OAuthClient,
    ) -> Result<(), ClusterError> {
        let value = generate_client_secret(&*self.random)?;
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &request.namespace);
        let patch = json!({
            "metadata": {"annotations": {ROTATED_FOR_ANNOTATION: wanted}},
            "stringData": {CLIENT_SECRET_KEY: value.as_str()},
        });
        api.patch(&request.name, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
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
        Ok(())
    }

    /// Stores a tenant's keys in its keys Secret: created if absent, otherwise patched with
    /// the resourceVersion it was read at, so two writers can never both win.
    pub async fn write_keys_secret(
        &self,
        namespace: &str,
        tenant: &Tenant,
        existing: Option<&Secret>,
        keys: &[SigningKeyRecord],
        rotated_for: Option<&str>,
    ) -> Result<(), ClusterError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let name = keys_secret_name(&tenant.name_any());
        let json = serde_json::to_vec(keys)?;
        let annotations = rotated_for.map(|value| {
            std::collections::BTreeMap::from([(
                KEYS_ROTATED_FOR_ANNOTATION.to_string(),
                value.to_string(),
            )])
        });
        match existing {
            None => {
                let mut secret = Secret::default();
                secret.metadata.name = Some(name);
                secret.metadata.namespace = Some(namespace.to_string());
                secret.metadata.labels = Some(
                    [
                        (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
                        (WATCH_LABEL.0.to_string(), WATCH_LABEL.1.to_string()),
                        (TENANT_LABEL.to_string(), tenant.name_any()),
                    ]
                    .into(),
                );
                secret.metadata.annotations = annotations;
                // Garbage-collected with the Tenant should the finalizer ever be bypassed.
                secret.metadata.owner_references = Some(vec![OwnerReference {
                    api_version: "gatehouse.dev/v1alpha1".into(),
                    kind: "Tenant".into(),
                    name: tenant.name_any(),
                    uid: tenant.metadata.uid.clone().unwrap_or_default(),
                    controller: Some(true),
                    block_owner_deletion: None,
                }]);
                secret.type_ = Some("Opaque".into());
                secret.data = Some([(KEYS_SECRET_KEY.to_string(), ByteString(json))].into());
                match api.create(&PostParams::default(), &secret).await {
                    Ok(_) => {}
                    // Created by an earlier reconcile the cache has not caught up with.
                    Err(kube::Error::Api(status)) if status.code == 409 => {
                        return Err(ClusterError::Stale(format!(
                            "Secret {namespace}/{} exists already",
                            secret.metadata.name.as_deref().unwrap_or_default()
                        )));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Some(current) => {
                let mut patch = json!({
                    "metadata": {"resourceVersion": current.metadata.resource_version},
                    "data": {KEYS_SECRET_KEY: ByteString(json)},
                });
                // Only when there is one: a merge patch's null would remove every annotation.
                if let Some(annotations) = annotations {
                    patch["metadata"]["annotations"] = json!(annotations);
                }
                api.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                    .await?;
            }
        }
        Ok(())
    }

    /// The uid of the ServiceAccount `namespace/name`, if it exists: one GET, for a
    /// workload-identity client (its tokens are bound to that uid).
    pub async fn service_account_uid(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<String>, ClusterError> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        Ok(api
            .get_metadata_opt(name)
            .await?
            .filter(|sa| sa.metadata.deletion_timestamp.is_none())
            .and_then(|sa| sa.metadata.uid))
    }

    /// The cluster's ServiceAccount token issuer and its public keys, from the API server's
    /// discovery documents (`/.well-known/openid-configuration`, `/openid/v1/jwks`; the
    /// operator's ClusterRole allows both). Token-service replicas never call out: the
    /// operator resolves these into each workload-identity client's registration.
    pub async fn service_account_issuer(&self) -> Result<ClusterIssuer, ClusterError> {
        // The keys are served as `application/jwk-set+json`, and only to who accepts it.
        let get = |path: &str| {
            http::Request::get(path)
                .header(
                    http::header::ACCEPT,
                    "application/json, application/jwk-set+json",
                )
                .body(Vec::new())
                .map_err(|e| ClusterError::Discovery(e.to_string()))
        };
        let config: serde_json::Value = self
            .client
            .request(get(SERVICE_ACCOUNT_ISSUER_DISCOVERY)?)
            .await?;
        let issuer = config
            .get("issuer")
            .and_then(serde_json::Value::as_str)
            .filter(|i| !i.is_empty())
            .ok_or_else(|| {
                ClusterError::Discovery(format!("{SERVICE_ACCOUNT_ISSUER_DISCOVERY} has no issuer"))
            })?
            .to_string();
        let jwks: serde_json::Value = self.client.request(get(SERVICE_ACCOUNT_JWKS)?).await?;
        let usable = jwks
            .get("keys")
            .and_then(serde_json::Value::as_array)
            .is_some_and(|keys| !keys.is_empty());
        if !usable {
            return Err(ClusterError::Discovery(format!(
                "{SERVICE_ACCOUNT_JWKS} lists no keys"
            )));
        }
        Ok(ClusterIssuer { issuer, jwks })
    }

    /// Whether the Tenant `name` exists in the cluster and is not being deleted: one list by
    /// name, metadata only. For a client whose tenant the cache lacks, because a Tenant
    /// applied together with its clients can reach the cache after them.
    pub async fn tenant_exists(&self, name: &str) -> Result<bool, ClusterError> {
        let api: Api<Tenant> = Api::all(self.client.clone());
        let found = api
            .list_metadata(&ListParams::default().fields(&format!("metadata.name={name}")))
            .await?;
        Ok(found
            .items
            .iter()
            .any(|t| t.metadata.deletion_timestamp.is_none()))
    }

    /// The metadata of the Secret `namespace/name`, if it exists: one list by name, metadata
    /// only, so its data never reaches the operator. For a referenced Secret the cache lacks
    /// (the cache holds only Secrets with the watch label).
    pub async fn secret_metadata(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ObjectMeta>, ClusterError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let by_name = ListParams::default().fields(&format!("metadata.name={name}"));
        let found = api.list_metadata(&by_name).await?;
        Ok(found.items.into_iter().next().map(|s| s.metadata))
    }

    /// Adds the watch label to a Secret Gatehouse made before it labelled its own, so the
    /// watch delivers it from now on.
    pub async fn label_for_watch(&self, namespace: &str, name: &str) -> Result<(), ClusterError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let patch = json!({"metadata": {"labels": {WATCH_LABEL.0: WATCH_LABEL.1}}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        Ok(())
    }

    /// Deletes a tenant's keys Secret; one already gone is fine.
    pub async fn delete_keys_secret(
        &self,
        namespace: &str,
        tenant: &str,
    ) -> Result<(), ClusterError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        match api
            .delete(&keys_secret_name(tenant), &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
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
mod tests {
    use super::*;

    fn condition(type_: &str, status: &str, reason: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: format!("{type_} {reason}"),
            observed_generation: Some(1),
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ),
        }
    }

    #[test]
    fn only_real_transitions_make_events() {
        let ready = condition(types::READY, "True", reasons::RECONCILED);
        let events = transition_events(&[], std::slice::from_ref(&ready));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].0, EventType::Normal);
        assert!(
            transition_events(std::slice::from_ref(&ready), std::slice::from_ref(&ready))
                .is_empty()
        );

        let refused = [
            condition(types::ACCEPTED, "False", reasons::TENANT_NOT_FOUND),
            condition(types::READY, "False", reasons::TENANT_NOT_FOUND),
        ];
        let events = transition_events(std::slice::from_ref(&ready), &refused);
        assert_eq!(events.len(), 1, "one warning per refusal: {events:?}");
        assert_eq!(
            (events[0].0, events[0].1.as_str()),
            (EventType::Warning, reasons::TENANT_NOT_FOUND)
        );
        let pending = [condition(types::READY, "False", reasons::SECRET_PENDING)];
        assert!(transition_events(&[], &pending).is_empty());
    }

    #[test]
    fn serving_the_last_valid_version_is_one_warning() {
        let ready = condition(types::READY, "True", reasons::RECONCILED);
        let held = condition(types::READY, "True", reasons::SERVING_LAST_VALID);
        let refused = [
            held.clone(),
            condition(types::ACCEPTED, "False", reasons::INVALID_SPEC),
        ];
        let events = transition_events(std::slice::from_ref(&ready), &refused);
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(
            (events[0].0, events[0].1.as_str()),
            (EventType::Warning, reasons::INVALID_SPEC)
        );
        // Held for another reason (an unreadable Secret): the hold itself is the warning.
        let events = transition_events(std::slice::from_ref(&ready), std::slice::from_ref(&held));
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(
            (events[0].0, events[0].1.as_str()),
            (EventType::Warning, reasons::SERVING_LAST_VALID)
        );
    }
}
