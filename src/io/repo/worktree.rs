//! The registry's work tree and index after provisio committed to it (the intake), shared
//! with people who edit and commit in the same checkout with stock git. Three rules:
//!
//! - **The index is updated under git's own lock, against its current content.** The
//!   index is re-read from disk after `index.lock` is taken (`O_CREAT|O_EXCL`, as git's
//!   lockfile API does), only the touched entries change, the result is written into the
//!   lock and renamed over `index`. An index loaded before another author's commit is never
//!   written back (libgit2 caches the repository's index in memory: writing that copy back
//!   was how a person's committed file came to look deleted and untracked).
//! - **provisio writes down what it is about to change before changing it**: an intent file
//!   in the git directory (`provisio-intake-intent`: each path with its content before and
//!   after, as blob ids) is written before the commit and removed once the work tree and the
//!   index hold the commit's content. At start-up and before each group, a pending intent is
//!   finished ([`Repo::repair_intake`]); nothing else is ever "restored".
//! - **A person's edit is never overwritten.** A path is written only while its work-tree
//!   file and index entry hold the content before the change (or already the new one); any
//!   other content is a person's (staged, unstaged, untracked) and is left alone.
//!   [`Repo::uncommitted`] tells the intake so before it commits, so the event is refused
//!   with the reason instead.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use git2::{IndexEntry, IndexTime, ObjectType};
use serde::{Deserialize, Serialize};

use super::{GitError, Oid, Repo, Result, io};
use crate::io::fsx;

/// The intent file, in the git directory.
pub const INTENT_FILE: &str = "provisio-intake-intent";
/// How long provisio waits for another git process to release `index.lock`.
pub const INDEX_LOCK_WAIT: Duration = Duration::from_secs(2);

/// One path provisio is bringing from `old` to `new` (blob ids; `None`: no file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentEntry {
    pub old: Option<String>,
    pub new: Option<String>,
}

/// What provisio is about to write to the work tree and the index, by path relative to the
/// work tree root.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub files: BTreeMap<String, IntentEntry>,
}

impl Intent {
    /// Adds a change; a path already pending keeps its original `old`.
    pub fn add(&mut self, path: String, old: Option<Oid>, new: Option<Oid>) {
        let new = new.map(|o| o.to_string());
        match self.files.get_mut(&path) {
            Some(e) => e.new = new,
            None => {
                self.files.insert(
                    path,
                    IntentEntry {
                        old: old.map(|o| o.to_string()),
                        new,
                    },
                );
            }
        }
    }
}

/// What a sync of the work tree did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Paths brought to the committed content (work tree and index).
    pub written: Vec<String>,
    /// Paths holding something else than provisio's before or after: a person's edit, left
    /// alone.
    pub kept: Vec<String>,
}

/// What makes a path provisio may not write: a person's work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uncommitted {
    /// The index holds another version (`git add` without commit).
    Staged,
    /// The work-tree file differs from what the index and HEAD hold.
    Unstaged,
    /// A file the commit would create already exists, not tracked.
    Untracked,
    /// Not a regular file (a link, a directory).
    NotAFile(&'static str),
}

impl std::fmt::Display for Uncommitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Uncommitted::Staged => f.write_str("has staged changes that are not committed"),
            Uncommitted::Unstaged => f.write_str("has uncommitted changes in the work tree"),
            Uncommitted::Untracked => f.write_str("exists in the work tree but is not committed"),
            Uncommitted::NotAFile(kind) => write!(f, "is a {kind} in the work tree"),
        }
    }
}

/// The blob id of a work-tree path's content: `Ok(None)` when absent, `Err(kind)` when it is
/// not a regular file.
fn worktree_blob(abs: &Path) -> std::io::Result<Result<Option<Oid>, &'static str>> {
    let meta = match std::fs::symlink_metadata(abs) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Ok(None)),
        Err(e) => return Err(e),
    };
    if meta.file_type().is_symlink() {
        return Ok(Err("symbolic link"));
    }
    if meta.is_dir() {
        return Ok(Err("directory"));
    }
    if !meta.is_file() {
        return Ok(Err("special file"));
    }
    let bytes = std::fs::read(abs)?;
    Ok(Ok(Some(
        Oid::hash_object(ObjectType::Blob, &bytes).map_err(std::io::Error::other)?,
    )))
}

fn parse_oid(s: &Option<String>) -> Option<Oid> {
    s.as_deref().and_then(|s| Oid::from_str(s).ok())
}

/// `index.lock`, held while this value lives (created with `O_CREAT|O_EXCL` like git's own
/// lockfiles, removed on drop unless committed).
struct IndexLock {
    lock: PathBuf,
    index: PathBuf,
    /// Where the new index is prepared (libgit2 writes an index to its own path).
    scratch: PathBuf,
    committed: bool,
}

impl IndexLock {
    /// Takes the lock, waiting up to `wait` for another git process to release it.
    fn acquire(git_dir: &Path, repo: &Path, wait: Duration) -> Result<IndexLock> {
        let lock = git_dir.join("index.lock");
        let deadline = Instant::now() + wait;
        loop {
            match OpenOptions::new().write(true).create_new(true).open(&lock) {
                Ok(_) => {
                    return Ok(IndexLock {
                        lock,
                        index: git_dir.join("index"),
                        scratch: git_dir.join("provisio-index.new"),
                        committed: false,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if Instant::now() >= deadline {
                        return Err(GitError::IndexLocked {
                            repo: repo.to_path_buf(),
                            lock,
                        });
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(io("create", &lock)(e)),
            }
        }
    }

    /// The index as it is on disk now (under the lock nobody else can change it), ready to be
    /// edited and written with [`IndexLock::commit`].
    fn current_index(&self, repo: &Path) -> Result<git2::Index> {
        match std::fs::copy(&self.index, &self.scratch) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match std::fs::remove_file(&self.scratch) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io("remove", &self.scratch)(e)),
                }
            }
            Err(e) => return Err(io("copy", &self.index)(e)),
        }
        git2::Index::open(&self.scratch).map_err(super::git("read the index", repo))
    }

    /// Writes `index` into the lock and renames the lock over `index` (git's commit of a
    /// lockfile).
    fn commit(mut self, index: &mut git2::Index, repo: &Path) -> Result<()> {
        index.write().map_err(super::git("write the index", repo))?;
        std::fs::rename(&self.scratch, &self.lock).map_err(io("write", &self.lock))?;
        std::fs::rename(&self.lock, &self.index).map_err(io("replace", &self.index))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for IndexLock {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.scratch);
            let _ = std::fs::remove_file(&self.lock);
        }
    }
}

/// The index entry of a work-tree file just written with blob `id`: its stat data, so that
/// `git status` knows it clean without hashing it again.
fn index_entry(path: &str, abs: &Path, id: Oid) -> std::io::Result<IndexEntry> {
    let m = std::fs::symlink_metadata(abs)?;
    // The index stores 32-bit stat fields (git truncates the same way).
    Ok(IndexEntry {
        ctime: IndexTime::new(m.ctime() as i32, m.ctime_nsec() as u32),
        mtime: IndexTime::new(m.mtime() as i32, m.mtime_nsec() as u32),
        dev: m.dev() as u32,
        ino: m.ino() as u32,
        mode: if m.mode() & 0o111 != 0 {
            0o100755
        } else {
            0o100644
        },
        uid: m.uid(),
        gid: m.gid(),
        file_size: m.size() as u32,
        id,
        flags: 0,
        flags_extended: 0,
        path: path.as_bytes().to_vec(),
    })
}

impl Repo {
    fn intent_path(&self) -> PathBuf {
        self.git_dir().join(INTENT_FILE)
    }

    /// The intent left by a sync that did not finish, if any.
    pub fn pending_intent(&self) -> Result<Option<Intent>> {
        let path = self.intent_path();
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(|e| {
                io("read", &path)(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("read", &path)(e)),
        }
    }

    /// Records `intent` (merged with a pending one) before the commit that it describes.
    pub(super) fn write_intent(&self, intent: &Intent) -> Result<()> {
        let path = self.intent_path();
        let bytes = serde_json::to_vec_pretty(intent).expect("strings serialize");
        fsx::write_atomic(&path, &bytes).map_err(io("write", &path))
    }

    pub(super) fn clear_intent(&self) -> Result<()> {
        let path = self.intent_path();
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("remove", &path)(e)),
        }
    }

    /// The blob HEAD has at `path` (relative to the work tree root), if any.
    pub(super) fn head_blob(&self, path: &str) -> Result<Option<Oid>> {
        let Some(head) = self.head()? else {
            return Ok(None);
        };
        let tree = self
            .repo
            .find_commit(head)
            .and_then(|c| c.tree())
            .map_err(self.err("read HEAD's tree"))?;
        match tree.get_path(Path::new(path)) {
            Ok(e) if e.kind() == Some(ObjectType::Blob) => Ok(Some(e.id())),
            Ok(_) => Ok(None),
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
            Err(e) => Err(self.err("read HEAD's tree")(e)),
        }
    }

    /// Which of `paths` hold a person's work (staged or unstaged edits, an untracked file):
    /// provisio must not write them. A path provisio itself left half-synced (a pending
    /// intent) is provisio's, not a person's.
    pub fn uncommitted(&self, paths: &[String]) -> Result<BTreeMap<String, Uncommitted>> {
        let mut out = BTreeMap::new();
        if paths.is_empty() {
            return Ok(out);
        }
        let pending = self.pending_intent()?.unwrap_or_default();
        let index_path = self.git_dir().join("index");
        let index = if index_path.exists() {
            Some(git2::Index::open(&index_path).map_err(self.err("read the index"))?)
        } else {
            None
        };
        for path in paths {
            let head = self.head_blob(path)?;
            let mut allowed = vec![head];
            if let Some(e) = pending.files.get(path)
                && parse_oid(&e.new) == head
            {
                allowed.push(parse_oid(&e.old));
            }
            let staged = index
                .as_ref()
                .and_then(|i| i.get_path(Path::new(path), 0))
                .map(|e| e.id);
            let abs = self.workdir().join(path);
            let on_disk = worktree_blob(&abs).map_err(io("read", &abs))?;
            let problem = match on_disk {
                Err(kind) => Some(Uncommitted::NotAFile(kind)),
                Ok(_) if !allowed.contains(&staged) => Some(Uncommitted::Staged),
                Ok(w) if allowed.contains(&w) => None,
                Ok(_) if head.is_none() && staged.is_none() => Some(Uncommitted::Untracked),
                Ok(_) => Some(Uncommitted::Unstaged),
            };
            if let Some(p) = problem {
                out.insert(path.clone(), p);
            }
        }
        Ok(out)
    }

    /// Brings the work tree and the index to the content `intent` names, under `index.lock`,
    /// path by path only while the path still holds provisio's before (or after) content;
    /// then removes the intent file. A path holding anything else is a person's and is kept.
    pub(super) fn sync_intent(&self, intent: &Intent) -> Result<SyncReport> {
        self.sync_intent_within(intent, INDEX_LOCK_WAIT)
    }

    fn sync_intent_within(&self, intent: &Intent, wait: Duration) -> Result<SyncReport> {
        let lock = IndexLock::acquire(self.git_dir(), self.workdir(), wait)?;
        let mut index = lock.current_index(self.workdir())?;
        let mut report = SyncReport::default();
        for (path, e) in &intent.files {
            let (old, new) = (parse_oid(&e.old), parse_oid(&e.new));
            let abs = self.workdir().join(path);
            let on_disk = worktree_blob(&abs).map_err(io("read", &abs))?;
            let staged = index.get_path(Path::new(path), 0).map(|e| e.id);
            let ours = |v: Option<Oid>| v == old || v == new;
            match on_disk {
                Ok(w) if ours(w) && ours(staged) => {}
                _ => {
                    report.kept.push(path.clone());
                    continue;
                }
            }
            match new {
                Some(id) => {
                    if on_disk.ok().flatten() != Some(id) {
                        let blob = self
                            .repo
                            .find_blob(id)
                            .map_err(self.err("read a committed file"))?;
                        fsx::write_atomic(&abs, blob.content()).map_err(io("write", &abs))?;
                    }
                    let entry = index_entry(path, &abs, id).map_err(io("stat", &abs))?;
                    index.add(&entry).map_err(self.err("stage a file"))?;
                }
                None => {
                    match std::fs::remove_file(&abs) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(io("remove", &abs)(e)),
                    }
                    match index.remove_path(Path::new(path)) {
                        Ok(()) => {}
                        Err(e) if e.code() == git2::ErrorCode::NotFound => {}
                        Err(e) => return Err(self.err("unstage a file")(e)),
                    }
                }
            }
            report.written.push(path.clone());
        }
        lock.commit(&mut index, self.workdir())?;
        self.clear_intent()?;
        Ok(report)
    }

    /// Finishes the work-tree sync a previous run (or group) left pending — a crash between
    /// the commit and the work-tree write, or `index.lock` held by another git process —
    /// for the paths HEAD still has at the intended content. Nothing pending: nothing done.
    pub fn repair_intake(&self) -> Result<SyncReport> {
        self.repair_intake_within(INDEX_LOCK_WAIT)
    }

    /// [`Repo::repair_intake`], waiting at most `wait` for `index.lock` (the writer tries
    /// briefly before each group: a lock a crashed git left would otherwise slow every one).
    pub fn repair_intake_within(&self, wait: Duration) -> Result<SyncReport> {
        let Some(mut intent) = self.pending_intent()? else {
            return Ok(SyncReport::default());
        };
        // A path whose commit never landed (or was changed again by someone since) is not
        // provisio's to write: the work tree was only ever touched after a commit.
        let mut landed = BTreeMap::new();
        for (path, e) in std::mem::take(&mut intent.files) {
            if self.head_blob(&path)? == parse_oid(&e.new) {
                landed.insert(path, e);
            }
        }
        intent.files = landed;
        self.sync_intent_within(&intent, wait)
    }
}
