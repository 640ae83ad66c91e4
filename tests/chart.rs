//! The Helm chart: `helm lint --strict` and `helm template` over every value set in
//! `charts/gatehouse/ci/`, assertions on the rendered objects, offline validation of every
//! rendered manifest against the Kubernetes 1.32 schemas (`kubernetes-validate --strict`), the
//! chart's CRDs identical to `crds/`, its RBAC identical to what the operator declares, and
//! the examples' custom resources valid against the CRDs. `.ci/install-test-tools` installs
//! helm and kubernetes-validate.

mod support;

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chart() -> PathBuf {
    root().join("charts/gatehouse")
}

fn helm() -> PathBuf {
    support::helm_binary()
}

fn value_sets() -> Vec<PathBuf> {
    let mut sets: Vec<PathBuf> = std::fs::read_dir(chart().join("ci"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    sets.sort();
    assert!(sets.len() >= 4, "value sets: {sets:?}");
    sets
}

/// Runs helm; returns (success, stdout, stderr).
fn run_helm(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(helm()).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn template(extra: &[&str]) -> Result<String, String> {
    let chart = chart();
    let mut args = vec!["template", "gh", chart.to_str().unwrap(), "-n", "gatehouse"];
    args.extend_from_slice(extra);
    let (ok, out, err) = run_helm(&args);
    if ok { Ok(out) } else { Err(err) }
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .unwrap()
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

fn render(values: &Path) -> Vec<Value> {
    let rendered = template(&["-f", values.to_str().unwrap()])
        .unwrap_or_else(|e| panic!("{}: {e}", values.display()));
    documents(&rendered)
}

fn find<'a>(docs: &'a [Value], kind: &str, name_suffix: &str) -> Option<&'a Value> {
    docs.iter().find(|d| {
        d["kind"] == kind
            && d["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with(name_suffix))
    })
}

fn env<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
}

#[test]
fn every_value_set_lints_strictly_and_renders() {
    let chart = chart();
    for values in value_sets() {
        let (ok, out, err) = run_helm(&[
            "lint",
            "--strict",
            chart.to_str().unwrap(),
            "-f",
            values.to_str().unwrap(),
        ]);
        assert!(
            ok,
            "helm lint --strict -f {}:\n{out}\n{err}",
            values.display()
        );
        assert!(!render(&values).is_empty());
    }
}

#[test]
fn missing_settings_and_typos_fail_at_install_with_a_clear_message() {
    let err = template(&[]).unwrap_err();
    assert!(
        err.contains("is required"),
        "default values alone name what is missing: {err}"
    );
    let err = template(&["--set", "redis.url=redis://r:6379"]).unwrap_err();
    assert!(err.contains("publicUrl is required"), "{err}");
    let err = template(&["--set", "publicUrl=https://a.example"]).unwrap_err();
    assert!(err.contains("redis.url is required"), "{err}");
    let base = [
        "--set",
        "publicUrl=https://a.example",
        "--set",
        "redis.url=redis://r:6379",
    ];
    let typo = template(&[&base[..], &["--set", "server.replica=3"]].concat()).unwrap_err();
    assert!(typo.contains("replica"), "{typo}");
    let bad_url = template(&[
        "--set",
        "publicUrl=auth.example.com",
        "--set",
        "redis.url=redis://r:6379",
    ])
    .unwrap_err();
    assert!(bad_url.contains("publicUrl"), "{bad_url}");
    let credentials_in_url = template(&[
        "--set",
        "publicUrl=https://a.example",
        "--set",
        "redis.url=redis://:pw@r:6379",
    ])
    .unwrap_err();
    assert!(credentials_in_url.contains("redis"), "{credentials_in_url}");
}

#[test]
fn every_pod_is_locked_down_probed_and_scrapable() {
    for values in value_sets() {
        let docs = render(&values);
        for workload in docs
            .iter()
            .filter(|d| d["kind"] == "Deployment" || d["kind"] == "StatefulSet")
        {
            let name = workload["metadata"]["name"].as_str().unwrap();
            let pod = &workload["spec"]["template"]["spec"];
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
            assert_eq!(
                pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
                "{name}"
            );
            for c in pod["containers"].as_array().unwrap() {
                let sc = &c["securityContext"];
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
                assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{name}");
                assert!(
                    c["resources"]["requests"]["cpu"].is_string(),
                    "{name} has requests"
                );
                assert!(
                    c["livenessProbe"].is_object() && c["readinessProbe"].is_object(),
                    "{name}"
                );
            }
            if name.ends_with("-server") || name.ends_with("-operator") {
                let annotations = &workload["spec"]["template"]["metadata"]["annotations"];
                assert_eq!(annotations["prometheus.io/scrape"], "true", "{name}");
                let c = &pod["containers"][0];
                assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz", "{name}");
                assert_eq!(c["readinessProbe"]["httpGet"]["port"], "metrics", "{name}");
                assert_eq!(
                    env(c, "GATEHOUSE_KEY_ENCRYPTION_KEY_FILE").unwrap()["value"],
                    "/etc/gatehouse/kek/kek"
                );
            }
        }
        let server = find(&docs, "Deployment", "-server").unwrap();
        assert_eq!(
            server["spec"]["template"]["spec"]["automountServiceAccountToken"],
            false
        );
        let server_sa = find(&docs, "ServiceAccount", "-server").unwrap();
        assert_eq!(server_sa["automountServiceAccountToken"], false);
        let bound: Vec<&Value> = docs
            .iter()
            .filter(|d| d["kind"] == "RoleBinding" || d["kind"] == "ClusterRoleBinding")
            .flat_map(|b| b["subjects"].as_array().unwrap())
            .collect();
        assert!(
            bound
                .iter()
                .all(|s| s["name"].as_str().unwrap().ends_with("-operator")),
            "the server has no API access"
        );
    }
}

/// The rules of a rendered role, as (apiGroup, resource or URL, sorted verbs).
fn rules(role: &Value) -> Vec<(String, String, Vec<String>)> {
    let mut out: Vec<_> = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            let verbs: Vec<String> = {
                let mut v: Vec<String> = r["verbs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_string())
                    .collect();
                v.sort();
                v
            };
            // A non-resource rule: its URLs under the group "(non-resource)".
            let (groups, resources) = match r["nonResourceURLs"].as_array() {
                Some(urls) => (vec![Value::from("(non-resource)")], urls.clone()),
                None => (
                    r["apiGroups"].as_array().unwrap().clone(),
                    r["resources"].as_array().unwrap().clone(),
                ),
            };
            resources
                .iter()
                .flat_map(move |res| {
                    let verbs = verbs.clone();
                    groups.clone().into_iter().map(move |g| {
                        (
                            g.as_str().unwrap().to_string(),
                            res.as_str().unwrap().to_string(),
                            verbs.clone(),
                        )
                    })
                })
                .collect::<Vec<_>>()
        })
        .collect();
    out.sort();
    out
}

#[test]
fn the_chart_rbac_is_exactly_what_the_operator_calls() {
    let docs = render(&chart().join("ci/minimal-values.yaml"));
    let (cluster, role) = gatehouse_controller::rbac::roles("x", "gatehouse");
    let rendered_cluster = find(&docs, "ClusterRole", "-operator").unwrap();
    let rendered_role = find(&docs, "Role", "-operator").unwrap();
    assert_eq!(
        rules(rendered_cluster),
        rules(&cluster),
        "ClusterRole differs from rbac::CALLS"
    );
    assert_eq!(
        rules(rendered_role),
        rules(&role),
        "Role differs from rbac::CALLS"
    );
    assert_eq!(rendered_role["metadata"]["namespace"], "gatehouse");
    let text = serde_json::to_string(rendered_cluster).unwrap();
    assert!(!text.contains("\"*\""), "no wildcards");
}

#[test]
fn the_key_encryption_key_is_generated_once_and_kept_or_taken_from_a_secret() {
    use base64::Engine;
    let docs = render(&chart().join("ci/minimal-values.yaml"));
    let kek = find(&docs, "Secret", "-kek").expect("a generated KEK Secret");
    assert_eq!(
        kek["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    let file = base64::engine::general_purpose::STANDARD
        .decode(kek["data"]["kek"].as_str().unwrap())
        .unwrap();
    let key = base64::engine::general_purpose::STANDARD
        .decode(file)
        .unwrap();
    assert_eq!(key.len(), 32, "the file holds 32 random bytes, base64");
    let template = std::fs::read_to_string(chart().join("templates/kek-secret.yaml")).unwrap();
    assert!(
        template.contains("lookup \"v1\" \"Secret\""),
        "reused on upgrade"
    );

    let docs = render(&chart().join("ci/production-values.yaml"));
    assert!(
        find(&docs, "Secret", "-kek").is_none(),
        "an existing Secret is used as is"
    );
    let server = find(&docs, "Deployment", "-server").unwrap();
    let volumes = &server["spec"]["template"]["spec"]["volumes"];
    assert_eq!(
        volumes[0]["secret"]["secretName"],
        "gatehouse-kek-from-vault"
    );
}

#[test]
fn redis_settings_reach_both_components() {
    let docs = render(&chart().join("ci/production-values.yaml"));
    for name in ["-server", "-operator"] {
        let c =
            &find(&docs, "Deployment", name).unwrap()["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            env(c, "GATEHOUSE_STORE").unwrap()["value"],
            "rediss+cluster://redis-0.redis:6379,redis-1.redis:6379,redis-2.redis:6379",
            "tls: true turns the scheme into rediss"
        );
        assert_eq!(
            env(c, "GATEHOUSE_STORE_PASSWORD").unwrap()["valueFrom"]["secretKeyRef"],
            json!({"name": "gatehouse-redis", "key": "redis-password"})
        );
        assert_eq!(
            env(c, "GATEHOUSE_PUBLIC_URL").unwrap()["value"],
            "https://login.example.com"
        );
    }
    let server = find(&docs, "Deployment", "-server").unwrap();
    assert!(
        server["spec"]["replicas"].is_null(),
        "the HPA owns the replica count"
    );
    assert_eq!(
        find(&docs, "HorizontalPodAutoscaler", "-server").unwrap()["spec"]["minReplicas"],
        3
    );
    let ingress = find(&docs, "Ingress", "-server").unwrap();
    assert_eq!(ingress["spec"]["rules"][0]["host"], "login.example.com");
    assert_eq!(
        ingress["spec"]["tls"][0]["secretName"],
        "login-example-com-tls"
    );
    assert_eq!(
        ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"],
        "letsencrypt"
    );
    assert_eq!(
        ingress["spec"]["tls"][0]["hosts"][0], "login.example.com",
        "the certificate is for publicUrl's host"
    );
    assert!(find(&docs, "ServiceMonitor", "").is_some());
    assert!(find(&docs, "StatefulSet", "").is_none());

    let docs = render(&chart().join("ci/evaluation-values.yaml"));
    let redis = find(&docs, "StatefulSet", "-redis").expect("embedded Redis");
    assert_eq!(
        redis["metadata"]["annotations"]["gatehouse.dev/evaluation-only"],
        "true"
    );
    let c = &find(&docs, "Deployment", "-operator").unwrap()["spec"]["template"]["spec"]["containers"]
        [0];
    assert_eq!(
        env(c, "GATEHOUSE_STORE").unwrap()["value"],
        "redis://gh-gatehouse-redis:6379/0"
    );
    assert!(find(&docs, "NetworkPolicy", "-redis").is_some());
    let ingress = find(&docs, "Ingress", "-server").unwrap();
    assert_eq!(
        ingress["spec"]["rules"][0]["host"], "auth.example.test",
        "from publicUrl"
    );
}

#[test]
fn a_redis_behind_sentinel_reaches_both_components() {
    let rendered = template(&[
        "--set",
        "publicUrl=https://a.example",
        "--set",
        "redis.url=redis+sentinel://sentinel-0:26379\\,sentinel-1:26379/gatehouse/0",
        "--set",
        "redis.tls=true",
        "--set",
        "redis.password.existingSecret=redis-auth",
        "--set",
        "redis.sentinelPassword.existingSecret=sentinel-auth",
    ])
    .unwrap();
    let docs = documents(&rendered);
    for name in ["-server", "-operator"] {
        let c =
            &find(&docs, "Deployment", name).unwrap()["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            env(c, "GATEHOUSE_STORE").unwrap()["value"],
            "rediss+sentinel://sentinel-0:26379,sentinel-1:26379/gatehouse/0",
            "tls: true turns the scheme into rediss"
        );
        assert_eq!(
            env(c, "GATEHOUSE_STORE_PASSWORD").unwrap()["valueFrom"]["secretKeyRef"],
            json!({"name": "redis-auth", "key": "password"})
        );
        assert_eq!(
            env(c, "GATEHOUSE_STORE_SENTINEL_PASSWORD").unwrap()["valueFrom"]["secretKeyRef"],
            json!({"name": "sentinel-auth", "key": "password"})
        );
    }
    let misplaced = template(&[
        "--set",
        "publicUrl=https://a.example",
        "--set",
        "redis.url=redis://r:6379",
        "--set",
        "redis.sentinelPassword.existingSecret=sentinel-auth",
    ])
    .unwrap_err();
    assert!(misplaced.contains("Sentinel URL"), "{misplaced}");
    let credentials_in_url = template(&[
        "--set",
        "publicUrl=https://a.example",
        "--set",
        "redis.url=redis+sentinel://:pw@sentinel-0:26379/gatehouse",
    ])
    .unwrap_err();
    assert!(
        credentials_in_url.contains("redis.url: Does not match pattern"),
        "{credentials_in_url}"
    );
    let embedded = template(&[
        "--set",
        "publicUrl=https://a.example",
        "--set",
        "redis.url=redis+sentinel://sentinel-0:26379/gatehouse",
        "--set",
        "redis.embedded.enabled=true",
        "--set",
        "redis.sentinelPassword.existingSecret=sentinel-auth",
    ])
    .unwrap_err();
    assert!(
        embedded.contains("Sentinel URL"),
        "the embedded Redis is no Sentinel: {embedded}"
    );
}

fn decode(value: &Value) -> String {
    use base64::Engine;
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(value.as_str().unwrap())
            .unwrap(),
    )
    .unwrap()
}

/// An argument as the kubelet passes it: `$(NAME)` replaced by the container's variable.
fn expand(arg: &str, vars: &[(String, String)]) -> String {
    vars.iter().fold(arg.to_string(), |a, (k, v)| {
        a.replace(&format!("$({k})"), v)
    })
}

/// Kills the process when dropped.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_embedded_redis_requires_a_generated_password_that_its_clients_use() {
    let docs = render(&chart().join("ci/evaluation-values.yaml"));
    let secret = find(&docs, "Secret", "-redis").expect("a generated Redis password Secret");
    let password = decode(&secret["data"]["password"]);
    assert_eq!(password.len(), 32);
    assert!(password.bytes().all(|b| b.is_ascii_alphanumeric()));
    let template = std::fs::read_to_string(chart().join("templates/redis.yaml")).unwrap();
    assert!(
        template.contains("lookup \"v1\" \"Secret\""),
        "kept on upgrade"
    );
    let reference = json!({"name": "gh-gatehouse-redis", "key": "password"});
    let redis =
        &find(&docs, "StatefulSet", "-redis").unwrap()["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = redis["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        args.windows(2)
            .any(|w| w == ["--requirepass", "$(REDIS_PASSWORD)"]),
        "{args:?}"
    );
    for var in ["REDIS_PASSWORD", "REDISCLI_AUTH"] {
        assert_eq!(
            env(redis, var).unwrap()["valueFrom"]["secretKeyRef"],
            reference,
            "{var}"
        );
    }
    for name in ["-server", "-operator"] {
        let c =
            &find(&docs, "Deployment", name).unwrap()["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            env(c, "GATEHOUSE_STORE_PASSWORD").unwrap()["valueFrom"]["secretKeyRef"],
            reference,
            "{name}"
        );
    }

    // Run the rendered Redis command line (on a local port and directory) as the kubelet would.
    let vars = vec![
        ("REDIS_PASSWORD".to_string(), password.clone()),
        ("REDISCLI_AUTH".to_string(), password.clone()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let port = gatehouse_testkit::free_port();
    let mut command = Command::new(args[0]);
    for (i, arg) in args.iter().enumerate().skip(1) {
        if args[i - 1] == "--dir" {
            command.arg(dir.path()); // the pod's volume
        } else {
            command.arg(expand(arg, &vars));
        }
    }
    let _redis = Running(
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let refused = loop {
        if let Ok(reply) = gatehouse_testkit::redis_command(port, &["PING"]) {
            break reply;
        }
        assert!(std::time::Instant::now() < deadline, "redis did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(
        refused.starts_with("-NOAUTH"),
        "a connection without the password is refused: {refused}"
    );
    // The readiness probe's command authenticates from its environment.
    let probe: Vec<&str> = redis["readinessProbe"]["exec"]["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let out = Command::new(probe[0])
        .args(["-p", &port.to_string()])
        .args(&probe[1..])
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "PONG");

    // A token service replica with the rendered store settings connects and is ready.
    let server =
        &find(&docs, "Deployment", "-server").unwrap()["spec"]["template"]["spec"]["containers"][0];
    let url = env(server, "GATEHOUSE_STORE").unwrap()["value"]
        .as_str()
        .unwrap()
        .replace("gh-gatehouse-redis:6379", &format!("127.0.0.1:{port}"));
    let kek = dir.path().join("kek");
    std::fs::write(
        &kek,
        decode(&find(&docs, "Secret", "-kek").unwrap()["data"]["kek"]),
    )
    .unwrap();
    let ops = gatehouse_testkit::free_port();
    let _replica = Running(
        Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["server", "--public-url", "https://auth.example.test"])
            .args([
                "--listen",
                &format!("127.0.0.1:{}", gatehouse_testkit::free_port()),
            ])
            .args(["--metrics-listen", &format!("127.0.0.1:{ops}")])
            .env("GATEHOUSE_STORE", &url)
            .env("GATEHOUSE_STORE_PASSWORD", &password)
            .env("GATEHOUSE_KEY_ENCRYPTION_KEY_FILE", &kek)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while support::http_status(&format!("http://127.0.0.1:{ops}/readyz")).ok() != Some(200) {
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not become ready on the password-protected Redis"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn every_setting_the_chart_passes_is_one_the_binary_reads() {
    let docs = render(&chart().join("ci/production-values.yaml"));
    for (name, role) in [("-server", "server"), ("-operator", "operator")] {
        let pod = &find(&docs, "Deployment", name).unwrap()["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        let help = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args([role, "--help"])
            .output()
            .unwrap();
        let help = String::from_utf8(help.stdout).unwrap();
        for var in c["env"].as_array().unwrap() {
            let var = var["name"].as_str().unwrap();
            if var.starts_with("GATEHOUSE_") && var != "GATEHOUSE_STORE_PASSWORD" {
                assert!(
                    help.contains(&format!("[env: {var}=")),
                    "{role} has no flag read from {var}:\n{help}"
                );
            }
        }
    }
    let pod = &find(&docs, "Deployment", "-server").unwrap()["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(env(c, "GATEHOUSE_IDLE_TIMEOUT").unwrap()["value"], "75s");
    assert_eq!(
        env(c, "GATEHOUSE_MAX_CONNECTIONS").unwrap()["value"],
        "10000"
    );
    assert_eq!(
        env(c, "GATEHOUSE_SHUTDOWN_TIMEOUT").unwrap()["value"],
        "25s"
    );
    assert_eq!(
        pod["terminationGracePeriodSeconds"], 30,
        "longer than the shutdown timeout"
    );
    let allowed = documents(
        &template(&[
            "-f",
            chart().join("ci/production-values.yaml").to_str().unwrap(),
            "--set",
            "redis.allowEvictingStore=true",
            "--set",
            "redis.familyLayout=sets",
        ])
        .unwrap(),
    );
    for name in ["-server", "-operator"] {
        let c = &find(&allowed, "Deployment", name).unwrap()["spec"]["template"]["spec"]["containers"]
            [0];
        assert_eq!(
            env(c, "GATEHOUSE_ALLOW_EVICTING_STORE").unwrap()["value"],
            "true"
        );
        assert_eq!(env(c, "GATEHOUSE_FAMILY_LAYOUT").unwrap()["value"], "sets");
        let default =
            &find(&docs, "Deployment", name).unwrap()["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            env(default, "GATEHOUSE_FAMILY_LAYOUT").unwrap()["value"],
            "compact"
        );
    }
    let refused = template(&[
        "-f",
        chart().join("ci/production-values.yaml").to_str().unwrap(),
        "--set",
        "redis.familyLayout=hashes",
    ])
    .unwrap_err();
    assert!(refused.contains("familyLayout"), "{refused}");
    let docs = render(&chart().join("ci/evaluation-values.yaml"));
    let redis =
        &find(&docs, "StatefulSet", "-redis").unwrap()["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = redis["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        args.windows(2)
            .any(|w| w == ["--maxmemory-policy", "noeviction"]),
        "the embedded Redis never evicts: {args:?}"
    );
    // Trusted issuers: the company CA mounted and named, private addresses admitted.
    let docs = render(&chart().join("ci/production-values.yaml"));
    let pod = &find(&docs, "Deployment", "-operator").unwrap()["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(
        env(c, "GATEHOUSE_TRUSTED_ISSUER_CA_FILE").unwrap()["value"],
        "/etc/gatehouse/issuer-ca/ca.pem"
    );
    assert_eq!(
        env(c, "GATEHOUSE_ALLOW_PRIVATE_ISSUER_ADDRESSES").unwrap()["value"],
        "true"
    );
    assert_eq!(
        env(c, "GATEHOUSE_TRUSTED_ISSUER_REFRESH").unwrap()["value"],
        "5m"
    );
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "issuer-ca")
        .expect("the CA volume");
    assert_eq!(volume["configMap"]["name"], "company-ca");
    assert!(
        c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "issuer-ca" && m["mountPath"] == "/etc/gatehouse/issuer-ca")
    );
    // By default: neither the CA nor private addresses.
    let minimal = render(&chart().join("ci/minimal-values.yaml"));
    let c = &find(&minimal, "Deployment", "-operator").unwrap()["spec"]["template"]["spec"]["containers"]
        [0];
    assert!(env(c, "GATEHOUSE_TRUSTED_ISSUER_CA_FILE").is_none());
    assert!(env(c, "GATEHOUSE_ALLOW_PRIVATE_ISSUER_ADDRESSES").is_none());
    let typo = template(&[
        "-f",
        chart().join("ci/minimal-values.yaml").to_str().unwrap(),
        "--set",
        "operator.trustedIssuers.refresh=5 minutes",
    ]);
    assert!(typo.is_err(), "a refresh interval the binary would refuse");
    let typo = template(&["--set", "server.connections.idleTimeout=75 s"]);
    assert!(
        typo.is_err(),
        "a duration the binary would refuse fails the install"
    );
}

#[test]
fn token_review_gives_the_server_exactly_tokenreviews_create() {
    let docs = documents(
        &template(&[
            "-f",
            chart().join("ci/minimal-values.yaml").to_str().unwrap(),
            "--set",
            "server.tokenReview.enabled=true",
        ])
        .unwrap(),
    );
    let server = find(&docs, "Deployment", "-server").unwrap();
    let pod = &server["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], true);
    assert_eq!(
        env(&pod["containers"][0], "GATEHOUSE_TOKEN_REVIEW").unwrap()["value"],
        "true"
    );
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["server", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("[env: GATEHOUSE_TOKEN_REVIEW="));
    let role = find(&docs, "ClusterRole", "-server").unwrap();
    assert_eq!(
        rules(role),
        [(
            "authentication.k8s.io".to_string(),
            "tokenreviews".to_string(),
            vec!["create".to_string()]
        )]
    );
    let binding = find(&docs, "ClusterRoleBinding", "-server").unwrap();
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert!(
        binding["subjects"][0]["name"]
            .as_str()
            .unwrap()
            .ends_with("-server")
    );
}

#[test]
fn forwarded_addresses_are_trusted_only_from_listed_proxies() {
    // By default no proxy is trusted: an in-cluster caller cannot choose the address its
    // sign-in failures count against by sending X-Forwarded-For.
    for values in value_sets() {
        if values.ends_with("production-values.yaml") {
            continue;
        }
        let docs = render(&values);
        let c = &find(&docs, "Deployment", "-server").unwrap()["spec"]["template"]["spec"]["containers"]
            [0];
        assert!(
            env(c, "GATEHOUSE_TRUSTED_PROXIES").is_none(),
            "{}: the header is trusted by default",
            values.display()
        );
        assert!(env(c, "GATEHOUSE_TRUST_X_FORWARDED_FOR").is_none());
    }
    let docs = render(&chart().join("ci/production-values.yaml"));
    let c =
        &find(&docs, "Deployment", "-server").unwrap()["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        env(c, "GATEHOUSE_TRUSTED_PROXIES").unwrap()["value"],
        "10.244.0.0/16"
    );
    let base = [
        "--set",
        "publicUrl=https://a.example",
        "--set",
        "redis.url=redis://r:6379",
    ];
    let two = documents(
        &template(
            &[
                &base[..],
                &[
                    "--set-json",
                    r#"server.trustedProxies=["10.0.0.0/8","fd00::/8"]"#,
                ],
            ]
            .concat(),
        )
        .unwrap(),
    );
    let c =
        &find(&two, "Deployment", "-server").unwrap()["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        env(c, "GATEHOUSE_TRUSTED_PROXIES").unwrap()["value"],
        "10.0.0.0/8,fd00::/8"
    );
    let operator = &find(&two, "Deployment", "-operator").unwrap()["spec"]["template"]["spec"]["containers"]
        [0];
    assert!(
        env(operator, "GATEHOUSE_TRUSTED_PROXIES").is_none(),
        "the operator serves no clients"
    );
    let err = template(
        &[
            &base[..],
            &["--set-json", r#"server.trustedProxies=["ingress.local"]"#],
        ]
        .concat(),
    )
    .unwrap_err();
    assert!(err.contains("trustedProxies"), "{err}");
    let err =
        template(&[&base[..], &["--set", "server.trustXForwardedFor=true"]].concat()).unwrap_err();
    assert!(
        err.contains("trustXForwardedFor"),
        "the old switch is gone, not ignored: {err}"
    );
}

#[test]
fn the_chart_crds_are_the_generated_ones_byte_for_byte() {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(root().join("crds")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_owned();
        let chart_copy = chart().join("crds").join(&name);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            std::fs::read(&chart_copy).unwrap_or_default(),
            "charts/gatehouse/crds/{} differs from crds/; copy it: cp crds/*.yaml charts/gatehouse/crds/",
            name.to_string_lossy()
        );
        names.push(name);
    }
    assert_eq!(
        std::fs::read_dir(chart().join("crds")).unwrap().count(),
        names.len(),
        "no extra CRDs in the chart"
    );
}

fn kubernetes_validate(file: &Path) -> (bool, String) {
    let out = Command::new("python3")
        .args([
            "-m",
            "kubernetes_validate",
            "-k",
            "1.32.0",
            "--strict",
            "--quiet",
        ])
        .arg(file)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("No module named"),
        "kubernetes-validate missing: run `bash .ci/install-test-tools`"
    );
    (out.status.success(), text)
}

#[test]
fn every_rendered_manifest_is_valid_kubernetes_1_32() {
    let dir = tempfile::tempdir().unwrap();
    for values in value_sets() {
        let rendered = template(&["-f", values.to_str().unwrap(), "--include-crds"]).unwrap();
        // ServiceMonitor is not a built-in kind; its fields are checked above.
        let builtin: Vec<String> = documents(&rendered)
            .into_iter()
            .filter(|d| d["kind"] != "ServiceMonitor")
            .map(|d| serde_saphyr::to_string(&d).unwrap())
            .collect();
        let file = dir.path().join(values.file_name().unwrap());
        std::fs::write(&file, builtin.join("---\n")).unwrap();
        let (ok, text) = kubernetes_validate(&file);
        assert!(ok, "{}:\n{text}", values.display());
    }
    // And the checker is not a rubber stamp.
    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: web}], typo: 1}\n").unwrap();
    assert!(!kubernetes_validate(&broken).0);
}

fn validate_custom_resources(files: &[PathBuf]) -> (bool, String) {
    let out = Command::new("python3")
        .arg(root().join("tests/support/validate_custom_resources.py"))
        .arg(root().join("crds"))
        .args(files)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn every_example_custom_resource_is_valid_against_its_crd() {
    let examples: Vec<PathBuf> = std::fs::read_dir(root().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    let (ok, text) = validate_custom_resources(&examples);
    assert!(ok, "{text}");
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        "apiVersion: gatehouse.dev/v1alpha1\nkind: OAuthClient\nmetadata: {name: b, namespace: acme}\nspec: {tenantRef: acme, grantTypes: [telepathy]}\n",
    )
    .unwrap();
    let (ok, text) = validate_custom_resources(&[broken]);
    assert!(!ok && text.contains("spec.grantTypes.0"), "{text}");
}

/// `tools/promql/build`'s binary, at the path it prints for the version pinned in its go.mod.
fn promql_check() -> PathBuf {
    let out = Command::new("bash")
        .arg(root().join("tools/promql/build"))
        .arg("--print-path")
        .output()
        .unwrap();
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        path.exists(),
        "{} is missing: run `bash .ci/install-test-tools` (it builds it with tools/promql/build)",
        path.display()
    );
    path
}

/// promql-check's verdict on `queries` (one per line).
fn promql_check_on(queries: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(promql_check())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(queries).unwrap();
    child.wait_with_output().unwrap()
}

/// The optional PrometheusRule and Grafana dashboard render, every alert has a severity, a
/// duration and its text, and every query parses with Prometheus' own parser.
#[test]
fn alert_rules_and_dashboard_queries_are_valid_promql() {
    let queries = support::monitoring::rendered_queries();
    assert!(queries.len() >= 10, "{queries:?}");
    let out = promql_check_on(queries.join("\n").as_bytes());
    assert!(
        out.status.success(),
        "queries that do not parse:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The check can fail.
    assert!(
        !promql_check_on(b"sum(rate(gatehouse_http_requests_total[5m])")
            .status
            .success()
    );
    // Both are off by default.
    let plain = template(&[
        "-f",
        chart().join("ci/minimal-values.yaml").to_str().unwrap(),
    ])
    .unwrap();
    assert!(!plain.contains("PrometheusRule") && !plain.contains("gatehouse.json"));
}

#[test]
fn redis_acl_user_and_private_ca_reach_both_components() {
    let docs = documents(
        &template(&[
            "-f",
            chart().join("ci/minimal-values.yaml").to_str().unwrap(),
            "--set",
            "redis.username=gatehouse",
            "--set",
            "redis.password.existingSecret=redis-credentials",
            "--set",
            "redis.caConfigMap.name=redis-ca",
        ])
        .unwrap(),
    );
    for component in ["-server", "-operator"] {
        let deployment = find(&docs, "Deployment", component).unwrap();
        let pod = &deployment["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        assert_eq!(
            env(container, "GATEHOUSE_STORE_USERNAME").unwrap()["value"],
            "gatehouse"
        );
        assert_eq!(
            env(container, "GATEHOUSE_STORE_CA_FILE").unwrap()["value"],
            "/etc/gatehouse/redis-ca/ca.crt"
        );
        let mounted = container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "redis-ca" && m["mountPath"] == "/etc/gatehouse/redis-ca");
        assert!(mounted, "{component}: {container}");
        let volume = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "redis-ca")
            .unwrap_or_else(|| panic!("{component}: no redis-ca volume"));
        assert_eq!(volume["configMap"]["name"], "redis-ca");
    }
    // The binary reads what the chart sets.
    for role in ["server", "operator", "standalone"] {
        let help = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args([role, "--help"])
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&help.stdout);
        assert!(help.contains("[env: GATEHOUSE_STORE_USERNAME="), "{help}");
        assert!(help.contains("[env: GATEHOUSE_STORE_CA_FILE="), "{help}");
    }
    // A username without its password is refused at install.
    let refused = template(&[
        "-f",
        chart().join("ci/minimal-values.yaml").to_str().unwrap(),
        "--set",
        "redis.username=gatehouse",
    ]);
    assert!(refused.is_err());
}

#[test]
fn extra_environment_reaches_each_component_for_traces() {
    let docs = documents(
        &template(&[
            "-f",
            chart().join("ci/minimal-values.yaml").to_str().unwrap(),
            "--set",
            "server.extraEnv[0].name=OTEL_EXPORTER_OTLP_ENDPOINT",
            "--set",
            "server.extraEnv[0].value=http://otel-collector:4318",
            "--set",
            "operator.extraEnv[0].name=OTEL_SERVICE_NAME",
            "--set",
            "operator.extraEnv[0].value=gatehouse-operator",
        ])
        .unwrap(),
    );
    let server = find(&docs, "Deployment", "-server").unwrap();
    assert_eq!(
        env(
            &server["spec"]["template"]["spec"]["containers"][0],
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        .unwrap()["value"],
        "http://otel-collector:4318"
    );
    let operator = find(&docs, "Deployment", "-operator").unwrap();
    assert_eq!(
        env(
            &operator["spec"]["template"]["spec"]["containers"][0],
            "OTEL_SERVICE_NAME"
        )
        .unwrap()["value"],
        "gatehouse-operator"
    );
}
