//! provisio's own lock on a repository (`<git dir>/provisio.lock`, an exclusive `flock`
//! through `File::try_lock`, released by the kernel when the process dies however it dies),
//! and the removal of git's lock files that a killed run left behind.

use std::fs::{File, TryLockError};
use std::path::Path;

use tracing::warn;

use super::{GitError, Result, io};

/// Held while the value lives.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// Takes the lock on the repository whose git directory is `git_dir`; `Locked` when another
/// process holds it.
pub fn acquire(git_dir: &Path) -> Result<Lock> {
    let path = git_dir.join("provisio.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io("open", &path))?;
    match file.try_lock() {
        Ok(()) => Ok(Lock { _file: file }),
        Err(TryLockError::WouldBlock) => Err(GitError::Locked(path)),
        Err(TryLockError::Error(e)) => Err(io("lock", &path)(e)),
    }
}

/// Removes the git lock files a killed run may have left (`index.lock`, `HEAD.lock`,
/// `refs/**.lock`…). Only for a repository provisio owns, while holding its [`Lock`].
pub fn remove_stale_git_locks(git_dir: &Path) -> Result<()> {
    let mut found = Vec::new();
    for top in ["index.lock", "HEAD.lock", "config.lock", "packed-refs.lock"] {
        let p = git_dir.join(top);
        if p.exists() {
            found.push(p);
        }
    }
    let mut stack = vec![git_dir.join("refs")];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "lock") {
                found.push(p);
            }
        }
    }
    for p in found {
        warn!(path = %p.display(), "removing a git lock file left by an interrupted run");
        std::fs::remove_file(&p).map_err(io("remove", &p))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let d = tempfile::tempdir().unwrap();
        let first = acquire(d.path()).unwrap();
        assert!(matches!(acquire(d.path()), Err(GitError::Locked(_))));
        drop(first);
        acquire(d.path()).unwrap();
    }
}
