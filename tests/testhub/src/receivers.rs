//! Active event receivers per partition and consumer group, for epoch (owner level) rules.
//!
//! As in the service: a receiver with an epoch displaces every receiver with a lower or
//! equal epoch, or without one, on the same partition and consumer group
//! (`amqp:link:stolen`); a receiver whose epoch is lower than the holder's, or that has no
//! epoch while an epoch receiver holds the partition, is refused with the same condition.
//! Receivers without epochs coexist.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use fe2o3_amqp_types::definitions::{self, LinkError};
use tokio_util::sync::CancellationToken;

use crate::server::{Shared, lock};

/// Stops one link: a cancellation plus, when the stop is an AMQP error the client must see
/// (a stolen link), that error. Without an error the link is simply dropped (its connection
/// is gone or the hub is shutting down).
#[derive(Default)]
pub(crate) struct LinkControl {
    pub(crate) token: CancellationToken,
    reason: Mutex<Option<definitions::Error>>,
}

impl LinkControl {
    pub(crate) fn with_token(token: CancellationToken) -> Self {
        Self { token, reason: Mutex::new(None) }
    }

    pub(crate) fn stop_with(&self, error: definitions::Error) {
        *lock(&self.reason) = Some(error);
        self.token.cancel();
    }

    pub(crate) fn reason(&self) -> Option<definitions::Error> {
        lock(&self.reason).clone()
    }
}

type Key = (String, u32, String);

struct Active {
    id: u64,
    name: String,
    epoch: Option<i64>,
    control: Arc<LinkControl>,
}

#[derive(Default)]
pub(crate) struct Receivers {
    next_id: AtomicU64,
    active: Mutex<HashMap<Key, Vec<Active>>>,
}

/// Removes the receiver from [`Receivers`] when dropped.
pub(crate) struct Registration {
    shared: Arc<Shared>,
    key: Key,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut active = lock(&self.shared.receivers.active);
        if let Some(list) = active.get_mut(&self.key) {
            list.retain(|a| a.id != self.id);
            if list.is_empty() {
                active.remove(&self.key);
            }
        }
    }
}

fn stolen(description: String) -> definitions::Error {
    definitions::Error::new(LinkError::Stolen, Some(description), None)
}

impl Receivers {
    /// Registers a receiver on `hub`/`partition`/`consumer_group`, displacing the receivers its
    /// epoch beats, or returns the `amqp:link:stolen` error that refuses it.
    pub(crate) fn register(
        shared: &Arc<Shared>,
        hub: &str,
        partition: u32,
        consumer_group: &str,
        name: &str,
        epoch: Option<i64>,
        control: Arc<LinkControl>,
    ) -> Result<Registration, definitions::Error> {
        let key = (hub.to_ascii_lowercase(), partition, consumer_group.to_ascii_lowercase());
        let mut active = lock(&shared.receivers.active);
        let list = active.entry(key.clone()).or_default();
        let holder = list.iter().filter_map(|a| a.epoch.map(|e| (e, a))).max_by_key(|(e, _)| *e);
        match (epoch, holder) {
            (Some(new), Some((held, a))) if new < held => {
                return Err(stolen(format!(
                    "Receiver '{name}' with epoch '{new}' cannot be created because receiver '{}' with a higher epoch \
                     '{held}' already exists on partition {partition} of '{hub}', consumer group '{consumer_group}'.",
                    a.name
                )));
            }
            (None, Some((held, a))) => {
                return Err(stolen(format!(
                    "Receiver '{name}' without an epoch cannot be created because receiver '{}' with epoch '{held}' \
                     holds partition {partition} of '{hub}', consumer group '{consumer_group}'.",
                    a.name
                )));
            }
            _ => {}
        }
        if let Some(new) = epoch {
            list.retain(|a| {
                let description = format!(
                    "New receiver '{name}' with higher epoch of '{new}' is created hence current receiver '{}' with \
                     epoch '{}' is getting disconnected. If you are recreating the receiver, make sure a higher epoch \
                     is used.",
                    a.name,
                    a.epoch.map_or_else(|| "none".to_string(), |e| e.to_string())
                );
                a.control.stop_with(stolen(description));
                false
            });
        }
        let id = shared.receivers.next_id.fetch_add(1, Ordering::Relaxed);
        list.push(Active { id, name: name.to_string(), epoch, control });
        Ok(Registration { shared: shared.clone(), key, id })
    }
}
