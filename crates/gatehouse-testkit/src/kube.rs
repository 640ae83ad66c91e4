//! A real Kubernetes control plane for end-to-end tests: etcd, kube-apiserver and
//! kube-controller-manager, built from source by `tools/kube/build` (the README's test command
//! runs it), started on free ports of 127.0.0.1 and stopped when the handle drops.
//!
//! The API server runs as a cluster's does where it matters to Gatehouse: RBAC authorization,
//! TLS with a throw-away CA, service-account token signing (so `kubectl create token` gives a
//! workload's identity), and an audit log of every request's user, verb and response code (so a
//! test can prove a process stayed inside its RBAC). The controller manager runs the
//! controllers whose effects users see without pods: garbage collection of owned objects,
//! namespace deletion, `default` ServiceAccounts and the root CA ConfigMap. No kubelet runs:
//! Deployments are accepted and stored, never started.

use crate::free_port;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The static token of the harness's administrator (member of `system:masters`).
const ADMIN_TOKEN: &str = "gatehouse-test-admin";

/// Where `tools/kube/build` put the binaries: `GATEHOUSE_KUBE_BIN` if set, else the cache
/// directory keyed by the versions pinned in `tools/kube/*/go.mod` (the same path the build
/// script prints with `--print-dir`).
pub fn binaries_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("GATEHOUSE_KUBE_BIN") {
        return dir.into();
    }
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/kube");
    let version_of = |module: &str, path: &str| {
        let go_mod = std::fs::read_to_string(tools.join(module).join("go.mod"))
            .unwrap_or_else(|e| panic!("reading tools/kube/{module}/go.mod: {e}"));
        go_mod
            .lines()
            .map(str::split_whitespace)
            .find_map(|mut words| {
                (words.next() == Some(path))
                    .then(|| words.next())
                    .flatten()
                    .map(str::to_string)
            })
            .unwrap_or_else(|| panic!("{path} is not pinned in tools/kube/{module}/go.mod"))
    };
    let kube = version_of("control-plane", "k8s.io/kubernetes");
    let etcd = version_of("etcd", "go.etcd.io/etcd/server/v3");
    let cache = std::env::var("GATEHOUSE_KUBE_CACHE").map_or_else(
        |_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/gatehouse")
        },
        PathBuf::from,
    );
    cache.join(format!("kube-{kube}-etcd-{etcd}"))
}

fn binary(name: &str) -> PathBuf {
    let path = binaries_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run `bash .ci/install-test-tools` (it builds kube-apiserver, etcd, \
         kube-controller-manager and kubectl with tools/kube/build), or the README's test command",
        path.display()
    );
    path
}

/// The `kubectl` the harness built, of the API server's own version.
pub fn kubectl_binary() -> PathBuf {
    binary("kubectl")
}

/// One process of the control plane, with its log file.
struct Process {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Process {
    fn spawn(name: &'static str, dir: &Path, command: &mut Command) -> Process {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("creating a control-plane log");
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone().expect("log file handle")))
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Process { name, child, log }
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// A running control plane. Dropping it stops every process and removes its directory; when
/// the dropping thread is panicking, the tail of each log is printed first.
pub struct ControlPlane {
    /// The API server's URL, `https://127.0.0.1:PORT`.
    pub url: String,
    /// A kubeconfig of a `system:masters` user (RBAC does not apply to it).
    pub admin_kubeconfig: PathBuf,
    /// The CA that signed the API server's certificate (PEM).
    pub ca_file: PathBuf,
    processes: Vec<Process>,
    dir: tempfile::TempDir,
}

impl ControlPlane {
    /// Starts etcd, kube-apiserver and kube-controller-manager, and returns once the API
    /// server answers `/readyz` and the controller manager has created the `default`
    /// ServiceAccount of the `default` namespace.
    pub fn start() -> ControlPlane {
        let dir = tempfile::Builder::new()
            .prefix("gatehouse-kube-")
            .tempdir()
            .expect("a directory for the control plane");
        let path = dir.path().to_path_buf();
        write_credentials(&path);
        let (etcd_port, peer_port, api_port) = (free_port(), free_port(), free_port());
        let url = format!("https://127.0.0.1:{api_port}");
        let mut plane = ControlPlane {
            admin_kubeconfig: path.join("admin.kubeconfig"),
            ca_file: path.join("ca.crt"),
            url,
            processes: Vec::new(),
            dir,
        };
        plane.write_kubeconfig(&plane.admin_kubeconfig.clone(), ADMIN_TOKEN, "default");

        let etcd = Process::spawn(
            "etcd",
            &path,
            Command::new(binary("etcd"))
                .arg(format!("--data-dir={}", path.join("etcd").display()))
                .arg(format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"))
                .arg(format!(
                    "--advertise-client-urls=http://127.0.0.1:{etcd_port}"
                ))
                .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"))
                .arg(format!(
                    "--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"
                ))
                .arg(format!(
                    "--initial-cluster=default=http://127.0.0.1:{peer_port}"
                ))
                // Test data: nothing to lose, and fsync is the slowest part of a write.
                .arg("--unsafe-no-fsync")
                .arg("--log-level=warn"),
        );
        plane.processes.push(etcd);

        let p = |f: &str| path.join(f).display().to_string();
        let apiserver = Process::spawn(
            "kube-apiserver",
            &path,
            Command::new(binary("kube-apiserver"))
                .arg(format!("--etcd-servers=http://127.0.0.1:{etcd_port}"))
                .arg("--bind-address=127.0.0.1")
                // Required where the machine has no default route; with a loopback address the
                // `kubernetes` Endpoints cannot be written, hence no endpoint reconciler.
                .arg("--advertise-address=127.0.0.1")
                .arg("--endpoint-reconciler-type=none")
                .arg(format!("--secure-port={api_port}"))
                .arg(format!("--tls-cert-file={}", p("apiserver.crt")))
                .arg(format!("--tls-private-key-file={}", p("apiserver.key")))
                .arg(format!("--client-ca-file={}", p("ca.crt")))
                .arg(format!("--token-auth-file={}", p("tokens.csv")))
                .arg("--authorization-mode=RBAC")
                .arg(format!(
                    "--service-account-issuer=https://127.0.0.1:{api_port}"
                ))
                .arg(format!("--service-account-key-file={}", p("sa.pub")))
                // The key signing before a rotation: still published (so its tokens verify)
                // but no longer signing, as after `--service-account-signing-key-file`
                // changed. Tests sign "old" tokens with `sa-retired.key`.
                .arg(format!(
                    "--service-account-key-file={}",
                    p("sa-retired.pub")
                ))
                .arg(format!(
                    "--service-account-signing-key-file={}",
                    p("sa.key")
                ))
                .arg("--service-cluster-ip-range=10.0.0.0/24")
                .arg("--allow-privileged=true")
                .arg("--profiling=false")
                .arg(format!("--audit-policy-file={}", p("audit-policy.yaml")))
                .arg(format!("--audit-log-path={}", p("audit.log")))
                .arg("--audit-log-mode=blocking"),
        );
        plane.processes.push(apiserver);
        plane.wait_until("the API server is ready", Duration::from_secs(90), |p| {
            p.kubectl(&["get", "--raw", "/readyz"]).status.success()
        });

        let kcm = Process::spawn(
            "kube-controller-manager",
            &path,
            Command::new(binary("kube-controller-manager"))
                .arg(format!("--kubeconfig={}", p("admin.kubeconfig")))
                .arg("--secure-port=0")
                .arg("--leader-elect=false")
                .arg(format!("--root-ca-file={}", p("ca.crt")))
                .arg(format!(
                    "--service-account-private-key-file={}",
                    p("sa.key")
                ))
                .arg(
                    "--controllers=garbage-collector-controller,namespace-controller,\
                     serviceaccount-controller,clusterrole-aggregation-controller,\
                     root-ca-certificate-publisher-controller",
                ),
        );
        plane.processes.push(kcm);
        plane.wait_until(
            "the controller manager creates the default ServiceAccount",
            Duration::from_secs(60),
            |p| {
                p.kubectl(&["get", "serviceaccount", "default", "-n", "default"])
                    .status
                    .success()
            },
        );
        plane
    }

    /// The directory holding the control plane's certificates, keys and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Polls `ready` every 100 ms until it holds; panics with the logs if `within` passes or a
    /// process exits.
    fn wait_until(&mut self, what: &str, within: Duration, ready: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + within;
        loop {
            if ready(self) {
                return;
            }
            let exited: Vec<String> = self
                .processes
                .iter_mut()
                .filter_map(|p| p.exited().map(|s| format!("{} exited with {s}", p.name)))
                .collect();
            assert!(
                exited.is_empty() && Instant::now() < deadline,
                "waiting for {what}: {}\n{}",
                if exited.is_empty() {
                    "timed out".to_string()
                } else {
                    exited.join(", ")
                },
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last lines of every process's log.
    pub fn logs(&self) -> String {
        self.processes
            .iter()
            .map(|p| format!("---- {} (tail) ----\n{}", p.name, p.tail(40)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Runs the harness's kubectl as the administrator.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_as(&self.admin_kubeconfig, args)
    }

    /// Runs kubectl with a given kubeconfig.
    pub fn kubectl_as(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        Command::new(kubectl_binary())
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .output()
            .expect("running kubectl")
    }

    /// Runs kubectl as the administrator, with `stdin` on its standard input.
    pub fn kubectl_with_input(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new(kubectl_binary())
            .arg("--kubeconfig")
            .arg(&self.admin_kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running kubectl");
        if let Some(mut input) = child.stdin.take() {
            input
                .write_all(stdin.as_bytes())
                .expect("writing to kubectl");
        }
        child.wait_with_output().expect("waiting for kubectl")
    }

    /// Runs kubectl as the administrator and returns its standard output; panics with its
    /// standard error when it fails.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Writes a kubeconfig that authenticates with `token` and defaults to `namespace`.
    pub fn write_kubeconfig(&self, path: &Path, token: &str, namespace: &str) {
        let config = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    \
             certificate-authority: {}\nusers:\n- name: user\n  user:\n    token: {token}\n\
             contexts:\n- name: test\n  context: {{cluster: test, user: user, namespace: {namespace}}}\n\
             current-context: test\n",
            self.url,
            self.dir.path().join("ca.crt").display()
        );
        std::fs::write(path, config).expect("writing a kubeconfig");
    }

    /// A kubeconfig holding a fresh token of the ServiceAccount `namespace/name`
    /// (`kubectl create token`): whoever uses it has exactly that account's RBAC.
    pub fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> PathBuf {
        let token = self.kubectl_ok(&["create", "token", name, "-n", namespace, "--duration=2h"]);
        let path = self
            .dir
            .path()
            .join(format!("{namespace}-{name}.kubeconfig"));
        self.write_kubeconfig(&path, token.trim(), namespace);
        path
    }

    /// Every audited request (one JSON object per line of the audit log, at the
    /// `ResponseComplete` stage).
    pub fn audit_events(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("audit.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The audited requests of `user` that RBAC refused (the authorizer's decision `forbid`;
    /// other 403s, such as a write into a namespace being deleted, are not RBAC's).
    pub fn denied_by_rbac(&self, user: &str) -> Vec<String> {
        self.audit_events()
            .iter()
            .filter(|e| {
                e["user"]["username"] == user
                    && e["annotations"]["authorization.k8s.io/decision"] == "forbid"
            })
            .map(|e| {
                format!(
                    "{} {}",
                    e["verb"].as_str().unwrap_or_default(),
                    e["requestURI"].as_str().unwrap_or_default()
                )
            })
            .collect()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        // Reverse order: the controller manager and API server before their etcd.
        for p in self.processes.iter_mut().rev() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

/// Runs `openssl` with `args` in `dir`; panics with its output when it fails.
pub(crate) fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running openssl (the harness makes its throw-away CA with it)");
    assert!(
        out.status.success(),
        "openssl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A throw-away CA and the API server's certificate (v3, IP SAN 127.0.0.1: rustls needs
/// both), the service-account signing key pair, the static admin token, and an audit policy
/// that records every request's metadata once it is answered.
fn write_credentials(dir: &Path) {
    let days = "7";
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            days,
            "-subj",
            "/CN=gatehouse-test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=kube-apiserver",
            "-keyout",
            "apiserver.key",
            "-out",
            "apiserver.csr",
        ],
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .expect("writing san.ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "apiserver.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            days,
            "-extfile",
            "san.ext",
            "-out",
            "apiserver.crt",
        ],
    );
    openssl(dir, &["genrsa", "-out", "sa.key", "2048"]);
    openssl(dir, &["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"]);
    openssl(dir, &["genrsa", "-out", "sa-retired.key", "2048"]);
    openssl(
        dir,
        &[
            "rsa",
            "-in",
            "sa-retired.key",
            "-pubout",
            "-out",
            "sa-retired.pub",
        ],
    );
    std::fs::write(
        dir.join("tokens.csv"),
        format!("{ADMIN_TOKEN},admin,admin-uid,system:masters\n"),
    )
    .expect("writing tokens.csv");
    std::fs::write(
        dir.join("audit-policy.yaml"),
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\n\
         rules:\n- level: Metadata\n",
    )
    .expect("writing the audit policy");
}
