//! Message bodies: Slack Block Kit, a Microsoft Teams Adaptive Card, and Alertmanager's
//! webhook shape for generic receivers. Each lists up to a few findings in full and
//! summarises the rest, and every finding links to its page in the UI.
//!
//! Text from the logs (principal names, entities, rule details) is attacker-influenced:
//! it is escaped for Slack's mrkdwn and for the Markdown of Teams cards, and cut to each
//! format's limits.

use super::config::{Alerts, Destination, DestinationKind};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// Findings shown one by one in a chat message; the rest are counted.
pub const CHAT_FINDINGS: usize = 10;
/// Alerts in one generic webhook body; the rest are `truncatedAlerts`.
pub const WEBHOOK_ALERTS: usize = 100;

// Slack Block Kit limits (api.slack.com/reference/block-kit/blocks).
pub const SLACK_MAX_BLOCKS: usize = 50;
pub const SLACK_HEADER_CHARS: usize = 150;
pub const SLACK_SECTION_CHARS: usize = 3000;
pub const SLACK_CONTEXT_CHARS: usize = 3000;
pub const SLACK_BUTTON_CHARS: usize = 75;
pub const SLACK_URL_CHARS: usize = 3000;
/// Slack truncates a message's `text` beyond 40,000 characters; the fallback is short.
pub const SLACK_TEXT_CHARS: usize = 3000;

/// Adaptive Card schema version: 1.5 is the newest Teams renders on every client.
pub const ADAPTIVE_CARD_VERSION: &str = "1.5";

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
    fn who(&self) -> Option<String> {
        match (&self.principal_name, &self.principal_id) {
            (Some(name), Some(id)) => Some(format!("{name} ({id})")),
            (None, Some(id)) => Some(id.clone()),
            (Some(name), None) => Some(name.clone()),
            (None, None) => None,
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

/// Slack mrkdwn: `&`, `<` and `>` are control characters (links, mentions).
pub fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Adaptive Card text is Markdown: log text must not make links or emphasis of its own
/// (`[click](https://evil)` in a user agent). Markdown's backslash escapes, as Teams
/// desktop and web render them (older Teams mobile clients showed the backslashes).
pub fn teams_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '[' | ']' | '(' | ')' | '*' | '_' | '`' | '<' | '>' | '~' | '#') {
            out.push('\\');
        }
        out.push(c);
    }
    out
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
    let headline = format!("TokenTrail: {}", headline(status, findings, new));
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": cut(&headline, SLACK_HEADER_CHARS), "emoji": true}
    })];
    let mut fallback = vec![headline.clone()];
    for f in findings.iter().take(CHAT_FINDINGS) {
        let url = cut(&finding_url(ui, f.id), SLACK_URL_CHARS);
        let mark = if status == AlertStatus::Resolved { "✅" } else { severity_mark(&f.severity) };
        let change = if status == AlertStatus::Firing && !new.contains(&f.id) { " (updated)" } else { "" };
        let mut lines = vec![
            format!("{mark} *<{url}|{}>*{change}", slack_escape(&cut(&f.title, 200))),
            format!(
                "*Severity:* {} · *Rule:* `{}` · *Status:* {}",
                slack_escape(&f.severity),
                slack_escape(&f.rule_id),
                slack_escape(&f.status)
            ),
        ];
        if let Some(who) = f.who() {
            lines.push(format!("*Principal:* {}", slack_escape(&cut(&who, 300))));
        }
        lines.push(format!("*Entity:* {}", slack_escape(&cut(&f.entity, 300))));
        lines.push(format!("*Seen:* {} → {} · {} events", time(f.first_seen), time(f.last_seen), f.count));
        if let Some(summary) = &f.summary {
            lines.push(format!("> {}", slack_escape(&cut(summary, 1000)).replace('\n', " ")));
        }
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": cut(&lines.join("\n"), SLACK_SECTION_CHARS)}
        }));
        fallback.push(format!("[{}] {} {}", f.severity, f.title, finding_url(ui, f.id)));
    }
    if findings.len() > CHAT_FINDINGS {
        let more = findings.len() - CHAT_FINDINGS;
        let text = format!("…and {more} more: <{}|all findings>", cut(&format!("{ui}/findings"), SLACK_URL_CHARS));
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": cut(&text, SLACK_CONTEXT_CHARS)}]
        }));
        fallback.push(format!("and {more} more"));
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
    json!({ "text": cut(&slack_escape(&fallback.join("\n")), SLACK_TEXT_CHARS), "blocks": blocks })
}

fn teams(ui: &str, status: AlertStatus, findings: &[FindingView], new: &BTreeSet<i64>) -> Value {
    let mut body = vec![json!({
        "type": "TextBlock",
        "text": format!("TokenTrail: {}", headline(status, findings, new)),
        "weight": "Bolder",
        "size": "Medium",
        "wrap": true,
        "style": "heading"
    })];
    for f in findings.iter().take(CHAT_FINDINGS) {
        let mut facts = vec![
            json!({"title": "Severity", "value": f.severity}),
            json!({"title": "Rule", "value": f.rule_id}),
            json!({"title": "Status", "value": f.status}),
        ];
        if let Some(who) = f.who() {
            facts.push(json!({"title": "Principal", "value": teams_escape(&cut(&who, 300))}));
        }
        facts.push(json!({"title": "Entity", "value": teams_escape(&cut(&f.entity, 300))}));
        facts.push(json!({
            "title": "Seen",
            "value": format!("{} → {} · {} events", time(f.first_seen), time(f.last_seen), f.count)
        }));
        let change = if status == AlertStatus::Firing && !new.contains(&f.id) { " (updated)" } else { "" };
        let mut items = vec![
            json!({
                "type": "TextBlock",
                "text": format!("[{}]({}){change}", teams_escape(&cut(&f.title, 200)), finding_url(ui, f.id)),
                "weight": "Bolder",
                "wrap": true,
                "color": if status == AlertStatus::Resolved { "Good" } else if f.severity == "critical" || f.severity == "high" { "Attention" } else { "Warning" }
            }),
            json!({"type": "FactSet", "facts": facts}),
        ];
        if let Some(summary) = &f.summary {
            let text = teams_escape(&cut(summary, 1000));
            items.push(json!({"type": "TextBlock", "text": text, "wrap": true, "isSubtle": true}));
        }
        body.push(json!({"type": "Container", "separator": true, "items": items}));
    }
    if findings.len() > CHAT_FINDINGS {
        body.push(json!({
            "type": "TextBlock",
            "text": format!("…and {} more.", findings.len() - CHAT_FINDINGS),
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

/// Alertmanager's webhook body (version 4): one alert per finding.
fn alertmanager(
    ui: &str,
    receiver: &str,
    status: AlertStatus,
    findings: &[FindingView],
    new: &BTreeSet<i64>,
    now: DateTime<Utc>,
) -> Value {
    let alerts: Vec<Value> = findings
        .iter()
        .take(WEBHOOK_ALERTS)
        .map(|f| {
            let mut labels = serde_json::Map::new();
            labels.insert("alertname".into(), json!(f.rule_id));
            labels.insert("rule_id".into(), json!(f.rule_id));
            labels.insert("severity".into(), json!(f.severity));
            labels.insert("finding_id".into(), json!(f.id.to_string()));
            labels.insert("entity".into(), json!(f.entity));
            if let Some(p) = &f.principal_id {
                labels.insert("principal_id".into(), json!(p));
            }
            if let Some(a) = &f.account {
                labels.insert("account".into(), json!(a));
            }
            let change = match status {
                AlertStatus::Resolved => f.status.as_str(),
                AlertStatus::Firing if new.contains(&f.id) => "raised",
                AlertStatus::Firing => "updated",
            };
            json!({
                "status": status.as_str(),
                "labels": labels,
                "annotations": {
                    "summary": f.title,
                    "description": f.summary.clone().unwrap_or_default(),
                    "principal_name": f.principal_name.clone().unwrap_or_default(),
                    "finding_status": f.status,
                    "change": change,
                    "count": f.count.to_string(),
                    "last_seen": time(f.last_seen),
                },
                "startsAt": time(f.first_seen),
                "endsAt": if status == AlertStatus::Resolved { time(now) } else { "0001-01-01T00:00:00Z".into() },
                "generatorURL": finding_url(ui, f.id),
                "fingerprint": f.fingerprint,
            })
        })
        .collect();
    // Labels every alert shares, as Alertmanager reports them.
    let mut common = alerts.first().and_then(|a| a["labels"].as_object().cloned()).unwrap_or_default();
    for alert in &alerts[1.min(alerts.len())..] {
        common.retain(|k, v| alert["labels"].get(k) == Some(v));
    }
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{destination=\"{receiver}\"}}"),
        "truncatedAlerts": findings.len().saturating_sub(WEBHOOK_ALERTS),
        "status": status.as_str(),
        "receiver": receiver,
        "groupLabels": {"destination": receiver},
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": ui,
        "alerts": alerts,
    })
}
