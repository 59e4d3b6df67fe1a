//! `tokentrail produce`: sends diagnostic records from files to an event hub, in the
//! envelope Azure diagnostic settings use (`{"records":[...]}`), with the official
//! `ProducerClient`. For demos with the emulator, tests and benchmarks.
//!
//! # Why the producer runs on its own single-threaded runtime
//!
//! `fe2o3-amqp` 0.16 (the AMQP engine under `ProducerClient`) has a race in its sender:
//! `SenderLink::send_payload_with_transfer` hands the transfer to the session task
//! (`mpsc::Sender::send`) and only *then* records the delivery in the link's unsettled
//! map. Handing it over wakes the session task; on a multi-threaded runtime that wake
//! unparks another worker thread (a futex wake), and the kernel may run the woken thread
//! and leave ours off the CPU for a whole time slice. Meanwhile the session writes the
//! transfer, the hub settles it, and the session applies the settled disposition to an
//! unsettled map that does not hold the delivery yet: the disposition is consumed and
//! forgotten (the session drops its delivery-id entry), then our thread records the
//! delivery, and the send waits forever. On a busy 2-core machine this hung about one
//! send of a ~1 MB batch in 150. On a current-thread runtime the session task cannot run
//! until the sending task yields, and there is no await point between the hand-over and
//! the bookkeeping, so the race cannot happen. Hence [`produce`] runs the client on a
//! dedicated thread with a current-thread runtime, whatever runtime its caller uses.
//!
//!
//! # Sends in flight, and the link lock
//!
//! Throughput comes from sending to every partition at once: the client serializes sends
//! on one link (it holds the link's lock until the disposition arrives), so one link per
//! partition, each with one batch in flight, keeps several round trips overlapping. The
//! sends are futures polled by this one task (in a `FuturesUnordered`), between records.
//! Anything else this task awaits must not need a lock such a send holds: `create_batch`
//! asks the link for its size limit under that lock, so awaiting it while a send on the
//! same link is in flight (and not being polled) waits forever. That, not a lost
//! disposition, is what made earlier versions with several batches in flight hang at
//! once. So a partition's next batch is created only after its previous send has ended.

use crate::source::eventhubs::Connect;
use anyhow::{Context, Result, anyhow, bail};
use azure_messaging_eventhubs::{EventDataBatchOptions, ProducerClient};
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use indicatif::ProgressBar;
use serde_json::value::RawValue;
use std::io::{BufRead, BufReader, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Largest envelope body: under the 1 MiB message limit of Event Hubs (Standard),
/// with room for the AMQP framing.
const MAX_ENVELOPE_BYTES: usize = 1000 * 1000 - 16 * 1024;

/// Longest wait for the hub to accept one batch. The client sets no timeout of its own: a
/// send caught by a dropped connection can wait forever. A timeout fails the command (it
/// does not resend, which could store the batch twice).
const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

pub struct ProduceOptions<'a> {
    pub connect: &'a Connect,
    pub hub: &'a str,
    pub endpoint: Option<&'a str>,
    /// Send to this partition; otherwise batches go to every partition in turn.
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

/// Sends the records of `options.files`. The client runs on a thread of its own with a
/// current-thread runtime (see the module notes); this future only waits for it.
pub async fn produce(options: ProduceOptions<'_>, progress: &ProgressBar) -> Result<Produced> {
    let job = Job {
        connect: options.connect.clone(),
        hub: options.hub.to_owned(),
        endpoint: options.endpoint.map(str::to_owned),
        partition: options.partition,
        records_per_event: options.records_per_event.max(1),
        files: crate::source::file::discover(options.files)?,
        progress: progress.clone(),
    };
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("produce".into())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("building the producer's runtime")
                .and_then(|runtime| runtime.block_on(job.run()));
            let _ = done.send(result);
        })
        .context("starting the producer thread")?;
    result.await.map_err(|_| anyhow!("the producer thread stopped without an answer"))?
}

/// What the producer thread needs, owned.
struct Job {
    connect: Connect,
    hub: String,
    endpoint: Option<String>,
    partition: Option<String>,
    records_per_event: usize,
    files: Vec<PathBuf>,
    progress: ProgressBar,
}

impl Job {
    async fn run(self) -> Result<Produced> {
        let producer = self.connect.producer(&self.hub, self.endpoint.as_deref()).await?;
        let partitions = match self.partition {
            Some(p) => vec![p],
            None => {
                let properties = producer
                    .get_eventhub_properties()
                    .await
                    .map_err(|e| anyhow!("reading the partitions of hub {}: {e}", self.hub))?;
                if properties.partition_ids.is_empty() {
                    bail!("hub {} has no partitions", self.hub);
                }
                properties.partition_ids
            }
        };
        let mut sender = Sender::new(&producer, partitions, self.records_per_event);
        for file in &self.files {
            self.progress.set_message(file.display().to_string());
            let mut reader = RecordReader::open(file)?;
            while let Some(records) = reader.next_records()? {
                for record in records {
                    sender.add(record).await.with_context(|| format!("producing {}", file.display()))?;
                }
            }
            self.progress.inc(1);
        }
        sender.finish().await?;
        let produced = sender.produced;
        drop(sender);
        producer.close().await.map_err(|e| anyhow!("closing the producer: {e}"))?;
        Ok(produced)
    }
}

/// Reads the records of one file: NDJSON lines that are records, envelopes or
/// arrays, or one JSON document. Errors name the file and line. A plain file is
/// mapped, as `tokentrail ingest` maps it (`source::file`): records are copied once,
/// from the kernel's cache into their envelope, with no line buffer between.
struct RecordReader<'p> {
    path: &'p Path,
    input: Input,
    /// The number of the line read last.
    number: u64,
}

/// Where a file's lines come from.
enum Input {
    /// A plain file, mapped: lines start at `pos`; pages before `released` were let go.
    Mapped { map: memmap2::Mmap, pos: usize, released: usize },
    /// Gzip, or what cannot be mapped: the line (or document) read last is `buffer`.
    Read { reader: BufReader<Box<dyn Read>>, buffer: Vec<u8> },
}

/// Bytes of a mapped file read between letting the pages read so far go: the process
/// keeps what it is sending, not the whole file.
const RELEASE_BYTES: usize = 64 << 20;

impl Input {
    /// Where the next line (with its newline) lies in [`Input::bytes`]; `None` at the end.
    fn next_line(&mut self) -> std::io::Result<Option<Range<usize>>> {
        match self {
            Input::Mapped { map, pos, released } => {
                if *pos >= map.len() {
                    return Ok(None);
                }
                let end = memchr::memchr(b'\n', &map[*pos..]).map_or(map.len(), |i| *pos + i + 1);
                let line = *pos..end;
                *pos = end;
                if end - *released >= RELEASE_BYTES {
                    crate::sys::mmap::release(map, *released..line.start);
                    *released = line.start;
                }
                Ok(Some(line))
            }
            Input::Read { reader, buffer } => {
                buffer.clear();
                let read = reader.read_until(b'\n', buffer)?;
                Ok((read > 0).then_some(0..read))
            }
        }
    }

    /// Extends `line`, the file's first, to the rest of the file.
    fn rest_of_file(&mut self, line: Range<usize>) -> std::io::Result<Range<usize>> {
        match self {
            Input::Mapped { map, pos, .. } => {
                *pos = map.len();
                Ok(line.start..map.len())
            }
            Input::Read { reader, buffer } => {
                reader.read_to_end(buffer)?;
                Ok(line.start..buffer.len())
            }
        }
    }

    fn bytes(&self, range: Range<usize>) -> &[u8] {
        match self {
            Input::Mapped { map, .. } => &map[range],
            Input::Read { buffer, .. } => &buffer[range],
        }
    }
}

impl<'p> RecordReader<'p> {
    fn open(path: &'p Path) -> Result<Self> {
        let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let input = if path.extension().is_some_and(|e| e == "gz") {
            let reader: Box<dyn Read> = Box::new(flate2::read::MultiGzDecoder::new(file));
            Input::Read { reader: BufReader::with_capacity(1 << 20, reader), buffer: Vec::new() }
        } else if let Some(map) = crate::sys::mmap::map(&file) {
            Input::Mapped { map, pos: 0, released: 0 }
        } else {
            let reader: Box<dyn Read> = Box::new(file);
            Input::Read { reader: BufReader::with_capacity(1 << 20, reader), buffer: Vec::new() }
        };
        Ok(RecordReader { path, input, number: 0 })
    }

    /// The records of the next non-empty line (or of the whole file, if it is one
    /// document); `None` at the end.
    fn next_records(&mut self) -> Result<Option<Vec<&str>>> {
        let path = self.path.display();
        let mut unit = loop {
            let Some(line) = self.input.next_line().with_context(|| format!("reading {path}"))? else {
                return Ok(None);
            };
            self.number += 1;
            if !self.input.bytes(line.clone()).trim_ascii().is_empty() {
                break line;
            }
        };
        let number = self.number;
        if number == 1
            && let Err(error) = records_of(self.text(unit.clone())?)
        {
            // Not NDJSON: the whole file may be one (pretty-printed) document.
            unit = self.input.rest_of_file(unit).with_context(|| format!("reading {path}"))?;
            if records_of(self.text(unit.clone())?).is_err() {
                bail!("{path}:1: not JSON: {error}");
            }
        }
        let records = records_of(self.text(unit)?).map_err(|error| anyhow!("{path}:{number}: not JSON: {error}"))?;
        Ok(Some(records))
    }

    /// The text of `range`, trimmed.
    fn text(&self, range: Range<usize>) -> Result<&str> {
        let text = simdutf8::basic::from_utf8(self.input.bytes(range))
            .map_err(|_| anyhow!("{}:{}: not UTF-8", self.path.display(), self.number))?;
        Ok(text.trim())
    }
}

/// The records of one JSON text: an envelope's records, an array's items, or itself.
/// One pass over the text in the usual cases (it validates the whole text too).
fn records_of(text: &str) -> Result<Vec<&str>, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct MaybeEnvelope<'a> {
        #[serde(borrow, default)]
        records: Option<Vec<&'a RawValue>>,
    }
    if text.starts_with('[') {
        let items: Vec<&RawValue> = serde_json::from_str(text)?;
        return Ok(items.into_iter().map(RawValue::get).collect());
    }
    match serde_json::from_str::<MaybeEnvelope>(text) {
        Ok(MaybeEnvelope { records: Some(records) }) => Ok(records.into_iter().map(RawValue::get).collect()),
        // A record (an object without `records`), checked whole by the pass above.
        Ok(MaybeEnvelope { records: None }) => Ok(vec![text]),
        // Not an object, or `records` is not an array: one record, if it is JSON.
        Err(_) => serde_json::from_str::<&RawValue>(text).map(|value| vec![value.get()]),
    }
}

/// More than an event adds to a batch besides its body (its message id and sections).
const MESSAGE_OVERHEAD: u64 = 1024;

/// Packs records into envelopes and envelopes into batches, and sends each batch to the
/// next partition in turn, one batch in flight per partition.
struct Sender<'p> {
    producer: &'p ProducerClient,
    partitions: Vec<String>,
    /// The partition of the batch being filled (an index into `partitions`).
    next: usize,
    per_event: usize,
    envelope: String,
    in_envelope: usize,
    batch: Option<azure_messaging_eventhubs::EventDataBatch<'p>>,
    /// Batches being sent, at most one per partition; each ends with its partition's index.
    in_flight: FuturesUnordered<BoxFuture<'p, (usize, Result<()>)>>,
    /// Whether a batch is being sent to the partition (same index as `partitions`).
    sending: Vec<bool>,
    /// The largest size a batch reached before it was full (0 until one was): an event
    /// that keeps the batch well under it certainly fits, and is handed over uncopied.
    fits_in: u64,
    produced: Produced,
}

impl<'p> Sender<'p> {
    fn new(producer: &'p ProducerClient, partitions: Vec<String>, per_event: usize) -> Self {
        Sender {
            producer,
            sending: vec![false; partitions.len()],
            fits_in: 0,
            partitions,
            next: 0,
            per_event,
            envelope: String::new(),
            in_envelope: 0,
            batch: None,
            in_flight: FuturesUnordered::new(),
            produced: Produced::default(),
        }
    }

    async fn add(&mut self, record: &str) -> Result<()> {
        if self.in_envelope > 0 && self.envelope.len() + record.len() + 2 > MAX_ENVELOPE_BYTES {
            self.close_envelope().await?;
        }
        self.envelope.push_str(if self.in_envelope == 0 { "{\"records\":[" } else { "," });
        self.envelope.push_str(record);
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
        // The next envelope is sized like this one, so it is not regrown as it fills.
        let next = String::with_capacity(self.envelope.len() + self.envelope.len() / 8);
        let mut body = std::mem::replace(&mut self.envelope, next).into_bytes();
        self.in_envelope = 0;
        if body.len() > MAX_ENVELOPE_BYTES + 2 {
            bail!("one record is {} bytes, over the {MAX_ENVELOPE_BYTES}-byte event limit", body.len());
        }
        self.produced.events += 1;
        for _ in 0..2 {
            if self.batch.is_none() {
                // `create_batch` asks the partition's link for its size limit, and the
                // client holds the link's lock while a send on it waits for its
                // disposition. That send is polled by this task only: awaiting the lock
                // here while it is in flight would wait forever. So first let it finish.
                while self.sending[self.next] {
                    self.settle_one().await?;
                }
                let partition_id = Some(self.partitions[self.next].clone());
                let options = EventDataBatchOptions { partition_id, ..Default::default() };
                let batch =
                    self.producer.create_batch(Some(options)).await.map_err(|e| anyhow!("creating a batch: {e}"))?;
                self.batch = Some(batch);
            }
            let batch = self.batch.as_ref().expect("created above");
            // The first event of a batch counts twice: the client sizes the batch's envelope on it.
            let needs = body.len() as u64 * if batch.is_empty() { 2 } else { 1 } + MESSAGE_OVERHEAD;
            let fits = batch.size() + needs <= self.fits_in;
            // Uncopied when it certainly fits; otherwise a copy, kept for the next batch.
            let event = if fits { std::mem::take(&mut body) } else { body.clone() };
            let len = event.len();
            if batch.try_add_event_data(event, None).map_err(|e| anyhow!("adding an event: {e}"))? {
                return self.drive().await;
            }
            if fits {
                bail!("an event of {len} bytes did not fit in a batch that had room for it");
            }
            self.fits_in = self.fits_in.max(batch.size());
            self.send().await?;
        }
        bail!("an event of {} bytes does not fit in an empty batch", body.len())
    }

    /// Starts sending the batch being filled, and moves on to the next partition.
    async fn send(&mut self) -> Result<()> {
        if let Some(batch) = self.batch.take().filter(|b| !b.is_empty()) {
            // The batch was created after the partition's previous send ended (see
            // `close_envelope`): one batch in flight per partition. A second one would only
            // wait for the link (the client sends one batch at a time on a link).
            let (producer, partition) = (self.producer, self.next);
            self.sending[partition] = true;
            self.in_flight.push(Box::pin(async move {
                let sent = tokio::time::timeout(SEND_TIMEOUT, producer.send_batch(batch, None))
                    .await
                    .map_err(|_| anyhow!("sending a batch: no answer in {SEND_TIMEOUT:?}"))
                    .and_then(|sent| sent.map_err(|e| anyhow!("sending a batch: {e}")));
                (partition, sent)
            }));
            self.produced.batches += 1;
            self.next = (self.next + 1) % self.partitions.len();
        }
        self.drive().await
    }

    /// Lets the sends make progress while this task keeps packing records: polls the
    /// sends in flight (collecting finished ones and their errors), then yields so the
    /// client's connection and session tasks (on this same thread) write and read.
    async fn drive(&mut self) -> Result<()> {
        while let Some(Some((partition, sent))) = self.in_flight.next().now_or_never() {
            self.sending[partition] = false;
            sent?;
        }
        tokio::task::yield_now().await;
        Ok(())
    }

    /// Waits for one send in flight to end.
    async fn settle_one(&mut self) -> Result<()> {
        let (partition, sent) = self.in_flight.next().await.expect("a send is in flight");
        self.sending[partition] = false;
        sent
    }

    async fn finish(&mut self) -> Result<()> {
        self.close_envelope().await?;
        self.send().await?;
        while !self.in_flight.is_empty() {
            self.settle_one().await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{Input, RecordReader, records_of};
    use std::io::Write;

    /// Every record `RecordReader` finds in a file `name` with `content` (gzipped if
    /// `name` ends in `.gz`), or its error. A plain file is read mapped, gzip through
    /// a buffer.
    fn read_all(name: &str, content: impl AsRef<[u8]>) -> anyhow::Result<Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        if name.ends_with(".gz") {
            let mut encoder =
                flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), flate2::Compression::fast());
            encoder.write_all(content.as_ref()).unwrap();
            encoder.finish().unwrap();
        } else {
            std::fs::write(&path, content).unwrap();
        }
        let mut reader = RecordReader::open(&path)?;
        let mapped = matches!(reader.input, Input::Mapped { .. });
        assert_eq!(mapped, !name.ends_with(".gz"), "{name}: mapped only when plain");
        let mut records = Vec::new();
        while let Some(found) = reader.next_records()? {
            records.extend(found.into_iter().map(str::to_owned));
        }
        Ok(records)
    }

    #[test]
    fn files_of_lines_or_one_document() {
        for name in ["records.json", "records.json.gz"] {
            let lines = "{\"records\":[{\"a\":1},{\"b\":2}]}\n\n  [{\"c\":3}]  \r\n{\"d\":4}\n{\"e\":5}";
            let all = [r#"{"a":1}"#, r#"{"b":2}"#, r#"{"c":3}"#, r#"{"d":4}"#, r#"{"e":5}"#];
            assert_eq!(read_all(name, lines).unwrap(), all);
            let document = "{\n  \"records\": [\n    {\"a\": 1},\n    {\"b\": 2}\n  ]\n}\n";
            assert_eq!(read_all(name, document).unwrap(), [r#"{"a": 1}"#, r#"{"b": 2}"#]);
            let error = read_all(name, "{\"a\":1}\n{\"b\":\n").unwrap_err().to_string();
            assert!(error.contains(&format!("{name}:2: not JSON")), "{error}");
            let error = read_all(name, b"{\"a\":1}\n\"\xff\"\n").unwrap_err().to_string();
            assert!(error.contains(&format!("{name}:2: not UTF-8")), "{error}");
            let error = read_all(name, "{\"a\":\n").unwrap_err().to_string();
            assert!(error.contains(&format!("{name}:1: not JSON")), "{error}");
        }
    }

    #[test]
    fn envelopes_arrays_and_records() {
        assert_eq!(records_of(r#"{"records":[{"a":1},{"b":2}]}"#).unwrap(), vec![r#"{"a":1}"#, r#"{"b":2}"#]);
        assert_eq!(records_of(r#"[{"a":1}, {"b":2}]"#).unwrap(), vec![r#"{"a":1}"#, r#"{"b":2}"#]);
        assert_eq!(
            records_of(r#"{"category":"DataPlaneRequests"}"#).unwrap(),
            vec![r#"{"category":"DataPlaneRequests"}"#]
        );
        assert!(records_of("not json").is_err());
        assert!(records_of(r#"{"category": "x", "records""#).is_err());
        // `records` that is not an array: the object is one record.
        assert_eq!(records_of(r#"{"records": 5}"#).unwrap(), vec![r#"{"records": 5}"#]);
        assert_eq!(records_of(r#"{"time":"t", "records":[{"a":1}]}"#).unwrap(), vec![r#"{"a":1}"#]);
    }
}
