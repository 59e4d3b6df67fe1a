//! Event receiver links: stream a partition to a consumer under its link credit.

use std::sync::Arc;

use fe2o3_amqp::{
    Sender,
    link::{DetachError, delivery::Sendable},
};
use fe2o3_amqp_types::{
    messaging::{Data, Message, MessageAnnotations, annotations::OwnedKey},
    primitives::{OrderedMap, Symbol, Timestamp, Value},
};
use tracing::{debug, info};

use crate::{
    address::StartPosition,
    connection::CLOSE_TIMEOUT,
    receivers::{LinkControl, Registration},
    server::{Claim, Faults, Shared},
    store::{EventCopy, Partition},
};

/// Events copied out of storage per read (the sender still waits for credit per event).
const READ_CHUNK_EVENTS: usize = 64;
const READ_CHUNK_BYTES: usize = 1024 * 1024;

pub(crate) struct ReceiverLink {
    pub(crate) shared: Arc<Shared>,
    pub(crate) hub: String,
    pub(crate) partition: u32,
    pub(crate) start: StartPosition,
    pub(crate) control: Arc<LinkControl>,
    pub(crate) _registration: Registration,
}

enum Stop {
    /// The client detached or closed the link (or its session/connection ended).
    Remote(Option<DetachError>),
    /// Our side stops it: a stolen link (with an error for the client) or a dropped connection.
    Local,
}

impl ReceiverLink {
    pub(crate) async fn serve(self, mut sender: Sender) {
        let Some(partition) = self.shared.store.hub(&self.hub).and_then(|h| h.partition(self.partition)) else {
            return;
        };
        let stop = self.stream(&mut sender, partition).await;
        match stop {
            Stop::Remote(Some(e)) => answer_detach(sender, e).await,
            Stop::Remote(None) => {}
            // Without a reason the connection is gone: nothing to say, just drop the link.
            Stop::Local => {
                if let Some(error) = self.control.reason() {
                    info!(hub = %self.hub, partition = self.partition, description = ?error.description,
                        "test hub: receiver displaced");
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, sender.close_with_error(error)).await;
                }
            }
        }
    }

    /// Sends events until something stops the link.
    async fn stream(&self, sender: &mut Sender, partition: &Partition) -> Stop {
        let mut tail = partition.subscribe();
        let (mut next, not_before) = match self.start {
            StartPosition::Latest => (partition.len(), None),
            StartPosition::Sequence { value, inclusive } => {
                let first = if inclusive { value } else { value.saturating_add(1) };
                (first.max(0) as usize, None)
            }
            // Events are enqueued in time order; the bound is also applied to events that
            // arrive later, for a start time in the future.
            StartPosition::EnqueuedTime { ms, inclusive } => {
                (partition.first_after_time(ms, inclusive), Some((ms, inclusive)))
            }
        };
        let token = &self.control.token;
        loop {
            // Mark the current tail as seen *before* reading, so an append racing the read
            // still wakes us.
            tail.borrow_and_update();
            let chunk = partition.read(next, READ_CHUNK_EVENTS, READ_CHUNK_BYTES);
            if chunk.is_empty() {
                enum Wake {
                    Appended(bool),
                    Detached(DetachError),
                    Stopped,
                }
                let wake = tokio::select! {
                    changed = tail.changed() => Wake::Appended(changed.is_ok()),
                    e = sender.on_detach() => Wake::Detached(e),
                    _ = token.cancelled() => Wake::Stopped,
                };
                match wake {
                    Wake::Appended(true) => continue,
                    Wake::Appended(false) | Wake::Stopped => return Stop::Local,
                    Wake::Detached(e) => return Stop::Remote(Some(e)),
                }
            }
            for event in chunk {
                next = event.sequence_number as usize + 1;
                if let Some((ms, inclusive)) = not_before
                    && (event.enqueued_ms < ms || (!inclusive && event.enqueued_ms == ms))
                {
                    continue;
                }
                let last = loop {
                    match self.shared.faults.claim() {
                        Claim::Go { last } => break last,
                        // The connections are about to be dropped; re-check now and then in
                        // case the switch is re-armed or turned off meanwhile.
                        Claim::Wait => tokio::select! {
                            _ = token.cancelled() => return Stop::Local,
                            _ = tokio::time::sleep(std::time::Duration::from_millis(10)) => {}
                        },
                    }
                };
                let sendable = Sendable { message: to_message(&event), message_format: 0, settled: Some(true) };
                // `send` waits for link credit and is cancel safe; a detach that arrives while
                // it waits ends it with an error (fe2o3 answers that detach itself).
                let sent = tokio::select! {
                    sent = sender.send(sendable) => sent,
                    _ = token.cancelled() => return Stop::Local,
                };
                if last {
                    Faults::trip(&self.shared);
                }
                if let Err(e) = sent {
                    debug!(hub = %self.hub, partition = self.partition, error = ?e, "test hub: receiver link ended");
                    return Stop::Remote(None);
                }
            }
        }
    }
}

fn symbol_key(key: &str) -> OwnedKey {
    OwnedKey::Symbol(Symbol::from(key))
}

/// An event as the service delivers it: one Data section and the broker annotations.
fn to_message(event: &EventCopy) -> Message<&Data> {
    let mut annotations = OrderedMap::new();
    annotations.insert(symbol_key("x-opt-sequence-number"), Value::Long(event.sequence_number));
    annotations.insert(symbol_key("x-opt-offset"), Value::String(event.sequence_number.to_string()));
    annotations
        .insert(symbol_key("x-opt-enqueued-time"), Value::Timestamp(Timestamp::from_milliseconds(event.enqueued_ms)));
    let (properties, application_properties) = match &event.extras {
        Some(extras) => {
            if let Some(key) = &extras.partition_key {
                annotations.insert(symbol_key("x-opt-partition-key"), Value::String(key.clone()));
            }
            (extras.properties.clone(), extras.application_properties.clone())
        }
        None => (None, None),
    };
    Message {
        header: None,
        delivery_annotations: None,
        message_annotations: Some(MessageAnnotations(annotations)),
        properties,
        application_properties,
        body: &event.body,
        footer: None,
    }
}

/// Answers a detach the client started: a closing detach with a close, a plain one with a
/// detach. Anything else (the session or connection is gone) needs no answer.
pub(crate) async fn answer_detach(sender: Sender, error: DetachError) {
    let answered = match error {
        DetachError::DetachedByRemote | DetachError::RemoteDetachedWithError(_) => {
            tokio::time::timeout(CLOSE_TIMEOUT, async { sender.detach().await.map(|_| ()).map_err(|(_, e)| e) }).await
        }
        DetachError::ClosedByRemote | DetachError::RemoteClosedWithError(_) => {
            tokio::time::timeout(CLOSE_TIMEOUT, sender.close()).await
        }
        other => {
            debug!(error = ?other, "test hub: link ended without a detach to answer");
            return;
        }
    };
    if let Ok(Err(e)) = answered {
        debug!(error = ?e, "test hub: answering a detach failed");
    }
}
