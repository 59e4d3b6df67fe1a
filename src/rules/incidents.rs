//! Incidents: findings that tell one story (a spray, then a sign-in from its address, then
//! the principal reading data; keys listed, then a key used) grouped so that on-call reads
//! one story, not four unlinked findings.
//!
//! After each detection pass [`group`] gives every finding that has none an incident: the
//! incident of an earlier finding it is linked to, or a new one. Two findings are linked
//! when their evidence lies within [`LINK_WINDOW`] of each other and they share
//! - the principal, or
//! - the address their rule is about (`ip=` of the entity), or
//! - the account (`account=`), for a finding that names no principal (a key or resource
//!   token's use names none, so its account is all that ties it to who listed the keys),
//!   within [`ACCOUNT_WINDOW`]. Such a link joins the finding to the oldest story but
//!   never merges two, and a principal's finding never joins through it: two principals'
//!   findings on one busy account are not one story.
//!
//! A finding linked to two incidents merges the newer into the older. Membership is
//! stored (migration 22), so an incident keeps its id and its triage as findings join.
//! Findings keep their own status and history: [`triage`] changes each finding of an
//! incident through [`findings::set_status`] and writes the incident's log, chained like
//! the finding history.

use super::findings::{self, Refused, Status};
use crate::store::Store;
use anyhow::{Result, bail};
use chrono::TimeDelta;
use std::collections::{BTreeSet, HashMap};

/// How close in time two findings' evidence must be to link them by principal or address.
pub const LINK_WINDOW: TimeDelta = TimeDelta::hours(24);

/// How close for a link by account alone (keys listed, then a key used): an account is
/// shared by everyone who uses it, so only what follows closely is one story.
pub const ACCOUNT_WINDOW: TimeDelta = TimeDelta::hours(2);

/// The log's author for the engine's own entries.
const ENGINE: &str = "tokentrail";

/// One finding as grouping reads it.
#[derive(Debug, Clone)]
struct Member {
    id: i64,
    principal: Option<String>,
    ip: Option<String>,
    account: Option<String>,
    /// Microseconds since the epoch.
    first_seen: i64,
    last_seen: i64,
    incident: Option<i64>,
}

impl Member {
    /// Whether the two findings' evidence lies within `window` of each other.
    fn near(&self, other: &Member, window: TimeDelta) -> bool {
        let window = window.num_microseconds().unwrap_or(i64::MAX / 4);
        self.first_seen - window <= other.last_seen && other.first_seen - window <= self.last_seen
    }
}

/// The value of `name=` in a finding's entity (`account=a ip=1.2.3.4`).
pub fn entity_part<'a>(entity: &'a str, name: &str) -> Option<&'a str> {
    entity.split_whitespace().find_map(|part| part.strip_prefix(name)?.strip_prefix('=')).filter(|v| !v.is_empty())
}

/// What links `member` to `other`, if anything: `principal=…`, `ip=…` or `account=…`.
fn link(member: &Member, other: &Member) -> Option<String> {
    if !member.near(other, LINK_WINDOW) {
        return None;
    }
    if let (Some(a), Some(b)) = (&member.principal, &other.principal)
        && a == b
    {
        return Some(format!("principal={a}"));
    }
    if let (Some(a), Some(b)) = (&member.ip, &other.ip)
        && a == b
    {
        return Some(format!("ip={a}"));
    }
    if let (Some(a), Some(b)) = (&member.account, &other.account)
        && a == b
        && member.principal.is_none()
        && member.near(other, ACCOUNT_WINDOW)
    {
        return Some(format!("account={a}"));
    }
    None
}

/// What one [`group`] call did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grouped {
    /// Incidents made.
    pub created: usize,
    /// Findings that joined an incident made before.
    pub joined: usize,
    /// Incidents merged into an older one.
    pub merged: usize,
}

/// Gives every finding without an incident one (see the module's doc), in one transaction
/// that also chains the incident log. Withdrawn findings (no evidence left) are not
/// grouped. Safe to call again: it only looks at findings without an incident.
pub fn group(store: &Store) -> Result<Grouped> {
    let waiting: i64 = store.connection()?.query_row(
        "SELECT count(*) FROM findings f ANTI JOIN incident_findings m ON m.finding_id = f.id
         WHERE f.status <> 'withdrawn'",
        [],
        |r| r.get(0),
    )?;
    if waiting == 0 {
        return Ok(Grouped::default());
    }
    crate::store::append::append(store, "incident_log", |conn| {
        let mut members = read_members(conn)?;
        let mut grouped = Grouped::default();
        // Indexes of grouped findings by each kind of key, for the lookups below.
        let mut by_key: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, m) in members.iter().enumerate().filter(|(_, m)| m.incident.is_some()) {
            for key in keys(m) {
                by_key.entry(key).or_default().push(i);
            }
        }
        let ungrouped: Vec<usize> = (0..members.len()).filter(|&i| members[i].incident.is_none()).collect();
        for i in ungrouped {
            let candidates: BTreeSet<usize> =
                keys(&members[i]).iter().filter_map(|k| by_key.get(k)).flatten().copied().collect();
            // The first link to each incident, oldest finding first.
            let mut links: Vec<(i64, usize, String)> = Vec::new();
            for j in candidates {
                let Some(incident) = members[j].incident else { continue };
                if links.iter().any(|(seen, _, _)| *seen == incident) {
                    continue;
                }
                if let Some(why) = link(&members[i], &members[j]) {
                    links.push((incident, j, why));
                }
            }
            links.sort_by_key(|(incident, _, _)| *incident);
            let incident = match links.first() {
                None => {
                    let id: i64 = conn.query_row(
                        "INSERT INTO incidents (created_at, updated_at)
                         VALUES (get_current_timestamp(), get_current_timestamp()) RETURNING id",
                        [],
                        |r| r.get(0),
                    )?;
                    add(conn, id, members[i].id, None)?;
                    log(conn, id, ENGINE, "created", Some(members[i].id), None)?;
                    grouped.created += 1;
                    id
                }
                Some((id, j, why)) => {
                    add(conn, *id, members[i].id, Some((why, members[*j].id)))?;
                    log(conn, *id, ENGINE, "joined", Some(members[i].id), Some(why))?;
                    grouped.joined += 1;
                    *id
                }
            };
            // An account alone joins a key's use to a story but never merges two stories.
            for (other, _, why) in links.iter().skip(1).filter(|(_, _, why)| !why.starts_with("account=")) {
                conn.execute(
                    "UPDATE incident_findings SET incident_id = ? WHERE incident_id = ?",
                    duckdb::params![incident, other],
                )?;
                conn.execute(
                    "UPDATE incidents SET merged_into = ?, updated_at = get_current_timestamp() WHERE id = ?",
                    duckdb::params![incident, other],
                )?;
                let detail = format!("incident {other}, through finding {} ({why})", members[i].id);
                log(conn, incident, ENGINE, "merged", None, Some(&detail))?;
                log(conn, *other, ENGINE, "merged", None, Some(&format!("into incident {incident}")))?;
                for m in members.iter_mut().filter(|m| m.incident == Some(*other)) {
                    m.incident = Some(incident);
                }
                grouped.merged += 1;
            }
            conn.execute("UPDATE incidents SET updated_at = get_current_timestamp() WHERE id = ?", [incident])?;
            members[i].incident = Some(incident);
            for key in keys(&members[i]) {
                by_key.entry(key).or_default().push(i);
            }
        }
        Ok(grouped)
    })
}

/// The keys a finding can be found by; [`link`] decides whether two that share one link.
fn keys(m: &Member) -> Vec<String> {
    let mut keys = Vec::with_capacity(3);
    keys.extend(m.principal.as_ref().map(|p| format!("principal={p}")));
    keys.extend(m.ip.as_ref().map(|ip| format!("ip={ip}")));
    keys.extend(m.account.as_ref().map(|a| format!("account={a}")));
    keys
}

fn read_members(conn: &duckdb::Connection) -> Result<Vec<Member>> {
    let mut stmt = conn.prepare(include_str!("sql/incident_members.sql"))?;
    let rows = stmt.query_map([], |r| {
        let entity: String = r.get(2)?;
        Ok(Member {
            id: r.get(0)?,
            principal: r.get::<_, Option<String>>(1)?.filter(|p| !p.is_empty()),
            ip: entity_part(&entity, "ip").map(str::to_string),
            account: entity_part(&entity, "account").map(str::to_string),
            first_seen: r.get(3)?,
            last_seen: r.get(4)?,
            incident: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<duckdb::Result<_>>()?)
}

fn add(conn: &duckdb::Connection, incident: i64, finding: i64, linked: Option<(&String, i64)>) -> Result<()> {
    conn.execute(
        "INSERT INTO incident_findings VALUES (?, ?, ?, ?, get_current_timestamp())",
        duckdb::params![finding, incident, linked.map(|l| l.0), linked.map(|l| l.1)],
    )?;
    Ok(())
}

fn log(
    conn: &duckdb::Connection,
    incident: i64,
    by: &str,
    action: &str,
    finding: Option<i64>,
    detail: Option<&str>,
) -> Result<()> {
    conn.execute(
        "INSERT INTO incident_log (incident_id, logged_at, changed_by, action, finding_id, detail)
         VALUES (?, get_current_timestamp(), ?, ?, ?, ?)",
        duckdb::params![incident, by, action, finding, detail],
    )?;
    Ok(())
}

/// What a person does to an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Someone is on it: its open findings become acknowledged.
    Acknowledge,
    /// Dealt with: its open and acknowledged findings become resolved (newer evidence
    /// reopens each, and a new finding that joins makes the incident open again).
    Resolve,
    /// Back to open: its resolved and suppressed findings.
    Reopen,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Acknowledge => "acknowledged",
            Action::Resolve => "resolved",
            Action::Reopen => "reopened",
        }
    }

    fn target(self) -> Status {
        match self {
            Action::Acknowledge => Status::Acknowledged,
            Action::Resolve => Status::Resolved,
            Action::Reopen => Status::Open,
        }
    }

    /// Whether a finding in `status` is one this action changes.
    fn applies_to(self, status: Status) -> bool {
        match self {
            Action::Acknowledge => status == Status::Open,
            Action::Resolve => matches!(status, Status::Open | Status::Acknowledged),
            Action::Reopen => matches!(status, Status::Resolved | Status::Suppressed),
        }
    }
}

/// Why an incident action was not taken.
#[derive(Debug, thiserror::Error)]
pub enum IncidentRefused {
    #[error("there is no incident {0}")]
    NoIncident(i64),
    #[error("incident {id} was merged into incident {into}: act on that one")]
    Merged { id: i64, into: i64 },
    #[error("incident {id} has no finding that can become {to}")]
    Nothing { id: i64, to: Status },
}

/// What [`triage`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Triaged {
    /// The findings changed.
    pub changed: Vec<i64>,
    /// Findings another change reached first (their own status no longer allowed it).
    pub skipped: Vec<i64>,
}

/// Applies `action` to every finding of incident `id` it applies to, each with its own
/// history entry ("incident N: comment"), then logs it on the incident. A finding changed
/// by someone else meanwhile is skipped and reported, not an error.
pub fn triage(store: &Store, id: i64, action: Action, by: &str, comment: &str) -> Result<Triaged> {
    if by.trim().is_empty() {
        bail!("an incident action needs the name of who takes it");
    }
    let members = incident_findings(store, id)?;
    let to_change: Vec<i64> = members
        .iter()
        .filter(|(_, status)| Status::parse(status).is_some_and(|s| action.applies_to(s)))
        .map(|(finding, _)| *finding)
        .collect();
    if to_change.is_empty() {
        return Err(IncidentRefused::Nothing { id, to: action.target() }.into());
    }
    let note = if comment.trim().is_empty() { format!("incident {id}") } else { format!("incident {id}: {comment}") };
    let mut triaged = Triaged::default();
    for finding in to_change {
        match findings::set_status(store, finding, action.target(), by, &note) {
            Ok(()) => triaged.changed.push(finding),
            Err(error) if error.downcast_ref::<Refused>().is_some() => triaged.skipped.push(finding),
            Err(error) => return Err(error),
        }
    }
    crate::store::append::append(store, "incident_log", |conn| {
        log(conn, id, by, action.as_str(), None, Some(comment).filter(|c| !c.trim().is_empty()))?;
        conn.execute("UPDATE incidents SET updated_at = get_current_timestamp() WHERE id = ?", [id])?;
        Ok(())
    })?;
    Ok(triaged)
}

/// Sets (or, with `None`, clears) who owns incident `id`, and logs it.
pub fn set_owner(store: &Store, id: i64, owner: Option<&str>, by: &str) -> Result<()> {
    if by.trim().is_empty() {
        bail!("an incident action needs the name of who takes it");
    }
    let conn = store.connection()?;
    check_incident(&conn, id)?;
    drop(conn);
    crate::store::append::append(store, "incident_log", |conn| {
        conn.execute(
            "UPDATE incidents SET owner = ?, owner_set_by = ?, owner_set_at = get_current_timestamp(),
                    updated_at = get_current_timestamp() WHERE id = ?",
            duckdb::params![owner, by, id],
        )?;
        let detail = owner.map_or_else(|| "no owner".to_string(), |o| format!("owner {o}"));
        log(conn, id, by, "owner", None, Some(&detail))
    })
}

/// The findings of incident `id` with their status; refused for an unknown or merged one.
pub fn incident_findings(store: &Store, id: i64) -> Result<Vec<(i64, String)>> {
    let conn = store.connection()?;
    check_incident(&conn, id)?;
    let mut stmt = conn.prepare(
        "SELECT f.id, f.status FROM incident_findings m JOIN findings f ON f.id = m.finding_id
         WHERE m.incident_id = ? ORDER BY f.id",
    )?;
    let rows = stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<duckdb::Result<_>>()?)
}

fn check_incident(conn: &duckdb::Connection, id: i64) -> Result<()> {
    let found: Option<Option<i64>> = conn
        .prepare("SELECT merged_into FROM incidents WHERE id = ?")?
        .query_map([id], |r| r.get(0))?
        .next()
        .transpose()?;
    match found {
        None => Err(IncidentRefused::NoIncident(id).into()),
        Some(Some(into)) => Err(IncidentRefused::Merged { id, into }.into()),
        Some(None) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: i64, principal: Option<&str>, entity: &str, hours: (i64, i64)) -> Member {
        Member {
            id,
            principal: principal.map(str::to_string),
            ip: entity_part(entity, "ip").map(str::to_string),
            account: entity_part(entity, "account").map(str::to_string),
            first_seen: hours.0 * 3_600_000_000,
            last_seen: hours.1 * 3_600_000_000,
            incident: None,
        }
    }

    #[test]
    fn entity_parts_are_read_by_name() {
        assert_eq!(entity_part("account=prod ip=203.0.113.7", "ip"), Some("203.0.113.7"));
        assert_eq!(entity_part("account=prod ip=203.0.113.7", "account"), Some("prod"));
        assert_eq!(entity_part("stream=signins", "ip"), None);
        assert_eq!(entity_part("ip=", "ip"), None, "an empty value links nothing");
        assert_eq!(entity_part("zip=1", "ip"), None);
    }

    #[test]
    fn links_need_a_shared_key_within_the_window() {
        let spray = member(1, None, "ip=203.0.113.7", (0, 1));
        let signin = member(2, Some("alice"), "ip=203.0.113.7", (1, 1));
        let read = member(3, Some("alice"), "account=prod ip=198.51.100.9", (2, 3));
        assert_eq!(link(&signin, &spray).as_deref(), Some("ip=203.0.113.7"));
        assert_eq!(link(&read, &signin).as_deref(), Some("principal=alice"));
        assert_eq!(link(&read, &spray), None, "nothing shared");
        let later = member(4, Some("alice"), "ip=192.0.2.1", (30, 31));
        assert_eq!(link(&later, &read), None, "more than a day apart");
    }

    #[test]
    fn an_account_links_only_to_a_finding_without_a_principal() {
        let listed = member(1, Some("bob"), "account=prod", (0, 0));
        let key_use = member(2, None, "account=prod ip=192.0.2.5", (1, 2));
        let other_user = member(3, Some("carol"), "account=prod", (1, 1));
        let much_later = member(4, None, "account=prod", (5, 6));
        assert_eq!(link(&key_use, &listed).as_deref(), Some("account=prod"));
        assert_eq!(link(&listed, &key_use), None, "a principal's finding does not join through an account");
        assert_eq!(link(&other_user, &listed), None, "two principals on one account are two stories");
        assert_eq!(link(&much_later, &listed), None, "an account links only what follows within two hours");
    }
}
