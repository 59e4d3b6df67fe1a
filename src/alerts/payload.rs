//! Message bodies: Slack Block Kit, a Microsoft Teams Adaptive Card, and Alertmanager's
//! webhook shape for generic receivers. Each lists up to a few findings in full and
//! summarises the rest, and every finding links to its page in the UI.
//!
//! Values from the logs (principal, collection and entity names, user agents, rule
//! details) are written by whoever writes the logs. Contract, for every destination:
//! - **One line of visible text.** A value's control characters and line breaks become
//!   spaces, bidirectional controls and invisible formatting characters are dropped, runs
//!   of spaces become one (`one_line`): a value cannot start a line of its own ("*Status:*
//!   resolved") nor reorder what is shown (U+202E).
//! - **No links, mentions or formatting.** Slack gets values only in `plain_text` objects,
//!   which it never formats (`emoji: false`, so `:name:` stays text); its `mrkdwn` carries
//!   only our own text and links, `verbatim` so Slack adds no links of its own. Teams gets
//!   them only in `TextRun`s (see `teams_card`). Webhook receivers get JSON strings.
//! - **Escaped, then measured, then cut** between two escaped characters (`fit`), never
//!   inside an entity such as `&amp;`.
//! - **Within the destination's limits**, measured after encoding: Block Kit's limits per
//!   object and block, `TEAMS_MAX_BYTES` for a whole Teams message, `WEBHOOK_MAX_BYTES`
//!   for a webhook body (alerts beyond it are counted in `truncatedAlerts`).

use super::config::{Alerts, Destination, DestinationKind};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// Findings shown one by one in a chat message; the rest are counted.
pub const CHAT_FINDINGS: usize = 10;
/// Alerts in one generic webhook body at most; the rest are `truncatedAlerts`.
pub const WEBHOOK_ALERTS: usize = 100;

// Slack Block Kit limits (api.slack.com/reference/block-kit/blocks), in characters.
pub const SLACK_MAX_BLOCKS: usize = 50;
pub const SLACK_HEADER_CHARS: usize = 150;
pub const SLACK_SECTION_CHARS: usize = 3000;
pub const SLACK_MAX_FIELDS: usize = 10;
pub const SLACK_FIELD_CHARS: usize = 2000;
pub const SLACK_CONTEXT_ELEMENTS: usize = 10;
pub const SLACK_CONTEXT_CHARS: usize = 3000;
pub const SLACK_BUTTON_CHARS: usize = 75;
pub const SLACK_URL_CHARS: usize = 3000;
/// Slack truncates a message's `text` beyond 40,000 characters; the fallback is short.
pub const SLACK_TEXT_CHARS: usize = 3000;

/// Teams refuses a message over 28 KB (and the message would go dead): the whole body,
/// as sent, stays under this, with room to spare.
pub const TEAMS_MAX_BYTES: usize = 27_000;
/// A generic webhook body, as sent, at most this long: Standard Webhooks asks for small
/// bodies, and receivers often cap what they read.
pub const WEBHOOK_MAX_BYTES: usize = 64 * 1024;

/// Adaptive Card schema version: 1.5 is the newest Teams renders on every client.
pub const ADAPTIVE_CARD_VERSION: &str = "1.5";

/// How much of each value a message shows at most, in the destination's measure:
/// characters for Slack and webhooks, bytes of JSON for Teams (whose limit is bytes).
#[derive(Debug, Clone, Copy)]
struct Caps {
    title: usize,
    who: usize,
    entity: usize,
    summary: usize,
    /// Severity, status, rule id, principal id, account.
    short: usize,
}

impl Caps {
    /// Each cap divided by `by` (Teams, when a card would be too long).
    fn shrunk(self, by: usize) -> Caps {
        let f = |n: usize| (n / by).max(24);
        Caps {
            title: f(self.title),
            who: f(self.who),
            entity: f(self.entity),
            summary: f(self.summary),
            short: f(self.short),
        }
    }
}

const SLACK_CAPS: Caps = Caps { title: 200, who: 300, entity: 300, summary: 1000, short: 100 };
const TEAMS_CAPS: Caps = Caps { title: 400, who: 600, entity: 600, summary: 2000, short: 200 };
const WEBHOOK_CAPS: Caps = Caps { title: 256, who: 256, entity: 256, summary: 1024, short: 256 };

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertStatus {
    Firing,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// A finding as a message shows it.
#[derive(Debug, Clone)]
pub struct FindingView {
    pub id: i64,
    pub fingerprint: String,
    pub rule_id: String,
    pub title: String,
    pub severity: String,
    pub status: String,
    pub principal_id: Option<String>,
    pub principal_name: Option<String>,
    pub entity: String,
    pub account: Option<String>,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub count: i64,
    pub summary: Option<String>,
}

impl FindingView {
    /// "name (id)", each part shown by `show` within `caps`; `None` when both are empty.
    fn who(&self, caps: Caps, show: impl Fn(&str, usize) -> String) -> Option<String> {
        let name = self.principal_name.as_deref().map(|n| show(n, caps.who)).filter(|n| !n.is_empty());
        let id = self.principal_id.as_deref().map(|i| show(i, caps.short)).filter(|i| !i.is_empty());
        match (name, id) {
            (Some(name), Some(id)) => Some(format!("{name} ({id})")),
            (name, id) => name.or(id),
        }
    }
}

/// The link to a finding's page in the UI.
pub fn finding_url(ui: &str, id: i64) -> String {
    format!("{ui}/findings/{id}")
}

/// The body for `destination`.
pub fn build(
    destination: &Destination,
    alerts: &Alerts,
    status: AlertStatus,
    findings: &[FindingView],
    new: &BTreeSet<i64>,
    now: DateTime<Utc>,
) -> Value {
    let ui = &alerts.ui_base_url;
    match destination.kind {
        DestinationKind::Slack => slack(ui, status, findings, new),
        DestinationKind::Teams => teams(ui, status, findings, new),
        DestinationKind::Webhook => alertmanager(ui, &destination.name, status, findings, new, now),
    }
}

/// "2 new findings, 1 updated" / "Resolved: 3 findings".
fn headline(status: AlertStatus, findings: &[FindingView], new: &BTreeSet<i64>) -> String {
    let plural = |n: usize| if n == 1 { "finding" } else { "findings" };
    match status {
        AlertStatus::Resolved => format!("Resolved: {} {}", findings.len(), plural(findings.len())),
        AlertStatus::Firing => {
            let fresh = findings.iter().filter(|f| new.contains(&f.id)).count();
            let updated = findings.len() - fresh;
            match (fresh, updated) {
                (0, n) => format!("{n} {} updated", plural(n)),
                (n, 0) => format!("{n} new {}", plural(n)),
                (n, m) => format!("{n} new {}, {m} updated", plural(n)),
            }
        }
    }
}

/// At most `max` characters, with an ellipsis when cut.
pub fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Characters that change how text around them is shown without showing themselves:
/// bidirectional controls (U+202E shows `exe.fdp` as `pdf.exe`), zero-width and other
/// invisible formatting characters, tag characters. The zero-width joiner stays: emoji
/// sequences need it.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{E0000}'..='\u{E007F}'
    )
}

/// A log value as one line of visible text: control characters (C0, DEL, C1) and line
/// breaks become spaces, `invisible` characters go, runs of spaces become one, none at
/// either end. Lazy, so a 300 KB value costs only what is shown of it.
pub fn one_line(value: &str) -> impl Iterator<Item = char> + '_ {
    let (mut gap, mut started) = (false, false);
    value.chars().flat_map(move |c| {
        let shown = if invisible(c) {
            [None, None]
        } else if c.is_whitespace() || c.is_control() {
            gap = started;
            [None, None]
        } else {
            started = true;
            [std::mem::take(&mut gap).then_some(' '), Some(c)]
        };
        shown.into_iter().flatten()
    })
}

/// `chars`, each escaped by `escape`, at most `max` long as `size` measures the escaped
/// text. Escaped first and measured after, so the cut falls between two escaped
/// characters (never inside `&amp;`); an ellipsis marks it.
fn fit(
    chars: impl Iterator<Item = char>,
    max: usize,
    escape: fn(char, &mut String),
    size: fn(&str) -> usize,
) -> String {
    let ellipsis = size("…");
    let (mut out, mut unit) = (String::new(), String::new());
    // Bytes of `out` to keep if a cut comes: the most that leaves room for the ellipsis.
    let (mut used, mut keep) = (0, 0);
    for c in chars {
        unit.clear();
        escape(c, &mut unit);
        let n = size(&unit);
        if used + n > max {
            out.truncate(keep);
            // Not a dangling joiner of an emoji sequence, nor a space, before the ellipsis.
            while out.ends_with(['\u{200D}', ' ']) {
                out.pop();
            }
            if ellipsis <= max {
                out.push('…');
            }
            return out;
        }
        used += n;
        out.push_str(&unit);
        if used + ellipsis <= max {
            keep = out.len();
        }
    }
    out
}

fn as_is(c: char, out: &mut String) {
    out.push(c);
}

/// Slack mrkdwn: `&`, `<` and `>` are control characters (links, mentions).
fn slack_entity(c: char, out: &mut String) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        c => out.push(c),
    }
}

fn chars(text: &str) -> usize {
    text.chars().count()
}

/// Bytes of `text` inside a JSON string, as serde_json writes it.
fn json_bytes(text: &str) -> usize {
    text.chars()
        .map(|c| match c {
            '"' | '\\' => 2,
            c if c < ' ' => 6,
            c => c.len_utf8(),
        })
        .sum()
}

/// Bytes of `value` as sent (the outbox stores `Value::to_string`, the same encoding).
fn encoded_len(value: &Value) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |bytes| bytes.len())
}

/// A log value as one plain line of at most `max` characters (Slack `plain_text`, webhooks).
pub fn plain_value(value: &str, max: usize) -> String {
    fit(one_line(value), max, as_is, chars)
}

/// A log value as one plain line of at most `max` bytes inside a JSON string (Teams).
fn teams_value(value: &str, max: usize) -> String {
    fit(one_line(value), max, as_is, json_bytes)
}

/// Chat text objects may not be empty (Slack refuses them): a value with nothing visible.
fn or_dash(text: String) -> String {
    if text.is_empty() { "—".into() } else { text }
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn severity_mark(severity: &str) -> &'static str {
    match severity {
        "critical" => "🟥",
        "high" => "🟧",
        "medium" => "🟨",
        _ => "🟦",
    }
}

fn slack(ui: &str, status: AlertStatus, findings: &[FindingView], new: &BTreeSet<i64>) -> Value {
    let caps = SLACK_CAPS;
    let value = |text: &str, max: usize| or_dash(plain_value(text, max));
    // Log values only ever go in here.
    let plain = |text: String| json!({"type": "plain_text", "text": text, "emoji": false});
    // Our links in mrkdwn: escaped, and short enough to leave room for the text around them.
    let link = |url: &str| fit(url.chars(), SLACK_URL_CHARS - 100, slack_entity, chars);
    let headline = format!("TokenTrail: {}", headline(status, findings, new));
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": cut(&headline, SLACK_HEADER_CHARS), "emoji": true}
    })];
    let mut fallback = vec![headline];
    for f in findings.iter().take(CHAT_FINDINGS) {
        let url = finding_url(ui, f.id);
        let mark = if status == AlertStatus::Resolved { "✅" } else { severity_mark(&f.severity) };
        let change = if status == AlertStatus::Firing && !new.contains(&f.id) { " (updated)" } else { "" };
        let mut fields = vec![
            plain(value(&f.title, caps.title)),
            plain(format!("Severity: {} · Status: {}", value(&f.severity, caps.short), value(&f.status, caps.short))),
            plain(format!("Rule: {}", value(&f.rule_id, caps.short))),
            plain(format!("Seen: {} → {} · {} events", time(f.first_seen), time(f.last_seen), f.count)),
        ];
        if let Some(who) = f.who(caps, plain_value) {
            fields.push(plain(format!("Principal: {who}")));
        }
        fields.push(plain(format!("Entity: {}", value(&f.entity, caps.entity))));
        blocks.push(json!({
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": format!("{mark} *<{}|Finding {}>*{change}", link(&url), f.id),
                "verbatim": true
            },
            "fields": fields
        }));
        let summary = f.summary.as_deref().map(|s| plain_value(s, caps.summary)).unwrap_or_default();
        if !summary.is_empty() {
            blocks.push(json!({"type": "context", "elements": [plain(summary)]}));
        }
        // Notifications show this text: our words and link only.
        fallback.push(format!("{mark} Finding {}{change}: {url}", f.id));
    }
    if findings.len() > CHAT_FINDINGS {
        let more = findings.len() - CHAT_FINDINGS;
        blocks.push(json!({
            "type": "context",
            "elements": [{
                "type": "mrkdwn",
                "text": format!("…and {more} more: <{}|all findings>", link(&format!("{ui}/findings"))),
                "verbatim": true
            }]
        }));
        fallback.push(format!("…and {more} more"));
    }
    if let [only] = findings {
        blocks.push(json!({
            "type": "actions",
            "elements": [{
                "type": "button",
                "text": {"type": "plain_text", "text": cut("Open finding", SLACK_BUTTON_CHARS)},
                "url": cut(&finding_url(ui, only.id), SLACK_URL_CHARS)
            }]
        }));
    }
    blocks.truncate(SLACK_MAX_BLOCKS);
    let text = fit(fallback.join("\n").chars(), SLACK_TEXT_CHARS, slack_entity, chars);
    json!({ "text": text, "blocks": blocks })
}

/// The card with its values within `TEAMS_MAX_BYTES`: the findings shown with their values
/// cut shorter and shorter, then, if that is not enough (a very long `ui_base_url` repeats
/// in every link), fewer findings shown and the rest counted.
fn teams(ui: &str, status: AlertStatus, findings: &[FindingView], new: &BTreeSet<i64>) -> Value {
    let shown = findings.len().min(CHAT_FINDINGS);
    for by in [1, 2, 4, 8] {
        let card = teams_card(ui, status, findings, new, shown, TEAMS_CAPS.shrunk(by));
        if encoded_len(&card) <= TEAMS_MAX_BYTES {
            return card;
        }
    }
    let mut card = Value::Null;
    for shown in (0..shown).rev() {
        card = teams_card(ui, status, findings, new, shown, TEAMS_CAPS.shrunk(8));
        if encoded_len(&card) <= TEAMS_MAX_BYTES {
            break;
        }
    }
    card
}

/// Log values go only in `TextRun`s of `RichTextBlock`s: the Adaptive Card schema says
/// "Markdown is not supported" in a TextRun, and Teams documents Markdown for TextBlock,
/// Fact.Title and Fact.Value only, so a value shows as written, with no backslash escapes
/// (which some Teams clients show literally, microsoft/AdaptiveCards#5590, #4677) and no
/// link, emphasis or list made of it. TextBlocks carry only our own words.
fn teams_card(
    ui: &str,
    status: AlertStatus,
    findings: &[FindingView],
    new: &BTreeSet<i64>,
    shown: usize,
    caps: Caps,
) -> Value {
    let value = |text: &str, max: usize| or_dash(teams_value(text, max));
    let run = |text: String| json!({"type": "TextRun", "text": text});
    let label = |text: &str| json!({"type": "TextRun", "text": text, "weight": "Bolder"});
    let line = |inlines: Vec<Value>| json!({"type": "RichTextBlock", "inlines": inlines, "spacing": "None"});
    let mut body = vec![json!({
        "type": "TextBlock",
        "text": format!("TokenTrail: {}", headline(status, findings, new)),
        "weight": "Bolder",
        "size": "Medium",
        "wrap": true,
        "style": "heading"
    })];
    for f in findings.iter().take(shown) {
        let color = if status == AlertStatus::Resolved {
            "Good"
        } else if f.severity == "critical" || f.severity == "high" {
            "Attention"
        } else {
            "Warning"
        };
        let mut title = vec![json!({
            "type": "TextRun",
            "text": value(&f.title, caps.title),
            "weight": "Bolder",
            "color": color,
            "selectAction": {"type": "Action.OpenUrl", "url": finding_url(ui, f.id)}
        })];
        if status == AlertStatus::Firing && !new.contains(&f.id) {
            title.push(run(" (updated)".into()));
        }
        let mut items = vec![
            json!({"type": "RichTextBlock", "inlines": title}),
            line(vec![
                label("Severity: "),
                run(value(&f.severity, caps.short)),
                label(" · Rule: "),
                run(value(&f.rule_id, caps.short)),
                label(" · Status: "),
                run(value(&f.status, caps.short)),
            ]),
        ];
        if let Some(who) = f.who(caps, teams_value) {
            items.push(line(vec![label("Principal: "), run(who)]));
        }
        items.push(line(vec![label("Entity: "), run(value(&f.entity, caps.entity))]));
        items.push(line(vec![
            label("Seen: "),
            run(format!("{} → {} · {} events", time(f.first_seen), time(f.last_seen), f.count)),
        ]));
        let summary = f.summary.as_deref().map(|s| teams_value(s, caps.summary)).unwrap_or_default();
        if !summary.is_empty() {
            items.push(json!({
                "type": "RichTextBlock",
                "inlines": [{"type": "TextRun", "text": summary, "isSubtle": true}]
            }));
        }
        body.push(json!({"type": "Container", "separator": true, "items": items}));
    }
    if findings.len() > shown {
        body.push(json!({
            "type": "TextBlock",
            "text": format!("…and {} more.", findings.len() - shown),
            "wrap": true
        }));
    }
    let (title, url) = match findings {
        [only] => ("Open finding", finding_url(ui, only.id)),
        _ => ("Open findings", format!("{ui}/findings")),
    };
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": ADAPTIVE_CARD_VERSION,
                "body": body,
                "actions": [{"type": "Action.OpenUrl", "title": title, "url": url}],
                "msteams": {"width": "Full"}
            }
        }]
    })
}

/// Alertmanager's webhook body (version 4): one alert per finding, as many as fit in
/// `WEBHOOK_MAX_BYTES`; the rest are counted in `truncatedAlerts`, as Alertmanager counts
/// the alerts beyond a receiver's `max_alerts`.
fn alertmanager(
    ui: &str,
    receiver: &str,
    status: AlertStatus,
    findings: &[FindingView],
    new: &BTreeSet<i64>,
    now: DateTime<Utc>,
) -> Value {
    let alerts: Vec<Value> =
        findings.iter().take(WEBHOOK_ALERTS).map(|f| webhook_alert(ui, status, f, new, now)).collect();
    // Alerts in order while the estimate fits: the body without alerts, each alert and its
    // comma, and the common labels at most as long as the first alert's labels.
    let empty = alertmanager_body(ui, receiver, status, &[], findings.len());
    let common = alerts.first().map_or(0, |a| encoded_len(&a["labels"]));
    let mut room = WEBHOOK_MAX_BYTES.saturating_sub(encoded_len(&empty) + common);
    let mut kept = 0;
    for alert in &alerts {
        let n = encoded_len(alert) + 1;
        if n > room {
            break;
        }
        room -= n;
        kept += 1;
    }
    loop {
        let body = alertmanager_body(ui, receiver, status, &alerts[..kept], findings.len() - kept);
        if kept == 0 || encoded_len(&body) <= WEBHOOK_MAX_BYTES {
            return body;
        }
        kept -= 1;
    }
}

fn webhook_alert(ui: &str, status: AlertStatus, f: &FindingView, new: &BTreeSet<i64>, now: DateTime<Utc>) -> Value {
    let caps = WEBHOOK_CAPS;
    let mut labels = serde_json::Map::new();
    labels.insert("alertname".into(), json!(plain_value(&f.rule_id, caps.short)));
    labels.insert("rule_id".into(), json!(plain_value(&f.rule_id, caps.short)));
    labels.insert("severity".into(), json!(plain_value(&f.severity, caps.short)));
    labels.insert("finding_id".into(), json!(f.id.to_string()));
    labels.insert("entity".into(), json!(plain_value(&f.entity, caps.entity)));
    if let Some(p) = &f.principal_id {
        labels.insert("principal_id".into(), json!(plain_value(p, caps.short)));
    }
    if let Some(a) = &f.account {
        labels.insert("account".into(), json!(plain_value(a, caps.short)));
    }
    let change = match status {
        AlertStatus::Resolved => plain_value(&f.status, caps.short),
        AlertStatus::Firing if new.contains(&f.id) => "raised".into(),
        AlertStatus::Firing => "updated".into(),
    };
    json!({
        "status": status.as_str(),
        "labels": labels,
        "annotations": {
            "summary": plain_value(&f.title, caps.title),
            "description": plain_value(f.summary.as_deref().unwrap_or_default(), caps.summary),
            "principal_name": plain_value(f.principal_name.as_deref().unwrap_or_default(), caps.who),
            "finding_status": plain_value(&f.status, caps.short),
            "change": change,
            "count": f.count.to_string(),
            "last_seen": time(f.last_seen),
        },
        "startsAt": time(f.first_seen),
        "endsAt": if status == AlertStatus::Resolved { time(now) } else { "0001-01-01T00:00:00Z".into() },
        "generatorURL": finding_url(ui, f.id),
        "fingerprint": plain_value(&f.fingerprint, caps.short),
    })
}

fn alertmanager_body(ui: &str, receiver: &str, status: AlertStatus, alerts: &[Value], truncated: usize) -> Value {
    // Labels every alert shares, as Alertmanager reports them.
    let mut common = alerts.first().and_then(|a| a["labels"].as_object().cloned()).unwrap_or_default();
    for alert in alerts.iter().skip(1) {
        common.retain(|k, v| alert["labels"].get(k) == Some(v));
    }
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{destination=\"{receiver}\"}}"),
        "truncatedAlerts": truncated,
        "status": status.as_str(),
        "receiver": receiver,
        "groupLabels": {"destination": receiver},
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": ui,
        "alerts": alerts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::config::{AlertsConfig, Secret};

    const UI: &str = "https://tokentrail.example";
    // Teams refuses 28 KB.
    const _: () = assert!(TEAMS_MAX_BYTES < 28_000);
    const MARKS: [&str; 5] = ["🟥", "🟧", "🟨", "🟦", "✅"];

    /// What an attacker can write into a log: a user agent, a principal or collection name,
    /// a rule's detail.
    fn hostile() -> Vec<String> {
        vec![
            "see https://evil.example/login now".into(),
            "[click](https://evil.example/md)".into(),
            "<https://evil.example|click> <mailto:x@evil.example>".into(),
            "<!channel> <!here> <@U123> <#C123> @channel".into(),
            "*bold* _it_ ~strike~ `code` ```block``` # head > quote - item **b** __u__ \\ \\(x\\)".into(),
            "ok\n*Status:* resolved".into(),
            "ok\n- item\r\n- item\n\n1. one".into(),
            "invoice\u{202E}fdp.exe \u{2066}\u{200F}\u{061C}\u{200E}x\u{2069}".into(),
            "nul\0 bell\u{7} esc\u{1b}[31m del\u{7f} c1\u{85}\u{9b} tab\t ls\u{2028}ps\u{2029} zw\u{200B}\u{FEFF}\u{E0041}".into(),
            "<".repeat(10_000),
            "&".repeat(10_000),
            "x".repeat(300 * 1024),
            "👩‍💻🇫🇷 日本語 Ελληνικά 𝕏 é ".repeat(700),
            "\"\\".repeat(5_000),
            ":rotating_light: {{DATE(2017-02-14T06:08:39Z, SHORT)}}".into(),
            String::new(),
        ]
    }

    /// A finding whose every text is `value`.
    fn finding(id: i64, value: &str) -> FindingView {
        let t = DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z").unwrap().to_utc();
        FindingView {
            id,
            fingerprint: format!("{id:032x}"),
            rule_id: value.into(),
            title: value.into(),
            severity: value.into(),
            status: value.into(),
            principal_id: Some(value.into()),
            principal_name: Some(value.into()),
            entity: value.into(),
            account: Some(value.into()),
            first_seen: t,
            last_seen: t,
            count: 3,
            summary: Some(value.into()),
        }
    }

    /// Each hostile value alone in 1 and 28 findings, and the values in turn in 1, 28 and
    /// 150 findings.
    fn cases() -> Vec<(String, Vec<FindingView>)> {
        let corpus = hostile();
        let mut cases = Vec::new();
        for (k, value) in corpus.iter().enumerate() {
            for n in [1, 28] {
                cases.push((format!("value {k} in {n}"), (1..=n as i64).map(|id| finding(id, value)).collect()));
            }
        }
        for n in [1, 28, 150] {
            let findings = (1..=n as i64).map(|id| finding(id, &corpus[id as usize % corpus.len()])).collect();
            cases.push((format!("the corpus in {n}"), findings));
        }
        cases
    }

    fn body(kind: DestinationKind, status: AlertStatus, findings: &[FindingView]) -> Value {
        let config = AlertsConfig { ui_base_url: Some(UI.into()), ..AlertsConfig::default() };
        let alerts = config.resolve("http://unused").unwrap();
        let destination =
            Destination { name: "d".into(), kind, url: Secret::new("http://127.0.0.1:9/unused".into()), keys: vec![] };
        let new: BTreeSet<i64> = findings.iter().map(|f| f.id).filter(|id| id % 2 == 0).collect();
        build(&destination, &alerts, status, findings, &new, Utc::now())
    }

    fn change(status: AlertStatus, id: i64) -> &'static str {
        if status == AlertStatus::Firing && id % 2 == 1 { " (updated)" } else { "" }
    }

    fn text(value: &Value) -> &str {
        value.as_str().unwrap_or_else(|| panic!("not a string: {value}"))
    }

    /// Shown text of a value: one line, nothing that controls or hides, no padding.
    fn assert_one_line(shown: &str, what: &str) {
        let bad = shown.chars().find(|&c| c.is_control() || invisible(c) || matches!(c, '\u{2028}' | '\u{2029}'));
        assert!(bad.is_none(), "{what}: {bad:?} in {shown:?}");
        assert!(!shown.contains("  ") && shown.trim() == shown, "{what}: {shown:?}");
    }

    /// Every `&` starts a whole entity: nothing was cut inside one.
    fn assert_entities_whole(escaped: &str) {
        for (i, _) in escaped.match_indices('&') {
            assert!(
                ["&amp;", "&lt;", "&gt;"].iter().any(|e| escaped[i..].starts_with(e)),
                "a cut entity at {i}: {:?}",
                &escaped[i..escaped.len().min(i + 8)]
            );
        }
    }

    #[test]
    fn a_value_becomes_one_line_of_visible_text() {
        for (value, shown) in [
            ("ok\n*Status:* resolved", "ok *Status:* resolved"),
            ("ok\n- item\r\n- item", "ok - item - item"),
            ("  a \t\u{0}\u{85}\u{9b} b  ", "a b"),
            ("invoice\u{202E}fdp.exe", "invoicefdp.exe"),
            ("\u{2066}x\u{2069}\u{200E}\u{200F}\u{061C}\u{202A}\u{202B}\u{202C}\u{202D}\u{2067}\u{2068}y", "xy"),
            ("a\u{2028}b\u{2029}c\u{b}d\u{c}e\u{7f}f", "a b c d e f"),
            ("zero\u{200B}width\u{FEFF}\u{2060}\u{E0041}\u{AD}", "zerowidth"),
            ("\u{1b}[31mred", "[31mred"),
            ("👩‍💻🇫🇷 日本語 é", "👩‍💻🇫🇷 日本語 é"),
            ("", ""),
            ("\n\u{202E}\t ", ""),
        ] {
            assert_eq!(one_line(value).collect::<String>(), shown, "{value:?}");
        }
    }

    #[test]
    fn values_are_escaped_then_measured_and_cut_between_two_escaped_characters() {
        // 1,000 `<` are 4,000 characters escaped: whole entities up to 3,000 with the ellipsis.
        let cut = fit("<".repeat(1000).chars(), 3000, slack_entity, chars);
        assert_eq!(cut, format!("{}…", "&lt;".repeat(749)));
        assert_entities_whole(&cut);
        // What fits exactly is not cut; one character more is cut before the entity.
        assert_eq!(fit("a&b".chars(), 7, slack_entity, chars), "a&amp;b");
        assert_eq!(fit("a&bc".chars(), 7, slack_entity, chars), "a&amp;…");
        assert_eq!(fit("ab&c".chars(), 7, slack_entity, chars), "ab…");
        // Teams: bytes inside a JSON string, where `"` takes two.
        let cut = fit("\"".repeat(10).chars(), 9, as_is, json_bytes);
        assert_eq!(cut, "\"\"\"…");
        assert!(json_bytes(&cut) <= 9 && serde_json::to_string(&cut).unwrap().len() - 2 == json_bytes(&cut));
        // No dangling joiner of an emoji sequence.
        assert_eq!(fit("👩‍💻👩‍💻".chars(), 4, as_is, chars), "👩‍💻…");
        assert_eq!(fit("👩‍💻👩‍💻".chars(), 3, as_is, chars), "👩…");
        // A 300 KB value, one line and cut.
        let shown = plain_value(&format!("a\n{}", "<".repeat(300 * 1024)), 1000);
        assert_eq!(shown.chars().count(), 1000);
        assert!(shown.starts_with("a <<") && shown.ends_with('…'));
    }

    #[test]
    fn values_that_fit_are_shown_as_written_and_never_as_markup() {
        let value = "<!channel> *b* [x](https://evil.example) a & b \\(c\\) 👩‍💻 日本語";
        let mut f = finding(7, value);
        f.severity = "high".into();
        f.principal_id = None;
        let slack = body(DestinationKind::Slack, AlertStatus::Firing, std::slice::from_ref(&f));
        let fields = slack["blocks"][1]["fields"].as_array().unwrap();
        assert_eq!(fields[0], json!({"type": "plain_text", "text": value, "emoji": false}));
        assert_eq!(fields[4]["text"], format!("Principal: {value}"));
        assert_eq!(fields[5]["text"], format!("Entity: {value}"));
        assert_eq!(slack["blocks"][2]["elements"][0]["text"], value, "the summary");
        assert_eq!(
            slack["blocks"][1]["text"],
            json!({"type": "mrkdwn", "text": format!("🟧 *<{UI}/findings/7|Finding 7>* (updated)"), "verbatim": true})
        );
        assert_eq!(slack["text"], format!("TokenTrail: 1 finding updated\n🟧 Finding 7 (updated): {UI}/findings/7"));

        let teams = body(DestinationKind::Teams, AlertStatus::Firing, std::slice::from_ref(&f));
        let items = &teams["attachments"][0]["content"]["body"][1]["items"];
        let title = &items[0]["inlines"][0];
        assert_eq!((title["type"].as_str(), &title["text"]), (Some("TextRun"), &json!(value)));
        assert_eq!(title["selectAction"], json!({"type": "Action.OpenUrl", "url": format!("{UI}/findings/7")}));
        assert_eq!(items[2]["inlines"][1]["text"], value, "the principal, without backslashes");
        assert_eq!(items[3]["inlines"][1]["text"], value, "the entity");
        assert_eq!(items[5]["inlines"][0]["text"], value, "the summary");

        let hook = body(DestinationKind::Webhook, AlertStatus::Firing, std::slice::from_ref(&f));
        assert_eq!(hook["alerts"][0]["labels"]["entity"], value);
        assert_eq!(hook["alerts"][0]["annotations"]["description"], value);
        assert_eq!(hook["truncatedAlerts"], 0);
    }

    fn check_slack(message: &Value, status: AlertStatus, findings: &[FindingView], case: &str) {
        let n = findings.len();
        let shown = n.min(CHAT_FINDINGS);
        let blocks = message["blocks"].as_array().unwrap();
        assert!(!blocks.is_empty() && blocks.len() <= SLACK_MAX_BLOCKS, "{case}: {} blocks", blocks.len());
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(blocks[0]["text"]["type"], "plain_text");
        assert!(text(&blocks[0]["text"]["text"]).chars().count() <= SLACK_HEADER_CHARS);
        let mut sections = 0;
        for block in &blocks[1..] {
            match text(&block["type"]) {
                "section" => {
                    let f = &findings[sections];
                    sections += 1;
                    // Our words and link only, never a value, and Slack adds no links.
                    let ours = format!("*<{UI}/findings/{}|Finding {}>*{}", f.id, f.id, change(status, f.id));
                    let mrkdwn = &block["text"];
                    assert_eq!((&mrkdwn["type"], &mrkdwn["verbatim"]), (&json!("mrkdwn"), &json!(true)), "{case}");
                    assert!(MARKS.iter().any(|m| text(&mrkdwn["text"]) == format!("{m} {ours}")), "{case}: {mrkdwn}");
                    let fields = block["fields"].as_array().unwrap();
                    assert!(fields.len() <= SLACK_MAX_FIELDS, "{case}: {} fields", fields.len());
                    for field in fields {
                        assert_eq!((&field["type"], &field["emoji"]), (&json!("plain_text"), &json!(false)), "{case}");
                        let shown = text(&field["text"]);
                        assert!(!shown.is_empty() && shown.chars().count() <= SLACK_FIELD_CHARS, "{case}: {shown:?}");
                        assert_one_line(shown, case);
                    }
                }
                "context" => {
                    let elements = block["elements"].as_array().unwrap();
                    assert!(!elements.is_empty() && elements.len() <= SLACK_CONTEXT_ELEMENTS, "{case}");
                    for element in elements {
                        let shown = text(&element["text"]);
                        assert!(!shown.is_empty() && shown.chars().count() <= SLACK_CONTEXT_CHARS, "{case}");
                        if element["type"] == "mrkdwn" {
                            let more = format!("…and {} more: <{UI}/findings|all findings>", n - CHAT_FINDINGS);
                            assert_eq!((shown, &element["verbatim"]), (more.as_str(), &json!(true)), "{case}");
                        } else {
                            assert_eq!((&element["type"], &element["emoji"]), (&json!("plain_text"), &json!(false)));
                            assert_one_line(shown, case);
                        }
                    }
                }
                "actions" => {
                    assert_eq!(n, 1, "{case}: a button for one finding only");
                    let button = &block["elements"][0];
                    assert_eq!(button["text"]["text"], "Open finding");
                    assert_eq!(button["url"], format!("{UI}/findings/{}", findings[0].id));
                }
                other => panic!("{case}: unexpected block type {other}"),
            }
        }
        assert_eq!(sections, shown, "{case}");
        // The fallback of notifications: our words and links, one line each.
        let fallback = text(&message["text"]);
        assert!(fallback.chars().count() <= SLACK_TEXT_CHARS);
        assert_entities_whole(fallback);
        let lines: Vec<&str> = fallback.lines().collect();
        assert!(lines[0].starts_with("TokenTrail: "), "{case}: {fallback}");
        for (line, f) in lines[1..=shown].iter().zip(findings) {
            let ours = format!(" Finding {}{}: {UI}/findings/{}", f.id, change(status, f.id), f.id);
            assert!(MARKS.iter().any(|m| *line == format!("{m}{ours}")), "{case}: {line}");
        }
        assert_eq!(lines.len(), 1 + shown + usize::from(n > shown), "{case}: {fallback}");
    }

    #[test]
    fn slack_messages_keep_to_block_kit_limits_and_show_values_only_as_plain_text() {
        for (case, findings) in cases() {
            for status in [AlertStatus::Firing, AlertStatus::Resolved] {
                let message = body(DestinationKind::Slack, status, &findings);
                check_slack(&message, status, &findings, &case);
            }
        }
    }

    fn adaptive_card_schema() -> jsonschema::Validator {
        let schema: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/adaptive-card/adaptive-card.json")).unwrap();
        jsonschema::draft6::new(&schema).expect("the Adaptive Card 1.5 schema, with its own definitions only")
    }

    fn check_teams(schema: &jsonschema::Validator, message: &Value, findings: &[FindingView], case: &str) {
        let size = encoded_len(message);
        assert!(size <= TEAMS_MAX_BYTES, "{case}: a {size}-byte Teams message");
        assert_eq!(message["type"], "message");
        let mut card = message["attachments"][0]["content"].clone();
        // Teams' extension, which the schema does not know.
        assert_eq!(card.as_object_mut().unwrap().remove("msteams"), Some(json!({"width": "Full"})));
        let errors: Vec<String> =
            schema.iter_errors(&card).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "{case}: not an Adaptive Card 1.5: {errors:#?}");
        assert_eq!(card["version"], ADAPTIVE_CARD_VERSION);

        let body = card["body"].as_array().unwrap();
        let shown = findings.len().min(CHAT_FINDINGS);
        assert!(text(&body[0]["text"]).starts_with("TokenTrail: "));
        let containers: Vec<&Value> = body.iter().filter(|e| e["type"] == "Container").collect();
        assert_eq!(containers.len(), shown, "{case}: every finding shown, its values cut to fit");
        if findings.len() > shown {
            assert_eq!(body.last().unwrap()["text"], format!("…and {} more.", findings.len() - shown));
        }
        // Markdown (TextBlock) carries only our words; values are TextRuns.
        let mut stack: Vec<&Value> = body.iter().collect();
        while let Some(element) = stack.pop() {
            match text(&element["type"]) {
                "TextBlock" => {
                    let words = text(&element["text"]);
                    assert!(words.starts_with("TokenTrail: ") || words.starts_with("…and "), "{case}: {words}");
                }
                "Container" => stack.extend(element["items"].as_array().unwrap()),
                "RichTextBlock" => {
                    for run in element["inlines"].as_array().unwrap() {
                        assert_eq!(run["type"], "TextRun");
                        let shown = text(&run["text"]);
                        assert!(!shown.is_empty(), "{case}");
                        assert_one_line(shown.trim(), case);
                    }
                }
                other => panic!("{case}: unexpected element {other}"),
            }
        }
        for (container, f) in containers.iter().zip(findings) {
            let link = &container["items"][0]["inlines"][0]["selectAction"];
            assert_eq!(link["url"], format!("{UI}/findings/{}", f.id));
        }
    }

    #[test]
    fn teams_cards_are_valid_adaptive_cards_under_28_kb_with_values_only_in_text_runs() {
        let schema = adaptive_card_schema();
        for (case, findings) in cases() {
            for status in [AlertStatus::Firing, AlertStatus::Resolved] {
                let message = body(DestinationKind::Teams, status, &findings);
                check_teams(&schema, &message, &findings, &case);
            }
        }
        // The schema is not a formality: it refuses what Teams would.
        let mut card =
            body(DestinationKind::Teams, AlertStatus::Firing, &[finding(1, "x")])["attachments"][0]["content"].clone();
        card["body"][1]["items"][0]["inlines"][0]["weight"] = json!("Heavy");
        assert!(!schema.is_valid(&card));
    }

    fn check_webhook(message: &Value, status: AlertStatus, findings: &[FindingView], case: &str) {
        let size = encoded_len(message);
        assert!(size <= WEBHOOK_MAX_BYTES, "{case}: a {size}-byte webhook body");
        assert_eq!(message["version"], "4");
        assert_eq!(message["status"], status.as_str());
        assert_eq!(message["receiver"], "d");
        assert_eq!(message["groupKey"], "{}:{destination=\"d\"}");
        assert_eq!(message["groupLabels"], json!({"destination": "d"}));
        assert_eq!(message["commonAnnotations"], json!({}));
        assert_eq!(message["externalURL"], UI);
        let alerts = message["alerts"].as_array().unwrap();
        let truncated = message["truncatedAlerts"].as_u64().unwrap() as usize;
        assert_eq!(alerts.len() + truncated, findings.len(), "{case}");
        assert!(!alerts.is_empty() && alerts.len() <= WEBHOOK_ALERTS, "{case}: {} alerts", alerts.len());
        for (alert, f) in alerts.iter().zip(findings) {
            assert_eq!(alert["status"], status.as_str());
            assert_eq!(alert["labels"]["finding_id"], f.id.to_string(), "{case}: the first findings, in order");
            assert_eq!(alert["generatorURL"], format!("{UI}/findings/{}", f.id));
            for key in ["startsAt", "endsAt"] {
                assert!(DateTime::parse_from_rfc3339(text(&alert[key])).is_ok(), "{case}: {key}");
            }
            assert_eq!(alert["fingerprint"].as_str().map(str::len), Some(32));
            let annotations = alert["annotations"].as_object().unwrap();
            for (key, value) in alert["labels"].as_object().unwrap().iter().chain(annotations) {
                assert_one_line(text(value), &format!("{case}: {key}"));
            }
            let cap = |key: &str, max: usize| assert!(text(&annotations[key]).chars().count() <= max, "{case}: {key}");
            cap("description", WEBHOOK_CAPS.summary);
            cap("summary", WEBHOOK_CAPS.title);
            cap("principal_name", WEBHOOK_CAPS.who);
            for key in ["alertname", "severity", "finding_id"] {
                assert!(alert["labels"][key].is_string(), "{case}: {key}");
            }
        }
        for (key, value) in message["commonLabels"].as_object().unwrap() {
            assert!(alerts.iter().all(|a| &a["labels"][key] == value), "{case}: common label {key}");
        }
    }

    #[test]
    fn webhook_bodies_stay_within_their_budget_and_alertmanager_shaped() {
        for (case, findings) in cases() {
            for status in [AlertStatus::Firing, AlertStatus::Resolved] {
                let message = body(DestinationKind::Webhook, status, &findings);
                check_webhook(&message, status, &findings, &case);
            }
        }
        // Ordinary findings all go, up to WEBHOOK_ALERTS.
        let plain: Vec<FindingView> = (1..=150).map(|id| finding(id, "impossible_travel")).collect();
        let message = body(DestinationKind::Webhook, AlertStatus::Firing, &plain);
        assert_eq!(message["alerts"].as_array().unwrap().len(), WEBHOOK_ALERTS);
        assert_eq!(message["truncatedAlerts"], 50);
    }
}

/// A message that is not about findings (an access review's reminder): a headline, lines
/// of `(label, value)` (values are data: shown as plain text only), and one link.
#[derive(Debug, Clone)]
pub struct Notice {
    /// The webhook's `alertname`, e.g. `access_review_due`.
    pub kind: &'static str,
    pub headline: String,
    pub lines: Vec<(&'static str, String)>,
    pub link_text: &'static str,
    pub url: String,
    /// Webhook labels (keys are ours, values data).
    pub labels: Vec<(&'static str, String)>,
}

/// The body of `notice` for `destination`, within each kind's limits.
pub fn notice(destination: &Destination, notice: &Notice, now: DateTime<Utc>) -> Value {
    let caps = match destination.kind {
        DestinationKind::Slack => SLACK_CAPS,
        DestinationKind::Teams => TEAMS_CAPS,
        DestinationKind::Webhook => WEBHOOK_CAPS,
    };
    let headline = format!("TokenTrail: {}", notice.headline);
    match destination.kind {
        DestinationKind::Slack => {
            let plain = |text: String| json!({"type": "plain_text", "text": text, "emoji": false});
            let fields: Vec<Value> = notice
                .lines
                .iter()
                .take(SLACK_MAX_FIELDS)
                .map(|(label, value)| plain(format!("{label}: {}", or_dash(plain_value(value, caps.summary)))))
                .collect();
            let mut fallback = vec![headline.clone()];
            fallback.push(format!("{}: {}", notice.link_text, notice.url));
            json!({
                "text": fit(fallback.join("\n").chars(), SLACK_TEXT_CHARS, slack_entity, chars),
                "blocks": [
                    {"type": "header", "text": {"type": "plain_text", "text": cut(&headline, SLACK_HEADER_CHARS), "emoji": true}},
                    {"type": "section", "fields": fields},
                    {"type": "actions", "elements": [{
                        "type": "button",
                        "text": {"type": "plain_text", "text": cut(notice.link_text, SLACK_BUTTON_CHARS)},
                        "url": cut(&notice.url, SLACK_URL_CHARS)
                    }]}
                ]
            })
        }
        DestinationKind::Teams => {
            let mut body = vec![
                json!({"type": "TextBlock", "text": headline, "weight": "Bolder", "size": "Medium", "wrap": true}),
            ];
            for (label, value) in &notice.lines {
                body.push(json!({"type": "RichTextBlock", "spacing": "None", "inlines": [
                    {"type": "TextRun", "text": format!("{label}: "), "weight": "Bolder"},
                    {"type": "TextRun", "text": or_dash(teams_value(value, caps.summary))}
                ]}));
            }
            json!({
                "type": "message",
                "attachments": [{
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "contentUrl": null,
                    "content": {
                        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                        "type": "AdaptiveCard",
                        "version": ADAPTIVE_CARD_VERSION,
                        "body": body,
                        "actions": [{"type": "Action.OpenUrl", "title": notice.link_text, "url": notice.url}],
                        "msteams": {"width": "Full"}
                    }
                }]
            })
        }
        DestinationKind::Webhook => {
            let mut labels = serde_json::Map::new();
            labels.insert("alertname".into(), json!(notice.kind));
            for (key, value) in &notice.labels {
                labels.insert((*key).into(), json!(plain_value(value, caps.short)));
            }
            let mut annotations = serde_json::Map::new();
            annotations.insert("summary".into(), json!(plain_value(&notice.headline, caps.title)));
            for (label, value) in &notice.lines {
                annotations.insert(label.to_lowercase().replace(' ', "_"), json!(plain_value(value, caps.summary)));
            }
            let alert = json!({
                "status": "firing",
                "labels": labels,
                "annotations": annotations,
                "startsAt": time(now),
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": notice.url,
                "fingerprint": plain_value(&format!("{}:{}", notice.kind, notice.url), caps.short),
            });
            let receiver = &destination.name;
            json!({
                "version": "4",
                "groupKey": format!("{{}}:{{destination=\"{receiver}\"}}"),
                "truncatedAlerts": 0,
                "status": "firing",
                "receiver": receiver,
                "groupLabels": {"destination": receiver},
                "commonLabels": labels,
                "commonAnnotations": {},
                "externalURL": notice.url,
                "alerts": [alert],
            })
        }
    }
}
