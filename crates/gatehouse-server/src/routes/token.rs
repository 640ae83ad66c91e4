//! The token endpoint (RFC 6749 section 3.2).

use crate::AppState;
use crate::error::{HttpError, Succeeded, no_store};
use crate::extract::ClientRequest;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use gatehouse_core::GrantType;
use gatehouse_flows::token::{self, Caller};

pub async fn token(
    State(state): State<AppState>,
    request: ClientRequest,
) -> Result<Response, HttpError> {
    let caller = Caller {
        tenant: &request.tenant,
        client: &request.client,
        address: request.address,
    };
    // Only a grant Gatehouse knows is named in the log, never the raw parameter.
    let asked = request
        .params
        .get("grant_type")
        .and_then(GrantType::from_token_request)
        .map(GrantType::as_str);
    let issued = token::token(&state.services, &caller, &request.params)
        .await
        .map_err(|e| {
            HttpError::json(&e)
                .for_client(&request.client.client_id)
                .for_grant(asked)
        })?;
    state
        .metrics
        .token_issued(request.tenant.name(), issued.grant);
    let mut response = Json(issued.response).into_response();
    no_store(&mut response);
    // Only read by the debug access line: no allocation per token otherwise.
    if tracing::enabled!(target: "gatehouse::access", tracing::Level::DEBUG) {
        response.extensions_mut().insert(Succeeded {
            client: request.client.client_id.clone(),
            grant: issued.grant.as_str(),
        });
    }
    Ok(response)
}
