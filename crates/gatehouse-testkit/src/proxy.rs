//! A TCP proxy in front of a `redis-server` that cuts connections at a chosen command, to show
//! what a Redis failure in the middle of an operation leaves behind. It reads the commands the
//! clients send (RESP arrays), forwards them, and records their names.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// When to cut.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Cut {
    /// Cut when the command arrives, before Redis sees it.
    Before(String),
    /// Let Redis run the command, then cut before its answer reaches the client.
    After(String),
}

#[derive(Default)]
struct State {
    cut: Option<Cut>,
    /// Names of the commands forwarded so far, upper case.
    seen: Vec<String>,
    /// Refuse new connections (Redis "down").
    down: bool,
    /// Go down when the cut happens.
    down_after_cut: bool,
}

/// A proxy on a free port forwarding to `127.0.0.1:{target}`.
pub struct CuttingProxy {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

impl CuttingProxy {
    /// Starts the proxy (its threads live as long as the process).
    #[must_use]
    pub fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if shared.lock().map_or(true, |s| s.down) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                connect(client, server, shared.clone());
            }
        });
        CuttingProxy { port, state }
    }

    /// The URL a store connects to through the proxy.
    #[must_use]
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Cuts the connection carrying the next `command` before Redis sees it (once).
    pub fn cut_before(&self, command: &str) {
        self.set_cut(Cut::Before(command.to_ascii_uppercase()));
    }

    /// Lets Redis run the next `command`, then cuts before its answer arrives (once).
    pub fn cut_after(&self, command: &str) {
        self.set_cut(Cut::After(command.to_ascii_uppercase()));
    }

    /// As [`CuttingProxy::cut_after`], and Redis stays unreachable from then on, until
    /// `set_down(false)`: the answer is lost and nobody can ask what happened.
    pub fn cut_after_then_down(&self, command: &str) {
        self.set_cut(Cut::After(command.to_ascii_uppercase()));
        if let Ok(mut s) = self.state.lock() {
            s.down_after_cut = true;
        }
    }

    fn set_cut(&self, cut: Cut) {
        if let Ok(mut s) = self.state.lock() {
            s.cut = Some(cut);
        }
    }

    /// Whether a cut is still waiting for its command.
    #[must_use]
    pub fn armed(&self) -> bool {
        self.state.lock().is_ok_and(|s| s.cut.is_some())
    }

    /// While down, new connections are closed at once (established ones are unaffected).
    pub fn set_down(&self, down: bool) {
        if let Ok(mut s) = self.state.lock() {
            s.down = down;
            s.down_after_cut = false;
        }
    }

    /// The names of the commands forwarded so far; clears the list.
    pub fn take_commands(&self) -> Vec<String> {
        self.state
            .lock()
            .map(|mut s| std::mem::take(&mut s.seen))
            .unwrap_or_default()
    }
}

/// The end of the first complete RESP array in `buf` and its command name.
fn next_command(buf: &[u8]) -> Option<(usize, String)> {
    fn line(buf: &[u8], from: usize) -> Option<(usize, &[u8])> {
        let rel = buf.get(from..)?.windows(2).position(|w| w == b"\r\n")?;
        Some((from + rel + 2, &buf[from..from + rel]))
    }
    let (mut at, head) = line(buf, 0)?;
    let count: usize = std::str::from_utf8(head.strip_prefix(b"*")?)
        .ok()?
        .parse()
        .ok()?;
    let mut name = String::new();
    for i in 0..count {
        let (after, len) = line(buf, at)?;
        let len: usize = std::str::from_utf8(len.strip_prefix(b"$")?)
            .ok()?
            .parse()
            .ok()?;
        let end = after + len + 2;
        if buf.len() < end {
            return None;
        }
        if i == 0 {
            name = String::from_utf8_lossy(&buf[after..after + len]).to_ascii_uppercase();
        }
        at = end;
    }
    Some((at, name))
}

fn connect(mut client: TcpStream, mut server: TcpStream, state: Arc<Mutex<State>>) {
    let muted = Arc::new(AtomicBool::new(false));
    let (Ok(mut client_back), Ok(mut server_back)) = (client.try_clone(), server.try_clone())
    else {
        return;
    };
    let mute = muted.clone();
    // Redis → client, unless the answer is to be lost.
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match server_back.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if mute.load(Ordering::SeqCst) || client_back.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = client_back.shutdown(Shutdown::Both);
    });
    // Client → Redis, command by command.
    std::thread::spawn(move || {
        let mut pending: Vec<u8> = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match client.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            pending.extend_from_slice(&buf[..n]);
            while let Some((end, name)) = next_command(&pending) {
                let cut = state.lock().ok().and_then(|mut s| {
                    let cut = match &s.cut {
                        Some(Cut::Before(c) | Cut::After(c)) if *c == name => s.cut.take(),
                        _ => None,
                    };
                    if !matches!(cut, Some(Cut::Before(_))) {
                        s.seen.push(name.clone());
                    }
                    if cut.is_some() && s.down_after_cut {
                        s.down = true;
                    }
                    cut
                });
                match cut {
                    Some(Cut::Before(_)) => {
                        let _ = client.shutdown(Shutdown::Both);
                        let _ = server.shutdown(Shutdown::Both);
                        return;
                    }
                    Some(Cut::After(_)) => {
                        muted.store(true, Ordering::SeqCst);
                        let _ = server.write_all(&pending[..end]);
                        // Long enough for Redis to run it.
                        std::thread::sleep(Duration::from_millis(100));
                        let _ = client.shutdown(Shutdown::Both);
                        let _ = server.shutdown(Shutdown::Both);
                        return;
                    }
                    None => {
                        if server.write_all(&pending[..end]).is_err() {
                            return;
                        }
                        pending.drain(..end);
                    }
                }
            }
        }
        let _ = server.shutdown(Shutdown::Both);
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn commands_are_read_whole_from_a_stream() {
        let ping = b"*1\r\n$4\r\nPING\r\n";
        assert_eq!(super::next_command(ping), Some((ping.len(), "PING".into())));
        let get = b"*2\r\n$3\r\nget\r\n$3\r\nabc\r\n*1\r\n$4\r\nPING\r\n";
        assert_eq!(super::next_command(get), Some((22, "GET".into())));
        assert_eq!(super::next_command(&get[..20]), None, "incomplete");
    }
}
