//! The grants of RFC 6749 and its extensions, one module per grant, plus the rules every grant
//! shares: is the grant enabled for the tenant and allowed for the client, which audience the
//! token gets, and the token response.

pub mod authorization_code;
pub mod client_credentials;
pub mod device_code;
pub mod jwt_bearer;
pub mod password;
pub mod refresh_token;
pub mod token_exchange;

use crate::config::{ClientConfig, TenantConfig};
use crate::error::OAuthError;
use crate::model::GrantType;
use crate::token::{AccessTokenClaims, Audience};
use serde::Serialize;

/// Everything a grant needs to know about where it runs. The client is authenticated and
/// [`check_grant_allowed`] has passed for the grant before any grant function is called: the
/// token endpoint checks once, before it dispatches.
pub struct GrantContext<'a> {
    /// The tenant's settings.
    pub tenant: &'a TenantConfig,
    /// The tenant's issuer (`{public-url}/{tenant}`).
    pub issuer: &'a str,
    /// The authenticated client.
    pub client: &'a ClientConfig,
    /// Unix seconds.
    pub now: u64,
}

impl GrantContext<'_> {
    /// The claims of an access token issued now to the authenticated client: valid from now
    /// for the tenant's access-token lifetime (RFC 9068 section 2.2). Every grant, implicit
    /// included, builds its token here.
    #[must_use]
    pub fn access_token_claims(
        &self,
        sub: String,
        aud: Audience,
        scope: Option<String>,
        jti: String,
    ) -> AccessTokenClaims {
        AccessTokenClaims {
            iss: self.issuer.to_string(),
            sub,
            aud,
            exp: self.now + self.tenant.access_token_ttl_secs,
            iat: self.now,
            nbf: self.now,
            jti,
            client_id: self.client.client_id.clone(),
            scope,
            act: None,
            fam: None,
        }
    }
}

/// A grant the tenant does not list is `unsupported_grant_type`; one the client may not use is
/// `unauthorized_client` (DESIGN.md, "HTTP surface").
///
/// # Errors
/// The refusal, as above.
pub fn check_grant_allowed(
    tenant: &TenantConfig,
    client: &ClientConfig,
    grant: GrantType,
) -> Result<(), OAuthError> {
    if !tenant.enables(grant) {
        return Err(OAuthError::unsupported_grant_type(format!(
            "grant type {grant} is not enabled for tenant {}",
            tenant.name
        )));
    }
    if !client.may_use(grant) {
        return Err(OAuthError::unauthorized_client(format!(
            "client {} is not allowed to use grant type {grant}",
            client.client_id
        )));
    }
    Ok(())
}

/// The `aud` of a token (RFC 8707): every requested `resource` must be one of the client's
/// registered audiences; with none requested, the token is for all of them, and a client with
/// no registered audience gets its own client id (RFC 9068 requires some `aud`).
///
/// # Errors
/// `invalid_target` for a resource the client may not name.
pub fn resolve_audience(
    client: &ClientConfig,
    resources: &[String],
) -> Result<Audience, OAuthError> {
    if resources.is_empty() {
        return Ok(Audience(if client.audiences.is_empty() {
            vec![client.client_id.clone()]
        } else {
            client.audiences.clone()
        }));
    }
    let mut out: Vec<String> = Vec::with_capacity(resources.len());
    for r in resources {
        if r.is_empty() || r.contains('#') {
            return Err(OAuthError::invalid_target(format!(
                "resource {r:?} must be an absolute URI without a fragment (RFC 8707)"
            )));
        }
        if !client.audiences.iter().any(|a| a == r) {
            return Err(OAuthError::invalid_target(format!(
                "client {} may not request a token for resource {r}",
                client.client_id
            )));
        }
        if !out.contains(r) {
            out.push(r.clone());
        }
    }
    Ok(Audience(out))
}

/// A successful token response (RFC 6749 section 5.1).
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    /// The access token (a JWT, or an opaque handle).
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// The granted scope, space-delimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// A refresh token, when the grant issues one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// An ID token, for OpenID Connect code flows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// What was issued, for a token exchange (RFC 8693 section 2.2.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<&'static str>,
}

impl TokenResponse {
    /// A response for this access token, expiring when its claims do.
    pub fn bearer(access_token: String, claims: &AccessTokenClaims) -> Self {
        TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: claims.exp.saturating_sub(claims.iat),
            scope: claims.scope.clone(),
            refresh_token: None,
            id_token: None,
            issued_token_type: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::testing::{client, tenant};

    #[test]
    fn tenant_first_then_client() {
        let (mut t, mut c) = (tenant(), client());
        check_grant_allowed(&t, &c, GrantType::ClientCredentials).unwrap();
        c.grant_types = vec![GrantType::RefreshToken];
        assert_eq!(
            check_grant_allowed(&t, &c, GrantType::ClientCredentials)
                .unwrap_err()
                .code,
            ErrorCode::UnauthorizedClient
        );
        t.grant_types = vec![GrantType::AuthorizationCode];
        assert_eq!(
            check_grant_allowed(&t, &c, GrantType::ClientCredentials)
                .unwrap_err()
                .code,
            ErrorCode::UnsupportedGrantType
        );
    }

    #[test]
    fn audiences_are_limited_to_the_client() {
        let mut c = client();
        assert_eq!(
            resolve_audience(&c, &[]).unwrap().0,
            vec![c.client_id.clone()]
        );
        c.audiences = vec![
            "https://api.example.com".into(),
            "https://b.example.com".into(),
        ];
        assert_eq!(resolve_audience(&c, &[]).unwrap().0.len(), 2);
        assert_eq!(
            resolve_audience(&c, &["https://b.example.com".into()])
                .unwrap()
                .0,
            vec!["https://b.example.com"]
        );
        assert_eq!(
            resolve_audience(&c, &["https://evil".into()])
                .unwrap_err()
                .code,
            ErrorCode::InvalidTarget
        );
        assert_eq!(
            resolve_audience(&c, &["https://b.example.com#x".into()])
                .unwrap_err()
                .code,
            ErrorCode::InvalidTarget
        );
    }
}
