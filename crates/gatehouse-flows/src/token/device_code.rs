//! One poll of a device (RFC 8628 section 3.4): still waiting (`authorization_pending`, or
//! `slow_down` when polled too often), refused, or approved and then usable exactly once.

use super::Outcome;
use crate::{Error, Services, device_authorization};
use gatehouse_core::OAuthError;
use gatehouse_core::grant::GrantContext;
use gatehouse_core::grant::device_code::{self, DeviceRecord, Poll};
use gatehouse_core::token::opaque_token_id;
use gatehouse_store::records::{self, Stored};

pub(super) async fn poll(
    services: &Services,
    ctx: &GrantContext<'_>,
    device_code: &str,
    jti: String,
) -> Result<Outcome, Error> {
    let store = services.store();
    let name = &ctx.tenant.name;
    let id = opaque_token_id(device_code);
    let Stored {
        value: record,
        used,
    } = records::get::<DeviceRecord>(store, name, &id)
        .await?
        .ok_or_else(|| OAuthError::invalid_grant("unknown device code"))?;
    if used {
        return Err(OAuthError::invalid_grant("the device code was already used").into());
    }
    match device_code::poll(ctx, record, jti) {
        Poll::Refuse(e) => Err(e.into()),
        Poll::Wait(e, record) => {
            let keep = record.expires_at + device_authorization::EXPIRED_GRACE_SECS;
            records::put(store, name, &id, &record, keep).await?;
            Err(e.into())
        }
        Poll::Approved(claims, auth_time) => {
            let keep = ctx.now + device_authorization::EXPIRED_GRACE_SECS;
            if !records::mark_used::<DeviceRecord>(store, name, &id, keep).await? {
                return Err(OAuthError::invalid_grant("the device code was already used").into());
            }
            Outcome::with_new_family(ctx, services, claims, auth_time)
        }
    }
}
