//! Redeeming an authorization code (RFC 6749 section 4.1.3) once. A code presented again
//! revokes every token it issued (section 4.1.2): the code's grant family.

use super::{GrantFamily, Outcome, Spending};
use crate::{Error, ServedTenant, Services, codes, family};
use gatehouse_core::OAuthError;
use gatehouse_core::grant::GrantContext;
use gatehouse_core::grant::authorization_code::exchange;
use gatehouse_core::grant::refresh_token::{RefreshTokenRecord, issues_refresh_token, new_family};
use gatehouse_core::id_token::{IdTokenClaims, user_claims};
use gatehouse_core::scope::issued_scopes;
use gatehouse_core::token::opaque_token_id;
use gatehouse_store::{Issue, Issued, Joining, RecordKind, Spend, Store, StoreError};

pub(super) struct Presented<'a> {
    pub code: &'a str,
    pub redirect_uri: Option<&'a str>,
    pub code_verifier: Option<&'a str>,
}

/// How long a code's family must be remembered: as long as anything it issued may live.
pub fn family_lifetime(ctx: &GrantContext<'_>) -> u64 {
    ctx.tenant
        .access_token_ttl_secs
        .max(ctx.tenant.refresh_token_ttl_secs)
}

/// Spends a code whose exchange was refused: true if it was not spent before. Its mark goes
/// where issuing would have put it (with the family a sealed code carries), so that the code
/// presented once more, with or without the mistake, is the replay it is.
async fn spend_refused(
    store: &dyn Store,
    tenant: &str,
    id: &str,
    until: u64,
    family: Option<&str>,
) -> Result<bool, StoreError> {
    let Some(family) = family else {
        return store
            .mark_used(tenant, RecordKind::AuthorizationCode, id, until)
            .await;
    };
    let spend = Spend {
        kind: RecordKind::AuthorizationCode,
        id,
        until,
        attempt: Spend::REFUSED,
        family: Some(family),
    };
    let issue = Issue {
        spend: Some(spend),
        ..Issue::default()
    };
    Ok(store.issue(tenant, &issue).await? == Issued::Done)
}

pub(super) async fn redeem(
    services: &Services,
    ctx: &GrantContext<'_>,
    tenant: &ServedTenant,
    presented: Presented<'_>,
    jti: String,
) -> Result<Outcome, Error> {
    let store = services.store();
    let name = &ctx.tenant.name;
    let id = opaque_token_id(presented.code);
    let codes::Presented {
        record,
        family_started,
    } = codes::record_of(services, tenant, presented.code)
        .await?
        .ok_or_else(|| OAuthError::invalid_grant("unknown or expired authorization code"))?;
    if record.client_id != ctx.client.client_id {
        return Err(OAuthError::invalid_grant("the code was issued to another client").into());
    }
    let until = ctx.now + family_lifetime(ctx);
    let claims = match exchange(
        ctx,
        &record,
        presented.redirect_uri,
        presented.code_verifier,
        jti,
    ) {
        Ok(claims) => claims,
        Err(refused) => {
            // A code works once, even for a request that fails: spend it, and treat a code
            // already spent as the replay it is.
            if spend_refused(
                store,
                name,
                &id,
                until,
                family_started.then_some(&record.family),
            )
            .await?
            {
                return Err(refused.into());
            }
            family::revoke(store, name, &record.family, until).await?;
            tracing::warn!(tenant = %name, client = %record.client_id, "authorization code replayed; its tokens are revoked");
            return Err(OAuthError::invalid_grant(
                "the authorization code was already used; the tokens it issued are revoked",
            )
            .into());
        }
    };
    let scopes = issued_scopes(claims.scope.as_deref());
    let refresh = issues_refresh_token(ctx, claims.scope.as_deref()).then(|| RefreshTokenRecord {
        auth_time: record.auth_time,
        ..new_family(ctx, &claims, record.family.clone())
    });
    let id_token = scopes.contains(&"openid").then(|| IdTokenClaims {
        iss: ctx.issuer.to_string(),
        sub: claims.sub.clone(),
        aud: claims.client_id.clone(),
        azp: claims.client_id.clone(),
        exp: claims.exp,
        iat: ctx.now,
        auth_time: record.auth_time,
        nonce: record.nonce.clone(),
        at_hash: None,
        sid: Some(record.sid.clone()),
        user_claims: ctx
            .tenant
            .user(&claims.sub)
            .map(|u| user_claims(u, &scopes))
            .unwrap_or_default(),
    });
    Ok(Outcome {
        claims,
        spend: Some(Spending {
            kind: RecordKind::AuthorizationCode,
            id,
            until,
            family: family_started.then(|| record.family.clone()),
        }),
        refresh,
        // A sealed code's family was started with it: one the store no longer knows (lost
        // with its data) refuses the code, so a code spent before that is not spent anew.
        family: Some(GrantFamily {
            id: record.family,
            until,
            joining: if family_started {
                Joining::Started
            } else {
                Joining::Starts
            },
        }),
        id_token,
        signed_in: Some(record.auth_time),
    })
}
