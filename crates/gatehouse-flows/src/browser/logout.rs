//! The end-session endpoint (OpenID Connect RP-Initiated Logout 1.0): ends the browser's
//! session and, when asked, names the post-logout URI registered for the client to return to.

use super::session;
use crate::{Error, Params, ServedTenant, Services};
use gatehouse_core::OAuthError;
use gatehouse_core::token::verify_id_token_hint;

/// Where the browser goes after signing out: a registered post-logout URI (with `state`), or
/// `None` for the signed-out page.
#[derive(Debug, PartialEq, Eq)]
pub struct SignedOut {
    pub redirect: Option<String>,
}

fn invalid(message: &str) -> Error {
    OAuthError::invalid_request(message).into()
}

/// Checks the request, then ends the session.
///
/// # Errors
/// `invalid_request` for a hint of another issuer, a mismatched `client_id`, or an
/// unregistered post-logout URI (nothing is ended then); the store failing.
pub async fn end_session(
    services: &Services,
    tenant: &ServedTenant,
    params: &Params,
    session_cookie: Option<&str>,
) -> Result<SignedOut, Error> {
    let hint = params
        .get("id_token_hint")
        .and_then(|t| verify_id_token_hint(t, &tenant.issuer, &tenant.verification_keys));
    if params.get("id_token_hint").is_some() && hint.is_none() {
        return Err(invalid("id_token_hint is not an ID token of this issuer."));
    }
    let client_id = params
        .owned("client_id")
        .or_else(|| hint.as_ref().map(|h| h.aud.clone()));
    if let (Some(param), Some(h)) = (params.get("client_id"), &hint)
        && param != h.aud
    {
        return Err(invalid("client_id does not match the id_token_hint."));
    }
    let redirect = match params.get("post_logout_redirect_uri") {
        None => None,
        Some(uri) => match client_id.as_deref().and_then(|id| tenant.client(id)) {
            Some(c) if c.post_logout_redirect_uris.iter().any(|r| r == uri) => {
                Some(with_state(uri, params.get("state")))
            }
            Some(_) => {
                return Err(invalid(
                    "post_logout_redirect_uri is not registered for this client.",
                ));
            }
            None => {
                return Err(invalid(
                    "post_logout_redirect_uri needs id_token_hint or client_id.",
                ));
            }
        },
    };
    session::end(services, tenant, session_cookie).await?;
    Ok(SignedOut { redirect })
}

fn with_state(uri: &str, state: Option<&str>) -> String {
    match state {
        Some(s) => {
            let sep = if uri.contains('?') { '&' } else { '?' };
            format!(
                "{uri}{sep}{}",
                form_urlencoded::Serializer::new(String::new())
                    .append_pair("state", s)
                    .finish()
            )
        }
        None => uri.to_string(),
    }
}
