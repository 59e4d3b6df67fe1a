//! One delivery attempt over HTTP, and what it means: delivered, retry (when), or give up.
//!
//! Every attempt carries the message's `webhook-id` (the same on each attempt, so a
//! receiver can drop a repeat); a generic webhook is also signed per Standard Webhooks
//! (`webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>`,
//! one signature per configured key). Errors never carry the URL.

use super::config::{Destination, DestinationKind, SigningKey};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;

/// The longest `Retry-After` honoured; a longer one is cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// Bytes of an answer read to judge it (Teams puts errors in a 200's body).
const ANSWER_BYTES: usize = 64 * 1024;

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The destination accepted it.
    Delivered { status: u16 },
    /// Worth trying again: no answer, a timeout, 408, 429, 5xx, or a 200 that reports an
    /// error. `after`: the destination's `Retry-After`.
    Retry { status: Option<u16>, reason: String, after: Option<Duration> },
    /// Trying again will not help (400, 401, 403, 404, 410, ...): the message is dead.
    Refused { status: u16, reason: String },
}

/// The Standard Webhooks signature header for `body` sent as `id` at `timestamp` (seconds).
pub fn signature(keys: &[SigningKey], id: &str, timestamp: i64, body: &str) -> String {
    let content = format!("{id}.{timestamp}.{body}");
    keys.iter()
        .map(|key| {
            let mut mac = Hmac::<Sha256>::new_from_slice(key.bytes()).expect("HMAC takes keys of any length");
            mac.update(content.as_bytes());
            format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Sends `body` to `destination` once.
pub async fn attempt(client: &reqwest::Client, destination: &Destination, webhook_id: &str, body: &str) -> Outcome {
    let mut request = client
        .post(destination.url.expose())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("webhook-id", webhook_id);
    if destination.kind == DestinationKind::Webhook {
        let now = chrono::Utc::now().timestamp();
        request = request
            .header("webhook-timestamp", now.to_string())
            .header("webhook-signature", signature(&destination.keys, webhook_id, now, body));
    }
    let response = match request.body(body.to_owned()).send().await {
        Ok(response) => response,
        Err(error) => return Outcome::Retry { status: None, reason: transport_error(error), after: None },
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
    let answer = match read_answer(response).await {
        Ok(answer) => answer,
        Err(error) => {
            return Outcome::Retry { status: Some(status.as_u16()), reason: transport_error(error), after: None };
        }
    };
    judge(destination.kind, status.as_u16(), &answer, retry_after)
}

/// The first bytes of the answer.
async fn read_answer(mut response: reqwest::Response) -> Result<String, reqwest::Error> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() >= ANSWER_BYTES {
            bytes.truncate(ANSWER_BYTES);
            break;
        }
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// What an answer means for a destination of `kind`.
pub fn judge(kind: DestinationKind, status: u16, answer: &str, retry_after: Option<Duration>) -> Outcome {
    let snippet = || super::payload::cut(answer.trim(), 200);
    match status {
        200..=299 if kind == DestinationKind::Teams && reports_error(answer) => Outcome::Retry {
            status: Some(status),
            reason: format!("Teams answered {status} with an error: {}", snippet()),
            after: retry_after,
        },
        200..=299 => Outcome::Delivered { status },
        408 | 425 | 429 | 500..=599 => {
            Outcome::Retry { status: Some(status), reason: format!("HTTP {status}: {}", snippet()), after: retry_after }
        }
        _ => Outcome::Refused { status, reason: format!("HTTP {status}: {}", snippet()) },
    }
}

/// A 2xx body that is not an acknowledgement: Teams' connectors answered `1` on success
/// and 200 with text such as "Microsoft Teams endpoint returned HTTP error 429" on
/// failure; Workflows answer 202 with an empty body, or JSON with an `error` object.
fn reports_error(answer: &str) -> bool {
    let text = answer.trim();
    if text.is_empty() || text == "1" {
        return false;
    }
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(text) {
        return json.get("error").is_some_and(|e| !e.is_null())
            || json.get("errors").is_some_and(|e| e.as_array().is_some_and(|a| !a.is_empty()));
    }
    let lower = text.to_ascii_lowercase();
    lower.contains("error") || lower.contains("fail") || lower.contains("throttl")
}

/// `Retry-After`: seconds, or an HTTP date.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = (at.with_timezone(&chrono::Utc) - now).to_std().unwrap_or(Duration::ZERO);
    Some(wait.min(MAX_RETRY_AFTER))
}

/// A reqwest error as a reason, without the URL (it is a secret).
fn transport_error(error: reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let error = error.without_url();
    let mut text = format!("{kind}: {error}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// The wait before attempt `attempts + 1` after `attempts` failures: exponential from
/// `initial`, at most `max`, with "equal jitter" (half fixed, half random) so that
/// destinations that failed together do not retry together.
pub fn backoff(attempts: u32, initial: Duration, max: Duration) -> Duration {
    let exponent = attempts.saturating_sub(1).min(30);
    let full = initial.saturating_mul(1u32 << exponent).min(max);
    let half = full / 2;
    half + Duration::from_micros(rand::random_range(0..=half.as_micros() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_judged_by_kind() {
        use DestinationKind::*;
        assert_eq!(judge(Slack, 200, "ok", None), Outcome::Delivered { status: 200 });
        assert_eq!(judge(Teams, 202, "", None), Outcome::Delivered { status: 202 });
        assert_eq!(judge(Teams, 200, "1", None), Outcome::Delivered { status: 200 });
        let throttled = "Microsoft Teams endpoint returned HTTP error 429 with ContextId tcid=0";
        assert!(matches!(judge(Teams, 200, throttled, None), Outcome::Retry { status: Some(200), .. }));
        assert!(matches!(judge(Teams, 200, r#"{"error":{"code":"x"}}"#, None), Outcome::Retry { .. }));
        let after = Some(Duration::from_secs(3));
        assert_eq!(
            judge(Webhook, 429, "slow down", after),
            Outcome::Retry { status: Some(429), reason: "HTTP 429: slow down".into(), after }
        );
        assert!(matches!(judge(Slack, 404, "no_service", None), Outcome::Refused { status: 404, .. }));
        assert!(matches!(judge(Slack, 503, "", None), Outcome::Retry { .. }));
    }

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z").unwrap().to_utc();
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn backoff_grows_with_jitter_and_stops_at_the_maximum() {
        let (initial, max) = (Duration::from_secs(1), Duration::from_secs(60));
        for attempts in 1..12 {
            let full = (initial * 2u32.pow(attempts - 1)).min(max);
            let wait = backoff(attempts, initial, max);
            assert!(wait >= full / 2 && wait <= full, "{attempts}: {wait:?}");
        }
    }

    #[test]
    fn signatures_follow_the_specification_example() {
        // The example of the Standard Webhooks reference implementations.
        let key = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        let expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert_eq!(signature(&[key], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body), expected);
    }
}
