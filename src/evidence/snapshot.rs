//! What a pack states about the stored state its populations read: the last batch they
//! include, the engine and the definitions (macros, views) their SQL depends on, the
//! tenants and accounts in scope, and whether the data is the demo's.

use super::Period;
use super::manifest::{AsOf, EngineInfo, MacroInfo, Scope};
use super::populations::Population;
use anyhow::{Context, Result};

/// Read once, in the populations' snapshot.
pub struct Facts {
    pub as_of: AsOf,
    pub engine: EngineInfo,
    pub scope: Scope,
    /// Some batch came from the demo's generator.
    pub generated_data: bool,
    /// Rows of the period that retention moved to the lake, per table in words.
    pub archived: Vec<String>,
}

impl Facts {
    /// Why the pack is a demo pack, if it is.
    pub fn demo(&self, development_signer: bool) -> Option<String> {
        let mut why = Vec::new();
        if self.generated_data {
            why.push("its data was made by TokenTrail's generator (tokentrail demo), not read from Azure");
        }
        if development_signer {
            why.push("it was requested by a user of the development sign-in, not an Entra ID identity");
        }
        (!why.is_empty()).then(|| format!("Demo pack, not evidence of a real tenant: {}.", why.join("; ")))
    }
}

/// Sets the session's time zone to UTC where the engine has one to set, and says which it
/// is. Call it before the transaction: a refused SET would abort it.
pub fn utc_session(conn: &duckdb::Connection) -> Result<String> {
    // Insertion order is kept on every connection but the ingest writer's (Store::open):
    // a population's rows come out in the order its SQL states, the same on every run.
    // Without the ICU extension DuckDB has no TimeZone setting and reads TIMESTAMPTZ in UTC.
    Ok(match conn.execute_batch("SET TimeZone = 'UTC'") {
        Ok(()) => conn.query_row("SELECT current_setting('TimeZone')", [], |r| r.get::<_, String>(0))?,
        Err(_) => "UTC (this DuckDB has no time zone setting: TIMESTAMPTZ is read and cut into hours in UTC)".into(),
    })
}

/// Reads the facts through `conn`, inside the transaction the populations run in;
/// `timezone` is what [`utc_session`] said.
pub fn read(conn: &duckdb::Connection, timezone: String, period: &Period, chosen: &[Population]) -> Result<Facts> {
    let (batch_id, committed_at): (Option<i64>, Option<i64>) = conn.query_row(
        "SELECT max(batch_id), epoch_us(arg_max(committed_at, batch_id)) FROM ingest_batches",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let as_of = AsOf { batch_id, committed_at: committed_at.map(super::rfc3339) };
    let duckdb_version: String = conn.query_row("SELECT library_version FROM pragma_version()", [], |r| r.get(0))?;
    let sql: Vec<&str> = chosen.iter().map(|p| p.sql).collect();
    let engine = EngineInfo {
        duckdb_version,
        timezone,
        macros: used(
            conn,
            "SELECT DISTINCT function_name, macro_definition FROM duckdb_functions()
             WHERE function_type IN ('macro', 'table_macro') AND NOT internal AND macro_definition IS NOT NULL
             ORDER BY 1, 2",
            &sql,
            Use::Call,
        )?,
        views: used(conn, "SELECT view_name, sql FROM duckdb_views() WHERE NOT internal ORDER BY 1", &sql, Use::Read)?,
    };
    let as_of_id = batch_id.unwrap_or(0);
    let list = |query: &str| -> Result<Vec<String>> {
        let mut stmt = conn.prepare(query)?;
        let from = crate::rules::script::timestamp(period.from);
        let to = crate::rules::script::timestamp(period.to);
        let rows = stmt.query_map(duckdb::params![from, to, as_of_id], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<duckdb::Result<_>>()?)
    };
    let scope = Scope {
        tenants: list(
            "SELECT DISTINCT tenant_id FROM signins
             WHERE time >= ?1 AND time < ?2 AND batch_id <= ?3 AND tenant_id IS NOT NULL ORDER BY 1",
        )
        .context("tenants in scope")?,
        accounts: list(
            "SELECT DISTINCT account FROM cosmos_requests
             WHERE time >= ?1 AND time < ?2 AND batch_id <= ?3 AND account IS NOT NULL
             UNION
             SELECT DISTINCT account FROM cosmos_accounts
             WHERE valid_from < ?2 AND (valid_to IS NULL OR valid_to > ?1) AND ?3 IS NOT NULL
             ORDER BY 1",
        )
        .context("accounts in scope")?,
        // Filled from the sources population.
        sources: Vec::new(),
    };
    let generated_data = conn.query_row(
        "SELECT count(*) > 0 FROM ingest_batches WHERE batch_id <= ? AND source_id LIKE 'generator:%'",
        [as_of_id],
        |r| r.get(0),
    )?;
    let archived = archived(conn, period, as_of_id)?;
    Ok(Facts { as_of, engine, scope, generated_data, archived })
}

/// What of the period retention deleted from the database (it is in the lake), per table
/// in words; empty when the database holds every row the period had.
fn archived(conn: &duckdb::Connection, period: &Period, as_of: i64) -> Result<Vec<String>> {
    let mut stmt = conn.prepare(include_str!("sql/archived.sql"))?;
    let from = crate::rules::script::timestamp(period.from);
    let to = crate::rules::script::timestamp(period.to);
    let parts: Vec<String> = stmt
        .query_map(duckdb::params![from, to, as_of], |r| {
            let (table, rows, first, last): (String, i64, String, String) =
                (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
            Ok(format!("{rows} {table} rows (days {first} to {last})"))
        })?
        .collect::<duckdb::Result<_>>()?;
    Ok(parts)
}

/// How SQL uses a definition: a macro is called (`name(`), a view read (`FROM name`, `JOIN name`).
#[derive(Clone, Copy)]
enum Use {
    Call,
    Read,
}

/// The definitions (name, text) of `query` whose name the SQL texts use, and those the
/// definitions so found use in turn.
fn used(conn: &duckdb::Connection, query: &str, sql: &[&str], how: Use) -> Result<Vec<MacroInfo>> {
    let mut stmt = conn.prepare(query)?;
    let all: Vec<(String, String)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<duckdb::Result<_>>()?;
    let mut texts: Vec<String> = sql.iter().map(|s| s.to_ascii_lowercase()).collect();
    let mut chosen: Vec<MacroInfo> = Vec::new();
    loop {
        let before = chosen.len();
        for (name, definition) in &all {
            let taken = chosen.iter().any(|m| &m.name == name && &m.definition == definition);
            if !taken && texts.iter().any(|t| mentions(t, &name.to_ascii_lowercase(), how)) {
                chosen.push(MacroInfo { name: name.clone(), definition: definition.clone() });
                texts.push(definition.to_ascii_lowercase());
            }
        }
        if chosen.len() == before {
            break;
        }
    }
    chosen.sort_by(|a, b| (&a.name, &a.definition).cmp(&(&b.name, &b.definition)));
    Ok(chosen)
}

/// Whether `text` (lower case) uses `name` the way `how` says.
fn mentions(text: &str, name: &str, how: Use) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(name).any(|(i, _)| {
        let before = &text[..i];
        let after = text[i + name.len()..].trim_start();
        if before.chars().next_back().is_some_and(word) || after.chars().next().is_some_and(word) {
            return false;
        }
        match how {
            Use::Call => after.starts_with('('),
            Use::Read => {
                let before = before.trim_end();
                before.ends_with("from") || before.ends_with("join")
            }
        }
    })
}
