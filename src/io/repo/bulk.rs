//! Objects written in bulk: the blobs and trees of an output commit go to memory first
//! (libgit2's mempack backend, on a second handle of the repository so that no other write of
//! this process is queued there) and are stored as packs — a plain pack of the objects the disk
//! lacks, each one whole and zlib-compressed (no delta search: [`super::pack`]'s
//! `write_plain_pack`), with its index written there too (`idx_bytes`) — instead of one loose
//! file (and one `open`, `write`, `rename`) per object: 270,000 files for the first commit of
//! 10,000 tenants, 10,000 for a product's version bump. Like loose objects, the stored objects
//! are not deltas of each other (git's `gc` or `repack` packs them tighter); a push builds its
//! own pack anyway (libgit2's pack builder reuses no stored delta). The pack format is
//! [`super::pack`]'s job, keeping the pack count bounded [`super::rollup`]'s.
//!
//! - Each object is hashed once, by the write to memory (`git_odb_write`, which also stores
//!   nothing when the object is in memory or on disk already).
//! - An object already on disk or queued is not stored again (the write to memory finds it;
//!   whether to queue it is decided without rescanning the pack directory).
//! - Memory stays bounded: the queued objects are stored as a pack whenever they hold more
//!   than [`FLUSH_BYTES`], and at the end.
//! - Nothing refers to a queued object until [`in_bulk`] returns: the caller writes the
//!   commit (and moves the branch) after every object it names is on disk.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::path::Path;

use git2::{Mempack, ObjectType, Odb, OdbLookupFlags, Oid, Repository, Tree, TreeBuilder};

use super::pack::store_pack;

/// Raw bytes queued in memory before they are stored as a pack.
const FLUSH_BYTES: usize = 64 << 20;

/// A session of bulk writes; see [`in_bulk`].
pub struct Bulk<'r> {
    repo: &'r Repository,
    odb: &'r Odb<'r>,
    mempack: &'r Mempack<'r>,
    /// The repository's ODB without the mempack: what is on disk.
    disk: Odb<'r>,
    /// Objects queued in memory since the last pack, in the order written.
    queued: RefCell<Vec<Oid>>,
    queued_set: RefCell<HashSet<Oid>>,
    queued_bytes: Cell<usize>,
    flush_at: usize,
    /// Packs written so far.
    packs: Cell<usize>,
}

/// Runs `build` with a [`Bulk`] on the repository at `git_dir`, then stores what it queued;
/// `wrap` turns git2's errors into the caller's. `Err` leaves no reference to any object
/// `build` wrote (it may leave packs of unreferenced objects, which git's garbage collection
/// removes).
pub fn in_bulk<T, E>(
    git_dir: &Path,
    wrap: impl Fn(&'static str, git2::Error) -> E,
    build: impl FnOnce(&Bulk<'_>) -> Result<T, E>,
) -> Result<T, E> {
    in_bulk_flushing_at(FLUSH_BYTES, git_dir, wrap, build)
}

/// [`in_bulk`], storing a pack whenever the queued objects hold more than `flush_at` bytes.
fn in_bulk_flushing_at<T, E>(
    flush_at: usize,
    git_dir: &Path,
    wrap: impl Fn(&'static str, git2::Error) -> E,
    build: impl FnOnce(&Bulk<'_>) -> Result<T, E>,
) -> Result<T, E> {
    let open = || -> Result<_, git2::Error> {
        let repo = Repository::open(git_dir)?;
        let disk = Repository::open(git_dir)?;
        Ok((repo, disk))
    };
    let (repo, disk) = open().map_err(|e| wrap("open the repository", e))?;
    let odb = repo
        .odb()
        .map_err(|e| wrap("open the object database", e))?;
    let disk = disk
        .odb()
        .map_err(|e| wrap("open the object database", e))?;
    // Above the loose (1) and pack (2) backends: every write goes to memory.
    let mempack = odb
        .add_new_mempack_backend(1000)
        .map_err(|e| wrap("add an in-memory object store", e))?;
    let bulk = Bulk {
        repo: &repo,
        odb: &odb,
        mempack: &mempack,
        disk,
        queued: RefCell::default(),
        queued_set: RefCell::default(),
        queued_bytes: Cell::new(0),
        flush_at,
        packs: Cell::new(0),
    };
    let out = build(&bulk)?;
    bulk.flush()
        .map_err(|e| wrap("store the new objects as a pack", e))?;
    tracing::debug!(packs = bulk.packs.get(), "objects stored");
    Ok(out)
}

impl<'r> Bulk<'r> {
    /// `bytes` as a blob.
    pub fn blob(&self, bytes: &[u8]) -> Result<Oid, git2::Error> {
        // The one hash of the blob: the write computes its id and stores nothing when an
        // object with that id is in memory or on disk already (`odb.c`: `git_odb_write` →
        // `git_odb__freshen`).
        let oid = self.odb.write(ObjectType::Blob, bytes)?;
        if !self.known(oid) {
            self.queue(oid, bytes.len())?;
        }
        Ok(oid)
    }

    /// A tree builder starting from `base` (empty: `None`); write it with [`Bulk::write_tree`].
    pub fn treebuilder(&self, base: Option<&Tree<'_>>) -> Result<TreeBuilder<'r>, git2::Error> {
        self.repo.treebuilder(base)
    }

    /// Writes `tb`'s tree.
    pub fn write_tree(&self, tb: &TreeBuilder<'_>) -> Result<Oid, git2::Error> {
        let oid = tb.write()?;
        if !self.known(oid) {
            // Not on disk before the write: it went to memory.
            self.queue(oid, 28 * tb.len())?;
        }
        Ok(oid)
    }

    /// A tree, read from memory or disk.
    pub fn find_tree(&self, oid: Oid) -> Result<Tree<'r>, git2::Error> {
        self.repo.find_tree(oid)
    }

    /// Whether `oid` is on disk or queued; never rescans the pack directory (the packs this
    /// session wrote are seen through [`Bulk::flush`]'s refresh).
    fn known(&self, oid: Oid) -> bool {
        self.queued_set.borrow().contains(&oid)
            || self.disk.exists_ext(oid, OdbLookupFlags::NO_REFRESH)
    }

    fn queue(&self, oid: Oid, bytes: usize) -> Result<(), git2::Error> {
        if self.queued_set.borrow_mut().insert(oid) {
            self.queued.borrow_mut().push(oid);
            self.queued_bytes.set(self.queued_bytes.get() + bytes);
        }
        if self.queued_bytes.get() > self.flush_at {
            self.flush()?;
        }
        Ok(())
    }

    /// Stores the queued objects as one pack and empties the memory.
    fn flush(&self) -> Result<(), git2::Error> {
        let queued = std::mem::take(&mut *self.queued.borrow_mut());
        if queued.is_empty() {
            return Ok(());
        }
        let pack_dir = self.repo.path().join("objects").join("pack");
        store_pack(&pack_dir, self.odb, &queued).map_err(|e| {
            git2::Error::from_str(&format!("write a pack in {}: {e}", pack_dir.display()))
        })?;
        self.mempack.reset()?;
        self.queued_set.borrow_mut().clear();
        self.queued_bytes.set(0);
        self.packs.set(self.packs.get() + 1);
        // See the new pack from both handles without a rescan per miss.
        self.disk.refresh()?;
        self.odb.refresh()?;
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Loose object files under `objects/` (two hex digits, then the rest of the id).
    fn loose(git_dir: &Path) -> Vec<String> {
        let mut found = Vec::new();
        for d in std::fs::read_dir(git_dir.join("objects")).unwrap() {
            let d = d.unwrap();
            let name = d.file_name().to_string_lossy().into_owned();
            if name.len() == 2 && name.chars().all(|c| c.is_ascii_hexdigit()) {
                for f in std::fs::read_dir(d.path()).unwrap() {
                    found.push(format!(
                        "{name}{}",
                        f.unwrap().file_name().to_string_lossy()
                    ));
                }
            }
        }
        found
    }

    /// `.pack` files in `objects/pack/` (also for [`super::super::rollup`]'s tests).
    pub(in crate::io::repo) fn packs(git_dir: &Path) -> usize {
        std::fs::read_dir(git_dir.join("objects/pack"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".pack")
            })
            .count()
    }

    /// The windows a killed run can leave: a temporary of each kind, and a `.pack` renamed
    /// into place without its `.idx`. Readers ignore them; the next session stores the same
    /// objects again and the repository checks clean.
    #[test]
    fn files_a_killed_flush_leaves_do_not_stop_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        Repository::init_bare(dir.path()).unwrap();
        let git_dir = dir.path();
        let build = |bulk: &Bulk<'_>| {
            let mut tb = bulk.treebuilder(None)?;
            tb.insert("a", bulk.blob(b"a\n")?, 0o100644)?;
            tb.insert("b", bulk.blob(b"b\n")?, 0o100644)?;
            bulk.write_tree(&tb)
        };
        let tree = in_bulk(git_dir, |_, e| e, build).unwrap();
        let pack_dir = git_dir.join("objects/pack");
        // Undo the last step of the flush (the .idx rename), and leave temporaries behind.
        for e in std::fs::read_dir(&pack_dir).unwrap() {
            let path = e.unwrap().path();
            if path.extension().is_some_and(|x| x == "idx") {
                std::fs::remove_file(path).unwrap();
            }
        }
        std::fs::write(pack_dir.join("tmp_pack_killed"), b"PACK\0\0").unwrap();
        std::fs::write(pack_dir.join("tmp_idx_killed"), b"").unwrap();
        let other = Repository::open_bare(git_dir).unwrap();
        assert!(
            other.find_tree(tree).is_err(),
            "a .pack without .idx is not read"
        );
        let again = in_bulk(git_dir, |_, e| e, build).unwrap();
        assert_eq!(again, tree);
        let other = Repository::open_bare(git_dir).unwrap();
        assert_eq!(other.find_tree(tree).unwrap().len(), 2);
        if let Ok(fsck) = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(git_dir)
            .args(["fsck", "--full", "--strict", "--no-dangling"])
            .output()
        {
            assert!(fsck.status.success(), "{fsck:?}");
        }
    }

    /// An empty blob (an empty rendered file) and a tree holding only it go into a pack like
    /// any other object; stock git reads them back.
    #[test]
    fn an_empty_blob_is_stored_and_readable() {
        let dir = tempfile::tempdir().unwrap();
        Repository::init_bare(dir.path()).unwrap();
        let git_dir = dir.path();
        let tree = in_bulk(
            git_dir,
            |_, e| e,
            |bulk| {
                let mut tb = bulk.treebuilder(None)?;
                tb.insert("empty", bulk.blob(b"")?, 0o100644)?;
                bulk.write_tree(&tb)
            },
        )
        .unwrap();
        assert!(loose(git_dir).is_empty());
        let other = Repository::open_bare(git_dir).unwrap();
        let e = other
            .find_tree(tree)
            .unwrap()
            .get_name("empty")
            .unwrap()
            .id();
        assert!(other.find_blob(e).unwrap().content().is_empty());
        if let Ok(out) = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(git_dir)
            .args(["cat-file", "-p", &tree.to_string()])
            .output()
        {
            assert!(out.status.success(), "{out:?}");
            let fsck = std::process::Command::new("git")
                .arg("--git-dir")
                .arg(git_dir)
                .args(["fsck", "--full", "--strict", "--no-dangling"])
                .output()
                .unwrap();
            assert!(fsck.status.success(), "{fsck:?}");
        }
    }

    /// Objects land in packs (several when the memory fills), none loose, each readable from
    /// another handle afterwards; an object already on disk is not stored again.
    #[test]
    fn objects_land_in_packs_and_known_objects_are_not_stored_again() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let git_dir = dir.path();
        let on_disk = repo.blob(b"already here\n").unwrap();
        assert_eq!(loose(git_dir), [on_disk.to_string()]);
        let contents: Vec<Vec<u8>> = (0..200)
            .map(|i| format!("file {i}\n{}\n", "x".repeat(i)).into_bytes())
            .collect();
        let tree = in_bulk_flushing_at(
            4096,
            git_dir,
            |_, e| e,
            |bulk| {
                let mut tb = bulk.treebuilder(None)?;
                for (i, c) in contents.iter().enumerate() {
                    let oid = bulk.blob(c)?;
                    // The same content twice is one object.
                    assert_eq!(bulk.blob(c)?, oid);
                    tb.insert(format!("f{i:03}"), oid, 0o100644)?;
                }
                let known = bulk.blob(b"already here\n")?;
                tb.insert("old", known, 0o100644)?;
                let id = bulk.write_tree(&tb)?;
                // Readable while queued (or after a pack was stored).
                assert_eq!(bulk.find_tree(id)?.len(), 201);
                Ok(id)
            },
        )
        .unwrap();
        assert_eq!(
            loose(git_dir),
            [on_disk.to_string()],
            "nothing new is loose"
        );
        assert!(
            packs(git_dir) > 1,
            "the memory was emptied into several packs"
        );
        let other = Repository::open_bare(git_dir).unwrap();
        let t = other.find_tree(tree).unwrap();
        for (i, c) in contents.iter().enumerate() {
            let e = t.get_name(&format!("f{i:03}")).unwrap();
            assert_eq!(other.find_blob(e.id()).unwrap().content(), &c[..]);
        }
        // Nothing is stored twice: every object of the packs is counted once.
        let mut count = 0;
        other
            .odb()
            .unwrap()
            .foreach(|_| {
                count += 1;
                true
            })
            .unwrap();
        assert_eq!(count, 200 + 1 + 1, "200 blobs, the tree, the earlier blob");
        // Stock git reads the packs as well: every object checked, none a delta.
        if let Ok(out) = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(git_dir)
            .args(["fsck", "--full", "--strict"])
            .output()
        {
            assert!(out.status.success(), "{out:?}");
            for pack in std::fs::read_dir(git_dir.join("objects/pack")).unwrap() {
                let path = pack.unwrap().path();
                if path.extension().is_some_and(|e| e == "idx") {
                    let v = std::process::Command::new("git")
                        .args(["verify-pack", "-v"])
                        .arg(&path)
                        .output()
                        .unwrap();
                    assert!(v.status.success(), "{v:?}");
                    let text = String::from_utf8_lossy(&v.stdout);
                    assert!(text.contains("non delta: "), "{text}");
                    assert!(!text.contains("chain length"), "a delta: {text}");
                }
            }
        }
    }
}
