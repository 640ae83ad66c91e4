//! Reading a presented refresh token: a signed one carries its record (see
//! [`gatehouse_core::grant::refresh_token::RefreshTokenKey`]); a handle issued before signed
//! tokens has its record in the store, read until those handles have expired.

use crate::{Error, ServedTenant, Services};
use gatehouse_core::grant::refresh_token::{RefreshTokenKey, RefreshTokenRecord};
use gatehouse_core::token::opaque_token_id;
use gatehouse_store::records;

/// The record `token` carries, if this tenant issued it. Says nothing of whether it is spent,
/// revoked or expired: the token endpoint and introspection decide that.
///
/// # Errors
/// The store failing (for a handle from before signed tokens).
pub async fn record_of(
    services: &Services,
    tenant: &ServedTenant,
    token: &str,
) -> Result<Option<RefreshTokenRecord>, Error> {
    if RefreshTokenKey::is_signed_format(token) {
        return Ok(tenant.refresh_tokens.open(token));
    }
    let id = opaque_token_id(token);
    Ok(records::get::<RefreshTokenRecord>(services.store(), tenant.name(), &id).await?)
}
