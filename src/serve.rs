//! `tokentrail serve`: the service. Streams Event Hubs into DuckDB (when configured),
//! detects, sends alerts (`crate::alerts`) and serves HTTP, until Ctrl-C or SIGTERM; a
//! stop finishes the commit under way, and a restart resumes every partition after its
//! committed position.

use crate::config::ServeConfig;
use crate::http::AppState;
use crate::metrics::Metrics;
use crate::source::eventhubs::{self, Connect, HubsStatus};
use crate::store::{Store, StoreOptions};
use anyhow::{Context, Result, bail};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What `serve` starts with once the configuration has passed every check that needs
/// neither the database, a port nor the network.
pub struct Startup {
    pub connect: Option<Connect>,
    pub alerts: crate::alerts::Alerts,
}

/// The start-up checks of a loaded configuration: the Event Hubs identity (a connection
/// string read from the environment, or a credential built, not yet used), the alert
/// destinations with their secrets, and the sign-in mode. `run` and
/// `serve --check-config` both call it, so the check passes exactly what `run` would.
pub fn startup(config: &ServeConfig) -> Result<Startup> {
    let connect = config.eventhubs.as_ref().map(Connect::from_config).transpose()?;
    let alerts = config.alerts.resolve(&format!("http://{}", config.http.listen))?;
    if config.auth.is_some() && config.http.development_sign_in {
        bail!("http.development_sign_in = true and [auth] are both set: choose one (use [auth] for real data)");
    }
    if config.auth.is_none() && !config.http.development_sign_in {
        // Without [auth] anyone who reaches the port could sign in with any role.
        bail!(
            "configure [auth] (the Entra ID tenants and audiences whose tokens are accepted), or, to try \
             TokenTrail out, set [http] development_sign_in = true (TOKENTRAIL_HTTP__DEVELOPMENT_SIGN_IN=true): \
             its sign-in page then asks for a secret printed at start"
        );
    }
    Ok(Startup { connect, alerts })
}

/// DuckDB's threads: `db_threads`, else half the cores (at least 1).
fn db_threads(config: &ServeConfig) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    config.db_threads.unwrap_or((cores / 2).max(1))
}

/// `serve --check-config`: [`startup`]'s checks and nothing else (no database, port or
/// connection), and a few lines saying what would run. No secret is in them.
pub fn check(config: &ServeConfig) -> Result<String> {
    let Startup { connect, alerts } = startup(config)?;
    let mut lines = vec![
        format!(
            "database: {} (memory limit {}, DuckDB threads {})",
            config.db.display(),
            config.db_memory_limit,
            db_threads(config)
        ),
        format!("http: {}", config.http.listen),
    ];
    lines.push(match &config.auth {
        Some(auth) => format!(
            "sign-in: Entra ID, tenants {}, audiences {}{}",
            auth.tenants.join(", "),
            auth.audiences.join(", "),
            if auth.client_id.is_some() { ", browser sign-in" } else { ", bearer tokens only" }
        ),
        None => "sign-in: development issuer (a secret printed at start; loopback hosts only)".into(),
    });
    lines.push(match (&config.eventhubs, &connect) {
        // Connect's Debug names the namespace and the kind of identity, never a secret.
        (Some(hubs), Some(connect)) => format!(
            "eventhubs: {} (consumer group {}, start {}), {connect:?}",
            hubs.hubs.join(", "),
            hubs.consumer_group,
            String::from(hubs.start.clone())
        ),
        _ => "eventhubs: none (serves what the database holds)".into(),
    });
    let names: Vec<&str> = alerts.destinations.iter().map(|d| d.name.as_str()).collect();
    lines.push(if names.is_empty() {
        "alerts: no destinations".into()
    } else {
        format!("alerts: {} ({} routes)", names.join(", "), alerts.routes.len())
    });
    Ok(lines.join("\n"))
}

pub fn run(config: ServeConfig) -> Result<()> {
    let Startup { connect, alerts } = startup(&config)?;
    let options = StoreOptions {
        memory_limit: Some(config.db_memory_limit.clone()),
        threads: Some(db_threads(&config)),
        checkpoint_threshold: Some(crate::source::eventhubs::SERVE_CHECKPOINT_WAL.into()),
        ..StoreOptions::default()
    };
    let store = Arc::new(Store::open(&config.db, &options)?);
    if let Some(key) = &config.evidence.signing_key {
        crate::evidence::sign::configure(key.clone());
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let http = crate::http::http_runtime()?;
    let listen = config.http.listen;
    let listener = http
        .block_on(tokio::net::TcpListener::bind(listen))
        .with_context(|| format!("cannot listen on {listen}: is another program using it? Set http.listen"))?;
    let address = listener.local_addr()?;
    tracing::info!(address = %address, db = %config.db.display(), "serving");

    let cancel = CancellationToken::new();
    let metrics = Arc::new(Metrics::default());
    let hubs = Arc::new(HubsStatus::default());
    let source = match (&config.eventhubs, connect) {
        (Some(hubs_config), Some(connect)) => {
            let (store, hubs_config, handle) = (store.clone(), hubs_config.clone(), runtime.handle().clone());
            let (cancel, status, metrics) = (cancel.clone(), hubs.clone(), metrics.clone());
            Some(std::thread::Builder::new().name("eventhubs-ingest".into()).spawn(move || {
                let outcome = eventhubs::run(&store, &hubs_config, &connect, &handle, cancel.clone(), status, metrics);
                if let Err(error) = &outcome {
                    tracing::error!(error = format!("{error:#}"), "Event Hubs ingest stopped");
                }
                // The service stops with its source rather than serve stale data silently.
                cancel.cancel();
                outcome
            })?)
        }
        _ => None,
    };
    let (auth, mode) = match &config.auth {
        Some(auth) => (runtime.block_on(crate::auth::Auth::entra(auth.clone()))?, "service"),
        None => {
            let secret = crate::auth::SignInSecret::new();
            // On the terminal only: a secret never goes to the log.
            eprintln!(
                "development sign-in: open http://127.0.0.1:{}/ and enter this secret when asked: {}\n\
                 (it lasts until the service stops; configure [auth] for real data)",
                address.port(),
                secret.value()
            );
            (crate::auth::Auth::development(&config.db, Some(secret))?, "service: development sign-in")
        }
    };
    let (detector, _problems) = crate::rules::Detector::open(&store, &config.detection)?;
    let rules = Arc::new(detector.rules().to_vec());
    let detection_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let alerts = crate::alerts::start(store.clone(), alerts, metrics.clone(), runtime.handle(), cancel.clone())?;
    let detection = crate::rules::live::spawn(store.clone(), detector, metrics.clone(), detection_stop.clone(), {
        move |_| alerts.wake()
    })?;
    let sampler = crate::metrics::spawn_memory_sampler(store.clone(), metrics.clone(), detection_stop.clone())?;
    store.lock_down()?;
    let mut state = AppState::new(store.clone(), mode, auth);
    state.rules = rules;
    state.hubs = source.as_ref().map(|_| hubs.clone());
    state.metrics = metrics;
    state.evidence = config.evidence.clone();
    let audit = state.audit.clone();
    let shutdown = {
        let cancel = cancel.clone();
        async move {
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
                _ = cancel.cancelled() => {}
            }
            cancel.cancel();
        }
    };
    let served = http.block_on(async move {
        axum::serve(listener, crate::http::router(state).into_make_service_with_connect_info::<std::net::SocketAddr>())
            .with_graceful_shutdown(shutdown)
            .await
    });
    cancel.cancel();
    detection_stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = detection.join();
    let _ = sampler.join();
    let ingested = match source {
        Some(thread) => thread.join().map_err(|_| anyhow::anyhow!("the Event Hubs ingest thread panicked"))?,
        None => Ok(()),
    };
    // Every thread that holds the database ends before the process does.
    audit.close();
    drop(http);
    drop(runtime);
    served?;
    ingested
}
