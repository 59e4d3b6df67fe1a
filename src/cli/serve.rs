//! `tokentrail serve`: the service. Streams Event Hubs into DuckDB (when configured),
//! detects, sends alerts (`crate::alerts`) and serves HTTP, until Ctrl-C or SIGTERM; a
//! stop finishes the commit under way, and a restart resumes every partition after its
//! committed position.

use crate::config::ServeConfig;
use crate::http::{Application, Detection, Settings, SignIn, Source, SourceContext};
use crate::source::eventhubs::{Connect, HubsStatus};
use crate::store::{Store, StoreOptions};
use anyhow::{Context, Result, bail};
use std::sync::Arc;

/// What `serve` starts with once the configuration has passed every check that needs
/// neither the database, a port nor the network.
pub struct Startup {
    pub connect: Option<Connect>,
    pub alerts: crate::alerts::Alerts,
    /// `[inventory]` enabled: its ARM client.
    pub inventory: Option<crate::inventory::arm::ArmClient>,
}

/// The start-up checks of a loaded configuration: the Event Hubs identity (a connection
/// string read from the environment, or a credential built, not yet used), the alert
/// destinations with their secrets, and the sign-in mode. `run` and
/// `serve --check-config` both call it, so the check passes exactly what `run` would.
pub fn startup(config: &ServeConfig) -> Result<Startup> {
    let connect = config.eventhubs.as_ref().map(Connect::from_config).transpose()?;
    if let Some(lake) = &config.lake {
        let identity = lake_identity(lake);
        crate::lake::Location::check(&lake.url, &move || identity.credential()).context("[lake]")?;
    }
    if let Some((text, identity)) = shared_lake(config) {
        crate::lake::Location::check(text, &move || identity.credential()).context("eventhubs.balance.shared_lake")?;
    }
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
    let inventory = config.inventory.enabled.then(|| crate::inventory::client(&config.inventory)).transpose()?;
    Ok(Startup { connect, alerts, inventory })
}

/// `[lake]`'s Entra ID identity.
fn lake_identity(lake: &crate::config::LakeConfig) -> crate::source::eventhubs::Identity {
    crate::source::eventhubs::Identity {
        credential: lake.credential,
        managed_identity_client_id: lake.managed_identity_client_id.clone(),
        tenant_id: lake.tenant_id.clone(),
        client_id: lake.client_id.clone(),
    }
}

/// `[eventhubs.balance] shared_lake`, with the `[eventhubs]` identity that reaches it.
fn shared_lake(config: &ServeConfig) -> Option<(&str, crate::source::eventhubs::Identity)> {
    let hubs = config.eventhubs.as_ref()?;
    let text = hubs.balance.as_ref()?.shared_lake.as_deref()?;
    Some((text, crate::source::eventhubs::Identity::of(hubs)))
}

/// The alert claims in the shared lake (`crate::alerts::claims`), as this instance: the
/// database must exist (the instance's name is its canonical path's).
fn alert_claims(config: &ServeConfig) -> Result<Option<Arc<crate::alerts::claims::Claims>>> {
    let Some(lake) = shared_lake_store(config)? else { return Ok(None) };
    let instance = crate::sys::instance_name(&config.db);
    tracing::info!(lake = %lake.describe(), instance = %instance, "alerts are claimed in the shared lake");
    Ok(Some(Arc::new(crate::alerts::claims::Claims::new(lake, instance))))
}

/// The shared lake, reached with the short retry policy: a call that fails is made
/// again on the next pass, not after minutes of retries.
fn shared_lake_store(config: &ServeConfig) -> Result<Option<crate::lake::Lake>> {
    let Some((text, identity)) = shared_lake(config) else { return Ok(None) };
    let location = crate::lake::Location::parse_with_retry(
        text,
        &move || identity.credential(),
        crate::lake::Location::short_retry(),
    )
    .context("eventhubs.balance.shared_lake")?;
    Ok(Some(crate::lake::Lake::new(location)?))
}

/// The shared lake as the rules over everyone's counts read it (`crate::lake::fleet`), its
/// files cached beside the database (`<db>.shared-lake-cache`).
fn fleet(config: &ServeConfig) -> Result<Option<crate::lake::fleet::Fleet>> {
    let Some(lake) = shared_lake_store(config)? else { return Ok(None) };
    let cache = config.db.with_extension("shared-lake-cache");
    Ok(Some(crate::lake::fleet::Fleet::new(lake, &cache, crate::sys::instance_name(&config.db))?))
}

/// DuckDB's threads: `db_threads`, else [`default_db_threads`].
fn db_threads(config: &ServeConfig) -> usize {
    config.db_threads.unwrap_or_else(default_db_threads)
}

/// Half the cores (at least 1): the default for `serve` and `demo`.
pub(crate) fn default_db_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / 2).max(1)
}

/// `serve --check-config`: [`startup`]'s checks and nothing else (no database, port or
/// connection), and a few lines saying what would run. No secret is in them.
pub fn check(config: &ServeConfig) -> Result<String> {
    let Startup { connect, alerts, inventory } = startup(config)?;
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
    if let Some((text, _)) = shared_lake(config) {
        // Not the instance's name: it is the database's canonical path's, once the file exists.
        lines.push(format!(
            "alert claims: {} (one instance sends each finding)",
            text.split('?').next().unwrap_or_default()
        ));
    }
    let names: Vec<&str> = alerts.destinations.iter().map(|d| d.name.as_str()).collect();
    lines.push(if names.is_empty() {
        "alerts: no destinations".into()
    } else {
        format!("alerts: {} ({} routes)", names.join(", "), alerts.routes.len())
    });
    lines.push(match &inventory {
        Some(client) => format!(
            "inventory: every {} h from {} ({})",
            config.inventory.interval_hours,
            client.endpoint(),
            if config.inventory.subscriptions.is_empty() {
                "every subscription the identity sees".to_owned()
            } else {
                config.inventory.subscriptions.join(", ")
            }
        ),
        None => "inventory: off".into(),
    });
    lines.push(match &config.lake {
        Some(lake) => format!(
            "lake: {} every {} min, retention {}",
            lake.url.split('?').next().unwrap_or_default(),
            lake.interval_minutes,
            match (config.retention.hot_days, config.retention.tables.is_empty()) {
                (None, true) => "off (nothing deleted)".to_owned(),
                (days, _) => format!(
                    "{} days{}",
                    days.map_or("all".to_owned(), |d| d.to_string()),
                    config.retention.tables.iter().map(|(t, d)| format!(", {t} {d}")).collect::<String>()
                ),
            }
        ),
        None => "lake: off".into(),
    });
    Ok(lines.join("\n"))
}

pub fn run(config: ServeConfig) -> Result<()> {
    let Startup { connect, mut alerts, inventory } = startup(&config)?;
    let options = StoreOptions {
        memory_limit: Some(config.db_memory_limit.clone()),
        threads: Some(db_threads(&config)),
        checkpoint_threshold: Some(crate::source::eventhubs::SERVE_CHECKPOINT_WAL.into()),
        ..StoreOptions::default()
    };
    // Opened before the database: a lake that cannot be reached stops the start, with why.
    let lake = match &config.lake {
        Some(lake) => {
            let identity = lake_identity(lake);
            Some(crate::lake::Lake::new(crate::lake::Location::parse(&lake.url, &move || identity.credential())?)?)
        }
        None => None,
    };
    let store = Arc::new(Store::open(&config.db, &options)?);
    alerts.claims = alert_claims(&config)?;
    if let Some(key) = &config.evidence.signing_key {
        crate::evidence::sign::configure(key.clone());
    }
    let (sign_in, mode, secret) = match &config.auth {
        Some(auth) => (SignIn::Entra(auth.clone()), "service", None),
        None => {
            let secret = crate::auth::SignInSecret::new();
            let shown = secret.value().to_owned();
            let sign_in = SignIn::Development { db: config.db.clone(), secret: Some(secret) };
            (sign_in, "service: development sign-in", Some(shown))
        }
    };
    let mut settings = Settings::new(store, config.http.listen, mode, sign_in);
    settings.lake = match &config.lake {
        Some(lake) => {
            let identity = lake_identity(lake);
            let location = crate::lake::Location::parse(&lake.url, &move || identity.credential())?;
            let cache = lake.cache_dir.clone().unwrap_or_else(|| config.db.with_extension("lake-cache"));
            Some(Arc::new(crate::lake::view::Reader::new(location, &cache)?))
        }
        None => None,
    };
    settings.fleet = fleet(&config)?;
    settings.detection = Detection::Live(config.detection.clone());
    settings.alerts = Some(alerts);
    settings.evidence = config.evidence.clone();
    if let (Some(hubs), Some(connect)) = (config.eventhubs.clone(), connect) {
        let status = Arc::new(HubsStatus::default());
        settings.hubs = Some(status.clone());
        settings.source = Some(Source {
            name: "eventhubs-ingest",
            run: Box::new(move |cx: SourceContext| {
                crate::ingest::eventhubs::run(
                    &cx.store,
                    cx.writer,
                    &hubs,
                    &connect,
                    &cx.runtime,
                    cx.stop,
                    status,
                    cx.metrics,
                )
            }),
        });
    }
    let store = settings.store.clone();
    let app = Application::build(settings)?;
    // Its own thread: an inventory waits on ARM, never on ingest, and ingest never on it.
    let archive = match (lake, &config.lake) {
        (Some(lake), Some(settings)) => Some(crate::lake::spawn_schedule(
            store.clone(),
            lake,
            config.retention.clone(),
            std::time::Duration::from_secs(u64::from(settings.interval_minutes) * 60),
            app.state().metrics.clone(),
            app.stopper(),
        )?),
        _ => None,
    };
    let inventory = inventory
        .map(|client| crate::inventory::spawn_schedule(store, client, &config.inventory, app.stopper()))
        .transpose()?;
    tracing::info!(address = %app.address(), db = %config.db.display(), "serving");
    if let Some(secret) = secret {
        // On the terminal only: a secret never goes to the log.
        eprintln!(
            "development sign-in: open http://127.0.0.1:{}/ and enter this secret when asked: {secret}\n\
             (it lasts until the service stops; configure [auth] for real data)",
            app.address().port(),
        );
    }
    let result = app.run_until_stopped();
    // The database closes once the inventory (holding it) has ended too.
    if let Some(thread) = inventory {
        let _ = thread.join();
    }
    if let Some(thread) = archive {
        let _ = thread.join();
    }
    result
}
