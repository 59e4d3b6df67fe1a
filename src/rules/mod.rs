//! Detection: SQL rules (`queries/*.sql`, plus a folder of the user's own) evaluated by
//! event time over the stored logs, and the findings they raise.
//!
//! Contract:
//! - Every committed ingest batch is absorbed once, in batch order, into the tables rules
//!   read besides the public ones (`absorb`): the correlation of each request with its
//!   sign-in (`request_signins`), hourly activity, first-seen values, addresses.
//! - A rule returns evidence events (a row of `cosmos_requests`, `signins`, ...) with event
//!   time in [`$from`, `$to`). Whether an event matches depends on the data only, and only on
//!   data at most the rule's `window` after it; so evaluating any period again leaves the same
//!   evidence, and [`Detector::evaluate_after_commit`] needs to look back only from the
//!   earliest new event minus the window. History replayed from files, in one go or in any
//!   order of batches, ends with the same findings as live traffic.
//! - One finding per fingerprint (rule, principal, entity): matching events update it; its
//!   first/last seen and count are recomputed from its evidence. A finding left without
//!   evidence (late data explained it) is `withdrawn`, never deleted.
//! - A rule that cannot be parsed or does not run against the database is reported (at
//!   start, [`Detector::open`], or when it fails) and the others go on.

mod absorb;
mod changes;
mod cosmos_logs;
mod evaluate;
pub mod findings;
pub mod incidents;
pub mod live;
pub mod network;
pub mod rule;
pub(crate) mod script;

pub use absorb::Absorbed;
pub use evaluate::RuleRun;
pub use rule::{Param, ParamValue, Rule, RuleError, Severity};

use crate::store::Store;
use anyhow::{Context, Result};
use duckdb::OptionalExt as _;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use xxhash_rust::xxh3::xxh3_64;

const FINDINGS_IN_PERIOD: &str = include_str!("sql/findings_in_period.sql");
const DAY_MICROS: i64 = 86_400_000_000;

/// Detection settings (`[detection]` in the configuration file).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectionConfig {
    /// A folder of rule files (`<id>.sql`): each adds a rule, or replaces the built-in rule
    /// with the same id. Read at start.
    pub rules_dir: Option<PathBuf>,
    /// A folder of address lists (one address or CIDR range a line, `#` comments), each
    /// file a list for `threat_intel_ip`, e.g. a Tor exit node list. Read at start.
    pub threat_intel_dir: Option<PathBuf>,
    /// Networks whose addresses `ip_not_in_signins` never raises (private endpoints, NAT
    /// egress). Default: the private, loopback, link-local and CGNAT ranges.
    pub trusted_networks: Option<Vec<String>>,
    /// Rule ids not to run.
    pub disabled_rules: Vec<String>,
    /// Parameter values by rule id, e.g. `[detection.params.password_spray] min_users = 8`.
    pub params: BTreeMap<String, BTreeMap<String, ParamValue>>,
}

impl DetectionConfig {
    /// For the command line: `TOKENTRAIL_RULES_DIR`, `TOKENTRAIL_THREAT_INTEL_DIR` and
    /// `TOKENTRAIL_TRUSTED_NETWORKS` (comma-separated) when set.
    pub fn from_env() -> DetectionConfig {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        DetectionConfig {
            rules_dir: var("TOKENTRAIL_RULES_DIR").map(PathBuf::from),
            threat_intel_dir: var("TOKENTRAIL_THREAT_INTEL_DIR").map(PathBuf::from),
            trusted_networks: var("TOKENTRAIL_TRUSTED_NETWORKS")
                .map(|v| v.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()),
            ..DetectionConfig::default()
        }
    }
}

/// What one evaluation did.
#[derive(Debug, Clone, Default)]
pub struct Evaluation {
    /// The ingest batches absorbed by this call.
    pub absorbed: Option<Absorbed>,
    /// The rules that ran, and over which period.
    pub runs: Vec<RuleRun>,
    /// Rules that failed this time (the others ran).
    pub failures: Vec<RuleError>,
}

impl Evaluation {
    /// Ids of the findings raised for the first time.
    pub fn raised(&self) -> Vec<i64> {
        self.runs.iter().flat_map(|r| r.raised.iter().copied()).collect()
    }
}

/// Built-in rules that add up a principal's requests over hours, or judge a request by
/// what came before it (a client, collection or user agent never seen, a principal silent
/// for weeks). Instances sharing balanced hubs each hold part of those requests: with a
/// shared lake these rules run only on the rules lease holder, over everyone's counts and
/// first-seen facts (`crate::lake::fleet`).
pub const FLEET_RULES: [&str; 10] = [
    "data_volume_spike",
    "data_volume_spike_daily",
    "mass_delete",
    "collection_enumeration",
    "permission_probing",
    "new_collection_for_principal",
    "new_user_agent",
    "dormant_principal",
    "key_auth_access",
    "listkeys_then_key_access",
];

/// Built-in rules over sign-ins alone. Every instance reads every sign-in (broadcast
/// hubs) and would raise the same findings: with a shared lake only the holder runs them.
pub const HOLDER_RULES: [&str; 4] = ["password_spray", "distributed_spray", "impossible_travel", "new_country_signin"];

/// How far back from the newest rows the rules over everyone's counts read rows again in
/// a usual pass: the longest of their windows (a day) and its margins.
pub const FLEET_HORIZON_MICROS: i64 = 2 * DAY_MICROS;

/// A rule over everyone's counts to run, from when, and whether its definition changed.
pub struct FleetRun<'a> {
    pub rule: &'a Rule,
    pub from: i64,
    pub changed: bool,
}

/// The loaded rules and lists, ready to evaluate against one store.
pub struct Detector {
    rules: Vec<Rule>,
    /// Hash of the address lists, part of the definition of rules that read them.
    lists: u64,
    /// One evaluation at a time.
    running: Mutex<()>,
    /// The latest `source_clock` a pass has seen (microseconds): when it moves past the data,
    /// the rules that read it are evaluated again though no data came.
    listened: Mutex<Option<i64>>,
    /// With a shared lake: whether this instance holds the rules lease. [`FLEET_RULES`]
    /// are then left to [`Detector::evaluate_fleet`], [`HOLDER_RULES`] run on the holder.
    shared: Option<Arc<AtomicBool>>,
}

impl Detector {
    /// Loads the rules (built-in, then `rules_dir`) and the address lists, stores the lists,
    /// and checks every rule against the database. Returns the detector with the rules that
    /// work, and every problem found on the way (broken rule files, bad configuration,
    /// unreadable list lines), which the caller reports.
    pub fn open(store: &Store, config: &DetectionConfig) -> Result<(Detector, Vec<RuleError>)> {
        let (mut rules, mut problems) = rule::load(config.rules_dir.as_deref());
        for id in config.disabled_rules.iter().chain(config.params.keys()) {
            if !rules.iter().any(|r| &r.id == id) && !problems.iter().any(|p| p.rule_id.as_deref() == Some(id)) {
                problems.push(RuleError {
                    origin: "config".into(),
                    rule_id: Some(id.clone()),
                    reason: "no rule has this id".into(),
                });
            }
        }
        rules.retain(|r| !config.disabled_rules.contains(&r.id));
        rules.retain_mut(|rule| match config.params.get(&rule.id) {
            Some(values) => match rule::apply_params(rule, values) {
                Ok(()) => true,
                Err(error) => {
                    problems.push(error);
                    false
                }
            },
            None => true,
        });

        let trusted: Vec<String> = match &config.trusted_networks {
            Some(list) => list.clone(),
            None => network::DEFAULT_TRUSTED.iter().map(|s| s.to_string()).collect(),
        };
        let (mut entries, rejected) = network::entries("trusted", "config", trusted);
        for entry in rejected {
            problems.push(RuleError {
                origin: "config".into(),
                rule_id: None,
                reason: format!("trusted_networks: {entry:?} is not an address or CIDR range"),
            });
        }
        if let Some(dir) = &config.threat_intel_dir {
            let (intel, list_problems) = network::threat_intel_folder(dir);
            entries.extend(intel);
            problems.extend(list_problems.into_iter().map(|reason| RuleError {
                origin: dir.display().to_string(),
                rule_id: None,
                reason,
            }));
        }
        let lists = store_lists(store, &entries)?;
        // Status changes from before finding_history was chained (an upgraded database)
        // are chained now, so from here on every row is covered.
        crate::store::append::append(store, "finding_history", |_| Ok(())).context("chaining finding_history")?;

        let conn = store.connection()?;
        rules.retain(|rule| match evaluate::check(&conn, rule) {
            Ok(()) => true,
            Err(error) => {
                problems.push(error);
                false
            }
        });
        for problem in &problems {
            tracing::warn!(problem = %problem, "detection rule or list not used");
        }
        let detector = Detector { rules, lists, running: Mutex::new(()), listened: Mutex::new(None), shared: None };
        detector.record_versions(store).context("recording the rules in force (rule_versions)")?;
        Ok((detector, problems))
    }

    /// Records the rules this detector runs in `rule_versions` (migration 18), so an evidence
    /// pack lists the rules in force in its period as they were: a new rule or a changed
    /// definition opens a version (closing the one before), a rule no longer run is closed.
    fn record_versions(&self, store: &Store) -> Result<()> {
        store.transaction(|conn| {
            // rule → (definition, carried over from rule_state without what the rule is, since)
            let open: BTreeMap<String, (String, bool, i64)> = conn
                .prepare(
                    "SELECT rule_id, definition, sql = '', epoch_us(in_force_from) FROM rule_versions
                     WHERE in_force_to IS NULL",
                )?
                .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?))))?
                .collect::<duckdb::Result<_>>()?;
            let close = "UPDATE rule_versions SET in_force_to = get_current_timestamp()
                         WHERE rule_id = ? AND in_force_to IS NULL";
            for rule in &self.rules {
                let definition = self.definition(rule);
                let since = match open.get(&rule.id) {
                    Some((known, false, _)) if *known == definition => continue,
                    // A version carried over from before rule_versions existed (migration 18):
                    // written again, whole, from when it came into force.
                    Some((known, true, since)) if *known == definition => {
                        conn.execute(
                            "DELETE FROM rule_versions WHERE rule_id = ? AND in_force_to IS NULL",
                            [&rule.id],
                        )?;
                        Some(*since)
                    }
                    Some(_) => {
                        conn.execute(close, [&rule.id])?;
                        None
                    }
                    None => None,
                };
                conn.execute(
                    "INSERT INTO rule_versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?,
                         coalesce(make_timestamp(?::BIGINT)::TIMESTAMPTZ, get_current_timestamp()), NULL)",
                    duckdb::params![
                        rule.id,
                        definition,
                        rule.title,
                        rule.severity.as_str(),
                        rule.soc2.join(", "),
                        rule.mitre,
                        rule.reach().num_seconds(),
                        rule.origin.to_string(),
                        parameters_json(rule),
                        rule.sql,
                        since,
                    ],
                )?;
            }
            for id in open.keys().filter(|id| !self.rules.iter().any(|r| &r.id == *id)) {
                conn.execute(close, [id])?;
            }
            Ok(())
        })
    }

    /// Instances share a lake: `holding` tells whether this one holds the rules lease.
    pub fn share(&mut self, holding: Arc<AtomicBool>) {
        self.shared = Some(holding);
    }

    /// Whether a local pass leaves `rule` out: another instance, or the pass over
    /// everyone's counts, runs it.
    fn left_out(&self, rule: &Rule) -> bool {
        let Some(holding) = &self.shared else { return false };
        matches!(rule.origin, rule::Origin::BuiltIn(_))
            && (FLEET_RULES.contains(&rule.id.as_str())
                || (HOLDER_RULES.contains(&rule.id.as_str()) && !holding.load(Ordering::Acquire)))
    }

    /// This instance took the rules lease: the sign-in rules it left to the holder until
    /// now are evaluated over all history on the next pass.
    pub fn took_lease(&self, store: &Store) -> Result<()> {
        let _running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let conn = store.connection()?;
        for id in HOLDER_RULES {
            conn.execute("DELETE FROM rule_state WHERE rule_id = ?", [id])?;
        }
        Ok(())
    }

    /// The [`FLEET_RULES`] to run over everyone's counts: a changed one from `start`, the
    /// others from `earliest` (new rows; none: nothing to do) less their window.
    pub fn fleet_rules(
        &self,
        conn: &duckdb::Connection,
        earliest: Option<i64>,
        start: i64,
    ) -> Result<Vec<FleetRun<'_>>> {
        let mut runs = Vec::new();
        let fleet = |r: &&Rule| self.left_out(r) && FLEET_RULES.contains(&r.id.as_str());
        for rule in self.rules.iter().filter(fleet) {
            let known: Option<String> = conn
                .query_row("SELECT definition FROM rule_state WHERE rule_id = ?", [&rule.id], |r| r.get(0))
                .optional()?;
            let changed = known.as_deref() != Some(self.definition(rule).as_str());
            let from = if changed {
                start
            } else if let Some(earliest) = earliest {
                earliest - rule.reach().num_microseconds().unwrap_or(i64::MAX / 4)
            } else {
                continue;
            };
            runs.push(FleetRun { rule, from, changed });
        }
        Ok(runs)
    }

    /// Runs `runs` up to `end` (µs, included) on `conn`, whose temporary views give
    /// everyone's counts and rows (`crate::lake::fleet`); `after_query` names each rule's
    /// evidence where it is kept.
    pub fn evaluate_fleet(
        &self,
        conn: &duckdb::Connection,
        runs: &[FleetRun<'_>],
        end: i64,
        after_query: &dyn Fn(&duckdb::Connection) -> Result<()>,
    ) -> Result<Evaluation> {
        let _running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let mut evaluation = Evaluation::default();
        for run in runs {
            match evaluate::run_with(conn, run.rule, run.from, end + 1, run.changed, Some(after_query)) {
                Ok(done) => {
                    if run.changed {
                        conn.execute(
                            "INSERT OR REPLACE INTO rule_state VALUES (?, ?, get_current_timestamp())",
                            [&run.rule.id, &self.definition(run.rule)],
                        )?;
                    }
                    evaluation.runs.push(done);
                }
                Err(error) => self.failed(conn, run.rule, error, &mut evaluation),
            }
        }
        Ok(evaluation)
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Absorbs every batch committed since the last call and evaluates each rule from the
    /// earliest new event (or the time the sign-in logs had reached, if earlier, at most a day
    /// before) minus the rule's window to the end of the data; a rule whose
    /// definition (text, parameters, lists) changed since it last ran is evaluated over all
    /// history. Call it after each commit, or now and then from a thread of its own: it
    /// catches up on everything committed meanwhile. Calls wait for each other.
    pub fn evaluate_after_commit(&self, store: &Store) -> Result<Evaluation> {
        let _running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let conn = store.connection()?;
        let evaluation = self.catch_up(&conn)?;
        group_incidents(store);
        Ok(evaluation)
    }

    /// Stores that `source` had delivered everything its hubs held at `at` (`source_clock`),
    /// when that moved by a minute or more: detection then measures a silence of every stream
    /// up to it.
    pub fn note_caught_up(&self, store: &Store, source: &str, at: chrono::DateTime<chrono::Utc>) -> Result<()> {
        store.connection()?.execute(
            "INSERT INTO source_clock VALUES (?, make_timestamp(?::BIGINT)::TIMESTAMPTZ)
             ON CONFLICT (source) DO UPDATE SET caught_up_until = excluded.caught_up_until
             WHERE epoch_us(excluded.caught_up_until) - epoch_us(source_clock.caught_up_until) >= 60000000",
            duckdb::params![source, at.timestamp_micros()],
        )?;
        Ok(())
    }

    /// Brings detection up to date ([`Detector::evaluate_after_commit`]), then evaluates
    /// every rule again over [from, to) (microseconds since the epoch; the whole history when
    /// `None`): what `tokentrail detect --from --to` does.
    pub fn evaluate_period(&self, store: &Store, from: Option<i64>, to: Option<i64>) -> Result<Evaluation> {
        let _running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let conn = store.connection()?;
        let mut evaluation = self.catch_up(&conn)?;
        let Some((start, end)) = data_clock(&conn)? else { return Ok(evaluation) };
        let (from, to) = (from.unwrap_or(start), to.unwrap_or(end + 1));
        evaluation.runs.clear();
        for rule in &self.rules {
            match evaluate::run(&conn, rule, from, to, false) {
                Ok(run) => evaluation.runs.push(run),
                Err(error) => self.failed(&conn, rule, error, &mut evaluation),
            }
        }
        group_incidents(store);
        Ok(evaluation)
    }

    fn catch_up(&self, conn: &duckdb::Connection) -> Result<Evaluation> {
        // Rules judge a request only once the sign-in logs have reached its time; requests
        // newer than that were left for now, so evaluation starts there too (at most a day
        // before the new data, so a sign-in log that stopped does not make every run longer).
        let signins_before: Option<i64> =
            conn.query_row("SELECT epoch_us(signins_until) FROM data_clock", [], |r| r.get(0))?;
        let started = std::time::Instant::now();
        let absorbed = absorb::absorb_pending(conn).context("absorbing ingest batches")?;
        let absorbing = started.elapsed();
        let mut evaluation = Evaluation { absorbed, ..Evaluation::default() };
        let Some((start, end)) = data_clock(conn)? else { return Ok(evaluation) };
        let listened = self.listened_past(conn, end)?;
        let earliest = absorbed.and_then(|a| a.earliest).map(|earliest| match signins_before {
            Some(waiting) if waiting < earliest => waiting.max(earliest - DAY_MICROS),
            _ => earliest,
        });
        // Rules that read only the typed changes cannot change unless change records came.
        let changes_came = match absorbed {
            Some(a) => conn.query_row(
                "SELECT coalesce(sum(raw_rows), 0) > 0 FROM ingest_batches WHERE batch_id BETWEEN ? AND ?",
                [a.first_batch, a.last_batch],
                |r| r.get::<_, bool>(0),
            )?,
            None => false,
        };
        let known: BTreeMap<String, String> = conn
            .prepare("SELECT rule_id, definition FROM rule_state")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<duckdb::Result<_>>()?;
        for rule in self.rules.iter().filter(|r| !self.left_out(r)) {
            let definition = self.definition(rule);
            let changed = known.get(&rule.id) != Some(&definition);
            let from = if changed {
                start
            } else if reads_only_changes(rule) && !changes_came {
                continue;
            } else if let Some(earliest) = earliest {
                earliest - rule.reach().num_microseconds().unwrap_or(i64::MAX / 4)
            } else if listened && rule.sql.contains("source_clock") {
                // No data, but the sources confirmed they had none to give: a silence grew.
                end - rule.reach().num_microseconds().unwrap_or(i64::MAX / 4)
            } else {
                continue;
            };
            match evaluate::run(conn, rule, from, end + 1, changed) {
                Ok(run) => {
                    if changed {
                        conn.execute(
                            "INSERT OR REPLACE INTO rule_state VALUES (?, ?, get_current_timestamp())",
                            [&rule.id, &definition],
                        )?;
                    }
                    evaluation.runs.push(run);
                }
                Err(error) => self.failed(conn, rule, error, &mut evaluation),
            }
        }
        tracing::debug!(
            absorb_ms = absorbing.as_millis() as u64,
            rules_ms = (started.elapsed() - absorbing).as_millis() as u64,
            rules = evaluation.runs.len(),
            "detection pass"
        );
        Ok(evaluation)
    }

    /// Whether `source_clock` moved past the data's end (`end`) since the last pass.
    fn listened_past(&self, conn: &duckdb::Connection, end: i64) -> Result<bool> {
        let clock: Option<i64> =
            conn.query_row("SELECT epoch_us(max(caught_up_until)) FROM source_clock", [], |r| r.get(0))?;
        let mut seen = self.listened.lock().unwrap_or_else(|p| p.into_inner());
        let moved = clock.is_some_and(|c| c > end && Some(c) != *seen);
        *seen = clock;
        Ok(moved)
    }

    /// Reports a rule that failed, and forgets its state so that the next evaluation runs it
    /// over all history again (the window it missed is not lost).
    fn failed(&self, conn: &duckdb::Connection, rule: &Rule, error: anyhow::Error, evaluation: &mut Evaluation) {
        let error = evaluate::rule_error(rule, error);
        tracing::error!(rule = %rule.id, error = %error, "detection rule failed");
        if let Err(forget) = conn.execute("DELETE FROM rule_state WHERE rule_id = ?", [&rule.id]) {
            tracing::error!(rule = %rule.id, error = %forget, "cannot mark the rule for evaluation again");
        }
        evaluation.failures.push(error);
    }

    /// What a rule's results depend on besides the data.
    fn definition(&self, rule: &Rule) -> String {
        let mut text = format!("{}\n{}\n{}\n{}\n", rule.sql, rule.reach(), rule.severity, rule.title);
        for param in &rule.params {
            text.push_str(&format!("{}={}\n", param.name, param.effective()));
        }
        if READS_LISTS.iter().any(|name| rule.sql.contains(name)) {
            text.push_str(&format!("lists={:016x}\n", self.lists));
        }
        format!("{:016x}", xxh3_64(text.as_bytes()))
    }
}

/// Groups the findings of a pass into incidents. A failure is logged and does not fail the
/// pass: the next pass groups whatever is still without an incident.
fn group_incidents(store: &Store) {
    match incidents::group(store) {
        Ok(grouped) if grouped != incidents::Grouped::default() => tracing::info!(?grouped, "incidents grouped"),
        Ok(_) => {}
        Err(error) => tracing::error!(error = format!("{error:#}"), "grouping findings into incidents failed"),
    }
}

/// A rule's effective parameter values as a JSON object.
fn parameters_json(rule: &Rule) -> String {
    let values: serde_json::Map<String, serde_json::Value> =
        rule.params.iter().map(|p| (p.name.clone(), p.effective().to_string().into())).collect();
    serde_json::Value::Object(values).to_string()
}

/// Whether a built-in rule reads the typed control-plane and directory changes and nothing
/// else that ingest adds to: only a batch with raw records (where those changes come from)
/// can change its results. A user's rule is always evaluated.
pub fn reads_only_changes(rule: &Rule) -> bool {
    const CHANGES: &[&str] = &["control_changes", "control_operations", "directory_changes", "identity_changes"];
    const OTHERS: &[&str] = &[
        "cosmos_requests",
        "signins",
        "signin_clock",
        "request_context",
        "request_signins",
        "activity_hours",
        "first_seen",
        "principals",
        "ip_addresses",
        "stream_hours",
        "data_clock",
        "source_clock",
        "network_lists",
        "raw_events",
        "quarantine",
        "finding",
        "ingest_",
        "checkpoints",
        "inventory",
        "data_role",
        "azure_role",
        "cosmos_accounts",
        "access_review",
        "key_exposure",
        "data_access",
        "known_groups",
    ];
    // built-in rule files name tables in lower case
    matches!(rule.origin, rule::Origin::BuiltIn(_))
        && CHANGES.iter().any(|name| rule.sql.contains(name))
        && !OTHERS.iter().any(|name| rule.sql.contains(name))
}

/// What a rule names when its results depend on the address lists: the table, or a macro of
/// the migrations that reads it (the spray rules' shared parts).
const READS_LISTS: &[&str] = &["network_lists", "guess_attempts", "address_sprays", "spray_spans"];

/// (start, end) of the stored events, microseconds since the epoch.
pub fn data_clock(conn: &duckdb::Connection) -> Result<Option<(i64, i64)>> {
    let (start, end): (Option<i64>, Option<i64>) =
        conn.query_row("SELECT epoch_us(history_start), epoch_us(history_end) FROM data_clock", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    Ok(start.zip(end))
}

/// Replaces `network_lists` with `entries`; returns their hash.
fn store_lists(store: &Store, entries: &[network::NetworkEntry]) -> Result<u64> {
    let mut text = String::new();
    for e in entries {
        text.push_str(&format!("{}\t{}\t{}\t{}\n", e.list, e.source, e.lo_hex, e.hi_hex));
    }
    store
        .transaction(|conn| {
            conn.execute_batch("DELETE FROM network_lists")?;
            let column = |f: fn(&network::NetworkEntry) -> &str| {
                duckdb::types::Value::List(
                    entries.iter().map(|e| duckdb::types::Value::Text(f(e).to_owned())).collect(),
                )
            };
            if !entries.is_empty() {
                conn.execute(
                    include_str!("sql/network_lists_insert.sql"),
                    duckdb::params![
                        column(|e| &e.list),
                        column(|e| &e.source),
                        column(|e| &e.entry),
                        column(|e| &e.lo_hex),
                        column(|e| &e.hi_hex)
                    ],
                )?;
            }
            Ok(())
        })
        .context("storing address lists")?;
    Ok(xxh3_64(text.as_bytes()))
}

/// One finding as `tokentrail detect --format json` prints it: times in RFC 3339, counts
/// and times of its evidence inside the period asked for.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FindingSummary {
    pub id: i64,
    pub rule: String,
    pub severity: String,
    pub status: String,
    pub principal_id: Option<String>,
    pub principal_name: Option<String>,
    pub entity: String,
    pub first_seen: String,
    pub last_seen: String,
    pub count: i64,
    pub title: String,
    pub summary: Option<String>,
    pub fingerprint: String,
}

/// The findings with evidence in [from, to), most severe first (withdrawn ones left out).
pub fn findings_in_period(store: &Store, from: i64, to: i64) -> Result<Vec<FindingSummary>> {
    let conn = store.connection()?;
    let mut stmt = conn.prepare(FINDINGS_IN_PERIOD)?;
    let values = script::bind(&stmt, &[("from", script::timestamp(from)), ("to", script::timestamp(to))])?;
    let rows = stmt.query_map(duckdb::params_from_iter(values), |r| {
        Ok(FindingSummary {
            id: r.get(0)?,
            rule: r.get(1)?,
            severity: r.get(2)?,
            status: r.get(3)?,
            principal_id: r.get(4)?,
            principal_name: r.get(5)?,
            entity: r.get(6)?,
            first_seen: r.get(7)?,
            last_seen: r.get(8)?,
            count: r.get(9)?,
            title: r.get(10)?,
            summary: r.get(11)?,
            fingerprint: r.get(12)?,
        })
    })?;
    Ok(rows.collect::<duckdb::Result<_>>()?)
}
