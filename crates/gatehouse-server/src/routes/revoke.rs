//! Token revocation (RFC 7009) of access and refresh tokens. Revoking an unknown or already
//! invalid token succeeds, as the RFC asks; revoking another client's token is refused.

use super::authenticate::ClientRequest;
use super::introspect::active_claims;
use crate::AppState;
use crate::error::{HttpError, no_store};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gatehouse_core::OAuthError;
use gatehouse_core::grant::refresh_token::RefreshTokenRecord;
use gatehouse_core::token::{looks_like_jwt, opaque_token_id};
use gatehouse_store::RecordKind;

pub async fn revoke(
    State(state): State<AppState>,
    request: ClientRequest,
) -> Result<Response, HttpError> {
    let ClientRequest {
        tenant,
        client,
        form,
        ..
    } = request;
    let token = form.require("token")?;
    if let Some(claims) = active_claims(&state, &tenant, token).await? {
        if claims.client_id != client.client_id {
            return Err(
                OAuthError::unauthorized_client("the token was not issued to this client").into(),
            );
        }
        if looks_like_jwt(token) {
            state
                .store
                .revoke_jti(&tenant.config.name, &claims.jti, claims.exp)
                .await?;
        } else {
            state
                .store
                .delete_opaque_token(&tenant.config.name, &opaque_token_id(token))
                .await?;
        }
        tracing::info!(tenant = %tenant.config.name, client = %client.client_id, jti = %claims.jti, "access token revoked");
    } else if let Some((record, _)) = crate::records::get::<RefreshTokenRecord>(
        &*state.store,
        &tenant.config.name,
        RecordKind::RefreshToken,
        &opaque_token_id(token),
    )
    .await?
    {
        // RFC 7009 section 2.1: revoking a refresh token revokes what its grant issued.
        if record.client_id != client.client_id {
            return Err(
                OAuthError::unauthorized_client("the token was not issued to this client").into(),
            );
        }
        super::token::revoke_family(
            &state,
            &tenant.config.name,
            &record.family,
            record.expires_at,
        )
        .await?;
        tracing::info!(tenant = %tenant.config.name, client = %client.client_id, family = %record.family, "refresh token revoked");
    }
    let mut response = StatusCode::OK.into_response();
    no_store(&mut response);
    Ok(response)
}
