//! Helpers shared by the test hub's own tests: real `azure_messaging_eventhubs` clients
//! connected to a [`TestHub`], and bounded receive loops (nothing here can hang). The
//! tests run their clients on current-thread runtimes: fe2o3 0.16 can miss a disposition
//! that arrives very fast on a multi-threaded one (see pitfall #1 in `src/inbound.rs`).
#![allow(dead_code)] // each test file uses a different subset

use std::{future::Future, time::Duration};

use azure_messaging_eventhubs::{
    ConsumerClient, EventReceiver, OpenReceiverOptions, ProducerClient, StartLocation, StartPosition,
    models::ReceivedEventData,
};
use futures::StreamExt;
use tokentrail_testhub::{HubSpec, TestHub};

pub const HUB: &str = "insights-logs-dataplanerequests";
pub const PARTITIONS: u32 = 4;

/// Every test body runs under this bound.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(90);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

pub fn start_hub() -> TestHub {
    init_tracing();
    TestHub::start(&[HubSpec::new(HUB, PARTITIONS), HubSpec::new("other-hub", 2)]).expect("start the test hub")
}

/// Runs a test body with a hard timeout so a regression fails instead of hanging.
pub async fn bounded<F: Future<Output = ()>>(body: F) {
    tokio::time::timeout(TEST_TIMEOUT, body).await.expect("the test exceeded its time bound");
}

pub async fn producer(hub: &TestHub) -> ProducerClient {
    producer_for(hub, HUB).await
}

pub async fn producer_for(hub: &TestHub, name: &str) -> ProducerClient {
    ProducerClient::builder()
        .with_custom_endpoint(hub.endpoint())
        .open_with_connection_string(&hub.connection_string(name), None)
        .await
        .expect("open the producer")
}

pub async fn consumer(hub: &TestHub) -> ConsumerClient {
    ConsumerClient::builder()
        .with_custom_endpoint(hub.endpoint())
        .open_with_connection_string(&hub.connection_string(HUB), None)
        .await
        .expect("open the consumer")
}

pub async fn consumer_in_group(hub: &TestHub, group: &str) -> ConsumerClient {
    ConsumerClient::builder()
        .with_custom_endpoint(hub.endpoint())
        .with_consumer_group(group.to_string())
        .open_with_connection_string(&hub.connection_string(HUB), None)
        .await
        .expect("open the consumer")
}

pub fn from(location: StartLocation, inclusive: bool) -> Option<OpenReceiverOptions> {
    Some(OpenReceiverOptions { start_position: Some(StartPosition { location, inclusive }), ..Default::default() })
}

pub async fn open(consumer: &ConsumerClient, partition: u32, options: Option<OpenReceiverOptions>) -> EventReceiver {
    consumer.open_receiver_on_partition(partition.to_string(), options).await.expect("open the receiver")
}

/// One received event, reduced to what the tests compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Got {
    pub sequence_number: i64,
    pub offset: String,
    pub body: Vec<u8>,
    pub partition_key: Option<String>,
}

impl From<&ReceivedEventData> for Got {
    fn from(e: &ReceivedEventData) -> Self {
        Got {
            sequence_number: e.sequence_number().expect("x-opt-sequence-number"),
            offset: e.offset().clone().expect("x-opt-offset"),
            body: e.event_data().body().expect("a body").to_vec(),
            partition_key: e.partition_key().clone(),
        }
    }
}

/// Reads exactly `n` events; fails if they do not all arrive within `within`.
pub async fn receive(receiver: &EventReceiver, n: usize, within: Duration) -> Vec<Got> {
    let stream = receiver.stream_events();
    futures::pin_mut!(stream);
    let mut got = Vec::with_capacity(n);
    let deadline = tokio::time::Instant::now() + within;
    while got.len() < n {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(event))) => got.push(Got::from(&event)),
            Ok(Some(Err(e))) => panic!("receive failed after {} of {n} events: {e:?}", got.len()),
            Ok(None) => panic!("the stream ended after {} of {n} events", got.len()),
            Err(_) => panic!("only {} of {n} events arrived within {within:?}", got.len()),
        }
    }
    got
}

/// Reads until no event arrives for `quiet`; returns what arrived.
pub async fn receive_until_quiet(receiver: &EventReceiver, quiet: Duration) -> Vec<Got> {
    let stream = receiver.stream_events();
    futures::pin_mut!(stream);
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout(quiet, stream.next()).await {
            Ok(Some(Ok(event))) => got.push(Got::from(&event)),
            Ok(Some(Err(e))) => panic!("receive failed after {} events: {e:?}", got.len()),
            Ok(None) | Err(_) => return got,
        }
    }
}

pub fn bodies(got: &[Got]) -> Vec<String> {
    got.iter().map(|g| String::from_utf8_lossy(&g.body).into_owned()).collect()
}

pub fn sequence_numbers(got: &[Got]) -> Vec<i64> {
    got.iter().map(|g| g.sequence_number).collect()
}
