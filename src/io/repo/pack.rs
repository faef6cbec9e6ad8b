//! The pack file format: a plain pack of whole objects and its `.idx` written
//! ([`PlainPack`], [`idx_bytes`]), an `.idx` read and a pack checked
//! against it ([`idx_entries`], [`check_pair`]), the packs this process stored remembered by
//! their files' identity ([`FreshPacks`]), and the one way a pack's files are opened
//! ([`open_regular`]: regular files only, never waiting on a FIFO).
//!
//! - The `.idx` is written from the ids and offsets known while the pack is written, instead
//!   of through libgit2's indexer, which inflated and hashed every object of the pack again
//!   (BENCHMARKS.md, issue 13).
//! - A pack is made visible the way git's `index-pack` does it (`pack-write.c`
//!   `finish_tmp_packfile`): written under a `tmp_pack_`/`tmp_idx_` name in `objects/pack/`,
//!   flushed to the disk, the `.pack` renamed into place, then the `.idx`, since readers
//!   (git, libgit2's `packfile_load__cb`) find packs through their `.idx` and ignore a
//!   `.pack` without one. A process killed in between leaves only unreferenced files:
//!   temporaries, or (between the two renames, a window of one `rename`) a `.pack` no reader
//!   opens, which is then kept and reported as [`super::rollup`] says; the next run writes
//!   the objects again.

use std::fs::{File, Metadata};
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use flate2::Compression;
use git2::{ObjectType, Odb, Oid};
use sha1::{Digest, Sha1};

/// An object to store: its id, kind and bytes (as [`super::bulk`] holds it in memory).
pub(super) struct Object {
    pub(super) oid: Oid,
    pub(super) kind: ObjectType,
    pub(super) data: Vec<u8>,
}

/// A version 2 pack (git's `Documentation/gitformat-pack.txt`) assembled in memory: the
/// header (`PACK`, version, object count), then each object whole — its type and size in the
/// variable-length entry header, its bytes zlib-compressed at the fastest level (git's own
/// default for loose objects), compressed as it is added so its bytes can be dropped — and
/// the SHA-1 of everything before it as the trailer. No delta search: storing the first
/// commit of 10,000 tenants spent most of its time in libgit2's pack builder trying deltas.
pub(super) struct PlainPack {
    /// The entries, compressed, as they follow the pack's header.
    body: Vec<u8>,
    entries: Vec<PackEntry>,
    z: Deflater,
    /// The bytes of the objects added, uncompressed.
    raw: usize,
}

/// The room a pack's compressed entries start with: more than a pack of 64 MiB of objects
/// compresses to (~14 MB for rendered manifests), and above the largest threshold past which
/// glibc's allocator maps a block of its own (32 MiB on 64-bit), so the block is returned to
/// the system when the pack is stored instead of staying in the writing thread's heap, where
/// the blocks a growing buffer left behind lifted some first pushes' peak by ~50 MiB (311
/// instead of 257 MiB at 10,000 tenants). Untouched pages cost nothing.
const BODY_RESERVE: usize = 40 << 20;

impl Default for PlainPack {
    fn default() -> Self {
        PlainPack {
            body: Vec::with_capacity(BODY_RESERVE),
            entries: Vec::new(),
            z: Deflater::default(),
            raw: 0,
        }
    }
}

/// A pack's header: `PACK`, the version, the object count.
const PACK_HEADER_LEN: u64 = 12;

impl PlainPack {
    /// Adds `o` as a whole-object entry.
    pub(super) fn add(&mut self, o: &Object) -> std::io::Result<()> {
        let offset = PACK_HEADER_LEN + self.body.len() as u64;
        let crc = write_entry(o.kind, &o.data, &mut self.body, &mut self.z)?;
        self.entries.push(PackEntry {
            oid: o.oid,
            offset,
            crc,
        });
        self.raw += o.data.len();
        Ok(())
    }

    /// The uncompressed bytes of the objects added.
    pub(super) fn raw_bytes(&self) -> usize {
        self.raw
    }

    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Stores the pack and its index in `pack_dir`, named after the pack's checksum as git
    /// names them (`pack-<checksum>.pack`, `.idx`). Both are written under temporary names,
    /// flushed to the disk, then renamed: the `.pack` first, the `.idx` last (see the module's
    /// documentation), and the directory flushed.
    pub(super) fn store(self, pack_dir: &Path) -> std::io::Result<StoredPack> {
        let PlainPack { body, entries, .. } = self;
        store_with(pack_dir, entries.len(), move |out, listed| {
            out.write_all(&body)?;
            listed.extend(entries);
            Ok(())
        })
    }
}

/// The pack writer of the output's packs and their roll-ups ([`PlainPack::store`]): a pack of
/// `count` objects, its header (`PACK`, version 2, the count) and trailer (the SHA-1 of what
/// precedes it) written here, its entries by `write` (each appended to the entries, at the
/// offset the writer counts), stored with its `.idx` as [`PlainPack::store`] says. Returns
/// the pack's name and its files' identity as written ([`StoredPack`]).
pub(super) fn store_with(
    pack_dir: &Path,
    count: usize,
    write: impl FnOnce(
        &mut HashingWriter<'_, BufWriter<&File>>,
        &mut Vec<PackEntry>,
    ) -> std::io::Result<()>,
) -> std::io::Result<StoredPack> {
    let n = u32::try_from(count)
        .map_err(|_| std::io::Error::other("more objects than a pack holds"))?;
    let temp = |prefix: &str| {
        tempfile::Builder::new()
            .prefix(prefix)
            .tempfile_in(pack_dir)
    };
    // git's own temporary names: `git prune` removes `tmp_*` files a killed run left.
    let pack = temp("tmp_pack_")?;
    let mut entries = Vec::with_capacity(count);
    let checksum = {
        let mut file = BufWriter::with_capacity(1 << 20, pack.as_file());
        let mut out = HashingWriter {
            inner: &mut file,
            sha: Sha1::new(),
            written: 0,
        };
        out.write_all(b"PACK")?;
        out.write_all(&2u32.to_be_bytes())?;
        out.write_all(&n.to_be_bytes())?;
        write(&mut out, &mut entries)?;
        let checksum: [u8; 20] = out.sha.finalize().into();
        file.write_all(&checksum)?;
        file.flush()?;
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
    // The identity of the files written, read from their descriptors (what was written,
    // whatever the names hold later).
    let pack = pack
        .persist(pack_dir.join(format!("pack-{name}.pack")))
        .map_err(|e| e.error)?;
    let idx = idx
        .persist(pack_dir.join(format!("pack-{name}.idx")))
        .map_err(|e| e.error)?;
    File::open(pack_dir)?.sync_all()?;
    Ok(StoredPack {
        name: format!("pack-{name}"),
        pack: FileId::of(&pack.metadata()?),
        idx: FileId::of(&idx.metadata()?),
    })
}

/// A file's identity as `fstat` gives it: the device and inode (which file) and its size.
/// Not its modification time: git and libgit2 set a pack's to now to keep it from being
/// pruned ("freshen": libgit2's `git_commit_create` does it to the pack holding the commit's
/// tree, `commit.c`), so the pack a commit just stored has another one by the time it is
/// pushed, its bytes unchanged. A change in place of the same size is what the CRC-32 of
/// each entry copied and [`check_pair`] catch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
}

impl FileId {
    pub(super) fn of(meta: &Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
        }
    }
}

/// A pack [`store_with`] stored: its name (`pack-<checksum>`) and the identity of its `.pack`
/// and `.idx` as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPack {
    pub(super) name: String,
    pack: FileId,
    idx: FileId,
}

/// The packs this process stored from objects it hashed itself ([`super::bulk`]: each object's
/// id is the SHA-1 of the very bytes then deflated into the pack), whose entries a local push
/// copies on their CRC-32 alone ([`super::push`]): hashing them again there would prove
/// nothing the writing did not. A pack is trusted only while the files on disk are the very
/// ones written — the `.pack` and `.idx` a push opened have the name, device, inode and size
/// recorded here ([`FreshPacks::trusts`], [`FileId`]); a pack renamed, replaced (same
/// name, another file), rolled up into another ([`super::rollup`]'s new pack is not recorded)
/// or written by another process is not, and its entries are hashed as any others'. What a
/// trusted pack's bytes may have suffered since (damage on the disk, an edit in place) is
/// what the CRC-32 its `.idx` records catches, as git's `pack-objects` relies on when it
/// reuses an entry, and the `.idx` is checked against its own checksum ([`check_pair`]).
#[derive(Debug, Clone, Default)]
pub struct FreshPacks {
    packs: Vec<StoredPack>,
}

impl FreshPacks {
    /// Records `stored` (packs this process just stored from objects it hashed).
    pub(super) fn add(&mut self, stored: impl IntoIterator<Item = StoredPack>) {
        self.packs.extend(stored);
    }

    /// Forgets the packs whose files in `pack_dir` are no longer the ones written (rolled up,
    /// removed, replaced): the record never outgrows the packs on disk, however many commits
    /// a long-lived process (watch) makes.
    pub(super) fn retain_on_disk(&mut self, pack_dir: &Path) {
        self.packs.retain(|p| {
            let id = |ext: &str| {
                std::fs::metadata(pack_dir.join(format!("{}.{ext}", p.name)))
                    .ok()
                    .map(|m| FileId::of(&m))
            };
            id("pack") == Some(p.pack) && id("idx") == Some(p.idx)
        });
    }

    /// Whether the pack `stem` (a path without extension), whose `.pack` and `.idx` were
    /// opened with the metadata `pack` and `idx` (`fstat` of the descriptors read), is one
    /// recorded here, its files still the very ones written.
    pub(super) fn trusts(&self, stem: &Path, pack: &Metadata, idx: &Metadata) -> bool {
        let Some(name) = stem.file_name().and_then(|n| n.to_str()) else {
            return false;
        };
        let (pack, idx) = (FileId::of(pack), FileId::of(idx));
        self.packs
            .iter()
            .any(|p| p.name == name && p.pack == pack && p.idx == idx)
    }

    /// Packs recorded.
    pub(super) fn len(&self) -> usize {
        self.packs.len()
    }
}

/// The file at `path` opened for reading, with its metadata, if it is a regular file (a link
/// followed): a FIFO is opened without waiting for a writer (`O_NONBLOCK`) and, like a device
/// or a directory, refused, as libgit2 refuses what `fstat` does not call one. A FIFO named
/// `pack-x.idx` would otherwise block a reader forever, and a link to `/dev/zero` be read
/// until memory ran out. The one way the packs' files are opened ([`super::packed`],
/// [`super::push`], [`super::rollup`]).
pub(super) fn open_regular(path: &Path) -> std::io::Result<(File, Metadata)> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other(format!(
            "{}: not a regular file",
            path.display()
        )));
    }
    Ok((file, meta))
}

/// The whole file at `path` if it is a regular file ([`open_regular`]), with its metadata.
pub(super) fn read_regular(path: &Path) -> std::io::Result<(Vec<u8>, Metadata)> {
    let (file, meta) = open_regular(path)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // No more than the length `fstat` gave (a file growing meanwhile is not read on).
    file.take(meta.len()).read_to_end(&mut bytes)?;
    Ok((bytes, meta))
}

/// The packs of `pack_dir` as readers find them, through their `.idx` (`pack-*.idx`): each
/// one's path without extension, sorted; none when the directory does not exist.
pub(super) fn idx_stems(pack_dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut stems: Vec<std::path::PathBuf> = match std::fs::read_dir(pack_dir) {
        Ok(dir) => dir
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|x| x == "idx")
                    && p.file_stem()
                        .and_then(|s| s.to_str())
                        .is_some_and(|s| s.starts_with("pack-"))
            })
            .map(|p| p.with_extension(""))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    stems.sort();
    Ok(stems)
}

/// The object count of a version 2 `.idx` (the last fan-out entry), reading its first
/// 1,032 bytes; `None` for anything else.
pub(super) fn idx_object_count(path: &Path) -> Option<u64> {
    let mut head = [0u8; 8 + 256 * 4];
    open_regular(path).ok()?.0.read_exact(&mut head).ok()?;
    if head[..8] != [0xff, b't', b'O', b'c', 0, 0, 0, 2] {
        return None;
    }
    let last: [u8; 4] = head[8 + 255 * 4..].try_into().ok()?;
    Some(u64::from(u32::from_be_bytes(last)))
}

/// The entries a version 2 `.idx` lists (gitformat-pack.txt; [`idx_bytes`] writes them), in
/// its order (by id).
pub(super) fn idx_entries(idx: &[u8]) -> std::io::Result<Vec<PackEntry>> {
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

/// A pack that failed a check before or while its entries were copied ([`check_pair`], a
/// CRC-32): `stem` (a path without extension) and the check, carried in an `io::Error` so
/// that [`consolidate`](super::rollup::consolidate) leaves that pack out and rolls up the
/// others.
#[derive(Debug)]
pub(super) struct Damaged {
    pub(super) stem: std::path::PathBuf,
    pub(super) what: String,
}

impl Damaged {
    pub(super) fn error(stem: &Path, what: impl Into<String>) -> std::io::Error {
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
/// `open_packed_git_1`), and `git verify-pack` of the `.idx`. Returns the `.pack` opened
/// ([`open_regular`]) and its metadata: the caller reads the very file checked.
pub(super) fn check_pair(
    stem: &Path,
    idx: &[u8],
    listed: usize,
) -> std::io::Result<(File, Metadata)> {
    use std::io::{Seek, SeekFrom};
    let path = stem.with_extension("pack");
    let bad = |what: &str| Damaged::error(stem, what);
    let body = idx
        .len()
        .checked_sub(20)
        .ok_or_else(|| bad("index too short"))?;
    if Sha1::digest(&idx[..body])[..] != idx[body..] {
        return Err(bad("its .idx does not match its own checksum"));
    }
    let (mut pack, meta) = open_regular(&path)?;
    if meta.len() < 12 + 20 {
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
    Ok((pack, meta))
}

/// Where an object went in a pack: its id, the offset of its entry, and the CRC-32 of the
/// entry's bytes (header and compressed data), as a version 2 `.idx` records them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PackEntry {
    pub(super) oid: Oid,
    pub(super) offset: u64,
    pub(super) crc: u32,
}

/// Writes the entry `e` of the pack `stem` (a path without extension), whose bytes as stored
/// (header and compressed data) are `stored`, to `out`: a whole object's entry as it is, after
/// checking its bytes against the CRC-32 its `.idx` records, as git's `pack-objects` does when
/// it reuses an entry (`builtin/pack-objects.c` `write_reuse_object` → `check_pack_crc`); a
/// delta (a fetched pack's, whose base may not be in the pack written) read whole through
/// `odb`, which resolves it, and compressed again. Returns the CRC-32 of the bytes written;
/// a mismatch is a [`Damaged`] error, with nothing written.
pub(super) fn copy_entry(
    stem: &Path,
    e: &PackEntry,
    stored: &[u8],
    odb: &Odb<'_>,
    out: &mut impl Write,
    z: &mut Deflater,
) -> std::io::Result<u32> {
    let kind = stored.first().map_or(0, |b| (b >> 4) & 7);
    if !(1..=4).contains(&kind) {
        return write_whole(odb, e.oid, out, z);
    }
    if crc32fast::hash(stored) != e.crc {
        return Err(Damaged::error(
            stem,
            format!("object {} does not match its CRC-32", e.oid),
        ));
    }
    out.write_all(stored)?;
    Ok(e.crc)
}

/// Checks that the whole-object pack entry `stored` (its header and compressed bytes) holds
/// the object `oid`, as a receiving `git index-pack` checks what it is sent: the bytes
/// inflated to exactly the size the header gives (`inflated`: a buffer to reuse), then hashed
/// as git names an object (see [`check_object`]).
pub(super) fn check_entry(oid: Oid, stored: &[u8], inflated: &mut Vec<u8>) -> std::io::Result<()> {
    let kind = inflate_entry(oid, stored, true, inflated)?;
    check_object(oid, kind, inflated)
}

/// Inflates the whole-object pack entry at the start of `stored` (its header and compressed
/// bytes) into `inflated` (a buffer to reuse), checking that it holds exactly the size its
/// header gives; with `exact`, that `stored` ends where the entry's compressed bytes end
/// (otherwise what follows them, the next entry, is left unread). Returns the object's kind.
/// The bytes are not hashed here ([`check_object`]).
pub(super) fn inflate_entry(
    oid: Oid,
    stored: &[u8],
    exact: bool,
    inflated: &mut Vec<u8>,
) -> std::io::Result<ObjectType> {
    let bad = |what: &str| std::io::Error::other(format!("object {oid}: {what}"));
    let (kind, size, at) = parse_entry_header(stored).ok_or_else(|| bad("a bad entry header"))?;
    let kind = match kind {
        1 => ObjectType::Commit,
        2 => ObjectType::Tree,
        3 => ObjectType::Blob,
        4 => ObjectType::Tag,
        _ => return Err(bad("not a whole object")),
    };
    // Deflate packs at most 1,032 bytes into one (zlib's technical report): a header that
    // claims more than that of the bytes given is damaged, and is not allocated for (a
    // damaged size byte would otherwise ask for up to 2^60 bytes and abort the process).
    let given = (stored.len() - at) as u64;
    if size > given.saturating_mul(1032) {
        return Err(bad(
            "its compressed bytes do not hold the size its header gives",
        ));
    }
    let size = usize::try_from(size).map_err(|_| bad("too large"))?;
    inflated.clear();
    inflated.reserve_exact(size);
    let mut z = flate2::Decompress::new(true);
    let status = z
        .decompress_vec(&stored[at..], inflated, flate2::FlushDecompress::Finish)
        .map_err(|e| bad(&format!("does not inflate ({e})")))?;
    if status != flate2::Status::StreamEnd
        || inflated.len() != size
        || (exact && z.total_in() != (stored.len() - at) as u64)
    {
        return Err(bad(
            "its compressed bytes do not hold the size its header gives",
        ));
    }
    Ok(kind)
}

/// git's id of an object of `kind` holding `data`: the SHA-1 of its header (`blob 123\0`)
/// and bytes, as `git hash-object` computes it. Here, in the pack format's module, because
/// both the writer ([`super::bulk`]) and the readers ([`check_object`]) name objects by it.
///
/// Plain SHA-1 (the `sha1` crate, with the CPU's SHA instructions), not libgit2's SHA-1
/// with collision detection (`git_odb_hash`, SHA1DC): SHA1DC was 15 % of a release's CPU at
/// 10,000 tenants (1.2 s for the 230 MB re-rendered), five times the plain digest. What the
/// detection guards against is an object crafted to collide with another; it runs where
/// objects arrive from elsewhere, and it still does there: every object provisio pushes over
/// https or ssh is hashed again by the receiving git (`index-pack`, with SHA1DC), and
/// objects provisio fetches are checked by libgit2's indexer (`indexer.c`, SHA1DC in the
/// libgit2 `libgit2-sys` builds). Not so a local remote: provisio receives it itself
/// ([`super::push`], [`check_object`]), with this same digest, so no collision detection
/// runs anywhere on the way from a render to a local remote. What is hashed here is
/// provisio's own: files it rendered (UTF-8 text from its emitter, where the near-random
/// 64-byte blocks of a collision cannot be placed), trees it built, and the registry files
/// serve compares with HEAD's (`Repo::head_has`, files it serialised itself).
pub(super) fn object_id(kind: ObjectType, data: &[u8]) -> Result<Oid, git2::Error> {
    let mut h = Sha1::new();
    let kind = match kind {
        ObjectType::Blob => "blob",
        ObjectType::Tree => "tree",
        ObjectType::Commit => "commit",
        ObjectType::Tag => "tag",
        other => return Err(git2::Error::from_str(&format!("no object is a {other:?}"))),
    };
    h.update(kind.as_bytes());
    h.update(b" ");
    h.update(data.len().to_string().as_bytes());
    h.update([0]);
    h.update(data);
    Oid::from_bytes(&h.finalize())
}

/// Checks that `data`, an object of `kind`, hashes to `oid` ([`object_id`]: a
/// plain SHA-1 of `<kind> <size>\0` and the bytes). This guards against damage since the
/// object was named, not against a crafted collision (see [`object_id`]).
pub(super) fn check_object(oid: Oid, kind: ObjectType, data: &[u8]) -> std::io::Result<()> {
    if object_id(kind, data).ok() != Some(oid) {
        return Err(std::io::Error::other(format!(
            "object {oid}: its bytes do not hash to its id (the clone is damaged: see `git fsck`)"
        )));
    }
    Ok(())
}

/// A pack entry header's type, size, and length (see [`entry_header`]); `None` when cut short
/// or longer than a 64-bit size.
pub(super) fn parse_entry_header(stored: &[u8]) -> Option<(u8, u64, usize)> {
    let mut bytes = stored.iter().copied();
    let first = bytes.next()?;
    let kind = (first >> 4) & 7;
    let mut size = u64::from(first & 0x0f);
    let mut shift = 4;
    let mut at = 1;
    let mut more = first & 0x80 != 0;
    while more {
        let b = bytes.next()?;
        if shift > 57 {
            return None;
        }
        size |= u64::from(b & 0x7f) << shift;
        shift += 7;
        at += 1;
        more = b & 0x80 != 0;
    }
    Some((kind, size, at))
}

/// Writes object `oid` (read from `odb`) to `out` as a whole-object pack entry: its type and
/// size in the entry header, its bytes zlib-compressed at the fastest level (`z`: a
/// compressor to reuse). Returns the CRC-32 of the entry's bytes.
pub(super) fn write_whole(
    odb: &Odb<'_>,
    oid: Oid,
    out: &mut impl Write,
    z: &mut Deflater,
) -> std::io::Result<u32> {
    let obj = odb.read(oid).map_err(std::io::Error::other)?;
    write_entry(obj.kind(), obj.data(), out, z)
        .map_err(|e| std::io::Error::other(format!("object {oid}: {e}")))
}

/// Writes an object of `kind` holding `data` to `out` as a whole-object pack entry (see
/// [`write_whole`]). Returns the CRC-32 of the entry's bytes.
pub(super) fn write_entry(
    kind: ObjectType,
    data: &[u8],
    out: &mut impl Write,
    z: &mut Deflater,
) -> std::io::Result<u32> {
    let kind: u8 = match kind {
        ObjectType::Commit => 1,
        ObjectType::Tree => 2,
        ObjectType::Blob => 3,
        ObjectType::Tag => 4,
        other => {
            return Err(std::io::Error::other(format!(
                "an object of kind {other} is not storable"
            )));
        }
    };
    let header = entry_header(kind, data.len() as u64);
    let compressed = z.deflate(data)?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header);
    crc.update(compressed);
    out.write_all(&header)?;
    out.write_all(compressed)?;
    Ok(crc.finalize())
}

/// A zlib compressor at the fastest level, reset for each object instead of made anew: setting
/// one up clears its window and hash tables (hundreds of KiB), which for 40,000 objects of a
/// few KiB was 4 % of a release's CPU at 10,000 tenants.
pub(super) struct Deflater {
    z: flate2::Compress,
    out: Vec<u8>,
}

impl Default for Deflater {
    fn default() -> Self {
        Deflater {
            z: flate2::Compress::new(Compression::fast(), true),
            out: Vec::new(),
        }
    }
}

impl Deflater {
    /// `data` as one zlib stream.
    fn deflate(&mut self, data: &[u8]) -> std::io::Result<&[u8]> {
        self.z.reset();
        self.out.clear();
        // zlib's `deflateBound` for the fast level's blocks, and room for the header.
        self.out.reserve(data.len() + data.len() / 16_384 * 5 + 64);
        loop {
            let read = self.z.total_in() as usize;
            let status = self
                .z
                .compress_vec(&data[read..], &mut self.out, flate2::FlushCompress::Finish)
                .map_err(std::io::Error::other)?;
            if status == flate2::Status::StreamEnd {
                return Ok(&self.out);
            }
            self.out.reserve(self.out.len().max(64));
        }
    }
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
pub(super) struct HashingWriter<'w, W: Write> {
    pub(super) inner: &'w mut W,
    pub(super) sha: Sha1,
    pub(super) written: u64,
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
    use crate::io::repo::tests::stock_git_here;
    use git2::Repository;

    use super::super::bulk::in_bulk;
    use super::*;

    /// One compressor reused: each object's stream inflates back to exactly its bytes, from
    /// empty to incompressible, and equals a fresh compressor's stream.
    #[test]
    fn a_reused_compressor_writes_each_stream_as_a_fresh_one() {
        use std::io::Read;
        let mut z = Deflater::default();
        let mut noise = vec![0u8; 1 << 20];
        let mut x: u32 = 1;
        for b in &mut noise {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        let inputs: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"a".to_vec(),
            "tenant: t\n".repeat(5000).into_bytes(),
            noise,
            b"after the noise\n".to_vec(),
        ];
        for data in &inputs {
            let stream = z.deflate(data).unwrap().to_vec();
            assert_eq!(stream, Deflater::default().deflate(data).unwrap());
            let mut back = Vec::new();
            flate2::read::ZlibDecoder::new(&stream[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(&back, data);
        }
    }

    /// An entry is checked as a receiving `index-pack` checks it: the object it holds hashes
    /// to its id, its compressed bytes hold exactly the size its header gives; a flipped bit,
    /// a cut, trailing bytes, another id or a delta fail, each named.
    #[test]
    fn an_entry_is_checked_against_its_id_as_a_receiver_checks_it() {
        let data = b"apiVersion: v1\nkind: ConfigMap\n".repeat(40);
        let oid = Oid::hash_object(ObjectType::Blob, &data).unwrap();
        let mut entry = Vec::new();
        write_entry(
            ObjectType::Blob,
            &data,
            &mut entry,
            &mut Deflater::default(),
        )
        .unwrap();
        let mut inflated = Vec::new();
        check_entry(oid, &entry, &mut inflated).unwrap();
        assert_eq!(inflated, data);
        check_object(oid, ObjectType::Blob, &data).unwrap();

        let fails = |bytes: &[u8], id: Oid, why: &str| {
            let e = check_entry(id, bytes, &mut Vec::new())
                .unwrap_err()
                .to_string();
            assert!(e.contains(&id.to_string()) && e.contains(why), "{e}");
        };
        let mut flipped = entry.clone();
        let last = flipped.len() - 6;
        flipped[last] ^= 0x10;
        let e = check_entry(oid, &flipped, &mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains(&oid.to_string()), "{e}");
        fails(&entry[..entry.len() - 3], oid, "size its header gives");
        fails(&[&entry[..], b"x"].concat(), oid, "size its header gives");
        let other = Oid::hash_object(ObjectType::Blob, b"other").unwrap();
        fails(&entry, other, "do not hash to its id");
        // The same bytes named as a tree: another id.
        assert!(check_object(oid, ObjectType::Tree, &data).is_err());
        let mut delta = entry.clone();
        delta[0] = (delta[0] & 0x8f) | (7 << 4);
        fails(&delta, oid, "not a whole object");
        fails(&[0x80], oid, "a bad entry header");
        // A damaged size byte claiming 2^59 bytes: an error, not an allocation that aborts.
        let mut huge = vec![0xbf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f];
        huge.extend_from_slice(&entry[entry_header(3, data.len() as u64).len()..]);
        fails(&huge, oid, "size its header gives");
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
        if !stock_git_here() {
            return;
        }
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
}
