//! The device authorization endpoint (RFC 8628 section 3.1): a device code for the device to
//! poll with and a short user code for a person to type on another device.

use crate::{Error, ServedTenant, Services};
use gatehouse_core::grant::GrantContext;
use gatehouse_core::grant::device_code::{self, normalize_user_code};
use gatehouse_core::token::opaque_token_id;
use gatehouse_core::{ClientConfig, endpoints};
use gatehouse_store::RecordKind;
use gatehouse_store::records::{self, Record};
use serde::{Deserialize, Serialize};

/// How long a device record is kept after it expires, so a late poll learns `expired_token`.
pub const EXPIRED_GRACE_SECS: u64 = 300;

/// A user code's record: the digest of the device code it confirms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserCode(pub String);

impl Record for UserCode {
    const KIND: RecordKind = RecordKind::UserCode;
}

/// The device authorization response (RFC 8628 section 3.2).
#[derive(Debug, Serialize)]
pub struct DeviceAuthorization {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: String,
    pub expires_in: u64,
    pub interval: u64,
}

/// Starts a device authorization for an authenticated client.
///
/// # Errors
/// The grant or scope refused, the store failing, no randomness.
pub async fn start(
    services: &Services,
    tenant: &ServedTenant,
    client: &ClientConfig,
    scope: Option<&str>,
) -> Result<DeviceAuthorization, Error> {
    let ctx = GrantContext {
        tenant: &tenant.config,
        issuer: &tenant.issuer,
        client,
        now: services.now(),
    };
    let user_code = device_code::new_user_code(&*services.random)?;
    let record = device_code::start(&ctx, scope, user_code.clone())?;
    let device_code = services.random.token()?;
    let device_id = opaque_token_id(&device_code);
    let store = services.store();
    let name = tenant.name();
    records::put(
        store,
        name,
        &device_id,
        &record,
        record.expires_at + EXPIRED_GRACE_SECS,
    )
    .await?;
    records::put(
        store,
        name,
        &normalize_user_code(&user_code),
        &UserCode(device_id),
        record.expires_at,
    )
    .await?;
    let verification_uri = tenant.endpoint(endpoints::DEVICE);
    Ok(DeviceAuthorization {
        verification_uri_complete: format!("{verification_uri}?user_code={user_code}"),
        device_code,
        user_code,
        verification_uri,
        expires_in: device_code::DEVICE_CODE_TTL_SECS,
        interval: record.interval,
    })
}
