//! `tokentrail serve` against the test hub, for the benchmarks that stream: the service
//! as a child process, polled over HTTP, and a hub preloaded with a backlog.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokentrail_testhub::TestHub;

pub const HUB: &str = "insights-logs-dataplanerequests";
pub const PARTITIONS: u32 = 4;
pub const BIN: &str = env!("CARGO_BIN_EXE_tokentrail");

pub struct Service {
    child: Child,
    port: u16,
    db: PathBuf,
    /// Signed once (RSA signing each poll would cost the machine under test CPU).
    token: std::cell::OnceCell<String>,
}

impl Service {
    pub fn start(dir: &Path, hub: &TestHub, name: &str) -> Service {
        let mut service = Service::spawn(dir, hub, name, "", &[]);
        service.wait(|status| status["eventhubs"].as_array().is_some_and(|p| p.len() == PARTITIONS as usize));
        service
    }

    /// Starts `serve` with `extra` appended to its `[eventhubs]` section and `env` set;
    /// returns at once (not waiting for it to listen).
    pub fn spawn(dir: &Path, hub: &TestHub, name: &str, extra: &str, env: &[(&str, &str)]) -> Service {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "db = {:?}\n[http]\nlisten = \"127.0.0.1:{port}\"\ndevelopment_sign_in = true\n[eventhubs]\nhubs = [\"{HUB}\"]\n\
                 credential = \"connection_string\"\nendpoint = \"{}\"\n{extra}",
                dir.join(format!("{name}.duckdb")),
                hub.endpoint()
            ),
        )
        .unwrap();
        let mut command = Command::new(BIN);
        // `serve` refuses TOKENTRAIL_ variables that are not configuration keys.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("TOKENTRAIL_BENCH_") {
                command.env_remove(name);
            }
        }
        let child = command
            .args(["serve", "--config"])
            .arg(&config)
            .env("TOKENTRAIL_EVENTHUBS_CONNECTION_STRING", hub.connection_string(HUB))
            .env("TOKENTRAIL_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .spawn()
            .expect("tokentrail serve runs");
        Service { child, port, db: dir.join(format!("{name}.duckdb")), token: Default::default() }
    }

    pub fn db(&self) -> &Path {
        &self.db
    }

    /// `/metrics` as text; `None` while the service is not answering.
    pub fn metrics(&self) -> Option<String> {
        let url = format!("http://127.0.0.1:{}/metrics", self.port);
        ureq::get(&url).call().ok()?.body_mut().read_to_string().ok()
    }

    /// SIGKILL, as a crash.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn status(&self) -> Option<serde_json::Value> {
        let url = format!("http://127.0.0.1:{}/api/status", self.port);
        let token = self.token()?;
        ureq::get(&url).header("Authorization", format!("Bearer {token}")).call().ok()?.body_mut().read_json().ok()
    }

    /// The HTTP API wants a bearer token: on loopback `serve` accepts the development
    /// issuer's, signed with the key beside its database (made by whichever comes first).
    pub fn token(&self) -> Option<String> {
        if let Some(token) = self.token.get() {
            return Some(token.clone());
        }
        let token = tokentrail::auth::dev_token(
            &self.db,
            tokentrail::auth::Role::Auditor,
            "eventhubs test",
            chrono::Duration::hours(2),
        )
        .ok()?;
        Some(self.token.get_or_init(|| token).clone())
    }

    pub fn rows(&self) -> i64 {
        self.status()
            .and_then(|s| s["tables"].as_array().map(|t| t.iter().filter_map(|t| t["rows"].as_i64()).sum()))
            .unwrap_or(0)
    }

    pub fn wait(&mut self, done: impl Fn(&serde_json::Value) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(600);
        while !self.status().is_some_and(|s| done(&s)) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("tokentrail serve exited ({status}) before it was ready: see its output above");
            }
            assert!(Instant::now() < deadline, "the service did not get there in 10 minutes");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Rows committed so far, from `/metrics` (`tokentrail_rows_total`, counted by the
    /// writer as each commit is made). Polled every 20 ms while a stream runs: reading
    /// a counter costs the service next to nothing, where `/api/status` counts every
    /// table in DuckDB (~13 ms of CPU a call at a million rows), which at 10 calls a
    /// second had taken CPU from the stream being measured.
    pub fn committed_rows(&self) -> Option<i64> {
        let text = self.metrics()?;
        Some(
            text.lines()
                .filter(|l| l.starts_with("tokentrail_rows_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>() as i64,
        )
    }

    /// Waits for `rows` committed rows; returns when they were seen, after checking
    /// the tables hold exactly that many (nothing lost, nothing twice).
    pub fn wait_rows(&self, rows: i64) -> Instant {
        let deadline = Instant::now() + Duration::from_secs(1200);
        loop {
            let committed = self.committed_rows().unwrap_or(0);
            if committed >= rows {
                let seen = Instant::now();
                assert_eq!(self.rows(), rows, "the tables hold another number of rows than were sent");
                return seen;
            }
            assert!(Instant::now() < deadline, "only {committed} of {rows} rows committed in 20 minutes");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// User plus system CPU time of the service so far, all its threads (/proc/PID/stat).
    pub fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after the command name (which may hold spaces) end with ')'.
        let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // SAFETY: sysconf has no preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        Duration::from_millis(ticks * 1000 / per_second)
    }

    /// Peak resident set (VmHWM) so far, in MiB.
    pub fn peak_rss_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap();
        kib / 1024
    }

    pub fn stop(mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        assert!(self.child.wait().unwrap().success(), "serve stopped cleanly");
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // A panic never leaves a service running (after `stop`, this is a no-op).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn generate(dir: &Path, records: usize, seed: u64) -> (PathBuf, u64) {
    let path = dir.join(format!("cosmos-{seed}.ndjson"));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let bytes = tokentrail::synth::write_cosmos_ndjson(&mut out, records, seed).unwrap();
    out.flush().unwrap();
    (path, bytes)
}

/// Appends the records of `file` to the hub directly (no AMQP), in envelopes of
/// `per_event` records, round robin over the partitions; reads the file a line at a time
/// so the bench process holds only what the hub holds.
pub fn preload(hub: &TestHub, file: &Path, per_event: usize) {
    preload_partitions(hub, file, per_event, PARTITIONS);
}

/// [`preload`] over `partitions` partitions.
pub fn preload_partitions(hub: &TestHub, file: &Path, per_event: usize, partitions: u32) {
    let mut lines = std::io::BufReader::new(std::fs::File::open(file).unwrap()).lines();
    let mut event = 0u32;
    loop {
        let records: Vec<String> = lines.by_ref().take(per_event).map(Result::unwrap).collect();
        if records.is_empty() {
            break;
        }
        hub.append(HUB, event % partitions, format!("{{\"records\":[{}]}}", records.join(",")).into_bytes());
        event += 1;
    }
}
