//! File-system primitives every writer shares: atomic replacement of a file, removal of a
//! killed run's leftover, a `flock` released on drop and flushing a whole file system. Errors are `std::io::Error`;
//! callers add the context (which file, what for).

use std::io::Write;
use std::path::Path;

/// Prefix of provisio's temporary files (and staging directories): a crash may leave them,
/// every reader skips them, the next run removes them.
pub const TEMP_PREFIX: &str = ".provisio-";

/// Removes what a killed run may have left at `path`: a directory with everything below it,
/// a file, or a symbolic link itself — never followed. Nothing there is fine.
pub fn remove_leftover(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// An exclusive `flock` on an open file or directory, unlocked when dropped — explicitly:
/// closing the descriptor releases a `flock` only with the last copy of it, and a child
/// another thread of this process forked holds a copy until it execs (close-on-exec closes
/// it only then), so the lock would outlive its holder by that long.
#[derive(Debug)]
pub struct Flock(std::fs::File);

impl Flock {
    /// Waits until `file`'s lock is free, then holds it.
    pub fn wait(file: std::fs::File) -> std::io::Result<Flock> {
        file.lock()?;
        Ok(Flock(file))
    }

    /// Holds `file`'s lock if it is free; `None` when another holds it.
    pub fn try_take(file: std::fs::File) -> std::io::Result<Option<Flock>> {
        match file.try_lock() {
            Ok(()) => Ok(Some(Flock(file))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

impl Drop for Flock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory renamed into
/// place (parents created): a reader sees the old file or the new one, never half of one.
/// The file keeps the mode of the one it replaces; a new one gets 0666 less the umask, as any
/// other file created here (a staged tenant tree, `git checkout`), not the temporary file's
/// private 0600. Not fsynced: callers that need durability flush the file system afterwards
/// ([`sync_filesystem_of`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)?;
    if let Ok(old) = std::fs::symlink_metadata(path)
        && old.is_file()
    {
        let mode = old.permissions().mode() & 0o777;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    /// A file written here gets the mode any other new file of this process gets (0666 less
    /// the umask, as `std::fs::write`, a staged tenant tree or `git checkout` make it), not
    /// the temporary file's private 0600; a file replaced keeps its own mode.
    #[test]
    fn written_files_get_the_mode_of_a_plain_write_and_replaced_files_keep_theirs() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain.yaml");
        std::fs::write(&plain, b"a\n").unwrap();
        let new = dir.path().join("sub/new.yaml");
        write_atomic(&new, b"b\n").unwrap();
        assert_eq!(std::fs::read(&new).unwrap(), b"b\n");
        assert_eq!(format!("{:o}", mode(&new)), format!("{:o}", mode(&plain)));
        // Replaced: the bytes change, the mode does not.
        write_atomic(&plain, b"c\n").unwrap();
        assert_eq!(std::fs::read(&plain).unwrap(), b"c\n");
        assert_eq!(format!("{:o}", mode(&plain)), format!("{:o}", mode(&new)));
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&plain, b"d\n").unwrap();
        assert_eq!(mode(&plain), 0o640);
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o755)).unwrap();
        write_atomic(&plain, b"e\n").unwrap();
        assert_eq!(mode(&plain), 0o755);
    }
}
