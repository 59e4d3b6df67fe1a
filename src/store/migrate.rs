//! Schema migrations: `migrations/NNNN_name.sql`, applied in order at start, each in
//! its own transaction with its row in `schema_migrations`. An applied migration
//! whose text has changed, or a database newer than this binary, is an error: the
//! schema is evidence too.

use anyhow::{Context, Result, bail};
use duckdb::Connection;
use xxhash_rust::xxh3::xxh3_64;

pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

macro_rules! migration {
    ($version:literal, $name:literal) => {
        Migration { version: $version, name: $name, sql: include_str!(concat!("../../migrations/", $name, ".sql")) }
    };
}

/// Every migration, oldest first. `tests/it/store.rs` checks this matches `migrations/`.
pub const MIGRATIONS: &[Migration] = &[
    migration!(1, "0001_initial"),
    migration!(2, "0002_ingest_status"),
    migration!(3, "0003_correlation"),
    migration!(4, "0004_detection"),
    migration!(5, "0005_api"),
    migration!(6, "0006_alerts"),
    migration!(7, "0007_integrity"),
    migration!(8, "0008_checkpoint_lanes"),
    migration!(9, "0009_append_chain"),
    migration!(10, "0010_alert_groups"),
    migration!(11, "0011_networks"),
    migration!(12, "0012_cosmos_signin"),
    migration!(13, "0013_changes"),
    migration!(14, "0014_inventory"),
    migration!(15, "0015_access"),
    migration!(16, "0016_finding_history_chain"),
    migration!(17, "0017_record_positions"),
    migration!(18, "0018_evidence_as_of"),
    migration!(19, "0019_access_evidence"),
    migration!(20, "0020_access_reviews"),
    migration!(21, "0021_cosmos_queries"),
    migration!(22, "0022_incidents"),
    migration!(23, "0023_lake"),
    migration!(24, "0024_lake_links"),
    migration!(25, "0025_hub_roles"),
    migration!(26, "0026_hub_segments"),
    migration!(27, "0027_alert_claims"),
    migration!(28, "0028_fleet"),
    migration!(29, "0029_fleet_here"),
    migration!(30, "0030_shared_findings"),
    migration!(31, "0031_shared_triage"),
];

fn checksum(sql: &str) -> String {
    format!("{:016x}", xxh3_64(sql.as_bytes()))
}

/// Applies every migration not yet applied, up to `up_to` (all when `None`).
/// Returns the versions it applied.
pub fn migrate(conn: &Connection, up_to: Option<i32>) -> Result<Vec<i32>> {
    conn.execute_batch(include_str!("sql/schema_migrations.sql")).context("creating schema_migrations")?;
    let applied: Vec<(i32, String, String)> = conn
        .prepare("SELECT version, name, checksum FROM schema_migrations ORDER BY version")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect::<duckdb::Result<_>>()?;
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    for (version, name, sum) in &applied {
        let Some(migration) = MIGRATIONS.iter().find(|m| m.version == *version) else {
            bail!(
                "the database has migration {version} ({name}), which this TokenTrail does not know \
                 (it knows up to {known}): it was written by a newer version; upgrade TokenTrail"
            );
        };
        if checksum(migration.sql) != *sum {
            bail!(
                "migration {} was changed after it was applied to this database; restore migrations/{}.sql",
                version,
                migration.name
            );
        }
    }
    let mut done = Vec::new();
    for migration in MIGRATIONS {
        if applied.iter().any(|(v, ..)| *v == migration.version) || up_to.is_some_and(|u| migration.version > u) {
            continue;
        }
        let apply = || -> Result<()> {
            conn.execute_batch("BEGIN")?;
            conn.execute_batch(migration.sql)?;
            conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (?, ?, ?)",
                duckdb::params![migration.version, migration.name, checksum(migration.sql)],
            )?;
            conn.execute_batch("COMMIT")?;
            Ok(())
        };
        if let Err(error) = apply() {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(error).with_context(|| format!("applying migration {}", migration.name));
        }
        tracing::info!(version = migration.version, name = migration.name, "applied migration");
        done.push(migration.version);
    }
    Ok(done)
}
