//! Connections as slow, idle, hostile and departing clients use them: early answers that keep
//! the connection usable, deadlines for every phase a client controls, a flood of half-open
//! connections at the cap, wrong methods, and SIGTERM with a client stuck mid-request.

mod support;

use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

fn start(env: &[(&str, &str)]) -> Gatehouse {
    let manifests = tempfile::tempdir().unwrap();
    for (name, yaml) in fixtures() {
        std::fs::write(manifests.path().join(name), yaml).unwrap();
    }
    Gatehouse::start_with_env("memory://", manifests, env)
}

/// One HTTP/1.1 response as read off the wire.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A raw connection, to send exactly the bytes a test needs.
struct Conn(BufReader<TcpStream>);

impl Conn {
    async fn open(g: &Gatehouse) -> Conn {
        Conn(BufReader::new(
            TcpStream::connect(("127.0.0.1", g.port)).await.unwrap(),
        ))
    }

    async fn send(&mut self, bytes: &str) {
        self.0.get_mut().write_all(bytes.as_bytes()).await.unwrap();
    }

    async fn response(&mut self) -> Response {
        let mut status_line = String::new();
        self.0.read_line(&mut status_line).await.unwrap();
        let status = status_line
            .split_whitespace()
            .nth(1)
            .unwrap_or_else(|| panic!("no status line: {status_line:?}"))
            .parse()
            .unwrap();
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            self.0.read_line(&mut line).await.unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap();
            headers.push((name.to_string(), value.trim().to_string()));
        }
        let length: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.parse().unwrap());
        let mut body = vec![0; length];
        self.0.read_exact(&mut body).await.unwrap();
        Response {
            status,
            headers,
            body: String::from_utf8(body).unwrap(),
        }
    }

    /// Waits up to `within` for the server to close the connection.
    async fn closed_within(&mut self, within: Duration) -> bool {
        let mut byte = [0u8; 1];
        match tokio::time::timeout(within, self.0.read(&mut byte)).await {
            Ok(Ok(0) | Err(_)) => true,
            Ok(Ok(_)) => panic!("unexpected bytes from the server"),
            Err(_) => false,
        }
    }
}

const DISCOVERY: &str = "GET /acme/.well-known/openid-configuration HTTP/1.1\r\nHost: t\r\n\r\n";

fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn early_answers_and_wrong_methods_keep_the_connection_usable() {
    let g = start(&[]);
    let mut conn = Conn::open(&g).await;

    // Answered before any endpoint reads the body: the body is read anyway, so the next
    // request on the same connection is understood.
    conn.send(&post(
        "/nosuch/oauth2/token",
        "grant_type=client_credentials",
    ))
    .await;
    let unknown = conn.response().await;
    assert_eq!(unknown.status, 404, "{unknown:?}");
    assert!(unknown.body.contains("invalid_request"), "{unknown:?}");
    conn.send(&post(
        "/acme/oauth2/token",
        "grant_type=client_credentials&client_id=nobody",
    ))
    .await;
    assert_eq!(conn.response().await.status, 401);
    conn.send(DISCOVERY).await;
    assert_eq!(conn.response().await.status, 200);

    // A wrong method gets an error in the endpoint's shape, and Allow.
    conn.send("GET /acme/oauth2/token HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    let token = conn.response().await;
    assert_eq!(token.status, 405);
    assert_eq!(token.header("allow"), Some("POST"));
    let body: serde_json::Value = serde_json::from_str(&token.body).unwrap();
    assert_eq!(body["error"], "invalid_request", "{token:?}");
    assert!(
        body["error_description"].as_str().unwrap().contains("GET"),
        "{body}"
    );
    conn.send(&post("/acme/oauth2/authorize", "").replace("POST", "PUT"))
        .await;
    let page = conn.response().await;
    assert_eq!(page.status, 405);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html"),
        "{page:?}"
    );
    assert!(page.body.contains("does not take PUT"), "{page:?}");
    conn.send(DISCOVERY).await;
    assert_eq!(conn.response().await.status, 200);

    // A body over the limit is refused and the connection closed, not left half-read.
    let huge = "a=".to_string() + &"x".repeat(70 * 1024);
    conn.send(&post("/nosuch/oauth2/token", &huge)).await;
    let refused = conn.response().await;
    assert_eq!(refused.status, 413, "{refused:?}");
    assert_eq!(refused.header("connection"), Some("close"));
    assert!(conn.closed_within(Duration::from_secs(5)).await);
}

#[tokio::test]
async fn each_phase_a_client_controls_has_a_deadline() {
    let g = start(&[
        ("GATEHOUSE_HEADER_READ_TIMEOUT", "1s"),
        ("GATEHOUSE_BODY_READ_TIMEOUT", "1s"),
        ("GATEHOUSE_IDLE_TIMEOUT", "3s"),
    ]);

    // Half a request head, then nothing.
    let mut half_open = Conn::open(&g).await;
    half_open
        .send("POST /acme/oauth2/token HTTP/1.1\r\nHost: t\r\n")
        .await;
    let started = Instant::now();
    assert!(half_open.closed_within(Duration::from_secs(10)).await);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900), "cut after {took:?}");

    // A head, then a body that stops: 408, and the connection closes.
    let mut slow_body = Conn::open(&g).await;
    slow_body
        .send(
            "POST /acme/oauth2/token HTTP/1.1\r\nHost: t\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n\
             grant_type",
        )
        .await;
    let timed_out = slow_body.response().await;
    assert_eq!(timed_out.status, 408, "{timed_out:?}");
    assert_eq!(timed_out.header("connection"), Some("close"));
    assert!(timed_out.body.contains("invalid_request"), "{timed_out:?}");
    assert!(slow_body.closed_within(Duration::from_secs(5)).await);

    // Keep-alive: an idle pause longer than the header timeout is fine, a longer one is not.
    let mut keep_alive = Conn::open(&g).await;
    keep_alive.send(DISCOVERY).await;
    assert_eq!(keep_alive.response().await.status, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    keep_alive.send(DISCOVERY).await;
    assert_eq!(keep_alive.response().await.status, 200);
    let idle_since = Instant::now();
    assert!(keep_alive.closed_within(Duration::from_secs(10)).await);
    let idle = idle_since.elapsed();
    assert!(idle >= Duration::from_millis(2500), "cut after {idle:?}");
}

/// Opens `n` connections that each send half a request head and then wait.
async fn flood(g: &Gatehouse, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", g.port)).await else {
            continue;
        };
        let _ = s
            .write_all(b"POST /acme/oauth2/token HTTP/1.1\r\nHost: t\r\n")
            .await;
        held.push(s);
    }
    held
}

async fn timed_token(g: &Gatehouse) -> Duration {
    let started = Instant::now();
    let reply = client_credentials(
        g,
        "acme",
        "acme-billing",
        "s3cret:with/special+chars&=%",
        &[],
    )
    .await;
    let took = started.elapsed();
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_half_open_connections_delays_nobody() {
    // Under the cap: thousands of half-open connections are simply held.
    let g = start(&[]);
    let held = flood(&g, 3000).await;
    assert!(held.len() > 2900, "opened {}", held.len());
    let took = timed_token(&g).await;
    assert!(took < Duration::from_secs(1), "token after {took:?}");
    drop(held);
    drop(g);

    // Over the cap: the longest-waiting ones make room for newcomers.
    let g = start(&[("GATEHOUSE_MAX_CONNECTIONS", "200")]);
    let held = flood(&g, 2000).await;
    let took = timed_token(&g).await;
    assert!(took < Duration::from_secs(1), "token after {took:?}");
    let mut first = held.into_iter().next().unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), first.read(&mut byte)).await;
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "the oldest half-open connection was closed to make room: {read:?}"
    );
}

#[tokio::test]
async fn sigterm_finishes_within_the_deadline_even_with_a_stuck_client() {
    let mut g = start(&[
        ("GATEHOUSE_SHUTDOWN_TIMEOUT", "2s"),
        ("GATEHOUSE_HEADER_READ_TIMEOUT", "60s"),
    ]);
    let mut stuck = Conn::open(&g).await;
    stuck
        .send("POST /acme/oauth2/token HTTP/1.1\r\nHost: t\r\nContent-Le")
        .await;
    let mut idle = Conn::open(&g).await;
    idle.send(DISCOVERY).await;
    assert_eq!(idle.response().await.status, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    let status = g.terminate(Duration::from_secs(15));
    let took = started.elapsed();
    let status = status.unwrap_or_else(|| panic!("still running 15 s after SIGTERM"));
    assert!(status.success(), "{status}");
    assert!(
        took >= Duration::from_millis(1500),
        "the stuck client had its grace period: {took:?}"
    );
    assert!(idle.closed_within(Duration::from_secs(1)).await);
    assert!(
        g.stderr().contains("shutdown deadline reached"),
        "{}",
        g.stderr()
    );
}
