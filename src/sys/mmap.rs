//! Files mapped read-only, and letting go of their pages.

use memmap2::Mmap;
use std::fs::File;
use std::ops::Range;
use std::sync::Arc;

/// Lets go of the whole pages of `range` of a file's map (see [`Stretch`]); on Unix,
/// where `madvise` is.
pub fn release(map: &Mmap, range: Range<usize>) {
    #[cfg(unix)]
    {
        let page = page_size();
        let start = range.start.next_multiple_of(page);
        let end = range.end / page * page;
        if end > start {
            // SAFETY: maps made by [`map`] are read-only mappings of files, never written
            // through. Dropping pages only unmaps them from this process: a later read
            // maps the same bytes again from the kernel's page cache.
            let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start) };
        }
    }
    #[cfg(not(unix))]
    let _ = (map, range);
}

/// The system's page size.
#[cfg(unix)]
pub fn page_size() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    // SAFETY: sysconf only reads a system constant.
    *PAGE.get_or_init(|| usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096).max(1))
}

/// Maps a plain file, if it can be (not an empty file, a pipe or a device).
pub fn map(file: &File) -> Option<Mmap> {
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() == 0 {
        return None;
    }
    // SAFETY: the map is only read. Another process changing the file while it is read
    // changes what is read (as `read` would); truncating it ends this process with
    // SIGBUS (see the module notes). Nothing here writes through it.
    unsafe { Mmap::map(file) }.ok()
}

/// A stretch of a mapped file (a chunk's bytes, read where the kernel keeps them) that
/// lets its pages go when dropped.
pub struct Stretch {
    map: Arc<Mmap>,
    range: Range<usize>,
}

impl Stretch {
    pub fn new(map: Arc<Mmap>, range: Range<usize>) -> Stretch {
        Stretch { map, range }
    }
}

impl std::ops::Deref for Stretch {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.map[self.range.clone()]
    }
}

impl Drop for Stretch {
    /// Lets go of the pages only this stretch covers: the process's resident memory then
    /// holds the chunks being parsed, not all of the file read so far.
    fn drop(&mut self) {
        release(&self.map, self.range.clone());
    }
}
