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
    // The gates that keep the code clean are part of that one command.
    for gate in [
        "cargo fmt --all --check",
        "cargo clippy --workspace --all-targets --locked -- -D warnings",
        "cargo test --workspace --locked",
    ] {
        assert!(test_command.contains(gate), "{gate} in {test_command}");
    }
}

/// What `cargo run` would run for `args` (the words after `cargo run`), decided the way cargo
/// decides it: the packages named by `-p` (else the workspace's default members), then `--bin`,
/// else the one `default-run` among them, else their only binary. `Err` says why cargo would
/// refuse (the failure a fresh clone met when the benchmark crate gained a second binary).
fn binary_cargo_run_picks(metadata: &serde_json::Value, args: &[&str]) -> Result<String, String> {
    let mut packages: Vec<&str> = Vec::new();
    let mut bin: Option<&str> = None;
    let mut words = args.iter();
    while let Some(word) = words.next() {
        match *word {
            "--" => break,
            "-p" | "--package" => packages.push(words.next().ok_or("-p without a package")?),
            "--bin" => bin = Some(words.next().ok_or("--bin without a name")?),
            w if w.starts_with("--package=") => packages.push(&w["--package=".len()..]),
            w if w.starts_with("--bin=") => bin = Some(&w["--bin=".len()..]),
            "--release" | "--locked" | "--frozen" | "--offline" | "-q" | "--quiet" => {}
            other => return Err(format!("the test does not know the cargo run flag {other}")),
        }
    }
    let all = metadata["packages"].as_array().ok_or("no packages")?;
    let selected: Vec<&serde_json::Value> = if packages.is_empty() {
        let defaults = metadata["workspace_default_members"]
            .as_array()
            .ok_or("no workspace_default_members")?;
        all.iter().filter(|p| defaults.contains(&p["id"])).collect()
    } else {
        packages
            .iter()
            .map(|name| {
                all.iter()
                    .find(|p| p["name"] == *name)
                    .ok_or(format!("no package {name}"))
            })
            .collect::<Result<_, _>>()?
    };
    let binaries: Vec<(&str, &str)> = selected
        .iter()
        .flat_map(|p| {
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(move |t| {
                    let is_bin = t["kind"]
                        .as_array()
                        .is_some_and(|k| k.iter().any(|k| k == "bin"));
                    is_bin.then(|| {
                        (
                            p["name"].as_str().unwrap_or(""),
                            t["name"].as_str().unwrap_or(""),
                        )
                    })
                })
        })
        .collect();
    let default_runs: Vec<&str> = selected
        .iter()
        .filter_map(|p| p["default_run"].as_str())
        .collect();
    let wanted = bin.or(match default_runs.as_slice() {
        [one] => Some(*one),
        _ => None,
    });
    let matching: Vec<&(&str, &str)> = binaries
        .iter()
        .filter(|(_, name)| wanted.is_none_or(|w| w == *name))
        .collect();
    match matching.as_slice() {
        [(_, name)] => Ok((*name).to_string()),
        [] => Err(format!("no binary {wanted:?} among {binaries:?}")),
        many => Err(format!(
            "`cargo run` could not determine which binary to run: {many:?}"
        )),
    }
}

/// Every `cargo run` command line in the documents, as (file, the words after `cargo run`).
fn cargo_run_lines() -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for file in ["README.md", "docs/guide.md"] {
        for line in read(file).lines() {
            let mut rest = line;
            while let Some(at) = rest.find("cargo run") {
                rest = &rest[at + "cargo run".len()..];
                let command = rest.split(['`', '&', '|', ';']).next().unwrap_or("");
                let words = command.split_whitespace().map(String::from).collect();
                out.push((file.to_string(), words));
            }
        }
    }
    out
}

#[test]
fn every_cargo_run_in_the_documents_runs_the_gatehouse_binary() {
    let output = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let lines = cargo_run_lines();
    assert!(
        lines.len() >= 2,
        "README and guide name cargo run: {lines:?}"
    );
    for (file, words) in &lines {
        let args: Vec<&str> = words.iter().map(String::as_str).collect();
        let picked = binary_cargo_run_picks(&metadata, &args)
            .unwrap_or_else(|why| panic!("{file}: `cargo run {}`: {why}", words.join(" ")));
        assert_eq!(
            picked,
            "gatehouse",
            "{file}: `cargo run {}`",
            words.join(" ")
        );
        // The subcommand after `--` exists in the binary that was picked.
        if let Some(separator) = args.iter().position(|w| *w == "--") {
            let rest = &args[separator + 1..];
            if let Some(subcommand) = rest.first() {
                let help = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
                    .args([subcommand, &"--help"])
                    .output()
                    .unwrap();
                assert!(
                    help.status.success(),
                    "{file}: gatehouse {subcommand} --help: {}",
                    String::from_utf8_lossy(&help.stderr)
                );
            }
        }
    }
}

#[test]
fn the_first_command_runs_standalone_with_the_examples() {
    let readme = read("README.md");
    let first = command_after(&readme, "**Run Gatehouse**");
    let words: Vec<&str> = first.split_whitespace().collect();
    assert_eq!(words.get(..2), Some(&["cargo", "run"][..]), "{first}");
    let separator = words
        .iter()
        .position(|w| *w == "--")
        .expect("-- in {first}");
    assert_eq!(words.get(separator + 1), Some(&"standalone"), "{first}");
    // Its defaults are what the README promises: the examples, in memory, port 8080.
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["standalone", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for default in ["examples", "memory://", "127.0.0.1:8080"] {
        assert!(
            help.contains(default),
            "standalone --help lacks {default}: {help}"
        );
    }
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
