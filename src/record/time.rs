//! Timestamps as diagnostic settings send them, read into microseconds since the Unix
//! epoch, UTC.
//!
//! Four shapes are seen in real traffic (see `shared/brief/formats.md`):
//! ISO 8601 with up to 9 fractional digits and `Z` (the common case, parsed by hand
//! because it is on the hot path), ISO 8601 with an offset, US format without a zone
//! ("11/14/2025 1:48:53 AM", which is UTC), and the RFC 1123 form of old Cosmos DB
//! records ("Fri, 23 Jun 2017 19:29:50.266 GMT"). ISO text without a zone is UTC.

use chrono::{DateTime, NaiveDateTime};

/// Microseconds since 1970-01-01T00:00:00Z, or `None` if `text` is no timestamp we know.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let text = text.trim();
    iso_fast(text.as_bytes()).or_else(|| parse_slow(text))
}

fn two_digits(b: &[u8], i: usize) -> Option<u32> {
    let (x, y) = (b.get(i)?.wrapping_sub(b'0'), b.get(i + 1)?.wrapping_sub(b'0'));
    (x < 10 && y < 10).then_some((x * 10 + y) as u32)
}

/// Days from 1970-01-01 to the given civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = (y - era * 400) as u64;
    let mp = ((m + 9) % 12) as u64;
    let doy = (153 * mp + 2) / 5 + d as u64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe as i64 - 719_468
}

/// `YYYY-MM-DD[T ]HH:MM:SS[.f{1,9}][Z|±hh:mm]`; anything else goes to the slow path.
fn iso_fast(b: &[u8]) -> Option<i64> {
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let year = two_digits(b, 0)? as i64 * 100 + two_digits(b, 2)? as i64;
    let (month, day) = (two_digits(b, 5)?, two_digits(b, 8)?);
    let (hour, minute, second) = (two_digits(b, 11)?, two_digits(b, 14)?, two_digits(b, 17)?);
    let max_day = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => return None,
    };
    if day == 0 || day > max_day || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut i = 19;
    let mut micros: i64 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 6 {
                micros = micros * 10 + (b[i] - b'0') as i64;
            }
            i += 1;
        }
        if i == start || i - start > 9 {
            return None;
        }
        for _ in (i - start).min(6)..6 {
            micros *= 10;
        }
    }
    let offset_seconds: i64 = match &b[i..] {
        [] | [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (two_digits(b, i + 1)?, two_digits(b, i + 4)?);
            if h > 23 || m > 59 {
                return None;
            }
            let seconds = (h * 3600 + m * 60) as i64;
            if *sign == b'+' { seconds } else { -seconds }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + (hour * 3600 + minute * 60 + second) as i64 - offset_seconds;
    Some(seconds * 1_000_000 + micros)
}

#[cold]
fn parse_slow(text: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_micros());
    }
    // "11/14/2025 1:48:53 AM": US format, no zone, UTC.
    // "12/1/2023, 4:03:35.000 PM": the Log Analytics portal's CSV export, also UTC.
    for format in [
        "%m/%d/%Y %I:%M:%S %p",
        "%m/%d/%Y %I:%M:%S%.f %p",
        "%m/%d/%Y %H:%M:%S",
        "%m/%d/%Y, %I:%M:%S%.f %p",
        "%m/%d/%Y, %I:%M:%S %p",
        "%m/%d/%Y, %H:%M:%S%.f",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    // "Fri, 23 Jun 2017 19:29:50.266 GMT": RFC 1123 with fractional seconds.
    if let Some(rest) = text.strip_suffix(" GMT").or_else(|| text.strip_suffix(" UTC")) {
        for format in ["%a, %d %b %Y %H:%M:%S%.f", "%d %b %Y %H:%M:%S%.f"] {
            if let Ok(t) = NaiveDateTime::parse_from_str(rest, format) {
                return Some(t.and_utc().timestamp_micros());
            }
        }
    }
    DateTime::parse_from_rfc2822(text).ok().map(|t| t.timestamp_micros())
}

#[cfg(test)]
mod tests {
    use super::parse_timestamp;

    fn micros(iso: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(iso).unwrap().timestamp_micros()
    }

    #[test]
    fn every_shape_seen_in_traffic() {
        let cases = [
            ("2019-04-23T23:12:52.3814846Z", "2019-04-23T23:12:52.381484Z"),
            ("2019-10-18T04:45:48.0729893-05:00", "2019-10-18T09:45:48.072989Z"),
            ("2022-01-24T04:59:49.2279838+00:00", "2022-01-24T04:59:49.227983Z"),
            ("11/14/2025 1:48:53 AM", "2025-11-14T01:48:53Z"),
            ("11/14/2025 1:48:53 PM", "2025-11-14T13:48:53Z"),
            ("Fri, 23 Jun 2017 19:29:50.266 GMT", "2017-06-23T19:29:50.266Z"),
            ("2024-07-30T17:08:01Z", "2024-07-30T17:08:01Z"),
            ("2024-07-30 17:08:01", "2024-07-30T17:08:01Z"),
            ("2024-02-29T00:00:00.5Z", "2024-02-29T00:00:00.5Z"),
            (" 2024-07-30T17:08:01Z ", "2024-07-30T17:08:01Z"),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_timestamp(text), Some(micros(expected)), "{text}");
        }
    }

    #[test]
    fn rejects_what_is_not_a_time() {
        for text in [
            "",
            "yesterday",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-01-01T25:00:00Z",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00Zjunk",
            "13/45/2025 1:48:53 AM",
        ] {
            assert_eq!(parse_timestamp(text), None, "{text:?}");
        }
    }

    #[test]
    fn fast_path_agrees_with_chrono_on_offsets_and_fractions() {
        for text in [
            "1999-12-31T23:59:59.999999999+14:00",
            "2000-03-01T00:00:00.1-12:30",
            "2038-01-19T03:14:08.0000001Z",
            "1970-01-01T00:00:00Z",
        ] {
            let chrono = chrono::DateTime::parse_from_rfc3339(text).unwrap().timestamp_micros();
            assert_eq!(parse_timestamp(text), Some(chrono), "{text}");
        }
    }
}
