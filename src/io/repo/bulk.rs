//! Objects written in bulk: the blobs and trees of an output commit are hashed and held in
//! memory here, and stored as packs — a plain pack of the objects the disk lacks, each one
//! whole and zlib-compressed (no delta search: [`super::pack`]'s `PlainPack`), with its
//! index written there too (`idx_bytes`) — instead of one loose file (and one `open`,
//! `write`, `rename`) per object: 270,000 files for the first commit of 10,000 tenants, 10,000
//! for a product's version bump. Like loose objects, the stored objects are not deltas of each
//! other (git's `gc` or `repack` packs them tighter); a push builds its own pack anyway
//! (libgit2's pack builder reuses no stored delta). The pack format is [`super::pack`]'s job,
//! keeping the pack count bounded [`super::rollup`]'s.
//!
//! - Each object is hashed once, here (git's object id: the SHA-1 of `<kind> <size>\0` and
//!   the bytes, a plain SHA-1 without collision detection: [`super::pack::object_id`]) — a blob possibly
//!   on another thread, as a [`HashedBlob`], whose id only [`HashedBlob::of`] computes — and nothing goes
//!   through libgit2's object database on the way in: its
//!   `git_odb_write` first looks for the object in every backend and, missing it, rescans
//!   `objects/pack/` before writing (`odb.c` `git_odb__freshen` → `git_odb_refresh`): a
//!   directory read for every new object, 9 % of a product release's CPU (BENCHMARKS.md).
//! - Trees are edited here too ([`TreeEntries`]), written as git writes them (entries in
//!   git's order: by name, a directory's name compared as if it ended in `/`; the mode in
//!   octal without leading zeros), with the names and modes libgit2's tree builder accepts
//!   (`tree.c` `valid_entry_name`, `valid_filemode`), less the names `git fsck --strict` reads
//!   as `.git`. Every entry names an object on disk or queued here: the ids come from trees
//!   read here or from writes here.
//! - An object already on disk or queued is not stored again. What is on disk is taken once,
//!   when the session starts ([`OnDisk`]: the packs' objects through one table of their ids,
//!   the loose objects' ids), and kept up to date with what the session stores: libgit2's
//!   answer to "is it on disk?" for an object that is not, which is most objects a commit
//!   stores, searched every pack in turn and then the loose directory (5 % of a release's
//!   CPU at 10,000 tenants). An object another process stores while the session runs may
//!   be stored a second time, in a pack of this session's: harmless (git reads either copy;
//!   its `gc` keeps one), as git's own `repack` without `-d` leaves.
//! - Packs are written on a thread of their own while the caller goes on hashing and
//!   queueing objects: the first commit of 10,000 tenants deflates 1.6 GB into packs. The
//!   queued objects go to it in batches of [`BATCH_BYTES`] (one batch waiting at most: the
//!   caller waits when it is behind); it compresses each object as it comes and drops its
//!   bytes, and stores a pack once it holds more than [`FLUSH_BYTES`] uncompressed, and at
//!   the end. An object handed to it stays known here (a tree with its bytes, to be read
//!   back) until its pack is on disk and the object database sees it: never queued twice,
//!   always findable. Memory stays bounded: a batch queued, one waiting, one being
//!   compressed, the current pack's compressed bytes, and the trees not yet on disk.
//! - Nothing refers to a queued object until [`in_bulk`] returns: the caller writes the
//!   commit (and moves the branch) after every object it names is on disk.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, SyncSender};
use std::thread::JoinHandle;

use git2::{ObjectType, Odb, OdbLookupFlags, Oid, Repository};

use super::pack::{Object, PlainPack, StoredPack, object_id};
use super::packed::Packed;

/// Uncompressed bytes of objects in one pack (a pack is stored once it holds more).
const FLUSH_BYTES: usize = 64 << 20;

/// Uncompressed bytes of objects queued before they go to the pack writer as a batch.
const BATCH_BYTES: usize = 4 << 20;

/// A tree's mode (`040000`).
const TREE_MODE: i32 = 0o040000;

/// A session of bulk writes; see [`in_bulk`].
pub struct Bulk<'r> {
    repo: &'r Repository,
    /// The repository's object database: what is on disk.
    disk: Odb<'r>,
    /// Objects queued in memory since the last batch went to the pack writer, in the order
    /// written.
    queued: RefCell<Vec<Object>>,
    /// Where each queued object is in `queued`.
    queued_at: RefCell<HashMap<Oid, usize>>,
    queued_bytes: Cell<usize>,
    flush_at: usize,
    /// Packs written so far, each with its files' identity ([`StoredPack`]).
    packs: RefCell<Vec<StoredPack>>,
    /// Objects handed to the pack writer whose pack the object database does not see yet:
    /// each with the number of its batch.
    sent: RefCell<HashMap<Oid, (u64, Sent)>>,
    /// Batches handed to the pack writer so far.
    batches: Cell<u64>,
    /// The pack writer, once started.
    writer: RefCell<Option<Writer>>,
    /// Why a batch was lost (the writer failed or could not start): its objects stay in
    /// `sent`, so every later hand-over, and the session, fails with it.
    lost: RefCell<Option<String>>,
    /// What was on disk when the session started, taken at the first question.
    on_disk: std::cell::OnceCell<OnDisk>,
    /// Every object handed to the pack writer in this session (on disk once it is done).
    handed: RefCell<HashSet<Oid>>,
    /// Every object asked to be stored, stored already or not ([`Outcome::placed`]).
    placed: RefCell<Vec<Oid>>,
    /// The objects of `placed` stored before the session ([`Outcome::reused`]).
    reused: RefCell<HashSet<Oid>>,
}

/// What a session stored, for the push that follows.
pub(super) struct Outcome {
    /// The packs it wrote ([`StoredPack`]).
    pub packs: Vec<StoredPack>,
    /// Every object it was asked to store (stored by it or found stored), sorted, each once:
    /// every object the trees built in the session name that their base trees did not.
    pub placed: Vec<Oid>,
    /// How many of `placed` were stored before the session began (found, not stored): a
    /// remote that has the base trees likely has them too.
    pub reused: usize,
}

/// The objects on disk when a session started.
struct OnDisk {
    /// The packs (the trees [`read_tree`] reads, and the objects they list).
    packed: Packed,
    /// The loose objects' ids.
    loose: HashSet<Oid>,
    /// Whether `packed` and `loose` are all there is: false when the repository borrows
    /// objects from others (`objects/info/alternates`) or its loose objects could not be
    /// listed; an object found in neither is then asked of libgit2.
    complete: bool,
}

impl OnDisk {
    fn take(git_dir: &Path) -> OnDisk {
        let objects = git_dir.join("objects");
        let loose = loose_ids(&objects);
        let alternates = std::fs::symlink_metadata(objects.join("info").join("alternates")).is_ok();
        OnDisk {
            packed: Packed::open(git_dir),
            complete: loose.is_some() && !alternates,
            loose: loose.unwrap_or_default(),
        }
    }
}

/// Sets the modification time of loose object `oid` of `git_dir` to now (git's
/// `freshen_loose_object`), through a descriptor opened without following a link or waiting
/// on a FIFO; whether it was set.
fn freshen_loose(git_dir: &Path, oid: Oid) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(loose_path(git_dir, oid))
        .and_then(|file| {
            if !file.metadata()?.is_file() {
                return Err(std::io::Error::other("not a regular file"));
            }
            file.set_modified(std::time::SystemTime::now())
        })
        .is_ok()
}

/// Where git keeps loose object `oid` of `git_dir`: `objects/` and its id's hex digits, the
/// first two as a directory.
fn loose_path(git_dir: &Path, oid: Oid) -> PathBuf {
    let hex = oid.to_string();
    git_dir.join("objects").join(&hex[..2]).join(&hex[2..])
}

/// The ids of the loose objects below `objects` (`xx/` directories of 38-hex-digit files);
/// `None` when a directory cannot be read.
fn loose_ids(objects: &Path) -> Option<HashSet<Oid>> {
    let mut ids = HashSet::new();
    for d in std::fs::read_dir(objects).ok()? {
        let d = d.ok()?;
        let name = d.file_name();
        let Some(first) = name.to_str().filter(|n| n.len() == 2 && lower_hex(n)) else {
            continue;
        };
        if !d.file_type().ok()?.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(d.path()).ok()? {
            let f = f.ok()?;
            let rest = f.file_name();
            // Lower-case hex only: the name git and libgit2 look an id up by.
            if let Some(rest) = rest.to_str().filter(|r| r.len() == 38 && lower_hex(r))
                && let Ok(oid) = Oid::from_str(&format!("{first}{rest}"))
            {
                ids.insert(oid);
            }
        }
    }
    Some(ids)
}

/// Whether `s` is all lower-case hex digits.
fn lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// What is kept of an object handed to the pack writer: its kind, and a tree's bytes.
struct Sent {
    kind: ObjectType,
    tree: Option<Vec<u8>>,
}

/// The thread writing packs ([`write_packs`]): batches go to it, and each pack it stored
/// comes back with the number of its last batch.
struct Writer {
    batches: Option<SyncSender<(u64, Vec<Object>)>>,
    stored: Receiver<(u64, StoredPack)>,
    thread: JoinHandle<std::io::Result<()>>,
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
    in_bulk_stored(git_dir, wrap, build).map(|(out, _)| out)
}

/// [`in_bulk`], with what it stored ([`Outcome`]: the packs, [`StoredPack`]: the name and the files' identity of
/// each), which hold only objects hashed here from the very bytes deflated into them: a local
/// push copies their entries on their CRC-32 alone while the files are still these
/// ([`super::pack::FreshPacks`]).
pub(super) fn in_bulk_stored<T, E>(
    git_dir: &Path,
    wrap: impl Fn(&'static str, git2::Error) -> E,
    build: impl FnOnce(&Bulk<'_>) -> Result<T, E>,
) -> Result<(T, Outcome), E> {
    in_bulk_flushing_at(FLUSH_BYTES, git_dir, wrap, build)
}

/// [`in_bulk_stored`], the pack writer storing a pack once it holds more than `flush_at` bytes
/// uncompressed (the queued objects handed to it whenever they hold more than `flush_at` or
/// [`BATCH_BYTES`], whichever is less).
fn in_bulk_flushing_at<T, E>(
    flush_at: usize,
    git_dir: &Path,
    wrap: impl Fn(&'static str, git2::Error) -> E,
    build: impl FnOnce(&Bulk<'_>) -> Result<T, E>,
) -> Result<(T, Outcome), E> {
    let repo = super::handle::open(git_dir).map_err(|e| wrap("open the repository", e))?;
    let disk = repo
        .odb()
        .map_err(|e| wrap("open the object database", e))?;
    let bulk = Bulk {
        repo: &repo,
        disk,
        queued: RefCell::default(),
        queued_at: RefCell::default(),
        queued_bytes: Cell::new(0),
        flush_at,
        packs: RefCell::default(),
        sent: RefCell::default(),
        batches: Cell::new(0),
        writer: RefCell::default(),
        lost: RefCell::default(),
        on_disk: std::cell::OnceCell::new(),
        handed: RefCell::default(),
        placed: RefCell::default(),
        reused: RefCell::default(),
    };
    let out = build(&bulk)?;
    bulk.finish()
        .map_err(|e| wrap("store the new objects as a pack", e))?;
    let packs = bulk.packs.take();
    tracing::debug!(packs = packs.len(), "objects stored");
    let mut placed = bulk.placed.take();
    placed.sort_unstable();
    placed.dedup();
    let reused = bulk.reused.take().len();
    Ok((
        out,
        Outcome {
            packs,
            placed,
            reused,
        },
    ))
}

/// A blob's bytes with their id, hashed on whichever thread made it ([`HashedBlob::of`]):
/// a commit reads and hashes the files it stores on a thread of its own, beside the one that
/// edits its trees ([`Bulk::store_blob`]).
pub struct HashedBlob {
    oid: Oid,
    bytes: Vec<u8>,
}

impl HashedBlob {
    /// `bytes` and their id as a blob (see [`object_id`]).
    pub fn of(bytes: Vec<u8>) -> Result<HashedBlob, git2::Error> {
        Ok(HashedBlob {
            oid: object_id(ObjectType::Blob, &bytes)?,
            bytes,
        })
    }

    /// The blob's id.
    #[cfg(test)]
    pub fn id(&self) -> Oid {
        self.oid
    }
}

impl Bulk<'_> {
    /// `bytes` as a blob.
    pub fn blob(&self, bytes: &[u8]) -> Result<Oid, git2::Error> {
        let oid = object_id(ObjectType::Blob, bytes)?;
        self.store(ObjectType::Blob, oid, Cow::Borrowed(bytes))
    }

    /// A blob hashed already.
    pub fn store_blob(&self, blob: HashedBlob) -> Result<Oid, git2::Error> {
        self.store(ObjectType::Blob, blob.oid, Cow::Owned(blob.bytes))
    }

    /// A tree to edit, starting from `base` (empty: `None`); write it with
    /// [`Bulk::write_tree`].
    pub fn treebuilder(&self, base: Option<&TreeEntries>) -> Result<TreeEntries, git2::Error> {
        Ok(base.cloned().unwrap_or_default())
    }

    /// Writes `tb`'s tree.
    pub fn write_tree(&self, tb: &TreeEntries) -> Result<Oid, git2::Error> {
        let bytes = tb.bytes();
        let oid = object_id(ObjectType::Tree, &bytes)?;
        self.store(ObjectType::Tree, oid, Cow::Owned(bytes))
    }

    /// A tree's entries, read from memory or disk.
    pub fn find_tree(&self, oid: Oid) -> Result<TreeEntries, git2::Error> {
        if let Some(&i) = self.queued_at.borrow().get(&oid) {
            let o = &self.queued.borrow()[i];
            return match o.kind {
                ObjectType::Tree => TreeEntries::parse(oid, &o.data),
                other => Err(not_a_tree(oid, other)),
            };
        }
        if let Some((_, sent)) = self.sent.borrow().get(&oid) {
            return match &sent.tree {
                Some(bytes) => TreeEntries::parse(oid, bytes),
                None => Err(not_a_tree(oid, sent.kind)),
            };
        }
        read_tree(&self.on_disk().packed, &self.disk, oid)
    }

    fn on_disk(&self) -> &OnDisk {
        self.on_disk.get_or_init(|| OnDisk::take(self.repo.path()))
    }

    /// Whether `oid` is on disk or handed to the pack writer: as the session started, or
    /// stored by it since (see the module's documentation). An object found on disk is
    /// freshened as git freshens it before relying on it instead of writing it
    /// (`object-file.c` `write_object_file_flags`: `freshen_packed_object`, then
    /// `freshen_loose_object`): its pack's or its file's modification time is set to now, so
    /// a concurrent `git gc` does not prune it as an old unreachable object while the commit
    /// that names it is being made. An object whose time cannot be set counts as not stored,
    /// and is written again. (One found in a repository this one borrows from, asked of
    /// libgit2, is not freshened: libgit2's existence check does not.)
    fn stored(&self, oid: Oid) -> bool {
        if self.handed.borrow().contains(&oid) {
            return true;
        }
        let known = self.on_disk();
        if known.packed.freshen(oid)
            || (known.loose.contains(&oid) && freshen_loose(self.repo.path(), oid))
        {
            return true;
        }
        // libgit2 is asked only about an object this repository's own packs and loose files
        // do not hold: for one they hold that could not be freshened (a cruft pack's, a
        // removed pack's, a link) it would answer yes, and the object would go unwritten.
        !known.complete
            && !known.packed.contains(oid)
            && !known.loose.contains(&oid)
            && self.disk.exists_ext(oid, OdbLookupFlags::NO_REFRESH)
    }

    /// Queues `data`, an object of `kind` whose id is `oid` (copied only when borrowed),
    /// unless it is on disk or queued already; returns `oid`.
    fn store(&self, kind: ObjectType, oid: Oid, data: Cow<'_, [u8]>) -> Result<Oid, git2::Error> {
        self.placed.borrow_mut().push(oid);
        if self.queued_at.borrow().contains_key(&oid) {
            return Ok(oid);
        }
        if self.stored(oid) {
            if !self.handed.borrow().contains(&oid) {
                self.reused.borrow_mut().insert(oid);
            }
            return Ok(oid);
        }
        self.queued_bytes.set(self.queued_bytes.get() + data.len());
        {
            let mut queued = self.queued.borrow_mut();
            self.queued_at.borrow_mut().insert(oid, queued.len());
            queued.push(Object {
                oid,
                kind,
                data: data.into_owned(),
            });
        }
        if self.queued_bytes.get() > self.flush_at.min(BATCH_BYTES) {
            self.send()?;
        }
        Ok(oid)
    }

    /// Hands the queued objects to the pack writer (started on first use) as one batch,
    /// after taking in the packs it stored since the last call. Once a batch is lost, this
    /// fails with its error: the build may go on past an error, and the lost objects, known
    /// as stored, are never queued again.
    fn send(&self) -> Result<(), git2::Error> {
        if let Some(why) = &*self.lost.borrow() {
            return Err(git2::Error::from_str(why));
        }
        self.take_stored()?;
        let batch = std::mem::take(&mut *self.queued.borrow_mut());
        self.queued_at.borrow_mut().clear();
        self.queued_bytes.set(0);
        if batch.is_empty() {
            return Ok(());
        }
        let n = self.batches.get() + 1;
        self.batches.set(n);
        self.handed.borrow_mut().extend(batch.iter().map(|o| o.oid));
        self.sent.borrow_mut().extend(batch.iter().map(|o| {
            let tree = (o.kind == ObjectType::Tree).then(|| o.data.clone());
            (o.oid, (n, Sent { kind: o.kind, tree }))
        }));
        let handed = self.hand_over(n, batch);
        if let Err(e) = &handed {
            *self.lost.borrow_mut() = Some(e.message().to_owned());
        }
        handed
    }

    /// Hands batch `n` to the pack writer, started on first use.
    fn hand_over(&self, n: u64, batch: Vec<Object>) -> Result<(), git2::Error> {
        if self.writer.borrow().is_none() {
            *self.writer.borrow_mut() = Some(self.start_writer()?);
        }
        let delivered = self
            .writer
            .borrow()
            .as_ref()
            .and_then(|w| w.batches.as_ref())
            .is_some_and(|tx| tx.send((n, batch)).is_ok());
        if delivered {
            Ok(())
        } else {
            // The writer stopped: its error says why.
            Err(self.stop_writer().err().unwrap_or_else(|| {
                git2::Error::from_str("the pack writer stopped before the last batch")
            }))
        }
    }

    fn start_writer(&self) -> Result<Writer, git2::Error> {
        let (batches, batches_rx) = std::sync::mpsc::sync_channel(1);
        let (stored_tx, stored) = std::sync::mpsc::channel();
        let (pack_dir, flush_at) = (self.pack_dir(), self.flush_at);
        let thread = std::thread::Builder::new()
            .name("provisio-pack".to_owned())
            .spawn(move || write_packs(&pack_dir, flush_at, &batches_rx, &stored_tx))
            .map_err(|e| git2::Error::from_str(&format!("start the pack writer: {e}")))?;
        Ok(Writer {
            batches: Some(batches),
            stored,
            thread,
        })
    }

    /// Takes in the packs the writer stored: the object database made to see them (without
    /// a rescan per miss), then their objects forgotten here.
    fn take_stored(&self) -> Result<(), git2::Error> {
        let mut last = None;
        if let Some(w) = &*self.writer.borrow() {
            while let Ok((n, pack)) = w.stored.try_recv() {
                self.packs.borrow_mut().push(pack);
                last = Some(n);
            }
        }
        if let Some(n) = last {
            self.disk.refresh()?;
            self.sent.borrow_mut().retain(|_, (batch, _)| *batch > n);
        }
        Ok(())
    }

    /// Ends the writer: no more batches, its last pack stored, the thread joined.
    fn stop_writer(&self) -> Result<(), git2::Error> {
        let Some(mut w) = self.writer.borrow_mut().take() else {
            return Ok(());
        };
        drop(w.batches.take());
        let result = w.thread.join().unwrap_or_else(|p| {
            Err(std::io::Error::other(format!(
                "the pack writer panicked: {}",
                panic_message(&*p)
            )))
        });
        while let Ok((_, pack)) = w.stored.try_recv() {
            self.packs.borrow_mut().push(pack);
        }
        result.map_err(|e| {
            git2::Error::from_str(&format!(
                "write a pack in {}: {e}",
                self.pack_dir().display()
            ))
        })
    }

    /// Stores everything queued or handed to the writer, and makes the object database see it.
    fn finish(&self) -> Result<(), git2::Error> {
        self.send()?;
        self.stop_writer()?;
        self.disk.refresh()?;
        self.sent.borrow_mut().clear();
        Ok(())
    }

    fn pack_dir(&self) -> PathBuf {
        self.repo.path().join("objects").join("pack")
    }
}

impl Drop for Bulk<'_> {
    /// A session that ends early (its `build` failed) still waits for the writer: no thread
    /// of it outlives [`in_bulk`]. What it stored are packs of unreferenced objects, as
    /// `in_bulk` documents.
    fn drop(&mut self) {
        if let Some(mut w) = self.writer.get_mut().take() {
            drop(w.batches.take());
            // The build's own error is the one returned; the writer's is not lost unseen.
            match w.thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(
                    "the pack writer also failed in {}: {e}",
                    self.pack_dir().display()
                ),
                Err(p) => tracing::warn!("the pack writer also panicked: {}", panic_message(&*p)),
            }
        }
    }
}

/// What a panic said (its message, when it was a string).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

/// The pack writer's loop: each batch's objects compressed into the current pack as they
/// come, the pack stored once it holds more than `flush_at` uncompressed bytes (sent back on
/// `stored` with the number of its last batch), and what is left stored when no batch is
/// left.
fn write_packs(
    pack_dir: &Path,
    flush_at: usize,
    batches: &Receiver<(u64, Vec<Object>)>,
    stored: &Sender<(u64, StoredPack)>,
) -> std::io::Result<()> {
    let mut pack = PlainPack::default();
    let mut last = 0;
    for (n, batch) in batches {
        for o in &batch {
            pack.add(o)?;
        }
        drop(batch);
        last = n;
        if pack.raw_bytes() > flush_at {
            let done = std::mem::take(&mut pack).store(pack_dir)?;
            // The session may have ended (its build failed): nobody to tell.
            let _ = stored.send((n, done));
        }
    }
    if !pack.is_empty() {
        let done = pack.store(pack_dir)?;
        let _ = stored.send((last, done));
    }
    Ok(())
}

/// The tree `oid` on disk: read from `packed` when a pack holds it whole, else through
/// `odb` (a delta, a loose object, a pack written since `packed` was opened, damage: see
/// [`super::packed`]).
pub fn read_tree(packed: &Packed, odb: &Odb<'_>, oid: Oid) -> Result<TreeEntries, git2::Error> {
    if let Some((kind, data)) = packed.read(oid) {
        return match kind {
            ObjectType::Tree => TreeEntries::parse(oid, &data),
            other => Err(not_a_tree(oid, other)),
        };
    }
    let obj = odb.read(oid)?;
    match obj.kind() {
        ObjectType::Tree => TreeEntries::parse(oid, obj.data()),
        other => Err(not_a_tree(oid, other)),
    }
}

fn not_a_tree(oid: Oid, kind: ObjectType) -> git2::Error {
    git2::Error::from_str(&format!("object {oid} is a {kind}, not a tree"))
}

/// A tree's entries by name (each its id and mode), edited in memory: what libgit2's tree
/// builder did here, without its object database (see the module's documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeEntries {
    entries: BTreeMap<Vec<u8>, (Oid, i32)>,
    /// Entries a malformed tree read from disk names again later (`git fsck`'s
    /// `duplicateEntries`; libgit2 reads such a tree as it is): each name, id and mode, in the
    /// tree's order. Kept so that everything the tree reaches is listed
    /// ([`TreeEntries::iter_all`]); never written back.
    shadowed: Vec<(Vec<u8>, Oid, i32)>,
}

impl TreeEntries {
    /// Adds or replaces the entry `name`; refuses what libgit2's tree builder refuses: a mode
    /// that is not a tree's, a blob's, an executable's, a link's or a submodule's, the null id,
    /// and a name
    /// that is empty, `.`, `..`, holds `/` or NUL, or is `.git` as some file system reads it
    /// (any case, trailing dots or spaces, `git~1`, an NTFS stream `.git:x`, a component after
    /// `\`, HFS+'s ignored code points; see `valid_name`).
    pub fn insert(
        &mut self,
        name: impl AsRef<[u8]>,
        oid: Oid,
        mode: i32,
    ) -> Result<(), git2::Error> {
        let name = name.as_ref();
        if !matches!(mode, 0o040000 | 0o100644 | 0o100755 | 0o120000 | 0o160000) {
            return Err(git2::Error::from_str(&format!(
                "failed to insert entry: invalid filemode {mode:o} for {}",
                String::from_utf8_lossy(name)
            )));
        }
        if oid.is_zero() {
            return Err(git2::Error::from_str(&format!(
                "failed to insert entry: invalid null OID for {}",
                String::from_utf8_lossy(name)
            )));
        }
        if !valid_name(name) {
            return Err(git2::Error::from_str(&format!(
                "failed to insert entry: invalid name for a tree entry - {}",
                String::from_utf8_lossy(name)
            )));
        }
        self.entries.insert(name.to_vec(), (oid, mode));
        Ok(())
    }

    /// The entry `name`: its id and its mode as libgit2 reads it (`git_tree_entry_filemode`:
    /// a blob mode with an execute bit is `100755`, any other `100644`).
    pub fn get(&self, name: impl AsRef<[u8]>) -> Option<(Oid, i32)> {
        self.entries
            .get(name.as_ref())
            .map(|&(oid, mode)| (oid, normalize_mode(mode)))
    }

    /// The entry `name` if it is a tree as libgit2 reads its kind (`git_tree_entry_type`:
    /// `S_ISDIR`, the mode's type bits alone, so `41000` is a tree where [`TreeEntries::get`]
    /// reads a blob).
    pub fn get_tree(&self, name: impl AsRef<[u8]>) -> Option<Oid> {
        self.entries
            .get(name.as_ref())
            .filter(|&&(_, mode)| mode & 0o170000 == TREE_MODE)
            .map(|&(oid, _)| oid)
    }

    /// Removes the entry `name`, if any.
    pub fn remove(&mut self, name: impl AsRef<[u8]>) {
        self.entries.remove(name.as_ref());
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries by name (byte order): each name, id and mode as the tree stores it.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Oid, i32)> {
        self.entries
            .iter()
            .map(|(name, &(oid, mode))| (name.as_slice(), oid, mode))
    }

    /// Every entry the tree stores, a name given twice included: [`TreeEntries::iter`], then
    /// the entries a later one of the same name shadows (only in a malformed tree read from
    /// disk), as libgit2 iterates such a tree.
    pub fn iter_all(&self) -> impl Iterator<Item = (&[u8], Oid, i32)> {
        self.iter().chain(
            self.shadowed
                .iter()
                .map(|(name, oid, mode)| (name.as_slice(), *oid, *mode)),
        )
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The tree object's bytes: `<mode in octal> <name>\0<20-byte id>` per entry, in git's
    /// order (`tree.c` `entry_sort_cmp` → `git_fs_path_cmp`: names compared byte by byte, a
    /// tree's as if it ended in `/`).
    fn bytes(&self) -> Vec<u8> {
        let mut sorted: Vec<(&Vec<u8>, &(Oid, i32))> = self.entries.iter().collect();
        // The map's order is the bytes' order; only a tree's name followed by a byte below `/`
        // in another name moves.
        sorted.sort_by(|(a, (_, ma)), (b, (_, mb))| git_order(a, *ma, b, *mb));
        let mut out = Vec::with_capacity(sorted.len() * 48);
        for (name, (oid, mode)) in sorted {
            out.extend_from_slice(format!("{mode:o} ").as_bytes());
            out.extend_from_slice(name);
            out.push(0);
            out.extend_from_slice(oid.as_bytes());
        }
        out
    }

    /// The entries of tree `oid` whose bytes are `data`.
    fn parse(oid: Oid, mut data: &[u8]) -> Result<TreeEntries, git2::Error> {
        let bad = || git2::Error::from_str(&format!("tree {oid} is malformed"));
        let (mut entries, mut shadowed) = (BTreeMap::new(), Vec::new());
        while !data.is_empty() {
            let space = data.iter().position(|&b| b == b' ').ok_or_else(bad)?;
            // As libgit2 reads a tree (`tree.c` `git_tree__parse_raw`): a mode of 16 bits, a
            // name of 1 to 0xFFFF bytes; anything else is malformed, never read as another
            // tree and written back.
            let mode = std::str::from_utf8(&data[..space])
                .ok()
                .and_then(|m| i64::from_str_radix(m, 8).ok())
                .filter(|m| (0..=0xFFFF).contains(m))
                .ok_or_else(bad)? as i32;
            data = &data[space + 1..];
            let nul = data.iter().position(|&b| b == 0).ok_or_else(bad)?;
            let name = data[..nul].to_vec();
            data = &data[nul + 1..];
            if data.len() < 20 || name.is_empty() || name.len() > 0xFFFF {
                return Err(bad());
            }
            let id = Oid::from_bytes(&data[..20])?;
            data = &data[20..];
            match entries.entry(name) {
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert((id, mode));
                }
                std::collections::btree_map::Entry::Occupied(mut e) => {
                    let (oid, mode) = e.insert((id, mode));
                    shadowed.push((e.key().clone(), oid, mode));
                }
            }
        }
        Ok(TreeEntries { entries, shadowed })
    }
}

/// git's order of two entries of a tree (`git_fs_path_cmp`): by name, byte by byte, a tree's
/// name read as if it ended in `/` and any other's as if it ended in NUL.
fn git_order(a: &[u8], mode_a: i32, b: &[u8], mode_b: i32) -> std::cmp::Ordering {
    let n = a.len().min(b.len());
    let end = |name: &[u8], mode: i32| {
        name.get(n)
            .copied()
            .unwrap_or(if mode & 0o170000 == TREE_MODE {
                b'/'
            } else {
                0
            })
    };
    a[..n]
        .cmp(&b[..n])
        .then_with(|| end(a, mode_a).cmp(&end(b, mode_b)))
        .then_with(|| a.len().cmp(&b.len()))
}

/// libgit2's `normalize_filemode` (`GIT_MODE_TYPE`: the bits above the permissions;
/// `GIT_PERMS_IS_EXEC`: the owner's execute bit).
pub fn normalize_mode(mode: i32) -> i32 {
    match mode & !0o777 {
        TREE_MODE => TREE_MODE,
        _ if mode & 0o100 != 0 => 0o100755,
        0o160000 => 0o160000,
        0o120000 => 0o120000,
        _ => 0o100644,
    }
}

/// Whether `name` may be a tree entry's: what libgit2's tree builder accepts (`tree.c`
/// `valid_entry_name`: not empty, `.`, `..`, no `/` or NUL; with its default
/// `core.protectNTFS`, `path.c` `validate_dotgit_ntfs`), narrowed to what `git fsck --strict`
/// (and a server checking what it receives) does not read as `.git` (`fsck.c` `hasDotgit`):
/// see [`ntfs_dot_git`] and [`hfs_dot_git`].
fn valid_name(name: &[u8]) -> bool {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0)
    {
        return false;
    }
    // git reads `\` as a separator here, on every platform (`fsck_tree`).
    !name.split(|&b| b == b'\\').any(ntfs_dot_git) && !hfs_dot_git(name)
}

/// Whether `name` is `.git` as Windows reads it (git's `path.c` `is_ntfs_dotgit`): `.git` or
/// its short name `git~1`, any case, followed by nothing but dots and spaces up to the end or
/// to `:` (an NTFS stream of `.git`, `.git::$INDEX_ALLOCATION` its directory).
fn ntfs_dot_git(name: &[u8]) -> bool {
    [&b".git"[..], b"git~1"].iter().any(|reserved| {
        name.len() >= reserved.len()
            && name[..reserved.len()].eq_ignore_ascii_case(reserved)
            && name[reserved.len()..]
                .iter()
                .take_while(|&&b| b != b':')
                .all(|&b| b == b'.' || b == b' ')
    })
}

/// Whether `name` is `.git` as HFS+ reads it (git's `utf8.c` `is_hfs_dotgit`): `.git` in any
/// ASCII case with code points HFS+ ignores (zero-width joiners, direction marks, the byte
/// order mark) anywhere; bytes that are not UTF-8 end the name as git reads it.
fn hfs_dot_git(name: &[u8]) -> bool {
    let mut rest = name;
    let mut next = || loop {
        let &lead = rest.first()?;
        let len = match lead {
            0x00..=0x7f => 1,
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => 0,
        };
        let Some(c) = rest
            .get(..len)
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|s| s.chars().next())
        else {
            rest = &[];
            return None;
        };
        rest = &rest[len..];
        let ignored = matches!(c, '\u{200c}'..='\u{200f}' | '\u{202a}'..='\u{202e}')
            || matches!(c, '\u{206a}'..='\u{206f}' | '\u{feff}');
        if !ignored {
            return Some(c);
        }
    };
    [Some('.'), Some('g'), Some('i'), Some('t'), None]
        .iter()
        .all(|want| next().map(|c| c.to_ascii_lowercase()) == *want)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::io::repo::tests::{assert_fsck_clean, stock_git_here};

    /// [`in_bulk_flushing_at`]'s value, the packs it stored left out.
    fn flushing_at<T, E>(
        flush_at: usize,
        git_dir: &Path,
        wrap: impl Fn(&'static str, git2::Error) -> E,
        build: impl FnOnce(&Bulk<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        in_bulk_flushing_at(flush_at, git_dir, wrap, build).map(|(out, _)| out)
    }

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

    /// A panic's message is what a panicking pack writer is reported with.
    #[test]
    fn a_panics_message_is_read_back() {
        let formatted = std::thread::spawn(|| panic!("boom {}", 1))
            .join()
            .unwrap_err();
        assert_eq!(panic_message(&*formatted), "boom 1");
        let fixed = std::thread::spawn(|| panic!("boom")).join().unwrap_err();
        assert_eq!(panic_message(&*fixed), "boom");
        let other = std::thread::spawn(|| std::panic::panic_any(7))
            .join()
            .unwrap_err();
        assert_eq!(panic_message(&*other), "no message");
    }

    /// The objects `repo`'s object database lists, an object in two packs counted twice.
    fn stored_objects(repo: &Repository) -> usize {
        let mut count = 0;
        repo.odb()
            .unwrap()
            .foreach(|_| {
                count += 1;
                true
            })
            .unwrap();
        count
    }

    /// `.pack` files in `objects/pack/` (also for [`super::super::rollup`]'s tests).
    pub(in crate::io::repo) fn packs(git_dir: &Path) -> usize {
        in_pack_dir(git_dir, "pack").len()
    }

    /// The files of `git_dir`'s `objects/pack/` with extension `ext`.
    fn in_pack_dir(git_dir: &Path, ext: &str) -> Vec<PathBuf> {
        std::fs::read_dir(git_dir.join("objects/pack"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == ext))
            .collect()
    }

    /// Stores `bytes` as a loose object of `repo` (at `git_dir`), then moves the file to
    /// `target` and leaves a symbolic link to it in its place; returns the link's path.
    fn link_loose(repo: &Repository, git_dir: &Path, bytes: &[u8], target: &Path) -> PathBuf {
        let path = loose_path(git_dir, repo.blob(bytes).unwrap());
        std::fs::rename(&path, target).unwrap();
        std::os::unix::fs::symlink(target, &path).unwrap();
        path
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
        assert_fsck_clean(git_dir, "after the second session");
    }

    /// What the session takes for stored: objects in packs and loose ones as it started, and
    /// those of a repository it borrows from (`objects/info/alternates`, asked of libgit2);
    /// nothing else (a file in `objects/` named like no object is no object).
    #[test]
    fn objects_on_disk_in_packs_loose_or_borrowed_are_not_stored_again() {
        let tmp = tempfile::tempdir().unwrap();
        let lender = tmp.path().join("lender.git");
        let borrowed = Repository::init_bare(&lender)
            .unwrap()
            .blob(b"lent\n")
            .unwrap();
        let git_dir = tmp.path().join("repo.git");
        let repo = Repository::init_bare(&git_dir).unwrap();
        let packed = in_bulk(&git_dir, |_, e| e, |bulk| bulk.blob(b"packed\n")).unwrap();
        let loose_blob = repo.blob(b"loose\n").unwrap();
        // Not an object: a name of the wrong length, and a directory with an upper-case name.
        let bucket = git_dir.join("objects").join(&loose_blob.to_string()[..2]);
        std::fs::write(bucket.join("0123"), "").unwrap();
        std::fs::create_dir_all(git_dir.join("objects/AB")).unwrap();
        let store = |contents: &[&[u8]]| {
            let before = packs(&git_dir);
            in_bulk(
                &git_dir,
                |_, e| e,
                |bulk| {
                    for c in contents {
                        bulk.blob(c)?;
                    }
                    Ok(())
                },
            )
            .unwrap();
            packs(&git_dir) - before
        };
        assert_eq!(store(&[b"packed\n", b"loose\n"]), 0, "nothing new");
        // Borrowed: known only through libgit2, once the alternate is there.
        assert_eq!(store(&[b"new\n"]), 1);
        std::fs::write(
            git_dir.join("objects/info/alternates"),
            format!("{}\n", lender.join("objects").display()),
        )
        .unwrap();
        assert_eq!(store(&[b"lent\n", b"packed\n", b"loose\n"]), 0);
        let other = Repository::open_bare(&git_dir).unwrap();
        for oid in [borrowed, packed, loose_blob] {
            other.find_blob(oid).unwrap();
        }
        assert_fsck_clean(&git_dir, "objects packed, loose and borrowed");
    }

    /// An object found stored instead of written is freshened as git freshens it: its pack's
    /// modification time (once per pack), or its loose file's, set to now; a pack holding
    /// none of the objects is left alone. A loose "object" that is a link is not followed:
    /// the object is written again and the link's target keeps its time.
    #[test]
    fn objects_found_stored_are_freshened_as_git_does() {
        use std::time::{Duration, SystemTime};
        let tmp = tempfile::tempdir().unwrap();
        let git_dir = tmp.path().join("repo.git");
        let repo = Repository::init_bare(&git_dir).unwrap();
        in_bulk(&git_dir, |_, e| e, |bulk| bulk.blob(b"packed\n")).unwrap();
        in_bulk(&git_dir, |_, e| e, |bulk| bulk.blob(b"elsewhere\n")).unwrap();
        let loose_path = loose_path(&git_dir, repo.blob(b"loose\n").unwrap());
        let target = tmp.path().join("target");
        link_loose(&repo, &git_dir, b"linked\n", &target);
        let pack_files = in_pack_dir(&git_dir, "pack");
        assert_eq!(pack_files.len(), 2);
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let age = |p: &Path| std::fs::symlink_metadata(p).unwrap().modified().unwrap();
        for p in pack_files.iter().chain([&loose_path, &target]) {
            std::fs::File::options()
                .append(true)
                .open(p)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        let before = packs(&git_dir);
        let start = SystemTime::now() - Duration::from_secs(1);
        in_bulk(
            &git_dir,
            |_, e| e,
            |bulk| {
                bulk.blob(b"packed\n")?;
                bulk.blob(b"loose\n")?;
                bulk.blob(b"linked\n")
            },
        )
        .unwrap();
        assert_eq!(
            packs(&git_dir) - before,
            1,
            "only the linked object is written again"
        );
        let packed_id = Oid::hash_object(ObjectType::Blob, b"packed\n").unwrap();
        let fresh: Vec<bool> = pack_files.iter().map(|p| age(p) >= start).collect();
        let holding = Packed::open(&git_dir);
        for (p, fresh) in pack_files.iter().zip(&fresh) {
            let out = std::process::Command::new("git")
                .args(["verify-pack", "-v"])
                .arg(p.with_extension("idx"))
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", p.display());
            let holds = String::from_utf8_lossy(&out.stdout).contains(&packed_id.to_string());
            assert_eq!(
                *fresh,
                holds,
                "{}: freshened only if it holds the object",
                p.display()
            );
        }
        assert!(holding.contains(packed_id));
        assert!(age(&loose_path) >= start, "the loose object is freshened");
        assert_eq!(age(&target), old, "a link's target is not touched");
        assert_fsck_clean(&git_dir, "after freshening");
    }

    /// An object found only in a cruft pack (one with a `.mtimes`) is written again, as git
    /// writes it (`odb/source-packed.c` `odb_source_packed_freshen_object`: `if
    /// (e.p->is_cruft) return 0;`): a cruft pack's objects expire by the times its `.mtimes`
    /// lists (`builtin/pack-objects.c` `want_cruft_object_mtime`, `nth_packed_mtime`), so
    /// setting its `.pack`'s time keeps nothing from `git gc`.
    #[test]
    fn an_object_only_in_a_cruft_pack_is_written_again() {
        if !stock_git_here() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let git_dir = tmp.path().join("repo.git");
        Repository::init_bare(&git_dir).unwrap();
        // Two objects: a pack of the one written again is then not the cruft pack's twin
        // (same bytes, same name).
        in_bulk(
            &git_dir,
            |_, e| e,
            |bulk| {
                bulk.blob(b"unreachable too\n")?;
                bulk.blob(b"unreachable\n")
            },
        )
        .unwrap();
        let out = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(&git_dir)
            .args(["repack", "-d", "--cruft", "--cruft-expiration=never"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let mtimes = in_pack_dir(&git_dir, "mtimes").len();
        assert_eq!((mtimes, packs(&git_dir)), (1, 1), "one cruft pack");
        in_bulk(&git_dir, |_, e| e, |bulk| bulk.blob(b"unreachable\n")).unwrap();
        assert_eq!(packs(&git_dir), 2, "the object is written again");
        assert_fsck_clean(&git_dir, "cruft pack");
    }

    /// A pack removed from the repository after the session opened it (a concurrent `git gc`
    /// or `repack -d`) vouches for nothing once removed: setting the time through the
    /// descriptor would set it on a file no one reads, so the object is written again, as git
    /// writes it when `utime` on the pack's name fails.
    #[test]
    fn an_object_in_a_pack_removed_meanwhile_is_written_again() {
        let tmp = tempfile::tempdir().unwrap();
        let git_dir = tmp.path().join("repo.git");
        Repository::init_bare(&git_dir).unwrap();
        in_bulk(&git_dir, |_, e| e, |bulk| bulk.blob(b"packed\n")).unwrap();
        let pack_dir = git_dir.join("objects/pack");
        let aside = tmp.path().join("aside");
        std::fs::create_dir(&aside).unwrap();
        let id = in_bulk(
            &git_dir,
            |_, e| e,
            |bulk| {
                bulk.blob(b"other\n")?;
                for e in std::fs::read_dir(&pack_dir).unwrap() {
                    let p = e.unwrap().path();
                    std::fs::rename(&p, aside.join(p.file_name().unwrap())).unwrap();
                }
                bulk.blob(b"packed\n")
            },
        )
        .unwrap();
        let repo = Repository::open_bare(&git_dir).unwrap();
        assert!(repo.find_blob(id).is_ok(), "the object is on disk");
    }

    /// In a repository that borrows objects (`objects/info/alternates`), an object of its own
    /// that could not be freshened (here a loose "object" that is a link) is written again:
    /// libgit2, asked only about objects the session does not know, would vouch for it.
    #[test]
    fn an_object_not_freshened_is_written_again_when_objects_are_borrowed() {
        let tmp = tempfile::tempdir().unwrap();
        let lender = tmp.path().join("lender.git");
        Repository::init_bare(&lender).unwrap();
        let git_dir = tmp.path().join("repo.git");
        let repo = Repository::init_bare(&git_dir).unwrap();
        std::fs::write(
            git_dir.join("objects/info/alternates"),
            format!("{}\n", lender.join("objects").display()),
        )
        .unwrap();
        link_loose(&repo, &git_dir, b"linked\n", &tmp.path().join("target"));
        let before = packs(&git_dir);
        in_bulk(&git_dir, |_, e| e, |bulk| bulk.blob(b"linked\n")).unwrap();
        assert_eq!(
            packs(&git_dir) - before,
            1,
            "the linked object is written again"
        );
    }

    /// A pack libgit2 (and git) refuses to open vouches for none of its objects, nor does a
    /// file named like a loose object that git would not look up (upper-case hex digits): each
    /// object is stored again, and reads back. Refused packs: a `.pack` whose header counts
    /// other than its `.idx`, an `.idx` whose fan-out table is not monotonic (both
    /// `pack.c`'s `packfile_open_locked`, `pack_index_check_locked`; git's
    /// `open_packed_git_1`, `check_packed_git_idx`).
    #[test]
    fn objects_only_in_a_pack_git_refuses_or_misnamed_loose_are_stored_again() {
        fn damaged(edit: impl Fn(&Path, Oid)) {
            let tmp = tempfile::tempdir().unwrap();
            let git_dir = tmp.path();
            Repository::init_bare(git_dir).unwrap();
            let oid = in_bulk(git_dir, |_, e| e, |bulk| bulk.blob(b"kept\n")).unwrap();
            edit(git_dir, oid);
            assert!(
                Repository::open_bare(git_dir)
                    .unwrap()
                    .find_blob(oid)
                    .is_err(),
                "libgit2 reads the damaged copy"
            );
            // Stored again (here in a pack of the same name, which replaces the damaged one).
            in_bulk(git_dir, |_, e| e, |bulk| bulk.blob(b"kept\n")).unwrap();
            let repo = Repository::open_bare(git_dir).unwrap();
            assert_eq!(repo.find_blob(oid).unwrap().content(), b"kept\n");
        }
        let in_place = |path: &Path, at: usize, bytes: &[u8]| {
            use std::os::unix::fs::PermissionsExt;
            let mut all = std::fs::read(path).unwrap();
            all[at..at + bytes.len()].copy_from_slice(bytes);
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
            std::fs::write(path, all).unwrap();
        };
        let stem = |git_dir: &Path| {
            super::super::pack::idx_stems(&git_dir.join("objects/pack"))
                .unwrap()
                .pop()
                .unwrap()
        };
        // The `.pack` says 2 objects, its `.idx` lists 1.
        damaged(|git_dir, _| in_place(&stem(git_dir).with_extension("pack"), 8, &[0, 0, 0, 2]));
        // A fan-out slot above the next one (not the slot the id's search starts from).
        damaged(|git_dir, oid| {
            let slot = if oid.as_bytes()[0] == 1 { 2 } else { 0 };
            in_place(
                &stem(git_dir).with_extension("idx"),
                8 + 4 * slot,
                &[0, 0, 0, 2],
            );
        });
        // The only copy loose, under an upper-case name.
        let tmp = tempfile::tempdir().unwrap();
        let git_dir = tmp.path();
        let repo = Repository::init_bare(git_dir).unwrap();
        let oid = repo.blob(b"upper\n").unwrap();
        let hex = oid.to_string();
        let bucket = git_dir.join("objects").join(&hex[..2]);
        assert_ne!(hex[2..], hex[2..].to_uppercase());
        std::fs::rename(bucket.join(&hex[2..]), bucket.join(hex[2..].to_uppercase())).unwrap();
        assert!(
            Repository::open_bare(git_dir)
                .unwrap()
                .find_blob(oid)
                .is_err()
        );
        in_bulk(git_dir, |_, e| e, |bulk| bulk.blob(b"upper\n")).unwrap();
        let repo = Repository::open_bare(git_dir).unwrap();
        assert_eq!(repo.find_blob(oid).unwrap().content(), b"upper\n");
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
        if stock_git_here()
            && let Ok(out) = std::process::Command::new("git")
                .arg("--git-dir")
                .arg(git_dir)
                .args(["cat-file", "-p", &tree.to_string()])
                .output()
        {
            assert!(out.status.success(), "{out:?}");
        }
        assert_fsck_clean(git_dir, "with the empty blob");
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
        let tree = flushing_at(
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
        let count = stored_objects(&other);
        assert_eq!(count, 200 + 1 + 1, "200 blobs, the tree, the earlier blob");
        // Stock git reads the packs as well: every object checked, none a delta.
        if stock_git_here()
            && let Ok(out) = std::process::Command::new("git")
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

    /// An object handed to the pack writer is known until its pack is on disk and seen: a
    /// tree read back from memory, a blob not queued twice; a pack that cannot be written
    /// fails the session, after the build.
    #[test]
    fn objects_handed_to_the_writer_are_found_and_not_queued_again() {
        let dir = tempfile::tempdir().unwrap();
        Repository::init_bare(dir.path()).unwrap();
        let git_dir = dir.path();
        let tree = flushing_at(
            1 << 20,
            git_dir,
            |_, e| e,
            |bulk| {
                let a = bulk.blob(b"a\n")?;
                let mut tb = bulk.treebuilder(None)?;
                tb.insert("a", a, 0o100644)?;
                let inner = bulk.write_tree(&tb)?;
                bulk.send()?;
                assert!(bulk.queued.borrow().is_empty());
                // Stored, or about to be, by the writer: not queued again, read back here.
                assert_eq!(bulk.blob(b"a\n")?, a);
                assert!(bulk.queued.borrow().is_empty(), "queued twice");
                assert_eq!(bulk.find_tree(inner)?.get("a"), Some((a, 0o100644)));
                let e = bulk.find_tree(a).unwrap_err();
                assert!(e.message().contains("is a blob, not a tree"), "{e}");
                let mut top = bulk.treebuilder(None)?;
                top.insert("dir", inner, 0o040000)?;
                bulk.write_tree(&top)
            },
        )
        .unwrap();
        // One pack: the writer stores a pack past 1 MiB or at the end.
        assert_eq!(packs(git_dir), 1);
        let other = Repository::open_bare(git_dir).unwrap();
        let count = stored_objects(&other);
        assert_eq!(count, 3, "a blob and two trees, each once");
        assert!(other.find_tree(tree).unwrap().get_name("dir").is_some());
        assert_fsck_clean(git_dir, "after packs written beside the build");

        // The pack directory replaced by a file: the writer fails, and so does the session.
        let pack_dir = git_dir.join("objects/pack");
        let err = in_bulk(
            git_dir,
            |what, e| format!("{what}: {}", e.message()),
            |bulk| {
                std::fs::remove_dir_all(&pack_dir).unwrap();
                std::fs::write(&pack_dir, "").unwrap();
                bulk.blob(b"never stored\n")
                    .map_err(|e| e.message().to_owned())
            },
        )
        .unwrap_err();
        assert!(
            err.starts_with("store the new objects as a pack: write a pack in"),
            "{err}"
        );
    }

    /// A batch the writer never stored fails the session even when `build` goes on past the
    /// error: its objects stay known as stored (never queued again), so a session that
    /// ended well would name objects that are on no disk.
    #[test]
    fn a_lost_batch_fails_the_session_even_if_build_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        Repository::init_bare(dir.path()).unwrap();
        let git_dir = dir.path();
        let pack_dir = git_dir.join("objects/pack");
        let result = flushing_at(
            1 << 10,
            git_dir,
            |_, e| e,
            |bulk| {
                std::fs::remove_dir_all(&pack_dir).unwrap();
                std::fs::write(&pack_dir, "").unwrap();
                let mut tb = bulk.treebuilder(None)?;
                let mut failed = false;
                for i in 0..1000u32 {
                    let blob = format!("{i:04}{}\n", "x".repeat(2000));
                    // The writer's error, seen by a build that goes on (ignoring it).
                    match bulk.blob(blob.as_bytes()) {
                        Ok(oid) => tb.insert(format!("{i:04}"), oid, 0o100644)?,
                        Err(_) => {
                            failed = true;
                            break;
                        }
                    }
                }
                assert!(failed, "the writer never failed");
                std::fs::remove_file(&pack_dir).unwrap();
                std::fs::create_dir(&pack_dir).unwrap();
                bulk.write_tree(&tb)
            },
        );
        match result {
            Err(e) => assert!(e.message().contains("write a pack in"), "{e}"),
            Ok(tree) => {
                let repo = Repository::open_bare(git_dir).unwrap();
                let missing = repo
                    .find_tree(tree)
                    .unwrap()
                    .iter()
                    .filter(|e| repo.find_blob(e.id()).is_err())
                    .count();
                panic!("the session ended well with {missing} of its tree's blobs on no disk");
            }
        }
    }

    /// Objects go from the queue to the writer to the disk while the build reads and writes
    /// them again: every tree written is found at every stage, nothing is stored twice, and
    /// the packs read clean.
    #[test]
    fn objects_stay_findable_and_single_from_queue_to_writer_to_disk() {
        let dir = tempfile::tempdir().unwrap();
        Repository::init_bare(dir.path()).unwrap();
        let git_dir = dir.path();
        let (trees, top) = flushing_at(
            2048,
            git_dir,
            |_, e| e,
            |bulk| {
                let mut trees: Vec<(Oid, usize)> = Vec::new();
                let mut top = bulk.treebuilder(None)?;
                for round in 0..60usize {
                    let mut tb = bulk.treebuilder(None)?;
                    for i in 0..=round {
                        let blob = format!("{i} {}\n", "y".repeat(40 * i));
                        tb.insert(format!("b{i:03}"), bulk.blob(blob.as_bytes())?, 0o100644)?;
                    }
                    let id = bulk.write_tree(&tb)?;
                    // Again, before any tree is read (a miss there rescans the disk).
                    for i in (0..=round).rev() {
                        let blob = format!("{i} {}\n", "y".repeat(40 * i));
                        bulk.blob(blob.as_bytes())?;
                    }
                    assert_eq!(bulk.write_tree(&tb)?, id);
                    trees.push((id, round + 1));
                    for &(t, len) in &trees {
                        assert_eq!(bulk.find_tree(t)?.len(), len, "round {round}");
                    }
                    top.insert(format!("t{round:03}"), id, 0o040000)?;
                }
                Ok((trees, bulk.write_tree(&top)?))
            },
        )
        .unwrap();
        assert!(packs(git_dir) > 2, "several packs");
        let other = Repository::open_bare(git_dir).unwrap();
        assert_eq!(other.find_tree(top).unwrap().len(), 60);
        for (t, len) in &trees {
            assert_eq!(other.find_tree(*t).unwrap().len(), *len);
        }
        let count = stored_objects(&other);
        assert_eq!(
            count,
            60 + 60 + 1,
            "60 blobs, 60 trees, the top tree, each once"
        );
        assert_fsck_clean(git_dir, "after objects went through the writer");
    }

    /// A build that fails after batches went to the writer gets its own error back, once the
    /// writer stored what it was handed (packs of unreferenced objects, read clean), and
    /// nothing it wrote is referenced.
    #[test]
    fn a_failed_build_waits_for_the_writer_and_keeps_its_error() {
        let dir = tempfile::tempdir().unwrap();
        Repository::init_bare(dir.path()).unwrap();
        let git_dir = dir.path();
        let err = flushing_at(
            1 << 12,
            git_dir,
            |what, e| format!("{what}: {e}"),
            |bulk| {
                for i in 0..200u32 {
                    bulk.blob(format!("{i} {}\n", "z".repeat(500)).as_bytes())
                        .map_err(|e| e.to_string())?;
                }
                assert!(bulk.batches.get() > 1, "batches went to the writer");
                Err::<(), _>("the build failed".to_owned())
            },
        )
        .unwrap_err();
        assert_eq!(err, "the build failed");
        assert!(packs(git_dir) >= 1, "what the writer was handed is stored");
        assert!(
            !std::fs::read_dir(git_dir.join("objects/pack"))
                .unwrap()
                .any(|e| { e.unwrap().file_name().to_string_lossy().starts_with("tmp_") })
        );
        assert_fsck_clean(git_dir, "after a failed build");
    }

    use proptest::prelude::*;

    /// An entry of a random tree: a name from a small alphabet that makes git's order differ
    /// from the bytes' order (`-`, `.` and `0` sort around `/`), and a mode.
    fn entry() -> impl Strategy<Value = (String, i32)> {
        (
            "[a.0-]{1,4}".prop_filter("a name git accepts", |n| n != "." && n != ".."),
            prop_oneof![
                Just(0o100644),
                Just(0o100755),
                Just(0o040000),
                Just(0o120000),
                Just(0o160000)
            ],
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// A tree written here has the id libgit2's tree builder gives the same entries (the
        /// same bytes: git's order, modes in octal), reads back through libgit2 as written,
        /// and is read back here as libgit2 wrote it.
        #[test]
        fn trees_are_the_bytes_libgit2_writes(entries in proptest::collection::vec(entry(), 0..24)) {
            let dir = tempfile::tempdir().unwrap();
            let repo = Repository::init_bare(dir.path()).unwrap();
            let blob = repo.blob(b"x").unwrap();
            let mut theirs = repo.treebuilder(None).unwrap();
            let mut ours = TreeEntries::default();
            for (name, mode) in &entries {
                let id = if *mode == 0o040000 {
                    repo.treebuilder(None).unwrap().write().unwrap()
                } else {
                    blob
                };
                theirs.insert(name, id, *mode).unwrap();
                ours.insert(name, id, *mode).unwrap();
            }
            let theirs = theirs.write().unwrap();
            prop_assert_eq!(object_id(ObjectType::Tree, &ours.bytes()).unwrap(), theirs);
            let odb = repo.odb().unwrap();
            let raw = odb.read(theirs).unwrap();
            prop_assert_eq!(raw.data(), &ours.bytes()[..]);
            prop_assert_eq!(TreeEntries::parse(theirs, raw.data()).unwrap(), ours.clone());
            let tree = repo.find_tree(theirs).unwrap();
            for e in tree.iter() {
                prop_assert_eq!(ours.get(e.name_bytes()), Some((e.id(), e.filemode())));
            }
            prop_assert_eq!(tree.len(), ours.len());
        }
    }

    /// Blob ids are git's (`git hash-object`'s), an empty blob's included.
    #[test]
    fn object_ids_are_gits() {
        for (bytes, id) in [
            (&b""[..], "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"),
            (b"a\n", "78981922613b2afb6025042ff6bd878ac1994e85"),
            (
                &[0u8; 70_000][..],
                "9fea790a02baeb2724691491835d06627644ac43",
            ),
        ] {
            assert_eq!(object_id(ObjectType::Blob, bytes).unwrap().to_string(), id);
        }
    }

    proptest! {
        /// Ids are libgit2's (its SHA-1 with collision detection) for any bytes, of any kind.
        #[test]
        fn object_ids_are_libgit2s(bytes in proptest::collection::vec(any::<u8>(), 0..5000)) {
            for kind in [ObjectType::Blob, ObjectType::Tree, ObjectType::Commit] {
                prop_assert_eq!(
                    object_id(kind, &bytes).unwrap(),
                    Oid::hash_object(kind, &bytes).unwrap()
                );
            }
        }
    }

    /// What libgit2's tree builder refuses is refused: names git would not check out (`.git`
    /// as case-insensitive or Windows file systems read it, `.`, `..`, a slash, NUL, empty),
    /// and modes git does not write.
    #[test]
    fn bad_names_and_modes_are_refused() {
        let id = Oid::hash_object(ObjectType::Blob, b"x").unwrap();
        let mut t = TreeEntries::default();
        for name in [
            &b""[..],
            b".",
            b"..",
            b".git",
            b".GIT",
            b".git.",
            b".git ",
            b"GIT~1",
            b"a/b",
            b"a\0b",
        ] {
            let e = t.insert(name, id, 0o100644).unwrap_err();
            assert!(e.message().contains("invalid name"), "{e}");
        }
        for mode in [0, 0o100664, 0o100600, 0o644, 0o170000] {
            let e = t.insert("a", id, mode).unwrap_err();
            assert!(e.message().contains("invalid filemode"), "{e}");
        }
        assert!(t.is_empty());
        for name in ["a", ".gitignore", ".github", "git~2", "..a", "a.."] {
            t.insert(name, id, 0o100644).unwrap();
        }
        assert_eq!(t.len(), 6);
    }

    /// A tree with a legacy mode (`100664`, which old gits wrote) keeps it when it is edited
    /// elsewhere, as libgit2's builder does, and reads it as libgit2 does (`100644`).
    #[test]
    fn legacy_modes_are_kept_and_read_as_libgit2_reads_them() {
        let id = Oid::hash_object(ObjectType::Blob, b"x").unwrap();
        let mut raw = Vec::new();
        raw.extend_from_slice(b"100664 old\0");
        raw.extend_from_slice(id.as_bytes());
        raw.extend_from_slice(b"100775 run\0");
        raw.extend_from_slice(id.as_bytes());
        let tree = object_id(ObjectType::Tree, &raw).unwrap();
        let mut t = TreeEntries::parse(tree, &raw).unwrap();
        assert_eq!(t.get("old"), Some((id, 0o100644)));
        assert_eq!(t.get("run"), Some((id, 0o100755)));
        t.insert("new", id, 0o100644).unwrap();
        let bytes = t.bytes();
        assert!(bytes.windows(10).any(|w| w == b"100664 old"));
        assert!(bytes.windows(10).any(|w| w == b"100775 run"));
        for bad in [
            &b"100644 a"[..],
            b"100644 a\0short",
            b"10x644 a\0",
            b"100644 \0",
        ] {
            let mut data = bad.to_vec();
            if bad.ends_with(b"\0") && bad.len() < 12 {
                data.extend_from_slice(id.as_bytes());
            }
            let e = TreeEntries::parse(tree, &data).unwrap_err();
            assert!(e.message().contains("malformed"), "{bad:?}: {e}");
        }
    }

    /// A name libgit2's tree builder refuses (`tree.c` `valid_entry_name`: with its default
    /// `core.protectNTFS`, `path.c` `validate_dotgit_ntfs` also refuses `.git` or `git~1`
    /// followed by `:` — an NTFS stream — or `\`) is refused here, and one it accepts is
    /// accepted (but for those `git fsck --strict` refuses, which libgit2 accepts: see
    /// `names_are_refused_as_git_fsck_refuses_them`): the same names, the same trees.
    #[test]
    fn names_are_refused_as_libgit2_refuses_them() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let blob = repo.blob(b"x").unwrap();
        let names: &[&[u8]] = &[
            b".git:x",
            b".git\\x",
            b".GIT:",
            b"git~1:x",
            b"GIT~1\\y",
            b".git::$INDEX_ALLOCATION",
            b".git",
            b".git. ",
            b"git~1",
            b"GIT~1 .",
            b".gitx",
            b"git~1x",
            b"git~2",
            b".gitmodules",
            b"a:b",
            b"a\\b",
            b"..a",
            b"a..",
            b"\xff\xfe",
            b"a\nb",
        ];
        let mut wrong = Vec::new();
        for name in names {
            let theirs = repo
                .treebuilder(None)
                .unwrap()
                .insert(name, blob, 0o100644)
                .is_ok();
            let ours = TreeEntries::default().insert(name, blob, 0o100644).is_ok();
            if theirs != ours {
                wrong.push(format!(
                    "{:?}: libgit2 {theirs}, here {ours}",
                    String::from_utf8_lossy(name)
                ));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    /// A name stock git's strict object check (`git hash-object -t tree`, what `git fsck
    /// --strict` and a server with `receive.fsckObjects` run) refuses is refused here, and one
    /// it accepts is accepted: `.git` as Windows (`\` a separator, `:` a stream, trailing dots
    /// and spaces) or HFS+ (ignored code points) reads it, bytes that are not UTF-8 after it.
    #[test]
    fn names_are_refused_as_git_fsck_refuses_them() {
        if !stock_git_here() {
            return;
        }
        let blob = Oid::hash_object(ObjectType::Blob, b"x").unwrap();
        let names: &[&[u8]] = &[
            b".git. :x",
            b"a\\.git",
            b"x\\.GIT.",
            b"a\\git~1 :",
            b"a\\b",
            "\u{feff}.git".as_bytes(),
            ".gi\u{200d}t".as_bytes(),
            ".git\u{200c}".as_bytes(),
            ".GIT\u{200e}".as_bytes(),
            "\u{200b}.git".as_bytes(),
            ".gît".as_bytes(),
            b".git\xff",
            b"\xff.git",
            b".gitx",
            b"git~1x",
            b"git~2",
            b".git:x",
            b"git~1",
            b".gitmodules",
            b"a:b",
            b"a\nb",
        ];
        let mut wrong = Vec::new();
        for name in names {
            let mut raw = b"100644 ".to_vec();
            raw.extend_from_slice(name);
            raw.push(0);
            raw.extend_from_slice(blob.as_bytes());
            let mut git = std::process::Command::new("git")
                .args(["hash-object", "-t", "tree", "--stdin"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            std::io::Write::write_all(&mut git.stdin.take().unwrap(), &raw).unwrap();
            let theirs = git.wait().unwrap().success();
            let ours = TreeEntries::default().insert(name, blob, 0o100644).is_ok();
            if theirs != ours {
                wrong.push(format!(
                    "{:?}: git {theirs}, here {ours}",
                    String::from_utf8_lossy(name)
                ));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    /// A tree libgit2 cannot parse (`tree.c` `git_tree__parse_raw`: a mode that is negative
    /// or above 0xFFFF, a name longer than 0xFFFF bytes) is malformed here too, never read and
    /// written back as another tree.
    #[test]
    fn trees_libgit2_cannot_parse_are_malformed_here_too() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let blob = repo.blob(b"x").unwrap();
        let odb = repo.odb().unwrap();
        let long = vec![b'a'; 0x10000];
        let cases: Vec<(&[u8], &[u8])> = vec![
            (b"-100644", b"a"),
            (b"1100644", b"a"),
            (b"100644", &long),
            (b"+100644", b"a"),
            (b"0100644", b"a"),
        ];
        let mut wrong = Vec::new();
        for (mode, name) in cases {
            let mut raw = mode.to_vec();
            raw.push(b' ');
            raw.extend_from_slice(name);
            raw.push(0);
            raw.extend_from_slice(blob.as_bytes());
            let id = odb.write(ObjectType::Tree, &raw).unwrap();
            let theirs = repo.find_tree(id).is_ok();
            let ours = TreeEntries::parse(id, &raw).is_ok();
            if theirs != ours {
                wrong.push(format!(
                    "{}: libgit2 {theirs}, here {ours}",
                    String::from_utf8_lossy(mode)
                ));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Names of any bytes libgit2 accepts (bytes at and above 0x80, those around `/`,
        /// prefixes of each other) make the tree libgit2's builder writes, from a base tree
        /// read back and edited as libgit2 edits it.
        #[test]
        fn any_names_edited_make_libgit2s_trees(
            base in proptest::collection::vec(
                (proptest::collection::vec(prop_oneof![
                    Just(b'a'), Just(b'-'), Just(b'.'), Just(b'/' + 1), Just(b'/' - 1),
                    Just(0x7f), Just(0x80), Just(0xff), Just(b' '), Just(0x01)
                ], 1..4), 0usize..6),
                0..20),
            edits in proptest::collection::vec(
                (proptest::collection::vec(prop_oneof![
                    Just(b'a'), Just(b'-'), Just(b'.'), Just(0x80)
                ], 1..3), proptest::option::of(0usize..6)),
                0..8),
            as_generated in any::<bool>(),
            padded in any::<bool>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let repo = Repository::init_bare(dir.path()).unwrap();
            let blob = repo.blob(b"x").unwrap();
            let sub = {
                let mut t = repo.treebuilder(None).unwrap();
                t.insert("f", blob, 0o100644).unwrap();
                t.write().unwrap()
            };
            let modes = [0o100644, 0o100755, 0o040000, 0o120000, 0o160000, 0o100664];
            // The base written raw (legacy and zero-padded modes included): in git's order, or
            // as generated (unsorted, a name twice), as another tool may have written it.
            let mut raw_entries = TreeEntries::default();
            let mut raw = Vec::new();
            for (name, m) in &base {
                if name.as_slice() == b"." || name.as_slice() == b".." {
                    continue;
                }
                let mode = modes[*m];
                let id = if mode == 0o040000 { sub } else { blob };
                raw_entries.entries.insert(name.clone(), (id, mode));
                let mode_text = if mode == 0o040000 && padded {
                    "040000".to_owned()
                } else {
                    format!("{mode:o}")
                };
                raw.extend_from_slice(mode_text.as_bytes());
                raw.push(b' ');
                raw.extend_from_slice(name);
                raw.push(0);
                raw.extend_from_slice(id.as_bytes());
            }
            let raw = if as_generated { raw } else { raw_entries.bytes() };
            let base_id = repo.odb().unwrap().write(ObjectType::Tree, &raw).unwrap();
            let base_tree = repo.find_tree(base_id).unwrap();
            let mut theirs = repo.treebuilder(Some(&base_tree)).unwrap();
            let odb = repo.odb().unwrap();
            let mut ours = TreeEntries::parse(base_id, odb.read(base_id).unwrap().data()).unwrap();
            for (name, m) in &edits {
                match m {
                    Some(m) if modes[*m] != 0o100664 => {
                        let mode = modes[*m];
                        let id = if mode == 0o040000 { sub } else { blob };
                        let t = theirs.insert(name, id, mode).is_ok();
                        let o = ours.insert(name, id, mode).is_ok();
                        prop_assert_eq!(t, o);
                    }
                    _ => {
                        let _ = theirs.remove(name);
                        ours.remove(name);
                    }
                }
            }
            let theirs = theirs.write().unwrap();
            prop_assert_eq!(object_id(ObjectType::Tree, &ours.bytes()).unwrap(), theirs);
            let tree = repo.find_tree(theirs).unwrap();
            for e in tree.iter() {
                prop_assert_eq!(ours.get(e.name_bytes()), Some((e.id(), e.filemode())));
            }
        }
    }
}
