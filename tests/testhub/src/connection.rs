//! One AMQP connection: SASL ANONYMOUS, sessions, and the dispatch of incoming attaches to
//! the `$cbs` / `$management` nodes, event receivers and producers.

use std::{sync::Arc, time::Duration};

use fe2o3_amqp::acceptor::{
    ConnectionAcceptor, LinkAcceptor, LinkEndpoint, ListenerSessionHandle, SaslAnonymousMechanism, SessionAcceptor,
    SupportedReceiverSettleModes, SupportedSenderSettleModes,
};
use fe2o3_amqp_types::{
    definitions::{self, AmqpError, ReceiverSettleMode, Role, SenderSettleMode},
    messaging::TargetArchetype,
    performatives::Attach,
    primitives::Value,
};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    address::{self, Node},
    inbound, mgmt, outbound,
    receivers::{LinkControl, Receivers},
    server::Shared,
};

const CONTAINER_ID: &str = "tokentrail-testhub";
const MAX_FRAME_SIZE: u32 = 64 * 1024;
/// What the service announces, and what the producer's `create_batch` sizes batches by.
pub(crate) const MAX_MESSAGE_SIZE: u64 = 1024 * 1024;
/// How long a closing handshake may take before the hub gives up on it.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves one accepted TCP connection until the peer closes it or `token` is cancelled (a
/// fault switch or shutdown: then the connection is abandoned without an AMQP close).
pub(crate) async fn serve(shared: Arc<Shared>, stream: TcpStream, token: CancellationToken) {
    let acceptor = ConnectionAcceptor::builder()
        .container_id(CONTAINER_ID)
        .max_frame_size(MAX_FRAME_SIZE)
        .sasl_acceptor(SaslAnonymousMechanism::new())
        .build();
    let mut connection = tokio::select! {
        opened = acceptor.accept(stream) => match opened {
            Ok(c) => c,
            Err(e) => {
                debug!(error = ?e, "test hub: connection handshake failed");
                return;
            }
        },
        _ = token.cancelled() => return,
    };
    let session_acceptor = SessionAcceptor::new();
    loop {
        tokio::select! {
            session = session_acceptor.accept(&mut connection) => match session {
                Ok(session) => {
                    tokio::spawn(serve_session(shared.clone(), session, token.child_token()));
                }
                Err(e) => {
                    debug!(error = ?e, "test hub: connection ended");
                    break;
                }
            },
            _ = token.cancelled() => return,
        }
    }
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, connection.close()).await;
}

/// Per-session routing of management replies: the client's reply address (its receiving
/// link's target, which it puts in `reply-to`) to the task that owns our sending link.
#[derive(Default)]
pub(crate) struct ReplyRoutes {
    routes: std::sync::Mutex<Vec<ReplyRoute>>,
}

struct ReplyRoute {
    node: &'static str,
    address: Option<String>,
    tx: tokio::sync::mpsc::UnboundedSender<mgmt::Response>,
}

impl ReplyRoutes {
    fn add(&self, node: &'static str, address: Option<String>, tx: tokio::sync::mpsc::UnboundedSender<mgmt::Response>) {
        crate::server::lock(&self.routes).push(ReplyRoute { node, address, tx });
    }

    /// Routes a reply by `reply-to`, falling back to the newest reply link of the node
    /// (clients that send no `reply-to`). Returns false if no link could take it.
    pub(crate) fn send(&self, node: &'static str, reply_to: Option<&str>, response: mgmt::Response) -> bool {
        let mut routes = crate::server::lock(&self.routes);
        routes.retain(|r| !r.tx.is_closed());
        let by_address = reply_to.and_then(|to| routes.iter().rev().find(|r| r.address.as_deref() == Some(to)));
        let route = by_address.or_else(|| routes.iter().rev().find(|r| r.node == node));
        route.is_some_and(|r| r.tx.send(response).is_ok())
    }
}

async fn serve_session(shared: Arc<Shared>, mut session: ListenerSessionHandle, token: CancellationToken) {
    let routes = Arc::new(ReplyRoutes::default());
    // Producers and management senders: settle every incoming delivery ourselves
    // (receiver-settle-mode first), with the link's maximum message size announced.
    let incoming = LinkAcceptor::builder()
        .max_message_size(MAX_MESSAGE_SIZE)
        .supported_receiver_settle_modes(SupportedReceiverSettleModes::First)
        .fallback_receiver_settle_mode(ReceiverSettleMode::First)
        .build();
    // Event receivers and management reply links: our sending side. Transfers are
    // pre-settled, as Event Hubs sends them: a client asking for unsettled deliveries (the
    // Python client does) gets settled ones, rather than a sender waiting for
    // dispositions that an Event Hubs consumer never sends.
    let outgoing = LinkAcceptor::builder()
        .max_message_size(MAX_MESSAGE_SIZE)
        .supported_sender_settle_modes(SupportedSenderSettleModes::SettledAndMixed)
        .fallback_sender_settle_mode(SenderSettleMode::Settled)
        .build();
    loop {
        let attach = tokio::select! {
            attach = session.next_incoming_attach() => attach,
            _ = token.cancelled() => None,
        };
        let Some(attach) = attach else { break };
        let acceptor = if attach.role == Role::Sender { &incoming } else { &outgoing };
        let ctx = AttachContext { shared: &shared, session: &mut session, routes: &routes, token: &token, acceptor };
        ctx.dispatch(attach).await;
    }
    // The session has ended (or its connection is gone). Cancelling the token releases the
    // `$cbs` links parked until now (see `mgmt::serve_reply_link`) and stops link tasks.
    token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(1), session.end()).await;
}

type Acceptor = LinkAcceptor<
    fn(fe2o3_amqp_types::messaging::Source) -> Option<fe2o3_amqp_types::messaging::Source>,
    fn(fe2o3_amqp_types::messaging::Target) -> Option<fe2o3_amqp_types::messaging::Target>,
>;

struct AttachContext<'a> {
    shared: &'a Arc<Shared>,
    session: &'a mut ListenerSessionHandle,
    routes: &'a Arc<ReplyRoutes>,
    token: &'a CancellationToken,
    acceptor: &'a Acceptor,
}

fn source_address(attach: &Attach) -> Option<String> {
    attach.source.as_ref().and_then(|s| s.address.clone())
}

fn target_address(attach: &Attach) -> Option<String> {
    attach.target.as_ref().and_then(|t| match t.as_ref() {
        TargetArchetype::Target(t) => t.address.clone(),
        #[allow(unreachable_patterns)]
        _ => None,
    })
}

pub(crate) fn not_found(description: String) -> definitions::Error {
    definitions::Error::new(AmqpError::NotFound, Some(description), None)
}

impl AttachContext<'_> {
    async fn dispatch(self, attach: Attach) {
        // The remote's role: a remote receiver reads from the node in its source, a remote
        // sender writes to the node in its target.
        let address = match attach.role {
            Role::Receiver => source_address(&attach),
            Role::Sender => target_address(&attach),
        };
        let Some(address) = address else {
            let error =
                definitions::Error::new(AmqpError::InvalidField, Some("the attach names no address".into()), None);
            return self.refuse(attach, error).await;
        };
        let node = match address::parse_node(&address) {
            Ok(node) => node,
            Err(description) => return self.refuse(attach, not_found(description)).await,
        };
        debug!(link = %attach.name, role = ?attach.role, %address, "test hub: attach");
        match (attach.role.clone(), node) {
            (Role::Sender, Node::Cbs) => self.request_link(attach, "$cbs").await,
            (Role::Sender, Node::Management) => self.request_link(attach, "$management").await,
            (Role::Receiver, Node::Cbs) => self.reply_link(attach, "$cbs").await,
            (Role::Receiver, Node::Management) => self.reply_link(attach, "$management").await,
            (Role::Receiver, Node::ConsumerPartition { hub, consumer_group, partition }) => {
                self.event_receiver(attach, &hub, &consumer_group, &partition).await
            }
            (Role::Sender, Node::Hub { hub, partition }) => self.producer(attach, &hub, partition.as_deref()).await,
            (Role::Receiver, Node::Hub { .. }) => {
                let description = format!(
                    "cannot receive from '{address}': receive from <hub>/ConsumerGroups/<group>/Partitions/<id>"
                );
                self.refuse(attach, definitions::Error::new(AmqpError::NotAllowed, Some(description), None)).await
            }
            (Role::Sender, Node::ConsumerPartition { .. }) => {
                let description = format!("cannot send to '{address}': send to <hub> or <hub>/Partitions/<id>");
                self.refuse(attach, definitions::Error::new(AmqpError::NotAllowed, Some(description), None)).await
            }
        }
    }

    /// Refuses an attach the AMQP way: an attach reply with a null terminus, then a closing
    /// detach carrying `error`. The client's attach fails with that error.
    async fn refuse(self, mut attach: Attach, error: definitions::Error) {
        info!(link = %attach.name, condition = ?error.condition, description = ?error.description, "test hub: refusing link");
        match attach.role {
            Role::Receiver => attach.source = None,
            Role::Sender => attach.target = None,
        }
        match self.acceptor.accept_incoming_attach(attach, self.session).await {
            Ok(LinkEndpoint::Sender(sender)) => {
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, sender.close_with_error(error)).await;
                });
            }
            Ok(LinkEndpoint::Receiver(receiver)) => {
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, receiver.close_with_error(error)).await;
                });
            }
            Err(e) => debug!(error = ?e, "test hub: refusing attach failed"),
        }
    }

    /// The client's sending half of a `$cbs` / `$management` pair: requests arrive here.
    async fn request_link(self, attach: Attach, node: &'static str) {
        match self.acceptor.accept_incoming_attach(attach, self.session).await {
            Ok(LinkEndpoint::Receiver(receiver)) => {
                tokio::spawn(mgmt::serve_request_link(
                    self.shared.clone(),
                    receiver,
                    node,
                    self.routes.clone(),
                    self.token.child_token(),
                ));
            }
            Ok(LinkEndpoint::Sender(_)) => warn!("test hub: unexpected link endpoint for a {node} request link"),
            Err(e) => debug!(error = ?e, node, "test hub: request link attach failed"),
        }
    }

    /// The client's receiving half of a `$cbs` / `$management` pair: replies leave here.
    async fn reply_link(self, attach: Attach, node: &'static str) {
        // Register the route before the attach completes: the client may send its request as
        // soon as it sees our attach reply.
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.routes.add(node, target_address(&attach), tx);
        match self.acceptor.accept_incoming_attach(attach, self.session).await {
            Ok(LinkEndpoint::Sender(sender)) => {
                tokio::spawn(mgmt::serve_reply_link(sender, rx, node, self.token.clone()));
            }
            Ok(LinkEndpoint::Receiver(_)) => warn!("test hub: unexpected link endpoint for a {node} reply link"),
            Err(e) => debug!(error = ?e, node, "test hub: reply link attach failed"),
        }
    }

    async fn event_receiver(self, attach: Attach, hub_name: &str, consumer_group: &str, partition: &str) {
        // A copy of the reference, so `hub` does not borrow `self` (which `refuse` consumes).
        let shared: &Arc<Shared> = self.shared;
        let Some(hub) = shared.store.hub(hub_name) else {
            return self.refuse(attach, not_found(hub_not_found(shared, hub_name))).await;
        };
        let Some(partition_id) = hub.parse_partition_id(partition) else {
            return self
                .refuse(attach, not_found(partition_not_found(&hub.name, partition, hub.partition_count())))
                .await;
        };
        if !hub.has_consumer_group(consumer_group) {
            let description = format!(
                "The messaging entity '{}/ConsumerGroups/{consumer_group}' could not be found: the test hub knows \
                 $Default and the groups added with TestHub::add_consumer_group.",
                hub.name
            );
            return self.refuse(attach, not_found(description)).await;
        }
        let expression = address::selector_expression(attach.source.as_ref().and_then(|s| s.filter.as_ref()));
        let start = match address::parse_selector(expression.as_deref()) {
            Ok(start) => start,
            Err(description) => {
                let error = definitions::Error::new(AmqpError::InvalidField, Some(description), None);
                return self.refuse(attach, error).await;
            }
        };
        let epoch = attach
            .properties
            .as_ref()
            .and_then(|p| p.iter().find(|(k, _)| k.as_str() == "com.microsoft:epoch"))
            .and_then(|(_, v)| as_i64(v));
        let control = Arc::new(LinkControl::with_token(self.token.child_token()));
        let registration = match Receivers::register(
            self.shared,
            &hub.name,
            partition_id,
            consumer_group,
            &attach.name,
            epoch,
            control.clone(),
        ) {
            Ok(r) => r,
            Err(error) => return self.refuse(attach, error).await,
        };
        let name = attach.name.clone();
        match self.acceptor.accept_incoming_attach(attach, self.session).await {
            Ok(LinkEndpoint::Sender(sender)) => {
                info!(link = %name, hub = %hub.name, partition = partition_id, consumer_group, ?start, ?epoch,
                    "test hub: receiver attached");
                let link = outbound::ReceiverLink {
                    shared: self.shared.clone(),
                    hub: hub.name.clone(),
                    partition: partition_id,
                    start,
                    control,
                    _registration: registration,
                };
                tokio::spawn(link.serve(sender));
            }
            Ok(LinkEndpoint::Receiver(_)) => warn!("test hub: unexpected link endpoint for an event receiver"),
            Err(e) => debug!(error = ?e, "test hub: receiver attach failed"),
        }
    }

    async fn producer(self, attach: Attach, hub_name: &str, partition: Option<&str>) {
        // A copy of the reference, so `hub` does not borrow `self` (which `refuse` consumes).
        let shared: &Arc<Shared> = self.shared;
        let Some(hub) = shared.store.hub(hub_name) else {
            return self.refuse(attach, not_found(hub_not_found(shared, hub_name))).await;
        };
        let partition_id = match partition {
            None => None,
            Some(p) => match hub.parse_partition_id(p) {
                Some(id) => Some(id),
                None => {
                    return self
                        .refuse(attach, not_found(partition_not_found(&hub.name, p, hub.partition_count())))
                        .await;
                }
            },
        };
        let name = attach.name.clone();
        match self.acceptor.accept_incoming_attach(attach, self.session).await {
            Ok(LinkEndpoint::Receiver(receiver)) => {
                debug!(link = %name, hub = %hub.name, partition = ?partition_id, "test hub: producer attached");
                let link = inbound::ProducerLink {
                    shared: self.shared.clone(),
                    hub: hub.name.clone(),
                    partition: partition_id,
                    token: self.token.child_token(),
                };
                tokio::spawn(link.serve(receiver));
            }
            Ok(LinkEndpoint::Sender(_)) => warn!("test hub: unexpected link endpoint for a producer"),
            Err(e) => debug!(error = ?e, "test hub: producer attach failed"),
        }
    }
}

pub(crate) fn hub_not_found(shared: &Shared, name: &str) -> String {
    let known: Vec<&str> = shared.store.hubs().iter().map(|h| h.name.as_str()).collect();
    format!("The messaging entity '{name}' could not be found. The test hub serves: {}.", known.join(", "))
}

pub(crate) fn partition_not_found(hub: &str, partition: &str, count: u32) -> String {
    format!("Partition '{partition}' does not exist in event hub '{hub}': its partitions are 0..={}.", count - 1)
}

fn as_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Long(v) => Some(*v),
        Value::Int(v) => Some(i64::from(*v)),
        Value::Short(v) => Some(i64::from(*v)),
        Value::Byte(v) => Some(i64::from(*v)),
        Value::Ulong(v) => i64::try_from(*v).ok(),
        Value::Uint(v) => Some(i64::from(*v)),
        Value::Ushort(v) => Some(i64::from(*v)),
        Value::Ubyte(v) => Some(i64::from(*v)),
        _ => None,
    }
}
