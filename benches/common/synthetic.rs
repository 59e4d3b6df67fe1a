//! Synthetic history at scale, inserted with SQL (benches/rules_data.sql): millions of
//! requests and sign-ins in seconds, for the benchmarks that need volume, not realism.

use duckdb::types::Value;

/// Runs every statement of benches/rules_data.sql with its named parameters: `requests`
/// requests and `signins` sign-ins of `principals` principals over [start, start + span)
/// microseconds, in ingest batch `batch`.
pub fn insert_synthetic(
    conn: &duckdb::Connection,
    batch: i64,
    start: i64,
    span: i64,
    requests: i64,
    signins: i64,
    principals: i64,
) {
    let values = [
        ("batch", batch),
        ("start", start),
        ("span", span),
        ("requests", requests),
        ("signins", signins),
        ("principals", principals),
    ];
    run_script(conn, include_str!("../rules_data.sql"), &values);
}

/// Runs every statement of `script` (statements end with `;` at a line end), binding
/// its named parameters (`$start`) from `values`.
pub fn run_script(conn: &duckdb::Connection, script: &str, values: &[(&str, i64)]) {
    for statement in script.split(";\n").filter(|s| s.lines().any(|l| !l.trim().is_empty() && !l.starts_with("--"))) {
        let mut stmt = conn.prepare(statement).unwrap_or_else(|e| panic!("{statement}: {e}"));
        let bound: Vec<Value> = (1..=stmt.parameter_count())
            .map(|i| {
                let name = stmt.parameter_name(i).unwrap();
                Value::BigInt(values.iter().find(|(n, _)| *n == name).unwrap_or_else(|| panic!("${name}")).1)
            })
            .collect();
        stmt.execute(duckdb::params_from_iter(bound)).unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
}
