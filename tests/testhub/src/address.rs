//! Link addresses and receiver start filters.

use fe2o3_amqp_types::{
    messaging::FilterSet,
    primitives::{Symbol, Value},
};
use serde_amqp::descriptor::Descriptor;

/// The selector filter's key and descriptor (`apache.org:selector-filter:string`).
const SELECTOR_FILTER_NAME: &str = "apache.org:selector-filter:string";
const SELECTOR_FILTER_CODE: u64 = 0x0000_468C_0000_0004;

/// What a link attaches to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Node {
    /// `$cbs`: claims-based security (put-token).
    Cbs,
    /// `$management`: READ of hub and partition properties.
    Management,
    /// A producer target: `<hub>` or `<hub>/Partitions/<id>`.
    Hub { hub: String, partition: Option<String> },
    /// A consumer source: `<hub>/ConsumerGroups/<group>/Partitions/<id>`.
    ConsumerPartition { hub: String, consumer_group: String, partition: String },
}

/// Parses a link address. Clients send full URLs (`amqps://host[:port]/hub/...`, the port
/// from Python) or bare paths; only the path segments matter.
pub(crate) fn parse_node(address: &str) -> Result<Node, String> {
    let path = match address.find("://") {
        Some(i) => {
            let after = &address[i + 3..];
            after.find('/').map_or("", |j| &after[j + 1..])
        }
        None => address,
    };
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let is = |s: &str, word: &str| s.eq_ignore_ascii_case(word);
    match segments.as_slice() {
        [node] if is(node, "$cbs") => Ok(Node::Cbs),
        [node] if is(node, "$management") => Ok(Node::Management),
        [hub] => Ok(Node::Hub { hub: hub.to_string(), partition: None }),
        [hub, p, id] if is(p, "Partitions") => Ok(Node::Hub { hub: hub.to_string(), partition: Some(id.to_string()) }),
        [hub, g, group, p, id] if is(g, "ConsumerGroups") && is(p, "Partitions") => Ok(Node::ConsumerPartition {
            hub: hub.to_string(),
            consumer_group: group.to_string(),
            partition: id.to_string(),
        }),
        _ => Err(format!("the address '{address}' names no Event Hubs entity the test hub knows")),
    }
}

/// Where a receiver starts reading.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub(crate) enum StartPosition {
    /// Only events enqueued after the link attached (`@latest`).
    Latest,
    /// Events from a sequence number on. Offset filters land here too (offsets are
    /// sequence numbers in the test hub); earliest is `> -1`.
    Sequence { value: i64, inclusive: bool },
    /// Events enqueued after (or at) a time, in milliseconds since the Unix epoch.
    EnqueuedTime { ms: i64, inclusive: bool },
}

/// Finds the selector filter expression in a source's filter set: keyed by its name, or
/// by any key whose value is described by the selector filter's descriptor (code or name).
pub(crate) fn selector_expression(filter: Option<&FilterSet>) -> Option<String> {
    let filter = filter?;
    let as_expression = |value: &Value| -> Option<String> {
        match value {
            Value::String(s) => Some(s.clone()),
            Value::Described(d) => match &d.value {
                Value::String(s) => Some(s.clone()),
                _ => None,
            },
            _ => None,
        }
    };
    let is_selector = |key: &Symbol, value: &Value| {
        key.as_str() == SELECTOR_FILTER_NAME
            || matches!(value, Value::Described(d) if match &d.descriptor {
                Descriptor::Code(code) => *code == SELECTOR_FILTER_CODE,
                Descriptor::Name(name) => name.as_str() == SELECTOR_FILTER_NAME,
            })
    };
    filter.iter().find(|(k, v)| is_selector(k, v)).and_then(|(_, v)| as_expression(v))
}

/// Parses a selector expression such as `amqp.annotation.x-opt-offset > '-1'`,
/// `amqp.annotation.x-opt-sequence-number >='12'` or `amqp.annotation.x-opt-enqueued-time >'1700000000000'`.
/// Spacing varies between clients. No filter at all means `@latest`, as for the service.
pub(crate) fn parse_selector(expression: Option<&str>) -> Result<StartPosition, String> {
    let Some(expression) = expression else {
        return Ok(StartPosition::Latest);
    };
    let bad = |why: &str| format!("unsupported start filter '{expression}': {why}");
    let lower = expression.to_ascii_lowercase();
    let (field, rest) = ["x-opt-offset", "x-opt-sequence-number", "x-opt-enqueued-time"]
        .iter()
        .find_map(|f| lower.find(f).map(|i| (*f, &expression[i + f.len()..])))
        .ok_or_else(|| bad("expected an x-opt-offset, x-opt-sequence-number or x-opt-enqueued-time comparison"))?;
    let rest = rest.trim_start();
    let (inclusive, rest) = if let Some(r) = rest.strip_prefix(">=") {
        (true, r)
    } else if let Some(r) = rest.strip_prefix('>') {
        (false, r)
    } else {
        return Err(bad("expected '>' or '>='"));
    };
    let value = rest.trim();
    let value = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')).unwrap_or(value).trim();
    if field == "x-opt-offset" && value.eq_ignore_ascii_case("@latest") {
        return Ok(StartPosition::Latest);
    }
    let number: i64 = value.parse().map_err(|_| {
        if field == "x-opt-offset" {
            bad("the test hub's offsets are sequence numbers, so an offset must be an integer")
        } else {
            bad("expected an integer")
        }
    })?;
    Ok(match field {
        "x-opt-enqueued-time" => StartPosition::EnqueuedTime { ms: number, inclusive },
        _ => StartPosition::Sequence { value: number, inclusive },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fe2o3_amqp_types::primitives::OrderedMap;
    use serde_amqp::described::Described;

    #[test]
    fn nodes() {
        assert_eq!(parse_node("$cbs"), Ok(Node::Cbs));
        assert_eq!(parse_node("$management"), Ok(Node::Management));
        assert_eq!(
            parse_node("amqps://ns.servicebus.windows.net/hub"),
            Ok(Node::Hub { hub: "hub".into(), partition: None })
        );
        assert_eq!(
            parse_node("amqps://127.0.0.1:5672/hub/Partitions/2"),
            Ok(Node::Hub { hub: "hub".into(), partition: Some("2".into()) })
        );
        assert_eq!(
            parse_node("amqps://localhost/hub/ConsumerGroups/$Default/Partitions/0"),
            Ok(Node::ConsumerPartition { hub: "hub".into(), consumer_group: "$Default".into(), partition: "0".into() })
        );
        assert!(parse_node("amqps://localhost/hub/Nope/0").is_err());
        assert!(parse_node("amqps://localhost/").is_err());
    }

    #[test]
    fn selectors() {
        let p = |s: &str| parse_selector(Some(s));
        assert_eq!(
            p("amqp.annotation.x-opt-offset > '-1'"),
            Ok(StartPosition::Sequence { value: -1, inclusive: false })
        );
        assert_eq!(p("amqp.annotation.x-opt-offset > '@latest'"), Ok(StartPosition::Latest));
        assert_eq!(p("amqp.annotation.x-opt-offset >'5'"), Ok(StartPosition::Sequence { value: 5, inclusive: false }));
        assert_eq!(p("amqp.annotation.x-opt-offset >='5'"), Ok(StartPosition::Sequence { value: 5, inclusive: true }));
        assert_eq!(
            p("amqp.annotation.x-opt-sequence-number >= '12'"),
            Ok(StartPosition::Sequence { value: 12, inclusive: true })
        );
        assert_eq!(
            p("amqp.annotation.x-opt-enqueued-time >'1700000000000'"),
            Ok(StartPosition::EnqueuedTime { ms: 1_700_000_000_000, inclusive: false })
        );
        assert_eq!(parse_selector(None), Ok(StartPosition::Latest));
        assert!(p("amqp.annotation.x-opt-offset < '5'").is_err());
        assert!(p("amqp.annotation.x-opt-offset > 'abc'").is_err());
        assert!(p("amqp.annotation.x-opt-sequence-number > '@latest'").is_err());
        assert!(p("x = 1").is_err());
    }

    #[test]
    fn finds_the_selector_filter() {
        let expression = "amqp.annotation.x-opt-offset > '-1'";
        let described =
            |descriptor| Value::Described(Box::new(Described { descriptor, value: Value::String(expression.into()) }));
        let mut by_code = OrderedMap::new();
        by_code.insert(Symbol::from("some-key"), described(Descriptor::Code(SELECTOR_FILTER_CODE)));
        assert_eq!(selector_expression(Some(&by_code)).as_deref(), Some(expression));
        let mut by_name = OrderedMap::new();
        by_name.insert(
            Symbol::from(SELECTOR_FILTER_NAME),
            described(Descriptor::Name(Symbol::from(SELECTOR_FILTER_NAME))),
        );
        assert_eq!(selector_expression(Some(&by_name)).as_deref(), Some(expression));
        assert_eq!(selector_expression(None), None);
    }
}
