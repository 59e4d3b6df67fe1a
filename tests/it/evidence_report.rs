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
use tokentrail::ingest::PipelineOptions;
use tokentrail::ingest::files::ingest_files;
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
    let mut writer = store.writer().unwrap();
    for (i, slice) in events.chunks(events.len().div_ceil(4)).enumerate() {
        let path = dir.join(format!("history-{i}.ndjson"));
        common::write_ndjson(&path, slice);
        let options = PipelineOptions { workers: 2, ..PipelineOptions::default() };
        let report = ingest_files(&store, &mut writer, &[path], options, indicatif::ProgressBar::hidden()).unwrap();
        assert!(report.failed.is_empty());
    }
    drop(writer);
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

/// The text of each page of a PDF, one line per text run, read through the ToUnicode map
/// of the font each run is set in (what a PDF reader extracts and searches).
fn pdf_pages(bytes: &[u8]) -> Vec<String> {
    use printpdf::lopdf::{Document, content::Content};
    let pdf = Document::load_mem(bytes).expect("a PDF lopdf reads");
    let mut pages = Vec::new();
    for (_, page) in pdf.get_pages() {
        let mut maps: HashMap<Vec<u8>, HashMap<u16, char>> = HashMap::new();
        let resolve = |o: &'_ printpdf::lopdf::Object| match o {
            printpdf::lopdf::Object::Reference(id) => pdf.get_object(*id).expect("a referenced object").clone(),
            other => other.clone(),
        };
        let page_dict = pdf.get_object(page).and_then(|o| o.as_dict()).expect("a page").clone();
        let resources = resolve(page_dict.get(b"Resources").expect("page resources"));
        let fonts = resolve(resources.as_dict().unwrap().get(b"Font").expect("page fonts"));
        for (name, font) in fonts.as_dict().unwrap().iter() {
            let (name, font) = (name.clone(), resolve(font).as_dict().expect("a font").clone());
            let reference = font.get(b"ToUnicode").and_then(|o| o.as_reference()).expect("every font has ToUnicode");
            let stream = pdf.get_object(reference).and_then(|o| o.as_stream()).expect("a ToUnicode stream");
            let data = stream.decompressed_content().unwrap_or_else(|_| stream.content.clone());
            let mut map = HashMap::new();
            for line in String::from_utf8_lossy(&data).lines() {
                let hex = |t: &str| t.strip_prefix('<').and_then(|t| t.strip_suffix('>')).map(str::to_string);
                let parts: Vec<String> = line.split_whitespace().filter_map(hex).collect();
                if let [g, u] = &parts[..]
                    && let (Ok(g), Ok(u)) = (u16::from_str_radix(g, 16), u32::from_str_radix(u, 16))
                    && let Some(c) = char::from_u32(u)
                {
                    map.insert(g, c);
                }
            }
            maps.insert(name, map);
        }
        let content = Content::decode(&pdf.get_page_content(page).unwrap()).unwrap();
        let (mut font, mut text) = (Vec::new(), String::new());
        for op in content.operations {
            match op.operator.as_str() {
                "Tf" => font = op.operands[0].as_name().unwrap().to_vec(),
                "Tj" => {
                    let glyphs = op.operands[0].as_str().unwrap();
                    for pair in glyphs.chunks(2) {
                        let gid = u16::from_be_bytes([pair[0], pair[1]]);
                        text.push(*maps[&font].get(&gid).unwrap_or_else(|| panic!("glyph {gid} has no Unicode")));
                    }
                    text.push('\n');
                }
                _ => {}
            }
        }
        pages.push(text);
    }
    pages
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
        let pages = pdf_pages(pdf);
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
