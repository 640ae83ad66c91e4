//! Accepting, keeping and cutting HTTP connections.
//!
//! A server on a shared cluster meets slow and idle clients: a connection that sends half a
//! request head and waits, keep-alive connections nobody uses, and floods of both from one
//! address. Each connection therefore has a phase (waiting for a request, reading its head,
//! busy with it) and a deadline for the phases a client controls: the head must arrive within
//! the header-read timeout, the next request within the idle timeout. At the connection cap
//! the connection that has waited longest without a request in flight makes room for the
//! newcomer, so a flood of half-open connections delays nobody for long. Shutdown stops
//! accepting, lets requests in flight finish, and cuts what is left at a deadline.

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tower::ServiceExt;

/// How long clients may take, and how many connections are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// From the first byte of a request to the end of its head.
    pub header_read_timeout: Duration,
    /// From the end of a response to the first byte of the next request.
    pub idle_timeout: Duration,
    /// Connections kept open at once.
    pub max_connections: usize,
    /// After a shutdown signal, how long requests in flight may take before the rest is cut.
    pub shutdown_timeout: Duration,
}

impl Default for ConnectionLimits {
    /// Header and body reads of 10 s (a form post takes milliseconds); an idle timeout above
    /// the 60 s an ingress proxy typically keeps upstream connections, so the proxy, not the
    /// server, closes them and never sends a request into a closing connection; shutdown
    /// within a pod's default 30 s grace period.
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            max_connections: 10_000,
            shutdown_timeout: Duration::from_secs(25),
        }
    }
}

/// Where a connection stands; only the first two have deadlines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    /// Waiting for the next request (or the first).
    Idle = 0,
    /// Some bytes of a request head have arrived, not all.
    ReadingHead = 1,
    /// A request is being answered.
    Busy = 2,
    /// Chosen to make room at the cap; closing.
    Evicted = 3,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Idle,
            1 => Phase::ReadingHead,
            2 => Phase::Busy,
            _ => Phase::Evicted,
        }
    }
}

/// One connection's phase and when it began, shared by its reader, its service and the task
/// that enforces its deadlines.
struct Tracker {
    phase: AtomicU8,
    /// Milliseconds since `epoch` when the phase began.
    since: AtomicU64,
    epoch: Instant,
    evict: Notify,
}

impl Tracker {
    fn new(epoch: Instant) -> Tracker {
        let tracker = Tracker {
            phase: AtomicU8::new(Phase::Idle as u8),
            since: AtomicU64::new(0),
            epoch,
            evict: Notify::new(),
        };
        tracker.enter(Phase::Idle);
        tracker
    }

    fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn enter(&self, phase: Phase) {
        self.since.store(self.elapsed_ms(), Ordering::Release);
        self.phase.store(phase as u8, Ordering::Release);
    }

    /// The first bytes of a request arrived on an idle connection.
    fn bytes_arrived(&self) {
        if self
            .phase
            .compare_exchange(
                Phase::Idle as u8,
                Phase::ReadingHead as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
        {
            self.since.store(self.elapsed_ms(), Ordering::Release);
        }
    }

    /// When the current phase runs out, if it can.
    fn deadline(&self, limits: &ConnectionLimits) -> Option<Instant> {
        let allowed = match self.phase() {
            Phase::Idle => limits.idle_timeout,
            Phase::ReadingHead => limits.header_read_timeout,
            Phase::Busy | Phase::Evicted => return None,
        };
        let since = Duration::from_millis(self.since.load(Ordering::Acquire));
        Some(self.epoch + since + allowed)
    }

    /// Marks the connection for eviction unless a request is in flight.
    fn try_evict(&self) -> bool {
        let waiting = [Phase::Idle as u8, Phase::ReadingHead as u8];
        for from in waiting {
            if self
                .phase
                .compare_exchange(
                    from,
                    Phase::Evicted as u8,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
            {
                self.evict.notify_one();
                return true;
            }
        }
        false
    }
}

/// The open connections.
struct Registry {
    open: Mutex<HashMap<u64, Arc<Tracker>>>,
    /// Signalled whenever a connection ends.
    closed: Notify,
}

impl Registry {
    fn len(&self) -> usize {
        self.open.lock().map_or(0, |open| open.len())
    }

    fn add(&self, id: u64, tracker: Arc<Tracker>) {
        if let Ok(mut open) = self.open.lock() {
            open.insert(id, tracker);
        }
    }

    fn remove(&self, id: u64) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(&id);
        }
        self.closed.notify_waiters();
    }

    /// Evicts the connection that has waited longest without a request in flight.
    fn evict_longest_waiting(&self) -> bool {
        let Ok(open) = self.open.lock() else {
            return false;
        };
        // Each one's start read once: the trackers change under our feet, and a sort over
        // values that move is no order at all.
        let mut candidates: Vec<(u64, &Arc<Tracker>)> = open
            .values()
            .filter(|t| matches!(t.phase(), Phase::Idle | Phase::ReadingHead))
            .map(|t| (t.since.load(Ordering::Acquire), t))
            .collect();
        candidates.sort_unstable_by_key(|(since, _)| *since);
        // A candidate may have turned busy since it was looked at: try the next.
        candidates.into_iter().any(|(_, t)| t.try_evict())
    }

    fn evict_all(&self) {
        if let Ok(open) = self.open.lock() {
            for tracker in open.values() {
                tracker.phase.store(Phase::Evicted as u8, Ordering::Release);
                tracker.evict.notify_one();
            }
        }
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown` resolves, then drains.
///
/// # Errors
/// Never, today: accept errors (out of file descriptors, for one) are logged and retried.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let registry = Arc::new(Registry {
        open: Mutex::new(HashMap::new()),
        closed: Notify::new(),
    });
    let epoch = Instant::now();
    let (stop, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    let mut next_id = 0u64;
    'accept: loop {
        // At the cap: make room, or wait for it when every connection is busy.
        loop {
            let closed = registry.closed.notified();
            if registry.len() < limits.max_connections.max(1) || registry.evict_longest_waiting() {
                break;
            }
            tokio::select! {
                () = closed => {}
                () = &mut shutdown => break 'accept,
            }
        }
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    on_accept_error(&e, &registry).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        next_id += 1;
        let id = next_id;
        let tracker = Arc::new(Tracker::new(epoch));
        registry.add(id, tracker.clone());
        let registry = registry.clone();
        let app = app.clone();
        let stopping = stopping.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, app, &tracker, limits, stopping).await;
            registry.remove(id);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    drain(&registry, limits.shutdown_timeout).await;
    Ok(())
}

/// Waits for open connections to finish, then cuts the rest.
async fn drain(registry: &Registry, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let closed = registry.closed.notified();
        let open = registry.len();
        if open == 0 {
            return;
        }
        tokio::select! {
            () = closed => {}
            () = tokio::time::sleep_until(deadline) => {
                tracing::warn!(open, "shutdown deadline reached: closing the remaining connections");
                registry.evict_all();
                return;
            }
        }
    }
}

/// Out of file descriptors (or another failure to accept): room is made and accepting goes
/// on after a short pause, instead of spinning or giving up.
async fn on_accept_error(e: &std::io::Error, registry: &Registry) {
    use std::io::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::Interrupted
    ) {
        return;
    }
    tracing::warn!(error = %e, open = registry.len(), "cannot accept a connection");
    registry.evict_longest_waiting();
    tokio::time::sleep(Duration::from_millis(20)).await;
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    tracker: &Arc<Tracker>,
    limits: ConnectionLimits,
    mut stopping: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(Watched {
        inner: stream,
        tracker: tracker.clone(),
    });
    let in_service = tracker.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        let app = app.clone();
        let tracker = in_service.clone();
        tracker.enter(Phase::Busy);
        request.extensions_mut().insert(ConnectInfo(peer));
        async move {
            let response = app.oneshot(request.map(axum::body::Body::new)).await;
            // Responses are small and written at once: from here the connection waits for
            // the next request (a client that does not read its response is cut as idle).
            tracker.enter(Phase::Idle);
            response
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut draining = *stopping.borrow();
    if draining {
        connection.as_mut().graceful_shutdown();
    }
    loop {
        let deadline = tracker
            .deadline(&limits)
            // Busy: look again once a phase with a deadline may have begun.
            .unwrap_or_else(|| {
                Instant::now() + limits.header_read_timeout.min(limits.idle_timeout)
            });
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(deadline) => {
                if tracker.deadline(&limits).is_some_and(|d| d <= Instant::now()) {
                    tracing::debug!(%peer, phase = ?tracker.phase(), "connection timed out");
                    return;
                }
            }
            () = tracker.evict.notified() => {
                tracing::debug!(%peer, "connection evicted");
                return;
            }
            changed = stopping.changed(), if !draining => {
                draining = true;
                if changed.is_ok() {
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// The socket, noticing when the first bytes of a request arrive.
struct Watched {
    inner: TcpStream,
    tracker: Arc<Tracker>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.tracker.bytes_arrived();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            max_connections: 2,
            shutdown_timeout: Duration::from_secs(1),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn each_phase_a_client_controls_has_its_own_deadline() {
        let epoch = Instant::now();
        let tracker = Tracker::new(epoch);
        assert_eq!(
            tracker.deadline(&limits()),
            Some(epoch + Duration::from_secs(75))
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        tracker.bytes_arrived();
        assert_eq!(
            tracker.deadline(&limits()),
            Some(epoch + Duration::from_secs(15))
        );
        // More bytes of the same head do not extend it.
        tokio::time::advance(Duration::from_secs(5)).await;
        tracker.bytes_arrived();
        assert_eq!(
            tracker.deadline(&limits()),
            Some(epoch + Duration::from_secs(15))
        );
        tracker.enter(Phase::Busy);
        assert_eq!(tracker.deadline(&limits()), None);
        tracker.enter(Phase::Idle);
        assert_eq!(
            tracker.deadline(&limits()),
            Some(epoch + Duration::from_secs(85))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_cap_evicts_the_longest_waiting_connection_never_a_busy_one() {
        let epoch = Instant::now();
        let registry = Registry {
            open: Mutex::new(HashMap::new()),
            closed: Notify::new(),
        };
        let oldest_busy = Arc::new(Tracker::new(epoch));
        oldest_busy.enter(Phase::Busy);
        tokio::time::advance(Duration::from_secs(1)).await;
        let half_open = Arc::new(Tracker::new(epoch));
        half_open.bytes_arrived();
        tokio::time::advance(Duration::from_secs(1)).await;
        let idle = Arc::new(Tracker::new(epoch));
        registry.add(1, oldest_busy.clone());
        registry.add(2, half_open.clone());
        registry.add(3, idle.clone());

        assert!(registry.evict_longest_waiting());
        assert_eq!(half_open.phase(), Phase::Evicted);
        assert_eq!(oldest_busy.phase(), Phase::Busy);
        assert!(registry.evict_longest_waiting());
        assert_eq!(idle.phase(), Phase::Evicted);
        assert!(
            !registry.evict_longest_waiting(),
            "only a busy connection is left"
        );
        assert_eq!(oldest_busy.phase(), Phase::Busy);
    }
}
