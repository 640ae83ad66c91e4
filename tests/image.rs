//! The container image: no Docker engine runs here, so this runs the Dockerfile's build-stage
//! cargo command as written (in its own target directory) and checks the binary it makes,
//! and that the final stage fits the chart (non-root uid, entrypoint, subcommands).

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The Dockerfile's instructions, continuation lines joined.
fn instructions() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let line = line.trim_end();
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(line);
        if !current.trim().is_empty() {
            out.push(current.split_whitespace().collect::<Vec<_>>().join(" "));
        }
        current.clear();
    }
    out
}

#[test]
fn the_final_stage_is_distroless_non_root_and_runs_the_one_binary() {
    let ins = instructions();
    let froms: Vec<&String> = ins.iter().filter(|i| i.starts_with("FROM ")).collect();
    assert_eq!(
        froms.len(),
        2,
        "a build stage and a runtime stage: {froms:?}"
    );
    assert!(froms[0].starts_with("FROM rust:") && froms[0].ends_with(" AS build"));
    assert!(
        froms[1].contains("distroless") && froms[1].contains("nonroot"),
        "{}",
        froms[1]
    );
    let chart_uid = "runAsUser: 65532";
    let helpers =
        std::fs::read_to_string(root().join("charts/gatehouse/templates/_helpers.tpl")).unwrap();
    assert!(
        helpers.contains(chart_uid),
        "the chart runs as the image's user"
    );
    assert!(ins.contains(&"USER 65532:65532".to_string()), "{ins:?}");
    assert!(
        ins.contains(&"ENTRYPOINT [\"/usr/local/bin/gatehouse\"]".to_string()),
        "{ins:?}"
    );
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    assert!(
        ignore.lines().any(|l| l == "target/"),
        "the build context leaves target/ out"
    );
}

#[test]
fn the_build_stage_command_builds_a_working_binary() {
    let run = instructions()
        .into_iter()
        .find(|i| i.starts_with("RUN cargo "))
        .expect("a RUN cargo instruction");
    let cargo_command = run
        .trim_start_matches("RUN ")
        .split(" && ")
        .next()
        .unwrap()
        .to_string();
    assert_eq!(
        cargo_command,
        "cargo build --release --locked --bin gatehouse"
    );
    let args: Vec<&str> = cargo_command.split_whitespace().skip(1).collect();
    let target = root().join("target/image-build");
    let status = Command::new(env!("CARGO"))
        .args(&args)
        .current_dir(root())
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .unwrap();
    assert!(status.success(), "`{cargo_command}` failed");
    let help = Command::new(target.join("release/gatehouse"))
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    for subcommand in [
        "server",
        "operator",
        "standalone",
        "crdgen",
        "rbac",
        "hash-password",
    ] {
        assert!(
            text.contains(subcommand),
            "{subcommand} missing from:\n{text}"
        );
    }
}
