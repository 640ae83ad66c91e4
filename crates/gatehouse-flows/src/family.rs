//! Grant families: every access and refresh token descended from one authorization (a code, a
//! password sign-in, a device approval) shares a family, so that a replayed code or a reused
//! refresh token revokes everything the grant issued (RFC 6749 section 4.1.2, OAuth 2.0
//! Security BCP section 4.14).

use crate::Error;
use gatehouse_store::Store;

/// Revokes a family until `until`, and every access token it issued, in one step.
///
/// # Errors
/// The store failing.
pub async fn revoke(
    store: &dyn Store,
    tenant: &str,
    family: &str,
    until: u64,
) -> Result<(), Error> {
    store.revoke_family(tenant, family, until).await?;
    Ok(())
}
