//! The browser flow behind the authorization endpoint, shared by sign-in, consent and device
//! confirmation: a pending sign-in bound to the browser that started it, the session, the
//! remembered consent, and the decision where the browser goes next ([`Step`]). The HTTP layer
//! renders a step as a redirect or a page; the decisions (`prompt`, `max_age`, consent,
//! codes and implicit tokens) are made here.

pub mod authorize;
pub mod consent;
pub mod device;
pub mod login;
pub mod logout;
pub mod pending;
pub mod session;

use crate::redirect::RedirectError;

#[cfg(test)]
mod tests;

/// Where a browser goes next.
#[derive(Debug)]
pub enum Step {
    /// To the sign-in page of the pending request `request`.
    SignIn { request: String },
    /// The consent page.
    Consent(Ask),
    /// The page where a signed-in person enters (or confirms) a device's user code.
    DeviceEntry(Entry),
    /// Back to the client with a code, or (implicit) a token in the fragment.
    Done {
        location: String,
        /// An implicit access token was issued (for the metrics).
        issued_token: bool,
    },
    /// Back to the client with an error (RFC 6749 4.1.2.1).
    Refused(RedirectError),
    /// A device confirmation finished: the device was allowed, or denied.
    DeviceDone { allowed: bool },
}

/// What a consent page asks: which client wants which scopes for whom, and the fields that tie
/// the answer to its pending request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    pub request: String,
    pub csrf: String,
    pub username: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    /// For a device confirmation: the user code typed, which the answer carries back.
    pub user_code: Option<String>,
}

/// The user-code page of a device confirmation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub request: String,
    pub csrf: String,
    pub username: String,
    /// What to prefill: the code from the verification link, or what was typed.
    pub user_code: String,
    /// Why the last code was not taken, in words for the person.
    pub error: Option<&'static str>,
}
