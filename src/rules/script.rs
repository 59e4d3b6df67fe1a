//! Runs the engine's own SQL files (`src/sql/*.sql`): several statements, each ending with
//! a line that ends in `;`, with named parameters (`$lo`) bound from a list.

use anyhow::{Context, Result, anyhow};
use duckdb::types::{TimeUnit, Value};

/// A TIMESTAMP value for microseconds since the epoch (UTC); DuckDB casts it where a
/// TIMESTAMPTZ is expected.
pub(crate) fn timestamp(micros: i64) -> Value {
    Value::Timestamp(TimeUnit::Microsecond, micros)
}

/// The statements of `script`, comment-only pieces left out.
pub(crate) fn statements(script: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in script.split_inclusive('\n') {
        offset += line.len();
        if line.trim_end().ends_with(';') {
            out.push(&script[start..offset]);
            start = offset;
        }
    }
    out.push(&script[start..]);
    out.retain(|s| s.lines().any(|l| !l.trim().is_empty() && !l.trim_start().starts_with("--")));
    out
}

/// The values for the parameters of `stmt`, in its order, taken from `params` by name.
pub(crate) fn bind(stmt: &duckdb::Statement<'_>, params: &[(&str, Value)]) -> Result<Vec<Value>> {
    (1..=stmt.parameter_count())
        .map(|i| {
            let name = stmt.parameter_name(i)?;
            params
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| anyhow!("the query uses ${name}, which is not one of its parameters"))
        })
        .collect()
}

/// Runs every statement of `script` (`name` is for error messages).
pub(crate) fn run(conn: &duckdb::Connection, name: &str, script: &str, params: &[(&str, Value)]) -> Result<()> {
    for (i, statement) in statements(script).into_iter().enumerate() {
        let mut stmt = conn.prepare(statement).with_context(|| format!("{name}, statement {}", i + 1))?;
        let values = bind(&stmt, params).with_context(|| format!("{name}, statement {}", i + 1))?;
        stmt.execute(duckdb::params_from_iter(values)).with_context(|| format!("{name}, statement {}", i + 1))?;
    }
    Ok(())
}

/// The first column of the one row `sql` returns.
pub(crate) fn value<T: duckdb::types::FromSql>(
    conn: &duckdb::Connection,
    name: &str,
    sql: &str,
    params: &[(&str, Value)],
) -> Result<T> {
    let mut stmt = conn.prepare(sql).with_context(|| name.to_owned())?;
    let values = bind(&stmt, params).with_context(|| name.to_owned())?;
    stmt.query_row(duckdb::params_from_iter(values), |r| r.get(0)).with_context(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_split_at_lines_ending_in_a_semicolon() {
        let script = "-- header\n\nSELECT 1;\n\nSELECT ';'\n  FROM t;  \n-- trailer\n";
        assert_eq!(statements(script), ["-- header\n\nSELECT 1;\n", "\nSELECT ';'\n  FROM t;  \n"]);
    }
}
