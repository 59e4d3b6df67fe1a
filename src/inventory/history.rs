//! Storing a [`Snapshot`] as history: in one transaction, the `inventory_runs` row and,
//! per table, the current rows it covers compared with what it saw (by key: the ARM id):
//! gone → closed at the snapshot's time, changed → closed and a new version opened,
//! unchanged → left alone, new → opened. Rows it does not cover are not touched.

use super::{Account, AzureRoleAssignment, RoleAssignment, RoleDefinition, Snapshot, Table};
use crate::store::Store;
use anyhow::{Context, Result};
use duckdb::ToSql;
use duckdb::types::ToSqlOutput;
use std::collections::HashMap;

/// A column's value, compared as stored.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Text(Option<String>),
    Bool(Option<bool>),
    /// Sorted; stored as VARCHAR[] (bound as JSON text and cast).
    List(Vec<String>),
}

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Bool,
    List,
}

impl ToSql for Value {
    fn to_sql(&self) -> duckdb::Result<ToSqlOutput<'_>> {
        match self {
            Value::Text(v) => v.to_sql(),
            Value::Bool(v) => v.to_sql(),
            Value::List(v) => Ok(ToSqlOutput::from(serde_json::to_string(v).unwrap_or_else(|_| "[]".into()))),
        }
    }
}

/// A row of one of the history tables.
trait HistoryRow {
    const TABLE: Table;
    const NAME: &'static str;
    /// The key column first, then the value columns (subscription_id among them).
    const COLUMNS: &'static [(&'static str, Kind)];
    fn key(&self) -> &str;
    fn values(&self) -> Vec<Value>;
}

fn text(v: &str) -> Value {
    Value::Text(Some(v.to_owned()))
}

fn opt(v: &Option<String>) -> Value {
    Value::Text(v.clone())
}

fn list(v: &[String]) -> Value {
    let mut v = v.to_vec();
    v.sort();
    Value::List(v)
}

impl HistoryRow for Account {
    const TABLE: Table = Table::Accounts;
    const NAME: &'static str = "cosmos_accounts";
    const COLUMNS: &'static [(&'static str, Kind)] = &[
        ("resource_id", Kind::Text),
        ("account", Kind::Text),
        ("subscription_id", Kind::Text),
        ("resource_group", Kind::Text),
        ("location", Kind::Text),
        ("disable_local_auth", Kind::Bool),
        ("public_network_access", Kind::Text),
        ("ip_rules", Kind::List),
        ("virtual_network_rules", Kind::List),
        ("disable_key_based_metadata_write_access", Kind::Bool),
    ];
    fn key(&self) -> &str {
        &self.resource_id
    }
    fn values(&self) -> Vec<Value> {
        vec![
            text(&self.resource_id),
            text(&self.account),
            text(&self.subscription_id),
            opt(&self.resource_group),
            opt(&self.location),
            Value::Bool(self.disable_local_auth),
            opt(&self.public_network_access),
            list(&self.ip_rules),
            list(&self.virtual_network_rules),
            Value::Bool(self.disable_key_based_metadata_write_access),
        ]
    }
}

impl HistoryRow for RoleDefinition {
    const TABLE: Table = Table::Definitions;
    const NAME: &'static str = "data_role_definitions";
    const COLUMNS: &'static [(&'static str, Kind)] = &[
        ("resource_id", Kind::Text),
        ("role_definition_id", Kind::Text),
        ("account", Kind::Text),
        ("subscription_id", Kind::Text),
        ("role_name", Kind::Text),
        ("role_type", Kind::Text),
        ("assignable_scopes", Kind::List),
        ("data_actions", Kind::List),
        ("not_data_actions", Kind::List),
    ];
    fn key(&self) -> &str {
        &self.resource_id
    }
    fn values(&self) -> Vec<Value> {
        vec![
            text(&self.resource_id),
            text(&self.role_definition_id),
            text(&self.account),
            text(&self.subscription_id),
            opt(&self.role_name),
            opt(&self.role_type),
            list(&self.assignable_scopes),
            list(&self.data_actions),
            list(&self.not_data_actions),
        ]
    }
}

impl HistoryRow for RoleAssignment {
    const TABLE: Table = Table::Assignments;
    const NAME: &'static str = "data_role_assignments";
    const COLUMNS: &'static [(&'static str, Kind)] = &[
        ("assignment_id", Kind::Text),
        ("account", Kind::Text),
        ("subscription_id", Kind::Text),
        ("principal_id", Kind::Text),
        ("role_definition_id", Kind::Text),
        ("scope", Kind::Text),
    ];
    fn key(&self) -> &str {
        &self.assignment_id
    }
    fn values(&self) -> Vec<Value> {
        vec![
            text(&self.assignment_id),
            text(&self.account),
            text(&self.subscription_id),
            text(&self.principal_id),
            text(&self.role_definition_id),
            text(&self.scope),
        ]
    }
}

impl HistoryRow for AzureRoleAssignment {
    const TABLE: Table = Table::AzureAssignments;
    const NAME: &'static str = "azure_role_assignments";
    const COLUMNS: &'static [(&'static str, Kind)] = &[
        ("assignment_id", Kind::Text),
        ("subscription_id", Kind::Text),
        ("principal_id", Kind::Text),
        ("principal_type", Kind::Text),
        ("role_definition_id", Kind::Text),
        ("role_name", Kind::Text),
        ("scope", Kind::Text),
    ];
    fn key(&self) -> &str {
        &self.assignment_id
    }
    fn values(&self) -> Vec<Value> {
        vec![
            text(&self.assignment_id),
            text(&self.subscription_id),
            text(&self.principal_id),
            opt(&self.principal_type),
            text(&self.role_definition_id),
            opt(&self.role_name),
            text(&self.scope),
        ]
    }
}

/// What storing a snapshot changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Changes {
    pub run_id: i64,
    pub opened: u64,
    pub closed: u64,
    pub unchanged: u64,
}

/// Stores `snapshot`: its `inventory_runs` row and the history it changes, in one transaction.
pub fn record(store: &Store, snapshot: &Snapshot) -> Result<Changes> {
    let problems = serde_json::to_string(&snapshot.problems)?;
    store
        .transaction(|conn| {
            let run_id: i64 =
                conn.query_row("SELECT coalesce(max(run_id), 0) + 1 FROM inventory_runs", [], |r| r.get(0))?;
            // History only moves forward: an older snapshot stored after a newer one would close
            // rows before they were opened.
            let latest: Option<i64> =
                conn.query_row("SELECT epoch_us(max(started_at)) FROM inventory_runs", [], |r| r.get(0))?;
            if let Some(latest) = latest.filter(|latest| *latest > snapshot.taken_at.timestamp_micros()) {
                let latest = chrono::DateTime::from_timestamp_micros(latest).unwrap_or_default();
                anyhow::bail!(
                    "this inventory was taken at {}, before the latest one stored ({}): history only moves forward",
                    snapshot.taken_at.to_rfc3339(),
                    latest.to_rfc3339()
                );
            }
            let at = snapshot.taken_at.to_rfc3339();
            let mut changes = Changes { run_id, ..Changes::default() };
            apply(conn, snapshot, &snapshot.accounts, run_id, &at, &mut changes)?;
            apply(conn, snapshot, &snapshot.definitions, run_id, &at, &mut changes)?;
            apply(conn, snapshot, &snapshot.assignments, run_id, &at, &mut changes)?;
            apply(conn, snapshot, &snapshot.azure_assignments, run_id, &at, &mut changes)?;
            conn.execute(
                "INSERT INTO inventory_runs VALUES (?, ?::TIMESTAMPTZ, now(), ?, ?, ?, ?::JSON)",
                duckdb::params![run_id, at, snapshot.origin.as_str(), snapshot.ok, snapshot.failed, problems],
            )?;
            Ok(changes)
        })
        .context("storing the inventory")
}

/// One table's part of [`record`].
fn apply<R: HistoryRow>(
    conn: &duckdb::Connection,
    snapshot: &Snapshot,
    seen: &[R],
    run_id: i64,
    at: &str,
    changes: &mut Changes,
) -> Result<()> {
    let table = R::NAME;
    let key = R::COLUMNS[0].0;
    let read: Vec<String> = R::COLUMNS
        .iter()
        .map(|(name, kind)| match kind {
            Kind::List => format!("to_json({name})::VARCHAR"),
            _ => (*name).to_owned(),
        })
        .collect();
    // Current rows, keyed; the template names only our own table and columns.
    let mut current: HashMap<String, (Vec<Value>, String, Option<String>)> = HashMap::new();
    let mut stmt = conn.prepare(&format!(
        "SELECT {}, subscription_id, {} FROM {table} WHERE valid_to IS NULL",
        read.join(", "),
        if R::TABLE == Table::AzureAssignments { "NULL::VARCHAR" } else { "account" }
    ))?;
    let mut rows = stmt.query([])?;
    let n = R::COLUMNS.len();
    while let Some(row) = rows.next()? {
        let mut values = Vec::with_capacity(n);
        for (i, (_, kind)) in R::COLUMNS.iter().enumerate() {
            values.push(match kind {
                Kind::Text => Value::Text(row.get(i)?),
                Kind::Bool => Value::Bool(row.get(i)?),
                Kind::List => {
                    let json: Option<String> = row.get(i)?;
                    let mut items: Vec<String> =
                        json.map(|j| serde_json::from_str(&j)).transpose()?.unwrap_or_default();
                    items.sort();
                    Value::List(items)
                }
            });
        }
        let key: String = row.get(0)?;
        current.insert(key, (values, row.get(n)?, row.get(n + 1)?));
    }
    let close = format!("UPDATE {table} SET valid_to = ?::TIMESTAMPTZ WHERE {key} = ? AND valid_to IS NULL");
    let columns: Vec<&str> = R::COLUMNS.iter().map(|(name, _)| *name).collect();
    let placeholders: Vec<&str> = R::COLUMNS
        .iter()
        .map(|(_, kind)| match kind {
            Kind::List => "?::JSON::VARCHAR[]",
            _ => "?",
        })
        .collect();
    let open = format!(
        "INSERT INTO {table} ({}, valid_from, valid_to, run_id) VALUES ({}, ?::TIMESTAMPTZ, NULL, ?)",
        columns.join(", "),
        placeholders.join(", ")
    );
    let mut seen_keys = std::collections::HashSet::new();
    for row in seen {
        if !seen_keys.insert(row.key().to_owned()) {
            continue; // listed twice (two files, two pages): the first one counts
        }
        let values = row.values();
        match current.get(row.key()) {
            Some((stored, ..)) if *stored == values => {
                changes.unchanged += 1;
                continue;
            }
            Some(_) => {
                conn.execute(&close, duckdb::params![at, row.key()])?;
                changes.closed += 1;
            }
            None => {}
        }
        let mut params: Vec<&dyn ToSql> = values.iter().map(|v| v as &dyn ToSql).collect();
        params.push(&at);
        params.push(&run_id);
        conn.execute(&open, params.as_slice())?;
        changes.opened += 1;
    }
    for (key, (_, subscription, account)) in &current {
        if !seen_keys.contains(key) && snapshot.covers(R::TABLE, subscription, account.as_deref()) {
            conn.execute(&close, duckdb::params![at, key])?;
            changes.closed += 1;
        }
    }
    Ok(())
}
