//! Consent: what a person allowed a client, remembered per (user, client registration) so the
//! next request for the same scopes goes straight back, and the person's answer on the consent
//! page.
//!
//! The registration is the client's incarnation, not its client id: a client deleted and
//! created again (perhaps by another namespace, with other redirect URIs) under the same id is
//! someone new, and inherits nobody's consent.

use super::pending::Pending;
use super::session;
use super::{Step, authorize};
use crate::redirect::RedirectError;
use crate::{Error, ServedTenant, Services};
use gatehouse_core::grant::authorization_code::AuthorizationRequest;
use gatehouse_core::{ErrorCode, OAuthError, throttle};
use gatehouse_store::RecordKind;
use gatehouse_store::records::{self, Record};
use serde::{Deserialize, Serialize};

/// How long a consent is remembered.
pub const CONSENT_TTL_SECS: u64 = 365 * 86_400;

/// The scopes a person allowed a client, accumulated over their answers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Consent(pub Vec<String>);

impl Record for Consent {
    const KIND: RecordKind = RecordKind::Consent;
}

/// The record's id, or `None` for a client the tenant does not serve (nothing to remember).
fn consent_id(tenant: &ServedTenant, username: &str, client_id: &str) -> Option<String> {
    let client = tenant.client(client_id)?;
    Some(format!(
        "{}:{client_id}:{}",
        throttle::user_key(username),
        client.incarnation
    ))
}

/// Whether `username` already allowed every scope of `req`.
///
/// # Errors
/// The store failing.
pub async fn covers(
    services: &Services,
    tenant: &ServedTenant,
    username: &str,
    req: &AuthorizationRequest,
) -> Result<bool, Error> {
    let Some(id) = consent_id(tenant, username, &req.client_id) else {
        return Ok(false);
    };
    let remembered = records::get::<Consent>(services.store(), tenant.name(), &id).await?;
    Ok(remembered.is_some_and(|c| req.scopes.iter().all(|s| c.0.contains(s))))
}

/// Remembers that `username` allowed `scopes` to `client_id` (adding to what was allowed).
///
/// # Errors
/// The store failing.
pub async fn remember(
    services: &Services,
    tenant: &ServedTenant,
    username: &str,
    client_id: &str,
    scopes: &[String],
) -> Result<(), Error> {
    let store = services.store();
    let Some(id) = consent_id(tenant, username, client_id) else {
        return Ok(());
    };
    let mut consent = records::get::<Consent>(store, tenant.name(), &id)
        .await?
        .unwrap_or_default();
    for s in scopes {
        if !consent.0.contains(s) {
            consent.0.push(s.clone());
        }
    }
    let until = services.now() + CONSENT_TTL_SECS;
    records::put(store, tenant.name(), &id, &consent, until).await?;
    Ok(())
}

/// The person's answer on the consent page of an authorization request.
///
/// # Errors
/// `invalid_request` when the sign-in has no authorization request, or the store failing.
pub async fn answer(
    services: &Services,
    tenant: &ServedTenant,
    id: &str,
    pending: &Pending,
    session_cookie: Option<&str>,
    allow: bool,
) -> Result<Step, Error> {
    let Some(session) = session::current(services, tenant, session_cookie).await? else {
        return Ok(Step::SignIn {
            request: id.to_string(),
        });
    };
    let Some(req) = &pending.request else {
        return Err(OAuthError::invalid_request("This sign-in has no consent to give.").into());
    };
    if !allow {
        super::pending::finish(services, tenant, id).await?;
        return Ok(Step::Refused(RedirectError {
            redirect_uri: req.redirect_uri.clone(),
            response_type: req.response_type,
            state: req.state.clone(),
            error: OAuthError::new(ErrorCode::AccessDenied, "the user denied access"),
        }));
    }
    remember(
        services,
        tenant,
        &session.username,
        &req.client_id,
        &req.scopes,
    )
    .await?;
    authorize::complete(services, tenant, id, pending, &session).await
}
