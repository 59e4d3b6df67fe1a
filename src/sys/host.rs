//! This machine's name, and the name an instance goes by among others sharing a lake.

/// The host name (`gethostname`), or `"localhost"` if it cannot be read.
pub fn hostname() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is writable for its whole length; gethostname NUL-terminates
    // within it or truncates, and we stop at the first NUL either way.
    let rc = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    let end = buffer.iter().position(|b| *b == 0).unwrap_or(buffer.len());
    match std::str::from_utf8(&buffer[..end]) {
        Ok(name) if rc == 0 && !name.is_empty() => name.to_owned(),
        _ => "localhost".to_owned(),
    }
}

/// `<host>-<8 hex digits of the database's path>`: stable across restarts (an instance is
/// its database file), distinct for two instances on one machine, no path shown. Only
/// letters, digits, `-` and `.`, so it can name files in any object store.
pub fn instance_name(db: &std::path::Path) -> String {
    use sha2::Digest as _;
    let path = db.canonicalize().unwrap_or_else(|_| db.to_path_buf());
    let digest = sha2::Sha256::digest(path.to_string_lossy().as_bytes());
    let host: String =
        hostname().chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' }).take(63).collect();
    format!("{host}-{:02x}{:02x}{:02x}{:02x}", digest[0], digest[1], digest[2], digest[3])
}
