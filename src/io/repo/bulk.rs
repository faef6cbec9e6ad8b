//! Objects written in bulk: the blobs and trees of an output commit go to memory first
//! (libgit2's mempack backend, on a second handle of the repository so that no other write
//! of this process is queued there) and are stored as packs — a plain pack of the objects the
//! disk lacks, each one whole and zlib-compressed (no delta search: [`write_plain_pack`]),
//! with its index written here too ([`idx_bytes`]) — instead of one loose file (and one
//! `open`, `write`, `rename`) per object: 270,000 files for the first commit of 10,000
//! tenants, 10,000 for a product's version bump. Like loose objects, the stored objects are
//! not deltas of each other (git's `gc` or `repack` packs them tighter); a push builds its own
//! pack anyway (libgit2's pack builder reuses no stored delta).
//!
//! - Each object is hashed once, by the write to memory (`git_odb_write`, which also stores
//!   nothing when the object is in memory or on disk already). The `.idx` is written from the
//!   ids and offsets known while the pack is written, instead of through libgit2's indexer,
//!   which inflated and hashed every object of the pack again (BENCHMARKS.md, issue 13).
//! - An object already on disk or queued is not stored again (the write to memory finds it;
//!   whether to queue it is decided without rescanning the pack directory).
//! - Memory stays bounded: the queued objects are stored as a pack whenever they hold more
//!   than [`FLUSH_BYTES`], and at the end.
//! - Nothing refers to a queued object until [`in_bulk`] returns: the caller writes the
//!   commit (and moves the branch) after every object it names is on disk.
//! - A pack is made visible the way git's `index-pack` does it (`pack-write.c`
//!   `finish_tmp_packfile`): written under a `tmp_pack_`/`tmp_idx_` name in `objects/pack/`,
//!   flushed to the disk, the `.pack` renamed into place, then the `.idx`, since readers
//!   (git, libgit2's `packfile_load__cb`) find packs through their `.idx` and ignore a
//!   `.pack` without one. A process killed in between leaves only unreferenced files:
//!   temporaries, or (between the two renames, a window of one `rename`) a `.pack` no reader
//!   opens, which is then kept and reported as below; the next run writes the objects
//!   again.
//! - Nothing is deleted by accident, nothing dropped silently: in `objects/pack/` only
//!   temporaries are removed once old (`tmp_pack_*`/`tmp_idx_*`, git's rule: its `prune`
//!   removes only `tmp_*` files, `builtin/prune.c` `remove_temporary_files`). A `.pack`
//!   without its `.idx` (an operator rebuilding a corrupt `.idx` with `git index-pack`, a
//!   backup restored file by file) and an orphan `.idx`/`.rev`/`.bitmap`/`.mtimes` are kept
//!   and logged (`warn`, once per run, with what to do), as `git count-objects -v` reports
//!   them as garbage.
//! - The pack count stays bounded ([`consolidate`], after every commit's objects are stored):
//!   libgit2 never repacks, and every new object written makes it look in every pack (and
//!   rescan `objects/pack/` on the miss). Past [`PACK_LIMIT`] packs (git's `gc.autoPackLimit`
//!   default), the smallest are rolled up into one as git's `repack --geometric=2` chooses
//!   them (`builtin/repack.c` `split_pack_geometry`): the packs left, by object count, each
//!   at least twice the previous, so at most about log2(objects) of them, and each object
//!   rewritten about log2(objects) times over the clone's life (an empty pack weighs one
//!   object). Each rolled-up pack is checked against its `.idx` first (its checksum, the
//!   pack checksum and object count it records, as git checks a pack it opens). A whole
//!   object's entry is copied as it is (checked against its `.idx`'s CRC-32, as git's
//!   `pack-objects` checks an entry it reuses), a delta resolved and stored whole. A pack
//!   that fails a check is left out like a kept pack, never removed, and logged (`error`,
//!   naming the pack and the check); the others are rolled up without it, so one damaged
//!   pack does not stop every later roll-up. The new pack is made visible as above before
//!   any rolled-up one is removed (a multi-pack-index naming them first), each by renaming
//!   its `.pack` to a `tmp_pack_rolled_` temporary, then removing its `.idx` and companions,
//!   then the temporary ([`remove_pack`] gives the readers' side); a pack with a `.keep` or
//!   `.promisor` is never rolled up. Killed anywhere, every object stays readable (an object
//!   in two packs is harmless), and the next call finishes a half-done removal, removes old
//!   temporaries and rolls up again.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use flate2::Compression;
use flate2::write::ZlibEncoder;
use git2::{Mempack, ObjectType, Odb, OdbLookupFlags, Oid, Repository, Tree, TreeBuilder};
use sha1::{Digest, Sha1};

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

/// Stores `objects` (read from `odb`) in `pack_dir` as a pack and its index, named after the
/// pack's checksum as git names them (`pack-<checksum>.pack`, `.idx`). Both are written under
/// temporary names, flushed to the disk, then renamed: the `.pack` first, the `.idx` last
/// (see the module's documentation), and the directory flushed.
fn store_pack(pack_dir: &Path, odb: &Odb<'_>, objects: &[Oid]) -> std::io::Result<String> {
    store_with(pack_dir, objects.len(), |out, entries| {
        write_plain_pack(odb, objects, out, entries)
    })
}

/// [`store_pack`] with the pack's bytes written by `write` (returning the pack's checksum,
/// each entry appended to the entries), about `count` of them.
fn store_with(
    pack_dir: &Path,
    count: usize,
    write: impl FnOnce(&mut BufWriter<&File>, &mut Vec<PackEntry>) -> std::io::Result<[u8; 20]>,
) -> std::io::Result<String> {
    let temp = |prefix: &str| {
        tempfile::Builder::new()
            .prefix(prefix)
            .tempfile_in(pack_dir)
    };
    // git's own temporary names: `git prune` removes `tmp_*` files a killed run left.
    let pack = temp("tmp_pack_")?;
    let mut entries = Vec::with_capacity(count);
    let checksum = {
        let mut out = BufWriter::with_capacity(1 << 20, pack.as_file());
        let checksum = write(&mut out, &mut entries)?;
        out.flush()?;
        checksum
    };
    let mut idx = temp("tmp_idx_")?;
    idx.write_all(&idx_bytes(&mut entries, &checksum))?;
    let name: String = checksum.iter().map(|b| format!("{b:02x}")).collect();
    for file in [pack.as_file(), idx.as_file()] {
        // Read-only, as git and libgit2 leave packs (`GIT_PACK_FILE_MODE`).
        file.set_permissions(std::fs::Permissions::from_mode(0o444))?;
        file.sync_all()?;
    }
    pack.persist(pack_dir.join(format!("pack-{name}.pack")))
        .map_err(|e| e.error)?;
    idx.persist(pack_dir.join(format!("pack-{name}.idx")))
        .map_err(|e| e.error)?;
    File::open(pack_dir)?.sync_all()?;
    Ok(format!("pack-{name}"))
}

/// Packs in `objects/pack/` past which [`consolidate`] rolls the smallest up: git's
/// `gc.autoPackLimit` default, the count past which `git gc --auto` repacks. After a roll-up
/// the packs left form a geometric progression (each at least twice the previous by object
/// count), so they number at most about log2 of the objects (19 at 10,000 tenants' 290,000),
/// and a roll-up happens again only after about 30 more commits or fetches.
pub const PACK_LIMIT: usize = 50;

/// How large each pack must be, relative to the next smaller one, for [`consolidate`] to leave
/// both alone: git's `repack --geometric=2`.
const GEOMETRIC_FACTOR: u64 = 2;

/// How old a temporary of a killed writer (`tmp_pack_`/`tmp_idx_`) must be before
/// [`consolidate`] removes it: a writer that is still running (a person's `git fetch` in the
/// output clone: provisio's own writers are excluded by its lock) finishes its pack well
/// within an hour. git's `prune` waits two weeks (`gc.pruneExpire`) for the same files.
const LEFTOVER_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// What [`consolidate`] rolled up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollUp {
    /// Packs removed.
    pub packs: usize,
    /// Distinct objects in them, now in the new pack.
    pub objects: usize,
    /// The new pack's name (`pack-<checksum>`).
    pub into: String,
}

/// Keeps the number of packs in `git_dir`'s `objects/pack/` bounded, as git's
/// `repack --geometric=2` does (`builtin/repack.c`, `split_pack_geometry` /
/// `pack_geometry_split`): when more than `limit` packs are there, the smallest are rolled up
/// so that the rest, by object count, form a progression of factor 2 ([`roll_up_selection`]).
/// Their objects are written once each into one new plain pack ([`store_rolled_up`]: a whole
/// object's entry copied as it is, a delta read back whole through the ODB, which resolves
/// it; the `.pack` renamed into place, then its `.idx`, the directory flushed); then a
/// multi-pack-index, which names them, is removed, and each rolled-up pack ([`remove_pack`]:
/// its `.pack` renamed to a temporary, its `.idx` and companions removed, the temporary), a
/// pack with a `.keep` (or a `.promisor`) never being one of them. A pack that fails its
/// checks ([`check_pair`], a CRC-32) is logged with `tracing::error!` (once per run), left as
/// it is and out of the selection, which is made again without it. A process killed at any
/// point leaves every object readable (the new pack is visible before any old one goes; an
/// object in two packs is harmless) and only what the next call removes or finishes
/// ([`remove_leftovers`]: temporaries older than [`LEFTOVER_AGE`], a half-done removal), or,
/// killed between the new pack's two renames, its `.pack` without `.idx`, which like anything
/// else no reader uses is kept and reported. `Ok(None)`: nothing rolled up.
pub fn consolidate(git_dir: &Path, limit: usize) -> std::io::Result<Option<RollUp>> {
    let pack_dir = git_dir.join("objects").join("pack");
    let names = match std::fs::read_dir(&pack_dir) {
        Ok(dir) => dir
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<std::io::Result<HashSet<String>>>()?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    remove_leftovers(&pack_dir, &names)?;
    let count = names
        .iter()
        .filter_map(|n| n.strip_suffix(".idx"))
        .filter(|stem| names.contains(&format!("{stem}.pack")))
        .count();
    if count <= limit {
        return Ok(None);
    }
    let mut packs: Vec<(String, Option<u64>)> = names
        .iter()
        .filter_map(|n| n.strip_suffix(".idx"))
        .filter(|stem| names.contains(&format!("{stem}.pack")))
        .map(|stem| {
            let kept = [".keep", ".promisor"]
                .iter()
                .any(|x| names.contains(&format!("{stem}{x}")));
            // A pack whose .idx this does not read (version 1) is left alone like a kept one.
            let weight = if kept {
                None
            } else {
                idx_object_count(&pack_dir.join(format!("{stem}.idx")))
            };
            (stem.to_owned(), weight)
        })
        .collect();
    packs.sort();
    // A handle of its own: no mempack, and the packs as they are now.
    let repo = Repository::open(git_dir).map_err(std::io::Error::other)?;
    let odb = repo.odb().map_err(std::io::Error::other)?;
    // A pack that fails its checks is left out like a kept one and the selection made again
    // without it: one damaged pack does not stop every later roll-up.
    let (chosen, into, objects) = loop {
        let weights: Vec<Option<u64>> = packs.iter().map(|p| p.1).collect();
        let chosen = roll_up_selection(&weights, limit);
        if chosen.is_empty() {
            return Ok(None);
        }
        let sources: Vec<std::path::PathBuf> =
            chosen.iter().map(|&i| pack_dir.join(&packs[i].0)).collect();
        match store_rolled_up(&pack_dir, &odb, &sources) {
            Ok((into, objects)) => break (chosen, into, objects),
            Err(e) => {
                let Some(d) = e.get_ref().and_then(|e| e.downcast_ref::<Damaged>()) else {
                    return Err(e);
                };
                let i = chosen
                    .iter()
                    .copied()
                    .find(|&i| pack_dir.join(&packs[i].0) == d.stem)
                    .ok_or_else(|| std::io::Error::other(d.to_string()))?;
                if first_report(&format!("damaged {} {}", d.stem.display(), d.what)) {
                    tracing::error!(
                        pack = %d.stem.with_extension("pack").display(),
                        check = %d.what,
                        "a pack failed its check and is left as it is, out of every roll-up: \
                         `git fsck --full` names what is wrong; `git index-pack` writes a \
                         damaged .idx again from its .pack"
                    );
                }
                packs[i].1 = None;
            }
        }
    };
    drop(odb);
    drop(repo);
    // A multi-pack-index (a person's `git repack --write-midx`, `git maintenance`) names the
    // packs about to go: it goes first, as git's `repack` clears it before removing a pack it
    // names, or stock git's `fsck` fails on every later run ("failed to load pack").
    remove_multi_pack_index(&pack_dir)?;
    for &i in &chosen {
        // The same objects in the same order make the same pack: it is the new one.
        if packs[i].0 != into {
            remove_pack(&pack_dir, &packs[i].0)?;
        }
    }
    File::open(&pack_dir)?.sync_all()?;
    Ok(Some(RollUp {
        packs: chosen.iter().filter(|&&i| packs[i].0 != into).count(),
        objects,
        into,
    }))
}

/// Which packs to roll up, given each pack's object count (`None`: a pack never rolled up,
/// one with a `.keep`): none while there are at most `limit` packs; otherwise the smallest,
/// so that the others form a geometric progression of factor [`GEOMETRIC_FACTOR`] — git's
/// `split_pack_geometry`: sorted by count, the split starts past the largest pack that is
/// less than twice its smaller neighbour, then moves up while the next pack is less than
/// twice everything below the split (the new pack would break the progression with it).
/// Fewer than two chosen: none (rewriting one pack alone gains nothing). The amortised cost:
/// a pack is rolled up again only once the packs below it add up to half its size, so each
/// object is rewritten about log2(objects) times in all, and the largest pack only when the
/// rest has grown to half of it.
fn roll_up_selection(weights: &[Option<u64>], limit: usize) -> Vec<usize> {
    if weights.len() <= limit {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..weights.len())
        .filter(|&i| weights[i].is_some())
        .collect();
    order.sort_by_key(|&i| weights[i]);
    // An empty pack weighs as one object: at 0, any number of them "formed a progression"
    // (0 >= 2 x 0) and none was ever rolled up, however far past the limit.
    let w: Vec<u64> = order
        .iter()
        .map(|&i| weights[i].unwrap_or(0).max(1))
        .collect();
    if w.is_empty() {
        return Vec::new();
    }
    let mut i = w.len() - 1;
    while i > 0 && w[i] >= GEOMETRIC_FACTOR.saturating_mul(w[i - 1]) {
        i -= 1;
    }
    let mut split = if i > 0 { i + 1 } else { 0 };
    let mut total: u64 = w[..split].iter().sum();
    while split < w.len() && w[split] < GEOMETRIC_FACTOR.saturating_mul(total) {
        total = total.saturating_add(w[split]);
        split += 1;
    }
    if split < 2 {
        return Vec::new();
    }
    let mut chosen = order[..split].to_vec();
    chosen.sort_unstable();
    chosen
}

/// The object count of a version 2 `.idx` (the last fan-out entry), reading its first
/// 1,032 bytes; `None` for anything else.
fn idx_object_count(path: &Path) -> Option<u64> {
    use std::io::Read;
    let mut head = [0u8; 8 + 256 * 4];
    File::open(path).ok()?.read_exact(&mut head).ok()?;
    if head[..8] != [0xff, b't', b'O', b'c', 0, 0, 0, 2] {
        return None;
    }
    let last: [u8; 4] = head[8 + 255 * 4..].try_into().ok()?;
    Some(u64::from(u32::from_be_bytes(last)))
}

/// The entries a version 2 `.idx` lists (gitformat-pack.txt; [`idx_bytes`] writes them), in
/// its order (by id).
fn idx_entries(idx: &[u8]) -> std::io::Result<Vec<PackEntry>> {
    let bad = || std::io::Error::other("not a version 2 pack index");
    let u32_at = |at: usize| -> std::io::Result<u32> {
        let b = idx.get(at..at + 4).ok_or_else(bad)?;
        Ok(u32::from_be_bytes(b.try_into().map_err(|_| bad())?))
    };
    if idx.get(..8) != Some(&[0xff, b't', b'O', b'c', 0, 0, 0, 2][..]) {
        return Err(bad());
    }
    let n = u32_at(8 + 255 * 4)? as usize;
    let ids = 8 + 256 * 4;
    let (crcs, offsets) = (ids + 20 * n, ids + 24 * n);
    let large = offsets + 4 * n;
    (0..n)
        .map(|i| {
            let oid = Oid::from_bytes(idx.get(ids + 20 * i..ids + 20 * (i + 1)).ok_or_else(bad)?)
                .map_err(std::io::Error::other)?;
            let small = u32_at(offsets + 4 * i)?;
            let offset = if small & 0x8000_0000 != 0 {
                let at = large + 8 * (small & 0x7fff_ffff) as usize;
                let b = idx.get(at..at + 8).ok_or_else(bad)?;
                u64::from_be_bytes(b.try_into().map_err(|_| bad())?)
            } else {
                u64::from(small)
            };
            Ok(PackEntry {
                oid,
                offset,
                crc: u32_at(crcs + 4 * i)?,
            })
        })
        .collect()
}

/// Writes the objects of the packs `sources` (paths without extension) into one new pack in
/// `pack_dir`, each object once, as [`store_pack`] does; returns its name and object count.
/// An entry holding a whole object (all of provisio's packs) is copied as it is, header and
/// compressed bytes, after checking its bytes against the CRC-32 its `.idx` records, as git's
/// `pack-objects` does when it reuses an entry (`builtin/pack-objects.c` `write_reuse_object`
/// → `check_pack_crc`); a delta (a fetched pack's) is read whole through `odb`, which
/// resolves it, and compressed again.
fn store_rolled_up(
    pack_dir: &Path,
    odb: &Odb<'_>,
    sources: &[std::path::PathBuf],
) -> std::io::Result<(String, usize)> {
    use std::io::{BufReader, Read};
    // Each pack's entries by offset, with the offset where each ends; an object in several
    // packs is taken from the first.
    let mut seen = HashSet::new();
    let mut plan: Vec<(std::path::PathBuf, Vec<(PackEntry, u64)>)> = Vec::new();
    for stem in sources {
        let idx = std::fs::read(stem.with_extension("idx"))?;
        let mut all = idx_entries(&idx).map_err(|e| Damaged::error(stem, e.to_string()))?;
        let pack_len = check_pair(stem, &idx, all.len())?;
        all.sort_unstable_by_key(|e| e.offset);
        let ends: Vec<u64> = all
            .iter()
            .skip(1)
            .map(|e| e.offset)
            .chain([pack_len.saturating_sub(20)])
            .collect();
        let take = all
            .into_iter()
            .zip(ends)
            .filter(|(e, _)| seen.insert(e.oid))
            .collect();
        plan.push((stem.clone(), take));
    }
    let count = seen.len();
    drop(seen);
    let name = store_with(pack_dir, count, |out, entries| {
        let mut out = HashingWriter {
            inner: out,
            sha: Sha1::new(),
            written: 0,
        };
        let n = u32::try_from(count)
            .map_err(|_| std::io::Error::other("more objects than a pack holds"))?;
        out.write_all(b"PACK")?;
        out.write_all(&2u32.to_be_bytes())?;
        out.write_all(&n.to_be_bytes())?;
        let mut buf = Vec::new();
        let mut zbuf = Vec::new();
        for (stem, take) in &plan {
            let path = stem.with_extension("pack");
            let mut pack = BufReader::with_capacity(1 << 20, File::open(&path)?);
            let mut at = 0u64;
            for (e, end) in take {
                let len = end
                    .checked_sub(e.offset)
                    .filter(|&l| l > 0)
                    .ok_or_else(|| Damaged::error(stem, "its .idx's offsets are out of order"))?;
                pack.seek_relative(e.offset as i64 - at as i64)?;
                buf.resize(len as usize, 0);
                pack.read_exact(&mut buf)?;
                at = *end;
                let offset = out.written;
                let kind = (buf[0] >> 4) & 7;
                let crc = if (1..=4).contains(&kind) {
                    if crc32fast::hash(&buf) != e.crc {
                        return Err(Damaged::error(
                            stem,
                            format!("object {} does not match its CRC-32", e.oid),
                        ));
                    }
                    out.write_all(&buf)?;
                    e.crc
                } else {
                    write_whole(odb, e.oid, &mut out, &mut zbuf)?
                };
                entries.push(PackEntry {
                    oid: e.oid,
                    offset,
                    crc,
                });
            }
        }
        let trailer: [u8; 20] = out.sha.finalize().into();
        out.inner.write_all(&trailer)?;
        Ok(trailer)
    })?;
    Ok((name, count))
}

/// A pack that failed a check before or while its entries were copied ([`check_pair`], a
/// CRC-32): `stem` (a path without extension) and the check, carried in an `io::Error` so
/// that [`consolidate`] leaves that pack out and rolls up the others.
#[derive(Debug)]
struct Damaged {
    stem: std::path::PathBuf,
    what: String,
}

impl Damaged {
    fn error(stem: &Path, what: impl Into<String>) -> std::io::Error {
        std::io::Error::other(Damaged {
            stem: stem.to_owned(),
            what: what.into(),
        })
    }
}

impl std::fmt::Display for Damaged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}",
            self.stem.with_extension("pack").display(),
            self.what
        )
    }
}

impl std::error::Error for Damaged {}

/// Checks the pack `stem` (a path without extension) against its `.idx` (`idx`, listing
/// `listed` objects) before its entries are copied as they are and it is removed: the
/// `.idx`'s own SHA-1 trailer (a damaged id in it would carry an object into the new pack
/// under another name, and the one copy that names it rightly, the old `.pack`, would go),
/// the pack's checksum it records against the `.pack`'s trailer, and the object count in the
/// `.pack`'s header — what git checks when it opens a pack (`packfile.c`
/// `open_packed_git_1`), and `git verify-pack` of the `.idx`. Returns the `.pack`'s length.
fn check_pair(stem: &Path, idx: &[u8], listed: usize) -> std::io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let path = stem.with_extension("pack");
    let bad = |what: &str| Damaged::error(stem, what);
    let body = idx
        .len()
        .checked_sub(20)
        .ok_or_else(|| bad("index too short"))?;
    if Sha1::digest(&idx[..body])[..] != idx[body..] {
        return Err(bad("its .idx does not match its own checksum"));
    }
    let mut pack = File::open(&path)?;
    let len = pack.metadata()?.len();
    if len < 12 + 20 {
        return Err(bad("too short"));
    }
    let mut header = [0u8; 12];
    pack.read_exact(&mut header)?;
    if header[..8] != *b"PACK\0\0\0\x02" && header[..8] != *b"PACK\0\0\0\x03" {
        return Err(bad("not a pack"));
    }
    if u64::from(u32::from_be_bytes(header[8..].try_into().expect("4 bytes"))) != listed as u64 {
        return Err(bad("its header and its .idx count different objects"));
    }
    let mut trailer = [0u8; 20];
    pack.seek(SeekFrom::End(-20))?;
    pack.read_exact(&mut trailer)?;
    if idx[body - 20..body] != trailer {
        return Err(bad("its .idx is another pack's"));
    }
    Ok(len)
}

/// Removes the rolled-up pack `stem` (`pack-<checksum>`) from `pack_dir` (nothing when it
/// has a `.keep`), so that a process killed at any step leaves only files
/// [`remove_leftovers`] removes: the `.pack` is renamed to `tmp_pack_rolled_<stem>`
/// ([`ROLLED_PREFIX`]) first, then the `.idx`, `.rev`, `.bitmap`, `.mtimes` are removed, the
/// temporary last. Readers never miss an object: the new pack holding them all is visible
/// before this runs. From the rename on, neither reader opens the pack: libgit2's
/// `packfile_load__cb` (`odb_pack.c`) skips an `.idx` whose `.pack` is missing (its
/// `git_packfile_alloc`, `pack.c`, stats the `.pack`: `GIT_ENOTFOUND`, "ignore missing .pack
/// file as git does"), git's `add_packed_git` likewise; a handle that listed the pack
/// before and had not opened it fails in `git_pack_entry_find` ("make sure the packfile
/// backing the index still exists on disk") and goes on to the next pack, as it would once
/// git's `unlink_pack_path` order (`.idx` first) had removed the `.pack`. One that had it
/// open keeps reading the renamed file. The `.idx` stays without its `.pack` only until the
/// next call; a kill there leaves it with the temporary, which tells the next call to finish
/// the removal. A file already gone is not an error.
fn remove_pack(pack_dir: &Path, stem: &str) -> std::io::Result<()> {
    if pack_dir.join(format!("{stem}.keep")).exists() {
        return Ok(());
    }
    let temp = pack_dir.join(format!("{ROLLED_PREFIX}{stem}"));
    match std::fs::rename(pack_dir.join(format!("{stem}.pack")), &temp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    for ext in [".idx", ".rev", ".bitmap", ".mtimes"] {
        match std::fs::remove_file(pack_dir.join(format!("{stem}{ext}"))) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    match std::fs::remove_file(&temp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes the multi-pack-index of `pack_dir`, if any, as git's `clear_midx_file` does
/// (`midx.c`): the `multi-pack-index`, its `multi-pack-index-<checksum>.bitmap`/`.rev`, and an
/// incremental chain's `multi-pack-index.d/multi-pack-index-chain` (without it git reads none
/// of that directory's layers). Readers find every object through the `.idx` files without it.
fn remove_multi_pack_index(pack_dir: &Path) -> std::io::Result<()> {
    let mut doomed = vec![
        pack_dir.join("multi-pack-index"),
        pack_dir.join("multi-pack-index.d/multi-pack-index-chain"),
    ];
    for e in std::fs::read_dir(pack_dir)? {
        let name = e?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("multi-pack-index-")
            && (name.ends_with(".bitmap") || name.ends_with(".rev"))
        {
            doomed.push(pack_dir.join(&*name));
        }
    }
    for path in doomed {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            Err(_) => {}
            Ok(()) => tracing::debug!(file = %path.display(), "multi-pack-index removed"),
        }
    }
    Ok(())
}

/// The prefix of a rolled-up pack's `.pack` while [`remove_pack`] removes it
/// (`tmp_pack_rolled_<stem>`): a `tmp_pack_` name, which git's `prune` and
/// [`remove_leftovers`] treat as a temporary, and which tells the next call that the pack's
/// objects are in a newer pack (it is renamed only after that pack was made visible).
const ROLLED_PREFIX: &str = "tmp_pack_rolled_";

/// Removes from `pack_dir` (holding `names`) what provisio's writers or a killed git left,
/// the way git's `prune` does (`builtin/prune.c` `remove_temporary_files`: only `tmp_*`
/// files): `tmp_pack_`/`tmp_idx_` temporaries (git's own prefixes and provisio's, including
/// a rolled-up pack being removed, [`ROLLED_PREFIX`]) older than [`LEFTOVER_AGE`]. A removal
/// [`remove_pack`] left half done (its `.pack` already renamed to the temporary) is finished
/// whatever its age: the `.idx` and companions left of that pack, then the temporary. Nothing
/// else is removed: a `.pack` without its `.idx` (an operator rebuilding a corrupt `.idx`
/// with `git index-pack`, a backup restored file by file, a store killed between its two
/// renames), an `.idx` without its `.pack`, a `.rev`/`.bitmap`/`.mtimes` without either, are
/// kept and reported ([`report_garbage`]) as git's `count-objects -v` reports them
/// ("garbage"). Returns the paths reported.
fn remove_leftovers(
    pack_dir: &Path,
    names: &HashSet<String>,
) -> std::io::Result<Vec<(std::path::PathBuf, &'static str)>> {
    let now = std::time::SystemTime::now();
    let mut gone: HashSet<String> = HashSet::new();
    let remove = |name: &str, gone: &mut HashSet<String>| -> std::io::Result<()> {
        let path = pack_dir.join(name);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => tracing::debug!(file = %path.display(), "leftover of a killed writer removed"),
        }
        gone.insert(name.to_owned());
        Ok(())
    };
    let mut sorted: Vec<&String> = names.iter().collect();
    sorted.sort();
    for name in sorted {
        if let Some(stem) = name.strip_prefix(ROLLED_PREFIX)
            && stem.starts_with("pack-")
            && !names.contains(&format!("{stem}.pack"))
        {
            // A roll-up killed while removing this pack: finish it, temporary last.
            for ext in [".idx", ".rev", ".bitmap", ".mtimes"] {
                let companion = format!("{stem}{ext}");
                if names.contains(&companion) {
                    remove(&companion, &mut gone)?;
                }
            }
            remove(name, &mut gone)?;
            continue;
        }
        if !(name.starts_with("tmp_pack_") || name.starts_with("tmp_idx_")) {
            continue;
        }
        let old = std::fs::symlink_metadata(pack_dir.join(name))
            .and_then(|m| m.modified())
            .is_ok_and(|t| now.duration_since(t).is_ok_and(|age| age > LEFTOVER_AGE));
        if old {
            remove(name, &mut gone)?;
        }
    }
    let left: HashSet<String> = names.difference(&gone).cloned().collect();
    Ok(report_garbage(pack_dir, &left))
}

/// The files of `pack_dir` (holding `names`) no reader uses, as git's `count-objects -v`
/// counts them (`packfile.c` `report_pack_garbage`): a `pack-*` `.pack`, `.idx`, `.rev`,
/// `.bitmap` or `.mtimes` whose stem lacks its `.pack` or its `.idx`. Each is logged with
/// `tracing::warn!` (its path and what to do), at most once per run (a watch calls this after
/// every commit); all are returned, with what is missing.
fn report_garbage(
    pack_dir: &Path,
    names: &HashSet<String>,
) -> Vec<(std::path::PathBuf, &'static str)> {
    let mut garbage = Vec::new();
    for name in names {
        let Some(stem) = [".pack", ".idx", ".rev", ".bitmap", ".mtimes"]
            .iter()
            .find_map(|x| name.strip_suffix(x))
            .filter(|stem| stem.starts_with("pack-"))
        else {
            continue;
        };
        let missing = match (
            names.contains(&format!("{stem}.pack")),
            names.contains(&format!("{stem}.idx")),
        ) {
            (true, true) => continue,
            (true, false) => "no .idx",
            (false, true) => "no .pack",
            (false, false) => "no .pack and no .idx",
        };
        garbage.push((pack_dir.join(name), missing));
    }
    garbage.sort();
    for (path, missing) in &garbage {
        if first_report(&format!("garbage {}", path.display())) {
            tracing::warn!(
                file = %path.display(),
                "a pack file no reader uses ({missing}), left as it is: for a .pack, `git \
                 index-pack {}` writes its .idx again (its objects become readable); \
                 otherwise remove it",
                path.display()
            );
        }
    }
    garbage
}

/// Whether `what` is reported for the first time in this process.
fn first_report(what: &str) -> bool {
    static REPORTED: std::sync::Mutex<Option<HashSet<String>>> = std::sync::Mutex::new(None);
    let mut reported = REPORTED.lock().unwrap_or_else(|e| e.into_inner());
    reported.get_or_insert_default().insert(what.to_owned())
}

/// Where an object went in a pack: its id, the offset of its entry, and the CRC-32 of the
/// entry's bytes (header and compressed data), as a version 2 `.idx` records them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PackEntry {
    oid: Oid,
    offset: u64,
    crc: u32,
}

/// Writes `objects` (read from `odb`) to `out` as a version 2 pack (git's
/// `Documentation/gitformat-pack.txt`): the header (`PACK`, version, object count), then each
/// object whole — its type and size in the variable-length entry header, its bytes
/// zlib-compressed at the fastest level (git's own default for loose objects) — and the SHA-1
/// of everything before it as the trailer, which it returns. Each object's entry is appended
/// to `entries`. No delta search: storing the first commit of 10,000 tenants spent most of
/// its time in libgit2's pack builder trying deltas.
fn write_plain_pack(
    odb: &Odb<'_>,
    objects: &[Oid],
    out: &mut impl Write,
    entries: &mut Vec<PackEntry>,
) -> std::io::Result<[u8; 20]> {
    let count = u32::try_from(objects.len())
        .map_err(|_| std::io::Error::other("more objects than a pack holds"))?;
    let mut out = HashingWriter {
        inner: out,
        sha: Sha1::new(),
        written: 0,
    };
    out.write_all(b"PACK")?;
    out.write_all(&2u32.to_be_bytes())?;
    out.write_all(&count.to_be_bytes())?;
    let mut zbuf = Vec::new();
    for oid in objects {
        let offset = out.written;
        let crc = write_whole(odb, *oid, &mut out, &mut zbuf)?;
        entries.push(PackEntry {
            oid: *oid,
            offset,
            crc,
        });
    }
    let trailer: [u8; 20] = out.sha.finalize().into();
    out.inner.write_all(&trailer)?;
    Ok(trailer)
}

/// Writes object `oid` (read from `odb`) to `out` as a whole-object pack entry: its type and
/// size in the entry header, its bytes zlib-compressed at the fastest level (`zbuf`: a buffer
/// to reuse). Returns the CRC-32 of the entry's bytes.
fn write_whole(
    odb: &Odb<'_>,
    oid: Oid,
    out: &mut impl Write,
    zbuf: &mut Vec<u8>,
) -> std::io::Result<u32> {
    let obj = odb.read(oid).map_err(std::io::Error::other)?;
    let kind: u8 = match obj.kind() {
        ObjectType::Commit => 1,
        ObjectType::Tree => 2,
        ObjectType::Blob => 3,
        ObjectType::Tag => 4,
        other => {
            return Err(std::io::Error::other(format!(
                "object {oid} of kind {other}: not storable"
            )));
        }
    };
    let data = obj.data();
    let header = entry_header(kind, data.len() as u64);
    zbuf.clear();
    let mut z = ZlibEncoder::new(std::mem::take(zbuf), Compression::fast());
    z.write_all(data)?;
    *zbuf = z.finish()?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header);
    crc.update(zbuf);
    out.write_all(&header)?;
    out.write_all(zbuf)?;
    Ok(crc.finalize())
}

/// Offsets above this go to the `.idx`'s table of 8-byte offsets (gitformat-pack.txt: the
/// 4-byte offsets are 31 bits, the most significant bit marking an index into that table).
const MAX_SMALL_OFFSET: u64 = 0x7fff_ffff;

/// The version 2 `.idx` of a pack holding `entries` (sorted here by id) whose trailer is
/// `pack_checksum` (gitformat-pack.txt, "Version 2 pack-*.idx files"): the magic `\377tOc`
/// and version 2; the fan-out table (entry `b`: how many ids start with a byte `<= b`); the
/// sorted ids; the CRC-32 of each entry's packed bytes; each entry's offset in 4 bytes, or for
/// an offset past 2 GiB, the most significant bit set and the index of its 8-byte offset in
/// the table that follows; the pack's checksum; the SHA-1 of everything before it.
fn idx_bytes(entries: &mut [PackEntry], pack_checksum: &[u8; 20]) -> Vec<u8> {
    entries.sort_unstable_by(|a, b| a.oid.as_bytes().cmp(b.oid.as_bytes()));
    let mut idx = Vec::with_capacity(8 + 256 * 4 + entries.len() * 28 + 40);
    idx.extend_from_slice(&[0xff, b't', b'O', b'c']);
    idx.extend_from_slice(&2u32.to_be_bytes());
    let mut fanout = [0u32; 256];
    for e in entries.iter() {
        fanout[usize::from(e.oid.as_bytes()[0])] += 1;
    }
    let mut total = 0u32;
    for n in fanout {
        total += n;
        idx.extend_from_slice(&total.to_be_bytes());
    }
    for e in entries.iter() {
        idx.extend_from_slice(e.oid.as_bytes());
    }
    for e in entries.iter() {
        idx.extend_from_slice(&e.crc.to_be_bytes());
    }
    let mut large = Vec::new();
    for e in entries.iter() {
        let small = if e.offset > MAX_SMALL_OFFSET {
            let at = u32::try_from(large.len()).expect("fewer entries than a pack holds");
            large.push(e.offset);
            0x8000_0000 | at
        } else {
            e.offset as u32
        };
        idx.extend_from_slice(&small.to_be_bytes());
    }
    for offset in large {
        idx.extend_from_slice(&offset.to_be_bytes());
    }
    idx.extend_from_slice(pack_checksum);
    let checksum = Sha1::digest(&idx);
    idx.extend_from_slice(&checksum);
    idx
}

/// A pack entry's header: the type in bits 4–6 of the first byte, the size in its low 4 bits
/// and then 7 bits per byte, least significant first, the high bit saying another byte
/// follows.
fn entry_header(kind: u8, size: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(10);
    let mut byte = (kind << 4) | (size & 0x0f) as u8;
    let mut rest = size >> 4;
    while rest != 0 {
        h.push(byte | 0x80);
        byte = (rest & 0x7f) as u8;
        rest >>= 7;
    }
    h.push(byte);
    h
}

/// Passes writes through, hashing and counting them (a pack's trailer is the SHA-1 of what
/// precedes it; an entry's offset is the count of bytes before it).
struct HashingWriter<'w, W: Write> {
    inner: &'w mut W,
    sha: Sha1,
    written: u64,
}

impl<W: Write> Write for HashingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
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

    fn packs(git_dir: &Path) -> usize {
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

    /// The size encoding of gitformat-pack.txt: 4 bits in the first byte, then 7 per byte.
    #[test]
    fn entry_headers_encode_type_and_size() {
        assert_eq!(entry_header(3, 0), [0x30]);
        assert_eq!(entry_header(3, 15), [0x3f]);
        assert_eq!(entry_header(3, 16), [0xb0, 0x01]);
        assert_eq!(entry_header(2, 0x1234), [0xa4, 0xa3, 0x02]);
    }

    /// Sizes past 4 GiB (a `u32` would wrap) decode back, as git's `unpack_object_header`
    /// reads them: 4 bits, then 7 per continuation byte.
    #[test]
    fn entry_headers_hold_sizes_past_four_gib() {
        for size in [
            (1u64 << 32) - 1,
            1 << 32,
            (1 << 32) + 17,
            5 << 30,
            u64::MAX >> 4,
        ] {
            let h = entry_header(3, size);
            assert_eq!(h[0] >> 4 & 7, 3);
            let mut decoded = u64::from(h[0] & 0x0f);
            let mut shift = 4;
            for b in &h[1..] {
                decoded |= u64::from(b & 0x7f) << shift;
                shift += 7;
            }
            assert!(h[..h.len() - 1].iter().all(|b| b & 0x80 != 0));
            assert_eq!(h[h.len() - 1] & 0x80, 0);
            assert_eq!(decoded, size);
        }
    }

    /// Reads a version 2 `.idx` back as gitformat-pack.txt describes it (independently of
    /// [`idx_bytes`]'s loops): every id with its CRC-32 and offset, in the file's order.
    fn parse_idx(idx: &[u8]) -> (Vec<PackEntry>, [u8; 20]) {
        let u32_at = |at: usize| u32::from_be_bytes(idx[at..at + 4].try_into().unwrap());
        assert_eq!(&idx[..4], b"\xfftOc");
        assert_eq!(u32_at(4), 2);
        let n = u32_at(8 + 255 * 4) as usize;
        let ids = 8 + 256 * 4;
        let (crcs, offsets) = (ids + 20 * n, ids + 24 * n);
        let large = offsets + 4 * n;
        let mut entries = Vec::new();
        let mut large_count = 0;
        for i in 0..n {
            let oid = Oid::from_bytes(&idx[ids + 20 * i..ids + 20 * (i + 1)]).unwrap();
            let small = u32_at(offsets + 4 * i);
            let offset = if small & 0x8000_0000 != 0 {
                let at = large + 8 * (small & 0x7fff_ffff) as usize;
                large_count += 1;
                u64::from_be_bytes(idx[at..at + 8].try_into().unwrap())
            } else {
                u64::from(small)
            };
            entries.push(PackEntry {
                oid,
                offset,
                crc: u32_at(crcs + 4 * i),
            });
        }
        // The fan-out counts ids by first byte, cumulatively.
        for b in 0..256usize {
            let below = entries
                .iter()
                .filter(|e| usize::from(e.oid.as_bytes()[0]) <= b)
                .count();
            assert_eq!(u32_at(8 + 4 * b) as usize, below, "fan-out entry {b}");
        }
        let trailer = large + 8 * large_count;
        assert_eq!(idx.len(), trailer + 40, "nothing after the two checksums");
        let pack_checksum: [u8; 20] = idx[trailer..trailer + 20].try_into().unwrap();
        assert_eq!(
            idx[trailer + 20..],
            Sha1::digest(&idx[..trailer + 20])[..],
            "the idx's own checksum"
        );
        (entries, pack_checksum)
    }

    /// Offsets past 2 GiB (a pack that large is not written here: the offsets are made up) go
    /// to the 8-byte table, indexed from the 4-byte one with the high bit set, in id order;
    /// offsets up to 2^31 - 1 stay in 4 bytes. Ids come out sorted, each with its own CRC.
    #[test]
    fn the_idx_holds_sorted_ids_and_offsets_past_two_gib_in_the_large_table() {
        let offsets = [
            12u64,
            MAX_SMALL_OFFSET,
            MAX_SMALL_OFFSET + 1,
            1 << 32,
            (5 << 30) + 7,
            u64::from(u32::MAX) + 1000,
            4096,
        ];
        let mut entries: Vec<PackEntry> = offsets
            .iter()
            .enumerate()
            .map(|(i, &offset)| PackEntry {
                // Ids in an order unrelated to the offsets; two share a first byte.
                oid: Oid::hash_object(ObjectType::Blob, format!("object {i}").as_bytes()).unwrap(),
                offset,
                crc: 0x0102_0304 * (i as u32 + 1),
            })
            .collect();
        entries.push(PackEntry {
            oid: Oid::from_bytes(&[entries[0].oid.as_bytes()[0]; 20]).unwrap(),
            offset: 3 << 31,
            crc: 7,
        });
        let mut expected = entries.clone();
        expected.sort_by(|a, b| a.oid.as_bytes().cmp(b.oid.as_bytes()));
        let pack_checksum = [0xab; 20];
        let idx = idx_bytes(&mut entries, &pack_checksum);
        let (parsed, checksum) = parse_idx(&idx);
        assert_eq!(parsed, expected);
        assert_eq!(checksum, pack_checksum);
        // Five offsets pass 2^31 - 1: five 8-byte entries.
        assert_eq!(idx.len(), 8 + 1024 + 28 * 8 + 8 * 5 + 40);
    }

    /// A pack written here is the one stock git would index: `git index-pack` computes the
    /// same `.idx` (ids, CRCs, offsets; its own bytes) from the `.pack` alone.
    #[test]
    fn git_index_pack_computes_the_same_idx() {
        let dir = tempfile::tempdir().unwrap();
        Repository::init_bare(dir.path()).unwrap();
        let git_dir = dir.path();
        in_bulk(
            git_dir,
            |_, e| e,
            |bulk| {
                let mut tb = bulk.treebuilder(None)?;
                for i in 0..300 {
                    let body = format!("line {i}\n").repeat(i % 40);
                    tb.insert(format!("f{i}"), bulk.blob(body.as_bytes())?, 0o100644)?;
                }
                bulk.write_tree(&tb)
            },
        )
        .unwrap();
        let pack_dir = git_dir.join("objects/pack");
        let names: Vec<_> = std::fs::read_dir(&pack_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names.len(),
            2,
            "one .pack and its .idx, no temporary: {names:?}"
        );
        let pack = pack_dir.join(names.iter().find(|n| n.ends_with(".pack")).unwrap());
        let ours = std::fs::read(pack.with_extension("idx")).unwrap();
        let theirs = dir.path().join("theirs.idx");
        let Ok(out) = std::process::Command::new("git")
            .args(["index-pack", "-o"])
            .arg(&theirs)
            .arg(&pack)
            .output()
        else {
            return; // no stock git here; the other tests check the format
        };
        assert!(out.status.success(), "{out:?}");
        let theirs = std::fs::read(theirs).unwrap();
        assert_eq!(parse_idx(&ours), parse_idx(&theirs));
        assert_eq!(ours, theirs, "byte for byte, checksums included");
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

    /// `n` sessions of one blob and a tree each (two objects, one pack per session), the
    /// blobs `prefix0`, `prefix1`…; returns the trees.
    fn small_packs(git_dir: &Path, prefix: &str, n: usize) -> Vec<Oid> {
        (0..n)
            .map(|i| {
                in_bulk(
                    git_dir,
                    |_, e| e,
                    |bulk| {
                        let mut tb = bulk.treebuilder(None)?;
                        tb.insert(
                            "f",
                            bulk.blob(format!("{prefix}{i}\n").as_bytes())?,
                            0o100644,
                        )?;
                        bulk.write_tree(&tb)
                    },
                )
                .unwrap()
            })
            .collect()
    }

    fn pack_names(git_dir: &Path) -> Vec<String> {
        pack_names_in(&git_dir.join("objects/pack"))
    }

    fn pack_names_in(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// `git fsck --strict` passes and `git count-objects -v` reports no garbage; `None`
    /// when there is no stock git.
    fn git_says_clean(git_dir: &Path) -> Option<String> {
        let fsck = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(git_dir)
            .args(["fsck", "--full", "--strict", "--no-dangling"])
            .output()
            .ok()?;
        assert!(fsck.status.success(), "{fsck:?}");
        let count = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(git_dir)
            .args(["count-objects", "-v"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&count.stdout).into_owned();
        assert!(text.contains("\ngarbage: 0\n"), "{text}");
        Some(text)
    }

    /// Every tree of `trees` and its blob are readable by a new handle.
    fn all_readable(git_dir: &Path, trees: &[Oid]) {
        let repo = Repository::open_bare(git_dir).unwrap();
        for t in trees {
            let tree = repo.find_tree(*t).unwrap();
            repo.find_blob(tree.get_name("f").unwrap().id()).unwrap();
        }
    }

    fn w(counts: &[u64]) -> Vec<Option<u64>> {
        counts.iter().map(|&c| Some(c)).collect()
    }

    /// git's geometric split, on the cases that matter: nothing at or under the limit; all
    /// equal: all rolled up; one huge pack and many tiny: the tiny ones only; an intact
    /// progression: nothing; packs whose roll-up would break the progression with the next
    /// one up take it along; kept packs are never chosen and do not count as a step.
    #[test]
    fn the_smallest_packs_are_chosen_so_the_rest_form_a_geometric_progression() {
        let equal = w(&[20_000; 51]);
        assert_eq!(roll_up_selection(&equal[..50], 50), Vec::<usize>::new());
        assert_eq!(roll_up_selection(&equal, 50), (0..51).collect::<Vec<_>>());
        // One huge pack (a first commit) and 60 bump-sized ones: the huge one stays until
        // the rest add up to half of it.
        let mut huge = w(&[270_000]);
        huge.extend(w(&[1_000; 60]));
        assert_eq!(roll_up_selection(&huge, 50), (1..61).collect::<Vec<_>>());
        let mut grown = w(&[270_000]);
        grown.extend(w(&[20_000; 50]));
        assert_eq!(
            roll_up_selection(&grown, 50),
            (0..51).collect::<Vec<_>>(),
            "50 x 20,000 is more than half of 270,000: all in one"
        );
        // An intact progression (1, 2, 4, … 2^55) is left alone even past the limit.
        let progression: Vec<Option<u64>> = (0..56).map(|i| Some(1u64 << i)).collect();
        assert_eq!(roll_up_selection(&progression, 50), Vec::<usize>::new());
        // git's own example (the commit adding --geometric): 1, 1, 2, 4, 32 (here past a
        // limit of 4) rolls 1 + 1 + 2 + 4 into 8 and keeps 32.
        let example = w(&[32, 1, 4, 1, 2]);
        assert_eq!(roll_up_selection(&example, 4), vec![1, 2, 3, 4]);
        // Empty packs weigh as one object each: past the limit they are rolled up, with or
        // without an intact progression above them.
        assert_eq!(
            roll_up_selection(&w(&[0; 51]), 50),
            (0..51).collect::<Vec<_>>()
        );
        let mut empty = w(&[0; 48]);
        empty.extend(w(&[100, 1_000, 10_000]));
        assert_eq!(roll_up_selection(&empty, 50), (0..48).collect::<Vec<_>>());
        // Kept packs (None) are never chosen; a tiny kept pack does not stop the others.
        let mut kept = w(&[1_000; 50]);
        kept.push(None);
        kept.push(Some(1_000_000));
        kept.push(None);
        assert_eq!(roll_up_selection(&kept, 50), (0..50).collect::<Vec<_>>());
        // Past the limit but only kept packs and one other: nothing to roll up.
        let mut only_kept = vec![None; 51];
        only_kept.push(Some(5));
        assert_eq!(roll_up_selection(&only_kept, 50), Vec::<usize>::new());
        // Counts near u64::MAX do not overflow (twice them saturates: the largest counts as
        // twice the others).
        let big = w(&[u64::MAX / 2, u64::MAX / 2, u64::MAX]);
        assert_eq!(roll_up_selection(&big, 2), vec![0, 1]);
    }

    /// The selection over a clone's life, as [`consolidate`] applies it after every commit: a
    /// pack of any size (none included: a fetch or a person's `git` may leave an empty pack)
    /// added each time, a few kept packs, any limit. After every roll-up the packs left are at
    /// most the limit, or form a progression (the new pack and at most 33 others: an `.idx`
    /// counts objects in 32 bits) besides the kept ones; and the objects rewritten in all stay
    /// within log2 of the objects per object (amortised: no run of commits each rewriting the
    /// largest pack).
    mod selection {
        use super::super::roll_up_selection;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]
            #[test]
            fn stays_bounded_and_amortised(
                adds in proptest::collection::vec(prop_oneof![8 => Just(0u64), 1 => 0u64..4, 1 => 0u64..5_000], 1..600),
                kept in 0usize..4,
                limit in 1usize..60,
            ) {
                let mut packs: Vec<Option<u64>> = vec![None; kept];
                let (mut objects, mut rewritten) = (0u64, 0u64);
                for add in adds {
                    packs.push(Some(add));
                    // An empty pack weighs one object (and costs a file): the bound is per
                    // object weighed.
                    objects += add.max(1);
                    let chosen = roll_up_selection(&packs, limit);
                    prop_assert!(chosen.len() != 1);
                    if chosen.is_empty() {
                        prop_assert!(
                            packs.len() <= limit || packs.len() <= kept + 34,
                            "{} packs past a limit of {limit} left alone: {packs:?}",
                            packs.len()
                        );
                        continue;
                    }
                    prop_assert!(chosen.iter().all(|&i| packs[i].is_some()), "a kept pack chosen");
                    let sum: u64 = chosen.iter().map(|&i| packs[i].unwrap()).sum();
                    rewritten += sum;
                    for &i in chosen.iter().rev() {
                        packs.remove(i);
                    }
                    packs.push(Some(sum));
                    prop_assert!(
                        packs.len() <= limit.max(kept + 34),
                        "{} packs left after a roll-up: {packs:?}",
                        packs.len()
                    );
                }
                let log = 64 - objects.max(1).leading_zeros() as u64;
                prop_assert!(
                    rewritten <= objects * (log + 1),
                    "{rewritten} objects rewritten for {objects}"
                );
            }
        }
    }

    /// Past the limit, the small packs become one; every object stays readable by libgit2 and
    /// stock git, none is lost, and a pack with a `.keep` is left as it is.
    #[test]
    fn packs_past_the_limit_are_rolled_up_into_one_and_kept_packs_stay() {
        let dir = tempfile::tempdir().unwrap();
        Repository::init_bare(dir.path()).unwrap();
        let git_dir = dir.path();
        let mut trees = small_packs(git_dir, "kept ", 1);
        let kept_stem = pack_names(git_dir)[0].trim_end_matches(".idx").to_owned();
        std::fs::write(
            git_dir.join(format!("objects/pack/{kept_stem}.keep")),
            b"kept\n",
        )
        .unwrap();
        trees.extend(small_packs(git_dir, "blob ", 10));
        assert_eq!(packs(git_dir), 11);
        assert_eq!(consolidate(git_dir, 11).unwrap(), None, "at the limit");
        let r = consolidate(git_dir, 4).unwrap().expect("past the limit");
        assert_eq!((r.packs, r.objects), (10, 20));
        assert_eq!(packs(git_dir), 2, "the kept pack and the new one");
        assert!(pack_names(git_dir).contains(&format!("{kept_stem}.pack")));
        assert!(pack_names(git_dir).contains(&format!("{}.idx", r.into)));
        all_readable(git_dir, &trees);
        git_says_clean(git_dir);
        // The two left form a progression: nothing more, however low the limit.
        assert_eq!(consolidate(git_dir, 0).unwrap(), None);
    }

    /// A `multi-pack-index` a person's `git repack --write-midx` or `git maintenance` left in
    /// the clone names the packs a roll-up removes: it goes first, as git's `repack` clears
    /// it (`builtin/repack.c` `remove_redundant_pack` → `clear_midx_file`), or stock git's
    /// `fsck` fails ("failed to load pack in position 0") on every later run.
    #[test]
    fn a_multi_pack_index_naming_rolled_up_packs_is_removed_first() {
        let dir = tempfile::tempdir().unwrap();
        Repository::init_bare(dir.path()).unwrap();
        let git_dir = dir.path();
        let trees = small_packs(git_dir, "blob ", 6);
        let Ok(midx) = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(git_dir)
            .args(["multi-pack-index", "write"])
            .output()
        else {
            return; // no stock git to write one
        };
        assert!(midx.status.success(), "{midx:?}");
        assert!(git_dir.join("objects/pack/multi-pack-index").exists());
        git_says_clean(git_dir);
        let r = consolidate(git_dir, 2).unwrap().unwrap();
        assert_eq!((r.packs, r.objects), (6, 12));
        all_readable(git_dir, &trees);
        git_says_clean(git_dir);
        assert!(!git_dir.join("objects/pack/multi-pack-index").exists());
    }

    /// What a process killed during a roll-up (or a store) leaves, all at once: the new pack
    /// in place with the old ones still there (every object in two packs), temporaries, and
    /// one old pack's `.pack` without its `.idx` (a store killed between its renames, or an
    /// operator rebuilding the `.idx`). Readers see every object throughout; the next call
    /// removes the temporaries once they are old, keeps the `.pack` without `.idx` (reported,
    /// as git's `count-objects` reports it: only `tmp_*` files are removed, as git's `prune`
    /// removes them) and converges.
    #[test]
    fn a_killed_roll_up_leaves_every_object_readable_and_the_next_one_converges() {
        let dir = tempfile::tempdir().unwrap();
        Repository::init_bare(dir.path()).unwrap();
        let git_dir = dir.path();
        let pack_dir = git_dir.join("objects/pack");
        let trees = small_packs(git_dir, "blob ", 8);
        // Killed after the new pack was made visible, before any old one was removed.
        let saved = tempfile::tempdir().unwrap();
        for name in pack_names(git_dir) {
            std::fs::copy(pack_dir.join(&name), saved.path().join(&name)).unwrap();
        }
        let r = consolidate(git_dir, 4).unwrap().unwrap();
        assert_eq!((r.packs, r.objects), (8, 16));
        for name in pack_names_in(saved.path()) {
            std::fs::copy(saved.path().join(&name), pack_dir.join(&name)).unwrap();
        }
        assert_eq!(packs(git_dir), 9, "the new pack and the 8 old ones");
        all_readable(git_dir, &trees);
        // One old pack's .idx gone (its .pack kept), and temporaries of a killed writer.
        let victim = pack_names_in(saved.path())
            .into_iter()
            .find(|n| n.ends_with(".idx"))
            .unwrap();
        std::fs::remove_file(pack_dir.join(&victim)).unwrap();
        let orphan = pack_dir.join(victim.replace(".idx", ".pack"));
        let temps = [
            pack_dir.join("tmp_pack_killed"),
            pack_dir.join("tmp_idx_killed"),
        ];
        for t in &temps {
            std::fs::write(t, b"PACK").unwrap();
        }
        all_readable(git_dir, &trees);
        // Young leftovers may be a live writer's: kept.
        assert_eq!(consolidate(git_dir, 100).unwrap(), None);
        assert!(orphan.exists() && temps.iter().all(|t| t.exists()));
        all_readable(git_dir, &trees);
        // Once old, the temporaries are removed, the .pack without .idx is kept and
        // reported; the duplicates are rolled up again into the same objects.
        let old = std::time::SystemTime::now() - 2 * LEFTOVER_AGE;
        for f in temps.iter().chain([&orphan]) {
            File::options()
                .write(true)
                .open(f)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        let again = consolidate(git_dir, 4).unwrap().unwrap();
        assert_eq!(
            (again.packs, again.objects),
            (8, 16),
            "7 old packs and the new one"
        );
        assert!(orphan.exists(), "a .pack without .idx is never removed");
        assert!(temps.iter().all(|t| !t.exists()));
        let names = pack_names(git_dir).into_iter().collect();
        assert_eq!(
            remove_leftovers(&pack_dir, &names).unwrap(),
            [(orphan.clone(), "no .idx")],
            "reported"
        );
        let mut expected = vec![
            format!("{}.idx", again.into),
            format!("{}.pack", again.into),
            orphan.file_name().unwrap().to_string_lossy().into_owned(),
        ];
        expected.sort();
        assert_eq!(pack_names(git_dir), expected);
        all_readable(git_dir, &trees);
        // What the warning says to do: `git index-pack` indexes it again (or remove it).
        if let Ok(out) = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(git_dir)
            .arg("index-pack")
            .arg(&orphan)
            .output()
        {
            assert!(out.status.success(), "{out:?}");
            git_says_clean(git_dir);
            assert_eq!(consolidate(git_dir, 4).unwrap(), None);
            assert!(orphan.exists());
        }
        assert_eq!(consolidate(git_dir, 0).unwrap(), None, "converged");
    }

    /// A rolled-up pack is checked against its `.idx` first: a damaged id in the `.idx` (its
    /// own checksum no longer matches) or another pack's `.idx` under its name leaves that
    /// pack out of the roll-up, untouched (the old `.pack` is the one copy of the object under
    /// its right name: `git index-pack` writes its `.idx` again), and the others are rolled
    /// up. (It stopped the whole roll-up before: one damaged pack then blocked every later
    /// one.)
    #[test]
    fn a_damaged_or_mismatched_idx_is_left_out_of_the_roll_up() {
        let dir = tempfile::tempdir().unwrap();
        Repository::init_bare(dir.path()).unwrap();
        let git_dir = dir.path();
        let pack_dir = git_dir.join("objects/pack");
        let mut trees = small_packs(git_dir, "blob ", 4);
        let before = pack_names(git_dir);
        let idxs: Vec<String> = before
            .iter()
            .filter(|n| n.ends_with(".idx"))
            .cloned()
            .collect();
        let stem = pack_dir.join(idxs[0].trim_end_matches(".idx"));
        let path = pack_dir.join(&idxs[0]);
        let good = std::fs::read(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        // One bit of the second (last) id: two objects, ids from byte 1,032.
        let mut bytes = good.clone();
        bytes[8 + 256 * 4 + 20 + 19] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        let err = check_pair(&stem, &bytes, 2).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        let r = consolidate(git_dir, 2).unwrap().unwrap();
        assert_eq!((r.packs, r.objects), (3, 6), "the other three");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "left as it is");
        assert!(stem.with_extension("pack").exists());
        assert_eq!(packs(git_dir), 2);
        // Another pack's .idx (its checksum intact) under this one's name.
        trees.extend(small_packs(git_dir, "more ", 3));
        let other = pack_names(git_dir)
            .into_iter()
            .find(|n| n.ends_with(".idx") && !before.contains(n) && !n.starts_with(&r.into))
            .unwrap();
        let theirs = std::fs::read(pack_dir.join(&other)).unwrap();
        std::fs::write(&path, &theirs).unwrap();
        let err = check_pair(&stem, &theirs, 2).unwrap_err();
        assert!(err.to_string().contains("another pack"), "{err}");
        let again = consolidate(git_dir, 2).unwrap().unwrap();
        assert_eq!(
            (again.packs, again.objects),
            (4, 12),
            "the new pack and 3 more"
        );
        assert_eq!(std::fs::read(&path).unwrap(), theirs, "left as it is");
        assert!(stem.with_extension("pack").exists());
        assert_eq!(packs(git_dir), 2);
        std::fs::write(&path, &good).unwrap();
        all_readable(git_dir, &trees);
        git_says_clean(git_dir);
    }

    /// A roll-up whose new pack is one of the packs it rolls up (a killed roll-up's new pack
    /// with its old packs beside it, the new one first by name: the same objects in the same
    /// order) keeps that pack: it is the new one, not a rolled-up one to remove.
    #[test]
    fn a_roll_up_that_writes_one_of_its_packs_again_keeps_it() {
        for attempt in 0.. {
            assert!(attempt < 200, "no case where the new pack sorts first");
            let dir = tempfile::tempdir().unwrap();
            Repository::init_bare(dir.path()).unwrap();
            let git_dir = dir.path();
            let pack_dir = git_dir.join("objects/pack");
            let trees = small_packs(git_dir, &format!("blob {attempt} "), 4);
            let saved = tempfile::tempdir().unwrap();
            for name in pack_names(git_dir) {
                std::fs::copy(pack_dir.join(&name), saved.path().join(&name)).unwrap();
            }
            let first = consolidate(git_dir, 2).unwrap().unwrap();
            let old = pack_names_in(saved.path());
            if old.iter().any(|n| *n < first.into) {
                continue; // the old packs' objects would come first: another pack
            }
            for name in &old {
                std::fs::copy(saved.path().join(name), pack_dir.join(name)).unwrap();
            }
            let again = consolidate(git_dir, 2).unwrap().unwrap();
            assert_eq!(again.into, first.into, "the same objects in the same order");
            assert_eq!((again.packs, again.objects), (4, 8));
            assert_eq!(
                pack_names(git_dir),
                [
                    format!("{}.idx", first.into),
                    format!("{}.pack", first.into)
                ]
            );
            all_readable(git_dir, &trees);
            git_says_clean(git_dir);
            return;
        }
    }

    /// A pack with deltas (stock git's `repack`, as a fetched pack would hold) is rolled up
    /// with plain ones: its deltas are resolved and stored whole, the whole objects copied;
    /// stock git checks every object. A pack whose bytes do not match its `.idx`'s CRC-32
    /// is left out of the roll-up, untouched, and the others are rolled up (it stopped the
    /// whole roll-up before).
    #[test]
    fn deltas_are_stored_whole_and_a_damaged_pack_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let git_dir = dir.path();
        let base = "line of a manifest\n".repeat(200);
        // `git pack-objects` with its delta search, as a fetched pack would be made: one pack
        // of deltas naming their base by id (REF_DELTA), one by offset (OFS_DELTA, what a
        // fetch asks for: copied as it is, its base offset would be wrong in the new pack).
        let mut similar: Vec<Oid> = Vec::new();
        for (set, flags) in [(0..20, &[][..]), (20..40, &["--delta-base-offset"][..])] {
            let oids: Vec<Oid> = set
                .map(|i| repo.blob(format!("{base}{i}\n").as_bytes()).unwrap())
                .collect();
            let before = pack_names(git_dir);
            let Ok(mut child) = std::process::Command::new("git")
                .arg("--git-dir")
                .arg(git_dir)
                .args(["pack-objects", "-q"])
                .args(flags)
                .arg(git_dir.join("objects/pack/pack"))
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .spawn()
            else {
                return; // no stock git to write deltas
            };
            let list: String = oids.iter().map(|o| format!("{o}\n")).collect();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(list.as_bytes())
                .unwrap();
            assert!(child.wait().unwrap().success());
            let new = pack_names(git_dir)
                .into_iter()
                .find(|n| n.ends_with(".pack") && !before.contains(n))
                .unwrap();
            let v = std::process::Command::new("git")
                .arg("--git-dir")
                .arg(git_dir)
                .args(["verify-pack", "-v"])
                .arg(git_dir.join(format!("objects/pack/{new}")))
                .output()
                .unwrap();
            assert!(
                String::from_utf8_lossy(&v.stdout).contains("chain length"),
                "git wrote deltas: {v:?}"
            );
            similar.extend(oids);
        }
        let trees = small_packs(git_dir, "blob ", 6);
        let r = consolidate(git_dir, 2).unwrap().unwrap();
        assert_eq!((r.packs, r.objects), (8, 40 + 12));
        all_readable(git_dir, &trees);
        let other = Repository::open_bare(git_dir).unwrap();
        for (i, b) in similar.iter().enumerate() {
            let blob = other.find_blob(*b).unwrap();
            assert_eq!(blob.content(), format!("{base}{i}\n").as_bytes());
        }
        git_says_clean(git_dir).unwrap();
        let idx = git_dir.join(format!("objects/pack/{}.idx", r.into));
        let v = std::process::Command::new("git")
            .args(["verify-pack", "-v"])
            .arg(&idx)
            .output()
            .unwrap();
        assert!(v.status.success(), "{v:?}");
        assert!(!String::from_utf8_lossy(&v.stdout).contains("chain length"));

        // Damage one whole object's compressed bytes in a pack about to be rolled up.
        small_packs(git_dir, "more ", 3);
        let before = pack_names(git_dir);
        let victim = before
            .iter()
            .find(|n| n.ends_with(".pack") && !n.starts_with(&r.into))
            .unwrap();
        let path = git_dir.join("objects/pack").join(victim);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() - 20 - 3;
        bytes[at] ^= 0x55;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        let again = consolidate(git_dir, 2).unwrap().unwrap();
        assert_eq!((again.packs, again.objects), (2, 4), "the two others");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "left as it is");
        let after = pack_names(git_dir);
        assert_eq!(
            after,
            {
                let mut v = vec![
                    victim.clone(),
                    victim.replace(".pack", ".idx"),
                    format!("{}.idx", r.into),
                    format!("{}.pack", r.into),
                    format!("{}.idx", again.into),
                    format!("{}.pack", again.into),
                ];
                v.sort();
                v
            },
            "the damaged pack, the first roll-up and the new one, no temporary left"
        );
    }

    /// The pack `stem` (`pack-<checksum>`) made by one session of [`small_packs`].
    fn one_pack(git_dir: &Path, prefix: &str) -> (String, Oid) {
        let before = pack_names(git_dir);
        let tree = small_packs(git_dir, prefix, 1)[0];
        let name = pack_names(git_dir)
            .into_iter()
            .find(|n| n.ends_with(".pack") && !before.contains(n))
            .unwrap();
        (name.trim_end_matches(".pack").to_owned(), tree)
    }

    /// Among many packs past the limit, one whose bytes fail their CRC-32 and one whose
    /// `.idx` fails its checksum are left alone (every byte of them) while the others are
    /// rolled up, and the count comes back under the limit; the next call does not try
    /// them again as a whole roll-up (nothing to do), and once repaired they are readable.
    #[test]
    fn damaged_packs_among_many_are_left_alone_while_the_others_roll_up() {
        let dir = tempfile::tempdir().unwrap();
        Repository::init_bare(dir.path()).unwrap();
        let git_dir = dir.path();
        let pack_dir = git_dir.join("objects/pack");
        let mut trees = small_packs(git_dir, "blob ", 5);
        let (crc_stem, crc_tree) = one_pack(git_dir, "crc ");
        trees.extend(small_packs(git_dir, "blob more ", 5));
        let (idx_stem, idx_tree) = one_pack(git_dir, "idx ");
        trees.extend(small_packs(git_dir, "blob last ", 5));
        let damage = |name: String, at: &dyn Fn(usize) -> usize| {
            let path = pack_dir.join(name);
            let good = std::fs::read(&path).unwrap();
            let mut bad = good.clone();
            let i = at(bad.len());
            bad[i] ^= 0x55;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            std::fs::write(&path, &bad).unwrap();
            (path, good, bad)
        };
        let crc = damage(format!("{crc_stem}.pack"), &|len| len - 20 - 3);
        let idx = damage(format!("{idx_stem}.idx"), &|_| 8 + 256 * 4 + 19);
        assert_eq!(packs(git_dir), 17);
        let r = consolidate(git_dir, 4)
            .unwrap()
            .expect("the others rolled up");
        assert_eq!((r.packs, r.objects), (15, 30));
        assert_eq!(
            packs(git_dir),
            3,
            "under the limit: the new pack and the two damaged"
        );
        for (path, _, bad) in [&crc, &idx] {
            assert_eq!(&std::fs::read(path).unwrap(), bad, "left as it is");
        }
        assert!(pack_dir.join(format!("{crc_stem}.idx")).exists());
        assert!(pack_dir.join(format!("{idx_stem}.pack")).exists());
        all_readable(git_dir, &trees);
        assert_eq!(consolidate(git_dir, 4).unwrap(), None);
        assert_eq!(
            consolidate(git_dir, 2).unwrap(),
            None,
            "only damaged ones are past it"
        );
        assert_eq!(packs(git_dir), 3);
        // Repaired (what `git index-pack` or a backup does), readable and rolled up again.
        for (path, good, _) in [&crc, &idx] {
            std::fs::write(path, good).unwrap();
        }
        trees.extend([crc_tree, idx_tree]);
        all_readable(git_dir, &trees);
        git_says_clean(git_dir);
    }

    /// A rolled-up pack is removed in steps ([`remove_pack`]: `.pack` renamed to a temporary,
    /// `.idx` removed, the temporary removed); a process killed after any of them leaves every
    /// object readable by libgit2 and stock git (`git fsck --strict`), and the next call
    /// finishes the removal (young as the temporary is) and leaves no garbage.
    #[test]
    fn a_roll_up_killed_at_each_step_of_a_removal_leaves_every_object_readable() {
        for step in 0..=3 {
            let dir = tempfile::tempdir().unwrap();
            Repository::init_bare(dir.path()).unwrap();
            let git_dir = dir.path();
            let pack_dir = git_dir.join("objects/pack");
            let trees = small_packs(git_dir, "blob ", 4);
            let saved = tempfile::tempdir().unwrap();
            for name in pack_names(git_dir) {
                std::fs::copy(pack_dir.join(&name), saved.path().join(&name)).unwrap();
            }
            let first = consolidate(git_dir, 2).unwrap().unwrap();
            let old = pack_names_in(saved.path());
            for name in &old {
                std::fs::copy(saved.path().join(name), pack_dir.join(name)).unwrap();
            }
            // The new pack is visible; one old pack's removal is killed after `step` steps.
            let stem = old[0].trim_end_matches(".idx").to_owned();
            assert_ne!(stem, first.into);
            let temp = pack_dir.join(format!("{ROLLED_PREFIX}{stem}"));
            if step >= 1 {
                std::fs::rename(pack_dir.join(format!("{stem}.pack")), &temp).unwrap();
            }
            if step >= 2 {
                std::fs::remove_file(pack_dir.join(format!("{stem}.idx"))).unwrap();
            }
            if step >= 3 {
                std::fs::remove_file(&temp).unwrap();
            }
            all_readable(git_dir, &trees);
            if let Ok(fsck) = std::process::Command::new("git")
                .arg("--git-dir")
                .arg(git_dir)
                .args(["fsck", "--full", "--strict", "--no-dangling"])
                .output()
            {
                assert!(fsck.status.success(), "step {step}: {fsck:?}");
            }
            consolidate(git_dir, 2).unwrap();
            assert!(
                pack_names(git_dir)
                    .iter()
                    .all(|n| !n.starts_with("tmp_") && !n.starts_with(&stem)),
                "step {step}: {:?}",
                pack_names(git_dir)
            );
            all_readable(git_dir, &trees);
            git_says_clean(git_dir);
        }
    }

    /// Only temporaries are removed when old (`tmp_pack_`, `tmp_idx_`, as git's `prune`);
    /// a `.pack` without `.idx`, an `.idx` without `.pack`, a `.rev`/`.bitmap`/`.mtimes`
    /// without either are kept, however old, and reported with what is missing; young
    /// temporaries stay (a live writer's).
    #[test]
    fn only_old_temporaries_are_removed_and_other_garbage_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let pack_dir = dir.path();
        let old = std::time::SystemTime::now() - 2 * LEFTOVER_AGE;
        let files = [
            ("tmp_pack_a1b2c3", true),
            ("tmp_idx_a1b2c3", true),
            ("tmp_pack_young", false),
            ("pack-1111.pack", true),
            ("pack-2222.idx", true),
            ("pack-3333.rev", true),
            ("pack-4444.bitmap", true),
            ("pack-5555.mtimes", true),
            ("pack-6666.pack", true),
            ("pack-6666.idx", true),
            ("pack-6666.rev", true),
            ("pack-7777.pack", true),
            ("pack-7777.keep", true),
        ];
        for (name, is_old) in files {
            let f = File::create(pack_dir.join(name)).unwrap();
            if is_old {
                f.set_modified(old).unwrap();
            }
        }
        let names: HashSet<String> = files.iter().map(|f| f.0.to_owned()).collect();
        let reported = remove_leftovers(pack_dir, &names).unwrap();
        assert_eq!(
            reported,
            [
                ("pack-1111.pack", "no .idx"),
                ("pack-2222.idx", "no .pack"),
                ("pack-3333.rev", "no .pack and no .idx"),
                ("pack-4444.bitmap", "no .pack and no .idx"),
                ("pack-5555.mtimes", "no .pack and no .idx"),
                ("pack-7777.pack", "no .idx"),
            ]
            .map(|(n, m)| (pack_dir.join(n), m))
        );
        let mut left: Vec<&str> = files.iter().map(|f| f.0).collect();
        left.retain(|n| !n.starts_with("tmp_") || *n == "tmp_pack_young");
        left.sort_unstable();
        assert_eq!(pack_names_in(pack_dir), left);
    }
}
