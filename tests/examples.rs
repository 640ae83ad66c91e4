//! The manifests in `examples/` load cleanly (every object Ready) and the README's commands
//! against them work.

mod support;

use support::example_grants;
use support::*;

fn examples() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    dir
}

#[tokio::test]
async fn every_example_is_ready_and_the_readme_commands_work() {
    let g = Gatehouse::start_in("memory://", examples());
    let out = g.stdout();
    let (table, banner) = out
        .split_once("\nGatehouse standalone: ")
        .unwrap_or_else(|| panic!("no start-up banner after the table:\n{out}"));
    assert!(!table.contains(": "), "some example is not ready:\n{out}");
    // Readable in a 100-column terminal.
    for line in out.lines() {
        assert!(
            line.chars().count() <= 100,
            "wider than 100 columns: {line}"
        );
    }
    // The banner: the store and its caveat, each tenant's discovery URL and users, what next.
    assert!(
        banner.contains("store:   memory:// (in memory: everything is lost on exit)"),
        "{banner}"
    );
    let acme = g.issuer("acme");
    assert!(
        banner.contains(&format!(
            "tenant acme: {acme}/.well-known/openid-configuration\n    users: alice, bob"
        )),
        "{banner}"
    );
    assert!(
        banner.contains(&format!("gatehouse demo-client --issuer {acme}")),
        "{banner}"
    );
    for client in [
        "acme/billing",
        "acme/portal",
        "acme/spa",
        "acme/mobile",
        "acme/tv",
        "acme/reporter",
        "acme/old-dashboard",
    ] {
        let row = out
            .lines()
            .find(|l| l.starts_with(client))
            .unwrap_or_else(|| panic!("{client} in:\n{out}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!((cells[4], cells[5]), ("True", "True"), "{row}");
    }
    example_grants::billing_client_credentials(&g.base).await;
    example_grants::mobile_password_and_refresh(&g.base).await;
    let r = post_form(
        &format!("{}/acme/oauth2/device_authorization", g.base),
        None,
        "client_id=acme-tv&scope=billing.read",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let legacy = g.metadata("legacy").await;
    assert_eq!(
        legacy["response_types_supported"],
        serde_json::json!(["token"])
    );

    // What an operator watches: sign-ins by outcome, client-authentication failures, the
    // argon2 queue, and the store's latency by operation.
    let token_url = format!("{}/acme/oauth2/token", g.base);
    let wrong = post_form(
        &token_url,
        Some(&basic("acme-mobile", "mobile-secret-change-me")),
        "grant_type=password&username=alice&password=not-hers",
    )
    .await;
    assert_eq!(wrong.error(), "invalid_grant");
    let r = post_form(
        &token_url,
        Some(&basic("acme-billing", "not-the-secret")),
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(r.status, 401);
    let metrics = g.metrics().await;
    for needle in [
        r#"gatehouse_sign_ins_total{tenant="acme",outcome="success"}"#,
        r#"gatehouse_sign_ins_total{tenant="acme",outcome="failure"} 1"#,
        r#"gatehouse_client_authentication_failures_total{tenant="acme"} 1"#,
        "gatehouse_argon2_queue_depth 0",
        r#"gatehouse_store_operation_duration_seconds_count{operation="issue",outcome="ok"}"#,
    ] {
        assert!(metrics.contains(needle), "missing {needle} in:\n{metrics}");
    }
    let jobs = metrics
        .lines()
        .find_map(|l| l.strip_prefix("gatehouse_argon2_jobs_total "))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(jobs >= 2, "argon2 ran for each password: {jobs}");
    assert!(metrics.contains("gatehouse_argon2_queue_wait_seconds_total "));
}

/// examples/web-app.yaml and examples/single-page-app.yaml: code + PKCE, with and without a
/// secret.
#[tokio::test]
async fn the_web_app_and_the_spa_sign_users_in_with_pkce() {
    let g = Gatehouse::start_in("memory://", examples());
    example_grants::portal_and_spa_code_with_pkce(&g.base).await;
}

/// examples/device.yaml: the TV shows a code, alice approves it elsewhere, the TV gets tokens.
#[tokio::test]
async fn the_device_example_is_approved_from_another_device() {
    let g = Gatehouse::start_in("memory://", examples());
    example_grants::tv_device_code(&g.base).await;
}

/// examples/jwt-bearer-service.yaml: the service signs with the fixture key whose public half
/// the example registers, both to authenticate and to ask for alice's token.
#[tokio::test]
async fn the_jwt_bearer_service_example_uses_its_own_key() {
    let g = Gatehouse::start_in("memory://", examples());
    example_grants::reporter_jwt_bearer(&g.base).await;
}

/// examples/legacy-implicit.yaml: a tenant that enables only the implicit grant serves that
/// and refuses the rest.
#[tokio::test]
async fn the_partial_tenant_serves_its_one_grant_and_nothing_else() {
    let g = Gatehouse::start_in("memory://", examples());
    example_grants::legacy_implicit(&g.base).await;
}

/// `gatehouse demo-client --grant device-code` with the TV of examples/device.yaml: it shows
/// the page and code to enter and polls; alice approves on "another device"; it shows the
/// verified tokens and a refresh.
#[tokio::test]
async fn the_demo_client_connects_a_device() {
    use std::io::BufRead;
    let g = Gatehouse::start_in("memory://", examples());
    let mut child = std::process::Command::new(binary())
        .args(["demo-client", "--issuer", &g.issuer("acme")])
        .args(["--client-id", "acme-tv", "--grant", "device-code"])
        .args(["--scope", "offline_access billing.read", "--wait", "60"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut shown = String::new();
    let (complete, user_code) = loop {
        let line = lines.next().expect("demo-client ended early").unwrap();
        shown.push_str(&line);
        shown.push('\n');
        if let Some(rest) = line.trim().strip_prefix("(or open ") {
            let code = rest
                .rsplit(" and enter ")
                .next()
                .unwrap()
                .trim_end_matches(')');
            let complete = shown.lines().rev().nth(1).unwrap().trim().to_string();
            break (complete, code.to_string());
        }
    };
    assert!(complete.contains("/acme/device?user_code="), "{shown}");
    example_grants::approve_tv(&g.base, &complete, &user_code).await;
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let out = format!("{shown}{}", rest.join("\n"));
    let status = child.wait().unwrap();
    assert!(status.success(), "{out}");
    assert!(
        out.contains("Access token (JWT): verified signature"),
        "{out}"
    );
    assert!(out.contains("\"client_id\": \"acme-tv\""), "{out}");
    assert!(out.contains("Refreshed"), "{out}");
}

/// `gatehouse demo-client` without a browser: the password grant of examples/password-app.yaml
/// (the password read from standard input) and client credentials of examples/m2m-client.yaml,
/// each shown verified; and a wrong secret said plainly.
#[tokio::test]
async fn the_demo_client_runs_the_grants_without_a_browser() {
    use std::io::Write;
    let g = Gatehouse::start_in("memory://", examples());
    let issuer = g.issuer("acme");
    let demo = |args: &[&str], stdin: &str| {
        let mut child = std::process::Command::new(binary())
            .args(["demo-client", "--issuer", &issuer])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = demo(
        &[
            "--client-id",
            "acme-mobile",
            "--client-secret",
            "mobile-secret-change-me",
            "--grant",
            "password",
            "--username",
            "alice",
            "--scope",
            "openid profile offline_access billing.read",
        ],
        "wonderland\n",
    );
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("Access token (JWT): verified signature"),
        "{out}"
    );
    assert!(out.contains("\"name\": \"Alice Liddell\""), "{out}");
    assert!(out.contains("Refreshed"), "{out}");
    assert!(!out.contains("wonderland") && !err.contains("wonderland"));

    let (ok, out, err) = demo(
        &[
            "--client-id",
            "acme-billing",
            "--client-secret",
            "quickstart-secret-change-me",
            "--grant",
            "client-credentials",
            "--scope",
            "billing.read",
        ],
        "",
    );
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("\"client_id\": \"acme-billing\""), "{out}");

    let (ok, _, err) = demo(
        &[
            "--client-id",
            "acme-billing",
            "--client-secret",
            "wrong",
            "--grant",
            "client-credentials",
            "--scope",
            "billing.read",
        ],
        "",
    );
    assert!(!ok);
    assert!(
        err.contains("the token endpoint refused: invalid_client"),
        "{err}"
    );
}
