//! Where argon2id runs: a few dedicated threads (one per core), not tokio's blocking pool.
//!
//! Each argon2id check needs about 19 MiB. Run on whichever of tokio's many blocking
//! threads is free, every thread's malloc arena ends up holding that much, and a burst of
//! sign-ins leaves the process at hundreds of MiB. On a fixed set of threads, memory is
//! bounded by their number, and a flood of wrong secrets queues instead of exhausting
//! memory.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of threads that run argon2 verifications, one per core, so a burst of them
/// queues instead of stalling the async workers or starving the rest of the process.
pub struct Argon2Workers {
    jobs: Mutex<mpsc::Sender<Job>>,
}

/// The workers were shut down (the process is stopping); the job did not run.
#[derive(Debug, thiserror::Error)]
#[error("the argon2 workers have stopped")]
pub struct Stopped;

impl Argon2Workers {
    /// `threads` workers (at least one).
    pub fn new(threads: usize) -> Arc<Self> {
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

    /// Runs `f` on a worker and waits for it without blocking the async runtime.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Stopped> {
        let (tx, rx) = futures::channel::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.jobs
            .lock()
            .map_err(|_| Stopped)?
            .send(job)
            .map_err(|_| Stopped)?;
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

    async fn futures_like_join(workers: &Argon2Workers) -> Vec<u32> {
        let mut out = Vec::new();
        for i in 0..8u32 {
            out.push(workers.run(move || i).await.unwrap());
        }
        out
    }
}
