//! Service metrics in the OpenMetrics text format (`GET /metrics`), for Prometheus.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// One Event Hubs partition.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub hub: String,
    pub partition: String,
}

/// One public table.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabels {
    pub table: String,
}

/// One HTTP route (its template, not the path, so ids do not explode the label set).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub endpoint: String,
    pub status: u16,
}

/// One kind of memory the process holds.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemoryLabels {
    /// `resident` (the kernel's count; of it `resident_anonymous` and `resident_file`),
    /// `peak_resident`, `rust_heap` (mimalloc's committed bytes), `duckdb` (DuckDB's buffer
    /// pool and operators, its own count), `duckdb_temporary` (spilled to disk),
    /// `malloc_in_use` and `malloc_free` (the C allocator DuckDB uses; free is held, not
    /// returned).
    pub kind: String,
}

/// One finding status and severity.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FindingLabels {
    pub status: String,
    pub severity: String,
}

/// One alert destination and what became of a delivery attempt.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub destination: String,
    /// `delivered`, `retry` (failed, will be tried again) or `dead` (refused, or given up).
    pub outcome: String,
}

pub struct Metrics {
    registry: Registry,
    /// Rows committed per table.
    pub rows: Family<TableLabels, Counter>,
    pub commits: Counter,
    /// Commits cut at their size limit (a row group, or the byte cap) rather than when
    /// the source went quiet: the source had more waiting. Detection defers its passes
    /// while these keep coming ([`crate::rules::live`]).
    pub full_commits: Counter,
    /// 1 while a detection pass waits for ingest to stop running flat out.
    pub detection_waiting: Gauge,
    pub committed_sequence: Family<PartitionLabels, Gauge>,
    pub last_enqueued_sequence: Family<PartitionLabels, Gauge>,
    /// Last enqueued sequence number minus the committed one.
    pub lag_events: Family<PartitionLabels, Gauge>,
    pub receive_errors: Family<PartitionLabels, Counter>,
    /// Events the client delivered again after it recovered a link; skipped.
    pub redelivered: Family<PartitionLabels, Counter>,
    /// Streams found to have started again (hub recreated) or to have lost events to
    /// retention before they were read.
    pub source_resets: Family<PartitionLabels, Counter>,
    /// Seconds from request to response head, by route and status.
    pub http_seconds: Family<HttpLabels, Histogram, fn() -> Histogram>,
    /// Findings by status and severity, after each detection pass.
    pub findings: Family<FindingLabels, Gauge>,
    /// Alert delivery attempts by destination and outcome.
    pub alert_deliveries: Family<DeliveryLabels, Counter>,
    /// Alert claims in the shared lake ([`crate::alerts::claims`]) by outcome (won, lost),
    /// and claims that could not be made (storage unreachable; the event waits).
    pub alert_claims: Family<ClaimLabels, Counter>,
    pub alert_claim_failures: Counter,
    /// The process's memory by kind ([`sample_memory`]).
    pub memory: Family<MemoryLabels, Gauge>,
    /// The Parquet lake ([`crate::lake`]): segments archived and verified, rows retention
    /// deleted by table, and runs that failed by step (`archive`, `retention`).
    pub lake_segments: Counter,
    pub lake_evicted_rows: Family<TableLabels, Counter>,
    pub lake_failures: Family<LakeLabels, Counter>,
    /// The shared lake of balanced hubs ([`crate::lake::segments`]): segments by outcome,
    /// and per partition the age of the oldest committed rows not in it yet.
    pub shared_segments: Family<SegmentLabels, Counter>,
    pub shared_lake_lag_seconds: Family<PartitionLabels, Gauge>,
    /// Passes of the rules over everyone's counts that ran a rule ([`crate::lake::fleet`]),
    /// and whether this instance holds the rules lease (1) or not (0).
    pub fleet_passes: Counter,
    pub rules_lease_held: Gauge,
}

/// A balanced hub's segments in the shared lake, by what became of each.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SegmentLabels {
    pub hub: String,
    /// `written` (claimed here) or `theirs` (another instance had claimed those events).
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClaimLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LakeLabels {
    pub step: String,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tokentrail");
        let rows = Family::<TableLabels, Counter>::default();
        registry.register("rows", "Rows committed to DuckDB, by table", rows.clone());
        let commits = Counter::default();
        registry.register("commits", "Ingest transactions committed", commits.clone());
        let full_commits = Counter::default();
        registry.register(
            "commits_full",
            "Ingest commits cut at their size limit because more was waiting (ingest running flat out)",
            full_commits.clone(),
        );
        let detection_waiting = Gauge::default();
        registry.register(
            "detection_waiting",
            "1 while a detection pass waits (at most 60 s) for ingest to stop running flat out",
            detection_waiting.clone(),
        );
        let committed_sequence = Family::<PartitionLabels, Gauge>::default();
        registry.register(
            "eventhubs_committed_sequence_number",
            "Sequence number of the last event committed to DuckDB",
            committed_sequence.clone(),
        );
        let last_enqueued_sequence = Family::<PartitionLabels, Gauge>::default();
        registry.register(
            "eventhubs_last_enqueued_sequence_number",
            "Sequence number of the last event enqueued in the partition",
            last_enqueued_sequence.clone(),
        );
        let lag_events = Family::<PartitionLabels, Gauge>::default();
        registry.register("eventhubs_lag_events", "Events enqueued but not yet committed", lag_events.clone());
        let receive_errors = Family::<PartitionLabels, Counter>::default();
        registry.register(
            "eventhubs_receive_errors",
            "Receive errors (each followed by a reconnect with backoff)",
            receive_errors.clone(),
        );
        let redelivered = Family::<PartitionLabels, Counter>::default();
        registry.register(
            "eventhubs_redelivered_events",
            "Events delivered again after a link recovery, skipped as already received",
            redelivered.clone(),
        );
        let source_resets = Family::<PartitionLabels, Counter>::default();
        registry.register(
            "eventhubs_source_resets",
            "Times a partition's stream started again below the committed position, or lost events unread",
            source_resets.clone(),
        );
        let http_seconds = Family::<HttpLabels, Histogram, fn() -> Histogram>::new_with_constructor(|| {
            Histogram::new([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
        });
        registry.register("http_request_duration_seconds", "HTTP requests by route and status", http_seconds.clone());
        let findings = Family::<FindingLabels, Gauge>::default();
        registry.register("findings", "Findings by status and severity", findings.clone());
        let alert_deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "alert_deliveries",
            "Alert delivery attempts by destination and outcome (delivered, retry, dead)",
            alert_deliveries.clone(),
        );
        let alert_claims = Family::<ClaimLabels, Counter>::default();
        registry.register(
            "alert_claims",
            "Alert claims made in the shared lake, by outcome (won: this instance sends; lost: another does)",
            alert_claims.clone(),
        );
        let alert_claim_failures = Counter::default();
        registry.register(
            "alert_claim_failures",
            "Alert claims that could not be made (shared lake unreachable); the alert waits and is claimed again",
            alert_claim_failures.clone(),
        );
        let memory = Family::<MemoryLabels, Gauge>::default();
        registry.register(
            "memory_bytes",
            "The process's memory by kind: resident (of it resident_anonymous and resident_file), peak_resident, rust_heap, duckdb, duckdb_temporary, malloc_in_use, malloc_free",
            memory.clone(),
        );
        let lake_segments = Counter::default();
        registry.register("lake_segments", "Segments archived to the Parquet lake and verified", lake_segments.clone());
        let lake_evicted_rows = Family::<TableLabels, Counter>::default();
        registry.register(
            "lake_evicted_rows",
            "Rows retention deleted from DuckDB, archived in the lake, by table",
            lake_evicted_rows.clone(),
        );
        let lake_failures = Family::<LakeLabels, Counter>::default();
        registry.register(
            "lake_failures",
            "Archive runs that failed, by step (archive, retention); the next interval tries again",
            lake_failures.clone(),
        );
        let shared_segments = Family::<SegmentLabels, Counter>::default();
        registry.register(
            "shared_lake_segments",
            "Segments of balanced partitions in the shared lake: written (claimed here) or theirs (claimed first by another instance)",
            shared_segments.clone(),
        );
        let shared_lake_lag_seconds = Family::<PartitionLabels, Gauge>::default();
        registry.register(
            "shared_lake_lag_seconds",
            "Age of the oldest rows this instance committed and has not yet written to the shared lake (0: all there)",
            shared_lake_lag_seconds.clone(),
        );
        let fleet_passes = Counter::default();
        registry.register(
            "fleet_rule_passes",
            "Passes of the rules over everyone's counts (the rules lease holder's) that ran a rule",
            fleet_passes.clone(),
        );
        let rules_lease_held = Gauge::default();
        registry.register(
            "rules_lease_held",
            "1 while this instance holds the rules lease (it runs the rules over everyone's counts), else 0",
            rules_lease_held.clone(),
        );
        Metrics {
            fleet_passes,
            rules_lease_held,
            shared_segments,
            shared_lake_lag_seconds,
            lake_segments,
            lake_evicted_rows,
            lake_failures,
            memory,
            alert_deliveries,
            alert_claims,
            alert_claim_failures,
            registry,
            http_seconds,
            findings,
            rows,
            commits,
            full_commits,
            detection_waiting,
            committed_sequence,
            last_enqueued_sequence,
            lag_events,
            receive_errors,
            redelivered,
            source_resets,
        }
    }
}

impl Metrics {
    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn count_commit(&self, counts: &crate::store::rows::RowCounts) {
        self.commits.inc();
        for (table, rows) in [
            ("cosmos_requests", counts.cosmos),
            ("signins", counts.signins),
            ("raw_events", counts.raw),
            ("quarantine", counts.quarantined),
        ] {
            self.rows.get_or_create(&TableLabels { table: table.into() }).inc_by(rows);
        }
    }
}

/// How often `serve` and `demo` put their memory in `/metrics`.
pub const SAMPLE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Puts the process's memory in `metrics`: resident and peak (the kernel), DuckDB's own
/// count (`duckdb_memory()`), and the C allocator's (DuckDB allocates through it; Rust
/// code through mimalloc).
pub fn sample_memory(store: &crate::store::Store, metrics: &Metrics) {
    let set = |kind: &str, bytes: u64| {
        let labels = MemoryLabels { kind: kind.into() };
        metrics.memory.get_or_create(&labels).set(bytes.min(i64::MAX as u64) as i64);
    };
    if let Some(bytes) = crate::sys::resident_bytes() {
        set("resident", bytes);
    }
    if let Some(bytes) = crate::sys::peak_resident_bytes() {
        set("peak_resident", bytes);
    }
    if let Some((anonymous, file)) = crate::sys::resident_split_bytes() {
        set("resident_anonymous", anonymous);
        set("resident_file", file);
    }
    set("rust_heap", crate::sys::rust_heap_committed_bytes());
    let duckdb = store.connection().and_then(|conn| {
        Ok(conn.query_row(
            "SELECT coalesce(sum(memory_usage_bytes), 0), coalesce(sum(temporary_storage_bytes), 0) FROM duckdb_memory()",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
        )?)
    });
    match duckdb {
        Ok((used, temporary)) => {
            set("duckdb", used.max(0) as u64);
            set("duckdb_temporary", temporary.max(0) as u64);
        }
        Err(error) => tracing::debug!(error = format!("{error:#}"), "reading DuckDB's memory"),
    }
    if let Some((in_use, free)) = crate::sys::malloc_bytes() {
        set("malloc_in_use", in_use);
        set("malloc_free", free);
    }
}

/// Starts a thread that, every [`SAMPLE_EVERY`] until `stop`, unloads DuckDB's unpinned
/// blocks ([`crate::store::Store::unload_unpinned_blocks`]: what HTTP requests and commits
/// read; detection unloads its own at the end of each pass), gives the C allocator's free
/// pages back and samples the memory.
pub fn spawn_memory_sampler(
    store: std::sync::Arc<crate::store::Store>,
    metrics: std::sync::Arc<Metrics>,
    stop: tokio_util::sync::CancellationToken,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    crate::periodic::spawn_every("memory-sampler", SAMPLE_EVERY, stop, move || {
        if store.unload_unpinned_blocks().is_none() {
            tracing::debug!("DuckDB refused to unload its unpinned blocks");
        }
        crate::sys::trim_free_memory();
        sample_memory(&store, &metrics)
    })
}
