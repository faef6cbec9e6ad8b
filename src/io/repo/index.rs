//! The output clone's index brought from a commit's parent to the commit by streaming the
//! index file once (a splice), instead of through libgit2, which parses every entry into its
//! map and hashes the file on read and on write (0.35 s of 0.52 s at 10,000 tenants,
//! 270,000 entries).
//!
//! Only what git's format (`Documentation/gitformat-index.txt`) and libgit2's reader
//! (`index.c`: `read_entry`, `parse_index`) allow is relied on: a version 2 or 3 file whose
//! entries are all stage 0 without the extended flag, its checksum verified. Anything else —
//! version 4 (prefix-compressed names), an extended or conflicted entry, a required extension
//! (signature not starting with `A`..`Z`: `link` split index, `sdir` sparse index), a file
//! that does not parse — is [`Spliced::Unsupported`], and the caller takes libgit2's path;
//! nothing is guessed.
//!
//! Entries copied from the old file keep their stat data, except one git's racy-git rule
//! protected only through the old file's mtime (its own mtime not older, in seconds): the
//! new file is newer, so when its work tree file no longer holds its content its size is
//! zeroed, as git's `ce_smudge_racily_clean_entry` and libgit2's `truncate_racily_clean` do
//! (those files are hashed: the ones written in the second of the last index write).
//!
//! The new file is written with git's lockfile protocol: `index.lock` created with
//! `O_CREAT|O_EXCL` (held by anyone else: [`Spliced::Unsupported`], so that libgit2's path
//! reports it exactly as before — provisio never removes a lock it did not create while
//! running; one a killed provisio run left is removed at the next open, and only that one:
//! [`super::lock`]), written, fsynced, renamed onto `index`; dropped unfinished, it is removed. A kill at any point leaves the old index or the
//! new one, and at most this lock file — as libgit2's own write (`git_filebuf`) does. Killed
//! between the rename and the caller's record of the new checksum, the next run finds the
//! trailer unrecorded and checks the index whole (libgit2's path).

use std::fs::OpenOptions;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use git2::{Oid, Tree};
use sha1::{Digest, Sha1};

use super::bulk::{TreeEntries, normalize_mode, read_tree};
use super::packed::Packed;
use super::{Result, io};

/// One path's state after the commit: its entry (added or updated), or `None` (removed).
pub type Change = (Vec<u8>, Option<git2::IndexEntry>);

/// A commit's changes to the index: one per path, sorted by path bytes (git's index order);
/// how many paths it added to the tree and removed from it (the index's new entry count).
#[derive(Debug, Default)]
pub struct Changes {
    pub list: Vec<Change>,
    pub added: usize,
    pub removed: usize,
}

/// What [`splice`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Spliced {
    /// The new index is in place; the checksum (trailer) of its file.
    Written([u8; 20]),
    /// The file is not one the splice handles (or `index.lock` is held): why, for the log.
    Unsupported(&'static str),
}

/// The changes from tree `old` to tree `new`, sorted by path bytes (git's index order), one
/// per path; added and updated paths carry the work tree file's stat data ([`index_entry`]).
/// Subtrees with the same id on both sides are skipped unread: a one-tenant commit reads
/// the trees on its path only (libgit2's tree-to-tree diff reads every tree: 0.2 s at
/// 10,000 tenants).
pub fn tree_changes(
    repo: &git2::Repository,
    old: &Tree<'_>,
    new: &Tree<'_>,
    workdir: &Path,
) -> std::result::Result<Changes, git2::Error> {
    let mut changes = Changes::default();
    // Trees are read from the clone's packs directly (a release reads tens of thousands).
    let (packed, odb) = (Packed::open(repo.path()), repo.odb()?);
    let read = |id: Oid| read_tree(&packed, &odb, id);
    compare(
        &read,
        Some(&read(old.id())?),
        Some(&read(new.id())?),
        &mut Vec::new(),
        workdir,
        &mut changes,
    )?;
    changes.list.sort_by(|a, b| a.0.cmp(&b.0));
    // One per path (a path is either removed or has its new entry; never both from one
    // tree pair, kept as a guard).
    changes.list.dedup_by(|later, earlier| {
        let same = later.0 == earlier.0;
        if same && later.1.is_some() {
            std::mem::swap(later, earlier);
        }
        same
    });
    Ok(changes)
}

/// One side of a tree entry: its id and mode (libgit2's normalised file mode).
type Side = Option<(Oid, i32)>;

/// One path a commit's tree edits set: its full path in the tree, its entry before and
/// after (id and mode as the trees hold them; `None`: absent).
pub type PathEdit = (Vec<u8>, Option<(Oid, i32)>, Option<(Oid, i32)>);

/// [`tree_changes`] from the edits a commit made (each path it set, with the entries before and
/// after), with no tree read: what [`tree_changes`] finds when the commit is exactly these
/// edits on its parent. `None` when an edit puts or takes a tree (a file become a directory,
/// or back), whose files the edit does not list.
pub fn changes_of(edits: &[PathEdit], workdir: &Path) -> Option<Changes> {
    const TREE: i32 = 0o040000;
    let mut changes = Changes::default();
    for (path, old, new) in edits {
        let (old, new) = (
            old.map(|(id, m)| (id, normalize_mode(m))),
            new.map(|(id, m)| (id, normalize_mode(m))),
        );
        if old.is_some_and(|(_, m)| m == TREE) || new.is_some_and(|(_, m)| m == TREE) {
            return None;
        }
        if old == new {
            continue;
        }
        match new {
            Some((id, mode)) => {
                use std::os::unix::ffi::OsStrExt;
                let p = Path::new(std::ffi::OsStr::from_bytes(path));
                changes
                    .list
                    .push((path.clone(), Some(index_entry(p, id, mode as u32, workdir))));
                changes.added += usize::from(old.is_none());
            }
            None => {
                changes.list.push((path.clone(), None));
                changes.removed += 1;
            }
        }
    }
    changes.list.sort_by(|a, b| a.0.cmp(&b.0));
    if changes.list.windows(2).any(|w| w[0].0 == w[1].0) {
        return None;
    }
    Some(changes)
}

/// Appends the changes under `prefix` from `old` to `new` (either absent: everything under
/// the other is added or removed).
fn compare(
    read: &dyn Fn(Oid) -> std::result::Result<TreeEntries, git2::Error>,
    old: Option<&TreeEntries>,
    new: Option<&TreeEntries>,
    prefix: &mut Vec<u8>,
    workdir: &Path,
    out: &mut Changes,
) -> std::result::Result<(), git2::Error> {
    let mut names: std::collections::BTreeMap<Vec<u8>, (Side, Side)> = Default::default();
    for (name, id, mode) in old.iter().flat_map(|t| t.iter()) {
        names.entry(name.to_vec()).or_default().0 = Some((id, normalize_mode(mode)));
    }
    for (name, id, mode) in new.iter().flat_map(|t| t.iter()) {
        names.entry(name.to_vec()).or_default().1 = Some((id, normalize_mode(mode)));
    }
    const TREE: i32 = 0o040000;
    for (name, (o, n)) in names {
        if o == n {
            continue;
        }
        let len = prefix.len();
        if len > 0 {
            prefix.push(b'/');
        }
        prefix.extend_from_slice(&name);
        let subtree = |side: Side| -> std::result::Result<Option<TreeEntries>, git2::Error> {
            match side {
                Some((id, TREE)) => read(id).map(Some),
                _ => Ok(None),
            }
        };
        let (old_tree, new_tree) = (subtree(o)?, subtree(n)?);
        if old_tree.is_some() || new_tree.is_some() {
            compare(
                read,
                old_tree.as_ref(),
                new_tree.as_ref(),
                prefix,
                workdir,
                out,
            )?;
        }
        let old_file = o.filter(|&(_, mode)| mode != TREE);
        match n.filter(|&(_, mode)| mode != TREE) {
            Some((id, mode)) => {
                use std::os::unix::ffi::OsStrExt;
                let path = Path::new(std::ffi::OsStr::from_bytes(prefix));
                let entry = index_entry(path, id, mode as u32, workdir);
                out.list.push((prefix.clone(), Some(entry)));
                out.added += usize::from(old_file.is_none());
            }
            None if old_file.is_some() => {
                out.list.push((prefix.clone(), None));
                out.removed += 1;
            }
            None => {}
        }
        prefix.truncate(len);
    }
    Ok(())
}

/// The index entry of a committed file, with the work tree file's stat data when it is there
/// (so that `git status` need not read it again; zeroes make it compare the content instead).
pub fn index_entry(path: &Path, id: Oid, mode: u32, workdir: &Path) -> git2::IndexEntry {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(workdir.join(path)).ok();
    let time = |s: i64, ns: i64| git2::IndexTime::new(s as i32, ns as u32);
    let m = meta.as_ref();
    git2::IndexEntry {
        ctime: m.map_or(time(0, 0), |m| time(m.ctime(), m.ctime_nsec())),
        mtime: m.map_or(time(0, 0), |m| time(m.mtime(), m.mtime_nsec())),
        dev: m.map_or(0, |m| m.dev() as u32),
        ino: m.map_or(0, |m| m.ino() as u32),
        mode,
        uid: m.map_or(0, MetadataExt::uid),
        gid: m.map_or(0, MetadataExt::gid),
        file_size: m.map_or(0, |m| m.size() as u32),
        id,
        flags: 0,
        flags_extended: 0,
        path: path.as_os_str().as_encoded_bytes().to_vec(),
    }
}

/// Rewrites `<git_dir>/index` with `changes` ([`tree_changes`]) applied, if its trailer is
/// still `expected` (the file provisio last wrote) and its format is one the splice handles.
/// The caller records the new checksum.
///
/// A copied entry that is racily clean in the old file (its mtime not older than the old
/// file's, in seconds: git's `is_racy_timestamp` without `USE_NSEC`, which covers libgit2's
/// nanosecond test) and whose work tree file (under `workdir`) no longer holds its content
/// gets its size zeroed, as git's `ce_smudge_racily_clean_entry` and libgit2's
/// `truncate_racily_clean` do: the new file is newer than that entry, so without it a
/// same-size edit made in the second the old file was written would look clean to both.
pub fn splice(
    git_dir: &Path,
    workdir: &Path,
    expected: [u8; 20],
    changes: &Changes,
) -> Result<Spliced> {
    use std::os::unix::fs::{FileExt, MetadataExt};
    let index = git_dir.join("index");
    let Some(mut lock) = LockFile::create(git_dir.join("index.lock"))? else {
        return Ok(Spliced::Unsupported("index.lock exists"));
    };
    // Read under the lock: no git process changes the file meanwhile.
    let file = std::fs::File::open(&index).map_err(io("open", &index))?;
    let meta = file.metadata().map_err(io("stat", &index))?;
    let len = meta.len();
    // The old file's mtime as git reads it (`istate->timestamp.sec`, 32 bits).
    let stamp = meta.mtime() as u32;
    let mut trailer = [0u8; TRAILER];
    if len < TRAILER as u64
        || file
            .read_exact_at(&mut trailer, len - TRAILER as u64)
            .is_err()
        || trailer != expected
    {
        return Ok(Spliced::Unsupported(
            "the index changed since provisio wrote it",
        ));
    }
    let out = lock.file.as_mut().expect("open until committed");
    let mut racy_and_changed = |e: &[u8]| stamp != 0 && racily_changed(e, stamp, workdir);
    let checksum = match stream(&file, len, trailer, out, changes, &mut racy_and_changed) {
        Ok((_, checksum)) => checksum,
        Err(Failure::Unsupported(why)) => return Ok(Spliced::Unsupported(why)),
        Err(Failure::Read(e)) => return Err(io("read", &index)(e)),
        Err(Failure::Write(e)) => return Err(io("write", &lock.path)(e)),
    };
    lock.sync()?;
    lock.commit(&index)?;
    Ok(Spliced::Written(checksum))
}

/// Whether the entry `e` (its fixed part and name, as in the file) is racily clean against
/// an index file written at `stamp` (seconds) and its work tree file no longer holds its
/// content (or cannot be read: a smudged entry only makes git compare the content).
/// Gitlinks are never racy (git and libgit2 skip them); an entry of size 0 is already
/// compared by content.
fn racily_changed(e: &[u8], stamp: u32, workdir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    const TYPE: u32 = 0o170000;
    let (mtime, mode, size) = (be32(&e[8..12]), be32(&e[24..28]), be32(&e[36..40]));
    if mtime < stamp || size == 0 || mode & TYPE == 0o160000 {
        return false;
    }
    let Ok(id) = Oid::from_bytes(&e[40..60]) else {
        return true;
    };
    let name = e[FIXED..].split(|&b| b == 0).next().unwrap_or_default();
    let path = workdir.join(std::ffi::OsStr::from_bytes(name));
    let Ok(meta) = std::fs::symlink_metadata(&path) else {
        return true;
    };
    let content = if mode & TYPE == 0o120000 && meta.file_type().is_symlink() {
        std::fs::read_link(&path)
            .ok()
            .and_then(|t| Oid::hash_object(git2::ObjectType::Blob, t.as_os_str().as_bytes()).ok())
    } else if mode & TYPE == 0o100000 && meta.is_file() {
        Oid::hash_file(git2::ObjectType::Blob, &path).ok()
    } else {
        None
    };
    content != Some(id)
}

/// An entry's fixed part: ctime, mtime (seconds, nanoseconds), dev, ino, mode, uid, gid,
/// size (4 bytes each), the SHA-1, the 16-bit flags.
const FIXED: usize = 62;
const HEADER: usize = 12;
const TRAILER: usize = 20;
const NAME_MASK: u16 = 0x0FFF;
const STAGE_MASK: u16 = 0x3000;
const EXTENDED: u16 = 0x4000;

/// Why a splice stopped.
enum Failure {
    /// Not a file the splice handles.
    Unsupported(&'static str),
    Read(std::io::Error),
    Write(std::io::Error),
}

impl From<&'static str> for Failure {
    fn from(why: &'static str) -> Self {
        Failure::Unsupported(why)
    }
}

/// The index file `old` with `changes` applied: the new file's bytes, trailer included, or
/// why `old` is not a file the splice handles ([`splice`] on bytes in memory).
pub fn splice_bytes(old: &[u8], changes: &Changes) -> std::result::Result<Vec<u8>, &'static str> {
    let len = old.len() as u64;
    let trailer: [u8; TRAILER] = match old.len().checked_sub(TRAILER) {
        Some(body) => old[body..].try_into().expect("20 bytes"),
        None => return Err("the index is too short"),
    };
    let capacity = Vec::with_capacity(old.len());
    match stream(old, len, trailer, capacity, changes, &mut |_| false) {
        Ok((out, _)) => Ok(out),
        Err(Failure::Unsupported(why)) => Err(why),
        Err(Failure::Read(_) | Failure::Write(_)) => Err("cannot read or write in memory"),
    }
}

/// Reads the index file from `input` (`len` bytes, ending with `trailer`) and writes it to
/// `out` with `changes` applied, in one pass with a 64 KiB buffer each way: `out` and its
/// checksum.
///
/// Entries not changed are copied byte for byte (their flags, assume-valid included), but
/// for the size of those `smudge` picks (racily clean and changed: [`splice`]); new
/// ones are laid out as libgit2's `write_disk_entry` does (name length capped at 0xFFF, 1 to 8
/// NULs padding the entry to a multiple of 8). The version written is 2, as libgit2 writes an
/// index without extended entries. The entry count is the old one plus the paths the commit
/// added minus those it removed, written first (the checksum covers the header), and checked
/// against the entries written at the end. The optional extensions (`TREE` cache tree,
/// `REUC`, `UNTR`, `EOIE`, `IEOT`…: first byte `A`..`Z`) are dropped: the format lets every
/// reader ignore them, and git and libgit2 rebuild them when they need them; the cache tree
/// would be stale after the change anyway. The old file's checksum is verified once all of
/// it is read: a damaged file is never given a fresh checksum.
fn stream<R: Read, W: Write>(
    input: R,
    len: u64,
    trailer: [u8; TRAILER],
    out: W,
    changes: &Changes,
    smudge: &mut dyn FnMut(&[u8]) -> bool,
) -> std::result::Result<(W, [u8; TRAILER]), Failure> {
    debug_assert!(
        changes.list.windows(2).all(|w| w[0].0 < w[1].0),
        "sorted, unique"
    );
    if len < (HEADER + TRAILER) as u64 {
        return Err("the index is too short".into());
    }
    if trailer == [0u8; TRAILER] {
        return Err("the index has no checksum (index.skipHash)".into());
    }
    let body = len - TRAILER as u64;
    let mut r = BufReader::with_capacity(
        1 << 16,
        Hashing {
            inner: input.take(body),
            hash: Sha1::new(),
        },
    );
    let mut w = BufWriter::with_capacity(
        1 << 16,
        Hashing {
            inner: out,
            hash: Sha1::new(),
        },
    );
    let mut header = [0u8; HEADER];
    get(&mut r, &mut header)?;
    if &header[..4] != b"DIRC" {
        return Err("not an index file".into());
    }
    let version = be32(&header[4..8]);
    if version != 2 && version != 3 {
        return Err("an index version other than 2 or 3".into());
    }
    let count = u64::from(be32(&header[8..12]));
    let new_count = (count + changes.added as u64)
        .checked_sub(changes.removed as u64)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or("the index does not hold the parent's tree")?;
    let put =
        |w: &mut BufWriter<Hashing<W>>, bytes: &[u8]| w.write_all(bytes).map_err(Failure::Write);
    put(&mut w, b"DIRC")?;
    put(&mut w, &2u32.to_be_bytes())?;
    put(&mut w, &new_count.to_be_bytes())?;
    let mut written: u64 = 0;
    let mut next = changes.list.iter().peekable();
    let mut pos = HEADER as u64;
    let mut entry: Vec<u8> = Vec::with_capacity(256);
    let mut prev: Vec<u8> = Vec::with_capacity(256);
    let mut scratch: Vec<u8> = Vec::with_capacity(256);
    for i in 0..count {
        // The smallest entry: the fixed part, a one-byte name, one NUL.
        entry.clear();
        entry.resize(FIXED + 2, 0);
        get(&mut r, &mut entry)?;
        let flags = u16::from_be_bytes([entry[60], entry[61]]);
        if flags & EXTENDED != 0 {
            return Err("an entry with the extended flag".into());
        }
        if flags & STAGE_MASK != 0 {
            return Err("an entry in a conflict stage".into());
        }
        let named = flags & NAME_MASK;
        if named < NAME_MASK {
            let size = entry_size(usize::from(named));
            if size > entry.len() {
                let start = entry.len();
                entry.resize(size, 0);
                get(&mut r, &mut entry[start..])?;
            }
        } else {
            // A name of 0xFFF bytes or more: 8 bytes at a time up to its NUL (the entry ends
            // with the 8 bytes holding it).
            while !entry[FIXED..].contains(&0) {
                if entry.len() > 1 << 20 {
                    return Err("an entry's name is not terminated".into());
                }
                let start = entry.len();
                entry.resize(start + 8, 0);
                get(&mut r, &mut entry[start..])?;
            }
        }
        pos += entry.len() as u64;
        let name_len = entry[FIXED..]
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(usize::MAX);
        let name_ok = if named < NAME_MASK {
            name_len == usize::from(named)
        } else {
            name_len != usize::MAX && name_len >= usize::from(NAME_MASK)
        };
        if !name_ok
            || entry.len() != entry_size(name_len)
            || entry[FIXED + name_len..].iter().any(|&b| b != 0)
        {
            return Err("an entry's name or padding is malformed".into());
        }
        let path = &entry[FIXED..FIXED + name_len];
        if name_len == 0 || (i > 0 && path <= prev.as_slice()) {
            return Err("the entries are not sorted".into());
        }
        let mut copy = true;
        while let Some((p, change)) = next.next_if(|(p, _)| p.as_slice() <= path) {
            if let Some(e) = change {
                put_entry(&mut scratch, e)?;
                put(&mut w, &scratch)?;
                written += 1;
            }
            if p.as_slice() == path {
                copy = false; // replaced or removed
                break;
            }
        }
        prev.clear();
        prev.extend_from_slice(path);
        if copy {
            if smudge(&entry[..FIXED + name_len]) {
                entry[36..40].fill(0); // the size: git compares the content
            }
            put(&mut w, &entry)?;
            written += 1;
        }
    }
    for (_, change) in next {
        if let Some(e) = change {
            put_entry(&mut scratch, e)?;
            put(&mut w, &scratch)?;
            written += 1;
        }
    }
    while pos < body {
        let mut ext = [0u8; 8];
        if pos + 8 > body {
            return Err("an extension's header is truncated".into());
        }
        get(&mut r, &mut ext)?;
        if !ext[0].is_ascii_uppercase() {
            return Err("a required index extension (split or sparse index?)".into());
        }
        let size = u64::from(be32(&ext[4..8]));
        if pos + 8 + size > body {
            return Err("an extension is truncated".into());
        }
        let skipped =
            std::io::copy(&mut (&mut r).take(size), &mut std::io::sink()).map_err(Failure::Read)?;
        if skipped != size {
            return Err("an extension is truncated".into());
        }
        pos += 8 + size;
    }
    if written != u64::from(new_count) {
        return Err("the index does not hold the parent's tree".into());
    }
    // All `body` bytes read (the reader's buffer is empty): their hash is complete.
    let read = r.into_inner();
    if read.hash.finalize()[..] != trailer {
        return Err("the index's checksum does not match its content".into());
    }
    let mut hashed = w.into_inner().map_err(|e| Failure::Write(e.into_error()))?;
    let checksum: [u8; TRAILER] = hashed.hash.finalize().into();
    hashed.inner.write_all(&checksum).map_err(Failure::Write)?;
    Ok((hashed.inner, checksum))
}

/// Fills `buf` from the index file; its end inside `buf` means a truncated or malformed file.
fn get<R: Read>(r: &mut R, buf: &mut [u8]) -> std::result::Result<(), Failure> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => Failure::Unsupported("the index ends inside an entry"),
        _ => Failure::Read(e),
    })
}

/// A reader or writer that hashes the bytes passing through it.
struct Hashing<T> {
    inner: T,
    hash: Sha1,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The size of an entry whose name is `len` bytes: at least one NUL, padded to 8.
fn entry_size(len: usize) -> usize {
    (FIXED + len + 8) & !7
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Appends `e` as libgit2's `write_disk_entry` lays it out (stage 0, no extended flags;
/// times, sizes truncated to 32 bits as the format stores them).
fn put_entry(out: &mut Vec<u8>, e: &git2::IndexEntry) -> std::result::Result<(), &'static str> {
    if e.path.is_empty() || e.path.contains(&0) {
        return Err("a changed path is empty or holds a NUL");
    }
    out.clear();
    let start = 0;
    for v in [
        e.ctime.seconds() as u32,
        e.ctime.nanoseconds(),
        e.mtime.seconds() as u32,
        e.mtime.nanoseconds(),
        e.dev,
        e.ino,
        e.mode,
        e.uid,
        e.gid,
        e.file_size,
    ] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(e.id.as_bytes());
    let len = e.path.len().min(usize::from(NAME_MASK)) as u16;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&e.path);
    out.resize(start + entry_size(e.path.len()), 0);
    Ok(())
}

/// `index.lock` created by this process: removed when dropped uncommitted (never a lock
/// someone else created: [`LockFile::create`] gives none then).
struct LockFile {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl LockFile {
    /// `None` when the lock exists (held by another git process, or left by a killed one).
    fn create(path: PathBuf) -> Result<Option<LockFile>> {
        // Mode 0666 before the umask, as git's and libgit2's lockfiles.
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => Ok(Some(LockFile {
                path,
                file: Some(file),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(io("create", &path)(e)),
        }
    }

    /// Flushes the written file to the disk (so that the rename never publishes a file
    /// whose blocks a power loss could lose).
    fn sync(&mut self) -> Result<()> {
        let file = self.file.as_mut().expect("open until committed");
        file.sync_all().map_err(io("write", &self.path))
    }

    /// Renames the lock onto `target` (git's commit of a lockfile): readers see the old file
    /// or the new one, never a part.
    fn commit(mut self, target: &Path) -> Result<()> {
        drop(self.file.take());
        std::fs::rename(&self.path, target).map_err(io("replace", target))?;
        self.path = PathBuf::new();
        Ok(())
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use crate::io::repo::tests::stock_git_here;

    use super::*;

    /// An entry as every field reads back (`git2::IndexEntry` has no `PartialEq`).
    type Fields = (Vec<u8>, u32, Oid, [u32; 4], [u32; 6], u16, u16);

    fn fields(e: &git2::IndexEntry) -> Fields {
        (
            e.path.clone(),
            e.mode,
            e.id,
            [
                e.ctime.seconds() as u32,
                e.ctime.nanoseconds(),
                e.mtime.seconds() as u32,
                e.mtime.nanoseconds(),
            ],
            [e.dev, e.ino, e.uid, e.gid, e.file_size, 0],
            e.flags,
            e.flags_extended,
        )
    }

    /// The entries of the index file holding `bytes`, as libgit2 reads them (checksum
    /// verified).
    fn read_back(dir: &Path, bytes: &[u8]) -> Vec<Fields> {
        let path = dir.join("read-back");
        std::fs::write(&path, bytes).unwrap();
        let index = git2::Index::open(&path).unwrap();
        index.iter().map(|e| fields(&e)).collect()
    }

    /// Stock git's output for `args` in `work`; fails the test when git fails.
    fn git_in(work: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(work)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    struct Fixture {
        dir: tempfile::TempDir,
        repo: git2::Repository,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let repo = git2::Repository::init(dir.path().join("repo")).unwrap();
            Fixture { dir, repo }
        }

        /// A tree holding `files` (path → content).
        fn tree(&self, files: &BTreeMap<String, String>) -> Oid {
            let mut index = git2::Index::new().unwrap();
            for (path, text) in files {
                let id = self.repo.blob(text.as_bytes()).unwrap();
                index
                    .add(&index_entry(
                        Path::new(path),
                        id,
                        0o100644,
                        Path::new("/none"),
                    ))
                    .unwrap();
            }
            index.write_tree_to(&self.repo).unwrap()
        }

        /// The repository's index file written by libgit2 holding `tree` (with its cache
        /// tree); its bytes.
        fn index_holding(&self, tree: Oid) -> Vec<u8> {
            let mut index = self.repo.index().unwrap();
            index
                .read_tree(&self.repo.find_tree(tree).unwrap())
                .unwrap();
            index.write().unwrap();
            std::fs::read(self.repo.path().join("index")).unwrap()
        }

        fn changes(&self, old: Oid, new: Oid, workdir: &Path) -> Changes {
            let (old, new) = (
                self.repo.find_tree(old).unwrap(),
                self.repo.find_tree(new).unwrap(),
            );
            tree_changes(&self.repo, &old, &new, workdir).unwrap()
        }
    }

    /// Trees stock git would call malformed but libgit2 reads — modes with group bits
    /// (`100664`, `100775`), a tree's with permissions (`040755`), `041000` (a tree to
    /// `S_ISDIR`, a file to libgit2's file mode), `100000`, a name given twice — and links,
    /// submodules and names that sort differently in git's order (`a.b`, `a/`): the changes
    /// are libgit2's reading of them (`git_tree_entry_filemode`, the last entry of a name),
    /// whether the trees are loose or read from a pack stock git wrote.
    #[test]
    fn odd_modes_read_as_libgit2_reads_them_loose_or_packed() {
        let f = Fixture::new();
        let odb = f.repo.odb().unwrap();
        let raw = |entries: &[(&str, &str, Oid)]| {
            let mut out = Vec::new();
            for (mode, name, id) in entries {
                out.extend_from_slice(format!("{mode} {name}\0").as_bytes());
                out.extend_from_slice(id.as_bytes());
            }
            odb.write(git2::ObjectType::Tree, &out).unwrap()
        };
        let blob = |s: &str| f.repo.blob(s.as_bytes()).unwrap();
        let (x, y) = (blob("x\n"), blob("y\n"));
        let sub = raw(&[("100644", "x", x)]);
        let sub2 = raw(&[("100644", "x", y)]);
        let commit = Oid::from_str("0123456789012345678901234567890123456789").unwrap();
        let old = raw(&[
            ("100664", "a", x),
            ("100755", "b", x),
            ("40000", "a.b", sub),
            ("100644", "z", x),
        ]);
        let new = raw(&[
            ("100644", "a", x),
            ("100775", "b", y),
            ("100644", "a.b", x),
            ("40755", "a", sub2),
            ("120000", "c", x),
            ("160000", "d", commit),
            ("41000", "e", sub),
            ("100000", "g", y),
            ("100644", "z", x),
            ("100755", "z", y),
        ]);
        let workdir = f.dir.path().join("none");
        let want: Vec<(String, Option<u32>)> = [
            ("a", None),
            ("a.b", Some(0o100644)),
            ("a.b/x", None),
            ("a/x", Some(0o100644)),
            ("b", Some(0o100755)),
            ("c", Some(0o120000)),
            ("d", Some(0o160000)),
            ("e", Some(0o100644)),
            ("g", Some(0o100644)),
            ("z", Some(0o100755)),
        ]
        .iter()
        .map(|(p, m)| (p.to_string(), *m))
        .collect();
        let got = |c: Changes| -> Vec<(String, Option<u32>)> {
            c.list
                .iter()
                .map(|(p, e)| {
                    (
                        String::from_utf8(p.clone()).unwrap(),
                        e.as_ref().map(|e| e.mode),
                    )
                })
                .collect()
        };
        let loose = f.changes(old, new, &workdir);
        assert_eq!((loose.added, loose.removed), (6, 2));
        assert_eq!(got(loose), want);
        for t in [old, new] {
            git_in(f.repo.path(), &["tag", &format!("t{t}"), &t.to_string()]);
        }
        git_in(f.repo.path(), &["repack", "-adfq", "--window=0"]);
        assert_eq!(Packed::open(f.repo.path()).len(), 1);
        for t in [old, new, sub, sub2] {
            assert!(
                Packed::open(f.repo.path()).read(t).is_some(),
                "{t} not packed whole"
            );
        }
        assert_eq!(got(f.changes(old, new, &workdir)), want);
    }

    fn path() -> impl Strategy<Value = String> {
        let part = prop::sample::select(vec![
            "a", "b", "a.b", "a-b", "a0", "c", "a b", "a\u{e9}", "\u{e9}", "a~",
        ]);
        prop::collection::vec(part, 1..=3).prop_map(|p| p.join("/"))
    }

    fn no_file_is_a_directory(files: BTreeMap<String, String>) -> BTreeMap<String, String> {
        let all: Vec<String> = files.keys().cloned().collect();
        files
            .into_iter()
            .filter(|(p, _)| !all.iter().any(|q| q.starts_with(&format!("{p}/"))))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// A spliced index holds exactly what libgit2's own update of the same index holds,
        /// entry for entry and field for field, and the new tree's paths, modes and ids.
        #[test]
        fn a_splice_equals_libgit2s_update_and_the_new_tree(
            old in prop::collection::btree_map(path(), "[xy]{1,3}", 0..24),
            edits in prop::collection::btree_map(path(), prop::option::of("[xyz]{1,3}"), 0..12),
        ) {
            let f = Fixture::new();
            let old = no_file_is_a_directory(old);
            let mut new = old.clone();
            for (p, e) in &edits {
                match e {
                    Some(text) => new.insert(p.clone(), text.clone()),
                    None => new.remove(p),
                };
            }
            let new = no_file_is_a_directory(new);
            let (old_tree, new_tree) = (f.tree(&old), f.tree(&new));
            // The new files in a work tree, so that new entries carry stat data.
            let work = f.dir.path().join("work");
            for (p, text) in &new {
                let file = work.join(p);
                std::fs::create_dir_all(file.parent().unwrap()).unwrap();
                std::fs::write(file, text).unwrap();
            }
            let before = f.index_holding(old_tree);
            let changes = f.changes(old_tree, new_tree, &work);
            let spliced = splice_bytes(&before, &changes).unwrap();
            let got = read_back(f.dir.path(), &spliced);

            let path = f.dir.path().join("libgit2");
            std::fs::write(&path, &before).unwrap();
            let mut index = git2::Index::open(&path).unwrap();
            for (p, c) in &changes.list {
                if c.is_none() {
                    index.remove_path(Path::new(std::str::from_utf8(p).unwrap())).unwrap();
                }
            }
            for e in changes.list.iter().filter_map(|(_, c)| c.as_ref()) {
                index.add(e).unwrap();
            }
            index.write().unwrap();
            let want: Vec<Fields> = index.iter().map(|e| fields(&e)).collect();
            prop_assert_eq!(&got, &want);

            let mut rebuilt = git2::Index::new().unwrap();
            rebuilt.read_tree(&f.repo.find_tree(new_tree).unwrap()).unwrap();
            let tree_entries: Vec<(Vec<u8>, u32, Oid)> =
                rebuilt.iter().map(|e| (e.path, e.mode, e.id)).collect();
            let got_entries: Vec<(Vec<u8>, u32, Oid)> =
                got.iter().map(|e| (e.0.clone(), e.1, e.2)).collect();
            prop_assert_eq!(got_entries, tree_entries);
            prop_assert_eq!(be32(&spliced[4..8]), 2);
        }
    }

    fn one_file_index(f: &Fixture, entry: git2::IndexEntry, version: u32) -> Vec<u8> {
        let path = f.dir.path().join("made");
        let _ = std::fs::remove_file(&path);
        let mut index = git2::Index::open(&path).unwrap();
        index.set_version(version).unwrap();
        index.add(&entry).unwrap();
        index.write().unwrap();
        std::fs::read(&path).unwrap()
    }

    fn plain(path: &str) -> git2::IndexEntry {
        let id = Oid::from_str("e69de29bb2d1d6434b8b29ae77e5c10b8dd0a8e0").unwrap();
        index_entry(Path::new(path), id, 0o100644, Path::new("/none"))
    }

    fn add(path: &str) -> Changes {
        Changes {
            list: vec![(path.as_bytes().to_vec(), Some(plain(path)))],
            added: 1,
            removed: 0,
        }
    }

    #[test]
    fn version_3_without_extended_entries_and_long_names_are_spliced() {
        let f = Fixture::new();
        let long = "d/".repeat(2100) + "f";
        let file = one_file_index(&f, plain(&long), 3);
        let spliced = splice_bytes(&file, &add("a")).unwrap();
        let got = read_back(f.dir.path(), &spliced);
        let paths: Vec<&[u8]> = got.iter().map(|e| e.0.as_slice()).collect();
        assert_eq!(paths, [b"a".as_slice(), long.as_bytes()]);
        assert_eq!(got[1].5, 0xFFF, "the name length is capped");
        // Back again: the long name is read from the spliced file and copied.
        let again = splice_bytes(&spliced, &add(&(long.clone() + "g"))).unwrap();
        assert_eq!(read_back(f.dir.path(), &again).len(), 3);
    }

    #[test]
    fn files_the_splice_does_not_handle_are_refused() {
        let f = Fixture::new();
        let v4 = one_file_index(&f, plain("a"), 4);
        assert_eq!(
            splice_bytes(&v4, &add("b")),
            Err("an index version other than 2 or 3")
        );
        let mut skip = plain("a");
        skip.flags_extended = 1 << 14; // skip-worktree: an extended entry, a version 3 file
        let extended = one_file_index(&f, skip, 2);
        assert_eq!(be32(&extended[4..8]), 3);
        assert_eq!(
            splice_bytes(&extended, &add("b")),
            Err("an entry with the extended flag")
        );
        let mut conflict = plain("a");
        conflict.flags = 2 << 12;
        let staged = one_file_index(&f, conflict, 2);
        assert_eq!(
            splice_bytes(&staged, &add("b")),
            Err("an entry in a conflict stage")
        );
        let good = one_file_index(&f, plain("a"), 2);
        assert!(splice_bytes(&good, &add("b")).is_ok());
        // Changes that do not fit the file: it does not hold the tree they were made from.
        let gone = Changes {
            list: vec![(b"zz".to_vec(), None)],
            added: 0,
            removed: 1,
        };
        assert_eq!(
            splice_bytes(&good, &gone),
            Err("the index does not hold the parent's tree")
        );
        // A required extension (`link`: a split index) after the entries.
        let body = &good[..good.len() - 20];
        let mut linked = body.to_vec();
        linked.extend_from_slice(b"link\0\0\0\x14");
        linked.extend_from_slice(&[7; 20]);
        let sum = Sha1::digest(&linked);
        linked.extend_from_slice(&sum);
        assert_eq!(
            splice_bytes(&linked, &add("b")),
            Err("a required index extension (split or sparse index?)")
        );
        // Truncated, corrupted, without a checksum, and not an index at all.
        assert!(splice_bytes(&good[..good.len() - 1], &add("b")).is_err());
        let mut corrupt = good.clone();
        corrupt[70] ^= 1;
        assert_eq!(
            splice_bytes(&corrupt, &add("b")),
            Err("the index's checksum does not match its content")
        );
        let mut unhashed = body.to_vec();
        unhashed.extend_from_slice(&[0; 20]);
        assert!(splice_bytes(&unhashed, &add("b")).is_err());
        assert!(splice_bytes(b"", &add("b")).is_err());
        // An entry count larger than the entries: the file ends inside an entry.
        let mut short = body.to_vec();
        short[11] = 2;
        let sum = Sha1::digest(&short);
        short.extend_from_slice(&sum);
        assert_eq!(
            splice_bytes(&short, &add("b")),
            Err("the index ends inside an entry")
        );
    }

    #[test]
    fn a_held_lock_or_a_changed_index_is_left_alone() {
        let f = Fixture::new();
        let git_dir = f.repo.path().to_path_buf();
        let tree = f.tree(&BTreeMap::from([("a".to_owned(), "x".to_owned())]));
        let before = f.index_holding(tree);
        let trailer: [u8; 20] = before[before.len() - 20..].try_into().unwrap();
        std::fs::write(git_dir.join("index.lock"), "someone's").unwrap();
        assert_eq!(
            splice(&git_dir, f.repo.workdir().unwrap(), trailer, &add("b")).unwrap(),
            Spliced::Unsupported("index.lock exists")
        );
        assert_eq!(
            std::fs::read(git_dir.join("index.lock")).unwrap(),
            b"someone's"
        );
        assert_eq!(std::fs::read(git_dir.join("index")).unwrap(), before);
        std::fs::remove_file(git_dir.join("index.lock")).unwrap();
        assert_eq!(
            splice(&git_dir, f.repo.workdir().unwrap(), [1; 20], &add("b")).unwrap(),
            Spliced::Unsupported("the index changed since provisio wrote it")
        );
        assert!(
            !git_dir.join("index.lock").exists(),
            "its own lock is removed"
        );
        assert_eq!(std::fs::read(git_dir.join("index")).unwrap(), before);
    }

    /// Git's racy-git problem: an entry whose file changed in the same second (same size)
    /// as the index holding it was written is found by stock git only because its mtime is
    /// not older than the index file's. Copied into a later index, that protection is gone:
    /// git (`ce_smudge_racily_clean_entry`) and libgit2 (`truncate_racily_clean`) zero the
    /// size of such an entry when its file no longer matches it. The splice must too.
    #[test]
    fn a_racily_clean_entry_is_smudged_when_copied() {
        use std::os::unix::fs::MetadataExt;
        if !stock_git_here() {
            return;
        }
        let f = Fixture::new();
        let git_dir = f.repo.path().to_path_buf();
        let work = f.repo.workdir().unwrap().to_path_buf();
        let run = |args: &[&str]| git_in(&work, args);
        let touch = |path: &Path, secs: i64| {
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64);
            let file = OpenOptions::new().append(true).open(path).unwrap();
            file.set_modified(at).unwrap();
        };
        std::fs::write(work.join("a"), "one").unwrap();
        std::fs::write(work.join("b"), "x").unwrap();
        let one = f.repo.blob(b"one").unwrap();
        let x = f.repo.blob(b"x").unwrap();
        let y = f.repo.blob(b"yy").unwrap();
        let tree = |b: Oid| {
            let mut t = f.repo.treebuilder(None).unwrap();
            t.insert("a", one, 0o100644).unwrap();
            t.insert("b", b, 0o100644).unwrap();
            t.write().unwrap()
        };
        let (old_tree, new_tree) = (tree(x), tree(y));
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        let commit = |t: Oid, parents: &[&git2::Commit<'_>]| {
            let t = f.repo.find_tree(t).unwrap();
            let id = f
                .repo
                .commit(Some("HEAD"), &sig, &sig, "m", &t, parents)
                .unwrap();
            f.repo.find_commit(id).unwrap()
        };
        let parent = commit(old_tree, &[]);
        // `a` edited, same size, in the tick its entry's stat was taken: the entry's stat
        // is the edited file's, its id the committed content's.
        std::fs::write(work.join("a"), "two").unwrap();
        let mut index = f.repo.index().unwrap();
        index
            .add(&index_entry(Path::new("a"), one, 0o100644, &work))
            .unwrap();
        index
            .add(&index_entry(Path::new("b"), x, 0o100644, &work))
            .unwrap();
        index.write().unwrap();
        // The index written in that same second: `a` is racily clean.
        let a_mtime = std::fs::metadata(work.join("a")).unwrap().mtime();
        touch(&git_dir.join("index"), a_mtime);
        assert_eq!(
            run(&["--no-optional-locks", "status", "--porcelain"]),
            " M a\n",
            "racy: git reads `a`"
        );
        let before = std::fs::read(git_dir.join("index")).unwrap();
        let trailer: [u8; 20] = before[before.len() - 20..].try_into().unwrap();
        // The next commit changes `b` only; the spliced index is written later.
        std::fs::write(work.join("b"), "yy").unwrap();
        commit(new_tree, &[&parent]);
        let changes = f.changes(old_tree, new_tree, &work);
        let Spliced::Written(_) =
            splice(&git_dir, f.repo.workdir().unwrap(), trailer, &changes).unwrap()
        else {
            panic!("not spliced");
        };
        touch(&git_dir.join("index"), a_mtime + 10);
        assert_eq!(
            run(&["--no-optional-locks", "status", "--porcelain"]),
            " M a\n",
            "stock git still sees the edit of `a`"
        );
        let mut status = git2::StatusOptions::new();
        status.include_untracked(false);
        let statuses = f.repo.statuses(Some(&mut status)).unwrap();
        let modified: Vec<String> = statuses
            .iter()
            .map(|s| s.path().unwrap().to_owned())
            .collect();
        assert_eq!(modified, ["a"], "libgit2 sees it too");
    }

    /// Stock git reads a spliced index of a commit that turns a file into a directory, removes
    /// a directory, adds one sorting between existing paths, a symlink and an executable as
    /// holding HEAD, the work tree clean.
    #[test]
    fn stock_git_agrees_with_a_spliced_index() {
        use std::os::unix::fs::PermissionsExt;
        if !stock_git_here() {
            return;
        }
        let f = Fixture::new();
        let git_dir = f.repo.path().to_path_buf();
        let work = f.repo.workdir().unwrap().to_path_buf();
        let run = |args: &[&str]| git_in(&work, &[&["--no-optional-locks"], args].concat());
        let put = |p: &str, text: &str| {
            let file = work.join(p);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, text).unwrap();
        };
        for p in ["a-b", "a/b", "a/c/d", "a0", "b", "\u{e9}"] {
            put(p, p);
        }
        let commit_all = |parents: &[&git2::Commit<'_>]| {
            let mut index = f.repo.index().unwrap();
            index.read(true).unwrap();
            index.clear().unwrap();
            index
                .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
                .unwrap();
            let tree = index.write_tree().unwrap();
            let sig = git2::Signature::now("t", "t@example.com").unwrap();
            let t = f.repo.find_tree(tree).unwrap();
            let id = f.repo.commit(None, &sig, &sig, "m", &t, parents).unwrap();
            (f.repo.find_commit(id).unwrap(), index)
        };
        let (parent, mut index) = commit_all(&[]);
        f.repo.set_head_detached(parent.id()).unwrap();
        index.write().unwrap();
        let before = std::fs::read(git_dir.join("index")).unwrap();
        let trailer: [u8; 20] = before[before.len() - 20..].try_into().unwrap();
        // The next commit's work tree.
        std::fs::remove_dir_all(work.join("a")).unwrap();
        std::fs::remove_file(work.join("a0")).unwrap();
        put("a0/c", "now a directory");
        put("a.b/z", "between a-b and a/");
        put("x.sh", "#!/bin/sh");
        std::fs::set_permissions(work.join("x.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::os::unix::fs::symlink("a-b", work.join("l")).unwrap();
        // `commit_all` rewrites the index; the splice starts again from `before`.
        let (commit, _) = commit_all(&[&parent]);
        std::fs::write(git_dir.join("index"), &before).unwrap();
        f.repo.set_head_detached(commit.id()).unwrap();
        let changes = f.changes(parent.tree_id(), commit.tree_id(), &work);
        let Spliced::Written(_) = splice(&git_dir, &work, trailer, &changes).unwrap() else {
            panic!("not spliced");
        };
        assert_eq!(run(&["status", "--porcelain"]), "");
        assert_eq!(run(&["diff-index", "--cached", "HEAD"]), "");
        assert_eq!(
            run(&["diff-files"]),
            "",
            "the stat data match the work tree"
        );
        assert_eq!(
            run(&["write-tree"]).trim(),
            commit.tree_id().to_string(),
            "git's tree of the index is HEAD's"
        );
        let staged = run(&["ls-files", "-s"]);
        assert!(staged.contains("120000 "), "{staged}");
        assert!(staged.contains("100755 "), "{staged}");
        run(&["update-index", "--refresh"]);
        run(&["fsck", "--no-dangling"]);
    }

    /// Symlinks planted as `index.lock` or `index` never make the splice write outside the
    /// git directory: the lock is created with `O_EXCL` (a symlink, even dangling, is a held
    /// lock), and the rename replaces the `index` link itself, not its target.
    #[test]
    fn planted_symlinks_are_not_followed_on_write() {
        let f = Fixture::new();
        let git_dir = f.repo.path().to_path_buf();
        let tree = f.tree(&BTreeMap::from([("a".to_owned(), "x".to_owned())]));
        let before = f.index_holding(tree);
        let trailer: [u8; 20] = before[before.len() - 20..].try_into().unwrap();
        let outside = f.dir.path().join("outside");
        std::os::unix::fs::symlink(&outside, git_dir.join("index.lock")).unwrap();
        let work = f.repo.workdir().unwrap();
        assert_eq!(
            splice(&git_dir, work, trailer, &add("b")).unwrap(),
            Spliced::Unsupported("index.lock exists")
        );
        assert!(
            !outside.exists(),
            "nothing created through the dangling link"
        );
        std::fs::remove_file(git_dir.join("index.lock")).unwrap();
        // `index` a link to a file outside holding the same bytes.
        std::fs::write(&outside, &before).unwrap();
        std::fs::remove_file(git_dir.join("index")).unwrap();
        std::os::unix::fs::symlink(&outside, git_dir.join("index")).unwrap();
        let Spliced::Written(_) = splice(&git_dir, work, trailer, &add("b")).unwrap() else {
            panic!("not spliced");
        };
        assert_eq!(
            std::fs::read(&outside).unwrap(),
            before,
            "the target untouched"
        );
        let meta = std::fs::symlink_metadata(git_dir.join("index")).unwrap();
        assert!(
            meta.file_type().is_file(),
            "the link replaced by the new file"
        );
    }

    /// The `git2::Index` a `Repository` caches is re-read by libgit2 after a splice replaced
    /// the file (`git_index_read(index, false)` compares the file's stamp and trailer), which
    /// checkouts, `status` and provisio's own paths do before using it.
    #[test]
    fn a_cached_index_reads_the_spliced_file() {
        let f = Fixture::new();
        let git_dir = f.repo.path().to_path_buf();
        let tree = f.tree(&BTreeMap::from([("a".to_owned(), "x".to_owned())]));
        let before = f.index_holding(tree);
        let cached = f.repo.index().unwrap();
        assert_eq!(cached.len(), 1);
        let trailer: [u8; 20] = before[before.len() - 20..].try_into().unwrap();
        let Spliced::Written(sum) =
            splice(&git_dir, f.repo.workdir().unwrap(), trailer, &add("b")).unwrap()
        else {
            panic!("not spliced");
        };
        let after = std::fs::read(git_dir.join("index")).unwrap();
        assert_eq!(after[after.len() - 20..], sum);
        assert!(!git_dir.join("index.lock").exists());
        let mut index = f.repo.index().unwrap();
        index.read(false).unwrap();
        let paths: Vec<Vec<u8>> = index.iter().map(|e| e.path).collect();
        assert_eq!(paths, [b"a".to_vec(), b"b".to_vec()]);
        let statuses = f.repo.statuses(None).unwrap();
        assert_eq!(statuses.len(), 2, "libgit2 lists both spliced entries");
    }
}
