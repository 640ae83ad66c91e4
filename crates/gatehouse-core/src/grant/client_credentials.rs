//! The client credentials grant (RFC 6749 section 4.4).

use super::{GrantContext, resolve_audience};
use crate::error::OAuthError;
use crate::scope::{granted_scopes, scope_string};
use crate::subject::client_subject;
use crate::token::AccessTokenClaims;

/// Parameters of a client credentials request (the client is already authenticated).
pub struct ClientCredentialsRequest<'a> {
    /// The `scope` parameter.
    pub scope: Option<&'a str>,
    /// The `resource` parameters (RFC 8707).
    pub resources: &'a [String],
}

/// Decides the claims of the access token, or why none is issued. The subject is the client
/// itself in its reserved form, `client:<client_id>` (RFC 9068 section 2.2: with no resource
/// owner, `sub` identifies the client), so that no client id can pose as a user.
pub fn client_credentials(
    ctx: &GrantContext<'_>,
    req: &ClientCredentialsRequest<'_>,
    jti: String,
) -> Result<AccessTokenClaims, OAuthError> {
    if ctx.client.public {
        return Err(OAuthError::unauthorized_client(
            "public clients cannot use client_credentials (RFC 6749 section 4.4)",
        ));
    }
    let scopes = granted_scopes(req.scope, ctx.client, ctx.tenant)?;
    let aud = resolve_audience(ctx.client, req.resources)?;
    Ok(ctx.access_token_claims(
        client_subject(&ctx.client.client_id),
        aud,
        scope_string(&scopes),
        jti,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::testing::{client, tenant};

    #[test]
    fn issues_claims_for_the_client() {
        let (t, c) = (tenant(), client());
        let ctx = GrantContext {
            tenant: &t,
            issuer: "https://auth/acme",
            client: &c,
            now: 100,
        };
        let claims = client_credentials(
            &ctx,
            &ClientCredentialsRequest {
                scope: Some("billing.read"),
                resources: &[],
            },
            "j".into(),
        )
        .unwrap();
        assert_eq!(claims.sub, format!("client:{}", c.client_id));
        assert_eq!(claims.exp, 100 + t.access_token_ttl_secs);
        assert_eq!(claims.scope.as_deref(), Some("billing.read"));
        assert_eq!(claims.iss, "https://auth/acme");
    }

    #[test]
    fn a_client_named_like_a_user_is_not_that_user() {
        let (t, mut c) = (tenant(), client());
        c.client_id = "alice".into();
        let ctx = GrantContext {
            tenant: &t,
            issuer: "i",
            client: &c,
            now: 0,
        };
        let claims = client_credentials(
            &ctx,
            &ClientCredentialsRequest {
                scope: None,
                resources: &[],
            },
            "j".into(),
        )
        .unwrap();
        assert_eq!(claims.sub, "client:alice");
        assert!(!crate::subject::is_user_subject(&claims.sub));
    }

    #[test]
    fn public_clients_are_refused() {
        let (t, mut c) = (tenant(), client());
        c.public = true;
        let ctx = GrantContext {
            tenant: &t,
            issuer: "i",
            client: &c,
            now: 0,
        };
        let e = client_credentials(
            &ctx,
            &ClientCredentialsRequest {
                scope: None,
                resources: &[],
            },
            "j".into(),
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::UnauthorizedClient);
    }
}
