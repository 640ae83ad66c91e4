//! The JWT bearer grant (RFC 7523 section 2.1): an assertion signed with one of the client's
//! registered keys, usable once, names the subject the token is for.

use super::Outcome;
use crate::{Error, ServedTenant, Services, assertions};
use gatehouse_core::grant::GrantContext;
use gatehouse_core::grant::jwt_bearer::jwt_bearer_claims;

pub(super) struct Asked<'a> {
    pub assertion: &'a str,
    pub scope: Option<&'a str>,
    pub resources: &'a [String],
}

pub(super) async fn decide(
    services: &Services,
    ctx: &GrantContext<'_>,
    tenant: &ServedTenant,
    asked: Asked<'_>,
    jti: String,
) -> Result<Outcome, Error> {
    let verified = assertions::verify_once(services, tenant, ctx.client, asked.assertion).await?;
    let claims = jwt_bearer_claims(
        ctx,
        &verified,
        |client_id| tenant.client(client_id).map(|c| c.namespace().to_string()),
        asked.scope,
        asked.resources,
        jti,
    )?;
    Ok(Outcome::plain(claims))
}
