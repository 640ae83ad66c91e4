//! Every request body is read to its end, within a size and a time limit, before any endpoint
//! sees the request.
//!
//! An endpoint may answer without reading the body (an unknown tenant, a wrong content type);
//! unread bytes would then poison the keep-alive connection, and a client that sends its body
//! slowly would hold the connection as long as it likes. Reading first makes every answer
//! leave the connection ready for the next request; a body too large or too slow is answered
//! 413 or 408 with `Connection: close`.

use crate::AppState;
use crate::error::HttpError;
use crate::form::MAX_BODY;
use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Reads the body whole, then passes the request on.
pub async fn read_first(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.body().size_hint().exact() == Some(0) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(
        state.body_read_timeout,
        axum::body::to_bytes(body, MAX_BODY),
    );
    let refused = match read.await {
        Ok(Ok(bytes)) => {
            return next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
        }
        Ok(Err(_)) => HttpError::request_refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body exceeds {} KiB", MAX_BODY / 1024),
        ),
        Err(_) => HttpError::request_refused(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} s",
                state.body_read_timeout.as_secs_f32()
            ),
        ),
    };
    let mut response = refused.into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
