//! The token endpoint's rules at the flow level, with a clock the tests move: grant checks,
//! code replay, refresh rotation and reuse, device polling, assertion replay. The replay and
//! rotation rules run on the memory store and on a real Redis.

use super::*;
use crate::introspection::active_claims;
use crate::testing::{
    ALICE_PASSWORD, PORTAL_SECRET, REDIRECT, World, cluster_world, memory_world, params,
    proxied_redis_world, redis_world, reporter_assertion,
};
use gatehouse_core::ErrorCode;
use gatehouse_core::grant::authorization_code::CodeRecord;
use gatehouse_core::grant::device_code::{DeviceRecord, DeviceState};
use gatehouse_core::pkce;
use gatehouse_store::records;

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

async fn ask(world: &World, client: &str, pairs: &[(&str, &str)]) -> Result<Issued, Error> {
    let client = world.client(client);
    let caller = Caller {
        tenant: &world.tenant,
        client: &client,
        address: None,
    };
    token(&world.services, &caller, &params(pairs)).await
}

fn code_of(e: &Error) -> ErrorCode {
    e.code()
}

async fn is_active(world: &World, access_token: &str) -> bool {
    active_claims(&world.services, &world.tenant, access_token)
        .await
        .unwrap()
        .is_some()
}

/// Issues a code as the browser flow does (sealed, its family started), for alice with
/// `scope`.
async fn code_for(world: &World, scope: &str) -> String {
    crate::codes::issue(&world.services, &world.tenant, &code_record(world, scope))
        .await
        .unwrap()
}

fn code_record(world: &World, scope: &str) -> CodeRecord {
    CodeRecord {
        client_id: "portal".into(),
        client_incarnation: Some(world.client("portal").incarnation.clone()),
        redirect_uri: REDIRECT.into(),
        redirect_uri_named: true,
        scope: Some(scope.into()),
        sub: "alice".into(),
        auth_time: world.now(),
        nonce: Some("n-1".into()),
        code_challenge: Some(pkce::s256(VERIFIER)),
        sid: "sid-1".into(),
        family: world.services.random.id().unwrap(),
        expires_at: world.now() + 60,
    }
}

async fn redeem(world: &World, code: &str) -> Result<Issued, Error> {
    ask(
        world,
        "portal",
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
    )
    .await
}

/// A refresh token of a new grant: alice's code for `billing.read`, redeemed.
async fn fresh_refresh_token(world: &World) -> String {
    let code = code_for(world, "billing.read").await;
    redeem(world, &code)
        .await
        .unwrap()
        .response
        .refresh_token
        .unwrap()
}

async fn refresh_with(world: &World, refresh_token: &str) -> Result<Issued, Error> {
    ask(
        world,
        "portal",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

#[tokio::test]
async fn the_grant_is_checked_once_before_anything_else() {
    let world = memory_world();
    let e = ask(&world, "billing", &[("scope", "billing.read")])
        .await
        .unwrap_err();
    assert_eq!(
        (code_of(&e), e.to_oauth().description.as_str()),
        (ErrorCode::InvalidRequest, "missing parameter grant_type")
    );
    let e = ask(&world, "billing", &[("grant_type", "implicit")])
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::UnsupportedGrantType);
    let e = ask(&world, "billing", &[("grant_type", "password")])
        .await
        .unwrap_err();
    assert_eq!(
        code_of(&e),
        ErrorCode::UnauthorizedClient,
        "before any missing parameter"
    );
    let e = ask(&world, "portal", &[("grant_type", "authorization_code")])
        .await
        .unwrap_err();
    assert_eq!(
        e.to_oauth().description,
        "missing parameter code",
        "an allowed grant then names what it lacks"
    );
    let issued = ask(&world, "billing", &[("grant_type", "client_credentials")])
        .await
        .unwrap();
    assert_eq!(issued.grant, GrantType::ClientCredentials);
    assert_eq!(issued.response.expires_in, 900);
    assert!(is_active(&world, &issued.response.access_token).await);
}

async fn a_replayed_code_revokes_what_it_issued(world: World) {
    let code = code_for(&world, "openid offline_access billing.read").await;
    let first = redeem(&world, &code).await.unwrap().response;
    assert!(first.id_token.is_some(), "openid gets an ID token");
    let refresh_token = first.refresh_token.clone().unwrap();
    assert!(is_active(&world, &first.access_token).await);
    // RFC 7662: a live refresh token introspects as active to its own client, and only to it.
    let portal = world.client("portal");
    let introspected = |client: std::sync::Arc<gatehouse_core::ClientConfig>| {
        let world = &world;
        let token = refresh_token.clone();
        async move {
            serde_json::to_value(
                crate::introspection::introspect(&world.services, &world.tenant, &client, &token)
                    .await
                    .unwrap(),
            )
            .unwrap()
        }
    };
    let live = introspected(portal.clone()).await;
    assert_eq!(
        (
            &live["active"],
            &live["token_use"],
            &live["sub"],
            &live["client_id"]
        ),
        (
            &serde_json::json!(true),
            &serde_json::json!("refresh_token"),
            &serde_json::json!("alice"),
            &serde_json::json!("portal")
        ),
        "{live}"
    );
    assert_eq!(introspected(world.client("billing")).await["active"], false);

    let replay = redeem(&world, &code).await.unwrap_err();
    assert_eq!(
        replay.to_oauth().description,
        "the authorization code was already used; the tokens it issued are revoked"
    );
    assert!(
        !is_active(&world, &first.access_token).await,
        "its access token is revoked"
    );
    let e = refresh_with(&world, &refresh_token).await.unwrap_err();
    assert_eq!(
        (code_of(&e), e.to_oauth().description.as_str()),
        (ErrorCode::InvalidGrant, "the refresh token was revoked"),
        "and its refresh token, which was revoked, not reused"
    );
    assert_eq!(introspected(portal).await["active"], false);
}

#[tokio::test]
async fn a_replayed_code_revokes_what_it_issued_in_memory() {
    a_replayed_code_revokes_what_it_issued(memory_world()).await;
}

#[tokio::test]
async fn a_replayed_code_revokes_what_it_issued_on_redis() {
    a_replayed_code_revokes_what_it_issued(redis_world().await).await;
}

/// Codes issued before sealed codes (a handle whose record the store holds) still redeem
/// once, and a replay still revokes what they issued.
async fn a_stored_code_from_before_sealed_codes(world: World) {
    let mut record = code_record(&world, "offline_access billing.read");
    // Stored records from before did not name the client's registration.
    record.client_incarnation = None;
    let code = world.services.random.token().unwrap();
    records::put(
        &*world.services.store,
        "acme",
        &opaque_token_id(&code),
        &record,
        world.now() + 90_000,
    )
    .await
    .unwrap();
    assert!(!code.contains('.'));
    let first = redeem(&world, &code).await.unwrap().response;
    assert!(is_active(&world, &first.access_token).await);
    let replay = redeem(&world, &code).await.unwrap_err();
    assert_eq!(
        replay.to_oauth().description,
        "the authorization code was already used; the tokens it issued are revoked"
    );
    assert!(!is_active(&world, &first.access_token).await);
}

#[tokio::test]
async fn a_stored_code_from_before_sealed_codes_in_memory() {
    a_stored_code_from_before_sealed_codes(memory_world()).await;
}

#[tokio::test]
async fn a_stored_code_from_before_sealed_codes_on_redis() {
    a_stored_code_from_before_sealed_codes(redis_world().await).await;
}

/// A sealed code is only what its tenant sealed: altered, or another tenant's, it is unknown
/// (and spends nothing); one whose family the store lost (its data gone) is refused, so a
/// code spent before the loss is not spent anew.
async fn a_sealed_code_is_refused_altered_or_without_its_family(world: World) {
    let code = code_for(&world, "billing.read").await;
    let (nonce, sealed) = code.split_once('.').unwrap();
    let mut altered = sealed.to_string();
    let last = if altered.ends_with('A') { "B" } else { "A" };
    altered.replace_range(altered.len() - 1.., last);
    for forged in [format!("{nonce}.{altered}"), format!("{nonce}x.{sealed}")] {
        let e = redeem(&world, &forged).await.unwrap_err();
        assert_eq!(
            (code_of(&e), e.to_oauth().description.as_str()),
            (
                ErrorCode::InvalidGrant,
                "unknown or expired authorization code"
            )
        );
    }
    // Sealed under another KEK (another installation's, or a KEK replaced since).
    let other_kek = gatehouse_core::keys::KeyEncryptionKey::generate()
        .unwrap()
        .0;
    let foreign = other_kek
        .code_key("acme")
        .seal([7; 16], &code_record(&world, "billing.read"))
        .unwrap();
    let e = redeem(&world, &foreign).await.unwrap_err();
    assert_eq!(
        e.to_oauth().description,
        "unknown or expired authorization code"
    );
    assert!(
        redeem(&world, &code).await.is_ok(),
        "the real one still works"
    );

    // Sealed with the tenant's key, but its family never started (as after a store that
    // lost its data): refused, nothing issued.
    let orphan = world
        .tenant
        .codes
        .seal([8; 16], &code_record(&world, "billing.read"))
        .unwrap();
    let e = redeem(&world, &orphan).await.unwrap_err();
    assert_eq!(
        (code_of(&e), e.to_oauth().description.as_str()),
        (
            ErrorCode::InvalidGrant,
            "unknown or expired authorization code"
        )
    );
}

#[tokio::test]
async fn a_sealed_code_is_refused_altered_or_without_its_family_in_memory() {
    a_sealed_code_is_refused_altered_or_without_its_family(memory_world()).await;
}

#[tokio::test]
async fn a_sealed_code_is_refused_altered_or_without_its_family_on_redis() {
    a_sealed_code_is_refused_altered_or_without_its_family(redis_world().await).await;
}

#[tokio::test]
async fn a_code_expires_with_the_clock_and_must_match_its_request() {
    let world = memory_world();
    let code = code_for(&world, "billing.read").await;
    world.clock.advance(61);
    let e = redeem(&world, &code).await.unwrap_err();
    assert_eq!(
        e.to_oauth().description,
        "the authorization code has expired"
    );

    let code = code_for(&world, "billing.read").await;
    let wrong_verifier = ask(
        &world,
        "portal",
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &"x".repeat(43)),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(
        wrong_verifier.to_oauth().description,
        "code_verifier does not match the code_challenge"
    );
}

async fn refresh_tokens_rotate_and_a_reused_one_revokes_the_family(world: World) {
    let code = code_for(&world, "billing.read").await;
    let first = redeem(&world, &code).await.unwrap().response;
    let rt1 = first.refresh_token.unwrap();

    world.clock.advance(10);
    let second = refresh_with(&world, &rt1).await.unwrap().response;
    let rt2 = second.refresh_token.clone().unwrap();
    assert_ne!(rt1, rt2, "rotation hands out a successor");
    assert!(is_active(&world, &second.access_token).await);

    let third = refresh_with(&world, &rt2).await.unwrap().response;
    let rt3 = third.refresh_token.unwrap();

    // rt1 again: reuse. Everything of the grant goes, the newest tokens included.
    let e = refresh_with(&world, &rt1).await.unwrap_err();
    assert_eq!(
        e.to_oauth().description,
        "the refresh token was already used; every token of its grant is now revoked"
    );
    assert!(!is_active(&world, &first.access_token).await);
    assert!(!is_active(&world, &second.access_token).await);
    assert!(!is_active(&world, &third.access_token).await);
    assert_eq!(
        code_of(&refresh_with(&world, &rt3).await.unwrap_err()),
        ErrorCode::InvalidGrant
    );
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_family_in_memory() {
    refresh_tokens_rotate_and_a_reused_one_revokes_the_family(memory_world()).await;
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_family_on_redis() {
    refresh_tokens_rotate_and_a_reused_one_revokes_the_family(redis_world().await).await;
}

/// A refresh token carries its record, signed: one altered (a wider scope written in), or
/// signed for another tenant, does not open; and one whose grant the store no longer knows
/// (its data lost: flushed, or restarted empty) is refused like an unknown handle, spending
/// nothing, while its family's access tokens went with the data.
#[tokio::test]
async fn a_refresh_token_is_refused_altered_foreign_or_once_the_store_lost_its_grant() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let world = redis_world().await;
    let rt = fresh_refresh_token(&world).await;

    let (payload, tag) = rt.split_once('.').unwrap();
    // Another scope of the same length written in, so the record still reads: only the tag
    // refuses it.
    let mut record = URL_SAFE_NO_PAD.decode(payload).unwrap();
    let at = record
        .windows(12)
        .position(|w| w == b"billing.read")
        .expect("the scope is in the payload");
    record[at..at + 12].copy_from_slice(b"billing:root");
    let wider = URL_SAFE_NO_PAD.encode(&record);
    let foreign = gatehouse_core::keys::KeyEncryptionKey::generate()
        .unwrap()
        .0
        .refresh_token_key("acme")
        .seal("n", &world.tenant.refresh_tokens.open(&rt).unwrap());
    for bad in [format!("{wider}.{tag}"), foreign, format!("{payload}.")] {
        let e = refresh_with(&world, &bad).await.unwrap_err();
        assert_eq!(
            (code_of(&e), e.to_oauth().description.as_str()),
            (ErrorCode::InvalidGrant, "unknown or expired refresh token"),
            "{bad}"
        );
    }

    let port = world.redis.as_ref().unwrap().port;
    gatehouse_testkit::redis_command(port, &["FLUSHALL"]).unwrap();
    let e = refresh_with(&world, &rt).await.unwrap_err();
    assert_eq!(
        (code_of(&e), e.to_oauth().description.as_str()),
        (ErrorCode::InvalidGrant, "unknown or expired refresh token")
    );
    assert_eq!(
        world
            .services
            .store()
            .spent_by(
                "acme",
                gatehouse_store::RecordKind::RefreshToken,
                &opaque_token_id(&rt),
                Some(&world.tenant.refresh_tokens.open(&rt).unwrap().family),
            )
            .await
            .unwrap(),
        None,
        "a refused rotation spends nothing"
    );
}

/// A refresh token issued before signed tokens (a random handle whose record the store holds)
/// still rotates, into a signed successor, and its reuse still revokes the grant.
#[tokio::test]
async fn a_refresh_handle_from_before_signed_tokens_still_rotates() {
    let world = memory_world();
    let code = code_for(&world, "billing.read").await;
    let first = redeem(&world, &code).await.unwrap().response;
    let record = world
        .tenant
        .refresh_tokens
        .open(first.refresh_token.as_deref().unwrap())
        .unwrap();
    let handle = world.services.random.token().unwrap();
    records::put(
        &*world.services.store,
        "acme",
        &opaque_token_id(&handle),
        &record,
        record.expires_at,
    )
    .await
    .unwrap();
    let rotated = refresh_with(&world, &handle).await.unwrap().response;
    let successor = rotated.refresh_token.unwrap();
    assert!(world.tenant.refresh_tokens.open(&successor).is_some());
    assert!(refresh_with(&world, &successor).await.is_ok());
    let e = refresh_with(&world, &handle).await.unwrap_err();
    assert_eq!(
        e.to_oauth().description,
        "the refresh token was already used; every token of its grant is now revoked"
    );
    assert!(!is_active(&world, &rotated.access_token).await);
}

#[tokio::test]
async fn a_refresh_token_is_the_client_incarnations_and_expires_with_its_family() {
    let world = memory_world();
    let issued = ask(
        &world,
        "portal",
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", ALICE_PASSWORD),
            ("scope", "billing.read"),
        ],
    )
    .await
    .unwrap();
    let rt = issued.response.refresh_token.unwrap();
    let e = ask(
        &world,
        "tv",
        &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
    )
    .await
    .unwrap_err();
    assert_eq!(
        e.to_oauth().description,
        "the refresh token was issued to another client"
    );
    assert!(
        refresh_with(&world, &rt).await.is_ok(),
        "and the other client did not spend it"
    );

    world.clock.advance(86_400);
    let issued = ask(
        &world,
        "portal",
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", ALICE_PASSWORD),
        ],
    )
    .await
    .unwrap();
    let rt = issued.response.refresh_token.unwrap();
    world.clock.advance(86_400);
    let e = refresh_with(&world, &rt).await.unwrap_err();
    assert_eq!(
        code_of(&e),
        ErrorCode::InvalidGrant,
        "expired with its family"
    );
}

async fn start_device(world: &World) -> (String, String) {
    let tv = world.client("tv");
    let started = crate::device_authorization::start(
        &world.services,
        &world.tenant,
        &tv,
        Some("billing.read"),
    )
    .await
    .unwrap();
    assert_eq!(started.interval, 5);
    (started.device_code, started.user_code)
}

async fn poll_once(world: &World, device_code: &str) -> Result<Issued, Error> {
    ask(
        world,
        "tv",
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device_code),
        ],
    )
    .await
}

#[tokio::test]
async fn device_polling_waits_slows_down_expires_and_redeems_once() {
    let world = memory_world();
    let (device_code, _) = start_device(&world).await;
    let e = poll_once(&world, &device_code).await.unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::AuthorizationPending);
    world.clock.advance(2);
    let e = poll_once(&world, &device_code).await.unwrap_err();
    assert_eq!(
        code_of(&e),
        ErrorCode::SlowDown,
        "polled within the interval"
    );
    assert!(
        e.to_oauth().description.contains("wait 10 seconds"),
        "the interval grew"
    );
    world.clock.advance(10);
    let e = poll_once(&world, &device_code).await.unwrap_err();
    assert_eq!(
        code_of(&e),
        ErrorCode::AuthorizationPending,
        "at the new interval"
    );

    // Expiry without waiting ten minutes.
    world.clock.advance(600);
    let e = poll_once(&world, &device_code).await.unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::ExpiredToken);

    // Approved: tokens once, then the code is spent.
    let (device_code, _) = start_device(&world).await;
    let id = opaque_token_id(&device_code);
    let mut record = records::get::<DeviceRecord>(&*world.services.store, "acme", &id)
        .await
        .unwrap()
        .unwrap();
    record.state = DeviceState::Approved {
        sub: "alice".into(),
        auth_time: world.now(),
    };
    records::put(
        &*world.services.store,
        "acme",
        &id,
        &record,
        world.now() + 900,
    )
    .await
    .unwrap();
    let issued = poll_once(&world, &device_code).await.unwrap();
    assert!(issued.response.refresh_token.is_some());
    assert_eq!(issued.response.scope.as_deref(), Some("billing.read"));
    world.clock.advance(5);
    let e = poll_once(&world, &device_code).await.unwrap_err();
    assert_eq!(e.to_oauth().description, "the device code was already used");

    // Denied.
    let (device_code, _) = start_device(&world).await;
    let id = opaque_token_id(&device_code);
    let mut record = records::get::<DeviceRecord>(&*world.services.store, "acme", &id)
        .await
        .unwrap()
        .unwrap();
    record.state = DeviceState::Denied;
    records::put(
        &*world.services.store,
        "acme",
        &id,
        &record,
        world.now() + 900,
    )
    .await
    .unwrap();
    assert_eq!(
        code_of(&poll_once(&world, &device_code).await.unwrap_err()),
        ErrorCode::AccessDenied
    );
}

async fn an_assertion_works_once(world: World) {
    let token_endpoint = format!("{}/oauth2/token", world.tenant.issuer);
    let client_assertion = reporter_assertion("reporter", &token_endpoint, world.now(), "c-1");
    let grant = reporter_assertion("alice", &token_endpoint, world.now(), "g-1");
    let reporter = world.client("reporter");
    let credentials = params(&[
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", &client_assertion),
    ]);
    let authenticate = || {
        crate::client_auth::authenticate(
            &world.services,
            &world.tenant,
            crate::client_auth::Credentials {
                address: None,
                authorization: None,
                params: &credentials,
            },
        )
    };
    assert_eq!(authenticate().await.unwrap().client_id, "reporter");
    let e = authenticate().await.unwrap_err();
    assert_eq!(
        (code_of(&e), e.to_oauth().description.as_str()),
        (
            ErrorCode::InvalidClient,
            "the assertion was already used (jti replay)"
        )
    );

    let jwt_bearer = |assertion: String| {
        let world = &world;
        let reporter = reporter.clone();
        async move {
            let caller = Caller {
                tenant: &world.tenant,
                client: &reporter,
                address: None,
            };
            token(
                &world.services,
                &caller,
                &params(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", &assertion),
                ]),
            )
            .await
        }
    };
    let issued = jwt_bearer(grant.clone()).await.unwrap();
    assert!(is_active(&world, &issued.response.access_token).await);
    // Subjects the tenant does not grant the reporter, or that are nobody, get nothing: another
    // user, another client, a user that does not exist.
    for (sub, jti) in [
        ("bob", "g-2"),
        ("client:portal", "g-3"),
        ("portal", "g-4"),
        ("nobody", "g-5"),
    ] {
        let e = jwt_bearer(reporter_assertion(sub, &token_endpoint, world.now(), jti))
            .await
            .unwrap_err();
        assert_eq!(code_of(&e), ErrorCode::InvalidGrant, "{sub}");
        assert!(
            e.to_oauth().description.contains("may not assert"),
            "{sub}: {}",
            e.to_oauth().description
        );
    }
    // Itself, in either spelling, is a client subject, never a user's.
    for (sub, jti) in [("reporter", "g-6"), ("client:reporter", "g-7")] {
        let issued = jwt_bearer(reporter_assertion(sub, &token_endpoint, world.now(), jti))
            .await
            .unwrap();
        let claims = crate::introspection::active_claims(
            &world.services,
            &world.tenant,
            &issued.response.access_token,
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(claims.sub, "client:reporter");
    }
    let e = jwt_bearer(grant).await.unwrap_err();
    assert_eq!(
        (code_of(&e), e.to_oauth().description.as_str()),
        (
            ErrorCode::InvalidGrant,
            "the assertion was already used (jti replay)"
        )
    );
}

#[tokio::test]
async fn an_assertion_works_once_in_memory() {
    an_assertion_works_once(memory_world()).await;
}

#[tokio::test]
async fn an_assertion_works_once_on_redis() {
    an_assertion_works_once(redis_world().await).await;
}

#[tokio::test]
async fn a_client_secret_is_verified_once_then_remembered() {
    let world = memory_world();
    let with = |secret: &str| params(&[("client_id", "portal"), ("client_secret", secret)]);
    for secret in [PORTAL_SECRET, PORTAL_SECRET] {
        let p = with(secret);
        let credentials = crate::client_auth::Credentials {
            address: None,
            authorization: None,
            params: &p,
        };
        let client = crate::client_auth::authenticate(&world.services, &world.tenant, credentials)
            .await
            .unwrap();
        assert_eq!(client.client_id, "portal");
    }
    let p = with("wrong");
    let credentials = crate::client_auth::Credentials {
        address: None,
        authorization: None,
        params: &p,
    };
    let e = crate::client_auth::authenticate(&world.services, &world.tenant, credentials)
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::InvalidClient);
}

async fn authenticate_from(
    world: &World,
    address: &str,
    client_id: &str,
    secret: &str,
) -> Result<std::sync::Arc<gatehouse_core::ClientConfig>, Error> {
    let p = params(&[("client_id", client_id), ("client_secret", secret)]);
    let credentials = crate::client_auth::Credentials {
        address: Some(address.parse().unwrap()),
        authorization: None,
        params: &p,
    };
    crate::client_auth::authenticate(&world.services, &world.tenant, credentials).await
}

/// F12 and F23 of the trust boundary: wrong secrets are counted before argon2, so a burst gets
/// no more verifications than the limit; an unknown client and a wrong secret look the same;
/// a full argon2 queue refuses at once with `temporarily_unavailable`.
#[tokio::test]
async fn wrong_client_secrets_are_counted_and_look_like_unknown_clients() {
    use crate::client_auth::{AUTHENTICATION_FAILED, TOO_MANY_FAILURES};
    let mut world = memory_world();
    let unknown = authenticate_from(&world, "192.0.2.1", "nobody", "x")
        .await
        .unwrap_err();
    let wrong = authenticate_from(&world, "192.0.2.1", "portal", "x")
        .await
        .unwrap_err();
    for e in [&unknown, &wrong] {
        assert_eq!(
            (code_of(e), e.to_oauth().description.as_str()),
            (ErrorCode::InvalidClient, AUTHENTICATION_FAILED)
        );
    }

    // The right secret by the wrong method (portal is registered for client_secret_post) fails
    // the same way, after the same work.
    let p = params(&[]);
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("portal:{PORTAL_SECRET}")
        )
    );
    let e = crate::client_auth::authenticate(
        &world.services,
        &world.tenant,
        crate::client_auth::Credentials {
            address: Some("192.0.2.1".parse().unwrap()),
            authorization: Some(&basic),
            params: &p,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.to_oauth().description, AUTHENTICATION_FAILED);

    let w = &world;
    // A client starting thirty workers at once: one check, and all of them in.
    let starting = race(30, || {
        authenticate_from(w, "192.0.2.9", "tv", PORTAL_SECRET)
    })
    .await;
    assert!(starting.iter().all(Result::is_ok));
    let burst = race(30, || authenticate_from(w, "192.0.2.7", "portal", "guess")).await;
    let told = |text: &str| {
        burst
            .iter()
            .filter(|r| r.as_ref().is_err_and(|e| e.to_oauth().description == text))
            .count()
    };
    assert_eq!(
        (told(AUTHENTICATION_FAILED), told(TOO_MANY_FAILURES)),
        (10, 20)
    );
    let e = authenticate_from(w, "192.0.2.7", "portal", PORTAL_SECRET)
        .await
        .unwrap_err();
    assert_eq!(e.to_oauth().description, TOO_MANY_FAILURES);
    authenticate_from(w, "198.51.100.1", "portal", PORTAL_SECRET)
        .await
        .expect("the client itself, from its own address");

    world.services.argon2 = gatehouse_core::argon2_workers::Argon2Workers::with_capacity(1, 0);
    let e = authenticate_from(&world, "198.51.100.2", "billing", "not-yet-cached")
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::TemporarilyUnavailable);
}

/// Redis goes away just before it would run the step that spends and issues: the client gets
/// `temporarily_unavailable`, and afterwards the same code and the same refresh token work.
#[tokio::test]
async fn a_failure_before_redis_runs_the_step_leaves_no_trace() {
    let (world, proxy) = proxied_redis_world().await;
    let code = code_for(&world, "billing.read").await;
    proxy.cut_before("EVALSHA");
    let e = redeem(&world, &code).await.unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::TemporarilyUnavailable, "{e:?}");
    assert!(!proxy.armed());
    let first = redeem(&world, &code)
        .await
        .expect("the same code works after recovery");
    let rt = first.response.refresh_token.unwrap();

    proxy.cut_before("EVALSHA");
    let e = refresh_with(&world, &rt).await.unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::TemporarilyUnavailable, "{e:?}");
    let second = refresh_with(&world, &rt)
        .await
        .expect("the same refresh token works after recovery");
    assert!(
        is_active(&world, &first.response.access_token).await,
        "the grant was not revoked"
    );
    assert!(is_active(&world, &second.response.access_token).await);

    // The replay rules still hold afterwards.
    let e = redeem(&world, &code).await.unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::InvalidGrant);
    assert!(
        !is_active(&world, &second.response.access_token).await,
        "the replay revoked the grant"
    );
}

/// Redis runs the step and the answer is lost: the server asks which attempt spent the token,
/// finds its own, and answers with what it minted. The grant lives on; the replay rules hold.
#[tokio::test]
async fn an_answer_lost_after_redis_ran_the_step_is_answered_after_all() {
    let (world, proxy) = proxied_redis_world().await;
    // Redis learns the script first (a cut at its first EVALSHA would cut a NOSCRIPT answer).
    let warm = code_for(&world, "billing.read").await;
    redeem(&world, &warm).await.unwrap();
    let code = code_for(&world, "billing.read").await;
    proxy.cut_after("EVALSHA");
    let first = redeem(&world, &code)
        .await
        .expect("the code's answer recovered");
    assert!(!proxy.armed(), "the cut happened");
    let rt = first.response.refresh_token.unwrap();
    assert!(is_active(&world, &first.response.access_token).await);
    proxy.cut_after("EVALSHA");
    let second = refresh_with(&world, &rt)
        .await
        .expect("the rotation's answer recovered");
    assert!(is_active(&world, &second.response.access_token).await);
    assert!(is_active(&world, &first.response.access_token).await);
    let e = refresh_with(&world, &rt).await.unwrap_err();
    assert_eq!(
        e.to_oauth().description,
        "the refresh token was already used; every token of its grant is now revoked"
    );
}

/// Redis runs the step, the answer is lost, and Redis stays away longer than a request waits:
/// 503. Once it is back, the server learns its attempt went through and records it; the same
/// token presented again then issues (once), and a racing second presentation does not.
#[tokio::test]
async fn an_answer_lost_for_longer_lets_the_same_token_be_presented_once_more() {
    let (world, proxy) = proxied_redis_world().await;
    let code = code_for(&world, "billing.read").await;
    let first = redeem(&world, &code).await.unwrap();
    let rt = first.response.refresh_token.unwrap();
    proxy.cut_after_then_down("EVALSHA");
    let e = refresh_with(&world, &rt).await.unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::TemporarilyUnavailable, "{e:?}");
    proxy.set_down(false);
    let id = gatehouse_core::token::opaque_token_id(&rt);
    let mut recorded = false;
    for _ in 0..100 {
        let key = format!("{{t:acme}}:rt.unanswered:{id}");
        if world.redis_has(&key) {
            recorded = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(recorded, "the server recorded the lost answer");
    let retried = refresh_with(&world, &rt)
        .await
        .expect("presented once more after the lost answer")
        .response;
    assert!(is_active(&world, &retried.access_token).await);
    let e = refresh_with(&world, &rt).await.unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::InvalidGrant, "once only");
}

async fn race<T, F>(n: usize, attempt: impl Fn() -> F) -> Vec<Result<T, Error>>
where
    F: std::future::Future<Output = Result<T, Error>>,
{
    futures::future::join_all((0..n).map(|_| attempt())).await
}

async fn codes_and_refresh_tokens_race(world: World, n: usize) {
    // A code presented n times at once: one wins, the others revoke what it got.
    let code = code_for(&world, "billing.read").await;
    let results = race(n, || redeem(&world, &code)).await;
    let winners: Vec<&Issued> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "{n} at once: exactly one wins");
    assert!(
        !is_active(&world, &winners[0].response.access_token).await,
        "the losers' replay revoked the winner's token"
    );
    let rt = winners[0].response.refresh_token.clone().unwrap();
    assert_eq!(
        code_of(&refresh_with(&world, &rt).await.unwrap_err()),
        ErrorCode::InvalidGrant
    );

    // A refresh token presented n times at once.
    let rt = fresh_refresh_token(&world).await;
    let results = race(n, || refresh_with(&world, &rt)).await;
    let winners: Vec<&Issued> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1);
    if n > 1 {
        assert!(!is_active(&world, &winners[0].response.access_token).await);
        let successor = winners[0].response.refresh_token.clone().unwrap();
        assert_eq!(
            code_of(&refresh_with(&world, &successor).await.unwrap_err()),
            ErrorCode::InvalidGrant
        );
    }

    // A device code polled n times at once once approved: one gets tokens, the rest are told
    // it was used; the winner keeps its tokens (a device code has no replay to punish).
    let (device_code, _) = start_device(&world).await;
    let id = opaque_token_id(&device_code);
    let mut record = records::get::<DeviceRecord>(&*world.services.store, "acme", &id)
        .await
        .unwrap()
        .unwrap();
    record.state = DeviceState::Approved {
        sub: "alice".into(),
        auth_time: world.now(),
    };
    records::put(
        &*world.services.store,
        "acme",
        &id,
        &record,
        world.now() + 900,
    )
    .await
    .unwrap();
    let results = race(n, || poll_once(&world, &device_code)).await;
    let winners: Vec<&Issued> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1);
    assert!(is_active(&world, &winners[0].response.access_token).await);
    for loser in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(
            loser.to_oauth().description,
            "the device code was already used"
        );
    }
}

#[tokio::test]
async fn races_on_one_code_token_or_device_code_have_one_winner_in_memory() {
    for n in [2, 50] {
        codes_and_refresh_tokens_race(memory_world(), n).await;
    }
}

#[tokio::test]
async fn races_on_one_code_token_or_device_code_have_one_winner_on_redis() {
    for n in [2, 50] {
        codes_and_refresh_tokens_race(redis_world().await, n).await;
    }
}

#[tokio::test]
async fn races_on_one_code_token_or_device_code_have_one_winner_on_a_cluster() {
    for n in [2, 50] {
        codes_and_refresh_tokens_race(cluster_world().await, n).await;
    }
}

#[tokio::test]
async fn a_user_removed_from_the_tenant_gets_nothing_more() {
    let mut world = memory_world();
    let code = code_for(&world, "openid offline_access billing.read").await;
    let issued = redeem(&world, &code).await.unwrap().response;
    let refresh_token = issued.refresh_token.unwrap();
    let access_token = issued.access_token;
    let waiting_code = code_for(&world, "openid billing.read").await;

    world.tenant.config.users.retain(|u| u.username != "alice");
    for (what, e) in [
        (
            "refresh",
            refresh_with(&world, &refresh_token).await.unwrap_err(),
        ),
        ("code", redeem(&world, &waiting_code).await.unwrap_err()),
    ] {
        assert_eq!(
            (code_of(&e), e.to_oauth().description.as_str()),
            (ErrorCode::InvalidGrant, "user alice no longer exists"),
            "{what}"
        );
    }
    let portal = world.client("portal");
    let shown =
        crate::introspection::introspect(&world.services, &world.tenant, &portal, &refresh_token)
            .await
            .unwrap();
    assert_eq!(serde_json::to_value(shown).unwrap()["active"], false);
    assert!(
        !is_active(&world, &access_token).await,
        "their access tokens introspect inactive"
    );
}

/// A full argon2 queue answers 503 without counting: people who retry after it are not
/// locked out by someone else's flood.
#[tokio::test]
async fn a_full_argon2_queue_is_no_failure() {
    let mut world = memory_world();
    let workers = world.services.argon2.clone();
    world.services.argon2 = gatehouse_core::argon2_workers::Argon2Workers::with_capacity(1, 0);
    for _ in 0..12 {
        let e = password_from(&world, "192.0.2.30", ALICE_PASSWORD)
            .await
            .unwrap_err();
        assert_eq!(code_of(&e), ErrorCode::TemporarilyUnavailable);
        let e = authenticate_from(&world, "192.0.2.30", "portal", PORTAL_SECRET)
            .await
            .unwrap_err();
        assert_eq!(code_of(&e), ErrorCode::TemporarilyUnavailable);
    }
    world.services.argon2 = workers;
    password_from(&world, "192.0.2.30", ALICE_PASSWORD)
        .await
        .expect("the queue has room again: not locked");
    authenticate_from(&world, "192.0.2.30", "portal", PORTAL_SECRET)
        .await
        .expect("nor is the client");
}

#[tokio::test]
async fn only_confidential_clients_may_introspect() {
    let world = memory_world();
    let issued = ask(&world, "billing", &[("grant_type", "client_credentials")])
        .await
        .unwrap()
        .response;
    let legacy = world.client("legacy");
    assert!(legacy.public);
    let e = crate::introspection::introspect(
        &world.services,
        &world.tenant,
        &legacy,
        &issued.access_token,
    )
    .await
    .unwrap_err();
    assert_eq!(code_of(&e), ErrorCode::InvalidClient);
    let reporter = world.client("reporter");
    let shown = crate::introspection::introspect(
        &world.services,
        &world.tenant,
        &reporter,
        &issued.access_token,
    )
    .await
    .unwrap();
    assert_eq!(
        serde_json::to_value(shown).unwrap()["active"],
        true,
        "private_key_jwt is confidential"
    );
}

async fn password_from(world: &World, address: &str, password: &str) -> Result<Issued, Error> {
    let client = world.client("portal");
    let caller = Caller {
        tenant: &world.tenant,
        client: &client,
        address: Some(address.parse().unwrap()),
    };
    let pairs = [
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", password),
        ("scope", "billing.read"),
    ];
    token(&world.services, &caller, &params(&pairs)).await
}

/// F3 and F13 of the trust boundary: a burst of guesses gets no more verifications than the
/// limit, whatever races; the lock is per (username, address), so a stranger who knows the
/// username cannot lock its owner out; an operator can unlock.
async fn sign_in_limits_hold_under_a_burst(world: World) {
    let world = &world;
    let burst = race(60, || password_from(world, "192.0.2.7", "guess")).await;
    let said = |r: &Result<Issued, Error>| match r {
        Ok(_) => "issued".to_string(),
        Err(e) => e.to_oauth().description,
    };
    let verified = burst
        .iter()
        .filter(|r| said(r) == crate::sign_in::WRONG_CREDENTIALS)
        .count();
    let locked = burst
        .iter()
        .filter(|r| said(r) == crate::sign_in::LOCKED)
        .count();
    assert_eq!(
        (verified, locked),
        (5, 55), // throttle::MAX_FAILURES_PER_USER_AND_ADDRESS verified
        "{:?}",
        burst.iter().map(said).collect::<Vec<_>>()
    );
    // The right password from the guessing address is refused too...
    let e = password_from(world, "192.0.2.7", ALICE_PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(e.to_oauth().description, crate::sign_in::LOCKED);
    // ...but alice from her own address signs in.
    password_from(world, "198.51.100.1", ALICE_PASSWORD)
        .await
        .unwrap();
    // An operator's unlock lets a locked (username, address) pair in again; an address that
    // guessed past its own limit (any usernames) stays locked for the window.
    for _ in 0..6 {
        let _ = password_from(world, "203.0.113.9", "guess").await;
    }
    let e = password_from(world, "203.0.113.9", ALICE_PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(e.to_oauth().description, crate::sign_in::LOCKED);
    crate::sign_in::unlock(world.services.store(), "acme", "alice", world.now())
        .await
        .unwrap();
    password_from(world, "203.0.113.9", ALICE_PASSWORD)
        .await
        .unwrap();
    let e = password_from(world, "192.0.2.7", ALICE_PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(e.to_oauth().description, crate::sign_in::LOCKED);
}

#[tokio::test]
async fn sign_in_limits_hold_under_a_burst_in_memory() {
    sign_in_limits_hold_under_a_burst(memory_world()).await;
}

#[tokio::test]
async fn sign_in_limits_hold_under_a_burst_on_redis() {
    sign_in_limits_hold_under_a_burst(redis_world().await).await;
}
