//! Rules over everyone's counts (`src/lake/fleet.rs`, the rules lease in
//! `src/source/eventhubs/lease.rs`): three real `tokentrail serve` share a balanced hub of
//! requests through the test hub, each reads every sign-in from a broadcast hub, the
//! checkpoints, the rules lease and the shared lake in a real Azurite, alerts to a real
//! webhook receiver. Their findings are compared with one instance's over the same records.
//!
//! A submodule of `alerts` (its receiver is reused): `cargo test --release --test it alerts::fleet::`.

use super::claims::{acked_alerts, sharing_serve};
use super::*;
use crate::common::azurite::Azurite;
use crate::eventhubs::{HUB, Service as Serve};
use chrono::{TimeDelta, Utc};
use tokentrail::auth::Role;
use tokentrail::synth::{Generator, Scenario, Tenant};
use tokentrail_testhub::{HubSpec, TestHub};

const REQUESTS: &str = "balanced-requests";
const PARTITIONS: u32 = 8;

/// The rules that run on the lease holder only.
fn holder_rules() -> BTreeSet<&'static str> {
    tokentrail::rules::FLEET_RULES.into_iter().chain(tokentrail::rules::HOLDER_RULES).collect()
}

/// (rule, principal, entity) → evidence count of the open findings of the holder's rules in `rows`.
type Found = BTreeMap<(String, String, String), i64>;

fn found(rows: &[Value]) -> Found {
    let rules = holder_rules();
    rows.iter()
        .filter(|f| rules.contains(f["rule_id"].as_str().unwrap_or_default()))
        .map(|f| {
            let text = |k: &str| f[k].as_str().unwrap_or_default().to_owned();
            ((text("rule_id"), text("principal_id"), text("entity")), f["count"].as_i64().unwrap_or(0))
        })
        .collect()
}

/// The open findings an instance's API lists (`None` while it is not answering).
fn open_findings(service: &Serve) -> Option<Vec<Value>> {
    let page = service.get("/api/findings?status=open&limit=500")?;
    Some(page["rows"].as_array()?.clone())
}

/// What one instance finds in `records` alone: ingested from a file, then detected.
fn one_instance(dir: &Path, records: &Path) -> Found {
    let store = Store::open(&dir.join("one.duckdb"), &StoreOptions::default()).unwrap();
    let mut writer = store.writer().unwrap();
    let options = PipelineOptions { workers: 1, ..PipelineOptions::default() };
    let report =
        ingest_files(&store, &mut writer, &[records.to_path_buf()], options, indicatif::ProgressBar::hidden()).unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let (detector, problems) = Detector::open(&store, &DetectionConfig::default()).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let evaluation = detector.evaluate_after_commit(&store).unwrap();
    assert!(evaluation.failures.is_empty(), "{:?}", evaluation.failures);
    let conn = store.connection().unwrap();
    let rows: Vec<Value> = conn
        .prepare("SELECT rule_id, coalesce(principal_id, ''), entity, count FROM findings WHERE status = 'open'")
        .unwrap()
        .query_map([], |r| {
            Ok(json!({ "rule_id": r.get::<_, String>(0)?, "principal_id": r.get::<_, String>(1)?,
                       "entity": r.get::<_, String>(2)?, "count": r.get::<_, i64>(3)? }))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    found(&rows)
}

fn holder(service: &Serve) -> Option<(bool, Option<String>)> {
    let lease = service.status()?["shared_lake"]["rules_lease"].clone();
    Some((lease["held_here"].as_bool()?, lease["holder"].as_str().map(str::to_owned)))
}

#[test]
fn three_instances_find_what_one_finds_over_everyones_counts_and_a_killed_holder_alerts_nothing_twice() {
    let root = tempfile::tempdir().unwrap();
    // Six days of a realistic tenant with the attacks whose rules add up a principal's
    // requests (spread over every partition), judge one by what came before it (after
    // their three days of learning), or read sign-ins alone.
    let to = Utc::now() - TimeDelta::hours(1);
    let from = to - TimeDelta::days(6);
    let scenarios = [
        Scenario::BulkExport,
        Scenario::MassDelete,
        Scenario::PermissionProbing,
        Scenario::CollectionEnumeration,
        Scenario::ImpossibleTravel,
        Scenario::DistributedSpray,
        Scenario::KeyBasedAccess,
        Scenario::NewUserAgent,
        Scenario::KeysListedThenUsed,
    ];
    let (events, _) = Generator::new(Tenant::new(21), 9).history(from, to, &scenarios);
    let records = root.path().join("records.ndjson");
    tokentrail::synth::write_ndjson(std::fs::File::create(&records).unwrap(), &events).unwrap();
    let expected = one_instance(root.path(), &records);
    eprintln!("one instance finds: {expected:?}");
    let rules: BTreeSet<&str> = expected.keys().map(|k| k.0.as_str()).collect();
    for rule in [
        "data_volume_spike",
        "mass_delete",
        "permission_probing",
        "collection_enumeration",
        "key_auth_access",
        "new_user_agent",
        "listkeys_then_key_access",
    ] {
        assert!(rules.contains(rule), "one instance finds {rule}: {expected:?}");
    }

    let receiver = Receiver::start(Behaviour::Accept);
    let azurite = Azurite::start();
    assert!(azurite.create_container("checkpoints"));
    assert!(azurite.create_container("shared"));
    let hub = TestHub::start(&[HubSpec::new(HUB, 2), HubSpec::new(REQUESTS, PARTITIONS)]).unwrap();
    // Requests round-robin over the balanced hub's partitions (as Azure spreads them),
    // 20 a message; everything else on the broadcast hub every instance reads whole.
    let (requests, others): (Vec<_>, Vec<_>) = events.iter().partition(|e| e.category == "DataPlaneRequests");
    for (i, chunk) in requests.chunks(20).enumerate() {
        let chunk: Vec<_> = chunk.iter().map(|e| (*e).clone()).collect();
        let body = tokentrail::synth::envelope(&chunk).to_string().into_bytes();
        hub.append(REQUESTS, i as u32 % PARTITIONS, body);
    }
    for (i, chunk) in others.chunks(20).enumerate() {
        let chunk: Vec<_> = chunk.iter().map(|e| (*e).clone()).collect();
        hub.append(HUB, i as u32 % 2, tokentrail::synth::envelope(&chunk).to_string().into_bytes());
    }

    let mut services: Vec<Serve> = ["a", "b", "c"]
        .into_iter()
        .map(|name| {
            let balance = (REQUESTS, "segment_interval_ms = 300\n");
            sharing_serve(root.path(), name, &hub, &azurite, balance, "", &receiver)
        })
        .collect();
    services.iter_mut().for_each(Serve::start);

    // One holds the lease, and every instance's status says which.
    let mut leader = None;
    wait_for("one instance to hold the rules lease, named on every status page", Duration::from_secs(60), || {
        let seen: Vec<_> = services.iter().map(holder).collect();
        let held: Vec<usize> = (0..3).filter(|i| seen[*i].as_ref().is_some_and(|s| s.0)).collect();
        let named = seen.iter().all(|s| {
            s.as_ref().is_some_and(|s| s.1.is_some())
                && s.as_ref().map(|s| &s.1) == seen[held.first().copied().unwrap_or(0)].as_ref().map(|s| &s.1)
        });
        leader = held.first().copied();
        held.len() == 1 && named
    });
    let first = leader.unwrap();

    // The holder finds what one instance finds over all the records; the others find
    // none of these (their part of a principal's requests is not theirs to judge).
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let on_holder = open_findings(&services[first]).map(|rows| found(&rows));
        if on_holder.as_ref() == Some(&expected) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the holder's findings over everyone's counts: {on_holder:?}\nexpected (one instance): {expected:?}\n{}",
            services[first].log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // One UI: the others list the holder's findings too, each taken in from the holder
    // (src/lake/shared_findings.rs), none raised by their own rules.
    let holder_name = holder(&services[first]).unwrap().1.unwrap();
    for (i, service) in services.iter().enumerate().filter(|(i, _)| *i != first) {
        wait_for("the holder's findings listed on every instance", Duration::from_secs(60), || {
            open_findings(service).is_some_and(|rows| found(&rows) == expected)
        });
        let rules = holder_rules();
        for row in open_findings(service).unwrap().iter().filter(|f| rules.contains(f["rule_id"].as_str().unwrap())) {
            assert_eq!(row["raised_on"], holder_name.as_str(), "instance {i} took it in from the holder: {row}");
        }
        // Its status page says from whom it lists findings.
        let shared = service.status().unwrap()["shared_lake"]["findings"].clone();
        let from = shared["from_instances"].as_array().unwrap();
        let from_holder = from.iter().find(|r| r["instance"] == holder_name.as_str()).expect("the holder is listed");
        assert!(from_holder["findings"].as_i64().unwrap() >= expected.len() as i64, "{shared}");
    }
    // A finding's evidence is readable on the holder, whichever instance stored its rows.
    let rows = open_findings(&services[first]).unwrap();
    let delete = rows.iter().find(|f| f["rule_id"] == "mass_delete").unwrap();
    let detail = services[first].get(&format!("/api/findings/{}", delete["id"])).unwrap();
    let evidence = detail["evidence"].as_array().unwrap();
    assert!(!evidence.is_empty());
    for event in evidence {
        assert_eq!(event["evidence_table"], "fleet_requests", "{event}");
        assert_eq!(event["row"]["operation"], "Delete", "{event}");
    }
    let sources: BTreeSet<String> = evidence.iter().map(|e| e["row"]["partition"].to_string()).collect();
    assert!(sources.len() > 1, "the deletes came over several partitions: {sources:?}");

    // One UI: any instance's search and principal page answer for all three, each request
    // once (its own from DuckDB, the others' from its copy of the shared lake), over the
    // last day (every instance keeps a copy of the last two).
    let since = (to - TimeDelta::hours(24)).format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let one = Store::open(&root.path().join("one.duckdb"), &StoreOptions::default()).unwrap();
    let (total, busiest): (i64, String) = one
        .connection()
        .unwrap()
        .query_row(
            "SELECT (SELECT count(*) FROM cosmos_requests WHERE time >= CAST(?1 AS TIMESTAMPTZ)), \
             (SELECT principal_id FROM cosmos_requests WHERE time >= CAST(?1 AS TIMESTAMPTZ) \
              AND principal_id IS NOT NULL GROUP BY ALL ORDER BY count(*) DESC, principal_id LIMIT 1)",
            [&since],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    drop(one);
    let profile = |service: &Serve| service.get_as(Role::Responder, &format!("/api/principals/{busiest}?from={since}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let pages = loop {
        let pages: Vec<Option<Value>> = services
            .iter()
            .map(|s| s.get_as(Role::Responder, &format!("/api/search/requests?from={since}&limit=1")))
            .collect();
        if pages.iter().all(|p| p.as_ref().is_some_and(|p| p["total"] == total)) {
            break pages;
        }
        let totals: Vec<_> = pages.iter().map(|p| p.as_ref().map(|p| p["total"].clone())).collect();
        assert!(
            Instant::now() < deadline,
            "every instance's search answers {total} requests since {since}: {totals:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    for (i, page) in pages.iter().enumerate() {
        let page = page.as_ref().unwrap();
        let others = page["total_from_other_instances"].as_i64().unwrap();
        assert!(others > 0 && others < total, "instance {i} stored part of the requests itself: {page}");
    }
    // An instance still committing a partition read again from a lagging checkpoint
    // counts those events twice until its next fleet pass marks their copies `here`
    // (within a second or two): the pages must agree once that has run.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let profiles: Vec<Value> = services.iter().map(|s| profile(s).unwrap()).collect();
        assert!(!profiles[0]["data_access"].as_array().unwrap().is_empty(), "{}", profiles[0]);
        let same = |p: &Value| {
            p["data_access"] == profiles[0]["data_access"] && p["timeline_total"] == profiles[0]["timeline_total"]
        };
        if profiles.iter().all(same) {
            break;
        }
        if Instant::now() >= deadline {
            for (i, p) in profiles.iter().enumerate() {
                assert_eq!(p["data_access"], profiles[0]["data_access"], "instance {i}'s principal page");
                assert_eq!(p["timeline_total"], profiles[0]["timeline_total"], "instance {i}'s principal page");
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }

    // The holder is killed: another takes the lease once it expires and goes on from
    // where the last holder had got to (its first pass does not judge all history again).
    services[first].signal(libc::SIGKILL);
    let killed = Instant::now();
    let mut next = None;
    wait_for("another instance to take the rules lease and run its first pass", Duration::from_secs(60), || {
        next = (0..3).filter(|i| *i != first).find(|i| {
            holder(&services[*i]).is_some_and(|s| s.0)
                && crate::eventhubs::metric(&services[*i], "tokentrail_fleet_rule_passes_total").0 >= 1.0
        });
        next.is_some()
    });
    let next = next.unwrap();
    let next_name = holder(&services[next]).unwrap().1.unwrap();
    eprintln!("holder killed: the next holder's first pass ran {:?} later", killed.elapsed());
    let handed = services[next].status().unwrap()["shared_lake"]["rules_lease"].clone();
    assert!(handed["evaluated_through"].is_string(), "the new holder goes on from a time: {handed}");
    // Back, the killed instance still shows what it found; over the three, what one finds.
    services[first].start();
    wait_for("the killed instance back", Duration::from_secs(60), || open_findings(&services[first]).is_some());
    let mut union: Found = BTreeMap::new();
    for service in &services {
        for (key, count) in found(&open_findings(service).unwrap()) {
            let entry = union.entry(key).or_default();
            *entry = (*entry).max(count);
        }
    }
    assert_eq!(union, expected, "the instances' findings over everyone's counts, after the handover");
    wait_for("every finding alerted", Duration::from_secs(30), || {
        let alerted: BTreeSet<String> = acked_alerts(&receiver).into_iter().map(|a| a.1).collect();
        alerted.len() >= expected.len()
    });
    std::thread::sleep(Duration::from_secs(2)); // nothing more goes out
    let mut raised: BTreeMap<String, usize> = BTreeMap::new();
    for (_, fingerprint, change) in acked_alerts(&receiver) {
        if change == "raised" {
            *raised.entry(fingerprint).or_default() += 1;
        }
    }
    assert!(raised.values().all(|n| *n == 1), "each finding raised one alert across holders: {raised:?}");

    // One status across instances: a finding raised on one holder (the first, or the next
    // where it raised the finding again) is resolved on another instance while the raiser
    // is gone; the raiser, back, follows, and the `resolved` alert goes out once (from the
    // instance holding the finding's alert claim).
    let raisers = [(first, holder_name.clone()), (next, next_name)];
    let (other, raiser, taken) = raisers
        .iter()
        .find_map(|(raiser, name)| {
            (0..3).filter(|i| i != raiser).find_map(|i| {
                let rows = open_findings(&services[i])?;
                Some((i, *raiser, rows.into_iter().find(|f| f["raised_on"] == name.as_str())?))
            })
        })
        .expect("a finding raised on a holder, taken in on another instance");
    let fingerprint = taken["fingerprint"].as_str().unwrap().to_owned();
    services[raiser].signal(libc::SIGKILL);
    let (status, body) = services[other].post_as(
        Role::Responder,
        &format!("/api/findings/{}/resolve", taken["id"]),
        serde_json::json!({ "comment": "keys rotated; the holder is down" }),
    );
    assert_eq!(status, 200, "{body}");
    services[raiser].start();
    let status_of = |service: &Serve| -> Option<String> {
        let page = service.get("/api/findings?status=resolved&limit=500")?;
        let rows = page["rows"].as_array()?.clone();
        rows.iter().find(|f| f["fingerprint"] == fingerprint.as_str()).map(|f| f["status"].as_str().unwrap().to_owned())
    };
    wait_for("every instance lists it resolved", Duration::from_secs(60), || {
        services.iter().all(|s| status_of(s).as_deref() == Some("resolved"))
    });
    let resolved_alerts =
        || acked_alerts(&receiver).into_iter().filter(|a| a.1 == fingerprint && a.2 == "resolved").count();
    wait_for("the resolved alert", Duration::from_secs(30), || resolved_alerts() >= 1);
    std::thread::sleep(Duration::from_secs(2)); // nothing more goes out
    assert_eq!(resolved_alerts(), 1, "one resolved alert across instances");
    for service in services.iter_mut().filter(|s| s.status().is_some()) {
        service.stop();
    }

    // The evidence pack of the first holder traces each copied request to its event.
    let pack = root.path().join("pack.zip");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokentrail"))
        .args(["evidence", "--db", services[first].db.to_str().unwrap(), "--criteria", "CC7.2"])
        .args(["--from", &from.to_rfc3339(), "--to", &(to + TimeDelta::hours(1)).to_rfc3339(), "--out"])
        .arg(&pack)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&pack).unwrap()).unwrap();
    let names: Vec<String> = zip.file_names().map(str::to_owned).collect();
    let name = names.iter().find(|n| n.starts_with("CC7.2/finding_evidence_") && n.ends_with(".csv"));
    let name = name.unwrap_or_else(|| panic!("no CC7.2 finding evidence in the pack: {names:?}")).clone();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut zip.by_name(&name).unwrap(), &mut text).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let copied: Vec<&csv::StringRecord> =
        rows.iter().filter(|r| &r[column("evidence_table")] == "fleet_requests").collect();
    let deletes = expected.iter().find(|(k, _)| k.0 == "mass_delete").map(|(_, n)| *n).unwrap();
    assert!(copied.len() as i64 >= deletes, "{} copied requests in the pack", copied.len());
    for row in copied {
        for field in ["source", "partition", "sequence_number", "record_sha256", "event_id"] {
            assert!(!row[column(field)].is_empty(), "{field} of {row:?}");
        }
        assert!(!row[column("event_id")].starts_with("finding "), "traced to its event: {row:?}");
    }
}

/// One segment's claim as `hub_segments` records it, with `files` as its claim lists them.
fn record_segment(store: &Store, first: i64, files: &Value) {
    store
        .connection()
        .unwrap()
        .execute(
            "INSERT INTO hub_segments (source, partition, first_sequence, last_sequence, instance, ours, rows, claim, \
             recorded_at, first_time, last_time, files) VALUES ('eventhubs:ns/requests', '0', ?, ?, 'other-01020304', \
             false, 1, 'claim', now(), TIMESTAMPTZ '2026-01-01 10:00:00+00', TIMESTAMPTZ '2026-01-01 10:59:00+00', ?)",
            duckdb::params![first, first + 9, files.to_string()],
        )
        .unwrap();
}

#[test]
fn partial_counts_are_added_once_and_an_unreadable_changed_or_planted_file_holds_up_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("fleet.duckdb"), &StoreOptions::default()).unwrap();
    let lake_dir = dir.path().join("shared");
    let part = "hubs/ns/requests/table=activity_hours/partition=0";
    std::fs::create_dir_all(lake_dir.join(part)).unwrap();
    // A segment's partial counts as an instance writes them: one principal's hour.
    let good = format!("{part}/00000000000000000000-00000000000000000009-other-01020304-00000001.parquet");
    duckdb::Connection::open_in_memory()
        .unwrap()
        .execute_batch(&format!(
            "COPY (SELECT 'p1' AS subject, TIMESTAMPTZ '2026-01-01 10:00:00+00' AS hour, 5::BIGINT AS requests, \
             2::BIGINT AS read_requests, 100::BIGINT AS read_bytes, 3::BIGINT AS deletes, 0::BIGINT AS denied, \
             1::BIGINT AS metadata_requests, TIMESTAMPTZ '2026-01-01 10:01:00+00' AS first_request_time, \
             42::BIGINT AS first_request_row) TO '{}' (FORMAT parquet)",
            lake_dir.join(&good).display()
        ))
        .unwrap();
    let bytes = std::fs::read(lake_dir.join(&good)).unwrap();
    let sha = tokentrail::lake::sha256_hex(&bytes);
    let second = good.replace("00000001.parquet", "00000002.parquet");
    std::fs::write(lake_dir.join(&second), &bytes).unwrap();
    let garbage = good.replace("00000001.parquet", "00000003.parquet");
    std::fs::write(lake_dir.join(&garbage), b"\x00not parquet at all").unwrap();
    let file =
        |path: &str, sha256: &str| json!([{ "table": "activity_hours", "path": path, "rows": 1, "sha256": sha256 }]);

    record_segment(&store, 0, &file(&good, &sha));
    // Not Parquet (its digest is the claim's: whoever planted it wrote both).
    record_segment(&store, 10, &file(&garbage, &tokentrail::lake::sha256_hex(b"\x00not parquet at all")));
    // Changed since its claim was written.
    record_segment(&store, 20, &file(&second, &"0".repeat(64)));
    // A path out of the lake, and one of no segment.
    record_segment(&store, 30, &file("hubs/ns/requests/../../../../etc/passwd.parquet", &sha));
    record_segment(&store, 40, &file("/etc/passwd", &sha));

    let lake = tokentrail::lake::Lake::new(tokentrail::lake::Location::directory(&lake_dir).unwrap()).unwrap();
    let mut fleet =
        tokentrail::lake::fleet::Fleet::new(lake, &dir.path().join("cache"), "test-00000000".into()).unwrap();
    assert_eq!(fleet.load(&store).unwrap(), 1, "the readable segment is added up; the others hold up nothing");
    let counts = |store: &Store| -> (i64, i64, i64) {
        store
            .connection()
            .unwrap()
            .query_row(
                "SELECT requests, deletes, first_request_row FROM fleet_activity WHERE subject = 'p1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap()
    };
    assert_eq!(counts(&store), (5, 3, 42));
    let unloaded: i64 = store
        .connection()
        .unwrap()
        .query_row("SELECT count(*) FROM hub_segments WHERE NOT partials_loaded", [], |r| r.get(0))
        .unwrap();
    assert_eq!(unloaded, 4, "each bad segment stays unloaded, for the status page");
    // A later segment of the same hour adds to it; nothing is added twice.
    record_segment(&store, 50, &file(&second, &sha));
    assert_eq!(fleet.load(&store).unwrap(), 1);
    assert_eq!(counts(&store), (10, 6, 42));
    assert_eq!(fleet.load(&store).unwrap(), 0, "the bad ones wait a minute; the good ones are loaded once");
    assert_eq!(counts(&store), (10, 6, 42));
    assert!(!dir.path().join("cache").join("etc").exists());
}
