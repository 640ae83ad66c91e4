//! Token revocation (RFC 7009).

use crate::AppState;
use crate::error::{HttpError, no_store};
use crate::extract::ClientRequest;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gatehouse_flows::revocation;

pub async fn revoke(
    State(state): State<AppState>,
    request: ClientRequest,
) -> Result<Response, HttpError> {
    let failed =
        |e: &gatehouse_flows::Error| HttpError::json(e).for_client(&request.client.client_id);
    let token = request
        .params
        .require("token")
        .map_err(|e| failed(&e.into()))?;
    revocation::revoke(&state.services, &request.tenant, &request.client, token)
        .await
        .map_err(|e| failed(&e))?;
    let mut response = StatusCode::OK.into_response();
    no_store(&mut response);
    Ok(response)
}
