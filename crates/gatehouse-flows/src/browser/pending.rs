//! A sign-in waiting for the user, bound to the browser that started it (login CSRF): the
//! browser carries a random binding cookie, the pending record names it, and every form of the
//! sign-in carries the record's id and its own CSRF token.

use crate::browser::session::{self, Session};
use crate::browser::{Step, authorize};
use crate::{Error, ServedTenant, Services};
use gatehouse_core::grant::authorization_code::AuthorizationRequest;
use gatehouse_store::RecordKind;
use gatehouse_store::records::{self, Record};
use serde::{Deserialize, Serialize};

/// How long a started sign-in may take.
pub const PENDING_TTL_SECS: u64 = 600;

/// An authorization request, or (without one) a device confirmation (RFC 8628), waiting for
/// the person to sign in, consent, or enter a code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<AuthorizationRequest>,
    /// For device confirmations: the user code from the verification link, to prefill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_code: Option<String>,
    pub browser: String,
    pub csrf: String,
}

impl Record for Pending {
    const KIND: RecordKind = RecordKind::AuthorizationRequest;
}

/// A sign-in started, and where the browser goes first.
#[derive(Debug)]
pub struct Begun {
    pub step: Step,
    /// A binding value for a browser that had none: the HTTP layer sets it as a cookie.
    pub new_browser: Option<String>,
}

/// What a browser presents: its binding cookie and its session cookie, if it has them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Browser<'a> {
    pub binding: Option<&'a str>,
    pub session: Option<&'a str>,
    /// Where it connects from, for the limit on sign-ins started per address.
    pub address: Option<std::net::IpAddr>,
}

/// Sign-ins (pending records, ten minutes each) one address may start per window: a person
/// starts a few, an office behind one address some dozens; a flood stops here instead of
/// filling the store.
pub const MAX_STARTED_PER_ADDRESS: u64 = 300;

/// Starts a sign-in bound to this browser and moves it on: an authorization request, or a
/// device confirmation when `request` is `None`.
///
/// # Errors
/// The store failing, no randomness.
pub async fn begin(
    services: &Services,
    tenant: &ServedTenant,
    request: Option<AuthorizationRequest>,
    user_code: Option<String>,
    browser: Browser<'_>,
) -> Result<Begun, Error> {
    let new_browser = match browser.binding {
        Some(_) => None,
        None => Some(services.random.token()?),
    };
    let binding = browser
        .binding
        .or(new_browser.as_deref())
        .unwrap_or_default()
        .to_string();
    let address = gatehouse_core::throttle::address_bucket(browser.address);
    let started = services
        .store()
        .record_failure(
            tenant.name(),
            &gatehouse_core::throttle::started_key(&address),
            gatehouse_core::throttle::WINDOW_SECS,
        )
        .await?;
    if started > MAX_STARTED_PER_ADDRESS {
        tracing::info!(tenant = %tenant.name(), "sign-in refused: too many started from one address");
        return Err(gatehouse_core::OAuthError::temporarily_unavailable(
            "Too many sign-ins were started from your network. Wait a few minutes, then try again.",
        )
        .into());
    }
    let pending = Pending {
        request,
        user_code,
        browser: binding,
        csrf: services.random.token()?,
    };
    let id = services.random.id()?;
    let until = services.now() + PENDING_TTL_SECS;
    records::put(services.store(), tenant.name(), &id, &pending, until).await?;
    let current = session::current(services, tenant, browser.session).await?;
    let step = authorize::proceed(services, tenant, &id, &pending, current, false).await?;
    // A signed-in browser answered at once (a code, or an error back to the client) waited
    // for nobody: its start is given back, so that an office behind one address can use its
    // applications all day, and its record goes.
    if matches!(step, Step::Done { .. } | Step::Refused(_)) {
        let store = services.store();
        store
            .forgive_failure(
                tenant.name(),
                &gatehouse_core::throttle::started_key(&address),
            )
            .await?;
        // A completed one was finished on the way; a refused one is finished here.
        if matches!(step, Step::Refused(_)) {
            finish(services, tenant, &id).await?;
        }
    }
    Ok(Begun { step, new_browser })
}

/// A pending sign-in that a form names, checked to belong to this browser and this form.
///
/// # Errors
/// [`Error::SignInExpired`] when it is gone, [`Error::ForeignForm`] when the browser binding or
/// the CSRF token does not match, or the store failing.
pub async fn load(
    services: &Services,
    tenant: &ServedTenant,
    id: Option<&str>,
    binding: Option<&str>,
    csrf: Option<&str>,
) -> Result<(String, Pending), Error> {
    let id = id.ok_or(Error::SignInExpired)?;
    let pending = records::get::<Pending>(services.store(), tenant.name(), id)
        .await?
        .ok_or(Error::SignInExpired)?;
    let browser_ok = binding.is_some_and(|b| b == pending.browser);
    let csrf_ok = csrf.is_some_and(|c| c == pending.csrf);
    if !browser_ok || !csrf_ok {
        return Err(Error::ForeignForm);
    }
    Ok((id.to_string(), pending))
}

/// The pending sign-in a sign-in page shows (no form posted yet, so nothing to check).
///
/// # Errors
/// [`Error::SignInExpired`] when it is gone, or the store failing.
pub async fn find(
    services: &Services,
    tenant: &ServedTenant,
    id: Option<&str>,
) -> Result<Pending, Error> {
    let id = id.ok_or(Error::SignInExpired)?;
    records::get::<Pending>(services.store(), tenant.name(), id)
        .await?
        .ok_or(Error::SignInExpired)
}

/// Ends a pending sign-in (completed, denied, or confirmed).
///
/// # Errors
/// The store failing.
pub async fn finish(services: &Services, tenant: &ServedTenant, id: &str) -> Result<(), Error> {
    records::delete::<Pending>(services.store(), tenant.name(), id).await?;
    Ok(())
}

/// The session of a pending sign-in's person, if signed in at this tenant and still a user.
pub(crate) fn signed_in_user(tenant: &ServedTenant, session: Option<Session>) -> Option<Session> {
    session.filter(|s| tenant.config.user(&s.username).is_some())
}
