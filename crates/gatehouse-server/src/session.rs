//! Browser state: the sign-in session cookie, the browser binding cookie that ties a sign-in
//! form to the browser that started the request (login CSRF), and their records.

use crate::AppState;
use crate::error::HttpError;
use crate::records;
use axum::http::{HeaderMap, HeaderValue, header};
use gatehouse_core::token::opaque_token_id;
use gatehouse_store::RecordKind;
use serde::{Deserialize, Serialize};

pub const SESSION_COOKIE: &str = "gatehouse_session";
pub const BROWSER_COOKIE: &str = "gatehouse_browser";
/// How long a sign-in lasts.
pub const SESSION_TTL_SECS: u64 = 8 * 3600;

/// A signed-in user, stored under the digest of the cookie value.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Session {
    pub username: String,
    pub auth_time: u64,
    /// Session id shared with relying parties as the ID token's `sid`.
    pub sid: String,
}

/// The value of a cookie in the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A `Set-Cookie` header for the tenant's path: HttpOnly, SameSite=Lax, Secure over https.
pub fn set_cookie(
    state: &AppState,
    tenant: &str,
    name: &str,
    value: &str,
    max_age: Option<u64>,
) -> HeaderValue {
    let secure = if state.directory.public_url().starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let path = format!(
        "{}/{tenant}",
        crate::routes::url_path(state.directory.public_url())
    );
    let age = max_age
        .map(|a| format!("; Max-Age={a}"))
        .unwrap_or_default();
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; HttpOnly; SameSite=Lax{secure}{age}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The signed-in session of this browser at this tenant, if any.
pub async fn current(
    state: &AppState,
    tenant: &str,
    headers: &HeaderMap,
) -> Result<Option<Session>, HttpError> {
    let Some(value) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    Ok(records::get::<Session>(
        &*state.store,
        tenant,
        RecordKind::Session,
        &opaque_token_id(&value),
    )
    .await?
    .map(|(s, _)| s))
}

/// Starts a session; returns the cookie value.
pub async fn start(
    state: &AppState,
    tenant: &str,
    username: &str,
) -> Result<(String, Session), HttpError> {
    let value = gatehouse_core::token::random_token()
        .map_err(|_| gatehouse_core::OAuthError::server_error("no randomness available"))?;
    let sid = gatehouse_core::token::random_id()
        .map_err(|_| gatehouse_core::OAuthError::server_error("no randomness available"))?;
    let now = state.now();
    let session = Session {
        username: username.to_string(),
        auth_time: now,
        sid,
    };
    records::put(
        &*state.store,
        tenant,
        RecordKind::Session,
        &opaque_token_id(&value),
        &session,
        now + SESSION_TTL_SECS,
    )
    .await?;
    Ok((value, session))
}

pub async fn end(state: &AppState, tenant: &str, headers: &HeaderMap) -> Result<(), HttpError> {
    if let Some(value) = cookie(headers, SESSION_COOKIE) {
        state
            .store
            .delete_record(tenant, RecordKind::Session, &opaque_token_id(&value))
            .await?;
    }
    Ok(())
}
