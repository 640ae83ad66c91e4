//! Using a refresh token (RFC 6749 section 6): a used (or revoked) one revokes its whole family
//! and everything the family issued; a good one is spent and, with rotation on, replaced by a
//! successor in the same family.

use super::{Outcome, Spending};
use crate::{Error, Services};
use gatehouse_core::OAuthError;
use gatehouse_core::grant::GrantContext;
use gatehouse_core::grant::refresh_token::{RefreshTokenRecord, refresh};
use gatehouse_core::token::opaque_token_id;
use gatehouse_store::RecordKind;
use gatehouse_store::records;

pub(super) async fn rotate(
    services: &Services,
    ctx: &GrantContext<'_>,
    presented: &str,
    scope: Option<&str>,
    jti: String,
) -> Result<Outcome, Error> {
    let store = services.store();
    let name = &ctx.tenant.name;
    let id = opaque_token_id(presented);
    let record = records::get::<RefreshTokenRecord>(store, name, &id)
        .await?
        .ok_or_else(|| OAuthError::invalid_grant("unknown or expired refresh token"))?;
    if record.client_id != ctx.client.client_id {
        // Another client's token: refuse without spending it.
        return Err(
            OAuthError::invalid_grant("the refresh token was issued to another client").into(),
        );
    }
    // Checked before anything is spent: a request that fails keeps its token usable.
    let (claims, successor) = refresh(ctx, &record, scope, jti)?;
    let rotation = ctx.tenant.refresh_token_rotation;
    // Without rotation the presented token stays valid and no new one is issued; with it,
    // issuing spends the token (a token spent already is a reuse: see `spent_again`).
    Ok(Outcome {
        claims,
        spend: rotation.then_some(Spending {
            kind: RecordKind::RefreshToken,
            id,
            until: record.expires_at,
        }),
        refresh: rotation.then_some(successor),
        family: Some((record.family.clone(), record.expires_at)),
        id_token: None,
        signed_in: Some(record.auth_time),
    })
}
