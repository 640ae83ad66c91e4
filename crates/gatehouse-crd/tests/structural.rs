//! The CRD schemas must be structural, or a kube-apiserver refuses them. These checks follow
//! the rules of the Kubernetes documentation ("Specifying a structural schema") and the limits
//! the apiserver's CEL cost estimator needs (bounded lists under every rule that iterates).

use serde_json::Value;

fn violations(node: &Value, path: &str, inside_logic: bool, out: &mut Vec<String>) {
    let Some(obj) = node.as_object() else {
        out.push(format!("{path}: schema node is not an object"));
        return;
    };
    let preserve = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    let int_or_string = obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    if inside_logic {
        for forbidden in [
            "type",
            "description",
            "default",
            "additionalProperties",
            "nullable",
        ] {
            if obj.contains_key(forbidden) {
                out.push(format!("{path}: {forbidden} inside allOf/anyOf/oneOf/not"));
            }
        }
    } else if !preserve && !int_or_string {
        match obj.get("type").and_then(Value::as_str) {
            Some("") | None => out.push(format!("{path}: missing type")),
            _ => {}
        }
    }
    if obj.contains_key("$ref") || obj.contains_key("definitions") || obj.contains_key("$defs") {
        out.push(format!("{path}: references are not allowed"));
    }
    if obj.contains_key("properties") && obj.contains_key("additionalProperties") {
        out.push(format!(
            "{path}: properties and additionalProperties together"
        ));
    }
    if obj.get("type").and_then(Value::as_str) == Some("array") && !obj.contains_key("items") {
        out.push(format!("{path}: array without items"));
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (name, child) in props {
            violations(child, &format!("{path}.{name}"), inside_logic, out);
        }
    }
    if let Some(items) = obj.get("items") {
        violations(items, &format!("{path}[]"), inside_logic, out);
    }
    if let Some(extra) = obj.get("additionalProperties").filter(|v| v.is_object()) {
        violations(extra, &format!("{path}{{}}"), inside_logic, out);
    }
    for logic in ["allOf", "anyOf", "oneOf"] {
        if let Some(list) = obj.get(logic).and_then(Value::as_array) {
            for (i, child) in list.iter().enumerate() {
                violations(child, &format!("{path}.{logic}[{i}]"), true, out);
            }
        }
    }
    // Rules that iterate over a list need the list bounded for the CEL cost estimate.
    if let Some(rules) = obj
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
    {
        for rule in rules {
            let text = rule["rule"].as_str().unwrap_or_default();
            for (name, child) in obj
                .get("properties")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                let iterates = text.contains(&format!("self.{name}.exists"))
                    || text.contains(&format!("self.{name}.all"));
                if iterates && child.get("maxItems").is_none() {
                    out.push(format!(
                        "{path}.{name}: iterated by a CEL rule but has no maxItems"
                    ));
                }
            }
        }
    }
}

#[test]
fn every_crd_schema_is_structural() {
    for crd in gatehouse_crd::crds() {
        let json = serde_json::to_value(&crd).unwrap();
        let name = json["metadata"]["name"].as_str().unwrap().to_string();
        for version in json["spec"]["versions"].as_array().unwrap() {
            let schema = &version["schema"]["openAPIV3Schema"];
            let mut out = Vec::new();
            violations(schema, &name, false, &mut out);
            assert!(
                out.is_empty(),
                "{name} is not structural:\n{}",
                out.join("\n")
            );
            assert_eq!(
                version["subresources"]["status"],
                serde_json::json!({}),
                "{name} has a status subresource"
            );
        }
    }
}

#[test]
fn the_checker_catches_what_it_should() {
    let bad = serde_json::json!({"type": "object", "properties": {
        "a": {"description": "no type"},
        "b": {"type": "array"},
        "c": {"type": "object", "anyOf": [{"type": "string"}]},
        "d": {"$ref": "#/x", "type": "object"}
    }});
    let mut out = Vec::new();
    violations(&bad, "x", false, &mut out);
    assert_eq!(out.len(), 4, "{out:?}");
}

#[test]
fn names_columns_and_scope_are_as_documented() {
    let crds = gatehouse_crd::crds();
    let json: Vec<Value> = crds
        .iter()
        .map(|c| serde_json::to_value(c).unwrap())
        .collect();
    let tenant = &json[0];
    assert_eq!(tenant["spec"]["scope"], "Cluster");
    assert_eq!(
        tenant["spec"]["names"]["shortNames"],
        serde_json::json!(["tn"])
    );
    let cols: Vec<&str> = tenant["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(cols, ["Issuer", "Grants", "Clients", "Ready", "Age"]);
    let client = &json[1];
    assert_eq!(client["spec"]["scope"], "Namespaced");
    assert_eq!(
        client["spec"]["names"]["shortNames"],
        serde_json::json!(["oac"])
    );
    let cols: Vec<&str> = client["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(cols, ["Tenant", "Client-ID", "Grants", "Ready", "Age"]);
    let rules =
        tenant["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["x-kubernetes-validations"]
            .to_string();
    assert!(
        rules.contains("self.metadata.name.matches"),
        "tenant names are DNS labels"
    );
}
