//! Label and field selectors as the apiserver applies them to lists and watches, for the
//! in-memory API server: enough of the syntax for what a client may send (equality,
//! inequality, existence), and an error for the rest so a test notices instead of being
//! answered with everything.

use serde_json::Value;

/// One requirement of a selector.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    Absent(String),
}

/// A label selector and a field selector; an object must satisfy both.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    labels: Vec<Requirement>,
    fields: Vec<Requirement>,
}

/// The query's parameters, decoded.
pub fn query_params(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn requirements(text: &str, existence: bool) -> Result<Vec<Requirement>, String> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let requirement = if let Some((k, v)) = part.split_once("!=") {
            Requirement::NotEquals(k.trim().into(), v.trim().into())
        } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
            Requirement::Equals(k.trim().into(), v.trim().into())
        } else if part.contains([' ', '(', '<', '>']) {
            return Err(format!("selector {part:?} is not supported here"));
        } else if !existence {
            return Err(format!("field selector {part:?} needs an operator"));
        } else if let Some(k) = part.strip_prefix('!') {
            Requirement::Absent(k.trim().into())
        } else {
            Requirement::Exists(part.into())
        };
        out.push(requirement);
    }
    Ok(out)
}

impl Selector {
    /// The selectors of a list or watch query; `Err` names what is not supported.
    pub fn from_query(query: &str) -> Result<Self, String> {
        let mut selector = Selector::default();
        for (key, value) in query_params(query) {
            match key.as_str() {
                "labelSelector" => selector.labels = requirements(&value, true)?,
                "fieldSelector" => {
                    selector.fields = requirements(&value, false)?;
                    for r in &selector.fields {
                        let (Requirement::Equals(f, _) | Requirement::NotEquals(f, _)) = r else {
                            continue;
                        };
                        if f != "metadata.name" && f != "metadata.namespace" {
                            return Err(format!("field {f} is not supported here"));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(selector)
    }

    /// Whether `object` is selected.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        let label = |k: &str| labels.get(k).and_then(Value::as_str).map(str::to_string);
        let field = |k: &str| {
            match k {
                "metadata.name" => object["metadata"]["name"].as_str(),
                "metadata.namespace" => object["metadata"]["namespace"].as_str(),
                _ => None,
            }
            .map(str::to_string)
        };
        self.labels.iter().all(|r| holds(r, label)) && self.fields.iter().all(|r| holds(r, field))
    }
}

fn holds(requirement: &Requirement, get: impl Fn(&str) -> Option<String>) -> bool {
    match requirement {
        Requirement::Equals(k, v) => get(k).as_deref() == Some(v.as_str()),
        Requirement::NotEquals(k, v) => get(k).as_deref() != Some(v.as_str()),
        Requirement::Exists(k) => get(k).is_some(),
        Requirement::Absent(k) => get(k).is_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selectors_select_like_the_apiserver() {
        let labelled = json!({"metadata": {"name": "a", "namespace": "acme",
                                           "labels": {"gatehouse.dev/watch": "true", "team": "x"}}});
        let plain = json!({"metadata": {"name": "b", "namespace": "acme"}});
        let s =
            Selector::from_query("watch=true&labelSelector=gatehouse.dev%2Fwatch%3Dtrue").unwrap();
        assert!(s.matches(&labelled) && !s.matches(&plain));
        let s = Selector::from_query("labelSelector=team,!other").unwrap();
        assert!(s.matches(&labelled) && !s.matches(&plain));
        let s = Selector::from_query("fieldSelector=metadata.name%3Db").unwrap();
        assert!(!s.matches(&labelled) && s.matches(&plain));
        let s = Selector::from_query("labelSelector=team!%3Dx").unwrap();
        assert!(!s.matches(&labelled) && s.matches(&plain));
        assert!(Selector::from_query("").unwrap().matches(&plain));
        assert!(Selector::from_query("labelSelector=team%20in%20(x)").is_err());
        assert!(Selector::from_query("fieldSelector=type%3DOpaque").is_err());
    }
}
