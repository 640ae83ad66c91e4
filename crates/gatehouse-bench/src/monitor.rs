//! How many commands each operation sends to Redis, counted at Redis with `MONITOR` (commands
//! a script runs inside Redis show as `[0 lua]` and are not counted: they cost no round trip).

use std::io::{BufRead, BufReader, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct Monitor {
    count: Arc<AtomicU64>,
}

impl Monitor {
    /// Attaches to the Redis on `port` (the thread reading it lives as long as the process).
    pub fn start(port: u16) -> anyhow::Result<Self> {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
        stream.write_all(b"MONITOR\r\n")?;
        let count = Arc::new(AtomicU64::new(0));
        let seen = count.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { return };
                // +1700000000.123456 [0 127.0.0.1:50000] "GET" "key"
                if line.starts_with('+') && line.contains(" \"") && !line.contains(" lua]") {
                    seen.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Ok(Monitor { count })
    }

    /// Commands counted since the last call.
    pub fn take(&self) -> u64 {
        self.count.swap(0, Ordering::Relaxed)
    }
}
