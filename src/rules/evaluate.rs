//! Runs one rule over an event-time period and brings its findings up to date.
//!
//! Contract: the rule's evidence with event time in [from, to) is replaced by what the rule
//! returns now, in one transaction with the findings it touches. A rule decides whether an
//! event matches from the data alone (its times, never the wall clock), so evaluating a
//! period twice, or in pieces, leaves the same evidence.

use super::rule::{Rule, RuleError};
use super::script::{self, timestamp};
use crate::store::append::{Linked, link_in};
use anyhow::{Context, Result, bail};
use duckdb::types::Value;

const RULE_EVIDENCE: &str = include_str!("sql/rule_evidence.sql");
const EVIDENCE_CHANGES: &str = include_str!("sql/evidence_changes.sql");
const REPLACE_EVIDENCE: &str = include_str!("sql/replace_evidence.sql");
const FINDING_TOTALS: &str = include_str!("sql/finding_totals.sql");
const WHOLE_TOTALS: &str = include_str!("sql/whole_totals.sql");
const REFRESH_FINDINGS: &str = include_str!("sql/refresh_findings.sql");

/// Columns a rule must return (others are cast; `NULL AS principal_id` has no type of its own).
const REQUIRED: [&str; 5] = ["time", "evidence_table", "row_id", "principal_id", "entity"];
const TIME_TYPES: [&str; 2] = ["TIMESTAMP WITH TIME ZONE", "TIMESTAMP"];
/// Columns a rule may return; missing ones are NULL. Constant text, spliced into the statement.
const OPTIONAL: [(&str, &str); 2] = [("end_time", "TIMESTAMPTZ"), ("detail", "VARCHAR")];

/// What one rule run did.
#[derive(Debug, Clone)]
pub struct RuleRun {
    pub rule_id: String,
    /// The period evaluated, microseconds since the epoch, [from, to).
    pub from: i64,
    pub to: i64,
    /// Evidence events the rule returned for the period.
    pub evidence: u64,
    /// Findings raised for the first time.
    pub raised: Vec<i64>,
    /// Findings brought up to date from the period's change alone, and from all their
    /// evidence (finding_totals.sql).
    pub totals_from_period: u64,
    pub totals_read_whole: u64,
    pub elapsed: std::time::Duration,
}

/// The values of the rule's parameters, in the statement's order.
fn bind_rule(stmt: &duckdb::Statement<'_>, rule: &Rule, from: i64, to: i64) -> Result<Vec<Value>> {
    let mut named: Vec<(&str, Value)> = vec![("from", timestamp(from)), ("to", timestamp(to))];
    for param in &rule.params {
        named.push((param.name.as_str(), param.effective().to_duckdb()));
    }
    script::bind(stmt, &named).map_err(|_| {
        let undeclared: Vec<String> = (1..=stmt.parameter_count())
            .filter_map(|i| stmt.parameter_name(i).ok())
            .filter(|name| !named.iter().any(|(n, _)| n == name))
            .map(|name| format!("${name}"))
            .collect();
        anyhow::anyhow!(
            "the query uses {}, which the header does not declare (`-- param: name = default`)",
            undeclared.join(", ")
        )
    })
}

/// Runs the rule's query into the temp table `rule_output`. Its columns are checked once, by
/// [`check`] when the detector opens: they depend on the query and the schema alone.
fn run_query(conn: &duckdb::Connection, rule: &Rule, from: i64, to: i64) -> Result<()> {
    // The rule file is code written to be run; its values come in as parameters. The optional
    // columns it does not return are added by name as NULL (no ALTER TABLE on every run).
    let optional: Vec<String> = OPTIONAL.iter().map(|(name, ty)| format!("NULL::{ty} AS {name}")).collect();
    let sql = format!(
        "CREATE OR REPLACE TEMP TABLE rule_output AS\n(\n{}\n)\nUNION ALL BY NAME\nSELECT {} WHERE false\n",
        rule.sql,
        optional.join(", ")
    );
    let mut stmt = conn.prepare(&sql).context("the query is not valid")?;
    let values = bind_rule(&stmt, rule, from, to)?;
    stmt.execute(duckdb::params_from_iter(values)).context("the query failed")?;
    Ok(())
}

/// Whether `rule_output` has the columns a rule must return, of the right types.
fn check_columns(conn: &duckdb::Connection) -> Result<()> {
    let columns: Vec<(String, String)> = conn
        .prepare("SELECT name, type FROM pragma_table_info('rule_output')")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<duckdb::Result<_>>()?;
    for name in REQUIRED {
        match columns.iter().find(|(n, _)| n == name) {
            None => bail!(
                "the query returns no `{name}` column (it must return time, evidence_table, row_id, principal_id, \
                 entity, and may return end_time, detail)"
            ),
            Some((_, ty)) if name == "time" && !TIME_TYPES.contains(&ty.as_str()) => {
                bail!("the query's `time` column is {ty}, not TIMESTAMPTZ")
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Checks that `rule` runs against this database: its query is valid, its parameters
/// are declared and its columns are right. Runs it over an empty period and keeps nothing.
pub fn check(conn: &duckdb::Connection, rule: &Rule) -> Result<(), RuleError> {
    conn.execute_batch("BEGIN TRANSACTION").map_err(|e| rule_error(rule, anyhow::Error::from(e)))?;
    let outcome = run_query(conn, rule, 0, 0).and_then(|()| check_columns(conn));
    let _ = conn.execute_batch("ROLLBACK");
    outcome.map_err(|error| rule_error(rule, error))
}

pub fn rule_error(rule: &Rule, error: anyhow::Error) -> RuleError {
    RuleError { origin: rule.origin.to_string(), rule_id: Some(rule.id.clone()), reason: format!("{error:#}") }
}

/// Evaluates `rule` over [from, to) and updates its evidence and findings (`refresh`: the
/// findings it touches even if its evidence did not change, for a changed title or severity).
/// A person changing a finding's status meanwhile can make the transaction fail on a
/// write conflict: it is then run again (`store::retrying_conflicts`). The status changes
/// it writes to finding_history are chained in the same transaction
/// (`store::append::link_in`), whose lock is let go once it has committed.
pub fn run(conn: &duckdb::Connection, rule: &Rule, from: i64, to: i64, refresh: bool) -> Result<RuleRun> {
    run_with(conn, rule, from, to, refresh, None)
}

/// What runs on a rule's output before its evidence is taken from it.
pub type AfterQuery<'a> = &'a dyn Fn(&duckdb::Connection) -> Result<()>;

/// [`run`], with `after_query` run on the rule's output (`rule_output`) before its
/// evidence is taken from it, in the same transaction.
pub fn run_with(
    conn: &duckdb::Connection,
    rule: &Rule,
    from: i64,
    to: i64,
    refresh: bool,
    after_query: Option<AfterQuery<'_>>,
) -> Result<RuleRun> {
    let started = std::time::Instant::now();
    let done = crate::store::retrying_conflicts(|| {
        crate::store::in_transaction(conn, |conn| run_in_transaction(conn, rule, from, to, refresh, after_query))
    })?;
    let elapsed = started.elapsed();
    tracing::debug!(
        rule = %rule.id,
        from_us = from,
        to_us = to,
        elapsed_ms = elapsed.as_millis() as u64,
        totals_from_period = done.totals_from_period,
        totals_read_whole = done.totals_read_whole,
        "rule ran"
    );
    Ok(RuleRun {
        rule_id: rule.id.clone(),
        from,
        to,
        evidence: done.evidence,
        raised: done.raised,
        totals_from_period: done.totals_from_period,
        totals_read_whole: done.totals_read_whole,
        elapsed,
    })
}

/// What a rule's transaction did; `_linked` holds the history chain's lock until it commits.
#[derive(Default)]
struct Done {
    evidence: u64,
    raised: Vec<i64>,
    totals_from_period: u64,
    totals_read_whole: u64,
    _linked: Option<Linked>,
}

fn run_in_transaction(
    conn: &duckdb::Connection,
    rule: &Rule,
    from: i64,
    to: i64,
    refresh: bool,
    after_query: Option<AfterQuery<'_>>,
) -> Result<Done> {
    run_query(conn, rule, from, to)?;
    if let Some(after_query) = after_query {
        after_query(conn)?;
    }
    let window = [("rule_id", Value::Text(rule.id.clone())), ("from", timestamp(from)), ("to", timestamp(to))];
    // Most runs find nothing where nothing was: then there is nothing to update.
    let (returned, stored): (i64, i64) = conn.query_row(
        include_str!("sql/rule_counts.sql"),
        [Value::Text(rule.id.clone()), timestamp(from), timestamp(to)],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if returned == 0 && stored == 0 && !refresh {
        return Ok(Done::default());
    }
    script::run(conn, "rule_evidence.sql", RULE_EVIDENCE, &window)?;
    let evidence: i64 = conn.query_row("SELECT count(*) FROM new_evidence", [], |r| r.get(0))?;
    // Or the same evidence as before: the findings stay as they are.
    let changes: i64 = script::value(conn, "evidence_changes.sql", EVIDENCE_CHANGES, &window)?;
    if changes == 0 && !refresh {
        return Ok(Done { evidence: evidence as u64, ..Done::default() });
    }
    script::run(conn, "replace_evidence.sql", REPLACE_EVIDENCE, &window)?;
    script::run(conn, "finding_totals.sql", FINDING_TOTALS, &window)?;
    // Findings the period's change does not settle: their evidence is read from the earliest
    // time it can have, so that older evidence is not read pass after pass.
    let (from_period, whole, read_from): (i64, i64, Option<i64>) = conn.query_row(
        "SELECT (SELECT count(*) FROM finding_totals), count(*), \
                CASE WHEN bool_or(read_from IS NULL) THEN NULL ELSE epoch_us(min(read_from)) END \
         FROM read_whole",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    if whole > 0 {
        let read_from = [("read_from", read_from.map_or(Value::Null, timestamp))];
        script::run(conn, "whole_totals.sql", WHOLE_TOTALS, &read_from)?;
    }
    let finding = [
        ("rule_id", Value::Text(rule.id.clone())),
        ("title", Value::Text(rule.title.clone())),
        ("severity", Value::Text(rule.severity.as_str().to_owned())),
    ];
    script::run(conn, "refresh_findings.sql", REFRESH_FINDINGS, &finding)?;
    let raised: Vec<i64> = conn
        .prepare("SELECT id FROM new_findings ORDER BY id")?
        .query_map([], |r| r.get(0))?
        .collect::<duckdb::Result<_>>()?;
    // The status changes written (a row of finding_history per raised finding and per
    // row of finding_changes) are chained before the commit. Most refreshes change only
    // counts and times, and have nothing to link.
    let changed: i64 = conn.query_row("SELECT count(*) FROM finding_changes", [], |r| r.get(0))?;
    let linked = if raised.is_empty() && changed == 0 { None } else { Some(link_in(conn, "finding_history")?) };
    Ok(Done {
        evidence: evidence as u64,
        raised,
        totals_from_period: from_period as u64,
        totals_read_whole: whole as u64,
        _linked: linked,
    })
}
