//! The Python client (PyPI `azure-eventhub`, its pure-Python AMQP stack) against the test
//! hub, beside the Rust client: what one sends, the other reads, with the same sequence
//! numbers, offsets and partition keys. `.ci/run` installs the client in
//! `~/.cache/tokentrail-venv`; `python/eventhub_client.py` drives it (and says which two
//! quirks of the client it works around on loopback).

mod support;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use azure_messaging_eventhubs::{EventDataBatchOptions, StartLocation};
use serde_json::{Value, json};
use support::*;
use tokentrail_testhub::TestHub;

const WITHIN: Duration = Duration::from_secs(20);

/// Runs `python/eventhub_client.py` against `hub` and returns the JSON it printed.
async fn python(hub: &TestHub, args: &[&str]) -> Value {
    let python = PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/tokentrail-venv/bin/python");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/eventhub_client.py");
    let mut command = std::process::Command::new(&python);
    command.arg(script).arg(hub.connection_string(HUB)).arg(HUB).args(args);
    // The hub runs on its own threads; the Rust clients of a test are idle meanwhile.
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("{}: {e} (.ci/run installs azure-eventhub there)", python.display()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "eventhub_client.py {args:?} failed:\n{stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// One field of every event in a list printed by `receive`.
fn field(events: &Value, name: &str) -> Value {
    events.as_array().expect("a list of events").iter().map(|e| e[name].clone()).collect()
}

#[tokio::test(flavor = "current_thread")]
async fn what_the_python_producer_sends_the_rust_consumer_reads() {
    let hub = start_hub();
    bounded(async {
        let key = "tenant-42";
        let keyed = hub.partition_for_key(HUB, key);
        let direct = (keyed + 1) % PARTITIONS;
        let sent = python(&hub, &["send", "--partition", &direct.to_string(), "py 0", "py 1", "py 2"]).await;
        assert_eq!(sent["sent"], 3);
        python(&hub, &["send", "--key", key, "keyed 0", "keyed 1"]).await;
        assert_eq!(hub.event_count(HUB, direct), 3);
        assert_eq!(hub.event_count(HUB, keyed), 2);
        assert_eq!(hub.event_body(HUB, direct, 2).as_deref(), Some(&b"py 2"[..]));

        let consumer = consumer(&hub).await;
        let receiver = open(&consumer, direct, from(StartLocation::Earliest, false)).await;
        let got = receive(&receiver, 3, WITHIN).await;
        assert_eq!(sequence_numbers(&got), vec![0, 1, 2]);
        assert_eq!(bodies(&got), vec!["py 0", "py 1", "py 2"]);
        assert!(got.iter().all(|g| g.partition_key.is_none()));
        receiver.close().await.expect("close receiver");
        let receiver = open(&consumer, keyed, from(StartLocation::Earliest, false)).await;
        let got = receive(&receiver, 2, WITHIN).await;
        assert_eq!(bodies(&got), vec!["keyed 0", "keyed 1"]);
        assert!(got.iter().all(|g| g.partition_key.as_deref() == Some(key)), "{got:?}");
        receiver.close().await.expect("close receiver");
        consumer.close().await.expect("close consumer");
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn the_python_consumer_reads_what_the_rust_producer_sent_from_each_start_position() {
    let hub = start_hub();
    bounded(async {
        let producer = producer(&hub).await;
        let send = async |bodies: std::ops::Range<i32>| {
            let options = EventDataBatchOptions { partition_id: Some("3".into()), ..Default::default() };
            let batch = producer.create_batch(Some(options)).await.expect("create batch");
            for i in bodies {
                assert!(batch.try_add_event_data(format!("rust {i}"), None).expect("add"));
            }
            producer.send_batch(batch, None).await.expect("send batch");
        };
        send(0..3).await;
        // A gap in enqueued times to start from.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let cut = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis().to_string();
        tokio::time::sleep(Duration::from_millis(30)).await;
        send(3..5).await;

        let all = python(&hub, &["receive", "--partition", "3", "--start", "earliest", "--count", "5"]).await;
        assert_eq!(field(&all, "sequence_number"), json!([0, 1, 2, 3, 4]));
        assert_eq!(field(&all, "offset"), json!(["0", "1", "2", "3", "4"]));
        assert_eq!(field(&all, "body"), json!(["rust 0", "rust 1", "rust 2", "rust 3", "rust 4"]));
        assert_eq!(field(&all, "partition"), json!(["3", "3", "3", "3", "3"]));
        assert_eq!(field(&all, "partition_key"), json!([null, null, null, null, null]));

        let starts: [(String, Vec<i64>); 4] = [
            ("sequence:2".into(), vec![3, 4]),
            ("offset:3".into(), vec![4]),
            (format!("enqueued:{cut}"), vec![3, 4]),
            ("latest".into(), vec![]),
        ];
        for (start, expected) in starts {
            let got =
                python(&hub, &["receive", "--partition", "3", "--start", &start, "--count", "5", "--wait", "1"]).await;
            assert_eq!(field(&got, "sequence_number"), json!(expected), "from {start}");
        }
        producer.close().await.expect("close producer");
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn the_python_client_reads_hub_and_partition_properties() {
    let hub = start_hub();
    bounded(async {
        hub.append(HUB, 1, b"one".to_vec());
        hub.append(HUB, 1, b"two".to_vec());
        let properties = python(&hub, &["properties"]).await;
        assert_eq!(properties["hub"]["eventhub_name"], HUB);
        assert_eq!(properties["hub"]["partition_ids"], json!(["0", "1", "2", "3"]));
        let partitions = properties["partitions"].as_array().expect("partitions");
        assert_eq!(partitions.len(), 4);
        for (i, partition) in partitions.iter().enumerate() {
            assert_eq!(partition["id"], i.to_string());
            let filled = i == 1;
            assert_eq!(partition["is_empty"], !filled, "partition {i}");
            assert_eq!(partition["last_enqueued_sequence_number"], if filled { 1 } else { -1 }, "partition {i}");
            assert_eq!(partition["last_enqueued_offset"], if filled { "1" } else { "-1" }, "partition {i}");
        }
    })
    .await;
}
