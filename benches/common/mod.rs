//! What the benchmarks share: running the real binary, and writing their own
//! section of BENCHMARKS.md.
#![allow(dead_code)]

pub mod synthetic;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Parser threads of `tokentrail ingest` in the benchmarks (this machine has 2 cores).
pub const THREADS: usize = 2;

/// Runs the real binary with `duckdb_threads`; returns wall time and peak RSS (KiB)
/// from wait4.
pub fn run_ingest(db: &Path, input: &Path, duckdb_threads: usize) -> (Duration, i64) {
    let started = Instant::now();
    #[allow(clippy::zombie_processes)] // reaped by wait4 below, which also reports peak RSS
    let child = Command::new(env!("CARGO_BIN_EXE_tokentrail"))
        .args(["ingest", "--threads", &duckdb_threads.to_string(), "--workers", &THREADS.to_string(), "--db"])
        .arg(db)
        .arg(input)
        .env("TOKENTRAIL_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("tokentrail runs");
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; `status` and `usage` are valid for writes.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let elapsed = started.elapsed();
    assert_eq!(pid, child.id() as libc::pid_t, "wait4 failed");
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "tokentrail ingest failed");
    (elapsed, usage.ru_maxrss)
}

/// Replaces the `name` section of BENCHMARKS.md (between `<!-- bench:NAME -->` and
/// `<!-- /bench:NAME -->`), keeping the others.
pub fn write_section(name: &str, section: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
    let old = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n\n".into());
    let (open, close) = (format!("<!-- bench:{name} -->"), format!("<!-- /bench:{name} -->\n"));
    let new = match (old.find(&open), old.find(&close)) {
        (Some(start), Some(end)) => format!("{}{section}{}", &old[..start], &old[end + close.len()..]),
        _ => format!("{old}\n{section}"),
    };
    std::fs::write(&path, new).unwrap();
    println!("wrote {}", path.display());
}
