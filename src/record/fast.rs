//! A fast path for the common case: a Cosmos DB `DataPlaneRequests` record.
//!
//! Almost all traffic is Cosmos DB requests, every value a JSON string (numbers
//! included). [`cosmos_record`] reads such a record by scanning its bytes once and
//! builds the same [`Record`] that the lenient serde reader would; the values go
//! through the lenient types' own functions ([`Text::from_cow`],
//! [`Num::from_json_str`], [`Level::from_text`]), so the meaning of a value cannot
//! differ.
//!
//! The layout does not matter: keys in any order and casing (matched as the lenient
//! reader matches them, case-insensitively), whitespace anywhere JSON allows it,
//! escapes in keys and values (unescaped as serde does), `null` for a field, keys the
//! lenient reader does not know (skipped, after checking they are valid JSON, as serde
//! does), missing fields. A repeated key keeps its last value, as serde does, and a
//! repeated `properties` replaces the first whole. Each object type remembers on each
//! thread which key followed which in the last record, so a file in any one layout
//! finds each key with one comparison, as Azure's does.
//!
//! It says `None` (and the caller uses the lenient reader, from scratch) at anything
//! else: a key the lenient reader knows and this path does not read (`records`, the
//! sign-in fields), a value of another type (a JSON number, `true`, an object where
//! text belongs), a string that is no number where a number belongs, an escape serde
//! would refuse (a lone surrogate), a control character, a category other than
//! `DataPlaneRequests`, anything after the record, JSON nested deeper than [`MAX_DEPTH`]
//! or that breaks off. `tests/it/fast_path.rs` checks both readers give identical rows.

use super::lenient::{Level, Num, Text, lowercase_key};
use super::{Category, Properties, Record};
use std::borrow::Cow;
use std::cell::Cell;

/// The category this path reads; any other goes to the lenient reader.
const CATEGORY: &str = "DataPlaneRequests";

/// Nesting this path skips through in a value it does not read (serde's own limit is
/// 128; deeper goes to it).
pub const MAX_DEPTH: usize = 32;

/// `text` as a Cosmos DB request, or `None` if it is not in the shape this path reads.
pub fn cosmos_record(text: &str) -> Option<Record<'_>> {
    let mut record = Record::default();
    read_cosmos_record(text, &mut record).then_some(record)
}

/// Reads `text` into `record` (a default one) if it is a Cosmos DB request in the
/// shape this path reads, in place: a `Record` is a few kilobytes, and copying it
/// showed in profiles. Says `false` if not; `record` is then partly filled.
pub fn read_cosmos_record<'a>(text: &'a str, record: &mut Record<'a>) -> bool {
    let mut scan = Scan::new(text);
    let read = scan.object(record, 0).is_some() && scan.end().is_some() && record.category.0.is_some();
    scan.keep_orders();
    if read {
        READ.with(|n| n.set(n.get() + 1));
    }
    read
}

/// The records of an envelope `{"records":[...]}` (that key alone), when every one is
/// a Cosmos DB request this path reads and that the caller would store as it stands:
/// each with its text, read in the same single scan that finds where it ends. `None`
/// at anything else (another key, another category, more than `max` records, ...):
/// the caller then reads the whole envelope as before, so the outcome never depends
/// on which reader ran.
pub fn cosmos_envelope(text: &str, max: usize) -> Option<Vec<(&str, Record<'_>)>> {
    let mut scan = Scan::new(text);
    let records = scan.envelope(max);
    scan.keep_orders();
    if let Some(records) = &records {
        READ.with(|n| n.set(n.get() + records.len() as u64));
    }
    records
}

/// How many records this path has read on this thread (each one the caller did not
/// hand to the lenient reader): tests and benchmarks check with it which reader ran.
pub fn records_read() -> u64 {
    READ.with(Cell::get)
}

thread_local! {
    /// See [`records_read`].
    static READ: Cell<u64> = const { Cell::new(0) };
    /// The key orders this thread last saw (see [`Orders`]).
    static ORDERS: Cell<Orders> = const { Cell::new(Orders::AZURE) };
}

/// Slots of an object type's order: at most `SLOTS - 1` keys, the last slot for the
/// object's start.
const SLOTS: usize = 48;
const START: usize = SLOTS - 1;

/// For each object type, the index of the key that followed each key the last time
/// (`START`: the first key). Only a guess that saves a lookup: a wrong one costs the
/// lookup, never a different result. Starts as the order of `KEYS`, Azure's.
#[derive(Clone, Copy)]
struct Orders([[u8; SLOTS]; 2]);

impl Orders {
    const AZURE: Orders = {
        let mut next = [0u8; SLOTS];
        let mut i = 0;
        while i < START {
            next[i] = (i + 1) as u8;
            i += 1;
        }
        Orders([next; 2])
    };
}

/// An object this path reads: its keys as Azure spells them and in the order Azure
/// writes them (matched in any casing and order), and how each key's value is read
/// into which field.
trait Fields<'a> {
    const KEYS: &'static [&'static str];
    /// Every key the lenient reader reads into this type, lower-cased.
    const LENIENT: &'static [&'static str];
    /// Which of [`Orders`] is this type's.
    const SLOT: usize;
    /// Reads the value of `KEYS[key]` at the cursor into its field.
    fn read(&mut self, key: usize, scan: &mut Scan<'a>) -> Option<()>;
}

/// Implements [`Fields`] from one list of `"key" => field: how`, where `how` is a
/// method of [`Scan`] that reads a value into a field.
macro_rules! fields {
    ($name:ident, $slot:literal { $($key:literal => $field:ident : $how:ident,)* }) => {
        impl<'a> Fields<'a> for $name<'a> {
            const KEYS: &'static [&'static str] = &[$($key),*];
            const LENIENT: &'static [&'static str] = $name::LOWERCASE_KEYS;
            const SLOT: usize = $slot;
            fn read(&mut self, key: usize, scan: &mut Scan<'a>) -> Option<()> {
                type Read = for<'x> fn(&mut $name<'x>, &mut Scan<'x>) -> Option<()>;
                const READ: &[Read] = &[$(|object, scan| scan.$how(&mut object.$field)),*];
                READ[key](self, scan)
            }
        }
        const _: () = assert!(<$name<'static> as Fields<'static>>::KEYS.len() < START);
    };
}

fields!(Record, 0 {
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
    "level" => level: level,
});

fields!(Properties, 1 {
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
    "resourceType" => request_resource_type: text,
});

/// A cursor over one unit's text.
struct Scan<'a> {
    text: &'a str,
    pos: usize,
    orders: Orders,
}

impl<'a> Scan<'a> {
    fn new(text: &'a str) -> Scan<'a> {
        Scan { text, pos: 0, orders: ORDERS.with(Cell::get) }
    }

    /// Leaves the orders seen for the next unit on this thread.
    fn keep_orders(&self) {
        ORDERS.with(|orders| orders.set(self.orders));
    }

    fn envelope(&mut self, max: usize) -> Option<Vec<(&'a str, Record<'a>)>> {
        self.expect(b'{')?;
        if !self.key()?.eq_ignore_ascii_case("records") {
            return None;
        }
        self.expect(b'[')?;
        // A `Record` is a few kilobytes: each is read where it stays, in a vector sized
        // for records of about a kilobyte (Azure's are), not moved in and grown around.
        let mut records: Vec<(&str, Record)> = Vec::with_capacity((self.text.len() / 768 + 1).min(max));
        if self.peek()? == b']' {
            self.pos += 1;
        } else {
            loop {
                if records.len() == max {
                    return None;
                }
                self.skip_whitespace();
                let start = self.pos;
                records.push(("", Record::default()));
                let (slot, record) = records.last_mut()?;
                self.object(record, 1)?;
                // What `parse_record` would send elsewhere than straight to its table:
                // no category, or `timeGenerated` and no `time` (a Log Analytics row).
                if record.category.0.is_none() || (record.time.0.is_none() && record.time_generated.0.is_some()) {
                    return None;
                }
                *slot = &self.text[start..self.pos];
                match self.next()? {
                    b',' => {}
                    b']' => break,
                    _ => return None,
                }
            }
        }
        self.expect(b'}')?;
        self.end()?;
        Some(records)
    }

    /// `{ "key": value, ... }`: each key of `T` read into its field, keys the lenient
    /// reader does not know skipped, any other key a `None`.
    fn object<T: Fields<'a>>(&mut self, object: &mut T, depth: usize) -> Option<()> {
        self.expect(b'{')?;
        if self.peek()? == b'}' {
            self.pos += 1;
            return Some(());
        }
        let mut previous = START;
        loop {
            let guess = usize::from(self.orders.0[T::SLOT][previous]);
            let key = match T::KEYS.get(guess) {
                Some(key) if self.skip_exact_key(key) => Some(guess),
                _ => {
                    let key = self.key()?;
                    match T::KEYS.iter().position(|known| known.eq_ignore_ascii_case(&key)) {
                        Some(found) => {
                            self.orders.0[T::SLOT][previous] = found as u8;
                            Some(found)
                        }
                        None => {
                            let mut buf = [0; 64];
                            let lower = lowercase_key(&key, &mut buf);
                            if T::LENIENT.contains(&lower) {
                                return None;
                            }
                            None
                        }
                    }
                }
            };
            match key {
                Some(key) => {
                    object.read(key, self)?;
                    previous = key;
                }
                None => self.skip_value(depth + 1)?,
            }
            match self.next()? {
                b',' => {}
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    /// Moves past `"key"` and its colon if exactly that key (these bytes, no escape)
    /// comes next; says whether it did.
    fn skip_exact_key(&mut self, key: &str) -> bool {
        self.skip_whitespace();
        let rest = &self.text.as_bytes()[self.pos..];
        let quoted = rest.len() > key.len() + 2
            && rest[0] == b'"'
            && rest[1..].starts_with(key.as_bytes())
            && rest[key.len() + 1] == b'"';
        if !quoted {
            return false;
        }
        if rest[key.len() + 2] == b':' {
            self.pos += key.len() + 3;
            return true;
        }
        let before = self.pos;
        self.pos += key.len() + 2;
        if self.peek() == Some(b':') {
            self.pos += 1;
            return true;
        }
        self.pos = before;
        false
    }

    /// A key and its colon.
    fn key(&mut self) -> Option<Cow<'a, str>> {
        let key = self.string()?;
        self.expect(b':')?;
        Some(key)
    }

    /// `properties`, read afresh as serde does: a repeated `properties` replaces the
    /// first whole (`null` with nothing).
    fn properties(&mut self, properties: &mut Properties<'a>) -> Option<()> {
        *properties = Properties::default();
        match self.peek()? {
            b'n' => self.literal(b"null"),
            _ => self.object(properties, 1),
        }
    }

    /// The category, if it means the one this path reads or nothing (the record is
    /// read only if it has one in the end). A repeated category that was another one
    /// first goes to the lenient reader too: rare, and never wrong.
    fn category(&mut self, category: &mut Text<'a>) -> Option<()> {
        self.text(category)?;
        match category.get() {
            None | Some(CATEGORY) => Some(()),
            Some(other) => (Category::of(other) == Category::DataPlaneRequests).then_some(()),
        }
    }

    /// A string or `null` as [`Text`].
    fn text(&mut self, text: &mut Text<'a>) -> Option<()> {
        *text = match self.peek()? {
            b'"' => Text::from_cow(self.string()?),
            _ => {
                self.literal(b"null")?;
                Text(None)
            }
        };
        Some(())
    }

    /// A string or `null` as a number; `None` for a string that is no number (the
    /// lenient reader quarantines the record with its reason) and for a JSON number
    /// (serde's reading of one is left to serde).
    fn number<T: super::lenient::Numeric>(&mut self, number: &mut Num<T>) -> Option<()> {
        *number = match self.peek()? {
            b'"' => Num::from_json_str(&self.string()?)?,
            _ => {
                self.literal(b"null")?;
                Num(None)
            }
        };
        Some(())
    }

    /// A string or `null` as a [`Level`].
    fn level(&mut self, level: &mut Level) -> Option<()> {
        let mut text = Text(None);
        self.text(&mut text)?;
        *level = Level::from_text(&text);
        Some(())
    }

    /// A string: borrowed if it has no escapes, unescaped as serde does if it has.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.expect(b'"')?;
        let start = self.pos;
        let bytes = self.text.as_bytes();
        let end = plain_string_end(bytes, start);
        match bytes.get(end)? {
            b'"' => {
                self.pos = end + 1;
                // Both ends are ASCII, so this is a char boundary of valid UTF-8.
                Some(Cow::Borrowed(self.text.get(start..end)?))
            }
            b'\\' => self.escaped_string(start, end).map(Cow::Owned),
            _ => None, // a control character, which JSON forbids
        }
    }

    /// The rest of a string with escapes, from the backslash at `at`. `None` for what
    /// serde refuses (an unknown escape, a lone surrogate) or might read otherwise.
    #[cold]
    fn escaped_string(&mut self, start: usize, mut at: usize) -> Option<String> {
        let bytes = self.text.as_bytes();
        let mut out = String::from(self.text.get(start..at)?);
        loop {
            let escape = *bytes.get(at + 1)?;
            at += 2;
            out.push(match escape {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                b'u' => {
                    let unit = hex4(bytes.get(at..at + 4)?)?;
                    at += 4;
                    if (0xD800..0xDC00).contains(&unit) {
                        if bytes.get(at..at + 2)? != b"\\u" {
                            return None;
                        }
                        let low = hex4(bytes.get(at + 2..at + 6)?)?;
                        if !(0xDC00..0xE000).contains(&low) {
                            return None;
                        }
                        at += 6;
                        char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))?
                    } else {
                        char::from_u32(unit)? // a lone low surrogate is no char
                    }
                }
                _ => return None,
            });
            let end = plain_string_end(bytes, at);
            out.push_str(self.text.get(at..end)?);
            match bytes.get(end)? {
                b'"' => {
                    self.pos = end + 1;
                    return Some(out);
                }
                b'\\' => at = end,
                _ => return None,
            }
        }
    }

    /// Moves past a value this path does not read, checking it as strictly as serde
    /// does when it ignores one: whatever serde refuses, this refuses.
    fn skip_value(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => {
                self.pos += 1;
                self.skip_string()
            }
            b'{' => {
                self.pos += 1;
                if self.peek()? == b'}' {
                    self.pos += 1;
                    return Some(());
                }
                loop {
                    self.expect(b'"')?;
                    self.skip_string()?;
                    self.expect(b':')?;
                    self.skip_value(depth + 1)?;
                    match self.next()? {
                        b',' => {}
                        b'}' => return Some(()),
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.pos += 1;
                if self.peek()? == b']' {
                    self.pos += 1;
                    return Some(());
                }
                loop {
                    self.skip_value(depth + 1)?;
                    match self.next()? {
                        b',' => {}
                        b']' => return Some(()),
                        _ => return None,
                    }
                }
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.skip_number(),
        }
    }

    /// The rest of a string after its opening quote: escapes as serde checks them when
    /// it ignores a string (a known escape, four hex digits after `\u`).
    fn skip_string(&mut self) -> Option<()> {
        let bytes = self.text.as_bytes();
        loop {
            let end = plain_string_end(bytes, self.pos);
            match bytes.get(end)? {
                b'"' => {
                    self.pos = end + 1;
                    return Some(());
                }
                b'\\' => match bytes.get(end + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.pos = end + 2,
                    b'u' => {
                        hex4(bytes.get(end + 2..end + 6)?)?;
                        self.pos = end + 6;
                    }
                    _ => return None,
                },
                _ => return None,
            }
        }
    }

    /// A JSON number: `-`? (`0` | [1-9][0-9]*) (`.` [0-9]+)? ([eE] [+-]? [0-9]+)?
    fn skip_number(&mut self) -> Option<()> {
        let bytes = self.text.as_bytes();
        let digits = |from: usize| from + bytes[from..].iter().take_while(|b| b.is_ascii_digit()).count();
        let mut at = self.pos + usize::from(bytes.get(self.pos) == Some(&b'-'));
        match bytes.get(at)? {
            b'0' => at += 1,
            b'1'..=b'9' => at = digits(at),
            _ => return None,
        }
        if bytes.get(at) == Some(&b'.') {
            let end = digits(at + 1);
            if end == at + 1 {
                return None;
            }
            at = end;
        }
        if let Some(b'e' | b'E') = bytes.get(at) {
            at += 1;
            if let Some(b'+' | b'-') = bytes.get(at) {
                at += 1;
            }
            let end = digits(at);
            if end == at {
                return None;
            }
            at = end;
        }
        // serde refuses a digit after a leading zero, and so does the caller's next
        // expected byte (`,`, `}` or `]`).
        self.pos = at;
        Some(())
    }

    /// Exactly `word` (`true`, `false`, `null`) at the next non-whitespace byte.
    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.skip_whitespace();
        if !self.text.as_bytes()[self.pos..].starts_with(word) {
            return None;
        }
        self.pos += word.len();
        Some(())
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

/// Four hex digits (either case) as a number.
fn hex4(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0, |value, digit| Some(value * 16 + char::from(*digit).to_digit(16)?))
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
    fn reads_any_layout_of_the_same_record() {
        let base = r#"{"category":"DataPlaneRequests","time":"2024-07-30T17:08:01Z","properties":{"statusCode":"200","region":"East US"}}"#;
        let expected = format!("{:?}", cosmos_record(base).expect("fast path"));
        for text in [
            r#" { "properties" : { "region" : "East US" , "statusCode" : "200" } , "time" : "2024-07-30T17:08:01Z" , "category" : "DataPlaneRequests" } "#.to_owned(),
            "{\n\t\"Category\": \"DataPlaneRequests\",\r\n\"TIME\": \"2024-07-30T17:08:01Z\",\n\"Properties\": {\"StatusCode\": \"200\", \"region\": \"East US\"}\n}".to_owned(),
            base.replace("East US", "East\\u0020US").replace("\"time\"", "\"ti\\u006de\""),
            base.replace("\"time\"", "\"operationVersion\":\"1.0\",\"extra\":[1,-2.5e3,true,null,{\"a\":\"\\\"\"}],\"time\""),
            base.replace("\"statusCode\":\"200\"", "\"statusCode\":\"500\",\"statusCode\":\"200\""),
        ] {
            let record = cosmos_record(&text).unwrap_or_else(|| panic!("fast path: {text}"));
            assert_eq!(format!("{record:?}"), expected, "{text}");
        }
        let escaped = base.replace("East US", "\\\"East\\\"\\tUS \\ud83d\\ude80 \\u00e9\\/");
        let record = cosmos_record(&escaped).expect("fast path");
        assert_eq!(record.properties.region.get(), Some("\"East\"\tUS 🚀 é/"));
        let nulls = base.replace("\"200\"", "null").replace("\"East US\"", "null");
        let record = cosmos_record(&nulls).expect("fast path");
        assert_eq!((record.properties.status_code.0, record.properties.region.get()), (None, None));
        let level = base.replace("\"time\"", "\"Level\":\"4\",\"time\"");
        assert_eq!(cosmos_record(&level).expect("fast path").level.get(), Some("Informational"));
    }

    #[test]
    fn declines_what_it_does_not_read() {
        let base =
            r#"{"category":"DataPlaneRequests","time":"2024-07-30T17:08:01Z","properties":{"statusCode":"200"}}"#;
        assert!(cosmos_record(base).is_some());
        for text in [
            base.replace("\"statusCode\":\"200\"", "\"statusCode\":200"),
            base.replace("\"statusCode\":\"200\"", "\"statusCode\":\"two\""),
            base.replace("\"statusCode\":\"200\"", "\"statusCode\":true"),
            base.replace("\"statusCode\":\"200\"", "\"statusCode\":{}"),
            base.replace("17:08:01Z", "17:08:01Z\\ud800"),
            base.replace("17:08:01Z", "17:08:01Z\\udc00"),
            base.replace("17:08:01Z", "17:08:01Z\\ud800\\u0041"),
            base.replace("17:08:01Z", "17:08:01Z\\x"),
            base.replace("17:08:01Z", "17:08\n:01Z"),
            base.replace("DataPlaneRequests", "SignInLogs"),
            base.replace("\"time\"", "\"records\":[],\"time\""),
            base.replace("\"time\"", "\"level\":4,\"time\""),
            base.replace("\"statusCode\"", "\"status\":{},\"statusCode\""),
            base.replace("\"statusCode\"", "\"id\":\"x\",\"statusCode\""),
            base.replace("\"time\"", "\"x\":01,\"time\""),
            base.replace("\"time\"", "\"x\":1.,\"time\""),
            base.replace("\"time\"", "\"x\":-,\"time\""),
            base.replace("\"time\"", "\"x\":tru,\"time\""),
            base.replace("\"time\"", "\"x\":[1,],\"time\""),
            base.replace("\"time\"", "\"x\":\"\\q\",\"time\""),
            base.replace("\"time\"", "\"x\":\"\\u12\",\"time\""),
            base.replace("\"time\"", "\"x\":\"a\u{1}\",\"time\""),
            base.replace("\"time\"", &format!("\"x\":{}1{},\"time\"", "[".repeat(40), "]".repeat(40))),
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

    #[test]
    fn the_fast_path_matches_every_key_the_lenient_reader_has_for_it() {
        for key in <Record as Fields>::KEYS {
            assert!(Record::LOWERCASE_KEYS.contains(&key.to_ascii_lowercase().as_str()), "{key}");
        }
        for key in <Properties as Fields>::KEYS {
            assert!(Properties::LOWERCASE_KEYS.contains(&key.to_ascii_lowercase().as_str()), "{key}");
        }
    }
}
