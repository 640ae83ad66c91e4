//! The token endpoint (RFC 6749 section 3.2).

use super::authenticate::ClientRequest;
use crate::AppState;
use crate::error::{HttpError, no_store};
use crate::tenant::{IMPLEMENTED_GRANTS, TenantRuntime};
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use gatehouse_core::grant::client_credentials::{ClientCredentialsRequest, client_credentials};
use gatehouse_core::grant::{GrantContext, TokenResponse, check_grant_allowed};
use gatehouse_core::token::{
    ACCESS_TOKEN_TYP, AccessTokenClaims, encode_jwt, opaque_token_id, random_id, random_token,
};
use gatehouse_core::{GrantType, OAuthError, TokenFormat};

pub async fn token(
    State(state): State<AppState>,
    request: ClientRequest,
) -> Result<Response, HttpError> {
    let ClientRequest {
        tenant,
        client,
        form,
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
    let jti = random_id().map_err(|_| OAuthError::server_error("no randomness available"))?;
    let claims = match grant {
        GrantType::ClientCredentials => {
            let resources = form.all("resource");
            client_credentials(
                &ctx,
                &ClientCredentialsRequest {
                    scope: form.get("scope"),
                    resources: &resources,
                },
                jti,
            )?
        }
        other => {
            return Err(OAuthError::unsupported_grant_type(format!(
                "grant type {other} is not available on this server yet"
            ))
            .into());
        }
    };
    let access_token = mint(&state, &tenant, &claims).await?;
    state.metrics.token_issued(&tenant.config.name, grant);
    let mut response = Json(TokenResponse::bearer(access_token, &claims)).into_response();
    no_store(&mut response);
    Ok(response)
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
            let token =
                random_token().map_err(|_| OAuthError::server_error("no randomness available"))?;
            state
                .store
                .put_opaque_token(&tenant.config.name, &opaque_token_id(&token), claims)
                .await?;
            Ok(token)
        }
    }
}
