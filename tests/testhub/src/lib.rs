//! An Event Hubs-compatible AMQP 1.0 server on loopback, for TokenTrail's tests.
//!
//! [`TestHub::start`] serves a set of event hubs on `127.0.0.1:<ephemeral port>`, on its own
//! thread with its own tokio runtime, to the real `azure_messaging_eventhubs` clients:
//!
//! ```ignore
//! let hub = TestHub::start(&[HubSpec::new("insights-logs-dataplanerequests", 4)])?;
//! let consumer = ConsumerClient::builder()
//!     .with_custom_endpoint(hub.endpoint()) // plain TCP: the client would dial amqps:// otherwise
//!     .open_with_connection_string(&hub.connection_string("insights-logs-dataplanerequests"), None)
//!     .await?;
//! ```
//!
//! What it implements, as the service does on the wire: SASL ANONYMOUS; `$cbs` put-token
//! (always 202, tokens are not checked); `$management` READ of hub and partition properties;
//! receivers on `<hub>/ConsumerGroups/<group>/Partitions/<id>` with start filters (offset,
//! sequence number, enqueued time, earliest, latest), epochs (`amqp:link:stolen`) and link
//! credit; producers on `<hub>` and `<hub>/Partitions/<id>`, single events and batches
//! (format `0x80013700`), partition keys hashed as the service does, round robin otherwise.
//! Unknown hubs, partitions and consumer groups get `amqp:not-found` (404 from `$management`).
//!
//! Differences from the service, on purpose: **offsets are sequence numbers** (the
//! `x-opt-offset` of an event is its sequence number as a string); storage is in memory
//! and never expires; there is no TLS, no authorization, no throttling; figures measured
//! through the test hub are not Event Hubs figures.
//!
//! Fault switches for recovery tests: [`TestHub::drop_connections`],
//! [`TestHub::drop_connections_after_deliveries`], [`TestHub::restart`] (events kept),
//! [`TestHub::recreate`] (events and sequence numbers gone, as the emulator's restart or
//! a hub deleted and created again).

mod address;
mod connection;
mod inbound;
mod mgmt;
mod outbound;
pub mod partition_key;
mod receivers;
mod server;
mod store;

use std::{
    ops::Range,
    sync::{Arc, mpsc as std_mpsc},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use tokio::sync::mpsc;
use tracing::info;

use crate::{
    server::{Command, Shared},
    store::{NewEvent, Partition, Store},
};

/// Makes glibc's allocator keep freed memory for reuse; for a process that runs a hub
/// under load (the benchmark, the dev binary). Without it the hub's large, short-lived
/// buffers (64 KiB frames, messages up to 1 MB) were each mapped, faulted in, zeroed and
/// given back to the kernel: a fifth of the hub's CPU, taken on a small machine from the
/// processes being measured. (mimalloc did worse here.) A no-op on other C libraries.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before the hub
    // allocates much, and glibc takes its own lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

/// The shared access key name and key in [`TestHub::connection_string`] (the hub checks
/// neither; these are the values the Event Hubs emulator documents).
pub const SHARED_ACCESS_KEY_NAME: &str = "RootManageSharedAccessKey";
pub const SHARED_ACCESS_KEY: &str = "SAS_KEY_VALUE";

/// An event hub to serve: its name and partition count (partition ids are "0", "1", ...).
/// Every hub has the `$Default` consumer group; add others with [`TestHub::add_consumer_group`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubSpec {
    pub name: String,
    pub partitions: u32,
}

impl HubSpec {
    pub fn new(name: impl Into<String>, partitions: u32) -> Self {
        Self { name: name.into(), partitions }
    }
}

/// A running test hub. Dropping it drops every connection and stops its thread.
pub struct TestHub {
    shared: Arc<Shared>,
    port: u16,
    commands: mpsc::UnboundedSender<Command>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for TestHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestHub").field("port", &self.port).finish_non_exhaustive()
    }
}

impl TestHub {
    /// Binds `127.0.0.1:0` and serves `hubs` on a background thread with its own tokio
    /// runtime, so it works from plain `#[test]` functions and from inside a tokio runtime
    /// alike. Returns once the port is bound (connections queue until served).
    pub fn start(hubs: &[HubSpec]) -> std::io::Result<TestHub> {
        Self::start_on_port(hubs, 0)
    }

    /// Like [`TestHub::start`] on a given port (0 for an ephemeral one).
    pub fn start_on_port(hubs: &[HubSpec], port: u16) -> std::io::Result<TestHub> {
        let store = Store::new(hubs)?;
        let listener = server::bind(port)?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared::new(store));
        let (commands, command_rx) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new().name(format!("testhub-{port}")).spawn({
            let shared = shared.clone();
            move || server::run(shared, listener, command_rx)
        })?;
        let names: Vec<String> = hubs.iter().map(|h| format!("{}:{}", h.name, h.partitions)).collect();
        info!(port, hubs = ?names, "test hub: started");
        Ok(TestHub { shared, port, commands, thread: Some(thread) })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `amqp://127.0.0.1:PORT`, for the client builders' `with_custom_endpoint`.
    pub fn endpoint(&self) -> String {
        format!("amqp://127.0.0.1:{}", self.port)
    }

    /// A connection string for `hub`:
    /// `Endpoint=sb://127.0.0.1:PORT/;SharedAccessKeyName=...;SharedAccessKey=...;UseDevelopmentEmulator=true;EntityPath=hub`.
    ///
    /// The Rust client keeps only the host of `Endpoint` and dials `amqps://host:5671`
    /// unless the builder is given [`TestHub::endpoint`] with `with_custom_endpoint`.
    /// (`UseDevelopmentEmulator=true` makes Python's client dial plain AMQP on this port;
    /// the Rust client ignores it.)
    pub fn connection_string(&self, hub: &str) -> String {
        format!(
            "Endpoint=sb://127.0.0.1:{}/;SharedAccessKeyName={SHARED_ACCESS_KEY_NAME};\
             SharedAccessKey={SHARED_ACCESS_KEY};UseDevelopmentEmulator=true;EntityPath={hub}",
            self.port
        )
    }

    /// Declares a consumer group on `hub` (`$Default` always exists).
    ///
    /// # Panics
    /// If the hub does not exist.
    pub fn add_consumer_group(&self, hub: &str, group: &str) {
        self.hub(hub).add_consumer_group(group);
    }

    /// Appends one event (body only) directly, without AMQP, e.g. a poison body. Receivers
    /// waiting on the partition are woken. Returns its sequence number (= its offset).
    ///
    /// # Panics
    /// If the hub or partition does not exist.
    pub fn append(&self, hub: &str, partition: u32, body: Vec<u8>) -> i64 {
        self.partition(hub, partition).append([NewEvent::body_only(body)]).start
    }

    /// Appends many events at once (one lock, one wake-up), e.g. a large preloaded backlog.
    /// Returns their sequence numbers.
    ///
    /// # Panics
    /// If the hub or partition does not exist.
    pub fn append_batch(&self, hub: &str, partition: u32, bodies: impl IntoIterator<Item = Vec<u8>>) -> Range<i64> {
        self.partition(hub, partition).append(bodies.into_iter().map(NewEvent::body_only))
    }

    /// The number of events in a partition (its next sequence number).
    ///
    /// # Panics
    /// If the hub or partition does not exist.
    pub fn event_count(&self, hub: &str, partition: u32) -> usize {
        self.partition(hub, partition).len()
    }

    /// The body of the event with `sequence_number`, if there is one.
    ///
    /// # Panics
    /// If the hub or partition does not exist.
    pub fn event_body(&self, hub: &str, partition: u32, sequence_number: i64) -> Option<Vec<u8>> {
        usize::try_from(sequence_number).ok().and_then(|i| self.partition(hub, partition).body(i))
    }

    /// The partition that events sent with `partition_key` land on (the service's hash).
    ///
    /// # Panics
    /// If the hub does not exist.
    pub fn partition_for_key(&self, hub: &str, partition_key: &str) -> u32 {
        partition_key::partition_for_key(partition_key, self.hub(hub).partition_count())
    }

    /// Fault switch: drops every open connection now, abruptly (no AMQP close; `SO_LINGER` 0
    /// and a shutdown, so clients see the stream end or a reset). The listener keeps
    /// accepting. Returns how many connections were dropped.
    pub fn drop_connections(&self) -> usize {
        let dropped = self.shared.connections.drop_all();
        info!(dropped, "test hub: dropped every connection");
        dropped
    }

    /// Fault switch: after `transfers` more event transfers to receivers (counted across all
    /// receivers and connections), holds further transfers back, waits 100 ms for those
    /// sent to reach the socket, then drops every connection and turns itself off. So
    /// clients see exactly `transfers` more events before the drop. 0 drops now.
    pub fn drop_connections_after_deliveries(&self, transfers: u64) {
        if transfers == 0 {
            self.drop_connections();
        } else {
            self.shared.faults.arm(transfers);
        }
    }

    /// Fault switch: stops listening and drops every connection, then listens again on the
    /// same port. Events are kept.
    ///
    /// # Panics
    /// If the port cannot be bound again within 10 s.
    pub fn restart(&self) {
        self.restart_after(Duration::ZERO);
    }

    /// Like [`TestHub::restart`], staying down (connections refused) for `downtime` first.
    ///
    /// # Panics
    /// If the port cannot be bound again within 10 s.
    pub fn restart_after(&self, downtime: Duration) {
        self.restart_with(downtime, false);
    }

    /// Fault switch: every hub is deleted and created again while the listener is down, as
    /// the Event Hubs emulator does when its container restarts (it keeps neither events
    /// nor entities) or an operator does in Azure: connections drop, every partition
    /// loses its events, and sequence numbers start again from 0. Hubs, partitions and
    /// consumer groups stay declared.
    ///
    /// # Panics
    /// If the port cannot be bound again within 10 s.
    pub fn recreate(&self) {
        self.restart_with(Duration::ZERO, true);
    }

    fn restart_with(&self, downtime: Duration, forget_events: bool) {
        let (ack, stopped) = std_mpsc::channel();
        self.command(Command::StopListening(ack));
        stopped.recv_timeout(Duration::from_secs(10)).expect("test hub: the listener did not stop");
        if forget_events {
            for hub in self.shared.store.hubs() {
                (0..hub.partition_count()).filter_map(|p| hub.partition(p)).for_each(Partition::clear);
            }
            info!("test hub: every hub recreated, its events gone");
        }
        std::thread::sleep(downtime);
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match server::bind(self.port) {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(error = %e, "test hub: port not free yet");
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("test hub: cannot bind 127.0.0.1:{} again: {e}", self.port),
            }
        };
        let (ack, listening) = std_mpsc::channel();
        self.command(Command::Listen(listener, ack));
        match listening.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => info!(port = self.port, "test hub: restarted"),
            Ok(Err(e)) => panic!("test hub: cannot listen on 127.0.0.1:{} again: {e}", self.port),
            Err(e) => panic!("test hub: the listener did not restart: {e}"),
        }
    }

    /// The number of TCP connections accepted since start (proves a reconnect happened).
    pub fn connections_accepted(&self) -> u64 {
        self.shared.connections.accepted()
    }

    /// The number of connections open now.
    pub fn open_connections(&self) -> usize {
        self.shared.connections.open_count()
    }

    /// How long the hub holds back the disposition of a producer's delivery (default 2 ms).
    /// See pitfall #1 in `inbound.rs`: a client on a multi-threaded runtime can miss a
    /// disposition that comes back too fast and hang; the delay makes that rarer. A client
    /// on a current-thread runtime (like `tokentrail produce`) is safe with 0.
    pub fn set_disposition_delay(&self, delay: Duration) {
        self.shared.set_disposition_delay(delay);
    }

    fn command(&self, command: Command) {
        if self.commands.send(command).is_err() {
            panic!("test hub: its thread has stopped");
        }
    }

    fn hub(&self, hub: &str) -> &store::Hub {
        self.shared.store.hub(hub).unwrap_or_else(|| panic!("test hub: no event hub named {hub:?}"))
    }

    fn partition(&self, hub: &str, partition: u32) -> &Partition {
        let h = self.hub(hub);
        h.partition(partition).unwrap_or_else(|| {
            panic!("test hub: event hub {hub:?} has no partition {partition} (it has {})", h.partition_count())
        })
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Shutdown);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
