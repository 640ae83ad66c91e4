//! The README's test command and `.ci/run` must stay the same command, and the README's
//! quickstart must name the credentials the examples really hold.

use std::path::Path;

fn read(p: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(p)).unwrap()
}

/// The first line of the first ```sh block after `marker`.
fn command_after(readme: &str, marker: &str) -> String {
    let rest = &readme[readme
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} in README"))..];
    let block = &rest[rest.find("```sh\n").expect("a sh block") + 6..];
    block.lines().next().unwrap().to_string()
}

#[test]
fn ci_runs_exactly_the_readme_test_command() {
    let readme = read("README.md");
    let test_command = command_after(&readme, "**Install what the tests need");
    let ci = read(".ci/run");
    let ci_command = ci.lines().rev().find(|l| !l.trim().is_empty()).unwrap();
    assert_eq!(ci_command, test_command);
    assert!(command_after(&readme, "**Run Gatehouse**").contains("standalone"));
}

#[test]
fn quickstart_credentials_are_the_examples() {
    let readme = read("README.md");
    let example = read("examples/m2m-client.yaml");
    assert!(example.contains("client_secret: quickstart-secret-change-me"));
    assert!(example.contains("clientId: acme-billing"));
    assert!(readme.contains("-u acme-billing:quickstart-secret-change-me"));
}

#[test]
fn the_readme_pkce_challenge_is_that_of_its_verifier() {
    let readme = read("README.md");
    let pick = |key: &str| {
        let start = readme
            .find(key)
            .unwrap_or_else(|| panic!("{key} in README"))
            + key.len();
        readme[start..]
            .split(|c: char| c == '&' || c.is_whitespace())
            .next()
            .unwrap()
            .to_string()
    };
    let challenge = pick("code_challenge=");
    let verifier = pick("code_verifier=");
    assert_eq!(gatehouse_core::pkce::s256(&verifier), challenge);
    assert!(gatehouse_core::pkce::valid_verifier(&verifier));
}
