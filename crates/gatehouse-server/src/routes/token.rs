//! The token endpoint (RFC 6749 section 3.2).

use crate::AppState;
use crate::error::{HttpError, no_store};
use crate::extract::ClientRequest;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
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
    let issued = token::token(&state.services, &caller, &request.params)
        .await
        .map_err(|e| HttpError::json(&e).for_client(&request.client.client_id))?;
    state
        .metrics
        .token_issued(request.tenant.name(), issued.grant);
    let mut response = Json(issued.response).into_response();
    no_store(&mut response);
    Ok(response)
}
