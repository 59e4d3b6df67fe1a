//! Thread CPU priorities: ingest runs at the process's priority (its parser threads a
//! little lower, `ingest::PARSE_NICE`, so the DuckDB writer gets a core); detection and
//! everything the HTTP side does run lower still (see ARCHITECTURE.md, "Ingest has the
//! CPU first"). Linux applies nice values per thread; a thread may lower its own
//! priority without privileges, never raise it back.

/// Lowers the calling thread's CPU priority by `nice` below what it inherited
/// (Linux: nice applies per thread).
pub fn lower(nice: i32) {
    #[cfg(target_os = "linux")]
    {
        let target = (self::nice() + nice).min(19);
        // SAFETY: gettid and setpriority take plain integers and touch no memory of ours.
        let outcome = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, target) };
        if outcome != 0 {
            tracing::warn!(nice, error = %std::io::Error::last_os_error(), "could not lower a thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

/// The calling thread's nice value.
#[cfg(target_os = "linux")]
pub fn nice() -> i32 {
    // SAFETY: as above. (-1 is also a valid answer; an error leaves 0's meaning: no change.)
    unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
}
