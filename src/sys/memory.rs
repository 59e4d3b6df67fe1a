//! The process's memory as the kernel and the C allocator count it.

/// Resident memory of this process, in bytes (`VmRSS` of `/proc/self/status`); `None`
/// where there is no procfs.
pub fn resident_bytes() -> Option<u64> {
    status_kib("VmRSS:").map(|kib| kib * 1024)
}

/// The most resident memory this process has had, in bytes (`VmHWM`).
pub fn peak_resident_bytes() -> Option<u64> {
    status_kib("VmHWM:").map(|kib| kib * 1024)
}

/// Resident memory split as the kernel counts it: anonymous (heaps, stacks) and
/// file-backed (the binary's pages and mapped files), in bytes (`RssAnon`, `RssFile`).
pub fn resident_split_bytes() -> Option<(u64, u64)> {
    Some((status_kib("RssAnon:")? * 1024, status_kib("RssFile:")? * 1024))
}

/// Bytes Rust's allocator (mimalloc) has committed from the kernel, whether in use or
/// kept for reuse (`mi_process_info`); near zero in a binary that routes Rust's
/// allocations elsewhere (the tests' counting allocator).
pub fn rust_heap_committed_bytes() -> u64 {
    let mut commit = 0usize;
    // SAFETY: every out-parameter is nullable; the one passed is a valid usize.
    unsafe {
        libmimalloc_sys::mi_process_info(
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut commit,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    commit as u64
}

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()
}

/// Bytes the C allocator (glibc malloc, which DuckDB uses) has handed out and holds free,
/// where it can say (`mallinfo2`).
pub fn malloc_bytes() -> Option<(u64, u64)> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 takes no arguments and returns a plain struct by value.
        let info = unsafe { libc::mallinfo2() };
        Some(((info.uordblks + info.hblkhd) as u64, info.fordblks as u64))
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

/// Hands the C allocator's free pages back to the kernel (`malloc_trim`). glibc keeps the
/// pages of chunks freed inside its arenas resident until then, and DuckDB frees tens of
/// MiB after each pass in scattered chunks (the demo's arenas held over 400 MiB free
/// beside under 100 MiB in use). A no-op on other C libraries.
pub fn trim_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas under their locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Caps glibc's malloc arenas at one per core (`mallopt(M_ARENA_MAX)`), unless the
/// operator set `glibc.malloc.arena_max` in `GLIBC_TUNABLES`; for the long-running
/// commands, before their threads start. glibc gives a thread that allocates while others
/// do an arena of its own, up to eight per core, and reuses a chunk freed in one arena only
/// there. `serve` runs many threads that call DuckDB (HTTP, ingest lanes, detection, the
/// fleet thread), so without a cap each arena keeps its own free memory resident, and
/// `malloc_trim` cannot return the pages live chunks still touch.
pub fn cap_malloc_arenas() {
    if std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc.arena_max")) {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let arenas = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
        // SAFETY: mallopt sets a glibc tunable; any value is valid for M_ARENA_MAX.
        let set = unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas as libc::c_int) } == 1;
        tracing::debug!(arenas, set, "C allocator's arenas capped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_resident_memory() {
        let rss = resident_bytes().expect("procfs");
        assert!(rss > 1024 * 1024 && peak_resident_bytes().unwrap() >= rss);
    }
}
