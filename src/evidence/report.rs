//! `report.html`: the pack for people. One self-contained page (no scripts, no outside
//! resources) that prints well: the period and who made it at the top of every printed
//! page, summary tables, simple inline SVG charts, and each population's first rows with
//! the SQL that made it. The CSV and Parquet files hold every row.

use super::csv_file::cell;
use super::manifest::Manifest;
use super::populations::Population;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use std::collections::BTreeMap;
use std::fmt::Write;

const SHOWN_ROWS: usize = 25;

/// A population's rows, for the report.
pub struct Rows {
    pub population: Population,
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl Rows {
    pub fn count(&self) -> u64 {
        self.batches.iter().map(|b| b.num_rows() as u64).sum()
    }
}

fn esc(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Every value of column `name`, as text.
fn column(rows: &Rows, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for batch in &rows.batches {
        if let Some(array) = batch.column_by_name(name) {
            out.extend((0..batch.num_rows()).map(|i| cell(array.as_ref(), i)));
        }
    }
    out
}

fn sum_by(rows: &Rows, key: &str, value: Option<&str>) -> Vec<(String, f64)> {
    let keys = column(rows, key);
    let values: Vec<f64> = match value {
        Some(v) => column(rows, v).iter().map(|t| t.parse().unwrap_or(0.0)).collect(),
        None => vec![1.0; keys.len()],
    };
    let mut sums: BTreeMap<String, f64> = BTreeMap::new();
    for (k, v) in keys.into_iter().zip(values) {
        *sums.entry(if k.is_empty() { "(none)".into() } else { k }).or_default() += v;
    }
    sums.into_iter().collect()
}

/// A horizontal bar chart.
fn bar_chart(title: &str, bars: &[(String, f64)]) -> String {
    if bars.is_empty() {
        return String::new();
    }
    let max = bars.iter().map(|(_, v)| *v).fold(0.0, f64::max).max(1.0);
    let (row, label_w, bar_w) = (22.0, 200.0, 420.0);
    let height = bars.len() as f64 * row + 30.0;
    let mut svg = format!(
        r#"<figure><svg role="img" aria-label="{t}" width="{w}" height="{height}" viewBox="0 0 {w} {height}" xmlns="http://www.w3.org/2000/svg"><text x="0" y="14" class="ct">{t}</text>"#,
        t = esc(title),
        w = label_w + bar_w + 110.0
    );
    for (i, (label, value)) in bars.iter().enumerate() {
        let y = 24.0 + i as f64 * row;
        let w = (value / max * bar_w).max(1.0);
        let _ = write!(
            svg,
            r#"<text x="{lx}" y="{ty}" text-anchor="end">{l}</text><rect x="{x}" y="{y}" width="{w:.1}" height="{h}" class="bar"/><text x="{vx:.1}" y="{ty}">{v}</text>"#,
            lx = label_w - 6.0,
            ty = y + 13.0,
            l = esc(label),
            x = label_w,
            h = row - 6.0,
            vx = label_w + w + 4.0,
            v = format_number(*value)
        );
    }
    svg.push_str("</svg></figure>");
    svg
}

fn format_number(v: f64) -> String {
    let n = v.round() as i64;
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// Per stream, one cell per day shaded by the share of its hours with events; red: a gap.
fn coverage_chart(rows: &Rows) -> String {
    let streams = column(rows, "stream");
    let hours = column(rows, "hour");
    let events = column(rows, "events");
    let mut days: BTreeMap<&str, BTreeMap<&str, (u32, u32)>> = BTreeMap::new();
    for ((s, h), e) in streams.iter().zip(&hours).zip(&events) {
        let day = h.get(..10).unwrap_or(h);
        let entry = days.entry(s).or_default().entry(day).or_default();
        entry.0 += 1;
        entry.1 += (e != "0") as u32;
    }
    if days.is_empty() {
        return String::new();
    }
    let n_days = days.values().map(|d| d.len()).max().unwrap_or(1) as f64;
    let (label_w, cell_w, row) = (220.0, (560.0 / n_days).clamp(2.0, 24.0), 18.0);
    let width = label_w + cell_w * n_days + 10.0;
    let height = days.len() as f64 * row + 44.0;
    let mut svg = format!(
        r#"<figure><svg role="img" aria-label="Completeness per day" width="{width:.0}" height="{height}" viewBox="0 0 {width:.0} {height}" xmlns="http://www.w3.org/2000/svg"><text x="0" y="14" class="ct">Hours with events, per day (dark: all 24; red: none)</text>"#
    );
    for (r, (stream, per_day)) in days.iter().enumerate() {
        let y = 22.0 + r as f64 * row;
        let _ = write!(svg, r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#, label_w - 6.0, y + 12.0, esc(stream));
        for (c, (day, (total, with))) in per_day.iter().enumerate() {
            let share = *with as f64 / (*total).max(1) as f64;
            let fill = if *with == 0 {
                "#c62828".to_string()
            } else {
                format!(
                    "rgb({0},{1},{2})",
                    (220.0 - 180.0 * share) as u8,
                    (230.0 - 150.0 * share) as u8,
                    (240.0 - 100.0 * share) as u8
                )
            };
            let _ = write!(
                svg,
                r#"<rect x="{:.1}" y="{y}" width="{:.1}" height="{}" fill="{fill}"><title>{} {}: {with}/{total} hours</title></rect>"#,
                label_w + c as f64 * cell_w,
                (cell_w - 1.0).max(1.0),
                row - 4.0,
                esc(stream),
                day
            );
        }
    }
    svg.push_str("</svg></figure>");
    svg
}

fn table(rows: &Rows, limit: usize) -> String {
    let mut html = String::from("<table><thead><tr>");
    for field in rows.schema.fields() {
        let _ = write!(html, "<th>{}</th>", esc(field.name()));
    }
    html.push_str("</tr></thead><tbody>");
    let mut shown = 0;
    'outer: for batch in &rows.batches {
        for i in 0..batch.num_rows() {
            if shown == limit {
                break 'outer;
            }
            html.push_str("<tr>");
            for column in batch.columns() {
                let _ = write!(html, "<td>{}</td>", esc(&cell(column.as_ref(), i)));
            }
            html.push_str("</tr>");
            shown += 1;
        }
    }
    html.push_str("</tbody></table>");
    html
}

const STYLE: &str = r#"
body { font: 10.5pt/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: #111; margin: 2em; }
header.run { position: fixed; top: 0; left: 0; right: 0; font-size: 8pt; color: #555; background: #fff;
  border-bottom: 1px solid #ccc; padding: 2px 2em; }
h1 { font-size: 18pt; margin-top: 1.5em; } h2 { font-size: 14pt; border-bottom: 2px solid #333; margin-top: 2em; }
h3 { font-size: 11.5pt; margin-bottom: .2em; }
table { border-collapse: collapse; width: 100%; font-size: 8pt; margin: .5em 0 1em; }
th, td { border: 1px solid #bbb; padding: 2px 4px; text-align: left; vertical-align: top; word-break: break-all; }
th { background: #eee; } tr { page-break-inside: avoid; }
table.kv { width: auto; font-size: 9.5pt; } table.kv th { width: 14em; }
pre.sql { font-size: 7pt; background: #f6f6f6; border: 1px solid #ddd; padding: 4px; white-space: pre-wrap; }
svg text { font-size: 9px; font-family: inherit; } svg .ct { font-size: 11px; font-weight: 600; } .bar { fill: #3a6ea5; }
figure { margin: .5em 0; page-break-inside: avoid; }
.ok { color: #1b5e20; font-weight: 600; } .bad { color: #b71c1c; font-weight: 600; }
section.criterion { page-break-before: always; }
@page { size: A4; margin: 16mm 12mm; }
@media print { body { margin: 0; } header.run { position: fixed; } .population { page-break-inside: auto; } }
"#;

/// The report for `manifest`, showing `populations`.
pub fn render(manifest: &Manifest, populations: &[&Rows]) -> String {
    let period = format!("{} to {} (UTC, end exclusive)", manifest.period.from, manifest.period.to);
    let by = &manifest.generated_by;
    let mut html = String::new();
    let _ = write!(
        html,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>SOC 2 evidence {p}</title><style>{STYLE}</style></head><body>
<header class="run">TokenTrail SOC 2 evidence · period {p} · generated {g} by {n}</header>
<h1>SOC 2 evidence pack</h1>
<table class="kv">
<tr><th>Period</th><td>{p}</td></tr>
<tr><th>Criteria</th><td>{c}</td></tr>
<tr><th>Generated at</th><td>{g}</td></tr>
<tr><th>Generated by</th><td>{n} (oid {oid}, tid {tid})</td></tr>
<tr><th>Service</th><td>{svc} {ver}</td></tr>
<tr><th>Signing key</th><td>{alg}, key id {kid}</td></tr>
<tr><th>Integrity chain</th><td class="{cls}">{chain}</td></tr>
</table>
<p>Every file of this pack is listed in <code>manifest.json</code> with its SHA-256, its row count, and the exact SQL and parameters that produced it; <code>manifest.sig</code> is an Ed25519 signature of <code>manifest.json</code>. Check the pack with <code>tokentrail evidence verify PACK.zip --public-key KEY.pem</code> (the public key is published at <code>/api/evidence/public-key</code>), or with <code>sha256sum -c SHA256SUMS</code> for the hashes alone.</p>
"#,
        p = esc(&period),
        c = esc(&manifest.criteria.join(", ")),
        g = esc(&manifest.generated_at),
        n = esc(&by.name),
        oid = esc(by.oid.as_deref().unwrap_or("none")),
        tid = esc(by.tid.as_deref().unwrap_or("none")),
        svc = esc(&manifest.service.name),
        ver = esc(&manifest.service.version),
        alg = esc(&manifest.signing_key.algorithm),
        kid = esc(&manifest.signing_key.key_id),
        cls = if manifest.integrity_chain.verified { "ok" } else { "bad" },
        chain = esc(&manifest.integrity_chain.result),
    );

    html.push_str(
        "<h2>Files</h2><table><thead><tr><th>File</th><th>Rows</th><th>Bytes</th><th>SHA-256</th></tr></thead><tbody>",
    );
    for file in &manifest.files {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            esc(&file.path),
            file.rows.map(|r| format_number(r as f64)).unwrap_or_default(),
            format_number(file.bytes as f64),
            esc(&file.sha256)
        );
    }
    html.push_str("</tbody></table>");

    html.push_str("<h2>Sources</h2>");
    if manifest.sources.is_empty() {
        html.push_str("<p>No source has events in the period.</p>");
    } else {
        html.push_str("<table><thead><tr><th>Source</th><th>Kind</th><th>Batches</th><th>Rows</th><th>Sequence numbers</th><th>Lines</th></tr></thead><tbody>");
        for s in &manifest.sources {
            let text = |k: &str| {
                s.get(k).map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())).unwrap_or_default()
            };
            let range = |a: &str, b: &str| {
                let (a, b) = (text(a), text(b));
                if b.is_empty() || b == "null" {
                    String::new()
                } else {
                    format!("{} – {b}", if a == "null" { "start".into() } else { a })
                }
            };
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&text("source_id")),
                esc(&text("kind")),
                esc(&text("batches")),
                esc(&text("batch_rows")),
                esc(&range("sequence_from", "sequence_to")),
                esc(&range("line_from", "line_to"))
            );
        }
        html.push_str("</tbody></table>");
    }
    let _ = write!(
        html,
        "<p>Gaps (hours without events, per stream): {}.</p>",
        if manifest.gaps.is_empty() {
            "none".to_string()
        } else {
            format!("{} listed in manifest.json", manifest.gaps.len())
        }
    );

    let mut current = None;
    for rows in populations {
        let p = &rows.population;
        if current != Some(p.criterion) {
            if current.is_some() {
                html.push_str("</section>");
            }
            current = Some(p.criterion);
            let _ = write!(
                html,
                r#"<section class="criterion"><h2>{}</h2><p>Period {}.</p>"#,
                esc(p.criterion.title()),
                esc(&period)
            );
        }
        let count = rows.count();
        let _ = write!(
            html,
            r#"<div class="population"><h3>{} ({} rows)</h3><p>{}</p>"#,
            esc(p.title),
            format_number(count as f64),
            esc(p.description)
        );
        html.push_str(&match p.name {
            "auth_methods" => bar_chart("Requests by authentication", &sum_by(rows, "attribution", Some("requests"))),
            "principals" => bar_chart("Principals by status", &sum_by(rows, "status", None)),
            "completeness" => coverage_chart(rows),
            "findings" => bar_chart("Findings by severity", &sum_by(rows, "severity", None)),
            "response" => bar_chart("Findings by status", &sum_by(rows, "status", None)),
            "access_log" => bar_chart("Calls by endpoint", &sum_by(rows, "endpoint", None)),
            _ => String::new(),
        });
        if p.name != "completeness" {
            html.push_str(&table(rows, SHOWN_ROWS));
            if count > SHOWN_ROWS as u64 {
                let _ = write!(
                    html,
                    "<p>First {SHOWN_ROWS} of {} rows; all are in the CSV and Parquet files.</p>",
                    format_number(count as f64)
                );
            }
        }
        let _ = write!(html, r#"<pre class="sql">{}</pre></div>"#, esc(p.sql));
    }
    if current.is_some() {
        html.push_str("</section>");
    }
    html.push_str("</body></html>\n");
    html
}
