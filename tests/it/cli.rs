//! The `tokentrail` binary as a user runs it.

use crate::common;
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
    assert_eq!(truth.len(), tokentrail::synth::Scenario::all().len());

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
            // the Activity log, AuditLogs and Cosmos DB QueryRuntimeStatistics records are kept in
            // raw_events (and typed from there)
            "SELECT (SELECT count(*) FROM cosmos_requests) + (SELECT count(*) FROM signins) + (SELECT count(*) FROM raw_events),
                    (SELECT count(*) FROM quarantine),
                    (SELECT count(*) FROM raw_events
                     WHERE lower(category) NOT IN ('write', 'delete', 'action', 'auditlogs', 'queryruntimestatistics'))",
        ]);
        let stdout = text(&count.stdout);
        let values: Vec<&str> = stdout.lines().nth(1).unwrap().split(',').collect();
        assert_eq!(values, [records.to_string().as_str(), "0", "0"], "{name}");
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

#[test]
fn a_bad_profile_is_refused_with_the_valid_ones_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("x.ndjson");
    let long = "r".repeat(10_000);
    for profile in ["realistic; rm -rf /", "", "tidy,realistic", long.as_str()] {
        let out = tokentrail(&["generate", "--out", out_file.to_str().unwrap(), "--profile", profile]);
        assert!(!out.status.success(), "{profile:?} was accepted");
        let stderr = text(&out.stderr);
        assert!(stderr.contains("valid: tidy, realistic"), "{stderr}");
        assert!(!out_file.exists(), "nothing is generated for {profile:?}");
    }
    let db = dir.path().join("demo.duckdb");
    let out = tokentrail(&["demo", "--db", db.to_str().unwrap(), "--port", "0", "--profile", "messy"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("unknown profile \"messy\""), "{}", text(&out.stderr));
    assert!(!db.exists(), "the demo did not start");
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

/// The lines of a service in docker-compose.yml, from its name to the next service.
fn compose_service<'a>(compose: &'a str, name: &str) -> Vec<&'a str> {
    let mut lines = compose.lines().skip_while(|l| *l != format!("  {name}:"));
    let head = lines.next().unwrap_or_else(|| panic!("no service {name} in docker-compose.yml"));
    let body = lines.take_while(|l| l.trim().is_empty() || l.starts_with("   "));
    std::iter::once(head).chain(body).collect()
}

/// The entries of a block (`environment:`, `ports:`) of a service: the more indented
/// lines after the key, quotes and list dashes removed.
fn compose_block(service: &[&str], key: &str) -> Vec<String> {
    let mut lines = service.iter().skip_while(|l| l.trim() != key);
    let Some(head) = lines.next() else { return Vec::new() };
    let indent = |l: &str| l.len() - l.trim_start().len();
    lines
        .take_while(|l| indent(l) > indent(head))
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| l.trim().trim_start_matches("- ").trim_matches('"').to_owned())
        .collect()
}

/// The `environment:` of a compose service as KEY, value pairs.
fn compose_env(service: &[&str]) -> Vec<(String, String)> {
    compose_block(service, "environment:")
        .iter()
        .map(|entry| {
            let (key, value) = entry.split_once(": ").unwrap_or_else(|| panic!("not KEY: value: {entry}"));
            (key.to_owned(), value.trim_matches('"').to_owned())
        })
        .collect()
}

#[test]
fn the_emulator_configuration_is_valid_for_the_pinned_emulator_and_has_what_tokentrail_reads() {
    // The schema's name patterns have `[\w-\.\/]`: in a regex without the `u` flag (ECMA-262
    // Annex B) a dash after `\w` is itself a member, but jsonschema reads patterns as with
    // `u`, where that is a syntax error. `[\w\-\.\/]` is the same set either way.
    let schema = repo_file("tests/fixtures/eventhubs-emulator/Config-schema.json");
    let (annex_b, strict) = (r#"[\\w-\\.\\/]"#, r#"[\\w\\-\\.\\/]"#);
    assert_eq!(schema.matches(annex_b).count(), 2, "the schema's patterns changed: look again");
    let schema: serde_json::Value = serde_json::from_str(&schema.replace(annex_b, strict)).unwrap();
    let config: serde_json::Value = serde_json::from_str(&repo_file("docker/eventhubs-emulator.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the emulator's schema compiles");
    let errors: Vec<String> = validator.iter_errors(&config).map(|e| format!("{}: {e}", e.instance_path())).collect();
    assert!(errors.is_empty(), "docker/eventhubs-emulator.json: {errors:#?}");
    // A partition count written as a string, as the file once had it, is refused.
    let mut string_count = config.clone();
    string_count["UserConfig"]["NamespaceConfig"][0]["Entities"][0]["PartitionCount"] = "4".into();
    assert!(!validator.is_valid(&string_count));

    // The schema is the one that goes with the image compose pins (PROVENANCE.md says why).
    let provenance = repo_file("tests/fixtures/eventhubs-emulator/PROVENANCE.md");
    let compose = repo_file("docker-compose.yml");
    let pinned = compose
        .lines()
        .filter_map(|l| l.trim().strip_prefix("image: "))
        .find(|image| image.starts_with("mcr.microsoft.com/azure-messaging/eventhubs-emulator:"))
        .expect("compose runs the Event Hubs emulator");
    assert!(provenance.contains(&format!("`{pinned}`")), "PROVENANCE.md does not name {pinned}");

    // The emulator makes the hubs and the consumer group TokenTrail reads.
    let serve = tokentrail::config::ServeConfig::load(Some(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docker/tokentrail.toml"
    ))))
    .unwrap();
    let hubs = serve.eventhubs.expect("docker/tokentrail.toml reads Event Hubs");
    let entities = config["UserConfig"]["NamespaceConfig"][0]["Entities"].as_array().unwrap();
    let mut names: Vec<&str> = entities.iter().map(|e| e["Name"].as_str().unwrap()).collect();
    names.sort_unstable();
    let mut wanted: Vec<&str> = hubs.hubs.iter().map(String::as_str).collect();
    wanted.sort_unstable();
    assert_eq!(names, wanted);
    for entity in entities {
        let groups = entity["ConsumerGroups"].as_array().unwrap();
        assert!(groups.iter().any(|g| g["Name"] == hubs.consumer_group.as_str()), "{entity}");
    }
}

#[test]
fn the_service_configuration_loads_as_compose_runs_it_and_bad_ones_say_why() {
    let compose = repo_file("docker-compose.yml");
    let service = compose_service(&compose, "tokentrail");
    let env = compose_env(&service);
    assert!(env.iter().any(|(k, _)| k == "TOKENTRAIL_EVENTHUBS_CONNECTION_STRING"), "{env:?}");
    // The lake's key is Azurite's published development one, the only kind accepted.
    assert!(env.contains(&("TOKENTRAIL_LAKE_ACCOUNT_KEY".to_owned(), common::azurite::KEY.to_owned())), "{env:?}");
    // The file compose mounts is the one the image's command reads.
    let mount = "./docker/tokentrail.toml:/etc/tokentrail/tokentrail.toml";
    assert!(compose_block(&service, "volumes:").iter().any(|v| v.starts_with(mount)), "{service:#?}");
    assert!(repo_file("Dockerfile").contains(r#"CMD ["serve", "--config", "/etc/tokentrail/tokentrail.toml"]"#));

    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/docker/tokentrail.toml");
    let out = check_config(config, &env);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}{stdout}", text(&out.stderr));
    for expected in [
        "configuration ok",
        "database: /data/tokentrail.duckdb",
        "http: 0.0.0.0:8080",
        "sign-in: development issuer",
        "eventhubs: insights-logs-dataplanerequests, insights-logs-signinlogs (consumer group tokentrail, \
         start earliest), connection string for eventhubs-emulator",
        "lake: http://azurite:10000/devstoreaccount1/lake every 5 min, retention off (nothing deleted)",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
    assert!(!stdout.contains("SAS_KEY_VALUE") && !text(&out.stderr).contains("SAS_KEY_VALUE"));
    assert!(!stdout.contains(common::azurite::KEY) && !text(&out.stderr).contains(common::azurite::KEY));

    let dir = tempfile::tempdir().unwrap();
    let without_auth = dir.path().join("no-auth.toml");
    std::fs::write(&without_auth, "[http]\nlisten = \"127.0.0.1:8080\"\n").unwrap();
    let both = dir.path().join("both.toml");
    std::fs::write(
        &both,
        "[http]\ndevelopment_sign_in = true\n[auth]\ntenants = [\"72f988bf-86f1-41af-91ab-2d7cd011db47\"]\n\
         audiences = [\"api://tokentrail\"]\n",
    )
    .unwrap();
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[http]\ndevelopment_signin = true\n").unwrap();
    let no_secret = env.iter().filter(|(k, _)| k != "TOKENTRAIL_EVENTHUBS_CONNECTION_STRING").cloned().collect();
    for (config, env, says) in [
        (config, no_secret, "TOKENTRAIL_EVENTHUBS_CONNECTION_STRING, which is not set"),
        (without_auth.to_str().unwrap(), env.clone(), "configure [auth]"),
        (both.to_str().unwrap(), env.clone(), "choose one"),
        (typo.to_str().unwrap(), env.clone(), "development_signin"),
    ] {
        let out = check_config(config, &env);
        assert!(!out.status.success(), "{config}: {}", text(&out.stdout));
        let stderr = text(&out.stderr);
        assert!(stderr.contains("error: ") && stderr.contains(says), "{config}: {stderr}");
    }
}

#[test]
fn compose_pins_its_images_publishes_on_loopback_and_waits_for_a_healthy_emulator() {
    let compose = repo_file("docker-compose.yml");
    let images: Vec<&str> = compose.lines().filter_map(|l| l.trim().strip_prefix("image: ")).collect();
    assert!(images.len() >= 2, "{images:?}");
    for image in &images {
        // A release number, e.g. 2.1.0: never latest, never a floating major.
        let tag = image.rsplit_once(':').map(|(_, tag)| tag).unwrap_or("");
        let parts: Vec<&str> = tag.split('.').collect();
        assert!(parts.len() == 3 && parts.iter().all(|p| p.parse::<u32>().is_ok()), "{image} is not pinned");
    }

    // The licence is the user's to accept: compose refuses to start until .env says so.
    let eula: Vec<&str> = compose.lines().filter_map(|l| l.trim().strip_prefix("ACCEPT_EULA: ")).collect();
    assert_eq!(eula.len(), 1, "{eula:?}");
    assert!(eula[0].starts_with("\"${ACCEPT_EULA:?") && eula[0].contains("EULA"), "{}", eula[0]);
    assert!(repo_file(".env.example").lines().any(|l| l == "ACCEPT_EULA="));
    assert!(repo_file(".gitignore").lines().any(|l| l == "/.env"));

    // Published ports are on the host's loopback only; the UI and API on 8080.
    let ports: Vec<String> = ["tokentrail", "eventhubs-emulator", "probe-install", "azurite", "lake-container"]
        .iter()
        .flat_map(|name| compose_block(&compose_service(&compose, name), "ports:"))
        .collect();
    assert!(ports.contains(&"127.0.0.1:8080:8080".to_owned()), "{ports:?}");
    assert!(ports.iter().all(|p| p.starts_with("127.0.0.1:")), "{ports:?}");
    assert_eq!(compose.matches("ports:").count(), 2, "a service publishes ports this test does not read");

    // TokenTrail starts once the emulator's health endpoint answers.
    let emulator = compose_service(&compose, "eventhubs-emulator");
    let health = compose_block(&emulator, "healthcheck:");
    assert!(health.iter().any(|l| l.contains("http://127.0.0.1:5300/health")), "{health:?}");
    let waits = compose_block(&compose_service(&compose, "tokentrail"), "depends_on:");
    assert_eq!(
        waits,
        [
            "eventhubs-emulator:",
            "condition: service_healthy",
            "lake-container:",
            "condition: service_completed_successfully"
        ]
    );
}

/// The lake compose archives to: lake-container creates the container in compose's Azurite
/// with Azurite's key, TokenTrail starts once that succeeded, and its [lake] (in
/// docker/tokentrail.toml, key from compose's environment) archives to such an Azurite:
/// this test's own, the same version, the host swapped for 127.0.0.1 and its port.
#[test]
fn compose_creates_the_lake_container_and_tokentrail_archives_to_it() {
    let compose = repo_file("docker-compose.yml");
    let creator = compose_service(&compose, "lake-container");
    let image = creator.iter().find_map(|l| l.trim().strip_prefix("image: ")).expect("lake-container's image");
    assert!(image.starts_with("mcr.microsoft.com/azure-cli:"), "{image}");
    assert_eq!(compose_block(&creator, "depends_on:"), ["azurite:", "condition: service_started"]);
    // The service's lines, joined: its command is a bash script folded over several lines.
    let command = creator.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ");
    assert!(command.contains("command: - bash - -c - >-") && command.contains("&& exit 0"), "{command}");
    let create = command.find("az storage container create --name ").expect("az creates the container");
    let container = command[create..].split_whitespace().nth(5).unwrap();
    let connection = command.split_once("--connection-string \"").and_then(|(_, c)| c.split_once('"')).unwrap().0;
    let part = |name: &str| {
        connection.split(';').find_map(|p| p.strip_prefix(name)).unwrap_or_else(|| panic!("{name} in {connection}"))
    };
    assert_eq!(part("AccountName="), common::azurite::ACCOUNT);
    assert_eq!(part("AccountKey="), common::azurite::KEY);
    let endpoint = part("BlobEndpoint=");

    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/docker/tokentrail.toml");
    let serve = tokentrail::config::ServeConfig::load(Some(std::path::Path::new(config))).unwrap();
    let lake = serve.lake.expect("docker/tokentrail.toml archives to a lake");
    assert_eq!(lake.url, format!("{endpoint}/{container}"), "TokenTrail's lake is the container lake-container makes");
    let env = compose_env(&compose_service(&compose, "tokentrail"));

    let azurite = common::azurite::Azurite::start();
    assert!(azurite.create_container(container));
    let local = lake.url.replace("http://azurite:10000", &format!("http://127.0.0.1:{}", azurite.port()));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.duckdb");
    let db = db.to_str().unwrap();
    let sample = samples_dir().join("cosmos_dataplanerequests_eventhub_googlesecops.json");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_tokentrail"))
            .args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("runs");
        assert!(out.status.success(), "{args:?}: {}{}", text(&out.stdout), text(&out.stderr));
        text(&out.stdout)
    };
    run(&["ingest", "--db", db, sample.to_str().unwrap()]);
    run(&["detect", "--db", db]);
    let archived = run(&["archive", "--db", db, "--lake", &local]);
    assert!(archived.contains("read back and verified"), "{archived}");
    let verified = run(&["verify", "--db", db, "--lake", &local]);
    assert!(verified.starts_with("chain verified"), "{verified}");
}

#[test]
fn inventory_files_are_dated_as_told_and_history_only_moves_forward() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("inventory.duckdb");
    let db = db.to_str().unwrap();
    let file = "tests/fixtures/inventory/sql-role-assignment-list.json";
    let out = tokentrail(&["inventory", "--db", db, "--from-file", file, "--taken-at", "2026-11-01T00:00:00Z"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = tokentrail(&[
        "query",
        "--db",
        db,
        "--format",
        "csv",
        "SELECT min(valid_from)::VARCHAR FROM data_role_assignments",
    ]);
    assert!(text(&out.stdout).contains("2026-11-01 00:00:00"), "{}", text(&out.stdout));
    let older = tokentrail(&["inventory", "--db", db, "--from-file", file, "--taken-at", "2026-10-01T00:00:00Z"]);
    assert!(!older.status.success());
    assert!(text(&older.stderr).contains("history only moves forward"), "{}", text(&older.stderr));
    let future = tokentrail(&["inventory", "--db", db, "--from-file", file, "--taken-at", "2999-01-01T00:00:00Z"]);
    assert!(!future.status.success());
    assert!(text(&future.stderr).contains("in the future"), "{}", text(&future.stderr));
    let from_azure = tokentrail(&["inventory", "--db", db, "--taken-at", "2026-11-02T00:00:00Z"]);
    assert!(text(&from_azure.stderr).contains("--taken-at dates files"), "{}", text(&from_azure.stderr));
}
