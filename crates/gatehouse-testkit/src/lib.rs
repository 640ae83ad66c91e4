//! Test harness: real `redis-server` processes (single, a 3-master cluster, and a primary with
//! a replica behind Sentinels: [`sentinel`]) on free ports,
//! a real Kubernetes control plane built from source ([`kube`]), an in-memory Kubernetes API
//! server ([`apiserver`]) for the operator's scale runs and the tests that pin its exact calls,
//! a proxy that cuts Redis connections at a chosen command ([`proxy`]), and an HTTPS server
//! with a throw-away CA that serves canned documents ([`https`]).
//!
//! The Redis servers run with persistence off in temporary directories and are killed when
//! their handle drops.

pub mod apiserver;
pub mod fuzz;
pub mod https;
pub mod kube;
pub mod proxy;
pub mod selectors;
pub mod sentinel;

pub use proxy::CuttingProxy;
pub use sentinel::SentinelSet;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral port on 127.0.0.1")
}

/// Where `redis-server` is installed, if it is: the tools that start one (the benchmark) say
/// so before they begin instead of failing half-way.
pub fn find_redis_server() -> Option<PathBuf> {
    for candidate in ["/usr/bin/redis-server", "/usr/local/bin/redis-server"] {
        if std::path::Path::new(candidate).exists() {
            return Some(candidate.into());
        }
    }
    let out = Command::new("sh")
        .arg("-c")
        .arg("command -v redis-server")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().into())
}

fn redis_server_binary() -> PathBuf {
    find_redis_server().unwrap_or_else(|| panic!("{REDIS_SERVER_MISSING}"))
}

/// What to do when `redis-server` is missing.
pub const REDIS_SERVER_MISSING: &str = concat!(
    "redis-server is not installed: install it (Debian: apt-get install redis-server) ",
    "or run the README's test command (.ci/run), which installs it"
);

/// Sends one command in RESP and returns the raw reply (enough for the harness's own needs).
pub fn redis_command(port: u16, args: &[&str]) -> std::io::Result<String> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    command_on(stream, args)
}

/// [`redis_command`] on a connection that first authenticates with `password`.
pub fn redis_command_as(port: u16, password: &str, args: &[&str]) -> std::io::Result<String> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let auth = command_on(stream.try_clone()?, &["AUTH", password])?;
    if auth != "+OK" {
        return Err(std::io::Error::other(format!("AUTH: {auth}")));
    }
    command_on(stream, args)
}

fn command_on(mut stream: TcpStream, args: &[&str]) -> std::io::Result<String> {
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push('$');
        req.push_str(&a.len().to_string());
        req.push_str("\r\n");
        req.push_str(a);
        req.push_str("\r\n");
    }
    stream.write_all(req.as_bytes())?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    if let Some(len) = line.strip_prefix('$') {
        // `$-1` is a null reply.
        let Ok(len) = len.trim().parse::<usize>() else {
            return Ok(String::new());
        };
        let mut buf = vec![0u8; len + 2];
        reader.read_exact(&mut buf)?;
        buf.truncate(len);
        return Ok(String::from_utf8_lossy(&buf).into_owned());
    }
    Ok(line.trim_end().to_string())
}

/// Waits up to 10 s until a `redis-server` (a Sentinel too) answers on `port`, even if only to
/// say who may ask (a server with a password); otherwise says why not: it exited (with what it
/// wrote on standard error), or it stayed silent.
fn wait_until_answering(child: &mut Child, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if redis_command(port, &["PING"]).is_ok_and(|r| r == "+PONG" || r.starts_with("-NOAUTH")) {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            return Err(format!("exited with {status}: {err}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("did not answer on port {port}"))
}

/// One `redis-server` process.
pub struct RedisServer {
    pub port: u16,
    child: Child,
    _dir: Option<tempfile::TempDir>,
    /// A TLS listener besides the plain one (see [`RedisServer::start_tls`]), and the
    /// directory of its certificates.
    tls: Option<(u16, tempfile::TempDir)>,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// The server's process id (to pin it to a core, or read its statistics).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A server whose `default` user is off: only `username` with `password` (an ACL user)
    /// gets in.
    pub fn start_with_acl_user(username: &str, password: &str) -> Self {
        let secret = format!(">{password}");
        Self::start_with(&[
            "--user", "default", "off", "--user", username, "on", &secret, "~*", "&*", "+@all",
        ])
    }

    /// A server that also listens with TLS, its certificate signed by a CA of its own
    /// ([`RedisServer::ca_file`]), on [`RedisServer::tls_url`].
    pub fn start_tls() -> Self {
        let certs = tempfile::tempdir().expect("a directory for the certificates");
        crate::https::write_certificates(certs.path());
        let tls_port = free_port();
        let path = |name: &str| certs.path().join(name).to_string_lossy().into_owned();
        let (tls_port_s, cert, key, ca) = (
            tls_port.to_string(),
            path("server.crt"),
            path("server.key"),
            path("ca.crt"),
        );
        let mut server = Self::start_with(&[
            "--tls-port",
            &tls_port_s,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            "no",
        ]);
        server.tls = Some((tls_port, certs));
        server
    }

    /// The `rediss://` URL of a [`RedisServer::start_tls`] server.
    pub fn tls_url(&self) -> String {
        let port = self.tls.as_ref().map_or(0, |(p, _)| *p);
        format!("rediss://127.0.0.1:{port}/0")
    }

    /// The CA that signed a [`RedisServer::start_tls`] server's certificate (PEM).
    pub fn ca_file(&self) -> std::path::PathBuf {
        self.tls
            .as_ref()
            .map(|(_, dir)| dir.path().join("ca.crt"))
            .unwrap_or_default()
    }

    /// Starts a server on a given port (to simulate a Redis that comes back empty).
    pub fn start_on(port: u16) -> Self {
        Self::spawn(&[], Some(port))
    }

    pub fn start_with(extra: &[&str]) -> Self {
        Self::spawn(extra, None)
    }

    /// A server that keeps its data in `dir` with every write on disk before it is answered
    /// (`appendonly yes`, `appendfsync always`), on `port` or a free one: kill it with
    /// [`RedisServer::kill`] and start it again on the same directory and port, and it comes
    /// back with everything it acknowledged.
    pub fn start_persistent(dir: &std::path::Path, port: Option<u16>) -> Self {
        let dir_s = dir.to_string_lossy().into_owned();
        Self::spawn_in(
            &[
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                &dir_s,
            ],
            port,
            None,
        )
    }

    /// SIGKILL: no shutdown, no last save.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn spawn(extra: &[&str], fixed_port: Option<u16>) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory for redis-server");
        Self::spawn_in(extra, fixed_port, Some(dir))
    }

    fn spawn_in(extra: &[&str], fixed_port: Option<u16>, dir: Option<tempfile::TempDir>) -> Self {
        let cwd = dir
            .as_ref()
            .map_or_else(std::env::temp_dir, |d| d.path().to_path_buf());
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = fixed_port.unwrap_or_else(free_port);
            let port_s = port.to_string();
            let mut args = vec![
                "--port",
                &port_s,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ];
            args.extend_from_slice(extra);
            let mut child = Command::new(redis_server_binary())
                .args(&args)
                .current_dir(&cwd)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("starting redis-server");
            match wait_until_answering(&mut child, port) {
                Ok(()) => {
                    return RedisServer {
                        port,
                        child,
                        _dir: dir,
                        tls: None,
                    };
                }
                Err(why) => last_err = why,
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("could not start redis-server: {last_err}");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Redis Cluster of `masters` nodes with the 16384 slots split between them.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start(masters: usize) -> Self {
        assert!(masters >= 1);
        let nodes: Vec<RedisServer> = (0..masters)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect();
        let per = 16384 / masters;
        for (i, node) in nodes.iter().enumerate() {
            let start = i * per;
            let end = if i + 1 == masters {
                16383
            } else {
                start + per - 1
            };
            let reply = redis_command(
                node.port,
                &[
                    "CLUSTER",
                    "ADDSLOTSRANGE",
                    &start.to_string(),
                    &end.to_string(),
                ],
            )
            .expect("CLUSTER ADDSLOTSRANGE");
            assert_eq!(reply, "+OK", "CLUSTER ADDSLOTSRANGE on node {i}");
        }
        for node in &nodes[1..] {
            let reply = redis_command(
                node.port,
                &["CLUSTER", "MEET", "127.0.0.1", &nodes[0].port.to_string()],
            )
            .expect("CLUSTER MEET");
            assert_eq!(reply, "+OK");
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = nodes.iter().all(|n| {
                redis_command(n.port, &["CLUSTER", "INFO"]).is_ok_and(|info| {
                    info.contains("cluster_state:ok")
                        && info.contains(&format!("cluster_known_nodes:{masters}"))
                })
            });
            if ok {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "redis cluster did not converge within 30s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        RedisCluster { nodes }
    }

    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// How many keys each master holds (`DBSIZE`).
    pub fn keys_per_node(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .map(|n| {
                redis_command(n.port, &["DBSIZE"])
                    .ok()
                    .and_then(|r| r.trim_start_matches(':').parse().ok())
                    .unwrap_or(0)
            })
            .collect()
    }
}
