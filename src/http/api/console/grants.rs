//! Which tables and views each role may read through SQL (the console and
//! dashboards), failing closed: a table not listed here, such as one a later migration
//! adds, is invisible to everyone until a role is granted it. `tests/it/api.rs` checks
//! that every table of the schema is either granted or named in [`INTERNAL`].
//!
//! The grants mirror the API's: the access log is the Auditor's and Admin's
//! (`GET /api/access-log`), never a Responder's.

use crate::auth::Role;

/// What every role reads: the evidence coming in, what detection made of it, the
/// status of ingest.
const SHARED: &[&str] = &[
    "cosmos_requests",
    "signins",
    "raw_events",
    "quarantine",
    "control_changes",
    "control_operations",
    "directory_changes",
    "identity_changes",
    "cosmos_queries",
    "cosmos_query_requests",
    "cosmos_control_requests",
    "cosmos_roles",
    "inventory_runs",
    "cosmos_accounts",
    "data_role_definitions",
    "data_role_assignments",
    "azure_role_assignments",
    "data_access_grants",
    "data_role_assignment_history",
    "role_assignment_history",
    "azure_role_assignment_history",
    "known_groups",
    "principals",
    "request_signins",
    "request_context",
    "activity_hours",
    "stream_hours",
    "first_seen",
    "ip_addresses",
    "network_lists",
    "findings",
    "finding_evidence",
    "finding_history",
    "incidents",
    "incident_findings",
    "incident_log",
    "incident_status",
    "rule_versions",
    "data_clock",
    "signin_clock",
    "source_clock",
    "ingest_status",
    "ingest_batches",
    "checkpoints",
    "hub_roles",
    "hub_segments",
    "lake_segments",
    "lake_files",
    "lake_evictions",
    "lake_links",
    "lake_link_files",
    "lake_snapshots",
    "alert_messages",
    "alert_claims",
    "fleet_activity",
    "fleet_first_seen",
    "fleet_requests",
    "shared_findings_in",
    "shared_findings_read",
    "shared_findings_out",
];

/// Responders' own: their team's saved queries.
const RESPONDER: &[&str] = &["saved_queries"];

/// Auditors' and Admins' own: the service's audit trail, the integrity chains, access
/// reviews and their decisions, and the lists of leavers (people's HR facts).
const AUDIT: &[&str] = &[
    "access_log",
    "ingest_chain",
    "append_chain",
    "access_reviews",
    "access_review_items",
    "access_review_log",
    "access_review_decisions",
    "access_review_status",
    "leaver_lists",
    "leavers_listed",
    "leavers",
];

/// Tables no role reads through SQL: bookkeeping of ingest, detection and alerting,
/// whose contents the API shows in other forms (status, rules, alerts).
pub const INTERNAL: &[&str] = &[
    "schema_migrations",
    "source_checkpoints",
    "ingest_positions",
    "detection_state",
    "rule_state",
    "append_heads",
    "alert_events",
    "alert_pending",
];

/// The tables and views `role` may read. Reviewers read none: they see the reviews that
/// name them through the API, not the logs.
pub fn tables(role: Role) -> Vec<&'static str> {
    let own: &[&str] = match role {
        Role::Responder => RESPONDER,
        Role::Auditor | Role::Admin => AUDIT,
        Role::Reviewer => return Vec::new(),
    };
    SHARED.iter().chain(own).copied().collect()
}

/// The tables and views any of `roles` may read.
pub fn tables_of(roles: &[Role]) -> std::collections::HashSet<String> {
    roles.iter().flat_map(|r| tables(*r)).map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responders_never_read_the_access_log() {
        assert!(!tables(Role::Responder).contains(&"access_log"));
        assert!(tables(Role::Auditor).contains(&"access_log"));
        assert!(tables(Role::Reviewer).is_empty());
        for internal in INTERNAL {
            assert!(Role::ALL.iter().all(|r| !tables(*r).contains(internal)), "{internal}");
        }
    }
}
