//! What the benchmarks share: running the real binary, and writing their own
//! section of BENCHMARKS.md.
#![allow(dead_code)]

pub mod hub;
pub mod synthetic;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Parser threads of `tokentrail ingest` in the benchmarks (this machine has 2 cores).
pub const THREADS: usize = 2;

/// The number in environment variable `name` (`10_000_000` reads as well), else `default`.
pub fn env_count<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.replace('_', "").parse().ok()).unwrap_or(default)
}

/// Runs `tokentrail ingest` with `duckdb_threads` (None: the CLI's default).
pub fn run_ingest(db: &Path, input: &Path, duckdb_threads: Option<usize>) -> Measured {
    let (db, input) = (db.to_str().unwrap(), input.to_str().unwrap());
    let workers = THREADS.to_string();
    let threads = duckdb_threads.map(|n| n.to_string());
    let mut args = vec!["ingest", "--workers", &workers, "--db", db, input];
    if let Some(threads) = &threads {
        args.extend(["--threads", threads]);
    }
    let measured = run_measured(&args, std::process::Stdio::null());
    assert!(measured.ok, "tokentrail ingest failed");
    measured
}

/// The middle value (the upper one of the two middle values for an even count).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Writes what earlier runs left in the page cache out to disk (sync(2)), so the kernel's
/// writeback of one measured run does not take CPU from the next.
pub fn settle() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// Wall time, CPU time and peak RSS of one path's rounds.
#[derive(Default)]
pub struct Runs {
    pub wall: Vec<f64>,
    pub cpu: Vec<f64>,
    pub peak_rss_kib: i64,
}

impl Runs {
    pub fn push(&mut self, measured: &Measured) {
        self.wall.push(measured.elapsed.as_secs_f64());
        self.cpu.push(measured.cpu.as_secs_f64());
        self.peak_rss_kib = self.peak_rss_kib.max(measured.peak_rss_kib);
    }

    /// Median wall seconds and median CPU seconds.
    pub fn median(&self) -> (f64, f64) {
        (median(self.wall.clone()), median(self.cpu.clone()))
    }

    pub fn peak_mib(&self) -> i64 {
        self.peak_rss_kib / 1024
    }
}

/// What one run of the real binary took.
pub struct Measured {
    pub elapsed: Duration,
    /// Peak RSS in KiB, from wait4.
    pub peak_rss_kib: i64,
    /// User plus system CPU time of the process: less sensitive than wall time to what
    /// else the machine runs.
    pub cpu: Duration,
    /// Exited with status 0.
    pub ok: bool,
}

/// Runs the real binary with `args` and measures it.
pub fn run_measured(args: &[&str], stdout: std::process::Stdio) -> Measured {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tokentrail"));
    command.args(args).env("TOKENTRAIL_LOG", "warn").stdout(stdout).stderr(std::process::Stdio::null());
    measure(command)
}

/// Runs `command` and measures it. The peak RSS counts the memory this process held
/// when it started the child (Linux carries it over fork and exec): measure before
/// this process holds much.
pub fn measure(mut command: Command) -> Measured {
    let started = Instant::now();
    #[allow(clippy::zombie_processes)] // reaped by wait4 below, which also reports peak RSS
    let child = command.spawn().expect("the measured program runs");
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; `status` and `usage` are valid for writes.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let elapsed = started.elapsed();
    assert_eq!(pid, child.id() as libc::pid_t, "wait4 failed");
    Measured {
        elapsed,
        peak_rss_kib: usage.ru_maxrss,
        cpu: cpu_time(&usage),
        ok: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
    }
}

fn cpu_time(usage: &libc::rusage) -> Duration {
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
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

/// The whole HTTP application on a loopback port, with the development issuer for
/// sign-in (tokens from `tokentrail::auth::dev_token` on the same database), serving
/// from a thread of its own until the process ends.
pub fn serve(store: std::sync::Arc<tokentrail::store::Store>) -> (String, tokentrail::http::AppState) {
    use tokentrail::http::{Application, Detection, Settings, SignIn};
    let sign_in = SignIn::Development { db: store.path().to_path_buf(), secret: None };
    let mut settings = Settings::new(store, "127.0.0.1:0".parse().unwrap(), "bench", sign_in);
    settings.detection = Detection::Catalogue(tokentrail::rules::rule::load(None).0);
    let app = Application::build(settings).unwrap();
    let (base, state) = (format!("http://{}", app.address()), app.state().clone());
    std::thread::spawn(move || app.run_until_stopped().unwrap());
    (base, state)
}
