//! Using a refresh token (RFC 6749 section 6): a used (or revoked) one revokes its whole family
//! and everything the family issued; a good one is spent and, with rotation on, replaced by a
//! successor in the same family.

use super::Outcome;
use crate::{Error, Services, family};
use gatehouse_core::OAuthError;
use gatehouse_core::grant::GrantContext;
use gatehouse_core::grant::refresh_token::{RefreshTokenRecord, refresh};
use gatehouse_core::token::opaque_token_id;
use gatehouse_store::records::{self, Stored};

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
    let Stored {
        value: record,
        used,
    } = records::get::<RefreshTokenRecord>(store, name, &id)
        .await?
        .ok_or_else(|| OAuthError::invalid_grant("unknown or expired refresh token"))?;
    if record.client_id != ctx.client.client_id {
        // Another client's token: refuse without spending it.
        return Err(
            OAuthError::invalid_grant("the refresh token was issued to another client").into(),
        );
    }
    let rotation = ctx.tenant.refresh_token_rotation;
    let reused = used
        || store.is_family_revoked(name, &record.family).await?
        || (rotation
            && !records::mark_used::<RefreshTokenRecord>(store, name, &id, record.expires_at)
                .await?);
    if reused {
        family::revoke(store, name, &record.family, record.expires_at).await?;
        tracing::warn!(tenant = %name, client = %record.client_id, "refresh token reused; its grant is revoked");
        return Err(OAuthError::invalid_grant(
            "the refresh token was already used; every token of its grant is now revoked",
        )
        .into());
    }
    let (claims, successor) = refresh(ctx, &record, scope, jti)?;
    let family = Some((record.family.clone(), record.expires_at));
    // Without rotation the presented token stays valid and no new one is issued.
    Ok(Outcome {
        claims,
        refresh: rotation.then_some(successor),
        family,
        id_token: None,
    })
}
