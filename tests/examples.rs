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
    assert!(!out.contains(": "), "some example is not ready:\n{out}");
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
