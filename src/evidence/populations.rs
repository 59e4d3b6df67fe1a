//! The populations of each criterion: a name, what it shows, and the SQL that makes it
//! (`src/evidence/sql/*.sql`, with named parameters bound, never values in the text).

use super::{Criterion, Period};
use crate::rules::rule::Rule;
use crate::rules::script;
use anyhow::{Context, Result};
use arrow::record_batch::RecordBatch;
use duckdb::types::Value;

/// One population of a pack.
#[derive(Debug, Clone, Copy)]
pub struct Population {
    pub criterion: Criterion,
    /// File name stem, e.g. `auth_methods`.
    pub name: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub sql: &'static str,
}

macro_rules! population {
    ($criterion:ident, $name:literal, $file:literal, $title:literal, $description:literal) => {
        Population {
            criterion: Criterion::$criterion,
            name: $name,
            title: $title,
            description: $description,
            sql: include_str!(concat!("sql/", $file, ".sql")),
        }
    };
}

pub const ALL: &[Population] = &[
    population!(
        Cc6_1,
        "auth_methods",
        "cc6_1_auth_methods",
        "Authentication methods",
        "Cosmos DB requests per account by how they authenticated: Entra ID, account key, resource token."
    ),
    population!(
        Cc6_1,
        "key_access",
        "cc6_1_key_access",
        "Key-based access",
        "Requests without an identity (account keys, resource tokens) by account, client address and application."
    ),
    population!(
        Cc6_1,
        "key_access_events",
        "cc6_1_key_access_events",
        "Key-based requests, one by one",
        "Every request without an identity (account key, resource token) in the period, with a stable id, where its record came from (file and line, or Event Hubs partition and sequence number) and the SHA-256 of the record as received: a sample of them traces to the original log record (tokentrail evidence sample)."
    ),
    population!(
        Cc6_2,
        "entitlements_start",
        "cc6_2_entitlements_start",
        "Access at the period's start",
        "Every role assignment that reached Cosmos DB at the start of the period: data-plane roles, and Azure roles that may list the account keys or are assigned on an account. Each with who holds it (id, name, user, service principal, managed identity or group), the role and what it allows, where it applies, and who granted it and when (the Activity log's record), or the inventory that first saw it."
    ),
    population!(
        Cc6_2,
        "entitlements_end",
        "cc6_2_entitlements_end",
        "Access at the period's end",
        "The same list at the end of the period: compared with the start, it shows every access granted and removed."
    ),
    population!(
        Cc6_2,
        "grants",
        "cc6_2_grants",
        "Access granted in the period",
        "Every role assignment reaching Cosmos DB made in the period: who made it and from which IP address (the Activity log), to whom, which role, where. Assignments the inventory found new with no Activity log record are listed too, marked \"not in the Activity log\"."
    ),
    population!(
        Cc6_2,
        "removals",
        "cc6_2_removals",
        "Access removed in the period",
        "Every role assignment reaching Cosmos DB removed in the period: who removed it and from which IP address, whose it was, which role, where, and since when it had been held. Removals the inventory found with no Activity log record are marked \"not in the Activity log\"."
    ),
    population!(
        Cc6_2,
        "leavers",
        "cc6_2_leavers",
        "Leavers' access removed",
        "Each person who left (from the leavers lists imported and from Entra ID accounts disabled or deleted), each role assignment they held when they left, when it was removed, the hours it took, and whether that was on time, late or not done against the removal deadline (deadline_hours)."
    ),
    population!(
        Cc6_2,
        "principals",
        "cc6_2_principals",
        "Principals for access review",
        "Every principal seen up to the end of the period, and every one holding a role assignment at its end: new, active, dormant (not seen in the period, including holders of an assignment who were never seen) or group, with its activity in the period."
    ),
    population!(
        Cc6_2,
        "exceptions",
        "cc6_3_exceptions",
        "Least-privilege exceptions",
        "Role assignments at the end of the period that grant more than is used or needed, each with why: not used in the period (remove), used only to read (Data Reader instead), used in one container only (narrow the scope), or an over-broad scope (a key-listing Azure role on a subscription or resource group, wildcard data actions on a whole account)."
    ),
    population!(
        Cc6_2,
        "role_assignments",
        "cc6_3_role_assignments",
        "Role assignments in use",
        "Cosmos DB data-plane role assignments that allowed requests in the period, with the role's name, its scope, who holds it and who used it (ids and names), and how many requests."
    ),
    population!(
        Cc6_2,
        "access_reviews",
        "cc6_3_reviews",
        "Access reviews",
        "The access reviews open in the period: scope, reviewers, due date, who started each and when, items and items decided, when and by whom it was completed, and its state (open, overdue, completed) when the pack was made."
    ),
    population!(
        Cc6_2,
        "review_decisions",
        "cc6_3_review_decisions",
        "Access review decisions",
        "Every item of those reviews with its decision when the pack was made (Approve, Deny, DontKnow, or NotReviewed), who decided, when, the justification, and the id of the review log's entry that records it (the log is chained)."
    ),
    population!(
        Cc7_2,
        "sources",
        "cc7_2_sources",
        "Sources monitored",
        "Each source with the batches that hold the period's events, the positions they cover, and their rows reconciled with what each batch committed."
    ),
    population!(
        Cc7_2,
        "coverage",
        "cc7_2_coverage",
        "Coverage of expected sources",
        "Every stream expected (configured, in the inventory, or seen in the 30 days before) and whether it was ingested, quiet, interrupted, stopped or not ingested."
    ),
    population!(
        Cc7_2,
        "completeness",
        "cc7_2_completeness",
        "Completeness per hour",
        "Events per stream per hour of the period; zero is a gap."
    ),
    population!(
        Cc7_2,
        "gaps",
        "cc7_2_gaps",
        "Gaps",
        "Where a stream is known to have stopped: silences judged by the source_silent rule, within the period."
    ),
    population!(
        Cc7_2,
        "rules",
        "cc7_2_rules",
        "Rules in force",
        "Each version of the detection rules in force during the period, as it was, with its SOC 2 criteria and when it was in force."
    ),
    population!(
        Cc7_2,
        "findings",
        "cc7_2_findings",
        "Findings raised",
        "Findings with evidence in the period or raised in it, with their status at the period's end."
    ),
    population!(
        Cc7_2,
        "finding_evidence",
        "cc7_2_finding_evidence",
        "Evidence of each finding",
        "Each evidence event in the period of the findings not withdrawn, with the event's stable id, its activity or sign-in id, the principal, where its record came from and the SHA-256 of the record: a sample of them traces to the original log record (tokentrail evidence sample)."
    ),
    population!(
        Cc7_3,
        "response",
        "cc7_3_response",
        "Finding response",
        "Each finding with who acknowledged and resolved it and when, by the period's end, and the minutes to the first response."
    ),
    population!(
        Cc7_3,
        "history",
        "cc7_3_history",
        "Finding history",
        "Every status change of those findings before the period's end."
    ),
    population!(
        AccessLog,
        "access_log",
        "access_log",
        "Use of TokenTrail",
        "Every API call and UI action in the period, refused ones included."
    ),
];

/// The populations of `criteria`, in pack order.
pub fn of(criteria: &[Criterion]) -> Vec<Population> {
    ALL.iter().filter(|p| criteria.contains(&p.criterion)).copied().collect()
}

/// The parameters a population's SQL may use, by name, as bound and as the manifest states them.
pub struct Bindings {
    values: Vec<(&'static str, Value, serde_json::Value)>,
}

impl Bindings {
    /// `as_of` is the last ingest batch the populations read: rows of later batches (data
    /// that arrived after the pack was made) are left out, so a re-run gives the same rows.
    /// `expected` are the streams configured as expected (`cosmos:<account>`,
    /// `signins:<category>`, `raw:<category>`).
    /// `made_at` is when the pack is made: findings raised after it are in none of the
    /// populations, whenever they are run again.
    /// `removal_hours` is the deadline the leavers population judges removals by
    /// (`[evidence] removal_deadline_hours`), stated in the manifest like every parameter.
    pub fn new(
        period: &Period,
        rules: &[Rule],
        as_of: i64,
        made_at: i64,
        expected: &[String],
        removal_hours: u32,
    ) -> Bindings {
        let expected = serde_json::json!(expected).to_string();
        let catalogue: Vec<serde_json::Value> = rules
            .iter()
            .map(|r| {
                serde_json::json!({
                    "rule_id": r.id, "title": r.title, "severity": r.severity.as_str(), "soc2": r.soc2.join(", "),
                    "mitre": r.mitre, "window": format!("{}s", r.window.num_seconds()), "origin": r.origin.to_string(),
                })
            })
            .collect();
        let catalogue = serde_json::Value::Array(catalogue).to_string();
        let removal_hours = i64::from(removal_hours.max(1));
        Bindings {
            values: vec![
                ("from", script::timestamp(period.from), serde_json::json!(super::rfc3339(period.from))),
                ("to", script::timestamp(period.to), serde_json::json!(super::rfc3339(period.to))),
                ("catalogue", Value::Text(catalogue.clone()), serde_json::json!(catalogue)),
                ("as_of", Value::BigInt(as_of), serde_json::json!(as_of)),
                ("made_at", script::timestamp(made_at), serde_json::json!(super::rfc3339(made_at))),
                ("expected", Value::Text(expected.clone()), serde_json::json!(expected)),
                ("removal_hours", Value::BigInt(removal_hours), serde_json::json!(removal_hours)),
            ],
        }
    }

    /// The parameters a manifest states for one population (`FileEntry::parameters`), bound
    /// again as they were: `from` and `to` as times, numbers as integers, the rest as text.
    pub fn from_stated(stated: &serde_json::Map<String, serde_json::Value>) -> Result<Bindings> {
        let mut values = Vec::new();
        for (name, shown) in stated {
            // Only the names Bindings::new binds; a manifest is read back, not trusted with names.
            let name: &'static str = match name.as_str() {
                "from" => "from",
                "to" => "to",
                "catalogue" => "catalogue",
                "as_of" => "as_of",
                "made_at" => "made_at",
                "expected" => "expected",
                "removal_hours" => "removal_hours",
                other => anyhow::bail!("parameter {other:?} is not one TokenTrail binds"),
            };
            let value = match (name, shown) {
                ("from" | "to" | "made_at", serde_json::Value::String(t)) => {
                    let t = chrono::DateTime::parse_from_rfc3339(t).with_context(|| format!("parameter {name}"))?;
                    script::timestamp(t.timestamp_micros())
                }
                (_, serde_json::Value::Number(n)) => {
                    Value::BigInt(n.as_i64().with_context(|| format!("parameter {name} is not an integer"))?)
                }
                (_, serde_json::Value::String(t)) => Value::Text(t.clone()),
                _ => anyhow::bail!("parameter {name} has a value of the wrong type"),
            };
            values.push((name, value, shown.clone()));
        }
        Ok(Bindings { values })
    }

    /// Runs `population` and returns its rows, and the parameters it bound (name → value).
    /// Runs `population`, holding at most `rows_left` rows (less what it took).
    pub fn run(
        &self,
        conn: &duckdb::Connection,
        population: &Population,
        rows_left: &mut u64,
    ) -> Result<(Vec<RecordBatch>, arrow::datatypes::SchemaRef, serde_json::Map<String, serde_json::Value>)> {
        let name = format!("population {} of {}", population.name, population.criterion.as_str());
        self.query(conn, population.sql, &name, rows_left)
    }

    /// Runs `sql` (named `name` in errors) with these parameters: [`Bindings::run`].
    pub fn query(
        &self,
        conn: &duckdb::Connection,
        sql: &str,
        name: &str,
        rows_left: &mut u64,
    ) -> Result<(Vec<RecordBatch>, arrow::datatypes::SchemaRef, serde_json::Map<String, serde_json::Value>)> {
        let context = || name.to_string();
        let mut stmt = conn.prepare(sql).with_context(context)?;
        let named: Vec<(&str, Value)> = self.values.iter().map(|(n, v, _)| (*n, v.clone())).collect();
        let bound = script::bind(&stmt, &named).with_context(context)?;
        let mut shown = serde_json::Map::new();
        for i in 1..=stmt.parameter_count() {
            let name = stmt.parameter_name(i)?;
            if let Some((_, _, text)) = self.values.iter().find(|(n, ..)| *n == name) {
                shown.insert(name, text.clone());
            }
        }
        // Materialized, not streamed: DuckDB's streaming result handed the chunks of an ORDER BY
        // out of order now and then (under parallel load), and a population's bytes must be
        // the same on every run.
        let result = stmt.query_arrow(duckdb::params_from_iter(bound)).with_context(context)?;
        let schema = result.get_schema();
        let mut batches = Vec::new();
        for batch in result {
            let rows = batch.num_rows() as u64;
            if rows > *rows_left {
                // The pack's limit is filled in by the caller, which knows it.
                return Err(super::OverBudget::Rows(0).into());
            }
            *rows_left -= rows;
            batches.push(batch);
        }
        Ok((batches, schema, shown))
    }
}
