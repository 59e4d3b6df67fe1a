//! The process's own memory, as the kernel counts it: what the SQL console's watchdog
//! compares with its ceiling, and what `/metrics` reports ([`sample_memory`], every
//! [`SAMPLE_EVERY`] in `serve` and `demo`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often `serve` and `demo` put their memory in `/metrics`.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// Resident memory of this process, in bytes (`VmRSS` of `/proc/self/status`); `None`
/// where there is no procfs.
pub fn resident_bytes() -> Option<u64> {
    status_kib("VmRSS:").map(|kib| kib * 1024)
}

/// The most resident memory this process has had, in bytes (`VmHWM`).
pub fn peak_resident_bytes() -> Option<u64> {
    status_kib("VmHWM:").map(|kib| kib * 1024)
}

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()
}

/// Puts the process's memory in `metrics`: resident and peak (the kernel), DuckDB's own
/// count (`duckdb_memory()`), and the C allocator's (DuckDB allocates through it; Rust
/// code through mimalloc).
pub fn sample_memory(store: &crate::store::Store, metrics: &crate::metrics::Metrics) {
    let set = |kind: &str, bytes: u64| {
        let labels = crate::metrics::MemoryLabels { kind: kind.into() };
        metrics.memory.get_or_create(&labels).set(bytes.min(i64::MAX as u64) as i64);
    };
    if let Some(bytes) = resident_bytes() {
        set("resident", bytes);
    }
    if let Some(bytes) = peak_resident_bytes() {
        set("peak_resident", bytes);
    }
    let duckdb = store.connection().and_then(|conn| {
        Ok(conn.query_row(
            "SELECT coalesce(sum(memory_usage_bytes), 0), coalesce(sum(temporary_storage_bytes), 0) FROM duckdb_memory()",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
        )?)
    });
    match duckdb {
        Ok((used, temporary)) => {
            set("duckdb", used.max(0) as u64);
            set("duckdb_temporary", temporary.max(0) as u64);
        }
        Err(error) => tracing::debug!(error = format!("{error:#}"), "reading DuckDB's memory"),
    }
    if let Some((in_use, free)) = crate::sys::malloc_bytes() {
        set("malloc_in_use", in_use);
        set("malloc_free", free);
    }
}

/// Starts a thread that samples the memory every [`SAMPLE_EVERY`] until `stop`.
pub fn spawn_memory_sampler(
    store: Arc<crate::store::Store>,
    metrics: Arc<crate::metrics::Metrics>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("memory-sampler".into()).spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            sample_memory(&store, &metrics);
            let mut waited = Duration::ZERO;
            while waited < SAMPLE_EVERY && !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(200));
                waited += Duration::from_millis(200);
            }
        }
    })
}

/// A size as DuckDB prints it (`366.2 MiB`, `18.8 GiB`, `384.0 MB`, `512 bytes`), in bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" | "byte" | "bytes" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((number * scale) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_duckdb_prints_them() {
        assert_eq!(parse_size("366.2 MiB"), Some((366.2 * 1048576.0) as u64));
        assert_eq!(parse_size("384MB"), Some(384_000_000));
        assert_eq!(parse_size("512 bytes"), Some(512));
        assert_eq!(parse_size("1.5 GiB"), Some(1_610_612_736));
        assert_eq!(parse_size("lots"), None);
    }

    #[test]
    fn this_process_has_resident_memory() {
        let rss = resident_bytes().expect("procfs");
        assert!(rss > 1024 * 1024 && peak_resident_bytes().unwrap() >= rss);
    }
}
