//! Client authentication at the token, introspection and revocation endpoints (RFC 6749
//! section 2.3): which credentials were presented, whether they fit the client's registered
//! method, and checking the secret.

use crate::config::ClientConfig;
use crate::error::OAuthError;
use crate::model::ClientAuthMethod;
use crate::secret::{VerifiedSecretCache, verify_secret};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use percent_encoding::percent_decode_str;
use zeroize::Zeroizing;

/// Credentials as presented by the caller, before anything is checked.
#[derive(Debug)]
pub enum PresentedCredentials {
    /// HTTP Basic (`client_secret_basic`).
    Basic {
        /// The client id of the header.
        client_id: String,
        /// The secret of the header, form-decoded.
        secret: Zeroizing<String>,
    },
    /// `client_id` and `client_secret` in the body (`client_secret_post`).
    Post {
        /// The `client_id` parameter.
        client_id: String,
        /// The `client_secret` parameter.
        secret: Zeroizing<String>,
    },
    /// `client_id` alone: a public client (`none`).
    ClientIdOnly {
        /// The `client_id` parameter.
        client_id: String,
    },
    /// A signed JWT (`private_key_jwt`, RFC 7523 section 2.2).
    Assertion {
        /// The assertion's `sub`: the client it claims to be.
        client_id: String,
        /// The signed JWT itself.
        assertion: String,
    },
}

impl PresentedCredentials {
    /// The client the credentials name.
    pub fn client_id(&self) -> &str {
        match self {
            PresentedCredentials::Basic { client_id, .. }
            | PresentedCredentials::Post { client_id, .. }
            | PresentedCredentials::ClientIdOnly { client_id }
            | PresentedCredentials::Assertion { client_id, .. } => client_id,
        }
    }

    /// The RFC 7591 name of the method the credentials use.
    pub fn method(&self) -> ClientAuthMethod {
        match self {
            PresentedCredentials::Basic { .. } => ClientAuthMethod::ClientSecretBasic,
            PresentedCredentials::Post { .. } => ClientAuthMethod::ClientSecretPost,
            PresentedCredentials::ClientIdOnly { .. } => ClientAuthMethod::None,
            PresentedCredentials::Assertion { .. } => ClientAuthMethod::PrivateKeyJwt,
        }
    }
}

/// `application/x-www-form-urlencoded` decoding of one Basic credential half (RFC 6749 2.3.1).
fn form_decode(part: &str) -> Result<String, OAuthError> {
    let spaced = part.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(std::borrow::Cow::into_owned)
        .map_err(|_| {
            OAuthError::invalid_client("Basic credentials are not valid UTF-8 after form-decoding")
        })
}

/// Parses an `Authorization: Basic ...` value into client id and secret.
pub fn parse_basic(header: &str) -> Result<(String, Zeroizing<String>), OAuthError> {
    let malformed = |why: &str| {
        OAuthError::invalid_client(format!("malformed Basic authorization header: {why}"))
    };
    let (scheme, rest) = header
        .trim()
        .split_once(' ')
        .ok_or_else(|| malformed("no credentials"))?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::invalid_client(format!(
            "unsupported authorization scheme {scheme:?}; use Basic or client_secret_post"
        )));
    }
    let decoded = Zeroizing::new(
        STANDARD
            .decode(rest.trim())
            .map_err(|_| malformed("not base64"))?,
    );
    let text = std::str::from_utf8(&decoded).map_err(|_| malformed("not UTF-8"))?;
    let (id, secret) = text
        .split_once(':')
        .ok_or_else(|| malformed("missing ':' between client id and secret"))?;
    let id = form_decode(id)?;
    if id.is_empty() {
        return Err(malformed("empty client id"));
    }
    Ok((id, Zeroizing::new(form_decode(secret)?)))
}

/// Works out which credentials the request carries. More than one method in one request is an
/// `invalid_request` (RFC 6749 section 2.3); no client identification at all is `invalid_client`.
pub fn presented_credentials(
    authorization: Option<&str>,
    form_client_id: Option<&str>,
    form_client_secret: Option<&str>,
    assertion: Option<(Option<&str>, &str)>,
) -> Result<PresentedCredentials, OAuthError> {
    if let Some((assertion_type, token)) = assertion {
        if authorization.is_some() || form_client_secret.is_some() {
            return Err(OAuthError::invalid_request(
                "client authenticated with a client assertion and a secret; use one method",
            ));
        }
        if assertion_type != Some(crate::assertion::CLIENT_ASSERTION_TYPE) {
            return Err(OAuthError::invalid_request(format!(
                "client_assertion_type must be {}",
                crate::assertion::CLIENT_ASSERTION_TYPE
            )));
        }
        let subject = crate::assertion::unverified_subject(token).ok_or_else(|| {
            OAuthError::invalid_client("client_assertion is not a JWT with a sub claim")
        })?;
        // A `private_key_jwt` assertion's `sub` is the client id (RFC 7523 section 3); a
        // ServiceAccount token's is the account, so such a client names itself in `client_id`.
        // Which one applies is the client's registration: the flows check `sub` against it.
        let client_id = form_client_id
            .filter(|id| !id.is_empty())
            .map_or(subject, str::to_string);
        return Ok(PresentedCredentials::Assertion {
            client_id,
            assertion: token.to_string(),
        });
    }
    match (authorization, form_client_secret) {
        (Some(_), Some(_)) => Err(OAuthError::invalid_request(
            "client authenticated with both the Authorization header and client_secret; use one method",
        )),
        (Some(header), None) => {
            let (client_id, secret) = parse_basic(header)?;
            if let Some(form_id) = form_client_id
                && form_id != client_id
            {
                return Err(OAuthError::invalid_request(
                    "client_id in the body does not match the client id of the Authorization header",
                ));
            }
            Ok(PresentedCredentials::Basic { client_id, secret })
        }
        (None, Some(secret)) => {
            let client_id = form_client_id.filter(|id| !id.is_empty()).ok_or_else(|| {
                OAuthError::invalid_request("client_secret given without client_id")
            })?;
            Ok(PresentedCredentials::Post {
                client_id: client_id.to_string(),
                secret: Zeroizing::new(secret.to_string()),
            })
        }
        (None, None) => match form_client_id.filter(|id| !id.is_empty()) {
            Some(id) => Ok(PresentedCredentials::ClientIdOnly {
                client_id: id.to_string(),
            }),
            None => Err(OAuthError::invalid_client(
                "client authentication required: use HTTP Basic or client_id and client_secret",
            )),
        },
    }
}

/// What remains to be done after the cheap checks.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthProgress {
    /// Nothing more to check (a public client, or a secret the cache vouches for).
    Authenticated,
    /// The client assertion must be verified against the client's keys (and its `jti`
    /// checked against replays, which needs the store).
    VerifyAssertion,
    /// The secret must be checked against this argon2id hash (slow; run it off the async
    /// executor) and then [`finish_secret_check`] called.
    NeedsArgon2 {
        /// The registered argon2id hash.
        phc: String,
    },
}

/// Every check except the argon2 verification: the method matches the registration, and the
/// secret is either known-good from the cache or has to be verified.
pub fn precheck(
    tenant: &str,
    client: &ClientConfig,
    creds: &PresentedCredentials,
    cache: &VerifiedSecretCache,
) -> Result<AuthProgress, OAuthError> {
    let registered = client.token_endpoint_auth_method;
    let presented = creds.method();
    if registered != presented {
        return Err(OAuthError::invalid_client(format!(
            "client {} is registered for {registered} authentication, not {presented}",
            client.client_id
        )));
    }
    match creds {
        PresentedCredentials::ClientIdOnly { .. } => Ok(AuthProgress::Authenticated),
        PresentedCredentials::Assertion { .. } => Ok(AuthProgress::VerifyAssertion),
        PresentedCredentials::Basic { secret, .. } | PresentedCredentials::Post { secret, .. } => {
            let phc = client.secret_hash.as_deref().ok_or_else(|| {
                OAuthError::invalid_client(format!("client {} has no secret", client.client_id))
            })?;
            if cache.is_verified(tenant, &client.client_id, phc, secret) {
                Ok(AuthProgress::Authenticated)
            } else {
                Ok(AuthProgress::NeedsArgon2 {
                    phc: phc.to_string(),
                })
            }
        }
    }
}

/// The slow half: argon2 verification, remembered on success.
pub fn finish_secret_check(
    tenant: &str,
    client_id: &str,
    phc: &str,
    creds: &PresentedCredentials,
    cache: &VerifiedSecretCache,
) -> Result<(), OAuthError> {
    let secret = match creds {
        PresentedCredentials::Basic { secret, .. } | PresentedCredentials::Post { secret, .. } => {
            secret
        }
        PresentedCredentials::ClientIdOnly { .. } | PresentedCredentials::Assertion { .. } => {
            return Ok(());
        }
    };
    if verify_secret(secret, phc) {
        cache.remember(tenant, client_id, phc, secret);
        Ok(())
    } else {
        Err(OAuthError::invalid_client(format!(
            "client authentication failed for {client_id}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::testing::client;

    fn basic(id: &str, secret: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let (id, secret) = parse_basic(&basic("my%3Aclient", "p%40ss+word%2B")).unwrap();
        assert_eq!(id, "my:client");
        assert_eq!(secret.as_str(), "p@ss word+");
        let (_, s) = parse_basic(&basic("c", "a:b")).unwrap();
        assert_eq!(s.as_str(), "a:b", "only the first colon separates");
        assert!(parse_basic("basic   ").is_err());
    }

    #[test]
    fn malformed_basic_headers_are_invalid_client() {
        for bad in [
            "Basic !!!",
            "Basic Y2xpZW50",
            "Bearer abc",
            "Basic",
            &basic("", "x"),
        ] {
            let e = parse_basic(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidClient, "{bad}");
        }
    }

    #[test]
    fn one_method_per_request() {
        let e = presented_credentials(Some(&basic("a", "b")), None, Some("b"), None).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        let e =
            presented_credentials(Some(&basic("a", "b")), Some("other"), None, None).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(presented_credentials(Some(&basic("a", "b")), Some("a"), None, None).is_ok());
        let e = presented_credentials(None, None, None, None).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidClient);
        let e = presented_credentials(None, None, Some("s"), None).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(matches!(
            presented_credentials(None, Some("a"), Some("s"), None).unwrap(),
            PresentedCredentials::Post { .. }
        ));
    }

    #[test]
    fn secret_is_checked_once_then_cached() {
        let mut c = client();
        c.secret_hash = Some(crate::secret::hash_secret("right").unwrap());
        let cache = VerifiedSecretCache::new(16);
        let good =
            presented_credentials(Some(&basic(&c.client_id, "right")), None, None, None).unwrap();
        let AuthProgress::NeedsArgon2 { phc } = precheck("acme", &c, &good, &cache).unwrap() else {
            panic!("first use must verify")
        };
        finish_secret_check("acme", &c.client_id, &phc, &good, &cache).unwrap();
        assert_eq!(
            precheck("acme", &c, &good, &cache).unwrap(),
            AuthProgress::Authenticated
        );

        let bad =
            presented_credentials(Some(&basic(&c.client_id, "wrong")), None, None, None).unwrap();
        let AuthProgress::NeedsArgon2 { phc } = precheck("acme", &c, &bad, &cache).unwrap() else {
            panic!("a wrong secret is never a cache hit")
        };
        let e = finish_secret_check("acme", &c.client_id, &phc, &bad, &cache).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidClient);

        let post = presented_credentials(None, Some(&c.client_id), Some("right"), None).unwrap();
        let e = precheck("acme", &c, &post, &cache).unwrap_err();
        assert!(
            e.description.contains("client_secret_basic"),
            "{}",
            e.description
        );
    }
}
