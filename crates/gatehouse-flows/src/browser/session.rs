//! The sign-in session: a random cookie value whose digest keys a record of who signed in and
//! when (the ID token's `auth_time`), with a session id relying parties see as `sid`.

use crate::{Error, ServedTenant, Services};
use gatehouse_core::token::opaque_token_id;
use gatehouse_store::RecordKind;
use gatehouse_store::records::{self, Record};
use serde::{Deserialize, Serialize};

/// How long a sign-in lasts.
pub const SESSION_TTL_SECS: u64 = 8 * 3600;

/// A signed-in user, stored under the digest of the cookie value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub username: String,
    pub auth_time: u64,
    /// Session id shared with relying parties as the ID token's `sid`.
    pub sid: String,
}

impl Record for Session {
    const KIND: RecordKind = RecordKind::Session;
}

/// The session a cookie value names at this tenant, if it is live.
///
/// # Errors
/// The store failing.
pub async fn current(
    services: &Services,
    tenant: &ServedTenant,
    cookie: Option<&str>,
) -> Result<Option<Session>, Error> {
    let Some(value) = cookie else {
        return Ok(None);
    };
    let store = services.store();
    let Some(session) =
        records::get::<Session>(store, tenant.name(), &opaque_token_id(value)).await?
    else {
        return Ok(None);
    };
    // Signed out everywhere since: the session is over.
    let over = store
        .signed_out_at(tenant.name(), &session.username)
        .await?
        .is_some_and(|at| session.auth_time <= at);
    Ok((!over).then_some(session))
}

/// Starts a session for `username` now; returns the cookie value and the session.
///
/// # Errors
/// The store failing, no randomness.
pub async fn start(
    services: &Services,
    tenant: &ServedTenant,
    username: &str,
) -> Result<(String, Session), Error> {
    let value = services.random.token()?;
    let now = services.now();
    let session = Session {
        username: username.to_string(),
        auth_time: now,
        sid: services.random.id()?,
    };
    let id = opaque_token_id(&value);
    records::put(
        services.store(),
        tenant.name(),
        &id,
        &session,
        now + SESSION_TTL_SECS,
    )
    .await?;
    Ok((value, session))
}

/// Ends the session a cookie value names (an absent one is fine).
///
/// # Errors
/// The store failing.
pub async fn end(
    services: &Services,
    tenant: &ServedTenant,
    cookie: Option<&str>,
) -> Result<(), Error> {
    if let Some(value) = cookie {
        records::delete::<Session>(services.store(), tenant.name(), &opaque_token_id(value))
            .await?;
    }
    Ok(())
}
