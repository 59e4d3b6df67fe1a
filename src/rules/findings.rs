//! Finding lifecycle: open → acknowledged → resolved, or suppressed, changed by people
//! with who, when and a comment, and kept as history in `finding_history`. The engine
//! makes its own changes (raised, withdrawn, reopened) in `refresh_findings.sql`. A resolution
//! writes its alert event (`alert_events`, see `crate::alerts`) in the same transaction.
//! `finding_history` is append-only and chained (`crate::store::append`): each change is
//! linked in the transaction that writes it.

use crate::store::Store;
use anyhow::{Context, Result, bail};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Raised and waiting for someone.
    Open,
    /// Someone is on it.
    Acknowledged,
    /// Dealt with; newer evidence reopens it.
    Resolved,
    /// Known and accepted: it keeps updating but asks for nobody's attention.
    Suppressed,
    /// The engine's: no evidence is left (data that arrived later explained it).
    Withdrawn,
}

impl Status {
    pub fn parse(text: &str) -> Option<Status> {
        Some(match text.trim().to_ascii_lowercase().as_str() {
            "open" => Status::Open,
            "acknowledged" => Status::Acknowledged,
            "resolved" => Status::Resolved,
            "suppressed" => Status::Suppressed,
            "withdrawn" => Status::Withdrawn,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Acknowledged => "acknowledged",
            Status::Resolved => "resolved",
            Status::Suppressed => "suppressed",
            Status::Withdrawn => "withdrawn",
        }
    }

    /// Whether a person may move a finding from `self` to `to`.
    pub fn can_become(self, to: Status) -> bool {
        use Status::*;
        matches!(
            (self, to),
            (Open, Acknowledged | Resolved | Suppressed)
                | (Acknowledged, Open | Resolved | Suppressed)
                | (Resolved | Suppressed, Open)
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of a finding's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Wall clock, microseconds since the epoch.
    pub changed_at: i64,
    pub changed_by: String,
    pub from: Option<String>,
    pub to: String,
    pub comment: Option<String>,
}

/// Why a status change was not made (nothing was changed).
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("there is no finding {0}")]
    NoFinding(i64),
    #[error("finding {id} is {from}; it cannot become {to}")]
    CannotBecome { id: i64, from: Status, to: Status },
}

/// Moves finding `id` to `to` on behalf of `by`, with a comment, and records it, chained
/// ([`crate::store::append::append`]), in one transaction ([`Store::transaction`]: a
/// change that meets another change of the finding, someone's or detection's, is tried
/// again). What refuses it is a [`Refused`]
/// (or `store::Busy`) in the error.
pub fn set_status(store: &Store, id: i64, to: Status, by: &str, comment: &str) -> Result<()> {
    if by.trim().is_empty() {
        bail!("a status change needs the name of who makes it");
    }
    crate::store::append::append(store, "finding_history", |conn| {
        let current: Option<String> = conn
            .prepare("SELECT status FROM findings WHERE id = ?")?
            .query_map([id], |r| r.get(0))?
            .next()
            .transpose()?;
        let Some(current) = current else { return Err(Refused::NoFinding(id).into()) };
        let from =
            Status::parse(&current).with_context(|| format!("finding {id} has an unknown status {current:?}"))?;
        if !from.can_become(to) {
            return Err(Refused::CannotBecome { id, from, to }.into());
        }
        conn.execute(include_str!("sql/finding_status_update.sql"), duckdb::params![to.as_str(), by, comment, id])?;
        conn.execute(
            include_str!("sql/finding_history_insert.sql"),
            duckdb::params![id, by, from.as_str(), to.as_str(), comment],
        )?;
        if to == Status::Resolved {
            // The alert outbox (src/alerts), in the same transaction as the change.
            conn.execute(
                "INSERT INTO alert_events (finding_id, change, created_at) VALUES (?, 'resolved', get_current_timestamp())",
                [id],
            )?;
        }
        Ok(())
    })
}

/// The history of finding `id`, oldest first.
pub fn history(store: &Store, id: i64) -> Result<Vec<Change>> {
    let conn = store.connection()?;
    let mut stmt = conn.prepare(include_str!("sql/finding_history.sql"))?;
    let rows = stmt.query_map([id], |r| {
        Ok(Change { changed_at: r.get(0)?, changed_by: r.get(1)?, from: r.get(2)?, to: r.get(3)?, comment: r.get(4)? })
    })?;
    Ok(rows.collect::<duckdb::Result<_>>()?)
}
