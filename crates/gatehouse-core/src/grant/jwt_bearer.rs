//! The JWT bearer grant (RFC 7523 section 2.1): the client presents an assertion it signed
//! with a key registered in its `jwks`, naming the subject the token is for.
//!
//! Who may be named is the Tenant's decision, not the client's: a client may assert itself,
//! and only the users and clients its Tenant's `spec.subjectAssertions` grants it; a user must
//! exist, and any other subject is refused (DESIGN.md, "The tenant trust boundary").

use super::{GrantContext, resolve_audience};
use crate::assertion::AssertionClaims;
use crate::error::OAuthError;
use crate::scope::{granted_scopes, scope_string};
use crate::subject::{client_subject, is_user_subject, subject_client};
use crate::token::AccessTokenClaims;

/// Claims of the access token for a verified assertion. The assertion's issuer must be the
/// client itself: a client can only vouch for subjects with its own keys. `client_namespace`
/// says from which namespace a client id is registered with the tenant, if it is.
///
/// # Errors
/// `invalid_grant` for an assertion from another issuer, or a subject the client may not
/// assert or that does not exist; `invalid_scope`/`invalid_target` as for every grant.
pub fn jwt_bearer_claims(
    ctx: &GrantContext<'_>,
    assertion: &AssertionClaims,
    client_namespace: impl Fn(&str) -> Option<String>,
    scope: Option<&str>,
    resources: &[String],
    jti: String,
) -> Result<AccessTokenClaims, OAuthError> {
    if assertion.iss != ctx.client.client_id {
        return Err(OAuthError::invalid_grant(
            "the assertion's issuer is not the authenticated client",
        ));
    }
    let sub = asserted_subject(ctx, &assertion.sub, client_namespace)?;
    let scopes = granted_scopes(scope, ctx.client, ctx.tenant)?;
    let aud = resolve_audience(ctx.client, resources)?;
    Ok(ctx.access_token_claims(sub, aud, scope_string(&scopes), jti))
}

/// The token's `sub` for the assertion's `sub`, if the client may assert it: itself (its client
/// id, or `client:<client_id>`), another client as `client:<client_id>`, or a username.
fn asserted_subject(
    ctx: &GrantContext<'_>,
    asserted: &str,
    client_namespace: impl Fn(&str) -> Option<String>,
) -> Result<String, OAuthError> {
    let me = &ctx.client.client_id;
    if asserted.is_empty() {
        return Err(OAuthError::invalid_grant("the assertion has no subject"));
    }
    if asserted == me || subject_client(asserted) == Some(me.as_str()) {
        return Ok(client_subject(me));
    }
    let refused = || {
        OAuthError::invalid_grant(format!(
            "client {me} may not assert subject {asserted} (the tenant's spec.subjectAssertions does not grant it)"
        ))
    };
    if let Some(other) = subject_client(asserted) {
        let Some(namespace) = client_namespace(other) else {
            return Err(
                if ctx
                    .client
                    .may_assert
                    .clients
                    .iter()
                    .any(|c| c.client_id == other)
                {
                    OAuthError::invalid_grant(format!(
                        "the assertion's subject {asserted} is no client of this tenant"
                    ))
                } else {
                    refused()
                },
            );
        };
        if !ctx.client.may_assert.client(&namespace, other) {
            return Err(refused());
        }
        return Ok(client_subject(other));
    }
    if !is_user_subject(asserted) || !ctx.client.may_assert.user(asserted) {
        return Err(refused());
    }
    if ctx.tenant.user(asserted).is_none() {
        return Err(OAuthError::invalid_grant(format!(
            "the assertion's subject {asserted} is no user of this tenant"
        )));
    }
    Ok(asserted.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AssertableSubjects, ClientRef, UserConfig};
    use crate::error::ErrorCode;
    use crate::testing::{client, tenant};
    use crate::token::Audience;

    fn assertion(sub: &str) -> AssertionClaims {
        AssertionClaims {
            iss: "acme-billing".into(),
            sub: sub.into(),
            aud: Audience(vec!["https://auth/acme".into()]),
            exp: 200,
            nbf: None,
            iat: None,
            jti: Some("j".into()),
        }
    }

    fn subject_of(may_assert: AssertableSubjects, sub: &str) -> Result<String, OAuthError> {
        let mut t = tenant();
        t.users.push(UserConfig {
            username: "alice".into(),
            password_hash: String::new(),
            email: None,
            name: None,
            groups: vec![],
        });
        let mut c = client();
        c.may_assert = may_assert;
        let ctx = GrantContext {
            tenant: &t,
            issuer: "https://auth/acme",
            client: &c,
            now: 100,
        };
        let namespace_of = |id: &str| match id {
            "acme-reports" => Some("acme".to_string()),
            "acme-claimed" => Some("other".to_string()),
            _ => None,
        };
        jwt_bearer_claims(&ctx, &assertion(sub), namespace_of, None, &[], "j".into())
            .map(|claims| claims.sub)
    }

    #[test]
    fn by_default_a_client_asserts_only_itself() {
        let none = AssertableSubjects::default();
        assert_eq!(
            subject_of(none.clone(), "acme-billing").unwrap(),
            "client:acme-billing"
        );
        assert_eq!(
            subject_of(none.clone(), "client:acme-billing").unwrap(),
            "client:acme-billing"
        );
        for sub in ["alice", "client:acme-reports", "nobody", "system:admin", ""] {
            let e = subject_of(none.clone(), sub).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidGrant, "{sub}");
        }
    }

    #[test]
    fn the_tenant_grants_users_and_clients_that_must_exist() {
        let granted = AssertableSubjects {
            impersonation: false,
            users: vec!["*".into()],
            clients: vec![
                ClientRef {
                    namespace: "acme".into(),
                    client_id: "acme-reports".into(),
                },
                ClientRef {
                    namespace: "acme".into(),
                    client_id: "acme-gone".into(),
                },
                ClientRef {
                    namespace: "acme".into(),
                    client_id: "acme-claimed".into(),
                },
            ],
        };
        assert_eq!(subject_of(granted.clone(), "alice").unwrap(), "alice");
        assert_eq!(
            subject_of(granted.clone(), "client:acme-reports").unwrap(),
            "client:acme-reports"
        );
        let e = subject_of(granted.clone(), "mallory").unwrap_err();
        assert!(e.description.contains("no user"), "{}", e.description);
        let e = subject_of(granted.clone(), "client:acme-gone").unwrap_err();
        assert!(e.description.contains("no client"), "{}", e.description);
        // The id was freed and claimed from another namespace: someone else, not granted.
        let e = subject_of(granted.clone(), "client:acme-claimed").unwrap_err();
        assert!(
            e.description.contains("may not assert"),
            "{}",
            e.description
        );
        // A listed user only: others stay refused even though they exist.
        let only_bob = AssertableSubjects {
            impersonation: false,
            users: vec!["bob".into()],
            clients: vec![],
        };
        let e = subject_of(only_bob, "alice").unwrap_err();
        assert!(
            e.description.contains("may not assert"),
            "{}",
            e.description
        );
        // A subject with the reserved character is never a user.
        let e = subject_of(granted, "client:alice:x").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidGrant);
    }
}
