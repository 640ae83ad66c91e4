//! Endpoint paths under a tenant's issuer. Clients discover them from the metadata documents;
//! they are fixed here once so the server's routes, its metadata and the generated credentials
//! Secrets cannot disagree.

pub const TOKEN: &str = "/oauth2/token";
pub const INTROSPECTION: &str = "/oauth2/introspect";
pub const REVOCATION: &str = "/oauth2/revoke";
pub const JWKS: &str = "/jwks.json";
pub const OPENID_CONFIGURATION: &str = "/.well-known/openid-configuration";
pub const OAUTH_AUTHORIZATION_SERVER: &str = "/.well-known/oauth-authorization-server";

/// The issuer URL of a tenant: `{public_url}/{tenant}`.
pub fn issuer(public_url: &str, tenant: &str) -> String {
    format!("{}/{tenant}", public_url.trim_end_matches('/'))
}

pub const AUTHORIZATION: &str = "/oauth2/authorize";
pub const LOGIN: &str = "/login";
pub const CONSENT: &str = "/consent";
pub const USERINFO: &str = "/userinfo";
pub const END_SESSION: &str = "/oauth2/logout";
pub const DEVICE_AUTHORIZATION: &str = "/oauth2/device_authorization";
/// Where people enter a device's user code.
pub const DEVICE: &str = "/device";
