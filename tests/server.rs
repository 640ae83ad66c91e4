//! `gatehouse server`: a replica that reads everything from the store. Configuration published
//! by another process (here standalone) reaches it without a restart, and it refuses to start
//! without what it needs.

mod support;

use std::process::{Child, Command, Stdio};
use support::*;

struct Replica {
    child: Child,
    base: String,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- replica stderr ----\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

fn kek_file(dir: &std::path::Path) -> std::path::PathBuf {
    use base64::Engine;
    let path = dir.join("kek");
    let bytes: Vec<u8> = (0..32u8)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect();
    std::fs::write(
        &path,
        base64::engine::general_purpose::STANDARD.encode(bytes),
    )
    .unwrap();
    path
}

fn start_replica(store: &str, kek: &std::path::Path) -> Replica {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let port = gatehouse_testkit::free_port();
    let ops = gatehouse_testkit::free_port();
    let child = Command::new(binary())
        .args([
            "server",
            "--store",
            store,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--metrics-listen",
            &format!("127.0.0.1:{ops}"),
            "--log-format",
            "json",
        ])
        .env("GATEHOUSE_KEY_ENCRYPTION_KEY_FILE", kek)
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while http_status(&format!("http://127.0.0.1:{ops}/readyz")).ok() != Some(200) {
        assert!(
            std::time::Instant::now() < deadline,
            "replica not ready: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Replica {
        child,
        base: format!("http://127.0.0.1:{port}"),
        log,
        _dir: dir,
    }
}

#[tokio::test]
async fn a_replica_serves_what_another_process_published() {
    let redis = RedisServer::start();
    let keys = tempfile::tempdir().unwrap();
    let kek = kek_file(keys.path());
    // Standalone publishes (with the same key-encryption key), the replica serves.
    let manifests = tempfile::tempdir().unwrap();
    for (name, yaml) in fixtures() {
        std::fs::write(manifests.path().join(name), yaml).unwrap();
    }
    let publisher = {
        let port = gatehouse_testkit::free_port();
        let child = Command::new(binary())
            .args([
                "standalone",
                "--store",
                &redis.url(),
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .arg("--manifests")
            .arg(manifests.path())
            .arg("--key-encryption-key-file")
            .arg(&kek)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while http_status(&format!(
            "http://127.0.0.1:{port}/.well-known/oauth-authorization-server/acme"
        ))
        .ok()
            != Some(200)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "standalone not serving"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        KillOnDrop(child)
    };
    let replica = start_replica(&redis.url(), &kek);
    let token_url = format!("{}/acme/oauth2/token", replica.base);
    let r = post_form(
        &token_url,
        Some(&basic("acme-billing", BILLING_SECRET)),
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let meta: serde_json::Value = reqwest::get(format!(
        "{}/.well-known/oauth-authorization-server/acme",
        replica.base
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        meta["issuer"],
        format!("{}/acme", replica.base),
        "the replica's issuer follows its own public URL"
    );

    // A change published while the replica runs reaches it without a restart.
    std::fs::write(
        manifests.path().join("acme-clients.yaml"),
        ACME_CLIENTS.replace("s3cret:with/special+chars&=%", "rotated"),
    )
    .unwrap();
    eventually(10, "rotated secret live on the replica", || async {
        post_form(
            &token_url,
            Some(&basic("acme-billing", "rotated")),
            "grant_type=client_credentials",
        )
        .await
        .status
            == 200
    })
    .await;
    assert_eq!(
        post_form(
            &token_url,
            Some(&basic("acme-billing", BILLING_SECRET)),
            "grant_type=client_credentials"
        )
        .await
        .status,
        401
    );

    // JSON logs: every line is one JSON object.
    let log = std::fs::read_to_string(&replica.log).unwrap();
    assert!(log.lines().count() > 0);
    for line in log.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
    drop(publisher);
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_replica_refuses_to_start_without_what_it_needs() {
    let run = |args: &[&str], env: Option<(&str, &str)>| {
        let mut cmd = Command::new(binary());
        cmd.arg("server")
            .args(args)
            .env_remove("GATEHOUSE_KEY_ENCRYPTION_KEY_FILE");
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let err = run(&["--store", "redis://127.0.0.1:1"], None);
    assert!(err.contains("a key-encryption key is required"), "{err}");
    let keys = tempfile::tempdir().unwrap();
    let kek = kek_file(keys.path());
    let err = run(
        &["--store", "memory://"],
        Some(("GATEHOUSE_KEY_ENCRYPTION_KEY_FILE", kek.to_str().unwrap())),
    );
    assert!(err.contains("holds no configuration for a server"), "{err}");
    std::fs::write(keys.path().join("short"), "c2hvcnQ=").unwrap();
    let err = run(
        &[
            "--store",
            "redis://127.0.0.1:1",
            "--key-encryption-key-file",
            keys.path().join("short").to_str().unwrap(),
        ],
        None,
    );
    assert!(err.contains("must be 32 bytes"), "{err}");
    let err = run(
        &["--store", "redis://:hunter2@127.0.0.1:1/0"],
        Some(("GATEHOUSE_KEY_ENCRYPTION_KEY_FILE", kek.to_str().unwrap())),
    );
    assert!(
        err.contains("opening the store redis://:***@127.0.0.1:1/0"),
        "{err}"
    );
    assert!(
        !err.contains("hunter2"),
        "the store password is never printed"
    );
    // A trusted-proxy range that does not parse names the flag and the value, whether it came
    // from the command line or from the environment.
    let err = run(
        &[
            "--store",
            "redis://127.0.0.1:1",
            "--trusted-proxies",
            "10.0.0.0/8,10.0.0/8",
        ],
        Some(("GATEHOUSE_KEY_ENCRYPTION_KEY_FILE", kek.to_str().unwrap())),
    );
    assert!(
        err.contains("--trusted-proxies")
            && err.contains("\"10.0.0/8\" is not an IP address or CIDR range"),
        "{err}"
    );
    let mut cmd = Command::new(binary());
    let out = cmd
        .args(["server", "--store", "redis://127.0.0.1:1"])
        .env("GATEHOUSE_KEY_ENCRYPTION_KEY_FILE", &kek)
        .env("GATEHOUSE_TRUSTED_PROXIES", "fd00::/8,ingress.local")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--trusted-proxies") && err.contains("\"ingress.local\""),
        "{err}"
    );
}

#[test]
fn the_operator_says_what_it_is_missing() {
    let keys = tempfile::tempdir().unwrap();
    let kek = kek_file(keys.path());
    let redis = RedisServer::start();
    let out = Command::new(binary())
        .args([
            "operator",
            "--store",
            &redis.url(),
            "--public-url",
            "https://auth.example.com",
        ])
        .env("GATEHOUSE_KEY_ENCRYPTION_KEY_FILE", &kek)
        .env("KUBECONFIG", keys.path().join("no-such-kubeconfig"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("HOME", keys.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("connecting to Kubernetes"), "{err}");
    let out = Command::new(binary())
        .args([
            "operator",
            "--store",
            "memory://",
            "--public-url",
            "https://x",
        ])
        .env("GATEHOUSE_KEY_ENCRYPTION_KEY_FILE", &kek)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("invisible to the servers"));
}
