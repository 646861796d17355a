//! The API's CPU pool: CPU-heavy work (decoding scans, JSON fields, PNG
//! frames and animations not in cache) runs on tokio's blocking threads, at
//! most `workers` jobs at once, so the async worker threads stay free for
//! cheap requests (`/healthz`, cached forecasts and frames).
//!
//! Jobs beyond `workers` wait in a queue of at most `queue` jobs; when it is
//! full, [`CpuPool::run`] fails at once with 503 `busy` and `Retry-After`.
//! A request takes its place in the queue ([`CpuPool::admit`]) before it
//! reads anything from the store, then holds a [`Worker`] while it reads the
//! scans it needs and while its job runs. A job keeps its worker until its
//! closure returns, even when the request that started it is dropped (timed
//! out, client gone), so the limit holds for the work actually running.

use crate::error::ApiError;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Seconds a client is asked to wait when the queue is full.
pub const BUSY_RETRY_AFTER_S: u32 = 1;

/// A bounded pool of CPU-heavy jobs. Cheap to clone.
#[derive(Clone, Debug)]
pub struct CpuPool {
    /// One permit per job allowed to run.
    running: Arc<Semaphore>,
    /// One permit per job admitted (running or waiting).
    admitted: Arc<Semaphore>,
    rejected: prometheus::IntCounter,
}

impl CpuPool {
    /// At most `workers` (at least 1) jobs run at once and `queue` wait.
    pub fn new(workers: usize, queue: usize, rejected: prometheus::IntCounter) -> Self {
        let workers = workers.max(1);
        Self {
            running: Arc::new(Semaphore::new(workers)),
            admitted: Arc::new(Semaphore::new(workers + queue)),
            rejected,
        }
    }

    /// Takes a place in the queue, or refuses at once with 503 `busy` when
    /// it is full. Take it before reading what the job needs from the
    /// store, so that refused requests cost nothing.
    pub fn admit(&self) -> Result<Admitted, ApiError> {
        match self.admitted.clone().try_acquire_owned() {
            Ok(slot) => Ok(Admitted {
                slot,
                running: self.running.clone(),
            }),
            Err(_) => {
                self.rejected.inc();
                Err(ApiError::Unavailable {
                    code: "busy",
                    detail: "The server is busy with other requests; try again shortly.".into(),
                    retry_after_s: BUSY_RETRY_AFTER_S,
                })
            }
        }
    }

    /// [`CpuPool::admit`] then [`Admitted::run`].
    pub async fn run<T, F>(&self, job: F) -> Result<T, ApiError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.admit()?.run(job).await
    }
}

/// A place in the queue of a [`CpuPool`].
#[derive(Debug)]
pub struct Admitted {
    slot: OwnedSemaphorePermit,
    running: Arc<Semaphore>,
}

impl Admitted {
    /// Waits for a free worker.
    pub async fn worker(self) -> Result<Worker, ApiError> {
        let running = self
            .running
            .acquire_owned()
            .await
            .map_err(|e| ApiError::Internal(format!("cpu pool: {e}")))?;
        Ok(Worker {
            _slot: self.slot,
            _running: running,
        })
    }

    /// Runs `job` on a blocking thread once a worker is free.
    pub async fn run<T, F>(self, job: F) -> Result<T, ApiError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.worker().await?.run(job).await
    }
}

/// One of the [`CpuPool`]'s workers, held by a request: reading the job's
/// input from the store (itself CPU work for large scans) and then the job.
#[derive(Debug)]
pub struct Worker {
    _slot: OwnedSemaphorePermit,
    _running: OwnedSemaphorePermit,
}

impl Worker {
    /// Runs `job` on a blocking thread; the worker stays taken until the
    /// job returns, even if the request is dropped meanwhile.
    pub async fn run<T, F>(self, job: F) -> Result<T, ApiError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        tokio::task::spawn_blocking(move || {
            let _held = self;
            job()
        })
        .await
        .map_err(|e| ApiError::Internal(format!("cpu job: {e}")))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_at_most_workers_and_refuses_beyond_the_queue() {
        let pool = CpuPool::new(
            2,
            3,
            prometheus::IntCounter::new("rejected", "rejected").unwrap(),
        );
        let now = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(std::sync::Mutex::new(gate));
        let mut jobs = Vec::new();
        for _ in 0..5 {
            let (pool, now, peak, gate) = (pool.clone(), now.clone(), peak.clone(), gate.clone());
            jobs.push(tokio::spawn(async move {
                pool.run(move || {
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(n, Ordering::SeqCst);
                    gate.lock().unwrap().recv().unwrap();
                    now.fetch_sub(1, Ordering::SeqCst);
                })
                .await
            }));
        }
        // Wait until two run and three wait: the sixth is refused.
        while now.load(Ordering::SeqCst) < 2 || pool.admitted.available_permits() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let e = pool.run(|| ()).await.unwrap_err();
        assert_eq!(e.code(), "busy");
        assert_eq!(e.status().as_u16(), 503);
        assert_eq!(pool.rejected.get(), 1);
        for _ in 0..5 {
            release.send(()).unwrap();
        }
        for j in jobs {
            j.await.unwrap().unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2);
        // Slots are back: new jobs run.
        assert_eq!(pool.run(|| 7).await.unwrap(), 7);
    }
}
