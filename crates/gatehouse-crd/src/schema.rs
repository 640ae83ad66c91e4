//! Schema fragments schemars cannot derive on its own.

use schemars::{Schema, SchemaGenerator, json_schema};

/// JSON Web Keys, kept as written (they have algorithm-specific members).
pub fn jwk_objects(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "maxItems": 16,
        // The members admission rules look at are declared (strings, RFC 7518 section 6);
        // any other (x5c, key_ops, ...) is kept as it is.
        "items": {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true,
            "properties": {
                "kty": {"type": "string"}, "use": {"type": "string"}, "alg": {"type": "string"},
                "kid": {"type": "string"}, "crv": {"type": "string"}, "x": {"type": "string"},
                "y": {"type": "string"}, "n": {"type": "string"}, "e": {"type": "string"},
                "d": {"type": "string"}, "p": {"type": "string"}, "q": {"type": "string"},
                "dp": {"type": "string"}, "dq": {"type": "string"}, "qi": {"type": "string"},
                "k": {"type": "string"},
            },
        },
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
