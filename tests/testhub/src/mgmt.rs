//! The `$cbs` and `$management` nodes.
//!
//! Both use request/response over a link pair per client session: the client sends a request
//! on one link and reads the response on another whose target it names in `reply-to`; the
//! response carries `correlation-id` = the request's `message-id` (same AMQP type).
//!
//! * `$cbs` put-token always succeeds with status 202 (the Rust CBS client accepts nothing
//!   else; the token is not checked).
//! * `$management` READ of `com.microsoft:eventhub` and `com.microsoft:partition` answers 200
//!   with exactly the AMQP types the Rust client decodes (it panics on a wrong type), and
//!   404 (`amqp:not-found`) for an unknown hub or partition.

use std::sync::Arc;

use fe2o3_amqp::{Receiver, Sender, link::delivery::Sendable};
use fe2o3_amqp_types::{
    messaging::{AmqpValue, ApplicationProperties, Body, Message, Properties},
    primitives::{Array, OrderedMap, SimpleValue, Symbol, Timestamp, Value},
};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::{
    connection::{self, ReplyRoutes},
    server::Shared,
    store::Hub,
};

pub(crate) type Response = Message<Body<Value>>;

const EVENTHUB_TYPE: &str = "com.microsoft:eventhub";
const PARTITION_TYPE: &str = "com.microsoft:partition";

/// Reads requests from the client's `$cbs` / `$management` sender and routes the responses.
pub(crate) async fn serve_request_link(
    shared: Arc<Shared>,
    mut receiver: Receiver,
    node: &'static str,
    routes: Arc<ReplyRoutes>,
    token: CancellationToken,
) {
    loop {
        let delivery = tokio::select! {
            delivery = receiver.recv::<Body<Value>>() => delivery,
            _ = token.cancelled() => return,
        };
        let delivery = match delivery {
            Ok(d) => d,
            Err(fe2o3_amqp::link::RecvError::MessageDecode(e)) => {
                warn!(node, error = %e.source, "test hub: undecodable management request; rejecting it");
                let error = fe2o3_amqp_types::definitions::Error::new(
                    fe2o3_amqp_types::definitions::AmqpError::DecodeError,
                    Some(e.source.to_string()),
                    None,
                );
                let _ = receiver.reject(e.info, error).await;
                continue;
            }
            Err(e) => {
                // fe2o3 has already answered a detach inside `recv`. Keep the link until the
                // session ends so nothing else is sent on it (see `serve_reply_link`).
                debug!(node, error = ?e, "test hub: request link ended");
                token.cancelled().await;
                return;
            }
        };
        let (info, request) = delivery.into_parts();
        // Pitfall #1 (see `inbound`): the client's sender must register the delivery
        // before our disposition arrives.
        tokio::time::sleep(shared.disposition_delay()).await;
        if let Err(e) = receiver.accept(info).await {
            debug!(node, error = ?e, "test hub: cannot settle a management request");
            return;
        }
        let reply_to = request.properties.as_ref().and_then(|p| p.reply_to.clone());
        let response = respond(&shared, node, &request);
        if !routes.send(node, reply_to.as_deref(), response) {
            warn!(node, ?reply_to, "test hub: no reply link for a management response; dropping it");
        }
    }
}

/// Sends responses on our side of the client's `$cbs` / `$management` receiver.
///
/// Pitfall #2: the Rust client authorizes each path on a fresh session with a fresh `$cbs`
/// link pair, then detaches both links without waiting and ends the session. Answering
/// those detaches races the session end and breaks the client's connection
/// ("UnattachedHandle", "Session is not found"), so a `$cbs` detach is left unanswered and
/// the link is dropped once the session is over (`session_token`). A `$management` detach is
/// answered: the client's close waits for it.
pub(crate) async fn serve_reply_link(
    mut sender: Sender,
    mut responses: UnboundedReceiver<Response>,
    node: &'static str,
    session_token: CancellationToken,
) {
    enum Event {
        Respond(Option<Box<Response>>),
        Detached(fe2o3_amqp::link::DetachError),
        SessionOver,
    }
    loop {
        let event = tokio::select! {
            r = responses.recv() => Event::Respond(r.map(Box::new)),
            e = sender.on_detach() => Event::Detached(e),
            _ = session_token.cancelled() => Event::SessionOver,
        };
        match event {
            Event::Respond(Some(response)) => {
                let sendable = Sendable { message: *response, message_format: 0, settled: Some(true) };
                if let Err(e) = sender.send(sendable).await {
                    debug!(node, error = ?e, "test hub: reply link ended while sending");
                    session_token.cancelled().await;
                    return;
                }
            }
            Event::Respond(None) | Event::SessionOver => return,
            Event::Detached(e) if node == "$cbs" => {
                debug!(node, error = ?e, "test hub: reply link detached; parked until the session ends");
                session_token.cancelled().await;
                return;
            }
            Event::Detached(e) => {
                debug!(node, error = ?e, "test hub: reply link detached");
                crate::outbound::answer_detach(sender, e).await;
                return;
            }
        }
    }
}

fn string_property(request: &Message<Body<Value>>, key: &str) -> Option<String> {
    request.application_properties.as_ref().and_then(|p| p.0.get(key)).and_then(|v| match v {
        SimpleValue::String(s) => Some(s.clone()),
        SimpleValue::Symbol(s) => Some(s.as_str().to_string()),
        _ => None,
    })
}

fn respond(shared: &Shared, node: &'static str, request: &Message<Body<Value>>) -> Response {
    let operation = string_property(request, "operation");
    let kind = string_property(request, "type");
    let name = string_property(request, "name");
    debug!(node, ?operation, ?kind, ?name, "test hub: management request");
    match (node, operation.as_deref()) {
        ("$cbs", Some("put-token")) => reply(request, 202, "Accepted", None, Value::Null),
        ("$management", Some("READ")) => read(shared, request, kind.as_deref(), name.as_deref()),
        _ => {
            let description = format!("the test hub does not implement operation {operation:?} on {node}");
            reply(request, 501, &description, Some("amqp:not-implemented"), Value::Null)
        }
    }
}

fn read(shared: &Shared, request: &Message<Body<Value>>, kind: Option<&str>, name: Option<&str>) -> Response {
    let Some(name) = name else {
        return reply(request, 400, "the READ request has no 'name'", Some("amqp:invalid-field"), Value::Null);
    };
    let Some(hub) = shared.store.hub(name) else {
        return reply(request, 404, &connection::hub_not_found(shared, name), Some("amqp:not-found"), Value::Null);
    };
    match kind {
        Some(EVENTHUB_TYPE) => reply(request, 200, "OK", None, eventhub_properties(hub)),
        Some(PARTITION_TYPE) => {
            let partition = string_property(request, "partition").unwrap_or_default();
            match hub.parse_partition_id(&partition) {
                Some(id) => reply(request, 200, "OK", None, partition_properties(hub, id)),
                None => {
                    let description = connection::partition_not_found(&hub.name, &partition, hub.partition_count());
                    reply(request, 404, &description, Some("amqp:not-found"), Value::Null)
                }
            }
        }
        other => {
            let description = format!("the test hub cannot READ entities of type {other:?}");
            reply(request, 400, &description, Some("amqp:not-implemented"), Value::Null)
        }
    }
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    let mut m = OrderedMap::new();
    for (k, v) in entries {
        m.insert(Value::String(k.to_string()), v);
    }
    Value::Map(m)
}

fn eventhub_properties(hub: &Hub) -> Value {
    let ids: Vec<Value> = (0..hub.partition_count()).map(|i| Value::String(i.to_string())).collect();
    map(vec![
        ("name", Value::String(hub.name.clone())),
        ("type", Value::String(EVENTHUB_TYPE.into())),
        ("created_at", Value::Timestamp(Timestamp::from_milliseconds(hub.created_ms))),
        ("partition_count", Value::Int(hub.partition_count() as i32)),
        // An AMQP array, not a list: the client refuses anything else.
        ("partition_ids", Value::Array(Array::from(ids))),
    ])
}

fn partition_properties(hub: &Hub, id: u32) -> Value {
    let snapshot = hub
        .partition(id)
        .map(|p| p.snapshot())
        .unwrap_or(crate::store::PartitionSnapshot { len: 0, last_enqueued_ms: crate::store::NEVER_MS });
    let last = snapshot.len as i64 - 1;
    map(vec![
        ("name", Value::String(hub.name.clone())),
        ("type", Value::String(PARTITION_TYPE.into())),
        ("partition", Value::String(id.to_string())),
        ("begin_sequence_number", Value::Long(0)),
        ("last_enqueued_sequence_number", Value::Long(last)),
        // Offsets are sequence numbers in the test hub.
        ("last_enqueued_offset", Value::String(last.to_string())),
        ("last_enqueued_time_utc", Value::Timestamp(Timestamp::from_milliseconds(snapshot.last_enqueued_ms))),
        ("last_enqueued_sequence_number_epoch", Value::Long(0)),
        ("is_partition_empty", Value::Bool(snapshot.len == 0)),
    ])
}

fn reply(
    request: &Message<Body<Value>>,
    status: i32,
    description: &str,
    condition: Option<&str>,
    body: Value,
) -> Response {
    let correlation_id = request.properties.as_ref().and_then(|p| p.message_id.clone());
    let mut properties = ApplicationProperties::builder()
        .insert("status-code", SimpleValue::Int(status))
        .insert("status-description", SimpleValue::String(description.to_string()));
    if let Some(condition) = condition {
        properties = properties.insert("error-condition", SimpleValue::Symbol(Symbol::from(condition)));
    }
    Message {
        header: None,
        delivery_annotations: None,
        message_annotations: None,
        properties: Some(Properties { correlation_id, ..Default::default() }),
        application_properties: Some(properties.build()),
        body: Body::Value(AmqpValue(body)),
        footer: None,
    }
}
