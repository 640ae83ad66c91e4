//! Endpoint paths under a tenant's issuer. Clients discover them from the metadata documents;
//! they are fixed here once so the server's routes, its metadata and the generated credentials
//! Secrets cannot disagree.

/// The token endpoint (RFC 6749 section 3.2).
pub const TOKEN: &str = "/oauth2/token";
/// Token introspection (RFC 7662).
pub const INTROSPECTION: &str = "/oauth2/introspect";
/// Token revocation (RFC 7009).
pub const REVOCATION: &str = "/oauth2/revoke";
/// The tenant's JWK Set.
pub const JWKS: &str = "/jwks.json";
/// OpenID Connect discovery.
pub const OPENID_CONFIGURATION: &str = "/.well-known/openid-configuration";
/// RFC 8414 metadata, under the issuer (and path-inserted at the root).
pub const OAUTH_AUTHORIZATION_SERVER: &str = "/.well-known/oauth-authorization-server";

/// The issuer URL of a tenant: `{public_url}/{tenant}`.
pub fn issuer(public_url: &str, tenant: &str) -> String {
    format!("{}/{tenant}", public_url.trim_end_matches('/'))
}

/// The authorization endpoint (RFC 6749 section 3.1).
pub const AUTHORIZATION: &str = "/oauth2/authorize";
/// The sign-in page of a pending authorization or device confirmation.
pub const LOGIN: &str = "/login";
/// Where the consent page posts its answer.
pub const CONSENT: &str = "/consent";
/// The UserInfo endpoint (OpenID Connect Core 5.3).
pub const USERINFO: &str = "/userinfo";
/// The end-session endpoint (OpenID Connect RP-Initiated Logout).
pub const END_SESSION: &str = "/oauth2/logout";
/// The device authorization endpoint (RFC 8628 section 3.1).
pub const DEVICE_AUTHORIZATION: &str = "/oauth2/device_authorization";
/// Where people enter a device's user code.
pub const DEVICE: &str = "/device";
