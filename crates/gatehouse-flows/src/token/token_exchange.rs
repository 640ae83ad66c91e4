//! Token exchange (RFC 8693): the presented tokens are verified here (this tenant's active
//! access tokens, or the requesting workload's own ServiceAccount token); what may be issued
//! for them is the core's decision.

use super::Outcome;
use crate::{Error, ServedTenant, Services, assertions, introspection};
use gatehouse_core::OAuthError;
use gatehouse_core::grant::GrantContext;
use gatehouse_core::grant::token_exchange::{
    ACCESS_TOKEN_TYPE, ExchangeRequest, JWT_TYPE, PresentedKind, PresentedToken, token_exchange,
};
use gatehouse_core::subject::{client_subject, subject_client};
use gatehouse_core::token::looks_like_jwt;

pub(super) struct Asked<'a> {
    pub subject_token: &'a str,
    pub subject_token_type: &'a str,
    pub actor: Option<(&'a str, &'a str)>,
    pub requested_token_type: Option<&'a str>,
    pub scope: Option<&'a str>,
    pub targets: &'a [String],
}

pub(super) async fn decide(
    services: &Services,
    ctx: &GrantContext<'_>,
    tenant: &ServedTenant,
    asked: Asked<'_>,
    jti: String,
) -> Result<Outcome, Error> {
    if let Some(t) = asked.requested_token_type
        && t != ACCESS_TOKEN_TYPE
    {
        return Err(OAuthError::invalid_request(format!(
            "requested_token_type {t} is not supported: this server issues {ACCESS_TOKEN_TYPE}"
        ))
        .into());
    }
    let subject = presented(
        services,
        ctx,
        tenant,
        "subject_token",
        asked.subject_token,
        asked.subject_token_type,
    )
    .await?;
    let actor = match asked.actor {
        Some((token, kind)) => {
            Some(presented(services, ctx, tenant, "actor_token", token, kind).await?)
        }
        None => None,
    };
    let request = ExchangeRequest {
        subject: &subject,
        actor: actor.as_ref(),
        scope: asked.scope,
        targets: asked.targets,
    };
    Ok(Outcome::plain(token_exchange(ctx, &request, jti)?))
}

/// A subject or actor token, verified: an active access token of this tenant (JWT or
/// opaque), or the requesting client's own ServiceAccount token. Anything else is
/// `invalid_request` (RFC 8693 section 2.2.2).
async fn presented(
    services: &Services,
    ctx: &GrantContext<'_>,
    tenant: &ServedTenant,
    parameter: &str,
    token: &str,
    kind: &str,
) -> Result<PresentedToken, Error> {
    if kind != ACCESS_TOKEN_TYPE && kind != JWT_TYPE {
        return Err(OAuthError::invalid_request(format!(
            "{parameter}_type {kind} is not supported: use {ACCESS_TOKEN_TYPE} (this tenant's access tokens) or {JWT_TYPE} (a ServiceAccount token)"
        ))
        .into());
    }
    // An opaque access token is no JWT; a ServiceAccount token is no access token of ours.
    let jwt = looks_like_jwt(token);
    if kind == JWT_TYPE && !jwt {
        return Err(OAuthError::invalid_request(format!(
            "the {parameter} is not a JWT ({parameter}_type says {JWT_TYPE})"
        ))
        .into());
    }
    if let Some(claims) = introspection::active_claims(services, tenant, token).await? {
        let client_namespace = subject_client(&claims.sub)
            .and_then(|id| tenant.client(id))
            .map(|c| c.namespace().to_string());
        return Ok(PresentedToken {
            kind: PresentedKind::AccessToken,
            sub: claims.sub,
            client_id: Some(claims.client_id),
            aud: claims.aud.0,
            scope: claims.scope,
            exp: claims.exp,
            act: claims.act,
            client_namespace,
        });
    }
    if assertions::has_workload_identity(ctx.client) && kind == JWT_TYPE {
        match assertions::verify_workload_token(services, tenant, ctx.client, token).await {
            Ok(verified) => {
                return Ok(PresentedToken {
                    kind: PresentedKind::WorkloadToken,
                    sub: client_subject(&ctx.client.client_id),
                    client_id: None,
                    aud: verified.aud,
                    scope: None,
                    exp: verified.ends_at,
                    act: None,
                    client_namespace: None,
                });
            }
            Err(assertions::WorkloadRefusal::Unavailable(e)) => return Err(e),
            Err(assertions::WorkloadRefusal::Refused(why)) => {
                tracing::info!(tenant = %tenant.name(), client = %ctx.client.client_id, %why, "token exchange: {parameter} refused");
            }
        }
    }
    Err(OAuthError::invalid_request(format!(
        "the {parameter} is not an active access token of this tenant{}",
        if assertions::has_workload_identity(ctx.client) {
            " nor (as a jwt) this client's workload token"
        } else {
            ""
        }
    ))
    .into())
}
