//! Lists of leavers (people who left, and when), imported from CSV for the CC6.2 leavers
//! population: `tokentrail leavers import FILE.csv` and `POST /api/leavers` both call
//! [`import`]. Headers are read liberally (`principal_id`, `Object ID`, `UPN`, `Email`,
//! `Left at`, `Termination date`, ...); values strictly: a bad one refuses the whole file,
//! naming the line. Values are stored as written, bound as parameters (never spliced into
//! SQL); the pack's CSV writer escapes formulas.

use crate::store::Store;
use anyhow::Result;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use sha2::{Digest, Sha256};

/// The most lines a list may hold.
pub const MAX_ROWS: usize = 100_000;

/// The largest list read, in bytes.
pub const MAX_BYTES: usize = 16 * 1024 * 1024;

/// One leaver as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaver {
    /// The line of the file (the header is line 1).
    pub line: u64,
    /// Entra ID object id, lower case.
    pub principal_id: Option<String>,
    pub upn: Option<String>,
    pub name: Option<String>,
    /// When they left, microseconds since the epoch (a date alone is its midnight UTC).
    pub left_at: i64,
}

/// Why a list was refused: the file, and the line when one is at fault.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("{file}: line {line}: {message}")]
    Line { file: String, line: u64, message: String },
    #[error("{file}: {message}")]
    File { file: String, message: String },
}

/// What an import stored.
#[derive(Debug, Clone)]
pub struct Imported {
    pub list_id: i64,
    pub rows: usize,
    pub sha256: String,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Column {
    PrincipalId,
    Upn,
    Name,
    LeftAt,
}

/// The column a header names, compared without case, spaces or punctuation.
fn column(header: &str) -> Option<Column> {
    let key: String = header.chars().filter(char::is_ascii_alphanumeric).collect::<String>().to_ascii_lowercase();
    Some(match key.as_str() {
        "principalid" | "objectid" | "oid" | "id" | "userid" | "userobjectid" | "entraid" | "entraobjectid"
        | "aadobjectid" | "azureadobjectid" | "azureobjectid" => Column::PrincipalId,
        "upn" | "userprincipalname" | "email" | "mail" | "emailaddress" | "login" | "username" | "signinname" => {
            Column::Upn
        }
        "name" | "displayname" | "fullname" | "employee" | "employeename" | "person" => Column::Name,
        "leftat" | "left" | "leftdate" | "dateleft" | "leavedate" | "leavingdate" | "leaverdate" | "lastday"
        | "lastworkingday" | "lastdayofwork" | "enddate" | "endedat" | "terminationdate" | "terminatedat"
        | "terminated" | "departuredate" | "departedat" | "exitdate" | "offboardeddate" | "offboardingdate"
        | "offboardedat" | "separationdate" | "date" => Column::LeftAt,
        _ => return None,
    })
}

fn is_guid(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 36
        && b.iter()
            .enumerate()
            .all(|(i, c)| if matches!(i, 8 | 13 | 18 | 23) { *c == b'-' } else { c.is_ascii_hexdigit() })
}

/// A UPN or e-mail: one `@` between non-empty parts, no spaces or control characters.
fn is_upn(text: &str) -> bool {
    let mut parts = text.split('@');
    let (Some(user), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else { return false };
    !user.is_empty() && domain.contains('.') && !text.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// RFC 3339 (`2025-03-04T17:00:00Z`, any offset), `2025-03-04 17:00[:00]` (UTC) or
/// `2025-03-04` (its midnight UTC).
fn parse_time(text: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc).timestamp_micros());
    }
    for format in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .filter(|_| text.len() == 10)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_micros())
}

/// Reads a list: a header naming at least a principal id or UPN column and a date column,
/// then one leaver a line (comma- or semicolon-separated, UTF-8).
pub fn parse(file: &str, bytes: &[u8]) -> Result<Vec<Leaver>, ListError> {
    let file_error = |message: String| ListError::File { file: file.to_string(), message };
    let line_error = |line: u64, message: String| ListError::Line { file: file.to_string(), line, message };
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()].iter().filter(|b| **b == b'\n').count() as u64 + 1;
        line_error(line, "not UTF-8 text: save the list as CSV UTF-8".into())
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let first = text.lines().next().unwrap_or_default();
    let delimiter = if !first.contains(',') && first.contains(';') { b';' } else { b',' };
    let mut reader = csv::ReaderBuilder::new().delimiter(delimiter).has_headers(true).from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| line_error(1, format!("the header is not CSV: {e}")))?.clone();
    let mut columns: Vec<Option<Column>> = Vec::new();
    for header in headers.iter() {
        let found = column(header);
        if let Some(c) = found
            && columns.contains(&Some(c))
        {
            return Err(line_error(1, format!("two columns mean the same ({header:?} and an earlier one)")));
        }
        columns.push(found);
    }
    let has = |c: Column| columns.contains(&Some(c));
    if headers.is_empty() || text.trim().is_empty() {
        return Err(file_error("empty: write a header (principal_id or upn, left_at) and one leaver a line".into()));
    }
    if !(has(Column::PrincipalId) || has(Column::Upn)) || !has(Column::LeftAt) {
        return Err(line_error(
            1,
            format!(
                "the header ({}) must name who left (principal_id / object id, or upn / email) and when (left_at / \
                 leave date / termination date)",
                headers.iter().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    let mut leavers = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            match e.kind() {
                csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
                    line_error(line, format!("{len} fields where the header has {expected_len}"))
                }
                _ => line_error(line, format!("not CSV: {e}")),
            }
        })?;
        let line = record.position().map_or(0, |p| p.line());
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        if leavers.len() == MAX_ROWS {
            return Err(line_error(line, format!("more than {MAX_ROWS} leavers: split the list")));
        }
        let mut leaver = Leaver { line, principal_id: None, upn: None, name: None, left_at: 0 };
        let mut left_at = None;
        for (value, column) in record.iter().zip(&columns) {
            let value = value.trim();
            let Some(column) = column else { continue };
            if value.is_empty() {
                continue;
            }
            if value.chars().any(|c| c.is_control() && c != '\t') {
                return Err(line_error(line, "a field holds a control character".into()));
            }
            match column {
                Column::PrincipalId if is_guid(value) => leaver.principal_id = Some(value.to_ascii_lowercase()),
                Column::PrincipalId => {
                    return Err(line_error(
                        line,
                        format!("principal id {value:?} is not an Entra ID object id (a GUID)"),
                    ));
                }
                Column::Upn if is_upn(value) => leaver.upn = Some(value.to_string()),
                Column::Upn => {
                    return Err(line_error(line, format!("{value:?} is not a user principal name (name@domain)")));
                }
                Column::Name => leaver.name = Some(value.to_string()),
                Column::LeftAt => match parse_time(value) {
                    Some(t) => left_at = Some(t),
                    None => {
                        return Err(line_error(
                            line,
                            format!(
                                "date {value:?} is not a date: write 2025-03-04, 2025-03-04 17:00 (UTC) or \
                                 2025-03-04T17:00:00Z"
                            ),
                        ));
                    }
                },
            }
        }
        if leaver.principal_id.is_none() && leaver.upn.is_none() {
            return Err(line_error(line, "neither a principal id nor a UPN: say who left".into()));
        }
        leaver.left_at = left_at.ok_or_else(|| line_error(line, "no date: say when they left".into()))?;
        leavers.push(leaver);
    }
    if leavers.is_empty() {
        return Err(file_error("no leavers: the file has a header and no line after it".into()));
    }
    Ok(leavers)
}

/// Reads `bytes` (a list named `file`) and stores it as one list, in one transaction,
/// recording who loaded it: nothing is stored when a line is refused.
pub fn import(store: &Store, file: &str, bytes: &[u8], loaded_by: &str) -> Result<Imported> {
    let leavers = parse(file, bytes)?;
    let sha256 = crate::store::chain::hex(&Sha256::digest(bytes).into());
    let list_id = store.transaction(|conn| {
        let list_id: i64 = conn.query_row(
            "INSERT INTO leaver_lists (loaded_at, loaded_by, file_name, sha256, rows)
             VALUES (get_current_timestamp(), ?, ?, ?, ?) RETURNING list_id",
            duckdb::params![loaded_by, file, sha256, leavers.len() as i64],
            |r| r.get(0),
        )?;
        let mut insert = conn.prepare(
            "INSERT INTO leavers_listed (list_id, line, principal_id, upn, name, left_at)
             VALUES (?, ?, ?, ?, ?, make_timestamp(?)::TIMESTAMPTZ)",
        )?;
        for l in &leavers {
            insert.execute(duckdb::params![list_id, l.line as i64, l.principal_id, l.upn, l.name, l.left_at])?;
        }
        Ok(list_id)
    })?;
    Ok(Imported { list_id, rows: leavers.len(), sha256 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_read_liberally_and_values_strictly() {
        let list = "\u{feff}Object ID;E-mail;Full name;Termination Date\n\
                    A11CE000-0000-4000-8000-000000000001;alice@contoso.com;Alice;2025-03-04\n\
                    ;bob@contoso.com;;2025-03-05T10:30:00+02:00\n";
        let leavers = parse("hr.csv", list.as_bytes()).unwrap();
        assert_eq!(leavers.len(), 2);
        assert_eq!(leavers[0].principal_id.as_deref(), Some("a11ce000-0000-4000-8000-000000000001"));
        assert_eq!(leavers[0].line, 2);
        assert_eq!(
            leavers[1].left_at,
            DateTime::parse_from_rfc3339("2025-03-05T08:30:00Z").unwrap().timestamp_micros()
        );
        let bad = "upn,left_at\nalice@contoso.com,2025-03-04\nbob@contoso.com,04/03/2025\n";
        let error = parse("hr.csv", bad.as_bytes()).unwrap_err().to_string();
        assert!(error.starts_with("hr.csv: line 3: date \"04/03/2025\""), "{error}");
        let error = parse("hr.csv", b"name,when\nx,y\n").unwrap_err().to_string();
        assert!(error.starts_with("hr.csv: line 1: the header"), "{error}");
        let error = parse("hr.csv", b"oid,left\nnot-a-guid,2025-01-01\n").unwrap_err().to_string();
        assert!(error.contains("line 2") && error.contains("GUID"), "{error}");
    }
}
