//! Redis behind Sentinel (`redis+sentinel://`, `rediss+sentinel://`): the Sentinels name the
//! primary, and the connection follows it through failovers without a restart.
//!
//! A connection to the primary stays in use until it fails in a way that says the primary may
//! have moved: the connection dropped or timed out, or the server answers that it is no longer
//! a writable primary (`READONLY` after it was demoted, `MASTERDOWN`, `LOADING`). The request
//! that met the failure fails (the caller answers 503, as for any Redis outage; nothing of an
//! unanswered script is half-written, see `Store::issue`), and the next request asks the
//! Sentinels again. A Sentinel promotes a replica only after the primary has been down for
//! its `down-after-milliseconds`; meanwhile one lookup runs at a time (bounded by
//! [`LOOKUP_TIMEOUT`], requests arriving during it wait for its outcome), and a failed lookup
//! is not repeated for [`LOOKUP_BACKOFF`]. A lookup runs as a task of its own, so a caller
//! that gives up (a readiness probe's timeout) does not cancel it.

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ErrorKind, Pipeline, RedisError, RedisFuture,
    RedisResult, TlsCertificates, TlsMode, Value,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The default port of a Sentinel.
const SENTINEL_PORT: u16 = 26379;
/// How long one lookup (asking the Sentinels, then connecting to the primary they name) may
/// take before the request fails.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// After a failed lookup, requests fail at once for this long instead of asking again.
const LOOKUP_BACKOFF: Duration = Duration::from_millis(100);

/// What a `redis+sentinel://` URL names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SentinelUrl {
    /// TLS to the Sentinels and to the primary (`rediss+sentinel://`).
    pub tls: bool,
    /// The Sentinels' addresses.
    pub sentinels: Vec<(String, u16)>,
    /// The name the Sentinels monitor the primary under (`sentinel monitor <name> ...`).
    pub primary: String,
    /// The database number on the primary.
    pub db: i64,
}

/// Whether a URL names Redis behind Sentinel.
pub(crate) fn is_sentinel_url(url: &str) -> bool {
    url.starts_with("redis+sentinel://") || url.starts_with("rediss+sentinel://")
}

/// Reads `redis[s]+sentinel://host[:port][,host[:port]...]/primary-name[/db]`. Credentials do
/// not belong in it: the primary's come from `GATEHOUSE_STORE_USERNAME` and
/// `GATEHOUSE_STORE_PASSWORD`, the Sentinels' from `GATEHOUSE_STORE_SENTINEL_PASSWORD`.
pub(crate) fn parse(url: &str) -> Result<SentinelUrl, String> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("redis+sentinel://") {
        (false, rest)
    } else if let Some(rest) = url.strip_prefix("rediss+sentinel://") {
        (true, rest)
    } else {
        return Err("expected redis+sentinel:// or rediss+sentinel://".into());
    };
    if rest.contains('@') {
        return Err("credentials do not go into a Sentinel URL: give the primary's password with GATEHOUSE_STORE_PASSWORD and the Sentinels' with GATEHOUSE_STORE_SENTINEL_PASSWORD".into());
    }
    let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut sentinels = Vec::new();
    for host in hosts.split(',').filter(|h| !h.is_empty()) {
        let (name, port) = match host.rsplit_once(':') {
            Some((name, port)) => {
                let port = port
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("Sentinel {host:?}: the port is not a number"))?;
                (name, port)
            }
            None => (host, SENTINEL_PORT),
        };
        if name.is_empty() {
            return Err(format!("Sentinel {host:?}: no host"));
        }
        sentinels.push((name.to_string(), port));
    }
    if sentinels.is_empty() {
        return Err("no Sentinel given (redis+sentinel://host:26379,.../primary-name)".into());
    }
    let mut parts = path.split('/');
    let primary = parts.next().unwrap_or("");
    if primary.is_empty() {
        return Err(
            "no primary name: the path names what the Sentinels monitor (redis+sentinel://host:26379/mymaster)"
                .into(),
        );
    }
    if primary.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("primary name {primary:?}: no spaces"));
    }
    let db = match parts.next() {
        None | Some("") => 0,
        Some(db) => db
            .parse::<i64>()
            .ok()
            .filter(|d| *d >= 0)
            .ok_or_else(|| format!("database {db:?} is not a number"))?,
    };
    if parts.next().is_some_and(|p| !p.is_empty()) || path.contains('?') {
        return Err("expected /primary-name or /primary-name/db after the Sentinels".into());
    }
    Ok(SentinelUrl {
        tls,
        sentinels,
        primary: primary.to_string(),
        db,
    })
}

/// How to authenticate: to the primary (its replicas share it) and to the Sentinels.
pub(crate) struct SentinelAccess<'a> {
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
    pub sentinel_password: Option<&'a str>,
    pub ca_pem: Option<&'a [u8]>,
}

/// A connection to whichever server the Sentinels name primary now.
#[derive(Clone)]
pub(crate) struct PrimaryConnection {
    inner: Arc<Following>,
}

struct Following {
    /// One lookup at a time; what the last failed one said, and when.
    lookup: tokio::sync::Mutex<Lookup>,
    /// The connection in use and its generation (a failure forgets only the connection it
    /// met, not a newer one another request found meanwhile).
    current: Mutex<Option<(u64, MultiplexedConnection)>>,
    db: i64,
    primary: String,
    config: AsyncConnectionConfig,
}

struct Lookup {
    client: SentinelClient,
    generation: u64,
    failed: Option<(Instant, String)>,
}

impl PrimaryConnection {
    /// Asks the Sentinels for the primary and connects to it.
    pub(crate) async fn connect(
        url: &SentinelUrl,
        access: &SentinelAccess<'_>,
        config: AsyncConnectionConfig,
    ) -> RedisResult<Self> {
        let addresses = url.sentinels.iter().map(|(host, port)| {
            if url.tls {
                ConnectionAddr::TcpTls {
                    host: host.clone(),
                    port: *port,
                    insecure: false,
                    tls_params: None,
                }
            } else {
                ConnectionAddr::Tcp(host.clone(), *port)
            }
        });
        let mut builder =
            SentinelClientBuilder::new(addresses, &url.primary, SentinelServerType::Master)?
                .set_client_to_redis_db(url.db);
        if let Some(username) = access.username.filter(|u| !u.is_empty()) {
            builder = builder.set_client_to_redis_username(username);
        }
        if let Some(password) = access.password.filter(|p| !p.is_empty()) {
            builder = builder.set_client_to_redis_password(password);
        }
        if let Some(password) = access.sentinel_password.filter(|p| !p.is_empty()) {
            builder = builder.set_client_to_sentinel_password(password);
        }
        if url.tls {
            builder = builder
                .set_client_to_redis_tls_mode(TlsMode::Secure)
                .set_client_to_sentinel_tls_mode(TlsMode::Secure);
            if let Some(pem) = access.ca_pem {
                let certificates = || TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.to_vec()),
                };
                builder = builder
                    .set_client_to_redis_certificates(certificates())
                    .set_client_to_sentinel_certificates(certificates());
            }
        }
        let connection = PrimaryConnection {
            inner: Arc::new(Following {
                lookup: tokio::sync::Mutex::new(Lookup {
                    client: builder.build()?,
                    generation: 0,
                    failed: None,
                }),
                current: Mutex::new(None),
                db: url.db,
                primary: url.primary.clone(),
                config,
            }),
        };
        connection.current().await?;
        Ok(connection)
    }

    /// The connection in use, or a new one to the primary the Sentinels name now.
    async fn current(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        if let Some(current) = self.inner.in_use() {
            return Ok(current);
        }
        let following = self.inner.clone();
        tokio::spawn(async move { following.look_up().await })
            .await
            .unwrap_or_else(|e| Err(no_primary(&self.inner.primary, &e.to_string())))
    }

    /// After `error` on the connection of `generation`: if it says the primary may have
    /// moved, that connection is dropped and the next request asks the Sentinels.
    fn met(&self, generation: u64, error: &RedisError) {
        if primary_may_have_moved(error) {
            self.inner.forget(generation, &error.to_string());
        }
    }

    /// After an error reply on the connection of `generation` (the server answered; a
    /// reply is not an `Err` of the connection).
    fn answered(&self, generation: u64, reply: &Value) {
        if let Value::ServerError(e) = reply
            && replica_reply(e.code(), e.details())
        {
            self.inner.forget(generation, &e.to_string());
        }
    }
}

impl Following {
    fn in_use(&self) -> Option<(u64, MultiplexedConnection)> {
        self.lock_current().clone()
    }

    fn lock_current(&self) -> std::sync::MutexGuard<'_, Option<(u64, MultiplexedConnection)>> {
        // A poisoned lock only means a panic elsewhere; the connection in it is still whole.
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn forget(&self, generation: u64, why: &str) {
        let mut current = self.lock_current();
        if current.as_ref().is_some_and(|(g, _)| *g == generation) {
            tracing::warn!(primary = %self.primary, error = %why, "lost the Redis primary; asking the Sentinels which server it is now");
            *current = None;
        }
    }

    /// Asks the Sentinels, unless another lookup found the primary meanwhile or one failed
    /// a moment ago.
    async fn look_up(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        let mut lookup = self.lookup.lock().await;
        if let Some(current) = self.in_use() {
            return Ok(current);
        }
        if let Some((at, why)) = &lookup.failed
            && at.elapsed() < LOOKUP_BACKOFF
        {
            return Err(no_primary(&self.primary, why));
        }
        let found = tokio::time::timeout(
            LOOKUP_TIMEOUT,
            lookup.client.get_async_connection_with_config(&self.config),
        )
        .await;
        match found {
            Ok(Ok(connection)) => {
                lookup.generation += 1;
                lookup.failed = None;
                let current = (lookup.generation, connection);
                *self.lock_current() = Some(current.clone());
                Ok(current)
            }
            Ok(Err(e)) => {
                lookup.failed = Some((Instant::now(), e.to_string()));
                Err(no_primary(&self.primary, &e.to_string()))
            }
            Err(_) => {
                let why = format!("no answer within {LOOKUP_TIMEOUT:?}");
                let error = no_primary(&self.primary, &why);
                lookup.failed = Some((Instant::now(), why));
                Err(error)
            }
        }
    }
}

fn no_primary(name: &str, why: &str) -> RedisError {
    RedisError::from((
        ErrorKind::Io,
        "no Redis primary reachable",
        format!("the Sentinels name no reachable primary {name:?}: {why}"),
    ))
}

/// Errors after which the connection may be talking to a server that is no longer primary, or
/// to nothing at all.
fn primary_may_have_moved(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || replica_reply(error.code().unwrap_or(""), error.detail())
}

/// A reply that only a server which is not (or not yet) a writable primary gives: `READONLY`
/// (a replica; inside a script on older servers, `ERR ... -READONLY ...`), `MASTERDOWN`,
/// `LOADING`.
fn replica_reply(code: &str, details: Option<&str>) -> bool {
    matches!(code, "READONLY" | "MASTERDOWN" | "LOADING")
        || details.is_some_and(|d| d.contains("READONLY"))
}

impl ConnectionLike for PrimaryConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let (generation, mut connection) = self.current().await?;
            let answer = connection.req_packed_command(cmd).await;
            match &answer {
                Ok(reply) => self.answered(generation, reply),
                Err(e) => self.met(generation, e),
            }
            answer
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let (generation, mut connection) = self.current().await?;
            let answer = connection
                .req_packed_commands(pipeline, offset, count)
                .await;
            match &answer {
                Ok(replies) => {
                    for reply in replies {
                        self.answered(generation, reply);
                    }
                }
                Err(e) => self.met(generation, e),
            }
            answer
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.db
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sentinel_url_names_the_sentinels_the_primary_and_the_database() {
        assert_eq!(
            parse("redis+sentinel://s1:26380,s2,10.0.0.3:1/gatehouse/2").unwrap(),
            SentinelUrl {
                tls: false,
                sentinels: vec![
                    ("s1".into(), 26380),
                    ("s2".into(), 26379),
                    ("10.0.0.3".into(), 1)
                ],
                primary: "gatehouse".into(),
                db: 2,
            }
        );
        let tls = parse("rediss+sentinel://s1/mymaster").unwrap();
        assert!(tls.tls);
        assert_eq!(tls.db, 0);
    }

    #[test]
    fn a_broken_sentinel_url_says_what_is_wrong() {
        for (url, says) in [
            ("redis+sentinel://s1:26379", "no primary name"),
            ("redis+sentinel://s1:26379/", "no primary name"),
            ("redis+sentinel:///mymaster", "no Sentinel"),
            ("redis+sentinel://s1:x/mymaster", "port"),
            ("redis+sentinel://s1/mymaster/zero", "database"),
            (
                "redis+sentinel://s1/mymaster/0/extra",
                "after the Sentinels",
            ),
            (
                "redis+sentinel://:hunter2@s1/mymaster",
                "GATEHOUSE_STORE_SENTINEL_PASSWORD",
            ),
            (
                "redis+sentinel://admin:hun/ter2@s1/mymaster",
                "GATEHOUSE_STORE_SENTINEL_PASSWORD",
            ),
        ] {
            let error = parse(url).unwrap_err();
            assert!(error.contains(says), "{url}: {error}");
            assert!(!error.contains("hun"), "{error}");
        }
    }

    #[test]
    fn only_failures_that_may_mean_a_new_primary_drop_the_connection() {
        let readonly = RedisError::from((
            ErrorKind::Server(redis::ServerErrorKind::ReadOnly),
            "READONLY",
        ));
        assert!(primary_may_have_moved(&readonly));
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(primary_may_have_moved(&io));
        let script = RedisError::from((
            ErrorKind::Server(redis::ServerErrorKind::ResponseError),
            "ERR wrong number of arguments",
        ));
        assert!(!primary_may_have_moved(&script));
        assert!(replica_reply(
            "READONLY",
            Some("You can't write against a read only replica.")
        ));
        assert!(replica_reply(
            "ERR",
            Some("Error running script (call to f_0): @user_script:1: -READONLY You can't write")
        ));
        assert!(!replica_reply("ERR", Some("wrong number of arguments")));
    }
}
