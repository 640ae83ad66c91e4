//! One poll of a device (RFC 8628 section 3.4): still waiting (`authorization_pending`, or
//! `slow_down` when polled too often), refused, or approved and then usable exactly once.

use super::{Outcome, Spending};
use crate::{Error, Services, device_authorization};
use gatehouse_core::OAuthError;
use gatehouse_core::grant::GrantContext;
use gatehouse_core::grant::device_code::{self, DeviceRecord, Poll};
use gatehouse_core::token::opaque_token_id;
use gatehouse_store::RecordKind;
use gatehouse_store::records;

pub(super) async fn poll(
    services: &Services,
    ctx: &GrantContext<'_>,
    device_code: &str,
    jti: String,
) -> Result<Outcome, Error> {
    let store = services.store();
    let name = &ctx.tenant.name;
    let id = opaque_token_id(device_code);
    let record = records::get::<DeviceRecord>(store, name, &id)
        .await?
        .ok_or_else(|| OAuthError::invalid_grant("unknown device code"))?;
    match device_code::poll(ctx, record, jti) {
        Poll::Refuse(e) => Err(e.into()),
        Poll::Wait(e, record) => {
            let keep = record.expires_at + device_authorization::EXPIRED_GRACE_SECS;
            records::put(store, name, &id, &record, keep).await?;
            Err(e.into())
        }
        Poll::Approved(claims, auth_time) => {
            let mut outcome = Outcome::with_new_family(ctx, services, claims, auth_time)?;
            // Usable once: issuing spends it.
            outcome.spend = Some(Spending {
                kind: RecordKind::DeviceCode,
                id,
                until: ctx.now + device_authorization::EXPIRED_GRACE_SECS,
                family: None,
            });
            Ok(outcome)
        }
    }
}
