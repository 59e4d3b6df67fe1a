//! The process's own memory, as the kernel counts it: what the SQL console's watchdog
//! compares with its ceiling, and what `/metrics` reports.

/// Resident memory of this process, in bytes (`VmRSS` of `/proc/self/status`); `None`
/// where there is no procfs.
pub fn resident_bytes() -> Option<u64> {
    status_kib("VmRSS:").map(|kib| kib * 1024)
}

/// The most resident memory this process has had, in bytes (`VmHWM`).
pub fn peak_resident_bytes() -> Option<u64> {
    status_kib("VmHWM:").map(|kib| kib * 1024)
}

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()
}

/// A size as DuckDB prints it (`366.2 MiB`, `18.8 GiB`, `384.0 MB`, `512 bytes`), in bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" | "byte" | "bytes" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((number * scale) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_duckdb_prints_them() {
        assert_eq!(parse_size("366.2 MiB"), Some((366.2 * 1048576.0) as u64));
        assert_eq!(parse_size("384MB"), Some(384_000_000));
        assert_eq!(parse_size("512 bytes"), Some(512));
        assert_eq!(parse_size("1.5 GiB"), Some(1_610_612_736));
        assert_eq!(parse_size("lots"), None);
    }

    #[test]
    fn this_process_has_resident_memory() {
        let rss = resident_bytes().expect("procfs");
        assert!(rss > 1024 * 1024 && peak_resident_bytes().unwrap() >= rss);
    }
}
