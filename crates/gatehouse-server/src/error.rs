//! The one place OAuth errors become HTTP responses (RFC 6749 section 5.2): status codes,
//! `WWW-Authenticate` on 401, JSON body, and `Cache-Control: no-store`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gatehouse_core::{ErrorCode, OAuthError};
use gatehouse_store::StoreError;
use serde::Serialize;

/// An error on its way to the client.
#[derive(Debug)]
pub struct HttpError {
    pub error: OAuthError,
    pub status: StatusCode,
}

impl HttpError {
    pub fn not_found(description: impl Into<String>) -> Self {
        HttpError {
            error: OAuthError::invalid_request(description),
            status: StatusCode::NOT_FOUND,
        }
    }
}

fn status_for(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
        ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    }
}

impl From<OAuthError> for HttpError {
    fn from(error: OAuthError) -> Self {
        let status = status_for(error.code);
        HttpError { error, status }
    }
}

impl From<StoreError> for HttpError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(reason) => {
                tracing::warn!(%reason, "store unavailable");
                OAuthError::temporarily_unavailable("the token store is unavailable; retry shortly")
                    .into()
            }
            other => {
                tracing::error!(error = %other, "store error");
                OAuthError::server_error("internal storage error").into()
            }
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    error_description: &'a str,
}

/// Headers every OAuth response carries (RFC 6749 section 5.1).
pub fn no_store(response: &mut Response) {
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = Body {
            error: self.error.code.as_str(),
            error_description: &self.error.description,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        no_store(&mut response);
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"gatehouse\", charset=\"UTF-8\""),
            );
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        // Handlers record the code; the metrics middleware counts it per tenant.
        response.extensions_mut().insert(self.error.code);
        response
    }
}
