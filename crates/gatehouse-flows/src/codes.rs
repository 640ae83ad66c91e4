//! Authorization codes: issued sealed (see [`gatehouse_core::grant::authorization_code::CodeKey`])
//! with their grant family started in the store, so redeeming one reads nothing and writes
//! everything in one step; a handle issued before sealed codes has its record in the store,
//! read until those handles have expired.

use crate::{Error, ServedTenant, Services};
use gatehouse_core::grant::authorization_code::{CodeKey, CodeRecord};
use gatehouse_core::token::opaque_token_id;
use gatehouse_store::{RecordKind, StoreError, records};

/// A presented code's record, and whether its family was started with it (a sealed code) or
/// starts when it is redeemed (a stored handle from before sealed codes).
pub struct Presented {
    pub record: CodeRecord,
    pub family_started: bool,
}

/// A fresh code for `record`, its family started in the store for as long as the code is
/// valid (redeeming it keeps the family as long as its tokens may live; an unredeemed code
/// costs the store nothing after that).
///
/// # Errors
/// The store failing (nothing is issued), or no randomness.
pub async fn issue(
    services: &Services,
    tenant: &ServedTenant,
    record: &CodeRecord,
) -> Result<String, Error> {
    let code = tenant
        .codes
        .seal(services.random.bytes()?, record)
        .map_err(|e| StoreError::Encode {
            kind: RecordKind::AuthorizationCode,
            reason: e.to_string(),
        })?;
    services
        .store()
        .start_family(tenant.name(), &record.family, record.expires_at)
        .await?;
    Ok(code)
}

/// The record `code` carries, if this tenant issued it. Says nothing of whether it is spent,
/// expired or its family revoked: redeeming decides that.
///
/// # Errors
/// The store failing (for a handle from before sealed codes).
pub async fn record_of(
    services: &Services,
    tenant: &ServedTenant,
    code: &str,
) -> Result<Option<Presented>, Error> {
    if CodeKey::is_sealed_format(code) {
        return Ok(tenant.codes.open(code).map(|record| Presented {
            record,
            family_started: true,
        }));
    }
    let stored =
        records::get::<CodeRecord>(services.store(), tenant.name(), &opaque_token_id(code)).await?;
    Ok(stored.map(|record| Presented {
        record,
        family_started: false,
    }))
}
