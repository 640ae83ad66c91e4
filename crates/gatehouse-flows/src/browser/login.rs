//! The sign-in form of a pending sign-in: the password checked with brute-force protection,
//! then a session and the next step of the request.

use super::pending::Pending;
use super::{Step, authorize, session};
use crate::sign_in::{LOCKED, verify_password};
use crate::{Error, ServedTenant, Services};
use gatehouse_core::ErrorCode;
use std::net::IpAddr;

/// What a sign-in attempt led to.
#[derive(Debug)]
pub enum SignIn {
    /// Show the form again with this message (never saying whether the user exists).
    Retry { message: &'static str },
    /// Signed in: the new session's cookie value, and where the browser goes next.
    SignedIn { session_cookie: String, step: Step },
}

/// What the form carried.
pub struct Form<'a> {
    pub username: &'a str,
    pub password: &'a str,
    pub address: Option<IpAddr>,
}

/// Checks the password and, when it is right, starts a session and moves the request on.
///
/// # Errors
/// The store failing, or the process shutting down.
pub async fn sign_in(
    services: &Services,
    tenant: &ServedTenant,
    id: &str,
    pending: &Pending,
    form: Form<'_>,
) -> Result<SignIn, Error> {
    if form.username.is_empty() || form.password.is_empty() {
        return Ok(SignIn::Retry {
            message: "Enter your username and password.",
        });
    }
    match verify_password(services, tenant, form.username, form.password, form.address).await {
        Err(Error::Refused(e)) if e.code == ErrorCode::InvalidGrant => Ok(SignIn::Retry {
            message: if e.description == LOCKED {
                "Too many failed attempts. Wait a few minutes, then try again."
            } else {
                "Wrong username or password."
            },
        }),
        Err(e) => Err(e),
        Ok(user) => {
            let (session_cookie, session) =
                session::start(services, tenant, &user.username).await?;
            let step =
                authorize::proceed(services, tenant, id, pending, Some(session), true).await?;
            Ok(SignIn::SignedIn {
                session_cookie,
                step,
            })
        }
    }
}
