//! The custom resources of Gatehouse: `Tenant` and `OAuthClient` (API group `gatehouse.dev`,
//! version `v1alpha1`).
//!
//! Doc comments on spec fields become the CRD's `description`s, which `kubectl explain` shows:
//! they are written for the people who write the YAML.

// The lint mistakes repeated `type_ = "string"` of separate `printcolumn(...)` entries for
// duplicated attributes.
#![allow(clippy::duplicated_attributes)]

pub mod client;
pub mod condition;
mod schema;
pub mod tenant;
pub mod validate;

pub use client::{OAuthClient, OAuthClientSpec, OAuthClientStatus};
pub use tenant::{Tenant, TenantSpec, TenantStatus};

/// The API group of every Gatehouse resource.
pub const GROUP: &str = "gatehouse.dev";
/// The served and stored version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of the resources.
pub const API_VERSION: &str = "gatehouse.dev/v1alpha1";

/// Both CRDs, in the order `gatehouse crdgen` prints them.
pub fn crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    use kube::CustomResourceExt;
    vec![with_tenant_name_rule(Tenant::crd()), OAuthClient::crd()]
}

/// The root-level rule an apiserver cannot derive from field schemas: a tenant's name is its
/// issuer's path segment, so it must be a DNS-1123 label, not the subdomain Kubernetes allows
/// for cluster-scoped names. (No `fieldPath`: the API server accepts only paths into the
/// schema, and the root schema does not describe `metadata`; the message names the field.)
fn with_tenant_name_rule(
    mut crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::ValidationRule;
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            schema.x_kubernetes_validations.get_or_insert_with(Vec::new).push(ValidationRule {
                rule: "self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 63".into(),
                message: Some("a Tenant's name is its issuer path segment: a DNS-1123 label (lowercase letters, digits, '-'; at most 63)".into()),
                ..Default::default()
            });
        }
    }
    crd
}
