//! Calls into the operating system that Rust's standard library does not offer.

/// Files and directories this process creates from now on are its user's alone
/// (mode 0600 and 0700): the database, its WAL and temp files, keys, evidence packs
/// being built in `$TMPDIR`. Audit evidence is nobody else's to read.
pub fn restrict_new_files() {
    #[cfg(unix)]
    // SAFETY: umask takes and returns a plain integer and cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// Makes an existing file its owner's alone (mode 0600), e.g. a database created by
/// an older TokenTrail; files that do not exist are left alone.
pub fn make_private(path: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(path) {
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(meta.permissions().mode() & 0o700))
            }
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
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
