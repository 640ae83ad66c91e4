use super::*;
use gatehouse_core::GrantType;
use gatehouse_crd::condition::{reasons, types};
use k8s_openapi::ByteString;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

fn at(s: i64) -> Time {
    Time(Timestamp::from_second(s).unwrap())
}

fn tenant(name: &str, spec: serde_json::Value) -> Tenant {
    let mut t = json!({
        "apiVersion": "gatehouse.dev/v1alpha1", "kind": "Tenant",
        "metadata": {"name": name, "generation": 1}
    });
    t["spec"] = spec;
    serde_json::from_value(t).unwrap()
}

fn client(ns: &str, name: &str, created: i64, spec: serde_json::Value) -> OAuthClient {
    let mut c = json!({
        "apiVersion": "gatehouse.dev/v1alpha1", "kind": "OAuthClient",
        "metadata": {"name": name, "namespace": ns, "generation": 2,
                     "creationTimestamp": at(created).0.to_string()}
    });
    c["spec"] = spec;
    serde_json::from_value(c).unwrap()
}

/// A Secret with the watch label, so Gatehouse reads it.
fn secret(ns: &str, name: &str, value: Option<&[u8]>) -> Secret {
    let mut s = unlabelled(ns, name, value);
    s.metadata.labels = Some([("gatehouse.dev/watch".to_string(), "true".to_string())].into());
    s
}

/// A Secret without the watch label: someone's, not meant for Gatehouse.
fn unlabelled(ns: &str, name: &str, value: Option<&[u8]>) -> Secret {
    let mut s = Secret::default();
    s.metadata.namespace = Some(ns.into());
    s.metadata.name = Some(name.into());
    if let Some(v) = value {
        s.data = Some([("client_secret".to_string(), ByteString(v.to_vec()))].into());
    }
    s
}

fn acme() -> Tenant {
    tenant(
        "acme",
        json!({"grantTypes": ["client_credentials", "refresh_token"], "scopes": [{"name": "billing.read"}]}),
    )
}

fn m2m(ns: &str, name: &str, created: i64) -> OAuthClient {
    client(
        ns,
        name,
        created,
        json!({"tenantRef": "acme", "grantTypes": ["client_credentials"], "scopes": ["billing.read"]}),
    )
}

fn run(tenants: &[Tenant], clients: &[OAuthClient], secrets: &[Secret]) -> Reconciled {
    reconcile(&Observed {
        trusted: &crate::issuers::TrustedKeys::default(),
        tenants,
        clients,
        secrets,
        public_url: "https://auth.example.com/",
        now: at(1000),
    })
}

fn condition<'a>(
    c: &'a ClientOutcome,
    t: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    crate::conditions::find(&c.status.conditions, t).unwrap()
}

#[test]
fn a_valid_client_with_its_secret_is_registered_and_ready() {
    let r = run(
        &[acme()],
        &[m2m("acme", "billing", 1)],
        &[secret("acme", "billing-credentials", Some(b"s3cret"))],
    );
    let t = r.tenant("acme").unwrap();
    assert_eq!(
        t.status.issuer.as_deref(),
        Some("https://auth.example.com/acme")
    );
    assert_eq!(t.status.clients, Some(1));
    assert_eq!(t.status.conditions[0].status, "True");
    let c = r.client("acme", "billing").unwrap();
    let reg = c.registration.as_ref().expect("registered");
    assert_eq!(reg.config.client_id, "acme-billing");
    assert_eq!(
        reg.secret.as_deref().map(std::string::String::as_str),
        Some("s3cret")
    );
    assert_eq!(condition(c, types::ACCEPTED).status, "True");
    assert_eq!(condition(c, types::READY).status, "True");
    assert_eq!(condition(c, types::READY).observed_generation, Some(2));
    assert_eq!(c.status.grant_types, vec![GrantType::ClientCredentials]);
    assert_eq!(c.status.secret_name.as_deref(), Some("billing-credentials"));
    assert!(format!("{c:?}").contains("<redacted>") && !format!("{c:?}").contains("s3cret"));
}

#[test]
fn missing_tenant_and_foreign_namespace_get_nothing() {
    let other = client(
        "acme",
        "lost",
        1,
        json!({"tenantRef": "nope", "grantTypes": ["client_credentials"]}),
    );
    let foreign = m2m("elsewhere", "sneaky", 1);
    let r = run(&[acme()], &[other, foreign], &[]);
    let lost = r.client("acme", "lost").unwrap();
    assert!(lost.registration.is_none());
    assert_eq!(
        condition(lost, types::ACCEPTED).reason,
        reasons::TENANT_NOT_FOUND
    );
    assert_eq!(condition(lost, types::READY).status, "False");
    let sneaky = r.client("elsewhere", "sneaky").unwrap();
    assert!(sneaky.registration.is_none() && sneaky.secret_request.is_none());
    assert_eq!(
        condition(sneaky, types::ACCEPTED).reason,
        reasons::NAMESPACE_NOT_ALLOWED
    );
    assert_eq!(r.tenant("acme").unwrap().status.clients, Some(0));
}

#[test]
fn client_namespaces_star_admits_everyone() {
    let t = tenant(
        "acme",
        json!({"grantTypes": ["client_credentials"], "clientNamespaces": ["*"]}),
    );
    let r = run(
        &[t],
        &[m2m("elsewhere", "ok", 1)],
        &[secret("elsewhere", "ok-credentials", Some(b"x"))],
    );
    assert!(r.client("elsewhere", "ok").unwrap().registration.is_some());
}

#[test]
fn grants_the_tenant_does_not_enable_are_dropped_or_refused() {
    let some = client(
        "acme",
        "some",
        1,
        json!({"tenantRef": "acme", "grantTypes": ["client_credentials", "password"]}),
    );
    let none = client(
        "acme",
        "none",
        1,
        json!({"tenantRef": "acme", "grantTypes": ["password"]}),
    );
    let r = run(
        &[acme()],
        &[some, none],
        &[
            secret("acme", "some-credentials", Some(b"x")),
            secret("acme", "none-credentials", Some(b"x")),
        ],
    );
    let some = r.client("acme", "some").unwrap();
    let accepted = condition(some, types::ACCEPTED);
    assert_eq!(
        (accepted.status.as_str(), accepted.reason.as_str()),
        ("False", reasons::GRANT_TYPE_NOT_ENABLED)
    );
    assert!(
        accepted.message.contains("password"),
        "{}",
        accepted.message
    );
    assert_eq!(some.status.grant_types, vec![GrantType::ClientCredentials]);
    assert_eq!(
        some.registration.as_ref().unwrap().config.grant_types,
        vec![GrantType::ClientCredentials]
    );
    assert_eq!(condition(some, types::READY).status, "True");
    let none = r.client("acme", "none").unwrap();
    assert!(none.registration.is_none());
    assert_eq!(
        condition(none, types::ACCEPTED).reason,
        reasons::GRANT_TYPE_NOT_ENABLED
    );
}

#[test]
fn the_older_client_keeps_a_contested_id() {
    let spec =
        json!({"tenantRef": "acme", "clientId": "shared", "grantTypes": ["client_credentials"]});
    let newer = client("acme", "aaa-newer", 20, spec.clone());
    let older = client("acme", "zzz-older", 10, spec);
    let r = run(
        &[acme()],
        &[newer, older],
        &[
            secret("acme", "aaa-newer-credentials", Some(b"x")),
            secret("acme", "zzz-older-credentials", Some(b"y")),
        ],
    );
    assert!(
        r.client("acme", "zzz-older")
            .unwrap()
            .registration
            .is_some()
    );
    let loser = r.client("acme", "aaa-newer").unwrap();
    assert!(loser.registration.is_none());
    assert_eq!(
        condition(loser, types::ACCEPTED).reason,
        reasons::CLIENT_ID_CONFLICT
    );
}

#[test]
fn secrets_are_generated_awaited_or_rejected() {
    let generated = m2m("acme", "gen", 1);
    let waiting = client(
        "acme",
        "wait",
        1,
        json!({"tenantRef": "acme", "grantTypes": ["client_credentials"], "secretRef": {"name": "later", "generate": false}}),
    );
    let empty = m2m("acme", "empty", 1);
    let r = run(
        &[acme()],
        &[generated, waiting, empty],
        &[secret("acme", "empty-credentials", None)],
    );
    let gen_ = r.client("acme", "gen").unwrap();
    assert_eq!(
        gen_.secret_request.as_ref().unwrap().name,
        "gen-credentials"
    );
    assert_eq!(
        gen_.secret_request.as_ref().unwrap().issuer,
        "https://auth.example.com/acme"
    );
    assert_eq!(
        condition(gen_, types::READY).reason,
        reasons::SECRET_PENDING
    );
    assert!(gen_.registration.is_none());
    let wait = r.client("acme", "wait").unwrap();
    assert!(
        wait.secret_request.is_none(),
        "generate: false never races the real secret"
    );
    assert_eq!(
        condition(wait, types::READY).reason,
        reasons::SECRET_NOT_FOUND
    );
    assert_eq!(condition(wait, types::ACCEPTED).status, "True");
    let empty = r.client("acme", "empty").unwrap();
    assert_eq!(
        condition(empty, types::READY).reason,
        reasons::SECRET_INVALID
    );
    assert!(empty.registration.is_none());
}

#[test]
fn public_clients_need_no_secret() {
    let spa = client(
        "acme",
        "spa",
        1,
        json!({"tenantRef": "acme", "public": true, "grantTypes": ["refresh_token"]}),
    );
    let r = run(&[acme()], &[spa], &[]);
    let spa = r.client("acme", "spa").unwrap();
    let reg = spa.registration.as_ref().unwrap();
    assert!(reg.secret.is_none() && reg.config.public);
    assert_eq!(
        reg.config.token_endpoint_auth_method,
        gatehouse_core::ClientAuthMethod::None
    );
    assert!(spa.status.secret_name.is_none());
}

#[test]
fn invalid_specs_are_reported_with_their_field() {
    let bad_tenant = tenant(
        "broken",
        json!({"grantTypes": [], "accessToken": {"ttl": "soon"}}),
    );
    let orphan = client(
        "broken",
        "c",
        1,
        json!({"tenantRef": "broken", "grantTypes": ["client_credentials"]}),
    );
    let bad_client = client(
        "acme",
        "bad",
        1,
        json!({"tenantRef": "acme", "public": true, "grantTypes": ["client_credentials"]}),
    );
    let r = run(&[acme(), bad_tenant], &[orphan, bad_client], &[]);
    let t = r.tenant("broken").unwrap();
    assert!(t.registration.is_none());
    assert_eq!(t.status.conditions[0].reason, reasons::INVALID_SPEC);
    assert!(t.status.conditions[0].message.contains("spec.grantTypes"));
    assert!(
        t.status.conditions[0]
            .message
            .contains("spec.accessToken.ttl")
    );
    assert_eq!(
        condition(r.client("broken", "c").unwrap(), types::ACCEPTED).reason,
        reasons::TENANT_NOT_READY
    );
    let bad = r.client("acme", "bad").unwrap();
    assert_eq!(
        condition(bad, types::ACCEPTED).reason,
        reasons::INVALID_SPEC
    );
    assert!(
        condition(bad, types::ACCEPTED)
            .message
            .contains("spec.grantTypes")
    );
}

#[test]
fn unchanged_status_keeps_its_transition_times() {
    let mut c = m2m("acme", "billing", 1);
    let secrets = [secret("acme", "billing-credentials", Some(b"x"))];
    let first = run(&[acme()], std::slice::from_ref(&c), &secrets);
    c.status = Some(first.client("acme", "billing").unwrap().status.clone());
    let second = reconcile(&Observed {
        trusted: &crate::issuers::TrustedKeys::default(),
        tenants: &[acme()],
        clients: std::slice::from_ref(&c),
        secrets: &secrets,
        public_url: "https://auth.example.com",
        now: at(5000),
    });
    assert_eq!(
        second.client("acme", "billing").unwrap().status,
        *c.status.as_ref().unwrap()
    );
}

#[test]
fn users_come_from_the_users_secret_and_a_broken_one_degrades_only_sign_in() {
    let spec = json!({"grantTypes": ["password", "client_credentials"], "users": {"secretRef": {"name": "people", "namespace": "acme"}}});
    let hash =
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$0QtWKs7HkpgDG3bVmbmpSkDUpHL5TRmt1Vr4HsFxBO4";
    let mut people = secret("acme", "people", None);
    people.string_data = Some(
        [(
            "users.yaml".to_string(),
            format!("- {{username: alice, passwordHash: \"{hash}\"}}"),
        )]
        .into(),
    );
    let r = run(&[tenant("acme", spec.clone())], &[], &[people.clone()]);
    let t = r.tenant("acme").unwrap();
    assert_eq!(t.registration.as_ref().unwrap().users[0].username, "alice");
    let loaded = crate::conditions::find(&t.status.conditions, types::USERS_LOADED).unwrap();
    assert_eq!(
        (loaded.status.as_str(), loaded.message.as_str()),
        ("True", "1 users")
    );

    people.string_data = Some(
        [(
            "users.yaml".to_string(),
            "- {username: alice, password: hunter2}".to_string(),
        )]
        .into(),
    );
    let r = run(&[tenant("acme", spec.clone())], &[], &[people]);
    let t = r.tenant("acme").unwrap();
    assert!(
        t.registration.as_ref().unwrap().users.is_empty(),
        "still serving, without users"
    );
    let loaded = crate::conditions::find(&t.status.conditions, types::USERS_LOADED).unwrap();
    assert_eq!(
        (loaded.status.as_str(), loaded.reason.as_str()),
        ("False", reasons::USERS_SECRET_INVALID)
    );
    assert!(loaded.message.contains("plain-text password") && !loaded.message.contains("hunter2"));
    // Still serving, and said where people look first: READY False, its reason.
    let ready = crate::conditions::find(&t.status.conditions, types::READY).unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", reasons::USERS_SECRET_INVALID)
    );
    assert!(
        ready.message.starts_with("serving as "),
        "{}",
        ready.message
    );

    let r = run(&[tenant("acme", spec.clone())], &[], &[]);
    let loaded = crate::conditions::find(
        &r.tenant("acme").unwrap().status.conditions,
        types::USERS_LOADED,
    )
    .unwrap();
    assert!(
        loaded.message.contains("Secret acme/people not found"),
        "{}",
        loaded.message
    );
}

#[test]
fn a_referenced_secret_without_the_watch_label_is_never_read_and_says_which_label_to_add() {
    // The users Secret: valid users, but not labelled for Gatehouse.
    let spec = json!({"grantTypes": ["password", "client_credentials"], "users": {"secretRef": {"name": "people", "namespace": "acme"}}});
    let hash =
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$0QtWKs7HkpgDG3bVmbmpSkDUpHL5TRmt1Vr4HsFxBO4";
    let mut people = unlabelled("acme", "people", None);
    people.string_data = Some(
        [(
            "users.yaml".to_string(),
            format!("- {{username: alice, passwordHash: \"{hash}\"}}"),
        )]
        .into(),
    );
    // A client whose credentials Secret (generated by default) exists but is someone else's,
    // and one waiting for a GitOps Secret that arrived without the label.
    let theirs = m2m("acme", "theirs", 1);
    let gitops = client(
        "acme",
        "gitops",
        1,
        json!({"tenantRef": "acme", "grantTypes": ["client_credentials"], "secretRef": {"name": "from-vault", "generate": false}}),
    );
    let r = run(
        &[tenant("acme", spec)],
        &[theirs, gitops],
        &[
            people,
            unlabelled("acme", "theirs-credentials", Some(b"database-password")),
            unlabelled("acme", "from-vault", Some(b"vault-secret")),
        ],
    );
    let t = r.tenant("acme").unwrap();
    assert!(
        t.registration.as_ref().unwrap().users.is_empty(),
        "not read"
    );
    let loaded = crate::conditions::find(&t.status.conditions, types::USERS_LOADED).unwrap();
    assert_eq!(
        (loaded.status.as_str(), loaded.reason.as_str()),
        ("False", reasons::SECRET_NOT_LABELLED)
    );
    assert!(
        loaded
            .message
            .contains("kubectl label secret -n acme people gatehouse.dev/watch=true"),
        "{}",
        loaded.message
    );
    for (name, secret) in [("theirs", "theirs-credentials"), ("gitops", "from-vault")] {
        let c = r.client("acme", name).unwrap();
        assert!(c.registration.is_none(), "{name}: its secret is not read");
        assert!(
            c.secret_request.is_none(),
            "{name}: nothing generated over it"
        );
        let ready = condition(c, types::READY);
        assert_eq!(ready.reason, reasons::SECRET_NOT_LABELLED, "{name}");
        assert!(
            ready.message.contains(&format!(
                "kubectl label secret -n acme {secret} gatehouse.dev/watch=true"
            )),
            "{}",
            ready.message
        );
        assert!(
            c.held.is_some(),
            "{name}: a registered version would keep serving"
        );
    }
}

#[test]
fn the_rotation_annotation_rotates_only_our_own_secret_once_per_value() {
    let mut c = m2m("acme", "billing", 1);
    c.metadata.annotations = Some(
        [(
            "gatehouse.dev/rotate-secret".to_string(),
            "2026-11-22".to_string(),
        )]
        .into(),
    );
    let mut ours = secret("acme", "billing-credentials", Some(b"old"));
    ours.metadata.labels.get_or_insert_default().insert(
        "app.kubernetes.io/managed-by".to_string(),
        "gatehouse".to_string(),
    );
    let r = run(
        &[acme()],
        std::slice::from_ref(&c),
        std::slice::from_ref(&ours),
    );
    let outcome = r.client("acme", "billing").unwrap();
    let (request, wanted) = outcome.secret_rotation.as_ref().expect("rotation asked");
    assert_eq!(
        (request.name.as_str(), wanted.as_str()),
        ("billing-credentials", "2026-11-22")
    );
    assert_eq!(
        outcome
            .registration
            .as_ref()
            .unwrap()
            .secret
            .as_deref()
            .map(std::string::String::as_str),
        Some("old"),
        "serves on until replaced"
    );

    ours.metadata.annotations = Some(
        [(
            "gatehouse.dev/rotated-for".to_string(),
            "2026-11-22".to_string(),
        )]
        .into(),
    );
    let r = run(
        &[acme()],
        std::slice::from_ref(&c),
        std::slice::from_ref(&ours),
    );
    assert!(
        r.client("acme", "billing")
            .unwrap()
            .secret_rotation
            .is_none(),
        "done once"
    );

    let theirs = secret("acme", "billing-credentials", Some(b"vault"));
    let r = run(&[acme()], std::slice::from_ref(&c), &[theirs]);
    assert!(
        r.client("acme", "billing")
            .unwrap()
            .secret_rotation
            .is_none(),
        "never someone else's Secret"
    );
}

/// A refused spec holds the last valid version: nothing to publish, nothing to remove, and a
/// `Ready` to show (the serving generation's) while the store still holds it.
#[test]
fn refused_specs_hold_the_last_valid_version_and_decisions_do_not() {
    let mut good = acme();
    let served = run(
        std::slice::from_ref(&good),
        &[m2m("acme", "billing", 1)],
        &[secret("acme", "billing-credentials", Some(b"s3cret"))],
    );
    let tenant_ok = served.tenant("acme").unwrap();
    assert!(tenant_ok.held.is_none());
    let accepted = crate::conditions::find(&tenant_ok.status.conditions, types::ACCEPTED).unwrap();
    assert_eq!(
        (accepted.status.as_str(), accepted.reason.as_str()),
        ("True", reasons::ACCEPTED)
    );

    // Generation 2 of the tenant sets a zero TTL; its previous status said generation 1 served.
    good.status = Some(tenant_ok.status.clone());
    let mut typo = good.clone();
    typo.metadata.generation = Some(2);
    typo.spec.access_token.ttl = "0s".into();
    let mut billing = m2m("acme", "billing", 1);
    billing.status = Some(served.client("acme", "billing").unwrap().status.clone());
    let r = run(
        std::slice::from_ref(&typo),
        std::slice::from_ref(&billing),
        &[secret("acme", "billing-credentials", Some(b"s3cret"))],
    );
    let mut t = r.tenants.into_iter().next().unwrap();
    assert!(t.registration.is_none());
    let accepted = crate::conditions::find(&t.status.conditions, types::ACCEPTED)
        .unwrap()
        .clone();
    assert_eq!(
        (accepted.status.as_str(), accepted.reason.as_str()),
        ("False", reasons::INVALID_SPEC)
    );
    assert_eq!(
        accepted.observed_generation,
        Some(2),
        "names the refused generation"
    );
    assert!(
        accepted.message.contains("spec.accessToken.ttl"),
        "{}",
        accepted.message
    );
    let held = t.held.clone().expect("held, not removed");
    assert_eq!(held.ready.status, "True");
    assert_eq!(held.ready.reason, reasons::SERVING_LAST_VALID);
    assert_eq!(
        held.ready.observed_generation,
        Some(1),
        "the serving generation"
    );
    assert!(
        held.ready.message.starts_with(
            "generation 1 keeps serving; generation 2 was refused: spec.accessToken.ttl"
        ),
        "{}",
        held.ready.message
    );
    assert_eq!(
        held.ready.last_transition_time,
        at(1000),
        "Ready never flipped"
    );
    t.still_serving();
    let ready = crate::conditions::find(&t.status.conditions, types::READY).unwrap();
    assert_eq!(ready.reason, reasons::SERVING_LAST_VALID);
    assert_eq!(
        t.status.issuer.as_deref(),
        Some("https://auth.example.com/acme")
    );

    // Its clients are held with it: their registrations stay as they were.
    let c = &r.clients[0];
    assert!(c.registration.is_none() && c.held.is_some());
    assert_eq!(
        condition(c, types::ACCEPTED).reason,
        reasons::TENANT_NOT_READY
    );

    // A client's own bad edit holds it too.
    let mut bad_uri = billing.clone();
    bad_uri.metadata.generation = Some(3);
    bad_uri.spec.redirect_uris = vec!["not a uri".into()];
    let r = run(
        std::slice::from_ref(&good),
        &[bad_uri],
        &[secret("acme", "billing-credentials", Some(b"s3cret"))],
    );
    let c = &r.clients[0];
    assert!(c.registration.is_none());
    assert_eq!(condition(c, types::ACCEPTED).reason, reasons::INVALID_SPEC);
    assert!(
        c.held
            .as_ref()
            .unwrap()
            .ready
            .message
            .starts_with("generation 2 keeps serving; generation 3 was refused: spec.redirectUris"),
        "{:?}",
        c.held
    );

    // Deliberate refusals take the client away: a namespace no longer admitted, grants no
    // longer enabled.
    let mut narrowed = good.clone();
    narrowed.spec.client_namespaces = Some(vec!["elsewhere".into()]);
    let r = run(
        std::slice::from_ref(&narrowed),
        std::slice::from_ref(&billing),
        &[secret("acme", "billing-credentials", Some(b"s3cret"))],
    );
    assert!(r.clients[0].held.is_none() && r.clients[0].registration.is_none());
    let mut no_grants = good.clone();
    no_grants.spec.grant_types = vec![GrantType::RefreshToken];
    let r = run(
        std::slice::from_ref(&no_grants),
        std::slice::from_ref(&billing),
        &[secret("acme", "billing-credentials", Some(b"s3cret"))],
    );
    assert!(r.clients[0].held.is_none() && r.clients[0].registration.is_none());
}

#[test]
fn the_tenant_grants_subject_assertions_to_a_signer_by_namespace_and_client_id() {
    let t = tenant(
        "acme",
        json!({"grantTypes": ["client_credentials", "urn:ietf:params:oauth:grant-type:jwt-bearer"],
        "clientNamespaces": ["acme", "other"],
        "subjectAssertions": [
            {"signer": {"namespace": "acme", "clientId": "reporter"}, "users": ["alice"], "clients": [{"namespace": "acme", "clientId": "batch"}]},
            {"signer": {"namespace": "acme", "clientId": "reporter"}, "users": ["*"]}
        ]}),
    );
    let signer = |ns: &str| {
        client(
            ns,
            "reporter",
            1,
            json!({"tenantRef": "acme", "clientId": "reporter", "grantTypes": ["client_credentials"]}),
        )
    };
    let secrets = [
        secret("acme", "reporter-credentials", Some(b"s")),
        secret("other", "reporter-credentials", Some(b"s")),
    ];
    let r = run(std::slice::from_ref(&t), &[signer("acme")], &secrets);
    let reg = &r
        .client("acme", "reporter")
        .unwrap()
        .registration
        .as_ref()
        .unwrap()
        .config;
    assert_eq!(reg.may_assert.users, vec!["*", "alice"]);
    assert_eq!(
        reg.may_assert.clients,
        vec![gatehouse_core::config::ClientRef {
            namespace: "acme".into(),
            client_id: "batch".into()
        }]
    );
    // The same client id claimed from another namespace (after the first is gone) is someone else.
    let r = run(&[t], &[signer("other")], &secrets);
    let reg = &r
        .client("other", "reporter")
        .unwrap()
        .registration
        .as_ref()
        .unwrap()
        .config;
    assert!(reg.may_assert.is_empty());
}

#[test]
fn plain_http_redirect_uris_beyond_loopback_need_the_tenants_consent() {
    let web = |ns: &str| {
        client(
            ns,
            "web",
            1,
            json!({"tenantRef": "acme", "grantTypes": ["client_credentials"],
                   "redirectUris": ["http://app.example.com/cb", "http://127.0.0.1:9/cb", "https://app.example.com/cb"]}),
        )
    };
    let secrets = [secret("acme", "web-credentials", Some(b"s"))];
    let r = run(&[acme()], &[web("acme")], &secrets);
    let c = r.client("acme", "web").unwrap();
    assert_eq!(
        condition(c, types::ACCEPTED).reason,
        reasons::REDIRECT_URI_NOT_ALLOWED
    );
    assert!(
        condition(c, types::ACCEPTED)
            .message
            .contains("http://app.example.com/cb")
    );
    let reg = &c.registration.as_ref().unwrap().config;
    assert_eq!(
        reg.redirect_uris,
        ["http://127.0.0.1:9/cb", "https://app.example.com/cb"]
    );

    let mut lenient = acme();
    lenient.spec.allow_http_redirect_uris = true;
    let r = run(&[lenient], &[web("acme")], &secrets);
    let c = r.client("acme", "web").unwrap();
    assert_eq!(condition(c, types::ACCEPTED).status, "True");
    assert_eq!(
        c.registration.as_ref().unwrap().config.redirect_uris.len(),
        3
    );
}

#[test]
fn a_client_id_naming_an_audience_its_namespace_may_not_hold_gets_no_token() {
    let t = tenant(
        "acme",
        json!({"grantTypes": ["client_credentials"], "clientNamespaces": ["acme", "evil"],
               "audiences": [{"name": "billing-api", "namespaces": ["acme"]}]}),
    );
    // With audiences of its own, all refused, it would fall back to its client id.
    for audiences in [json!([]), json!(["https://undeclared.example.com"])] {
        let lookalike = client(
            "evil",
            "lookalike",
            1,
            json!({"tenantRef": "acme", "clientId": "billing-api", "grantTypes": ["client_credentials"],
                   "audiences": audiences}),
        );
        let r = run(
            std::slice::from_ref(&t),
            &[lookalike],
            &[secret("evil", "lookalike-credentials", Some(b"s"))],
        );
        let c = r.client("evil", "lookalike").unwrap();
        assert!(c.registration.is_none(), "{audiences}");
        assert_eq!(
            condition(c, types::READY).reason,
            reasons::AUDIENCE_NOT_ALLOWED
        );
    }
}

#[test]
fn a_built_in_scope_the_tenant_declares_goes_by_its_declaration() {
    let t = tenant(
        "acme",
        json!({"grantTypes": ["client_credentials"], "clientNamespaces": ["acme", "evil"],
               "scopes": [{"name": "offline_access", "namespaces": ["acme"]}]}),
    );
    let asking = |ns: &str| {
        client(
            ns,
            "app",
            1,
            json!({"tenantRef": "acme", "clientId": format!("{ns}-app"), "grantTypes": ["client_credentials"],
                   "scopes": ["openid", "offline_access"]}),
        )
    };
    let secrets = [
        secret("acme", "app-credentials", Some(b"s")),
        secret("evil", "app-credentials", Some(b"s")),
    ];
    let r = run(
        std::slice::from_ref(&t),
        &[asking("acme"), asking("evil")],
        &secrets,
    );
    let scopes = |ns: &str| {
        r.client(ns, "app")
            .unwrap()
            .registration
            .as_ref()
            .unwrap()
            .config
            .scopes
            .clone()
    };
    assert_eq!(scopes("acme"), ["openid", "offline_access"]);
    assert_eq!(scopes("evil"), ["openid"]);
    let refused = r.client("evil", "app").unwrap();
    assert_eq!(
        condition(refused, types::ACCEPTED).reason,
        reasons::SCOPE_NOT_ALLOWED
    );
}

fn invoicer() -> OAuthClient {
    client(
        "acme",
        "invoicer",
        1,
        json!({"tenantRef": "acme", "grantTypes": ["client_credentials"], "scopes": ["billing.read"],
               "workloadIdentity": {"serviceAccountName": "invoicer"}}),
    )
}

/// One workload-identity client decided against what the operator found in the cluster.
fn decide_workload(account: ServiceAccountView<'_>) -> ClientOutcome {
    let tenant = acme();
    let c = invoicer();
    reconcile_client(
        &c,
        &ClientInputs {
            issuer_keys: &[],
            tenant: TenantView::of(Some(&tenant)),
            holds_id: true,
            secret: crate::secrets::SecretView::Missing,
            service_account: account,
            public_url: "https://auth.example.com",
            now: &at(1000),
        },
    )
}

#[test]
fn a_workload_client_is_bound_to_its_service_account_and_needs_no_secret() {
    let issuer = ClusterIssuer {
        issuer: "https://kubernetes.default.svc".into(),
        jwks: json!({"keys": [{"kty": "RSA", "kid": "k", "n": "sXch", "e": "AQAB"}]}),
    };
    let c = decide_workload(ServiceAccountView::Found {
        uid: "uid-1",
        issuer: Some(&issuer),
    });
    assert_eq!(condition(&c, types::READY).status, "True");
    let reg = c.registration.as_ref().expect("registered");
    assert!(reg.secret.is_none() && c.secret_request.is_none());
    assert_eq!(
        reg.config.token_endpoint_auth_method,
        gatehouse_core::ClientAuthMethod::PrivateKeyJwt
    );
    let bound = reg.config.workload.as_ref().unwrap();
    assert_eq!(bound.subject, "system:serviceaccount:acme:invoicer");
    assert_eq!(bound.service_account_uid, "uid-1");
    assert_eq!(bound.issuer, issuer.issuer);
    assert_eq!(bound.jwks, issuer.jwks);
    assert_eq!(
        c.status.workload_subject.as_deref(),
        Some("system:serviceaccount:acme:invoicer")
    );
    assert_eq!(c.status.secret_name, None);
}

#[test]
fn a_missing_account_takes_the_client_out_and_an_unread_issuer_holds_it() {
    let gone = decide_workload(ServiceAccountView::Missing);
    let ready = condition(&gone, types::READY);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", reasons::SERVICE_ACCOUNT_NOT_FOUND)
    );
    assert!(ready.message.contains("ServiceAccount acme/invoicer"));
    assert!(gone.registration.is_none() && gone.held.is_none());

    let unread = decide_workload(ServiceAccountView::Found {
        uid: "uid-1",
        issuer: None,
    });
    assert_eq!(
        condition(&unread, types::READY).reason,
        reasons::SERVICE_ACCOUNT_ISSUER_UNKNOWN
    );
    assert!(unread.registration.is_none() && unread.held.is_some());

    // Standalone has no cluster: said so, not silently ignored.
    let r = run(&[acme()], &[invoicer()], &[]);
    let c = r.client("acme", "invoicer").unwrap();
    assert_eq!(
        condition(c, types::READY).reason,
        reasons::WORKLOAD_IDENTITY_UNAVAILABLE
    );
    assert!(c.registration.is_none());
}

fn with_ci_issuer(subjects: &serde_json::Value) -> Tenant {
    tenant(
        "acme",
        json!({"grantTypes": ["client_credentials"], "scopes": [{"name": "billing.read"}],
               "trustedIssuers": [{"name": "ci", "issuer": "https://ci.example.com",
                                   "subjects": subjects}]}),
    )
}

fn deployer(issuer: &str) -> OAuthClient {
    client(
        "acme",
        "deployer",
        1,
        json!({"tenantRef": "acme", "clientId": "acme-deployer", "grantTypes": ["client_credentials"],
               "scopes": ["billing.read"], "workloadIdentity": {"trustedIssuer": issuer}}),
    )
}

/// One trusted-issuer client decided against `keys`.
fn decide_federated(tenant: &Tenant, c: &OAuthClient, keys: Option<&IssuerKeys>) -> ClientOutcome {
    let keys: Vec<(String, IssuerKeys)> = keys
        .map(|k| ("ci".to_string(), k.clone()))
        .into_iter()
        .collect();
    reconcile_client(
        c,
        &ClientInputs {
            issuer_keys: &keys,
            tenant: TenantView::of(Some(tenant)),
            holds_id: true,
            secret: crate::secrets::SecretView::Missing,
            service_account: ServiceAccountView::Unavailable,
            public_url: "https://auth.example.com",
            now: &at(1000),
        },
    )
}

use crate::issuers::IssuerKeys;

#[test]
fn a_trusted_issuer_client_gets_the_subjects_its_tenant_maps_to_it_and_the_keys() {
    let mapped = json!([
        {"subject": "repo:acme/billing:ref:refs/heads/main", "client": {"namespace": "acme", "clientId": "acme-deployer"}},
        {"subject": "repo:acme/billing:environment:prod", "client": {"namespace": "acme", "clientId": "acme-deployer"}},
        {"subject": "repo:acme/other", "client": {"namespace": "other", "clientId": "acme-deployer"}}
    ]);
    let t = with_ci_issuer(&mapped);
    let jwks = json!({"keys": [{"kty": "EC", "kid": "a"}]});
    let current = IssuerKeys::Current {
        issuer: "https://ci.example.com".into(),
        jwks: jwks.clone(),
    };
    let c = decide_federated(&t, &deployer("ci"), Some(&current));
    assert_eq!(condition(&c, types::READY).status, "True");
    let reg = c.registration.as_ref().expect("registered");
    assert!(reg.secret.is_none() && c.secret_request.is_none());
    let bound = reg.config.federated.as_ref().unwrap();
    assert_eq!(bound.issuer, "https://ci.example.com");
    // Only the subjects mapped to this namespace's client.
    assert_eq!(
        bound.subjects,
        [
            "repo:acme/billing:ref:refs/heads/main",
            "repo:acme/billing:environment:prod"
        ]
    );
    assert_eq!(bound.jwks, jwks);
    assert!(reg.config.workload.is_none());
    assert_eq!(
        c.status.workload_subject.as_deref(),
        Some("repo:acme/billing:ref:refs/heads/main, repo:acme/billing:environment:prod")
    );
}

#[test]
fn a_trusted_issuer_client_without_issuer_mapping_or_keys_says_why() {
    let t = with_ci_issuer(&json!([
        {"subject": "job", "client": {"namespace": "acme", "clientId": "acme-deployer"}}
    ]));
    let reason = |c: &ClientOutcome| {
        let r = condition(c, types::READY);
        (r.status.clone(), r.reason.clone(), r.message.clone())
    };
    // No such issuer: decided, nothing registered.
    let c = decide_federated(&t, &deployer("gitlab"), None);
    assert_eq!(reason(&c).1, reasons::TRUSTED_ISSUER_NOT_FOUND);
    assert!(c.registration.is_none() && c.held.is_none());
    // The tenant maps nothing to it: an application team cannot claim a subject.
    let unmapped = with_ci_issuer(&json!([
        {"subject": "job", "client": {"namespace": "elsewhere", "clientId": "acme-deployer"}}
    ]));
    let c = decide_federated(&unmapped, &deployer("ci"), None);
    assert_eq!(reason(&c).1, reasons::WORKLOAD_SUBJECT_NOT_MAPPED);
    assert!(reason(&c).2.contains("spec.trustedIssuers[].subjects"));
    assert!(c.registration.is_none() && c.held.is_none());
    // Keys not read yet by this process, an earlier read in its grace: held.
    let held = IssuerKeys::Held {
        why: "not read".into(),
    };
    let c = decide_federated(&t, &deployer("ci"), Some(&held));
    assert_eq!(reason(&c).1, reasons::ISSUER_UNREACHABLE);
    assert!(c.registration.is_none() && c.held.is_some());
    // Too old (or never read): registered without keys, so its grants are kept but no token
    // authenticates it.
    let expired = IssuerKeys::Missing {
        why: "too old".into(),
        expired: true,
    };
    let c = decide_federated(&t, &deployer("ci"), Some(&expired));
    assert_eq!(reason(&c).0, "False");
    assert_eq!(reason(&c).1, reasons::ISSUER_UNREACHABLE);
    let bound = c
        .registration
        .as_ref()
        .unwrap()
        .config
        .federated
        .clone()
        .unwrap();
    assert_eq!(bound.jwks, json!({"keys": []}));
}

/// The attack a held registration must not allow: a namespace user breaks their own client's
/// spec on purpose, and keeps what its tenant withdraws afterwards.
#[test]
fn a_held_client_keeps_nothing_its_tenant_has_withdrawn() {
    let tenant_with = |mapped_to: &str,
                       scopes: serde_json::Value,
                       namespaces: serde_json::Value| {
        tenant(
            "acme",
            json!({"grantTypes": ["client_credentials", "refresh_token"], "scopes": scopes,
                   "clientNamespaces": namespaces,
                   "trustedIssuers": [{"name": "ci", "issuer": "https://ci.example.com",
                                       "subjects": [{"subject": "job", "client": {"namespace": mapped_to, "clientId": "acme-deployer"}}]}]}),
        )
    };
    let scopes = json!([{"name": "billing.read"}, {"name": "billing.write"}]);
    let before = tenant_with("acme", scopes.clone(), json!(["acme"]));
    let keys = IssuerKeys::Current {
        issuer: "https://ci.example.com".into(),
        jwks: json!({"keys": [{"kty": "EC", "kid": "a"}]}),
    };
    let mut valid = deployer("ci");
    valid.spec.scopes = vec!["billing.read".into(), "billing.write".into()];
    let stored = decide_federated(&before, &valid, Some(&keys))
        .registration
        .expect("registered")
        .config;
    assert!(stored.federated.is_some());

    // Broken on purpose (a duplicate grant type passes nothing but Gatehouse's own rules).
    let mut broken = valid.clone();
    broken.spec.grant_types = vec![GrantType::ClientCredentials, GrantType::ClientCredentials];
    let held = decide_federated(&before, &broken, Some(&keys));
    assert!(held.registration.is_none() && held.held.is_some());
    let within = held
        .held_within
        .as_ref()
        .expect("held within a valid tenant");
    assert_eq!(
        within.clamp(&stored).as_ref(),
        Some(&stored),
        "nothing withdrawn yet"
    );

    // The tenant maps the CI subject elsewhere and withdraws a scope: both are gone.
    let after = tenant_with(
        "elsewhere",
        json!([{"name": "billing.read"}]),
        json!(["acme"]),
    );
    let held = decide_federated(&after, &broken, Some(&keys));
    assert_eq!(
        held.held_within.unwrap().clamp(&stored),
        None,
        "unbound, it would fall back on its own jwks: it goes, as a current spec would"
    );
    // Only a scope withdrawn: the scope goes, the registration and its tokens stay.
    let narrowed = tenant_with("acme", json!([{"name": "billing.read"}]), json!(["acme"]));
    let held = decide_federated(&narrowed, &broken, Some(&keys));
    let kept = held
        .held_within
        .unwrap()
        .clamp(&stored)
        .expect("still admitted");
    assert_eq!(kept.scopes, ["billing.read"]);
    assert_eq!(kept.federated, stored.federated);
    assert_eq!(kept.incarnation, stored.incarnation, "its tokens are kept");
    // Another entry of the same URL mapping it is not the issuer it was bound to.
    let mut renamed = before.clone();
    renamed.spec.trusted_issuers[0].name = "other-ci".into();
    let held = decide_federated(&renamed, &broken, Some(&keys));
    assert_eq!(held.held_within.unwrap().clamp(&stored), None);

    // The tenant drops the namespace: nothing is kept.
    let closed = tenant_with("acme", scopes.clone(), json!(["other"]));
    let held = decide_federated(&closed, &broken, Some(&keys));
    assert_eq!(held.held_within.unwrap().clamp(&stored), None);

    // The tenant still maps it, but its keys are too old now: no token signs in.
    let expired = IssuerKeys::Missing {
        why: "too old".into(),
        expired: true,
    };
    let held = decide_federated(&before, &broken, Some(&expired));
    let kept = held.held_within.unwrap().clamp(&stored).unwrap();
    assert_eq!(kept.federated.unwrap().jwks, json!({"keys": []}));

    // A held tenant holds its clients as they are: the platform team's last valid version.
    let mut invalid = before.clone();
    invalid.spec.grant_types = vec![];
    let held = decide_federated(&invalid, &valid, Some(&keys));
    assert!(held.held.is_some() && held.held_within.is_none());
}
