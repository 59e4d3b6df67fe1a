//! The threads that run the API's database work.
//!
//! DuckDB calls are synchronous, so they run off the async runtime. They run on a
//! few threads of their own (not tokio's blocking pool) for two reasons:
//! - **Bounded.** At most [`QUERY_THREADS`] queries run at once; the others wait in
//!   line, and a call whose client has gone is dropped from the line unrun.
//! - **Ingest first.** The threads run at a lower CPU priority (nice
//!   [`QUERY_NICE`]), so when the machine is busy the scheduler gives ingest (and
//!   detection) the CPU first, and a crowd of users slows their own answers, not
//!   the evidence coming in. With idle CPU the priority changes nothing.
//!
//! A job that panics is answered with an error; its thread carries on.
//! [`crate::priority`] lowers the threads' priority.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};

/// API queries that run at once. DuckDB spreads each over its own threads too.
pub const QUERY_THREADS: usize = 2;

/// Streamed exports that run at once, on threads apart from the queries'.
pub const EXPORT_THREADS: usize = 2;

/// How much lower than the rest of the process the query threads run (Linux nice
/// values, 0 to 19; a thread may lower its own priority without privileges).
pub const QUERY_NICE: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// Cheap to clone; the threads end when the last clone is dropped.
#[derive(Clone)]
pub struct QueryPool {
    tx: Sender<Job>,
    load: Arc<Load>,
}

/// Jobs running and waiting, for `/readyz`'s message.
#[derive(Default)]
struct Load {
    running: AtomicUsize,
    waiting: AtomicUsize,
}

/// The job was dropped: its thread panicked, or the pool is gone.
#[derive(Debug)]
pub struct JobLost;

impl QueryPool {
    pub fn start(name: &str, threads: usize, nice: i32) -> QueryPool {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let load = Arc::new(Load::default());
        for i in 0..threads.max(1) {
            let (rx, load) = (rx.clone(), load.clone());
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    crate::sys::priority::lower(nice);
                    work(&rx, &load);
                })
                .expect("spawning an API query thread");
        }
        QueryPool { tx, load }
    }

    /// Jobs running now.
    pub fn running(&self) -> usize {
        self.load.running.load(Ordering::Relaxed)
    }

    /// Jobs waiting for a thread.
    pub fn waiting(&self) -> usize {
        self.load.waiting.load(Ordering::Relaxed)
    }

    /// Runs `job` on a query thread once one is free; returns its result. If the
    /// returned future is dropped before a thread takes the job (the client hung
    /// up), the job does not run.
    pub async fn run<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> Result<T, JobLost> {
        let (done, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            if done.is_closed() {
                return;
            }
            if let Ok(value) = std::panic::catch_unwind(AssertUnwindSafe(job)) {
                let _ = done.send(value);
            }
        });
        self.load.waiting.fetch_add(1, Ordering::Relaxed);
        self.tx.send(job).map_err(|_| JobLost)?;
        answer.await.map_err(|_| JobLost)
    }

    /// Runs `job` on a query thread without waiting for it (a streamed export, which
    /// holds its thread until the last row is sent).
    pub fn spawn(&self, job: impl FnOnce() + Send + 'static) -> Result<(), JobLost> {
        let job: Job = Box::new(move || {
            if std::panic::catch_unwind(AssertUnwindSafe(job)).is_err() {
                tracing::error!("an API query thread's streamed job panicked");
            }
        });
        self.load.waiting.fetch_add(1, Ordering::Relaxed);
        self.tx.send(job).map_err(|_| JobLost)
    }
}

fn work(rx: &Mutex<Receiver<Job>>, load: &Load) {
    loop {
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => {
                load.waiting.fetch_sub(1, Ordering::Relaxed);
                load.running.fetch_add(1, Ordering::Relaxed);
                job();
                load.running.fetch_sub(1, Ordering::Relaxed);
            }
            Err(_) => return, // every sender dropped
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_and_survives_a_panic() {
        let pool = QueryPool::start("test", 1, QUERY_NICE);
        assert_eq!(pool.run(|| 2 + 2).await.unwrap(), 4);
        assert!(pool.run(|| -> i32 { panic!("boom") }).await.is_err());
        assert_eq!(pool.run(|| "still here").await.unwrap(), "still here");
    }

    #[tokio::test]
    async fn query_threads_run_at_lower_priority() {
        let before = crate::sys::priority::nice();
        let pool = QueryPool::start("test", 1, QUERY_NICE);
        assert_eq!(pool.run(crate::sys::priority::nice).await.unwrap(), (before + QUERY_NICE).min(19));
    }

    #[tokio::test]
    async fn a_job_whose_caller_left_does_not_run() {
        let pool = QueryPool::start("test", 1, 0);
        let (release, blocked) = std::sync::mpsc::channel::<()>();
        let busy = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(move || blocked.recv().is_ok()).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = ran.clone();
        let queued = pool.run(move || flag.store(true, std::sync::atomic::Ordering::SeqCst));
        // Poll it once so the job is queued, then drop it: the caller has gone.
        let _ = tokio::time::timeout(std::time::Duration::from_millis(10), queued).await;
        release.send(()).unwrap();
        assert!(busy.await.unwrap().unwrap());
        assert_eq!(pool.run(|| 1).await.unwrap(), 1);
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
    }
}
