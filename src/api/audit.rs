//! The service audits its own users: every API call and UI action becomes a row of
//! `access_log` (who, with which role, what, with which parameters, how many rows,
//! which status), refused calls included.
//!
//! Entries are written by one thread in small transactions (at most every
//! [`FLUSH_EVERY`], or sooner when [`BATCH`] entries wait), so auditing never holds a
//! request up. Shutdown flushes what is pending; a SIGKILL can lose the entries of at
//! most the last [`FLUSH_EVERY`]. No endpoint updates or deletes this table.

use crate::store::Store;
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use duckdb::types::{TimeUnit, Value};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const FLUSH_EVERY: Duration = Duration::from_millis(200);
pub const BATCH: usize = 500;

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
    tx: Sender<Message>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl AuditLog {
    pub fn start(store: Arc<Store>) -> AuditLog {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                // The API's own work, like its queries, yields the CPU to ingest.
                crate::priority::lower(super::pool::QUERY_NICE);
                writer(&store, rx)
            })
            .expect("spawning the access log thread");
        AuditLog { tx, thread: Arc::new(Mutex::new(Some(thread))) }
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

    pub fn record(&self, entry: Entry) {
        if self.tx.send(Message::Entry(Box::new(entry))).is_err() {
            tracing::error!("access log writer has stopped; an access log entry is lost");
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

fn writer(store: &Store, rx: Receiver<Message>) {
    let mut pending: Vec<Entry> = Vec::new();
    let mut oldest = Instant::now();
    loop {
        let wait =
            if pending.is_empty() { Duration::from_secs(3600) } else { FLUSH_EVERY.saturating_sub(oldest.elapsed()) };
        let mut answer = None;
        match rx.recv_timeout(wait) {
            Ok(Message::Entry(entry)) => {
                if pending.is_empty() {
                    oldest = Instant::now();
                }
                pending.push(*entry);
                if pending.len() < BATCH && oldest.elapsed() < FLUSH_EVERY {
                    continue;
                }
            }
            Ok(Message::Flush(done)) => answer = Some(done),
            Ok(Message::Close) => {
                write_or_log(store, &mut pending);
                return;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                write_or_log(store, &mut pending);
                return;
            }
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
    store
        .transaction(|conn| {
            let mut stmt = conn.prepare(
                "INSERT INTO access_log (time, oid, tid, name, role, method, endpoint, path, parameters, status, rows,
                                     duration_ms, client_ip, user_agent, auth)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )?;
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
                ])?;
            }
            Ok(())
        })
        .context("storing access log entries")
}
