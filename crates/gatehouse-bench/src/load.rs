//! The load generator: N keep-alive HTTP/1.1 connections, each sending its next request as
//! soon as the previous answer is in and checked, for a fixed time. Every response is checked
//! (status and body); latencies are kept whole for exact percentiles.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// One connection's requests: what to send next, and whether an answer is right.
pub trait Conversation: Send + 'static {
    /// The next request; `None` ends this connection early (a pool ran out).
    fn next(&mut self) -> Option<Request<Full<Bytes>>>;
    /// Checks an answer; `Err` says what is wrong with it.
    fn check(&mut self, status: u16, body: &[u8]) -> Result<(), String>;
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Microseconds, one per answered request.
    pub latencies_us: Vec<u32>,
    pub elapsed: Duration,
}

impl Outcome {
    /// Adds another run's counts, errors and latencies (its time is added apart: runs on
    /// parallel connections overlap).
    pub fn add(&mut self, other: Outcome) {
        self.ok += other.ok;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.latencies_us.extend(other.latencies_us);
    }

    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The latency at quantile `q` (0..1), in milliseconds.
    pub fn percentile_ms(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies_us.len() - 1) as f64 * q).round() as usize;
        f64::from(self.latencies_us[i]) / 1000.0
    }
}

/// Runs `conversations` (one per connection) against `addr` for `duration`.
pub async fn drive(
    addr: SocketAddr,
    conversations: Vec<Box<dyn Conversation>>,
    duration: Duration,
) -> Outcome {
    drive_keeping(addr, conversations, duration).await.0
}

/// Like [`drive`], and hands the conversations back where they stopped (a refresh chain at
/// its latest token), to be driven again later.
pub async fn drive_keeping(
    addr: SocketAddr,
    conversations: Vec<Box<dyn Conversation>>,
    duration: Duration,
) -> (Outcome, Vec<Box<dyn Conversation>>) {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for conversation in conversations {
        tasks.push(tokio::spawn(connection(addr, conversation, deadline)));
    }
    let mut total = Outcome::default();
    let mut kept = Vec::new();
    for task in tasks {
        let Ok((outcome, conversation)) = task.await else {
            total.errors += 1;
            continue;
        };
        kept.push(conversation);
        total.add(outcome);
    }
    total.elapsed = started.elapsed();
    total.latencies_us.sort_unstable();
    (total, kept)
}

async fn connection(
    addr: SocketAddr,
    mut talk: Box<dyn Conversation>,
    deadline: Instant,
) -> (Outcome, Box<dyn Conversation>) {
    let mut outcome = Outcome::default();
    let fail = |outcome: &mut Outcome, why: String| {
        outcome.errors += 1;
        outcome.first_error.get_or_insert(why);
    };
    let stream = match tokio::net::TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => {
            fail(&mut outcome, format!("connect: {e}"));
            return (outcome, talk);
        }
    };
    let _ = stream.set_nodelay(true);
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(io).await {
        Ok(pair) => pair,
        Err(e) => {
            fail(&mut outcome, format!("handshake: {e}"));
            return (outcome, talk);
        }
    };
    tokio::spawn(conn);
    while Instant::now() < deadline {
        let Some(request) = talk.next() else { break };
        let sent = Instant::now();
        let response = match sender.send_request(request).await {
            Ok(r) => r,
            Err(e) => {
                fail(&mut outcome, format!("request: {e}"));
                break;
            }
        };
        let status = response.status().as_u16();
        let body = match response.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                fail(&mut outcome, format!("body: {e}"));
                break;
            }
        };
        let micros = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
        outcome.latencies_us.push(micros);
        match talk.check(status, &body) {
            Ok(()) => outcome.ok += 1,
            Err(why) => fail(&mut outcome, why),
        }
    }
    (outcome, talk)
}
