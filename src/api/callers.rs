//! Fair shares for callers: one caller cannot take the API from everyone else.
//!
//! - At most [`MAX_CALLS`] calls of one caller (Entra ID object and tenant) are in
//!   flight at once, streamed downloads until their last byte; more are answered 429
//!   with `Retry-After`.
//! - A caller's database work runs one job at a time ([`crate::api::db`] waits for the
//!   caller's turn before it queues for a query thread), so a caller with slow queries
//!   holds at most one of the [`super::pool::QUERY_THREADS`] threads and the others
//!   stay free for everyone else. Streamed exports run on a pool of their own
//!   ([`crate::server::AppState::exports`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// Calls of one caller in flight at once.
pub const MAX_CALLS: usize = 6;
/// Callers remembered before idle ones are forgotten.
const MAX_CALLERS: usize = 10_000;

struct Share {
    calls: AtomicUsize,
    /// One permit: the caller's database work, one job at a time.
    database: Arc<Semaphore>,
}

/// Every caller's share (cheap to clone).
#[derive(Clone)]
pub struct Callers {
    shares: Arc<Mutex<HashMap<String, Arc<Share>>>>,
    max_calls: usize,
    database_jobs: usize,
}

impl Default for Callers {
    fn default() -> Callers {
        Callers::new(MAX_CALLS, 1)
    }
}

/// A call in flight; the caller's count goes down when it is dropped.
pub struct InFlight {
    share: Arc<Share>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.share.calls.fetch_sub(1, Ordering::AcqRel);
    }
}

impl InFlight {
    /// The caller's turn at the database.
    pub fn database(&self) -> Arc<Semaphore> {
        self.share.database.clone()
    }
}

impl Callers {
    /// `max_calls` in flight per caller, `database_jobs` of theirs at once.
    pub fn new(max_calls: usize, database_jobs: usize) -> Callers {
        Callers { shares: Default::default(), max_calls, database_jobs: database_jobs.max(1) }
    }

    /// Admits one more call of `caller`, or says it has its calls in flight already.
    pub fn enter(&self, caller: &str) -> Option<InFlight> {
        let share = {
            let mut shares = self.shares.lock().expect("callers lock");
            if shares.len() >= MAX_CALLERS && !shares.contains_key(caller) {
                shares.retain(|_, s| Arc::strong_count(s) > 1 || s.calls.load(Ordering::Acquire) > 0);
            }
            shares
                .entry(caller.to_string())
                .or_insert_with(|| {
                    let database = Arc::new(Semaphore::new(self.database_jobs));
                    Arc::new(Share { calls: AtomicUsize::new(0), database })
                })
                .clone()
        };
        let before = share.calls.fetch_add(1, Ordering::AcqRel);
        if before >= self.max_calls {
            share.calls.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(InFlight { share })
    }
}

tokio::task_local! {
    /// The database turn of the caller whose request this task serves (set by the guard).
    pub static DATABASE_TURN: Arc<Semaphore>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_gets_max_calls_and_no_more_until_one_ends() {
        let callers = Callers::new(MAX_CALLS, 1);
        let held: Vec<InFlight> = (0..MAX_CALLS).map(|_| callers.enter("a").expect("admitted")).collect();
        assert!(callers.enter("a").is_none());
        assert!(callers.enter("b").is_some(), "another caller is not held up");
        drop(held);
        assert!(callers.enter("a").is_some());
    }
}
