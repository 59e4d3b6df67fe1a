//! Fair shares for callers: one caller cannot take the API from everyone else.
//!
//! - At most [`MAX_CALLS`] calls of one caller (Entra ID object and tenant) are in
//!   flight at once, streamed downloads until their last byte; more are answered 429
//!   with `Retry-After`.
//! - A caller's database work runs one job at a time ([`crate::http::api::db`] waits for the
//!   caller's turn before it queues for a query thread), so a caller with slow queries
//!   holds at most one of the [`super::pool::QUERY_THREADS`] threads and the others
//!   stay free for everyone else. Streamed exports run on a pool of their own
//!   ([`crate::http::state::AppState::exports`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// Calls of one caller in flight at once.
pub const MAX_CALLS: usize = 6;
/// Authenticated calls in flight at once, all callers together (each holds memory and,
/// queued, a place in the query pool's line); more are answered 503.
pub const MAX_IN_FLIGHT: usize = 1_024;
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
    in_flight: Arc<AtomicUsize>,
}

/// Why a call was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub enum Busy {
    /// The caller has its share of calls in flight (429).
    Caller,
    /// The service has [`MAX_IN_FLIGHT`] calls in flight (503).
    Service,
}

impl Default for Callers {
    fn default() -> Callers {
        Callers::new(MAX_CALLS, 1)
    }
}

/// A call in flight; the counts go down when it is dropped.
pub struct InFlight {
    share: Arc<Share>,
    in_flight: Arc<AtomicUsize>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.share.calls.fetch_sub(1, Ordering::AcqRel);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
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
        Callers {
            shares: Default::default(),
            max_calls,
            database_jobs: database_jobs.max(1),
            in_flight: Default::default(),
        }
    }

    /// Admits one more call of `caller`, or says whose limit it met.
    pub fn enter(&self, caller: &str) -> Result<InFlight, Busy> {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= MAX_IN_FLIGHT {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(Busy::Service);
        }
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
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(Busy::Caller);
        }
        Ok(InFlight { share, in_flight: self.in_flight.clone() })
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
        assert_eq!(callers.enter("a").err(), Some(Busy::Caller));
        assert!(callers.enter("b").is_ok(), "another caller is not held up");
        drop(held);
        assert!(callers.enter("a").is_ok());
    }

    #[test]
    fn the_service_admits_max_in_flight_calls_from_everyone() {
        let callers = Callers::new(usize::MAX, 1);
        let held: Vec<InFlight> =
            (0..MAX_IN_FLIGHT).map(|i| callers.enter(&format!("c{i}")).expect("admitted")).collect();
        assert_eq!(callers.enter("one more").err(), Some(Busy::Service));
        drop(held);
        assert!(callers.enter("one more").is_ok());
    }
}
