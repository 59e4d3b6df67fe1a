//! Types the control-plane and directory records of absorbed batches into
//! `control_changes` and `directory_changes` (migration 13), in the absorb transaction:
//! each raw record is typed exactly once, as its batch is absorbed, and a record that
//! has the shape of neither log stays in `raw_events` alone.

use super::script::timestamp;
use crate::record::change::{self, Change, ControlChange, DirectoryChange};
use anyhow::{Context, Result};
use duckdb::types::Value;

const CANDIDATES: &str = "SELECT rowid, epoch_us(time), batch_id, record::VARCHAR FROM raw_events \
     WHERE batch_id > ? AND batch_id <= ? AND list_contains(?, lower(category))";

/// What typing the batches (`lo`, `hi`] stored.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Typed {
    pub control: u64,
    pub directory: u64,
    /// Records of a change category whose shape or time could not be read: kept raw only.
    pub untyped: u64,
}

pub fn absorb(conn: &duckdb::Connection, lo: i64, hi: i64) -> Result<Typed> {
    let categories = Value::List(change::CATEGORIES.iter().map(|c| Value::Text((*c).to_owned())).collect());
    let mut select = conn.prepare(CANDIDATES)?;
    let mut rows = select.query(duckdb::params![lo, hi, categories])?;
    let mut control = conn.prepare(include_str!("sql/control_change_insert.sql"))?;
    let mut directory = conn.prepare(include_str!("sql/directory_change_insert.sql"))?;
    let mut typed = Typed::default();
    while let Some(row) = rows.next()? {
        let (raw_row, raw_time, batch_id, record): (i64, Option<i64>, i64, String) =
            (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
        match change::read(&record) {
            Some(Change::Control(c)) if raw_time.is_some() => {
                control
                    .execute(duckdb::params_from_iter(control_params(&c, raw_time, raw_row, batch_id)?))
                    .context("storing a control-plane change")?;
                typed.control += 1;
            }
            Some(Change::Directory(d)) if d.time.or(raw_time).is_some() => {
                directory
                    .execute(duckdb::params_from_iter(directory_params(&d, raw_time, raw_row, batch_id)?))
                    .context("storing a directory change")?;
                typed.directory += 1;
            }
            _ => {
                tracing::warn!(
                    raw_row,
                    batch_id,
                    "a record of a change category has no readable shape or time; kept in raw_events only"
                );
                typed.untyped += 1;
            }
        }
    }
    Ok(typed)
}

fn text(value: &Option<String>) -> Value {
    value.clone().map_or(Value::Null, Value::Text)
}

fn control_params(c: &ControlChange, time: Option<i64>, raw_row: i64, batch_id: i64) -> Result<Vec<Value>> {
    let disabled_logs = match &c.disabled_logs {
        Some(logs) => Value::Text(serde_json::to_string(logs)?),
        None => Value::Null,
    };
    Ok(vec![
        time.map_or(Value::Null, timestamp),
        Value::Text(c.kind.to_owned()),
        Value::Text(c.operation.clone()),
        text(&c.result),
        text(&c.status),
        text(&c.subscription_id),
        text(&c.resource_group),
        text(&c.account),
        Value::Text(c.resource_id.clone()),
        text(&c.caller_id),
        text(&c.caller_app_id),
        text(&c.caller_name),
        text(&c.caller_ip),
        text(&c.target_principal_id),
        text(&c.target_principal_type),
        text(&c.role_definition_id),
        text(&c.scope),
        c.disable_local_auth.map_or(Value::Null, Value::Boolean),
        text(&c.public_network_access),
        disabled_logs,
        text(&c.correlation_id),
        text(&c.event_category),
        text(&c.category),
        Value::BigInt(raw_row),
        Value::BigInt(batch_id),
    ])
}

fn directory_params(d: &DirectoryChange, raw_time: Option<i64>, raw_row: i64, batch_id: i64) -> Result<Vec<Value>> {
    Ok(vec![
        d.time.or(raw_time).map_or(Value::Null, timestamp),
        Value::Text(d.kind.to_owned()),
        Value::Text(d.operation.clone()),
        text(&d.audit_category),
        text(&d.result),
        text(&d.tenant_id),
        text(&d.actor_id),
        d.actor_kind.map_or(Value::Null, |k| Value::Text(k.to_owned())),
        text(&d.actor_name),
        text(&d.actor_ip),
        text(&d.target_id),
        text(&d.target_type),
        text(&d.target_name),
        text(&d.target_app_id),
        text(&d.group_id),
        Value::Text(serde_json::to_string(&d.modified)?),
        text(&d.correlation_id),
        Value::BigInt(raw_row),
        Value::BigInt(batch_id),
    ])
}
