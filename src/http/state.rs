//! What every handler reads ([`AppState`]), built once and whole from its parts and the
//! OpenAPI document: the access table is derived before any request can see the state.

use crate::auth::Auth;
use crate::http::access::AccessTable;
use crate::http::audit::{self, AuditLog};
use crate::http::callers::{self, Callers};
use crate::http::pool::{self, QueryPool};
use crate::metrics::Metrics;
use crate::rules::rule::Rule;
use crate::source::eventhubs::HubsStatus;
use crate::store::Store;
use std::sync::Arc;

/// What every handler reads. Built once, complete, by [`AppState::new`]; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    /// Shown on every page, e.g. "demo: generated data".
    pub mode: &'static str,
    /// The Event Hubs source's partitions, when it runs.
    pub hubs: Option<Arc<HubsStatus>>,
    pub metrics: Arc<Metrics>,
    pub auth: Arc<Auth>,
    pub audit: AuditLog,
    /// The rule catalogue (what detection runs with).
    pub rules: Arc<Vec<Rule>>,
    /// Who may call what, from the OpenAPI document.
    pub access: Arc<AccessTable>,
    pub openapi: Arc<serde_json::Value>,
    /// The threads API queries run on ([`crate::http::api::db`]).
    pub queries: QueryPool,
    /// The threads streamed exports run on, apart from the queries' so downloads never
    /// hold the threads that answer pages.
    pub exports: QueryPool,
    /// Each caller's share of the API ([`crate::http::callers`]).
    pub callers: Callers,
    /// Evidence packs: their bounds over the API.
    pub evidence: crate::config::EvidenceConfig,
    /// The Parquet lake, read by answers whose period reaches rows retention moved there.
    pub lake: Option<Arc<crate::lake::view::Reader>>,
    /// Other instances' requests are copied here from a shared lake
    /// ([`crate::lake::fleet`]): pages read them beside this one's.
    pub others: bool,
}

/// What [`AppState::new`] is made from.
pub struct StateParts {
    pub store: Arc<Store>,
    pub mode: &'static str,
    pub auth: Arc<Auth>,
    pub hubs: Option<Arc<HubsStatus>>,
    pub metrics: Arc<Metrics>,
    pub rules: Vec<Rule>,
    pub evidence: crate::config::EvidenceConfig,
    pub limits: Limits,
    pub lake: Option<Arc<crate::lake::view::Reader>>,
    pub others: bool,
}

/// The API's limits per caller and per source address.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Calls in flight per caller ([`crate::http::callers::MAX_CALLS`]).
    pub calls_per_caller: usize,
    /// A caller's database jobs at once.
    pub database_jobs_per_caller: usize,
    /// Refused calls written to the access log per source address and minute
    /// ([`crate::http::audit::REFUSED_PER_MINUTE`]).
    pub refused_per_minute: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            calls_per_caller: callers::MAX_CALLS,
            database_jobs_per_caller: 1,
            refused_per_minute: audit::REFUSED_PER_MINUTE,
        }
    }
}

impl AppState {
    /// Starts the access log and the query threads, and derives the access table from the
    /// OpenAPI document, so the state is whole before any request can see it.
    pub fn new(parts: StateParts, doc: &utoipa::openapi::OpenApi) -> AppState {
        let StateParts { store, mode, auth, hubs, metrics, rules, evidence, limits, lake, others } = parts;
        AppState {
            audit: AuditLog::start_with(store.clone(), limits.refused_per_minute),
            store,
            mode,
            hubs,
            metrics,
            auth,
            rules: Arc::new(rules),
            access: Arc::new(AccessTable::from_openapi(doc)),
            openapi: Arc::new(serde_json::to_value(doc).expect("the OpenAPI document serialises")),
            queries: QueryPool::start("api-query", pool::QUERY_THREADS, pool::QUERY_NICE),
            exports: QueryPool::start("api-export", pool::EXPORT_THREADS, pool::QUERY_NICE),
            callers: Callers::new(limits.calls_per_caller, limits.database_jobs_per_caller),
            evidence,
            lake,
            others,
        }
    }
}
