//! Files that are their owner's alone.

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
