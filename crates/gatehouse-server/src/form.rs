//! Reading `application/x-www-form-urlencoded` request bodies the way RFC 6749 asks: the right
//! content type, a size limit, empty parameters treated as absent (section 3.1) and repeated
//! parameters refused (section 3.2), except those an extension allows to repeat.

use axum::body::Body;
use axum::http::{HeaderMap, header};
use gatehouse_core::OAuthError;

/// Largest body accepted by the OAuth endpoints.
pub const MAX_BODY: usize = 64 * 1024;

/// Parameters that may appear more than once (RFC 8707 `resource`).
const REPEATABLE: [&str; 1] = ["resource"];

pub struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    /// Reads and parses the body, or explains what is wrong with it.
    pub async fn read(headers: &HeaderMap, body: Body) -> Result<Form, OAuthError> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        if content_type.as_deref() != Some("application/x-www-form-urlencoded") {
            return Err(OAuthError::invalid_request(
                "the request body must be application/x-www-form-urlencoded",
            ));
        }
        let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
            OAuthError::invalid_request(format!("the request body exceeds {} KiB", MAX_BODY / 1024))
        })?;
        Form::parse(&bytes)
    }

    pub fn parse(bytes: &[u8]) -> Result<Form, OAuthError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (k, v) in form_urlencoded::parse(bytes) {
            if v.is_empty() {
                continue;
            }
            if !REPEATABLE.contains(&k.as_ref()) && pairs.iter().any(|(name, _)| name == k.as_ref())
            {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {k} is repeated"
                )));
            }
            pairs.push((k.into_owned(), v.into_owned()));
        }
        Ok(Form { pairs })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("missing parameter {name}")))
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_and_empties() {
        let f = Form::parse(b"a=1&b=&resource=x&resource=y&c=%20z+").unwrap();
        assert_eq!(f.get("a"), Some("1"));
        assert_eq!(f.get("b"), None, "empty values count as omitted");
        assert_eq!(f.all("resource"), vec!["x", "y"]);
        assert_eq!(f.get("c"), Some(" z "));
        let e = Form::parse(b"scope=a&scope=b").err().unwrap();
        assert_eq!(e.description, "parameter scope is repeated");
        assert!(Form::parse(b"b=&b=1").is_ok());
    }
}
