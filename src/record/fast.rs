//! A fast path for the common case: a Cosmos DB `DataPlaneRequests` record written
//! the way Azure writes it.
//!
//! Almost all traffic is Cosmos DB requests, and Azure writes them all alike: the
//! keys in camelCase, every value a plain JSON string (numbers included), nothing
//! escaped. [`cosmos_record`] reads such a record by scanning its bytes once and
//! builds the same [`Record`] that the lenient serde reader would; the values go
//! through the lenient types' own functions ([`Text::from_cow`],
//! [`Num::from_json_str`]), so the meaning of a value cannot differ.
//!
//! It says `None` (and the caller uses the lenient reader, from scratch) at the first
//! thing outside that shape: a key it does not know in exactly Azure's spelling
//! (other casing, a field it does not read), a value that is not a plain string (a
//! number, `null`, an escape, a control character), a string that is no number where
//! a number belongs, a category other than `DataPlaneRequests`, anything after the
//! record, or JSON that breaks off. Order of keys, whitespace between tokens and
//! missing fields do not matter. A repeated key keeps its last value, as serde does.
//! `tests/it/fast_path.rs` checks both readers give identical rows.

use super::lenient::{Num, Text};
use super::{Properties, Record};
use std::borrow::Cow;

/// The category this path reads; any other goes to the lenient reader.
const CATEGORY: &str = "DataPlaneRequests";

/// `text` as a Cosmos DB request, or `None` if it is not in the shape this path reads.
pub fn cosmos_record(text: &str) -> Option<Record<'_>> {
    let mut record = Record::default();
    read_cosmos_record(text, &mut record).then_some(record)
}

/// Reads `text` into `record` (a default one) if it is a Cosmos DB request in the
/// shape this path reads, in place: a `Record` is a few kilobytes, and copying it
/// showed in profiles. Says `false` if not; `record` is then partly filled.
pub fn read_cosmos_record<'a>(text: &'a str, record: &mut Record<'a>) -> bool {
    let mut scan = Scan { text, pos: 0 };
    scan.object(record).is_some() && scan.end().is_some() && record.category.get() == Some(CATEGORY)
}

/// The records of an envelope in exactly Azure's shape, `{"records":[...]}`, when
/// every one is a Cosmos DB request this path reads: each with its text, read in
/// the same single scan that finds where it ends. `None` at anything else (another
/// key, another category, more than `max` records, ...): the caller then reads the
/// whole envelope as before, so the outcome never depends on which reader ran.
pub fn cosmos_envelope(text: &str, max: usize) -> Option<Vec<(&str, Record<'_>)>> {
    let mut scan = Scan { text, pos: 0 };
    scan.expect(b'{')?;
    if !scan.skip_key(Some(&"records")) {
        return None;
    }
    scan.expect(b'[')?;
    // A `Record` is a few kilobytes: each is read where it stays, in a vector sized
    // for records of about a kilobyte (Azure's are), not moved in and grown around.
    let mut records: Vec<(&str, Record)> = Vec::with_capacity((text.len() / 768 + 1).min(max));
    if scan.peek()? == b']' {
        scan.pos += 1;
    } else {
        loop {
            if records.len() == max {
                return None;
            }
            scan.skip_whitespace();
            let start = scan.pos;
            records.push(("", Record::default()));
            let (slot, record) = records.last_mut()?;
            scan.object(record)?;
            if record.category.get() != Some(CATEGORY) {
                return None;
            }
            *slot = &text[start..scan.pos];
            match scan.next()? {
                b',' => {}
                b']' => break,
                _ => return None,
            }
        }
    }
    scan.expect(b'}')?;
    scan.end()?;
    Some(records)
}

/// An object this path reads: its keys, exactly as Azure spells them and in the
/// order Azure writes them (any order is read; this one is read fastest), and how
/// each key's value is read into which field.
trait Fields<'a> {
    const KEYS: &'static [&'static str];
    /// Reads the value of `KEYS[key]` at the cursor into its field.
    fn read(&mut self, key: usize, scan: &mut Scan<'a>) -> Option<()>;
}

/// Implements [`Fields`] from one list of `"key" => field: how`, where `how` is a
/// method of [`Scan`] that reads a value into a field.
macro_rules! fields {
    ($name:ident { $($key:literal => $field:ident : $how:ident,)* }) => {
        impl<'a> Fields<'a> for $name<'a> {
            const KEYS: &'static [&'static str] = &[$($key),*];
            fn read(&mut self, key: usize, scan: &mut Scan<'a>) -> Option<()> {
                type Read = for<'x> fn(&mut $name<'x>, &mut Scan<'x>) -> Option<()>;
                const READ: &[Read] = &[$(|object, scan| scan.$how(&mut object.$field)),*];
                READ[key](self, scan)
            }
        }
    };
}

fields!(Record {
    "time" => time: text,
    "resourceId" => resource_id: text,
    "category" => category: category,
    "operationName" => operation_name: text,
    "properties" => properties: properties,
    "timeGenerated" => time_generated: text,
    "tenantId" => tenant_id: text,
    "resultType" => result_type: text,
    "resultDescription" => result_description: text,
    "durationMs" => duration_ms: number,
    "callerIpAddress" => caller_ip: text,
    "correlationId" => correlation_id: text,
    "location" => location: text,
});

fields!(Properties {
    "activityId" => activity_id: text,
    "requestResourceType" => request_resource_type: text,
    "requestResourceId" => request_resource_id: text,
    "collectionRid" => collection_rid: text,
    "databaseRid" => database_rid: text,
    "statusCode" => status_code: number,
    "duration" => duration: number,
    "userAgent" => user_agent: text,
    "clientIpAddress" => client_ip: text,
    "requestCharge" => request_charge: number,
    "requestLength" => request_length: number,
    "responseLength" => response_length: number,
    "resourceTokenPermissionId" => resource_token_permission_id: text,
    "resourceTokenPermissionMode" => resource_token_permission_mode: text,
    "resourceTokenUserRid" => resource_token_user_rid: text,
    "region" => region: text,
    "partitionId" => partition_id: text,
    "aadAppliedRoleAssignmentId" => aad_role_assignment_id: text,
    "aadPrincipalId" => aad_principal_id: text,
    "authTokenType" => auth_token_type: text,
    "keyType" => key_type: text,
    "connectionMode" => connection_mode: text,
    "subscriptionId" => subscription_id: text,
    "databaseName" => database_name: text,
    "collectionName" => collection_name: text,
});

/// A cursor over one record's text.
struct Scan<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Scan<'a> {
    /// `{ "key": value, ... }` with keys of `T` only, each value read into its field.
    fn object<T: Fields<'a>>(&mut self, object: &mut T) -> Option<()> {
        self.expect(b'{')?;
        if self.peek()? == b'}' {
            self.pos += 1;
            return Some(());
        }
        let mut next = 0; // the key Azure writes next, if the record is in its order
        loop {
            let key = match self.skip_key(T::KEYS.get(next)) {
                true => next,
                false => {
                    let key = self.string()?;
                    self.expect(b':')?;
                    T::KEYS.iter().position(|known| *known == key)?
                }
            };
            object.read(key, self)?;
            next = key + 1;
            match self.next()? {
                b',' => {}
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    /// Moves past `"key":` if that is exactly what comes next.
    fn skip_key(&mut self, key: Option<&&str>) -> bool {
        self.skip_whitespace();
        let (Some(key), Some(rest)) = (key, self.text.as_bytes().get(self.pos..)) else { return false };
        let quoted = rest.len() > key.len() + 2
            && rest[0] == b'"'
            && rest[1..].starts_with(key.as_bytes())
            && rest[key.len() + 1..].starts_with(b"\":");
        if quoted {
            self.pos += key.len() + 3;
        }
        quoted
    }

    /// `properties` of a Cosmos DB request, read afresh as serde does: a repeated
    /// `properties` replaces the first whole.
    fn properties(&mut self, properties: &mut Properties<'a>) -> Option<()> {
        *properties = Properties::default();
        self.object(properties)
    }

    /// The category, if it is the one this path reads.
    fn category(&mut self, category: &mut Text<'a>) -> Option<()> {
        let text = self.string()?;
        *category = Text::from_cow(Cow::Borrowed((text == CATEGORY).then_some(text)?));
        Some(())
    }

    /// A string value as [`Text`].
    fn text(&mut self, text: &mut Text<'a>) -> Option<()> {
        *text = Text::from_cow(Cow::Borrowed(self.string()?));
        Some(())
    }

    /// A string value as a number; `None` for a string that is no number, so that the
    /// lenient reader quarantines the record with its reason.
    fn number<T: super::lenient::Numeric>(&mut self, number: &mut Num<T>) -> Option<()> {
        *number = Num::from_json_str(self.string()?)?;
        Some(())
    }

    /// A plain string: no escapes and no control characters (which JSON forbids).
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.pos;
        let end = plain_string_end(self.text.as_bytes(), start);
        if self.text.as_bytes().get(end) != Some(&b'"') {
            return None; // an escape, a control character, or the end of the input
        }
        self.pos = end + 1;
        // Both ends are ASCII quotes, so this is a char boundary of valid UTF-8.
        self.text.get(start..end)
    }

    /// Nothing but whitespace is left.
    fn end(&mut self) -> Option<()> {
        self.skip_whitespace();
        (self.pos == self.text.len()).then_some(())
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.next()? == byte).then_some(())
    }

    /// The next byte that is not whitespace, consumed.
    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.pos += 1;
        Some(byte)
    }

    /// The next byte that is not whitespace, not consumed.
    fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        let bytes = self.text.as_bytes();
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = bytes.get(self.pos) {
            self.pos += 1;
        }
    }
}

/// The index of the first `"`, `\` or control character (below 0x20) at or after
/// `from`, or `bytes.len()`. Eight bytes at a time: in each 64-bit word, a byte's
/// high bit is set where it is a hit (the classic "has zero byte" / "has byte less
/// than n" tricks). Those tricks can also flag bytes *above* a true hit, never below
/// it, so the lowest flagged byte is always the first true hit. Bytes of multi-byte
/// UTF-8 characters (0x80 and up) are never flagged.
fn plain_string_end(bytes: &[u8], from: usize) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut i = from;
    while let Some(word) = bytes.get(i..i + 8) {
        let w = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        let hits = zero_byte(w ^ (ONES * b'"' as u64))
            | zero_byte(w ^ (ONES * b'\\' as u64))
            | (w.wrapping_sub(ONES * 0x20) & !w & HIGH);
        if hits != 0 {
            // Little endian: the lowest set bit is the byte that comes first.
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < bytes.len() && !matches!(bytes[i], b'"' | b'\\' | 0x00..=0x1f) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_string_end_finds_the_first_stop_byte_anywhere() {
        // Every position of every stop byte, after ASCII and non-ASCII filler.
        for filler in ["a", "é", "\u{7f}", "~"] {
            for stop in ["\"", "\\", "\n", "\u{0}", "\u{1f}"] {
                for len in 0..40 {
                    let text = format!("{}{stop}\"tail\\", filler.repeat(len));
                    let expected = filler.len() * len;
                    assert_eq!(plain_string_end(text.as_bytes(), 0), expected, "{text:?}");
                }
            }
        }
        assert_eq!(plain_string_end(b"abcdefghijklmnop", 0), 16);
        assert_eq!(plain_string_end(b"abcdefghij\"", 3), 10);
        let printable = b" !#$%&'()*+,-./0123456789:;<=>?@[]^_`{|}~\x7f\"";
        assert_eq!(plain_string_end(printable, 0), printable.len() - 1);
    }

    #[test]
    fn reads_a_canonical_record() {
        let text = r#"{"time":"2024-07-30T17:08:01.3688943Z","resourceId":"/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.DOCUMENTDB/DATABASEACCOUNTS/A","category":"DataPlaneRequests","operationName":"Create","properties":{"statusCode":"200","duration":"0.583700","requestLength":"803","aadPrincipalId":"","region":"East US"}}"#;
        let r = cosmos_record(text).expect("fast path");
        assert_eq!(r.operation_name.get(), Some("Create"));
        assert_eq!(r.properties.status_code.0, Some(200));
        assert_eq!(r.properties.duration.0, Some(0.5837));
        assert_eq!(r.properties.request_length.0, Some(803));
        assert_eq!(r.properties.aad_principal_id.get(), None);
        assert_eq!(r.properties.region.get(), Some("East US"));
    }

    #[test]
    fn declines_what_it_does_not_read() {
        let base =
            r#"{"category":"DataPlaneRequests","time":"2024-07-30T17:08:01Z","properties":{"statusCode":"200"}}"#;
        assert!(cosmos_record(base).is_some());
        for text in [
            base.replace("\"category\"", "\"Category\""),
            base.replace("\"statusCode\":\"200\"", "\"statusCode\":200"),
            base.replace("\"statusCode\":\"200\"", "\"statusCode\":\"two\""),
            base.replace("\"statusCode\":\"200\"", "\"statusCode\":null"),
            base.replace("17:08:01Z", "17:08:01Z\\u0041"),
            base.replace("17:08:01Z", "17:08\n:01Z"),
            base.replace("DataPlaneRequests", "SignInLogs"),
            base.replace("\"time\"", "\"operationVersion\""),
            base.replace("}}", "}"),
            format!("{base}x"),
            format!("{base},{{}}"),
            r#"{"records":[]}"#.to_owned(),
            r#"{"time":"x"}"#.to_owned(),
            String::new(),
        ] {
            assert!(cosmos_record(&text).is_none(), "{text}");
        }
    }
}
