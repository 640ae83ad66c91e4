//! Renders the steps of the browser flow (see `gatehouse_flows::browser`): a redirect to
//! sign-in or back to the client, the consent page, the device code page, or a notice. The
//! authorization, sign-in, consent and device handlers all answer through here.

use crate::AppState;
use crate::error::{HttpError, see_other};
use crate::pages::{self, ConsentPage, DeviceEntryPage, LoginPage};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gatehouse_core::{GrantType, endpoints};
use gatehouse_flows::ServedTenant;
use gatehouse_flows::browser::pending::Pending;
use gatehouse_flows::browser::{Ask, Entry, Step};

/// The response for `step`.
pub fn render(state: &AppState, tenant: &ServedTenant, step: Step) -> Response {
    match step {
        Step::SignIn { request } => see_other(&format!(
            "{}?request={request}",
            tenant.endpoint(endpoints::LOGIN)
        )),
        Step::Consent(ask) => consent_page(tenant, &ask),
        Step::DeviceEntry(entry) => device_entry_page(tenant, &entry),
        Step::Done {
            location,
            issued_token,
        } => {
            if issued_token {
                state
                    .metrics
                    .token_issued(tenant.name(), GrantType::Implicit);
            }
            see_other(&location)
        }
        Step::Refused(refused) => HttpError::redirect(&tenant.issuer, &refused).into_response(),
        Step::DeviceDone { allowed } => {
            let (title, message) = if allowed {
                ("Device connected", "You can return to your device now.")
            } else {
                (
                    "Request denied",
                    "The device was not given access. You can close this window.",
                )
            };
            pages::html(
                StatusCode::OK,
                pages::notice(tenant.display_name(), title, message),
            )
        }
    }
}

/// The sign-in page of a pending request, with an error from the last attempt.
pub fn login_page(
    tenant: &ServedTenant,
    id: &str,
    pending: &Pending,
    username: &str,
    error: Option<&str>,
) -> Response {
    let client = match &pending.request {
        Some(req) => tenant.client_display_name(&req.client_id),
        None => "device sign-in".to_string(),
    };
    let action = tenant.endpoint(endpoints::LOGIN);
    pages::html(
        StatusCode::OK,
        pages::login(&LoginPage {
            tenant: tenant.display_name(),
            client: &client,
            action: &action,
            request: id,
            csrf: &pending.csrf,
            username,
            error,
        }),
    )
}

fn consent_page(tenant: &ServedTenant, ask: &Ask) -> Response {
    let client = tenant.client_display_name(&ask.client_id);
    let scopes = ask
        .scopes
        .iter()
        .map(|s| (s.clone(), scope_description(tenant, s)))
        .collect();
    // A device confirmation answers on the device page, carrying the code it is about.
    let (action, hidden) = match &ask.user_code {
        Some(code) => (
            tenant.endpoint(endpoints::DEVICE),
            vec![("user_code".to_string(), code.clone())],
        ),
        None => (tenant.endpoint(endpoints::CONSENT), Vec::new()),
    };
    let shown_code = ask
        .user_code
        .as_deref()
        .map(gatehouse_core::grant::device_code::shown_user_code);
    pages::html(
        StatusCode::OK,
        pages::consent(&ConsentPage {
            tenant: tenant.display_name(),
            client: &client,
            username: &ask.username,
            action: &action,
            request: &ask.request,
            csrf: &ask.csrf,
            scopes,
            hidden,
            device_code: shown_code.as_deref(),
            sign_out: &tenant.endpoint(endpoints::END_SESSION),
        }),
    )
}

fn device_entry_page(tenant: &ServedTenant, entry: &Entry) -> Response {
    let action = tenant.endpoint(endpoints::DEVICE);
    pages::html(
        StatusCode::OK,
        pages::device_entry(&DeviceEntryPage {
            tenant: tenant.display_name(),
            username: &entry.username,
            action: &action,
            request: &entry.request,
            csrf: &entry.csrf,
            user_code: &entry.user_code,
            error: entry.error,
        }),
    )
}

/// What a scope lets the client do, in words for the consent page.
fn scope_description(tenant: &ServedTenant, scope: &str) -> String {
    match scope {
        "openid" => "confirm who you are".into(),
        "profile" => "your name and username".into(),
        "email" => "your email address".into(),
        "offline_access" => "keep access while you are away".into(),
        other => tenant
            .config
            .scopes
            .iter()
            .find(|s| s.name == other)
            .and_then(|s| s.description.clone())
            .unwrap_or_else(|| other.to_string()),
    }
}
