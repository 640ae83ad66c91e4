//! `crds/` must be exactly what `gatehouse crdgen` generates from the Rust types.

mod support;

#[test]
fn checked_in_crds_match_the_generated_ones() {
    let out = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(support::binary())
        .args(["crdgen", "--output-dir"])
        .arg(out.path())
        .status()
        .unwrap();
    assert!(status.success());
    let repo_crds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let mut generated: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    generated.sort();
    let mut checked_in: Vec<_> = std::fs::read_dir(&repo_crds)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    checked_in.sort();
    assert_eq!(
        generated, checked_in,
        "crds/ holds other files than crdgen writes; run `cargo run -- crdgen --output-dir crds`"
    );
    for name in generated {
        let fresh = std::fs::read_to_string(out.path().join(&name)).unwrap();
        let stale = std::fs::read_to_string(repo_crds.join(&name)).unwrap();
        assert!(
            fresh == stale,
            "crds/{} is out of date; run `cargo run -- crdgen --output-dir crds`",
            name.to_string_lossy()
        );
    }
}

#[test]
fn crdgen_prints_both_crds_as_yaml() {
    let out = std::process::Command::new(support::binary())
        .arg("crdgen")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.matches("kind: CustomResourceDefinition").count(), 2);
    assert!(
        text.contains("name: tenants.gatehouse.dev")
            && text.contains("name: oauthclients.gatehouse.dev")
    );
}

#[test]
fn hash_password_prints_a_verifiable_argon2id_hash() {
    use std::io::Write;
    let mut child = std::process::Command::new(support::binary())
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"correct horse\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let phc = String::from_utf8(out.stdout).unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
    assert!(gatehouse_core::secret::verify_secret(
        "correct horse",
        phc.trim()
    ));
    assert!(
        !gatehouse_core::secret::verify_secret("correct horse\n", phc.trim()),
        "the newline is not part of the password"
    );
    let empty = std::process::Command::new(support::binary())
        .arg("hash-password")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!empty.status.success());
    assert!(String::from_utf8_lossy(&empty.stderr).contains("empty password"));
}

/// On a terminal (a real pseudo-terminal, through `script`): asked twice, nothing typed is
/// echoed, and two different answers hash nothing.
#[test]
fn hash_password_on_a_terminal_asks_twice_without_echo() {
    use std::io::{Read, Write};
    let run = |answers: [&str; 2]| -> (bool, String) {
        let command = format!("{} hash-password", support::binary());
        let mut child = std::process::Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("script(1), from util-linux");
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut seen = Vec::new();
        let mut wait_for = |text: &str, seen: &mut Vec<u8>| {
            let mut buf = [0u8; 256];
            while !String::from_utf8_lossy(seen).contains(text) {
                let n = stdout.read(&mut buf).unwrap();
                assert!(n > 0, "no {text:?} in {}", String::from_utf8_lossy(seen));
                seen.extend_from_slice(&buf[..n]);
            }
        };
        // Each answer only once its prompt shows, as a person types it.
        wait_for("Password: ", &mut seen);
        stdin
            .write_all(format!("{}\n", answers[0]).as_bytes())
            .unwrap();
        wait_for("Password again: ", &mut seen);
        stdin
            .write_all(format!("{}\n", answers[1]).as_bytes())
            .unwrap();
        stdout.read_to_end(&mut seen).unwrap();
        drop(stdin);
        let ok = child.wait().unwrap().success();
        (ok, String::from_utf8_lossy(&seen).into_owned())
    };
    let (ok, screen) = run(["tr0ub4dor&3", "tr0ub4dor&3"]);
    assert!(ok, "{screen}");
    assert!(!screen.contains("tr0ub4dor"), "echoed: {screen}");
    let phc = screen
        .split_whitespace()
        .find(|w| w.starts_with("$argon2id$"))
        .unwrap_or_else(|| panic!("no hash in {screen}"));
    assert!(gatehouse_core::secret::verify_secret("tr0ub4dor&3", phc));

    let (ok, screen) = run(["tr0ub4dor&3", "tr0ub4dor&4"]);
    assert!(!ok);
    assert!(screen.contains("the two passwords differ"), "{screen}");
    assert!(
        !screen.contains("$argon2id$") && !screen.contains("tr0ub4dor"),
        "{screen}"
    );
}
