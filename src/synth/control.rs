//! The control plane and the directory: Azure Activity log records (key listings and
//! rotations, data-role grants, account writes, diagnostic settings) and Entra ID AuditLogs
//! records (group membership, app role assignments, consents, credentials), as benign
//! baseline traffic and as five attacks on them.
//!
//! Benign traffic is an admins' world: grants and account writes only on working days,
//! 09:00 to 17:00 UTC, by members of "Cosmos DB Admins"; a managed identity lists and
//! regenerates each account's keys once a week from its one Azure address; diagnostic
//! settings are written once at the start of a history and never removed; an account's
//! `disableLocalAuth` is re-stated, never turned back from true to false.
//!
//! Everything draws from `STREAM_CONTROL` (per hour, per week, per history, and once for
//! the cast), so every other stream's bytes are as they were.

use chrono::{DateTime, Datelike, Duration, DurationRound, Timelike, Utc, Weekday};
use rand::RngExt;
use rand::seq::{IndexedRandom, SliceRandom};
use serde_json::{Value, json};

use super::cosmos::{Op, key_caller, key_request, push_request};
use super::realistic::{FIRST_MONDAY, HIRE_EVERY_WEEKS};
use super::scenarios::{FOREIGN_PLACES, KEY_THIEF_AGENT, Plan, VPS_PLACE};
use super::signins::{ARM_RESOURCE, COSMOS_RESOURCE, SignIn};
use super::tenant::{AZURE_PLACE, DATA_USERS, USER_APPS, public_ip};
use super::wire::{Prng, STREAM_CONTROL, WireTime, guid, jitter, stream_rng, whole_ticks};
use super::{
    Burst, CosmosAccount, Event, Generator, Grant, Habit, Place, Principal, PrincipalKind, Profile, Tenant, Workload,
};

pub(super) const ADMIN_GROUP: &str = "Cosmos DB Admins";
pub(super) const DIAGNOSTIC_SETTING: &str = "cosmos-to-eventhub";
pub(super) const DATA_READER: &str = "00000000-0000-0000-0000-000000000001";
pub(super) const DATA_CONTRIBUTOR: &str = "00000000-0000-0000-0000-000000000002";
pub(super) const ACCOUNT_READER: &str = "fbdf93bf-df7d-467e-a4d2-9458aa1360c8";

pub(super) const LIST_KEYS: &str = "Microsoft.DocumentDB/databaseAccounts/listKeys/action";
pub(super) const READ_ONLY_KEYS: &str = "Microsoft.DocumentDB/databaseAccounts/readonlykeys/action";
pub(super) const REGENERATE_KEY: &str = "Microsoft.DocumentDB/databaseAccounts/regenerateKey/action";
pub(super) const DATA_ROLE_WRITE: &str = "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments/write";
pub(super) const ROLE_WRITE: &str = "Microsoft.Authorization/roleAssignments/write";
pub(super) const ACCOUNT_WRITE: &str = "Microsoft.DocumentDB/databaseAccounts/write";
pub(super) const DIAGNOSTIC_WRITE: &str = "Microsoft.Insights/diagnosticSettings/write";
pub(super) const DIAGNOSTIC_DELETE: &str = "Microsoft.Insights/diagnosticSettings/delete";

pub(super) const ADD_MEMBER: &str = "Add member to group";
const REMOVE_MEMBER: &str = "Remove member from group";
const APP_ROLE: &str = "Add app role assignment to service principal";
pub(super) const SP_CREDENTIALS: &str = "Add service principal credentials";
pub(super) const APP_CREDENTIALS: &str = "Update application – Certificates and secrets management";
const CONSENT: &str = "Consent to application";

/// The Azure role behind an ARM call, as `evidence` names it: (role, definition id without dashes).
type Role = (&'static str, &'static str);
const OWNER: Role = ("Owner", "8e3af657a8ff443ca75c2fe8c4bcb635");
const ACCOUNT_CONTRIBUTOR: Role = ("DocumentDB Account Contributor", "5bd9cd88fe454216938bf97437e15450");
const ACCOUNT_READER_ROLE: Role = ("Cosmos DB Account Reader Role", "fbdf93bfdf7d467ea4d29458aa1360c8");

const WEEK: i64 = 7 * 86_400;
/// Groups the directory noise adds users to and removes them from (never the admins' group).
const GROUPS: &[&str] = &["Sales EMEA", "Engineering", "Finance Reporting", "Contractors"];
const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
/// Reads and queries of documents: what a new grantee tries first.
const DOCUMENT_READS: &[(Op, u32)] = &[(Op::Query, 55), (Op::Read, 45)];

/// Who runs the control plane: fixed for a tenant and seed, apart from `Tenant` so that the
/// tenant (and its golden) is as it was.
#[derive(Debug, Clone)]
pub(super) struct Control {
    /// Members of "Cosmos DB Admins": users without data roles who grant them.
    pub(super) admins: Vec<Principal>,
    pub(super) admin_group_id: String,
    /// The managed identity of the weekly key rotation, and the public Azure address its
    /// calls to ARM come from.
    pub(super) rotation: Principal,
    pub(super) rotation_ip: String,
    /// Each account's `disableLocalAuth` (false where the key client works).
    pub(super) local_auth_disabled: Vec<bool>,
    /// Service principals whose secret is rotated every four weeks: (index into
    /// `service_principals`, whether an admin does it on the app registration, the
    /// application's object id).
    pub(super) rotated: Vec<(usize, bool, String)>,
    groups: Vec<(&'static str, String)>,
    graph_sp_id: String,
    /// A third-party app an admin consents to now and then: (name, object id, app id).
    consent_app: (&'static str, String, String),
}

impl Control {
    pub(super) fn new(seed: u64, tenant: &Tenant) -> Control {
        let rng = &mut stream_rng(seed, STREAM_CONTROL, u64::MAX);
        let mut candidates: Vec<&Principal> =
            tenant.users.iter().skip(DATA_USERS).take(24).filter(|u| u.habit != Habit::Leaver).collect();
        candidates.shuffle(rng);
        let admins: Vec<Principal> = candidates.into_iter().take(2).cloned().collect();
        let admin_group_id = guid(rng);
        let (object_id, app_id) = (guid(rng), guid(rng));
        let rotation_ip = public_ip(rng, &AZURE_PLACE);
        // The rotation runs in one of the tenant's function apps, as its managed identity: a
        // principal the tenant already has (its sign-ins and requests are as they were), calling
        // ARM from the app's public Azure address. A tenant without one gets its own.
        let rotation =
            tenant.managed_identities.iter().find(|m| m.name.starts_with("func-")).cloned().unwrap_or_else(|| {
                Principal {
                    kind: PrincipalKind::ManagedIdentity,
                    object_id,
                    app_id,
                    app_name: "func-key-rotation".into(),
                    client_app_used: "",
                    name: "func-key-rotation".into(),
                    display_name: "func-key-rotation".into(),
                    home: &AZURE_PLACE,
                    ips: vec![rotation_ip.clone()],
                    browser: None,
                    cosmos_agent: "",
                    connection_mode: "Gateway",
                    workload: Workload::NoData,
                    requests_per_hour: 0.0,
                    grants: Vec::new(),
                    dormant: false,
                    credential_key_id: String::new(),
                    habit: Habit::Plain,
                }
            });
        let key_account = tenant.key_client.account;
        let local_auth_disabled =
            (0..tenant.accounts.len()).map(|i| rng.random_bool(0.6) && i != key_account).collect();
        // Plain workloads only: their sign-ins come from their own few addresses, so a
        // rotation is followed by nothing new.
        let mut pool: Vec<usize> = (0..tenant.service_principals.len())
            .filter(|&i| {
                let sp = &tenant.service_principals[i];
                sp.has_data() && !sp.dormant && sp.habit == Habit::Plain && sp.workload != Workload::Etl
            })
            .collect();
        pool.shuffle(rng);
        let rotated = pool.into_iter().take(2).enumerate().map(|(k, i)| (i, k == 1, guid(rng))).collect();
        let groups = GROUPS.iter().map(|&name| (name, guid(rng))).collect();
        let graph_sp_id = guid(rng);
        let consent_app = ("Contoso Expenses", guid(rng), guid(rng));
        Control {
            admins,
            admin_group_id,
            rotation,
            rotation_ip,
            local_auth_disabled,
            rotated,
            groups,
            graph_sp_id,
            consent_app,
        }
    }

    pub(super) fn is_admin(&self, p: &Principal) -> bool {
        self.admins.iter().any(|a| a.object_id == p.object_id)
    }
}

/// Whether `t` is in the admins' working window: Monday to Friday, 09:00 to 17:00 UTC.
pub(super) fn business_hours(t: DateTime<Utc>) -> bool {
    !matches!(t.weekday(), Weekday::Sat | Weekday::Sun) && (9..17).contains(&t.hour())
}

/// The first moment at or after `at` outside Monday to Friday, 07:00 to 19:00 UTC.
pub(super) fn off_hours(at: DateTime<Utc>) -> DateTime<Utc> {
    let weekday = !matches!(at.weekday(), Weekday::Sat | Weekday::Sun);
    if weekday && (7..19).contains(&at.hour()) {
        let day = at.duration_trunc(Duration::days(1)).unwrap_or(at);
        day + Duration::hours(19)
    } else {
        at
    }
}

/// The account's ARM path as request bodies spell it (normal case).
pub(super) fn arm_path(account: &CosmosAccount) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.DocumentDB/databaseAccounts/{}",
        account.subscription_id, account.resource_group, account.name
    )
}

/// The narrowest scope covering a grant's collections: one collection, one database, or the account.
pub(super) fn grant_scope(account: &CosmosAccount, grant: &Grant) -> String {
    let base = arm_path(account);
    let db = |d: usize| account.databases.get(d);
    let same_db = grant.collections.windows(2).all(|w| w[0].0 == w[1].0);
    match grant.collections[..] {
        [(d, c)] => match db(d).and_then(|db| Some((db, db.collections.get(c)?))) {
            Some((db, coll)) => format!("{base}/dbs/{}/colls/{}", db.name, coll.name),
            None => base,
        },
        [(d, _), ..] if same_db => match db(d) {
            Some(db) => format!("{base}/dbs/{}", db.name),
            None => base,
        },
        _ => base,
    }
}

/// The data role a workload needs: readers read, everyone else writes too.
pub(super) fn data_role(p: &Principal) -> &'static str {
    if p.workload == Workload::Reader { DATA_READER } else { DATA_CONTRIBUTOR }
}

/// One ARM operation before it is rendered as its Start and Success events.
pub(super) struct ArmOp<'a> {
    pub(super) time: DateTime<Utc>,
    pub(super) account: &'a CosmosAccount,
    /// Upper-case path below the account (empty: the account itself).
    pub(super) below: String,
    /// The action in normal case; `operationName` is its upper-case form.
    pub(super) action: &'static str,
    pub(super) request: Option<Value>,
    pub(super) response: Option<Value>,
    pub(super) created: bool,
}

impl<'a> ArmOp<'a> {
    pub(super) fn on(time: DateTime<Utc>, account: &'a CosmosAccount, action: &'static str) -> Self {
        ArmOp { time, account, below: String::new(), action, request: None, response: None, created: false }
    }
}

/// Who calls ARM, from where, holding which Azure role.
pub(super) struct ArmCaller<'a> {
    pub(super) who: &'a Principal,
    pub(super) ip: &'a str,
    pub(super) role: Role,
}

pub(super) fn by<'a>(who: &'a Principal, ip: &'a str, role: Role) -> ArmCaller<'a> {
    ArmCaller { who, ip, role }
}

/// Who did something in the directory.
pub(super) enum Actor<'a> {
    User(&'a Principal, &'a str),
    App(&'a Principal),
}

/// One AuditLogs record before it is rendered.
pub(super) struct Audit<'a> {
    pub(super) time: DateTime<Utc>,
    pub(super) operation: &'static str,
    pub(super) category: &'static str,
    pub(super) operation_type: &'static str,
    pub(super) actor: Actor<'a>,
    pub(super) targets: Vec<Value>,
    pub(super) details: Vec<(&'static str, String)>,
}

/// A `targetResources` entry; `modified` values are already JSON-encoded, as the wire has them.
pub(super) fn target(id: &str, name: Option<&str>, kind: &str, upn: Option<&str>, modified: &[(&str, Value)]) -> Value {
    let modified: Vec<Value> = modified
        .iter()
        .map(|(name, change)| json!({ "displayName": name, "oldValue": change[0], "newValue": change[1] }))
        .collect();
    json!({ "id": id, "displayName": name, "type": kind, "userPrincipalName": upn, "modifiedProperties": modified })
}

/// (old, new) of a modified property, each JSON-encoded in a string (or null when absent).
pub(super) fn change(old: Option<Value>, new: Option<Value>) -> Value {
    let encode = |v: Option<Value>| v.map_or(Value::Null, |v| Value::String(v.to_string()));
    json!([encode(old), encode(new)])
}

/// A password credential as `KeyDescription` lists it.
pub(super) fn key_description(key_id: &str, name: &str) -> Value {
    change(
        Some(json!([])),
        Some(json!([format!("[KeyIdentifier={key_id},KeyType=Password,KeyUsage=Verify,DisplayName={name}]")])),
    )
}

/// A job of the week's schedule.
#[derive(Debug, Clone, Copy)]
enum Job {
    RotateKeys(usize),
    AccountWrite(usize),
    Regrant,
    ReaderRole,
    HireGrant(i64),
    Credential(usize),
}

impl Generator {
    /// The control-plane and directory events of the hour from `start`: the week's jobs that
    /// start in it, and now and then, in working hours, a directory change.
    pub(super) fn control_hour(&self, hour: i64, start: DateTime<Utc>, out: &mut Vec<Event>) {
        let end = start + Duration::hours(1);
        let week = (start.timestamp() - FIRST_MONDAY).div_euclid(WEEK);
        for (at, job, seed) in self.week_jobs(week) {
            if at >= start && at < end {
                // Each job lasts well under an hour, so the hours either side of a window hold it.
                self.job(job, at, &mut stream_rng(self.seed, STREAM_CONTROL, (3 << 40) ^ seed), out);
            }
        }
        let rng = &mut stream_rng(self.seed, STREAM_CONTROL, hour as u64);
        if business_hours(start) && rng.random_bool(0.15) {
            let at = start + jitter(rng, Duration::minutes(55));
            self.directory_noise(rng, at, out);
        }
    }

    /// The week's scheduled jobs, each with its start and its own seed. Everything is drawn
    /// whatever the profile, so that the draws stay where they are.
    fn week_jobs(&self, week: i64) -> Vec<(DateTime<Utc>, Job, u64)> {
        let rng = &mut stream_rng(self.seed, STREAM_CONTROL, (1 << 40) ^ week as u64);
        let Some(monday) = DateTime::from_timestamp(FIRST_MONDAY + week * WEEK, 0) else {
            return Vec::new();
        };
        // A working day of the week, 09:00 to 16:50, so the job ends before 17:00.
        let working = |rng: &mut Prng, day: i64| {
            monday
                + Duration::days(day)
                + Duration::hours(9 + rng.random_range(0..7))
                + jitter(rng, Duration::minutes(50))
        };
        let mut jobs = Vec::new();
        for a in 0..self.tenant.accounts.len() {
            // The rotation runs on Sunday night, account after account.
            let night = monday + Duration::days(6) + Duration::hours(3) + Duration::minutes(15 * a as i64);
            jobs.push((night + jitter(rng, Duration::minutes(10)), Job::RotateKeys(a), rng.random()));
            let day = rng.random_range(0..5);
            let at = working(rng, day);
            let seed = rng.random();
            if (week + a as i64).rem_euclid(2) == 0 {
                jobs.push((at, Job::AccountWrite(a), seed));
            }
        }
        let day = rng.random_range(0..5);
        let (at, seed) = (working(rng, day), rng.random());
        if week.rem_euclid(2) == 0 {
            jobs.push((at, Job::Regrant, seed));
        }
        let day = rng.random_range(0..5);
        let (at, seed) = (working(rng, day), rng.random());
        if week.rem_euclid(2) == 1 {
            jobs.push((at, Job::ReaderRole, seed));
        }
        // A new hire starts on the Monday of a hire week: the grant comes the Friday before.
        let (at, seed) = (working(rng, 4), rng.random());
        if self.profile == Profile::Realistic && (week + 1).rem_euclid(HIRE_EVERY_WEEKS) == 0 {
            jobs.push((at, Job::HireGrant((week + 1).div_euclid(HIRE_EVERY_WEEKS)), seed));
        }
        for k in 0..self.control.rotated.len() {
            let day = if rng.random_bool(0.5) { 1 } else { 3 };
            let (at, seed) = (working(rng, day), rng.random());
            if (week + 2 * k as i64).rem_euclid(4) == 0 {
                jobs.push((at, Job::Credential(k), seed));
            }
        }
        jobs.into_iter().map(|(at, job, seed)| (whole_ticks(at), job, seed)).collect()
    }

    fn job(&self, job: Job, at: DateTime<Utc>, rng: &mut Prng, out: &mut Vec<Event>) {
        let accounts = &self.tenant.accounts;
        let Some(admin) = self.control.admins.choose(rng) else {
            return;
        };
        let admin_ip = admin.ips.first().map_or("", String::as_str);
        match job {
            Job::RotateKeys(a) => {
                let Some(account) = accounts.get(a) else { return };
                let (mi, ip) = (&self.control.rotation, self.control.rotation_ip.as_str());
                out.push(self.sign_in_event(rng, &SignIn::token(mi, at, ip, mi.home, ARM_RESOURCE)));
                let listed = at + Duration::seconds(rng.random_range(3..20));
                let done = self.arm(rng, &ArmOp::on(listed, account, LIST_KEYS), &by(mi, ip, ACCOUNT_CONTRIBUTOR), out);
                let regenerate = ArmOp {
                    request: Some(json!({ "keyKind": "secondary" })),
                    ..ArmOp::on(done + Duration::seconds(rng.random_range(5..40)), account, REGENERATE_KEY)
                };
                self.arm(rng, &regenerate, &by(mi, ip, ACCOUNT_CONTRIBUTOR), out);
            }
            Job::AccountWrite(a) => {
                let Some(account) = accounts.get(a) else { return };
                let disabled = self.control.local_auth_disabled.get(a).copied().unwrap_or(false);
                out.extend(self.account_write(rng, at, account, disabled, &by(admin, admin_ip, OWNER)));
            }
            Job::Regrant => {
                // An admin re-applies a data role that its holder uses (an infrastructure-as-code run).
                let pool: Vec<&Principal> = self
                    .tenant
                    .principals()
                    .filter(|p| p.has_data() && !p.dormant && p.habit != Habit::Leaver && !self.control.is_admin(p))
                    .collect();
                let Some(p) = pool.choose(rng) else { return };
                let Some(grant) = p.grants.choose(rng) else { return };
                out.extend(self.data_role_write(rng, at, p, grant, data_role(p), &by(admin, admin_ip, OWNER)));
            }
            Job::ReaderRole => {
                // An analyst gets the account reader role and looks at the read-only keys in the portal.
                let pool: Vec<&Principal> = self
                    .tenant
                    .users
                    .iter()
                    .filter(|u| u.has_data() && u.habit != Habit::Leaver && !self.control.is_admin(u))
                    .collect();
                let Some(user) = pool.choose(rng) else { return };
                let Some(account) = user.grants.choose(rng).and_then(|g| accounts.get(g.account)) else { return };
                let id = guid(rng);
                let properties = json!({
                    "PrincipalId": user.object_id,
                    "PrincipalType": "User",
                    "RoleDefinitionId": format!(
                        "/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/{ACCOUNT_READER}",
                        account.subscription_id
                    ),
                    "Scope": arm_path(account),
                    "Condition": null,
                });
                let assign = ArmOp {
                    below: format!("/PROVIDERS/MICROSOFT.AUTHORIZATION/ROLEASSIGNMENTS/{}", id.to_uppercase()),
                    request: Some(json!({ "Id": id, "Properties": properties })),
                    response: Some(json!({
                        "Id": id,
                        "Properties": properties,
                        "Name": id,
                        "Type": "Microsoft.Authorization/roleAssignments",
                    })),
                    created: true,
                    ..ArmOp::on(at, account, ROLE_WRITE)
                };
                let done = self.arm(rng, &assign, &by(admin, admin_ip, OWNER), out);
                let looked = done + Duration::minutes(rng.random_range(10..45));
                let ip = user.ips.first().map_or("", String::as_str);
                let read = ArmOp::on(looked, account, READ_ONLY_KEYS);
                self.arm(rng, &read, &by(user, ip, ACCOUNT_READER_ROLE), out);
            }
            Job::HireGrant(slot) => {
                let hire = self.hire(slot);
                if let Some(grant) = hire.grants.first() {
                    out.extend(self.data_role_write(
                        rng,
                        at,
                        &hire,
                        grant,
                        data_role(&hire),
                        &by(admin, admin_ip, OWNER),
                    ));
                }
            }
            Job::Credential(k) => {
                let Some((i, by_admin, application)) = self.control.rotated.get(k) else { return };
                let Some(sp) = self.tenant.service_principals.get(*i) else { return };
                let key_id = guid(rng);
                let name = format!("rotated-{}", at.format("%Y-%m-%d"));
                let details = vec![("AppId", sp.app_id.clone())];
                let audit = if *by_admin {
                    // On the app registration, in the portal's Certificates & secrets blade.
                    let modified = [("KeyDescription", key_description(&key_id, &name))];
                    Audit {
                        time: at,
                        operation: APP_CREDENTIALS,
                        category: "ApplicationManagement",
                        operation_type: "Update",
                        actor: Actor::User(admin, admin_ip),
                        targets: vec![target(application, Some(&sp.display_name), "Application", None, &modified)],
                        details,
                    }
                } else {
                    self.sp_credential(at, Actor::App(&self.control.rotation), sp, &key_id, &name)
                };
                out.push(self.audit_event(rng, &audit));
            }
        }
    }

    /// The directory's day-to-day: group membership, app roles, a consent.
    fn directory_noise(&self, rng: &mut Prng, at: DateTime<Utc>, out: &mut Vec<Event>) {
        let Some(admin) = self.control.admins.choose(rng) else { return };
        let ip = admin.ips.first().map_or("", String::as_str);
        let users: Vec<&Principal> =
            self.tenant.users.iter().filter(|u| u.habit != Habit::Leaver && !self.control.is_admin(u)).collect();
        let roll = rng.random_range(0..9);
        let audit = match roll {
            0..=5 => {
                let (Some(user), Some((name, id))) = (users.choose(rng), self.control.groups.choose(rng)) else {
                    return;
                };
                self.group_member(at, Actor::User(admin, ip), user, name, id, roll < 4)
            }
            6 | 7 => {
                let Some(sp) = self.tenant.service_principals.choose(rng) else { return };
                let role = *["User.Read.All", "Group.Read.All", "Mail.Send"].choose(rng).unwrap_or(&"User.Read.All");
                let modified = [
                    ("AppRole.Id", change(None, Some(json!(guid(rng))))),
                    ("AppRole.Value", change(None, Some(json!(role)))),
                    ("ServicePrincipal.ObjectID", change(None, Some(json!(sp.object_id)))),
                    ("ServicePrincipal.DisplayName", change(None, Some(json!(sp.display_name)))),
                ];
                let graph = &self.control.graph_sp_id;
                Audit {
                    time: at,
                    operation: APP_ROLE,
                    category: "ApplicationManagement",
                    operation_type: "Assign",
                    actor: Actor::User(admin, ip),
                    targets: vec![target(graph, Some("Microsoft Graph"), "ServicePrincipal", None, &modified)],
                    details: vec![("AppId", GRAPH_APP_ID.to_string())],
                }
            }
            _ => {
                let (name, id, app_id) = &self.control.consent_app;
                let modified = [
                    ("ConsentContext.IsAdminConsent", change(None, Some(json!("True")))),
                    ("ConsentContext.OnBehalfOfAll", change(None, Some(json!("True")))),
                    ("ConsentAction.Permissions", change(None, Some(json!("Scope: User.Read openid profile")))),
                ];
                Audit {
                    time: at,
                    operation: CONSENT,
                    category: "ApplicationManagement",
                    operation_type: "Assign",
                    actor: Actor::User(admin, ip),
                    targets: vec![target(id, Some(name), "ServicePrincipal", None, &modified)],
                    details: vec![("AppId", app_id.clone())],
                }
            }
        };
        out.push(self.audit_event(rng, &audit));
    }

    /// What a history starts with: the admins in their group, and each account's logs going
    /// to Event Hubs.
    pub(super) fn control_setup(&self, from: DateTime<Utc>, to: DateTime<Utc>, out: &mut Vec<Event>) {
        let rng = &mut stream_rng(self.seed, STREAM_CONTROL, (2 << 40) ^ from.timestamp() as u64);
        let Some(first) = self.control.admins.first() else { return };
        let ip = first.ips.first().map_or("", String::as_str);
        let mut events = Vec::new();
        let mut t = whole_ticks(from) + Duration::minutes(1) + jitter(rng, Duration::minutes(2));
        for admin in &self.control.admins {
            let audit =
                self.group_member(t, Actor::User(first, ip), admin, ADMIN_GROUP, &self.control.admin_group_id, true);
            events.push(self.audit_event(rng, &audit));
            t += Duration::seconds(rng.random_range(20..90));
        }
        for account in &self.tenant.accounts {
            t += Duration::seconds(rng.random_range(30..120));
            let body = json!({ "properties": {
                "eventHubAuthorizationRuleId": format!(
                    "/subscriptions/{}/resourceGroups/rg-security/providers/Microsoft.EventHub/namespaces/contoso-audit/authorizationRules/RootManageSharedAccessKey",
                    account.subscription_id
                ),
                "eventHubName": "cosmos-logs",
                "logs": [
                    { "category": "DataPlaneRequests", "enabled": true },
                    { "category": "ControlPlaneRequests", "enabled": true },
                ],
            }});
            let mut response = body.clone();
            response["id"] = json!(format!(
                "{}/providers/microsoft.insights/diagnosticSettings/{DIAGNOSTIC_SETTING}",
                arm_path(account)
            ));
            response["name"] = json!(DIAGNOSTIC_SETTING);
            let op = ArmOp {
                below: diagnostic_path(),
                request: Some(body),
                response: Some(response),
                ..ArmOp::on(t, account, DIAGNOSTIC_WRITE)
            };
            t = self.arm(rng, &op, &by(first, ip, OWNER), &mut events);
        }
        out.extend(events.into_iter().filter(|e| e.time >= from && e.time < to));
    }

    /// Renders an ARM operation as its Start and Success events; returns the Success time.
    pub(super) fn arm(&self, rng: &mut Prng, op: &ArmOp, by: &ArmCaller, out: &mut Vec<Event>) -> DateTime<Utc> {
        let (caller, ip, role) = (by.who, by.ip, by.role);
        let tenant = &self.tenant.tenant_id;
        let account = op.account;
        let start = whole_ticks(op.time);
        let took = rng.random_range(400..2400);
        let done = start + Duration::milliseconds(took);
        let correlation = guid(rng);
        let resource_id = format!("{}{}", account.resource_id, op.below);
        let operation = op.action.to_uppercase();
        let category = match operation.rsplit('/').next() {
            Some("WRITE") => "Write",
            Some("DELETE") => "Delete",
            _ => "Action",
        };
        let user = caller.kind == PrincipalKind::User;
        // Users reach ARM through the portal or the CLI; applications as themselves.
        let app_id = match user {
            true if caller.app_id == USER_APPS[1].1 => USER_APPS[1].1,
            true => USER_APPS[0].1,
            false => caller.app_id.as_str(),
        };
        let mut claims = json!({
            "aud": "https://management.core.windows.net/",
            "iss": format!("https://sts.windows.net/{tenant}/"),
            "http://schemas.microsoft.com/identity/claims/objectidentifier": caller.object_id,
            "http://schemas.microsoft.com/identity/claims/tenantid": tenant,
            "appid": app_id,
            "name": caller.display_name,
            "ipaddr": ip,
        });
        if user {
            claims["http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"] = json!(caller.name);
        }
        let identity = json!({
            "authorization": {
                "scope": resource_id,
                "action": op.action,
                "evidence": {
                    "role": role.0,
                    "roleAssignmentScope": format!("/subscriptions/{}", account.subscription_id),
                    "roleAssignmentId": stable_hex(&caller.object_id, role.0),
                    "roleDefinitionId": role.1,
                    "principalId": caller.object_id.replace('-', ""),
                    "principalType": if user { "User" } else { "ServicePrincipal" },
                },
            },
            "claims": claims,
        });
        let hierarchy = format!("{tenant}/{}", account.subscription_id);
        let (code, signature) = if op.created { ("Created", "Succeeded.Created") } else { ("OK", "Succeeded.OK") };
        for (time, result, signature, duration) in [(start, "Start", "Started.", 0), (done, "Success", signature, took)]
        {
            let mut properties = json!({
                "eventCategory": "Administrative",
                "entity": resource_id,
                "message": op.action,
                "hierarchy": hierarchy,
            });
            if result == "Start" {
                if let Some(body) = &op.request {
                    properties["requestbody"] = json!(body.to_string());
                }
            } else {
                properties["statusCode"] = json!(code);
                if let Some(body) = &op.response {
                    properties["responseBody"] = json!(body.to_string());
                }
            }
            let record = json!({
                "time": WireTime(time, "Z").to_string(),
                "resourceId": resource_id,
                "operationName": operation,
                "category": category,
                "resultType": result,
                "resultSignature": signature,
                "durationMs": duration.to_string(),
                "callerIpAddress": ip,
                "correlationId": correlation,
                "level": "Information",
                "location": "global",
                "identity": identity,
                "properties": properties,
            });
            out.push(Event { time, category, record });
        }
        done
    }

    /// An account write that sets `disableLocalAuth`; both its events.
    pub(super) fn account_write(
        &self,
        rng: &mut Prng,
        at: DateTime<Utc>,
        account: &CosmosAccount,
        disable_local_auth: bool,
        by: &ArmCaller,
    ) -> Vec<Event> {
        let body = json!({
            "location": account.region,
            "properties": { "disableLocalAuth": disable_local_auth, "publicNetworkAccess": "Enabled", "ipRules": [] },
        });
        let mut response = body.clone();
        response["id"] = json!(arm_path(account));
        response["name"] = json!(account.name);
        response["type"] = json!("Microsoft.DocumentDB/databaseAccounts");
        let op = ArmOp { request: Some(body), response: Some(response), ..ArmOp::on(at, account, ACCOUNT_WRITE) };
        let mut events = Vec::new();
        self.arm(rng, &op, by, &mut events);
        events
    }

    /// A Cosmos DB data-plane role assignment of `role` to `p` as `grant` has it; both its events.
    pub(super) fn data_role_write(
        &self,
        rng: &mut Prng,
        at: DateTime<Utc>,
        p: &Principal,
        grant: &Grant,
        role: &str,
        by: &ArmCaller,
    ) -> Vec<Event> {
        let Some(account) = self.tenant.accounts.get(grant.account) else {
            return Vec::new();
        };
        let properties = json!({
            "roleDefinitionId": format!("{}/sqlRoleDefinitions/{role}", arm_path(account)),
            "scope": grant_scope(account, grant),
            "principalId": p.object_id,
        });
        let id = &grant.role_assignment_id;
        let response = json!({
            "id": format!("{}/sqlRoleAssignments/{id}", arm_path(account)),
            "name": id,
            "type": "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments",
            "properties": properties,
        });
        let op = ArmOp {
            below: format!("/SQLROLEASSIGNMENTS/{}", id.to_uppercase()),
            request: Some(json!({ "properties": properties })),
            response: Some(response),
            ..ArmOp::on(at, account, DATA_ROLE_WRITE)
        };
        let mut events = Vec::new();
        self.arm(rng, &op, by, &mut events);
        events
    }

    /// "Add service principal credentials": a password added to `sp`.
    pub(super) fn sp_credential<'a>(
        &self,
        at: DateTime<Utc>,
        actor: Actor<'a>,
        sp: &Principal,
        key_id: &str,
        name: &str,
    ) -> Audit<'a> {
        let modified = [("KeyDescription", key_description(key_id, name))];
        Audit {
            time: at,
            operation: SP_CREDENTIALS,
            category: "ApplicationManagement",
            operation_type: "Update",
            actor,
            targets: vec![target(&sp.object_id, Some(&sp.display_name), "ServicePrincipal", None, &modified)],
            details: vec![("AppId", sp.app_id.clone())],
        }
    }

    fn group_member<'a>(
        &self,
        at: DateTime<Utc>,
        actor: Actor<'a>,
        user: &Principal,
        group: &str,
        group_id: &str,
        add: bool,
    ) -> Audit<'a> {
        let (id, name) = (Some(json!(group_id)), Some(json!(group)));
        let modified = match add {
            true => [("Group.ObjectID", change(None, id)), ("Group.DisplayName", change(None, name))],
            false => [("Group.ObjectID", change(id, None)), ("Group.DisplayName", change(name, None))],
        };
        Audit {
            time: at,
            operation: if add { ADD_MEMBER } else { REMOVE_MEMBER },
            category: "GroupManagement",
            operation_type: if add { "Assign" } else { "Unassign" },
            actor,
            targets: vec![
                target(&user.object_id, None, "User", Some(&user.name), &modified),
                target(group_id, Some(group), "Group", None, &[]),
            ],
            details: Vec::new(),
        }
    }

    pub(super) fn audit_event(&self, rng: &mut Prng, a: &Audit) -> Event {
        let tenant = &self.tenant.tenant_id;
        let time = whole_ticks(a.time);
        let correlation = guid(rng);
        let n: u32 = rng.random_range(10_000_000..99_999_999);
        let (initiated_by, ip) = match a.actor {
            Actor::User(p, ip) => (
                json!({ "user": {
                    "id": p.object_id, "displayName": null, "userPrincipalName": p.name, "ipAddress": ip, "roles": [],
                }}),
                Some(ip),
            ),
            Actor::App(p) => (
                json!({ "app": {
                    "appId": null, "displayName": p.display_name, "servicePrincipalId": p.object_id,
                    "servicePrincipalName": null,
                }}),
                None,
            ),
        };
        let details: Vec<Value> = a.details.iter().map(|(k, v)| json!({ "key": k, "value": v })).collect();
        let when = WireTime(time, "Z").to_string();
        let mut record = json!({
            "time": when,
            "resourceId": format!("/tenants/{tenant}/providers/Microsoft.aadiam"),
            "operationName": a.operation,
            "operationVersion": "1.0",
            "category": "AuditLogs",
            "tenantId": tenant,
            "resultSignature": "None",
            "durationMs": 0,
            "correlationId": correlation,
            "level": "Informational",
            "properties": {
                "id": format!("Directory_{correlation}_{n}"),
                "category": a.category,
                "correlationId": correlation,
                "result": "success",
                "resultReason": "",
                "activityDisplayName": a.operation,
                "activityDateTime": when,
                "loggedByService": "Core Directory",
                "operationType": a.operation_type,
                "initiatedBy": initiated_by,
                "targetResources": a.targets,
                "additionalDetails": details,
            },
        });
        if let Some(ip) = ip {
            record["callerIpAddress"] = json!(ip);
        }
        Event { time, category: "AuditLogs", record }
    }
}

fn diagnostic_path() -> String {
    format!("/PROVIDERS/MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/{}", DIAGNOSTIC_SETTING.to_uppercase())
}

/// A fixed 32-hex-digit id for a caller's role assignment (`evidence.roleAssignmentId`).
fn stable_hex(object_id: &str, role: &str) -> String {
    let fnv = |basis: u64| {
        object_id.bytes().chain(role.bytes()).fold(basis, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
    };
    format!("{:016x}{:016x}", fnv(0xcbf2_9ce4_8422_2325), fnv(0x8422_2325_cbf2_9ce4))
}

/// The attacks on the control plane and the directory.
impl Generator {
    /// A user not among the admins, as `pick` chooses.
    fn pick_user(&self, rng: &mut Prng) -> Option<&Principal> {
        self.pick(rng, |p| p.kind == PrincipalKind::User && !self.control.is_admin(p) && p.habit != Habit::Leaver)
    }

    /// An account that takes keys (local auth enabled).
    fn key_account(&self, rng: &mut Prng) -> Option<&CosmosAccount> {
        let open: Vec<&CosmosAccount> = self
            .tenant
            .accounts
            .iter()
            .enumerate()
            .filter(|&(i, _)| !self.control.local_auth_disabled.get(i).copied().unwrap_or(false))
            .map(|(_, a)| a)
            .collect();
        open.choose(rng).copied()
    }

    /// Where an attacker works from: abroad, or (realistic) a server at a hosting provider.
    fn attacker_place(&self, rng: &mut Prng) -> Option<&'static Place> {
        let foreign = FOREIGN_PLACES.choose(rng)?;
        Some(if self.profile == Profile::Realistic { &VPS_PLACE } else { foreign })
    }

    /// Key-based requests on `account` from `ip`, in `span` from `at`.
    #[allow(clippy::too_many_arguments)]
    fn key_reads(
        &self,
        rng: &mut Prng,
        account: &CosmosAccount,
        at: DateTime<Utc>,
        span: Duration,
        count: usize,
        ip: &str,
        agent: &str,
        out: &mut Vec<Event>,
    ) {
        let caller = key_caller("PrimaryMasterKey", ip, agent);
        for _ in 0..count {
            let time = at + jitter(rng, span);
            if let Some(r) = key_request(rng, account, time, DOCUMENT_READS, caller) {
                push_request(rng, &r, out);
            }
        }
    }

    /// A compromised user lists an account's keys from the attacker's address; the keys read
    /// documents from there a quarter of an hour or more later.
    pub(super) fn keys_listed_then_used(
        &self,
        rng: &mut Prng,
        at: DateTime<Utc>,
        out: &mut Vec<Event>,
    ) -> Option<Plan> {
        let p = self.pick_user(rng)?;
        let account = self.key_account(rng)?;
        let place = self.attacker_place(rng)?;
        let ip = public_ip(rng, place);
        out.push(self.sign_in_event(rng, &SignIn::interactive(p, at, &ip, place)));
        let listed = at + Duration::seconds(rng.random_range(20..90));
        let done = self.arm(rng, &ArmOp::on(listed, account, LIST_KEYS), &by(p, &ip, ACCOUNT_CONTRIBUTOR), out);
        let used = done + Duration::minutes(rng.random_range(15..40));
        let count = rng.random_range(20..=60);
        let span = Duration::minutes(rng.random_range(3..15));
        self.key_reads(rng, account, used, span, count, &ip, KEY_THIEF_AGENT, out);
        let what = format!(
            "{} listed the keys of {} from {ip} ({}); {} minutes later the primary key read its documents from there ({count} requests)",
            p.name,
            account.name,
            place.country,
            (used - listed).num_minutes()
        );
        Plan::by(p, account, &ip, what)
    }

    /// A user who is no admin grants a principal without a role on the account Data
    /// Contributor out of hours; the grantee signs in and reads.
    pub(super) fn off_hours_role_grant(&self, rng: &mut Prng, at: DateTime<Utc>, out: &mut Vec<Event>) -> Option<Plan> {
        let at = off_hours(at);
        let granter = self.pick_user(rng)?;
        let a = rng.random_range(0..self.tenant.accounts.len().max(1));
        let account = self.tenant.accounts.get(a)?;
        let eligible = |p: &&Principal, new: bool| {
            p.object_id != granter.object_id
                && !self.control.is_admin(p)
                && !p.dormant
                && p.habit != Habit::Leaver
                && p.kind != PrincipalKind::ManagedIdentity
                && (!new || p.grants.iter().all(|g| g.account != a))
        };
        let fresh: Vec<&Principal> = self.tenant.principals().filter(|p| eligible(p, true)).collect();
        let any: Vec<&Principal> = self.tenant.principals().filter(|p| eligible(p, false)).collect();
        let grantee = *fresh.choose(rng).or_else(|| any.choose(rng))?;
        let every: Vec<(usize, usize)> = account
            .databases
            .iter()
            .enumerate()
            .flat_map(|(d, db)| (0..db.collections.len()).map(move |c| (d, c)))
            .collect();
        let grant = Grant { account: a, role_assignment_id: guid(rng), collections: every };
        let granter_ip = granter.ips.first()?;
        out.extend(self.data_role_write(
            rng,
            at,
            grantee,
            &grant,
            DATA_CONTRIBUTOR,
            &by(granter, granter_ip, ACCOUNT_CONTRIBUTOR),
        ));
        let ip = grantee.ips.first()?;
        let signed_in = at + Duration::minutes(rng.random_range(10..50));
        let sign_in = match grantee.kind {
            PrincipalKind::User => {
                SignIn { interactive: true, ..SignIn::token(grantee, signed_in, ip, grantee.home, COSMOS_RESOURCE) }
            }
            _ => SignIn::token(grantee, signed_in, ip, grantee.home, COSMOS_RESOURCE),
        };
        out.push(self.sign_in_event(rng, &sign_in));
        let count = rng.random_range(10..=40);
        let span = Duration::minutes(rng.random_range(5..20));
        let burst = Burst::one(&grant, ip, signed_in + Duration::seconds(20), span, count, DOCUMENT_READS);
        self.burst(rng, grantee, &burst, out, |_, _| {});
        let what = format!(
            "{}, no admin, granted {} Data Contributor on {} at {} UTC, out of hours; it signed in and read the account",
            granter.name,
            grantee.name,
            account.name,
            at.format("%a %H:%M")
        );
        Plan::by(grantee, account, ip, what)
    }

    /// An admin turns local auth off; half an hour later another user turns it back on, lists
    /// the keys and uses one from their address.
    pub(super) fn local_auth_reenabled(&self, rng: &mut Prng, at: DateTime<Utc>, out: &mut Vec<Event>) -> Option<Plan> {
        let admin = self.control.admins.choose(rng)?;
        let account = self.tenant.accounts.choose(rng)?;
        let p = self.pick_user(rng)?;
        let ip = p.ips.first()?;
        out.extend(self.account_write(rng, at, account, true, &by(admin, admin.ips.first()?, OWNER)));
        let reenabled = at + Duration::minutes(rng.random_range(20..=40));
        let events = self.account_write(rng, reenabled, account, false, &by(p, ip, ACCOUNT_CONTRIBUTOR));
        let done = events.last().map_or(reenabled, |e| e.time);
        out.extend(events);
        // The keys have to come from somewhere: the same user lists them.
        let listed = done + Duration::seconds(rng.random_range(30..150));
        let done = self.arm(rng, &ArmOp::on(listed, account, LIST_KEYS), &by(p, ip, ACCOUNT_CONTRIBUTOR), out);
        let count = rng.random_range(6..=15);
        let start = done + Duration::minutes(rng.random_range(2..6));
        self.key_reads(rng, account, start, Duration::minutes(8), count, ip, p.cosmos_agent, out);
        let what = format!(
            "{} set disableLocalAuth back to false on {} {} minutes after {} disabled it, and used a key from {ip}",
            p.name,
            account.name,
            (reenabled - at).num_minutes(),
            admin.name
        );
        Plan::by(p, account, ip, what)
    }

    /// A compromised user adds a password to a service principal; the principal signs in
    /// with it from an address it never used and reads its account.
    pub(super) fn sp_credential_added(&self, rng: &mut Prng, at: DateTime<Utc>, out: &mut Vec<Event>) -> Option<Plan> {
        let sp = self.pick(rng, |p| p.kind == PrincipalKind::ServicePrincipal)?;
        let (grant, account) = self.grant_of(rng, sp)?;
        let user = self.pick_user(rng)?;
        let foreign = FOREIGN_PLACES.choose(rng)?;
        let x = public_ip(rng, foreign);
        // The user's stolen token, replayed: no sign-in of the user's shows (the user is not
        // the principal the scenario is about, so nothing about it should be raised).
        let key_id = guid(rng);
        let added = at;
        let audit = self.sp_credential(added, Actor::User(user, &x), sp, &key_id, "backup");
        out.push(self.audit_event(rng, &audit));
        // The new secret signs in: its key id is the one just added.
        let stolen = Principal { credential_key_id: key_id, ..sp.clone() };
        let place = self.attacker_place(rng)?;
        let y = public_ip(rng, place);
        let signed_in = added + Duration::minutes(rng.random_range(10..=30));
        out.push(self.sign_in_event(rng, &SignIn::token(&stolen, signed_in, &y, place, COSMOS_RESOURCE)));
        let count = rng.random_range(10..=40);
        let span = Duration::minutes(rng.random_range(5..15));
        let burst = Burst::one(grant, &y, signed_in + Duration::seconds(10), span, count, DOCUMENT_READS);
        self.burst(rng, &stolen, &burst, out, |_, r| {
            r.caller.connection_mode = "Gateway";
            r.partition = "";
        });
        let what = format!(
            "{} added a password to {} from {x}; {} signed in with it from {y} ({}) and read {}",
            user.name, sp.name, sp.name, place.country, account.name
        );
        Plan::by(sp, account, &y, what)
    }

    /// A user deletes an account's diagnostic setting, then lists its keys and reads with one.
    pub(super) fn diagnostic_setting_removed(
        &self,
        rng: &mut Prng,
        at: DateTime<Utc>,
        out: &mut Vec<Event>,
    ) -> Option<Plan> {
        let p = self.pick_user(rng)?;
        let account = self.key_account(rng)?;
        let ip = p.ips.first()?;
        let delete = ArmOp { below: diagnostic_path(), ..ArmOp::on(at, account, DIAGNOSTIC_DELETE) };
        let done = self.arm(rng, &delete, &by(p, ip, ACCOUNT_CONTRIBUTOR), out);
        // Unseen now, the user lists the keys and reads with one.
        let listed = done + Duration::seconds(rng.random_range(30..150));
        let done = self.arm(rng, &ArmOp::on(listed, account, LIST_KEYS), &by(p, ip, ACCOUNT_CONTRIBUTOR), out);
        let start = done + Duration::minutes(rng.random_range(2..8));
        let count = rng.random_range(8..=20);
        self.key_reads(rng, account, start, Duration::minutes(10), count, ip, p.cosmos_agent, out);
        let what = format!(
            "{} deleted the diagnostic setting {DIAGNOSTIC_SETTING} of {}, then read it with a key from {ip}",
            p.name, account.name
        );
        Plan::by(p, account, ip, what)
    }
}
