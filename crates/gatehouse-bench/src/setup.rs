//! The system under test: a real redis-server, `gatehouse standalone` on a generated manifest
//! set, each pinned to its core when `taskset` is there.

use anyhow::{Context, bail};
use gatehouse_testkit::{RedisServer, free_port};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SECRET: &str = "bench-secret-0123456789abcdefghijklmnopqrstuv";
pub const WEB_REDIRECT: &str = "http://127.0.0.1:9/cb";

/// Which cores things run on, if they can be pinned.
///
/// The server always has a core of its own: its rate on one core is what is measured. Redis
/// is part of the system under test and the load generator is not, so Redis gets a core of
/// its own too where there is a third; on two cores it shares the load generator's, and what
/// the load generator spends there is taken from scenarios that lean on Redis.
#[derive(Clone, Debug)]
pub struct Pinning {
    /// The cores this process may run on, counted before anything is pinned (after, it sees
    /// one).
    pub cores: usize,
    pub server: Option<usize>,
    pub load: Option<usize>,
    pub redis: Option<usize>,
    pub why_not: Option<String>,
}

impl Pinning {
    /// The pinning for the cores this process may run on (see [`Pinning::for_cores`]).
    pub fn decide() -> Pinning {
        let taskset = Command::new("taskset").arg("--version").output().is_ok();
        Pinning::for_cores(&allowed_cores(), taskset)
    }

    /// Server on the first allowed core, the load generator (this process) on the second,
    /// Redis on the third when there is one and on the second when not; nothing pinned
    /// without `taskset` or a second core.
    pub fn for_cores(allowed: &[usize], taskset: bool) -> Pinning {
        let cores = allowed.len();
        let unpinned = |why: String| Pinning {
            cores,
            server: None,
            load: None,
            redis: None,
            why_not: Some(why),
        };
        match (taskset, allowed) {
            (false, _) => unpinned("taskset not found: nothing is pinned".into()),
            (true, &[server, load, ref more @ ..]) => Pinning {
                cores,
                server: Some(server),
                load: Some(load),
                redis: Some(more.first().copied().unwrap_or(load)),
                why_not: None,
            },
            (true, _) => unpinned(format!("{cores} core: nothing is pinned")),
        }
    }

    /// Where things run, in words, for the report and its JSON.
    pub fn describe(&self) -> String {
        match (&self.why_not, self.server, self.load, self.redis) {
            (Some(why), ..) => why.clone(),
            (None, Some(server), Some(load), Some(redis)) if load == redis => format!(
                "gatehouse on core {server}, load generator and redis-server on core {load}"
            ),
            (None, Some(server), Some(load), Some(redis)) => format!(
                "gatehouse on core {server}, load generator on core {load}, redis-server on core {redis}"
            ),
            _ => "nothing is pinned".into(),
        }
    }

    /// Pins a running `redis-server` to its core.
    pub fn pin_redis(&self, pid: u32) -> anyhow::Result<()> {
        pin_process(self.redis, pid)
    }

    /// Pins this process (and the threads it starts afterwards) to the load core.
    pub fn pin_self(&self) -> anyhow::Result<()> {
        pin_process(self.load, std::process::id())
    }

    /// `program`, on `core` when there is one.
    pub fn command(core: Option<usize>, program: &Path) -> Command {
        match core {
            Some(c) => {
                let mut cmd = Command::new("taskset");
                cmd.args(["-c", &c.to_string()]).arg(program);
                cmd
            }
            None => Command::new(program),
        }
    }
}

/// `taskset -cp core pid`, when there is a core; a refusal is an error, not a silent
/// unpinned run.
fn pin_process(core: Option<usize>, pid: u32) -> anyhow::Result<()> {
    if let Some(core) = core {
        let status = Command::new("taskset")
            .args(["-cp", &core.to_string(), &pid.to_string()])
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("taskset -cp {core} {pid} failed");
        }
    }
    Ok(())
}

/// The cores this process may run on (`Cpus_allowed_list`: a run confined to CPUs 4–7 must
/// not pin to 0–2), or the first `available_parallelism` where the kernel does not say.
fn allowed_cores() -> Vec<usize> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .and_then(|list| parse_cpu_list(list.trim()))
        })
        .unwrap_or_else(|| {
            (0..std::thread::available_parallelism().map_or(1, std::num::NonZero::get)).collect()
        })
}

/// A kernel CPU list (`0-3,8,10-11`), as `/proc/self/status` gives the allowed cores.
fn parse_cpu_list(list: &str) -> Option<Vec<usize>> {
    let mut cores = Vec::new();
    for part in list.split(',') {
        match part.split_once('-') {
            Some((low, high)) => cores.extend(low.parse::<usize>().ok()?..=high.parse().ok()?),
            None => cores.push(part.parse().ok()?),
        }
    }
    (!cores.is_empty()).then_some(cores)
}

/// The manifest set: three tenants for the scenarios (ES256 JWT, EdDSA JWT, opaque) with the
/// clients they use, one for the memory part's rotations, plus `extra_tenants` tenants and
/// `extra_clients` clients for scale runs.
pub fn manifests(dir: &Path, extra_tenants: usize, extra_clients: usize) -> anyhow::Result<()> {
    let users_hash = gatehouse_core::secret::hash_secret("bench-password")?;
    let mut y = String::new();
    let tenant = |y: &mut String, name: &str, alg: &str, format: &str, grants: &str| {
        let _ = write!(
            y,
            "apiVersion: gatehouse.dev/v1alpha1\nkind: Tenant\nmetadata: {{name: {name}}}\nspec:\n  grantTypes: [{grants}]\n  clientNamespaces: [bench]\n  accessToken: {{format: {format}, ttl: 1h}}\n  authorizationCode: {{ttl: 10m}}\n  signing: {{algorithm: {alg}}}\n  scopes: [{{name: bench.read}}]\n  users: {{secretRef: {{name: bench-users, namespace: bench}}}}\n---\n"
        );
    };
    let client = |y: &mut String, name: &str, tenant: &str, grants: &str, extra: &str| {
        let _ = write!(
            y,
            "apiVersion: gatehouse.dev/v1alpha1\nkind: OAuthClient\nmetadata: {{name: {name}, namespace: bench}}\nspec:\n  tenantRef: {tenant}\n  clientId: {name}\n  grantTypes: [{grants}]\n  scopes: [openid, offline_access, bench.read]\n  secretRef: {{name: {name}-credentials, generate: false}}\n{extra}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}-credentials, namespace: bench, labels: {{gatehouse.dev/watch: 'true'}}}}\nstringData: {{client_secret: {SECRET}}}\n---\n"
        );
    };
    let all = "client_credentials, refresh_token, password, authorization_code";
    let exchange = format!("{all}, \"urn:ietf:params:oauth:grant-type:token-exchange\"");
    tenant(&mut y, "es256", "ES256", "jwt", &exchange);
    tenant(&mut y, "eddsa", "EdDSA", "jwt", "client_credentials");
    tenant(&mut y, "opaque", "ES256", "opaque", all);
    // Refresh grants rotated only by the memory part, whose keys it does not sample.
    tenant(&mut y, "rotate", "ES256", "jwt", "password, refresh_token");
    client(
        &mut y,
        "app-rotate",
        "rotate",
        "password, refresh_token",
        "",
    );
    client(&mut y, "cc-es256", "es256", "client_credentials", "");
    client(&mut y, "cc-eddsa", "eddsa", "client_credentials", "");
    client(&mut y, "cc-opaque", "opaque", "client_credentials", "");
    client(
        &mut y,
        "tx-es256",
        "es256",
        "client_credentials, \"urn:ietf:params:oauth:grant-type:token-exchange\"",
        "",
    );
    // Refresh and code flows in a signing tenant and in an opaque one (the same work without
    // the signature, for a comparison with opaque client credentials).
    for t in ["es256", "opaque"] {
        client(
            &mut y,
            &format!("app-{t}"),
            t,
            "password, refresh_token",
            "",
        );
        client(
            &mut y,
            &format!("web-{t}"),
            t,
            "authorization_code",
            &format!("  redirectUris: [\"{WEB_REDIRECT}\"]\n"),
        );
    }
    let _ = write!(
        y,
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: bench-users, namespace: bench, labels: {{gatehouse.dev/watch: 'true'}}}}\nstringData:\n  users.yaml: |\n    - username: alice\n      passwordHash: \"{users_hash}\"\n"
    );
    std::fs::write(dir.join("bench.yaml"), y)?;

    // Files of at most 250 objects (the manifest reader bounds documents per file).
    let mut filler = String::new();
    let mut files = 0;
    let mut flush = |text: &mut String, force: bool| -> std::io::Result<()> {
        if !text.is_empty() && (force || text.matches("\n---\n").count() >= 250) {
            std::fs::write(dir.join(format!("filler-{files}.yaml")), &*text)?;
            files += 1;
            text.clear();
        }
        Ok(())
    };
    for t in 0..extra_tenants {
        let name = format!("filler-{t}");
        tenant(&mut filler, &name, "ES256", "jwt", "client_credentials");
        flush(&mut filler, false)?;
    }
    for c in 0..extra_clients {
        let t = match extra_tenants {
            0 => "es256".to_string(),
            n => format!("filler-{}", c % n),
        };
        // Like most clients: no Secret given, so Gatehouse generates one.
        let _ = write!(
            filler,
            "apiVersion: gatehouse.dev/v1alpha1\nkind: OAuthClient\nmetadata: {{name: filler-{c}, namespace: bench}}\nspec:\n  tenantRef: {t}\n  grantTypes: [client_credentials]\n  scopes: [bench.read]\n---\n"
        );
        flush(&mut filler, false)?;
    }
    flush(&mut filler, true)?;
    Ok(())
}

pub struct Server {
    child: Child,
    pub pid: u32,
    pub addr: std::net::SocketAddr,
    pub ops: String,
    /// Time from start to ready.
    pub startup: Duration,
    log: PathBuf,
}

/// A started `gatehouse standalone` and what a `gatehouse server` replica needs to join it.
pub struct Standalone {
    pub server: Server,
    pub kek: PathBuf,
    pub public_url: String,
    /// The manifests, the key-encryption key and the logs (of replicas too); dropped last.
    _dir: tempfile::TempDir,
}

impl Server {
    /// `gatehouse standalone` on a generated manifest set, with the Redis store.
    pub fn start(
        binary: &Path,
        redis: &RedisServer,
        pinning: &Pinning,
        extra_tenants: usize,
        extra_clients: usize,
    ) -> anyhow::Result<Standalone> {
        let dir = tempfile::tempdir()?;
        let manifests_dir = dir.path().join("manifests");
        std::fs::create_dir(&manifests_dir)?;
        manifests(&manifests_dir, extra_tenants, extra_clients)?;
        let kek = dir.path().join("kek");
        std::fs::write(
            &kek,
            gatehouse_core::keys::KeyEncryptionKey::generate()?
                .1
                .as_bytes(),
        )?;
        let port = free_port();
        let public_url = format!("http://127.0.0.1:{port}");
        let mut command = Pinning::command(pinning.server, binary);
        command
            .arg("standalone")
            .arg("--manifests")
            .arg(&manifests_dir)
            .args(["--store", &redis.url()])
            .arg("--key-encryption-key-file")
            .arg(&kek);
        let server = Server::spawn(command, port, dir.path().join("standalone.log"))?;
        Ok(Standalone {
            server,
            kek,
            public_url,
            _dir: dir,
        })
    }

    /// A `gatehouse server` replica serving what `standalone` published, as in a cluster
    /// (where the operator publishes and replicas serve).
    pub fn replica(
        binary: &Path,
        redis: &RedisServer,
        pinning: &Pinning,
        standalone: &Standalone,
    ) -> anyhow::Result<Server> {
        let mut command = Pinning::command(pinning.server, binary);
        command
            .arg("server")
            .args(["--store", &redis.url()])
            .args(["--public-url", &standalone.public_url])
            .arg("--key-encryption-key-file")
            .arg(&standalone.kek);
        let log = standalone.kek.with_file_name("server.log");
        Server::spawn(command, free_port(), log)
    }

    fn spawn(mut command: Command, port: u16, log: PathBuf) -> anyhow::Result<Server> {
        let ops = free_port();
        let started = Instant::now();
        let child = command
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{ops}")])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log)?))
            .spawn()
            .with_context(|| format!("starting {command:?}"))?;
        let pid = child.id();
        let mut server = Server {
            child,
            pid,
            addr: format!("127.0.0.1:{port}").parse()?,
            ops: format!("127.0.0.1:{ops}"),
            startup: Duration::ZERO,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            if let Some(status) = server.child.try_wait()? {
                bail!("gatehouse exited with {status}:\n{}", server.log());
            }
            if http_status(&server.ops, "/readyz") == Some(200) {
                break;
            }
            if Instant::now() > deadline {
                bail!("gatehouse not ready after 10 minutes:\n{}", server.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        server.startup = started.elapsed();
        // With `taskset`, the child is taskset until it execs; the pid stays the same.
        Ok(server)
    }

    /// Stops the process (and waits for it), leaving its log readable.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The status of a plain HTTP GET (no client library: used before anything else runs).
pub fn http_status(addr: &str, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::{Pinning, parse_cpu_list};

    #[test]
    fn redis_gets_a_core_of_its_own_where_there_is_a_third() {
        let cores = |p: &Pinning| (p.server, p.load, p.redis);
        let two = Pinning::for_cores(&[0, 1], true);
        assert_eq!(cores(&two), (Some(0), Some(1), Some(1)));
        assert_eq!(
            two.describe(),
            "gatehouse on core 0, load generator and redis-server on core 1"
        );
        let many = Pinning::for_cores(&[4, 5, 6, 7], true);
        assert_eq!(cores(&many), (Some(4), Some(5), Some(6)));
        assert_eq!((two.cores, many.cores), (2, 4));
        assert_eq!(
            many.describe(),
            "gatehouse on core 4, load generator on core 5, redis-server on core 6"
        );
        for (allowed, taskset, why) in [
            (&[3][..], true, "1 core: nothing is pinned"),
            (
                &[0, 1, 2][..],
                false,
                "taskset not found: nothing is pinned",
            ),
        ] {
            let p = Pinning::for_cores(allowed, taskset);
            assert_eq!((cores(&p), p.describe()), ((None, None, None), why.into()));
        }
    }

    #[test]
    fn allowed_cores_are_read_as_the_kernel_lists_them() {
        assert_eq!(parse_cpu_list("0-1"), Some(vec![0, 1]));
        assert_eq!(parse_cpu_list("2,4-6,9"), Some(vec![2, 4, 5, 6, 9]));
        assert_eq!(parse_cpu_list("0"), Some(vec![0]));
        assert_eq!(parse_cpu_list(""), None);
        assert_eq!(parse_cpu_list("1-x"), None);
    }
}
