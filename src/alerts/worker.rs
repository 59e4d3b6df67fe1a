//! The delivery worker: one task routes new outbox events, and one task per destination
//! makes its messages and sends them, oldest first, one at a time. DuckDB work runs on
//! blocking threads; only the HTTP attempt is async.

use super::config::{Alerts, Destination};
use super::{deliver, outbox};
use crate::metrics::{DeliveryLabels, Metrics};
use crate::store::Store;
use anyhow::{Context, Result};
use chrono::Utc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The running worker. Dropping it does not stop it; cancel the token given to [`start`].
#[derive(Clone)]
pub struct AlertWorker {
    wake: Arc<Notify>,
}

impl AlertWorker {
    /// Looks for new outbox events now (detection calls it after a pass that changed findings).
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// Starts the worker on `runtime`; it runs until `cancel`. A message being sent when it
/// stops is still pending in the database, and is sent again (same `webhook-id`) next time.
pub fn start(
    store: Arc<Store>,
    alerts: Alerts,
    metrics: Arc<Metrics>,
    runtime: &tokio::runtime::Handle,
    cancel: CancellationToken,
) -> Result<AlertWorker> {
    let client = reqwest::Client::builder()
        .timeout(alerts.timeout)
        .connect_timeout(alerts.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("TokenTrail/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client for alerts")?;
    let alerts = Arc::new(alerts);
    let wake = Arc::new(Notify::new());
    let mut wakers = Vec::new();
    for destination in &alerts.destinations {
        let notify = Arc::new(Notify::new());
        wakers.push(notify.clone());
        let sender = Sender {
            store: store.clone(),
            alerts: alerts.clone(),
            destination: destination.clone(),
            client: client.clone(),
            metrics: metrics.clone(),
            notify,
            cancel: cancel.clone(),
        };
        runtime.spawn(sender.run());
    }
    runtime.spawn(route_loop(store, alerts.clone(), metrics, wake.clone(), wakers, cancel));
    tracing::info!(destinations = alerts.destinations.len(), routes = alerts.routes.len(), "alert delivery started");
    Ok(AlertWorker { wake })
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work).await.context("alert worker thread")?
}

async fn route_loop(
    store: Arc<Store>,
    alerts: Arc<Alerts>,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
    destinations: Vec<Arc<Notify>>,
    cancel: CancellationToken,
) {
    loop {
        // Claims first, outside any transaction (network calls); routing then reads them.
        if let Some(claims) = alerts.claims.clone() {
            let (s, a, m) = (store.clone(), alerts.clone(), metrics.clone());
            match blocking(move || outbox::claim_pending(&s, &a, &claims, &m)).await {
                Ok(0) => {}
                Ok(made) => tracing::debug!(claims = made, "alert claims made"),
                Err(error) => tracing::warn!(error = format!("{error:#}"), "claiming alerts failed; retrying"),
            }
        }
        let (s, a) = (store.clone(), alerts.clone());
        let mut again = false;
        match blocking(move || outbox::route(&s, &a)).await {
            Ok(0) => {}
            Ok(routed) => {
                tracing::debug!(events = routed, "alert events routed");
                destinations.iter().for_each(|d| d.notify_one());
                again = routed >= 1_000;
            }
            Err(error) => tracing::warn!(error = format!("{error:#}"), "routing alert events failed; retrying"),
        }
        if again {
            continue;
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(alerts.poll_interval) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

struct Sender {
    store: Arc<Store>,
    alerts: Arc<Alerts>,
    destination: Destination,
    client: reqwest::Client,
    metrics: Arc<Metrics>,
    notify: Arc<Notify>,
    cancel: CancellationToken,
}

impl Sender {
    async fn run(self) {
        loop {
            let (store, alerts, destination) = (self.store.clone(), self.alerts.clone(), self.destination.clone());
            let step = blocking(move || {
                let now = Utc::now();
                let composed = outbox::compose(&store, &alerts, &destination, now)?;
                let (due, next) = outbox::next_due(&store, &destination.name, now)?;
                Ok((composed, due, next))
            })
            .await;
            let wait = match step {
                Ok((_, Some(due), _)) => {
                    if self.send(due).await {
                        continue;
                    }
                    self.alerts.poll_interval
                }
                Ok((composed, None, next)) => {
                    let until = [composed.wait_until, next].into_iter().flatten().min();
                    let wait = until.map(|t| (t - Utc::now()).to_std().unwrap_or(Duration::ZERO));
                    wait.map_or(self.alerts.poll_interval, |w| w.min(self.alerts.poll_interval))
                }
                Err(error) => {
                    tracing::warn!(destination = %self.destination.name, error = format!("{error:#}"),
                        "reading the alert outbox failed; retrying");
                    self.alerts.poll_interval
                }
            };
            tokio::select! {
                _ = self.notify.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = self.cancel.cancelled() => return,
            }
        }
    }

    /// One attempt and its record. False when recording failed (wait before going on).
    async fn send(&self, due: outbox::Due) -> bool {
        let outcome = tokio::select! {
            outcome = deliver::attempt(&self.client, &self.destination, &due.webhook_id, &due.body) => outcome,
            _ = self.cancel.cancelled() => return false,
        };
        let now = Utc::now();
        let attempts = (due.attempts + 1) as u32;
        let (store, id, name) = (self.store.clone(), due.id, self.destination.name.clone());
        let count = |outcome: &str| {
            let labels = DeliveryLabels { destination: name.clone(), outcome: outcome.into() };
            self.metrics.alert_deliveries.get_or_create(&labels).inc();
        };
        let recorded = match outcome {
            deliver::Outcome::Delivered { status } => {
                count("delivered");
                let recorded = blocking(move || outbox::record_sent(&store, id, status, now)).await;
                tracing::info!(destination = %name, message = id, webhook_id = %due.webhook_id, attempts, status,
                    "alert delivered");
                recorded
            }
            deliver::Outcome::Retry { status, reason, after } => {
                let wait = after.unwrap_or_else(|| {
                    deliver::backoff(attempts, self.alerts.backoff_initial, self.alerts.backoff_max)
                });
                let retry_at =
                    (now < due.give_up_at).then(|| now + chrono::TimeDelta::from_std(wait).unwrap_or_default());
                count(if retry_at.is_some() { "retry" } else { "dead" });
                match retry_at {
                    Some(_) => tracing::warn!(destination = %name, message = id, webhook_id = %due.webhook_id,
                        attempts, status, reason = %reason, retry_in_ms = wait.as_millis() as u64,
                        "alert delivery failed; will retry"),
                    None => tracing::error!(destination = %name, message = id, webhook_id = %due.webhook_id,
                        attempts, status, reason = %reason, "alert delivery failed; giving up (dead)"),
                }
                blocking(move || outbox::record_failure(&store, id, status, &reason, retry_at, now)).await
            }
            deliver::Outcome::Refused { status, reason } => {
                count("dead");
                tracing::error!(destination = %name, message = id, webhook_id = %due.webhook_id, attempts, status,
                    reason = %reason, "alert refused by the destination; giving up (dead)");
                blocking(move || outbox::record_failure(&store, id, Some(status), &reason, None, now)).await
            }
        };
        match recorded {
            Ok(()) => true,
            Err(error) => {
                tracing::error!(destination = %self.destination.name, message = id, error = format!("{error:#}"),
                    "recording an alert delivery failed; it will be sent again");
                false
            }
        }
    }
}
