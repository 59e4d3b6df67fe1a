//! The hub's own thread and runtime, the TCP listener, the registry of open connections
//! and the fault switches.

use std::{
    collections::HashMap,
    net::{Shutdown, SocketAddr, TcpListener as StdTcpListener},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{connection, receivers::Receivers, store::Store};

/// How long a delivery's disposition is held back; see [`crate::inbound`] (pitfall #1).
pub(crate) const DEFAULT_DISPOSITION_DELAY: Duration = Duration::from_millis(2);

/// After the transfer that trips [`Faults`], the time given to the transfers already queued
/// to reach the socket before the connections are dropped.
const FAULT_FLUSH_GRACE: Duration = Duration::from_millis(100);

/// State shared by the public handle and every task of the hub.
pub(crate) struct Shared {
    pub(crate) store: Store,
    pub(crate) connections: Connections,
    pub(crate) faults: Faults,
    pub(crate) receivers: Receivers,
    disposition_delay_us: AtomicU64,
}

impl Shared {
    pub(crate) fn new(store: Store) -> Self {
        Self {
            store,
            connections: Connections::default(),
            faults: Faults::default(),
            receivers: Receivers::default(),
            disposition_delay_us: AtomicU64::new(DEFAULT_DISPOSITION_DELAY.as_micros() as u64),
        }
    }

    pub(crate) fn disposition_delay(&self) -> Duration {
        Duration::from_micros(self.disposition_delay_us.load(Ordering::Relaxed))
    }

    pub(crate) fn set_disposition_delay(&self, delay: Duration) {
        self.disposition_delay_us.store(delay.as_micros().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }
}

/// Commands from the public handle to the listener loop.
pub(crate) enum Command {
    /// Close the listener and drop every connection; acknowledged once done.
    StopListening(std::sync::mpsc::Sender<()>),
    /// Serve on this (already bound) listener.
    Listen(StdTcpListener, std::sync::mpsc::Sender<std::io::Result<()>>),
    Shutdown,
}

/// Runs the hub on the calling thread until [`Command::Shutdown`] (or the handle is gone).
pub(crate) fn run(shared: Arc<Shared>, listener: StdTcpListener, commands: mpsc::UnboundedReceiver<Command>) {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("testhub-worker")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            warn!(error = %e, "test hub: cannot build its tokio runtime");
            return;
        }
    };
    runtime.block_on(listen_loop(shared.clone(), listener, commands));
    // Whatever is still running (parked links, closing handshakes) is abandoned.
    runtime.shutdown_timeout(Duration::from_secs(1));
}

async fn listen_loop(shared: Arc<Shared>, listener: StdTcpListener, mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut listener = match tokio_listener(listener) {
        Ok(l) => Some(l),
        Err(e) => {
            warn!(error = %e, "test hub: cannot register its listener");
            None
        }
    };
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None | Some(Command::Shutdown) => break,
                Some(Command::StopListening(ack)) => {
                    listener = None;
                    let dropped = shared.connections.drop_all();
                    info!(dropped, "test hub: stopped listening");
                    let _ = ack.send(());
                }
                Some(Command::Listen(std_listener, ack)) => {
                    let result = tokio_listener(std_listener).map(|l| listener = Some(l));
                    if result.is_ok() {
                        info!("test hub: listening again");
                    }
                    let _ = ack.send(result);
                }
            },
            accepted = accept(listener.as_ref()) => match accepted {
                Ok((stream, peer)) => start_connection(&shared, stream, peer),
                // Per-connection failures (the peer reset before accept, fd limits): keep going.
                Err(e) => {
                    warn!(error = %e, "test hub: accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
    drop(listener);
    let dropped = shared.connections.drop_all();
    debug!(dropped, "test hub: shut down");
}

fn tokio_listener(listener: StdTcpListener) -> std::io::Result<TcpListener> {
    listener.set_nonblocking(true)?;
    TcpListener::from_std(listener)
}

async fn accept(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

fn start_connection(shared: &Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let registration = match shared.connections.register(&stream) {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, "test hub: cannot register a connection; closing it");
            return;
        }
    };
    debug!(id = registration.id, %peer, "test hub: connection accepted");
    let shared = shared.clone();
    tokio::spawn(async move {
        let token = registration.token.clone();
        connection::serve(shared.clone(), stream, token).await;
        shared.connections.deregister(registration.id);
    });
}

/// Binds the loopback listener. `std` sets `SO_REUSEADDR`, so a restart can bind the same
/// port again while old connections linger in `TIME_WAIT`.
pub(crate) fn bind(port: u16) -> std::io::Result<StdTcpListener> {
    StdTcpListener::bind(("127.0.0.1", port))
}

/// Open connections, so the fault switches can drop them.
#[derive(Default)]
pub(crate) struct Connections {
    next_id: AtomicU64,
    accepted: AtomicU64,
    open: Mutex<HashMap<u64, OpenConnection>>,
}

struct OpenConnection {
    /// A duplicate of the connection's socket: shutting it down ends the AMQP engine's I/O.
    socket: socket2::Socket,
    token: CancellationToken,
}

pub(crate) struct Registration {
    pub(crate) id: u64,
    pub(crate) token: CancellationToken,
}

impl Connections {
    fn register(&self, stream: &TcpStream) -> std::io::Result<Registration> {
        let socket = socket2::SockRef::from(stream).try_clone()?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        lock(&self.open).insert(id, OpenConnection { socket, token: token.clone() });
        self.accepted.fetch_add(1, Ordering::Relaxed);
        Ok(Registration { id, token })
    }

    fn deregister(&self, id: u64) {
        lock(&self.open).remove(&id);
    }

    pub(crate) fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    pub(crate) fn open_count(&self) -> usize {
        lock(&self.open).len()
    }

    /// Drops every open connection without an AMQP close: `SO_LINGER` 0 and a shutdown of
    /// both directions (the peer sees the stream end, then a reset), then cancels the
    /// connection's tasks. Returns how many were dropped.
    pub(crate) fn drop_all(&self) -> usize {
        let open: Vec<OpenConnection> = lock(&self.open).drain().map(|(_, c)| c).collect();
        for c in &open {
            let _ = c.socket.set_linger(Some(Duration::ZERO));
            let _ = c.socket.shutdown(Shutdown::Both);
            c.token.cancel();
        }
        open.len()
    }
}

/// The "drop connections after N more transfers" switch.
///
/// Every transfer to a receiver link claims a slot first. When the last slot is claimed,
/// further transfers wait, and once the last one has had [`FAULT_FLUSH_GRACE`] to reach the
/// socket every connection is dropped. So exactly N transfers leave the hub (across all
/// receivers) before the drop.
pub(crate) struct Faults {
    /// Transfers left before the drop; negative when the switch is off.
    remaining: AtomicI64,
}

impl Default for Faults {
    fn default() -> Self {
        Self { remaining: AtomicI64::new(-1) }
    }
}

pub(crate) enum Claim {
    /// The switch is off, or this transfer has a slot; `last` if it took the final one.
    Go { last: bool },
    /// No slot left: the connections are about to be dropped.
    Wait,
}

impl Faults {
    pub(crate) fn arm(&self, transfers: u64) {
        self.remaining.store(transfers.min(i64::MAX as u64) as i64, Ordering::SeqCst);
    }

    pub(crate) fn claim(&self) -> Claim {
        let mut current = self.remaining.load(Ordering::SeqCst);
        loop {
            if current < 0 {
                return Claim::Go { last: false };
            }
            if current == 0 {
                return Claim::Wait;
            }
            match self.remaining.compare_exchange(current, current - 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return Claim::Go { last: current == 1 },
                Err(actual) => current = actual,
            }
        }
    }

    /// Called after the transfer that took the last slot: drops everything after a grace
    /// period, then turns the switch off so reconnecting clients are served normally.
    pub(crate) fn trip(shared: &Arc<Shared>) {
        let shared = shared.clone();
        tokio::spawn(async move {
            tokio::time::sleep(FAULT_FLUSH_GRACE).await;
            let dropped = shared.connections.drop_all();
            shared.faults.remaining.store(-1, Ordering::SeqCst);
            info!(dropped, "test hub: transfer budget reached; dropped every connection");
        });
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
