//! The service audits its own users: every API call and UI action becomes a row of
//! `access_log` (who, with which role, what, with which parameters, how many rows,
//! which status), refused calls included.
//!
//! Entries are written by one thread in small transactions (at most every
//! [`FLUSH_EVERY`], or sooner when [`BATCH`] entries wait), so auditing never holds a
//! request up. Shutdown flushes what is pending; a SIGKILL can lose the entries of at
//! most the last [`FLUSH_EVERY`], except a call that wrote its start row first
//! ([`super::AuditNote::record_start`], the SQL console). No endpoint updates or
//! deletes this table, and each transaction chains the rows it adds
//! ([`crate::store::append`]), so `tokentrail verify` proves none was changed since.
//!
//! Hostile callers cannot grow it without bound: text fields are cut
//! ([`Entry::bounded`]), and refused calls (401, 403, 405) of one address past
//! [`REFUSED_PER_MINUTE`] a minute are counted, not written one by one: one row a
//! minute says how many there were ([`RefusalSummary`]).

use crate::store::Store;
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use duckdb::types::{TimeUnit, Value};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const FLUSH_EVERY: Duration = Duration::from_millis(200);
pub const BATCH: usize = 500;
/// Entries waiting for the writer at most; past it (the database stalled), entries are
/// counted and the count written as one row when the writer catches up.
pub const QUEUE: usize = 10_000;
/// Refused calls of one address written one by one each minute; the rest are counted.
pub const REFUSED_PER_MINUTE: u32 = 30;
/// Addresses whose refusals are counted apart; past it, all others share one count.
const MAX_SOURCES: usize = 10_000;
const WINDOW: Duration = Duration::from_secs(60);
/// Longest stored `user_agent`, `path`, `name` (bytes); `parameters` as JSON text.
const MAX_TEXT: usize = 1024;
const MAX_PARAMETERS: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct Entry {
    pub time: DateTime<Utc>,
    pub oid: Option<String>,
    pub tid: Option<String>,
    pub name: Option<String>,
    pub role: Option<String>,
    pub method: String,
    pub endpoint: String,
    pub path: String,
    pub parameters: serde_json::Value,
    pub status: u16,
    pub rows: Option<i64>,
    pub duration_ms: f64,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub auth: &'static str,
    /// Ties a call's start row (status 102) to its final row.
    pub request_id: String,
}

impl Entry {
    /// The entry with every caller-chosen text cut to a bound.
    pub fn bounded(mut self) -> Entry {
        for field in [&mut self.path, &mut self.method] {
            cut(field, MAX_TEXT);
        }
        for field in [&mut self.user_agent, &mut self.name, &mut self.client_ip].into_iter().flatten() {
            cut(field, MAX_TEXT);
        }
        let text = self.parameters.to_string();
        if text.len() > MAX_PARAMETERS {
            let mut shown = text;
            cut(&mut shown, MAX_PARAMETERS);
            self.parameters = serde_json::json!({ "cut": true, "text": shown });
        }
        self
    }

    fn refused(&self) -> bool {
        matches!(self.status, 401 | 403 | 405)
    }
}

/// `text` cut to at most `max` bytes on a character boundary, marked when cut.
fn cut(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max.saturating_sub(3);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
}

/// Refused calls of one source in one minute beyond [`REFUSED_PER_MINUTE`]: written as
/// one row (`endpoint` = `(refused calls)`, `rows` = how many, `parameters` = the window
/// and the endpoints they asked for).
struct RefusalSummary {
    window_start: DateTime<Utc>,
    opened: Instant,
    written: u32,
    suppressed: u64,
    last: Option<Entry>,
}

enum Message {
    Entry(Box<Entry>),
    /// Write what is pending, then answer.
    Flush(SyncSender<()>),
    /// Write what is pending, then stop.
    Close,
}

/// Cheap to clone; the writer thread ends when the last clone is dropped.
#[derive(Clone)]
pub struct AuditLog {
    tx: SyncSender<Message>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
    /// Entries that found the queue full.
    overflow: Arc<std::sync::atomic::AtomicU64>,
}

impl AuditLog {
    pub fn start(store: Arc<Store>) -> AuditLog {
        AuditLog::start_with(store, REFUSED_PER_MINUTE)
    }

    /// With a limit of refused calls per source and minute other than [`REFUSED_PER_MINUTE`].
    pub fn start_with(store: Arc<Store>, refused_per_minute: u32) -> AuditLog {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let overflow = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let lost = overflow.clone();
        let thread = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                // The API's own work, like its queries, yields the CPU to ingest.
                crate::sys::priority::lower(crate::http::pool::QUERY_NICE);
                writer(&store, rx, refused_per_minute, &lost)
            })
            .expect("spawning the access log thread");
        AuditLog { tx, thread: Arc::new(Mutex::new(Some(thread))), overflow }
    }

    /// Writes what is pending and waits for the writer thread to end (and let go of
    /// the database): a service calls it before it exits, so no thread is still
    /// writing while the process tears DuckDB down. Entries recorded later are logged
    /// as lost.
    pub fn close(&self) {
        let _ = self.tx.send(Message::Close);
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }

    /// Queues `entry` without waiting (it is called on the async runtime).
    pub fn record(&self, entry: Entry) {
        match self.tx.try_send(Message::Entry(Box::new(entry.bounded()))) {
            Ok(()) => {}
            Err(std::sync::mpsc::TrySendError::Full(_)) => {
                if self.overflow.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0 {
                    tracing::error!(queue = QUEUE, "access log queue full; entries are counted until it drains");
                }
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
                tracing::error!("access log writer has stopped; an access log entry is lost")
            }
        }
    }

    /// Waits until every entry recorded so far is committed.
    pub fn flush(&self) {
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
        if self.tx.send(Message::Flush(done_tx)).is_ok() {
            let _ = done_rx.recv();
        }
    }
}

/// The row that counts entries the queue had no room for.
fn overflow_entry(lost: u64) -> Entry {
    Entry {
        time: Utc::now(),
        oid: None,
        tid: None,
        name: None,
        role: None,
        method: "-".into(),
        endpoint: "(access log overflow)".into(),
        path: "-".into(),
        parameters: serde_json::json!({ "lost_entries": lost, "queue": QUEUE }),
        status: 0,
        rows: Some(lost as i64),
        duration_ms: 0.0,
        client_ip: None,
        user_agent: None,
        auth: "none",
        request_id: String::new(),
    }
}

/// Per source address, the refused calls of the current minute.
struct Refusals {
    per_minute: u32,
    sources: std::collections::HashMap<String, RefusalSummary>,
}

impl Refusals {
    /// Whether `entry` is to be written on its own; if not, it is counted.
    fn admit(&mut self, entry: &Entry) -> bool {
        if !entry.refused() {
            return true;
        }
        let mut source = entry.client_ip.clone().unwrap_or_else(|| "unknown".into());
        if !self.sources.contains_key(&source) && self.sources.len() >= MAX_SOURCES {
            source = "other addresses".into();
        }
        let summary = self.sources.entry(source).or_insert_with(|| RefusalSummary {
            window_start: entry.time,
            opened: Instant::now(),
            written: 0,
            suppressed: 0,
            last: None,
        });
        if summary.written < self.per_minute {
            summary.written += 1;
            true
        } else {
            summary.suppressed += 1;
            summary.last = Some(entry.clone());
            false
        }
    }

    /// Summary rows for the windows that have ended (all of them when `all`).
    fn ended(&mut self, all: bool) -> Vec<Entry> {
        let mut out = Vec::new();
        self.sources.retain(|source, summary| {
            if !all && summary.opened.elapsed() < WINDOW {
                return true;
            }
            if let Some(last) = summary.last.take() {
                out.push(Entry {
                    time: Utc::now(),
                    method: "-".into(),
                    endpoint: "(refused calls)".into(),
                    path: "-".into(),
                    parameters: serde_json::json!({
                        "source": source,
                        "from": summary.window_start.to_rfc3339(),
                        "suppressed": summary.suppressed,
                        "last_endpoint": last.endpoint,
                        "last_status": last.status,
                    }),
                    rows: Some(summary.suppressed as i64),
                    duration_ms: 0.0,
                    request_id: last.request_id.clone(),
                    ..last
                });
            }
            false
        });
        out
    }
}

fn writer(store: &Store, rx: Receiver<Message>, refused_per_minute: u32, overflow: &std::sync::atomic::AtomicU64) {
    // Rows from before the chain existed (an upgraded database) are chained now, so
    // from here on every row is covered.
    if let Err(error) = crate::store::append::append(store, "access_log", |_| Ok(())) {
        tracing::error!(error = format!("{error:#}"), "chaining the access log's earlier rows failed");
    }
    let mut pending: Vec<Entry> = Vec::new();
    let mut refusals = Refusals { per_minute: refused_per_minute, sources: Default::default() };
    let mut oldest = Instant::now();
    loop {
        // Wake at least each window, so the counts of refused calls are written.
        let wait = if pending.is_empty() { WINDOW } else { FLUSH_EVERY.saturating_sub(oldest.elapsed()) };
        let mut answer = None;
        match rx.recv_timeout(wait) {
            Ok(Message::Entry(entry)) => {
                if !refusals.admit(&entry) {
                    continue;
                }
                if pending.is_empty() {
                    oldest = Instant::now();
                }
                pending.push(*entry);
                if pending.len() < BATCH && oldest.elapsed() < FLUSH_EVERY {
                    continue;
                }
            }
            Ok(Message::Flush(done)) => {
                pending.extend(refusals.ended(true));
                answer = Some(done);
            }
            Ok(Message::Close) | Err(RecvTimeoutError::Disconnected) => {
                pending.extend(refusals.ended(true));
                write_or_log(store, &mut pending);
                return;
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        pending.extend(refusals.ended(false));
        let lost = overflow.swap(0, std::sync::atomic::Ordering::Relaxed);
        if lost > 0 {
            pending.push(overflow_entry(lost));
        }
        write_or_log(store, &mut pending);
        if let Some(done) = answer {
            let _ = done.send(());
        }
    }
}

fn write_or_log(store: &Store, pending: &mut Vec<Entry>) {
    if pending.is_empty() {
        return;
    }
    // On a failed write the entries go to the service log instead, so they are
    // not silently gone; the writer keeps going.
    if let Err(error) = write(store, pending) {
        for entry in pending.iter() {
            tracing::error!(?entry, "access log entry not stored");
        }
        tracing::error!(error = format!("{error:#}"), "writing the access log failed");
    }
    pending.clear();
}

fn write(store: &Store, entries: &[Entry]) -> Result<()> {
    crate::store::append::append(store, "access_log", |conn| {
        let mut stmt = conn.prepare(include_str!("sql/access_log_insert.sql"))?;
        for e in entries {
            stmt.execute(duckdb::params![
                Value::Timestamp(TimeUnit::Microsecond, e.time.timestamp_micros()),
                e.oid,
                e.tid,
                e.name,
                e.role,
                e.method,
                e.endpoint,
                e.path,
                e.parameters.to_string(),
                e.status,
                e.rows,
                e.duration_ms,
                e.client_ip,
                e.user_agent,
                e.auth,
                e.request_id,
            ])?;
        }
        Ok(())
    })
    .context("storing access log entries")
}
