//! The outbox in DuckDB: routing events to destinations, grouping them into messages,
//! and recording every delivery attempt. Each function is one transaction, so a crash
//! leaves each event either routed or not, each group either made into a message or not,
//! and each message either acknowledged or still pending (sent again after a restart).

use super::claims;
use super::config::{Alerts, Destination};
use super::payload::{self, AlertStatus, FindingView};
use crate::rules::Severity;
use crate::store::Store;
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use duckdb::types::{TimeUnit, Value};
use std::collections::{BTreeMap, BTreeSet};

const ALERT_FINDINGS: &str = include_str!("sql/alert_findings.sql");

/// One row of `alert_pending`: event id, finding id, change, and when the change was
/// made (µs).
type Item = (i64, i64, String, i64);

/// What a finding's changes are grouped by for messages: its rule and principal, or,
/// when it is about no principal, its rule and entity.
pub fn group_key(finding: &FindingView) -> String {
    match &finding.principal_id {
        Some(principal) => format!("{}|principal={principal}", finding.rule_id),
        None => format!("{}|{}", finding.rule_id, finding.entity),
    }
}

/// Changes that ask for attention; the others (`resolved`, `withdrawn`) end it.
const FIRING: [&str; 3] = ["raised", "updated", "reopened"];

/// Events routed in one pass at most (the rest wait for the next).
const ROUTE_BATCH: usize = 10_000;

fn timestamp(t: DateTime<Utc>) -> Value {
    Value::Timestamp(TimeUnit::Microsecond, t.timestamp_micros())
}

fn micros(t: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t).unwrap_or_default()
}

fn ids(values: impl IntoIterator<Item = i64>) -> Value {
    Value::List(values.into_iter().map(Value::BigInt).collect())
}

/// The findings `ids`, as messages show them.
pub fn findings(conn: &duckdb::Connection, ids_wanted: &[i64]) -> Result<Vec<FindingView>> {
    let mut stmt = conn.prepare(ALERT_FINDINGS).context("alert_findings.sql")?;
    let rows = stmt.query_map([ids(ids_wanted.iter().copied())], |r| {
        Ok(FindingView {
            id: r.get(0)?,
            fingerprint: r.get(1)?,
            rule_id: r.get(2)?,
            title: r.get(3)?,
            severity: r.get(4)?,
            status: r.get(5)?,
            principal_id: r.get(6)?,
            principal_name: r.get(7)?,
            entity: r.get(8)?,
            account: r.get(9)?,
            first_seen: micros(r.get(10)?),
            last_seen: micros(r.get(11)?),
            count: r.get(12)?,
            summary: r.get(13)?,
        })
    })?;
    rows.collect::<duckdb::Result<_>>().context("alert_findings.sql")
}

/// The destinations of the routes `finding` matches.
pub fn destinations<'a>(alerts: &'a Alerts, finding: &FindingView) -> BTreeSet<&'a str> {
    let severity = Severity::parse(&finding.severity);
    let mut to: BTreeSet<&str> = BTreeSet::new();
    for route in alerts.routes.iter().filter(|r| r.matches(&finding.rule_id, severity, finding.account.as_deref())) {
        to.extend(route.destinations.iter().map(String::as_str));
    }
    to
}

/// An unrouted event and the claim of its episode ([`super::claims`]).
struct Unrouted {
    id: i64,
    finding: i64,
    change: String,
    /// The episode's claim: won, and by whom; `None` when there is none.
    claim: Option<(bool, String)>,
    /// The episode's raised or reopened event is not routed yet either.
    opening_unrouted: bool,
    /// The instance the finding was taken in from, when it was not raised here.
    raised_on: Option<String>,
}

/// Routes every event not yet routed to the destinations of the routes it matches, and
/// gives up the pending messages of destinations no longer configured. Returns how many
/// events it routed.
///
/// With claims ([`Alerts::claims`]), an event of an episode claimed by another instance
/// goes to no message (`message_id` 0, `claimed by instance <holder>`), and an event whose
/// episode waits for its claim (not made yet, or storage unreachable) stays unrouted. An
/// event of a finding taken in from another instance and never raised here goes to no
/// message (`raised on instance <raiser>, which sends its alerts`).
pub fn route(store: &Store, alerts: &Alerts) -> Result<usize> {
    let claiming = alerts.claims.is_some();
    store
        .transaction(|conn| {
            let configured: Vec<Value> = alerts.destinations.iter().map(|d| Value::Text(d.name.clone())).collect();
            conn.execute(include_str!("sql/dead_unconfigured.sql"), [Value::List(configured)])?;
            let events: Vec<Unrouted> = conn
                .prepare(include_str!("sql/unrouted_events.sql"))?
                .query_map([ROUTE_BATCH as i64], |r| {
                    let won: Option<bool> = r.get(3)?;
                    let holder: Option<String> = r.get(4)?;
                    Ok(Unrouted {
                        id: r.get(0)?,
                        finding: r.get(1)?,
                        change: r.get(2)?,
                        claim: won.map(|w| (w, holder.unwrap_or_default())),
                        opening_unrouted: r.get(5)?,
                        raised_on: r.get(6)?,
                    })
                })?
                .collect::<duckdb::Result<_>>()?;
            if events.is_empty() {
                return Ok(0);
            }
            let wanted: BTreeSet<i64> = events.iter().map(|e| e.finding).collect();
            let found: BTreeMap<i64, FindingView> = if alerts.routes.is_empty() {
                BTreeMap::new()
            } else {
                findings(conn, &wanted.into_iter().collect::<Vec<_>>())?.into_iter().map(|f| (f.id, f)).collect()
            };
            let (mut destination, mut event_id, mut finding_id, mut change) = (vec![], vec![], vec![], vec![]);
            let (mut message_id, mut reason, mut routed) = (vec![], vec![], vec![]);
            for event in &events {
                let to = found.get(&event.finding).map(|f| destinations(alerts, f)).unwrap_or_default();
                let superseded = match &event.claim {
                    _ if to.is_empty() || !claiming => None,
                    Some((true, _)) => None,
                    Some((false, holder)) if holder == super::claims::UNREADABLE => {
                        Some(format!("{holder} in the shared lake: another instance may hold it"))
                    }
                    Some((false, holder)) => Some(format!("claimed by instance {holder}")),
                    // Its episode is claimed first (next pass, or when storage is back).
                    None if event.opening_unrouted => continue,
                    // No opening event here. A finding taken in and never raised here (resolved
                    // here, say): its raiser holds the episode's claim, takes the change in and
                    // sends it. Otherwise an episode opened before claims were made: sent as before.
                    None => event
                        .raised_on
                        .as_ref()
                        .map(|raiser| format!("raised on instance {raiser}, which sends its alerts")),
                };
                for name in to {
                    destination.push(Value::Text(name.to_owned()));
                    event_id.push(Value::BigInt(event.id));
                    finding_id.push(Value::BigInt(event.finding));
                    change.push(Value::Text(event.change.clone()));
                    message_id.push(if superseded.is_some() { Value::BigInt(0) } else { Value::Null });
                    reason.push(superseded.clone().map_or(Value::Null, Value::Text));
                }
                routed.push(event.id);
            }
            if !destination.is_empty() {
                conn.execute(
                    include_str!("sql/route_pending.sql"),
                    [
                        Value::List(destination),
                        Value::List(event_id),
                        Value::List(finding_id),
                        Value::List(change),
                        Value::List(message_id),
                        Value::List(reason),
                    ],
                )?;
            }
            conn.execute(
                "UPDATE alert_events SET routed_at = get_current_timestamp() WHERE list_contains(?::BIGINT[], id)",
                [ids(routed.iter().copied())],
            )?;
            Ok(routed.len())
        })
        .context("routing alert events")
}

/// What [`compose`] did.
#[derive(Debug, Default)]
pub struct Composed {
    pub messages: usize,
    /// Changes wait for their group's wait or interval until then.
    pub wait_until: Option<DateTime<Utc>>,
}

/// Makes messages of what waits for `destination`: resolutions at once; new and updated
/// findings by group ([`group_key`]): a group's first message `group_wait` after its
/// first change, then at most one per `group_interval` (all that came meanwhile in one).
pub fn compose(store: &Store, alerts: &Alerts, destination: &Destination, now: DateTime<Utc>) -> Result<Composed> {
    store
        .transaction(|conn| {
            let name = Value::Text(destination.name.clone());
            let items: Vec<Item> = conn
                .prepare(include_str!("sql/pending_events.sql"))?
                .query_map([name.clone()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect::<duckdb::Result<_>>()?;
            let mut composed = Composed::default();
            if items.is_empty() {
                return Ok(composed);
            }
            let (firing, resolved): (Vec<_>, Vec<_>) = items.into_iter().partition(|i| FIRING.contains(&i.2.as_str()));
            // A resolution supersedes the changes of the same finding before it: no message
            // about a finding that is already over.
            let (superseded, firing): (Vec<_>, Vec<_>) =
                firing.into_iter().partition(|f| resolved.iter().any(|r| r.1 == f.1 && r.0 > f.0));
            if !superseded.is_empty() {
                assign(conn, &destination.name, superseded.iter().map(|s| s.0), 0)?;
                conn.execute(
                    "UPDATE alert_pending SET superseded_reason = 'resolved before it was sent' \
                     WHERE destination = ? AND message_id = 0 AND superseded_reason IS NULL \
                     AND list_contains(?::BIGINT[], event_id)",
                    [Value::Text(destination.name.clone()), ids(superseded.iter().map(|s| s.0))],
                )?;
            }
            let mut groups: Vec<(AlertStatus, Option<String>, Vec<Item>)> = Vec::new();
            if !resolved.is_empty() {
                groups.push((AlertStatus::Resolved, None, resolved));
            }
            if !firing.is_empty() {
                let interval = chrono::TimeDelta::from_std(alerts.group_interval)?;
                let wait = chrono::TimeDelta::from_std(alerts.group_wait)?;
                if interval.is_zero() {
                    groups.extend(firing.into_iter().map(|f| (AlertStatus::Firing, None, vec![f])));
                } else {
                    let finding_ids: Vec<i64> =
                        firing.iter().map(|f| f.1).collect::<BTreeSet<_>>().into_iter().collect();
                    let keys: BTreeMap<i64, String> =
                        findings(conn, &finding_ids)?.iter().map(|f| (f.id, group_key(f))).collect();
                    let mut by_key: BTreeMap<String, Vec<Item>> = BTreeMap::new();
                    for item in firing {
                        // A finding gone since (it cannot be) still goes out, in a group of its own.
                        let key = keys.get(&item.1).cloned().unwrap_or_else(|| format!("finding={}", item.1));
                        by_key.entry(key).or_default().push(item);
                    }
                    let last = last_messages(conn, &destination.name, by_key.keys())?;
                    for (key, items) in by_key {
                        let first_change = items.iter().map(|i| i.3).min().unwrap_or_default();
                        let open_at = match last.get(&key) {
                            Some(sent) => micros(*sent) + interval,
                            None => micros(first_change) + wait,
                        };
                        if open_at > now {
                            composed.wait_until = Some(composed.wait_until.map_or(open_at, |w| w.min(open_at)));
                        } else {
                            groups.push((AlertStatus::Firing, Some(key), items));
                        }
                    }
                }
            }
            for (status, key, group) in groups {
                let finding_ids: Vec<i64> = group.iter().map(|g| g.1).collect::<BTreeSet<_>>().into_iter().collect();
                let views = findings(conn, &finding_ids)?;
                // A finding counts as new in this message if any of its changes raised it.
                let new: BTreeSet<i64> =
                    group.iter().filter(|g| g.2 == "raised" || g.2 == "reopened").map(|g| g.1).collect();
                let webhook_id = format!("msg_{:032x}", rand::random::<u128>());
                let body = payload::build(destination, alerts, status, &views, &new, now);
                let message_id: i64 = conn.query_row(
                    include_str!("sql/message_insert.sql"),
                    [
                        Value::Text(webhook_id),
                        name.clone(),
                        Value::Text(destination.kind.as_str().into()),
                        Value::Text(status.as_str().into()),
                        ids(views.iter().map(|v| v.id)),
                        Value::Text(body.to_string()),
                        timestamp(now),
                        timestamp(now),
                        timestamp(now + chrono::TimeDelta::from_std(alerts.give_up_after)?),
                        key.map_or(Value::Null, Value::Text),
                    ],
                    |r| r.get(0),
                )?;
                assign(conn, &destination.name, group.iter().map(|g| g.0), message_id)?;
                composed.messages += 1;
            }
            Ok(composed)
        })
        .with_context(|| format!("making alert messages for {}", destination.name))
}

/// When each of `keys` last had a firing message to `destination` (µs).
fn last_messages<'a>(
    conn: &duckdb::Connection,
    destination: &str,
    keys: impl Iterator<Item = &'a String>,
) -> Result<BTreeMap<String, i64>> {
    let keys = Value::List(keys.map(|k| Value::Text(k.clone())).collect());
    let mut stmt = conn.prepare(include_str!("sql/last_firing_messages.sql"))?;
    let rows = stmt.query_map([Value::Text(destination.into()), keys], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<duckdb::Result<_>>()?)
}

fn assign(conn: &duckdb::Connection, destination: &str, events: impl Iterator<Item = i64>, message: i64) -> Result<()> {
    conn.execute(
        "UPDATE alert_pending SET message_id = ? WHERE destination = ? AND list_contains(?::BIGINT[], event_id)",
        [Value::BigInt(message), Value::Text(destination.into()), ids(events)],
    )?;
    Ok(())
}

/// A message to send now.
#[derive(Debug, Clone)]
pub struct Due {
    pub id: i64,
    pub webhook_id: String,
    pub body: String,
    pub attempts: i32,
    pub give_up_at: DateTime<Utc>,
}

/// The oldest pending message of `destination` (messages go out in order), if its time
/// has come; otherwise when it will.
pub fn next_due(store: &Store, destination: &str, now: DateTime<Utc>) -> Result<(Option<Due>, Option<DateTime<Utc>>)> {
    let conn = store.connection()?;
    let head = conn
        .prepare(include_str!("sql/next_due_message.sql"))?
        .query_map([destination], |r| {
            let due = Due {
                id: r.get(0)?,
                webhook_id: r.get(1)?,
                body: r.get(2)?,
                attempts: r.get(3)?,
                give_up_at: micros(r.get(4)?),
            };
            Ok((due, micros(r.get(5)?)))
        })?
        .next()
        .transpose()?;
    Ok(match head {
        Some((due, at)) if at <= now => (Some(due), None),
        Some((_, at)) => (None, Some(at)),
        None => (None, None),
    })
}

/// Records that the destination acknowledged message `id`.
pub fn record_sent(store: &Store, id: i64, status: u16, now: DateTime<Utc>) -> Result<()> {
    store
        .connection()?
        .execute(
            include_str!("sql/message_sent.sql"),
            [timestamp(now), Value::Int(status as i32), timestamp(now), Value::BigInt(id)],
        )
        .context("recording a delivered alert message")?;
    Ok(())
}

/// Records a failed attempt: the next one at `retry_at`, or dead when `retry_at` is None.
pub fn record_failure(
    store: &Store,
    id: i64,
    status: Option<u16>,
    error: &str,
    retry_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<()> {
    let (delivery, next, dead_at) = match retry_at {
        Some(at) => ("pending", at, Value::Null),
        None => ("dead", now, timestamp(now)),
    };
    store
        .connection()?
        .execute(
            include_str!("sql/message_failed.sql"),
            [
                Value::Text(delivery.into()),
                timestamp(now),
                status.map_or(Value::Null, |s| Value::Int(s as i32)),
                Value::Text(error.into()),
                timestamp(next),
                dead_at,
                Value::BigInt(id),
            ],
        )
        .context("recording a failed alert delivery")?;
    Ok(())
}

/// What a manual retry found.
#[derive(Debug, PartialEq, Eq)]
pub enum Retry {
    /// Pending again, with a fresh give-up time.
    Queued,
    NotFound,
    /// Only dead messages are sent again by hand; this one is `pending` or `sent`.
    NotDead(String),
}

/// Sends dead message `id` again (same `webhook-id`, same body), on behalf of `by`.
pub fn retry(store: &Store, id: i64, by: &str) -> Result<Retry> {
    store
        .transaction(|conn| {
            let found: Option<(String, i64, i64)> = conn
                .prepare(
                    "SELECT delivery, epoch_us(created_at), epoch_us(give_up_at) FROM alert_messages WHERE id = ?",
                )?
                .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .next()
                .transpose()?;
            let (created, give_up) = match found {
                None => return Ok(Retry::NotFound),
                Some((delivery, created, give_up)) if delivery == "dead" => (created, give_up),
                Some((other, ..)) => return Ok(Retry::NotDead(other)),
            };
            // As long to give up as the message had at first, from now.
            let now = Utc::now();
            let give_up_at = now + chrono::TimeDelta::microseconds(give_up - created);
            conn.execute(
                include_str!("sql/message_retry.sql"),
                [timestamp(now), timestamp(give_up_at), Value::Text(by.into()), timestamp(now), Value::BigInt(id)],
            )?;
            Ok(Retry::Queued)
        })
        .context("retrying an alert message")
}

/// The unrouted raised and reopened events without a claim, oldest first, whose findings
/// some route sends somewhere (an instance never claims what it would not send).
pub fn claims_wanted(store: &Store, alerts: &Alerts) -> Result<Vec<claims::Wanted>> {
    let conn = store.connection()?;
    let events: Vec<(i64, i64, i64)> = conn
        .prepare(include_str!("sql/claims_wanted.sql"))?
        .query_map([claims::CLAIM_BATCH], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<duckdb::Result<_>>()
        .context("claims_wanted.sql")?;
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = events.iter().map(|e| e.1).collect();
    let found: BTreeMap<i64, _> = findings(&conn, &ids)?.into_iter().map(|f| (f.id, f)).collect();
    Ok(events
        .into_iter()
        .filter_map(|(event_id, finding_id, episode)| {
            let f = found.get(&finding_id)?;
            (!destinations(alerts, f).is_empty()).then(|| claims::Wanted {
                event_id,
                finding_id,
                fingerprint: f.fingerprint.clone(),
                rule_id: f.rule_id.clone(),
                episode,
            })
        })
        .collect())
}

/// One pass: claims every event that waits for a claim and records what came of it.
/// Blocks: call it from a blocking thread. Returns the claims made; a claim that failed is
/// counted and logged, and its event waits for the next pass.
pub fn claim_pending(
    store: &Store,
    alerts: &Alerts,
    claims: &claims::Claims,
    metrics: &crate::metrics::Metrics,
) -> Result<usize> {
    let wanted = claims_wanted(store, alerts)?;
    let mut outcomes = Vec::with_capacity(wanted.len());
    for w in wanted {
        let now = chrono::Utc::now();
        match claims.claim(&w.fingerprint, w.episode, &w.rule_id, now) {
            Ok(outcome) => {
                let label = if outcome == claims::Outcome::Won { "won" } else { "lost" };
                metrics.alert_claims.get_or_create(&crate::metrics::ClaimLabels { outcome: label.into() }).inc();
                match &outcome {
                    claims::Outcome::Won => {
                        tracing::debug!(finding = w.finding_id, episode = w.episode, "alert claim won")
                    }
                    claims::Outcome::Lost(holder) => {
                        tracing::info!(finding = w.finding_id, fingerprint = %w.fingerprint,
                        episode = w.episode, holder = %holder, "alert claimed by another instance; not sent here")
                    }
                }
                outcomes.push((w, outcome, now));
            }
            Err(error) => {
                metrics.alert_claim_failures.inc();
                tracing::warn!(finding = w.finding_id, fingerprint = %w.fingerprint, episode = w.episode,
                    lake = %claims.describe(), error = format!("{error:#}"),
                    "claiming an alert failed; it waits and is claimed again");
                // The lake is likely unreachable: the rest wait for the next pass too.
                break;
            }
        }
    }
    // Claims won but not recorded are found again (with this instance's name) next pass.
    claims::record(store, claims.instance(), &outcomes)?;
    Ok(outcomes.len())
}
