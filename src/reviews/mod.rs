//! Access reviews (SOC 2 CC6.2/CC6.3; migrations/0020_access_reviews.sql): an Admin
//! starts a review of the role assignments in a scope, naming its reviewers and a due
//! date; each reviewer decides per assignment (approve, revoke, don't know) with a
//! justification. The review and its items are written once; every decision, reminder
//! and the completion is a row of the chained, append-only `access_review_log`
//! ([`crate::store::append`]).
//!
//! A reviewer may not decide on access they hold or granted: "granted" is read from the
//! control-plane history at the moment of the decision (any successful write of the
//! assignment by the reviewer's object id), not only from the item's snapshot.

pub mod graph;
pub mod remind;

use crate::store::Store;
use crate::store::chain::{TableDigest, hex};
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use duckdb::types::{TimeUnit, Value};

/// The chained table of what happens to reviews.
pub const LOG: &str = "access_review_log";

/// How much a justification may say.
pub const JUSTIFICATION_CHARS: usize = 2000;

/// A person, as reviews record them.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Person {
    pub oid: String,
    pub name: Option<String>,
}

/// What a reviewer decides, in our words and Graph's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Revoke,
    DontKnow,
}

impl Decision {
    pub fn parse(text: &str) -> Option<Decision> {
        match text {
            "approve" => Some(Decision::Approve),
            "revoke" => Some(Decision::Revoke),
            "dont_know" => Some(Decision::DontKnow),
            _ => None,
        }
    }

    /// Microsoft Graph's `accessReviewInstanceDecisionItem.decision`.
    pub fn graph(self) -> &'static str {
        match self {
            Decision::Approve => "Approve",
            Decision::Revoke => "Deny",
            Decision::DontKnow => "DontKnow",
        }
    }

    /// Ours, from Graph's word as the log stores it.
    pub fn ours(graph: &str) -> &'static str {
        match graph {
            "Approve" => "approve",
            "Deny" => "revoke",
            "DontKnow" => "dont_know",
            _ => "not_reviewed",
        }
    }
}

/// Why a call on a review was refused: each says what to do instead.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("no access review {0}")]
    NoReview(i64),
    #[error("access review {0} has no item {1}")]
    NoItem(i64, i64),
    #[error("you are not a reviewer of this review: an Admin names its reviewers when starting it")]
    NotReviewer,
    #[error("this is your own access: another reviewer must decide it")]
    OwnAccess,
    #[error("{0}: another reviewer must decide it")]
    GrantedIt(String),
    #[error("the review was completed {0}: decisions can no longer change")]
    Completed(String),
    #[error("{0}")]
    Invalid(String),
}

/// A review to start.
#[derive(Debug, Clone)]
pub struct NewReview {
    pub name: String,
    /// ARM path (any case), an account name, or '/' for every assignment.
    pub scope: String,
    pub reviewers: Vec<Person>,
    pub due_at: DateTime<Utc>,
    /// Items show their use over [since, until).
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

fn timestamp(t: DateTime<Utc>) -> Value {
    Value::Timestamp(TimeUnit::Microsecond, t.timestamp_micros())
}

/// How finding history and the log name a person: "name (oid …)".
fn shown(person: &Person) -> String {
    match &person.name {
        Some(name) => format!("{name} (oid {})", person.oid),
        None => format!("oid {}", person.oid),
    }
}

/// Starts a review: its items, as they are now, and its `started` log row holding their
/// SHA-256, in one transaction. Returns its id.
pub fn start(store: &Store, review: &NewReview, by: &Person) -> Result<i64> {
    let name = review.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(Refused::Invalid("name: give the review a name of 1 to 200 characters".into()).into());
    }
    if review.reviewers.is_empty() || review.reviewers.len() > 20 {
        return Err(Refused::Invalid("reviewers: name 1 to 20 reviewers (object ids)".into()).into());
    }
    let scope = normalise_scope(&review.scope);
    let reviewers = serde_json::to_string(&review.reviewers)?;
    crate::store::append::append(store, LOG, |conn| {
        let id: i64 = conn.query_row(
            include_str!("sql/review_insert.sql"),
            [
                Value::Text(name.to_string()),
                Value::Text(scope.clone()),
                Value::Text(reviewers.clone()),
                timestamp(review.since),
                timestamp(review.until),
                timestamp(review.due_at),
                Value::Text(shown(by)),
                Value::Text(by.oid.clone()),
            ],
            |r| r.get(0),
        )?;
        let items = conn.execute(
            include_str!("sql/items_insert.sql"),
            [Value::BigInt(id), timestamp(review.since), timestamp(review.until), Value::Text(scope.clone())],
        )?;
        if items == 0 {
            return Err(Refused::Invalid(format!(
                "no role assignment in scope {scope:?} was in force at {}: take an inventory (tokentrail inventory) or widen the scope",
                review.until.to_rfc3339()
            ))
            .into());
        }
        let digest = items_digest(conn, id)?;
        let detail = serde_json::json!({ "items": items, "items_sha256": digest });
        log(conn, id, None, "started", None, None, Some(by), detail)?;
        Ok(id)
    })
}

/// A scope as stored: lower case, no trailing slash; '/' for everything.
fn normalise_scope(scope: &str) -> String {
    let scope = scope.trim().to_lowercase();
    let trimmed = scope.trim_end_matches('/');
    if trimmed.is_empty() { "/".into() } else { trimmed.to_string() }
}

/// SHA-256 (hex) of a review's items in the chain's canonical encoding.
pub fn items_digest(conn: &duckdb::Connection, review_id: i64) -> Result<String> {
    let mut stmt = conn.prepare("SELECT * FROM access_review_items WHERE review_id = ?")?;
    let mut digest = TableDigest::new("access_review_items");
    for batch in stmt.query_arrow([review_id])? {
        digest.add(&batch)?;
    }
    Ok(hex(&digest.finish()))
}

#[allow(clippy::too_many_arguments)]
fn log(
    conn: &duckdb::Connection,
    review: i64,
    item: Option<i64>,
    action: &str,
    decision: Option<&str>,
    justification: Option<&str>,
    by: Option<&Person>,
    detail: serde_json::Value,
) -> Result<()> {
    conn.execute(
        "INSERT INTO access_review_log (review_id, item_id, action, decision, justification, by_oid, by_name, logged_at, detail)
         VALUES (?, ?, ?, ?, ?, ?, ?, get_current_timestamp(), ?)",
        [
            Value::BigInt(review),
            item.map_or(Value::Null, Value::BigInt),
            Value::Text(action.into()),
            decision.map_or(Value::Null, |d| Value::Text(d.into())),
            justification.map_or(Value::Null, |j| Value::Text(j.into())),
            by.map_or(Value::Null, |p| Value::Text(p.oid.clone())),
            by.map_or(Value::Null, |p| Value::Text(p.name.clone().unwrap_or_else(|| p.oid.clone()))),
            Value::Text(detail.to_string()),
        ],
    )?;
    Ok(())
}

/// A review's reviewers and its completion time, if any.
struct ReviewState {
    reviewers: Vec<Person>,
    completed_at: Option<String>,
    items: i64,
    decided: i64,
}

fn state(conn: &duckdb::Connection, review: i64) -> Result<ReviewState> {
    let row = conn.query_row(
        "SELECT reviewers::VARCHAR, strftime(completed_at, '%Y-%m-%d %H:%M UTC'), items, decided
         FROM access_review_status WHERE id = ?",
        [review],
        |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?, r.get(2)?, r.get(3)?)),
    );
    let (reviewers, completed_at, items, decided) = match row {
        Ok(row) => row,
        Err(duckdb::Error::QueryReturnedNoRows) => return Err(Refused::NoReview(review).into()),
        Err(e) => return Err(e.into()),
    };
    let reviewers = serde_json::from_str(&reviewers).context("access_reviews.reviewers is not a list of people")?;
    Ok(ReviewState { reviewers, completed_at, items, decided })
}

/// Whether `who` may decide on item `item` of `review`: Ok, or why not.
pub fn may_decide(conn: &duckdb::Connection, review: i64, item: i64, who: &str) -> Result<()> {
    let state = state(conn, review)?;
    if let Some(at) = state.completed_at {
        return Err(Refused::Completed(at).into());
    }
    if !state.reviewers.iter().any(|r| r.oid.eq_ignore_ascii_case(who)) {
        return Err(Refused::NotReviewer.into());
    }
    refusal(conn, review, item, who)
}

/// Why `who` may not decide `item` whatever the review's state (own access, a grant of
/// theirs), or Ok.
pub fn refusal(conn: &duckdb::Connection, review: i64, item: i64, who: &str) -> Result<()> {
    let found = conn.query_row(
        include_str!("sql/item_conflict.sql"),
        [Value::BigInt(review), Value::BigInt(item), Value::Text(who.to_lowercase())],
        |r| Ok((r.get::<_, bool>(0)?, r.get::<_, Option<String>>(1)?)),
    );
    match found {
        Err(duckdb::Error::QueryReturnedNoRows) => Err(Refused::NoItem(review, item).into()),
        Err(e) => Err(e.into()),
        Ok((true, _)) => Err(Refused::OwnAccess.into()),
        Ok((false, Some(granted))) => Err(Refused::GrantedIt(granted).into()),
        Ok((false, None)) => Ok(()),
    }
}

/// Records `by`'s decision on an item; completes the review when it was the last item
/// without one. Returns whether the review completed.
pub fn decide(
    store: &Store,
    review: i64,
    item: i64,
    decision: Decision,
    justification: &str,
    by: &Person,
) -> Result<bool> {
    let justification = justification.trim();
    if justification.is_empty() {
        return Err(Refused::Invalid("justification: say why (it is the evidence an auditor reads)".into()).into());
    }
    if justification.chars().count() > JUSTIFICATION_CHARS {
        return Err(Refused::Invalid(format!("justification: at most {JUSTIFICATION_CHARS} characters")).into());
    }
    crate::store::append::append(store, LOG, |conn| {
        // Checked inside the transaction that writes, under the log's lock: a completion
        // or another decision committed meanwhile is seen.
        may_decide(conn, review, item, &by.oid)?;
        log(
            conn,
            review,
            Some(item),
            "decided",
            Some(decision.graph()),
            Some(justification),
            Some(by),
            serde_json::json!({}),
        )?;
        let now = state(conn, review)?;
        let done = now.decided >= now.items;
        if done {
            let detail = counts(conn, review)?;
            log(conn, review, None, "completed", None, Some("every item decided"), Some(by), detail)?;
        }
        Ok(done)
    })
}

/// Completes a review by hand (items without a decision stay not reviewed).
pub fn complete(store: &Store, review: i64, by: &Person) -> Result<()> {
    crate::store::append::append(store, LOG, |conn| {
        let state = state(conn, review)?;
        if let Some(at) = state.completed_at {
            return Err(Refused::Completed(at).into());
        }
        let detail = counts(conn, review)?;
        log(conn, review, None, "completed", None, Some("completed by an Admin"), Some(by), detail)
    })
}

/// Decisions per kind, and items not reviewed.
fn counts(conn: &duckdb::Connection, review: i64) -> Result<serde_json::Value> {
    let text: String = conn.query_row(
        "SELECT json_object('items', count(*), 'approve', count(*) FILTER (WHERE decision = 'Approve'),
                'revoke', count(*) FILTER (WHERE decision = 'Deny'), 'dont_know', count(*) FILTER (WHERE decision = 'DontKnow'),
                'not_reviewed', count(*) FILTER (WHERE decision IS NULL))::VARCHAR
         FROM access_review_decisions WHERE review_id = ?",
        [review],
        |r| r.get(0),
    )?;
    Ok(serde_json::from_str(&text)?)
}
