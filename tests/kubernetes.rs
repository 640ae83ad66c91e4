//! Gatehouse on a real Kubernetes control plane — etcd, kube-apiserver and
//! kube-controller-manager built from source by `tools/kube/build` — driven the way users
//! drive it: `helm install` of the chart, the operator running with a token of the chart's own
//! ServiceAccount (so with exactly the chart's RBAC, every refusal in the API server's audit
//! log), `kubectl apply -f examples/`, and what kubectl shows.

mod support;

use gatehouse_testkit::kube::ControlPlane;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use support::*;

/// Each test starts its own control plane; one at a time, so two API servers never crowd a
/// small machine.
static ONE_CONTROL_PLANE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The release's namespace and name, and so the operator's ServiceAccount.
const NAMESPACE: &str = "gatehouse";
const OPERATOR_ACCOUNT: &str = "gatehouse-operator";
const OPERATOR_USER: &str = "system:serviceaccount:gatehouse:gatehouse-operator";
const SERVER_ACCOUNT: &str = "gatehouse-server";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn helm(plane: &ControlPlane, args: &[&str]) -> Output {
    Command::new(helm_binary())
        .arg("--kubeconfig")
        .arg(&plane.admin_kubeconfig)
        .args(args)
        .output()
        .expect("running helm")
}

fn helm_ok(plane: &ControlPlane, args: &[&str]) -> String {
    let out = helm(plane, args);
    assert!(
        out.status.success(),
        "helm {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `helm upgrade gatehouse charts/gatehouse -n gatehouse` with `extra`.
fn upgrade(plane: &ControlPlane, extra: &[&str]) -> Output {
    let chart = root().join("charts/gatehouse");
    let mut args = vec![
        "upgrade",
        "gatehouse",
        chart.to_str().unwrap(),
        "-n",
        NAMESPACE,
    ];
    args.extend_from_slice(extra);
    helm(plane, &args)
}

fn upgrade_ok(plane: &ControlPlane, extra: &[&str]) -> String {
    let out = upgrade(plane, extra);
    assert!(
        out.status.success(),
        "helm upgrade {} failed:\n{}",
        extra.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `helm install` of the chart as the guide has it, without hooks or waiting (no kubelet runs
/// the pods).
fn install(plane: &ControlPlane, public_url: &str, redis_url: &str, extra: &[&str]) -> String {
    let chart = root().join("charts/gatehouse");
    let public = format!("publicUrl={public_url}");
    let redis = format!("redis.url={redis_url}");
    let mut args = vec![
        "install",
        "gatehouse",
        chart.to_str().unwrap(),
        "-n",
        NAMESPACE,
        "--create-namespace",
        "--no-hooks",
        "--set",
        &public,
        "--set",
        &redis,
    ];
    args.extend_from_slice(extra);
    helm_ok(plane, &args)
}

fn json_of(plane: &ControlPlane, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&plane.kubectl_ok(&all)).expect("kubectl -o json")
}

/// The condition `kind` of an object's status: (status, reason).
fn condition(object: &Value, kind: &str) -> Option<(String, String)> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
}

/// Polls `check` every 200 ms for up to `secs`; panics with `what` and `context()`.
fn wait_for(secs: u64, what: &str, mut check: impl FnMut() -> bool, context: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting until {what}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The chart's key-encryption key Secret's `data.kek`, as stored (base64).
fn kek_data(plane: &ControlPlane) -> String {
    plane.kubectl_ok(&[
        "get",
        "secret",
        "gatehouse-kek",
        "-n",
        NAMESPACE,
        "-o",
        "jsonpath={.data.kek}",
    ])
}

/// The events of `namespace` as (reason, name of the object they are about).
fn events_in(plane: &ControlPlane, namespace: &str) -> Vec<(String, String)> {
    let events = json_of(plane, &["get", "events.events.k8s.io", "-n", namespace]);
    events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or_default().to_string(),
                e["regarding"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

/// The key-encryption key the chart generated, as the operator's pod would see its file.
fn write_kek(plane: &ControlPlane, dir: &Path) -> PathBuf {
    use base64::Engine;
    let data = kek_data(plane);
    let kek = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .expect("the kek Secret's data is base64");
    let path = dir.join("kek");
    std::fs::write(&path, kek).unwrap();
    path
}

fn secret_value(plane: &ControlPlane, namespace: &str, name: &str, key: &str) -> String {
    use base64::Engine;
    let data = plane.kubectl_ok(&[
        "get",
        "secret",
        name,
        "-n",
        namespace,
        "-o",
        &format!("jsonpath={{.data.{key}}}"),
    ]);
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .unwrap(),
    )
    .unwrap()
}

/// The operator and a token-service replica, both on `redis`, the operator with a token of the
/// chart's ServiceAccount.
struct Gatehouse {
    operators: Vec<Process>,
    server: Process,
    /// The operator's kubeconfig: a token of the chart's ServiceAccount.
    kubeconfig: PathBuf,
    /// Each operator's metrics address.
    metrics: Vec<String>,
    /// The token service's metrics address.
    server_metrics: String,
}

fn start_gatehouse(
    plane: &ControlPlane,
    dir: &Path,
    redis: &RedisServer,
    port: u16,
    public: &str,
    operators: usize,
    operator_env: &[(&str, String)],
) -> Gatehouse {
    let kubeconfig = plane.service_account_kubeconfig(NAMESPACE, OPERATOR_ACCOUNT);
    let whoami = plane.kubectl_as(
        &kubeconfig,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&whoami.stdout), OPERATOR_USER);
    let kek = write_kek(plane, dir);
    let store = redis.url();
    let mut processes = Vec::new();
    let mut metrics = Vec::new();
    for i in 0..operators {
        let addr = format!("127.0.0.1:{}", gatehouse_testkit::free_port());
        let pod = format!("gatehouse-operator-{i}");
        processes.push(spawn(
            dir,
            &pod,
            &[
                "operator",
                "--store",
                &store,
                "--public-url",
                public,
                "--metrics-listen",
                &addr,
            ],
            &[
                &[
                    ("KUBECONFIG", kubeconfig.to_str().unwrap()),
                    ("GATEHOUSE_KEY_ENCRYPTION_KEY_FILE", kek.to_str().unwrap()),
                    ("GATEHOUSE_NAMESPACE", NAMESPACE),
                    ("POD_NAME", &pod),
                ][..],
                &operator_env
                    .iter()
                    .map(|(k, v)| (*k, v.as_str()))
                    .collect::<Vec<_>>(),
            ]
            .concat(),
        ));
        metrics.push(addr);
    }
    let listen = format!("127.0.0.1:{port}");
    let server_ops = format!("127.0.0.1:{}", gatehouse_testkit::free_port());
    // The token service with its own ServiceAccount's token, for TokenReview (the chart's
    // server.tokenReview.enabled grants it that and nothing else).
    let server_kubeconfig = plane.service_account_kubeconfig(NAMESPACE, SERVER_ACCOUNT);
    let mut server = spawn(
        dir,
        "server",
        &[
            "server",
            "--store",
            &store,
            "--listen",
            &listen,
            "--public-url",
            public,
            "--metrics-listen",
            &server_ops,
            "--token-review",
        ],
        &[
            ("GATEHOUSE_KEY_ENCRYPTION_KEY_FILE", kek.to_str().unwrap()),
            ("KUBECONFIG", server_kubeconfig.to_str().unwrap()),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_status(&format!("http://{server_ops}/healthz")).ok() != Some(200) {
        assert!(
            Instant::now() < deadline && server.child.try_wait().ok().flatten().is_none(),
            "the token service did not start:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Gatehouse {
        operators: processes,
        server,
        kubeconfig,
        metrics,
        server_metrics: server_ops,
    }
}

impl Gatehouse {
    fn logs(&self) -> String {
        let mut all: Vec<String> = self
            .operators
            .iter()
            .map(|p| format!("--- {} ---\n{}", p.log.display(), p.log()))
            .collect();
        all.push(format!("--- server ---\n{}", self.server.log()));
        all.join("\n")
    }
}

/// The operator's log lines that speak of a refused or conflicting API call (the API
/// server's reasons `Forbidden` and `Conflict`, as kube errors print them).
fn api_trouble(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("Forbidden") || l.contains("Conflict"))
        .collect()
}

fn apply_examples(plane: &ControlPlane) {
    plane.kubectl_ok(&["create", "namespace", "acme"]);
    let examples = root().join("examples");
    plane.kubectl_ok(&["apply", "-f", examples.to_str().unwrap()]);
}

/// Polls a client_credentials token request until it answers `want` (or `secs` pass);
/// returns the last status.
async fn token_becomes(token_url: &str, client: &str, secret: &str, want: u16, secs: u64) -> u16 {
    grant_becomes(
        token_url,
        client,
        secret,
        "grant_type=client_credentials",
        want,
        secs,
    )
    .await
}

/// Polls a token request with `body` until it answers `want` (or `secs` pass).
async fn grant_becomes(
    token_url: &str,
    client: &str,
    secret: &str,
    body: &str,
    want: u16,
    secs: u64,
) -> u16 {
    let auth = basic(client, secret);
    let reply = reply_becomes(secs, want, || post_form(token_url, Some(&auth), body)).await;
    if reply.status != want {
        eprintln!("{client}: {} {}", reply.status, reply.body);
    }
    reply.status
}

/// A `client_credentials` request authenticated by a ServiceAccount token.
async fn with_service_account_token(token_url: &str, client_id: &str, token: &str) -> Reply {
    let body = form(&[
        ("grant_type", "client_credentials"),
        ("client_id", client_id),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", token),
    ]);
    post_form(token_url, None, &body).await
}

/// A JWT's header, unverified.
fn jwt_header(token: &str) -> Value {
    use base64::Engine;
    let part = token.split('.').next().unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

/// `token`'s claims signed again (RS256) with the PEM key `pem` under `kid`.
fn resign(token: &str, pem: &[u8], kid: &str) -> String {
    resign_claims(&jwt_payload(token), pem, kid)
}

/// `claims` signed (RS256) with the PEM key `pem` under `kid`.
fn resign_claims(claims: &Value, pem: &[u8], kid: &str) -> String {
    use std::io::Write;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid.to_string());
    // PKCS#1 DER, what the signing library takes.
    let mut openssl = std::process::Command::new("openssl")
        .args(["rsa", "-outform", "DER", "-traditional"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    openssl.stdin.take().unwrap().write_all(pem).unwrap();
    let der = openssl.wait_with_output().unwrap().stdout;
    let key = jsonwebtoken::EncodingKey::from_rsa_der(&der);
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// A token of `namespace/account` from the API server (`kubectl create token`).
fn service_account_token(
    plane: &ControlPlane,
    namespace: &str,
    account: &str,
    audience: &str,
) -> String {
    let out = plane.kubectl_ok(&[
        "create",
        "token",
        account,
        "-n",
        namespace,
        "--audience",
        audience,
        "--duration",
        "10m",
    ]);
    out.trim().to_string()
}

/// Workload identity, as the README's "Secretless workloads" shows it: the example's
/// ServiceAccount and OAuthClient; tokens from the API server for the tenant's issuer work
/// (and again: they are not single-use); a token for another audience, of another account, of
/// the same name in another namespace, or of an account deleted (and created again) does not.
async fn secretless_workloads(plane: &ControlPlane, public: &str, logs: &impl Fn() -> String) {
    let token_url = format!("{public}/acme/oauth2/token");
    let issuer = format!("{public}/acme");
    let example = root().join("examples/secretless");
    plane.kubectl_ok(&["apply", "-f", example.to_str().unwrap()]);
    let ready = || {
        let c = json_of(plane, &["get", "oauthclient", "invoicer", "-n", "acme"]);
        condition(&c, "Ready").is_some_and(|r| r.0 == "True")
    };
    wait_for(30, "the workload-identity client is Ready", ready, logs);
    let c = json_of(plane, &["get", "oauthclient", "invoicer", "-n", "acme"]);
    assert_eq!(
        c["status"]["workloadSubject"],
        "system:serviceaccount:acme:invoicer"
    );
    assert!(c["status"]["secretName"].is_null(), "{c}");
    let secrets = plane.kubectl_ok(&["get", "secrets", "-n", "acme", "-o", "name"]);
    assert!(
        !secrets.contains("invoicer"),
        "no Secret for a workload client: {secrets}"
    );

    // A change reaches the token service within its configuration poll (every 250 ms): Ready
    // says the store holds it, so the first answer may come just before the server has it.
    let status_becomes = |token: String, want: u16| {
        let url = token_url.clone();
        async move {
            reply_becomes(10, want, || {
                with_service_account_token(&url, "acme-invoicer", &token)
            })
            .await
        }
    };
    let token = service_account_token(plane, "acme", "invoicer", &issuer);
    let r = status_becomes(token.clone(), 200).await;
    assert_eq!(r.status, 200, "{}\n{}", r.body, logs());
    for _ in 0..2 {
        let r = with_service_account_token(&token_url, "acme-invoicer", &token).await;
        assert_eq!(r.status, 200, "{}\n{}", r.body, logs());
        let claims = jwt_payload(r.body["access_token"].as_str().unwrap());
        assert_eq!(claims["client_id"], "acme-invoicer");
        assert_eq!(claims["scope"], "billing.read");
    }
    // The cluster's key rotated: a token the retired key signed (still published beside the
    // signing one, as the API server does after a rotation) keeps working; a key the cluster
    // never published does not.
    let jwks: Value =
        serde_json::from_str(&plane.kubectl_ok(&["get", "--raw", "/openid/v1/jwks"])).unwrap();
    let signing_kid = jwt_header(&token)["kid"].as_str().unwrap().to_string();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert_eq!(kids.len(), 2, "the signing and the retired key: {jwks}");
    let retired_kid = kids.iter().find(|k| **k != signing_kid).unwrap();
    let retired = std::fs::read(plane.dir().join("sa-retired.key")).unwrap();
    let before_rotation = resign(&token, &retired, retired_kid);
    let r = with_service_account_token(&token_url, "acme-invoicer", &before_rotation).await;
    assert_eq!(
        r.status,
        200,
        "a token of the retired key: {}\n{}",
        r.body,
        logs()
    );
    let stranger = std::process::Command::new("openssl")
        .args(["genrsa", "2048"])
        .output()
        .unwrap()
        .stdout;
    let forged = resign(&token, &stranger, retired_kid);
    let r = with_service_account_token(&token_url, "acme-invoicer", &forged).await;
    assert_eq!(
        r.status, 401,
        "a key the cluster never published: {}",
        r.body
    );
    // Expired (a token of the cluster, signed with its retired key, an hour past its exp).
    let mut expired = jwt_payload(&token);
    expired["iat"] = json!(expired["iat"].as_u64().unwrap() - 7200);
    expired["nbf"] = expired["iat"].clone();
    expired["exp"] = json!(expired["iat"].as_u64().unwrap() + 3600);
    let r = with_service_account_token(
        &token_url,
        "acme-invoicer",
        &resign_claims(&expired, &retired, retired_kid),
    )
    .await;
    assert_eq!(r.status, 401, "an expired token: {}", r.body);

    // The token endpoint is an audience too.
    let for_endpoint = service_account_token(plane, "acme", "invoicer", &token_url);
    let r = with_service_account_token(&token_url, "acme-invoicer", &for_endpoint).await;
    assert_eq!(r.status, 200, "{}", r.body);

    let refused = |r: &Reply| r.status == 401 && r.body["error"] == "invalid_client";
    // Another audience (the API server's own).
    let api_audience =
        service_account_token(plane, "acme", "invoicer", "https://kubernetes.default.svc");
    let r = with_service_account_token(&token_url, "acme-invoicer", &api_audience).await;
    assert!(refused(&r), "{} {}", r.status, r.body);
    // Another account of the namespace.
    let default = service_account_token(plane, "acme", "default", &issuer);
    let r = with_service_account_token(&token_url, "acme-invoicer", &default).await;
    assert!(refused(&r), "{} {}", r.status, r.body);
    // The same name in another namespace.
    plane.kubectl_ok(&["create", "namespace", "elsewhere"]);
    plane.kubectl_ok(&["create", "serviceaccount", "invoicer", "-n", "elsewhere"]);
    let elsewhere = service_account_token(plane, "elsewhere", "invoicer", &issuer);
    let r = with_service_account_token(&token_url, "acme-invoicer", &elsewhere).await;
    assert!(refused(&r), "{} {}", r.status, r.body);
    // A secret for a workload client is no credential, nor is the token sent as one.
    let r = post_form(
        &token_url,
        Some(&basic("acme-invoicer", &token)),
        "grant_type=client_credentials",
    )
    .await;
    assert!(refused(&r), "{} {}", r.status, r.body);

    // The account deleted: the client is out of service, its tokens refused.
    plane.kubectl_ok(&["delete", "serviceaccount", "invoicer", "-n", "acme"]);
    wait_for(
        60,
        "the client reports ServiceAccountNotFound",
        || {
            let c = json_of(plane, &["get", "oauthclient", "invoicer", "-n", "acme"]);
            condition(&c, "Ready")
                .is_some_and(|r| r.0 == "False" && r.1 == "ServiceAccountNotFound")
        },
        logs,
    );
    let r = status_becomes(token.clone(), 401).await;
    assert!(refused(&r), "{} {}", r.status, r.body);
    // Created again under the same name: a new account; the old one's token stays refused.
    plane.kubectl_ok(&["create", "serviceaccount", "invoicer", "-n", "acme"]);
    wait_for(60, "the client is Ready again", ready, logs);
    let fresh = service_account_token(plane, "acme", "invoicer", &issuer);
    let r = status_becomes(fresh, 200).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = with_service_account_token(&token_url, "acme-invoicer", &token).await;
    assert!(
        refused(&r),
        "the deleted account's token: {} {}",
        r.status,
        r.body
    );
}

/// A Tenant that reviews ServiceAccount tokens (TokenReview): a token bound to a pod works
/// while the pod exists and stops once it is deleted, before the token expires.
async fn bound_pod_tokens(plane: &ControlPlane, public: &str, logs: &impl Fn() -> String) {
    let token_url = format!("{public}/acme/oauth2/token");
    let issuer = format!("{public}/acme");
    let pod = r"
apiVersion: v1
kind: Pod
metadata: {name: invoicer-pod, namespace: acme}
spec:
  serviceAccountName: invoicer
  containers: [{name: app, image: registry.example.com/invoicer:1}]
";
    let (ok, stderr) = apply(plane, pod);
    assert!(ok, "{stderr}");
    let pod_uid = plane.kubectl_ok(&[
        "get",
        "pod",
        "invoicer-pod",
        "-n",
        "acme",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    let bound = plane
        .kubectl_ok(&[
            "create",
            "token",
            "invoicer",
            "-n",
            "acme",
            "--audience",
            &issuer,
            "--duration",
            "10m",
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            "invoicer-pod",
            "--bound-object-uid",
            &pod_uid,
        ])
        .trim()
        .to_string();
    // Without review a deleted pod's token works until it expires; with it, not.
    plane.kubectl_ok(&[
        "patch",
        "tenant",
        "acme",
        "--type=merge",
        "-p",
        r#"{"spec":{"reviewServiceAccountTokens":true}}"#,
    ]);
    let status_becomes = |token: String, want: u16, secs: u64| {
        let url = token_url.clone();
        async move {
            reply_becomes(secs, want, || {
                with_service_account_token(&url, "acme-invoicer", &token)
            })
            .await
        }
    };
    // Until the token service has the tenant's new setting, tokens are not reviewed; then each
    // sign-in with a token it has not reviewed in the last 10 s asks the API server (audited).
    let server_user = format!("system:serviceaccount:{NAMESPACE}:{SERVER_ACCOUNT}");
    let reviewed = || {
        plane.audit_events().iter().any(|e| {
            e["objectRef"]["resource"] == "tokenreviews"
                && e["user"]["username"] == server_user
                && e["responseStatus"]["code"] == 201
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = with_service_account_token(&token_url, "acme-invoicer", &bound).await;
        assert_eq!(r.status, 200, "a live pod's token: {}\n{}", r.body, logs());
        if reviewed() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no TokenReview by the token service in the audit log\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let refused = plane.denied_by_rbac(&server_user);
    assert!(
        refused.is_empty(),
        "the token service refused by RBAC: {refused:?}"
    );

    plane.kubectl_ok(&[
        "delete",
        "pod",
        "invoicer-pod",
        "-n",
        "acme",
        "--grace-period=0",
        "--force",
    ]);
    // Accepted answers are kept 10 s: refused within that.
    let r = status_becomes(bound.clone(), 401, 20).await;
    assert_eq!(
        (r.status, r.error()),
        (401, "invalid_client"),
        "the deleted pod's token, long before it expires: {}",
        r.body
    );
    // A token bound to no pod is still good.
    let unbound = service_account_token(plane, "acme", "invoicer", &issuer);
    let r = with_service_account_token(&token_url, "acme-invoicer", &unbound).await;
    assert_eq!(r.status, 200, "{}", r.body);
    plane.kubectl_ok(&[
        "patch",
        "tenant",
        "acme",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/reviewServiceAccountTokens"}]"#,
    ]);
}

/// A CI system's tokens, by a Tenant's `trustedIssuers`: the operator reads the issuer's keys
/// over HTTPS, reports them on the Tenant, and binds the client the Tenant maps the job's
/// subject to; a rotation reaches the token service, an outage shows while the last keys work.
async fn trusted_issuer(
    plane: &ControlPlane,
    public: &str,
    ci: &ci_issuer::CiIssuer,
    key: &ci_issuer::Key,
    logs: &impl Fn() -> String,
) {
    let manifests = format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: forge}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Tenant
metadata: {{name: forge}}
spec:
  grantTypes: [client_credentials]
  scopes: [{{name: deploy}}]
  trustedIssuers:
    - name: ci
      issuer: "{issuer}"
      subjects:
        - subject: "{main}"
          client: {{namespace: forge, clientId: forge-deployer}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: OAuthClient
metadata: {{name: deployer, namespace: forge}}
spec:
  tenantRef: forge
  clientId: forge-deployer
  grantTypes: [client_credentials]
  scopes: [deploy]
  workloadIdentity: {{trustedIssuer: ci}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: OAuthClient
metadata: {{name: intruder, namespace: forge}}
spec:
  tenantRef: forge
  grantTypes: [client_credentials]
  scopes: [deploy]
  workloadIdentity: {{trustedIssuer: ci}}
"#,
        issuer = ci.issuer,
        main = ci_issuer::MAIN
    );
    let (ok, stderr) = apply(plane, &manifests);
    assert!(ok, "{stderr}");
    let client_ready = |name: &str| {
        let c = json_of(plane, &["get", "oauthclient", name, "-n", "forge"]);
        condition(&c, "Ready")
    };
    wait_for(
        60,
        "the trusted-issuer client is Ready",
        || client_ready("deployer").is_some_and(|r| r.0 == "True"),
        logs,
    );
    let c = json_of(plane, &["get", "oauthclient", "deployer", "-n", "forge"]);
    assert_eq!(c["status"]["workloadSubject"], ci_issuer::MAIN, "{c}");
    assert!(c["status"]["secretName"].is_null(), "{c}");
    assert_eq!(
        client_ready("intruder").map(|r| r.1).as_deref(),
        Some("WorkloadSubjectNotMapped")
    );
    let t = json_of(plane, &["get", "tenant", "forge"]);
    let read = &t["status"]["trustedIssuers"][0];
    assert_eq!(read["state"], "Ready", "{t}");
    assert_eq!(read["keys"], 1, "{t}");
    assert_eq!(read["jwksUri"], ci.server.url("/.well-known/jwks"), "{t}");
    assert_eq!(
        condition(&t, "TrustedIssuersRead").unwrap().0,
        "True",
        "{t}"
    );

    let token_url = format!("{public}/forge/oauth2/token");
    let audience = format!("{public}/forge");
    // The token service takes the new tenant within its configuration poll (every 250 ms).
    let r = reply_becomes(10, 200, || {
        let job = ci.token(key, &audience, |_| {});
        let url = token_url.clone();
        async move { ci_issuer::sign_in(&url, "forge-deployer", &job).await }
    })
    .await;
    assert_eq!(r.status, 200, "{}\n{}", r.body, logs());
    let claims = jwt_payload(r.body["access_token"].as_str().unwrap());
    assert_eq!(claims["client_id"], "forge-deployer");
    let other_branch = ci.token(key, &audience, |c| {
        c["sub"] = json!("repo:forge/app:pull_request");
    });
    let r = ci_issuer::sign_in(&token_url, "forge-deployer", &other_branch).await;
    assert_eq!(r.status, 401, "{}", r.body);

    // The issuer rotates its key: the operator reads it and the token service takes it.
    let next = ci_issuer::Key::new("ci-2");
    ci.publish(&[&next]);
    let rotated = ci.token(&next, &audience, |_| {});
    let r = reply_becomes(30, 200, || {
        ci_issuer::sign_in(&token_url, "forge-deployer", &rotated)
    })
    .await;
    assert_eq!(
        r.status,
        200,
        "rotated key never taken: {}\n{}",
        r.body,
        logs()
    );

    // Unreachable: the Tenant says so, and the last keys read keep working.
    ci.server.set_down(true);
    wait_for(
        30,
        "the Tenant reports the issuer unreachable",
        || {
            let t = json_of(plane, &["get", "tenant", "forge"]);
            t["status"]["trustedIssuers"][0]["state"] == "IssuerUnreachable"
                && condition(&t, "TrustedIssuersRead").is_some_and(|c| c.0 == "False")
        },
        logs,
    );
    let r = ci_issuer::sign_in(&token_url, "forge-deployer", &rotated).await;
    assert_eq!(r.status, 200, "within the grace period: {}", r.body);
    ci.server.set_down(false);
    plane.kubectl_ok(&[
        "delete",
        "oauthclients",
        "--all",
        "-n",
        "forge",
        "--timeout=60s",
    ]);
    plane.kubectl_ok(&["delete", "tenant", "forge", "--timeout=60s"]);
}

/// RFC 8693 with a pod's token: the workload exchanges its ServiceAccount token for a token
/// for API A, and API A exchanges that (its own token as the actor) for a narrower one for API
/// B that names A in `act`.
/// A namespace user who breaks their own client's Secret on purpose keeps its registration
/// (its tokens and last secret), but nothing the Tenant withdraws afterwards: a scope, then the
/// namespace itself.
async fn held_clients_keep_nothing_withdrawn(
    plane: &ControlPlane,
    public: &str,
    logs: &impl Fn() -> String,
) {
    let tenant = |scopes: &str, namespaces: &str| {
        format!(
            "apiVersion: gatehouse.dev/v1alpha1\nkind: Tenant\nmetadata: {{name: guarded}}\n\
             spec: {{grantTypes: [client_credentials], scopes: {scopes}, clientNamespaces: {namespaces}}}\n"
        )
    };
    let (ok, stderr) = apply(
        plane,
        &format!(
            "{}---\napiVersion: gatehouse.dev/v1alpha1\nkind: OAuthClient\nmetadata: {{name: keeper, namespace: acme}}\n\
             spec: {{tenantRef: guarded, clientId: guarded-keeper, grantTypes: [client_credentials], scopes: [read, write],\n\
                     secretRef: {{name: keeper-credentials, generate: false}}}}\n\
             ---\napiVersion: v1\nkind: Secret\nmetadata: {{name: keeper-credentials, namespace: acme, labels: {{gatehouse.dev/watch: \"true\"}}}}\n\
             stringData: {{client_secret: keeper-secret}}\n",
            tenant("[{name: read}, {name: write}]", "[acme]")
        ),
    );
    assert!(ok, "{stderr}");
    let token_url = format!("{public}/guarded/oauth2/token");
    let asking = |scope: &'static str, want: u16, secs: u64| {
        let url = token_url.clone();
        let body = format!("grant_type=client_credentials&scope={scope}");
        async move { grant_becomes(&url, "guarded-keeper", "keeper-secret", &body, want, secs).await }
    };
    assert_eq!(asking("write", 200, 60).await, 200, "{}", logs());

    // The team empties its own Secret: held, still serving its last secret.
    plane.kubectl_ok(&[
        "patch",
        "secret",
        "keeper-credentials",
        "-n",
        "acme",
        "--type=json",
        "-p",
        r#"[{"op": "remove", "path": "/data/client_secret"}]"#,
    ]);
    wait_for(
        30,
        "keeper is held, its last registration serving",
        || {
            let c = json_of(plane, &["get", "oauthclient", "keeper", "-n", "acme"]);
            condition(&c, "Ready").is_some_and(|r| r.1 == "ServingLastValid")
        },
        logs,
    );
    assert_eq!(asking("write", 200, 5).await, 200, "{}", logs());

    // The platform team withdraws the scope: the held registration loses it.
    let (ok, stderr) = apply(plane, &tenant("[{name: read}]", "[acme]"));
    assert!(ok, "{stderr}");
    assert_eq!(asking("write", 400, 30).await, 400, "{}", logs());
    assert_eq!(asking("read", 200, 5).await, 200, "{}", logs());

    // And then the namespace: the held registration goes.
    let (ok, stderr) = apply(plane, &tenant("[{name: read}]", "[elsewhere]"));
    assert!(ok, "{stderr}");
    assert_eq!(asking("read", 401, 30).await, 401, "{}", logs());
    plane.kubectl_ok(&["delete", "tenant", "guarded"]);
    plane.kubectl_ok(&["delete", "oauthclient", "keeper", "-n", "acme"]);
}

async fn workload_token_exchange(plane: &ControlPlane, public: &str, logs: &impl Fn() -> String) {
    const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
    let manifests = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Tenant
metadata: {name: exchange}
spec:
  grantTypes: [client_credentials, "urn:ietf:params:oauth:grant-type:token-exchange"]
  clientNamespaces: [acme]
  scopes: [{name: invoices.read}, {name: invoices.write}]
  audiences: [{name: exchange-api-a}, {name: "https://b.example.com"}]
  # API A may act for the invoicer workload (as its delegate).
  subjectAssertions:
    - signer: {namespace: acme, clientId: exchange-api-a}
      clients: [{namespace: acme, clientId: exchange-invoicer}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: OAuthClient
metadata: {name: invoicer-exchange, namespace: acme}
spec:
  tenantRef: exchange
  clientId: exchange-invoicer
  grantTypes: ["urn:ietf:params:oauth:grant-type:token-exchange"]
  scopes: [invoices.read, invoices.write]
  audiences: [exchange-api-a]
  workloadIdentity: {serviceAccountName: invoicer}
---
apiVersion: gatehouse.dev/v1alpha1
kind: OAuthClient
metadata: {name: api-a, namespace: acme}
spec:
  tenantRef: exchange
  clientId: exchange-api-a
  grantTypes: [client_credentials, "urn:ietf:params:oauth:grant-type:token-exchange"]
  scopes: [invoices.read]
  audiences: ["https://b.example.com"]
"#;
    let (ok, stderr) = apply(plane, manifests);
    assert!(ok, "{stderr}");
    for client in ["invoicer-exchange", "api-a"] {
        wait_for(
            60,
            &format!("{client} is Ready"),
            || {
                let c = json_of(plane, &["get", "oauthclient", client, "-n", "acme"]);
                condition(&c, "Ready").is_some_and(|r| r.0 == "True")
            },
            logs,
        );
    }
    let token_url = format!("{public}/exchange/oauth2/token");
    let pod_token = service_account_token(plane, "acme", "invoicer", &format!("{public}/exchange"));
    let jwt_type = "urn:ietf:params:oauth:token-type:jwt";
    let at_type = "urn:ietf:params:oauth:token-type:access_token";
    let first_body = form(&[
        ("grant_type", EXCHANGE),
        ("client_id", "exchange-invoicer"),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", &pod_token),
        ("subject_token", &pod_token),
        ("subject_token_type", jwt_type),
        ("audience", "exchange-api-a"),
        ("scope", "invoices.read"),
    ]);
    // The token service takes the new tenant within its configuration poll.
    let first = reply_becomes(10, 200, || post_form(&token_url, None, &first_body)).await;
    assert_eq!(first.status, 200, "{}\n{}", first.body, logs());
    assert_eq!(first.body["issued_token_type"], at_type);
    let for_a = first.body["access_token"].as_str().unwrap().to_string();
    let claims = jwt_payload(&for_a);
    assert_eq!(claims["sub"], "client:exchange-invoicer");
    assert_eq!(claims["aud"], "exchange-api-a");
    assert!(
        claims.get("act").is_none(),
        "exchanging one's own token is no delegation"
    );

    let secret = secret_value(plane, "acme", "api-a-credentials", "client_secret");
    let own = post_form(
        &token_url,
        Some(&basic("exchange-api-a", &secret)),
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(own.status, 200, "{}", own.body);
    let own = own.body["access_token"].as_str().unwrap().to_string();
    let second = post_form(
        &token_url,
        Some(&basic("exchange-api-a", &secret)),
        &form(&[
            ("grant_type", EXCHANGE),
            ("subject_token", &for_a),
            ("subject_token_type", at_type),
            ("actor_token", &own),
            ("actor_token_type", at_type),
            ("resource", "https://b.example.com"),
        ]),
    )
    .await;
    assert_eq!(second.status, 200, "{}", second.body);
    let for_b = jwt_payload(second.body["access_token"].as_str().unwrap());
    assert_eq!(for_b["sub"], "client:exchange-invoicer");
    assert_eq!(for_b["aud"], "https://b.example.com");
    assert_eq!(for_b["scope"], "invoices.read");
    assert_eq!(for_b["act"], json!({"sub": "client:exchange-api-a"}));
    assert!(for_b["exp"].as_u64() <= claims["exp"].as_u64());
    // The pod's token for another tenant's issuer is no subject here.
    let acme_token = service_account_token(plane, "acme", "invoicer", &format!("{public}/acme"));
    let r = post_form(
        &token_url,
        None,
        &form(&[
            ("grant_type", EXCHANGE),
            ("client_id", "exchange-invoicer"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &pod_token),
            ("subject_token", &acme_token),
            ("subject_token_type", jwt_type),
        ]),
    )
    .await;
    assert_eq!(
        (r.status, r.error()),
        (400, "invalid_request"),
        "{}",
        r.body
    );
    // Gone while the operator runs, as the guide's Uninstalling later expects of tenants.
    plane.kubectl_ok(&[
        "delete",
        "tenant",
        "exchange",
        "--wait=true",
        "--timeout=60s",
    ]);
}

/// helm install, upgrade with changed values, uninstall: what the guide's "Install",
/// "Upgrading" and "Uninstalling" sections say happens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_installs_upgrades_and_uninstalls_the_chart() {
    let _one = ONE_CONTROL_PLANE.lock().await;
    let plane = ControlPlane::start();
    let version = plane.kubectl_ok(&["version", "-o", "json"]);
    assert!(version.contains("\"serverVersion\""), "{version}");

    install(
        &plane,
        "https://auth.example.com",
        "redis://redis.data.svc:6379/0",
        &[],
    );
    plane.kubectl_ok(&[
        "wait",
        "--for",
        "condition=established",
        "crd/tenants.gatehouse.dev",
        "crd/oauthclients.gatehouse.dev",
        "--timeout=60s",
    ]);
    for object in [
        "deployment/gatehouse-operator",
        "deployment/gatehouse-server",
        "serviceaccount/gatehouse-operator",
        "secret/gatehouse-kek",
        "service/gatehouse-server",
        "role/gatehouse-operator",
        "rolebinding/gatehouse-operator",
    ] {
        plane.kubectl_ok(&["get", object, "-n", NAMESPACE]);
    }
    plane.kubectl_ok(&["get", "clusterrole/gatehouse-operator"]);
    // The RBAC the API server stored is the one `gatehouse rbac` prints.
    let can = plane.kubectl_ok(&[
        "auth",
        "can-i",
        "patch",
        "oauthclients.gatehouse.dev/status",
        "--as",
        OPERATOR_USER,
        "-A",
    ]);
    assert_eq!(can.trim(), "yes");
    let cannot = plane.kubectl(&[
        "auth",
        "can-i",
        "get",
        "secrets",
        "--as",
        OPERATOR_USER,
        "-n",
        "acme",
    ]);
    assert_eq!(String::from_utf8_lossy(&cannot.stdout).trim(), "no");
    let kek = kek_data(&plane);
    // Server-side dry run renders with live `lookup`: the kek is found, not regenerated.
    let chart = root().join("charts/gatehouse");
    let dry = upgrade_ok(&plane, &["--reuse-values", "--dry-run=server"]);
    assert!(dry.contains(kek.trim()), "the dry run kept the key");

    upgrade_ok(
        &plane,
        &[
            "--no-hooks",
            "--reuse-values",
            "--set",
            "server.replicas=3",
            "--set",
            "logFormat=text",
        ],
    );
    let server = json_of(
        &plane,
        &["get", "deployment", "gatehouse-server", "-n", NAMESPACE],
    );
    assert_eq!(server["spec"]["replicas"], 3);
    let after = kek_data(&plane);
    assert_eq!(
        after, kek,
        "an upgrade keeps the generated key-encryption key"
    );
    // The guide's upgrade step for CRDs, over the ones helm installed.
    let crds = chart.join("crds");
    plane.kubectl_ok(&["apply", "-f", crds.to_str().unwrap()]);
    // A values typo fails the upgrade, changing nothing.
    let typo = upgrade(
        &plane,
        &["--no-hooks", "--reuse-values", "--set", "server.replics=1"],
    );
    assert!(!typo.status.success());
    assert!(
        String::from_utf8_lossy(&typo.stderr).contains("replics"),
        "{}",
        String::from_utf8_lossy(&typo.stderr)
    );

    helm_ok(
        &plane,
        &["uninstall", "gatehouse", "-n", NAMESPACE, "--no-hooks"],
    );
    let gone = plane.kubectl(&["get", "deployment", "gatehouse-server", "-n", NAMESPACE]);
    assert!(!gone.status.success(), "the release's objects are deleted");
    let kept = kek_data(&plane);
    assert_eq!(kept, kek, "the key-encryption key outlives the release");
    plane.kubectl_ok(&[
        "get",
        "crd",
        "tenants.gatehouse.dev",
        "oauthclients.gatehouse.dev",
    ]);
    // Installing again finds and keeps that key.
    install(
        &plane,
        "https://auth.example.com",
        "redis://redis.data.svc:6379/0",
        &[],
    );
    let again = kek_data(&plane);
    assert_eq!(again, kek);
}

/// The operator with the chart's RBAC: `kubectl apply -f examples/`, every client Ready and
/// every example grant served; a generated Secret owned by its client, rotated on request and
/// garbage-collected with it; finalizers; a Redis flush refilled; deleting a Tenant and a
/// namespace; events; two operators and a leader killed. The API server refuses the operator
/// nothing (its audit log is read), and no status write conflicts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_with_the_charts_rbac_serves_the_examples() {
    let _one = ONE_CONTROL_PLANE.lock().await;
    let plane = ControlPlane::start();
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let port = gatehouse_testkit::free_port();
    let public = format!("http://127.0.0.1:{port}");
    install(
        &plane,
        &public,
        &redis.url(),
        &["--set", "server.tokenReview.enabled=true"],
    );
    let ci_key = ci_issuer::Key::new("ci-1");
    let ci = ci_issuer::CiIssuer::start(&[&ci_key]);
    let g = start_gatehouse(&plane, dir.path(), &redis, port, &public, 2, &ci.env());
    let logs = || format!("{}\n{}", g.logs(), plane.logs());

    apply_examples(&plane);
    let clients = [
        "billing",
        "portal",
        "spa",
        "mobile",
        "tv",
        "reporter",
        "old-dashboard",
    ];
    wait_for(
        90,
        "every example client is Ready",
        || {
            let list = json_of(&plane, &["get", "oauthclients", "-n", "acme"]);
            let items = list["items"].as_array().cloned().unwrap_or_default();
            items.len() == clients.len()
                && items
                    .iter()
                    .all(|c| condition(c, "Ready").is_some_and(|r| r.0 == "True"))
        },
        logs,
    );
    for tenant in ["acme", "legacy"] {
        let t = json_of(&plane, &["get", "tenant", tenant]);
        assert_eq!(condition(&t, "Ready").unwrap().0, "True", "{t}");
        assert_eq!(t["status"]["issuer"], format!("{public}/{tenant}"));
    }
    // Ready says the store holds a client; the token service reads the store every 250 ms.
    for loaded in ["tenant=acme clients=6 ", "tenant=legacy clients=1 "] {
        wait_for(
            10,
            &format!("the token service serves {loaded}"),
            || g.server.log().contains(loaded),
            logs,
        );
    }
    // Every example's grant, as its client uses it.
    example_grants::billing_client_credentials(&public).await;
    example_grants::mobile_password_and_refresh(&public).await;
    example_grants::portal_and_spa_code_with_pkce(&public).await;
    example_grants::tv_device_code(&public).await;
    example_grants::reporter_jwt_bearer(&public).await;
    example_grants::legacy_implicit(&public).await;
    secretless_workloads(&plane, &public, &logs).await;
    bound_pod_tokens(&plane, &public, &logs).await;
    workload_token_exchange(&plane, &public, &logs).await;
    trusted_issuer(&plane, &public, &ci, &ci_key, &logs).await;
    held_clients_keep_nothing_withdrawn(&plane, &public, &logs).await;

    // A Secret the team supplies: an edit takes effect without touching the client.
    let token_url = format!("{public}/acme/oauth2/token");
    plane.kubectl_ok(&[
        "patch",
        "secret",
        "mobile-credentials",
        "-n",
        "acme",
        "--type=merge",
        "-p",
        r#"{"stringData": {"client_secret": "mobile-secret-rotated-by-gitops"}}"#,
    ]);
    let alice = "grant_type=password&username=alice&password=wonderland";
    let rotated_by_gitops = "mobile-secret-rotated-by-gitops";
    let mobile = |secret: &'static str, want: u16, secs: u64| {
        let url = token_url.clone();
        async move { grant_becomes(&url, "acme-mobile", secret, alice, want, secs).await }
    };
    assert_eq!(mobile(rotated_by_gitops, 200, 30).await, 200, "{}", logs());
    assert_eq!(mobile("mobile-secret-change-me", 401, 10).await, 401);

    // Scheduled key rotation, on a tenant that rotates every few seconds.
    let (ok, stderr) = apply(
        &plane,
        "apiVersion: gatehouse.dev/v1alpha1\nkind: Tenant\nmetadata: {name: rotating}\n\
         spec: {grantTypes: [client_credentials], accessToken: {ttl: 30s}, signing: {rotationInterval: 4s}}\n",
    );
    assert!(ok, "{stderr}");
    wait_for(
        40,
        "the tenant's key rotates and the old one stays published, retired",
        || {
            let t = json_of(&plane, &["get", "tenant", "rotating"]);
            let states: Vec<&str> = t["status"]["signingKeys"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|k| k["state"].as_str())
                .collect();
            states.contains(&"retired")
                && plane
                    .kubectl_ok(&[
                        "get",
                        "events",
                        "-n",
                        "default",
                        "--field-selector",
                        "reason=KeyRotated",
                    ])
                    .contains("rotating")
        },
        logs,
    );
    plane.kubectl_ok(&[
        "delete",
        "tenant",
        "rotating",
        "--wait=true",
        "--timeout=60s",
    ]);

    // Statuses are the operator's, written by server-side apply under its field manager.
    let managed = plane.kubectl_ok(&[
        "get",
        "oauthclient",
        "billing",
        "-n",
        "acme",
        "-o",
        "yaml",
        "--show-managed-fields",
    ]);
    assert!(managed.contains("manager: gatehouse-operator"), "{managed}");

    // A Secret supplied without the watch label is named, not read; the command the
    // condition gives labels it, and it takes effect.
    let (ok, stderr) = apply(
        &plane,
        "apiVersion: gatehouse.dev/v1alpha1\nkind: OAuthClient\nmetadata: {name: audit, namespace: acme}\n\
         spec: {tenantRef: acme, grantTypes: [client_credentials], secretRef: {name: audit-credentials, generate: false}}\n\
         ---\napiVersion: v1\nkind: Secret\nmetadata: {name: audit-credentials, namespace: acme}\n\
         stringData: {client_secret: audit-secret-from-gitops}\n",
    );
    assert!(ok, "{stderr}");
    let mut told = String::new();
    wait_for(
        30,
        "audit says its Secret lacks the label",
        || {
            let c = json_of(&plane, &["get", "oauthclient", "audit", "-n", "acme"]);
            told = c["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "Ready")
                .and_then(|c| c["message"].as_str())
                .unwrap_or_default()
                .to_string();
            condition(&c, "Ready").is_some_and(|r| r.1 == "SecretNotLabelled")
        },
        logs,
    );
    let command = told
        .split("kubectl ")
        .nth(1)
        .expect("the condition gives the command");
    let args: Vec<&str> = command.split_whitespace().collect();
    plane.kubectl_ok(&args);
    assert_eq!(
        token_becomes(
            &token_url,
            "acme-audit",
            "audit-secret-from-gitops",
            200,
            30
        )
        .await,
        200,
        "{}",
        logs()
    );

    // A client whose Secret the operator generates: owned by the client, labelled.
    plane.kubectl_with_input(
        &["apply", "-f", "-"],
        "apiVersion: gatehouse.dev/v1alpha1\nkind: OAuthClient\nmetadata: {name: ledger, namespace: acme}\n\
         spec: {tenantRef: acme, grantTypes: [client_credentials], scopes: [billing.read]}\n",
    );
    wait_for(
        60,
        "ledger's Secret is generated",
        || {
            plane
                .kubectl(&["get", "secret", "ledger-credentials", "-n", "acme"])
                .status
                .success()
        },
        logs,
    );
    let ledger = json_of(&plane, &["get", "oauthclient", "ledger", "-n", "acme"]);
    let secret = json_of(
        &plane,
        &["get", "secret", "ledger-credentials", "-n", "acme"],
    );
    let owner = &secret["metadata"]["ownerReferences"][0];
    assert_eq!(owner["uid"], ledger["metadata"]["uid"], "{secret}");
    assert_eq!(owner["kind"], "OAuthClient");
    assert_eq!(secret["metadata"]["labels"]["gatehouse.dev/watch"], "true");
    assert_eq!(
        ledger["metadata"]["finalizers"],
        json!(["gatehouse.dev/cleanup"])
    );
    let first = secret_value(&plane, "acme", "ledger-credentials", "client_secret");
    assert_eq!(
        token_becomes(&token_url, "acme-ledger", &first, 200, 30).await,
        200,
        "{}",
        logs()
    );

    // Rotation on request.
    plane.kubectl_ok(&[
        "annotate",
        "oauthclient",
        "ledger",
        "-n",
        "acme",
        "gatehouse.dev/rotate-secret=2026-11",
        "--overwrite",
    ]);
    wait_for(
        30,
        "the Secret records the rotation",
        || {
            let s = json_of(
                &plane,
                &["get", "secret", "ledger-credentials", "-n", "acme"],
            );
            s["metadata"]["annotations"]["gatehouse.dev/rotated-for"] == "2026-11"
        },
        logs,
    );
    let rotated = secret_value(&plane, "acme", "ledger-credentials", "client_secret");
    assert_ne!(rotated, first);
    assert_eq!(
        token_becomes(&token_url, "acme-ledger", &rotated, 200, 15).await,
        200
    );
    assert_eq!(
        token_becomes(&token_url, "acme-ledger", &first, 401, 15).await,
        401
    );

    // The emergency rotation: every key replaced at once, the old ones gone from JWKS, so a
    // token signed before no longer verifies; done once per annotation value.
    let jwks_uri = example_grants::endpoint(&public, "acme", "jwks_uri").await;
    let kids = || async {
        let jwks: Value = reqwest::get(&jwks_uri).await.unwrap().json().await.unwrap();
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect::<Vec<String>>()
    };
    let before = kids().await;
    let issued = post_form(
        &token_url,
        Some(&basic("acme-ledger", &rotated)),
        "grant_type=client_credentials",
    )
    .await;
    let old_kid = issued.body["access_token"]
        .as_str()
        .and_then(|t| t.split('.').next())
        .map(|h| {
            use base64::Engine;
            let header: Value = serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(h)
                    .unwrap(),
            )
            .unwrap();
            header["kid"].as_str().unwrap().to_string()
        })
        .unwrap();
    assert!(before.contains(&old_kid));
    plane.kubectl_ok(&[
        "annotate",
        "tenant",
        "acme",
        "gatehouse.dev/rotate-keys=incident-1",
        "--overwrite",
    ]);
    wait_for(
        30,
        "the tenant's keys are all replaced",
        || {
            let t = json_of(&plane, &["get", "tenant", "acme"]);
            let now: Vec<String> = t["status"]["signingKeys"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|k| k["kid"].as_str().map(str::to_string))
                .collect();
            !now.is_empty() && now.iter().all(|k| !before.contains(k))
        },
        logs,
    );
    let mut after = Vec::new();
    for _ in 0..50 {
        after = kids().await;
        if after.iter().all(|k| !before.contains(k)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        after.iter().all(|k| !before.contains(k)),
        "old keys still published: {before:?} -> {after:?}"
    );
    let fresh = post_form(
        &token_url,
        Some(&basic("acme-ledger", &rotated)),
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(fresh.status, 200);
    let keys_secret = json_of(
        &plane,
        &["get", "secret", "gatehouse-keys-acme", "-n", NAMESPACE],
    );
    assert_eq!(
        keys_secret["metadata"]["annotations"]["gatehouse.dev/keys-rotated-for"],
        "incident-1"
    );
    let warned = plane.kubectl_ok(&[
        "get",
        "events",
        "-n",
        "default",
        "--field-selector",
        "reason=KeysReplaced",
    ]);
    assert!(warned.contains(&old_kid), "{warned}");
    // Reconciled again (a label, say): the same annotation replaces nothing more.
    plane.kubectl_ok(&["label", "tenant", "acme", "touched=yes"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(kids().await, after, "one replacement per annotation value");

    // Redis loses everything: the leader's drift check refills it from the API server.
    // Every tenant and client is written again, not only those a reconcile happens to touch.
    gatehouse_testkit::redis_command(redis.port, &["FLUSHALL"]).unwrap();
    let registered = |tenant: &str, client: &str| {
        gatehouse_testkit::redis_command(
            redis.port,
            &["HEXISTS", &format!("{{t:{tenant}}}:clients"), client],
        )
        .is_ok_and(|r| r == ":1")
    };
    wait_for(
        40,
        "the store holds every client again",
        || {
            [
                "billing", "portal", "spa", "mobile", "tv", "reporter", "ledger",
            ]
            .iter()
            .all(|c| registered("acme", &format!("acme-{c}")))
                && registered("legacy", "legacy-dashboard")
        },
        logs,
    );
    assert_eq!(
        token_becomes(&token_url, "acme-ledger", &rotated, 200, 20).await,
        200,
        "not refilled after a flush:\n{}",
        logs()
    );

    // Events, as `kubectl get events` lists them.
    let seen: Vec<String> = events_in(&plane, "acme")
        .iter()
        .map(|(reason, object)| format!("{reason} {object}"))
        .collect();
    for wanted in [
        "SecretGenerated ledger",
        "Reconciled ledger",
        "SecretRotated ledger",
        "Reconciled billing",
    ] {
        assert!(
            seen.iter().any(|e| e == wanted),
            "{wanted} missing from {seen:?}"
        );
    }
    let listed = plane.kubectl_ok(&["get", "events", "-n", "acme"]);
    assert!(listed.contains("SecretGenerated"), "{listed}");

    // Deleting the client: its finalizer takes it out of the token service, and the garbage
    // collector deletes the Secret it owned.
    plane.kubectl_ok(&[
        "delete",
        "oauthclient",
        "ledger",
        "-n",
        "acme",
        "--wait=true",
        "--timeout=60s",
    ]);
    assert_eq!(
        token_becomes(&token_url, "acme-ledger", &rotated, 401, 15).await,
        401
    );
    wait_for(
        60,
        "the garbage collector deletes ledger's Secret",
        || {
            !plane
                .kubectl(&["get", "secret", "ledger-credentials", "-n", "acme"])
                .status
                .success()
        },
        logs,
    );
    let reasons_of = |namespace: &str, object: &str| {
        events_in(&plane, namespace)
            .into_iter()
            .filter(|(_, about)| about == object)
            .map(|(reason, _)| reason)
            .collect::<Vec<_>>()
    };
    wait_for(
        10,
        "ledger's Deregistered event is listed",
        || reasons_of("acme", "ledger").contains(&"Deregistered".to_string()),
        || plane.kubectl_ok(&["get", "events.events.k8s.io", "-A", "-o", "wide"]),
    );

    // Two operators: one leads. Killing it (no chance to hand over) lets the other take over
    // once the lease expires (15 s), and it carries on reconciling.
    let lease = json_of(
        &plane,
        &["get", "lease", "gatehouse-operator", "-n", NAMESPACE],
    );
    let leader = lease["spec"]["holderIdentity"]
        .as_str()
        .unwrap()
        .to_string();
    let leader_index: usize = leader.rsplit('-').next().unwrap().parse().unwrap();
    let killed = Instant::now();
    let pid = g.operators[leader_index].child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .unwrap()
            .success()
    );
    plane.kubectl_with_input(
        &["apply", "-f", "-"],
        "apiVersion: gatehouse.dev/v1alpha1\nkind: OAuthClient\nmetadata: {name: after, namespace: acme}\n\
         spec: {tenantRef: acme, grantTypes: [client_credentials]}\n",
    );
    wait_for(
        45,
        "the standby takes over and reconciles a new client",
        || {
            let c = json_of(&plane, &["get", "oauthclient", "after", "-n", "acme"]);
            condition(&c, "Ready").is_some_and(|r| r.0 == "True")
        },
        logs,
    );
    let handover = killed.elapsed();
    assert!(
        handover < Duration::from_secs(30),
        "handover took {handover:?}"
    );
    let lease = json_of(
        &plane,
        &["get", "lease", "gatehouse-operator", "-n", NAMESPACE],
    );
    assert_ne!(lease["spec"]["holderIdentity"], leader);
    let survivor = &g.metrics[1 - leader_index];
    let metrics = scrape(survivor).await;
    assert!(metrics.contains("gatehouse_operator_leader 1"), "{metrics}");

    // The chart's alert rules and dashboard read only metrics these processes export.
    let mut exported = monitoring::exported_names(&metrics);
    let served = scrape(&g.server_metrics).await;
    exported.extend(monitoring::exported_names(&served));
    for query in monitoring::rendered_queries() {
        for name in monitoring::metric_names(&query) {
            assert!(
                exported.contains(&name),
                "{name} (in {query}) is not exported: {exported:?}"
            );
        }
    }

    // Deleting a Tenant: its issuer and key Secret go, then the Tenant; its client says so.
    plane.kubectl_ok(&["delete", "tenant", "legacy", "--wait=true", "--timeout=60s"]);
    // The token service drops it at its next look at the store (within a few seconds).
    let discovery = format!("{public}/legacy/.well-known/openid-configuration");
    wait_for(
        10,
        "the legacy issuer is gone",
        || http_status(&discovery).ok() == Some(404),
        logs,
    );
    assert!(
        !plane
            .kubectl(&["get", "secret", "gatehouse-keys-legacy", "-n", NAMESPACE])
            .status
            .success()
    );
    wait_for(
        30,
        "old-dashboard reports its tenant gone",
        || {
            let c = json_of(
                &plane,
                &["get", "oauthclient", "old-dashboard", "-n", "acme"],
            );
            condition(&c, "Ready").is_some_and(|r| r.1 == "TenantNotFound")
        },
        logs,
    );
    wait_for(
        10,
        "legacy's TenantRemoved event is listed",
        || reasons_of("default", "legacy").contains(&"TenantRemoved".to_string()),
        || format!("{:?}", reasons_of("default", "legacy")),
    );

    // Deleting the namespace: the namespace controller deletes its clients, their finalizers
    // take them out of service, and the namespace goes.
    plane.kubectl_ok(&[
        "delete",
        "namespace",
        "acme",
        "--wait=true",
        "--timeout=90s",
    ]);
    assert_eq!(
        token_becomes(
            &token_url,
            "acme-billing",
            "quickstart-secret-change-me",
            401,
            15
        )
        .await,
        401
    );

    // Nothing the operator asked for was refused, and no status write conflicted.
    let refused = plane.denied_by_rbac(OPERATOR_USER);
    assert!(refused.is_empty(), "refused by RBAC: {refused:?}");
    let asked = plane
        .audit_events()
        .iter()
        .filter(|e| e["user"]["username"] == OPERATOR_USER)
        .count();
    assert!(asked > 0, "the audit log records the operator's requests");
    // Every kind of request the API server saw from the operator is one `gatehouse rbac`
    // declares, and every declared one was made (the chart's RBAC is no wider than needed).
    let mut made = std::collections::BTreeSet::new();
    for e in plane.audit_events() {
        // The test's own `kubectl auth whoami` with the operator's token is not the operator.
        let by_kubectl = e["userAgent"]
            .as_str()
            .is_some_and(|a| a.starts_with("kubectl"));
        if e["user"]["username"] != OPERATOR_USER || by_kubectl {
            continue;
        }
        let reference = &e["objectRef"];
        if reference.is_null() {
            // Outside the resource API: the ServiceAccount issuer's discovery documents.
            let uri = e["requestURI"].as_str().unwrap_or_default().to_string();
            let verb = e["verb"].as_str().unwrap_or_default().to_string();
            assert!(
                verb == "get"
                    && gatehouse_controller::rbac::NON_RESOURCE_URLS
                        .iter()
                        .any(|(u, _)| *u == uri),
                "undeclared request {verb} {uri}"
            );
            made.insert(("(non-resource)".into(), uri, verb));
            continue;
        }
        let resource = match reference["subresource"].as_str() {
            Some(sub) => format!(
                "{}/{sub}",
                reference["resource"].as_str().unwrap_or_default()
            ),
            None => reference["resource"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        };
        let group = reference["apiGroup"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let verb = e["verb"].as_str().unwrap_or_default().to_string();
        let declared = gatehouse_controller::rbac::CALLS
            .iter()
            .any(|c| c.group == group && c.resource == resource && c.verb == verb);
        assert!(
            declared,
            "undeclared request {verb} {group}/{resource}: {}",
            e["requestURI"]
        );
        // Secrets are listed and watched only by the watch label, or one by name.
        if resource == "secrets" && (verb == "list" || verb == "watch") {
            let uri = e["requestURI"].as_str().unwrap_or_default();
            assert!(
                uri.contains("labelSelector=gatehouse.dev%2Fwatch%3Dtrue")
                    || uri.contains("fieldSelector=metadata.name%3D"),
                "a Secret list or watch that asks for more than it needs: {uri}"
            );
        }
        made.insert((group, resource, verb));
    }
    let non_resource = gatehouse_controller::rbac::NON_RESOURCE_URLS
        .iter()
        .map(|(u, _)| ("(non-resource)".to_string(), (*u).to_string(), "get".into()));
    let resource = gatehouse_controller::rbac::CALLS.iter().map(|call| {
        (
            call.group.to_string(),
            call.resource.to_string(),
            call.verb.to_string(),
        )
    });
    for key in resource.chain(non_resource) {
        assert!(
            made.contains(&key),
            "{key:?} is granted but was never used: {made:?}"
        );
    }
    // The check can fail: a request outside the chart's RBAC is recorded as refused.
    let outside = plane.kubectl_as(
        &g.kubeconfig,
        &["get", "secret", "gatehouse-kek", "-n", NAMESPACE],
    );
    assert!(!outside.status.success());
    wait_for(
        10,
        "the audit log records the refusal",
        || !plane.denied_by_rbac(OPERATOR_USER).is_empty(),
        logs,
    );
    for p in &g.operators {
        let log = p.log();
        let trouble = api_trouble(&log);
        assert!(trouble.is_empty(), "{}: {trouble:?}", p.log.display());
    }

    // The guide's "Uninstalling", command by command. First what it says when the operator
    // is already gone: a deleted Tenant waits on its finalizer until it is removed by hand.
    for p in &g.operators {
        let pid = p.child.id().to_string();
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
    }
    plane.kubectl_ok(&["create", "namespace", "acme"]);
    plane.kubectl_ok(&["delete", "tenant", "acme", "--wait=false"]);
    std::thread::sleep(Duration::from_secs(1));
    let stuck = json_of(&plane, &["get", "tenant", "acme"]);
    assert!(
        stuck["metadata"]["deletionTimestamp"].is_string(),
        "{stuck}"
    );
    plane.kubectl_ok(&[
        "patch",
        "tenant",
        "acme",
        "--type=json",
        "-p=[{\"op\":\"remove\",\"path\":\"/metadata/finalizers\"}]",
    ]);
    wait_for(
        20,
        "the Tenant goes once its finalizer is removed",
        || !plane.kubectl(&["get", "tenant", "acme"]).status.success(),
        logs,
    );
    plane.kubectl_ok(&["delete", "oauthclients", "--all", "-A"]);
    plane.kubectl_ok(&["delete", "tenants", "--all"]);
    helm_ok(&plane, &["uninstall", "gatehouse", "-n", NAMESPACE]);
    let crds = root().join("charts/gatehouse/crds");
    plane.kubectl_ok(&["delete", "-f", crds.to_str().unwrap()]);
    plane.kubectl_ok(&["-n", NAMESPACE, "delete", "secret", "gatehouse-kek"]);
    plane.kubectl_ok(&["-n", NAMESPACE, "delete", "lease", "gatehouse-operator"]);
    // The keys Secret of the Tenant whose finalizer was removed by hand goes too: it is owned
    // by the Tenant, and the garbage collector follows.
    let left = || {
        plane.kubectl_ok(&[
            "get",
            "all,secrets,serviceaccounts,roles,rolebindings,leases",
            "-n",
            NAMESPACE,
            "-o",
            "name",
        ])
    };
    wait_for(
        30,
        "nothing of the release is left",
        || !left().contains("gatehouse"),
        left,
    );
}

fn install_crds(plane: &ControlPlane) {
    let crds = root().join("crds");
    plane.kubectl_ok(&["apply", "-f", crds.to_str().unwrap()]);
    plane.kubectl_ok(&[
        "wait",
        "--for",
        "condition=established",
        "crd/tenants.gatehouse.dev",
        "crd/oauthclients.gatehouse.dev",
        "--timeout=60s",
    ]);
}

/// `kubectl apply` of `yaml`: its exit status and standard error.
fn apply(plane: &ControlPlane, yaml: &str) -> (bool, String) {
    let out = plane.kubectl_with_input(&["apply", "-f", "-"], yaml);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What the schema and its CEL rules refuse, the API server refuses at admission, naming the
/// field; nothing is stored. `kubectl explain` shows the fields' documentation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_specs_are_refused_at_admission_with_the_field_named() {
    let _one = ONE_CONTROL_PLANE.lock().await;
    let plane = ControlPlane::start();
    install_crds(&plane);
    plane.kubectl_ok(&["create", "namespace", "acme"]);

    let tenant = |spec: &str| {
        format!(
            "apiVersion: gatehouse.dev/v1alpha1\nkind: Tenant\nmetadata: {{name: acme}}\nspec: {spec}\n"
        )
    };
    let client = |name: &str, spec: &str| {
        format!(
            "apiVersion: gatehouse.dev/v1alpha1\nkind: OAuthClient\nmetadata: {{name: {name}, namespace: acme}}\nspec: {spec}\n"
        )
    };
    let refused = [
        (
            tenant("{grantTypes: [client_credentials], accessToken: {ttl: 15 mins}}"),
            vec!["spec.accessToken.ttl", "should match"],
        ),
        (tenant("{grantTypes: []}"), vec!["spec.grantTypes", "at least 1 items"]),
        (
            tenant("{grantTypes: [client_credential]}"),
            vec!["spec.grantTypes[0]", "Unsupported value: \"client_credential\""],
        ),
        (
            client("typo", "{tenantRef: acme, clientID: acme-typo, grantTypes: [client_credentials]}"),
            vec!["unknown field \"spec.clientID\""],
        ),
        (
            client("nogrants", "{tenantRef: acme, grantTypes: []}"),
            vec!["spec.grantTypes", "at least 1 items"],
        ),
        (
            client(
                "public",
                "{tenantRef: acme, public: true, tokenEndpointAuthMethod: client_secret_basic, grantTypes: [authorization_code], redirectUris: ['https://app.example.com/cb']}",
            ),
            vec![
                "spec.tokenEndpointAuthMethod",
                "public clients have no secret: tokenEndpointAuthMethod must be none",
            ],
        ),
        (
            client("badredirect", "{tenantRef: acme, grantTypes: [authorization_code], redirectUris: ['/relative']}"),
            vec!["spec.redirectUris[0]", "should match"],
        ),
        (
            client(
                "workloadsecret",
                "{tenantRef: acme, grantTypes: [client_credentials], workloadIdentity: {serviceAccountName: job}, secretRef: {name: job-credentials}}",
            ),
            vec!["spec.secretRef", "a workloadIdentity client uses no Secret: remove secretRef"],
        ),
        (
            client(
                "workloadbasic",
                "{tenantRef: acme, grantTypes: [client_credentials], workloadIdentity: {serviceAccountName: job}, tokenEndpointAuthMethod: client_secret_basic}",
            ),
            vec!["spec.tokenEndpointAuthMethod", "authenticates with its ServiceAccount token"],
        ),
        (
            client(
                "workloadbadname",
                "{tenantRef: acme, grantTypes: [client_credentials], workloadIdentity: {serviceAccountName: Job_1}}",
            ),
            vec!["spec.workloadIdentity.serviceAccountName", "should match"],
        ),
        (
            client(
                "workloaddefault",
                "{tenantRef: acme, grantTypes: [client_credentials], workloadIdentity: {serviceAccountName: default}}",
            ),
            vec![
                "spec.workloadIdentity.serviceAccountName",
                "bind a ServiceAccount of its own",
            ],
        ),
        (
            client(
                "symmetric",
                "{tenantRef: acme, grantTypes: [client_credentials], tokenEndpointAuthMethod: private_key_jwt, jwks: {keys: [{kty: oct, k: c2VjcmV0}]}}",
            ),
            vec!["spec.jwks.keys", "no private or symmetric member"],
        ),
        (
            client(
                "privatekey",
                "{tenantRef: acme, grantTypes: [client_credentials], tokenEndpointAuthMethod: private_key_jwt, jwks: {keys: [{kty: EC, crv: P-256, x: eA, y: eQ, d: ZA}]}}",
            ),
            vec!["spec.jwks.keys", "no private or symmetric member"],
        ),
        (
            client(
                "oddkey",
                "{tenantRef: acme, grantTypes: [client_credentials], tokenEndpointAuthMethod: private_key_jwt, jwks: {keys: [{kty: XYZ}]}}",
            ),
            vec!["spec.jwks.keys", "EC, RSA or OKP public key"],
        ),
        (
            tenant("{grantTypes: [client_credentials], trustedIssuers: [{name: ci, issuer: 'http://ci.example.com'}]}"),
            vec!["spec.trustedIssuers[0].issuer", "should match"],
        ),
        (
            tenant("{grantTypes: [client_credentials], trustedIssuers: [{name: ci, issuer: 'https://ci.example.com', jwksUri: 'https://ci.example.com/k#x'}]}"),
            vec!["spec.trustedIssuers[0].jwksUri", "should match"],
        ),
        (
            // A no-break space: Gatehouse's own rules refuse every Unicode space and control.
            tenant("{grantTypes: [client_credentials], trustedIssuers: [{name: ci, issuer: \"https://ci.example.com/a\\u00a0b\"}]}"),
            vec!["spec.trustedIssuers[0].issuer", "should match"],
        ),
        (
            tenant(
                "{grantTypes: [client_credentials], trustedIssuers: [{name: ci, issuer: 'https://ci.example.com', subjects: [\
                 {subject: \"job\\u0085\", client: {namespace: acme, clientId: a}}]}]}",
            ),
            vec!["spec.trustedIssuers[0].subjects[0].subject", "should match"],
        ),
        (
            tenant("{grantTypes: [client_credentials], trustedIssuers: [{name: ci, issuer: 'https://ci.example.com', gracePeriod: 0s}]}"),
            vec!["spec.trustedIssuers[0].gracePeriod", "must be more than zero"],
        ),
        (
            tenant(
                "{grantTypes: [client_credentials], trustedIssuers: [{name: ci, issuer: 'https://ci.example.com', subjects: [\
                 {subject: job, client: {namespace: acme, clientId: a}}, {subject: job, client: {namespace: acme, clientId: b}}]}]}",
            ),
            vec!["spec.trustedIssuers[0].subjects[1]", "Duplicate value"],
        ),
        (
            "apiVersion: gatehouse.dev/v1alpha1\nkind: Tenant\nmetadata: {name: acme.corp}\nspec: {grantTypes: [client_credentials]}\n"
                .to_string(),
            vec!["a Tenant's name is its issuer path segment"],
        ),
    ];
    for (yaml, wanted) in &refused {
        let (ok, stderr) = apply(&plane, yaml);
        assert!(!ok, "accepted:\n{yaml}");
        for w in wanted {
            assert!(
                stderr.contains(w),
                "{w:?} not in the refusal of\n{yaml}\n{stderr}"
            );
        }
    }
    let stored = plane.kubectl_ok(&["get", "tenants,oauthclients", "-A", "-o", "name"]);
    assert!(
        stored.trim().is_empty(),
        "refused objects were stored: {stored}"
    );

    // Immutable once set: clientId and tenantRef (CEL transition rules).
    let (ok, stderr) = apply(
        &plane,
        &client(
            "billing",
            "{tenantRef: acme, clientId: acme-billing, grantTypes: [client_credentials]}",
        ),
    );
    assert!(ok, "{stderr}");
    for (spec, message) in [
        (
            "{tenantRef: acme, clientId: acme-other, grantTypes: [client_credentials]}",
            "spec.clientId: Invalid value: clientId cannot change once set",
        ),
        (
            "{tenantRef: globex, clientId: acme-billing, grantTypes: [client_credentials]}",
            "spec.tenantRef: Invalid value: tenantRef cannot change",
        ),
    ] {
        let (ok, stderr) = apply(&plane, &client("billing", spec));
        assert!(!ok, "changed: {spec}");
        assert!(stderr.contains(message), "{message:?} not in {stderr}");
    }
    let kept = json_of(&plane, &["get", "oauthclient", "billing", "-n", "acme"]);
    assert_eq!(kept["spec"]["clientId"], "acme-billing");
    // Public keys pass admission, encryption keys copied from elsewhere too.
    let (ok, stderr) = apply(
        &plane,
        &client(
            "signer",
            "{tenantRef: acme, grantTypes: [client_credentials], tokenEndpointAuthMethod: private_key_jwt, jwks: {keys: [\
             {kty: EC, crv: P-256, alg: ES256, kid: a, x: WbbxTWsp0Qdp7EdMkPw2ci6yl7LqKxhuS7jsxh6EJ8k, y: mzZoZhKZqW_FbNGQaqqgh-Iau8JyXc0vD7U6m1BSDIo},\
             {kty: RSA, use: enc, n: AQAB, e: AQAB}]}}",
        ),
    );
    assert!(ok, "{stderr}");
    assert_eq!(kept["spec"]["tenantRef"], "acme");

    // Defaults are applied by the API server.
    let (ok, stderr) = apply(&plane, &tenant("{grantTypes: [client_credentials]}"));
    assert!(ok, "{stderr}");
    let stored = json_of(&plane, &["get", "tenant", "acme"]);
    assert_eq!(stored["spec"]["accessToken"]["ttl"], "15m", "{stored}");

    let explained = plane.kubectl_ok(&["explain", "oauthclients.spec.grantTypes"]);
    assert!(
        explained.contains("Grant types this client may use"),
        "{explained}"
    );
    let explained = plane.kubectl_ok(&["explain", "tenants.spec.accessToken.ttl"]);
    assert!(explained.contains("Lifetime"), "{explained}");
}

/// The manifests behind the README's "What kubectl shows": one healthy client, one that keeps
/// part of its grants, and two refused.
const README_SCENARIO: &str = "\
apiVersion: gatehouse.dev/v1alpha1
kind: Tenant
metadata: {name: acme}
spec:
  grantTypes: [client_credentials, refresh_token]
  clientNamespaces: [acme]
  scopes: [{name: billing.read, description: Read invoices}]
---
apiVersion: gatehouse.dev/v1alpha1
kind: OAuthClient
metadata: {name: billing, namespace: acme}
spec: {tenantRef: acme, clientId: acme-billing, grantTypes: [client_credentials], scopes: [billing.read]}
---
apiVersion: gatehouse.dev/v1alpha1
kind: OAuthClient
metadata: {name: payroll, namespace: acme}
spec: {tenantRef: acme, grantTypes: [client_credentials, password]}
---
apiVersion: gatehouse.dev/v1alpha1
kind: OAuthClient
metadata: {name: stray, namespace: acme}
spec: {tenantRef: globex, grantTypes: [client_credentials]}
---
apiVersion: gatehouse.dev/v1alpha1
kind: OAuthClient
metadata: {name: ledger, namespace: finance}
spec: {tenantRef: acme, grantTypes: [client_credentials]}
";

const README_CAPTURE_START: &str = "<!-- kubectl output captured by tests/kubernetes.rs -->";

/// What varies from run to run: ages, timestamps, UIDs and resource versions become
/// placeholders, and runs of spaces one space (column widths follow the ages).
fn without_ages(text: &str) -> String {
    let is_age = |w: &str| {
        let mut rest = w;
        let mut any = false;
        while !rest.is_empty() {
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            if digits == 0 {
                return false;
            }
            rest = &rest[digits..];
            let Some(unit) = rest.chars().next().filter(|c| "smhdy".contains(*c)) else {
                return false;
            };
            rest = &rest[unit.len_utf8()..];
            any = true;
        }
        any
    };
    let is_timestamp =
        |w: &str| w.len() == 20 && w.as_bytes()[4] == b'-' && w.ends_with('Z') && w.contains('T');
    text.lines()
        .map(|line| {
            let key = line.trim_start();
            if key.starts_with("UID:") || key.starts_with("Resource Version:") {
                return key.split(':').next().unwrap_or_default().to_string() + ": ~";
            }
            line.split_whitespace()
                .map(|w| if is_age(w) || is_timestamp(w) { "~" } else { w })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The README's kubectl section is this test's capture of a real run; it fails when the README
/// drifts from it (ages, timestamps and ids aside). `GATEHOUSE_UPDATE_README=1` rewrites it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_shows_what_the_readme_says() {
    let _one = ONE_CONTROL_PLANE.lock().await;
    let plane = ControlPlane::start();
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    install(&plane, "https://auth.example.com", &redis.url(), &[]);
    let g = start_gatehouse(
        &plane,
        dir.path(),
        &redis,
        gatehouse_testkit::free_port(),
        "https://auth.example.com",
        1,
        &[],
    );
    let logs = || format!("{}\n{}", g.logs(), plane.logs());
    plane.kubectl_ok(&["create", "namespace", "acme"]);
    plane.kubectl_ok(&["create", "namespace", "finance"]);
    let (ok, stderr) = apply(&plane, README_SCENARIO);
    assert!(ok, "{stderr}");
    let settled = || {
        let reasons: Vec<(String, String)> = [
            ("acme", "billing"),
            ("acme", "payroll"),
            ("acme", "stray"),
            ("finance", "ledger"),
        ]
        .iter()
        .filter_map(|(ns, name)| {
            condition(
                &json_of(&plane, &["get", "oauthclient", name, "-n", ns]),
                "Ready",
            )
        })
        .collect();
        let tenant = json_of(&plane, &["get", "tenant", "acme"]);
        reasons
            == [
                ("True".to_string(), "Reconciled".to_string()),
                ("True".into(), "Reconciled".into()),
                ("False".into(), "TenantNotFound".into()),
                ("False".into(), "NamespaceNotAllowed".into()),
            ]
            && tenant["status"]["clients"] == 2
    };
    wait_for(60, "the README's clients settle", settled, logs);
    // Events are written after statuses: capture until two captures a second apart agree.
    let capture_once = || {
        let mut capture = String::new();
        for command in [
            "kubectl get tenants",
            "kubectl get oauthclients -A",
            "kubectl describe oauthclient -n acme billing",
            "kubectl describe oauthclient -n finance ledger",
        ] {
            let args: Vec<&str> = command.split(' ').skip(1).collect();
            let out = plane.kubectl_ok(&args);
            capture.push_str("$ ");
            capture.push_str(command);
            capture.push('\n');
            capture.push_str(out.trim_end());
            capture.push('\n');
        }
        capture
    };
    let mut capture = capture_once();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let again = capture_once();
        if without_ages(&again) == without_ages(&capture) || Instant::now() > deadline {
            capture = again;
            break;
        }
        capture = again;
    }
    let capture = capture.trim_end().to_string();

    let readme_path = root().join("README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();
    let start = readme
        .find(README_CAPTURE_START)
        .expect("the README marks its captured kubectl output");
    let block_start = start
        + readme[start..]
            .find("```console\n")
            .expect("a console block")
        + "```console\n".len();
    let block_end = block_start
        + readme[block_start..]
            .find("\n```")
            .expect("the block's end");
    let written = &readme[block_start..block_end];
    if std::env::var_os("GATEHOUSE_UPDATE_README").is_some() {
        let updated = format!(
            "{}{capture}{}",
            &readme[..block_start],
            &readme[block_end..]
        );
        std::fs::write(&readme_path, updated).unwrap();
        return;
    }
    assert_eq!(
        without_ages(written),
        without_ages(&capture),
        "README.md's kubectl output differs from a real run; the run printed:\n{capture}\n\
         (GATEHOUSE_UPDATE_README=1 cargo test --test kubernetes kubectl_shows rewrites it)"
    );
}
