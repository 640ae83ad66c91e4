//! Standalone as an operator experiences it: status reasons for rejected clients, edits picked
//! up while running, malformed manifests named precisely, generated secrets, operations
//! endpoints, Redis outages, and logs free of secrets.

mod support;

use std::sync::Arc;
use support::*;

const REJECTED: &str = r"
apiVersion: gatehouse.dev/v1alpha1
kind: OAuthClient
metadata: {name: orphan, namespace: acme}
spec: {tenantRef: initech, grantTypes: [client_credentials], secretRef: {name: shared, generate: false}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: OAuthClient
metadata: {name: outsider, namespace: hooli}
spec: {tenantRef: acme, grantTypes: [client_credentials], secretRef: {name: shared, generate: false}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: OAuthClient
metadata: {name: greedy, namespace: acme}
spec: {tenantRef: acme, grantTypes: [client_credentials, password], secretRef: {name: shared, generate: false}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: OAuthClient
metadata: {name: wants-password, namespace: acme}
spec: {tenantRef: acme, grantTypes: [password], secretRef: {name: shared, generate: false}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: OAuthClient
metadata: {name: copycat, namespace: acme}
spec: {tenantRef: acme, clientId: acme-billing, grantTypes: [client_credentials], secretRef: {name: shared, generate: false}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: OAuthClient
metadata: {name: emptysecret, namespace: acme}
spec: {tenantRef: acme, grantTypes: [client_credentials], secretRef: {name: empty, generate: false}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: OAuthClient
metadata: {name: waiting, namespace: acme}
spec: {tenantRef: acme, grantTypes: [client_credentials], secretRef: {name: not-yet, generate: false}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: OAuthClient
metadata: {name: unlabelled, namespace: acme}
spec: {tenantRef: acme, grantTypes: [client_credentials], secretRef: {name: not-for-gatehouse}}
---
apiVersion: v1
kind: Secret
metadata: {name: not-for-gatehouse, namespace: acme}
stringData: {client_secret: shared-secret}
---
apiVersion: v1
kind: Secret
metadata: {name: shared, namespace: acme, labels: {gatehouse.dev/watch: 'true'}}
stringData: {client_secret: shared-secret}
---
apiVersion: v1
kind: Secret
metadata: {name: shared, namespace: hooli, labels: {gatehouse.dev/watch: 'true'}}
stringData: {client_secret: shared-secret}
---
apiVersion: v1
kind: Secret
metadata: {name: empty, namespace: acme, labels: {gatehouse.dev/watch: 'true'}}
stringData: {other: x}
";

#[tokio::test]
async fn each_rejection_reason_is_reported_and_gets_no_token() {
    let redis = RedisServer::start();
    let mut files = fixtures();
    files.push(("rejected.yaml", REJECTED));
    let g = Gatehouse::start(&redis.url(), &files);
    let out = g.stdout();
    for (object, expected) in [
        (
            "OAuthClient acme/orphan",
            "TenantNotFound: tenant initech does not exist",
        ),
        ("OAuthClient hooli/outsider", "NamespaceNotAllowed:"),
        (
            "OAuthClient acme/greedy",
            "GrantTypeNotEnabled: tenant acme does not enable password; the client keeps client_credentials",
        ),
        ("OAuthClient acme/wants-password", "GrantTypeNotEnabled:"),
        (
            "OAuthClient acme/copycat",
            "ClientIdConflict: client id acme-billing is already used",
        ),
        (
            "OAuthClient acme/emptysecret",
            "SecretInvalid: Secret empty has no client_secret",
        ),
        (
            "OAuthClient acme/waiting",
            "SecretNotFound: waiting for Secret not-yet",
        ),
        // As in a cluster: a Secret without the watch label is not read, nor generated over.
        (
            "OAuthClient acme/unlabelled",
            "SecretNotLabelled: Secret acme/not-for-gatehouse lacks the label gatehouse.dev/watch=true",
        ),
    ] {
        assert!(
            has_problem(&out, object, expected),
            "missing {object}: {expected:?} in:\n{out}"
        );
    }
    assert!(
        out.contains("OAuthClient acme/orphan (rejected.yaml, document "),
        "problems name the file and document: {out}"
    );
    // The status table carries the effective grants of the partly accepted client.
    let greedy_row = out.lines().find(|l| l.starts_with("acme/greedy")).unwrap();
    assert!(
        greedy_row.contains("client_credentials") && !greedy_row.contains("password"),
        "{greedy_row}"
    );

    for (tenant, id) in [
        ("initech", "acme-orphan"),
        ("acme", "hooli-outsider"),
        ("acme", "acme-wants-password"),
        ("acme", "acme-emptysecret"),
        ("acme", "acme-waiting"),
        ("acme", "acme-unlabelled"),
    ] {
        if tenant == "initech" {
            let r = post_form(
                &format!("{}/initech/oauth2/token", g.base),
                Some(&basic(id, "shared-secret")),
                "grant_type=client_credentials",
            )
            .await;
            assert_eq!(r.status, 404, "{id}");
            continue;
        }
        let r = client_credentials(&g, tenant, id, "shared-secret", &[]).await;
        assert_eq!(
            (r.status, r.error()),
            (401, "invalid_client"),
            "{id} must get no token"
        );
    }
    // The loser of the id conflict cannot use the winner's id with its own secret.
    let r = client_credentials(&g, "acme", "acme-billing", "shared-secret", &[]).await;
    assert_eq!(r.status, 401);
    // The partly accepted client keeps what its tenant enables.
    let r = client_credentials(&g, "acme", "acme-greedy", "shared-secret", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        !g.manifests
            .path()
            .join("generated/acme.not-for-gatehouse.yaml")
            .exists(),
        "nothing generated beside someone else's Secret"
    );
}

#[tokio::test]
async fn manifest_edits_are_picked_up_while_running() {
    let redis = RedisServer::start();
    let g = Gatehouse::start(&redis.url(), &fixtures());
    let client = |secret: &str| {
        format!(
            "apiVersion: gatehouse.dev/v1alpha1\nkind: OAuthClient\nmetadata: {{name: late, namespace: acme}}\n\
             spec: {{tenantRef: acme, grantTypes: [client_credentials], scopes: [billing.read], secretRef: {{name: late-secret, generate: false}}}}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {{name: late-secret, namespace: acme, labels: {{gatehouse.dev/watch: 'true'}}}}\nstringData: {{client_secret: {secret}}}\n"
        )
    };
    let r = client_credentials(&g, "acme", "acme-late", "first", &[]).await;
    assert_eq!(r.status, 401);

    g.write_manifest("late.yaml", &client("first"));
    eventually(10, "new client registered", || async {
        client_credentials(&g, "acme", "acme-late", "first", &[])
            .await
            .status
            == 200
    })
    .await;

    // A secret change takes effect; the old secret stops working.
    g.write_manifest("late.yaml", &client("second"));
    eventually(10, "secret rotated", || async {
        client_credentials(&g, "acme", "acme-late", "second", &[])
            .await
            .status
            == 200
    })
    .await;
    assert_eq!(
        client_credentials(&g, "acme", "acme-late", "first", &[])
            .await
            .status,
        401
    );

    // A broken edit is reported by file, document and field, and the last good state serves on.
    g.write_manifest("broken.yaml", "apiVersion: gatehouse.dev/v1alpha1\nkind: Tenant\nmetadata: {name: bad}\nspec: {grantTypes: [teleport]}\n");
    eventually(10, "error logged", || async {
        g.stderr()
            .contains("broken.yaml, document 1 (Tenant bad), field spec.grantTypes[0]")
    })
    .await;
    assert_eq!(
        client_credentials(&g, "acme", "acme-late", "second", &[])
            .await
            .status,
        200
    );
    g.remove_manifest("broken.yaml");

    // A tenant setting change reaches the token endpoint.
    g.write_manifest(
        "acme.yaml",
        &ACME.replace(
            "grantTypes: [client_credentials, refresh_token]",
            "grantTypes: [client_credentials]\n  accessToken: {ttl: 2m}",
        ),
    );
    eventually(10, "new TTL", || async {
        client_credentials(&g, "acme", "acme-late", "second", &[])
            .await
            .body["expires_in"]
            == 120
    })
    .await;

    // Removing the client takes it out of service.
    g.remove_manifest("late.yaml");
    eventually(10, "client removed", || async {
        client_credentials(&g, "acme", "acme-late", "second", &[])
            .await
            .status
            == 401
    })
    .await;
    // Removing a tenant takes its issuer away.
    g.remove_manifest("globex.yaml");
    eventually(10, "tenant removed", || async {
        reqwest::get(format!(
            "{}/.well-known/oauth-authorization-server/globex",
            g.base
        ))
        .await
        .unwrap()
        .status()
            == 404
    })
    .await;
}

#[tokio::test]
async fn missing_secrets_are_generated_into_the_manifests_directory() {
    let files = vec![
        ("acme.yaml", ACME),
        (
            "gen.yaml",
            "apiVersion: gatehouse.dev/v1alpha1\nkind: OAuthClient\nmetadata: {name: reports, namespace: acme}\nspec: {tenantRef: acme, grantTypes: [client_credentials]}\n",
        ),
    ];
    let g = Gatehouse::start("memory://", &files);
    let path = g
        .manifests_path()
        .join("generated/acme.reports-credentials.yaml");
    let text = std::fs::read_to_string(&path).expect("generated Secret manifest");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let secret = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("client_secret: "))
        .expect("client_secret")
        .trim_matches('"')
        .to_string();
    assert!(secret.len() >= 43);
    assert!(
        text.contains(&format!("token_endpoint: {}/acme/oauth2/token", g.base)),
        "{text}"
    );
    let r = client_credentials(&g, "acme", "acme-reports", &secret, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        !g.stderr().contains(&secret),
        "the generated secret is never logged"
    );
    // A log file, not a terminal: plain text, no colour codes.
    let log = g.stderr();
    assert!(log.contains("INFO") && !log.contains('\u{1b}'), "{log}");
}

#[test]
fn malformed_manifests_stop_start_up_with_file_document_and_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), ACME).unwrap();
    std::fs::write(
        dir.path().join("b.yaml"),
        "apiVersion: gatehouse.dev/v1alpha1\nkind: OAuthClient\nmetadata: {name: x, namespace: acme}\nspec: {tenantRef: acme, grantTypes: [client_credentials], public: maybe}\n",
    )
    .unwrap();
    let out = std::process::Command::new(binary())
        .args(["standalone", "--manifests"])
        .arg(dir.path())
        .args([
            "--listen",
            &format!("127.0.0.1:{}", gatehouse_testkit::free_port()),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("b.yaml, document 1 (OAuthClient x), field spec.public: "),
        "{err}"
    );
}

#[tokio::test]
async fn operations_endpoints_and_redis_outages() {
    let redis = RedisServer::start();
    let g = Gatehouse::start(&redis.url(), &fixtures());
    let ops = format!("http://127.0.0.1:{}", g.ops_port);
    assert_eq!(
        reqwest::get(format!("{ops}/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        reqwest::get(format!("{ops}/readyz"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client_credentials(&g, "acme", "acme-billing", BILLING_SECRET, &[])
            .await
            .status,
        200
    );
    assert_eq!(
        client_credentials(&g, "acme", "acme-billing", "wrong", &[])
            .await
            .status,
        401
    );
    let jwks_url = g.endpoint("acme", "jwks_uri").await;
    let kids_before = published_kids(&jwks_url).await;
    let metrics = g.metrics().await;
    for needle in [
        r#"gatehouse_tokens_issued_total{tenant="acme",grant_type="client_credentials"} 1"#,
        r#"gatehouse_oauth_errors_total{tenant="acme",error="invalid_client"} 1"#,
        "gatehouse_http_request_duration_seconds_bucket",
        "gatehouse_tenants 2",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in:\n{metrics}");
    }

    // Redis goes away: readiness fails, opaque tokens (a Redis write each) fail fast with 503.
    let port = redis.port;
    drop(redis);
    let r = client_credentials(&g, "globex", "globex-ops", "globex-secret", &[]).await;
    assert_eq!(
        (r.status, r.error()),
        (503, "temporarily_unavailable"),
        "{}",
        r.body
    );
    assert!(r.headers.get("retry-after").is_some());
    assert_eq!(
        reqwest::get(format!("{ops}/readyz"))
            .await
            .unwrap()
            .status(),
        503
    );
    // Introspection needs the store for revocations: also 503, never a wrong answer.
    let url = g.endpoint("acme", "introspection_endpoint").await;
    let jwt = client_credentials(&g, "acme", "acme-billing", BILLING_SECRET, &[]).await;
    assert_eq!(jwt.status, 200, "JWT issuance needs no store round trip");
    let r = post_form(
        &url,
        Some(&basic("acme-billing", BILLING_SECRET)),
        &form(&[("token", jwt.body["access_token"].as_str().unwrap())]),
    )
    .await;
    assert_eq!((r.status, r.error()), (503, "temporarily_unavailable"));

    // Redis comes back empty on the same port: standalone refills it and all works again,
    // with the same signing keys (kept beside the manifests): every token signed while it
    // happens carries a `kid` that JWKS publishes.
    let signing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let background = tokio::spawn({
        let signing = signing.clone();
        let token_url = format!("{}/acme/oauth2/token", g.base);
        async move {
            let mut kids = std::collections::BTreeSet::new();
            let mut signed = 0;
            while signing.load(std::sync::atomic::Ordering::Relaxed) {
                let r = post_form(
                    &token_url,
                    Some(&basic("acme-billing", BILLING_SECRET)),
                    "grant_type=client_credentials",
                )
                .await;
                if r.status == 200 {
                    kids.insert(jwt_kid(r.body["access_token"].as_str().unwrap()));
                    signed += 1;
                }
            }
            (kids, signed)
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let _revived = RedisServer::start_on(port);
    eventually(30, "ready again", || async {
        reqwest::get(format!("{ops}/readyz"))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    let token_url = format!("{}/globex/oauth2/token", g.base);
    eventually(30, "opaque tokens again", || async {
        post_form(
            &token_url,
            Some(&basic("globex-ops", "globex-secret")),
            "grant_type=client_credentials",
        )
        .await
        .status
            == 200
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    signing.store(false, std::sync::atomic::Ordering::Relaxed);
    let (kids, signed) = background.await.unwrap();
    assert!(
        signed > 10,
        "only {signed} tokens signed around the restart"
    );
    assert_eq!(
        published_kids(&jwks_url).await,
        kids_before,
        "the same keys"
    );
    assert!(
        kids.iter().all(|k| kids_before.contains(k)),
        "signed with {kids:?}, JWKS publishes {kids_before:?}"
    );
    assert!(
        g.stderr().contains("publishing it again"),
        "the drift was noticed"
    );
}

async fn published_kids(jwks_url: &str) -> std::collections::BTreeSet<String> {
    let jwks: serde_json::Value = reqwest::get(jwks_url).await.unwrap().json().await.unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

fn jwt_kid(token: &str) -> String {
    use base64::Engine;
    let header = token.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn no_secret_or_token_reaches_the_logs() {
    let redis = RedisServer::start();
    let g = Gatehouse::start(&redis.url(), &fixtures());
    let mut tokens = Vec::new();
    for _ in 0..3 {
        tokens.push(
            client_credentials(&g, "acme", "acme-billing", BILLING_SECRET, &[])
                .await
                .body["access_token"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        tokens.push(
            client_credentials(&g, "globex", "globex-ops", "globex-secret", &[])
                .await
                .body["access_token"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let _ = client_credentials(&g, "acme", "acme-billing", "a-wrong-password-123", &[]).await;
    let logs = format!("{}{}", g.stderr(), g.stdout());
    assert!(
        logs.contains("gatehouse::access"),
        "debug access logs were captured"
    );
    // Each access line says which client asked for which grant, and a failure its error code.
    assert!(
        logs.lines()
            .any(|l| l.contains(r#"client="acme-billing" grant="client_credentials" status=200"#)),
        "{logs}"
    );
    assert!(
        logs.lines().any(|l| l.contains(
            r#"client="acme-billing" grant="client_credentials" status=401 error="invalid_client""#
        )),
        "{logs}"
    );
    for needle in [
        BILLING_SECRET,
        "globex-secret",
        "poster-secret",
        "a-wrong-password-123",
    ]
    .iter()
    .map(std::string::ToString::to_string)
    .chain(tokens)
    {
        assert!(!logs.contains(&needle), "{needle:?} leaked into the logs");
    }
}

#[tokio::test]
async fn a_redis_that_may_evict_keys_is_refused_at_start_and_unreadies_a_running_server() {
    let redis = RedisServer::start();
    let set = |name: &str, value: &str| {
        gatehouse_testkit::redis_command(redis.port, &["CONFIG", "SET", name, value]).unwrap();
    };
    set("maxmemory", "1gb");
    set("maxmemory-policy", "allkeys-lru");
    let keys = tempfile::tempdir().unwrap();
    let kek = keys.path().join("kek");
    std::fs::write(&kek, "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap();
    let manifests = tempfile::tempdir().unwrap();
    let url = redis.url();
    for role in [
        vec![
            "standalone",
            "--manifests",
            manifests.path().to_str().unwrap(),
        ],
        vec!["server"],
        vec!["operator", "--public-url", "https://auth.example.com"],
    ] {
        let out = std::process::Command::new(binary())
            .args(&role)
            .args(["--store", &url])
            .env("GATEHOUSE_KEY_ENCRYPTION_KEY_FILE", &kek)
            .env("KUBECONFIG", keys.path().join("none"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{role:?} started: {err}");
        assert!(
            err.contains("maxmemory-policy allkeys-lru") && err.contains("--allow-evicting-store"),
            "{role:?}: {err}"
        );
    }

    // Allowed by whoever knows better: it starts, and says what it was allowed.
    let dir = tempfile::tempdir().unwrap();
    for (name, yaml) in fixtures() {
        std::fs::write(dir.path().join(name), yaml).unwrap();
    }
    let allowed =
        Gatehouse::start_with_env(&url, dir, &[("GATEHOUSE_ALLOW_EVICTING_STORE", "true")]);
    assert!(
        allowed.stderr().contains("starting on an evicting store"),
        "{}",
        allowed.stderr()
    );
    drop(allowed);

    // Safe at start, unsafe later (a failover to a Redis set up otherwise): not ready, and
    // ready again once fixed.
    set("maxmemory-policy", "noeviction");
    let g = Gatehouse::start(&url, &fixtures());
    let readyz = format!("http://127.0.0.1:{}/readyz", g.ops_port);
    set("maxmemory-policy", "volatile-lru");
    let r = reqwest::get(&readyz).await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("volatile-lru"));
    assert!(g.stderr().contains("the store's settings turned unsafe"));
    set("maxmemory-policy", "noeviction");
    assert_eq!(reqwest::get(&readyz).await.unwrap().status(), 200);
}

#[tokio::test]
async fn long_strings_are_refused_with_a_line_never_a_crash() {
    let long = "a".repeat(70_000);
    // At start-up: a name no Kubernetes object can have stops it, with file, document, field.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), ACME).unwrap();
    std::fs::write(
        dir.path().join("b.yaml"),
        format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: {long}, namespace: acme}}\n"),
    )
    .unwrap();
    let out = std::process::Command::new(binary())
        .args(["standalone", "--manifests"])
        .arg(dir.path())
        .args([
            "--listen",
            &format!("127.0.0.1:{}", gatehouse_testkit::free_port()),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err:.2000}");
    assert!(err.contains("b.yaml, document 1"), "{err:.2000}");
    assert!(err.contains("field metadata.name"), "{err:.2000}");
    assert!(err.len() < 4_000, "{err:.2000}");

    // A client whose clientId is too long is refused, alone; the rest serves.
    let long_client = format!(
        "apiVersion: gatehouse.dev/v1alpha1\nkind: OAuthClient\nmetadata: {{name: long, namespace: acme}}\n\
         spec: {{tenantRef: acme, clientId: {long}, grantTypes: [client_credentials]}}\n"
    );
    let mut files = fixtures();
    files.push(("long.yaml", &long_client));
    let g = Gatehouse::start("memory://", &files);
    let reply = client_credentials(
        &g,
        "acme",
        "acme-billing",
        "s3cret:with/special+chars&=%",
        &[],
    )
    .await;
    assert_eq!(reply.status, 200);
    let table = g.stdout();
    assert!(
        table.contains("OAuthClient acme/long (")
            && table.contains("long.yaml, document 1): InvalidSpec: spec.clientId"),
        "{table:.3000}"
    );
    assert!(
        table.lines().all(|l| l.chars().count() < 400),
        "{table:.3000}"
    );

    // The same as a live edit: refused, and the watching goes on (a valid client added after
    // it is served).
    g.write_manifest(
        "longer.yaml",
        &long_client.replace("name: long,", "name: longer,"),
    );
    eventually(10, "the edit is reported", || async {
        g.stdout().contains("OAuthClient acme/longer (")
    })
    .await;
    g.write_manifest(
        "later.yaml",
        "apiVersion: gatehouse.dev/v1alpha1\nkind: OAuthClient\nmetadata: {name: later, namespace: acme}\n\
         spec: {tenantRef: acme, clientId: later, grantTypes: [client_credentials], secretRef: {name: later-credentials, generate: false}}\n\
         ---\napiVersion: v1\nkind: Secret\nmetadata: {name: later-credentials, namespace: acme, labels: {gatehouse.dev/watch: 'true'}}\nstringData: {client_secret: later-secret}\n",
    );
    eventually(10, "a client added later is served", || async {
        client_credentials(&g, "acme", "later", "later-secret", &[])
            .await
            .status
            == 200
    })
    .await;
    assert!(!g.stderr().contains("panicked"), "{:.3000}", g.stderr());
}

#[test]
fn printing_commands_say_why_when_their_output_is_closed_or_full() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    for args in [vec!["crdgen"], vec!["rbac"], vec!["hash-password"]] {
        // Full: /dev/full refuses every write.
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let mut child = Command::new(binary())
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(full)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // crdgen and rbac do not read it, and may be gone already.
        let _ = child.stdin.take().unwrap().write_all(b"pw\n");
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("writing to standard output"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");

        // Closed: the reader went away before anything was written (`| head -c0`).
        let mut child = Command::new(binary())
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        // crdgen and rbac do not read it, and may be gone already.
        let _ = child.stdin.take().unwrap().write_all(b"pw\n");
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(101), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// What production Redis asks of a client: an ACL user (not `default`), and TLS with a
/// private CA. Each works when given, and its absence is a clear refusal at start.
#[tokio::test]
async fn redis_with_an_acl_user_and_a_private_ca() {
    let refused = |store: &str, env: &[(&str, &str)]| {
        let manifests = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(binary())
            .args(["standalone", "--manifests"])
            .arg(manifests.path())
            .args(["--store", store, "--listen", "127.0.0.1:0"])
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let files = |dir: &tempfile::TempDir| {
        for (name, yaml) in fixtures() {
            std::fs::write(dir.path().join(name), yaml).unwrap();
        }
    };

    let acl = RedisServer::start_with_acl_user("gatehouse", "acl-secret-1");
    let dir = tempfile::tempdir().unwrap();
    files(&dir);
    let g = Gatehouse::start_with_env(
        &acl.url(),
        dir,
        &[
            ("GATEHOUSE_STORE_USERNAME", "gatehouse"),
            ("GATEHOUSE_STORE_PASSWORD", "acl-secret-1"),
        ],
    );
    let r = client_credentials(&g, "acme", "acme-billing", BILLING_SECRET, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        !g.stderr().contains("acl-secret-1"),
        "the password is never logged"
    );
    // The default user is off: without the username the same password is refused.
    let err = refused(&acl.url(), &[("GATEHOUSE_STORE_PASSWORD", "acl-secret-1")]);
    assert!(err.contains("opening the store"), "{err}");
    assert!(!err.contains("acl-secret-1"), "{err}");
    let err = refused(&acl.url(), &[("GATEHOUSE_STORE_USERNAME", "gatehouse")]);
    assert!(err.contains("an ACL username needs a password"), "{err}");

    let tls = RedisServer::start_tls();
    let ca = tls.ca_file();
    let dir = tempfile::tempdir().unwrap();
    files(&dir);
    let g = Gatehouse::start_with_env(
        &tls.tls_url(),
        dir,
        &[("GATEHOUSE_STORE_CA_FILE", ca.to_str().unwrap())],
    );
    let r = client_credentials(&g, "acme", "acme-billing", BILLING_SECRET, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Without the CA the server's certificate is not trusted; a CA for plain redis:// is a
    // mistake said as one.
    let err = refused(&tls.tls_url(), &[]);
    assert!(err.contains("opening the store"), "{err}");
    let err = refused(
        &tls.url(),
        &[("GATEHOUSE_STORE_CA_FILE", ca.to_str().unwrap())],
    );
    assert!(err.contains("a CA file is for a TLS URL"), "{err}");
}
