//! The manifests in `examples/` load cleanly (every object Ready) and the README's commands
//! against them work.

mod support;

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
        "acme/old-dashboard",
    ] {
        let row = out
            .lines()
            .find(|l| l.starts_with(client))
            .unwrap_or_else(|| panic!("{client} in:\n{out}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!((cells[4], cells[5]), ("True", "True"), "{row}");
    }
    let token = format!("{}/acme/oauth2/token", g.base);
    let r = post_form(
        &token,
        Some(&basic("acme-billing", "quickstart-secret-change-me")),
        "grant_type=client_credentials&scope=billing.read",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = post_form(&token, Some(&basic("acme-mobile", "mobile-secret-change-me")), "grant_type=password&username=alice&password=wonderland&scope=openid%20offline_access%20billing.read").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let rt = r.body["refresh_token"].as_str().unwrap();
    let r = post_form(
        &token,
        Some(&basic("acme-mobile", "mobile-secret-change-me")),
        &form(&[("grant_type", "refresh_token"), ("refresh_token", rt)]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
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
