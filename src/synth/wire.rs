//! The wire's formats (version 4 GUIDs, times with seven fractional digits, numbers as
//! text) and the RNG streams and draws everything generated comes from.

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serializer;

pub(super) type Prng = ChaCha8Rng;

// RNG streams, so that the tenant, each hour, each scenario and the benchmark never share draws.
pub(super) const STREAM_TENANT: u64 = 1;
pub(super) const STREAM_HOUR: u64 = 2;
pub(super) const STREAM_HISTORY: u64 = 3;
pub(super) const STREAM_NDJSON: u64 = 4;
pub(super) const STREAM_REALISTIC: u64 = 5;
pub(super) const STREAM_CONTROL: u64 = 6;
pub(super) const STREAM_INVENTORY: u64 = 7;
pub(super) const STREAM_QUERIES: u64 = 8;
pub(super) const STREAM_SCENARIO: u64 = 16;

pub(super) fn stream_rng(seed: u64, stream: u64, index: u64) -> Prng {
    Prng::seed_from_u64(splitmix(splitmix(seed ^ stream.rotate_left(40)) ^ index))
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A random span shorter than `span`, in whole 100 ns ticks (the wire's resolution).
pub(super) fn jitter(rng: &mut Prng, span: Duration) -> Duration {
    let ticks = span.num_microseconds().unwrap_or(0) * 10;
    if ticks <= 0 {
        return Duration::zero();
    }
    Duration::nanoseconds(rng.random_range(0..ticks) * 100)
}

/// Drops what the wire's seven fractional digits cannot carry, so `Event::time` and the
/// record's `time` agree.
pub(super) fn whole_ticks(t: DateTime<Utc>) -> DateTime<Utc> {
    t - Duration::nanoseconds(i64::from(t.timestamp_subsec_nanos() % 100))
}

/// Picks from a non-empty constant table by integer weight.
pub(super) fn pick_weighted<T: Copy>(rng: &mut Prng, table: &[(T, u32)]) -> T {
    let total: u32 = table.iter().map(|e| e.1).sum();
    let mut roll = rng.random_range(0..total.max(1));
    for &(item, weight) in table {
        if roll < weight {
            return item;
        }
        roll -= weight;
    }
    table[table.len() - 1].0
}

/// A random (version 4) GUID.
pub(super) struct Guid(u128);

impl Guid {
    pub(super) fn new(rng: &mut Prng) -> Guid {
        let v: u128 = rng.random();
        Guid((v & !(0xF << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62))
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            v >> 96,
            (v >> 80) & 0xffff,
            (v >> 64) & 0xffff,
            (v >> 48) & 0xffff,
            v & 0xffff_ffff_ffff
        )
    }
}

pub(super) fn guid(rng: &mut Prng) -> String {
    Guid::new(rng).to_string()
}

/// ISO 8601 with seven fractional digits and the given zone suffix, as Azure writes it.
pub(super) struct WireTime(pub(super) DateTime<Utc>, pub(super) &'static str);

impl fmt::Display for WireTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (t, zone) = (self.0, self.1);
        write!(f, "{}.{:07}{zone}", t.format("%Y-%m-%dT%H:%M:%S"), t.timestamp_subsec_nanos() / 100)
    }
}

/// GroundTruth times as RFC 3339 strings (chrono's own serde support is not enabled).
pub(super) mod rfc3339 {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text).map(|t| t.with_timezone(&Utc)).map_err(serde::de::Error::custom)
    }
}

pub(super) fn as_text<T: fmt::Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

pub(super) fn six_decimals<S: Serializer>(value: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{value:.6}"))
}
