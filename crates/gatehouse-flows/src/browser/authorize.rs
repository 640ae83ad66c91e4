//! The authorization endpoint's decisions (RFC 6749 section 3.1, OpenID Connect Core 3.1.2):
//! validate the request, then send the browser to sign-in, to consent, or back to the client
//! with a code (RFC 6749 4.1.2, RFC 9207 `iss`) or, for implicit, a token in the fragment
//! (4.2.2). `prompt` and `max_age` are decided here.

use super::pending::{self, Begun, Browser, Pending, signed_in_user};
use super::session::Session;
use super::{Ask, Entry, Step, consent};
use crate::redirect::{RedirectError, with_params};
use crate::{Error, Params, ServedTenant, Services, codes, mint};
use gatehouse_core::grant::GrantContext;
use gatehouse_core::grant::authorization_code::{
    AuthorizationRequest, AuthorizeError, AuthorizeParams, CodeRecord, ResponseType,
    validate_request,
};
use gatehouse_core::grant::resolve_audience;
use gatehouse_core::{ClientConfig, ErrorCode, OAuthError};

/// The authorization endpoint: validates the request and starts a sign-in for it. Problems
/// with the client or its redirect URI are `Err` (shown on a page, never redirected); the rest
/// go back to the registered redirect URI as [`Step::Refused`].
///
/// # Errors
/// As above, or the store failing.
pub async fn authorize(
    services: &Services,
    tenant: &ServedTenant,
    params: &Params,
    browser: Browser<'_>,
) -> Result<Begun, Error> {
    let asked = AuthorizeParams {
        client_id: params.get("client_id"),
        redirect_uri: params.get("redirect_uri"),
        response_type: params.get("response_type"),
        scope: params.get("scope"),
        state: params.get("state"),
        nonce: params.get("nonce"),
        code_challenge: params.get("code_challenge"),
        code_challenge_method: params.get("code_challenge_method"),
        prompt: params.get("prompt"),
        max_age: params.get("max_age"),
        response_mode: params.get("response_mode"),
        request_object: params.get("request").is_some() || params.get("request_uri").is_some(),
    };
    let client = asked
        .client_id
        .and_then(|id| tenant.client(id))
        .map(AsRef::as_ref);
    // RFC 6749 3.1: a repeated parameter is an error. Which client and which redirect URI
    // decide where errors go: repeated themselves, they make the page the only safe answer.
    let repeated = params.repeated();
    if let Some(name) = repeated
        .iter()
        .find(|n| *n == "client_id" || *n == "redirect_uri")
    {
        return Err(OAuthError::invalid_request(format!("parameter {name} is repeated")).into());
    }
    let validated = validate_request(&tenant.config, client, &asked, services.now());
    let validated = match (validated, repeated.first()) {
        (Ok(request), Some(name)) => Err(AuthorizeError::Redirect {
            redirect_uri: request.redirect_uri,
            response_type: request.response_type,
            state: request.state,
            error: OAuthError::invalid_request(format!("parameter {name} is repeated")),
        }),
        (
            Err(AuthorizeError::Redirect {
                redirect_uri,
                response_type,
                state,
                ..
            }),
            Some(name),
        ) => Err(AuthorizeError::Redirect {
            redirect_uri,
            response_type,
            state,
            error: OAuthError::invalid_request(format!("parameter {name} is repeated")),
        }),
        (other, _) => other,
    };
    match validated {
        Ok(request) => pending::begin(services, tenant, Some(request), None, browser).await,
        Err(AuthorizeError::Page(e)) => Err(e.into()),
        Err(AuthorizeError::Redirect {
            redirect_uri,
            response_type,
            state,
            error,
        }) => Ok(Begun {
            step: Step::Refused(RedirectError {
                redirect_uri,
                response_type,
                state,
                error,
            }),
            new_browser: None,
        }),
    }
}

fn refuse(req: &AuthorizationRequest, code: ErrorCode, description: &str) -> Step {
    Step::Refused(RedirectError {
        redirect_uri: req.redirect_uri.clone(),
        response_type: req.response_type,
        state: req.state.clone(),
        error: OAuthError::new(code, description),
    })
}

/// Moves a pending sign-in on: to sign-in, to consent, or back to the client. `fresh_login`
/// says the person has just signed in for this very request (which satisfies `prompt=login`
/// and `max_age=0`).
///
/// # Errors
/// The store failing, signing or randomness failing on the way back to the client.
pub async fn proceed(
    services: &Services,
    tenant: &ServedTenant,
    id: &str,
    pending: &Pending,
    session: Option<Session>,
    fresh_login: bool,
) -> Result<Step, Error> {
    let now = services.now();
    let sign_in = || Step::SignIn {
        request: id.to_string(),
    };
    let Some(req) = &pending.request else {
        // A device confirmation: signed in, the person enters or confirms the user code.
        return Ok(match signed_in_user(tenant, session) {
            Some(s) => Step::DeviceEntry(Entry {
                request: id.to_string(),
                csrf: pending.csrf.clone(),
                username: s.username,
                user_code: pending.user_code.clone().unwrap_or_default(),
                error: None,
            }),
            None => sign_in(),
        });
    };
    // `max_age=0` is `prompt=login` (OpenID Connect Core 3.1.2.1): seconds are too coarse to
    // tell a sign-in of this very second from an older one.
    let usable = signed_in_user(tenant, session).filter(|s| {
        (!req.prompt_login || fresh_login)
            && req.max_age.is_none_or(|max| {
                if max == 0 {
                    fresh_login
                } else {
                    now.saturating_sub(s.auth_time) <= max
                }
            })
    });
    let Some(session) = usable else {
        if req.prompt_none {
            return Ok(refuse(req, ErrorCode::LoginRequired, "nobody is signed in"));
        }
        return Ok(sign_in());
    };
    let covered = consent::covers(services, tenant, &session.username, req).await?;
    // `prompt=consent` asks the person again whatever they allowed before, even right after
    // signing in; only their answer on the consent page completes the request.
    if !covered || req.prompt_consent {
        if req.prompt_none {
            return Ok(refuse(
                req,
                ErrorCode::ConsentRequired,
                "the user has not consented to this client and scope",
            ));
        }
        return Ok(Step::Consent(Ask {
            request: id.to_string(),
            csrf: pending.csrf.clone(),
            username: session.username,
            client_id: req.client_id.clone(),
            scopes: req.scopes.clone(),
            user_code: None,
        }));
    }
    complete(services, tenant, id, pending, &session).await
}

/// Ends the pending sign-in and sends the browser back to the client with a code (or, for
/// implicit, a token).
///
/// # Errors
/// The store, signing or randomness failing; `invalid_request` for a device confirmation.
pub async fn complete(
    services: &Services,
    tenant: &ServedTenant,
    id: &str,
    pending: &Pending,
    session: &Session,
) -> Result<Step, Error> {
    let Some(req) = &pending.request else {
        return Err(
            OAuthError::invalid_request("this sign-in is not an authorization request").into(),
        );
    };
    pending::finish(services, tenant, id).await?;
    let client = tenant
        .client(&req.client_id)
        .ok_or_else(|| OAuthError::invalid_client("the client no longer exists"))?;
    let mut params: Vec<(&str, String)> = Vec::new();
    let implicit = req.response_type == ResponseType::Token;
    if implicit {
        let (token, scope) = implicit_token(services, tenant, client, req, session).await?;
        params.push(("access_token", token));
        params.push(("token_type", "Bearer".into()));
        params.push((
            "expires_in",
            tenant.config.access_token_ttl_secs.to_string(),
        ));
        if let Some(scope) = scope {
            params.push(("scope", scope));
        }
    } else {
        let code = issue_code(services, tenant, client, req, session).await?;
        params.push(("code", code));
    }
    if let Some(s) = &req.state {
        params.push(("state", s.clone()));
    }
    params.push(("iss", tenant.issuer.clone()));
    let borrowed: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Ok(Step::Done {
        location: with_params(&req.redirect_uri, &borrowed, implicit),
        issued_token: implicit,
    })
}

/// A fresh authorization code for the request, bound to the client's registration.
async fn issue_code(
    services: &Services,
    tenant: &ServedTenant,
    client: &ClientConfig,
    req: &AuthorizationRequest,
    session: &Session,
) -> Result<String, Error> {
    let config = &tenant.config;
    let record = CodeRecord {
        client_id: req.client_id.clone(),
        client_incarnation: Some(client.incarnation.clone()),
        redirect_uri: req.redirect_uri.clone(),
        redirect_uri_named: req.redirect_uri_named,
        scope: req.scope_string(),
        sub: session.username.clone(),
        auth_time: session.auth_time,
        nonce: req.nonce.clone(),
        code_challenge: req.code_challenge.clone(),
        sid: session.sid.clone(),
        family: services.random.id()?,
        expires_at: services.now() + config.authorization_code_ttl_secs,
    };
    codes::issue(services, tenant, &record).await
}

/// The implicit grant's access token (RFC 6749 section 4.2.2) and its scope.
async fn implicit_token(
    services: &Services,
    tenant: &ServedTenant,
    client: &ClientConfig,
    req: &AuthorizationRequest,
    session: &Session,
) -> Result<(String, Option<String>), Error> {
    let ctx = GrantContext {
        tenant: &tenant.config,
        issuer: &tenant.issuer,
        client,
        now: services.now(),
    };
    let claims = ctx.access_token_claims(
        session.username.clone(),
        resolve_audience(client, &[])?,
        req.scope_string(),
        services.random.id()?,
    );
    let minted = mint::access_token(services, tenant, &claims).await?;
    mint::store_alone(services, tenant, &minted, &claims).await?;
    Ok((minted.token, claims.scope))
}
