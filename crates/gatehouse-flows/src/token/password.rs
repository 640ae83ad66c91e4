//! The password grant (RFC 6749 section 4.3): the user's password checked with brute-force
//! protection, then a token (and, when the client may refresh, a new grant family).

use super::Outcome;
use crate::{Error, ServedTenant, Services, sign_in};
use gatehouse_core::grant::GrantContext;
use gatehouse_core::grant::password::{check_password_grant, password_claims};
use std::net::IpAddr;

pub(super) struct Asked<'a> {
    pub username: &'a str,
    pub password: &'a str,
    pub scope: Option<&'a str>,
    pub resources: &'a [String],
}

pub(super) async fn decide(
    services: &Services,
    ctx: &GrantContext<'_>,
    tenant: &ServedTenant,
    asked: Asked<'_>,
    address: Option<IpAddr>,
    jti: String,
) -> Result<Outcome, Error> {
    check_password_grant(ctx)?;
    let user =
        sign_in::verify_password(services, tenant, asked.username, asked.password, address).await?;
    let claims = password_claims(ctx, &user, asked.scope, asked.resources, jti)?;
    Outcome::with_new_family(ctx, services, claims, ctx.now)
}
