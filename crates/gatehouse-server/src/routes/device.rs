//! Device authorization (RFC 8628): the device authorization endpoint, and the page behind
//! sign-in where a person enters the device's user code and allows or denies it.

use super::authenticate::ClientRequest;
use super::authorize::{
    Ask, Pending, PendingForm, begin, consent_page, failure_page, see_other, unknown_tenant,
};
use crate::AppState;
use crate::error::{HttpError, no_store};
use crate::form::Form;
use crate::issue::no_randomness;
use crate::pages::{self, DeviceEntryPage};
use crate::records;
use crate::session::{self, Session};
use crate::tenant::TenantRuntime;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gatehouse_core::grant::GrantContext;
use gatehouse_core::grant::device_code::{self, DeviceRecord, DeviceState, normalize_user_code};
use gatehouse_core::token::{opaque_token_id, random_token};
use gatehouse_core::{endpoints, throttle};
use gatehouse_store::RecordKind;
use serde_json::json;

/// Wrong user codes one signed-in person may enter per window before being refused.
const MAX_WRONG_CODES: u64 = 10;

/// How long a device record is kept after it expires, so a late poll learns `expired_token`.
pub const EXPIRED_GRACE_SECS: u64 = 300;

pub async fn device_authorization(
    State(state): State<AppState>,
    request: ClientRequest,
) -> Result<Response, HttpError> {
    let ClientRequest {
        tenant,
        client,
        form,
        ..
    } = request;
    let ctx = GrantContext {
        tenant: &tenant.config,
        issuer: &tenant.issuer,
        client: &client,
        now: state.now(),
    };
    let user_code = device_code::new_user_code()?;
    let record = device_code::start(&ctx, form.get("scope"), user_code.clone())?;
    let device_code = random_token().map_err(no_randomness)?;
    let device_id = opaque_token_id(&device_code);
    let name = &tenant.config.name;
    let keep = record.expires_at + EXPIRED_GRACE_SECS;
    records::put(
        &*state.store,
        name,
        RecordKind::DeviceCode,
        &device_id,
        &record,
        keep,
    )
    .await?;
    records::put(
        &*state.store,
        name,
        RecordKind::UserCode,
        &normalize_user_code(&user_code),
        &device_id,
        record.expires_at,
    )
    .await?;
    let verification_uri = format!("{}{}", tenant.issuer, endpoints::DEVICE);
    let mut response = Json(json!({
        "device_code": device_code,
        "user_code": user_code,
        "verification_uri": verification_uri,
        "verification_uri_complete": format!("{verification_uri}?user_code={user_code}"),
        "expires_in": device_code::DEVICE_CODE_TTL_SECS,
        "interval": record.interval,
    }))
    .into_response();
    no_store(&mut response);
    Ok(response)
}

pub fn entry_page(
    tenant: &TenantRuntime,
    id: &str,
    pending: &Pending,
    session: &Session,
    error: Option<&str>,
) -> Response {
    let action = format!("{}{}", tenant.issuer, endpoints::DEVICE);
    pages::html(
        StatusCode::OK,
        pages::device_entry(&DeviceEntryPage {
            tenant: tenant
                .config
                .display_name
                .as_deref()
                .unwrap_or(&tenant.config.name),
            username: &session.username,
            action: &action,
            request: id,
            csrf: &pending.csrf,
            user_code: pending.user_code.as_deref().unwrap_or_default(),
            error,
        }),
    )
}

/// `GET /device[?user_code=...]`: sign in if needed, then the code entry page.
pub async fn show(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some(tenant) = state.directory.get(&name) else {
        return unknown_tenant(&name);
    };
    let user_code = Form::parse(query.unwrap_or_default().as_bytes())
        .ok()
        .and_then(|f| f.get("user_code").map(str::to_string));
    begin(&state, &tenant, None, user_code, &headers)
        .await
        .unwrap_or_else(|e| failure_page(&name, e))
}

/// `POST /device`: look the code up, then allow or deny on a consent page.
pub async fn submit(State(state): State<AppState>, posted: PendingForm) -> Response {
    let PendingForm {
        tenant,
        form,
        id,
        mut pending,
        headers,
    } = posted;
    let name = tenant.config.name.clone();
    let result = async {
        let Some(session) = session::current(&state, &name, &headers)
            .await?
            .filter(|s| tenant.config.user(&s.username).is_some())
        else {
            return Ok(see_other(&format!(
                "{}{}?request={id}",
                tenant.issuer,
                endpoints::LOGIN
            )));
        };
        let typed = form.get("user_code").unwrap_or_default();
        pending.user_code = Some(typed.to_string());
        let failures_key = format!("usercode:{}", throttle::user_key(&session.username));
        if state.store.failure_count(&name, &failures_key).await? >= MAX_WRONG_CODES {
            return Ok(entry_page(
                &tenant,
                &id,
                &pending,
                &session,
                Some("Too many wrong codes. Wait a few minutes, then try again."),
            ));
        }
        let code = normalize_user_code(typed);
        let found = match records::get::<String>(&*state.store, &name, RecordKind::UserCode, &code)
            .await?
        {
            Some((device_id, _)) => records::get::<DeviceRecord>(
                &*state.store,
                &name,
                RecordKind::DeviceCode,
                &device_id,
            )
            .await?
            .map(|(r, _)| (device_id, r))
            .filter(|(_, r)| r.state == DeviceState::Pending && r.expires_at > state.now()),
            None => None,
        };
        let Some((device_id, mut record)) = found else {
            state
                .store
                .record_failure(&name, &failures_key, throttle::WINDOW_SECS)
                .await?;
            return Ok(entry_page(
                &tenant,
                &id,
                &pending,
                &session,
                Some("That code is not valid or has expired. Check the code on your device."),
            ));
        };
        let scopes: Vec<String> = record
            .scope
            .as_deref()
            .map(|s| s.split(' ').map(String::from).collect())
            .unwrap_or_default();
        let display = tenant
            .config
            .display_name
            .clone()
            .unwrap_or_else(|| name.clone());
        match form.get("decision") {
            None => {
                let ask = Ask {
                    client_id: &record.client_id,
                    scopes: &scopes,
                    action: format!("{}{}", tenant.issuer, endpoints::DEVICE),
                    hidden: vec![("user_code".to_string(), typed.to_string())],
                };
                Ok(consent_page(&tenant, &id, &pending, &session, ask))
            }
            Some(decision) => {
                let allowed = decision == "allow";
                record.state = if allowed {
                    DeviceState::Approved {
                        sub: session.username.clone(),
                        auth_time: session.auth_time,
                    }
                } else {
                    DeviceState::Denied
                };
                records::put(
                    &*state.store,
                    &name,
                    RecordKind::DeviceCode,
                    &device_id,
                    &record,
                    record.expires_at + EXPIRED_GRACE_SECS,
                )
                .await?;
                state
                    .store
                    .delete_record(&name, RecordKind::UserCode, &code)
                    .await?;
                state
                    .store
                    .delete_record(&name, RecordKind::AuthorizationRequest, &id)
                    .await?;
                let (title, message) = if allowed {
                    ("Device connected", "You can return to your device now.")
                } else {
                    (
                        "Request denied",
                        "The device was not given access. You can close this window.",
                    )
                };
                Ok(pages::html(
                    StatusCode::OK,
                    pages::notice(&display, title, message),
                ))
            }
        }
    }
    .await;
    result.unwrap_or_else(|e| failure_page(&name, e))
}
