//! Minting what the endpoints hand out: access tokens in the tenant's format and ID tokens.

use crate::AppState;
use crate::error::HttpError;
use crate::tenant::TenantRuntime;
use gatehouse_core::id_token::{ID_TOKEN_TYP, IdTokenClaims};
use gatehouse_core::token::{
    ACCESS_TOKEN_TYP, AccessTokenClaims, encode_jwt, opaque_token_id, random_token,
};
use gatehouse_core::{OAuthError, TokenFormat};
use serde::Serialize;

pub fn no_randomness<T>(_: T) -> OAuthError {
    OAuthError::server_error("no randomness available")
}

fn sign<T: Serialize>(tenant: &TenantRuntime, typ: &str, claims: &T) -> Result<String, HttpError> {
    let key = tenant.signing_key.as_ref().ok_or_else(|| {
        OAuthError::temporarily_unavailable(format!(
            "tenant {} has no usable signing key yet",
            tenant.config.name
        ))
    })?;
    encode_jwt(key, typ, claims).map_err(|e| {
        tracing::error!(tenant = %tenant.config.name, error = %e, "signing failed");
        OAuthError::server_error("could not sign the token").into()
    })
}

/// Turns claims into the access token the tenant's format asks for.
pub async fn access_token(
    state: &AppState,
    tenant: &TenantRuntime,
    claims: &AccessTokenClaims,
) -> Result<String, HttpError> {
    match tenant.config.access_token_format {
        TokenFormat::Jwt => sign(tenant, ACCESS_TOKEN_TYP, claims),
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

pub fn id_token(tenant: &TenantRuntime, claims: &IdTokenClaims) -> Result<String, HttpError> {
    sign(tenant, ID_TOKEN_TYP, claims)
}
