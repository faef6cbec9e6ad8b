//! provisio's own lock on a repository (`<git dir>/provisio.lock`, the common git directory's
//! in a linked worktree; an exclusive `flock` through `File::try_lock`, released by the
//! kernel when the process dies however it dies), the record of its holder that the file
//! holds, and the removal of the git lock files a killed provisio run left — only those.
//!
//! The record: `provisio running pid=N` is written (and fsynced) once the lock is taken, and
//! the file's mtime after that write is the run's start stamp; `released` is written when
//! the [`Lock`] is dropped. The next run reads the record before writing its own, and it
//! says what the last holder did:
//!
//! - `released`: it ended normally. libgit2 removes its lock files on every path out of an
//!   operation, and provisio's own index write removes its `index.lock` when it fails, so
//!   every git lock file present now is someone else's.
//! - `provisio running …`: it was killed (SIGKILL, OOM, power loss, a second signal). The git
//!   lock files whose own mtime (`lstat`) is not older than its start stamp — the record's
//!   mtime as found — were created while it ran: its leftovers, removed, each logged. Older
//!   ones were there before it started: someone else's.
//! - an empty file: a provisio from before the record (it never wrote one). Every git lock
//!   file is taken for a killed run's, as that provisio did, so an upgrade converges.
//! - no file: no provisio ever held the lock; nothing is provisio's. The file is created
//!   already saying `released` (written in a file of its own, then linked into place), so it
//!   is never empty: not after a kill while it is created, nor when another run starting at
//!   once locks it before its creator could write (except on a file system without hard
//!   links, where it is created in place).
//!
//! A lock file that is not provisio's is never removed: [`GitError::ForeignLock`] names it.
//! `provisio.lock` itself is opened without following a link or waiting on a FIFO; anything
//! but a regular file there is refused ([`GitError::NotALockFile`]), never written through.
//! A symbolic link (dangling or not) or anything but a regular file is never libgit2's,
//! so never provisio's. Lock files are looked for without following links.
//!
//! What the rule cannot tell apart: a person's git that took a lock after a provisio run
//! started that was then killed — while it ran, or after it died and before the next run —
//! the lock is newer than the run's start and is removed, even while that git still works
//! (a watch runs for days; nobody else is meant to work in its clone). A wall clock
//! stepped backwards after the killed run started can make its own lock look older than
//! its start: refused, removed by hand.

use std::fs::{File, Metadata, OpenOptions, TryLockError};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use tracing::warn;

use super::{GitError, Result, io};

/// The lock file's name in a git directory.
pub const LOCK_FILE: &str = "provisio.lock";

/// The record of a lock released by a run that ended normally.
const RELEASED: &str = "released\n";

/// The files this process wrote a new lock file in so far (the `<n>` of their names).
static CREATED: AtomicU64 = AtomicU64::new(0);

/// How the file a new lock file is written in before it is linked into place ends.
const NEW_SUFFIX: &str = ".new";

/// The first word of the record of a run holding the lock.
const RUNNING: &str = "provisio running";

/// git's lock files directly in a work tree's own git directory that libgit2 takes while
/// provisio works (the index, HEAD, and FETCH_HEAD, which each fetch rewrites).
const WORKTREE_LOCKS: [&str; 3] = ["index.lock", "HEAD.lock", "FETCH_HEAD.lock"];

/// git's lock files directly in the common git directory (the config, packed refs);
/// `refs/**.lock` are looked for below `refs/` there (and below a linked worktree's own
/// `refs/`).
const COMMON_LOCKS: [&str; 2] = ["config.lock", "packed-refs.lock"];

/// Held while the value lives; dropping it records `released`.
#[derive(Debug)]
pub struct Lock {
    file: File,
    path: PathBuf,
}

impl Drop for Lock {
    fn drop(&mut self) {
        if let Err(e) = write_record(&self.file, RELEASED) {
            warn!(path = %self.path.display(), error = %e,
                "cannot record the lock's release; the next run takes git lock files newer than this run's start for its leftovers");
        }
        // Closing the file releases the flock only with the last copy of its descriptor, and
        // a child another thread forked keeps one until it execs: unlocked here, at once.
        let _ = self.file.unlock();
    }
}

/// What the lock file said about its last holder when the lock was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Previous {
    /// No lock file: no provisio run before.
    Never,
    /// An empty file: a provisio from before the record.
    Legacy,
    /// The last run ended normally.
    Released,
    /// The last run was killed; it started at this stamp.
    Killed(SystemTime),
    /// Anything else: nothing is taken for provisio's.
    Unknown,
}

/// Takes the lock on the repository whose git directory is `git_dir` (`Locked` when another
/// process holds it), then removes the git lock files a killed provisio run left there.
/// A git lock file that is not provisio's is left and is an error
/// ([`GitError::ForeignLock`]); the lock is not kept then, and the record is left as found.
///
/// In a linked worktree (`git_dir` is `<common>/worktrees/<name>`, naming `<common>` in its
/// `commondir` file) the lock file is the common git directory's: the refs, packed refs and
/// config that libgit2 locks are shared by every work tree of the repository, so one
/// provisio at a time writes to any of them, and a killed run's ref locks are looked for
/// there.
pub fn acquire(git_dir: &Path) -> Result<Lock> {
    let common = common_dir(git_dir);
    let path = common.join(LOCK_FILE);
    let (mut file, existed) = open_or_create(&common, &path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Err(GitError::Locked(path)),
        Err(TryLockError::Error(e)) => return Err(io("lock", &path)(e)),
    }
    remove_stale_new_files(&common);
    let previous = if existed {
        read_record(&mut file).map_err(io("read", &path))?
    } else {
        Previous::Never
    };
    remove_leftovers(git_dir, &common, &previous)?;
    let record = format!("{RUNNING} pid={}\n", std::process::id());
    write_record(&file, &record).map_err(io("write", &path))?;
    Ok(Lock { file, path })
}

/// Opens the lock file, or creates it already saying `released` and opens it by its name (the
/// flag: whether it was opened, false only where it is created in place, without hard links):
/// the record is written and fsynced in a file of its own, `provisio.lock.<pid>.<n>.new`,
/// which is then hard-linked into place (the link fails when the name exists). So no
/// provisio of this version ever leaves `provisio.lock` empty — not a run killed while
/// creating it, nor one that another run starting at once locks before its creator could
/// write — and an empty file can only be an older provisio's.
fn open_or_create(git_dir: &Path, path: &Path) -> Result<(File, bool)> {
    loop {
        // Not through a link, and without waiting for a writer should it be a FIFO.
        match OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
        {
            Ok(f) => {
                let meta = f.metadata().map_err(io("read", path))?;
                if !meta.is_file() {
                    return Err(GitError::NotALockFile(path.to_path_buf()));
                }
                return Ok((f, true));
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e)
                if e.raw_os_error() == Some(libc::ELOOP) || e.kind() == ErrorKind::IsADirectory =>
            {
                return Err(GitError::NotALockFile(path.to_path_buf()));
            }
            Err(e) => return Err(io("open", path)(e)),
        }
        let n = CREATED.fetch_add(1, Ordering::Relaxed);
        let new = git_dir.join(format!(
            "{LOCK_FILE}.{}.{n}{NEW_SUFFIX}",
            std::process::id()
        ));
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&new)
        {
            Ok(f) => f,
            // Left by a killed run whose pid this process has now (in a container, often
            // the same): the next name is another.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io("create", path)(e)),
        };
        let linked = write_record(&file, RELEASED).and_then(|()| std::fs::hard_link(&new, path));
        let _ = std::fs::remove_file(&new);
        match linked {
            // Opened again by its own name: this descriptor's name is the removed `.new` one
            // (`/proc/<pid>/fd`, `lsof`: "provisio.lock.<pid>.<n>.new (deleted)"), which reads
            // as a leaked file. The record just written says `released`, as for no file.
            Ok(()) => {
                drop(file);
                continue;
            }
            // Created by another run meanwhile, or this file removed as stale by a run
            // holding the lock: open what is there.
            Err(e) if matches!(e.kind(), ErrorKind::AlreadyExists | ErrorKind::NotFound) => {}
            // A file system without hard links (SMB without its Unix extensions): the file is
            // created and written in place, as before the record was written first — a run
            // killed, or locked by another, in between reads it empty.
            Err(e)
                if e.kind() == ErrorKind::Unsupported
                    || matches!(e.raw_os_error(), Some(libc::EPERM | libc::EOPNOTSUPP)) =>
            {
                match OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(path)
                {
                    Ok(f) => {
                        write_record(&f, RELEASED).map_err(io("write", path))?;
                        return Ok((f, false));
                    }
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io("create", path)(e)),
                }
            }
            Err(e) => return Err(io("create", path)(e)),
        }
    }
}

/// Removes the `provisio.lock.<pid>.<n>.new` files a run killed while creating the lock file
/// left (under the lock: a run creating it now finds its own gone and opens the lock file).
fn remove_stale_new_files(git_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(git_dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let is_ours = name
            .strip_prefix(LOCK_FILE)
            .and_then(|r| r.strip_prefix('.'))
            .and_then(|r| r.strip_suffix(NEW_SUFFIX))
            .and_then(|r| r.split_once('.'))
            .is_some_and(|(pid, n)| {
                [pid, n]
                    .iter()
                    .all(|x| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()))
            });
        if is_ours && e.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The record in the lock file and the file's mtime, read before anything is written.
fn read_record(file: &mut File) -> std::io::Result<Previous> {
    let modified = file.metadata()?.modified()?;
    let mut bytes = Vec::new();
    file.by_ref().take(256).read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let first = text.lines().next().unwrap_or("");
    Ok(if text.is_empty() {
        Previous::Legacy
    } else if first == RELEASED.trim_end() {
        Previous::Released
    } else if first.starts_with(RUNNING) {
        Previous::Killed(modified)
    } else {
        Previous::Unknown
    })
}

/// Replaces the lock file's content with `record` and makes it durable. Written over the old
/// content and then cut to length (never truncated first), so a kill in between leaves the
/// new record's first line.
fn write_record(file: &File, record: &str) -> std::io::Result<()> {
    file.write_all_at(record.as_bytes(), 0)?;
    file.set_len(record.len() as u64)?;
    file.sync_all()
}

/// The common git directory of the work tree whose git directory is `git_dir`: the one its
/// `commondir` file names (relative to `git_dir` unless absolute), or `git_dir` itself.
fn common_dir(git_dir: &Path) -> PathBuf {
    match std::fs::read_to_string(git_dir.join("commondir")) {
        Ok(text) if !text.trim_end_matches(['\n', '\r']).is_empty() => {
            // `../..` as git writes it: named without the detour in messages.
            let common = git_dir.join(text.trim_end_matches(['\n', '\r']));
            std::fs::canonicalize(&common).unwrap_or(common)
        }
        _ => git_dir.to_path_buf(),
    }
}

/// Removes the git lock files of the work tree whose git directory is `git_dir` (and whose
/// common git directory is `common`) that the last provisio run (as `previous` says) left;
/// the first that is not its own is an error, after the run's own are removed.
fn remove_leftovers(git_dir: &Path, common: &Path, previous: &Previous) -> Result<()> {
    let mut foreign = Vec::new();
    for (path, meta) in git_lock_files(git_dir, common) {
        if is_leftover(previous, &meta) {
            warn!(path = %path.display(), "removing a git lock file left by an interrupted run");
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io("remove", &path)(e)),
            }
        } else {
            foreign.push(path);
        }
    }
    let mut foreign = foreign.into_iter();
    let Some(lock) = foreign.next() else {
        return Ok(());
    };
    for other in foreign {
        warn!(path = %other.display(), "a git lock file that is not provisio's; left in place");
    }
    Err(GitError::ForeignLock {
        repo: git_dir.to_path_buf(),
        lock,
    })
}

/// Whether a git lock file with metadata `meta` (not following links) was left by the run
/// `previous` describes.
fn is_leftover(previous: &Previous, meta: &Metadata) -> bool {
    if !meta.file_type().is_file() {
        return false;
    }
    match previous {
        Previous::Legacy => true,
        Previous::Killed(started) => meta.modified().is_ok_and(|m| m >= *started),
        Previous::Never | Previous::Released | Previous::Unknown => false,
    }
}

/// The git lock files of a work tree ([`WORKTREE_LOCKS`] in its `git_dir`, [`COMMON_LOCKS`]
/// and `refs/**.lock` in its `common` git directory, and in its own `refs/` when that is
/// another directory) with their metadata, links included and never followed, sorted by
/// path.
fn git_lock_files(git_dir: &Path, common: &Path) -> Vec<(PathBuf, Metadata)> {
    let mut found = Vec::new();
    let tops = WORKTREE_LOCKS
        .iter()
        .map(|top| git_dir.join(top))
        .chain(COMMON_LOCKS.iter().map(|top| common.join(top)));
    for p in tops {
        if let Ok(meta) = std::fs::symlink_metadata(&p) {
            found.push((p, meta));
        }
    }
    let mut stack = vec![common.join("refs")];
    if git_dir != common {
        stack.push(git_dir.join("refs"));
    }
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if p.extension().is_some_and(|x| x == "lock") {
                found.push((p, meta));
            } else if meta.is_dir() {
                stack.push(p);
            }
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A git directory's skeleton (the lock files are all the rule looks at).
    fn git_dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("refs/heads")).unwrap();
        d
    }

    fn record(dir: &Path) -> String {
        std::fs::read_to_string(dir.join(LOCK_FILE)).unwrap()
    }

    /// A run that took the lock and was killed: its record says running, the file's mtime is
    /// its start. `dir` is a work tree's git directory (the lock file is in its common one).
    fn killed_run(dir: &Path) -> SystemTime {
        let lock = std::mem::ManuallyDrop::new(acquire(dir).unwrap());
        // SAFETY: each field is read once out of a value that is never dropped: the file is
        // closed (the kernel releases the flock) without `Drop` recording the release.
        let (file, path) = unsafe { (std::ptr::read(&lock.file), std::ptr::read(&lock.path)) };
        // As the kernel does for a killed process (a child forked meanwhile may hold a copy).
        file.unlock().unwrap();
        drop(file);
        std::fs::metadata(path).unwrap().modified().unwrap()
    }

    fn set_mtime(path: &Path, t: SystemTime) {
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    fn foreign(err: GitError) -> PathBuf {
        match err {
            GitError::ForeignLock { lock, .. } => lock,
            e => panic!("not a foreign lock: {e:?}"),
        }
    }

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let d = tempfile::tempdir().unwrap();
        let first = acquire(d.path()).unwrap();
        assert!(matches!(acquire(d.path()), Err(GitError::Locked(_))));
        drop(first);
        acquire(d.path()).unwrap();
    }

    /// As the output tree's lock: released on drop although a child forked meanwhile holds
    /// a copy of the lock file's descriptor until it execs.
    #[test]
    fn the_lock_is_released_on_drop_while_a_forked_child_holds_its_descriptor() {
        let d = git_dir();
        let lock = acquire(d.path()).unwrap();
        let child =
            crate::io::output::write::tests::fork_holding_descriptors(Duration::from_millis(500));
        drop(lock);
        let again = acquire(d.path());
        child.join().unwrap();
        let _again = again.expect("the dropped lock is free");
        assert_eq!(
            record(d.path()),
            format!("{RUNNING} pid={}\n", std::process::id())
        );
    }

    #[test]
    fn the_record_says_running_with_the_pid_while_held_and_released_after() {
        let d = git_dir();
        let lock = acquire(d.path()).unwrap();
        assert_eq!(
            record(d.path()),
            format!("provisio running pid={}\n", std::process::id())
        );
        drop(lock);
        assert_eq!(record(d.path()), "released\n");
    }

    #[test]
    fn after_a_released_run_a_git_lock_is_someone_elses_refused_and_left() {
        let d = git_dir();
        drop(acquire(d.path()).unwrap());
        let index_lock = d.path().join("index.lock");
        std::fs::write(&index_lock, "a person's git commit").unwrap();
        let err = acquire(d.path()).unwrap_err();
        let text = err.to_string();
        assert_eq!(foreign(err), index_lock);
        assert!(text.contains("another git process is working in"), "{text}");
        assert_eq!(
            std::fs::read_to_string(&index_lock).unwrap(),
            "a person's git commit"
        );
        // Refused without taking the lock or touching the record.
        assert_eq!(record(d.path()), "released\n");
        assert!(matches!(
            acquire(d.path()),
            Err(GitError::ForeignLock { .. })
        ));
    }

    #[test]
    fn the_git_locks_a_killed_run_left_are_removed_nested_ref_locks_included() {
        let d = git_dir();
        killed_run(d.path());
        std::fs::create_dir_all(d.path().join("refs/heads/a")).unwrap();
        let left = [
            d.path().join("index.lock"),
            d.path().join("HEAD.lock"),
            d.path().join("refs/heads/main.lock"),
            d.path().join("refs/heads/a/b.lock"),
        ];
        for p in &left {
            std::fs::write(p, "").unwrap();
        }
        let lock = acquire(d.path()).unwrap();
        for p in &left {
            assert!(!p.exists(), "{} left", p.display());
        }
        assert!(d.path().join("refs/heads/a").is_dir());
        assert!(record(d.path()).starts_with("provisio running pid="));
        drop(lock);
    }

    #[test]
    fn a_git_lock_older_than_the_killed_run_was_there_before_it_and_is_refused() {
        let d = git_dir();
        let started = killed_run(d.path());
        let older = d.path().join("refs/heads/main.lock");
        std::fs::write(&older, "").unwrap();
        set_mtime(&older, started - Duration::from_secs(1));
        let newer = d.path().join("index.lock");
        std::fs::write(&newer, "").unwrap();
        set_mtime(&newer, started);
        assert_eq!(foreign(acquire(d.path()).unwrap_err()), older);
        assert!(older.exists());
        // The killed run's own is removed all the same, and its record is kept for the
        // next attempt.
        assert!(!newer.exists());
        assert!(record(d.path()).starts_with("provisio running pid="));
    }

    #[test]
    fn a_symbolic_link_is_never_provisios_dangling_or_not() {
        let d = git_dir();
        killed_run(d.path());
        let link = d.path().join("index.lock");
        std::os::unix::fs::symlink(d.path().join("nowhere"), &link).unwrap();
        assert_eq!(foreign(acquire(d.path()).unwrap_err()), link);
        assert!(
            std::fs::symlink_metadata(&link).is_ok(),
            "the link was removed"
        );
        std::fs::remove_file(&link).unwrap();
        let target = d.path().join("somewhere");
        std::fs::write(&target, "").unwrap();
        let link = d.path().join("refs/heads/main.lock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(foreign(acquire(d.path()).unwrap_err()), link);
        assert!(std::fs::symlink_metadata(&link).is_ok());
        assert!(target.exists());
    }

    #[test]
    fn after_an_older_provisio_empty_file_every_git_lock_is_taken_for_its_leftover() {
        let d = git_dir();
        std::fs::write(d.path().join(LOCK_FILE), "").unwrap();
        let left = [
            d.path().join("index.lock"),
            d.path().join("refs/heads/main.lock"),
        ];
        for p in &left {
            std::fs::write(p, "").unwrap();
        }
        drop(acquire(d.path()).unwrap());
        for p in &left {
            assert!(!p.exists(), "{} left", p.display());
        }
    }

    #[test]
    fn in_a_repository_no_provisio_held_a_git_lock_is_someone_elses() {
        let d = git_dir();
        let index_lock = d.path().join("index.lock");
        std::fs::write(&index_lock, "").unwrap();
        assert_eq!(foreign(acquire(d.path()).unwrap_err()), index_lock);
        assert!(index_lock.exists());
        // The file is created saying so: a second attempt reads the same.
        assert_eq!(record(d.path()), "released\n");
        assert_eq!(foreign(acquire(d.path()).unwrap_err()), index_lock);
        assert!(index_lock.exists());
    }

    #[test]
    fn a_record_provisio_did_not_write_takes_nothing_for_provisios() {
        let d = git_dir();
        std::fs::write(d.path().join(LOCK_FILE), b"\xff\xfe not a record\n").unwrap();
        let index_lock = d.path().join("index.lock");
        std::fs::write(&index_lock, "").unwrap();
        assert_eq!(foreign(acquire(d.path()).unwrap_err()), index_lock);
        assert!(index_lock.exists());
    }

    /// Two provisio runs starting at once on a repository no provisio held: the one that did
    /// not create `provisio.lock` can take the lock before its creator wrote anything, and
    /// must not read the empty file as an older provisio's (which takes every git lock file
    /// for its own) — a person's lock found there is refused and left, however they race.
    #[test]
    fn two_runs_starting_at_once_on_a_fresh_repository_never_remove_a_persons_lock() {
        for _ in 0..400 {
            let d = git_dir();
            let index_lock = d.path().join("index.lock");
            std::fs::write(&index_lock, "a person's git commit").unwrap();
            let barrier = std::sync::Barrier::new(2);
            std::thread::scope(|s| {
                for _ in 0..2 {
                    s.spawn(|| {
                        barrier.wait();
                        let _ = acquire(d.path());
                    });
                }
            });
            assert!(index_lock.exists(), "a person's index.lock was removed");
        }
    }

    #[test]
    fn the_file_a_run_killed_while_creating_the_lock_file_left_is_removed_nothing_else() {
        let d = git_dir();
        let stale = d.path().join("provisio.lock.4194303.0.new");
        std::fs::write(&stale, "released\n").unwrap();
        let other = d.path().join("provisio.lock.a.new");
        std::fs::write(&other, "a person's").unwrap();
        drop(acquire(d.path()).unwrap());
        assert!(!stale.exists());
        assert!(other.exists());
        assert_eq!(record(d.path()), "released\n");
    }

    /// `provisio.lock` is provisio's own regular file: a symbolic link there (to a person's
    /// file) is not followed and written through, and a FIFO does not hang the run; both are
    /// refused with the path, and nothing is written.
    #[test]
    fn a_lock_file_that_is_a_link_or_a_fifo_is_refused_and_nothing_is_written() {
        let d = git_dir();
        let precious = d.path().join("precious");
        std::fs::write(&precious, "a person's notes").unwrap();
        let path = d.path().join(LOCK_FILE);
        std::os::unix::fs::symlink(&precious, &path).unwrap();
        let err = acquire(d.path()).unwrap_err();
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(&precious).unwrap(),
            "a person's notes"
        );
        std::fs::remove_file(&path).unwrap();

        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        let dir = d.path().to_path_buf();
        std::thread::spawn(move || tx.send(acquire(&dir).map(drop)).unwrap());
        let got = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("acquire hangs on a FIFO");
        let err = got.unwrap_err();
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }

    /// A repository with one commit on `main` and a linked worktree on branch `wt`: the main
    /// git directory and the worktree's (`.git/worktrees/wt`, whose refs, packed refs and
    /// config are the main one's).
    fn linked_worktree() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let main = d.path().join("main");
        let repo = git2::Repository::init(&main).unwrap();
        let tree = repo
            .find_tree(repo.index().unwrap().write_tree().unwrap())
            .unwrap();
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        repo.commit(Some("HEAD"), &sig, &sig, "1", &tree, &[])
            .unwrap();
        let wt = repo.worktree("wt", &d.path().join("wt"), None).unwrap();
        let wt_git = git2::Repository::open_from_worktree(&wt)
            .unwrap()
            .path()
            .to_path_buf();
        (d, repo.path().to_path_buf(), wt_git)
    }

    /// In a linked worktree, a killed run's ref locks are in the common git directory (the
    /// worktree's has no `refs/`, `packed-refs` or `config` of its own): they are removed
    /// like its index lock, or they fail every later commit to that branch.
    #[test]
    fn in_a_linked_worktree_a_killed_runs_ref_locks_in_the_common_dir_are_removed() {
        let (_d, common, wt_git) = linked_worktree();
        killed_run(&wt_git);
        let left = [
            wt_git.join("index.lock"),
            common.join("refs/heads/wt.lock"),
            common.join("packed-refs.lock"),
        ];
        for p in &left {
            std::fs::write(p, "").unwrap();
        }
        drop(acquire(&wt_git).unwrap());
        for p in &left {
            assert!(!p.exists(), "{} left", p.display());
        }
    }

    /// One provisio per repository: a run in the main work tree and one in a linked worktree
    /// share refs and config, so they share the lock.
    #[test]
    fn a_run_in_a_linked_worktree_and_one_in_the_main_work_tree_exclude_each_other() {
        let (_d, common, wt_git) = linked_worktree();
        let held = acquire(&common).unwrap();
        assert!(matches!(acquire(&wt_git), Err(GitError::Locked(_))));
        drop(held);
        let held = acquire(&wt_git).unwrap();
        assert!(matches!(acquire(&common), Err(GitError::Locked(_))));
        drop(held);
    }

    /// A lock file that cannot be created (here: no such git directory) is named as itself,
    /// not as the file its record is first written in.
    #[test]
    fn a_lock_file_that_cannot_be_created_is_named() {
        let d = tempfile::tempdir().unwrap();
        let gone = d.path().join("gone");
        let text = acquire(&gone).unwrap_err().to_string();
        assert_eq!(
            text,
            format!("cannot create {}", gone.join(LOCK_FILE).display())
        );
    }

    /// A run killed between writing the new lock file's record and linking it into place
    /// leaves `provisio.lock.<pid>.<n>.new` and no `provisio.lock`; the next run may have the
    /// same pid (in a container, usually) and must not fail on that name forever.
    #[test]
    fn a_new_file_left_by_a_killed_run_with_this_pid_does_not_block_the_creation() {
        let d = git_dir();
        let from = CREATED.load(Ordering::Relaxed);
        for n in from..from + 1000 {
            let stale = d.path().join(format!(
                "{LOCK_FILE}.{}.{n}{NEW_SUFFIX}",
                std::process::id()
            ));
            std::fs::write(stale, "released\n").unwrap();
        }
        drop(acquire(d.path()).unwrap());
        assert_eq!(record(d.path()), "released\n");
        let left = std::fs::read_dir(d.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(NEW_SUFFIX))
            .count();
        assert_eq!(left, 0, "the killed runs' files are removed");
    }

    /// git writes a linked worktree's `commondir` as `../..`: a refusal names the lock file
    /// in the common git directory by its plain path.
    #[test]
    fn in_a_linked_worktree_a_foreign_ref_lock_is_named_by_its_plain_path() {
        let (_d, common, wt_git) = linked_worktree();
        std::fs::write(wt_git.join("commondir"), "../..\n").unwrap();
        let lock = common.join("refs/heads/wt.lock");
        std::fs::write(&lock, "").unwrap();
        assert_eq!(
            foreign(acquire(&wt_git).unwrap_err()),
            std::fs::canonicalize(&lock).unwrap()
        );
        assert!(lock.exists());
    }
}
