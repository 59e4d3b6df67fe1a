//! `$management` READ through the real clients: hub and partition properties, and errors
//! for unknown hubs and partitions.

mod support;

use std::time::{Duration, SystemTime};

use support::*;

#[tokio::test(flavor = "current_thread")]
async fn hub_properties() {
    let hub = start_hub();
    bounded(async {
        let producer = producer(&hub).await;
        let props = producer.get_eventhub_properties().await.expect("hub properties");
        assert_eq!(props.name, HUB);
        assert_eq!(props.partition_ids, vec!["0", "1", "2", "3"]);
        let created = props.created_on.expect("created_at");
        let age = SystemTime::now().duration_since(created).expect("created in the past");
        assert!(age < Duration::from_secs(60), "created {age:?} ago");
        producer.close().await.expect("close");
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn partition_properties_empty_then_after_appends() {
    let hub = start_hub();
    bounded(async {
        let consumer = consumer(&hub).await;
        let empty = consumer.get_partition_properties("2").await.expect("partition properties");
        assert_eq!(empty.id, "2");
        assert_eq!(empty.eventhub, HUB);
        assert!(empty.is_empty);
        assert_eq!(empty.beginning_sequence_number, 0);
        assert_eq!(empty.last_enqueued_sequence_number, -1);
        assert_eq!(empty.last_enqueued_offset, "-1");

        let before = SystemTime::now() - Duration::from_secs(1);
        for i in 0..3 {
            assert_eq!(hub.append(HUB, 2, format!("event {i}").into_bytes()), i);
        }
        let props = consumer.get_partition_properties("2").await.expect("partition properties");
        assert!(!props.is_empty);
        assert_eq!(props.beginning_sequence_number, 0);
        assert_eq!(props.last_enqueued_sequence_number, 2);
        assert_eq!(props.last_enqueued_offset, "2", "offsets are sequence numbers");
        let last = props.last_enqueued_time_utc.expect("last enqueued time");
        assert!(last >= before && last <= SystemTime::now() + Duration::from_secs(1), "{last:?}");
        // Other partitions are untouched.
        assert!(consumer.get_partition_properties("0").await.expect("partition 0").is_empty);
        consumer.close().await.expect("close");
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn unknown_hub_is_an_error_not_a_hang() {
    let hub = start_hub();
    bounded(async {
        let producer = producer_for(&hub, "no-such-hub").await;
        let result = tokio::time::timeout(Duration::from_secs(20), producer.get_eventhub_properties()).await;
        let error = result.expect("an answer, not a hang").expect_err("an unknown hub must fail");
        let text = format!("{error:?}");
        assert!(text.contains("404") || text.contains("NotFound"), "{text}");
        assert!(text.contains("no-such-hub"), "the description names the hub: {text}");
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn unknown_partition_is_an_error() {
    let hub = start_hub();
    bounded(async {
        let consumer = consumer(&hub).await;
        let result = tokio::time::timeout(Duration::from_secs(20), consumer.get_partition_properties("4")).await;
        let error = result.expect("an answer, not a hang").expect_err("partition 4 of 4 must fail");
        let text = format!("{error:?}");
        assert!(text.contains("Partition '4' does not exist"), "{text}");
        // The connection is still fine afterwards.
        assert!(consumer.get_partition_properties("3").await.is_ok());
    })
    .await;
}

/// The hub works from a plain `#[test]` (its own thread and runtime), with the client on
/// a runtime the test builds itself.
#[test]
fn usable_from_a_plain_test() {
    let hub = start_hub();
    assert_eq!(hub.append(HUB, 0, b"x".to_vec()), 0);
    assert_eq!(hub.event_count(HUB, 0), 1);
    assert_eq!(hub.event_body(HUB, 0, 0).as_deref(), Some(&b"x"[..]));
    assert!(hub.endpoint().starts_with("amqp://127.0.0.1:"));
    assert!(hub.connection_string(HUB).ends_with(&format!(";EntityPath={HUB}")));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(bounded(async {
        let consumer = consumer(&hub).await;
        let props = consumer.get_partition_properties("0").await.expect("partition properties");
        assert_eq!(props.last_enqueued_sequence_number, 0);
        consumer.close().await.expect("close");
    }));
    assert!(hub.connections_accepted() >= 1);
    drop(hub);
}
