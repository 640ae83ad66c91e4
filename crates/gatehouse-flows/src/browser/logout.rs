//! The end-session endpoint (OpenID Connect RP-Initiated Logout 1.0): ends the browser's
//! session and, when asked, names the post-logout URI registered for the client to return to.
//!
//! Without a valid `id_token_hint` the request could come from any page (an `<img>`, a link),
//! so the person is asked first (section 2: "the OP SHOULD ask the End-User whether to log
//! out"); their answer carries a token derived from the session cookie, which another site can
//! neither read nor compute.

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

/// What the end-session endpoint does.
#[derive(Debug, PartialEq, Eq)]
pub enum EndSession {
    /// The session is ended.
    SignedOut(SignedOut),
    /// Ask the person first: a form posting `fields` back (with `confirm`).
    Confirm { fields: Vec<(String, String)> },
}

/// The form field that carries the person's confirmation.
pub const CONFIRM_FIELD: &str = "confirm";

/// The confirmation token for a session: only a page served to this browser knows it.
fn confirmation(session_cookie: &str) -> String {
    let digest = gatehouse_core::token::token_digest(&format!("end-session\0{session_cookie}"));
    gatehouse_core::hex::encode(&digest[..16])
}

fn invalid(message: &str) -> Error {
    OAuthError::invalid_request(message).into()
}

/// Checks the request, then ends the session, or asks the person first.
///
/// # Errors
/// `invalid_request` for a hint of another issuer, a mismatched `client_id`, or an
/// unregistered post-logout URI (nothing is ended then); the store failing.
pub async fn end_session(
    services: &Services,
    tenant: &ServedTenant,
    params: &Params,
    session_cookie: Option<&str>,
) -> Result<EndSession, Error> {
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
    let current = match session_cookie {
        Some(_) => session::current(services, tenant, session_cookie).await?,
        None => None,
    };
    // A hint vouches only for its own session: anyone can hold an ID token of this issuer
    // (their own), and it must not sign out someone else's browser without asking.
    let hint_is_this_session = match (&hint, &current) {
        (Some(h), Some(s)) => h.sub == s.username && h.sid.as_ref().is_none_or(|sid| *sid == s.sid),
        _ => false,
    };
    let confirmed = match (session_cookie, params.get(CONFIRM_FIELD)) {
        (Some(cookie), Some(answer)) => answer == confirmation(cookie),
        _ => false,
    };
    if current.is_some() && !hint_is_this_session && !confirmed {
        let mut fields: Vec<(String, String)> = ["client_id", "post_logout_redirect_uri", "state"]
            .into_iter()
            .filter_map(|k| params.get(k).map(|v| (k.to_string(), v.to_string())))
            .collect();
        if let Some(cookie) = session_cookie {
            fields.push((CONFIRM_FIELD.to_string(), confirmation(cookie)));
        }
        return Ok(EndSession::Confirm { fields });
    }
    session::end(services, tenant, session_cookie).await?;
    Ok(EndSession::SignedOut(SignedOut { redirect }))
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
