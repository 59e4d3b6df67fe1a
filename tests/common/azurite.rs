//! A real local Azure Blob Storage for the tests: Azurite's blob service (`azurite-blob`,
//! npm `azurite@3.35.0`, which `.ci/run` installs into `~/.cache/tokentrail-azurite`),
//! one per test, on 127.0.0.1 and a port of its own choosing, its data in a temp dir.
//! It is killed when the `Azurite` is dropped.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use object_store::azure::{MicrosoftAzure, MicrosoftAzureBuilder};
use sha2::Sha256;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;
use tempfile::TempDir;

/// How long Azurite may take to listen (it takes well under a second on an idle machine).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The development storage account every Azurite serves.
pub const ACCOUNT: &str = "devstoreaccount1";
/// The account's key: Azurite's well-known development key, published in its documentation
/// (<https://learn.microsoft.com/azure/storage/common/storage-use-azurite#well-known-storage-account-and-key>)
/// and accepted by every Azurite; not a secret.
pub const KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

pub struct Azurite {
    child: Child,
    port: u16,
    /// Azurite's `--location`; removed after the process is killed (fields drop after `drop`).
    _dir: TempDir,
}

impl Azurite {
    /// Starts `azurite-blob` from `$TOKENTRAIL_AZURITE_DIR` (else `~/.cache/tokentrail-azurite`)
    /// and waits until it listens. Panics, saying what to do, if it is not installed.
    pub fn start() -> Azurite {
        let install = std::env::var_os("TOKENTRAIL_AZURITE_DIR").map(PathBuf::from).unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is not set")).join(".cache/tokentrail-azurite")
        });
        let bin = install.join("node_modules/.bin/azurite-blob");
        assert!(
            bin.exists(),
            "{} not found: run .ci/run (it installs azurite@3.35.0 with npm into \
             ~/.cache/tokentrail-azurite), or set TOKENTRAIL_AZURITE_DIR to such an install",
            bin.display()
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new(&bin)
            .args(["--blobHost", "127.0.0.1", "--blobPort", "0", "--location"])
            .arg(dir.path())
            // --inMemoryPersistence is refused next to --location by 3.35 ("not supported
            // when the --location option is set"); the temp dir holds the data instead.
            // --disableTelemetry: else it posts to Application Insights after each start.
            .args(["--skipApiVersionCheck", "--loose", "--silent", "--disableTelemetry"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that drop kills node and anything it started.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e} (is node installed? run .ci/run)", bin.display()));

        // Port 0: Azurite binds a free port and prints it, so no other process can take it
        // between our choosing and its binding. The threads read both pipes to their end.
        let output = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let log = Arc::clone(&output);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let port = line
                    .strip_prefix("Azurite Blob service successfully listens on http://127.0.0.1:")
                    .and_then(|p| p.trim().parse::<u16>().ok());
                log.lock().unwrap().push_str(&format!("{line}\n"));
                if let Some(port) = port {
                    let _ = tx.send(port);
                }
            }
        });
        let stderr = child.stderr.take().unwrap();
        let log = Arc::clone(&output);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });

        let mut azurite = Azurite { child, port: 0, _dir: dir };
        azurite.port = match rx.recv_timeout(START_TIMEOUT) {
            Ok(port) => port,
            Err(_) => {
                let status = azurite.child.try_wait().ok().flatten();
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "{} did not listen within {START_TIMEOUT:?} (exit status {status:?}); its output:\n{}",
                    bin.display(),
                    output.lock().unwrap()
                );
            }
        };
        TcpStream::connect(("127.0.0.1", azurite.port))
            .unwrap_or_else(|e| panic!("Azurite said it listens on {} but: {e}", azurite.port));
        azurite
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The account's blob endpoint, path-style as Azurite serves it.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{}", self.port, ACCOUNT)
    }

    /// Creates the blob container `name`, with a Shared Key signed REST request: true if
    /// it made it, false if it was already there (409 `ContainerAlreadyExists`).
    pub fn create_container(&self, name: &str) -> bool {
        let version = "2021-08-06";
        let date = chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        let path = format!("/{}/{name}", ACCOUNT);
        // https://learn.microsoft.com/rest/api/storageservices/authorize-with-shared-key:
        // verb, eleven standard headers (all empty here: Content-Length 0 is signed as
        // empty), the x-ms- headers sorted, then /account + path and the query parameters.
        let string_to_sign = format!(
            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{}{path}\nrestype:container",
            ACCOUNT
        );
        let key = STANDARD.decode(KEY).unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(string_to_sign.as_bytes());
        let signature = STANDARD.encode(mac.finalize().into_bytes());

        let address = format!("127.0.0.1:{}", self.port);
        let mut stream = TcpStream::connect(&address).unwrap_or_else(|e| panic!("connect to Azurite: {e}"));
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            stream,
            "PUT {path}?restype=container HTTP/1.1\r\nHost: {address}\r\nx-ms-date: {date}\r\n\
             x-ms-version: {version}\r\nAuthorization: SharedKey {}:{signature}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n",
            ACCOUNT
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap_or_else(|e| panic!("create container {name}: {e}"));
        let status: u16 = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        match status {
            201 => true,
            409 if response.contains("ContainerAlreadyExists") => false,
            _ => panic!("create container {name}: HTTP {status}:\n{response}"),
        }
    }

    /// An object store on container `container` of this Azurite, signed with the account key.
    ///
    /// Not `with_use_emulator(true)`: object_store 0.14 then takes the emulator's URL only
    /// from the process-wide `AZURITE_BLOB_STORAGE_URL` (default port 10000) and ignores
    /// the endpoint, and the tests run in parallel, each on its own port. An explicit
    /// endpoint over HTTP makes the same requests (`{endpoint}/{container}/{path}`, the same
    /// Shared Key signature). One difference: `list_with_offset` sends `startFrom`, where
    /// emulator mode filters on the client; Azurite 3.35 honours it (tests/it/azurite.rs).
    pub fn object_store(&self, container: &str) -> MicrosoftAzure {
        MicrosoftAzureBuilder::new()
            .with_account(ACCOUNT)
            .with_access_key(KEY)
            .with_container_name(container)
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .build()
            .expect("object store on Azurite")
    }
}

/// A test that fails half-way must not leave Azurite running.
impl Drop for Azurite {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group of our own child (its pid: process_group(0)).
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}
