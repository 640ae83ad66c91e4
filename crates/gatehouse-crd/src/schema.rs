//! Schema fragments schemars cannot derive on its own.

use schemars::{Schema, SchemaGenerator, json_schema};

/// An arbitrary JSON object, kept as written (JWKs have algorithm-specific members).
pub fn free_form_objects(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "maxItems": 16,
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
    })
}

/// `metav1.Condition` list, merged by `type` as Kubernetes API conventions ask.
pub fn conditions(g: &mut SchemaGenerator) -> Schema {
    let item = g.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>();
    json_schema!({
        "type": "array",
        "items": item,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
    })
}
