//! Token introspection (RFC 7662), for clients of the same tenant.

use crate::AppState;
use crate::error::{HttpError, no_store};
use crate::extract::ClientRequest;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use gatehouse_flows::introspection;

pub async fn introspect(
    State(state): State<AppState>,
    request: ClientRequest,
) -> Result<Response, HttpError> {
    let failed =
        |e: &gatehouse_flows::Error| HttpError::json(e).for_client(&request.client.client_id);
    let token = request
        .params
        .require("token")
        .map_err(|e| failed(&e.into()))?;
    let answer =
        introspection::introspect(&state.services, &request.tenant, &request.client, token)
            .await
            .map_err(|e| failed(&e))?;
    let mut response = Json(answer).into_response();
    no_store(&mut response);
    Ok(response)
}
