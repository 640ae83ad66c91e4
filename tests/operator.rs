//! `gatehouse operator`, the real binary, against the test kit's in-memory API server and a
//! real redis-server, with a real `gatehouse server` serving what it publishes. The real
//! API server (`tests/kubernetes.rs`) is the judge of behaviour; this one stays for what an
//! API server's audit log cannot show: the `Accept` header of every request, so that a
//! Secret the operator looks up by name is asked for as metadata only, never with its data.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::apiserver::FakeApiServer;
use support::*;

/// Asks for acme-billing's client_credentials token until the answer has status `want` (or
/// `secs` pass); returns the last status.
async fn token_status_becomes(token_url: &str, secret: &str, want: u16, secs: u64) -> u16 {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let status = post_form(
            token_url,
            Some(&basic("acme-billing", secret)),
            "grant_type=client_credentials",
        )
        .await
        .status;
        if status == want || std::time::Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ready(status: &Value) -> Option<(String, String)> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_binary_reconciles_a_cluster_through_a_kubeconfig() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApiServer::default();
    let base = api.start().await;
    let kubeconfig = FakeApiServer::kubeconfig(&base, dir.path());
    let kek = dir.path().join("kek");
    std::fs::write(&kek, "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap();
    let (port, ops) = (
        gatehouse_testkit::free_port(),
        gatehouse_testkit::free_port(),
    );
    let public = format!("http://127.0.0.1:{port}");

    api.apply(
        "tenants",
        json!({"metadata": {"name": "acme"}, "spec": {"grantTypes": ["client_credentials"]}}),
    );
    api.apply(
        "oauthclients",
        json!({"metadata": {"name": "billing", "namespace": "acme"},
        "spec": {"tenantRef": "acme", "grantTypes": ["client_credentials"], "scopes": []}}),
    );
    api.apply(
        "oauthclients",
        json!({"metadata": {"name": "payroll", "namespace": "acme"},
        "spec": {"tenantRef": "acme", "grantTypes": ["client_credentials", "password"]}}),
    );
    api.apply(
        "oauthclients",
        json!({"metadata": {"name": "stray", "namespace": "acme"},
        "spec": {"tenantRef": "globex", "grantTypes": ["client_credentials"]}}),
    );
    // Another team's Secret, which nothing refers to: the operator must never see it.
    api.apply(
        "secrets",
        json!({"metadata": {"name": "database", "namespace": "payments"},
        "stringData": {"password": "payments-db-password"}}),
    );
    // A client whose Secret GitOps supplies, at first without the label.
    api.apply(
        "oauthclients",
        json!({"metadata": {"name": "ledger", "namespace": "acme"},
        "spec": {"tenantRef": "acme", "grantTypes": ["client_credentials"],
                 "secretRef": {"name": "ledger-credentials", "generate": false}}}),
    );
    let ledger_secret = |labels: Value| {
        json!({"metadata": {"name": "ledger-credentials", "namespace": "acme", "labels": labels},
               "stringData": {"client_secret": "ledger-secret"}})
    };
    api.apply("secrets", ledger_secret(json!({})));

    let env = [
        ("KUBECONFIG", kubeconfig.to_str().unwrap()),
        ("GATEHOUSE_KEY_ENCRYPTION_KEY_FILE", kek.to_str().unwrap()),
        ("POD_NAME", "gatehouse-operator-0"),
    ];
    let ops_addr = format!("127.0.0.1:{ops}");
    let mut operator = spawn(
        dir.path(),
        "operator",
        &[
            "operator",
            "--store",
            &redis.url(),
            "--public-url",
            &public,
            "--metrics-listen",
            &ops_addr,
        ],
        &env,
    );
    let server_addr = format!("127.0.0.1:{port}");
    let _server = spawn(
        dir.path(),
        "server",
        &[
            "server",
            "--store",
            &redis.url(),
            "--listen",
            &server_addr,
            "--public-url",
            &public,
        ],
        &env,
    );

    eventually(60, "billing is Ready", || async {
        api.get("oauthclients", Some("acme"), "billing")
            .and_then(|c| ready(&c["status"]))
            .is_some_and(|r| r.0 == "True")
    })
    .await;
    assert_eq!(
        http_status(&format!("http://{ops_addr}/readyz")).unwrap(),
        200,
        "{}",
        operator.log()
    );

    // What `kubectl get` columns read: statuses as the operator wrote them.
    let tenant = api.get("tenants", None, "acme").unwrap();
    assert_eq!(tenant["status"]["issuer"], format!("{public}/acme"));
    assert_eq!(
        tenant["metadata"]["finalizers"],
        json!(["gatehouse.dev/cleanup"])
    );
    let keys = api
        .get("secrets", Some("gatehouse"), "gatehouse-keys-acme")
        .expect("keys Secret");
    assert_eq!(
        keys["metadata"]["ownerReferences"][0]["uid"],
        tenant["metadata"]["uid"]
    );
    eventually(30, "the tenant counts both live clients", || async {
        api.get("tenants", None, "acme").unwrap()["status"]["clients"] == 2
    })
    .await;
    // The unlabelled Secret is named, not read; labelled, it takes effect.
    eventually(30, "ledger says which label its Secret lacks", || async {
        api.get("oauthclients", Some("acme"), "ledger")
            .and_then(|c| ready(&c["status"]))
            .is_some_and(|r| r == ("False".into(), "SecretNotLabelled".into()))
    })
    .await;
    let ledger_token = |secret: &'static str| {
        let url = format!("{public}/acme/oauth2/token");
        async move {
            post_form(
                &url,
                Some(&basic("acme-ledger", secret)),
                "grant_type=client_credentials",
            )
            .await
            .status
        }
    };
    eventually(10, "the token service refuses ledger", || async {
        ledger_token("ledger-secret").await == 401
    })
    .await;
    api.apply(
        "secrets",
        ledger_secret(json!({"gatehouse.dev/watch": "true"})),
    );
    eventually(
        30,
        "ledger is Ready once its Secret is labelled",
        || async {
            api.get("oauthclients", Some("acme"), "ledger")
                .and_then(|c| ready(&c["status"]))
                .is_some_and(|r| r.0 == "True")
        },
    )
    .await;
    eventually(10, "ledger's secret works", || async {
        ledger_token("ledger-secret").await == 200
    })
    .await;
    let payroll = api.get("oauthclients", Some("acme"), "payroll").unwrap();
    assert_eq!(
        payroll["status"]["grantTypes"],
        json!(["client_credentials"])
    );
    let stray = api.get("oauthclients", Some("acme"), "stray").unwrap();
    assert_eq!(
        ready(&stray["status"]),
        Some(("False".into(), "TenantNotFound".into()))
    );
    assert!(
        api.get("secrets", Some("acme"), "stray-credentials")
            .is_none(),
        "no Secret for a refused client"
    );
    let events: Vec<String> = api
        .list("events")
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["reason"].as_str().unwrap_or(""),
                e["regarding"]["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    for wanted in [
        "SecretGenerated billing",
        "Reconciled billing",
        "TenantNotFound stray",
        "GrantTypeNotEnabled payroll",
        "Reconciled acme",
    ] {
        assert!(
            events.iter().any(|e| e == wanted),
            "{wanted} missing from {events:?}"
        );
    }

    // The generated Secret works at the token service.
    let creds = api
        .get("secrets", Some("acme"), "billing-credentials")
        .unwrap();
    let decode = |k: &str| {
        use base64::Engine;
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(creds["data"][k].as_str().unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(
        decode("token_endpoint"),
        format!("{public}/acme/oauth2/token")
    );
    let secret = decode("client_secret");
    let token_url = format!("{public}/acme/oauth2/token");
    let status = token_status_becomes(&token_url, &secret, 200, 10).await;
    assert_eq!(status, 200);

    // Redis loses everything once the operator is idle: its drift check notices and restores
    // it, with nobody touching a resource.
    let reconciliations = || async {
        let text = scrape(&ops_addr).await;
        text.lines()
            .filter(|l| l.starts_with("gatehouse_operator_reconciliations_total"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum::<u64>()
    };
    let mut last = reconciliations().await;
    loop {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let now = reconciliations().await;
        if now == last {
            break;
        }
        last = now;
    }
    gatehouse_testkit::redis_command(redis.port, &["FLUSHALL"]).unwrap();
    let after_flush = token_status_becomes(&token_url, &secret, 404, 2).await;
    assert_eq!(after_flush, 404, "the token service saw the flush");
    let restored = token_status_becomes(&token_url, &secret, 200, 40).await;
    assert_eq!(
        restored,
        200,
        "not restored after a flush:\n{}",
        operator.log()
    );
    assert!(
        operator
            .log()
            .contains("the store lost published configuration"),
        "{}",
        operator.log()
    );

    // Rotation on request: a fresh secret in the owned Secret, live at the token service.
    api.apply(
        "oauthclients",
        json!({"metadata": {"name": "billing", "namespace": "acme",
        "annotations": {"gatehouse.dev/rotate-secret": "2026-11"}},
        "spec": {"tenantRef": "acme", "grantTypes": ["client_credentials"], "scopes": []}}),
    );
    eventually(30, "the Secret records the rotation", || async {
        api.get("secrets", Some("acme"), "billing-credentials")
            .unwrap()["metadata"]["annotations"]["gatehouse.dev/rotated-for"]
            == "2026-11"
    })
    .await;
    let creds = api
        .get("secrets", Some("acme"), "billing-credentials")
        .unwrap();
    let rotated = {
        use base64::Engine;
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(creds["data"]["client_secret"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    assert_ne!(rotated, secret);
    assert_eq!(
        token_status_becomes(&token_url, &rotated, 200, 10).await,
        200
    );
    assert_eq!(
        token_status_becomes(&token_url, &secret, 401, 10).await,
        401
    );
    let secret = rotated;

    // Deleting the client: the finalizer deregisters it, then lets it go.
    api.delete("oauthclients", Some("acme"), "billing");
    eventually(30, "billing is gone", || async {
        api.get("oauthclients", Some("acme"), "billing").is_none()
    })
    .await;
    let refused = token_status_becomes(&token_url, &secret, 401, 5).await;
    assert_eq!(refused, 401);

    // Deleting the tenant: its issuer goes, its keys Secret goes, then the Tenant itself.
    api.delete("tenants", None, "acme");
    eventually(30, "acme is gone", || async {
        api.get("tenants", None, "acme").is_none()
    })
    .await;
    assert!(
        api.get("secrets", Some("gatehouse"), "gatehouse-keys-acme")
            .is_none()
    );
    let discovery = format!("{public}/acme/.well-known/openid-configuration");
    let mut gone = 0;
    for _ in 0..50 {
        gone = http_status(&discovery).unwrap();
        if gone == 404 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(gone, 404);
    assert!(
        api.list("events")
            .iter()
            .any(|e| e["reason"] == "TenantRemoved")
    );
    eventually(30, "payroll reports its tenant gone", || async {
        api.get("oauthclients", Some("acme"), "payroll")
            .and_then(|c| ready(&c["status"]))
            .is_some_and(|r| r.1 == "TenantNotFound")
    })
    .await;

    // Metrics, then a graceful stop that hands the lease on. Nothing waits to be reconciled
    // by now (the backlog is counted every few seconds).
    eventually(15, "an empty backlog", || async {
        let metrics = scrape(&ops_addr).await;
        metrics.contains("gatehouse_operator_objects_pending{kind=\"OAuthClient\"} 0")
            && metrics.contains("gatehouse_operator_objects_pending{kind=\"Tenant\"} 0")
    })
    .await;
    let metrics = scrape(&ops_addr).await;
    assert!(
        metrics.contains("gatehouse_operator_reconciliations_total{kind=\"OAuthClient\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("gatehouse_operator_leader 1"), "{metrics}");
    // Quiet by now: nothing in flight (each reconcile's guard gave its place back).
    assert!(
        metrics.contains("gatehouse_operator_reconciles_in_flight{kind=\"OAuthClient\"} 0"),
        "{metrics}"
    );
    let exit = operator.terminate();
    assert!(exit.success(), "exit {exit}:\n{}", operator.log());
    let lease = api
        .get("leases", Some("gatehouse"), "gatehouse-operator")
        .unwrap();
    assert!(
        lease["spec"]["holderIdentity"].is_null(),
        "released: {lease}"
    );

    // Every request is allowed and asks for no more than its call declares (Secrets listed
    // and watched by the watch label, or one by name and metadata only), and every allowed
    // call was needed.
    let mut used = std::collections::BTreeSet::new();
    for r in api.requests() {
        let request = gatehouse_controller::rbac::Request {
            method: &r.method,
            path: &r.path,
            query: &r.query,
            accept: &r.accept,
        };
        match gatehouse_controller::rbac::check(&request, "gatehouse") {
            Ok((group, resource, verb, _)) => used.insert((group, resource, verb)),
            Err(e) => panic!("{e}"),
        };
        assert!(
            !r.path.contains("/namespaces/payments/"),
            "the operator looked at a namespace nothing refers it to: {r:?}"
        );
    }
    assert!(
        api.requests()
            .iter()
            .any(|r| r.path == "/api/v1/secrets" && r.query.contains("watch=true")),
        "Secrets are watched"
    );
    for call in gatehouse_controller::rbac::CALLS {
        let key = (
            call.group.to_string(),
            call.resource.to_string(),
            call.verb.to_string(),
        );
        // A repeated event becomes a PATCH of its series: the mock-API tests see that one.
        if key == ("events.k8s.io".into(), "events".into(), "patch".into()) {
            continue;
        }
        // Workload identity's ServiceAccount lookups need a cluster issuer this in-memory API
        // does not publish: the real API server's test (tests/kubernetes.rs) sees them made.
        if key == (String::new(), "serviceaccounts".into(), "get".into()) {
            continue;
        }
        assert!(
            used.contains(&key),
            "{key:?} is granted but never used: {used:?}"
        );
    }
}
