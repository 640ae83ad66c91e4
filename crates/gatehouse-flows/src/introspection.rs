//! Which access tokens are live (introspection, RFC 7662; also what revocation and userinfo
//! ask): a JWT of this tenant that verifies and is not revoked, or an opaque token the store
//! still holds.

use crate::{Error, ServedTenant, Services, refresh_tokens};
use gatehouse_core::grant::refresh_token::RefreshTokenRecord;
use gatehouse_core::subject::is_user_subject;
use gatehouse_core::token::{
    AccessTokenClaims, Audience, looks_like_jwt, opaque_token_id, token_digest, verify_access_token,
};
use gatehouse_core::{ClientAuthMethod, ClientConfig, OAuthError};
use gatehouse_store::RecordKind;
use serde::Serialize;
use std::sync::Arc;

/// The live claims of `token` at this tenant, or `None` if it is not an active access token
/// here (unknown, expired, revoked, another tenant's, or not an access token at all).
///
/// # Errors
/// The store failing.
pub async fn active_claims(
    services: &Services,
    tenant: &ServedTenant,
    token: &str,
) -> Result<Option<AccessTokenClaims>, Error> {
    let now = services.now();
    let store = services.store();
    if looks_like_jwt(token) {
        let digest = token_digest(token);
        let claims = if let Some(claims) = tenant.verified_tokens.get(&digest, now) {
            claims
        } else {
            match verify_access_token(token, &tenant.issuer, &tenant.verification_keys, now) {
                Ok(claims) => {
                    let claims = Arc::new(claims);
                    tenant.verified_tokens.insert(digest, claims.clone());
                    claims
                }
                Err(reason) => {
                    tracing::debug!(tenant = %tenant.name(), %reason, "inactive JWT");
                    return Ok(None);
                }
            }
        };
        if store
            .is_token_revoked(tenant.name(), &claims.jti, claims.fam.as_deref())
            .await?
            || !user_still_there(tenant, &claims)
            || signed_out_since(services, tenant, &claims).await?
        {
            return Ok(None);
        }
        Ok(Some(Arc::unwrap_or_clone(claims)))
    } else {
        let claims = store
            .get_opaque_token(tenant.name(), &opaque_token_id(token))
            .await?;
        match claims.filter(|c| c.exp > now && c.iss == tenant.issuer) {
            // Opaque tokens of a revoked refresh-token family are revoked with it.
            Some(c)
                if user_still_there(tenant, &c)
                    && !store
                        .is_token_revoked(tenant.name(), &c.jti, c.fam.as_deref())
                        .await?
                    && !signed_out_since(services, tenant, &c).await? =>
            {
                Ok(Some(c))
            }
            _ => Ok(None),
        }
    }
}

/// Whether the user a token is about was signed out everywhere after it was issued.
async fn signed_out_since(
    services: &Services,
    tenant: &ServedTenant,
    claims: &AccessTokenClaims,
) -> Result<bool, Error> {
    if !is_user_subject(&claims.sub) {
        return Ok(false);
    }
    Ok(services
        .store()
        .signed_out_at(tenant.name(), &claims.sub)
        .await?
        .is_some_and(|at| claims.iat <= at))
}

/// Whether the person a token is about is still a user of the tenant (a client's own token is
/// about no person): a user removed from the users Secret has no live tokens.
fn user_still_there(tenant: &ServedTenant, claims: &AccessTokenClaims) -> bool {
    !is_user_subject(&claims.sub) || tenant.config.user(&claims.sub).is_some()
}

/// An introspection response (RFC 7662 section 2.2).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Introspection {
    Active(ActiveToken),
    Refresh(ActiveRefreshToken),
    Inactive { active: bool },
}

#[derive(Debug, Serialize)]
pub struct ActiveToken {
    active: bool,
    token_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    client_id: String,
    sub: String,
    aud: Audience,
    iss: String,
    exp: u64,
    iat: u64,
    nbf: u64,
    jti: String,
    /// Who acts for the subject, for a token issued by delegation (RFC 8693 section 4.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    act: Option<serde_json::Value>,
}

/// A live refresh token, shown only to the client it was issued to. `token_use` says what it
/// is (RFC 7662 leaves `token_type` to access tokens).
#[derive(Debug, Serialize)]
pub struct ActiveRefreshToken {
    active: bool,
    token_use: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    client_id: String,
    sub: String,
    aud: Audience,
    iss: String,
    exp: u64,
    auth_time: u64,
}

/// What introspection says about `token` to `caller`. Only a confidential client may ask
/// (DESIGN.md, "The tenant trust boundary"): a public client proves nothing but a client id
/// anyone can read, so letting it introspect would let anyone test any token.
///
/// # Errors
/// `invalid_client` for a public client, or the store failing.
pub async fn introspect(
    services: &Services,
    tenant: &ServedTenant,
    caller: &ClientConfig,
    token: &str,
) -> Result<Introspection, Error> {
    if !may_introspect(caller) {
        return Err(OAuthError::invalid_client(
            "introspection needs a confidential client (client_secret_basic, client_secret_post or private_key_jwt)",
        )
        .into());
    }
    if let Some(c) = active_claims(services, tenant, token).await? {
        return Ok(Introspection::Active(ActiveToken {
            active: true,
            token_type: "Bearer",
            scope: c.scope,
            client_id: c.client_id,
            sub: c.sub,
            aud: c.aud,
            iss: c.iss,
            exp: c.exp,
            iat: c.iat,
            nbf: c.nbf,
            jti: c.jti,
            act: c.act,
        }));
    }
    if !looks_like_jwt(token)
        && let Some(record) = live_refresh_token(services, tenant, token).await?
        && record.client_id == caller.client_id
    {
        return Ok(Introspection::Refresh(ActiveRefreshToken {
            active: true,
            token_use: "refresh_token",
            scope: record.scope,
            client_id: record.client_id,
            sub: record.sub,
            aud: record.aud,
            iss: tenant.issuer.clone(),
            exp: record.expires_at,
            auth_time: record.auth_time,
        }));
    }
    Ok(Introspection::Inactive { active: false })
}

/// Whether `client` authenticates with something only it holds.
#[must_use]
pub fn may_introspect(client: &ClientConfig) -> bool {
    !client.public && client.token_endpoint_auth_method != ClientAuthMethod::None
}

/// The record of `token` if the token endpoint would accept it as a refresh token now: its
/// client registration still the same, not expired, not spent, its grant not revoked, its
/// user still there.
async fn live_refresh_token(
    services: &Services,
    tenant: &ServedTenant,
    token: &str,
) -> Result<Option<RefreshTokenRecord>, Error> {
    let store = services.store();
    let name = tenant.name();
    let id = opaque_token_id(token);
    let Some(record) = refresh_tokens::record_of(services, tenant, token).await? else {
        return Ok(None);
    };
    let registered = tenant
        .client(&record.client_id)
        .is_some_and(|c| c.incarnation == record.client_incarnation);
    let user_there = !is_user_subject(&record.sub) || tenant.config.user(&record.sub).is_some();
    if !registered || !user_there || record.expires_at <= services.now() {
        return Ok(None);
    }
    if tenant.config.refresh_token_rotation
        && store
            .spent_by(name, RecordKind::RefreshToken, &id, Some(&record.family))
            .await?
            .is_some()
    {
        return Ok(None);
    }
    if !store.is_family_live(name, &record.family).await? {
        return Ok(None);
    }
    if is_user_subject(&record.sub)
        && store
            .signed_out_at(name, &record.sub)
            .await?
            .is_some_and(|at| record.auth_time <= at)
    {
        return Ok(None);
    }
    Ok(Some(record))
}
