//! Responses that travel back to the client in its redirect URI (RFC 6749 sections 4.1.2 and
//! 4.2.2, RFC 9207 `iss`): in the query for codes, in the fragment for implicit tokens. Only a
//! redirect URI registered for the client ever gets here.

use gatehouse_core::OAuthError;
use gatehouse_core::grant::authorization_code::ResponseType;

/// An authorization error for the client: sent to its registered redirect URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectError {
    pub redirect_uri: String,
    pub response_type: ResponseType,
    pub state: Option<String>,
    pub error: OAuthError,
}

impl RedirectError {
    /// The address the browser is sent to: `error`, `error_description`, `state`, `iss`.
    #[must_use]
    pub fn location(&self, issuer: &str) -> String {
        let mut params = vec![
            ("error", self.error.code.as_str()),
            ("error_description", self.error.description.as_str()),
        ];
        if let Some(s) = &self.state {
            params.push(("state", s));
        }
        params.push(("iss", issuer));
        with_params(
            &self.redirect_uri,
            &params,
            self.response_type == ResponseType::Token,
        )
    }
}

/// Appends parameters to a redirect URI's query, or puts them in its fragment.
#[must_use]
pub fn with_params(uri: &str, params: &[(&str, &str)], fragment: bool) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        s.append_pair(k, v);
    }
    let encoded = s.finish();
    if fragment {
        format!("{uri}#{encoded}")
    } else if uri.contains('?') {
        format!("{uri}&{encoded}")
    } else {
        format!("{uri}?{encoded}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_go_in_the_query_or_the_fragment() {
        assert_eq!(
            with_params("https://a/cb", &[("code", "x y")], false),
            "https://a/cb?code=x+y"
        );
        assert_eq!(
            with_params("https://a/cb?k=1", &[("code", "x")], false),
            "https://a/cb?k=1&code=x"
        );
        assert_eq!(
            with_params("https://a/cb", &[("access_token", "t")], true),
            "https://a/cb#access_token=t"
        );
        let e = RedirectError {
            redirect_uri: "https://a/cb".into(),
            response_type: ResponseType::Code,
            state: Some("s".into()),
            error: OAuthError::invalid_request("bad"),
        };
        assert_eq!(
            e.location("https://i/acme"),
            "https://a/cb?error=invalid_request&error_description=bad&state=s&iss=https%3A%2F%2Fi%2Facme"
        );
    }
}
