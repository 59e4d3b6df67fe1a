//! `tokentrail demo` as a child process, with a development token, for the tests that
//! need the real binary serving HTTP.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tokentrail"));
    command.env("TOKENTRAIL_LOG", "warn");
    command
}

/// A development token for `role` from `tokentrail token`, accepted by a demo on `db`.
pub fn token(db: &std::path::Path, role: &str) -> String {
    let out = bin()
        .args(["token", "--role", role, "--db", db.to_str().unwrap(), "--name", &format!("{role} test")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// GET over a raw socket (HTTP/1.0, so the body is never chunked), with a bearer token if given.
pub fn http_get(address: &str, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let authorization = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n{authorization}Connection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

/// POST of a JSON body over a raw socket (HTTP/1.0), with a bearer token.
pub fn http_post(address: &str, path: &str, token: &str, body: &serde_json::Value) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    let body = body.to_string();
    write!(
        stream,
        "POST {path} HTTP/1.0\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

pub struct Demo {
    pub child: std::process::Child,
    pub address: String,
    /// A Responder token of the demo's development issuer, from `tokentrail token`.
    pub token: String,
}

/// A test that fails half-way must not leave the demo running.
impl Drop for Demo {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Demo {
    pub fn start(db: &std::path::Path) -> Demo {
        let mut child = bin()
            .args(["demo", "--db", db.to_str().unwrap(), "--port", "0", "--days", "1"])
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let address = loop {
            let line = lines.next().expect("demo printed its address").unwrap();
            if let Some(rest) = line.strip_prefix("TokenTrail demo on http://") {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        // Keep draining stderr so the demo never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Demo { child, address, token: token(db, "Responder") }
    }

    pub fn status(&self) -> serde_json::Value {
        let (code, body) = http_get(&self.address, "/api/status", Some(&self.token)).expect("status answers");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    pub fn generated_until(&self) -> Option<String> {
        let status = self.status();
        status["sources"].as_array()?.iter().find(|s| s["kind"] == "generator")?["event_time"]
            .as_str()
            .map(String::from)
    }

    /// Ctrl-C, and the exit status.
    pub fn interrupt(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "demo did not stop within 30 s of Ctrl-C");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
