//! The `tokentrail` binary as a user runs it.

mod common;
use common::samples_dir;
use std::process::{Command, Output};

fn tokentrail(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokentrail")).args(args).env("TOKENTRAIL_LOG", "warn").output().expect("runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn ingest_prints_counts_by_category_and_query_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.duckdb");
    let db = db.to_str().unwrap();
    let out = tokentrail(&["ingest", "--db", db, samples_dir().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for expected in [
        "files: 6 (0 unchanged, 0 failed)",
        "cosmos_requests  DataPlaneRequests                               2",
        "signins          ManagedIdentitySignInLogs                       1",
        "signins          NonInteractiveUserSignInLogs                    1",
        "signins          ServicePrincipalSignInLogs                      2",
        "signins          SignInLogs                                      1",
        "stored: 2 cosmos requests, 5 sign-ins, 0 raw, 0 quarantined",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
    let csv = tokentrail(&[
        "query",
        "--db",
        db,
        "--format",
        "csv",
        "SELECT kind, principal_id FROM signins ORDER BY time LIMIT 2",
    ]);
    assert_eq!(
        text(&csv.stdout),
        "kind,principal_id\nuser_interactive,8a4de8b5-095c-47d0-a96f-a75130c61d53\nmanaged_identity,9d370547-cb61-4753-be23-68534909af90\n"
    );
    let json = tokentrail(&["query", "--db", db, "--format", "json", "SELECT count(*) AS n FROM cosmos_requests"]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON output");
    assert_eq!(value, serde_json::json!([{"n": 2}]));
    let table = text(&tokentrail(&["query", "--db", db, "SELECT 'x' AS answer"]).stdout);
    assert!(table.contains("| answer |") && table.contains("| x      |"), "{table}");
}

#[test]
fn query_is_read_only_and_bad_sql_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.duckdb");
    let db = db.to_str().unwrap();
    assert!(tokentrail(&["ingest", "--db", db, samples_dir().to_str().unwrap()]).status.success());
    let out = tokentrail(&["query", "--db", db, "DELETE FROM cosmos_requests"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).to_lowercase().contains("read-only"), "{}", text(&out.stderr));
    let out = tokentrail(&["query", "--db", db, "SELEC nonsense"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("not valid SQL"), "{}", text(&out.stderr));
    let count = tokentrail(&["query", "--db", db, "--format", "csv", "SELECT count(*) FROM cosmos_requests"]);
    assert_eq!(text(&count.stdout), "count_star()\n2\n");
}

#[test]
fn a_missing_input_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.duckdb");
    let out = tokentrail(&["ingest", "--db", db.to_str().unwrap(), "/nonexistent/logs.ndjson"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("/nonexistent/logs.ndjson: cannot read"), "{}", text(&out.stderr));
}

#[test]
fn generated_files_ingest_completely_in_both_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("traffic.ndjson");
    let out = tokentrail(&["generate", "--out", file.to_str().unwrap(), "--days", "2", "--scenarios", "all"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let records = std::fs::read_to_string(&file).unwrap().lines().count() as i64;
    let truth: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("traffic.truth.json")).unwrap()).unwrap();
    assert_eq!(truth.len(), tokentrail::generate::Scenario::all().len());

    let archive = dir.path().join("archive");
    assert!(
        tokentrail(&["generate", "--out", archive.to_str().unwrap(), "--days", "2", "--scenarios", "all"])
            .status
            .success()
    );
    assert!(archive.join("insights-logs-dataplanerequests").is_dir());
    assert!(archive.join("insights-logs-signinlogs").is_dir());
    assert!(dir.path().join("archive.truth.json").is_file());

    for (name, input) in [("file", &file), ("archive", &archive)] {
        let db = dir.path().join(format!("{name}.duckdb"));
        let db = db.to_str().unwrap();
        let out = tokentrail(&["ingest", "--db", db, input.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let count = tokentrail(&[
            "query",
            "--db",
            db,
            "--format",
            "csv",
            "SELECT (SELECT count(*) FROM cosmos_requests) + (SELECT count(*) FROM signins), (SELECT count(*) FROM quarantine) + (SELECT count(*) FROM raw_events)",
        ]);
        let stdout = text(&count.stdout);
        let values: Vec<&str> = stdout.lines().nth(1).unwrap().split(',').collect();
        assert_eq!(values, [records.to_string().as_str(), "0"], "{name}");
    }
}

#[test]
fn bad_scenario_names_list_the_valid_ones() {
    let dir = tempfile::tempdir().unwrap();
    let out = tokentrail(&["generate", "--out", dir.path().join("x.ndjson").to_str().unwrap(), "--scenarios", "nope"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("nope") && stderr.contains("mass_delete"), "{stderr}");
}

fn check_config(config: &str, env: &[(String, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokentrail"))
        .args(["serve", "--check-config", "--config", config])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("runs")
}

#[test]
fn check_config_opens_no_database_binds_no_port_and_connects_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let http = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hub = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    hub.set_nonblocking(true).unwrap();
    let config = dir.path().join("tokentrail.toml");
    std::fs::write(
        &config,
        format!(
            "db = {:?}\n[http]\nlisten = \"{}\"\ndevelopment_sign_in = true\n[eventhubs]\nhubs = [\"h\"]\n\
             credential = \"connection_string\"\n[[alerts.destinations]]\nname = \"soc\"\nkind = \"slack\"\n\
             url_env = \"TT_CHECK_HOOK\"\n",
            dir.path().join("t.duckdb"),
            http.local_addr().unwrap()
        ),
    )
    .unwrap();
    let hub_address = hub.local_addr().unwrap();
    let env = [
        (
            "TOKENTRAIL_EVENTHUBS_CONNECTION_STRING".to_owned(),
            format!(
                "Endpoint=sb://{hub_address};SharedAccessKeyName=k;SharedAccessKey=s3cret;UseDevelopmentEmulator=true"
            ),
        ),
        ("TT_CHECK_HOOK".to_owned(), "https://hooks.example.invalid/s3cret-path".to_owned()),
    ];
    let out = check_config(config.to_str().unwrap(), &env);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}{stdout}", text(&out.stderr));
    assert!(stdout.contains("alerts: soc (0 routes)"), "{stdout}");
    assert!(!stdout.contains("s3cret") && !text(&out.stderr).contains("s3cret"));
    // Only the configuration is in the folder: no database, write-ahead log or keys.
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(files, ["tokentrail.toml"]);
    assert_eq!(hub.accept().map(|_| ()).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);

    // The same without the hook's URL stops, naming what is missing.
    let out = check_config(config.to_str().unwrap(), &env[..1]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("TT_CHECK_HOOK"), "{}", text(&out.stderr));
}

// The image and `docker compose up`: Docker cannot run here, so these check their files
// instead: what the build context holds, the emulator's configuration against the
// emulator's schema, TokenTrail's configuration as compose runs it, and the compose
// file's promises (pinned images, loopback only, a licence the user accepts, a healthy
// emulator before TokenTrail starts).

/// A file of the repository, by its path from the root.
fn repo_file(path: &str) -> String {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

#[test]
fn the_image_build_context_holds_what_the_dockerfile_copies() {
    let ignore = repo_file(".dockerignore");
    let patterns: Vec<&str> = ignore.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
    assert_eq!(patterns.first(), Some(&"*"), "an allowlist: everything else stays out");
    let allowed: Vec<&str> = patterns[1..].iter().map(|p| p.trim_start_matches('!').trim_end_matches('/')).collect();
    let dockerfile = repo_file("Dockerfile");
    for line in dockerfile.lines().filter(|l| l.starts_with("COPY ") && !l.contains("--from")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        for source in &words[1..words.len() - 1] {
            assert!(allowed.contains(source), "{source} is copied but .dockerignore leaves it out");
        }
    }
}
