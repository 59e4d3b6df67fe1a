//! The tenant's inventory as the Azure CLI prints it (`az cosmosdb list`, `az cosmosdb sql
//! role definition list`, `az cosmosdb sql role assignment list`, `az role assignment list
//! --all`): what `tokentrail inventory --from-file` reads, so that the access review and the
//! key exposure have something to say about a generated tenant.
//!
//! Most principals hold one data-plane role assignment per grant, at the narrowest scope
//! covering the collections their traffic uses (the role `control.rs` grants them). A few are
//! given more than they use, and [`Inventory::over_grants`] says what the review should make
//! of each: Data Contributor on the whole account for readers ('reader'), the whole account
//! for writers that work in one container ('narrow scope'), a data role for principals that
//! never send a request ('remove'), and a custom writer role (no delete) for a group ('group').
//! Azure roles: the admins are Owners of the accounts' resource groups, the key rotation
//! identity DocumentDB Account Contributor on each account, and one analyst has the Cosmos DB
//! Account Reader Role (the read-only keys) on the key client's account.
//!
//! Everything draws from `STREAM_INVENTORY`, so no other stream's bytes change.

use std::path::{Path, PathBuf};

use rand::seq::{IndexedRandom, SliceRandom};
use serde_json::{Value, json};

use super::control::{ACCOUNT_READER, DATA_CONTRIBUTOR, DATA_READER, arm_path, data_role, grant_scope};
use super::wire::{Prng, STREAM_INVENTORY, guid, stream_rng};
use super::{CosmosAccount, Generator, Habit, Principal, PrincipalKind, Workload};

/// The four files [`Inventory::write`] fills, in the order of [`Inventory::documents`].
pub const INVENTORY_FILES: [&str; 4] = [
    "cosmosdb-list.json",
    "sql-role-definition-list.json",
    "sql-role-assignment-list.json",
    "role-assignment-list.json",
];

const OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
const ACCOUNT_CONTRIBUTOR: &str = "5bd9cd88-fe45-4216-938b-f97437e15450";
const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
/// The group holding the custom writer role, and the role.
const GROUP_NAME: &str = "Cosmos DB Data Analysts";
const CUSTOM_ROLE_NAME: &str = "Contoso Data Writer (no delete)";
/// How many principals get each kind of over-grant.
const READERS: usize = 2;
const NARROW: usize = 2;
const UNUSED: usize = 3;

const META: &str = "Microsoft.DocumentDB/databaseAccounts/readMetadata";
const CONTAINERS: &str = "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers";

/// A role assignment the inventory makes on purpose, and what the access review should say
/// of it once the history covers the review period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverGrant {
    /// Object id, lower case (a group's id for 'group').
    pub principal_id: String,
    pub name: String,
    pub account: String,
    /// The assignment's ARM id, lower case.
    pub assignment_id: String,
    /// 'reader', 'narrow scope', 'remove' or 'group'.
    pub recommendation: &'static str,
}

/// The tenant's inventory: the four documents `az` prints, and what was put in them on purpose.
#[derive(Debug, Clone, PartialEq)]
pub struct Inventory {
    /// `az cosmosdb list`: every account.
    pub accounts: Value,
    /// `az cosmosdb sql role definition list`: the built-in roles of every account, and the
    /// custom writer role of the first.
    pub role_definitions: Value,
    /// `az cosmosdb sql role assignment list`: every account's.
    pub role_assignments: Value,
    /// `az role assignment list --all`: the Azure roles on the accounts and their groups.
    pub azure_role_assignments: Value,
    pub over_grants: Vec<OverGrant>,
    /// Who may read the key client's account keys: (object id, Azure role name).
    pub key_readers: Vec<(String, &'static str)>,
    /// The group of the custom role's assignment.
    pub group_id: String,
}

impl Inventory {
    /// The documents with their file names ([`INVENTORY_FILES`]).
    pub fn documents(&self) -> [(&'static str, &Value); 4] {
        [
            (INVENTORY_FILES[0], &self.accounts),
            (INVENTORY_FILES[1], &self.role_definitions),
            (INVENTORY_FILES[2], &self.role_assignments),
            (INVENTORY_FILES[3], &self.azure_role_assignments),
        ]
    }

    /// Writes the four documents into `dir` (created if missing); returns their paths.
    pub fn write(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir)?;
        let mut paths = Vec::with_capacity(4);
        for (name, document) in self.documents() {
            let path = dir.join(name);
            let mut text = serde_json::to_string_pretty(document).map_err(std::io::Error::other)?;
            text.push('\n');
            std::fs::write(&path, text)?;
            paths.push(path);
        }
        Ok(paths)
    }
}

fn role_definition_path(account: &CosmosAccount, role: &str) -> String {
    format!("{}/sqlRoleDefinitions/{role}", arm_path(account))
}

fn data_assignment(account: &CosmosAccount, id: &str, principal_id: &str, role: &str, scope: &str) -> Value {
    json!({
        "id": format!("{}/sqlRoleAssignments/{id}", arm_path(account)),
        "name": id,
        "principalId": principal_id,
        "resourceGroup": account.resource_group,
        "roleDefinitionId": role_definition_path(account, role),
        "scope": scope,
        "type": "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments",
    })
}

fn role_definition(
    account: &CosmosAccount,
    id: &str,
    name: &str,
    kind: &str,
    scope: &str,
    actions: &[String],
    not_actions: &[String],
) -> Value {
    json!({
        "assignableScopes": [scope],
        "id": role_definition_path(account, id),
        "name": id,
        "permissions": [{ "dataActions": actions, "notDataActions": not_actions }],
        "resourceGroup": account.resource_group,
        "roleName": name,
        "type": "Microsoft.DocumentDB/databaseAccounts/sqlRoleDefinitions",
        "typePropertiesType": kind,
    })
}

/// An Azure role assignment as `az role assignment list` prints it.
struct AzureAssignment<'a> {
    subscription_id: &'a str,
    scope: String,
    resource_group: Option<&'a str>,
    principal_id: &'a str,
    principal_name: &'a str,
    principal_type: &'static str,
    role: &'static str,
    role_name: &'static str,
}

impl AzureAssignment<'_> {
    fn render(&self, id: &str) -> Value {
        json!({
            "condition": null,
            "conditionVersion": null,
            "description": null,
            "id": format!("{}/providers/Microsoft.Authorization/roleAssignments/{id}", self.scope),
            "name": id,
            "principalId": self.principal_id,
            "principalName": self.principal_name,
            "principalType": self.principal_type,
            "resourceGroup": self.resource_group,
            "roleDefinitionId": format!(
                "/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/{}",
                self.subscription_id, self.role
            ),
            "roleDefinitionName": self.role_name,
            "scope": self.scope,
            "type": "Microsoft.Authorization/roleAssignments",
        })
    }
}

fn principal_type(p: &Principal) -> &'static str {
    match p.kind {
        PrincipalKind::User => "User",
        PrincipalKind::ServicePrincipal | PrincipalKind::ManagedIdentity => "ServicePrincipal",
    }
}

/// `k` of `pool`, drawn without replacement.
fn pick<'a>(rng: &mut Prng, mut pool: Vec<&'a Principal>, k: usize) -> Vec<&'a Principal> {
    pool.shuffle(rng);
    pool.truncate(k);
    pool
}

impl Generator {
    /// The tenant's inventory (see the module's documentation): a pure function of the seed
    /// and the profile.
    pub fn inventory(&self) -> Inventory {
        let rng = &mut stream_rng(self.seed, STREAM_INVENTORY, 0);
        let tenant = &self.tenant;
        let accounts = &tenant.accounts;
        let control = &self.control;
        let working = |p: &&Principal| {
            !p.dormant && p.habit != Habit::Leaver && !control.is_admin(p) && p.object_id != control.rotation.object_id
        };
        let principals: Vec<&Principal> = tenant.principals().filter(working).collect();
        let single = |p: &Principal| p.grants.len() == 1 && p.grants[0].collections.len() == 1;
        let readers = pick(
            rng,
            principals.iter().copied().filter(|p| p.workload == Workload::Reader && p.has_data()).collect(),
            READERS,
        );
        let narrow = pick(
            rng,
            principals
                .iter()
                .copied()
                .filter(|p| matches!(p.workload, Workload::Service | Workload::Analyst) && single(p))
                .collect(),
            NARROW,
        );
        let unused = pick(
            rng,
            principals.iter().copied().filter(|p| p.workload == Workload::NoData && !p.has_data()).collect(),
            UNUSED,
        );
        let is = |set: &[&Principal], p: &Principal| set.iter().any(|q| q.object_id == p.object_id);

        let mut over_grants = Vec::new();
        let mut assignments = Vec::new();
        for p in tenant.principals() {
            for grant in &p.grants {
                let Some(account) = accounts.get(grant.account) else { continue };
                let (role, scope, recommendation) = if is(&readers, p) {
                    (DATA_CONTRIBUTOR, arm_path(account), Some("reader"))
                } else if is(&narrow, p) {
                    (DATA_CONTRIBUTOR, arm_path(account), Some("narrow scope"))
                } else {
                    (data_role(p), grant_scope(account, grant), None)
                };
                let a = data_assignment(account, &grant.role_assignment_id, &p.object_id, role, &scope);
                if let Some(recommendation) = recommendation {
                    over_grants.push(over_grant(p, account, &a, recommendation));
                }
                assignments.push(a);
            }
        }
        for p in &unused {
            let Some(account) = accounts.choose(rng) else { break };
            let scope = match account.databases.choose(rng) {
                Some(db) => format!("{}/dbs/{}", arm_path(account), db.name),
                None => arm_path(account),
            };
            let a = data_assignment(account, &guid(rng), &p.object_id, DATA_READER, &scope);
            over_grants.push(over_grant(p, account, &a, "remove"));
            assignments.push(a);
        }

        // The custom role: everything a writer does to items, but deleting them.
        let custom_id = guid(rng);
        let group_id = guid(rng);
        let mut definitions = Vec::new();
        for (i, account) in accounts.iter().enumerate() {
            let scope = arm_path(account);
            let reads: Vec<String> = [
                META.to_string(),
                format!("{CONTAINERS}/executeQuery"),
                format!("{CONTAINERS}/readChangeFeed"),
                format!("{CONTAINERS}/items/read"),
            ]
            .into();
            let writes: Vec<String> =
                [META.to_string(), format!("{CONTAINERS}/*"), format!("{CONTAINERS}/items/*")].into();
            definitions.push(role_definition(
                account,
                DATA_READER,
                "Cosmos DB Built-in Data Reader",
                "BuiltInRole",
                &scope,
                &reads,
                &[],
            ));
            definitions.push(role_definition(
                account,
                DATA_CONTRIBUTOR,
                "Cosmos DB Built-in Data Contributor",
                "BuiltInRole",
                &scope,
                &writes,
                &[],
            ));
            if i == 0 {
                let mut actions = reads.clone();
                actions.extend(["create", "upsert", "replace"].map(|a| format!("{CONTAINERS}/items/{a}")));
                definitions.push(role_definition(
                    account,
                    &custom_id,
                    CUSTOM_ROLE_NAME,
                    "CustomRole",
                    &scope,
                    &actions,
                    &[],
                ));
                let scope = match account.databases.first() {
                    Some(db) => format!("{scope}/dbs/{}", db.name),
                    None => scope,
                };
                let a = data_assignment(account, &guid(rng), &group_id, &custom_id, &scope);
                over_grants.push(OverGrant {
                    principal_id: group_id.clone(),
                    name: GROUP_NAME.into(),
                    account: account.name.clone(),
                    assignment_id: assignment_id(&a),
                    recommendation: "group",
                });
                assignments.push(a);
            }
        }

        // Azure roles.
        let mut azure = Vec::new();
        let resource_group =
            |a: &CosmosAccount| format!("/subscriptions/{}/resourceGroups/{}", a.subscription_id, a.resource_group);
        for account in accounts {
            for admin in &control.admins {
                azure.push(AzureAssignment {
                    subscription_id: &account.subscription_id,
                    scope: resource_group(account),
                    resource_group: Some(&account.resource_group),
                    principal_id: &admin.object_id,
                    principal_name: &admin.name,
                    principal_type: "User",
                    role: OWNER,
                    role_name: "Owner",
                });
            }
            let rotation = &control.rotation;
            azure.push(AzureAssignment {
                subscription_id: &account.subscription_id,
                scope: arm_path(account),
                resource_group: Some(&account.resource_group),
                principal_id: &rotation.object_id,
                principal_name: &rotation.app_id,
                principal_type: "ServicePrincipal",
                role: ACCOUNT_CONTRIBUTOR,
                role_name: "DocumentDB Account Contributor",
            });
        }
        let key_account = accounts.get(tenant.key_client.account);
        let analysts: Vec<&Principal> = principals
            .iter()
            .copied()
            .filter(|p| {
                p.kind == PrincipalKind::User && p.grants.iter().any(|g| g.account == tenant.key_client.account)
            })
            .collect();
        let analyst = analysts.choose(rng).copied();
        let mut key_readers = Vec::new();
        if let Some(account) = key_account {
            for admin in &control.admins {
                key_readers.push((admin.object_id.clone(), "Owner"));
            }
            key_readers.push((control.rotation.object_id.clone(), "DocumentDB Account Contributor"));
            if let Some(analyst) = analyst {
                azure.push(AzureAssignment {
                    subscription_id: &account.subscription_id,
                    scope: arm_path(account),
                    resource_group: Some(&account.resource_group),
                    principal_id: &analyst.object_id,
                    principal_name: &analyst.name,
                    principal_type: principal_type(analyst),
                    role: ACCOUNT_READER,
                    role_name: "Cosmos DB Account Reader Role",
                });
                key_readers.push((analyst.object_id.clone(), "Cosmos DB Account Reader Role"));
            }
        }
        if let Some(account) = accounts.first() {
            // The group reads the resource group in the portal: the Azure role that names it a group.
            azure.push(AzureAssignment {
                subscription_id: &account.subscription_id,
                scope: resource_group(account),
                resource_group: Some(&account.resource_group),
                principal_id: &group_id,
                principal_name: GROUP_NAME,
                principal_type: "Group",
                role: READER,
                role_name: "Reader",
            });
        }
        let azure_role_assignments = azure.iter().map(|a| a.render(&guid(rng))).collect();

        Inventory {
            accounts: accounts.iter().enumerate().map(|(i, a)| self.account_document(i, a)).collect(),
            role_definitions: Value::Array(definitions),
            role_assignments: Value::Array(assignments),
            azure_role_assignments: Value::Array(azure_role_assignments),
            over_grants,
            key_readers,
            group_id,
        }
    }

    /// `az cosmosdb show` of account `i`: local auth as the account writes of `control.rs`
    /// leave it.
    fn account_document(&self, i: usize, account: &CosmosAccount) -> Value {
        let disabled = self.control.local_auth_disabled.get(i).copied().unwrap_or(false);
        json!({
            "databaseAccountOfferType": "Standard",
            "disableKeyBasedMetadataWriteAccess": disabled,
            "disableLocalAuth": disabled,
            "documentEndpoint": format!("https://{}.documents.azure.com:443/", account.name),
            "id": arm_path(account),
            "ipRules": [],
            "isVirtualNetworkFilterEnabled": false,
            "kind": "GlobalDocumentDB",
            "location": account.region,
            "minimalTlsVersion": "Tls12",
            "name": account.name,
            "provisioningState": "Succeeded",
            "publicNetworkAccess": "Enabled",
            "resourceGroup": account.resource_group,
            "tags": {},
            "type": "Microsoft.DocumentDB/databaseAccounts",
            "virtualNetworkRules": [],
        })
    }
}

fn assignment_id(a: &Value) -> String {
    a["id"].as_str().unwrap_or_default().to_ascii_lowercase()
}

fn over_grant(p: &Principal, account: &CosmosAccount, a: &Value, recommendation: &'static str) -> OverGrant {
    OverGrant {
        principal_id: p.object_id.to_ascii_lowercase(),
        name: p.name.clone(),
        account: account.name.clone(),
        assignment_id: assignment_id(a),
        recommendation,
    }
}
