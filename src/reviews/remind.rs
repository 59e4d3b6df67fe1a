//! Reminders of access reviews through the alert destinations: a review not completed,
//! with items left, due within [`BEFORE`] or overdue, is announced to every destination
//! at most once per [`EVERY`]. Each reminder is a message in the alert outbox (delivered,
//! retried and listed like any alert) and a `reminded` row of the review's chained log,
//! written in one transaction. [`spawn`] looks every [`LOOK_EVERY`] while the service runs.

use super::{LOG, Person};
use crate::alerts::config::Alerts;
use crate::alerts::payload::{self, Notice};
use crate::store::Store;
use anyhow::Result;
use chrono::{DateTime, TimeDelta, Utc};
use duckdb::types::{TimeUnit, Value};

/// How long before its due date a review is first reminded of.
pub const BEFORE: TimeDelta = TimeDelta::days(2);
/// How often a review is reminded of, at most.
pub const EVERY: TimeDelta = TimeDelta::hours(24);

struct Due {
    id: i64,
    name: String,
    scope: String,
    due_at: DateTime<Utc>,
    items: i64,
    decided: i64,
    reviewers: Vec<Person>,
}

fn micros(t: DateTime<Utc>) -> Value {
    Value::Timestamp(TimeUnit::Microsecond, t.timestamp_micros())
}

/// How often the service looks for reviews to remind of; the destinations' senders pick
/// the messages up within the alerts' poll interval.
pub const LOOK_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// The thread that sends reminders while the service runs.
pub fn spawn(
    store: std::sync::Arc<Store>,
    alerts: Alerts,
    stop: tokio_util::sync::CancellationToken,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    crate::periodic::spawn_every("review-reminders", LOOK_EVERY, stop, move || {
        match send_due(&store, &alerts, Utc::now()) {
            Ok(0) => {}
            Ok(sent) => tracing::info!(messages = sent, "access review reminders queued"),
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), "queueing access review reminders failed; retrying")
            }
        }
    })
}

/// Sends the reminders due at `now`; returns how many messages went into the outbox.
pub fn send_due(store: &Store, alerts: &Alerts, now: DateTime<Utc>) -> Result<usize> {
    if alerts.destinations.is_empty() {
        return Ok(0);
    }
    let due: Vec<Due> = {
        let conn = store.connection()?;
        let mut stmt = conn.prepare(include_str!("sql/reminders_due.sql"))?;
        stmt.query_map([micros(now + BEFORE), micros(now - EVERY)], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, i64>(3)?, r.get(4)?, r.get(5)?, r.get::<_, String>(6)?))
        })?
        .collect::<duckdb::Result<Vec<_>>>()?
        .into_iter()
        .map(|(id, name, scope, due, items, decided, reviewers)| Due {
            id,
            name,
            scope,
            due_at: DateTime::from_timestamp_micros(due).unwrap_or(now),
            items,
            decided,
            reviewers: serde_json::from_str(&reviewers).unwrap_or_default(),
        })
        .collect()
    };
    let mut sent = 0;
    for review in due {
        sent += crate::store::append::append(store, LOG, |conn| remind(conn, alerts, &review, now))?;
    }
    Ok(sent)
}

fn remind(conn: &duckdb::Connection, alerts: &Alerts, review: &Due, now: DateTime<Utc>) -> Result<usize> {
    let due = review.due_at.format("%Y-%m-%d %H:%M UTC");
    let headline = if review.due_at <= now {
        format!("access review overdue since {due}")
    } else {
        format!("access review due {due}")
    };
    let reviewers: Vec<String> =
        review.reviewers.iter().map(|p| p.name.clone().unwrap_or_else(|| p.oid.clone())).collect();
    let notice = Notice {
        kind: "access_review_due",
        headline,
        lines: vec![
            ("Review", review.name.clone()),
            ("Scope", review.scope.clone()),
            ("Decided", format!("{} of {} items", review.decided, review.items)),
            ("Reviewers", reviewers.join(", ")),
        ],
        link_text: "Open the review",
        url: format!("{}/reviews/{}", alerts.ui_base_url, review.id),
        labels: vec![("review_id", review.id.to_string())],
    };
    let give_up = now + TimeDelta::from_std(alerts.give_up_after)?;
    let mut names = Vec::new();
    for destination in &alerts.destinations {
        let body = payload::notice(destination, &notice, now);
        let _message: i64 = conn.query_row(
            include_str!("../alerts/sql/message_insert.sql"),
            [
                Value::Text(format!("msg_{:032x}", rand::random::<u128>())),
                Value::Text(destination.name.clone()),
                Value::Text(destination.kind.as_str().into()),
                Value::Text("reminder".into()),
                Value::List(vec![]),
                Value::Text(body.to_string()),
                micros(now),
                micros(now),
                micros(give_up),
                Value::Text(format!("access_review={}", review.id)),
            ],
            |r| r.get(0),
        )?;
        names.push(destination.name.clone());
    }
    let detail = serde_json::json!({ "destinations": names, "decided": review.decided, "items": review.items });
    super::log(conn, review.id, None, "reminded", None, None, None, detail)?;
    Ok(names.len())
}
