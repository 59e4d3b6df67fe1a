//! One finding, one alert across instances (migration 27). Instances reading the same
//! broadcast hubs raise the same findings, with the same fingerprint. With
//! `[eventhubs.balance] shared_lake`, each instance claims a finding's episode in that lake
//! before routing its alerts: `claims/alerts/<fingerprint>/<episode>.json`, written
//! create-if-absent, so exactly one instance writes it. An episode starts with a `raised`
//! or `reopened` change; `episode` counts the finding's raised and reopened changes before
//! it, from this instance's `alert_events`. The instance that won the claim sends the
//! episode's alerts (its raised or reopened, updated, resolved, withdrawn changes); the
//! others route them to no message (`alert_pending.message_id` 0) with the reason
//! `claimed by instance <holder>`.
//!
//! - A claim is a network call, made on a blocking thread and never inside a DuckDB
//!   transaction; its outcome is recorded in `alert_claims` afterwards.
//! - A claim that cannot be made (storage unreachable) sends nothing and drops nothing:
//!   the event stays unrouted and is claimed again next pass (`tokentrail_alert_claim_failures_total`).
//! - A claim file already there with this instance's name is this instance's own (made
//!   before a crash, not yet recorded): won. One that is not a claim of this fingerprint
//!   and episode is lost to `unreadable claim`, and logged.

use crate::lake::{Lake, Put};
use crate::store::Store;
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use duckdb::types::{TimeUnit, Value};
use serde::{Deserialize, Serialize};

/// The holder named when an existing claim file cannot be read as a claim of its episode.
pub const UNREADABLE: &str = "unreadable claim";

/// Claims made in one pass at most (the rest wait for the next).
pub const CLAIM_BATCH: i64 = 1_000;

/// Where the claims go and who this instance is.
pub struct Claims {
    lake: Lake,
    instance: String,
}

impl std::fmt::Debug for Claims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claims").field("lake", &self.lake.describe()).field("instance", &self.instance).finish()
    }
}

/// A claim file's body.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claim {
    pub fingerprint: String,
    pub episode: i64,
    pub instance: String,
    pub rule_id: String,
    /// RFC 3339, UTC.
    pub claimed_at: String,
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Won,
    /// Held by another instance (its name), or [`UNREADABLE`].
    Lost(String),
}

/// `claims/alerts/<fingerprint>/<episode>.json`; a fingerprint with other characters than
/// ASCII letters, digits, `-` and `_` (or longer than 128) is named by its SHA-256 instead.
pub fn key(fingerprint: &str, episode: i64) -> String {
    let safe = !fingerprint.is_empty()
        && fingerprint.len() <= 128
        && fingerprint.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let name = if safe {
        fingerprint.to_owned()
    } else {
        format!("sha256-{}", crate::lake::sha256_hex(fingerprint.as_bytes()))
    };
    format!("claims/alerts/{name}/{episode}.json")
}

impl Claims {
    pub fn new(lake: Lake, instance: impl Into<String>) -> Claims {
        Claims { lake, instance: instance.into() }
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn describe(&self) -> &str {
        self.lake.describe()
    }

    /// Claims episode `episode` of `fingerprint`. Blocks (the lake's own runtime): call it
    /// from a blocking thread. An error means nothing is known: try again later.
    pub fn claim(&self, fingerprint: &str, episode: i64, rule_id: &str, now: DateTime<Utc>) -> Result<Outcome> {
        let claim = Claim {
            fingerprint: fingerprint.to_owned(),
            episode,
            instance: self.instance.clone(),
            rule_id: rule_id.to_owned(),
            claimed_at: now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        };
        let relative = key(fingerprint, episode);
        let body = serde_json::to_vec(&claim).context("encoding an alert claim")?;
        Ok(match self.lake.put_new(&relative, body.into())? {
            Put::Written => Outcome::Won,
            Put::Existed(bytes) => match serde_json::from_slice::<Claim>(&bytes) {
                Ok(found) if found.fingerprint == fingerprint && found.episode == episode => {
                    if found.instance == self.instance { Outcome::Won } else { Outcome::Lost(found.instance) }
                }
                Ok(found) => {
                    tracing::warn!(claim = %relative, lake = %self.describe(), found_episode = found.episode,
                        "an alert claim names another fingerprint or episode; counted as lost, nothing sent");
                    Outcome::Lost(UNREADABLE.into())
                }
                Err(error) => {
                    tracing::warn!(claim = %relative, lake = %self.describe(), bytes = bytes.len(), error = %error,
                        "an alert claim is not a claim; counted as lost, nothing sent");
                    Outcome::Lost(UNREADABLE.into())
                }
            },
        })
    }
}

/// A raised or reopened event waiting for its claim.
#[derive(Debug, Clone)]
pub struct Wanted {
    pub event_id: i64,
    pub finding_id: i64,
    pub fingerprint: String,
    pub rule_id: String,
    pub episode: i64,
}

/// A claim made: what was claimed, what came of it, when.
pub type Made = (Wanted, Outcome, DateTime<Utc>);

/// Records claims' outcomes (one transaction); `instance` holds those won.
pub fn record(store: &Store, instance: &str, outcomes: &[Made]) -> Result<()> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let list = |f: &dyn Fn(&Made) -> Value| Value::List(outcomes.iter().map(f).collect());
    store
        .transaction(|conn| {
            conn.execute(
                include_str!("sql/claims_record.sql"),
                [
                    list(&|o| Value::BigInt(o.0.event_id)),
                    list(&|o| Value::BigInt(o.0.finding_id)),
                    list(&|o| Value::Text(o.0.fingerprint.clone())),
                    list(&|o| Value::Int(o.0.episode as i32)),
                    list(&|o| Value::Boolean(o.1 == Outcome::Won)),
                    list(&|o| {
                        Value::Text(match &o.1 {
                            Outcome::Won => instance.to_owned(),
                            Outcome::Lost(holder) => holder.clone(),
                        })
                    }),
                    list(&|o| Value::Timestamp(TimeUnit::Microsecond, o.2.timestamp_micros())),
                ],
            )?;
            Ok(())
        })
        .context("recording alert claims")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_names_are_safe_in_any_object_store() {
        assert_eq!(key("0123abcdef", 2), "claims/alerts/0123abcdef/2.json");
        for hostile in ["../../x", "a/b", "", "é", &"f".repeat(129)] {
            let name = key(hostile, 0);
            let part = name.strip_prefix("claims/alerts/sha256-").and_then(|n| n.strip_suffix("/0.json")).unwrap();
            assert!(part.len() == 64 && part.chars().all(|c| c.is_ascii_hexdigit()), "{hostile:?}: {name}");
        }
    }
}
