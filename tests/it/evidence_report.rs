//! The pack for people, as a pack holds it: generated traffic with its attack scenarios
//! ingested through the real pipeline, detection run, a finding acknowledged; a pack of
//! every criterion built by the library; then its report.html, report.pdf and
//! controls.csv read back as an auditor would (the PDF's text through its fonts'
//! ToUnicode maps, the CSV with a CSV reader) and checked against the pack's own files.

use crate::common;

use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use tokentrail::evidence::pack::{self, PackRequest};
use tokentrail::evidence::sign::{self, PackKey};
use tokentrail::evidence::{Budget, Criterion, GeneratedBy, Period};
use tokentrail::rules::findings::{Status, set_status};
use tokentrail::rules::{DetectionConfig, Detector};
use tokentrail::store::{Store, StoreOptions};
use tokentrail::synth::{Generator, Scenario, Tenant};

fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-03-03T00:00:00Z").unwrap().with_timezone(&Utc)
}

/// Every file of a pack built from a fresh store, by name, and the rule catalogue used.
fn build(dir: &Path) -> (HashMap<String, Vec<u8>>, usize) {
    let db = dir.join("report.duckdb");
    let store = Store::open(&db, &StoreOptions::default()).unwrap();
    let (events, _) =
        Generator::new(Tenant::new(11), 11).history(start(), start() + Duration::days(2), Scenario::all());
    common::ingest_in_files(&store, dir, "history", &events, 4);
    let (detector, problems) = Detector::open(&store, &DetectionConfig::default()).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    detector.evaluate_after_commit(&store).unwrap();
    let first: i64 = store.connection().unwrap().query_row("SELECT min(id) FROM findings", [], |r| r.get(0)).unwrap();
    set_status(&store, first, Status::Acknowledged, "Ann Responder (oid a tid t)", "looking").unwrap();

    let key = PackKey::load_or_create(&sign::key_path(&db, None), true).unwrap();
    let rules = tokentrail::rules::rule::load(None).0;
    let request = PackRequest {
        criteria: Criterion::ALL.to_vec(),
        period: Period::new(start(), start() + Duration::days(2)).unwrap(),
        generated_by: GeneratedBy {
            oid: Some("oid-test".into()),
            tid: Some("tid-test".into()),
            name: "Test Auditor".into(),
        },
        rules: &rules,
        budget: Budget::unlimited(),
        expected: Vec::new(),
        development_signer: false,
        removal_hours: 24,
        lake: None,
    };
    let out = dir.join("pack.zip");
    pack::build_file(&store, &key, &request, &out, &|_, _, _| {}).unwrap();
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&out).unwrap()).unwrap();
    let files = (0..archive.len())
        .map(|i| {
            let mut entry = archive.by_index(i).unwrap();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            (entry.name().to_string(), bytes)
        })
        .collect();
    (files, rules.len())
}

/// A principal with a name in the pack's principals CSV: (id, name).
fn named_principal(files: &HashMap<String, Vec<u8>>) -> (String, String) {
    let (_, csv) = files.iter().find(|(n, _)| n.starts_with("CC6.2-CC6.3/principals_") && n.ends_with(".csv")).unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_slice());
    let headers = reader.headers().unwrap().clone();
    let at = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (id, name) = (at("principal_id"), at("principal_name"));
    reader
        .records()
        .map(Result::unwrap)
        .find(|r| !r[name].is_empty() && r[name].is_ascii() && !r[name].starts_with('\''))
        .map(|r| (r[id].to_string(), r[name].to_string()))
        .expect("a principal with a name")
}

#[test]
fn report_files_read_as_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let (files, rule_count) = build(dir.path());
    let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let demo = manifest.get("demo").and_then(|d| d.as_str()).filter(|d| !d.is_empty());
    let listed: Vec<&str> = manifest["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    let populations: Vec<&str> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["format"] == "csv" && !f["population"].is_null())
        .map(|f| f["population"].as_str().unwrap())
        .collect();
    let (id, name) = named_principal(&files);
    let beside = format!("{name} ({}…)", &id[..8]);

    // report.html: page 1 is the summary; names beside ids; headers in words; SQL at the end.
    let html = String::from_utf8(files["report.html"].clone()).unwrap();
    let appendix = html.find("Appendix: files, SQL, parameters and hashes").expect("an appendix");
    let summary = &html[..html.find(r#"<section class="criterion">"#).unwrap()];
    for expected in [
        "SOC 2 evidence report",
        "3 March 2025 00:00 to 5 March 2025 00:00 UTC",
        "Cosmos DB accounts",
        "Results by criterion",
    ] {
        assert!(summary.contains(expected), "the summary lacks {expected:?}");
    }
    for code in ["CC6.1", "CC6.2-CC6.3", "CC7.2", "CC7.3-CC7.4", "Tool use"] {
        assert!(summary.contains(&format!(r#"<td class="code">{code}</td>"#)), "no line for {code}");
    }
    assert!(summary.contains("ingest batches verified; no row was changed, added or removed since ingest."));
    assert_eq!(
        summary.contains(r#"class="banner""#),
        demo.is_some(),
        "the demo banner shows iff the manifest says demo"
    );
    assert!(html.contains(&beside), "{beside} not in report.html");
    let headers: Vec<&str> = html.split("<th>").skip(1).map(|h| &h[..h.find("</th>").unwrap()]).collect();
    assert!(headers.contains(&"Minutes to respond") && headers.contains(&"Principal"), "{headers:?}");
    assert!(headers.iter().all(|h| !h.contains('_')), "code names as headers: {headers:?}");
    assert!(html.find("SELECT").unwrap() > appendix, "SQL before the appendix");
    let hashes = |text: &str| text.split(|c: char| !c.is_ascii_hexdigit()).filter(|w| w.len() == 64).count();
    assert_eq!(hashes(summary), 0, "no SHA-256 on page 1");
    assert!(hashes(&html[appendix..]) >= populations.len() * 2, "every file's SHA-256 in the appendix");

    // The manifest lists the report's files, so the signature covers them.
    for path in ["report.html", "report.pdf", "controls.csv"] {
        assert!(listed.contains(&path), "{path} not in the manifest");
    }

    // report.pdf: the same summary on page 1, page numbers, names beside ids, SQL at the end.
    {
        let pdf = &files["report.pdf"];
        assert!(pdf.starts_with(b"%PDF-"));
        let pages = tokentrail::evidence::pdf::page_texts(pdf);
        let total = pages.len();
        assert!((4..=40).contains(&total), "{total} pages");
        let page1 = pages[0].replace('\n', " ");
        for expected in [
            "SOC 2 evidence report",
            "Results by criterion",
            "ingest batches verified; no row was changed, added or removed since ingest.",
            &format!("page 1 of {total}"),
        ] {
            assert!(page1.contains(expected), "PDF page 1 lacks {expected:?}:\n{}", pages[0]);
        }
        assert_eq!(page1.contains("DEMO PACK"), demo.is_some());
        let all = pages.join("\n").replace('\n', " ");
        assert!(all.contains(&beside), "{beside} not in report.pdf");
        let sql = pages.iter().position(|p| p.contains("SELECT")).unwrap();
        let appendix = pages.iter().position(|p| p.contains("Appendix: files, SQL")).unwrap();
        let body = pages[..appendix].join(" ").replace('\n', " ");
        assert!(body.contains("Minutes to respond") && !body.contains("minutes_to_respond"));
        assert!(sql >= appendix);
    }

    // controls.csv: one row per population and per rule, each naming a file of the pack.
    {
        let mut reader = csv::Reader::from_reader(files["controls.csv"].as_slice());
        let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        let kinds = |k: &str| records.iter().filter(|r| &r[3] == k).count();
        assert_eq!(kinds("population"), populations.len());
        assert_eq!(kinds("detection rule"), rule_count);
        for population in &populations {
            let row = records.iter().find(|r| &r[2] == *population).unwrap();
            assert!(files.contains_key(&row[5]), "controls.csv names {} which is not in the pack", &row[5]);
        }
    }
}
