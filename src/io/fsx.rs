//! File-system primitives every writer shares: atomic replacement of a file and flushing a
//! whole file system. Errors are `std::io::Error`; callers add the context (which file, what
//! for).

use std::io::Write;
use std::path::Path;

/// Prefix of provisio's temporary files (and staging directories): a crash may leave them,
/// every reader skips them, the next run removes them.
pub const TEMP_PREFIX: &str = ".provisio-";

/// Writes `bytes` to `path` through a temporary file in the same directory renamed into
/// place (parents created): a reader sees the old file or the new one, never half of one.
/// Not fsynced: callers that need durability flush the file system afterwards
/// ([`sync_filesystem_of`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Flushes every dirty page of the file system holding `path` (`syncfs(2)` on Linux: one
/// journal commit for many files instead of one fsync each; elsewhere an fsync of `path`).
pub fn sync_filesystem_of(path: &Path) -> std::io::Result<()> {
    let f = std::fs::File::open(path)?;
    sync_filesystem(&f)
}

#[cfg(target_os = "linux")]
fn sync_filesystem(f: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid open file descriptor, borrowed for the duration of the call.
    if unsafe { libc::syncfs(f.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn sync_filesystem(f: &std::fs::File) -> std::io::Result<()> {
    f.sync_all()
}
