//! The stat record: for each tenant tree a product release found on disk as the state file
//! records it, the digest of its files' stat data, so that the next release can tell the
//! tree is still the recorded one from 29 `lstat`s instead of reading and hashing its 115 KB
//! (at 10,000 tenants, 1.15 GB read and hashed: about half of a release's CPU, BENCHMARKS.md,
//! issue 13, eleventh round). It is git's index, for the same reason: a file whose size,
//! times, inode and mode did not move holds the bytes it held.
//!
//! - Kept in the output's git directory (`<out>/.git/provisio-stat.json`), never in the tree:
//!   stat data is not deterministic, is never committed and must not show as an untracked
//!   file. An output without its own `.git` directory has no record, and each release reads
//!   its trees whole, as before.
//! - An entry names the tree hash it vouches for: it is used only while the state file still
//!   records that hash (a state file restored by hand, the files untouched, is not believed).
//! - Racy entries (git's "racily clean" problem): a file written in the same tick of the file
//!   system's clock as the record could change again without its times moving. An entry is
//!   trusted only when every file's modification and change times are older than the record
//!   file's own modification time; otherwise the tree is read whole, as without a record.
//! - An entry made by a release also keeps each re-rendered file's part of the tree hash:
//!   the next release re-renders the same files and takes their old parts from there instead
//!   of reading them (their stat data is part of the same entry).
//! - Anything unreadable, of another format, or a file that vanished between its listing and
//!   its `lstat`, means no entry: the tree is read whole. The record is only ever a shortcut
//!   to what reading would find; `--full` reads no entry, and records one for every tree it
//!   compares with the disk (as does any tree rendered whole into its directory).
//!
//! The window left open, as in git: a file changed after provisio's write of it within the
//! same tick of the file system's clock, before a record written in a later tick, keeps the
//! stat data recorded with the old bytes' hash. Where the kernel hands out fine-grained times
//! to files whose times were read (Linux 6.13's multigrain timestamps), that is only until
//! the `lstat` that follows the write (microseconds); elsewhere it is a tick of the kernel's
//! coarse clock (milliseconds), or the file system's own granularity (a second or two on some).
//! The output lock does not close it (hand edits do not take it); `--full` repairs it.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::io;
use super::tree;

/// The record's name in the output's git directory.
pub const STAT_FILE: &str = "provisio-stat.json";
const FORMAT: u32 = 1;

/// Tenant id → the stat digest of its tree, as last vouched for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatRecord {
    format: u32,
    tenants: BTreeMap<String, StatEntry>,
    /// Read with racy entries, dropped: never equal to a record built by a run, so the run
    /// rewrites it without them. Left in the file, they would be believed once its time
    /// moved on without a write (a `touch`, a clock set back), as git's index avoids by
    /// smudging its racily clean entries.
    #[serde(skip)]
    racy: bool,
}

/// Of the current format, as every record read is: a record built empty and filled by a run
/// equals the one read when their entries do (no rewrite on a run that changed nothing).
impl Default for StatRecord {
    fn default() -> Self {
        StatRecord {
            format: FORMAT,
            tenants: BTreeMap::new(),
            racy: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatEntry {
    /// The tree hash (`TenantState::tree`) the disk held when `stat` was taken.
    pub tree: String,
    /// [`TreeStat::digest`].
    pub stat: String,
    /// The newest modification or change time of its files, in nanoseconds since the epoch.
    pub newest: i64,
    /// Root-relative path → the file's part of the tree hash (`TreeSum::file`, hex), for the
    /// files the last release re-rendered: the next release re-renders the same files and
    /// need not read them to take their old part out of the hash. Only ever believed with the
    /// rest of the entry (the stat data covers these files too).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sums: BTreeMap<String, String>,
}

impl StatEntry {
    /// This entry, knowing the parts of the tree hash in `sums`.
    pub fn with_sums(mut self, sums: BTreeMap<String, String>) -> StatEntry {
        self.sums = sums;
        self
    }
}

impl StatRecord {
    /// The entry of tenant `id` vouching for `tree`, if any.
    pub fn vouching(&self, id: &str, tree: &str) -> Option<&StatEntry> {
        self.tenants.get(id).filter(|e| e.tree == tree)
    }

    pub fn get(&self, id: &str) -> Option<&StatEntry> {
        self.tenants.get(id)
    }

    pub fn insert(&mut self, id: &str, entry: StatEntry) {
        self.tenants.insert(id.to_owned(), entry);
    }

    pub fn remove(&mut self, id: &str) {
        self.tenants.remove(id);
    }

    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.tenants.retain(|id, _| keep(id));
    }
}

/// Whether the output at `root` keeps a record (its `.git` is a directory of its own): a run
/// without one takes no stat data it could not keep.
pub fn kept(root: &Path) -> bool {
    location(root).is_some()
}

/// Where the record of the output at `root` lives: `None` when `root/.git` is not a
/// directory of its own.
fn location(root: &Path) -> Option<PathBuf> {
    let git = root.join(".git");
    std::fs::symlink_metadata(&git)
        .ok()
        .filter(|m| m.is_dir())
        .map(|_| git.join(STAT_FILE))
}

/// The record of the output at `root`, less its racy entries; empty when there is none or it
/// cannot be read (see the module's documentation).
pub fn read_stats(root: &Path) -> StatRecord {
    let Some(path) = location(root) else {
        return StatRecord::default();
    };
    let Ok(Some(bytes)) = tree::read_file(&path) else {
        return StatRecord::default();
    };
    let Some(cutoff) = std::fs::symlink_metadata(&path).ok().map(|m| mtime(&m)) else {
        return StatRecord::default();
    };
    match serde_json::from_slice::<StatRecord>(&bytes) {
        Ok(mut r) if r.format == FORMAT => {
            let all = r.tenants.len();
            r.tenants.retain(|_, e| e.newest < cutoff);
            r.racy = r.tenants.len() < all;
            r
        }
        _ => StatRecord::default(),
    }
}

/// Writes `record` for the output at `root` (nothing without a git directory). A failure is
/// logged, not returned, and the old record removed: the record is a shortcut, never needed.
pub fn write_stats(root: &Path, record: &StatRecord) {
    let Some(path) = location(root) else {
        return;
    };
    let mut bytes = serde_json::to_vec(&StatRecord {
        format: FORMAT,
        tenants: record.tenants.clone(),
        racy: false,
    })
    .expect("strings and numbers serialize");
    bytes.push(b'\n');
    if let Err(e) = crate::io::fsx::write_atomic(&path, &bytes).map_err(io("write", &path)) {
        tracing::warn!("the stat record is not kept: {e}");
        let _ = std::fs::remove_file(&path);
    }
}

/// The stat data of a tree's files.
#[derive(Debug, Clone, Default)]
pub struct TreeStat {
    /// Root-relative path → its stat data, in path order.
    files: BTreeMap<String, FileStat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStat {
    size: u64,
    mtime: i64,
    ctime: i64,
    ino: u64,
    dev: u64,
    mode: u32,
}

impl FileStat {
    fn of(m: &std::fs::Metadata) -> FileStat {
        FileStat {
            size: m.size(),
            mtime: mtime(m),
            ctime: nanos(m.ctime(), m.ctime_nsec()),
            ino: m.ino(),
            dev: m.dev(),
            mode: m.mode(),
        }
    }
}

fn nanos(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

fn mtime(m: &std::fs::Metadata) -> i64 {
    nanos(m.mtime(), m.mtime_nsec())
}

impl TreeStat {
    /// Adds the stat data `m` of the file at `path` (root-relative), taken from its open
    /// descriptor by the writer that just wrote it: the same data `lstat` gives, without a
    /// lookup of the path.
    pub fn add(&mut self, path: &str, m: &std::fs::Metadata) {
        self.files.insert(path.to_owned(), FileStat::of(m));
    }

    /// The stat data of listed files (absolute paths below `root`, each with its stat data as
    /// [`tree::files_below_stat`] took it); `None` when one could not be taken.
    pub fn of_listed(
        root: &Path,
        listed: &[(PathBuf, Option<std::fs::Metadata>)],
    ) -> Option<TreeStat> {
        let mut out = BTreeMap::new();
        for (f, m) in listed {
            out.insert(tree::relative(root, f), FileStat::of(m.as_ref()?));
        }
        Some(TreeStat { files: out })
    }

    /// Takes `path`'s stat data again (a file this run wrote); `None` when it cannot.
    pub fn refresh(&mut self, root: &Path, path: &str) -> Option<()> {
        let m = std::fs::symlink_metadata(root.join(path)).ok()?;
        self.files.insert(path.to_owned(), FileStat::of(&m));
        Some(())
    }

    /// The entry vouching that the disk holds `tree`.
    pub fn entry(&self, tree: &str) -> StatEntry {
        let mut h = Sha256::new();
        let mut newest = i64::MIN;
        for (path, s) in &self.files {
            h.update(path.as_bytes());
            h.update([0]);
            for n in [
                s.size,
                s.mtime as u64,
                s.ctime as u64,
                s.ino,
                s.dev,
                u64::from(s.mode),
            ] {
                h.update(n.to_be_bytes());
            }
            newest = newest.max(s.mtime).max(s.ctime);
        }
        StatEntry {
            tree: tree.to_owned(),
            stat: hex::encode(h.finalize()),
            newest,
            sums: BTreeMap::new(),
        }
    }

    /// Whether `entry` (vouching for the tree the state file records) says the disk still
    /// holds it.
    pub fn matches(&self, entry: &StatEntry) -> bool {
        let now = self.entry(&entry.tree);
        (&now.tree, &now.stat, now.newest) == (&entry.tree, &entry.stat, entry.newest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree_stat(root: &Path) -> TreeStat {
        TreeStat::of_listed(root, &tree::files_below_stat(&root.join("t")).unwrap()).unwrap()
    }

    /// What moves an entry: a write of the same bytes (the times), a same-size edit with its
    /// modification time put back (the change time), a file replaced by rename (the inode),
    /// a mode, a new file; a read does not.
    #[test]
    fn any_change_to_a_file_moves_the_digest_and_a_read_does_not() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("t/d")).unwrap();
        std::fs::write(root.join("t/a"), "aaaa").unwrap();
        std::fs::write(root.join("t/d/b"), "bbbb").unwrap();
        let entry = tree_stat(root).entry("T");
        let _ = std::fs::read(root.join("t/a")).unwrap();
        assert!(tree_stat(root).matches(&entry));
        let pause = || std::thread::sleep(std::time::Duration::from_millis(20));
        let changes: [&dyn Fn(); 4] = [
            &|| {
                let m = std::fs::metadata(root.join("t/d/b")).unwrap();
                std::fs::write(root.join("t/d/b"), "BBBB").unwrap();
                let f = std::fs::File::options()
                    .write(true)
                    .open(root.join("t/d/b"))
                    .unwrap();
                f.set_modified(m.modified().unwrap()).unwrap();
            },
            &|| {
                std::fs::write(root.join("t/new"), "aaaa").unwrap();
                std::fs::rename(root.join("t/new"), root.join("t/a")).unwrap();
            },
            &|| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(root.join("t/a"), std::fs::Permissions::from_mode(0o600))
                    .unwrap();
            },
            &|| std::fs::write(root.join("t/d/c"), "").unwrap(),
        ];
        for change in changes {
            let entry = tree_stat(root).entry("T");
            pause();
            change();
            assert!(!tree_stat(root).matches(&entry));
        }
    }

    /// The record lives in `.git` only, drops racy entries, and is empty when unreadable or
    /// of another format.
    #[test]
    fn the_record_is_kept_in_the_git_directory_without_its_racy_entries() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("t")).unwrap();
        std::fs::write(root.join("t/a"), "a").unwrap();
        let mut r = StatRecord::default();
        r.insert("old", tree_stat(root).entry("T"));
        write_stats(root, &r);
        assert_eq!(
            read_stats(root),
            StatRecord::default(),
            "no .git: no record"
        );
        std::fs::create_dir(root.join(".git")).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        write_stats(root, &r);
        let read = read_stats(root);
        assert_eq!(read.vouching("old", "T"), r.get("old"));
        assert_eq!(read.vouching("old", "other tree"), None);
        // An entry as new as the record itself is dropped.
        r.insert(
            "racy",
            StatEntry {
                newest: i64::MAX,
                ..r.get("old").unwrap().clone()
            },
        );
        write_stats(root, &r);
        let read = read_stats(root);
        assert!(read.get("racy").is_none() && read.get("old").is_some());
        // Not equal to the same entries built afresh: a run rewrites it without them.
        let mut built = StatRecord::default();
        built.insert("old", r.get("old").unwrap().clone());
        assert_ne!(read, built);
        write_stats(root, &built);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let f = std::fs::File::options()
            .write(true)
            .open(root.join(".git").join(STAT_FILE))
            .unwrap();
        f.set_modified(std::time::SystemTime::now()).unwrap();
        assert_eq!(read_stats(root), built);
        std::fs::write(root.join(".git").join(STAT_FILE), "{not json").unwrap();
        assert_eq!(read_stats(root), StatRecord::default());
    }

    /// A record read back equals the one written (so an unchanged record is not rewritten).
    #[test]
    fn a_record_read_back_equals_the_one_built() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("t")).unwrap();
        std::fs::create_dir(root.join(".git")).unwrap();
        std::fs::write(root.join("t/a"), "a").unwrap();
        let mut r = StatRecord::default();
        std::thread::sleep(std::time::Duration::from_millis(20));
        r.insert("t", tree_stat(root).entry("T"));
        write_stats(root, &r);
        assert_eq!(read_stats(root), r);
        write_stats(root, &StatRecord::default());
        assert_eq!(read_stats(root), StatRecord::default());
    }
}
