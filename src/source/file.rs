//! Files and directories of diagnostic records.
//!
//! Accepts NDJSON (a record or an envelope per line), a single JSON document
//! (pretty-printed envelope, array or record), Log Analytics CSV exports (`.csv`, or a
//! first line that is such a header: each row a unit carrying the header, see
//! [`crate::record::shapes`]), gzip of any, and directories of them, including Azure's
//! storage-archive layout (`insights-logs-<category>/resourceId=.../PT1H.json`).
//!
//! Exactly once: a file's source id is its canonical path. Its checkpoint records
//! the bytes consumed (after decompression), the lines, and an xxh3-128 hash of
//! those bytes. Ingesting it again first re-hashes that prefix: if it matches, the
//! file resumes after it (nothing new for an unchanged file, only the new lines of
//! an appended one, such as a PT1H.json still being written). If it does not, the
//! file was changed in place and is refused, not ingested twice.
//!
//! A plain file is mapped into memory and cut into chunks where it lies: the parsers
//! read the kernel's cached pages, with no copy into buffers of our own (BENCHMARKS.md,
//! design measurements). A parsed chunk lets its
//! pages go ([`Stretch`]), so the process holds only the chunks in flight, not the whole
//! file. Gzip, and whatever cannot be mapped (pipes, devices, empty files), is read into
//! buffers instead. As with ripgrep, which maps files too: a file *truncated* while it is
//! read ends the process (SIGBUS); what was committed before stays, and the next ingest
//! resumes from it. A file appended to meanwhile is read up to its size when opened.

use crate::record::Origin;
use crate::record::shapes::{self, CsvHeader};
use crate::source::chunk::{Chunk, Data, Rejected, Units};
use crate::store::rows::MAX_QUARANTINED_BYTES;
use crate::store::{Checkpoint, SourceKind};
use crate::sys::mmap::Stretch;
use anyhow::{Context, Result, bail};
use indicatif::ProgressBar;
use memmap2::Mmap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use xxhash_rust::xxh3::Xxh3;

/// Bytes of input per chunk handed to a parser thread.
pub const CHUNK_BYTES: usize = 4 << 20;
/// Chunk buffers kept for reuse: as many as can be parsed or waiting at once.
const RECYCLED_BUFFERS: usize = 8;
/// Longest line read as a record: see [`super::chunk::MAX_UNIT_BYTES`]. The reader
/// stops buffering a line at this size, so memory stays bounded whatever the input.
const MAX_LINE_BYTES: usize = super::chunk::MAX_UNIT_BYTES;
/// Largest file read as one JSON document (not line by line).
pub const MAX_DOCUMENT_BYTES: u64 = 512 << 20;

/// The files under `paths`, sorted: a named file is taken whatever its name; a
/// directory contributes its `.json`, `.ndjson`, `.jsonl`, `.csv` and `.gz` files.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).with_context(|| format!("{}: cannot read", path.display()))?;
        if meta.is_file() {
            files.push(path.clone());
            continue;
        }
        let mut found = Vec::new();
        for entry in walkdir::WalkDir::new(path).follow_links(true) {
            let entry = entry.with_context(|| format!("{}: cannot list", path.display()))?;
            let name = entry.file_name().to_string_lossy().to_ascii_lowercase();
            let wanted = [".json", ".ndjson", ".jsonl", ".csv", ".gz"].iter().any(|ext| name.ends_with(ext));
            if entry.file_type().is_file() && wanted {
                found.push(entry.into_path());
            }
        }
        found.sort();
        files.extend(found);
    }
    Ok(files)
}

/// The checkpoint id of a file.
pub fn source_id(path: &Path) -> Result<String> {
    let canonical = path.canonicalize().with_context(|| format!("{}: cannot resolve path", path.display()))?;
    Ok(format!("file:{}", canonical.display()))
}

/// What to do with one file, given its checkpoint.
pub enum Plan {
    /// Nothing new since the last ingest.
    Unchanged,
    /// Read from the start or from the checkpoint on.
    Read(FileChunks),
}

/// Counts compressed bytes into the progress bar as they are read.
struct Counted<R> {
    inner: R,
    progress: ProgressBar,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.inc(n as u64);
        Ok(n)
    }
}

/// Where a file's bytes come from, and those read but not yet cut into chunks.
enum Input {
    /// A plain file, mapped: what was read is `map[pos..end]`.
    Mapped { map: Arc<Mmap>, pos: usize, end: usize },
    /// A stream (gzip, or what cannot be mapped), read into `carry`.
    Read { reader: Box<dyn Read + Send>, carry: Vec<u8> },
}

impl Input {
    /// What was read and not yet taken.
    fn window(&self) -> &[u8] {
        match self {
            Input::Mapped { map, pos, end } => &map[*pos..*end],
            Input::Read { carry, .. } => carry,
        }
    }

    /// Reads until [`Input::window`] holds `want` bytes, or the input ends. Returns the
    /// bytes read and whether the input ended. A stream reads into a recycled buffer
    /// when it needs a larger one and a parser has returned one.
    fn fill(&mut self, want: usize, recycled: &mpsc::Receiver<Vec<u8>>) -> std::io::Result<(usize, bool)> {
        match self {
            Input::Mapped { map, pos, end } => {
                let new_end = map.len().min(*pos + want).max(*end);
                let read = new_end - *end;
                *end = new_end;
                Ok((read, new_end == map.len()))
            }
            Input::Read { reader, carry } => {
                let asked = want - carry.len();
                // A buffer a parser is done with has its pages already (a new one is
                // faulted in and zeroed by the kernel).
                if carry.capacity() < want
                    && let Ok(mut buffer) = recycled.try_recv()
                {
                    buffer.clear();
                    buffer.extend_from_slice(carry);
                    *carry = buffer;
                }
                // Reserve up front: growing by doubling would copy each chunk several times.
                carry.reserve(asked);
                let read = reader.take(asked as u64).read_to_end(carry)?;
                Ok((read, read < asked))
            }
        }
    }

    /// Takes the first `len` bytes of the window, as a chunk's bytes.
    fn take(&mut self, len: usize) -> Data {
        match self {
            Input::Mapped { map, pos, .. } => {
                let range = *pos..*pos + len;
                *pos += len;
                Data::Mapped(Stretch::new(map.clone(), range))
            }
            Input::Read { carry, .. } => {
                let rest = carry.split_off(len);
                Data::Owned(std::mem::replace(carry, rest))
            }
        }
    }

    /// Drops the first `len` bytes of the window.
    fn discard(&mut self, len: usize) {
        match self {
            Input::Mapped { pos, .. } => *pos += len,
            Input::Read { carry, .. } => drop(carry.drain(..len)),
        }
    }
}

/// The chunks of one file, from its checkpoint on.
pub struct FileChunks {
    input: Input,
    /// Counts what is read, when the reader does not (it does for gzip).
    progress: Option<ProgressBar>,
    display: String,
    source_id: String,
    /// Decompressed bytes consumed so far, and the number of the next line.
    offset: u64,
    next_line: i64,
    hasher: Box<Xxh3>,
    /// Where the parsers send chunk buffers they are done with, and where this reads
    /// them back to read into again.
    recycle: super::chunk::Recycle,
    recycled: mpsc::Receiver<Vec<u8>>,
    eof: bool,
    done: bool,
    document: bool,
    /// A CSV export: its header, carried by each row's origin.
    csv: Option<Arc<CsvHeader>>,
    /// The header is the next record to read (a CSV file read from its start).
    csv_header_next: bool,
    /// The file's size, when it is the size of what is read (not compressed).
    size: Option<u64>,
}

impl FileChunks {
    /// Opens `path` and lines it up after `checkpoint` (the store's, if any).
    pub fn open(path: &Path, checkpoint: Option<&Checkpoint>, progress: ProgressBar) -> Result<Plan> {
        let display = path.display().to_string();
        let source_id = source_id(path)?;
        let file = File::open(path).with_context(|| format!("{display}: cannot open"))?;
        let size = file.metadata().ok().map(|m| m.len());
        let gzip = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gz"));
        let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        let csv_named = name.ends_with(".csv") || name.ends_with(".csv.gz");
        let read = |reader: Box<dyn Read + Send>| Input::Read { reader, carry: Vec::new() };
        let (input, progress) = if gzip {
            let file = BufReader::with_capacity(1 << 20, file);
            (read(Box::new(flate2::read::MultiGzDecoder::new(Counted { inner: file, progress }))), None)
        } else if let Some(map) = crate::sys::mmap::map(&file) {
            (Input::Mapped { map: Arc::new(map), pos: 0, end: 0 }, Some(progress))
        } else {
            // The file itself, counted as it is read: std reads a file into a buffer's
            // spare capacity as it is, where a wrapper that only implements `read` has
            // the spare capacity zeroed first (1.1 GB of memset on the benchmark file).
            (read(Box::new(BufReader::with_capacity(1 << 20, file))), Some(progress))
        };
        let (recycle, recycled) = mpsc::sync_channel(RECYCLED_BUFFERS);
        let mut chunks = FileChunks {
            input,
            progress,
            display,
            source_id,
            offset: 0,
            next_line: 1,
            hasher: Box::new(Xxh3::new()),
            recycle,
            recycled,
            eof: false,
            done: false,
            document: false,
            csv: None,
            csv_header_next: false,
            size: if gzip { None } else { size },
        };
        // Read before a checkpoint's bytes are skipped: rows after it need the header.
        chunks.csv = chunks.csv_header(csv_named)?.map(Arc::new);
        chunks.csv_header_next = chunks.csv.is_some() && checkpoint.is_none_or(|c| c.byte_offset.unwrap_or(0) <= 0);
        if let Some(checkpoint) = checkpoint {
            let done = checkpoint.byte_offset.unwrap_or(0).max(0) as u64;
            chunks.skip_verified(done, checkpoint.fingerprint.as_deref().unwrap_or(""))?;
            chunks.next_line = checkpoint.line.unwrap_or(0) + 1;
            if checkpoint.complete && chunks.at_end()? {
                return Ok(Plan::Unchanged);
            }
        } else if chunks.csv.is_none() {
            chunks.document = chunks.looks_like_document()?;
        }
        Ok(Plan::Read(chunks))
    }

    /// Re-reads the first `bytes` bytes and checks they hash to `fingerprint`.
    fn skip_verified(&mut self, bytes: u64, fingerprint: &str) -> Result<()> {
        let mut left = bytes;
        while left > 0 {
            self.fill(CHUNK_BYTES.min(left as usize))?;
            let n = self.input.window().len().min(left as usize);
            if n == 0 {
                bail!(
                    "{}: the file is shorter than when it was ingested ({bytes} bytes then); \
                     it was changed in place, so it is not ingested again",
                    self.display
                );
            }
            self.hasher.update(&self.input.window()[..n]);
            self.input.discard(n);
            left -= n as u64;
        }
        if format!("{:032x}", self.hasher.digest128()) != fingerprint {
            bail!(
                "{}: the first {bytes} bytes differ from what was ingested; the file was changed in place, \
                 so it is not ingested again (move the new content to a new file to ingest it)",
                self.display
            );
        }
        self.offset = bytes;
        Ok(())
    }

    fn at_end(&mut self) -> Result<bool> {
        self.fill(1)?;
        Ok(self.input.window().is_empty())
    }

    /// A file whose first line is not JSON on its own but which starts like JSON is
    /// one (pretty-printed) document.
    fn looks_like_document(&mut self) -> Result<bool> {
        self.fill(64 << 10)?;
        let window = self.input.window();
        let start = window.iter().position(|b| !b.is_ascii_whitespace());
        let Some(start) = start else { return Ok(false) };
        if !matches!(window[start], b'{' | b'[') {
            return Ok(false);
        }
        let line_end = memchr::memchr(b'\n', &window[start..]).map_or(window.len(), |i| start + i);
        if line_end == window.len() && !self.eof {
            return Ok(true); // a first line over 64 KiB: a document, or one huge record
        }
        Ok(serde_json::from_slice::<serde::de::IgnoredAny>(&window[start..line_end]).is_err())
    }

    /// The header of a CSV export: the file's first record, if the file is named `.csv`
    /// or that record is a Log Analytics export's header.
    fn csv_header(&mut self, named: bool) -> Result<Option<CsvHeader>> {
        self.fill(64 << 10)?;
        let window = self.input.window();
        let end = csv_record_ends(window).next().unwrap_or(window.len());
        let line = window[..end].trim_ascii_end();
        if named && !line.trim_ascii().is_empty() {
            return Ok(Some(shapes::csv_header(line)));
        }
        Ok(shapes::looks_like_csv_header(line).then(|| shapes::csv_header(line)))
    }

    /// Reads until `carry` holds at least `want` bytes or the file ends.
    fn fill(&mut self, want: usize) -> Result<()> {
        if self.input.window().len() >= want || self.eof {
            return Ok(());
        }
        let (read, eof) = self
            .input
            .fill(want, &self.recycled)
            .with_context(|| format!("{}: read error after byte {}", self.display, self.offset))?;
        self.counted(read);
        self.eof = eof;
        Ok(())
    }

    fn counted(&self, bytes: usize) {
        if let Some(progress) = &self.progress {
            progress.inc(bytes as u64);
        }
    }

    fn checkpoint(&self) -> Checkpoint {
        let mut checkpoint = Checkpoint::new(self.source_id.clone(), SourceKind::File);
        checkpoint.byte_offset = Some(self.offset as i64);
        checkpoint.line = Some(self.next_line - 1);
        checkpoint.fingerprint = Some(format!("{:032x}", self.hasher.digest128()));
        checkpoint.complete = self.done;
        checkpoint
    }

    /// Bytes of the file after what was consumed, if known.
    fn remaining(&self) -> Option<u64> {
        if self.done {
            return Some(0);
        }
        self.size.map(|size| size.saturating_sub(self.offset))
    }

    /// Adds what was consumed to the fingerprint and returns its number of newlines,
    /// a block at a time, so that each block is read from memory once for both.
    fn consume(&mut self, bytes: &[u8]) -> i64 {
        let mut newlines = 0;
        for block in bytes.chunks(64 << 10) {
            self.hasher.update(block);
            newlines += memchr::memchr_iter(b'\n', block).count();
        }
        self.offset += bytes.len() as u64;
        newlines as i64
    }

    fn origin(&self, line: i64) -> Origin {
        Origin { source: self.display.clone(), line: Some(line), ..Origin::default() }
    }

    /// The whole file as one chunk of JSON values (document mode).
    fn document_chunk(&mut self) -> Result<Chunk> {
        while !self.eof {
            let len = self.input.window().len();
            if len as u64 > MAX_DOCUMENT_BYTES {
                bail!("{}: a JSON document over {} MiB; split it into NDJSON", self.display, MAX_DOCUMENT_BYTES >> 20);
            }
            self.fill(len + (8 << 20))?;
        }
        let data = self.input.take(self.input.window().len());
        let mut units = Vec::new();
        let mut rejected = Vec::new();
        let mut values = serde_json::Deserializer::from_slice(&data).into_iter::<&serde_json::value::RawValue>();
        let line_at = |offset: usize| self.next_line + memchr::memchr_iter(b'\n', &data[..offset]).count() as i64;
        loop {
            let start = values.byte_offset();
            match values.next() {
                None => break,
                Some(Ok(value)) => {
                    let end = values.byte_offset();
                    let begin = end - value.get().len();
                    units.push((begin..end, self.origin(line_at(begin))));
                }
                Some(Err(error)) => {
                    // The rest cannot be split into values: keep it whole, with why,
                    // from its first non-blank byte (so the line is where it starts).
                    let start = start + data[start..].iter().take_while(|b| b.is_ascii_whitespace()).count();
                    let raw = data[start..].to_vec();
                    let reason = format!("invalid JSON: {error}");
                    rejected.push((self.origin(line_at(start)), Rejected { size: raw.len(), raw, reason }));
                    break;
                }
            }
        }
        self.next_line += self.consume(&data) + 1;
        self.done = true;
        Ok(Chunk {
            data,
            units: Units::Listed(units),
            rejected,
            checkpoints: vec![self.checkpoint()],
            flush: true,
            remaining: Some(0),
            recycle: None,
        })
    }

    /// The next run of whole CSV records (a quoted field may hold line breaks), each a
    /// unit whose origin carries the header; the header itself is no record, unless
    /// the file is no table TokenTrail reads: then every record, the header first, is
    /// quarantined with why.
    fn csv_chunk(&mut self) -> Result<Chunk> {
        let mut want = CHUNK_BYTES;
        loop {
            self.fill(want)?;
            let window = self.input.window().len();
            if let Some(last) = csv_record_ends(self.input.window()).last() {
                let data = self.input.take(last);
                self.done = self.eof && self.input.window().is_empty();
                return Ok(self.csv_units(data));
            }
            if self.eof {
                let data = self.input.take(window);
                self.done = true;
                return Ok(self.csv_units(data));
            }
            if window > MAX_LINE_BYTES {
                return self.oversized_line(self.next_line);
            }
            want = window + CHUNK_BYTES;
        }
    }

    fn csv_units(&mut self, data: Data) -> Chunk {
        let header = self.csv.clone();
        let mut units = Vec::new();
        let (mut start, mut line) = (0, self.next_line);
        let mut ends: Vec<usize> = csv_record_ends(&data).collect();
        if ends.last().is_none_or(|e| *e < data.len()) {
            ends.push(data.len()); // the file's last record, without a newline
        }
        for end in ends {
            let record = &data[start..end];
            let skip_header =
                std::mem::take(&mut self.csv_header_next) && header.as_ref().is_some_and(|h| h.refused.is_none());
            if !skip_header && !record.trim_ascii().is_empty() {
                let origin = Origin { line: Some(line), csv: header.clone(), ..self.origin(line) };
                units.push((start..end, origin));
            }
            line += memchr::memchr_iter(b'\n', record).count() as i64;
            start = end;
        }
        self.next_line += self.consume(&data);
        if data.last().is_some_and(|b| *b != b'\n') {
            self.next_line += 1;
        }
        let recycle = Some(self.recycle.clone());
        let (checkpoints, flush, remaining) = (vec![self.checkpoint()], self.done, self.remaining());
        Chunk { data, units: Units::Listed(units), rejected: Vec::new(), checkpoints, flush, remaining, recycle }
    }

    /// The next run of whole lines (NDJSON mode).
    fn lines_chunk(&mut self) -> Result<Chunk> {
        let first_line = self.next_line;
        let mut want = CHUNK_BYTES;
        loop {
            self.fill(want)?;
            let window = self.input.window().len();
            if let Some(last) = memchr::memrchr(b'\n', self.input.window()) {
                let data = self.input.take(last + 1);
                self.done = self.eof && self.input.window().is_empty();
                return Ok(self.lines(data, first_line));
            }
            if self.eof {
                let data = self.input.take(window);
                self.done = true;
                return Ok(self.lines(data, first_line));
            }
            if window > MAX_LINE_BYTES {
                return self.oversized_line(first_line);
            }
            // One line longer than a chunk: read on until it ends.
            want = window + CHUNK_BYTES;
        }
    }

    fn lines(&mut self, data: Data, first_line: i64) -> Chunk {
        self.next_line += self.consume(&data);
        if data.last().is_some_and(|b| *b != b'\n') {
            self.next_line += 1; // the file's last line, without a newline
        }
        let units = Units::Lines { source: self.display.clone(), first_line };
        let recycle = Some(self.recycle.clone());
        let (checkpoints, flush, remaining) = (vec![self.checkpoint()], self.done, self.remaining());
        Chunk { data, units, rejected: Vec::new(), checkpoints, flush, remaining, recycle }
    }

    /// Quarantines a line over [`MAX_LINE_BYTES`]: its first 1 MiB, its size, why.
    fn oversized_line(&mut self, line: i64) -> Result<Chunk> {
        let first = self.input.take(self.input.window().len());
        let mut size = first.len();
        self.consume(&first);
        let prefix = first[..size.min(MAX_QUARANTINED_BYTES)].to_vec();
        drop(first);
        loop {
            self.fill(CHUNK_BYTES)?;
            let end = memchr::memchr(b'\n', self.input.window());
            let take = end.map_or(self.input.window().len(), |i| i + 1);
            let skipped = self.input.take(take);
            size += skipped.len();
            self.consume(&skipped);
            if end.is_some() || self.eof {
                break;
            }
        }
        self.next_line = line + 1;
        self.done = self.eof && self.input.window().is_empty();
        let reason = super::chunk::oversize_reason(size);
        let rejected = vec![(self.origin(line), Rejected { raw: prefix, size, reason })];
        let units = Units::Lines { source: self.display.clone(), first_line: line + 1 };
        Ok(Chunk {
            data: Data::default(),
            units,
            rejected,
            checkpoints: vec![self.checkpoint()],
            flush: self.done,
            remaining: self.remaining(),
            recycle: None,
        })
    }
}

impl Iterator for FileChunks {
    type Item = Result<Chunk>;

    fn next(&mut self) -> Option<Result<Chunk>> {
        if self.done {
            return None;
        }
        let chunk = if self.csv.is_some() {
            self.csv_chunk()
        } else if self.document {
            self.document_chunk()
        } else {
            self.lines_chunk()
        };
        if chunk.is_err() {
            self.done = true;
        }
        Some(chunk)
    }
}

/// Where each CSV record in `bytes` ends (just after its `\n`), for records that start
/// at `bytes[0]`: a newline inside a quoted field ends nothing (RFC 4180; a doubled
/// quote inside a field toggles twice).
fn csv_record_ends(bytes: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let mut quoted = false;
    memchr::memchr2_iter(b'"', b'\n', bytes).filter_map(move |i| {
        if bytes[i] == b'"' {
            quoted = !quoted;
            None
        } else {
            (!quoted).then_some(i + 1)
        }
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// Lines of `n` records of about `width` bytes each, and the file's bytes.
    pub(crate) fn ndjson(n: usize, width: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..n {
            let pad = "x".repeat(width);
            writeln!(out, r#"{{"category":"DataPlaneRequests","n":{i},"pad":"{pad}"}}"#).unwrap();
        }
        out
    }

    fn chunks_of(path: &Path) -> Vec<(Vec<u8>, i64, Checkpoint, bool)> {
        let Plan::Read(chunks) = FileChunks::open(path, None, ProgressBar::hidden()).unwrap() else {
            panic!("a new file is read");
        };
        chunks
            .map(|chunk| {
                let chunk = chunk.unwrap();
                let Units::Lines { first_line, .. } = chunk.units else { panic!("NDJSON is read by lines") };
                let mapped = matches!(chunk.data, Data::Mapped(_));
                (chunk.data.to_vec(), first_line, chunk.checkpoints[0].clone(), mapped)
            })
            .collect()
    }

    #[test]
    fn a_plain_file_is_mapped_and_cut_as_its_gzip_is_read() {
        let dir = tempfile::tempdir().unwrap();
        // Over two chunks, so that chunks end at line ends inside the file.
        let content = ndjson(9_000, 1_000);
        assert!(content.len() > 2 * CHUNK_BYTES);
        let plain = dir.path().join("a.ndjson");
        std::fs::write(&plain, &content).unwrap();
        let gzip = dir.path().join("a.ndjson.gz");
        let mut encoder = flate2::write::GzEncoder::new(File::create(&gzip).unwrap(), flate2::Compression::fast());
        encoder.write_all(&content).unwrap();
        encoder.finish().unwrap();

        let (mapped, read) = (chunks_of(&plain), chunks_of(&gzip));
        assert!(mapped.iter().all(|c| c.3), "a plain file's chunks are stretches of its map");
        assert!(read.iter().all(|c| !c.3), "a gzip file's chunks are buffers");
        assert_eq!(mapped.len(), read.len());
        assert_eq!(mapped.iter().flat_map(|c| c.0.iter().copied()).collect::<Vec<u8>>(), content);
        for (m, r) in mapped.iter().zip(&read) {
            assert_eq!(m.0, r.0, "the same bytes in each chunk");
            assert_eq!(m.1, r.1, "the same first line");
            let (m, r) = (&m.2, &r.2);
            assert_eq!(
                (m.byte_offset, m.line, &m.fingerprint, m.complete),
                (r.byte_offset, r.line, &r.fingerprint, r.complete)
            );
        }
        let last = &mapped.last().unwrap().2;
        assert_eq!((last.byte_offset, last.line, last.complete), (Some(content.len() as i64), Some(9_000), true));
    }

    #[cfg(unix)]
    #[test]
    fn a_parsed_stretch_lets_its_pages_go_and_the_file_stays_readable() {
        let dir = tempfile::tempdir().unwrap();
        let page = crate::sys::mmap::page_size();
        let content: Vec<u8> = (0..page * 6).map(|i| (i % 251) as u8).collect();
        let path = dir.path().join("pages.bin");
        std::fs::write(&path, &content).unwrap();
        let map = Arc::new(crate::sys::mmap::map(&File::open(&path).unwrap()).expect("a plain file maps"));
        let whole = Stretch::new(map.clone(), 0..content.len());
        assert_eq!(&*whole, &content[..]);
        // A stretch over pages 1..5 (and parts of 0 and 5) is parsed and dropped: its
        // whole pages leave the process; what shares them reads the same bytes after.
        drop(Stretch::new(map.clone(), page / 2..page * 5 + 7));
        assert_eq!(&*whole, &content[..]);
        drop(whole);
        let again = Stretch::new(map, page..page * 2);
        assert_eq!(&*again, &content[page..page * 2]);
    }

    #[test]
    fn an_empty_file_is_read_not_mapped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.ndjson");
        std::fs::write(&path, b"").unwrap();
        assert!(crate::sys::mmap::map(&File::open(&path).unwrap()).is_none());
        let Plan::Read(mut chunks) = FileChunks::open(&path, None, ProgressBar::hidden()).unwrap() else {
            panic!("a new file is read");
        };
        assert!(matches!(chunks.input, Input::Read { .. }));
        let chunk = chunks.next().expect("one chunk ends the file").unwrap();
        assert!(chunk.data.is_empty() && chunk.checkpoints[0].complete);
        assert!(chunks.next().is_none());
    }
}
