//! A primary, a replica and Sentinels watching them: real `redis-server` processes (Sentinel
//! is `redis-server --sentinel`), on free ports, quick to fail over.

use crate::{RedisServer, free_port, redis_command, redis_server_binary, wait_until_answering};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The name the Sentinels monitor the primary under.
pub const PRIMARY_NAME: &str = "gatehouse-primary";

/// A primary with one replica, watched by Sentinels that agree on a failover by majority.
pub struct SentinelSet {
    /// The Redis servers (the first was primary at the start), each with the port the
    /// Sentinels know it by; a killed one stays here.
    servers: Vec<(RedisServer, u16)>,
    sentinels: Vec<Sentinel>,
    sentinel_password: Option<String>,
    password: Option<String>,
    /// With TLS: the certificates every server and Sentinel uses.
    tls: Option<tempfile::TempDir>,
}

/// What the servers and Sentinels require.
#[derive(Clone, Copy, Default)]
struct Setup<'a> {
    password: Option<&'a str>,
    sentinel_password: Option<&'a str>,
    tls: Option<&'a std::path::Path>,
}

impl Setup<'_> {
    /// `redis-server` arguments for TLS on `port` besides the plain one (which the harness
    /// uses), replication over TLS too.
    fn tls_args(&self, port: u16) -> Vec<String> {
        let Some(dir) = self.tls else {
            return Vec::new();
        };
        let file = |name: &str| dir.join(name).to_string_lossy().into_owned();
        vec![
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            file("server.crt"),
            "--tls-key-file".into(),
            file("server.key"),
            "--tls-ca-cert-file".into(),
            file("ca.crt"),
            "--tls-auth-clients".into(),
            "no".into(),
            "--tls-replication".into(),
            "yes".into(),
        ]
    }
}

impl SentinelSet {
    /// Starts the primary, its replica (in sync before this returns) and `sentinels`
    /// Sentinels with a quorum of their majority, each knowing the replica and the others.
    /// A primary unreachable for 400 ms is failed over.
    pub fn start(sentinels: usize) -> Self {
        Self::launch(sentinels, Setup::default())
    }

    /// [`SentinelSet::start`], the Redis servers requiring `password` (of `default`) and the
    /// Sentinels requiring `sentinel_password`.
    pub fn start_with_passwords(
        sentinels: usize,
        password: Option<&str>,
        sentinel_password: Option<&str>,
    ) -> Self {
        Self::launch(
            sentinels,
            Setup {
                password,
                sentinel_password,
                tls: None,
            },
        )
    }

    /// [`SentinelSet::start`] with TLS everywhere: the Sentinels know the servers by their
    /// TLS ports, replicate and talk over TLS, and [`SentinelSet::url`] is
    /// `rediss+sentinel://` to the Sentinels' TLS ports. The certificates are signed by a CA
    /// of the harness's own ([`SentinelSet::ca_file`]).
    pub fn start_tls(sentinels: usize) -> Self {
        let certs = tempfile::tempdir().expect("a directory for the certificates");
        crate::https::write_certificates(certs.path());
        let mut set = Self::launch(
            sentinels,
            Setup {
                tls: Some(certs.path()),
                ..Setup::default()
            },
        );
        set.tls = Some(certs);
        set
    }

    fn launch(sentinels: usize, setup: Setup<'_>) -> Self {
        let password = setup.password;
        let auth: Vec<String> = match password {
            Some(p) => vec![
                "--requirepass".into(),
                p.into(),
                "--masterauth".into(),
                p.into(),
            ],
            None => Vec::new(),
        };
        let server = |extra: &[String]| {
            let tls_port = free_port();
            let args: Vec<String> = [&auth[..], &setup.tls_args(tls_port)[..], extra].concat();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let server = RedisServer::start_with(&args);
            let known_as = if setup.tls.is_some() {
                tls_port
            } else {
                server.port
            };
            (server, known_as)
        };
        let primary = server(&[]);
        let replica = server(&[
            "--replicaof".into(),
            "127.0.0.1".into(),
            primary.1.to_string(),
        ]);
        wait_for(Duration::from_secs(20), "the replica to sync", || {
            authed_command(replica.0.port, password, &["INFO", "replication"])
                .is_ok_and(|info| info.contains("master_link_status:up"))
        });
        let quorum = sentinels / 2 + 1;
        let set = SentinelSet {
            sentinel_password: setup.sentinel_password.map(str::to_string),
            password: password.map(str::to_string),
            sentinels: (0..sentinels)
                .map(|_| Sentinel::start(primary.1, quorum, &setup))
                .collect(),
            servers: vec![primary, replica],
            tls: None,
        };
        let others = format!("sentinels={sentinels}");
        wait_for(
            Duration::from_secs(30),
            "the Sentinels to know the replica and each other",
            || {
                set.sentinels.iter().all(|s| {
                    set.ask_sentinel(s.port, &["INFO", "sentinel"])
                        .is_ok_and(|info| info.contains("slaves=1") && info.contains(&others))
                })
            },
        );
        set
    }

    /// `redis+sentinel://` (`rediss+sentinel://` with TLS) naming every Sentinel, the
    /// primary's name and database 0.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.tls_port.unwrap_or(s.port)))
            .collect();
        let scheme = if self.tls.is_some() {
            "rediss+sentinel"
        } else {
            "redis+sentinel"
        };
        format!("{scheme}://{}/{PRIMARY_NAME}/0", hosts.join(","))
    }

    /// The CA that signed every certificate of a [`SentinelSet::start_tls`] set (PEM).
    pub fn ca_file(&self) -> std::path::PathBuf {
        self.tls
            .as_ref()
            .map(|dir| dir.path().join("ca.crt"))
            .unwrap_or_default()
    }

    /// The plain port of the server the first answering Sentinel names primary now.
    pub fn primary_port(&self) -> Option<u16> {
        let known_as = self.sentinels.iter().find_map(|s| {
            let info = self.ask_sentinel(s.port, &["INFO", "sentinel"]).ok()?;
            let address = info.split("address=").nth(1)?.split(',').next()?;
            address.rsplit_once(':')?.1.parse::<u16>().ok()
        })?;
        self.servers
            .iter()
            .find(|(_, k)| *k == known_as)
            .map(|(server, _)| server.port)
    }

    /// The plain ports of the Redis servers (the first was primary at the start).
    pub fn ports(&self) -> Vec<u16> {
        self.servers.iter().map(|(s, _)| s.port).collect()
    }

    fn ask_sentinel(&self, port: u16, args: &[&str]) -> std::io::Result<String> {
        authed_command(port, self.sentinel_password.as_deref(), args)
    }

    /// SIGKILLs the server that is primary now; returns its (plain) port.
    pub fn kill_primary(&mut self) -> u16 {
        let port = self.primary_port().expect("the Sentinels name a primary");
        if let Some((server, _)) = self.servers.iter_mut().find(|(s, _)| s.port == port) {
            server.kill();
        }
        port
    }

    /// Waits until the Sentinels name a primary other than `old` and it answers as one;
    /// returns its (plain) port.
    pub fn wait_for_failover(&self, old: u16, within: Duration) -> u16 {
        let mut new = 0;
        wait_for(
            within,
            "the Sentinels to promote the replica",
            || match self.primary_port() {
                Some(port) if port != old => {
                    new = port;
                    authed_command(port, self.password.as_deref(), &["INFO", "replication"])
                        .is_ok_and(|info| info.contains("role:master"))
                }
                _ => false,
            },
        );
        new
    }
}

struct Sentinel {
    /// The plain port (the harness's).
    port: u16,
    /// With TLS, the port clients use.
    tls_port: Option<u16>,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sentinel {
    fn start(primary_port: u16, quorum: usize, setup: &Setup<'_>) -> Self {
        let dir = tempfile::tempdir().expect("a directory for the Sentinel's configuration");
        let port = free_port();
        let tls_port = setup.tls.map(|_| free_port());
        // The same settings as the servers', as configuration-file lines.
        let mut tls = String::new();
        if let Some(p) = tls_port {
            for kv in setup.tls_args(p).chunks(2) {
                tls.push_str(kv[0].trim_start_matches("--"));
                tls.push(' ');
                tls.push_str(&kv[1]);
                tls.push('\n');
            }
        }
        let (password, sentinel_password) = (setup.password, setup.sentinel_password);
        let config = dir.path().join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\nloglevel warning\n\
                 sentinel monitor {PRIMARY_NAME} 127.0.0.1 {primary_port} {quorum}\n\
                 sentinel down-after-milliseconds {PRIMARY_NAME} 400\n\
                 sentinel failover-timeout {PRIMARY_NAME} 4000\n\
                 sentinel parallel-syncs {PRIMARY_NAME} 1\n{tls}{}{}",
                password.map_or(String::new(), |p| format!(
                    "sentinel auth-pass {PRIMARY_NAME} {p}\n"
                )),
                sentinel_password.map_or(String::new(), |p| format!("requirepass {p}\n")),
            ),
        )
        .expect("writing sentinel.conf");
        let mut child = Command::new(redis_server_binary())
            .arg(&config)
            .arg("--sentinel")
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting redis-server --sentinel");
        if let Err(why) = wait_until_answering(&mut child, port) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("redis-server --sentinel {why}");
        }
        Sentinel {
            port,
            tls_port,
            child,
            _dir: dir,
        }
    }
}

/// A command on a connection that first authenticates with `password`, if any.
fn authed_command(port: u16, password: Option<&str>, args: &[&str]) -> std::io::Result<String> {
    match password {
        None => redis_command(port, args),
        Some(p) => crate::redis_command_as(port, p, args),
    }
}

fn wait_for(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("waited {within:?} for {what}");
}
