//! The client credentials grant (RFC 6749 section 4.4): the client itself, no store involved.

use super::Outcome;
use crate::Error;
use gatehouse_core::grant::GrantContext;
use gatehouse_core::grant::client_credentials::{ClientCredentialsRequest, client_credentials};

pub(super) fn decide(
    ctx: &GrantContext<'_>,
    scope: Option<&str>,
    resources: &[String],
    jti: String,
) -> Result<Outcome, Error> {
    let request = ClientCredentialsRequest { scope, resources };
    Ok(Outcome::plain(client_credentials(ctx, &request, jti)?))
}
