//! Token introspection (RFC 7662), for clients of the same tenant.

use super::authenticate::ClientRequest;
use crate::AppState;
use crate::error::{HttpError, no_store};
use crate::tenant::TenantRuntime;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use gatehouse_core::token::{
    AccessTokenClaims, Audience, looks_like_jwt, opaque_token_id, token_digest, verify_access_token,
};
use serde::Serialize;

#[derive(Serialize)]
struct Active<'a> {
    active: bool,
    token_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
    client_id: &'a str,
    sub: &'a str,
    aud: &'a Audience,
    iss: &'a str,
    exp: u64,
    iat: u64,
    nbf: u64,
    jti: &'a str,
}

/// The live claims of `token` at this tenant, or `None` if it is not an active access token
/// here (unknown, expired, revoked, another tenant's, or not an access token at all).
pub(super) async fn active_claims(
    state: &AppState,
    tenant: &TenantRuntime,
    token: &str,
) -> Result<Option<AccessTokenClaims>, HttpError> {
    let now = state.now();
    if looks_like_jwt(token) {
        let digest = token_digest(token);
        let claims = match tenant.verified_tokens.get(&digest, now) {
            Some(claims) => claims,
            None => {
                match verify_access_token(token, &tenant.issuer, &tenant.verification_keys, now) {
                    Ok(claims) => {
                        let claims = std::sync::Arc::new(claims);
                        tenant.verified_tokens.insert(digest, claims.clone());
                        claims
                    }
                    Err(reason) => {
                        tracing::debug!(tenant = %tenant.config.name, %reason, "inactive JWT");
                        return Ok(None);
                    }
                }
            }
        };
        if state
            .store
            .is_revoked(&tenant.config.name, &claims.jti)
            .await?
        {
            return Ok(None);
        }
        Ok(Some(std::sync::Arc::unwrap_or_clone(claims)))
    } else {
        let claims = state
            .store
            .get_opaque_token(&tenant.config.name, &opaque_token_id(token))
            .await?;
        match claims.filter(|c| c.exp > now && c.iss == tenant.issuer) {
            // Opaque tokens of a revoked refresh-token family are revoked by jti too.
            Some(c) if !state.store.is_revoked(&tenant.config.name, &c.jti).await? => Ok(Some(c)),
            _ => Ok(None),
        }
    }
}

pub async fn introspect(
    State(state): State<AppState>,
    request: ClientRequest,
) -> Result<Response, HttpError> {
    let ClientRequest { tenant, form, .. } = request;
    let token = form.require("token")?;
    let mut response = match active_claims(&state, &tenant, token).await? {
        Some(c) => Json(Active {
            active: true,
            token_type: "Bearer",
            scope: c.scope.as_deref(),
            client_id: &c.client_id,
            sub: &c.sub,
            aud: &c.aud,
            iss: &c.iss,
            exp: c.exp,
            iat: c.iat,
            nbf: c.nbf,
            jti: &c.jti,
        })
        .into_response(),
        None => Json(serde_json::json!({"active": false})).into_response(),
    };
    no_store(&mut response);
    Ok(response)
}
