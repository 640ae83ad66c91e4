//! A primary, a replica and Sentinels watching them: real `redis-server` processes (Sentinel
//! is `redis-server --sentinel`), on free ports, quick to fail over.

use crate::{RedisServer, free_port, redis_command, redis_server_binary};
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The name the Sentinels monitor the primary under.
pub const PRIMARY_NAME: &str = "gatehouse-primary";

/// A primary with one replica, watched by Sentinels that agree on a failover by majority.
pub struct SentinelSet {
    /// The Redis servers (the first was primary at the start); a killed one stays here.
    pub servers: Vec<RedisServer>,
    sentinels: Vec<Sentinel>,
    sentinel_password: Option<String>,
    password: Option<String>,
}

struct Sentinel {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SentinelSet {
    /// Starts the primary, its replica (in sync before this returns) and `sentinels`
    /// Sentinels with a quorum of their majority, each knowing the replica and the others.
    /// A primary unreachable for 400 ms is failed over.
    pub fn start(sentinels: usize) -> Self {
        Self::start_with_passwords(sentinels, None, None)
    }

    /// [`SentinelSet::start`], the Redis servers requiring `password` (of `default`) and the
    /// Sentinels requiring `sentinel_password`.
    pub fn start_with_passwords(
        sentinels: usize,
        password: Option<&str>,
        sentinel_password: Option<&str>,
    ) -> Self {
        let auth: Vec<&str> = match password {
            Some(p) => vec!["--requirepass", p, "--masterauth", p],
            None => Vec::new(),
        };
        let primary = RedisServer::start_with(&auth);
        let primary_port = primary.port.to_string();
        let replica = RedisServer::start_with(
            &[&auth[..], &["--replicaof", "127.0.0.1", &primary_port]].concat(),
        );
        wait_for(Duration::from_secs(20), "the replica to sync", || {
            authed_command(replica.port, password, &["INFO", "replication"])
                .is_ok_and(|info| info.contains("master_link_status:up"))
        });
        let quorum = sentinels / 2 + 1;
        let set = SentinelSet {
            sentinel_password: sentinel_password.map(str::to_string),
            password: password.map(str::to_string),
            sentinels: (0..sentinels)
                .map(|_| Sentinel::start(primary.port, quorum, password, sentinel_password))
                .collect(),
            servers: vec![primary, replica],
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

    /// `redis+sentinel://` naming every Sentinel, the primary's name and database 0.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis+sentinel://{}/{PRIMARY_NAME}/0", hosts.join(","))
    }

    /// The port of the server the first answering Sentinel names primary now.
    pub fn primary_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|s| {
            let info = self.ask_sentinel(s.port, &["INFO", "sentinel"]).ok()?;
            let address = info.split("address=").nth(1)?.split(',').next()?;
            address.rsplit_once(':')?.1.parse().ok()
        })
    }

    fn ask_sentinel(&self, port: u16, args: &[&str]) -> std::io::Result<String> {
        authed_command(port, self.sentinel_password.as_deref(), args)
    }

    /// SIGKILLs the server that is primary now; returns its port.
    pub fn kill_primary(&mut self) -> u16 {
        let port = self.primary_port().expect("the Sentinels name a primary");
        if let Some(server) = self.servers.iter_mut().find(|s| s.port == port) {
            server.kill();
        }
        port
    }

    /// Waits until the Sentinels name a primary other than `old` and it answers as one.
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

impl Sentinel {
    fn start(
        primary_port: u16,
        quorum: usize,
        password: Option<&str>,
        sentinel_password: Option<&str>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("a directory for the Sentinel's configuration");
        let port = free_port();
        let config = dir.path().join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\nloglevel warning\n\
                 sentinel monitor {PRIMARY_NAME} 127.0.0.1 {primary_port} {quorum}\n\
                 sentinel down-after-milliseconds {PRIMARY_NAME} 400\n\
                 sentinel failover-timeout {PRIMARY_NAME} 4000\n\
                 sentinel parallel-syncs {PRIMARY_NAME} 1\n{}{}",
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
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if redis_command(port, &["PING"])
                .is_ok_and(|r| r == "+PONG" || r.starts_with("-NOAUTH"))
            {
                return Sentinel {
                    port,
                    child,
                    _dir: dir,
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("redis-server --sentinel exited with {status}: {err}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-server --sentinel did not answer on port {port}");
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
