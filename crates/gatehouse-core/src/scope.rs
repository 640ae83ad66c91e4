//! Scope strings (RFC 6749 section 3.3): parsing and the "requested ⊆ client ⊆ tenant" rule.

use crate::config::{ClientConfig, TenantConfig};
use crate::error::OAuthError;

/// Parses a space-delimited `scope` parameter, refusing characters RFC 6749 does not allow
/// (`scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`). Duplicates are dropped, order is kept.
pub fn parse_scope(raw: &str) -> Result<Vec<String>, OAuthError> {
    let mut out: Vec<String> = Vec::new();
    for token in raw.split(' ') {
        if token.is_empty() {
            continue;
        }
        if !token
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
        {
            return Err(OAuthError::invalid_scope(format!(
                "scope {token:?} contains characters RFC 6749 section 3.3 does not allow"
            )));
        }
        if !out.iter().any(|s| s == token) {
            out.push(token.to_string());
        }
    }
    Ok(out)
}

/// The `scope` value of granted scopes: space-delimited, absent when there are none.
#[must_use]
pub fn scope_string(scopes: &[String]) -> Option<String> {
    if scopes.is_empty() {
        None
    } else {
        Some(scopes.join(" "))
    }
}

/// The scopes of a `scope` value that was issued (so already valid): split on spaces.
#[must_use]
pub fn issued_scopes(scope: Option<&str>) -> Vec<&str> {
    scope
        .map(|s| s.split(' ').filter(|s| !s.is_empty()).collect())
        .unwrap_or_default()
}

/// The scopes granted for a request: the requested ones if each is allowed for the client and
/// known to the tenant, or all of the client's scopes when none were requested.
pub fn granted_scopes(
    requested: Option<&str>,
    client: &ClientConfig,
    tenant: &TenantConfig,
) -> Result<Vec<String>, OAuthError> {
    let requested = match requested {
        Some(raw) => parse_scope(raw)?,
        None => Vec::new(),
    };
    if requested.is_empty() {
        return Ok(client
            .scopes
            .iter()
            .filter(|s| tenant.knows_scope(s))
            .cloned()
            .collect());
    }
    for scope in &requested {
        if !client.scopes.iter().any(|s| s == scope) {
            return Err(OAuthError::invalid_scope(format!(
                "client {} may not request scope {scope}",
                client.client_id
            )));
        }
        if !tenant.knows_scope(scope) {
            return Err(OAuthError::invalid_scope(format!(
                "scope {scope} is not defined by tenant {}",
                tenant.name
            )));
        }
    }
    Ok(requested)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{client, tenant};

    #[test]
    fn parses_and_dedups() {
        assert_eq!(parse_scope("a  b a").unwrap(), vec!["a", "b"]);
        assert!(parse_scope("a\"b").is_err());
        assert!(parse_scope("caf\u{e9}").is_err());
    }

    #[test]
    fn defaults_to_the_clients_scopes() {
        let (t, c) = (tenant(), client());
        assert_eq!(
            granted_scopes(None, &c, &t).unwrap(),
            vec!["billing.read", "billing.write"]
        );
        assert_eq!(
            granted_scopes(Some(""), &c, &t).unwrap(),
            vec!["billing.read", "billing.write"]
        );
    }

    #[test]
    fn requested_must_be_allowed_for_the_client_and_known_to_the_tenant() {
        let (t, mut c) = (tenant(), client());
        assert_eq!(
            granted_scopes(Some("billing.read"), &c, &t).unwrap(),
            vec!["billing.read"]
        );
        let e = granted_scopes(Some("admin"), &c, &t).unwrap_err();
        assert_eq!(e.code, crate::ErrorCode::InvalidScope);
        c.scopes.push("undeclared".into());
        let e = granted_scopes(Some("undeclared"), &c, &t).unwrap_err();
        assert!(e.description.contains("not defined by tenant"));
    }
}
