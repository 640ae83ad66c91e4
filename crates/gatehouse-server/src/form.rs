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
    Params::parse(&read_bytes(headers, body).await?)
}

/// Reads the body like [`read`], noting repeated parameters instead of refusing them (the
/// authorization endpoint decides where that error goes).
pub async fn read_noting_repeats(headers: &HeaderMap, body: Body) -> Result<Params, OAuthError> {
    Ok(Params::parse_noting_repeats(
        &read_bytes(headers, body).await?,
    ))
}

async fn read_bytes(headers: &HeaderMap, body: Body) -> Result<axum::body::Bytes, OAuthError> {
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
    axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        OAuthError::invalid_request(format!("the request body exceeds {} KiB", MAX_BODY / 1024))
    })
}

/// Parses a query string (absent is empty).
pub fn query(raw: Option<&str>) -> Result<Params, OAuthError> {
    Params::parse(raw.unwrap_or_default().as_bytes())
}

/// Parses a query string like [`query`], noting repeated parameters instead of refusing them.
#[must_use]
pub fn query_noting_repeats(raw: Option<&str>) -> Params {
    Params::parse_noting_repeats(raw.unwrap_or_default().as_bytes())
}
