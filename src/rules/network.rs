//! Addresses and address lists, in the one form DuckDB can compare without the `inet`
//! extension: 32 lower-case hex digits of the 128-bit address, IPv4 mapped into
//! `::ffff:0:0/96`. A CIDR range becomes its first and last address, so "in the range" is
//! two string comparisons.

use std::net::{IpAddr, Ipv6Addr};
use std::path::Path;

/// Networks that are never raised by `ip_not_in_signins` unless configured otherwise:
/// private (RFC 1918, RFC 4193), loopback, link-local and CGNAT space, where private
/// endpoints, virtual networks and on-premises NAT put their addresses.
pub const DEFAULT_TRUSTED: &[&str] = &[
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
];

/// One entry of a list: an address or a CIDR range, as its first and last address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkEntry {
    pub list: String,
    /// The file it came from, or `config`.
    pub source: String,
    pub entry: String,
    pub lo_hex: String,
    pub hi_hex: String,
}

/// An address as 128 bits (IPv4 mapped) and its version, or `None` if `text` is not one.
/// Accepts `[v6]`, a trailing `:port` on IPv4, and an IPv6 zone (`%eth0`), which Azure
/// logs occasionally carry.
pub fn parse_ip(text: &str) -> Option<(u128, u8)> {
    let text = text.trim();
    let text = text.strip_prefix('[').and_then(|t| t.split(']').next()).unwrap_or(text);
    let text = text.split('%').next().unwrap_or(text);
    let ip: IpAddr = match text.parse() {
        Ok(ip) => ip,
        // a.b.c.d:port
        Err(_) => text.rsplit_once(':').filter(|(host, _)| !host.contains(':'))?.0.parse().ok()?,
    };
    Some(match ip {
        IpAddr::V4(v4) => (u128::from(v4.to_ipv6_mapped()), 4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => (u128::from(v4.to_ipv6_mapped()), 4),
            None => (u128::from(v6), 6),
        },
    })
}

pub fn hex(value: u128) -> String {
    format!("{value:032x}")
}

/// `a.b.c.d`, `a.b.c.d/n`, an IPv6 address or `v6/n` as (first, last) address.
pub fn parse_range(text: &str) -> Option<(u128, u128)> {
    let text = text.trim();
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix.trim().parse::<u32>().ok()?)),
        None => (text, None),
    };
    let (value, version) = parse_ip(address)?;
    let bits = match (version, prefix) {
        (_, None) => 128,
        (4, Some(p)) if p <= 32 => 96 + p,
        (6, Some(p)) if p <= 128 => p,
        _ => return None,
    };
    let host_bits = 128 - bits;
    let mask = if host_bits == 128 { u128::MAX } else { (1u128 << host_bits) - 1 };
    Some((value & !mask, value | mask))
}

/// Parses `entries` into `list`; returns the entries and the ones that are not addresses.
pub fn entries(list: &str, source: &str, lines: impl IntoIterator<Item = String>) -> (Vec<NetworkEntry>, Vec<String>) {
    let mut parsed = Vec::new();
    let mut rejected = Vec::new();
    for line in lines {
        // One entry a line; `#` starts a comment; CSV files: the first field.
        let line = line.split('#').next().unwrap_or_default();
        let Some(entry) = line.split([',', ';', ' ', '\t']).map(str::trim).find(|f| !f.is_empty()) else {
            continue;
        };
        match parse_range(entry) {
            Some((lo, hi)) => parsed.push(NetworkEntry {
                list: list.into(),
                source: source.into(),
                entry: entry.into(),
                lo_hex: hex(lo),
                hi_hex: hex(hi),
            }),
            None => rejected.push(entry.to_owned()),
        }
    }
    (parsed, rejected)
}

/// Every file of `dir` (not recursing; hidden files skipped) as the `threat_intel` list,
/// each file a source. Returns the entries and one message per file with rejected lines
/// (or that could not be read).
pub fn threat_intel_folder(dir: &Path) -> (Vec<NetworkEntry>, Vec<String>) {
    let mut all = Vec::new();
    let mut problems = Vec::new();
    let mut files: Vec<std::path::PathBuf> = match std::fs::read_dir(dir) {
        Ok(read) => read.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_file()).collect(),
        Err(error) => {
            problems.push(format!("{}: cannot read the threat intelligence folder: {error}", dir.display()));
            return (all, problems);
        }
    };
    files.retain(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')));
    files.sort();
    for file in files {
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let text = match std::fs::read(&file) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(error) => {
                problems.push(format!("{}: {error}", file.display()));
                continue;
            }
        };
        let (parsed, rejected) = entries("threat_intel", &name, text.lines().map(str::to_owned));
        if !rejected.is_empty() {
            let shown: Vec<&str> = rejected.iter().take(3).map(String::as_str).collect();
            problems.push(format!(
                "{}: {} lines are not an address or CIDR range (e.g. {})",
                file.display(),
                rejected.len(),
                shown.join(", ")
            ));
        }
        all.extend(parsed);
    }
    (all, problems)
}

/// Readable form of a hex address, for messages.
pub fn display_hex(hex: &str) -> Option<String> {
    let value = u128::from_str_radix(hex, 16).ok()?;
    let v6 = Ipv6Addr::from(value);
    Some(v6.to_ipv4_mapped().map_or_else(|| v6.to_string(), |v4| v4.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(text: &str) -> (String, String) {
        let (lo, hi) = parse_range(text).unwrap_or_else(|| panic!("{text} parses"));
        (display_hex(&hex(lo)).unwrap(), display_hex(&hex(hi)).unwrap())
    }

    #[test]
    fn addresses_map_into_one_ordered_space() {
        assert_eq!(parse_ip("10.1.2.3"), Some((0xffff_0a01_0203, 4)));
        assert_eq!(parse_ip("::ffff:10.1.2.3"), Some((0xffff_0a01_0203, 4)));
        assert_eq!(parse_ip("10.1.2.3:443"), parse_ip("10.1.2.3"));
        assert_eq!(parse_ip("[2001:db8::1]").map(|p| p.1), Some(6));
        assert_eq!(parse_ip("fe80::1%eth0").map(|p| p.1), Some(6));
        assert_eq!(parse_ip("unknown"), None);
        assert_eq!(parse_ip(""), None);
        // Hex text orders like the numbers, so ranges compare as strings.
        let a = hex(parse_ip("9.255.255.255").unwrap().0);
        let b = hex(parse_ip("10.0.0.0").unwrap().0);
        assert!(a < b && a.len() == 32 && b.len() == 32);
    }

    #[test]
    fn cidr_ranges_cover_what_they_should() {
        assert_eq!(range("10.0.0.0/8"), ("10.0.0.0".into(), "10.255.255.255".into()));
        assert_eq!(range("185.220.101.0/24"), ("185.220.101.0".into(), "185.220.101.255".into()));
        assert_eq!(range("185.220.101.47"), ("185.220.101.47".into(), "185.220.101.47".into()));
        assert_eq!(range("10.1.2.3/8"), ("10.0.0.0".into(), "10.255.255.255".into()), "host bits are dropped");
        assert_eq!(range("2001:db8::/32"), ("2001:db8::".into(), "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff".into()));
        assert_eq!(range("0.0.0.0/0").0, "0.0.0.0");
        assert_eq!(parse_range("10.0.0.0/33"), None);
        assert_eq!(parse_range("2001:db8::/129"), None);
        assert_eq!(parse_range("10.0.0.0/x"), None);
    }

    #[test]
    fn list_files_take_the_first_field_and_skip_comments() {
        let lines =
            ["# Tor exits", "185.220.101.47", "  185.220.100.0/24  # a range", "", "198.51.100.7,tor,2024", "junk"];
        let (parsed, rejected) = entries("threat_intel", "tor.txt", lines.iter().map(|s| s.to_string()));
        let got: Vec<&str> = parsed.iter().map(|e| e.entry.as_str()).collect();
        assert_eq!(got, ["185.220.101.47", "185.220.100.0/24", "198.51.100.7"]);
        assert_eq!(rejected, ["junk"]);
        assert!(parsed.iter().all(|e| e.source == "tor.txt" && e.lo_hex <= e.hi_hex));
    }

    #[test]
    fn the_default_trusted_networks_parse() {
        for entry in DEFAULT_TRUSTED {
            assert!(parse_range(entry).is_some(), "{entry}");
        }
    }
}
