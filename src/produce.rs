//! `tokentrail produce`: sends diagnostic records from files to an event hub, in the
//! envelope Azure diagnostic settings use (`{"records":[...]}`), with the official
//! `ProducerClient`. For demos with the emulator, tests and benchmarks.

use crate::source::eventhubs::Connect;
use anyhow::{Context, Result, anyhow, bail};
use azure_messaging_eventhubs::{EventDataBatchOptions, ProducerClient};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use indicatif::ProgressBar;
use serde_json::value::RawValue;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Largest envelope body: under the 1 MiB message limit of Event Hubs (Standard),
/// with room for the AMQP framing.
const MAX_ENVELOPE_BYTES: usize = 1000 * 1000 - 16 * 1024;

/// Batches sent at once. One: with more, a send to the test hub can hang under load
/// (fe2o3 settles a disposition that arrives before the send is recorded).
const IN_FLIGHT: usize = 1;
/// Longest wait for the hub to accept one batch.
const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

pub struct ProduceOptions<'a> {
    pub connect: &'a Connect,
    pub hub: &'a str,
    pub endpoint: Option<&'a str>,
    /// Send to this partition; otherwise the hub spreads the events.
    pub partition: Option<String>,
    /// Records per event (envelope).
    pub records_per_event: usize,
    pub files: &'a [PathBuf],
}

/// What was sent.
#[derive(Debug, Default, Clone, Copy)]
pub struct Produced {
    pub records: u64,
    pub events: u64,
    pub batches: u64,
}

pub async fn produce(options: ProduceOptions<'_>, progress: &ProgressBar) -> Result<Produced> {
    let files = crate::source::file::discover(options.files)?;
    let producer = options.connect.producer(options.hub, options.endpoint).await?;
    let mut sender = Sender::new(&producer, options.partition.clone(), options.records_per_event.max(1));
    for file in &files {
        progress.set_message(file.display().to_string());
        let mut records = RecordReader::open(file)?;
        while let Some(batch) = records.next_records()? {
            for record in batch {
                sender.add(record).await.with_context(|| format!("producing {}", file.display()))?;
            }
        }
        progress.inc(1);
    }
    sender.finish().await?;
    let produced = sender.produced;
    drop(sender);
    producer.close().await.map_err(|e| anyhow!("closing the producer: {e}"))?;
    Ok(produced)
}

/// Reads the records of one file: NDJSON lines that are records, envelopes or
/// arrays, or one JSON document. Errors name the file and line.
struct RecordReader<'p> {
    path: &'p Path,
    reader: BufReader<Box<dyn Read>>,
    line: Vec<u8>,
    number: u64,
}

impl<'p> RecordReader<'p> {
    fn open(path: &'p Path) -> Result<Self> {
        let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
            Box::new(flate2::read::MultiGzDecoder::new(file))
        } else {
            Box::new(file)
        };
        Ok(RecordReader { path, reader: BufReader::with_capacity(1 << 20, reader), line: Vec::new(), number: 0 })
    }

    /// The records of the next non-empty line (or of the rest of the file, if it
    /// is one document); `None` at the end.
    fn next_records(&mut self) -> Result<Option<Vec<String>>> {
        let path = self.path.display();
        loop {
            self.line.clear();
            if self.reader.read_until(b'\n', &mut self.line).with_context(|| format!("reading {path}"))? == 0 {
                return Ok(None);
            }
            self.number += 1;
            let number = self.number;
            let text = std::str::from_utf8(&self.line).with_context(|| format!("{path}:{number}: not UTF-8"))?.trim();
            if text.is_empty() {
                continue;
            }
            return match records_of(text) {
                Ok(records) => Ok(Some(records)),
                Err(error) if number == 1 => {
                    // Not NDJSON: the whole file may be one (pretty-printed) document.
                    let mut rest = String::from_utf8(std::mem::take(&mut self.line))?;
                    self.reader.read_to_string(&mut rest).with_context(|| format!("reading {path}"))?;
                    records_of(&rest).map(Some).map_err(|_| anyhow!("{path}:1: not JSON: {error}"))
                }
                Err(error) => bail!("{path}:{number}: not JSON: {error}"),
            };
        }
    }
}

/// The records of one JSON text: an envelope's records, an array's items, or itself.
fn records_of(text: &str) -> Result<Vec<String>, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow)]
        records: Vec<&'a RawValue>,
    }
    if text.starts_with('[') {
        let items: Vec<&RawValue> = serde_json::from_str(text)?;
        return Ok(items.into_iter().map(|r| r.get().to_owned()).collect());
    }
    let value: &RawValue = serde_json::from_str(text)?;
    Ok(match serde_json::from_str::<Envelope>(text) {
        Ok(envelope) => envelope.records.into_iter().map(|r| r.get().to_owned()).collect(),
        Err(_) => vec![value.get().to_owned()],
    })
}

/// Packs records into envelopes and envelopes into batches.
struct Sender<'p> {
    producer: &'p ProducerClient,
    partition: Option<String>,
    per_event: usize,
    envelope: String,
    in_envelope: usize,
    batch: Option<azure_messaging_eventhubs::EventDataBatch<'p>>,
    /// Batches being sent: several in flight hide the round trip of each.
    in_flight: FuturesUnordered<BoxFuture<'p, Result<()>>>,
    produced: Produced,
}

impl<'p> Sender<'p> {
    fn new(producer: &'p ProducerClient, partition: Option<String>, per_event: usize) -> Self {
        Sender {
            producer,
            partition,
            per_event,
            envelope: String::new(),
            in_envelope: 0,
            batch: None,
            in_flight: FuturesUnordered::new(),
            produced: Produced::default(),
        }
    }

    async fn add(&mut self, record: String) -> Result<()> {
        if self.in_envelope > 0 && self.envelope.len() + record.len() + 2 > MAX_ENVELOPE_BYTES {
            self.close_envelope().await?;
        }
        self.envelope.push_str(if self.in_envelope == 0 { "{\"records\":[" } else { "," });
        self.envelope.push_str(&record);
        self.in_envelope += 1;
        self.produced.records += 1;
        if self.in_envelope >= self.per_event {
            self.close_envelope().await?;
        }
        Ok(())
    }

    async fn close_envelope(&mut self) -> Result<()> {
        if self.in_envelope == 0 {
            return Ok(());
        }
        self.envelope.push_str("]}");
        let body = std::mem::take(&mut self.envelope).into_bytes();
        self.in_envelope = 0;
        if body.len() > MAX_ENVELOPE_BYTES + 2 {
            bail!("one record is {} bytes, over the {MAX_ENVELOPE_BYTES}-byte event limit", body.len());
        }
        self.produced.events += 1;
        for _ in 0..2 {
            if self.batch.is_none() {
                let options = EventDataBatchOptions { partition_id: self.partition.clone(), ..Default::default() };
                let batch =
                    self.producer.create_batch(Some(options)).await.map_err(|e| anyhow!("creating a batch: {e}"))?;
                self.batch = Some(batch);
            }
            let batch = self.batch.as_ref().expect("created above");
            if batch.try_add_event_data(body.clone(), None).map_err(|e| anyhow!("adding an event: {e}"))? {
                return Ok(());
            }
            self.send().await?;
        }
        bail!("an event of {} bytes does not fit in an empty batch", body.len())
    }

    async fn send(&mut self) -> Result<()> {
        if let Some(batch) = self.batch.take().filter(|b| !b.is_empty()) {
            while self.in_flight.len() >= IN_FLIGHT {
                self.in_flight.next().await.expect("not empty")?;
            }
            let producer = self.producer;
            self.in_flight.push(Box::pin(async move {
                // The client sets no timeout of its own: a send caught by a dropped
                // connection can wait forever.
                tokio::time::timeout(SEND_TIMEOUT, producer.send_batch(batch, None))
                    .await
                    .map_err(|_| anyhow!("sending a batch: no answer in {SEND_TIMEOUT:?}"))?
                    .map_err(|e| anyhow!("sending a batch: {e}"))
            }));
            self.produced.batches += 1;
        }
        Ok(())
    }

    async fn finish(&mut self) -> Result<()> {
        self.close_envelope().await?;
        self.send().await?;
        while let Some(sent) = self.in_flight.next().await {
            sent?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::records_of;

    #[test]
    fn envelopes_arrays_and_records() {
        assert_eq!(records_of(r#"{"records":[{"a":1},{"b":2}]}"#).unwrap(), vec![r#"{"a":1}"#, r#"{"b":2}"#]);
        assert_eq!(records_of(r#"[{"a":1}, {"b":2}]"#).unwrap(), vec![r#"{"a":1}"#, r#"{"b":2}"#]);
        assert_eq!(
            records_of(r#"{"category":"DataPlaneRequests"}"#).unwrap(),
            vec![r#"{"category":"DataPlaneRequests"}"#]
        );
        assert!(records_of("not json").is_err());
    }
}
