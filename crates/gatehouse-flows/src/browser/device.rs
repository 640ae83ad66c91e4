//! Device confirmation (RFC 8628 section 3.3): a signed-in person enters the user code shown on
//! a device, checks what it asks for, and allows or denies it. Wrong codes are counted per
//! person, so the code space cannot be searched from one account.

use super::pending::{self, Pending, signed_in_user};
use super::{Ask, Entry, Step, session};
use crate::device_authorization::{EXPIRED_GRACE_SECS, UserCode};
use crate::{Error, ServedTenant, Services};
use gatehouse_core::grant::device_code::{DeviceRecord, DeviceState, normalize_user_code};
use gatehouse_core::scope::issued_scopes;
use gatehouse_core::throttle;
use gatehouse_store::records;

/// Wrong user codes one signed-in person may enter per window before being refused.
pub const MAX_WRONG_CODES: u64 = 10;

/// What the person posted.
pub struct Answer<'a> {
    /// The code as typed.
    pub user_code: &'a str,
    /// `None` on the first post (look the code up, then ask); then allow or deny.
    pub allow: Option<bool>,
}

/// Looks the typed code up, then asks (consent page) or records the person's answer.
///
/// # Errors
/// The store failing.
pub async fn confirm(
    services: &Services,
    tenant: &ServedTenant,
    id: &str,
    mut pending: Pending,
    session_cookie: Option<&str>,
    answer: Answer<'_>,
) -> Result<Step, Error> {
    let store = services.store();
    let name = tenant.name();
    let current = session::current(services, tenant, session_cookie).await?;
    let Some(session) = signed_in_user(tenant, current) else {
        return Ok(Step::SignIn {
            request: id.to_string(),
        });
    };
    let typed = answer.user_code;
    pending.user_code = Some(typed.to_string());
    let entry = |error: &'static str| {
        Step::DeviceEntry(Entry {
            request: id.to_string(),
            csrf: pending.csrf.clone(),
            username: session.username.clone(),
            user_code: typed.to_string(),
            error: Some(error),
        })
    };
    // Counted before the lookup, so that a burst of guesses gets no more lookups than the
    // limit, however many race; a code that turns out right is given back.
    let failures_key = format!("usercode:{}", throttle::user_key(&session.username));
    if store
        .record_failure(name, &failures_key, throttle::WINDOW_SECS)
        .await?
        > MAX_WRONG_CODES
    {
        return Ok(entry(
            "Too many wrong codes. Wait a few minutes, then try again.",
        ));
    }
    let code = normalize_user_code(typed);
    let device_id = records::get::<UserCode>(store, name, &code)
        .await?
        .map(|u| u.0);
    let found = match device_id {
        Some(device_id) => records::get::<DeviceRecord>(store, name, &device_id)
            .await?
            .map(|r| (device_id, r))
            .filter(|(_, r)| r.state == DeviceState::Pending && r.expires_at > services.now()),
        None => None,
    };
    let Some((device_id, mut record)) = found else {
        return Ok(entry(
            "That code is not valid or has expired. Check the code on your device.",
        ));
    };
    store.forgive_failure(name, &failures_key).await?;
    let Some(allowed) = answer.allow else {
        return Ok(Step::Consent(Ask {
            request: id.to_string(),
            csrf: pending.csrf.clone(),
            username: session.username.clone(),
            client_id: record.client_id.clone(),
            scopes: issued_scopes(record.scope.as_deref())
                .into_iter()
                .map(String::from)
                .collect(),
            user_code: Some(typed.to_string()),
        }));
    };
    record.state = if allowed {
        DeviceState::Approved {
            sub: session.username.clone(),
            auth_time: session.auth_time,
        }
    } else {
        DeviceState::Denied
    };
    records::put(
        store,
        name,
        &device_id,
        &record,
        record.expires_at + EXPIRED_GRACE_SECS,
    )
    .await?;
    records::delete::<UserCode>(store, name, &code).await?;
    pending::finish(services, tenant, id).await?;
    Ok(Step::DeviceDone { allowed })
}
