//! Producing and consuming through the real `ProducerClient` and `ConsumerClient`.

mod support;

use std::time::{Duration, SystemTime};

use azure_messaging_eventhubs::{EventDataBatchOptions, SendEventOptions, StartLocation, error::ErrorKind};
use support::*;

const WITHIN: Duration = Duration::from_secs(20);
const QUIET: Duration = Duration::from_millis(700);

#[tokio::test(flavor = "current_thread")]
async fn batch_to_a_partition_is_received_in_order() {
    let hub = start_hub();
    bounded(async {
        let producer = producer(&hub).await;
        let batch = producer
            .create_batch(Some(EventDataBatchOptions { partition_id: Some("1".into()), ..Default::default() }))
            .await
            .expect("create batch");
        for i in 0..5 {
            assert!(batch.try_add_event_data(format!("hello {i}"), None).expect("add"));
        }
        producer.send_batch(batch, None).await.expect("send batch");
        producer.send_event("single", Some(SendEventOptions { partition_id: Some("1".into()) })).await.expect("send");
        assert_eq!(hub.event_count(HUB, 1), 6);
        assert_eq!(hub.event_body(HUB, 1, 5).as_deref(), Some(&b"single"[..]));
        for other in [0, 2, 3] {
            assert_eq!(hub.event_count(HUB, other), 0);
        }

        let consumer = consumer(&hub).await;
        let receiver = open(&consumer, 1, from(StartLocation::Earliest, false)).await;
        let got = receive(&receiver, 6, WITHIN).await;
        assert_eq!(sequence_numbers(&got), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(got.iter().map(|g| g.offset.as_str()).collect::<Vec<_>>(), vec!["0", "1", "2", "3", "4", "5"]);
        assert_eq!(bodies(&got), vec!["hello 0", "hello 1", "hello 2", "hello 3", "hello 4", "single"]);
        assert!(got.iter().all(|g| g.partition_key.is_none()));
        receiver.close().await.expect("close receiver");
        producer.close().await.expect("close producer");
        consumer.close().await.expect("close consumer");
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn batch_by_partition_key_lands_on_the_hashed_partition() {
    let hub = start_hub();
    bounded(async {
        let producer = producer(&hub).await;
        let key = "tenant-42";
        let expected = hub.partition_for_key(HUB, key);
        let batch = producer
            .create_batch(Some(EventDataBatchOptions { partition_key: Some(key.into()), ..Default::default() }))
            .await
            .expect("create batch");
        for i in 0..3 {
            assert!(batch.try_add_event_data(format!("keyed {i}"), None).expect("add"));
        }
        producer.send_batch(batch, None).await.expect("send batch");
        assert_eq!(hub.event_count(HUB, expected), 3);

        let consumer = consumer(&hub).await;
        let receiver = open(&consumer, expected, from(StartLocation::Earliest, false)).await;
        let got = receive(&receiver, 3, WITHIN).await;
        assert_eq!(sequence_numbers(&got), vec![0, 1, 2]);
        assert_eq!(bodies(&got), vec!["keyed 0", "keyed 1", "keyed 2"]);
        assert!(got.iter().all(|g| g.partition_key.as_deref() == Some(key)));
        receiver.close().await.expect("close receiver");
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn without_partition_or_key_batches_go_round_robin() {
    let hub = start_hub();
    bounded(async {
        let producer = producer(&hub).await;
        for round in 0..PARTITIONS {
            let batch = producer.create_batch(None).await.expect("create batch");
            assert!(batch.try_add_event_data(format!("rr {round} a"), None).expect("add"));
            assert!(batch.try_add_event_data(format!("rr {round} b"), None).expect("add"));
            producer.send_batch(batch, None).await.expect("send batch");
        }
        // Each batch stays whole on one partition; four batches cover the four partitions.
        for p in 0..PARTITIONS {
            assert_eq!(hub.event_count(HUB, p), 2, "partition {p}");
            let a = String::from_utf8(hub.event_body(HUB, p, 0).unwrap()).unwrap();
            let b = String::from_utf8(hub.event_body(HUB, p, 1).unwrap()).unwrap();
            assert_eq!(a.replace(" a", " b"), b);
        }
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn start_positions() {
    let hub = start_hub();
    bounded(async {
        hub.append_batch(HUB, 3, (0..5).map(|i| format!("early {i}").into_bytes()));
        // A gap in enqueued times to filter on.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let cut = SystemTime::now();
        tokio::time::sleep(Duration::from_millis(30)).await;
        hub.append_batch(HUB, 3, (5..10).map(|i| format!("late {i}").into_bytes()));

        let consumer = consumer(&hub).await;
        let cases: Vec<(&str, StartLocation, bool, Vec<i64>)> = vec![
            ("earliest", StartLocation::Earliest, false, (0..10).collect()),
            ("sequence > 6", StartLocation::SequenceNumber(6), false, (7..10).collect()),
            ("sequence >= 6", StartLocation::SequenceNumber(6), true, (6..10).collect()),
            ("offset > 3", StartLocation::Offset("3".into()), false, (4..10).collect()),
            ("offset >= 3", StartLocation::Offset("3".into()), true, (3..10).collect()),
            ("enqueued after the gap", StartLocation::EnqueuedTime(cut), false, (5..10).collect()),
            ("sequence > last", StartLocation::SequenceNumber(9), false, vec![]),
        ];
        for (label, location, inclusive, expected) in cases {
            let receiver = open(&consumer, 3, from(location, inclusive)).await;
            let got = if expected.is_empty() {
                receive_until_quiet(&receiver, QUIET).await
            } else {
                receive(&receiver, expected.len(), WITHIN).await
            };
            assert_eq!(sequence_numbers(&got), expected, "{label}");
            for g in &got {
                let prefix = if g.sequence_number < 5 { "early" } else { "late" };
                assert_eq!(String::from_utf8_lossy(&g.body), format!("{prefix} {}", g.sequence_number), "{label}");
            }
            // Nothing more than expected.
            assert!(receive_until_quiet(&receiver, Duration::from_millis(200)).await.is_empty(), "{label}");
            receiver.close().await.expect("close receiver");
        }
        consumer.close().await.expect("close consumer");
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn latest_only_sees_new_events_and_appends_wake_receivers() {
    let hub = start_hub();
    bounded(async {
        hub.append_batch(HUB, 0, (0..3).map(|i| format!("old {i}").into_bytes()));
        let consumer = consumer(&hub).await;
        let receiver = open(&consumer, 0, from(StartLocation::Latest, false)).await;
        // The link attaches on the first poll of the stream: nothing old arrives.
        assert!(receive_until_quiet(&receiver, QUIET).await.is_empty());
        // Appends made while the receiver waits wake it (direct appends, no AMQP).
        let appended = hub.append(HUB, 0, b"new 3".to_vec());
        assert_eq!(appended, 3);
        let producer = producer(&hub).await;
        producer.send_event("new 4", Some(SendEventOptions { partition_id: Some("0".into()) })).await.expect("send");
        let got = receive(&receiver, 2, WITHIN).await;
        assert_eq!(sequence_numbers(&got), vec![3, 4]);
        assert_eq!(bodies(&got), vec!["new 3", "new 4"]);
        receiver.close().await.expect("close receiver");
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_large_backlog_streams_under_flow_control() {
    let hub = start_hub();
    bounded(async {
        const N: usize = 30_000;
        let body = |i: usize| format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(200)).into_bytes();
        hub.append_batch(HUB, 2, (0..N).map(body));
        let consumer = consumer(&hub).await;
        let options = azure_messaging_eventhubs::OpenReceiverOptions {
            start_position: Some(azure_messaging_eventhubs::StartPosition {
                location: StartLocation::Earliest,
                inclusive: false,
            }),
            prefetch: Some(50),
            ..Default::default()
        };
        let receiver = open(&consumer, 2, Some(options)).await;
        let got = receive(&receiver, N, Duration::from_secs(60)).await;
        assert!(got.iter().enumerate().all(|(i, g)| g.sequence_number == i as i64 && g.body == body(i)));
        receiver.close().await.expect("close receiver");
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn unknown_hub_partition_or_group_fails_the_receive() {
    let hub = start_hub();
    hub.add_consumer_group(HUB, "tokentrail");
    bounded(async {
        let expect_not_found = |label: &str, error: &azure_messaging_eventhubs::EventHubsError| {
            let text = format!("{error:?}");
            assert!(text.contains("NotFound"), "{label}: {text}");
        };
        // Unknown hub: the attach is refused with amqp:not-found.
        let stranger = azure_messaging_eventhubs::ConsumerClient::builder()
            .with_custom_endpoint(hub.endpoint())
            .open_with_connection_string(&hub.connection_string("no-such-hub"), None)
            .await
            .expect("open");
        let receiver = open(&stranger, 0, from(StartLocation::Earliest, false)).await;
        expect_not_found("hub", &first_error(&receiver).await);

        // Unknown partition and unknown consumer group.
        let consumer = consumer(&hub).await;
        let receiver = open(&consumer, 9, from(StartLocation::Earliest, false)).await;
        expect_not_found("partition", &first_error(&receiver).await);
        let group = consumer_in_group(&hub, "nobody").await;
        let receiver = open(&group, 0, from(StartLocation::Earliest, false)).await;
        expect_not_found("group", &first_error(&receiver).await);

        // A declared group works.
        hub.append(HUB, 0, b"for the group".to_vec());
        let group = consumer_in_group(&hub, "tokentrail").await;
        let receiver = open(&group, 0, from(StartLocation::Earliest, false)).await;
        assert_eq!(bodies(&receive(&receiver, 1, WITHIN).await), vec!["for the group"]);
    })
    .await;
}

async fn first_error(receiver: &azure_messaging_eventhubs::EventReceiver) -> azure_messaging_eventhubs::EventHubsError {
    use futures::StreamExt;
    let stream = receiver.stream_events();
    futures::pin_mut!(stream);
    match tokio::time::timeout(WITHIN, stream.next()).await {
        Ok(Some(Err(e))) => e,
        Ok(Some(Ok(event))) => panic!("expected an error, got an event: {event:?}"),
        Ok(None) => panic!("expected an error, the stream ended"),
        Err(_) => panic!("expected an error within {WITHIN:?}, got a hang"),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_higher_epoch_steals_the_partition() {
    let hub = start_hub();
    bounded(async {
        hub.append(HUB, 1, b"first".to_vec());
        // One client per receiver: a ConsumerClient caches one link per partition path, so a
        // second receiver on the same partition of the same client would share the first's link.
        let (first, second, third) = (consumer(&hub).await, consumer(&hub).await, consumer(&hub).await);
        let with_epoch = |epoch| {
            Some(azure_messaging_eventhubs::OpenReceiverOptions {
                start_position: Some(azure_messaging_eventhubs::StartPosition {
                    location: StartLocation::Earliest,
                    inclusive: false,
                }),
                owner_level: Some(epoch),
                ..Default::default()
            })
        };
        let old = open(&first, 1, with_epoch(1)).await;
        assert_eq!(bodies(&receive(&old, 1, WITHIN).await), vec!["first"]);

        // A lower epoch is refused while epoch 1 holds the partition.
        let lower = open(&second, 1, with_epoch(0)).await;
        assert!(matches!(first_error(&lower).await.kind, ErrorKind::ConsumerDisconnected(_)));

        // A higher epoch takes over; the old receiver is told it was displaced.
        let new = open(&third, 1, with_epoch(2)).await;
        assert_eq!(bodies(&receive(&new, 1, WITHIN).await), vec!["first"]);
        let error = first_error(&old).await;
        assert!(matches!(error.kind, ErrorKind::ConsumerDisconnected(Some(_))), "{error:?}");
        assert!(format!("{error:?}").contains("higher epoch"), "{error:?}");
        hub.append(HUB, 1, b"second".to_vec());
        assert_eq!(bodies(&receive(&new, 1, WITHIN).await), vec!["second"]);
    })
    .await;
}
