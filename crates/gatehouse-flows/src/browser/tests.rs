//! The browser flow's decisions with a clock the tests move: sign-in, consent remembered and
//! asked again, `prompt`, `max_age`, refusals back to the client, the form binding, device
//! confirmation, and sign-out.

use super::authorize::authorize;
use super::pending::{self, Browser, Pending};
use super::{Step, consent, device, login, logout, session};
use crate::testing::{ALICE_PASSWORD, REDIRECT, World, memory_world, params};
use crate::{Error, Params};
use gatehouse_core::ErrorCode;
use gatehouse_core::pkce;

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

/// One browser: its binding cookie and session cookie.
#[derive(Default)]
struct Cookies {
    binding: Option<String>,
    session: Option<String>,
}

impl Cookies {
    fn browser(&self) -> Browser<'_> {
        Browser {
            binding: self.binding.as_deref(),
            session: self.session.as_deref(),
            address: None,
        }
    }
}

fn request(extra: &[(&str, &str)]) -> Params {
    let challenge = pkce::s256(VERIFIER);
    let mut pairs = vec![
        ("client_id", "portal"),
        ("response_type", "code"),
        ("redirect_uri", REDIRECT),
        ("scope", "openid billing.read"),
        ("state", "xyz"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    pairs.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    pairs.extend_from_slice(extra);
    params(&pairs)
}

/// Starts an authorization request in `cookies`' browser; returns its step and pending id.
async fn start(
    world: &World,
    cookies: &mut Cookies,
    extra: &[(&str, &str)],
) -> (Step, Option<(String, Pending)>) {
    let begun = authorize(
        &world.services,
        &world.tenant,
        &request(extra),
        cookies.browser(),
    )
    .await
    .unwrap();
    if let Some(b) = begun.new_browser {
        cookies.binding = Some(b);
    }
    let pending = match &begun.step {
        Step::SignIn { request } | Step::Consent(super::Ask { request, .. }) => {
            let p = pending::find(&world.services, &world.tenant, Some(request))
                .await
                .unwrap();
            Some((request.clone(), p))
        }
        _ => None,
    };
    (begun.step, pending)
}

async fn sign_in(
    world: &World,
    cookies: &mut Cookies,
    id: &str,
    pending: &Pending,
    password: &str,
) -> login::SignIn {
    let form = login::Form {
        username: "alice",
        password,
        address: None,
    };
    let outcome = login::sign_in(&world.services, &world.tenant, id, pending, form)
        .await
        .unwrap();
    if let login::SignIn::SignedIn { session_cookie, .. } = &outcome {
        cookies.session = Some(session_cookie.clone());
    }
    outcome
}

fn location(step: &Step) -> &str {
    match step {
        Step::Done { location, .. } => location,
        other => panic!("expected a redirect back to the client, got {other:?}"),
    }
}

fn refused(step: &Step) -> ErrorCode {
    match step {
        Step::Refused(r) => r.error.code,
        other => panic!("expected an error for the client, got {other:?}"),
    }
}

/// Signs alice in and allows the request: the browser then has a session and a consent.
async fn sign_in_and_allow(world: &World, cookies: &mut Cookies) -> String {
    let (step, pending) = start(world, cookies, &[]).await;
    assert!(matches!(step, Step::SignIn { .. }), "{step:?}");
    let (id, pending) = pending.unwrap();
    let login::SignIn::SignedIn { step, .. } =
        sign_in(world, cookies, &id, &pending, ALICE_PASSWORD).await
    else {
        panic!("the right password signs in");
    };
    let Step::Consent(ask) = step else {
        panic!("a first request asks for consent, got {step:?}");
    };
    assert_eq!(ask.scopes, ["openid", "billing.read"]);
    assert_eq!(
        (ask.username.as_str(), ask.client_id.as_str()),
        ("alice", "portal")
    );
    let step = consent::answer(
        &world.services,
        &world.tenant,
        &id,
        &pending,
        cookies.session.as_deref(),
        true,
    )
    .await
    .unwrap();
    location(&step).to_string()
}

#[tokio::test]
async fn sign_in_then_consent_then_a_code_and_the_consent_is_remembered() {
    let world = memory_world();
    let mut cookies = Cookies::default();
    let back = sign_in_and_allow(&world, &mut cookies).await;
    assert!(back.starts_with(&format!("{REDIRECT}?code=")), "{back}");
    assert!(
        back.contains("&state=xyz&iss=https%3A%2F%2Fauth.example.com%2Facme"),
        "{back}"
    );

    // The same browser again: straight back, no sign-in, no consent.
    let (step, _) = start(&world, &mut cookies, &[]).await;
    assert!(location(&step).contains("code="));
    // A scope not consented yet asks again.
    let (step, _) = start(&world, &mut cookies, &[("scope", "openid profile")]).await;
    assert!(matches!(step, Step::Consent(_)), "{step:?}");
}

/// Signing alice out everywhere ends her browser's session: the next request asks her to
/// sign in again.
#[tokio::test]
async fn signing_a_user_out_everywhere_ends_her_sessions() {
    let world = memory_world();
    let mut cookies = Cookies::default();
    sign_in_and_allow(&world, &mut cookies).await;
    let (step, _) = start(&world, &mut cookies, &[]).await;
    assert!(location(&step).contains("code="), "signed in: {step:?}");
    let now = world.services.now();
    crate::sign_in::sign_out_everywhere(world.services.store(), "acme", "alice", now, 3600)
        .await
        .unwrap();
    assert!(
        session::current(&world.services, &world.tenant, cookies.session.as_deref())
            .await
            .unwrap()
            .is_none()
    );
    let (step, pending) = start(&world, &mut cookies, &[]).await;
    assert!(matches!(step, Step::SignIn { .. }), "{step:?}");
    // A sign-in in a later second is a new one.
    world.clock.advance(1);
    let (id, pending) = pending.unwrap();
    let login::SignIn::SignedIn { .. } =
        sign_in(&world, &mut cookies, &id, &pending, ALICE_PASSWORD).await
    else {
        panic!("signs in again");
    };
    assert!(
        session::current(&world.services, &world.tenant, cookies.session.as_deref())
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn a_wrong_password_is_retried_and_a_finished_request_is_gone() {
    let world = memory_world();
    let mut cookies = Cookies::default();
    let (_, pending) = start(&world, &mut cookies, &[]).await;
    let (id, pending) = pending.unwrap();
    let outcome = sign_in(&world, &mut cookies, &id, &pending, "wrong").await;
    assert!(
        matches!(
            outcome,
            login::SignIn::Retry {
                message: "Wrong username or password."
            }
        ),
        "{outcome:?}"
    );
    let outcome = sign_in(&world, &mut cookies, &id, &pending, "").await;
    assert!(matches!(
        outcome,
        login::SignIn::Retry {
            message: "Enter your username and password."
        }
    ));
    let login::SignIn::SignedIn { .. } =
        sign_in(&world, &mut cookies, &id, &pending, ALICE_PASSWORD).await
    else {
        panic!("signs in");
    };
    consent::answer(
        &world.services,
        &world.tenant,
        &id,
        &pending,
        cookies.session.as_deref(),
        true,
    )
    .await
    .unwrap();
    let e = pending::load(
        &world.services,
        &world.tenant,
        Some(&id),
        cookies.binding.as_deref(),
        Some(&pending.csrf),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, Error::SignInExpired), "completed: {e:?}");
}

#[tokio::test]
async fn a_form_from_another_browser_or_without_its_csrf_token_is_refused() {
    let world = memory_world();
    let mut cookies = Cookies::default();
    let (_, pending) = start(&world, &mut cookies, &[]).await;
    let (id, pending) = pending.unwrap();
    let binding = cookies.binding.as_deref();
    let load =
        |binding, csrf| pending::load(&world.services, &world.tenant, Some(&id), binding, csrf);
    assert!(matches!(
        load(Some("other"), Some(&pending.csrf)).await,
        Err(Error::ForeignForm)
    ));
    assert!(matches!(
        load(binding, Some("forged")).await,
        Err(Error::ForeignForm)
    ));
    assert!(matches!(load(binding, None).await, Err(Error::ForeignForm)));
    assert!(load(binding, Some(&pending.csrf)).await.is_ok());
    let gone = pending::load(&world.services, &world.tenant, Some("nope"), None, None).await;
    assert!(matches!(gone, Err(Error::SignInExpired)));
    // A pending sign-in lasts ten minutes.
    world.clock.advance(pending::PENDING_TTL_SECS);
    assert!(matches!(
        load(binding, Some(&pending.csrf)).await,
        Err(Error::SignInExpired)
    ));
}

#[tokio::test]
async fn prompt_values_decide_between_sign_in_consent_and_errors() {
    let world = memory_world();
    let mut cookies = Cookies::default();
    let (step, _) = start(&world, &mut cookies, &[("prompt", "none")]).await;
    assert_eq!(refused(&step), ErrorCode::LoginRequired, "nobody signed in");

    sign_in_and_allow(&world, &mut cookies).await;
    let (step, _) = start(&world, &mut cookies, &[("prompt", "none")]).await;
    assert!(location(&step).contains("code="), "signed in and consented");
    let (step, _) = start(
        &world,
        &mut cookies,
        &[("prompt", "none"), ("scope", "openid profile")],
    )
    .await;
    assert_eq!(refused(&step), ErrorCode::ConsentRequired);

    // prompt=consent asks again although consent is remembered.
    let (step, _) = start(&world, &mut cookies, &[("prompt", "consent")]).await;
    assert!(matches!(step, Step::Consent(_)), "{step:?}");

    // prompt=login asks for the password again; signing in then satisfies it.
    let (step, pending) = start(&world, &mut cookies, &[("prompt", "login")]).await;
    assert!(matches!(step, Step::SignIn { .. }), "{step:?}");
    let (id, pending) = pending.unwrap();
    let login::SignIn::SignedIn { step, .. } =
        sign_in(&world, &mut cookies, &id, &pending, ALICE_PASSWORD).await
    else {
        panic!("signs in");
    };
    assert!(location(&step).contains("code="), "consent was remembered");

    // prompt=consent shows the consent page even right after a fresh sign-in, and the person
    // can still refuse.
    let (step, pending) = start(&world, &mut cookies, &[("prompt", "login consent")]).await;
    assert!(matches!(step, Step::SignIn { .. }), "{step:?}");
    let (id, pending) = pending.unwrap();
    let login::SignIn::SignedIn { step, .. } =
        sign_in(&world, &mut cookies, &id, &pending, ALICE_PASSWORD).await
    else {
        panic!("signs in");
    };
    assert!(matches!(step, Step::Consent(_)), "{step:?}");
    let step = consent::answer(
        &world.services,
        &world.tenant,
        &id,
        &pending,
        cookies.session.as_deref(),
        false,
    )
    .await
    .unwrap();
    assert_eq!(refused(&step), ErrorCode::AccessDenied);
}

#[tokio::test]
async fn consent_belongs_to_the_registration_not_to_the_client_id() {
    let mut world = memory_world();
    let mut cookies = Cookies::default();
    sign_in_and_allow(&world, &mut cookies).await;
    let (step, _) = start(&world, &mut cookies, &[("prompt", "none")]).await;
    assert!(location(&step).contains("code="), "consent remembered");

    // The client is deleted and the id claimed again (a new incarnation, say by another
    // namespace): alice's consent does not carry over, and prompt=none sends her code nowhere.
    let mut reborn = (*world.client("portal")).clone();
    reborn.incarnation = "i2".into();
    world
        .tenant
        .clients
        .insert("portal".into(), std::sync::Arc::new(reborn));
    let (step, _) = start(&world, &mut cookies, &[("prompt", "none")]).await;
    assert_eq!(refused(&step), ErrorCode::ConsentRequired);
    let (step, _) = start(&world, &mut cookies, &[]).await;
    assert!(matches!(step, Step::Consent(_)), "{step:?}");
}

#[tokio::test]
async fn max_age_asks_for_a_fresh_sign_in_when_the_last_is_older() {
    let world = memory_world();
    let mut cookies = Cookies::default();
    sign_in_and_allow(&world, &mut cookies).await;
    // max_age=0 is prompt=login, even for a sign-in of this very second; signing in satisfies it.
    let (step, pending) = start(&world, &mut cookies, &[("max_age", "0")]).await;
    assert!(matches!(step, Step::SignIn { .. }), "{step:?}");
    let (id, pending) = pending.unwrap();
    let login::SignIn::SignedIn { step, .. } =
        sign_in(&world, &mut cookies, &id, &pending, ALICE_PASSWORD).await
    else {
        panic!("signs in");
    };
    assert!(location(&step).contains("code="), "{step:?}");
    world.clock.advance(2);
    let (step, _) = start(&world, &mut cookies, &[("max_age", "1")]).await;
    assert!(
        matches!(step, Step::SignIn { .. }),
        "older than max_age: {step:?}"
    );
    let (step, _) = start(&world, &mut cookies, &[("max_age", "3600")]).await;
    assert!(location(&step).contains("code="));
    // The session itself ends after eight hours.
    world.clock.advance(session::SESSION_TTL_SECS);
    let (step, _) = start(&world, &mut cookies, &[]).await;
    assert!(matches!(step, Step::SignIn { .. }), "{step:?}");
}

#[tokio::test]
async fn denying_consent_goes_back_with_access_denied() {
    let world = memory_world();
    let mut cookies = Cookies::default();
    let (_, pending) = start(&world, &mut cookies, &[]).await;
    let (id, pending) = pending.unwrap();
    sign_in(&world, &mut cookies, &id, &pending, ALICE_PASSWORD).await;
    let step = consent::answer(
        &world.services,
        &world.tenant,
        &id,
        &pending,
        cookies.session.as_deref(),
        false,
    )
    .await
    .unwrap();
    assert_eq!(refused(&step), ErrorCode::AccessDenied);
    let Step::Refused(r) = step else {
        unreachable!()
    };
    assert!(r.location(&world.tenant.issuer).contains("state=xyz"));
    // Consent without a session goes to sign-in.
    let (_, pending) = start(&world, &mut Cookies::default(), &[]).await;
    let (id, pending) = pending.unwrap();
    let step = consent::answer(&world.services, &world.tenant, &id, &pending, None, true)
        .await
        .unwrap();
    assert!(matches!(step, Step::SignIn { .. }));
}

#[tokio::test]
async fn an_implicit_request_gets_a_token_in_the_fragment() {
    let world = memory_world();
    let mut cookies = Cookies::default();
    sign_in_and_allow(&world, &mut cookies).await;
    let (step, _) = start(
        &world,
        &mut cookies,
        &[("response_type", "token"), ("nonce", "n")],
    )
    .await;
    assert_eq!(
        refused(&step),
        ErrorCode::UnauthorizedClient,
        "portal may not use implicit"
    );
    let Step::Refused(r) = step else {
        unreachable!()
    };
    assert!(
        r.location(&world.tenant.issuer)
            .starts_with(&format!("{REDIRECT}#error=")),
        "in the fragment"
    );

    let legacy = [
        ("client_id", "legacy"),
        ("response_type", "token"),
        ("nonce", "n"),
    ];
    let (step, pending) = start(&world, &mut cookies, &legacy).await;
    let Step::Consent(_) = step else {
        panic!("a new client asks for consent: {step:?}")
    };
    let (id, pending) = pending.unwrap();
    let step = consent::answer(
        &world.services,
        &world.tenant,
        &id,
        &pending,
        cookies.session.as_deref(),
        true,
    )
    .await
    .unwrap();
    let Step::Done {
        location,
        issued_token,
    } = step
    else {
        panic!("{step:?}")
    };
    assert!(issued_token);
    assert!(
        location.starts_with(&format!("{REDIRECT}#access_token=")),
        "{location}"
    );
    assert!(
        location
            .contains("&token_type=Bearer&expires_in=900&scope=openid+billing.read&state=xyz&iss=")
    );
}

#[tokio::test]
async fn a_device_is_confirmed_by_a_signed_in_person_and_wrong_codes_are_counted() {
    let world = memory_world();
    let tv = world.client("tv");
    let started = crate::device_authorization::start(
        &world.services,
        &world.tenant,
        &tv,
        Some("billing.read"),
    )
    .await
    .unwrap();
    let mut cookies = Cookies::default();
    let begun = pending::begin(
        &world.services,
        &world.tenant,
        None,
        Some(started.user_code.clone()),
        cookies.browser(),
    )
    .await
    .unwrap();
    cookies.binding = begun.new_browser;
    let Step::SignIn { request: id } = begun.step else {
        panic!("signs in first");
    };
    let pending = pending::find(&world.services, &world.tenant, Some(&id))
        .await
        .unwrap();
    let login::SignIn::SignedIn { step, .. } =
        sign_in(&world, &mut cookies, &id, &pending, ALICE_PASSWORD).await
    else {
        panic!("signs in");
    };
    let Step::DeviceEntry(entry) = step else {
        panic!("then the code page, got {step:?}");
    };
    assert_eq!(
        entry.user_code, started.user_code,
        "prefilled from the link"
    );

    let confirm = |code: &str, allow: Option<bool>| {
        let pending = pending.clone();
        let (world, id, cookie) = (&world, id.clone(), cookies.session.clone());
        let code = code.to_string();
        async move {
            device::confirm(
                &world.services,
                &world.tenant,
                &id,
                pending,
                cookie.as_deref(),
                device::Answer {
                    user_code: &code,
                    allow,
                },
            )
            .await
            .unwrap()
        }
    };
    let lowercase = started.user_code.to_lowercase().replace('-', " ");
    let Step::Consent(ask) = confirm(&lowercase, None).await else {
        panic!("the code, however typed, finds its device")
    };
    assert_eq!(
        ask.user_code.as_deref(),
        Some(lowercase.as_str()),
        "the answer carries the code"
    );
    assert_eq!(
        (ask.client_id.as_str(), ask.scopes.as_slice()),
        ("tv", &["billing.read".to_string()][..])
    );
    let Step::DeviceDone { allowed: true } = confirm(&lowercase, Some(true)).await else {
        panic!("allowed")
    };
    let caller = crate::token::Caller {
        tenant: &world.tenant,
        client: &tv,
        address: None,
    };
    let poll = params(&[
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ("device_code", &started.device_code),
    ]);
    let issued = crate::token::token(&world.services, &caller, &poll)
        .await
        .unwrap();
    assert_eq!(issued.response.scope.as_deref(), Some("billing.read"));
    let Step::DeviceEntry(entry) = confirm(&started.user_code, None).await else {
        panic!()
    };
    assert!(
        entry.error.unwrap().contains("not valid"),
        "a confirmed code is used up"
    );

    // Wrong codes are counted per person: after the limit even a right code is refused.
    let second = crate::device_authorization::start(&world.services, &world.tenant, &tv, None)
        .await
        .unwrap();
    for _ in 1..device::MAX_WRONG_CODES {
        let Step::DeviceEntry(entry) = confirm("BCDF-GHJK", None).await else {
            panic!()
        };
        assert!(entry.error.unwrap().contains("not valid"));
    }
    let Step::DeviceEntry(entry) = confirm(&second.user_code, None).await else {
        panic!()
    };
    assert!(
        entry.error.unwrap().contains("Too many wrong codes"),
        "locked even for the right code"
    );
    // The lock lasts its window; by then this code has expired too.
    world.clock.advance(gatehouse_core::throttle::WINDOW_SECS);
    let Step::DeviceEntry(entry) = confirm(&second.user_code, None).await else {
        panic!()
    };
    assert!(entry.error.unwrap().contains("expired"));
}

#[tokio::test]
async fn sign_out_checks_where_it_returns_to_before_ending_the_session() {
    let world = memory_world();
    let mut cookies = Cookies::default();
    sign_in_and_allow(&world, &mut cookies).await;
    let end = |pairs: &[(&str, &str)]| {
        let p = params(pairs);
        let (world, cookie) = (&world, cookies.session.clone());
        async move { logout::end_session(&world.services, &world.tenant, &p, cookie.as_deref()).await }
    };
    let e = end(&[("post_logout_redirect_uri", "https://evil.example.com/")])
        .await
        .unwrap_err();
    assert_eq!(
        e.to_oauth().description,
        "post_logout_redirect_uri needs id_token_hint or client_id."
    );
    let e = end(&[
        ("client_id", "portal"),
        ("post_logout_redirect_uri", "https://evil.example.com/"),
    ])
    .await
    .unwrap_err();
    assert_eq!(
        e.to_oauth().description,
        "post_logout_redirect_uri is not registered for this client."
    );
    assert!(
        session::current(&world.services, &world.tenant, cookies.session.as_deref())
            .await
            .unwrap()
            .is_some(),
        "a refused sign-out ends nothing"
    );
    // Someone else's ID token (anyone can hold one of this issuer: their own) vouches for
    // nothing here: the person is asked.
    let foreign = crate::mint::id_token(
        &world.tenant,
        &gatehouse_core::id_token::IdTokenClaims {
            iss: world.tenant.issuer.clone(),
            sub: "mallory".into(),
            aud: "portal".into(),
            azp: "portal".into(),
            exp: world.now() + 60,
            iat: world.now(),
            auth_time: world.now(),
            nonce: None,
            at_hash: None,
            sid: None,
            user_claims: serde_json::Map::new(),
        },
    )
    .unwrap();
    assert!(matches!(
        end(&[("id_token_hint", &foreign)]).await.unwrap(),
        logout::EndSession::Confirm { .. }
    ));
    // Without an id_token_hint (any page could have sent the browser here) the person is
    // asked first; a forged or missing confirmation ends nothing.
    let logout::EndSession::Confirm { fields } = end(&[("state", "s")]).await.unwrap() else {
        panic!("asks first");
    };
    let confirm = fields
        .iter()
        .find(|(k, _)| k == logout::CONFIRM_FIELD)
        .map(|(_, v)| v.clone())
        .unwrap();
    assert!(fields.contains(&("state".to_string(), "s".to_string())));
    let forged = end(&[(logout::CONFIRM_FIELD, "0123456789abcdef0123456789abcdef")])
        .await
        .unwrap();
    assert!(matches!(forged, logout::EndSession::Confirm { .. }));
    assert!(
        session::current(&world.services, &world.tenant, cookies.session.as_deref())
            .await
            .unwrap()
            .is_some(),
        "still signed in"
    );
    let out = end(&[(logout::CONFIRM_FIELD, &confirm)]).await.unwrap();
    assert_eq!(
        out,
        logout::EndSession::SignedOut(logout::SignedOut { redirect: None })
    );
    assert!(
        session::current(&world.services, &world.tenant, cookies.session.as_deref())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_repeated_parameter_goes_back_to_the_client_unless_it_decides_where_to() {
    let world = memory_world();
    let challenge = pkce::s256(VERIFIER);
    let query = |extra: &str| {
        format!(
            "client_id=portal&response_type=code&redirect_uri={}&state=xyz&code_challenge={challenge}&code_challenge_method=S256&scope=openid&{extra}",
            form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>()
        )
    };
    let begin = |q: String| {
        let world = &world;
        async move {
            let params = crate::Params::parse_noting_repeats(q.as_bytes());
            authorize(&world.services, &world.tenant, &params, Browser::default()).await
        }
    };
    let step = begin(query("scope=profile")).await.unwrap().step;
    let Step::Refused(refusal) = &step else {
        panic!("expected a redirect with the error, got {step:?}");
    };
    let location = refusal.location(&world.tenant.issuer);
    assert!(
        location.starts_with(&format!("{REDIRECT}?error=invalid_request")),
        "{location}"
    );
    assert!(
        location.contains("parameter+scope+is+repeated"),
        "{location}"
    );
    assert!(location.contains("&state=xyz&iss="), "{location}");
    // A repeated client_id or redirect_uri leaves no safe place to redirect to.
    for extra in [
        "client_id=tv",
        "redirect_uri=https%3A%2F%2Fevil.example.com%2F",
    ] {
        let e = begin(query(extra)).await.unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidRequest, "{extra}");
    }
}

#[tokio::test]
async fn one_address_starts_only_so_many_sign_ins() {
    let world = memory_world();
    let from: std::net::IpAddr = "192.0.2.50".parse().unwrap();
    let anonymous = |address| Browser {
        binding: None,
        session: None,
        address: Some(address),
    };
    for _ in 0..pending::MAX_STARTED_PER_ADDRESS {
        authorize(
            &world.services,
            &world.tenant,
            &request(&[]),
            anonymous(from),
        )
        .await
        .unwrap();
    }
    let e = authorize(
        &world.services,
        &world.tenant,
        &request(&[]),
        anonymous(from),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::TemporarilyUnavailable);
    // Someone else is not affected.
    authorize(
        &world.services,
        &world.tenant,
        &request(&[]),
        anonymous("198.51.100.50".parse().unwrap()),
    )
    .await
    .unwrap();
}

fn signed_in(cookies: &Cookies, from: std::net::IpAddr) -> Browser<'_> {
    Browser {
        address: Some(from),
        ..cookies.browser()
    }
}

/// A signed-in browser that gets its code at once waited for nobody: an office behind one
/// address may use its applications past the limit on started sign-ins, while sign-ins that
/// wait for a person still count.
#[tokio::test]
async fn answers_given_at_once_do_not_count_as_started_sign_ins() {
    let world = memory_world();
    let from: std::net::IpAddr = "192.0.2.60".parse().unwrap();
    let mut cookies = Cookies::default();
    sign_in_and_allow(&world, &mut cookies).await;
    for _ in 0..=pending::MAX_STARTED_PER_ADDRESS {
        let begun = authorize(
            &world.services,
            &world.tenant,
            &request(&[]),
            signed_in(&cookies, from),
        )
        .await
        .unwrap();
        assert!(location(&begun.step).contains("code="));
        // `prompt=none` refused at once does not count either.
        let begun = authorize(
            &world.services,
            &world.tenant,
            &request(&[("prompt", "none"), ("scope", "openid profile")]),
            signed_in(&cookies, from),
        )
        .await
        .unwrap();
        assert_eq!(refused(&begun.step), ErrorCode::ConsentRequired);
    }
    let anonymous = Browser {
        binding: None,
        session: None,
        address: Some(from),
    };
    for _ in 0..pending::MAX_STARTED_PER_ADDRESS {
        authorize(&world.services, &world.tenant, &request(&[]), anonymous)
            .await
            .unwrap();
    }
    let e = authorize(&world.services, &world.tenant, &request(&[]), anonymous)
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::TemporarilyUnavailable);
}
