//! Reading the inventory from what the Azure CLI prints, for those who cannot give
//! TokenTrail an identity on the subscriptions:
//! `az cosmosdb show` / `az cosmosdb list`, `az cosmosdb sql role definition list`,
//! `az cosmosdb sql role assignment list` and `az role assignment list --all`. Raw ARM
//! pages (`{"value": [...]}`) are read too. Each item is recognised by its resource
//! `type` (or, without one, its id); a file holding anything else is an error naming it.
//!
//! What a file covers (and so may close in history): an account's role definitions and
//! assignments, per account found in the file; accounts and Azure role assignments, per
//! subscription found (`az cosmosdb show` covers its one account). An empty list covers
//! nothing: it does not say which account or subscription it was of.

use super::arm::{account, azure_role_assignment, role_assignment, role_definition};
use super::{Covered, Origin, Snapshot, Table};
use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::path::Path;

const EXPECTED: &str = "the JSON that `az cosmosdb show`/`list`, `az cosmosdb sql role definition list`, \
                        `az cosmosdb sql role assignment list` or `az role assignment list` print";

/// What one item is.
fn kind_of(item: &Value) -> Option<Table> {
    let kind = item.get("type").and_then(Value::as_str).map(str::to_ascii_lowercase);
    let id = item.get("id").and_then(Value::as_str)?.to_ascii_lowercase();
    let by_type = match kind.as_deref() {
        Some("microsoft.documentdb/databaseaccounts") => Some(Table::Accounts),
        Some("microsoft.documentdb/databaseaccounts/sqlroledefinitions") => Some(Table::Definitions),
        Some("microsoft.documentdb/databaseaccounts/sqlroleassignments") => Some(Table::Assignments),
        Some("microsoft.authorization/roleassignments") => Some(Table::AzureAssignments),
        _ => None,
    };
    by_type.or_else(|| {
        if id.contains("/sqlroleassignments/") {
            Some(Table::Assignments)
        } else if id.contains("/sqlroledefinitions/") {
            Some(Table::Definitions)
        } else if id.contains("/providers/microsoft.authorization/roleassignments/") {
            Some(Table::AzureAssignments)
        } else {
            let parts: Vec<&str> = id.trim_end_matches('/').rsplit('/').take(3).collect();
            (parts.len() == 3 && parts[1] == "databaseaccounts" && parts[2] == "microsoft.documentdb")
                .then_some(Table::Accounts)
        }
    })
}

/// Reads `files` into one snapshot taken at `taken_at`.
pub fn read(files: &[impl AsRef<Path>], taken_at: chrono::DateTime<chrono::Utc>) -> Result<Snapshot> {
    let mut snapshot = Snapshot::new(Origin::File, taken_at);
    for file in files {
        read_file(file.as_ref(), &mut snapshot).with_context(|| file.as_ref().display().to_string())?;
        snapshot.ok += 1;
    }
    snapshot.covered.sort();
    snapshot.covered.dedup();
    Ok(snapshot)
}

fn read_file(path: &Path, snapshot: &mut Snapshot) -> Result<()> {
    let text = std::fs::read_to_string(path).context("reading it")?;
    let json: Value = serde_json::from_str(&text).with_context(|| format!("not JSON; expected {EXPECTED}"))?;
    // `az ... show` prints one object, `list` an array; a raw ARM page has `value`.
    let (items, single) = match &json {
        Value::Array(items) => (items.clone(), false),
        Value::Object(map) if map.get("value").is_some_and(Value::is_array) => {
            (map["value"].as_array().cloned().unwrap_or_default(), false)
        }
        Value::Object(_) => (vec![json.clone()], true),
        _ => bail!("not recognised: expected {EXPECTED}"),
    };
    for (i, item) in items.iter().enumerate() {
        let unreadable = || {
            let what = item.get("id").and_then(Value::as_str).unwrap_or("no id");
            anyhow::anyhow!("item {i} ({what}) is not recognised: expected {EXPECTED}")
        };
        let kind = kind_of(item).ok_or_else(unreadable)?;
        let cover = |snapshot: &mut Snapshot, sub: &str, account: Option<&str>| {
            snapshot.covered.push(Covered {
                table: kind,
                subscription_id: sub.into(),
                account: account.map(Into::into),
            });
        };
        match kind {
            Table::Accounts => {
                let a = account(item).ok_or_else(unreadable)?;
                cover(snapshot, &a.subscription_id.clone(), single.then_some(a.account.as_str()));
                snapshot.accounts.push(a);
            }
            Table::Definitions => {
                let d = role_definition(item).ok_or_else(unreadable)?;
                cover(snapshot, &d.subscription_id.clone(), Some(&d.account));
                snapshot.definitions.push(d);
            }
            Table::Assignments => {
                let a = role_assignment(item).ok_or_else(unreadable)?;
                cover(snapshot, &a.subscription_id.clone(), Some(&a.account));
                snapshot.assignments.push(a);
            }
            Table::AzureAssignments => {
                let a = azure_role_assignment(item).ok_or_else(unreadable)?;
                cover(snapshot, &a.subscription_id.clone(), None);
                snapshot.azure_assignments.push(a);
            }
        }
    }
    if items.is_empty() {
        tracing::warn!(file = %path.display(), "an empty list: it says nothing about what was removed");
    }
    Ok(())
}
