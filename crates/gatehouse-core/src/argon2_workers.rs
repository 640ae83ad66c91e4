//! Where argon2id runs: a few dedicated threads (one per core), not tokio's blocking pool.
//!
//! Each argon2id check needs about 19 MiB. Run on whichever of tokio's many blocking
//! threads is free, every thread's malloc arena ends up holding that much, and a burst of
//! sign-ins leaves the process at hundreds of MiB. On a fixed set of threads, memory is
//! bounded by their number, and a flood of wrong secrets queues instead of exhausting
//! memory. Requests queue only so far ([`Argon2Workers::try_run`]): past that a request is
//! refused at once (503 with `Retry-After`), so a flood of wrong secrets cannot make every
//! sign-in wait seconds behind it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of threads that run argon2 verifications, one per core, so a burst of them
/// queues instead of stalling the async workers or starving the rest of the process.
pub struct Argon2Workers {
    jobs: Mutex<mpsc::Sender<Job>>,
    /// Jobs sent and not yet started.
    queued: Arc<AtomicUsize>,
    /// How many may wait for [`Argon2Workers::try_run`] to take one more.
    capacity: usize,
    /// Jobs started, and the time they waited in the queue altogether (microseconds): their
    /// rates give the mean wait, for metrics.
    started: Arc<AtomicU64>,
    waited_micros: Arc<AtomicU64>,
}

/// Jobs a request may find waiting per worker before it is refused: about half a second of
/// argon2 at the default cost.
pub const QUEUE_PER_WORKER: usize = 16;

/// Why [`Argon2Workers::try_run`] did not run a job.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    /// Too many verifications are waiting already; retry in a moment.
    #[error("too many password checks are waiting")]
    Busy,
    /// The workers were shut down.
    #[error(transparent)]
    Stopped(#[from] Stopped),
}

/// The workers were shut down (the process is stopping); the job did not run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the argon2 workers have stopped")]
pub struct Stopped;

impl Argon2Workers {
    /// `threads` workers (at least one), refusing requests past [`QUEUE_PER_WORKER`] each.
    pub fn new(threads: usize) -> Arc<Self> {
        Self::with_capacity(threads, threads.max(1) * QUEUE_PER_WORKER)
    }

    /// `threads` workers; [`Argon2Workers::try_run`] refuses once `capacity` jobs wait.
    pub fn with_capacity(threads: usize, capacity: usize) -> Arc<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    let next = |wait: bool| -> Option<Job> {
                        let rx = rx.lock().ok()?;
                        if wait {
                            rx.recv().ok()
                        } else {
                            rx.try_recv().ok()
                        }
                    };
                    loop {
                        // Working memory is kept through a burst and given back once the
                        // queue is empty: an idle server does not hold ~19 MiB per worker.
                        let job = if let Some(job) = next(false) {
                            job
                        } else {
                            crate::secret::release_working_memory();
                            match next(true) {
                                Some(job) => job,
                                None => return,
                            }
                        };
                        job();
                    }
                });
            if let Err(e) = spawned {
                // Fewer workers: slower sign-ins, nothing worse.
                let _ = e;
            }
        }
        Arc::new(Argon2Workers {
            jobs: Mutex::new(tx),
            queued: Arc::new(AtomicUsize::new(0)),
            capacity,
            started: Arc::new(AtomicU64::new(0)),
            waited_micros: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The process's workers, one per core, shared by everything that runs argon2id.
    pub fn shared() -> Arc<Self> {
        static SHARED: std::sync::OnceLock<Arc<Argon2Workers>> = std::sync::OnceLock::new();
        SHARED
            .get_or_init(|| {
                Self::new(std::thread::available_parallelism().map_or(2, std::num::NonZero::get))
            })
            .clone()
    }

    /// Runs `f` on a worker and waits for it without blocking the async runtime, however long
    /// the queue (for the process's own work, such as hashing secrets it publishes).
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Stopped> {
        self.queued.fetch_add(1, Ordering::SeqCst);
        self.send(f).await
    }

    /// Runs `f` on a worker, unless [`Argon2Workers::with_capacity`]'s number of jobs are
    /// waiting already (for requests: better a quick 503 than a queue of seconds).
    pub async fn try_run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Refused> {
        let waiting = self.queued.fetch_add(1, Ordering::SeqCst);
        if waiting >= self.capacity {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(Refused::Busy);
        }
        Ok(self.send(f).await?)
    }

    /// Jobs sent and not yet started.
    pub fn waiting(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// Jobs started so far, and the seconds they spent waiting for a worker altogether.
    pub fn waited(&self) -> (u64, f64) {
        let started = self.started.load(Ordering::Relaxed);
        #[allow(clippy::cast_precision_loss)]
        let seconds = self.waited_micros.load(Ordering::Relaxed) as f64 / 1e6;
        (started, seconds)
    }

    /// Queues `f` (already counted in `queued`) and waits for its result.
    async fn send<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Stopped> {
        let (tx, rx) = futures::channel::oneshot::channel();
        let queued = self.queued.clone();
        let (started, waited_micros) = (self.started.clone(), self.waited_micros.clone());
        let sent_at = std::time::Instant::now();
        let job: Job = Box::new(move || {
            queued.fetch_sub(1, Ordering::SeqCst);
            started.fetch_add(1, Ordering::Relaxed);
            let waited = u64::try_from(sent_at.elapsed().as_micros()).unwrap_or(u64::MAX);
            waited_micros.fetch_add(waited, Ordering::Relaxed);
            let _ = tx.send(f());
        });
        let sent = self
            .jobs
            .lock()
            .map_err(|_| Stopped)
            .and_then(|jobs| jobs.send(job).map_err(|_| Stopped));
        if sent.is_err() {
            self.queued.fetch_sub(1, Ordering::SeqCst);
        }
        sent?;
        rx.await.map_err(|_| Stopped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_the_workers_and_return() {
        let workers = Argon2Workers::new(2);
        let name = workers
            .run(|| std::thread::current().name().map(String::from))
            .await
            .unwrap();
        assert!(name.unwrap().starts_with("argon2-"));
        let results: Vec<u32> = futures_like_join(&workers).await;
        assert_eq!(results, (0..8).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn requests_past_the_queue_are_refused_at_once() {
        let workers = Argon2Workers::with_capacity(1, 2);
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let (started, has_started) = std::sync::mpsc::channel::<()>();
        // One job holds the only worker; two more may wait; the next is refused.
        let worker_held = tokio::spawn({
            let workers = workers.clone();
            async move {
                workers
                    .run(move || {
                        let _ = started.send(());
                        let _ = hold.recv();
                    })
                    .await
            }
        });
        while has_started.try_recv().is_err() {
            tokio::task::yield_now().await;
        }
        let queue = |n: u32| {
            let workers = workers.clone();
            tokio::spawn(async move { workers.try_run(move || n).await })
        };
        let (a, b) = (queue(1), queue(2));
        while workers.waiting() < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(workers.try_run(|| 3).await, Err(Refused::Busy));
        release.send(()).unwrap();
        worker_held.await.unwrap().unwrap();
        assert_eq!((a.await.unwrap(), b.await.unwrap()), (Ok(1), Ok(2)));
        assert_eq!(workers.try_run(|| 4).await, Ok(4), "room again");
    }

    async fn futures_like_join(workers: &Argon2Workers) -> Vec<u32> {
        let mut out = Vec::new();
        for i in 0..8u32 {
            out.push(workers.run(move || i).await.unwrap());
        }
        out
    }
}
