//! Token exchange (RFC 8693): a client trades a token it holds (the subject token) for an
//! access token for another audience, narrower in scope and never outliving it.
//!
//! The policy, decided here once the flows have verified the presented tokens:
//! - A client exchanges its own tokens (its ServiceAccount token, or an access token about
//!   itself): from a ServiceAccount token it gets the scopes `client_credentials` would give
//!   it, from an access token at most that token's scopes.
//! - A token about someone else (a user, another client) is exchanged only by a client it was
//!   issued to or for (its `client_id` or `aud`) and that the Tenant lets assert that subject
//!   (`spec.subjectAssertions`, as for RFC 7523 assertions; by default a client asserts only
//!   itself), and
//!   - with an actor token about the requesting client itself: delegation, named in `act`
//!     (the prior actors nested, section 4.1); or
//!   - without one: impersonation, only where that grant says `impersonation: true`.
//! - The audience (`audience` and `resource` alike) is one the client may name; scopes only
//!   narrow; no refresh token is issued; a token or policy that does not fit is
//!   `invalid_request` (section 2.2.2).

use super::{GrantContext, resolve_audience};
use crate::error::OAuthError;
use crate::scope::{granted_scopes, parse_scope, scope_string};
use crate::subject::{client_subject, is_user_subject, subject_client};
use crate::token::AccessTokenClaims;
use serde_json::{Value, json};

/// `subject_token_type` / `actor_token_type` / `issued_token_type` of an access token.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// The type of a JWT that is not this server's access token (a ServiceAccount token).
pub const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// What a presented token is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PresentedKind {
    /// An access token of this tenant.
    AccessToken,
    /// The requesting workload's own token: its ServiceAccount's, or a trusted issuer's for a
    /// subject mapped to it.
    WorkloadToken,
}

/// Longest chain of actors a token may name (`act` within `act`).
pub const MAX_ACTORS: usize = 4;

/// A subject or actor token once the flows verified it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresentedToken {
    /// What it is.
    pub kind: PresentedKind,
    /// Whom it is about: a user, or `client:<id>`.
    pub sub: String,
    /// The client it was issued to (none for a ServiceAccount token).
    pub client_id: Option<String>,
    /// Its audience.
    pub aud: Vec<String>,
    /// Its scope (none for a ServiceAccount token).
    pub scope: Option<String>,
    /// Unix seconds.
    pub exp: u64,
    /// Its own `act`, if it came of a delegation.
    pub act: Option<Value>,
    /// For a subject naming another client: that client's namespace, if it is registered
    /// (impersonation of a client is granted by namespace and client id).
    pub client_namespace: Option<String>,
}

/// What the client asks for.
pub struct ExchangeRequest<'a> {
    /// The verified subject token.
    pub subject: &'a PresentedToken,
    /// The verified actor token, if one was sent.
    pub actor: Option<&'a PresentedToken>,
    /// The `scope` parameter.
    pub scope: Option<&'a str>,
    /// The `audience` and `resource` parameters together.
    pub targets: &'a [String],
}

/// The new token's claims, or why there is none.
///
/// # Errors
/// `unauthorized_client` for a client that may not exchange this token (or a public one),
/// `invalid_target` for an audience it may not name, `invalid_scope` for a scope beyond the
/// subject token's or the client's.
pub fn token_exchange(
    ctx: &GrantContext<'_>,
    req: &ExchangeRequest<'_>,
    jti: String,
) -> Result<AccessTokenClaims, OAuthError> {
    let client = ctx.client;
    if client.public {
        return Err(OAuthError::unauthorized_client(
            "public clients cannot exchange tokens",
        ));
    }
    let own = client_subject(&client.client_id);
    let subject = req.subject;
    if let Some(actor) = req.actor
        && actor.sub != own
    {
        return Err(OAuthError::invalid_request(format!(
            "the actor token must be about the requesting client ({own})"
        )));
    }
    let is_self = subject.sub == own;
    let act = if is_self {
        // Acting for oneself is no delegation.
        None
    } else {
        let meant_for_client = subject.client_id.as_deref() == Some(client.client_id.as_str())
            || subject.aud.contains(&client.client_id);
        if !meant_for_client {
            return Err(OAuthError::invalid_request(format!(
                "the subject token was not issued to or for client {} (its client_id or aud)",
                client.client_id
            )));
        }
        if !may_assert(ctx, subject) {
            return Err(OAuthError::invalid_request(format!(
                "the tenant does not let client {} act for {} (spec.subjectAssertions)",
                client.client_id, subject.sub
            )));
        }
        match req.actor {
            Some(actor) => Some(delegation(&actor.sub, subject.act.as_ref())?),
            None if client.may_assert.impersonation => subject.act.clone(),
            None => {
                return Err(OAuthError::invalid_request(format!(
                    "client {} may not impersonate {}: send its own token as actor_token (delegation), or the tenant allows impersonation in spec.subjectAssertions",
                    client.client_id, subject.sub
                )));
            }
        }
    };
    let scope = match subject.kind {
        // A ServiceAccount token has no scope: the client's own, as for client_credentials.
        PresentedKind::WorkloadToken => {
            scope_string(&granted_scopes(req.scope, client, ctx.tenant)?)
        }
        PresentedKind::AccessToken => narrowed_scope(ctx, subject.scope.as_deref(), req.scope)?,
    };
    let aud = resolve_audience(client, req.targets)?;
    let mut claims = ctx.access_token_claims(subject.sub.clone(), aud, scope, jti);
    claims.exp = claims
        .exp
        .min(subject.exp)
        .min(req.actor.map_or(u64::MAX, |a| a.exp));
    claims.act = act;
    Ok(claims)
}

/// The `act` of a delegation by `actor` of a token that names `prior` actors: the current
/// actor outermost (RFC 8693 section 4.1). The same actor acting again is not nested again.
fn delegation(actor: &str, prior: Option<&Value>) -> Result<Value, OAuthError> {
    let Some(prior) = prior else {
        return Ok(json!({ "sub": actor }));
    };
    if prior.get("sub").and_then(Value::as_str) == Some(actor) {
        return Ok(prior.clone());
    }
    let mut depth = 1;
    let mut inner = prior;
    while let Some(next) = inner.get("act") {
        depth += 1;
        inner = next;
    }
    if depth >= MAX_ACTORS {
        return Err(OAuthError::invalid_request(format!(
            "the subject token already names {depth} actors; a chain of delegations ends at {MAX_ACTORS}"
        )));
    }
    Ok(json!({ "sub": actor, "act": prior }))
}

fn may_assert(ctx: &GrantContext<'_>, subject: &PresentedToken) -> bool {
    let may = &ctx.client.may_assert;
    if is_user_subject(&subject.sub) {
        return may.user(&subject.sub);
    }
    match (subject_client(&subject.sub), &subject.client_namespace) {
        (Some(id), Some(namespace)) => may.client(namespace, id),
        _ => false,
    }
}

/// The requested scope, each one held by the subject token and allowed to the client; without
/// a request, what the subject token holds that the client may hold. A token without a scope
/// holds none.
fn narrowed_scope(
    ctx: &GrantContext<'_>,
    held: Option<&str>,
    requested: Option<&str>,
) -> Result<Option<String>, OAuthError> {
    let held = held.map(parse_scope).transpose()?.unwrap_or_default();
    let allowed = |s: &String| ctx.client.scopes.contains(s) || s == "openid";
    let scopes: Vec<String> = match requested.map(parse_scope).transpose()? {
        Some(asked) if !asked.is_empty() => {
            for s in &asked {
                if !held.contains(s) {
                    return Err(OAuthError::invalid_scope(format!(
                        "scope {s} is not in the subject token: an exchange only narrows"
                    )));
                }
                if !allowed(s) {
                    return Err(OAuthError::invalid_scope(format!(
                        "client {} may not request scope {s}",
                        ctx.client.client_id
                    )));
                }
            }
            asked
        }
        _ => held.into_iter().filter(allowed).collect(),
    };
    Ok(scope_string(&scopes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClientRef;
    use crate::error::ErrorCode;
    use crate::testing::{client, tenant};

    const NOW: u64 = 1000;

    fn alice_for(client_id: &str) -> PresentedToken {
        PresentedToken {
            kind: PresentedKind::AccessToken,
            sub: "alice".into(),
            client_id: Some("acme-portal".into()),
            aud: vec![client_id.into()],
            scope: Some("openid billing.read".into()),
            exp: NOW + 300,
            act: None,
            client_namespace: None,
        }
    }

    fn own_token(client_id: &str) -> PresentedToken {
        PresentedToken {
            kind: PresentedKind::WorkloadToken,
            sub: client_subject(client_id),
            client_id: None,
            aud: vec!["https://auth.example.com/acme".into()],
            scope: None,
            exp: NOW + 3600,
            act: None,
            client_namespace: None,
        }
    }

    fn exchange(
        c: &crate::ClientConfig,
        subject: &PresentedToken,
        actor: Option<&PresentedToken>,
        scope: Option<&str>,
        targets: &[&str],
    ) -> Result<AccessTokenClaims, OAuthError> {
        let t = tenant();
        let ctx = GrantContext {
            tenant: &t,
            issuer: "https://auth.example.com/acme",
            client: c,
            now: NOW,
        };
        let targets: Vec<String> = targets.iter().map(|s| (*s).to_string()).collect();
        let req = ExchangeRequest {
            subject,
            actor,
            scope,
            targets: &targets,
        };
        token_exchange(&ctx, &req, "j".into())
    }

    /// API A: may name B, and may act for alice (delegation only).
    fn api() -> crate::ClientConfig {
        let mut c = client();
        c.audiences = vec!["https://b.example.com".into()];
        c.may_assert.users = vec!["alice".into()];
        c
    }

    #[test]
    fn a_client_exchanges_its_own_service_account_token_for_an_audience() {
        let c = api();
        let claims = exchange(
            &c,
            &own_token(&c.client_id),
            None,
            None,
            &["https://b.example.com"],
        )
        .unwrap();
        assert_eq!(claims.sub, client_subject(&c.client_id));
        assert_eq!(claims.aud.0, ["https://b.example.com"]);
        // The client's scopes, as client_credentials gives them.
        assert_eq!(claims.scope.as_deref(), Some("billing.read billing.write"));
        assert_eq!(claims.act, None);
        assert_eq!(claims.exp, NOW + tenant().access_token_ttl_secs);
    }

    #[test]
    fn delegation_nests_the_actors_and_never_outlives_the_subject() {
        let c = api();
        let mut subject = alice_for(&c.client_id);
        subject.act = Some(json!({"sub": "client:acme-gateway"}));
        let actor = own_token(&c.client_id);
        let claims = exchange(
            &c,
            &subject,
            Some(&actor),
            Some("billing.read"),
            &["https://b.example.com"],
        )
        .unwrap();
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.client_id, c.client_id);
        let nested =
            json!({"sub": client_subject(&c.client_id), "act": {"sub": "client:acme-gateway"}});
        assert_eq!(claims.act, Some(nested.clone()));
        assert_eq!(claims.exp, NOW + 300, "bounded by the subject token");
        assert_eq!(claims.scope.as_deref(), Some("billing.read"));
        // The same actor again is not nested again; a long chain ends.
        subject.act = Some(nested.clone());
        let again = exchange(&c, &subject, Some(&actor), None, &[]).unwrap();
        assert_eq!(again.act, Some(nested));
        subject.act = Some(
            json!({"sub": "a", "act": {"sub": "b", "act": {"sub": "c", "act": {"sub": "d"}}}}),
        );
        assert_eq!(
            exchange(&c, &subject, Some(&actor), None, &[])
                .unwrap_err()
                .code,
            ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn each_refusal_has_its_rfc_error() {
        let c = api();
        let own = own_token(&c.client_id);
        let alice = alice_for(&c.client_id);
        let code = |r: Result<AccessTokenClaims, OAuthError>| r.unwrap_err().code;
        // Unacceptable by policy: invalid_request (RFC 8693 section 2.2.2).
        // Someone else's token.
        assert_eq!(
            code(exchange(&c, &alice_for("another"), Some(&own), None, &[])),
            ErrorCode::InvalidRequest
        );
        // An actor that is not the requesting client.
        assert_eq!(
            code(exchange(&c, &alice, Some(&own_token("another")), None, &[])),
            ErrorCode::InvalidRequest
        );
        // Impersonation without the tenant's grant.
        assert_eq!(
            code(exchange(&c, &alice, None, None, &[])),
            ErrorCode::InvalidRequest
        );
        // A user the tenant does not let the client act for, even as a delegate.
        let mut bob = alice_for(&c.client_id);
        bob.sub = "bob".into();
        assert_eq!(
            code(exchange(&c, &bob, Some(&own), None, &[])),
            ErrorCode::InvalidRequest
        );
        // Widening the scope, or a scope the client may not hold.
        assert_eq!(
            code(exchange(&c, &alice, Some(&own), Some("billing.write"), &[])),
            ErrorCode::InvalidScope
        );
        assert_eq!(
            code(exchange(
                &c,
                &alice,
                Some(&own),
                Some("openid billing.read profile"),
                &[]
            )),
            ErrorCode::InvalidScope
        );
        // An audience the client may not name.
        assert_eq!(
            code(exchange(
                &c,
                &alice,
                Some(&own),
                None,
                &["https://c.example.com"]
            )),
            ErrorCode::InvalidTarget
        );
        // A public client.
        let mut public = api();
        public.public = true;
        assert_eq!(
            code(exchange(
                &public,
                &own_token(&public.client_id),
                None,
                None,
                &[]
            )),
            ErrorCode::UnauthorizedClient
        );
    }

    /// An access token without a scope holds none: exchanging it (once, or again) never gives
    /// the client's own scopes to someone else's token.
    #[test]
    fn a_token_without_a_scope_is_not_widened() {
        let c = api();
        let own = own_token(&c.client_id);
        let mut alice = alice_for(&c.client_id);
        alice.scope = Some("profile".into());
        let first = exchange(&c, &alice, Some(&own), None, &[]).unwrap();
        assert_eq!(first.scope, None);
        let again = PresentedToken {
            kind: PresentedKind::AccessToken,
            sub: first.sub.clone(),
            client_id: Some(first.client_id.clone()),
            aud: first.aud.0.clone(),
            scope: first.scope.clone(),
            exp: first.exp,
            act: first.act.clone(),
            client_namespace: None,
        };
        assert_eq!(
            exchange(&c, &again, Some(&own), None, &[]).unwrap().scope,
            None
        );
        assert_eq!(
            exchange(&c, &again, Some(&own), Some("billing.read"), &[])
                .unwrap_err()
                .code,
            ErrorCode::InvalidScope
        );
        // Its own access token without a scope, likewise.
        let mut mine = own_token(&c.client_id);
        mine.kind = PresentedKind::AccessToken;
        assert_eq!(exchange(&c, &mine, None, None, &[]).unwrap().scope, None);
    }

    #[test]
    fn impersonation_goes_by_the_tenants_subject_assertions() {
        let mut c = api();
        c.may_assert.impersonation = true;
        let claims = exchange(&c, &alice_for(&c.client_id), None, None, &[]).unwrap();
        assert_eq!((claims.sub.as_str(), claims.act.clone()), ("alice", None));
        assert_eq!(claims.scope.as_deref(), Some("openid billing.read"));
        // A client subject: by namespace and client id.
        let mut other = own_token("acme-batch");
        other.kind = PresentedKind::AccessToken;
        other.aud = vec![c.client_id.clone()];
        other.scope = Some("billing.read".into());
        other.client_namespace = Some("acme".into());
        assert_eq!(
            exchange(&c, &other, None, None, &[]).unwrap_err().code,
            ErrorCode::InvalidRequest
        );
        c.may_assert.clients = vec![ClientRef {
            namespace: "acme".into(),
            client_id: "acme-batch".into(),
        }];
        assert_eq!(
            exchange(&c, &other, None, None, &[]).unwrap().sub,
            "client:acme-batch"
        );
    }
}
