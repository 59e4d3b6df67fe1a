//! Absorbs committed ingest batches into the tables rules read besides the public ones:
//! `stream_hours`, `activity_hours`, `first_seen`, `ip_addresses` and `request_signins`
//! (the correlation, materialised), and `control_changes` and `directory_changes` (the
//! Activity log and AuditLogs records of `raw_events`, typed by [`super::changes`]).
//!
//! Contract: each batch is absorbed once, in batch order, in the transaction that moves
//! `detection_state.absorbed_batch`; a failure rolls the whole step back. Aggregates are sums,
//! minima and maxima, and the correlation of a request is recomputed whenever a sign-in
//! at or before it arrives, so the tables do not depend on the order data arrived in.

use super::script::{self, timestamp};
use super::{changes, cosmos_logs, network};
use anyhow::{Context, Result};
use duckdb::types::Value;

const ABSORB: &str = include_str!("sql/absorb.sql");
const PENDING: &str = include_str!("sql/pending_requests.sql");
const CORRELATE: &str = include_str!("sql/correlate.sql");
const CORRELATE_OLDER: &str = include_str!("sql/correlate_older.sql");
const CORRELATE_OLDER_IP: &str = include_str!("sql/correlate_older_ip.sql");
const CORRELATE_STORE: &str = include_str!("sql/correlate_store.sql");

/// At most this many rows per absorb transaction (at least one batch), so catching up
/// on a large history keeps memory bounded.
const CHUNK_ROWS: i64 = 2_000_000;

/// What one absorb call took in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Absorbed {
    /// The batches (first..=last) absorbed.
    pub first_batch: i64,
    pub last_batch: i64,
    /// Earliest event time among their rows, microseconds since the epoch (None: no dated rows).
    pub earliest: Option<i64>,
}

impl Absorbed {
    fn merge(self, later: Absorbed) -> Absorbed {
        let earliest = match (self.earliest, later.earliest) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Absorbed { first_batch: self.first_batch, last_batch: later.last_batch, earliest }
    }
}

/// Absorbs every batch committed since the last call.
pub fn absorb_pending(conn: &duckdb::Connection) -> Result<Option<Absorbed>> {
    let mut total: Option<Absorbed> = None;
    while let Some(step) = absorb_step(conn)? {
        total = Some(match total {
            Some(before) => before.merge(step),
            None => step,
        });
    }
    Ok(total)
}

fn absorb_step(conn: &duckdb::Connection) -> Result<Option<Absorbed>> {
    conn.execute_batch("BEGIN TRANSACTION")?;
    match absorb_in_transaction(conn) {
        Ok(Some(absorbed)) => {
            conn.execute_batch("COMMIT").context("committing the absorbed batches")?;
            Ok(Some(absorbed))
        }
        Ok(None) => {
            conn.execute_batch("ROLLBACK")?;
            Ok(None)
        }
        Err(error) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(error)
        }
    }
}

fn absorb_in_transaction(conn: &duckdb::Connection) -> Result<Option<Absorbed>> {
    let lo: i64 = conn.query_row("SELECT absorbed_batch FROM detection_state WHERE id = 1", [], |r| r.get(0))?;
    let hi: Option<i64> =
        conn.query_row(include_str!("sql/absorb_last_batch.sql"), duckdb::params![lo, CHUNK_ROWS], |r| r.get(0))?;
    let Some(hi) = hi else { return Ok(None) };
    script::run(conn, "absorb.sql", ABSORB, &[("lo", Value::BigInt(lo)), ("hi", Value::BigInt(hi))])?;
    absorb_addresses(conn)?;
    let typed = changes::absorb(conn, lo, hi).context("typing control-plane and directory changes")?;
    if typed.untyped > 0 {
        tracing::warn!(untyped = typed.untyped, "change records kept raw only");
    }
    let cosmos = cosmos_logs::absorb(conn, lo, hi).context("typing Cosmos DB queries and control-plane requests")?;
    if cosmos.untyped > 0 {
        tracing::warn!(untyped = cosmos.untyped, "Cosmos DB query and control-plane records kept raw only");
    }
    conn.execute_batch(include_str!("sql/absorb_networks.sql")).context("absorbing request networks")?;
    let since: Option<i64> = conn.query_row("SELECT epoch_us(min(since)) FROM late_signins", [], |r| r.get(0))?;
    let since = since.map_or(Value::Null, timestamp);
    script::run(conn, "pending_requests.sql", PENDING, &[("since", since), ("lo", Value::BigInt(lo))])?;
    let (plo, phi): (Option<i64>, Option<i64>) =
        conn.query_row("SELECT epoch_us(min(time)), epoch_us(max(time)) FROM pending", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    if let (Some(plo), Some(phi)) = (plo, phi) {
        correlate(conn, plo, phi)?;
    }
    let earliest: Option<i64> = conn.query_row(include_str!("sql/absorb_earliest_time.sql"), [], |r| r.get(0))?;
    conn.execute(
        "UPDATE detection_state SET absorbed_batch = ?, absorbed_at = get_current_timestamp() WHERE id = 1",
        [hi],
    )?;
    tracing::debug!(first_batch = lo + 1, last_batch = hi, "absorbed ingest batches");
    Ok(Some(Absorbed { first_batch: lo + 1, last_batch: hi, earliest }))
}

/// Correlates the requests of `pending` (from `plo` to `phi`) and stores them in request_signins.
fn correlate(conn: &duckdb::Connection, plo: i64, phi: i64) -> Result<()> {
    let bounds = [("plo", timestamp(plo)), ("phi", timestamp(phi))];
    script::run(conn, "correlate.sql", CORRELATE, &bounds)?;
    script::run(conn, "correlate_older.sql", CORRELATE_OLDER, &bounds)?;
    script::run(conn, "correlate_older_ip.sql", CORRELATE_OLDER_IP, &bounds)?;
    script::run(conn, "correlate_store.sql", CORRELATE_STORE, &bounds)
}

/// Adds the addresses of the new rows that `ip_addresses` does not know yet.
fn absorb_addresses(conn: &duckdb::Connection) -> Result<()> {
    let mut stmt = conn.prepare(include_str!("sql/absorb_new_addresses.sql"))?;
    let ips: Vec<String> = stmt.query_map([], |r| r.get(0))?.collect::<duckdb::Result<_>>()?;
    if ips.is_empty() {
        return Ok(());
    }
    let mut versions = Vec::with_capacity(ips.len());
    let mut hexes = Vec::with_capacity(ips.len());
    for ip in &ips {
        // Not an address (0, ''): kept, so it is not looked at again, but matches no range.
        let (version, hex) = network::parse_ip(ip).map_or((0, String::new()), |(v, ver)| (ver, network::hex(v)));
        versions.push(Value::Int(i32::from(version)));
        hexes.push(Value::Text(hex));
    }
    let ips = ips.into_iter().map(Value::Text).collect();
    conn.execute(
        include_str!("sql/ip_addresses_insert.sql"),
        duckdb::params![Value::List(ips), Value::List(versions), Value::List(hexes)],
    )
    .context("storing new addresses")?;
    Ok(())
}
