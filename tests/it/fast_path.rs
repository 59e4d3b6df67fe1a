//! The fast path for Cosmos DB records (`src/record/fast.rs`) against the lenient
//! reader: on every input below, both must give identical rows in all four tables
//! (typed, raw and quarantined, reasons included). Inputs: the public samples,
//! generated traffic of every kind, and Cosmos records mutated in every way the fast
//! path must hand over to the lenient reader (escapes, other key order or casing,
//! numbers as numbers, spellings of null, missing fields, duplicates, broken JSON).

use arrow::record_batch::RecordBatch;
use chrono::{TimeZone, Utc};
use std::path::Path;
use tokentrail::record::{Origin, Readers, Record, fast, parse_unit_with};
use tokentrail::store::rows::{Rows, TableBatches};

/// Every table's batches after reading `units` with `readers`.
fn read(readers: Readers, units: &[Vec<u8>]) -> TableBatches {
    let mut rows = Rows::new(1_700_000_000_000_000);
    for (line, unit) in (1..).zip(units) {
        let origin = Origin { source: "test".into(), line: Some(line), ..Origin::default() };
        parse_unit_with(readers, unit, &origin, &mut rows);
    }
    let mut batches = TableBatches::default();
    batches.take_from(&mut rows);
    batches
}

fn describe(tables: &TableBatches) -> String {
    let show = |b: &[RecordBatch]| {
        arrow::util::pretty::pretty_format_batches(b).map_or_else(|e| e.to_string(), |t| t.to_string())
    };
    format!(
        "cosmos:\n{}\nsignins:\n{}\nraw:\n{}\nquarantine:\n{}",
        show(&tables.cosmos),
        show(&tables.signins),
        show(&tables.raw),
        show(&tables.quarantine)
    )
}

/// Both readers give the same rows for `units`, compared unit by unit so that a
/// failure names the input. Returns how many records the fast path read itself (not
/// handed to the lenient reader), as `fast::records_read` counts them.
fn assert_same_rows(what: &str, units: &[Vec<u8>]) -> usize {
    let mut fast_hits = 0;
    for (i, unit) in units.iter().enumerate() {
        let one = std::slice::from_ref(unit);
        let before = fast::records_read();
        let fast = read(Readers::FastThenLenient, one);
        fast_hits += (fast::records_read() - before) as usize;
        let lenient = read(Readers::LenientOnly, one);
        let same = fast.cosmos == lenient.cosmos
            && fast.signins == lenient.signins
            && fast.raw == lenient.raw
            && fast.quarantine == lenient.quarantine;
        assert!(
            same,
            "{what}, unit {i}: {}\n--- fast path ---\n{}\n--- lenient ---\n{}",
            String::from_utf8_lossy(unit),
            describe(&fast),
            describe(&lenient)
        );
        if let Ok(text) = std::str::from_utf8(unit.trim_ascii())
            && let Some(record) = fast::cosmos_record(text)
        {
            // The same Record, field by field, not only the same rows.
            let lenient: Record =
                serde_json::from_str(text).expect("the lenient reader reads what the fast path reads");
            assert_eq!(format!("{record:?}"), format!("{lenient:?}"), "{what}, unit {i}");
        }
    }
    fast_hits
}

fn lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect()
}

/// Cosmos records the way the benchmark writes them (Azure's field order).
fn generated_cosmos(n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let end = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    tokentrail::synth::write_cosmos_ndjson_until(&mut out, n, 7, end).unwrap();
    lines(&out).into_iter().filter(|l| !l.is_empty()).collect()
}

/// Two days of mixed traffic with every scenario, as `tokentrail generate` writes it
/// (keys sorted), one record per line.
fn generated_mixed() -> Vec<Vec<u8>> {
    use tokentrail::synth::{Generator, Scenario, Tenant};
    let to = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let (events, _) = Generator::new(Tenant::new(3), 3).history(to - chrono::Duration::days(2), to, Scenario::all());
    events.iter().map(|e| serde_json::to_vec(&e.record).unwrap()).collect()
}

#[test]
fn public_samples_give_the_same_rows() {
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/samples")];
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/samples/public");
    if shared.is_dir() {
        dirs.push(shared);
    }
    let mut fast_hits = 0;
    for dir in dirs {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if !matches!(path.extension().and_then(|e| e.to_str()), Some("json" | "ndjson")) {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            // Whole (a document) and line by line (NDJSON).
            let what = path.display().to_string();
            fast_hits += assert_same_rows(&what, std::slice::from_ref(&bytes));
            fast_hits += assert_same_rows(&what, &lines(&bytes));
        }
    }
    // The Event Hubs sample is in Azure's own layout; the docs sample has spaces.
    assert!(fast_hits >= 2, "the fast path read {fast_hits} sample records");
}

#[test]
fn generated_traffic_gives_the_same_rows_and_takes_the_fast_path() {
    let cosmos = generated_cosmos(3_000);
    assert_eq!(assert_same_rows("generated cosmos", &cosmos), cosmos.len(), "every generated request is fast");
    let mixed = generated_mixed();
    let requests = mixed.iter().filter(|l| String::from_utf8_lossy(l).contains("\"DataPlaneRequests\"")).count();
    assert!(requests > 1000 && requests < mixed.len(), "{requests} of {}", mixed.len());
    // Sorted keys are another order; sign-ins and raw records go the lenient way.
    assert_eq!(assert_same_rows("generated mixed", &mixed), requests);
    // The same records in envelopes and arrays.
    let envelope = |items: &[Vec<u8>]| {
        let joined = items.iter().map(|i| String::from_utf8_lossy(i)).collect::<Vec<_>>().join(",");
        (format!("{{\"records\":[{joined}]}}").into_bytes(), format!("[{joined}]").into_bytes())
    };
    for group in mixed.chunks(97).take(20) {
        let (env, array) = envelope(group);
        assert_same_rows("envelope", &[env, array]);
    }
}

/// Ways to change one Cosmos record: each is either still read by the fast path (and
/// must mean the same) or handed to the lenient reader (and must come out as before).
fn mutations(record: &str) -> Vec<String> {
    let mut out = Vec::new();
    let replaced = |from: &str, to: &str| record.contains(from).then(|| record.replacen(from, to, 1));
    // Escapes, in values and keys.
    out.extend(replaced("\"East US\"", "\"East\\u0020US\""));
    out.extend(replaced("\"/dbs/", "\"\\/dbs/"));
    out.extend(replaced("\"Gateway\"", "\"Gate\\\"way\""));
    out.extend(replaced("\"time\"", "\"ti\\u006de\""));
    out.extend(replaced("\"statusCode\"", "\"status\\u0043ode\""));
    // Other casing of keys and values.
    out.extend(replaced("\"category\"", "\"Category\""));
    out.extend(replaced("\"time\"", "\"Time\""));
    out.extend(replaced("\"properties\"", "\"Properties\""));
    out.extend(replaced("\"statusCode\"", "\"StatusCode\""));
    out.extend(replaced("\"aadPrincipalId\"", "\"AADPRINCIPALID\""));
    out.extend(replaced("\"DataPlaneRequests\"", "\"dataplanerequests\""));
    out.extend(replaced("\"DataPlaneRequests\"", "\" DataPlaneRequests \""));
    out.extend(replaced("\"DataPlaneRequests\"", "\"QueryRuntimeStatistics\""));
    out.extend(replaced("\"DataPlaneRequests\"", "\"SignInLogs\""));
    out.extend(replaced("\"category\":\"DataPlaneRequests\",", ""));
    // Numbers as numbers, odd numeric strings, out of range.
    out.extend(replaced("\"statusCode\":\"200\"", "\"statusCode\":200"));
    out.extend(replaced("\"statusCode\":\"200\"", "\"statusCode\":200.0"));
    out.extend(replaced("\"statusCode\":\"200\"", "\"statusCode\":\"200.000000\""));
    out.extend(replaced("\"statusCode\":\"200\"", "\"statusCode\":\" 200 \""));
    out.extend(replaced("\"statusCode\":\"200\"", "\"statusCode\":\"two hundred\""));
    out.extend(replaced("\"statusCode\":\"200\"", "\"statusCode\":\"99999999999\""));
    out.extend(replaced("\"statusCode\":\"200\"", "\"statusCode\":\"200.5\""));
    out.extend(replaced("\"statusCode\":\"200\"", "\"statusCode\":true"));
    out.extend(replaced("\"duration\":\"", "\"duration\":\"1e400"));
    out.extend(replaced("\"duration\":\"", "\"duration\":\"-"));
    out.extend(replaced("\"duration\":\"", "\"duration\":\"NaN"));
    out.extend(replaced("\"duration\":\"", "\"duration\":\"inf"));
    out.extend(replaced("\"requestCharge\":\"", "\"requestCharge\":\"+"));
    out.extend(replaced("\"requestLength\":\"", "\"requestLength\":\"1"));
    out.extend(replaced("\"requestLength\":\"", "\"requestLength\":\"0x"));
    out.extend(replaced("\"responseLength\":\"", "\"responseLength\":\"1.0000000"));
    // Spellings of nothing.
    for field in ["clientIpAddress", "statusCode", "duration", "aadPrincipalId", "userAgent"] {
        for nothing in ["\"&lt;null&gt;\"", "\"<null>\"", "\"\"", "\"  \"", "\"null\"", "null", "{}", "[]"] {
            if let Some(start) = record.find(&format!("\"{field}\":")) {
                let value_start = start + field.len() + 3;
                let value_end = value_start + 1 + record[value_start + 1..].find('"').unwrap() + 1;
                out.push(format!("{}{nothing}{}", &record[..value_start], &record[value_end..]));
            }
        }
    }
    out.extend(replaced("\"time\":\"", "\"time\":\"&lt;null&gt;"));
    // Time in other shapes, or none.
    if let Some(start) = record.find("\"time\":\"") {
        let value_start = start + 8;
        let value_end = value_start + record[value_start..].find('"').unwrap();
        for time in
            ["11/14/2025 1:48:53 AM", "Fri, 23 Jun 2017 19:29:50.266 GMT", "2024-01-01T00:00:00-05:00", "soon", ""]
        {
            out.push(format!("{}{time}{}", &record[..value_start], &record[value_end..]));
        }
        out.push(format!("{}{}", &record[..start], &record[value_end + 2..]));
    }
    // Missing and extra fields, repeated keys, other nesting.
    out.extend(replaced("\"properties\":{", "\"properties\":{},\"x\":{"));
    out.extend(replaced("\"properties\":{", "\"operationVersion\":\"1.0\",\"properties\":{"));
    out.extend(replaced("\"properties\":{", "\"Level\":4,\"properties\":{"));
    out.extend(replaced("\"properties\":{", "\"level\":\"Informational\",\"properties\":{"));
    out.extend(replaced("\"properties\":{", "\"identity\":{\"claim\":{}},\"properties\":{"));
    out.extend(replaced("\"properties\":{", "\"durationMs\":\"12\",\"properties\":{"));
    out.extend(replaced("\"properties\":{", "\"durationMs\":12,\"properties\":{"));
    out.extend(replaced("\"properties\":{", "\"callerIpAddress\":\"198.51.100.9\",\"properties\":{"));
    out.extend(replaced(
        "\"properties\":{",
        "\"properties\":{\"statusCode\":\"404\",\"extraField\":\"1\"},\"properties\":{",
    ));
    out.extend(replaced("\"properties\":{", "\"properties\":{\"statusCode\":\"404\"},\"properties\":{"));
    out.extend(replaced("\"properties\":{", "\"properties\":{\"statusCode\":\"404\","));
    out.extend(replaced("\"statusCode\":", "\"statusCode\":\"500\",\"statusCode\":"));
    out.extend(replaced("\"properties\":{", "\"properties\":{\"id\":\"sign-in id\","));
    out.extend(replaced("\"properties\":{", "\"properties\":null,\"x\":{"));
    out.extend(replaced("\"properties\":{", "\"properties\":\"text\",\"x\":{"));
    out.extend(replaced("\"properties\":{", "\"records\":[],\"x\":{"));
    if let Some(start) = record.find("\"properties\":{") {
        let end = record.rfind('}').unwrap();
        out.push(format!("{}\"properties\":{{}}{}", &record[..start], &record[end..]));
    }
    // Whitespace, other key order, unicode.
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(record) {
        out.push(serde_json::to_string_pretty(&value).unwrap());
        out.push(serde_json::to_string(&value).unwrap()); // keys sorted
    }
    out.push(
        record.replace("\":\"", "\" : \"").replace("\",\"", "\" ,\n\t\"").replace('{', "{ ").replace('}', "\r\n}"),
    );
    out.extend(replaced("\"East US\"", "\"Ostküste 東部 🚀\""));
    out.extend(replaced("\"Gateway\"", "\"Gate\tway\"")); // a raw tab: not JSON
    out.extend(replaced("\"Gateway\"", "\"Gate\u{1}way\""));
    out.extend(replaced("\"Gateway\"", "\"Gate\u{7f}way\""));
    // Broken JSON: trailing bytes, missing commas and brackets, truncation anywhere.
    out.push(format!("{record}x"));
    out.push(format!("{record}}}"));
    out.push(format!("{record},"));
    out.push(format!("{record} {record}"));
    out.push(format!("[{record}]"));
    out.push(format!("[{record},]"));
    out.extend(replaced(",\"operationName\"", "\"operationName\""));
    out.extend(replaced("\",\"", "\",,\""));
    out.extend(replaced("\":\"", "\"\""));
    out.extend(replaced("{\"", "{,\""));
    for cut in (1..record.len()).step_by(7) {
        if record.is_char_boundary(cut) {
            out.push(record[..cut].to_owned());
        }
    }
    out
}

#[test]
fn mutated_records_give_the_same_rows() {
    let mut bases: Vec<String> =
        generated_cosmos(40).into_iter().map(|l| String::from_utf8(l).unwrap()).step_by(4).collect();
    bases.push(
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/samples/cosmos_dataplanerequests_eventhub_googlesecops.json"),
        )
        .unwrap()
        .trim()
        .strip_prefix("{\"records\":[")
        .and_then(|s| s.strip_suffix("]}"))
        .expect("one record in an envelope")
        .to_owned(),
    );
    let mut total = 0;
    let mut fast_hits = 0;
    for base in &bases {
        assert!(fast::cosmos_record(base).is_some(), "the base record takes the fast path: {base}");
        let units: Vec<Vec<u8>> = mutations(base).into_iter().map(String::into_bytes).collect();
        total += units.len();
        fast_hits += assert_same_rows("mutation", &units);
        // Also inside an envelope, where a bad record must not spoil the others.
        let valid = units.iter().filter(|u| serde_json::from_slice::<serde::de::IgnoredAny>(u).is_ok());
        let joined = valid.map(|u| String::from_utf8_lossy(u)).collect::<Vec<_>>().join(",");
        assert_same_rows("mutations in one envelope", &[format!("{{\"records\":[{base},{joined}]}}").into_bytes()]);
        // An envelope of records the fast path reads is read in one scan (no serde pass).
        let fast_units: Vec<&str> = units
            .iter()
            .filter_map(|u| std::str::from_utf8(u).ok())
            .filter(|u| fast::cosmos_record(u).is_some())
            .collect();
        let env = format!("{{\"records\":[{base},{}]}}", fast_units.join(","));
        assert_eq!(fast::cosmos_envelope(&env, 100_000).map(|r| r.len()), Some(fast_units.len() + 1), "{env}");
        assert_same_rows("fast-path mutations in one envelope", &[env.into_bytes()]);
    }
    assert!(total > 1000, "{total} mutations");
    // Some mutations keep the shape (whitespace, order, unicode, blanks): not all fall back.
    assert!(fast_hits > bases.len() * 10 && fast_hits < total / 2, "{fast_hits} of {total} took the fast path");
}

/// The other shapes of issue 31 (Graph signIn objects and pages, Log Analytics rows,
/// older Cosmos DB records) and Cosmos records with its quirks (an empty ARM segment,
/// ids that are not GUIDs, in Azure's own layout so the fast path reads them): both
/// readers give the same rows.
#[test]
fn other_shapes_and_issue_31_quirks_give_the_same_rows() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/formats");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !matches!(path.extension().and_then(|e| e.to_str()), Some("json" | "ndjson")) {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let what = path.display().to_string();
        assert_same_rows(&what, std::slice::from_ref(&bytes));
        assert_same_rows(&what, &lines(&bytes));
    }
    let azure = r#"{ "time": "2024-07-30T17:08:01.3688943Z", "resourceId": "/SUBSCRIPTIONS//RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.DOCUMENTDB/DATABASEACCOUNTS/ACME", "category": "DataPlaneRequests", "operationName": "Read", "properties": {"activityId": "66a0c647-af38-4b8d-a92a-c48a805d6460","statusCode": "200","aadPrincipalId": "ParseMe","subscriptionId": "<USER ID>","requestResourceId": "/dbs/orders/colls/lines/docs"}}"#;
    let bare =
        azure.replace("/SUBSCRIPTIONS//RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.DOCUMENTDB/DATABASEACCOUNTS/ACME", "acme");
    let units = [azure.as_bytes().to_vec(), bare.into_bytes()];
    assert_eq!(assert_same_rows("issue 31 quirks", &units), 2, "Azure's layout takes the fast path");
}

/// A small deterministic generator for the layouts below (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// How a record is written again: what other exporters and re-serialisers do to it.
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// Spaces, tabs, newlines and CRLFs between any two tokens.
    whitespace: bool,
    /// Keys in a random order at every level.
    shuffle: bool,
    /// Keys in another casing (the lenient reader matches keys in any casing).
    casing: bool,
    /// `\uXXXX` (surrogate pairs beyond the BMP), `\/` and the short escapes in keys
    /// and values.
    escapes: bool,
    /// Keys the reader does not know, with values of every JSON type.
    extra: bool,
    /// Keys written twice: first `null`, `""`, `"0"` or `{}`, then the value.
    duplicates: bool,
    /// Keys left out (never `category`, without which no record is a request).
    missing: bool,
}

const EXTRA_VALUES: &[&str] = &[
    "1",
    "-2.5e-3",
    "0",
    "1E+30",
    "true",
    "false",
    "null",
    "\"\"",
    "\"text with \\\" and \\\\ and \\u00e9 and \\ud83d\\ude80\"",
    "[]",
    "{}",
    "[1, {\"a\": [null, \"b\"]}, -0.5]",
    "{\"nested\": {\"deep\": [\"x\", {\"y\": false}]}}",
];

fn space(layout: Layout, rng: &mut Rng, out: &mut String) {
    if layout.whitespace {
        for _ in 0..rng.below(3) {
            out.push_str([" ", "\t", "\n", "\r\n", "  "][rng.below(5)]);
        }
    }
}

fn write_string(text: &str, layout: Layout, rng: &mut Rng, out: &mut String) {
    out.push('"');
    let escaping = layout.escapes && rng.chance(50);
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            '/' if escaping && rng.chance(50) => out.push_str("\\/"),
            c if escaping && rng.chance(30) => {
                for unit in c.encode_utf16(&mut [0; 2]) {
                    out.push_str(&if rng.chance(50) { format!("\\u{unit:04x}") } else { format!("\\u{unit:04X}") });
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn other_casing(key: &str, rng: &mut Rng) -> String {
    match rng.below(3) {
        0 => key.to_ascii_uppercase(),
        1 => key[..1].to_ascii_uppercase() + &key[1..],
        _ => key.to_ascii_lowercase(),
    }
}

/// `value` written again in `layout`.
fn relayout(value: &serde_json::Value, layout: Layout, rng: &mut Rng, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            // (key, its value; `None` for an extra key or a duplicate before the value)
            let mut entries: Vec<(String, Option<&Value>)> = Vec::new();
            for (key, value) in map {
                if layout.missing && key != "category" && rng.chance(15) {
                    continue;
                }
                let key = if layout.casing && rng.chance(30) { other_casing(key, rng) } else { key.clone() };
                entries.push((key, Some(value)));
            }
            if layout.shuffle {
                for i in (1..entries.len()).rev() {
                    entries.swap(i, rng.below(i + 1));
                }
            }
            if layout.duplicates {
                for i in (0..entries.len()).rev() {
                    if rng.chance(20) {
                        entries.insert(i, (entries[i].0.clone(), None));
                    }
                }
            }
            if layout.extra {
                for n in 0..rng.below(3) {
                    let at = rng.below(entries.len() + 1);
                    entries.insert(at, (format!("x_extra{n}"), None));
                }
            }
            out.push('{');
            for (i, (key, value)) in entries.iter().enumerate() {
                space(layout, rng, out);
                if i > 0 {
                    out.push(',');
                    space(layout, rng, out);
                }
                write_string(key, layout, rng, out);
                space(layout, rng, out);
                out.push(':');
                space(layout, rng, out);
                match value {
                    Some(value) => relayout(value, layout, rng, out),
                    None if key.starts_with("x_extra") => out.push_str(EXTRA_VALUES[rng.below(EXTRA_VALUES.len())]),
                    // What a field may say before its real value: nothing, or a number.
                    None => out.push_str(match map.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)) {
                        Some((_, Value::Object(_))) => ["null", "{}"][rng.below(2)],
                        Some((k, _)) if k == "category" => ["null", "\"\""][rng.below(2)],
                        _ => ["null", "\"\"", "\"0\""][rng.below(3)],
                    }),
                }
            }
            space(layout, rng, out);
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                space(layout, rng, out);
                if i > 0 {
                    out.push(',');
                    space(layout, rng, out);
                }
                relayout(item, layout, rng, out);
            }
            space(layout, rng, out);
            out.push(']');
        }
        Value::String(text) => write_string(text, layout, rng, out),
        other => out.push_str(&other.to_string()),
    }
}

/// Generated Cosmos DB requests written again in every combination of the changes in
/// [`Layout`] (and as serde_json's pretty and compact, key-sorted, output): both readers
/// give the same rows, and the fast path reads every record itself, alone and in an
/// envelope; no layout sends a record to the lenient reader.
#[test]
fn any_layout_of_generated_records_takes_the_fast_path_with_the_same_rows() {
    let records: Vec<serde_json::Value> =
        generated_cosmos(120).iter().map(|line| serde_json::from_slice(line).unwrap()).collect();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let check = |what: &str, units: Vec<Vec<u8>>| {
        assert_eq!(assert_same_rows(what, &units), units.len(), "{what}: every record takes the fast path");
        let joined: Vec<String> = units.iter().map(|u| String::from_utf8_lossy(u).into_owned()).collect();
        let envelope = format!("{{ \"records\" :\n[ {} ]\t}}", joined.join(" ,\r\n "));
        assert_eq!(assert_same_rows(what, &[envelope.into_bytes()]), units.len(), "{what}, in an envelope");
    };
    check("pretty", records.iter().map(|r| serde_json::to_vec_pretty(r).unwrap()).collect());
    check("sorted keys", records.iter().map(|r| serde_json::to_vec(r).unwrap()).collect());
    for bits in 0..(1u32 << 7) {
        let layout = Layout {
            whitespace: bits & 1 != 0,
            shuffle: bits & 2 != 0,
            casing: bits & 4 != 0,
            escapes: bits & 8 != 0,
            extra: bits & 16 != 0,
            duplicates: bits & 32 != 0,
            missing: bits & 64 != 0,
        };
        let units = records
            .iter()
            .step_by(3)
            .map(|record| {
                let mut out = String::new();
                relayout(record, layout, &mut rng, &mut out);
                out.into_bytes()
            })
            .collect();
        check(&format!("{layout:?}"), units);
    }
}
