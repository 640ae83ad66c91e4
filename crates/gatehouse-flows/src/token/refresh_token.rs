//! Using a refresh token (RFC 6749 section 6): a used (or revoked) one revokes its whole family
//! and everything the family issued; a good one is spent and, with rotation on, replaced by a
//! successor in the same family.

use super::{GrantFamily, Outcome, Spending};
use crate::{Error, ServedTenant, Services, refresh_tokens};
use gatehouse_core::OAuthError;
use gatehouse_core::grant::GrantContext;
use gatehouse_core::grant::refresh_token::refresh;
use gatehouse_core::token::opaque_token_id;
use gatehouse_store::{Joining, RecordKind};

/// What the client sent.
pub(super) struct Presented<'a> {
    pub token: &'a str,
    pub scope: Option<&'a str>,
}

pub(super) async fn rotate(
    services: &Services,
    ctx: &GrantContext<'_>,
    tenant: &ServedTenant,
    presented: Presented<'_>,
    jti: String,
) -> Result<Outcome, Error> {
    let id = opaque_token_id(presented.token);
    let record = refresh_tokens::record_of(services, tenant, presented.token)
        .await?
        .ok_or_else(|| OAuthError::invalid_grant("unknown or expired refresh token"))?;
    if record.client_id != ctx.client.client_id {
        // Another client's token: refuse without spending it.
        return Err(
            OAuthError::invalid_grant("the refresh token was issued to another client").into(),
        );
    }
    // Checked before anything is spent: a request that fails keeps its token usable.
    let (claims, successor) = refresh(ctx, &record, presented.scope, jti)?;
    let rotation = ctx.tenant.refresh_token_rotation;
    // Without rotation the presented token stays valid and no new one is issued; with it,
    // issuing spends the token (a token spent already is a reuse: see `spent_again`).
    Ok(Outcome {
        claims,
        spend: rotation.then_some(Spending {
            kind: RecordKind::RefreshToken,
            id,
            until: record.expires_at,
            family: Some(record.family.clone()),
        }),
        refresh: rotation.then_some(successor),
        family: Some(GrantFamily {
            id: record.family.clone(),
            until: record.expires_at,
            joining: Joining::Existing,
        }),
        id_token: None,
        signed_in: Some(record.auth_time),
    })
}
