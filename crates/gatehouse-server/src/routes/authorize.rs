//! The authorization endpoint (RFC 6749 section 3.1) and the browser flow behind it: sign-in,
//! consent, and the redirect back with a code (RFC 6749 4.1.2, RFC 9207 `iss`) or, for
//! implicit, a token in the fragment (4.2.2).

use crate::AppState;
use crate::error::HttpError;
use crate::form::Form;
use crate::pages::{self, ConsentPage};
use crate::records;
use crate::session::{self, BROWSER_COOKIE, Session};
use crate::tenant::TenantRuntime;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gatehouse_core::grant::authorization_code::{
    AuthorizationRequest, AuthorizeError, AuthorizeParams, CodeRecord, ResponseType,
    validate_request,
};
use gatehouse_core::token::{
    AccessTokenClaims, Audience, opaque_token_id, random_id, random_token,
};
use gatehouse_core::{ErrorCode, OAuthError, endpoints, throttle};
use gatehouse_store::RecordKind;
use serde::{Deserialize, Serialize};

/// How long a started sign-in may take.
const PENDING_TTL_SECS: u64 = 600;
/// How long a consent is remembered.
const CONSENT_TTL_SECS: u64 = 365 * 86_400;

/// A sign-in waiting for the user, bound to the browser that started it: an authorization
/// request, or (without one) a device confirmation (RFC 8628).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pending {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<AuthorizationRequest>,
    /// For device confirmations: the user code from the verification link, to prefill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_code: Option<String>,
    pub browser: String,
    pub csrf: String,
}

/// Browser-facing failures are pages, not JSON.
pub fn page_error(tenant: &str, status: StatusCode, title: &str, message: &str) -> Response {
    pages::html(status, pages::error(tenant, title, message))
}

pub fn unknown_tenant(name: &str) -> Response {
    page_error(
        name,
        StatusCode::NOT_FOUND,
        "Unknown tenant",
        &format!("There is no tenant named {name}."),
    )
}

/// Appends parameters to a redirect URI's query or fragment.
fn with_params(uri: &str, params: &[(&str, &str)], fragment: bool) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        s.append_pair(k, v);
    }
    let encoded = s.finish();
    if fragment {
        format!("{uri}#{encoded}")
    } else if uri.contains('?') {
        format!("{uri}&{encoded}")
    } else {
        format!("{uri}?{encoded}")
    }
}

pub fn see_other(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// An error sent back to the client's (registered) redirect URI.
pub fn redirect_error(
    tenant: &TenantRuntime,
    redirect_uri: &str,
    response_type: ResponseType,
    state: Option<&str>,
    error: &OAuthError,
) -> Response {
    let mut params = vec![
        ("error", error.code.as_str()),
        ("error_description", error.description.as_str()),
    ];
    if let Some(s) = state {
        params.push(("state", s));
    }
    params.push(("iss", &tenant.issuer));
    see_other(&with_params(
        redirect_uri,
        &params,
        response_type == ResponseType::Token,
    ))
}

pub async fn authorize_get(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let form = match Form::parse(query.unwrap_or_default().as_bytes()) {
        Ok(f) => f,
        Err(e) => {
            return page_error(
                &name,
                StatusCode::BAD_REQUEST,
                "Invalid request",
                &e.description,
            );
        }
    };
    authorize(state, name, form, headers).await
}

pub async fn authorize_post(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let form = match Form::read(&headers, body).await {
        Ok(f) => f,
        Err(e) => {
            return page_error(
                &name,
                StatusCode::BAD_REQUEST,
                "Invalid request",
                &e.description,
            );
        }
    };
    authorize(state, name, form, headers).await
}

async fn authorize(state: AppState, name: String, form: Form, headers: HeaderMap) -> Response {
    let Some(tenant) = state.directory.get(&name) else {
        return unknown_tenant(&name);
    };
    let params = AuthorizeParams {
        client_id: form.get("client_id"),
        redirect_uri: form.get("redirect_uri"),
        response_type: form.get("response_type"),
        scope: form.get("scope"),
        state: form.get("state"),
        nonce: form.get("nonce"),
        code_challenge: form.get("code_challenge"),
        code_challenge_method: form.get("code_challenge_method"),
        prompt: form.get("prompt"),
        max_age: form.get("max_age"),
        response_mode: form.get("response_mode"),
        request_object: form.get("request").is_some() || form.get("request_uri").is_some(),
    };
    let client = params
        .client_id
        .and_then(|id| tenant.client(id))
        .map(|c| c.as_ref());
    let request = match validate_request(&tenant.config, client, &params, state.now()) {
        Ok(r) => r,
        Err(AuthorizeError::Page(e)) => {
            return page_error(
                &name,
                StatusCode::BAD_REQUEST,
                "Invalid request",
                &e.description,
            );
        }
        Err(AuthorizeError::Redirect {
            redirect_uri,
            response_type,
            state: st,
            error,
        }) => {
            return redirect_error(&tenant, &redirect_uri, response_type, st.as_deref(), &error);
        }
    };
    begin(&state, &tenant, Some(request), None, &headers)
        .await
        .unwrap_or_else(|e| failure_page(&name, e))
}

/// Starts a sign-in bound to this browser (setting its binding cookie if it has none) and
/// moves it on: an authorization request, or a device confirmation when `request` is `None`.
pub async fn begin(
    state: &AppState,
    tenant: &TenantRuntime,
    request: Option<AuthorizationRequest>,
    user_code: Option<String>,
    headers: &HeaderMap,
) -> Result<Response, HttpError> {
    let name = &tenant.config.name;
    let existing_browser = session::cookie(headers, BROWSER_COOKIE);
    let browser = match &existing_browser {
        Some(b) => b.clone(),
        None => random_token().map_err(crate::issue::no_randomness)?,
    };
    let pending = Pending {
        request,
        user_code,
        browser: browser.clone(),
        csrf: random_token().map_err(crate::issue::no_randomness)?,
    };
    let id = random_id().map_err(crate::issue::no_randomness)?;
    let until = state.now() + PENDING_TTL_SECS;
    records::put(
        &*state.store,
        name,
        RecordKind::AuthorizationRequest,
        &id,
        &pending,
        until,
    )
    .await?;
    let current = session::current(state, name, headers).await?;
    let mut response = proceed(state, tenant, &id, &pending, current, false).await?;
    if existing_browser.is_none() {
        let cookie = session::set_cookie(state, name, BROWSER_COOKIE, &browser, Some(400 * 86_400));
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// A failure in a browser flow, as a page.
pub fn failure_page(tenant: &str, e: HttpError) -> Response {
    page_error(
        tenant,
        e.status,
        "Something went wrong",
        &e.error.description,
    )
}

fn consent_id(username: &str, client_id: &str) -> String {
    format!("{}:{client_id}", throttle::user_key(username))
}

/// Moves a pending request on: to sign-in, to consent, or back to the client.
pub async fn proceed(
    state: &AppState,
    tenant: &TenantRuntime,
    id: &str,
    pending: &Pending,
    session: Option<Session>,
    fresh_login: bool,
) -> Result<Response, HttpError> {
    let now = state.now();
    let name = &tenant.config.name;
    let Some(req) = &pending.request else {
        // A device confirmation: signed in, the person enters or confirms the user code.
        return Ok(
            match session.filter(|s| tenant.config.user(&s.username).is_some()) {
                Some(s) => super::device::entry_page(tenant, id, pending, &s, None),
                None => see_other(&format!(
                    "{}{}?request={id}",
                    tenant.issuer,
                    endpoints::LOGIN
                )),
            },
        );
    };
    let usable = session.filter(|s| {
        (!req.prompt_login || fresh_login)
            && req
                .max_age
                .is_none_or(|max| now.saturating_sub(s.auth_time) <= max)
            && tenant.config.user(&s.username).is_some()
    });
    let Some(session) = usable else {
        if req.prompt_none {
            let e = OAuthError::new(ErrorCode::LoginRequired, "nobody is signed in");
            return Ok(redirect_error(
                tenant,
                &req.redirect_uri,
                req.response_type,
                req.state.as_deref(),
                &e,
            ));
        }
        return Ok(see_other(&format!(
            "{}{}?request={id}",
            tenant.issuer,
            endpoints::LOGIN
        )));
    };
    let remembered: Option<(Vec<String>, bool)> = records::get(
        &*state.store,
        name,
        RecordKind::Consent,
        &consent_id(&session.username, &req.client_id),
    )
    .await?;
    let covered =
        remembered.is_some_and(|(scopes, _)| req.scopes.iter().all(|s| scopes.contains(s)));
    if !covered || (req.prompt_consent && !fresh_login) {
        if req.prompt_none {
            let e = OAuthError::new(
                ErrorCode::ConsentRequired,
                "the user has not consented to this client and scope",
            );
            return Ok(redirect_error(
                tenant,
                &req.redirect_uri,
                req.response_type,
                req.state.as_deref(),
                &e,
            ));
        }
        let ask = Ask {
            client_id: &req.client_id,
            scopes: &req.scopes,
            action: format!("{}{}", tenant.issuer, endpoints::CONSENT),
            hidden: Vec::new(),
        };
        return Ok(consent_page(tenant, id, pending, &session, ask));
    }
    complete(state, tenant, id, pending, &session).await
}

/// What a consent page asks: which client wants which scopes, and where the answer goes
/// (with any extra hidden fields).
pub struct Ask<'a> {
    pub client_id: &'a str,
    pub scopes: &'a [String],
    pub action: String,
    pub hidden: Vec<(String, String)>,
}

pub fn consent_page(
    tenant: &TenantRuntime,
    id: &str,
    pending: &Pending,
    session: &Session,
    ask: Ask<'_>,
) -> Response {
    let client_name = tenant
        .client(ask.client_id)
        .and_then(|c| c.client_name.clone())
        .unwrap_or_else(|| ask.client_id.to_string());
    let scopes = ask
        .scopes
        .iter()
        .map(|s| (s.clone(), scope_description(tenant, s)))
        .collect();
    pages::html(
        StatusCode::OK,
        pages::consent(&ConsentPage {
            tenant: tenant
                .config
                .display_name
                .as_deref()
                .unwrap_or(&tenant.config.name),
            client: &client_name,
            username: &session.username,
            action: &ask.action,
            request: id,
            csrf: &pending.csrf,
            scopes,
            hidden: ask.hidden,
        }),
    )
}

fn scope_description(tenant: &TenantRuntime, scope: &str) -> String {
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

/// Remembers a consent (adding to what was consented before).
pub async fn remember_consent(
    state: &AppState,
    tenant: &str,
    username: &str,
    req: &AuthorizationRequest,
) -> Result<(), HttpError> {
    let id = consent_id(username, &req.client_id);
    let mut scopes: Vec<String> =
        records::get::<Vec<String>>(&*state.store, tenant, RecordKind::Consent, &id)
            .await?
            .map(|(s, _)| s)
            .unwrap_or_default();
    for s in &req.scopes {
        if !scopes.contains(s) {
            scopes.push(s.clone());
        }
    }
    records::put(
        &*state.store,
        tenant,
        RecordKind::Consent,
        &id,
        &scopes,
        state.now() + CONSENT_TTL_SECS,
    )
    .await
}

/// Sends the browser back to the client with a code (or, for implicit, a token).
pub async fn complete(
    state: &AppState,
    tenant: &TenantRuntime,
    id: &str,
    pending: &Pending,
    session: &Session,
) -> Result<Response, HttpError> {
    let Some(req) = &pending.request else {
        return Err(
            OAuthError::invalid_request("this sign-in is not an authorization request").into(),
        );
    };
    let name = &tenant.config.name;
    let now = state.now();
    state
        .store
        .delete_record(name, RecordKind::AuthorizationRequest, id)
        .await?;
    let mut params: Vec<(&str, String)> = Vec::new();
    match req.response_type {
        ResponseType::Code => {
            let code = random_token().map_err(crate::issue::no_randomness)?;
            let record = CodeRecord {
                client_id: req.client_id.clone(),
                redirect_uri: req.redirect_uri.clone(),
                scope: req.scope_string(),
                sub: session.username.clone(),
                auth_time: session.auth_time,
                nonce: req.nonce.clone(),
                code_challenge: req.code_challenge.clone(),
                sid: session.sid.clone(),
                family: random_id().map_err(crate::issue::no_randomness)?,
                expires_at: now + tenant.config.authorization_code_ttl_secs,
            };
            // Kept past its validity so a replay can still be recognised (and its tokens revoked).
            let keep_until = record.expires_at
                + tenant
                    .config
                    .access_token_ttl_secs
                    .max(tenant.config.refresh_token_ttl_secs);
            records::put(
                &*state.store,
                name,
                RecordKind::AuthorizationCode,
                &opaque_token_id(&code),
                &record,
                keep_until,
            )
            .await?;
            params.push(("code", code));
        }
        ResponseType::Token => {
            let client = tenant
                .client(&req.client_id)
                .ok_or_else(|| OAuthError::invalid_client("the client no longer exists"))?;
            let claims = AccessTokenClaims {
                iss: tenant.issuer.clone(),
                sub: session.username.clone(),
                aud: Audience(if client.audiences.is_empty() {
                    vec![client.client_id.clone()]
                } else {
                    client.audiences.clone()
                }),
                exp: now + tenant.config.access_token_ttl_secs,
                iat: now,
                nbf: now,
                jti: random_id().map_err(crate::issue::no_randomness)?,
                client_id: client.client_id.clone(),
                scope: req.scope_string(),
            };
            let token = crate::issue::access_token(state, tenant, &claims).await?;
            state
                .metrics
                .token_issued(name, gatehouse_core::GrantType::Implicit);
            params.push(("access_token", token));
            params.push(("token_type", "Bearer".into()));
            params.push((
                "expires_in",
                tenant.config.access_token_ttl_secs.to_string(),
            ));
            if let Some(scope) = req.scope_string() {
                params.push(("scope", scope));
            }
        }
    }
    if let Some(s) = &req.state {
        params.push(("state", s.clone()));
    }
    params.push(("iss", tenant.issuer.clone()));
    let borrowed: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Ok(see_other(&with_params(
        &req.redirect_uri,
        &borrowed,
        req.response_type == ResponseType::Token,
    )))
}

/// A form posted from a page of a pending sign-in: the tenant, the form, and the pending
/// request, already checked to belong to this browser and this form (CSRF).
pub struct PendingForm {
    pub tenant: std::sync::Arc<TenantRuntime>,
    pub form: Form,
    pub id: String,
    pub pending: Pending,
    pub headers: HeaderMap,
}

impl axum::extract::FromRequest<AppState> for PendingForm {
    type Rejection = Response;

    async fn from_request(
        request: axum::extract::Request,
        state: &AppState,
    ) -> Result<Self, Response> {
        use axum::extract::FromRequestParts;
        let (mut parts, body) = request.into_parts();
        let Path(name) = Path::<String>::from_request_parts(&mut parts, state)
            .await
            .map_err(|_| unknown_tenant("this address"))?;
        let tenant = state
            .directory
            .get(&name)
            .ok_or_else(|| unknown_tenant(&name))?;
        let form = Form::read(&parts.headers, body).await.map_err(|e| {
            page_error(
                &name,
                StatusCode::BAD_REQUEST,
                "Invalid request",
                &e.description,
            )
        })?;
        let (id, pending) = load_pending(state, &name, &form, &parts.headers).await?;
        Ok(PendingForm {
            tenant,
            form,
            id,
            pending,
            headers: parts.headers,
        })
    }
}

/// Loads a pending request and checks it belongs to this browser and form.
pub async fn load_pending(
    state: &AppState,
    tenant: &str,
    form: &Form,
    headers: &HeaderMap,
) -> Result<(String, Pending), Response> {
    let expired = || {
        page_error(
            tenant,
            StatusCode::BAD_REQUEST,
            "Sign-in expired",
            "This sign-in request has expired or was already completed.",
        )
    };
    let id = form.get("request").ok_or_else(expired)?.to_string();
    let pending: Pending =
        match records::get(&*state.store, tenant, RecordKind::AuthorizationRequest, &id).await {
            Ok(Some((p, _))) => p,
            Ok(None) => return Err(expired()),
            Err(e) => return Err(failure_page(tenant, e)),
        };
    let browser_ok = session::cookie(headers, BROWSER_COOKIE).is_some_and(|b| b == pending.browser);
    let csrf_ok = form.get("csrf").is_some_and(|c| c == pending.csrf);
    if !browser_ok || !csrf_ok {
        return Err(page_error(
            tenant,
            StatusCode::FORBIDDEN,
            "Request refused",
            "This form was not opened in this browser, or it has expired. Start again from the application.",
        ));
    }
    Ok((id, pending))
}
