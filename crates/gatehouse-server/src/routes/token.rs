//! The token endpoint (RFC 6749 section 3.2): one dispatch on `grant_type`, then the grant's
//! own module decides the claims; minting, refresh tokens, ID tokens and the grant families
//! that make replay revocation possible are shared here.

use super::authenticate::ClientRequest;
use crate::AppState;
use crate::error::{HttpError, no_store};
use crate::issue::{self, no_randomness};
use crate::records;
use crate::sign_in::verify_password;
use crate::tenant::{IMPLEMENTED_GRANTS, TenantRuntime};
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use gatehouse_core::grant::authorization_code::{CodeRecord, exchange};
use gatehouse_core::grant::client_credentials::{ClientCredentialsRequest, client_credentials};
use gatehouse_core::grant::device_code::{self, DeviceRecord, Poll};
use gatehouse_core::grant::jwt_bearer::jwt_bearer_claims;
use gatehouse_core::grant::password::{check_password_grant, password_claims};
use gatehouse_core::grant::refresh_token::{
    RefreshTokenRecord, issues_refresh_token, new_family, refresh,
};
use gatehouse_core::grant::{GrantContext, TokenResponse, check_grant_allowed};
use gatehouse_core::id_token::{IdTokenClaims, at_hash, user_claims};
use gatehouse_core::token::{AccessTokenClaims, opaque_token_id, random_id, random_token};
use gatehouse_core::{GrantType, OAuthError};
use gatehouse_store::RecordKind;

/// What a grant decided, before anything is minted.
struct Outcome {
    claims: AccessTokenClaims,
    /// A refresh token to issue with the access token.
    refresh: Option<RefreshTokenRecord>,
    /// The grant family the access token joins, and until when that matters.
    family: Option<(String, u64)>,
    /// For OpenID Connect code flows: what the ID token needs besides the access token.
    id_token: Option<IdTokenClaims>,
}

impl Outcome {
    fn plain(claims: AccessTokenClaims) -> Self {
        Outcome {
            claims,
            refresh: None,
            family: None,
            id_token: None,
        }
    }
}

pub async fn token(
    State(state): State<AppState>,
    request: ClientRequest,
) -> Result<Response, HttpError> {
    let ClientRequest {
        tenant,
        client,
        form,
        address,
    } = request;
    let grant_name = form.require("grant_type")?;
    let grant = GrantType::from_token_request(grant_name).ok_or_else(|| {
        OAuthError::unsupported_grant_type(format!("unknown grant type {grant_name}"))
    })?;
    check_grant_allowed(&tenant.config, &client, grant)?;
    if !IMPLEMENTED_GRANTS.contains(&grant) {
        return Err(OAuthError::unsupported_grant_type(format!(
            "grant type {grant} is not available on this server yet"
        ))
        .into());
    }
    let ctx = GrantContext {
        tenant: &tenant.config,
        issuer: &tenant.issuer,
        client: &client,
        now: state.now(),
    };
    let jti = random_id().map_err(no_randomness)?;
    let resources = form.all("resource");
    let outcome = match grant {
        GrantType::ClientCredentials => {
            let request = ClientCredentialsRequest {
                scope: form.get("scope"),
                resources: &resources,
            };
            Outcome::plain(client_credentials(&ctx, &request, jti)?)
        }
        GrantType::Password => {
            check_password_grant(&ctx)?;
            let username = form.require("username")?;
            let password = form.require("password")?;
            let user = verify_password(&state, &tenant, username, password, address).await?;
            let claims = password_claims(&ctx, &user, form.get("scope"), &resources, jti)?;
            let refresh = issues_refresh_token(&ctx, claims.scope.as_deref())
                .then(|| random_id().map(|family| new_family(&ctx, &claims, family)))
                .transpose()
                .map_err(no_randomness)?;
            let family = refresh.as_ref().map(|r| (r.family.clone(), r.expires_at));
            Outcome {
                claims,
                refresh,
                family,
                id_token: None,
            }
        }
        GrantType::RefreshToken => {
            let presented = form.require("refresh_token")?;
            rotate_refresh_token(&state, &tenant, &ctx, presented, form.get("scope"), jti).await?
        }
        GrantType::DeviceCode => {
            let device_code = form.require("device_code")?;
            poll_device(&state, &tenant, &ctx, device_code, jti).await?
        }
        GrantType::JwtBearer => {
            let assertion = form.require("assertion")?;
            let verified =
                super::authenticate::verify_assertion(&state, &tenant, &client, assertion).await?;
            let request_scope = form.get("scope");
            Outcome::plain(jwt_bearer_claims(
                &ctx,
                &verified,
                request_scope,
                &resources,
                jti,
            )?)
        }
        GrantType::AuthorizationCode => {
            let code = form.require("code")?;
            redeem_code(
                &state,
                &tenant,
                &ctx,
                code,
                form.get("redirect_uri"),
                form.get("code_verifier"),
                jti,
            )
            .await?
        }
        other => {
            return Err(OAuthError::unsupported_grant_type(format!(
                "grant type {other} is not available on this server yet"
            ))
            .into());
        }
    };

    let name = &tenant.config.name;
    let access_token = issue::access_token(&state, &tenant, &outcome.claims).await?;
    let mut body = TokenResponse::bearer(access_token.clone(), &outcome.claims);
    if let Some((family, until)) = &outcome.family {
        state
            .store
            .add_family_access_token(
                name,
                family,
                &outcome.claims.jti,
                outcome.claims.exp,
                *until,
            )
            .await?;
    }
    if let Some(record) = outcome.refresh {
        let token = random_token().map_err(no_randomness)?;
        records::put(
            &*state.store,
            name,
            RecordKind::RefreshToken,
            &opaque_token_id(&token),
            &record,
            record.expires_at,
        )
        .await?;
        body.refresh_token = Some(token);
    }
    if let Some(mut id) = outcome.id_token {
        id.at_hash = Some(at_hash(&access_token, tenant.config.signing_algorithm));
        body.id_token = Some(issue::id_token(&tenant, &id)?);
    }
    state.metrics.token_issued(name, grant);
    let mut response = Json(body).into_response();
    no_store(&mut response);
    Ok(response)
}

/// Redeems an authorization code once. A code presented again revokes every token it issued
/// (RFC 6749 section 4.1.2).
async fn redeem_code(
    state: &AppState,
    tenant: &TenantRuntime,
    ctx: &GrantContext<'_>,
    code: &str,
    redirect_uri: Option<&str>,
    verifier: Option<&str>,
    jti: String,
) -> Result<Outcome, HttpError> {
    let name = &tenant.config.name;
    let id = opaque_token_id(code);
    let (record, used): (CodeRecord, bool) =
        records::get(&*state.store, name, RecordKind::AuthorizationCode, &id)
            .await?
            .ok_or_else(|| OAuthError::invalid_grant("unknown or expired authorization code"))?;
    if record.client_id != ctx.client.client_id {
        return Err(OAuthError::invalid_grant("the code was issued to another client").into());
    }
    let until = ctx.now
        + tenant
            .config
            .access_token_ttl_secs
            .max(tenant.config.refresh_token_ttl_secs);
    if used
        || !state
            .store
            .mark_used(name, RecordKind::AuthorizationCode, &id, until)
            .await?
    {
        revoke_family(state, name, &record.family, until).await?;
        tracing::warn!(tenant = %name, client = %record.client_id, "authorization code replayed; its tokens are revoked");
        return Err(OAuthError::invalid_grant(
            "the authorization code was already used; the tokens it issued are revoked",
        )
        .into());
    }
    let claims = exchange(ctx, &record, redirect_uri, verifier, jti)?;
    let scopes: Vec<&str> = claims
        .scope
        .as_deref()
        .map(|s| s.split(' ').collect())
        .unwrap_or_default();
    let refresh = issues_refresh_token(ctx, claims.scope.as_deref()).then(|| RefreshTokenRecord {
        auth_time: record.auth_time,
        ..new_family(ctx, &claims, record.family.clone())
    });
    let id_token = scopes.contains(&"openid").then(|| IdTokenClaims {
        iss: tenant.issuer.clone(),
        sub: claims.sub.clone(),
        aud: claims.client_id.clone(),
        azp: claims.client_id.clone(),
        exp: claims.exp,
        iat: ctx.now,
        auth_time: record.auth_time,
        nonce: record.nonce.clone(),
        at_hash: None,
        sid: Some(record.sid.clone()),
        user_claims: tenant
            .config
            .user(&claims.sub)
            .map(|u| user_claims(u, &scopes))
            .unwrap_or_default(),
    });
    Ok(Outcome {
        claims,
        refresh,
        family: Some((record.family, until)),
        id_token,
    })
}

/// One poll of a device (RFC 8628 section 3.4): still waiting (`authorization_pending`, or
/// `slow_down` when polled too often), refused, or approved and then usable exactly once.
async fn poll_device(
    state: &AppState,
    tenant: &TenantRuntime,
    ctx: &GrantContext<'_>,
    device_code: &str,
    jti: String,
) -> Result<Outcome, HttpError> {
    let name = &tenant.config.name;
    let id = opaque_token_id(device_code);
    let (record, used): (DeviceRecord, bool) =
        records::get(&*state.store, name, RecordKind::DeviceCode, &id)
            .await?
            .ok_or_else(|| OAuthError::invalid_grant("unknown device code"))?;
    if used {
        return Err(OAuthError::invalid_grant("the device code was already used").into());
    }
    match device_code::poll(ctx, record, jti) {
        Poll::Refuse(e) => Err(e.into()),
        Poll::Wait(e, record) => {
            let keep = record.expires_at + super::device::EXPIRED_GRACE_SECS;
            records::put(
                &*state.store,
                name,
                RecordKind::DeviceCode,
                &id,
                &record,
                keep,
            )
            .await?;
            Err(e.into())
        }
        Poll::Approved(claims, auth_time) => {
            let keep = ctx.now + super::device::EXPIRED_GRACE_SECS;
            if !state
                .store
                .mark_used(name, RecordKind::DeviceCode, &id, keep)
                .await?
            {
                return Err(OAuthError::invalid_grant("the device code was already used").into());
            }
            let refresh = issues_refresh_token(ctx, claims.scope.as_deref())
                .then(|| {
                    random_id().map(|family| RefreshTokenRecord {
                        auth_time,
                        ..new_family(ctx, &claims, family)
                    })
                })
                .transpose()
                .map_err(no_randomness)?;
            let family = refresh.as_ref().map(|r| (r.family.clone(), r.expires_at));
            Ok(Outcome {
                claims,
                refresh,
                family,
                id_token: None,
            })
        }
    }
}

/// Uses a refresh token: a used (or revoked) one revokes its whole family and everything the
/// family issued; a good one is spent and, with rotation on, replaced by a successor.
async fn rotate_refresh_token(
    state: &AppState,
    tenant: &TenantRuntime,
    ctx: &GrantContext<'_>,
    presented: &str,
    scope: Option<&str>,
    jti: String,
) -> Result<Outcome, HttpError> {
    let name = &tenant.config.name;
    let id = opaque_token_id(presented);
    let (record, used): (RefreshTokenRecord, bool) =
        records::get(&*state.store, name, RecordKind::RefreshToken, &id)
            .await?
            .ok_or_else(|| OAuthError::invalid_grant("unknown or expired refresh token"))?;
    if record.client_id != ctx.client.client_id {
        // Another client's token: refuse without spending it.
        return Err(
            OAuthError::invalid_grant("the refresh token was issued to another client").into(),
        );
    }
    let rotation = tenant.config.refresh_token_rotation;
    let reused = used
        || state.store.is_family_revoked(name, &record.family).await?
        || (rotation
            && !state
                .store
                .mark_used(name, RecordKind::RefreshToken, &id, record.expires_at)
                .await?);
    if reused {
        revoke_family(state, name, &record.family, record.expires_at).await?;
        tracing::warn!(tenant = %name, client = %record.client_id, "refresh token reused; its grant is revoked");
        return Err(OAuthError::invalid_grant(
            "the refresh token was already used; every token of its grant is now revoked",
        )
        .into());
    }
    let (claims, successor) = refresh(ctx, &record, scope, jti)?;
    let family = Some((record.family.clone(), record.expires_at));
    // Without rotation the presented token stays valid and no new one is issued.
    Ok(Outcome {
        claims,
        refresh: rotation.then_some(successor),
        family,
        id_token: None,
    })
}

/// Revokes a grant family and the access tokens it issued.
pub(super) async fn revoke_family(
    state: &AppState,
    tenant: &str,
    family: &str,
    until: u64,
) -> Result<(), HttpError> {
    for (jti, exp) in state.store.revoke_family(tenant, family, until).await? {
        state.store.revoke_jti(tenant, &jti, exp).await?;
    }
    Ok(())
}
