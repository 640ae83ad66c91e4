//! The browser's cookies at a tenant: the sign-in session, and the binding that ties a sign-in
//! form to the browser that started it. Scoped to the tenant's path, `HttpOnly`,
//! `SameSite=Lax`, and `Secure` when the public URL is https.

use crate::AppState;
use axum::http::{HeaderMap, HeaderValue, header};

pub const SESSION: &str = "gatehouse_session";
pub const BROWSER: &str = "gatehouse_browser";
/// How long the browser binding lasts.
pub const BROWSER_MAX_AGE: u64 = 400 * 86_400;

/// The value of a cookie in the request.
pub fn get(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A `Set-Cookie` header for the tenant's path.
pub fn set(
    state: &AppState,
    tenant: &str,
    name: &str,
    value: &str,
    max_age: Option<u64>,
) -> HeaderValue {
    let public_url = state.directory.public_url();
    let secure = if public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let path = format!("{}/{tenant}", crate::routes::url_path(public_url));
    let age = max_age
        .map(|a| format!("; Max-Age={a}"))
        .unwrap_or_default();
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; HttpOnly; SameSite=Lax{secure}{age}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The browser's cookies as the flows take them.
pub struct Jar {
    pub binding: Option<String>,
    pub session: Option<String>,
}

impl Jar {
    pub fn of(headers: &HeaderMap) -> Self {
        Jar {
            binding: get(headers, BROWSER),
            session: get(headers, SESSION),
        }
    }

    /// The browser as the flows see it, connecting from `address`.
    pub fn browser(
        &self,
        address: Option<std::net::IpAddr>,
    ) -> gatehouse_flows::browser::pending::Browser<'_> {
        gatehouse_flows::browser::pending::Browser {
            binding: self.binding.as_deref(),
            session: self.session.as_deref(),
            address,
        }
    }
}
