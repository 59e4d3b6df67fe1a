//! Pitfall #1 (see `src/inbound.rs`): fe2o3 0.16's sender records a delivery as pending
//! only after handing its transfer to the session task, so on a multi-threaded runtime a
//! disposition that comes back fast can be lost and the send hangs (measured before the
//! fix: 2–3 hung sends of ~1 MB in 400, with the hub settling at once, on 2 busy cores).
//! On a current-thread runtime the session cannot run in between, which is why
//! `tokentrail produce` runs its client that way. This test holds the hub to that: many
//! ~1 MB batches, four partitions in flight at once, dispositions sent without any delay,
//! from a current-thread runtime; every send must complete.

mod support;

use std::time::Duration;

use azure_messaging_eventhubs::EventDataBatchOptions;
use futures::StreamExt;
use support::*;

#[tokio::test(flavor = "current_thread")]
async fn a_current_thread_producer_never_misses_an_immediate_disposition() {
    const BATCHES: u32 = 200;
    let hub = start_hub();
    hub.set_disposition_delay(Duration::ZERO);
    bounded(async {
        let client = producer(&hub).await;
        let producer = &client;
        let mut events = [0usize; PARTITIONS as usize];
        let sent: Vec<(u32, usize)> = futures::stream::iter(0..BATCHES)
            .map(|i| async move {
                let partition = i % PARTITIONS;
                let options = EventDataBatchOptions { partition_id: Some(partition.to_string()), ..Default::default() };
                let batch = producer.create_batch(Some(options)).await.expect("create batch");
                while batch.try_add_event_data(vec![b'x'; 10_000], None).expect("add") {}
                let count = batch.len();
                tokio::time::timeout(Duration::from_secs(10), producer.send_batch(batch, None))
                    .await
                    .unwrap_or_else(|_| panic!("send {i} got no disposition in 10 s"))
                    .expect("send");
                (partition, count)
            })
            .buffer_unordered(PARTITIONS as usize)
            .collect()
            .await;
        for (partition, count) in sent {
            events[partition as usize] += count;
        }
        for partition in 0..PARTITIONS {
            assert_eq!(hub.event_count(HUB, partition), events[partition as usize]);
        }
        client.close().await.expect("close producer");
    })
    .await;
}
