//! The load generator: N keep-alive HTTP/1.1 connections, each sending its next request as
//! soon as the previous answer is in and checked, for a fixed time. Every response is checked
//! (status and body); latencies are kept whole for exact percentiles.
//!
//! It speaks HTTP/1.1 itself, one request in flight per connection, in the connection's own
//! task: it shares core 1 with Redis, and what it spends there is taken from the rate it
//! measures. A general client (a task per connection plus channels between the caller and the
//! connection, a header map per answer) cost a fifth more CPU per request than the scenarios'
//! Redis work. The answers are parsed by `httparse`, as the server's own HTTP layer parses
//! requests; anything but a complete `Content-Length` or chunked body is an error.

use std::borrow::Cow;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A form POST with HTTP Basic: every request the load generator sends is one.
pub struct Post<'a> {
    pub path: &'a str,
    /// The `Authorization` header's value.
    pub auth: &'a str,
    pub body: Cow<'a, str>,
}

/// One connection's requests: what to send next, and whether an answer is right.
pub trait Conversation: Send + 'static {
    /// The next request; `None` ends this connection early (a pool ran out).
    fn next(&mut self) -> Option<Post<'_>>;
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
    let mut stream = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => {
            fail(&mut outcome, format!("connect: {e}"));
            return (outcome, talk);
        }
    };
    let _ = stream.set_nodelay(true);
    let mut request = Vec::with_capacity(1024);
    let mut answer = Answer::default();
    while Instant::now() < deadline {
        let Some(post) = talk.next() else { break };
        request.clear();
        write_post(&mut request, &post);
        let sent = Instant::now();
        if let Err(e) = stream.write_all(&request).await {
            fail(&mut outcome, format!("request: {e}"));
            break;
        }
        let read = answer.read(&mut stream);
        match tokio::time::timeout_at((deadline + ANSWER_GRACE).into(), read).await {
            Ok(Ok(())) => {}
            Ok(Err(why)) => {
                fail(&mut outcome, why);
                break;
            }
            Err(_) => {
                fail(&mut outcome, "no answer before the run ended".into());
                break;
            }
        }
        let micros = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
        outcome.latencies_us.push(micros);
        if answer.closes {
            fail(&mut outcome, "the server closed the connection".into());
            break;
        }
        match talk.check(answer.status, answer.body()) {
            Ok(()) => outcome.ok += 1,
            Err(why) => fail(&mut outcome, why),
        }
    }
    (outcome, talk)
}

/// Serializes a form POST as HTTP/1.1.
fn write_post(out: &mut Vec<u8>, post: &Post<'_>) {
    let body = post.body.as_bytes();
    for part in [
        "POST ",
        post.path,
        " HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/x-www-form-urlencoded\r\n",
        "authorization: ",
        post.auth,
        "\r\ncontent-length: ",
    ] {
        out.extend_from_slice(part.as_bytes());
    }
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{}\r\n\r\n", body.len());
    out.extend_from_slice(body);
}

/// The answer being read on a connection; its buffer is reused from one to the next.
#[derive(Default)]
struct Answer {
    /// What was read: the head, then the body (de-chunked in place when chunked).
    buf: Vec<u8>,
    status: u16,
    /// Where the body starts in `buf`, and its length once known.
    body_at: usize,
    body_len: usize,
    /// The server said `Connection: close`.
    closes: bool,
}

/// How long past the end of a run an answer is waited for before the connection is given up
/// (a server that stopped answering would otherwise hold the benchmark forever).
const ANSWER_GRACE: Duration = Duration::from_secs(10);

/// Largest answer head accepted; more is a broken server, not a slow one.
const MAX_HEAD: usize = 16 * 1024;
/// Largest answer body accepted.
const MAX_BODY: usize = 4 * 1024 * 1024;

enum Framing {
    Length(usize),
    Chunked,
}

impl Answer {
    fn body(&self) -> &[u8] {
        &self.buf[self.body_at..self.body_at + self.body_len]
    }

    /// Reads one whole answer: exactly what one request was answered with (one request is in
    /// flight per connection, so nothing of a next answer can follow it).
    async fn read(&mut self, stream: &mut TcpStream) -> Result<(), String> {
        self.buf.clear();
        let framing = loop {
            if self.buf.len() > MAX_HEAD {
                return Err(format!("answer head longer than {MAX_HEAD} bytes"));
            }
            fill(stream, &mut self.buf).await?;
            if let Some(framing) = self.parse_head()? {
                break framing;
            }
        };
        match framing {
            Framing::Length(len) => {
                if len > MAX_BODY {
                    return Err(format!("answer body of {len} bytes"));
                }
                while self.buf.len() < self.body_at + len {
                    fill(stream, &mut self.buf).await?;
                }
                if self.buf.len() > self.body_at + len {
                    return Err("bytes after the answer's body".into());
                }
                self.body_len = len;
            }
            Framing::Chunked => self.read_chunks(stream).await?,
        }
        Ok(())
    }

    /// Parses the head once it is complete: status, framing, `Connection: close`.
    fn parse_head(&mut self) -> Result<Option<Framing>, String> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut head = httparse::Response::new(&mut headers);
        let at = match head.parse(&self.buf) {
            Ok(httparse::Status::Complete(at)) => at,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(format!("answer head: {e}")),
        };
        self.status = head.code.unwrap_or_default();
        self.body_at = at;
        self.closes = head.version == Some(0);
        let mut framing = None;
        for h in head.headers.iter() {
            let value = std::str::from_utf8(h.value).unwrap_or_default().trim();
            let this = if h.name.eq_ignore_ascii_case("content-length") {
                Framing::Length(
                    length(value).ok_or_else(|| format!("answer content-length {value:?}"))?,
                )
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                if !value.eq_ignore_ascii_case("chunked") {
                    return Err(format!("answer transfer-encoding {value:?}"));
                }
                Framing::Chunked
            } else {
                if h.name.eq_ignore_ascii_case("connection") {
                    self.closes = value
                        .split(',')
                        .any(|option| option.trim().eq_ignore_ascii_case("close"));
                }
                continue;
            };
            // One framing header, once: two could frame the body two ways.
            if framing.replace(this).is_some() {
                return Err("answer framed twice (content-length, transfer-encoding)".into());
            }
        }
        framing
            .map(Some)
            .ok_or_else(|| "answer with neither content-length nor chunked body".into())
    }

    /// Reads a chunked body to its last chunk and moves the chunks' data together, after the
    /// head. Trailers are not expected and refused.
    async fn read_chunks(&mut self, stream: &mut TcpStream) -> Result<(), String> {
        // `at` is where the next chunk's size line starts; `end` where the data gathered so
        // far ends.
        let mut at = self.body_at;
        let mut end = self.body_at;
        loop {
            // The size line (hex, extensions allowed), parsed as the server's own HTTP layer
            // parses them.
            let (line, size) = loop {
                match httparse::parse_chunk_size(&self.buf[at..]) {
                    Ok(httparse::Status::Complete((line, size))) => break (line, size),
                    Ok(httparse::Status::Partial) if self.buf.len() - at <= 64 => {
                        fill(stream, &mut self.buf).await?;
                    }
                    _ => return Err("answer chunk size line malformed".into()),
                }
            };
            let size = usize::try_from(size)
                .ok()
                .filter(|size| *size <= MAX_BODY)
                .ok_or_else(|| format!("answer chunk size {size}"))?;
            if end - self.body_at + size > MAX_BODY {
                return Err("answer body larger than 4 MiB".into());
            }
            let data = at + line;
            while self.buf.len() < data + size + 2 {
                fill(stream, &mut self.buf).await?;
            }
            if &self.buf[data + size..data + size + 2] != b"\r\n" {
                return Err("answer chunk not ended by CRLF".into());
            }
            if size == 0 {
                if self.buf.len() != data + 2 {
                    return Err("bytes after the answer's last chunk".into());
                }
                self.body_len = end - self.body_at;
                return Ok(());
            }
            self.buf.copy_within(data..data + size, end);
            end += size;
            at = data + size + 2;
        }
    }
}

/// Reads what is there into `buf`; the connection closing is an error (an answer is due).
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), String> {
    buf.reserve(4096);
    match stream.read_buf(buf).await {
        Ok(0) => Err("connection closed before the answer was complete".into()),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("answer: {e}")),
    }
}

/// A `Content-Length`: decimal digits only (no sign, no spaces), at most 16 of them.
fn length(text: &str) -> Option<usize> {
    let plain = !text.is_empty() && text.len() <= 16 && text.bytes().all(|b| b.is_ascii_digit());
    plain.then(|| text.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// What `Answer::read` makes of `pieces`, written by a server one after another.
    async fn read(pieces: &[&'static [u8]]) -> (Result<(), String>, Answer) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pieces: Vec<&'static [u8]> = pieces.to_vec();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            for p in pieces {
                s.write_all(p).await.unwrap();
                s.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut answer = Answer::default();
        let result = answer.read(&mut stream).await;
        server.await.unwrap();
        (result, answer)
    }

    #[tokio::test]
    async fn answers_are_read_whole_however_they_arrive() {
        let (r, a) = read(&[
            b"HTTP/1.1 200 OK\r\nContent-Le",
            b"ngth: 9\r\ncontent-type: application/json\r\n\r\n{\"a\":",
            b"\"b\"}",
        ])
        .await;
        r.unwrap();
        assert_eq!(
            (a.status, a.body(), a.closes),
            (200, &b"{\"a\":\"b\"}"[..], false)
        );

        let (r, a) = read(&[
            b"HTTP/1.1 400 Bad Request\r\ntransfer-encoding: chunked\r\nconnection: keep-alive, Close\r\n\r\n",
            b"4\r\nab",
            b"cd\r\n3;x=y\r\nefg\r\n0\r\n\r\n",
        ])
        .await;
        r.unwrap();
        assert_eq!((a.status, a.body(), a.closes), (400, &b"abcdefg"[..], true));
    }

    #[tokio::test]
    async fn broken_answers_are_errors() {
        for (pieces, why) in [
            (&[&b"HTTP/1.1 200 OK\r\n\r\n"[..]][..], "neither"),
            (
                &[&b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nabc"[..]][..],
                "closed",
            ),
            (
                &[&b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nabc"[..]][..],
                "after",
            ),
            (
                &[&b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n"[..]][..],
                "content-length",
            ),
            (
                &[&b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n"[..]][..],
                "gzip",
            ),
            (
                &[&b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nabc\r\n"[..]][..],
                "CRLF",
            ),
            (
                &[&b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"[..]][..],
                "size",
            ),
            (&[&b"SMTP ready\r\n\r\n"[..]][..], "head"),
            (&[&b"HTTP/1.1 200 OK\r\ncontent-length: +2\r\n\r\nab"[..]][..], "content-length"),
            (
                &[&b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n"[..]][..],
                "twice",
            ),
            (
                &[&b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\nfffffffffffffffe\r\n"[..]][..],
                "size",
            ),
        ] {
            let (r, _) = read(pieces).await;
            let e = r.unwrap_err();
            assert!(e.contains(why), "{e} (expected {why})");
        }
    }

    #[test]
    fn posts_are_written_as_http_1_1() {
        let mut out = Vec::new();
        write_post(
            &mut out,
            &Post {
                path: "/t/oauth2/token",
                auth: "Basic eDp5",
                body: Cow::Borrowed("a=1"),
            },
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /t/oauth2/token HTTP/1.1\r\nhost: 127.0.0.1\r\n\
             content-type: application/x-www-form-urlencoded\r\nauthorization: Basic eDp5\r\n\
             content-length: 3\r\n\r\na=1"
        );
    }
}
