//! The behaviour every `Store` implementation must show, as one suite the tests of each
//! backend run (memory, a single Redis, a Redis Cluster).

use gatehouse_core::clock::{Clock, SystemClock};
use gatehouse_store::{Joining, RecordKind, Store};

pub fn unix_now() -> u64 {
    SystemClock.now()
}

use gatehouse_core::keys::{KeyState, SigningKeyRecord};
use gatehouse_core::token::{AccessTokenClaims, Audience};
use gatehouse_core::{
    ClientAuthMethod, ClientConfig, GrantType, SigningAlgorithm, TenantConfig, TokenFormat,
};

/// Spending `id`, a `kind` kept with `family`, for an access token `jti` (valid 30 s) that
/// joins `family` as `joining`; the spent mark and the family live until `until`.
pub fn spending_in_family(
    now: u64,
    kind: RecordKind,
    family: &'static str,
    id: &'static str,
    jti: &'static str,
    until: u64,
    joining: Joining,
) -> gatehouse_store::Issue<'static> {
    use gatehouse_store::{FamilyMember, Issue, Spend};
    Issue {
        spend: Some(Spend {
            kind,
            id,
            until,
            attempt: jti,
            family: Some(family),
        }),
        family: Some(FamilyMember {
            family,
            jti,
            exp: now + 30,
            until,
            joining,
        }),
        ..Issue::default()
    }
}

/// Presenting refresh token `id` of `family` (valid an hour), rotated into an access token
/// `jti` and a successor of the same id.
pub fn rotation(
    now: u64,
    family: &'static str,
    id: &'static str,
    jti: &'static str,
) -> gatehouse_store::Issue<'static> {
    let rotation = spending_in_family(
        now,
        RecordKind::RefreshToken,
        family,
        id,
        jti,
        now + 3_600,
        Joining::Existing,
    );
    gatehouse_store::Issue {
        successor: Some(jti),
        ..rotation
    }
}

fn tenant(name: &str) -> TenantConfig {
    TenantConfig {
        name: name.into(),
        display_name: Some(format!("{name} corp")),
        grant_types: vec![GrantType::ClientCredentials],
        access_token_format: TokenFormat::Jwt,
        access_token_ttl_secs: 900,
        refresh_token_ttl_secs: 3600,
        refresh_token_rotation: true,
        authorization_code_ttl_secs: 60,
        pkce_required: true,
        signing_algorithm: SigningAlgorithm::ES256,
        scopes: vec![],
        users: vec![],
        review_service_account_tokens: false,
    }
}

fn client(id: &str) -> ClientConfig {
    ClientConfig {
        client_id: id.into(),
        source: format!("ns/{id}"),
        client_name: None,
        public: false,
        grant_types: vec![GrantType::ClientCredentials],
        redirect_uris: vec![],
        post_logout_redirect_uris: vec![],
        scopes: vec!["a".into()],
        audiences: vec![],
        token_endpoint_auth_method: ClientAuthMethod::ClientSecretBasic,
        secret_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        jwks: None,
        may_assert: gatehouse_core::config::AssertableSubjects::default(),
        incarnation: String::new(),
        workload: None,
        federated: None,
        extra: std::collections::BTreeMap::default(),
    }
}

fn key(kid: &str) -> SigningKeyRecord {
    SigningKeyRecord {
        kid: kid.into(),
        algorithm: SigningAlgorithm::ES256,
        state: KeyState::Active,
        created_at: 1,
        activated_at: Some(1),
        retired_at: None,
        public_jwk: serde_json::json!({"kty": "EC", "kid": kid}),
        sealed_private_key: "sealed".into(),
    }
}

fn claims(exp: u64) -> AccessTokenClaims {
    AccessTokenClaims {
        iss: "i".into(),
        sub: "s".into(),
        aud: Audience(vec!["a".into()]),
        exp,
        iat: 0,
        nbf: 0,
        jti: "j".into(),
        client_id: "c".into(),
        scope: None,
        act: None,
        fam: None,
    }
}

/// Runs every check; `prefix` keeps tenants of parallel runs against one backend apart.
pub async fn run_all(store: &dyn Store, prefix: &str) {
    configuration_round_trips(store, &format!("{prefix}-cfg")).await;
    versions_move_on_every_write(store, &format!("{prefix}-ver")).await;
    tenants_are_isolated(store, &format!("{prefix}-iso")).await;
    deleted_tenant_comes_back_with_a_new_version(store, &format!("{prefix}-del")).await;
    purge_removes_runtime_data_of_one_tenant_only(store, &format!("{prefix}-purge")).await;
    opaque_tokens_live_until_exp(store, &format!("{prefix}-tok")).await;
    revocations_expire(store, &format!("{prefix}-rev")).await;
    failures_count_in_a_window(store, &format!("{prefix}-fail")).await;
    records_are_used_once_and_families_revoke(store, &format!("{prefix}-rec")).await;
    issuing_is_atomic_and_revocation_cannot_miss_a_token(store, &format!("{prefix}-issue")).await;
    a_family_started_before_its_first_token(store, &format!("{prefix}-start")).await;
    a_spending_whose_answer_was_lost_can_be_retried_once(store, &format!("{prefix}-retry"), None)
        .await;
    // The same with the marks kept with the family the spent code and tokens carry.
    a_spending_whose_answer_was_lost_can_be_retried_once(
        store,
        &format!("{prefix}-retry-fam"),
        Some("fam"),
    )
    .await;
    signing_a_user_out_ends_their_grants_and_sessions(store, &format!("{prefix}-out")).await;
    store.ping().await.expect("ping");
}

async fn configuration_round_trips(store: &dyn Store, t: &str) {
    assert_eq!(
        store.load_tenant(t).await.unwrap(),
        None,
        "unknown tenant loads as None"
    );
    store.put_tenant(&tenant(t)).await.unwrap();
    store.put_client(t, &client("c1")).await.unwrap();
    store.put_client(t, &client("c2")).await.unwrap();
    store
        .put_signing_keys(t, &[key("k1"), key("k2")])
        .await
        .unwrap();
    let b = store.load_tenant(t).await.unwrap().expect("tenant");
    assert_eq!(b.config, tenant(t));
    let mut ids: Vec<_> = b.clients.iter().map(|c| c.client_id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["c1", "c2"]);
    assert_eq!(b.clients[0], client(&b.clients[0].client_id));
    assert_eq!(b.keys, vec![key("k1"), key("k2")]);
    let settings = store.tenant_settings(t).await.unwrap();
    assert_eq!(
        (settings.config, settings.keys),
        (Some(tenant(t)), vec![key("k1"), key("k2")]),
        "settings and keys without the clients"
    );
    assert_eq!(
        store.tenant_settings(&format!("{t}-none")).await.unwrap(),
        gatehouse_store::TenantSettings::default()
    );

    let mut changed = client("c1");
    changed.scopes = vec!["b".into()];
    store.put_client(t, &changed).await.unwrap();
    store.delete_client(t, "c2").await.unwrap();
    store.delete_client(t, "never-existed").await.unwrap();
    let b = store.load_tenant(t).await.unwrap().expect("tenant");
    assert_eq!(b.clients, vec![changed]);
}

async fn versions_move_on_every_write(store: &dyn Store, t: &str) {
    store.put_tenant(&tenant(t)).await.unwrap();
    let v1 = store.tenant_versions().await.unwrap()[t];
    store.put_client(t, &client("c")).await.unwrap();
    let v2 = store.tenant_versions().await.unwrap()[t];
    assert_ne!(v1, v2, "put_client bumps the version");
    store.put_signing_keys(t, &[key("k")]).await.unwrap();
    let v3 = store.tenant_versions().await.unwrap()[t];
    assert_ne!(v2, v3, "put_signing_keys bumps the version");
    store.delete_client(t, "c").await.unwrap();
    let v4 = store.tenant_versions().await.unwrap()[t];
    assert_ne!(v3, v4, "delete_client bumps the version");
    store.delete_client(t, "c").await.unwrap();
    assert_eq!(
        store.tenant_versions().await.unwrap()[t],
        v4,
        "deleting nothing changes nothing"
    );
}

async fn tenants_are_isolated(store: &dyn Store, t: &str) {
    let (a, b) = (format!("{t}-a"), format!("{t}-b"));
    store.put_tenant(&tenant(&a)).await.unwrap();
    store.put_tenant(&tenant(&b)).await.unwrap();
    store.put_client(&a, &client("shared-id")).await.unwrap();
    assert!(
        store
            .load_tenant(&b)
            .await
            .unwrap()
            .unwrap()
            .clients
            .is_empty()
    );
    let future = unix_now() + 60;
    store
        .put_opaque_token(&a, "tok", &claims(future))
        .await
        .unwrap();
    assert!(store.get_opaque_token(&b, "tok").await.unwrap().is_none());
    store.revoke_jti(&a, "jti", future).await.unwrap();
    assert!(!store.is_revoked(&b, "jti").await.unwrap());
}

async fn deleted_tenant_comes_back_with_a_new_version(store: &dyn Store, t: &str) {
    store.put_tenant(&tenant(t)).await.unwrap();
    store.put_client(t, &client("c")).await.unwrap();
    let before = store.tenant_versions().await.unwrap()[t];
    store.delete_tenant(t).await.unwrap();
    assert!(!store.tenant_versions().await.unwrap().contains_key(t));
    assert_eq!(store.load_tenant(t).await.unwrap(), None);
    store.put_tenant(&tenant(t)).await.unwrap();
    let after = store.tenant_versions().await.unwrap()[t];
    assert_ne!(
        before, after,
        "a recreated tenant never repeats a version a server has seen"
    );
    assert!(
        store
            .load_tenant(t)
            .await
            .unwrap()
            .unwrap()
            .clients
            .is_empty(),
        "clients do not come back"
    );
}

async fn purge_removes_runtime_data_of_one_tenant_only(store: &dyn Store, t: &str) {
    let other = format!("{t}-other");
    let later = unix_now() + 600;
    for name in [t, other.as_str()] {
        store.put_tenant(&tenant(name)).await.unwrap();
        store.put_client(name, &client("c")).await.unwrap();
        store
            .put_opaque_token(name, "tok", &claims(later))
            .await
            .unwrap();
        store.revoke_jti(name, "j", later).await.unwrap();
        for i in 0..1500 {
            store
                .put_record(
                    name,
                    RecordKind::RefreshToken,
                    &format!("r{i}"),
                    "{}",
                    later,
                )
                .await
                .unwrap();
        }
    }
    assert_eq!(
        store.get_client(t, "c").await.unwrap().map(|c| c.client_id),
        Some("c".to_string())
    );
    assert_eq!(store.get_client(t, "nobody").await.unwrap(), None);

    store.delete_tenant(t).await.unwrap();
    assert!(
        store.get_opaque_token(t, "tok").await.unwrap().is_some(),
        "taking a tenant out of service keeps its runtime data"
    );
    assert_eq!(store.get_client(t, "c").await.unwrap(), None);
    let removed = store.purge_tenant(t).await.unwrap();
    assert!(removed >= 1502, "removed {removed}");
    assert!(store.get_opaque_token(t, "tok").await.unwrap().is_none());
    assert!(!store.is_revoked(t, "j").await.unwrap());
    assert!(
        store
            .get_record(t, RecordKind::RefreshToken, "r1499")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.purge_tenant(t).await.unwrap(), 0, "idempotent");

    assert!(
        store
            .get_opaque_token(&other, "tok")
            .await
            .unwrap()
            .is_some()
    );
    assert!(store.is_revoked(&other, "j").await.unwrap());
    assert!(
        store
            .get_record(&other, RecordKind::RefreshToken, "r1499")
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store
            .load_tenant(&other)
            .await
            .unwrap()
            .unwrap()
            .clients
            .len(),
        1
    );
}

async fn opaque_tokens_live_until_exp(store: &dyn Store, t: &str) {
    let now = unix_now();
    store
        .put_opaque_token(t, "live", &claims(now + 60))
        .await
        .unwrap();
    assert_eq!(
        store.get_opaque_token(t, "live").await.unwrap(),
        Some(claims(now + 60))
    );
    store
        .put_opaque_token(t, "dead", &claims(now.saturating_sub(1)))
        .await
        .unwrap();
    assert_eq!(
        store.get_opaque_token(t, "dead").await.unwrap(),
        None,
        "expired tokens are gone"
    );
    assert!(store.delete_opaque_token(t, "live").await.unwrap());
    assert!(!store.delete_opaque_token(t, "live").await.unwrap());
    assert_eq!(store.get_opaque_token(t, "live").await.unwrap(), None);
}

async fn revocations_expire(store: &dyn Store, t: &str) {
    let now = unix_now();
    assert!(!store.is_revoked(t, "j1").await.unwrap());
    store.revoke_jti(t, "j1", now + 60).await.unwrap();
    assert!(store.is_revoked(t, "j1").await.unwrap());
    store
        .revoke_jti(t, "j2", now.saturating_sub(1))
        .await
        .unwrap();
    assert!(
        !store.is_revoked(t, "j2").await.unwrap(),
        "a revocation ends when the token would have expired"
    );
}

async fn failures_count_in_a_window(store: &dyn Store, t: &str) {
    assert_eq!(store.failure_count(t, "user:a").await.unwrap(), 0);
    assert_eq!(store.record_failure(t, "user:a", 60).await.unwrap(), 1);
    assert_eq!(store.record_failure(t, "user:a", 60).await.unwrap(), 2);
    assert_eq!(store.record_failure(t, "user:b", 60).await.unwrap(), 1);
    assert_eq!(store.failure_count(t, "user:a").await.unwrap(), 2);
    store.clear_failures(t, "user:a").await.unwrap();
    assert_eq!(store.failure_count(t, "user:a").await.unwrap(), 0);
    assert_eq!(store.failure_count(t, "user:b").await.unwrap(), 1);
    store.forgive_failure(t, "user:b").await.unwrap();
    store.forgive_failure(t, "user:b").await.unwrap();
    assert_eq!(
        store.failure_count(t, "user:b").await.unwrap(),
        0,
        "never below zero"
    );
    store.forgive_failure(t, "user:none").await.unwrap();
    assert_eq!(store.record_failure(t, "user:none", 60).await.unwrap(), 1);
}

async fn records_are_used_once_and_families_revoke(store: &dyn Store, t: &str) {
    let now = unix_now();
    let kind = RecordKind::RefreshToken;
    assert_eq!(store.get_record(t, kind, "r1").await.unwrap(), None);
    store
        .put_record(t, kind, "r1", r#"{"a":1}"#, now + 60)
        .await
        .unwrap();
    assert_eq!(
        store.get_record(t, kind, "r1").await.unwrap().as_deref(),
        Some(r#"{"a":1}"#)
    );
    assert_eq!(
        store
            .get_record(t, RecordKind::AuthorizationCode, "r1")
            .await
            .unwrap(),
        None,
        "kinds do not mix"
    );
    assert!(
        store.mark_used(t, kind, "r1", now + 60).await.unwrap(),
        "first use wins"
    );
    assert!(
        !store.mark_used(t, kind, "r1", now + 60).await.unwrap(),
        "second use loses"
    );
    // Written again (an assertion's jti is stored, then spent): still spent.
    store
        .put_record(t, kind, "r1", r#"{"a":2}"#, now + 60)
        .await
        .unwrap();
    assert!(
        !store.mark_used(t, kind, "r1", now + 60).await.unwrap(),
        "a put after mark_used stays used"
    );
    store.delete_record(t, kind, "r1").await.unwrap();
    assert_eq!(store.get_record(t, kind, "r1").await.unwrap(), None);
    store
        .put_record(t, kind, "old", "{}", now.saturating_sub(1))
        .await
        .unwrap();
    assert_eq!(
        store.get_record(t, kind, "old").await.unwrap(),
        None,
        "expired records are gone"
    );
    assert!(
        store
            .claim_once(t, RecordKind::AssertionJti, "j", now + 60)
            .await
            .unwrap()
    );
    assert!(
        !store
            .claim_once(t, RecordKind::AssertionJti, "j", now + 60)
            .await
            .unwrap()
    );
}

/// Issuing is all or nothing, spends once, and never slips a token past a family's revocation.
async fn issuing_is_atomic_and_revocation_cannot_miss_a_token(store: &dyn Store, t: &str) {
    use gatehouse_store::{FamilyMember, Issue, Issued, Spend};
    let now = unix_now();
    let opaque = claims(now + 30);
    let spend = Spend {
        kind: RecordKind::AuthorizationCode,
        id: "code-1",
        until: now + 60,
        attempt: "jti-1",
        family: None,
    };
    let member = |jti: &'static str| FamilyMember {
        family: "fam",
        jti,
        exp: now + 30,
        until: now + 60,
        joining: Joining::Starts,
    };
    let joining = |jti: &'static str| FamilyMember {
        joining: Joining::Existing,
        ..member(jti)
    };
    // A rotation into a family the store does not know (never started, or lost with the
    // store's data) is refused, and spends nothing.
    let orphan = Issue {
        spend: Some(Spend {
            kind: RecordKind::RefreshToken,
            id: "rt-0",
            until: now + 60,
            attempt: "jti-0",
            family: Some("fam"),
        }),
        family: Some(joining("jti-0")),
        opaque: Some(("op-0", &opaque)),
        ..Issue::default()
    };
    assert_eq!(store.issue(t, &orphan).await.unwrap(), Issued::Unknown);
    assert_eq!(store.get_opaque_token(t, "op-0").await.unwrap(), None);
    assert_eq!(
        store
            .spent_by(t, RecordKind::RefreshToken, "rt-0", Some("fam"))
            .await
            .unwrap(),
        None
    );
    assert!(!store.is_family_live(t, "fam").await.unwrap());

    let first = Issue {
        spend: Some(spend),
        family: Some(member("jti-1")),
        successor: Some("rt-1"),
        opaque: Some(("op-1", &opaque)),
        signed_in: None,
    };
    assert_eq!(store.issue(t, &first).await.unwrap(), Issued::Done);
    assert!(store.get_opaque_token(t, "op-1").await.unwrap().is_some());
    assert!(store.is_family_live(t, "fam").await.unwrap());
    assert!(!store.is_family_live(t, "other-fam").await.unwrap());
    // Now the rotation of the refresh token the code gave joins it.
    let rotation = Issue {
        spend: Some(Spend {
            id: "rt-1",
            ..orphan.spend.unwrap()
        }),
        successor: Some("rt-2"),
        ..orphan
    };
    assert_eq!(store.issue(t, &rotation).await.unwrap(), Issued::Done);

    // The same code again: nothing of the second issue is written.
    let replay = Issue {
        spend: Some(spend),
        family: Some(member("jti-2")),
        successor: Some("rt-2"),
        opaque: Some(("op-2", &opaque)),
        signed_in: None,
    };
    assert_eq!(store.issue(t, &replay).await.unwrap(), Issued::Spent);
    assert_eq!(store.get_opaque_token(t, "op-2").await.unwrap(), None);
    assert!(
        !store
            .mark_used(t, spend.kind, spend.id, now + 60)
            .await
            .unwrap()
    );

    // A second token of the family (a refresh without rotation), then the revocation takes both.
    let more = Issue {
        family: Some(joining("jti-3")),
        ..Issue::default()
    };
    assert_eq!(store.issue(t, &more).await.unwrap(), Issued::Done);
    for jti in ["jti-0", "jti-1", "jti-3"] {
        assert!(!store.is_token_revoked(t, jti, Some("fam")).await.unwrap());
    }
    let listed = store.revoke_family(t, "fam", now + 60).await.unwrap();
    assert!(listed == 3 || listed == 0, "{listed}: all listed, or none");
    assert!(!store.is_family_live(t, "fam").await.unwrap());
    // Every access token of the family is revoked: by a mark of its own where the family
    // lists its tokens, through the family it names where it does not.
    for jti in ["jti-0", "jti-1", "jti-3"] {
        assert!(store.is_token_revoked(t, jti, Some("fam")).await.unwrap());
        assert_eq!(store.is_revoked(t, jti).await.unwrap(), listed == 3);
    }
    assert!(
        !store.is_token_revoked(t, "jti-2", None).await.unwrap(),
        "never issued"
    );
    assert!(
        !store
            .is_token_revoked(t, "jti-9", Some("other-fam"))
            .await
            .unwrap(),
        "another family's"
    );
    // After the revocation nothing joins the family, and nothing is spent by trying.
    let late = Issue {
        spend: Some(Spend {
            kind: RecordKind::RefreshToken,
            id: "rt-2",
            until: now + 60,
            attempt: "jti-4",
            family: Some("fam"),
        }),
        family: Some(joining("jti-4")),
        successor: Some("rt-4"),
        opaque: Some(("op-4", &opaque)),
        signed_in: None,
    };
    assert_eq!(store.issue(t, &late).await.unwrap(), Issued::Revoked);
    assert_eq!(store.get_opaque_token(t, "op-4").await.unwrap(), None);
    // Nor does a grant that would start it anew.
    let restart = Issue {
        family: Some(member("jti-5")),
        ..Issue::default()
    };
    assert_eq!(store.issue(t, &restart).await.unwrap(), Issued::Revoked);
    assert_eq!(
        store
            .spent_by(t, RecordKind::RefreshToken, "rt-2", Some("fam"))
            .await
            .unwrap(),
        None,
        "a refused issue spends nothing"
    );
    // The rotation that joined it is spent, its mark kept with the family.
    assert_eq!(
        store
            .spent_by(t, RecordKind::RefreshToken, "rt-1", Some("fam"))
            .await
            .unwrap()
            .as_deref(),
        Some("jti-0")
    );
    // A bare opaque token (client credentials) is just stored.
    let bare = Issue {
        opaque: Some(("op-5", &opaque)),
        ..Issue::default()
    };
    assert_eq!(store.issue(t, &bare).await.unwrap(), Issued::Done);
    assert!(store.get_opaque_token(t, "op-5").await.unwrap().is_some());
}

/// A spending that went through without its answer reaching the client: the server that lost
/// the answer learns it went through (`spent_by`), records it as unanswered, and one more
/// presentation issues again, retiring the refresh token of the lost answer. Without that
/// record a second presentation is a replay, however soon.
/// An authorization code's family is started when the code is issued: the code's tokens join
/// it as existing, a family never started refuses them, a started one is live before any
/// token, and revoking it counts only tokens.
async fn a_family_started_before_its_first_token(store: &dyn Store, t: &str) {
    use gatehouse_store::{Issue, Issued};
    let now = unix_now();
    let opaque = claims(now + 30);
    let exchange = |family: &'static str, code: &'static str, jti: &'static str| Issue {
        opaque: Some((jti, &opaque)),
        ..spending_in_family(
            now,
            RecordKind::AuthorizationCode,
            family,
            code,
            jti,
            now + 60,
            Joining::Started,
        )
    };
    // Never started (or lost with the store's data): refused, nothing spent or written.
    assert_eq!(
        store
            .issue(t, &exchange("fam-x", "code-x", "jti-x"))
            .await
            .unwrap(),
        Issued::Unknown
    );
    assert_eq!(store.get_opaque_token(t, "jti-x").await.unwrap(), None);
    assert_eq!(
        store
            .spent_by(t, RecordKind::AuthorizationCode, "code-x", Some("fam-x"))
            .await
            .unwrap(),
        None,
        "the refused code was not spent"
    );

    store.start_family(t, "fam-a", now + 60).await.unwrap();
    assert!(store.is_family_live(t, "fam-a").await.unwrap());
    assert!(!store.is_family_live(t, "fam-b").await.unwrap());
    // Starting again (or later) never shortens it.
    store.start_family(t, "fam-a", now + 5).await.unwrap();
    assert!(store.is_family_live(t, "fam-a").await.unwrap());
    assert_eq!(
        store
            .issue(t, &exchange("fam-a", "code-a", "jti-a"))
            .await
            .unwrap(),
        Issued::Done
    );
    assert!(store.get_opaque_token(t, "jti-a").await.unwrap().is_some());
    assert_eq!(
        store
            .issue(t, &exchange("fam-a", "code-a", "jti-a2"))
            .await
            .unwrap(),
        Issued::Spent
    );
    // Revoked: one token revoked (the start is none), and nothing joins any more.
    let listed = store.revoke_family(t, "fam-a", now + 60).await.unwrap();
    assert!(listed <= 1, "{listed}");
    assert!(
        store
            .is_token_revoked(t, "jti-a", Some("fam-a"))
            .await
            .unwrap()
    );
    assert!(!store.is_family_live(t, "fam-a").await.unwrap());
    // A family revoked before its first token (a code presented twice at once, the loser
    // revoking first) refuses it.
    store.start_family(t, "fam-c", now + 60).await.unwrap();
    assert_eq!(store.revoke_family(t, "fam-c", now + 60).await.unwrap(), 0);
    assert_eq!(
        store
            .issue(t, &exchange("fam-c", "code-c", "jti-c"))
            .await
            .unwrap(),
        Issued::Revoked
    );
    assert_eq!(store.get_opaque_token(t, "jti-c").await.unwrap(), None);
    // A code whose exchange failed (a wrong verifier) is spent alone, its mark with its
    // family: presented again, even rightly, it is spent.
    store.start_family(t, "fam-d", now + 60).await.unwrap();
    let refused = Issue {
        spend: exchange("fam-d", "code-d", "refused").spend,
        ..Issue::default()
    };
    assert_eq!(store.issue(t, &refused).await.unwrap(), Issued::Done);
    assert_eq!(store.issue(t, &refused).await.unwrap(), Issued::Spent);
    assert_eq!(
        store
            .issue(t, &exchange("fam-d", "code-d", "jti-d"))
            .await
            .unwrap(),
        Issued::Spent
    );
    assert_eq!(
        store
            .spent_by(t, RecordKind::AuthorizationCode, "code-d", Some("fam-d"))
            .await
            .unwrap()
            .as_deref(),
        Some("refused")
    );
    assert_eq!(store.get_opaque_token(t, "jti-d").await.unwrap(), None);
    assert!(store.is_family_live(t, "fam-d").await.unwrap());
}

async fn a_spending_whose_answer_was_lost_can_be_retried_once(
    store: &dyn Store,
    t: &str,
    family: Option<&'static str>,
) {
    use gatehouse_store::{FamilyMember, Issue, Issued, Spend};
    let now = unix_now();
    let member = |family: Option<&'static str>, jti: &'static str, joining| {
        family.map(|family| FamilyMember {
            family,
            jti,
            exp: now + 30,
            until: now + 600,
            joining,
        })
    };
    if let Some(family) = family {
        // A family whose first refresh token is rt-0, as an exchange leaves it.
        store.start_family(t, family, now + 600).await.unwrap();
        let first = Issue {
            family: member(Some(family), "a0", Joining::Started),
            successor: Some("rt-0"),
            ..Issue::default()
        };
        assert_eq!(store.issue(t, &first).await.unwrap(), Issued::Done);
    }
    let rotate = |presented: &'static str, attempt: &'static str, successor: &'static str| Issue {
        spend: Some(Spend {
            kind: RecordKind::RefreshToken,
            id: presented,
            until: now + 600,
            attempt,
            family,
        }),
        family: member(family, attempt, Joining::Existing),
        successor: Some(successor),
        opaque: None,
        signed_in: None,
    };
    let kind = RecordKind::RefreshToken;
    assert_eq!(store.spent_by(t, kind, "rt-0", family).await.unwrap(), None);
    assert_eq!(
        store.issue(t, &rotate("rt-0", "a1", "rt-1")).await.unwrap(),
        Issued::Done
    );
    assert_eq!(
        store
            .spent_by(t, kind, "rt-0", family)
            .await
            .unwrap()
            .as_deref(),
        Some("a1")
    );
    // Not recorded as unanswered: a second presentation is a replay.
    assert_eq!(
        store.issue(t, &rotate("rt-0", "a2", "rt-x")).await.unwrap(),
        Issued::Spent
    );

    // The answer with rt-1 was lost: recorded, then one retry issues again.
    store
        .mark_unanswered(t, kind, "rt-0", now + 60)
        .await
        .unwrap();
    assert_eq!(
        store.issue(t, &rotate("rt-0", "a3", "rt-2")).await.unwrap(),
        Issued::Done
    );
    assert_eq!(
        store
            .spent_by(t, kind, "rt-0", family)
            .await
            .unwrap()
            .as_deref(),
        Some("a3")
    );
    // Only one: the next is a replay again.
    assert_eq!(
        store.issue(t, &rotate("rt-0", "a4", "rt-y")).await.unwrap(),
        Issued::Spent
    );
    // The lost rt-1 is retired: presenting it is a reuse.
    assert_eq!(
        store.issue(t, &rotate("rt-1", "a5", "rt-z")).await.unwrap(),
        Issued::Spent
    );

    // rt-2 rotates; if its answer is then reported lost after its successor was presented,
    // a retry is a reuse after all.
    assert_eq!(
        store.issue(t, &rotate("rt-2", "a6", "rt-3")).await.unwrap(),
        Issued::Done
    );
    assert_eq!(
        store.issue(t, &rotate("rt-3", "a7", "rt-4")).await.unwrap(),
        Issued::Done
    );
    store
        .mark_unanswered(t, kind, "rt-2", now + 60)
        .await
        .unwrap();
    assert_eq!(
        store.issue(t, &rotate("rt-2", "a8", "rt-5")).await.unwrap(),
        Issued::Spent
    );

    // A code too (no refresh token issued), of a family of its own: recorded as unanswered,
    // retried once.
    let code_family = family.map(|_| "code-fam");
    if let Some(family) = code_family {
        store.start_family(t, family, now + 600).await.unwrap();
    }
    let code = |attempt: &'static str| Issue {
        spend: Some(Spend {
            kind: RecordKind::AuthorizationCode,
            id: "code",
            until: now + 600,
            attempt,
            family: code_family,
        }),
        family: member(code_family, attempt, Joining::Started)
            .filter(|_| attempt != Spend::REFUSED),
        successor: None,
        opaque: None,
        signed_in: None,
    };
    assert_eq!(store.issue(t, &code("c1")).await.unwrap(), Issued::Done);
    store
        .mark_unanswered(t, RecordKind::AuthorizationCode, "code", now + 60)
        .await
        .unwrap();
    assert_eq!(store.issue(t, &code("c2")).await.unwrap(), Issued::Done);
    assert_eq!(store.issue(t, &code("c3")).await.unwrap(), Issued::Spent);

    // A refusal (a request refused that spends the code all the same) is no retry: with an
    // answer lost, the code presented so is the replay it is, and its mark stays.
    store
        .mark_unanswered(t, RecordKind::AuthorizationCode, "code", now + 60)
        .await
        .unwrap();
    assert_eq!(
        store.issue(t, &code(Spend::REFUSED)).await.unwrap(),
        Issued::Spent
    );
    assert_eq!(
        store
            .spent_by(t, RecordKind::AuthorizationCode, "code", code_family)
            .await
            .unwrap()
            .as_deref(),
        Some("c2")
    );
}

/// Signing a user out refuses every grant of a sign-in up to that second, atomically with
/// issuing, and nothing of a later sign-in or of anyone else; the mark only moves forward.
async fn signing_a_user_out_ends_their_grants_and_sessions(store: &dyn Store, t: &str) {
    use gatehouse_store::{Issue, Issued};
    let now = unix_now();
    let grant = |user: &'static str, signed_in: u64| Issue {
        signed_in: Some((user, signed_in)),
        ..Issue::default()
    };
    assert_eq!(store.signed_out_at(t, "alice").await.unwrap(), None);
    assert_eq!(
        store.issue(t, &grant("alice", now - 10)).await.unwrap(),
        Issued::Done
    );

    store
        .sign_out_user(t, "alice", now - 5, now + 60)
        .await
        .unwrap();
    assert_eq!(
        store.signed_out_at(t, "alice").await.unwrap(),
        Some(now - 5)
    );
    assert_eq!(
        store.issue(t, &grant("alice", now - 10)).await.unwrap(),
        Issued::SignedOut
    );
    assert_eq!(
        store.issue(t, &grant("alice", now - 5)).await.unwrap(),
        Issued::SignedOut
    );
    assert_eq!(
        store.issue(t, &grant("alice", now - 4)).await.unwrap(),
        Issued::Done
    );
    assert_eq!(
        store.issue(t, &grant("bob", now - 10)).await.unwrap(),
        Issued::Done
    );
    // A refused issue writes nothing: no family started, no opaque token stored.
    let opaque = claims(now + 30);
    let refused = Issue {
        signed_in: Some(("alice", now - 6)),
        family: Some(gatehouse_store::FamilyMember {
            family: "fam-out",
            jti: "jti-out",
            exp: now + 30,
            until: now + 60,
            joining: Joining::Starts,
        }),
        opaque: Some(("op-out", &opaque)),
        ..Issue::default()
    };
    assert_eq!(store.issue(t, &refused).await.unwrap(), Issued::SignedOut);
    assert!(!store.is_family_live(t, "fam-out").await.unwrap());
    assert_eq!(store.get_opaque_token(t, "op-out").await.unwrap(), None);
    // A rotation in a family that exists (the path every rotation takes) is refused alike,
    // with nothing spent; one of a later sign-in goes through.
    store.start_family(t, "fam-live", now + 60).await.unwrap();
    let exchange = Issue {
        family: Some(gatehouse_store::FamilyMember {
            family: "fam-live",
            jti: "jti-live",
            exp: now + 30,
            until: now + 60,
            joining: Joining::Started,
        }),
        successor: Some("rt-live"),
        ..Issue::default()
    };
    assert_eq!(store.issue(t, &exchange).await.unwrap(), Issued::Done);
    let rotation = |signed_in: u64, attempt: &'static str, opaque_id: &'static str| Issue {
        successor: Some("rt-next"),
        opaque: Some((opaque_id, &opaque)),
        signed_in: Some(("alice", signed_in)),
        ..rotation(now, "fam-live", "rt-live", attempt)
    };
    let mark = || store.spent_by(t, RecordKind::RefreshToken, "rt-live", Some("fam-live"));
    assert_eq!(
        store
            .issue(t, &rotation(now - 6, "r1", "op-r1"))
            .await
            .unwrap(),
        Issued::SignedOut
    );
    assert_eq!(mark().await.unwrap(), None);
    assert_eq!(store.get_opaque_token(t, "op-r1").await.unwrap(), None);
    assert_eq!(
        store
            .issue(t, &rotation(now - 4, "r2", "op-r2"))
            .await
            .unwrap(),
        Issued::Done
    );
    assert_eq!(mark().await.unwrap().as_deref(), Some("r2"));
    assert!(store.get_opaque_token(t, "op-r2").await.unwrap().is_some());
    // An older sign-out never takes back a later one.
    store
        .sign_out_user(t, "alice", now - 20, now + 60)
        .await
        .unwrap();
    assert_eq!(
        store.signed_out_at(t, "alice").await.unwrap(),
        Some(now - 5)
    );
    store
        .sign_out_user(t, "alice", now, now + 60)
        .await
        .unwrap();
    assert_eq!(store.signed_out_at(t, "alice").await.unwrap(), Some(now));
    assert_eq!(store.signed_out_at(t, "bob").await.unwrap(), None);
}
