//! The running application, assembled once for `serve`, `demo`, the tests and the
//! benchmarks: a database, an optional source of events, detection, alerts, the memory
//! sampler and the HTTP side, with one way to stop all of them.
//!
//! Contract:
//! - [`Application::build`] binds the port and starts every thread, so a caller can read
//!   [`Application::address`] before it serves; the database is locked down (no file
//!   access from SQL) before any request can arrive.
//! - One stop: Ctrl-C, SIGTERM, [`Application::stopper`] or the source's end cancel one
//!   token; [`Application::run_until_stopped`] then lets requests in flight finish, and
//!   returns after every thread that holds the database has ended (the source finishes
//!   the commit under way).
//! - The source runs on a thread of its own at normal priority with a runtime of normal
//!   priority; the HTTP side runs at the API's lower priority ([`http_runtime`]).

use crate::alerts::Alerts;
use crate::auth::{Auth, AuthConfig, SignInSecret};
use crate::http::router::{http_runtime, router};
use crate::http::state::{AppState, Limits, StateParts};
use crate::metrics::Metrics;
use crate::rules::rule::Rule;
use crate::rules::{DetectionConfig, Detector};
use crate::source::eventhubs::HubsStatus;
use crate::store::Store;
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What a source gets to run with.
pub struct SourceContext {
    pub store: Arc<Store>,
    /// Count commits here: detection wakes on them.
    pub metrics: Arc<Metrics>,
    /// Cancelled when the application stops; the source then finishes its commit and returns.
    pub stop: CancellationToken,
    /// A runtime of normal priority, for network clients.
    pub runtime: tokio::runtime::Handle,
    /// The store's ingest writer, opened before the store is locked down (its
    /// connections configure their sessions).
    pub writer: crate::store::Writer,
}

/// Events into the database until stopped: the Event Hubs consumer, the demo's generator.
pub struct Source {
    /// The thread's name.
    pub name: &'static str,
    pub run: Box<dyn FnOnce(SourceContext) -> Result<()> + Send>,
}

/// How users sign in.
pub enum SignIn {
    /// Entra ID tokens of the configured tenants and audiences.
    Entra(AuthConfig),
    /// The development issuer whose key lies beside `db`; with a secret, its sign-in page
    /// asks for it (`serve`), without one any loopback user may pick a role (`demo`).
    Development { db: PathBuf, secret: Option<SignInSecret> },
}

/// What detection does.
pub enum Detection {
    /// Rules run after commits and raise findings (and alerts).
    Live(DetectionConfig),
    /// Nothing runs; the API shows this catalogue (tests of the HTTP side).
    Catalogue(Vec<Rule>),
}

pub struct Settings {
    pub store: Arc<Store>,
    pub listen: SocketAddr,
    /// Shown on every page, e.g. "demo: generated data".
    pub mode: &'static str,
    pub sign_in: SignIn,
    pub detection: Detection,
    /// Where alerts go (resolved, secrets read); `None`: no alert worker.
    pub alerts: Option<Alerts>,
    pub evidence: crate::config::EvidenceConfig,
    pub limits: Limits,
    pub source: Option<Source>,
    /// The Event Hubs partitions' status, when the source is the Event Hubs consumer.
    pub hubs: Option<Arc<HubsStatus>>,
    /// Counters shared with the source, detection and `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The Parquet lake, for answers past retention.
    pub lake: Option<Arc<crate::lake::view::Reader>>,
    /// The shared lake of balanced hubs, for the rules over everyone's counts (with `hubs`:
    /// its rules lease).
    pub fleet: Option<crate::lake::fleet::Fleet>,
}

impl Settings {
    /// Serves `store` on `listen` with no source, no detection and no alerts.
    pub fn new(store: Arc<Store>, listen: SocketAddr, mode: &'static str, sign_in: SignIn) -> Settings {
        Settings {
            store,
            listen,
            mode,
            sign_in,
            detection: Detection::Catalogue(Vec::new()),
            alerts: None,
            evidence: Default::default(),
            limits: Limits::default(),
            source: None,
            hubs: None,
            metrics: Arc::default(),
            lake: None,
            fleet: None,
        }
    }
}

pub struct Application {
    state: AppState,
    address: SocketAddr,
    listener: tokio::net::TcpListener,
    stop: CancellationToken,
    threads: Vec<(&'static str, JoinHandle<()>)>,
    source: Option<JoinHandle<Result<()>>>,
    // Dropped last: the HTTP side, then the runtime the source and alerts run on.
    http: tokio::runtime::Runtime,
    work: tokio::runtime::Runtime,
}

impl Application {
    pub fn build(settings: Settings) -> Result<Application> {
        let Settings {
            store,
            listen,
            mode,
            sign_in,
            detection,
            alerts,
            evidence,
            limits,
            source,
            hubs,
            metrics,
            lake,
            fleet,
        } = settings;
        // DuckDB reads files in these directories only: the lake's and the shared lake's cache.
        let readable: Vec<std::path::PathBuf> = lake
            .iter()
            .map(|l| l.directory().to_path_buf())
            .chain(fleet.as_ref().map(|f| f.directory().to_path_buf()))
            .collect();
        let others = fleet.is_some();
        let work = tokio::runtime::Runtime::new()?;
        let http = http_runtime()?;
        let listener = http.block_on(tokio::net::TcpListener::bind(listen)).with_context(|| {
            format!(
                "cannot listen on {listen}: is another program using it? (serve: set http.listen; demo: pass --port)"
            )
        })?;
        let address = listener.local_addr()?;
        let auth = match sign_in {
            SignIn::Entra(config) => work.block_on(Auth::entra(config))?,
            SignIn::Development { db, secret } => Auth::development(&db, secret)?,
        };
        let stop = CancellationToken::new();
        let mut threads = Vec::new();
        let rules = match detection {
            Detection::Catalogue(rules) => rules,
            Detection::Live(config) => {
                let (detector, _problems) = Detector::open(&store, &config)?;
                let rules = detector.rules().to_vec();
                let raised: crate::rules::live::Raised = match alerts {
                    Some(alerts) => {
                        threads.push((
                            "review reminders",
                            crate::reviews::remind::spawn(store.clone(), alerts.clone(), stop.clone())?,
                        ));
                        let worker =
                            crate::alerts::start(store.clone(), alerts, metrics.clone(), work.handle(), stop.clone())?;
                        Arc::new(move |_| worker.wake())
                    }
                    None => Arc::new(|_| {}),
                };
                let caught_up: Option<crate::rules::live::CaughtUp> = hubs.clone().map(|hubs| {
                    Box::new(move || *hubs.caught_up.lock().unwrap_or_else(|p| p.into_inner()))
                        as crate::rules::live::CaughtUp
                });
                let shared = match (fleet, &hubs) {
                    (Some(fleet), Some(hubs)) => Some(crate::rules::live::Shared {
                        holding: hubs.rules_lease.holding.clone(),
                        handed_over: hubs.rules_lease.handed_over.clone(),
                        evaluated_through: hubs.rules_lease.evaluated_through.clone(),
                        followed: hubs.rules_lease.followed.clone(),
                        counted: hubs.rules_lease.counted.clone(),
                        fleet: Box::new(fleet),
                    }),
                    _ => None,
                };
                let detection_threads = crate::rules::live::spawn(
                    store.clone(),
                    detector,
                    metrics.clone(),
                    stop.clone(),
                    caught_up,
                    shared,
                    raised,
                )?;
                threads.extend(detection_threads.into_iter().map(|thread| ("detection", thread)));
                rules
            }
        };
        threads.push((
            "memory sampler",
            crate::metrics::spawn_memory_sampler(store.clone(), metrics.clone(), stop.clone())?,
        ));
        threads.push((
            "quiet checkpoint",
            crate::store::quiet::spawn(store.clone(), metrics.full_commits.clone(), stop.clone())?,
        ));
        let source = source.map(|source| start_source(source, &store, &metrics, &stop, work.handle())).transpose()?;
        // After detection has made its views: from here on SQL reads no file.
        store.lock_down(&readable)?;
        let parts = StateParts { store, mode, auth, hubs, metrics, rules, evidence, limits, lake, others };
        let state = AppState::new(parts, &crate::http::api::routes().into_openapi());
        Ok(Application { state, address, listener, stop, threads, source, http, work })
    }

    /// The bound address (the port chosen when `listen` asked for port 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Cancelling it stops the application as Ctrl-C would.
    pub fn stopper(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Serves until Ctrl-C, SIGTERM, the stopper or the source's end; then stops every
    /// thread and returns the first error (serving's, then the source's).
    pub fn run_until_stopped(self) -> Result<()> {
        let Application { state, address: _, listener, stop, threads, source, http, work } = self;
        let audit = state.audit.clone();
        let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
        let served =
            http.block_on(async { axum::serve(listener, app).with_graceful_shutdown(stopped(stop.clone())).await });
        stop.cancel();
        let ingested = match source {
            Some(thread) => thread.join().map_err(|_| anyhow::anyhow!("the ingest thread panicked"))?,
            None => Ok(()),
        };
        for (name, thread) in threads {
            if thread.join().is_err() {
                tracing::error!(thread = name, "thread panicked");
            }
        }
        // Every thread that holds the database ends before the process does.
        audit.close();
        drop(http);
        drop(work);
        served.context("serving HTTP")?;
        ingested
    }
}

fn start_source(
    source: Source,
    store: &Arc<Store>,
    metrics: &Arc<Metrics>,
    stop: &CancellationToken,
    runtime: &tokio::runtime::Handle,
) -> Result<JoinHandle<Result<()>>> {
    let context = SourceContext {
        store: store.clone(),
        metrics: metrics.clone(),
        stop: stop.clone(),
        runtime: runtime.clone(),
        writer: store.writer()?,
    };
    let stop = stop.clone();
    Ok(std::thread::Builder::new().name(source.name.into()).spawn(move || {
        let outcome = (source.run)(context);
        // The service stops with its source rather than serve stale data silently.
        match &outcome {
            Err(error) => tracing::error!(error = format!("{error:#}"), "stopping: ingest ended"),
            Ok(()) if !stop.is_cancelled() => tracing::warn!("stopping: ingest ended"),
            Ok(()) => {}
        }
        stop.cancel();
        outcome
    })?)
}

/// Ctrl-C, SIGTERM or `stop`, whichever comes first.
async fn stopped(stop: CancellationToken) {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let terminated = async {
        match terminate.as_mut() {
            Some(signal) => signal.recv().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("stopping: finishing the current commit"),
        _ = terminated => tracing::info!("SIGTERM: finishing the current commit"),
        _ = stop.cancelled() => {}
    }
    stop.cancel();
}
