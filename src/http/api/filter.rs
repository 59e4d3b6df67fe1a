//! WHERE clauses built from query parameters: fixed SQL text with `?` placeholders,
//! values bound, never spliced into the SQL.

use crate::http::error::ApiError;
use duckdb::types::{TimeUnit, Value};
use serde::Deserialize;
use utoipa::IntoParams;

/// A period for pages that show one (a principal, a dashboard). Without `to`, it ends
/// just after the newest relevant event; without `from`, it spans the page's default
/// (14 days for a principal, the dashboard's `range`).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PeriodQuery {
    /// Start (RFC 3339).
    pub from: Option<String>,
    /// End, exclusive (RFC 3339).
    pub to: Option<String>,
}

#[derive(Default)]
pub struct Filter {
    clauses: Vec<String>,
    pub params: Vec<Value>,
}

impl Filter {
    /// Adds `clause` (SQL text of our own, with one `?` per value) and its values.
    pub fn add(&mut self, clause: &str, values: impl IntoIterator<Item = Value>) {
        self.clauses.push(clause.to_string());
        self.params.extend(values);
    }

    /// `column = value` when the parameter is present and not blank.
    pub fn eq(&mut self, column: &str, value: &Option<String>) {
        if let Some(v) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            self.add(&format!("{column} = ?"), [Value::Text(v.to_string())]);
        }
    }

    /// `column IN (values)` for a comma-separated parameter.
    pub fn any_of(&mut self, column: &str, value: &Option<String>) {
        let values: Vec<Value> = value
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| Value::Text(v.to_string()))
            .collect();
        if !values.is_empty() {
            let marks = vec!["?"; values.len()].join(", ");
            self.add(&format!("{column} IN ({marks})"), values);
        }
    }

    /// `column >= from` and `column < to`, from RFC 3339 parameters; returns the period
    /// (epoch microseconds, `None` where unbounded).
    pub fn time_range(
        &mut self,
        column: &str,
        from: &Option<String>,
        to: &Option<String>,
    ) -> Result<(Option<i64>, Option<i64>), ApiError> {
        let mut period = (None, None);
        if let Some(from) = from.as_deref().filter(|v| !v.trim().is_empty()) {
            let micros = crate::http::error::parse_time("from", from)?;
            self.add(&format!("{column} >= ?"), [timestamp(micros)]);
            period.0 = Some(micros);
        }
        if let Some(to) = to.as_deref().filter(|v| !v.trim().is_empty()) {
            let micros = crate::http::error::parse_time("to", to)?;
            self.add(&format!("{column} < ?"), [timestamp(micros)]);
            period.1 = Some(micros);
        }
        Ok(period)
    }

    /// An address or CIDR range: `a.b.c.d`, `a.b.c.d/n`, IPv6 and `v6/n`.
    pub fn ip(&mut self, column: &str, value: &Option<String>) -> Result<(), ApiError> {
        let Some(text) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) else { return Ok(()) };
        let wrong = || {
            ApiError::bad_request(format!(
                "ip={text:?} is not an address or a CIDR range: give an IPv4 address like 203.0.113.7, an IPv6 \
                 address like 2001:db8::1, or a range like 10.0.0.0/8 or 2001:db8::/32"
            ))
        };
        if !text.contains('/') {
            // A value that is no address would match nothing: say so rather than answer 0 rows.
            let address: std::net::IpAddr = text.parse().map_err(|_| wrong())?;
            // Stored as Azure writes it, which is the canonical text (IPv6 lower case).
            let canonical = match address {
                std::net::IpAddr::V6(v6) => v6.to_string(),
                std::net::IpAddr::V4(_) => text.to_string(),
            };
            let mut values = vec![Value::Text(text.to_string())];
            if canonical != text {
                values.push(Value::Text(canonical));
                self.add(&format!("{column} IN (?, ?)"), values);
            } else {
                self.add(&format!("{column} = ?"), values);
            }
            return Ok(());
        }
        let (lo, hi) = crate::rules::network::parse_range(text).ok_or_else(wrong)?;
        // ip_addresses holds every address seen, as fixed-width hex, so a range is a
        // text comparison (DuckDB here has no inet type).
        self.add(
            &format!("{column} IN (SELECT ip FROM ip_addresses WHERE ip_hex BETWEEN ? AND ?)"),
            [Value::Text(crate::rules::network::hex(lo)), Value::Text(crate::rules::network::hex(hi))],
        );
        Ok(())
    }

    /// `WHERE …` (or nothing).
    pub fn sql(&self) -> String {
        if self.clauses.is_empty() { String::new() } else { format!("WHERE {}", self.clauses.join(" AND ")) }
    }

    /// `WHERE … ORDER BY order_by LIMIT ?`, with `limit` bound as the last parameter.
    pub fn sql_limited(&mut self, order_by: &str, limit: i64) -> String {
        self.params.push(Value::BigInt(limit));
        format!("{} ORDER BY {order_by} LIMIT ?", self.sql())
    }
}

/// Refuses a comma-separated parameter `name` holding a value not in `known`: it would
/// match nothing, and 0 rows would not say why.
pub fn known(name: &str, value: &Option<String>, known: &[&str]) -> Result<(), ApiError> {
    for v in value.iter().flat_map(|v| v.split(',')).map(str::trim).filter(|v| !v.is_empty()) {
        if !known.contains(&v) {
            return Err(ApiError::bad_request(format!("{name}={v:?} is not one of {}", known.join(", "))));
        }
    }
    Ok(())
}

pub fn timestamp(micros: i64) -> Value {
    Value::Timestamp(TimeUnit::Microsecond, micros)
}

/// A keyset cursor: the sort time (microseconds) and row id of the last row of a
/// page, as `<micros>.<id>`. Opaque to clients; checked here.
pub fn parse_cursor(cursor: &Option<String>) -> Result<Option<(i64, i64)>, ApiError> {
    let Some(text) = cursor.as_deref().filter(|c| !c.is_empty()) else { return Ok(None) };
    let parsed = text.split_once('.').and_then(|(t, id)| Some((t.parse().ok()?, id.parse().ok()?)));
    parsed.map(Some).ok_or_else(|| {
        ApiError::bad_request(format!(
            "cursor={text:?} is not a cursor this API gave; use the next_cursor of the previous page"
        ))
    })
}

pub fn cursor(time_micros: i64, id: i64) -> String {
    format!("{time_micros}.{id}")
}

/// A `limit` parameter within 1..=max (default when absent).
pub fn limit(value: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    match value {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(format!("limit={n} is out of range; use 1 to {max}"))),
    }
}
