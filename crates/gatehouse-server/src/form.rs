//! Reading `application/x-www-form-urlencoded` request bodies: the right content type and a
//! size limit, then the parameter rules of [`Params`].

use axum::body::Body;
use axum::http::{HeaderMap, header};
use gatehouse_core::OAuthError;
use gatehouse_flows::Params;

/// Largest body accepted by the OAuth endpoints.
pub const MAX_BODY: usize = 64 * 1024;

/// Reads and parses the body, or explains what is wrong with it.
pub async fn read(headers: &HeaderMap, body: Body) -> Result<Params, OAuthError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if content_type.as_deref() != Some("application/x-www-form-urlencoded") {
        return Err(OAuthError::invalid_request(
            "the request body must be application/x-www-form-urlencoded",
        ));
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        OAuthError::invalid_request(format!("the request body exceeds {} KiB", MAX_BODY / 1024))
    })?;
    Params::parse(&bytes)
}

/// Parses a query string (absent is empty).
pub fn query(raw: Option<&str>) -> Result<Params, OAuthError> {
    Params::parse(raw.unwrap_or_default().as_bytes())
}
