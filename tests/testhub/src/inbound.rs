//! Producer links: store what clients send, then settle it.
//!
//! A delivery is a single event, or (message format `0x80013700`) a batch whose Data
//! sections are each a whole serialized AMQP message. A batch is stored contiguously in one
//! partition: the link's partition (`<hub>/Partitions/<id>`), else the partition its
//! `x-opt-partition-key` hashes to, else the next one round robin.
//!
//! # Pitfall #1: a disposition that overtakes the client's bookkeeping
//!
//! `fe2o3-amqp` 0.16's sender (under the Rust client) hands a transfer to its session task
//! *before* it records the delivery in the link's unsettled map. On a multi-threaded tokio
//! runtime the hand-over wakes the session task on another worker thread, and the kernel
//! may leave the sending thread off the CPU for a time slice right there. If the whole
//! round trip (session → socket → hub → our settled `Accepted` → client session) fits in
//! that gap, the client's session applies the disposition to a map that does not hold the
//! delivery yet and forgets it; the send then waits forever. A settled disposition is
//! one-shot (the client drops the delivery id on the first one), and in receiver-settle
//! mode first fe2o3 only sends settled ones, so the hub cannot repair this afterwards.
//!
//! The real fix is on the client side: a client on a *current-thread* runtime cannot hit
//! the race (no other thread can run the session task between the hand-over and the
//! bookkeeping), and `tokentrail produce` runs its `ProducerClient` that way
//! (`src/source/produce.rs` of tokentrail). For clients on multi-threaded runtimes (most tests here), the hub
//! holds each disposition back [`crate::server::DEFAULT_DISPOSITION_DELAY`] (2 ms), which
//! makes the race rarer but cannot rule it out; see [`crate::TestHub::set_disposition_delay`].
//! The delay costs ~2 ms per send (per batch, not per event) on each link.

use std::sync::Arc;

use fe2o3_amqp::{Receiver, link::RecvError};
use fe2o3_amqp_types::{
    definitions::{self, AmqpError},
    messaging::{Body, Message, MessageAnnotations, Properties, message::__private::Deserializable},
    primitives::Value,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::{
    server::Shared,
    store::{Extras, NewEvent},
};

/// The message format of an Event Hubs batch.
const BATCH_FORMAT: u32 = 0x8001_3700;

pub(crate) struct ProducerLink {
    pub(crate) shared: Arc<Shared>,
    pub(crate) hub: String,
    pub(crate) partition: Option<u32>,
    pub(crate) token: CancellationToken,
}

impl ProducerLink {
    pub(crate) async fn serve(self, mut receiver: Receiver) {
        loop {
            let received = tokio::select! {
                received = receiver.recv::<Body<Value>>() => received,
                _ = self.token.cancelled() => return,
            };
            let delivery = match received {
                Ok(d) => d,
                Err(RecvError::MessageDecode(e)) => {
                    warn!(hub = %self.hub, error = %e.source, "test hub: undecodable event; rejecting it");
                    let _ = receiver.reject(e.info, error(AmqpError::DecodeError, e.source.to_string())).await;
                    continue;
                }
                Err(e) => {
                    // A detach (fe2o3 has answered it inside `recv`) or the session is gone.
                    debug!(hub = %self.hub, error = ?e, "test hub: producer link ended");
                    return;
                }
            };
            let format = *delivery.message_format();
            let (info, message) = delivery.into_parts();
            debug!(hub = %self.hub, partition = ?self.partition, delivery_id = info.delivery_id(), "test hub: delivery received");
            let outcome = match self.store(format, message) {
                Ok(()) => {
                    tokio::time::sleep(self.shared.disposition_delay()).await;
                    receiver.accept(info).await
                }
                Err(e) => {
                    warn!(hub = %self.hub, description = ?e.description, "test hub: rejecting a delivery");
                    receiver.reject(info, e).await
                }
            };
            debug!(hub = %self.hub, partition = ?self.partition, ok = outcome.is_ok(), "test hub: delivery settled");
            if let Err(e) = outcome {
                debug!(hub = %self.hub, error = ?e, "test hub: cannot settle a delivery");
                return;
            }
        }
    }

    fn store(&self, format: Option<u32>, message: Message<Body<Value>>) -> Result<(), definitions::Error> {
        let hub =
            self.shared.store.hub(&self.hub).ok_or_else(|| error(AmqpError::NotFound, "the hub is gone".into()))?;
        let envelope_key = partition_key(message.message_annotations.as_ref());
        let events = match format.unwrap_or(0) {
            0 => vec![event(message)?],
            BATCH_FORMAT => {
                let Body::Data(sections) = message.body else {
                    return Err(error(AmqpError::DecodeError, "a batch's body must be Data sections".into()));
                };
                sections
                    .into_inner()
                    .into_iter()
                    .map(|section| {
                        serde_amqp::from_slice::<Deserializable<Message<Body<Value>>>>(&section.0)
                            .map_err(|e| {
                                error(AmqpError::DecodeError, format!("a batched message does not decode: {e}"))
                            })
                            .and_then(|inner| event(inner.0))
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
            other => {
                return Err(error(AmqpError::NotImplemented, format!("message format {other:#x} is not supported")));
            }
        };
        let key = envelope_key.or_else(|| events.first().and_then(|e| e.extras.partition_key.clone()));
        let partition = self.partition.unwrap_or_else(|| hub.route(key.as_deref()));
        let stored = hub.partition(partition).map(|p| p.append(events));
        debug!(hub = %hub.name, partition, ?stored, "test hub: stored events");
        Ok(())
    }
}

fn error(condition: AmqpError, description: String) -> definitions::Error {
    definitions::Error::new(condition, Some(description), None)
}

fn partition_key(annotations: Option<&MessageAnnotations>) -> Option<String> {
    annotations?.0.iter().find_map(|(k, v)| match (k, v) {
        (fe2o3_amqp_types::messaging::annotations::OwnedKey::Symbol(s), Value::String(key))
            if s.as_str() == "x-opt-partition-key" =>
        {
            Some(key.clone())
        }
        _ => None,
    })
}

/// Keeps what an event consumer can see: the body (Data sections, concatenated if there are
/// several), the partition key, properties and application properties.
fn event(message: Message<Body<Value>>) -> Result<NewEvent, definitions::Error> {
    let key = partition_key(message.message_annotations.as_ref());
    let body = match message.body {
        Body::Data(sections) => {
            let mut sections = sections.into_inner();
            if sections.len() == 1 {
                sections.pop().map(|d| d.0.into_vec()).unwrap_or_default()
            } else {
                sections.into_iter().flat_map(|d| d.0.into_vec()).collect()
            }
        }
        Body::Empty => Vec::new(),
        Body::Value(_) | Body::Sequence(_) => {
            return Err(error(
                AmqpError::NotImplemented,
                "the test hub stores events with Data bodies only (amqp-value and amqp-sequence are not supported)"
                    .into(),
            ));
        }
    };
    Ok(NewEvent {
        body,
        extras: Extras {
            partition_key: key,
            // Clients often send empty sections; storing them would cost memory for nothing.
            properties: message.properties.filter(|p| *p != Properties::default()),
            application_properties: message.application_properties.filter(|p| !p.0.is_empty()),
        },
    })
}
