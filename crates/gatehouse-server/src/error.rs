//! The one error of the HTTP layer. Whatever shape an error takes on the wire (an RFC 6749
//! section 5.2 JSON body, an RFC 6750 Bearer challenge, an HTML page, or a redirect back to a
//! registered redirect URI), it carries its RFC error code. Rendering has no side effects: it
//! leaves a [`Failure`] in the response's extensions, and the metrics middleware logs it once
//! (tenant, client, code, and the internal detail, never a secret or token) and counts it in
//! `gatehouse_oauth_errors_total`.

use crate::pages;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gatehouse_core::{ErrorCode, OAuthError};
use gatehouse_flows::Error;
use gatehouse_flows::redirect::RedirectError;
use serde::Serialize;

/// What the log line and the error metric of a failed request say.
#[derive(Clone, Debug)]
pub struct Failure {
    pub code: ErrorCode,
    /// The client, when known.
    pub client: Option<String>,
    /// The grant asked for at the token endpoint, when it is one Gatehouse knows.
    pub grant: Option<&'static str>,
    /// The cause behind a `server_error` or `temporarily_unavailable`, for the log only.
    pub detail: Option<String>,
}

/// What a request that succeeded was, for its access log line: the client and the grant.
#[derive(Clone, Debug)]
pub struct Succeeded {
    pub client: String,
    pub grant: &'static str,
}

/// How the error reaches the client.
#[derive(Debug)]
enum Shape {
    /// JSON (RFC 6749 section 5.2), with `WWW-Authenticate: Basic` on 401.
    Json,
    /// RFC 6750 section 3: `WWW-Authenticate: Bearer`, with the error code unless the request
    /// carried no token at all.
    Bearer { challenge_code: bool },
    /// An HTML page of the tenant.
    Page { tenant: String, title: &'static str },
    /// 303 to the client's registered redirect URI.
    Redirect { location: String },
}

/// An error on its way to the client.
#[derive(Debug)]
pub struct HttpError {
    pub error: OAuthError,
    pub status: StatusCode,
    shape: Shape,
    failure: Failure,
}

/// The status of an RFC 6749 error.
fn status_for(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidClient | ErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
        ErrorCode::InsufficientScope => StatusCode::FORBIDDEN,
        ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    }
}

impl HttpError {
    fn new(error: OAuthError, status: StatusCode, shape: Shape, detail: Option<String>) -> Self {
        let failure = Failure {
            code: error.code,
            client: None,
            grant: None,
            detail,
        };
        HttpError {
            error,
            status,
            shape,
            failure,
        }
    }

    /// A JSON error of the token, introspection, revocation or device endpoints.
    #[must_use]
    pub fn json(e: &Error) -> Self {
        let error = e.to_oauth();
        let status = status_for(error.code);
        HttpError::new(error, status, Shape::Json, e.detail())
    }

    /// A Bearer error of a protected resource (userinfo).
    #[must_use]
    pub fn bearer(e: &Error) -> Self {
        let error = e.to_oauth();
        let status = status_for(error.code);
        let shape = Shape::Bearer {
            challenge_code: true,
        };
        HttpError::new(error, status, shape, e.detail())
    }

    /// A request to a protected resource without a bearer token (RFC 6750 section 3.1: the
    /// challenge names no error).
    #[must_use]
    pub fn bearer_missing() -> Self {
        let error = OAuthError::invalid_request("a bearer access token is required");
        let shape = Shape::Bearer {
            challenge_code: false,
        };
        HttpError::new(error, StatusCode::UNAUTHORIZED, shape, None)
    }

    /// A failure in a browser flow, as a page of `tenant`.
    #[must_use]
    pub fn page(tenant: &str, e: &Error) -> Self {
        let error = e.to_oauth();
        let (status, title) = match e {
            Error::Refused(_) => (StatusCode::BAD_REQUEST, "Invalid request"),
            Error::SignInExpired => (StatusCode::BAD_REQUEST, "Sign-in expired"),
            Error::ForeignForm => (StatusCode::FORBIDDEN, "Request refused"),
            _ => (status_for(error.code), "Something went wrong"),
        };
        let shape = Shape::Page {
            tenant: tenant.to_string(),
            title,
        };
        HttpError::new(error, status, shape, e.detail())
    }

    /// An authorization error sent back to the client's registered redirect URI.
    #[must_use]
    pub fn redirect(issuer: &str, refused: &RedirectError) -> Self {
        let shape = Shape::Redirect {
            location: refused.location(issuer),
        };
        HttpError::new(refused.error.clone(), StatusCode::SEE_OTHER, shape, None)
    }

    /// A path naming no tenant, in the shape of the endpoint asked.
    #[must_use]
    pub fn unknown_tenant(name: &str, kind: Kind) -> Self {
        match kind {
            Kind::Json => HttpError::not_found(format!("no tenant named {name}")),
            Kind::Bearer => {
                let error = OAuthError::invalid_request("unknown tenant");
                let shape = Shape::Bearer {
                    challenge_code: true,
                };
                HttpError::new(error, StatusCode::NOT_FOUND, shape, None)
            }
            Kind::Page => {
                let error =
                    OAuthError::invalid_request(format!("There is no tenant named {name}."));
                let shape = Shape::Page {
                    tenant: name.to_string(),
                    title: "Unknown tenant",
                };
                HttpError::new(error, StatusCode::NOT_FOUND, shape, None)
            }
        }
    }

    /// A 404 with an OAuth-shaped body.
    #[must_use]
    pub fn not_found(description: impl Into<String>) -> Self {
        let error = OAuthError::invalid_request(description);
        HttpError::new(error, StatusCode::NOT_FOUND, Shape::Json, None)
    }

    /// A request refused as a whole before any endpoint saw it (a body too large or too slow),
    /// with any status; its connection is closed, since the body may not have been read.
    #[must_use]
    pub fn request_refused(status: StatusCode, description: impl Into<String>) -> Self {
        let error = OAuthError::invalid_request(description);
        HttpError::new(error, status, Shape::Json, None)
    }

    /// A method the endpoint does not take, in the endpoint's shape (the router adds `Allow`).
    #[must_use]
    pub fn method_not_allowed(method: &axum::http::Method, tenant: &str, kind: Kind) -> Self {
        let description = format!("this endpoint does not take {method} requests");
        let error = OAuthError::invalid_request(description);
        let shape = match kind {
            Kind::Json | Kind::Bearer => Shape::Json,
            Kind::Page => Shape::Page {
                tenant: tenant.to_string(),
                title: "Invalid request",
            },
        };
        HttpError::new(error, StatusCode::METHOD_NOT_ALLOWED, shape, None)
    }

    /// Names the client the request was for, for the log.
    #[must_use]
    pub fn for_client(mut self, client_id: &str) -> Self {
        self.failure.client = Some(client_id.to_string());
        self
    }

    /// Names the grant asked for.
    #[must_use]
    pub fn for_grant(mut self, grant: Option<&'static str>) -> Self {
        self.failure.grant = grant;
        self
    }

    /// Names the client, when there is one.
    #[must_use]
    pub fn for_client_if(self, client_id: Option<&str>) -> Self {
        match client_id {
            Some(id) => self.for_client(id),
            None => self,
        }
    }
}

/// Which shape an endpoint's errors take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Json,
    Bearer,
    Page,
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

/// A 303 to `location`, not cached.
pub fn see_other(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn bearer_challenge(error: &OAuthError) -> String {
    format!(
        "Bearer error=\"{}\", error_description=\"{}\"",
        error.code.as_str(),
        error.description.replace('"', "'")
    )
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = Body {
            error: self.error.code.as_str(),
            error_description: &self.error.description,
        };
        let mut response = match &self.shape {
            Shape::Json => {
                let mut r = (self.status, Json(body)).into_response();
                no_store(&mut r);
                if self.status == StatusCode::UNAUTHORIZED {
                    r.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Basic realm=\"gatehouse\", charset=\"UTF-8\""),
                    );
                }
                r
            }
            Shape::Bearer { challenge_code } => {
                let mut r = (self.status, Json(body)).into_response();
                let challenge = if *challenge_code {
                    bearer_challenge(&self.error)
                } else {
                    "Bearer".to_string()
                };
                if let Ok(v) = HeaderValue::from_str(&challenge) {
                    r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                }
                r.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                r
            }
            Shape::Page { tenant, title } => pages::html(
                self.status,
                pages::error(tenant, title, &self.error.description),
            ),
            Shape::Redirect { location } => see_other(location),
        };
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response.extensions_mut().insert(self.failure);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_core::grant::authorization_code::ResponseType;
    use gatehouse_store::StoreError;

    fn failure(r: &Response) -> Failure {
        r.extensions().get::<Failure>().cloned().unwrap()
    }

    #[test]
    fn every_shape_carries_its_code_for_the_log_and_the_metric() {
        let unavailable = Error::from(StoreError::Unavailable("refused".into()));
        let r = HttpError::json(&unavailable)
            .for_client("c1")
            .into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let f = failure(&r);
        assert_eq!(
            (f.code, f.client.as_deref(), f.detail.as_deref()),
            (
                ErrorCode::TemporarilyUnavailable,
                Some("c1"),
                Some("store unavailable: refused")
            )
        );

        let r = HttpError::json(&OAuthError::invalid_client("no").into()).into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(
            r.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("Basic")
        );

        let invalid_token = Error::from(OAuthError::new(ErrorCode::InvalidToken, "gone"));
        let r = HttpError::bearer(&invalid_token).into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\", error_description=\"gone\""
        );
        let r = HttpError::bearer_missing().into_response();
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");

        let r = HttpError::page("acme", &Error::ForeignForm).into_response();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(failure(&r).code, ErrorCode::AccessDenied);

        let refused = RedirectError {
            redirect_uri: "https://app/cb".into(),
            response_type: ResponseType::Code,
            state: None,
            error: OAuthError::new(ErrorCode::LoginRequired, "nobody"),
        };
        let r = HttpError::redirect("https://i/acme", &refused).into_response();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert!(
            r.headers()[header::LOCATION]
                .to_str()
                .unwrap()
                .starts_with("https://app/cb?error=login_required")
        );
        assert_eq!(failure(&r).code, ErrorCode::LoginRequired);
    }
}
