//! The token endpoint (RFC 6749 section 3.2): one dispatch on `grant_type`, then the grant's
//! own module decides the claims; minting and refresh-token bookkeeping are shared here.

use super::authenticate::ClientRequest;
use crate::AppState;
use crate::error::{HttpError, no_store};
use crate::records;
use crate::sign_in::verify_password;
use crate::tenant::{IMPLEMENTED_GRANTS, TenantRuntime};
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use gatehouse_core::grant::client_credentials::{ClientCredentialsRequest, client_credentials};
use gatehouse_core::grant::password::{check_password_grant, password_claims};
use gatehouse_core::grant::refresh_token::{
    RefreshTokenRecord, issues_refresh_token, new_family, refresh,
};
use gatehouse_core::grant::{GrantContext, TokenResponse, check_grant_allowed};
use gatehouse_core::token::{
    ACCESS_TOKEN_TYP, AccessTokenClaims, encode_jwt, opaque_token_id, random_id, random_token,
};
use gatehouse_core::{GrantType, OAuthError, TokenFormat};
use gatehouse_store::RecordKind;

fn no_randomness<T>(_: T) -> OAuthError {
    OAuthError::server_error("no randomness available")
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
    // The refresh-token record to issue with the access token, if any.
    let (claims, refresh_record) = match grant {
        GrantType::ClientCredentials => {
            let request = ClientCredentialsRequest {
                scope: form.get("scope"),
                resources: &resources,
            };
            (client_credentials(&ctx, &request, jti)?, None)
        }
        GrantType::Password => {
            check_password_grant(&ctx)?;
            let username = form.require("username")?;
            let password = form.require("password")?;
            let user = verify_password(&state, &tenant, username, password, address).await?;
            let claims = password_claims(&ctx, &user, form.get("scope"), &resources, jti)?;
            let record = issues_refresh_token(&ctx, claims.scope.as_deref())
                .then(|| random_id().map(|family| new_family(&ctx, &claims, family)))
                .transpose()
                .map_err(no_randomness)?;
            (claims, record)
        }
        GrantType::RefreshToken => {
            let presented = form.require("refresh_token")?;
            let (claims, successor) =
                rotate_refresh_token(&state, &tenant, &ctx, presented, form.get("scope"), jti)
                    .await?;
            (claims, successor)
        }
        other => {
            return Err(OAuthError::unsupported_grant_type(format!(
                "grant type {other} is not available on this server yet"
            ))
            .into());
        }
    };
    let access_token = mint(&state, &tenant, &claims).await?;
    let mut body = TokenResponse::bearer(access_token, &claims);
    if let Some(record) = refresh_record {
        let name = &tenant.config.name;
        state
            .store
            .add_family_access_token(
                name,
                &record.family,
                &claims.jti,
                claims.exp,
                record.expires_at,
            )
            .await?;
        let token = random_token().map_err(no_randomness)?;
        let id = opaque_token_id(&token);
        records::put(
            &*state.store,
            name,
            RecordKind::RefreshToken,
            &id,
            &record,
            record.expires_at,
        )
        .await?;
        body.refresh_token = Some(token);
    }
    state.metrics.token_issued(&tenant.config.name, grant);
    let mut response = Json(body).into_response();
    no_store(&mut response);
    Ok(response)
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
) -> Result<(AccessTokenClaims, Option<RefreshTokenRecord>), HttpError> {
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
        revoke_family(state, name, &record).await?;
        tracing::warn!(tenant = %name, client = %record.client_id, family = %record.family, "refresh token reused; family revoked");
        return Err(OAuthError::invalid_grant(
            "the refresh token was already used; every token of its grant is now revoked",
        )
        .into());
    }
    let (claims, successor) = refresh(ctx, &record, scope, jti)?;
    if rotation {
        Ok((claims, Some(successor)))
    } else {
        // Without rotation the presented token stays valid; only record the new access token.
        state
            .store
            .add_family_access_token(
                name,
                &record.family,
                &claims.jti,
                claims.exp,
                record.expires_at,
            )
            .await?;
        Ok((claims, None))
    }
}

/// Revokes a refresh-token family and the access tokens it issued.
pub(super) async fn revoke_family(
    state: &AppState,
    tenant: &str,
    record: &RefreshTokenRecord,
) -> Result<(), HttpError> {
    let issued = state
        .store
        .revoke_family(tenant, &record.family, record.expires_at)
        .await?;
    for (jti, exp) in issued {
        state.store.revoke_jti(tenant, &jti, exp).await?;
    }
    Ok(())
}

/// Turns claims into the token the tenant's format asks for.
async fn mint(
    state: &AppState,
    tenant: &TenantRuntime,
    claims: &AccessTokenClaims,
) -> Result<String, HttpError> {
    match tenant.config.access_token_format {
        TokenFormat::Jwt => {
            let key = tenant.signing_key.as_ref().ok_or_else(|| {
                OAuthError::temporarily_unavailable(format!(
                    "tenant {} has no usable signing key yet",
                    tenant.config.name
                ))
            })?;
            encode_jwt(key, ACCESS_TOKEN_TYP, claims).map_err(|e| {
                tracing::error!(tenant = %tenant.config.name, error = %e, "signing failed");
                OAuthError::server_error("could not sign the token").into()
            })
        }
        TokenFormat::Opaque => {
            let token = random_token().map_err(no_randomness)?;
            state
                .store
                .put_opaque_token(&tenant.config.name, &opaque_token_id(&token), claims)
                .await?;
            Ok(token)
        }
    }
}
