//! Inventory: what each identity MAY do in Cosmos DB (data-plane role definitions and
//! assignments, the Azure role assignments that reach the keys, the accounts' settings),
//! read as a [`Snapshot`] from Azure Resource Manager (`arm`) or from `az` output files
//! (`files`), and kept with history (`history`).
//!
//! Contract: a snapshot is stored in one transaction with its `inventory_runs` row. It
//! closes only rows of what it read whole ([`Covered`]): a subscription that answered 403
//! (or was throttled out, or sent a `nextLink` to another host) leaves its rows as they
//! were, since unknown is not removed. Module direction: uses `store`; `record`, `source`
//! and `ingest` never use it.

pub mod arm;
pub mod files;
pub mod history;
pub mod leavers;

use crate::config::InventoryConfig;
use crate::store::Store;
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::sync::Arc;

/// An ARM client for `[inventory]`'s endpoint with its Entra ID identity (built, not yet used).
pub fn client(config: &InventoryConfig) -> Result<arm::ArmClient> {
    let identity = crate::source::eventhubs::Identity {
        credential: config.credential,
        managed_identity_client_id: config.managed_identity_client_id.clone(),
        tenant_id: config.tenant_id.clone(),
        client_id: config.client_id.clone(),
    };
    let credential = identity.credential().context("the inventory's identity")?;
    let endpoint = url::Url::parse(&config.endpoint).context("inventory.endpoint")?;
    let token = Arc::new(arm::EntraToken::new(credential, &endpoint));
    arm::ArmClient::new(&config.endpoint, token, arm::RetryPolicy::default())
}

/// Reads the inventory from ARM and stores it: one run. Blocking (a runtime of its own):
/// call it from a thread that may wait, never from async code.
pub fn run(store: &Store, client: &arm::ArmClient, subscriptions: &[String]) -> Result<(Snapshot, history::Changes)> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let snapshot = runtime.block_on(arm::collect(client, subscriptions))?;
    let changes = history::record(store, &snapshot)?;
    tracing::info!(
        run_id = changes.run_id,
        subscriptions_ok = snapshot.ok,
        subscriptions_failed = snapshot.failed,
        opened = changes.opened,
        closed = changes.closed,
        unchanged = changes.unchanged,
        "inventory stored"
    );
    Ok((snapshot, changes))
}

/// `serve`'s schedule: [`run`] at start and every `interval_hours`, on a thread of its own
/// (ingest never waits for it), until `stop`.
pub fn spawn_schedule(
    store: Arc<Store>,
    client: arm::ArmClient,
    config: &InventoryConfig,
    stop: tokio_util::sync::CancellationToken,
) -> Result<std::thread::JoinHandle<()>> {
    let subscriptions = config.subscriptions.clone();
    let period = std::time::Duration::from_secs(u64::from(config.interval_hours) * 3600);
    let handle = crate::periodic::spawn_every("inventory", period, stop, move || {
        if let Err(error) = run(&store, &client, &subscriptions) {
            tracing::warn!(error = format!("{error:#}"), "inventory failed; trying again at the next interval");
        }
    })?;
    Ok(handle)
}

/// The built-in Azure roles worth naming next to Cosmos DB: those that reach the keys or
/// change the account, and Reader (which the inventory itself needs).
pub const AZURE_BUILTIN_ROLES: &[(&str, &str)] = &[
    ("8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "Owner"),
    ("b24988ac-6180-42a0-ab88-20f7382dd24c", "Contributor"),
    ("acdd72a7-3385-48ef-bd42-f606fba81ae7", "Reader"),
    ("18d7d88d-d35e-4fb5-a5c3-7773c20a72d9", "User Access Administrator"),
    ("f58310d9-a9f6-439a-9e8d-f62e7b41a168", "Role Based Access Control Administrator"),
    ("5bd9cd88-fe45-4216-938b-f97437e15450", "DocumentDB Account Contributor"),
    ("fbdf93bf-df7d-467e-a4d2-9458aa1360c8", "Cosmos DB Account Reader Role"),
    ("230815da-be43-4aae-9cb4-875f7bd000aa", "Cosmos DB Operator"),
];

/// The name of a built-in Azure role, by GUID.
pub fn azure_role_name(role_definition_id: &str) -> Option<&'static str> {
    AZURE_BUILTIN_ROLES.iter().find(|(id, _)| id.eq_ignore_ascii_case(role_definition_id)).map(|(_, name)| *name)
}

/// Where a snapshot came from (`inventory_runs.origin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Arm,
    File,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Arm => "arm",
            Origin::File => "file",
        }
    }
}

/// A Cosmos DB account and the settings that decide who gets in.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub account: String,
    pub resource_id: String,
    pub subscription_id: String,
    pub resource_group: Option<String>,
    pub location: Option<String>,
    pub disable_local_auth: Option<bool>,
    pub public_network_access: Option<String>,
    pub ip_rules: Vec<String>,
    pub virtual_network_rules: Vec<String>,
    pub disable_key_based_metadata_write_access: Option<bool>,
}

/// A Cosmos DB data-plane role definition of one account.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleDefinition {
    pub role_definition_id: String,
    pub account: String,
    pub subscription_id: String,
    pub resource_id: String,
    pub role_name: Option<String>,
    pub role_type: Option<String>,
    pub assignable_scopes: Vec<String>,
    pub data_actions: Vec<String>,
    pub not_data_actions: Vec<String>,
}

/// A Cosmos DB data-plane role assignment.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleAssignment {
    pub assignment_id: String,
    pub account: String,
    pub subscription_id: String,
    pub principal_id: String,
    pub role_definition_id: String,
    pub scope: String,
}

/// An Azure (control-plane) role assignment.
#[derive(Debug, Clone, PartialEq)]
pub struct AzureRoleAssignment {
    pub assignment_id: String,
    pub subscription_id: String,
    pub principal_id: String,
    pub principal_type: Option<String>,
    pub role_definition_id: String,
    pub role_name: Option<String>,
    pub scope: String,
}

/// The four tables a snapshot fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Table {
    Accounts,
    Definitions,
    Assignments,
    AzureAssignments,
}

impl Table {
    pub const ALL: [Table; 4] = [Table::Accounts, Table::Definitions, Table::Assignments, Table::AzureAssignments];
}

/// What a snapshot read whole: a table's rows of a subscription (`account: None`), or of
/// one account. Only such rows may be closed by the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Covered {
    pub table: Table,
    pub subscription_id: String,
    pub account: Option<String>,
}

/// Something the snapshot could not read, stored in `inventory_runs.problems`.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The HTTP status that stopped it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(s) = &self.subscription_id {
            write!(f, "subscription {s}: ")?;
        }
        if let Some(file) = &self.file {
            write!(f, "{file}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// What one inventory saw.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub origin: Origin,
    /// The snapshot's time: rows it opens start here, rows it closes end here.
    pub taken_at: DateTime<Utc>,
    pub accounts: Vec<Account>,
    pub definitions: Vec<RoleDefinition>,
    pub assignments: Vec<RoleAssignment>,
    pub azure_assignments: Vec<AzureRoleAssignment>,
    pub covered: Vec<Covered>,
    /// Subscriptions (or files) read whole.
    pub ok: u32,
    /// Subscriptions not read.
    pub failed: u32,
    pub problems: Vec<Problem>,
}

impl Snapshot {
    pub fn new(origin: Origin, taken_at: DateTime<Utc>) -> Snapshot {
        Snapshot {
            origin,
            taken_at,
            accounts: Vec::new(),
            definitions: Vec::new(),
            assignments: Vec::new(),
            azure_assignments: Vec::new(),
            covered: Vec::new(),
            ok: 0,
            failed: 0,
            problems: Vec::new(),
        }
    }

    /// Marks every table of `subscription_id` as read whole.
    pub fn cover_subscription(&mut self, subscription_id: &str) {
        for table in Table::ALL {
            self.covered.push(Covered { table, subscription_id: subscription_id.into(), account: None });
        }
    }

    /// Whether the snapshot read `table`'s rows of this subscription (and account) whole.
    pub fn covers(&self, table: Table, subscription_id: &str, account: Option<&str>) -> bool {
        self.covered.iter().any(|c| {
            c.table == table
                && c.subscription_id == subscription_id
                && (c.account.is_none() || c.account.as_deref() == account)
        })
    }
}

/// The parts of an ARM id, lower case: `/subscriptions/{s}/resourceGroups/{rg}/providers/
/// Microsoft.DocumentDB/databaseAccounts/{a}/...`.
#[derive(Debug, Default, PartialEq)]
pub struct ArmPath {
    pub subscription_id: Option<String>,
    pub resource_group: Option<String>,
    pub account: Option<String>,
    /// The account's id, when the path is an account or below one.
    pub account_id: Option<String>,
}

impl ArmPath {
    pub fn parse(id: &str) -> ArmPath {
        let lower = id.trim().to_ascii_lowercase();
        let parts: Vec<&str> = lower.split('/').filter(|p| !p.is_empty()).collect();
        let mut path = ArmPath::default();
        let mut i = 0;
        while i + 1 < parts.len() {
            match parts[i] {
                "subscriptions" if path.subscription_id.is_none() => path.subscription_id = Some(parts[i + 1].into()),
                "resourcegroups" if path.resource_group.is_none() => path.resource_group = Some(parts[i + 1].into()),
                "databaseaccounts" if i > 0 && parts[i - 1] == "microsoft.documentdb" && path.account.is_none() => {
                    path.account = Some(parts[i + 1].into());
                    path.account_id = Some(format!("/{}", parts[..=i + 1].join("/")));
                }
                _ => {}
            }
            i += 1;
        }
        path
    }
}

/// The last segment of an ARM id (a role definition's GUID), lower case.
pub fn last_segment(id: &str) -> String {
    id.trim().trim_end_matches('/').rsplit('/').next().unwrap_or("").to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm_paths_are_read_in_any_case() {
        let p = ArmPath::parse(
            "/subscriptions/S1/resourceGroups/RG/providers/Microsoft.DocumentDB/databaseAccounts/Acc/dbs/db/colls/c",
        );
        assert_eq!(p.subscription_id.as_deref(), Some("s1"));
        assert_eq!(p.resource_group.as_deref(), Some("rg"));
        assert_eq!(p.account.as_deref(), Some("acc"));
        assert_eq!(
            p.account_id.as_deref(),
            Some("/subscriptions/s1/resourcegroups/rg/providers/microsoft.documentdb/databaseaccounts/acc")
        );
        assert_eq!(ArmPath::parse("/subscriptions/s1").account, None);
        assert_eq!(
            last_segment("/x/sqlRoleDefinitions/00000000-0000-0000-0000-00000000000A"),
            "00000000-0000-0000-0000-00000000000a"
        );
    }
}
