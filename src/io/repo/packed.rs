//! Whole objects read straight from the clone's packs, for the walks that read tens of
//! thousands of trees in one run: a commit's tree edits ([`super::bulk`]), a push's list of
//! what the remote lacks ([`super::push`]) and the index brought in step
//! ([`super::index`]).
//!
//! libgit2 reads a packed object through a window of the pack file mapped into memory
//! (`mwindow.c`). The windows provisio allows it are few ([`super::set_process_options`]:
//! 32 MiB mapped in all, which bounds the first push's memory), and a product release
//! reads its old trees from one set of packs and its new trees from another, on two threads
//! at once (the push and the index): nearly every read unmapped a window and mapped another.
//! That was ≈ 1.4 s of the push and ≈ 1.5 s of the index's diff of a release at 10,000
//! tenants (BENCHMARKS.md, issue 13, eleventh round); with the windows unbounded, ≈ 0.4 s
//! each, but a first push then peaked at 705 MiB. Here an entry is read with `pread` into a
//! buffer of its own size: no mapping, nothing resident beyond the buffer.
//!
//! - Each `.idx` is read whole when the packs are opened (about 28 bytes per object) and
//!   searched as it is, through its fan-out table; a pack whose `.idx` is not a version 2
//!   index (a regular file of the size its object count gives: nothing else is read whole,
//!   and a fan-out table that never goes down), whose `.pack`'s header is not a version 2
//!   or 3 pack of the objects it counts, or whose recorded checksum is not the `.pack`'s
//!   trailer (another pack's index), is left out: what libgit2 and git check when they open
//!   a pack, so that a pack listed here is one they read ([`Packed::contains`] says an
//!   object is stored).
//! - One table of every pack's objects, by the first 4 bytes of their ids (8 bytes
//!   per object, sorted once), says which pack to search: a release looks up some 70,000
//!   ids, most of them in no pack (the objects it is about to store), and a search of every
//!   pack in turn, libgit2's way (`pack_backend__exists`), was 5 % of its CPU with the
//!   30-odd packs a clone keeps ([`super::rollup`]).
//! - Only whole objects are read here. A delta, an object in no pack (loose, or in a pack
//!   written after the packs were opened), an entry that does not inflate to the size its
//!   header gives, or one whose bytes do not hash to the id asked for, is `None`: the caller
//!   reads it through libgit2's object database, which resolves deltas and reports real
//!   damage. Every object returned here was hashed to its id, so a damaged or stale index
//!   can never hand back another object.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use git2::{ObjectType, Oid};

use super::pack::{check_object, idx_stems, inflate_entry, open_regular, parse_entry_header};

/// Objects larger than this are left to libgit2 (trees are a few KiB; the largest, a
/// tenants directory of 10,000 entries, about 500 KiB).
const LARGEST: u64 = 64 << 20;

/// The packs of one repository, as they were when opened.
pub struct Packed {
    packs: Vec<Pack>,
    /// Every object of `packs`: the first 4 bytes of its id and its pack's place in `packs`,
    /// in order.
    by_prefix: Vec<(u32, u32)>,
    /// Where in `by_prefix` the ids starting with each 2 bytes start (and, last, its end): a
    /// search reads one slot here and a few entries there, not 19 of a table of megabytes.
    buckets: Vec<u32>,
}

struct Pack {
    /// The `.idx` file's bytes.
    idx: Vec<u8>,
    /// Objects it lists.
    count: usize,
    file: File,
    /// Where the entries end (the `.pack`'s length less its trailer).
    end: u64,
    /// Whether [`Packed::freshen`] set the `.pack`'s modification time already.
    freshened: AtomicBool,
    /// The `.pack`'s path, which [`Packed::freshen`] checks still names `file`.
    path: PathBuf,
    /// Whether it is a cruft pack (a `.mtimes` beside it, git's `is_cruft`): its objects
    /// expire by the times that file lists, not by the `.pack`'s.
    cruft: bool,
}

/// Slots of [`Packed`]'s bucket table: one for each value of an id's first 2 bytes.
const BUCKETS: usize = 1 << 16;

/// The `.idx` header of version 2 (`gitformat-pack.txt`).
const IDX_V2: [u8; 8] = [0xff, b't', b'O', b'c', 0, 0, 0, 2];
/// Bytes before the ids: the header and the fan-out table.
const IDS_AT: usize = 8 + 256 * 4;

impl Packed {
    /// The packs of the repository whose git directory is `git_dir` (none when it has no
    /// `objects/pack/`). A pack that cannot be read is left out: its objects go to libgit2.
    pub fn open(git_dir: &Path) -> Packed {
        let stems = idx_stems(&git_dir.join("objects").join("pack")).unwrap_or_default();
        let packs: Vec<Pack> = stems
            .iter()
            .filter_map(|s| Pack::open(&s.with_extension("idx")))
            .collect();
        let mut by_prefix = Vec::with_capacity(packs.iter().map(|p| p.count).sum());
        for (i, p) in packs.iter().enumerate() {
            by_prefix.extend((0..p.count).map(|k| (p.prefix(k), i as u32)));
        }
        by_prefix.sort_unstable();
        let mut buckets = Vec::with_capacity(BUCKETS + 1);
        let mut at = 0;
        for b in 0..BUCKETS as u32 {
            while by_prefix.get(at).is_some_and(|&(p, _)| p >> 16 < b) {
                at += 1;
            }
            buckets.push(at as u32);
        }
        buckets.push(by_prefix.len() as u32);
        Packed {
            packs,
            by_prefix,
            buckets,
        }
    }

    /// The object `oid` as a pack of the repository holds it whole: its kind and bytes;
    /// `None` otherwise (see the module's documentation).
    pub fn read(&self, oid: Oid) -> Option<(ObjectType, Vec<u8>)> {
        let (pack, offset) = self.locate(oid)?;
        pack.read(oid, offset)
    }

    /// Whether a pack lists `oid` (whole or as a delta: what it holds is not read).
    pub fn contains(&self, oid: Oid) -> bool {
        self.locate(oid).is_some()
    }

    /// Whether a pack lists `oid` and that pack's modification time is now (set through the
    /// descriptor its checks were made on, once per pack), as git does for an object it
    /// finds stored instead of writing it (`object-file.c` `freshen_packed_object`): a
    /// concurrent `git gc` keeps the unreachable objects of a pack modified within its expiry
    /// (`gc.pruneExpire`, two weeks), so an old unreachable object that a new commit is about
    /// to name is not pruned meanwhile. `false` when no pack lists it or the time cannot be
    /// set: the caller then writes the object, as git does.
    ///
    /// A cruft pack (a `.mtimes` beside it) vouches for nothing here, as in git
    /// (`odb/source-packed.c` `odb_source_packed_freshen_object`: `if (e.p->is_cruft) return
    /// 0;`): `git gc` expires its objects by the times its `.mtimes` lists
    /// (`builtin/pack-objects.c` `want_cruft_object_mtime`), which setting the `.pack`'s time
    /// does not change. Nor does a pack whose path no longer names the file opened (removed
    /// or replaced by a concurrent `gc`): git's `utime` on the pack's name fails then, and the
    /// object is written.
    pub fn freshen(&self, oid: Oid) -> bool {
        self.holders(oid)
            .any(|(pack, _)| !pack.cruft && pack.freshen())
    }

    /// The pack listing `oid` and where its entry starts: the packs whose objects share the
    /// id's first 4 bytes are searched, and only those.
    fn locate(&self, oid: Oid) -> Option<(&Pack, u64)> {
        self.holders(oid).next()
    }

    /// Every pack listing `oid`, with where its entry starts, in [`Self::locate`]'s order.
    fn holders(&self, oid: Oid) -> impl Iterator<Item = (&Pack, u64)> {
        let prefix = prefix_of(oid.as_bytes());
        let b = (prefix >> 16) as usize;
        let bucket = &self.by_prefix[self.buckets[b] as usize..self.buckets[b + 1] as usize];
        let from = bucket.partition_point(|&(p, _)| p < prefix);
        bucket[from..]
            .iter()
            .take_while(move |&&(p, _)| p == prefix)
            .filter_map(move |&(_, i)| {
                let pack = &self.packs[i as usize];
                pack.offset_of(oid).map(|o| (pack, o))
            })
    }

    /// Packs opened.
    pub fn len(&self) -> usize {
        self.packs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.packs.is_empty()
    }
}

impl Pack {
    /// Sets the `.pack`'s modification time to now, once: through the descriptor its checks
    /// were made on, then checked to be the file its path names still (set first, so that a
    /// removal after the check is no wider a window than git's own); whether it was.
    fn freshen(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        if self.freshened.load(Ordering::Relaxed) {
            return true;
        }
        let set = self.file.set_modified(std::time::SystemTime::now()).is_ok()
            && match (self.file.metadata(), std::fs::symlink_metadata(&self.path)) {
                (Ok(open), Ok(named)) => (open.dev(), open.ino()) == (named.dev(), named.ino()),
                _ => false,
            };
        self.freshened.store(set, Ordering::Relaxed);
        set
    }

    fn open(idx_path: &Path) -> Option<Pack> {
        let (idx_file, idx_meta) = open_regular(idx_path).ok()?;
        let idx_len = idx_meta.len();
        let mut idx = vec![0u8; IDS_AT];
        idx_file.read_exact_at(&mut idx, 0).ok()?;
        if idx[..8] != IDX_V2 {
            return None;
        }
        // A fan-out table that ever goes down is refused by libgit2 and git alike
        // (`pack_index_check_locked`, `check_packed_git_idx`): none of the pack's objects is
        // there for them, so none is here.
        let fan_out: Vec<u32> = (0..256).filter_map(|i| u32_at(&idx, 8 + 4 * i)).collect();
        if fan_out.windows(2).any(|w| w[1] < w[0]) {
            return None;
        }
        let count = fan_out[255] as usize;
        // Ids, CRC-32s and 4-byte offsets, then the 8-byte offsets (at most one fewer than
        // the objects, as git checks), the pack's checksum and the index's own: the size is
        // checked before the rest is read, so a file of another size is never read whole.
        let least = (IDS_AT + 28 * count + 40) as u64;
        let most = least + 8 * count.saturating_sub(1) as u64;
        if !(least..=most).contains(&idx_len) {
            return None;
        }
        let path = idx_path.with_extension("pack");
        let (file, meta) = open_regular(&path).ok()?;
        let len = meta.len();
        // Each entry takes at least a byte: an index counting more objects is another's.
        if count as u64 > len {
            return None;
        }
        idx.resize(idx_len as usize, 0);
        idx_file
            .read_exact_at(&mut idx[IDS_AT..], IDS_AT as u64)
            .ok()?;
        // The `.pack`'s header as libgit2 and git check it when they open the pack
        // (`packfile_open_locked`, `open_packed_git_1`): its signature, version, and the
        // object count its `.idx` gives.
        let mut header = [0u8; 12];
        file.read_exact_at(&mut header, 0).ok()?;
        if header[..4] != *b"PACK"
            || !matches!(u32_at(&header, 4)?, 2 | 3)
            || u32_at(&header, 8)? as usize != count
        {
            return None;
        }
        let end = len.checked_sub(20)?;
        let mut trailer = [0u8; 20];
        file.read_exact_at(&mut trailer, end).ok()?;
        let recorded = idx.len() - 40;
        if idx[recorded..recorded + 20] != trailer {
            return None;
        }
        Some(Pack {
            idx,
            count,
            file,
            end,
            freshened: AtomicBool::new(false),
            cruft: std::fs::symlink_metadata(idx_path.with_extension("mtimes")).is_ok(),
            path,
        })
    }

    /// The first 4 bytes of the `i`-th id the `.idx` lists (`i` below `count`, which the
    /// `.idx`'s size was checked against).
    fn prefix(&self, i: usize) -> u32 {
        let at = IDS_AT + 20 * i;
        prefix_of(&self.idx[at..at + 20])
    }

    /// Where the entry of `oid` starts, if this pack lists it.
    fn offset_of(&self, oid: Oid) -> Option<u64> {
        let id = oid.as_bytes();
        let first = usize::from(id[0]);
        let lo = match first {
            0 => 0,
            _ => u32_at(&self.idx, 8 + (first - 1) * 4)? as usize,
        };
        let hi = (u32_at(&self.idx, 8 + first * 4)? as usize).min(self.count);
        let (mut lo, mut hi) = (lo.min(hi), hi);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let at = IDS_AT + 20 * mid;
            match self.idx.get(at..at + 20)?.cmp(id) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return self.offset(mid),
            }
        }
        None
    }

    /// The offset the `.idx` records for its `i`-th object.
    fn offset(&self, i: usize) -> Option<u64> {
        let small = u32_at(&self.idx, IDS_AT + 24 * self.count + 4 * i)?;
        if small & 0x8000_0000 == 0 {
            return Some(u64::from(small));
        }
        let at = IDS_AT + 28 * self.count + 8 * (small & 0x7fff_ffff) as usize;
        Some(u64::from_be_bytes(
            self.idx.get(at..at + 8)?.try_into().ok()?,
        ))
    }

    /// The whole object at `offset`, read with no more than the bytes its header says it can
    /// take compressed, inflated and hashed to `oid`.
    fn read(&self, oid: Oid, offset: u64) -> Option<(ObjectType, Vec<u8>)> {
        if offset >= self.end {
            return None;
        }
        let mut head = [0u8; 16];
        let got = (self.end - offset).min(head.len() as u64) as usize;
        self.file.read_exact_at(&mut head[..got], offset).ok()?;
        let (kind, size, at) = parse_entry_header(&head[..got])?;
        if !(1..=4).contains(&kind) || size > LARGEST {
            return None;
        }
        // zlib's `deflateBound`: about 5 bytes every 16 KiB (a stored block of up to 65,535
        // bytes needs 5), a 2-byte header and a 4-byte checksum. An encoder that writes more
        // (Go's fastest level can) leaves the stream unfinished here: read by libgit2. What is
        // read past the entry (the next one) is left uninflated.
        let bound = at as u64 + size + size / 16_384 * 5 + 64;
        let want = bound.min(self.end - offset) as usize;
        let mut stored = vec![0u8; want];
        self.file.read_exact_at(&mut stored, offset).ok()?;
        let mut data = Vec::new();
        let kind = inflate_entry(oid, &stored, false, &mut data).ok()?;
        check_object(oid, kind, &data).ok()?;
        Some((kind, data))
    }
}

/// The first 4 bytes of an object id, as a number that sorts as the ids do.
fn prefix_of(id: &[u8]) -> u32 {
    u32::from_be_bytes([id[0], id[1], id[2], id[3]])
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) -> String {
        let o = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .expect("git runs");
        assert!(o.status.success(), "git {args:?}: {o:?}");
        String::from_utf8(o.stdout).unwrap()
    }

    /// A repository of one commit (a file `f`), its objects in one pack.
    fn one_packed_commit() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        git(dir, &["init", "-q", "-b", "main"]);
        std::fs::write(dir.join("f"), "f\n").unwrap();
        commit_all(dir, "one");
        git(dir, &["repack", "-adq"]);
        tmp
    }

    /// `git add -A` and a commit of it, as author `t`.
    fn commit_all(dir: &Path, message: &str) {
        git(dir, &["add", "-A"]);
        git(
            dir,
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@example.com",
                "commit",
                "-qm",
                message,
            ],
        );
    }

    /// A repository whose objects stock git packed (with deltas: `repack -adf`) plus loose
    /// ones: every object git lists reads back here as `git cat-file` gives it, or is left
    /// to libgit2 (a delta, a loose object), never read as another.
    #[test]
    fn every_object_reads_back_as_git_gives_it_or_is_left_to_libgit2() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        git(dir, &["init", "-q", "-b", "main"]);
        for round in 0..4 {
            for i in 0..30 {
                let body: String = (0..200)
                    .map(|l| format!("line {l} of file {i}, round {}\n", round * (l % 3)))
                    .collect();
                std::fs::create_dir_all(dir.join(format!("d{}", i % 5))).unwrap();
                std::fs::write(dir.join(format!("d{}/f{i}", i % 5)), body).unwrap();
            }
            commit_all(dir, &format!("round {round}"));
            if round == 2 {
                git(dir, &["repack", "-adfq"]);
            }
        }
        let packed = Packed::open(&dir.join(".git"));
        assert_eq!(packed.len(), 1);
        let all = git(dir, &["rev-list", "--objects", "--all"]);
        let (mut whole, mut left) = (0, 0);
        let mut kinds = std::collections::BTreeSet::new();
        for line in all.lines() {
            let oid = Oid::from_str(&line[..40]).unwrap();
            match packed.read(oid) {
                Some((kind, data)) => {
                    whole += 1;
                    kinds.insert(kind.str());
                    let want = Command::new("git")
                        .arg("-C")
                        .arg(dir)
                        .args(["cat-file", kind.str(), &line[..40]])
                        .output()
                        .unwrap();
                    assert_eq!(data, want.stdout, "{oid}");
                }
                None => left += 1,
            }
        }
        // Both kinds occur: whole entries in the pack, deltas and the last round's loose
        // objects left out.
        assert!(whole > 20 && left > 30, "whole {whole}, left {left}");
        assert_eq!(
            kinds.into_iter().collect::<Vec<_>>(),
            ["blob", "commit", "tree"]
        );
    }

    /// Several packs, some objects in two of them (`repack` without `-d` keeps the old
    /// packs) and some loose: every packed object is found in a pack that lists it, and
    /// nothing else is, ids that share a pack's fan-out bucket or a packed id's first bytes
    /// included.
    #[test]
    fn every_packed_object_is_found_among_several_packs_and_no_other() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        git(dir, &["init", "-q", "-b", "main"]);
        for round in 0..5 {
            for i in 0..40 {
                std::fs::write(dir.join(format!("f{i}")), format!("{round} {i}\n")).unwrap();
            }
            commit_all(dir, &format!("round {round}"));
            match round {
                // A pack of the loose objects, then one of everything beside it.
                0 | 1 => git(dir, &["repack", "-q"]),
                2 => git(dir, &["repack", "-aq"]),
                _ => String::new(),
            };
        }
        let packed = Packed::open(&dir.join(".git"));
        assert_eq!(packed.len(), 3);
        let listed = git(
            dir,
            &[
                "cat-file",
                "--batch-all-objects",
                "--batch-check=%(objectname)",
            ],
        );
        let mut in_packs = std::collections::BTreeSet::new();
        for idx in std::fs::read_dir(dir.join(".git/objects/pack")).unwrap() {
            let idx = idx.unwrap().path();
            if idx.extension().is_some_and(|e| e == "idx") {
                let out = Command::new("git")
                    .arg("-C")
                    .arg(dir)
                    .arg("show-index")
                    .stdin(std::fs::File::open(&idx).unwrap())
                    .output()
                    .unwrap();
                for line in String::from_utf8(out.stdout).unwrap().lines() {
                    in_packs.insert(line.split(' ').nth(1).unwrap().to_owned());
                }
            }
        }
        assert!(in_packs.len() > 100, "{}", in_packs.len());
        let mut loose = 0;
        for line in listed.lines() {
            let oid = Oid::from_str(line).unwrap();
            assert_eq!(packed.contains(oid), in_packs.contains(line), "{oid}");
            loose += usize::from(!in_packs.contains(line));
        }
        assert!(loose > 40, "the last rounds' objects are loose: {loose}");
        // Ids no pack lists: each packed id with its last byte changed (same bucket, same
        // first 4 bytes), with its fifth byte changed, and with its third (same bucket).
        for id in &in_packs {
            let bytes = Oid::from_str(id).unwrap().as_bytes().to_vec();
            for at in [19, 4, 2] {
                let mut other = bytes.clone();
                other[at] ^= 0x5a;
                let other = Oid::from_bytes(&other).unwrap();
                if !in_packs.contains(&other.to_string()) {
                    assert!(!packed.contains(other), "{other}");
                    assert!(packed.read(other).is_none(), "{other}");
                }
            }
        }
    }

    /// Damage never hands back wrong bytes: a flipped byte in a pack's entries, an `.idx` of
    /// another pack, and a cut `.idx` each leave the object to libgit2.
    #[test]
    fn damage_leaves_the_object_to_libgit2() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        git(dir, &["init", "-q", "-b", "main"]);
        let body: String = (0..500).map(|l| format!("line {l}\n")).collect();
        std::fs::write(dir.join("f"), &body).unwrap();
        commit_all(dir, "one");
        git(dir, &["repack", "-adq"]);
        let blob = Oid::from_str(git(dir, &["rev-parse", "HEAD:f"]).trim()).unwrap();
        let git_dir = dir.join(".git");
        assert_eq!(
            Packed::open(&git_dir).read(blob).map(|(_, d)| d),
            Some(body.clone().into_bytes())
        );
        let pack_dir = git_dir.join("objects/pack");
        let stem = std::fs::read_dir(&pack_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "pack"))
            .unwrap()
            .with_extension("");
        let (pack, idx) = (stem.with_extension("pack"), stem.with_extension("idx"));
        let offset = Packed::open(&git_dir).packs[0].offset_of(blob).unwrap() as usize;
        // A byte of the compressed data flipped (inside the blob's entry).
        let good = std::fs::read(&pack).unwrap();
        let mut bad = good.clone();
        bad[offset + 40] ^= 0x55;
        for p in [&pack, &idx] {
            let mut perm = std::fs::metadata(p).unwrap().permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o644);
            std::fs::set_permissions(p, perm).unwrap();
        }
        std::fs::write(&pack, &bad).unwrap();
        assert_eq!(Packed::open(&git_dir).read(blob), None);
        std::fs::write(&pack, &good).unwrap();
        // The index's record of the pack's checksum no longer matches.
        let good_idx = std::fs::read(&idx).unwrap();
        let mut other = good_idx.clone();
        let at = other.len() - 40;
        other[at] ^= 1;
        std::fs::write(&idx, &other).unwrap();
        assert!(Packed::open(&git_dir).is_empty());
        // A cut index.
        std::fs::write(&idx, &good_idx[..good_idx.len() / 2]).unwrap();
        assert!(Packed::open(&git_dir).is_empty());
        std::fs::write(&idx, &good_idx).unwrap();
        assert!(Packed::open(&git_dir).read(blob).is_some());
    }

    /// Bytes no deflate can shrink (xorshift), `n` of them.
    fn noise(seed: u64, n: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// Stock git's packs at every compression level (0 writes stored blocks), with no deltas
    /// (`--window=0`): incompressible blobs around zlib's block sizes, compressible ones, an
    /// empty blob and the empty tree, and ids whose first byte is `00` and `ff` (the fan-out
    /// table's first and last slots): each reads back as `git cat-file` gives it, none is left
    /// to libgit2 (the bounded read never cuts a whole entry stock git wrote).
    #[test]
    fn every_whole_entry_stock_git_writes_at_any_level_reads_back() {
        let sizes = [
            0usize,
            1,
            100,
            16_383,
            16_384,
            16_385,
            32_768,
            65_535,
            65_536,
            65_537,
            200_003,
            1 << 20,
        ];
        for level in ["0", "1", "6", "9"] {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path();
            git(dir, &["init", "-q", "-b", "main"]);
            for (i, n) in sizes.iter().enumerate() {
                std::fs::write(dir.join(format!("noise{i}")), noise(i as u64 + 7, *n)).unwrap();
                let text: String = (0..*n / 20).map(|l| format!("line {l:>13}\n")).collect();
                std::fs::write(dir.join(format!("text{i}")), text).unwrap();
            }
            // Blobs whose ids start with 00 and ff.
            for first in [0x00u8, 0xff] {
                let data = (0u32..)
                    .map(|k| format!("edge {first} {k}\n"))
                    .find(|d| {
                        Oid::hash_object(ObjectType::Blob, d.as_bytes())
                            .unwrap()
                            .as_bytes()[0]
                            == first
                    })
                    .unwrap();
                std::fs::write(dir.join(format!("edge{first}")), data).unwrap();
            }
            std::fs::create_dir(dir.join("sub")).unwrap();
            std::fs::write(dir.join("sub/empty"), b"").unwrap();
            git(dir, &["add", "-A"]);
            let empty_tree = git(dir, &["mktree"]);
            git(
                dir,
                &[
                    "-c",
                    "user.name=t",
                    "-c",
                    "user.email=t@example.com",
                    "commit",
                    "-qm",
                    "one",
                ],
            );
            git(dir, &["tag", "empty", empty_tree.trim()]);
            git(
                dir,
                &[
                    "-c",
                    &format!("core.compression={level}"),
                    "-c",
                    &format!("pack.compression={level}"),
                    "repack",
                    "-adfq",
                    "--window=0",
                ],
            );
            let packed = Packed::open(&dir.join(".git"));
            assert_eq!(packed.len(), 1);
            let all = git(dir, &["rev-list", "--objects", "--all"]);
            let mut firsts = std::collections::BTreeSet::new();
            for line in all.lines() {
                let oid = Oid::from_str(&line[..40]).unwrap();
                firsts.insert(oid.as_bytes()[0]);
                let (kind, data) = packed
                    .read(oid)
                    .unwrap_or_else(|| panic!("level {level}: {line} left to libgit2"));
                let want = Command::new("git")
                    .arg("-C")
                    .arg(dir)
                    .args(["cat-file", kind.str(), &line[..40]])
                    .output()
                    .unwrap();
                assert!(data == want.stdout, "level {level}: {line}");
            }
            assert!(firsts.contains(&0) && firsts.contains(&0xff));
        }
    }

    /// An `.idx` whose offsets all go through the 8-byte table (as git writes them past
    /// 2 GiB; stock git reads this one too): every object still reads back.
    #[test]
    fn offsets_in_the_eight_byte_table_are_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        git(dir, &["init", "-q", "-b", "main"]);
        for i in 0..40 {
            std::fs::write(dir.join(format!("f{i}")), format!("file {i}\n")).unwrap();
        }
        commit_all(dir, "one");
        git(dir, &["repack", "-adq"]);
        let git_dir = dir.join(".git");
        let idx_path = std::fs::read_dir(git_dir.join("objects/pack"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "idx"))
            .unwrap();
        let idx = std::fs::read(&idx_path).unwrap();
        let count = u32_at(&idx, 8 + 255 * 4).unwrap() as usize;
        let small_at = IDS_AT + 24 * count;
        let mut out = idx[..small_at].to_vec();
        let mut large = Vec::new();
        // All but the first (git allows no more than `count - 1` 8-byte offsets), in reverse,
        // so a slot read as the object's own number is caught.
        out.extend_from_slice(&idx[small_at..small_at + 4]);
        for i in 1..count {
            let small = u32_at(&idx, small_at + 4 * i).unwrap();
            let slot = (count - 1 - i) as u32;
            out.extend_from_slice(&(0x8000_0000 | slot).to_be_bytes());
            large.push((slot, u64::from(small)));
        }
        large.sort();
        for (_, off) in &large {
            out.extend_from_slice(&off.to_be_bytes());
        }
        let tail = idx.len() - 40;
        out.extend_from_slice(&idx[tail..tail + 20]);
        let sum: [u8; 20] = {
            use sha1::Digest;
            sha1::Sha1::digest(&out).into()
        };
        out.extend_from_slice(&sum);
        let mut perm = std::fs::metadata(&idx_path).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o644);
        std::fs::set_permissions(&idx_path, perm).unwrap();
        std::fs::write(&idx_path, &out).unwrap();
        // Stock git reads the crafted index.
        git(dir, &["cat-file", "-p", "HEAD^{tree}"]);
        let packed = Packed::open(&git_dir);
        assert_eq!(packed.len(), 1);
        let all = git(dir, &["rev-list", "--objects", "--all"]);
        let mut read = 0;
        for line in all.lines() {
            let oid = Oid::from_str(&line[..40]).unwrap();
            if packed.read(oid).is_some() {
                read += 1;
            }
        }
        assert_eq!(read, all.lines().count());
    }

    /// A pack of no objects (its `.idx` counts 0), an `.idx` with no `.pack`, a directory
    /// named like an index and a symlinked pack: none is read, none panics, the others' objects
    /// still read.
    #[test]
    fn empty_missing_and_odd_packs_are_harmless() {
        let tmp = one_packed_commit();
        let dir = tmp.path();
        let git_dir = dir.join(".git");
        let pack_dir = git_dir.join("objects/pack");
        let o = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["pack-objects", "-q"])
            .arg(pack_dir.join("pack"))
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        std::fs::write(pack_dir.join("pack-1234.idx"), IDX_V2).unwrap();
        // A whole index with no pack beside it.
        let idx = std::fs::read_dir(&pack_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "idx"))
            .unwrap();
        std::fs::copy(&idx, pack_dir.join("pack-nopack.idx")).unwrap();
        std::fs::create_dir(pack_dir.join("pack-dir.idx")).unwrap();
        let tree = Oid::from_str(git(dir, &["rev-parse", "HEAD^{tree}"]).trim()).unwrap();
        let packed = Packed::open(&git_dir);
        assert_eq!(packed.len(), 2, "the real pack and the empty one");
        assert!(packed.read(tree).is_some());
        assert_eq!(packed.read(Oid::from_bytes(&[0xff; 20]).unwrap()), None);
        assert_eq!(packed.read(Oid::from_bytes(&[0x00; 20]).unwrap()), None);
    }

    /// What is not a regular file in `objects/pack/` under an index's name — a FIFO, a link
    /// to a device that never ends — is left out without being read (libgit2 refuses what
    /// `fstat` does not call a regular file): opening the packs neither blocks nor reads
    /// without end, and the real pack beside them is read.
    #[test]
    fn what_is_not_a_regular_file_is_left_out_unread() {
        let tmp = one_packed_commit();
        let dir = tmp.path();
        let git_dir = dir.join(".git");
        let pack_dir = git_dir.join("objects/pack");
        let fifo = pack_dir.join("pack-fifo.idx");
        let o = Command::new("mkfifo").arg(&fifo).output().unwrap();
        assert!(o.status.success(), "{o:?}");
        std::os::unix::fs::symlink("/dev/zero", pack_dir.join("pack-zero.idx")).unwrap();
        let tree = Oid::from_str(git(dir, &["rev-parse", "HEAD^{tree}"]).trim()).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let packed = Packed::open(&git_dir);
            tx.send((packed.len(), packed.read(tree).is_some()))
                .unwrap();
        });
        let got = rx.recv_timeout(std::time::Duration::from_secs(20));
        if got.is_err() {
            // Let a blocked open return, so the test ends.
            let _ = std::fs::OpenOptions::new().write(true).open(&fifo);
        }
        assert_eq!(got, Ok((1, true)), "the packs did not open in 20 s");
    }

    /// Packs opened and then rolled up (their files removed, the objects now in a new pack)
    /// still read through the handles kept; objects in a pack written after the opening are
    /// left to libgit2, and a new opening finds them.
    #[test]
    fn packs_removed_after_opening_still_read_and_newer_ones_are_left_to_libgit2() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        git(dir, &["init", "-q", "-b", "main"]);
        let commit = |n: &str| {
            std::fs::write(dir.join(n), format!("{n}\n")).unwrap();
            commit_all(dir, n);
            Oid::from_str(git(dir, &["rev-parse", "HEAD^{tree}"]).trim()).unwrap()
        };
        let first = commit("a");
        git(dir, &["repack", "-dq"]);
        let git_dir = dir.join(".git");
        let packed = Packed::open(&git_dir);
        assert_eq!(packed.len(), 1);
        let second = commit("b");
        // All objects rolled up into one new pack, the old one removed.
        git(dir, &["repack", "-adq"]);
        assert_eq!(Packed::open(&git_dir).len(), 1);
        assert!(
            packed.read(first).is_some(),
            "the removed pack's handle reads"
        );
        assert_eq!(packed.read(second), None, "a newer pack's object");
        assert!(Packed::open(&git_dir).read(second).is_some());
    }
}
