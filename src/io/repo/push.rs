//! A push of what provisio already stored: the pack a remote needs is assembled from the
//! entries of the clone's own packs, copied as they are, instead of by libgit2's push pack
//! builder, which reads every object it sends, searches it for deltas and compresses it again
//! (the push was about half of a product release at 10,000 tenants, and ≈ 26 of the first
//! push's 41 s; BENCHMARKS.md, issue 13).
//!
//! - [`pack_for`]: the pack a remote whose branch is at `old` needs to have `new`. The
//!   objects are those of each commit from `old` (excluded) to `new` that its first parent
//!   lacks at the same path ([`outgoing`]): what `git rev-list --objects new ^old` lists
//!   less what a parent already had, found by comparing trees by id, so a release touching one
//!   file per tenant reads the trees on the changed paths only, never the whole tree of `old`
//!   (libgit2's `git_packbuilder_insert_walk` marks every tree of the remote's commit
//!   uninteresting first). Every object the new commits reach is in the pack or reached by
//!   `old`, which the remote has whole; the pack is self-contained (no deltas against objects
//!   it does not hold: not a "thin" pack). Each object found as a whole entry in a pack of the
//!   clone is copied as stored ([`super::pack::copy_entry`], the CRC-32 checked, as git's
//!   `pack-objects` reuses an entry); a delta, a loose object, or an entry failing its check is
//!   read through the object database and compressed again. The pack goes to an anonymous
//!   temporary file in the git directory (nothing to clean up after a kill), so its length is
//!   known before it is sent.
//! - [`push_local`]: the receiving side for a local remote (a path or `file://` URL, as
//!   libgit2's local transport, `transports/local.c` `local_push`, serves it in-process: there
//!   is no `git receive-pack` without shelling out). The pack is written straight into the
//!   bare remote's `objects/pack/` as provisio stores its own packs ([`super::pack`]'s
//!   `store_with`: temporary names, flushed, the `.pack` renamed before its `.idx`), each
//!   object checked first as a receiving `git index-pack` checks it: inflated to the size its
//!   entry gives and hashed to its id ([`super::pack::check_entry`]) — except the entries of
//!   the packs this process stored in this run from objects it hashed itself, while their
//!   files are still the ones written ([`super::pack::FreshPacks`], which the output clone
//!   keeps from its commits): each id is the SHA-1 of the very bytes deflated into the entry,
//!   so hashing it again proves nothing new, and the CRC-32 every copied entry is checked
//!   against catches any change on the disk since (7.5 % of a release's CPU went to hashing
//!   them again). A pack opened here is read through the descriptor its checks and identity
//!   were taken from, and only if it is a regular file ([`super::pack::open_regular`]: a
//!   FIFO named like a pack is never waited on). libgit2's indexer, which
//!   `local_push` uses, did the same work in 11 of a first push's 13 s at 10,000 tenants
//!   (its connectivity check, off in `local_push`, another 1.5 s of a release); the pack holds
//!   [`outgoing`]'s list, which the tests check against `git rev-list --objects`. Then the
//!   branch is moved by compare-and-swap from the value read before
//!   (`git_reference_create_matching`; `local_push` forced it, so a push in between was
//!   overwritten). Like `local_push`, a remote with a work tree is refused: its checked-out
//!   branch would move under its files.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

use git2::{ErrorCode, Odb, Oid, Repository};
use sha1::{Digest, Sha1};

use super::bulk::{TreeEntries, read_tree};
use super::failure::{PushFailure, refusal};
use super::pack::{
    Damaged, Deflater, FreshPacks, HashingWriter, PackEntry, check_entry, check_object, check_pair,
    copy_entry, idx_entries, idx_stems, read_regular, store_with, write_entry,
};
use super::packed::Packed;
use super::transport::{RemoteError, redact};

/// A failure of provisio's own side while it prepares a push (reading its objects, writing
/// the pack): not the remote's.
fn local(url: &str, what: &str, e: impl std::fmt::Display) -> PushFailure {
    PushFailure::Remote(RemoteError::Setup {
        url: redact(url),
        reason: format!("cannot prepare the push: {what}: {e}"),
    })
}

/// What a commit made on top of its parent ([`lacked`]'s shortcut): the commit, its parent,
/// and every object its tree edits stored or found stored (`super::bulk`'s `Outcome::placed`).
/// Every object reachable from the commit and not from the parent is among them: an entry the
/// edits did not place is the parent's own, so a remote holding the parent holds it and all
/// below it. Objects the remote has already may be among them (sent again: harmless, as git's
/// thin packs are not required); the output clone records one only when they are few
/// (`OutputRepo::commit_summary`: the tenants directory edited, not read whole, and no more
/// objects found stored than stored), else the walk sends what changed.
#[derive(Debug, Clone)]
pub struct Made {
    pub commit: Oid,
    pub parent: Oid,
    /// Sorted, each once; the commit is not among them.
    pub objects: Vec<Oid>,
}

/// The objects a remote whose branch `refname` is at `old` (`None`: no such branch) lacks to
/// have `new` ([`outgoing`]; when `made` says `new` was made on `old`, its objects, with no
/// walk of the two trees — in a release at 10,000 tenants, 20,000 trees read and compared). [`PushFailure::Moved`] when `old` is not in the clone or not an
/// ancestor of `new` (the remote moved: fetch and redo the work on top), with git's words for
/// each.
fn lacked(
    repo: &Repository,
    url: &str,
    refname: &str,
    new: Oid,
    old: Option<Oid>,
    made: Option<&Made>,
) -> Result<Vec<Oid>, PushFailure> {
    if let Some(old) = old {
        if repo.find_commit(old).is_err() {
            return Err(PushFailure::Moved(format!(
                "{refname}: the remote is at {old}, which is not present locally (fetch first)"
            )));
        }
        let ahead = repo
            .graph_descendant_of(new, old)
            .map_err(|e| local(url, "compare with the remote's branch", e.message()))?;
        if !ahead {
            return Err(PushFailure::Moved(format!(
                "{refname}: non-fast-forward ({new} does not contain the remote's {old})"
            )));
        }
    }
    let started = std::time::Instant::now();
    if let Some(m) = made.filter(|m| m.commit == new && Some(m.parent) == old) {
        let mut objects = Vec::with_capacity(m.objects.len() + 1);
        objects.push(new);
        objects.extend(m.objects.iter().copied().filter(|&o| o != new));
        // Every debug build (the tests) checks the shortcut against the walk.
        #[cfg(debug_assertions)]
        {
            let walked = outgoing(repo, new, old).map_err(|e| local(url, "list the objects", e))?;
            let ours: std::collections::HashSet<Oid> = objects.iter().copied().collect();
            let missing: Vec<&Oid> = walked.iter().filter(|o| !ours.contains(o)).collect();
            assert!(
                missing.is_empty(),
                "objects the commit made lack {missing:?}"
            );
        }
        tracing::debug!(
            objects = objects.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "the objects to push, as the commit made them"
        );
        return Ok(objects);
    }
    let objects = outgoing(repo, new, old).map_err(|e| local(url, "list the objects", e))?;
    tracing::debug!(
        objects = objects.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "the objects to push"
    );
    Ok(objects)
}

/// The pack a remote whose branch `refname` is at `old` needs to have `new` (see [`lacked`]),
/// in an anonymous temporary file of `repo`'s git directory, positioned at its start.
pub(super) fn pack_for(
    repo: &Repository,
    url: &str,
    refname: &str,
    new: Oid,
    old: Option<Oid>,
    made: Option<&Made>,
) -> Result<File, PushFailure> {
    let objects = lacked(repo, url, refname, new, old, made)?;
    let started = std::time::Instant::now();
    let n = u32::try_from(objects.len())
        .map_err(|_| local(url, "write the pack", "more objects than a pack holds"))?;
    let mut file = tempfile::tempfile_in(repo.path()).map_err(|e| {
        local(
            url,
            &format!("a temporary file in {}", repo.path().display()),
            e,
        )
    })?;
    let odb = repo
        .odb()
        .map_err(|e| local(url, "open the object database", e.message()))?;
    (|| {
        let mut buffered = BufWriter::with_capacity(1 << 20, &file);
        let mut out = HashingWriter {
            inner: &mut buffered,
            sha: Sha1::new(),
            written: 0,
        };
        out.write_all(b"PACK")?;
        out.write_all(&2u32.to_be_bytes())?;
        out.write_all(&n.to_be_bytes())?;
        let mut entries = Vec::with_capacity(objects.len());
        write_entries(
            &repo.path().join("objects/pack"),
            &odb,
            &objects,
            &mut out,
            &mut entries,
            Verify::No,
        )?;
        let checksum: [u8; 20] = out.sha.finalize().into();
        buffered.write_all(&checksum)?;
        buffered.flush()
    })()
    .map_err(|e| local(url, "write the pack", e))?;
    let bytes = file.stream_position().unwrap_or_default();
    file.rewind()
        .map_err(|e| local(url, "rewind the pack", e))?;
    tracing::debug!(
        bytes,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "the pack to push"
    );
    Ok(file)
}

/// The objects of the commits `new` reaches and `old` does not, each with what its first
/// parent lacks at the same path (see the module's documentation), each once.
///
/// The commits are visited parents first (reverse topological order), and that is what makes
/// skipping sound: an entry is skipped when the parent's tree has it at the same path, or when
/// it is a tree already listed — and a listed tree had only the entries *its* parent lacked
/// listed. Skipping is sound only if that parent was visited whole before: in any other order
/// (libgit2's default is by date, newest first) the skips can lean on each other in a circle
/// — subtrees trading paths between new commits — and an object no commit lists is never
/// sent, leaving the remote's branch on a commit with a missing object.
fn outgoing(repo: &Repository, new: Oid, old: Option<Oid>) -> Result<Vec<Oid>, git2::Error> {
    let mut walk = repo.revwalk()?;
    walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE)?;
    walk.push(new)?;
    if let Some(old) = old {
        walk.hide(old)?;
    }
    // Trees are read from the clone's packs directly (a release reads tens of thousands).
    let (packed, odb) = (Packed::open(repo.path()), repo.odb()?);
    let read = |id: Oid| read_tree(&packed, &odb, id);
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for commit in walk {
        let commit = repo.find_commit(commit?)?;
        if seen.insert(commit.id()) {
            out.push(commit.id());
        }
        let tree = commit.tree_id();
        let parent = match commit.parent_ids().next() {
            Some(p) => Some(repo.find_commit(p)?.tree_id()),
            None => None,
        };
        if parent == Some(tree) {
            continue;
        }
        if seen.insert(tree) {
            out.push(tree);
            let before = parent.map(read).transpose()?;
            lacking(&read, before.as_ref(), &read(tree)?, &mut seen, &mut out)?;
        }
    }
    Ok(out)
}

/// The entries of `new` that `old` (the tree at the same path in the parent) lacks, trees
/// followed down (`read` reads one). A tree already listed had its own entries listed then.
/// An entry's kind is its mode's as libgit2 reads it (`git_tree_entry_type`): a submodule's
/// (`160000`), a tree's (`S_ISDIR`), else a blob's.
fn lacking(
    read: &dyn Fn(Oid) -> Result<TreeEntries, git2::Error>,
    old: Option<&TreeEntries>,
    new: &TreeEntries,
    seen: &mut HashSet<Oid>,
    out: &mut Vec<Oid>,
) -> Result<(), git2::Error> {
    // Every entry, a name a malformed tree gives twice included (libgit2 walked them all).
    for (name, id, mode) in new.iter_all() {
        if old.and_then(|t| t.get(name)).is_some_and(|(b, _)| b == id) {
            continue;
        }
        match mode & 0o170000 {
            0o040000 => {
                if !seen.insert(id) {
                    continue;
                }
                out.push(id);
                let sub_before = match old.and_then(|t| t.get_tree(name)) {
                    Some(b) => Some(read(b)?),
                    None => None,
                };
                lacking(read, sub_before.as_ref(), &read(id)?, seen, out)?;
            }
            // A submodule's commit (another repository's object) is not sent, as git sends
            // none.
            0o160000 => {}
            _ if seen.insert(id) => out.push(id),
            _ => {}
        }
    }
    Ok(())
}

/// A pack of the clone, its entries by id (as its `.idx` lists them) and the offsets where
/// entries start, sorted, with the offset where the last one ends; its `.pack` as opened when
/// checked, and whether its entries are trusted as they are ([`FreshPacks::trusts`]).
struct Stored {
    stem: PathBuf,
    file: File,
    by_id: Vec<PackEntry>,
    starts: Vec<u64>,
    trusted: bool,
}

impl Stored {
    /// The packs of `pack_dir` that pass [`check_pair`]; one that does not is left out (its
    /// objects are read through the object database, which reports real damage), as is one
    /// whose `.idx` or `.pack` is not a regular file (a FIFO is not waited on:
    /// [`super::pack::open_regular`]). A pack `fresh` trusts, its files opened here still the
    /// ones this process wrote, is marked trusted.
    fn all(pack_dir: &Path, fresh: &FreshPacks) -> std::io::Result<Vec<Stored>> {
        let stems = idx_stems(pack_dir)?;
        let mut packs = Vec::with_capacity(stems.len());
        for stem in stems {
            let Ok((idx, idx_meta)) = read_regular(&stem.with_extension("idx")) else {
                continue;
            };
            let Ok(by_id) = idx_entries(&idx) else {
                continue;
            };
            let Ok((file, meta)) = check_pair(&stem, &idx, by_id.len()) else {
                continue;
            };
            let mut starts: Vec<u64> = by_id.iter().map(|e| e.offset).collect();
            starts.push(meta.len().saturating_sub(20));
            starts.sort_unstable();
            packs.push(Stored {
                trusted: fresh.trusts(&stem, &meta, &idx_meta),
                stem,
                file,
                by_id,
                starts,
            });
        }
        Ok(packs)
    }

    /// The entry of `oid` and the offset where it ends, if this pack holds it.
    fn find(&self, oid: Oid) -> Option<(PackEntry, u64)> {
        let at = self
            .by_id
            .binary_search_by(|e| e.oid.as_bytes().cmp(oid.as_bytes()))
            .ok()?;
        let e = self.by_id[at];
        let next = self.starts.partition_point(|&s| s <= e.offset);
        Some((e, *self.starts.get(next)?))
    }
}

/// Whether [`write_entries`] checks each object against its id before it writes it.
#[derive(Clone, Copy)]
enum Verify<'a> {
    /// No: the receiver checks what it gets (a remote's `git index-pack`).
    No,
    /// Yes, as the receiving side of a push checks it ([`check_entry`], [`check_object`]),
    /// except the entries of the packs these record, still the files this process wrote
    /// ([`FreshPacks`]): copied on their CRC-32 alone.
    ExceptFresh(&'a FreshPacks),
}

/// Writes the entries of `objects` to `out` (see the module's documentation), each appended
/// to `entries` with its offset and CRC-32: those found in a pack of `pack_dir` copied from it,
/// pack by pack in the order they are stored, the others read through `odb`, each checked
/// against its id first as `verify` says.
fn write_entries<W: Write>(
    pack_dir: &Path,
    odb: &Odb<'_>,
    objects: &[Oid],
    out: &mut HashingWriter<'_, W>,
    entries: &mut Vec<PackEntry>,
    verify: Verify<'_>,
) -> std::io::Result<()> {
    let (fresh, verify) = match verify {
        Verify::No => (None, false),
        Verify::ExceptFresh(fresh) => (Some(fresh), true),
    };
    let packs = Stored::all(pack_dir, fresh.unwrap_or(&FreshPacks::default()))?;
    let mut from_pack: Vec<Vec<(PackEntry, u64)>> = vec![Vec::new(); packs.len()];
    let mut elsewhere = Vec::new();
    // The packs this process just stored first: a commit's objects are nearly all there, and
    // each pack tried and missed is a binary search of its ids.
    let mut order: Vec<usize> = (0..packs.len()).collect();
    order.sort_by_key(|&i| !packs[i].trusted);
    for &oid in objects {
        match order
            .iter()
            .find_map(|&i| packs[i].find(oid).map(|f| (i, f)))
        {
            Some((i, found)) => from_pack[i].push(found),
            None => elsewhere.push(oid),
        }
    }
    let mut buf = Vec::new();
    let mut zbuf = Deflater::default();
    let mut inflated = Vec::new();
    for (pack, mut take) in packs.iter().zip(from_pack) {
        if take.is_empty() {
            continue;
        }
        take.sort_unstable_by_key(|(e, _)| e.offset);
        // The very file checked (and whose identity `trusted` was decided on).
        let mut file = &pack.file;
        file.rewind()?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut at = 0u64;
        for (e, end) in take {
            let len = end - e.offset;
            reader.seek_relative(e.offset as i64 - at as i64)?;
            buf.resize(len as usize, 0);
            reader.read_exact(&mut buf)?;
            at = end;
            let whole = buf
                .first()
                .is_some_and(|b| (1..=4).contains(&((b >> 4) & 7)));
            // Checked against its id first when the receiver relies on it, unless its pack
            // is one this process wrote from objects it hashed (the CRC-32 below still
            // catches any change since); a whole entry that fails, like one failing its
            // CRC-32, is read through the object database instead (which fails in turn if
            // that copy is damaged too).
            let sound = !(verify && whole && !pack.trusted)
                || check_entry(e.oid, &buf, &mut inflated)
                    .inspect_err(|why| {
                        tracing::warn!(
                            "{}: {why}; the object is read through the object database instead",
                            pack.stem.with_extension("pack").display()
                        )
                    })
                    .is_ok();
            let offset = out.written;
            let crc = if !whole || !sound {
                // A delta (a fetched pack's) is read whole, its base resolved.
                whole_entry(odb, e.oid, out, &mut zbuf, verify)?
            } else {
                match copy_entry(&pack.stem, &e, &buf, odb, out, &mut zbuf) {
                    Ok(crc) => crc,
                    Err(damaged) if damaged.get_ref().is_some_and(|d| d.is::<Damaged>()) => {
                        tracing::warn!(
                            "{damaged}; the object is read through the object database instead"
                        );
                        whole_entry(odb, e.oid, out, &mut zbuf, verify)?
                    }
                    Err(e) => return Err(e),
                }
            };
            entries.push(PackEntry {
                oid: e.oid,
                offset,
                crc,
            });
        }
    }
    for oid in elsewhere {
        let offset = out.written;
        let crc = whole_entry(odb, oid, out, &mut zbuf, verify)?;
        entries.push(PackEntry { oid, offset, crc });
    }
    Ok(())
}

/// Object `oid` read through `odb` and written to `out` as a whole entry, checked against its
/// id first with `verify`. Returns the entry's CRC-32.
fn whole_entry(
    odb: &Odb<'_>,
    oid: Oid,
    out: &mut impl Write,
    zbuf: &mut Deflater,
    verify: bool,
) -> std::io::Result<u32> {
    let obj = odb.read(oid).map_err(std::io::Error::other)?;
    if verify {
        check_object(oid, obj.kind(), obj.data())?;
    }
    write_entry(obj.kind(), obj.data(), out, zbuf)
        .map_err(|e| std::io::Error::other(format!("object {oid}: {e}")))
}

/// Pushes `new` to `refname` of the local repository at `url` (a path or `file://` URL),
/// never forced: the remote's branch read, the pack [`pack_for`] gives indexed into the
/// remote, the branch moved from the value read (see the module's documentation).
/// The entries of the packs `fresh` records, still the files this process wrote, are copied
/// on their CRC-32 alone ([`FreshPacks`]).
pub(super) fn push_local(
    repo: &Repository,
    url: &str,
    refname: &str,
    new: Oid,
    fresh: &FreshPacks,
    made: Option<&Made>,
) -> Result<(), PushFailure> {
    let setup = |reason: String| {
        PushFailure::Remote(RemoteError::Setup {
            url: redact(url),
            reason,
        })
    };
    let path = local_path(url).ok_or_else(|| setup("not a local path".into()))?;
    // Missing or unreadable, as a remote that cannot be reached: worth retrying (libgit2's
    // local transport failed the same way).
    let remote = super::handle::open(&path).map_err(|e| {
        PushFailure::Remote(RemoteError::Network {
            url: redact(url),
            source: Box::new(e),
        })
    })?;
    if !remote.is_bare() {
        return Err(setup(
            "a local remote must be a bare repository (pushing would move the branch checked out in its work tree)".into(),
        ));
    }
    let old = match remote.refname_to_id(refname) {
        Ok(id) => Some(id),
        Err(e) if e.code() == ErrorCode::NotFound => None,
        Err(e) => return Err(refusal(url, refname.to_owned(), e.message().to_owned())),
    };
    if old == Some(new) {
        return Ok(());
    }
    let objects = lacked(repo, url, refname, new, old, made)?;
    let started = std::time::Instant::now();
    let local_odb = repo
        .odb()
        .map_err(|e| local(url, "open the object database", e.message()))?;
    let stored = store_with(
        &remote.path().join("objects/pack"),
        objects.len(),
        |out, entries| {
            write_entries(
                &repo.path().join("objects/pack"),
                &local_odb,
                &objects,
                out,
                entries,
                Verify::ExceptFresh(fresh),
            )
        },
    );
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        fresh_packs = fresh.len(),
        "the pack stored in the remote"
    );
    if let Err(e) = stored {
        return Err(PushFailure::Refused {
            refname: refname.to_owned(),
            message: format!("unpack failed: {e}"),
        });
    }
    let moved = match old {
        Some(old) => remote.reference_matching(refname, new, true, old, "push"),
        None => remote.reference(refname, new, false, "push"),
    };
    match moved {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.code(), ErrorCode::Modified | ErrorCode::Exists) => Err(
            PushFailure::Moved(format!("{refname}: failed to update ref ({})", e.message())),
        ),
        Err(e) => Err(refusal(url, refname.to_owned(), e.message().to_owned())),
    }
}

/// The path a local remote's URL names: a `file://` URL's path, or the path itself.
fn local_path(url: &str) -> Option<PathBuf> {
    if url.contains("://") {
        url::Url::parse(url).ok()?.to_file_path().ok()
    } else {
        Some(PathBuf::from(url))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::process::Command;

    use std::os::unix::fs::PermissionsExt;

    use super::super::bulk::in_bulk_stored;
    use super::super::pack::StoredPack;
    use super::super::tests::{assert_fsck_clean, stock_git_here};
    use super::*;

    const MAIN: &str = "refs/heads/main";

    /// A commit of 20 tenant directories on `main` (each with a file at `version` for the
    /// first `changed` tenants and at 1 for the others, and a file that never changes), its
    /// trees and blobs stored in a pack by [`in_bulk`], the commit itself loose (libgit2's):
    /// both kinds of storage a push reads.
    fn commit(repo: &Repository, version: u32, changed: usize, parent: Option<Oid>) -> Oid {
        commit_stored(repo, version, changed, parent).0
    }

    /// A work repository and, beside it in a temporary directory, an empty bare remote and
    /// its `file://` URL.
    fn work_and_remote() -> (tempfile::TempDir, Repository, PathBuf, String) {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path().join("work")).unwrap();
        let bare = dir.path().join("remote.git");
        Repository::init_bare(&bare).unwrap();
        let url = format!("file://{}", bare.display());
        (dir, repo, bare, url)
    }

    /// [`commit`], with the packs [`in_bulk_stored`] reports it stored.
    fn commit_stored(
        repo: &Repository,
        version: u32,
        changed: usize,
        parent: Option<Oid>,
    ) -> (Oid, Vec<StoredPack>) {
        let (tree, stored) = in_bulk_stored(
            repo.path(),
            |_, e| e,
            |b| {
                let mut root = b.treebuilder(None)?;
                for t in 0..20 {
                    let mut dir = b.treebuilder(None)?;
                    let v = if t < changed { version } else { 1 };
                    let app = format!("tenant: t{t}\nversion: {v}\n");
                    dir.insert("app.yaml", b.blob(app.as_bytes())?, 0o100644)?;
                    let fixed = format!("tenant: t{t}\n");
                    dir.insert("fixed.yaml", b.blob(fixed.as_bytes())?, 0o100644)?;
                    root.insert(format!("t{t}"), b.write_tree(&dir)?, 0o040000)?;
                }
                b.write_tree(&root)
            },
        )
        .unwrap();
        let tree = repo.find_tree(tree).unwrap();
        let sig = git2::Signature::new("t", "t@example.com", &git2::Time::new(0, 0)).unwrap();
        let parents: Vec<_> = parent
            .map(|p| repo.find_commit(p).unwrap())
            .into_iter()
            .collect();
        let parents: Vec<_> = parents.iter().collect();
        let msg = format!("version {version}");
        let id = repo
            .commit(None, &sig, &sig, &msg, &tree, &parents)
            .unwrap();
        repo.reference(MAIN, id, true, &msg).unwrap();
        (id, stored.packs)
    }

    /// What stock git says `new` has that `old` lacks (`git rev-list --objects`).
    fn rev_list(git_dir: &Path, args: &[String]) -> BTreeSet<Oid> {
        let out = Command::new("git")
            .arg("--git-dir")
            .arg(git_dir)
            .args(["rev-list", "--objects"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| Oid::from_str(&l[..40]).unwrap())
            .collect()
    }

    /// The bare remote at `bare` has its `main` at `commit` and checks clean (`when` says
    /// after what).
    fn assert_landed(bare: &Path, commit: Oid, when: &str) {
        let remote = Repository::open_bare(bare).unwrap();
        assert_eq!(remote.refname_to_id(MAIN).unwrap(), commit, "{when}");
        assert_fsck_clean(bare, when);
    }

    /// Pushes to a bare remote land whole and sound: the first into an empty repository, the
    /// next from where the remote is, with the objects stock git says are new (and, where a
    /// file went back to an earlier version, at most objects the remote has already); stock
    /// `git index-pack` takes the first pack as it is; a push of what the remote has sends
    /// nothing.
    #[test]
    fn a_local_push_sends_what_the_remote_lacks_and_stock_git_agrees() {
        let (dir, repo, bare, url) = work_and_remote();
        let c1 = commit(&repo, 1, 20, None);
        let c2 = commit(&repo, 2, 5, Some(c1));
        let c3 = commit(&repo, 3, 3, Some(c2));
        // Back to version 1 for the first tenant: objects c1 has, again.
        let c4 = commit(&repo, 1, 1, Some(c3));

        push_local(&repo, &url, MAIN, c1, &FreshPacks::default(), None).unwrap();
        assert_landed(&bare, c1, "after the first push");

        if stock_git_here() {
            let first = outgoing(&repo, c1, None).unwrap();
            let want = rev_list(repo.path(), &[c1.to_string()]);
            assert_eq!(first.iter().copied().collect::<BTreeSet<_>>(), want);
            assert_eq!(first.len(), want.len(), "each object once");
            // Stock git's indexer takes the pack as it is.
            let mut pack = pack_for(&repo, &url, MAIN, c1, None, None).unwrap();
            let fresh = dir.path().join("fresh.git");
            Repository::init_bare(&fresh).unwrap();
            let mut child = Command::new("git")
                .arg("--git-dir")
                .arg(&fresh)
                .args(["index-pack", "--stdin", "--strict"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            std::io::copy(&mut pack, child.stdin.as_mut().unwrap()).unwrap();
            drop(child.stdin.take());
            assert!(child.wait().unwrap().success());

            let sent: BTreeSet<Oid> = outgoing(&repo, c4, Some(c1)).unwrap().into_iter().collect();
            let new = rev_list(repo.path(), &[c4.to_string(), format!("^{c1}")]);
            assert!(new.is_subset(&sent), "missing: {:?}", new.difference(&sent));
            let had = rev_list(repo.path(), &[c1.to_string()]);
            for extra in sent.difference(&new) {
                assert!(
                    had.contains(extra),
                    "{extra} is neither new nor the remote's"
                );
            }
            assert!(sent.len() < had.len(), "only the changed paths are sent");
        }

        push_local(&repo, &url, MAIN, c4, &FreshPacks::default(), None).unwrap();
        assert_landed(&bare, c4, "after the second push");
        let packs = crate::io::repo::bulk::tests::packs(&bare);
        push_local(&repo, &url, MAIN, c4, &FreshPacks::default(), None).unwrap();
        assert_eq!(
            crate::io::repo::bulk::tests::packs(&bare),
            packs,
            "nothing sent when the remote is there"
        );
    }

    /// A remote that moved — to a commit this clone lacks, or off this clone's history — is
    /// `Moved`, and nothing is written to it; a remote with a work tree is refused, as
    /// libgit2's local transport refuses it.
    #[test]
    fn a_moved_remote_is_left_as_it_is_and_a_work_tree_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path().join("work")).unwrap();
        let bare = dir.path().join("remote.git");
        let remote = Repository::init_bare(&bare).unwrap();
        let url = bare.display().to_string();
        let c1 = commit(&repo, 1, 20, None);
        push_local(&repo, &url, MAIN, c1, &FreshPacks::default(), None).unwrap();

        // Another writer's commit on the remote, which this clone has not fetched.
        let theirs = commit(&remote, 7, 2, Some(c1));
        let ours = commit(&repo, 2, 2, Some(c1));
        let packs = crate::io::repo::bulk::tests::packs(&bare);
        let e = push_local(&repo, &url, MAIN, ours, &FreshPacks::default(), None).unwrap_err();
        assert!(
            matches!(&e, PushFailure::Moved(m) if m.contains("not present locally")),
            "{e}"
        );
        assert_eq!(remote.refname_to_id(MAIN).unwrap(), theirs);
        assert_eq!(crate::io::repo::bulk::tests::packs(&bare), packs);

        // The remote's commit is known here, but not an ancestor of ours.
        let side = commit(&repo, 3, 2, Some(c1));
        remote.reference(MAIN, c1, true, "back").unwrap();
        push_local(&repo, &url, MAIN, side, &FreshPacks::default(), None).unwrap();
        let e = push_local(&repo, &url, MAIN, ours, &FreshPacks::default(), None).unwrap_err();
        assert!(
            matches!(&e, PushFailure::Moved(m) if m.contains("non-fast-forward")),
            "{e}"
        );
        assert_eq!(remote.refname_to_id(MAIN).unwrap(), side);

        let e = push_local(
            &repo,
            dir.path().join("work").to_str().unwrap(),
            MAIN,
            ours,
            &FreshPacks::default(),
            None,
        )
        .unwrap_err();
        assert!(
            matches!(&e, PushFailure::Remote(RemoteError::Setup { reason, .. }) if reason.contains("bare")),
            "{e}"
        );
    }

    /// Which packs of `git_dir` a push trusts as `fresh` records them.
    fn trusted(git_dir: &Path, fresh: &FreshPacks) -> Vec<bool> {
        Stored::all(&git_dir.join("objects/pack"), fresh)
            .unwrap()
            .iter()
            .map(|p| p.trusted)
            .collect()
    }

    /// Replaces `path` by a copy of its bytes written as `bytes` (another inode under the
    /// same name), as a person restoring a file would.
    fn replace(path: &Path, bytes: &[u8]) {
        let copy = path.with_extension("copy");
        std::fs::write(&copy, bytes).unwrap();
        std::fs::rename(&copy, path).unwrap();
    }

    /// Writes `bytes` over `path` in place: the same inode and size, the file's identity.
    fn write_in_place(path: &Path, bytes: &[u8]) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(path, bytes).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444)).unwrap();
    }

    /// A commit made by editing its parent's tree: the objects its edits placed, with the
    /// commit, are what a remote at the parent lacks (every debug build checks them against
    /// the walk in [`lacked`]); they are sent without the walk, and a remote elsewhere gets
    /// the walk's list.
    #[test]
    fn a_remote_at_the_parent_gets_what_the_commit_placed() {
        let (_dir, repo, bare, url) = work_and_remote();
        let c1 = commit(&repo, 1, 20, None);
        push_local(&repo, &url, MAIN, c1, &FreshPacks::default(), None).unwrap();
        let base = repo.find_commit(c1).unwrap().tree_id();
        let (tree, stored) = in_bulk_stored(
            repo.path(),
            |_, e| e,
            |b| {
                let mut root = b.treebuilder(Some(&b.find_tree(base)?))?;
                let t3 = root.get_tree("t3").unwrap();
                let mut t3 = b.treebuilder(Some(&b.find_tree(t3)?))?;
                t3.insert("app.yaml", b.blob(b"tenant: t3\nversion: 9\n")?, 0o100644)?;
                // Placed, though on disk already: sent again, harmlessly.
                t3.insert("fixed.yaml", b.blob(b"tenant: t3\n")?, 0o100644)?;
                root.insert("t3", b.write_tree(&t3)?, 0o040000)?;
                b.write_tree(&root)
            },
        )
        .unwrap();
        let sig = git2::Signature::new("t", "t@example.com", &git2::Time::new(0, 0)).unwrap();
        let parent = repo.find_commit(c1).unwrap();
        let c2 = repo
            .commit(
                Some(MAIN),
                &sig,
                &sig,
                "t3",
                &repo.find_tree(tree).unwrap(),
                &[&parent],
            )
            .unwrap();
        let made = Made {
            commit: c2,
            parent: c1,
            objects: stored.placed,
        };
        // The new blob, t3's tree, the root, and the unchanged blob placed again.
        assert_eq!(made.objects.len(), 4, "{:?}", made.objects);
        let listed = lacked(&repo, &url, MAIN, c2, Some(c1), Some(&made)).unwrap();
        assert_eq!(listed.len(), 5, "the commit and what it placed");
        // Made on another commit than the remote's: the walk's list.
        let elsewhere = Made {
            parent: c2,
            ..made.clone()
        };
        let walked = lacked(&repo, &url, MAIN, c2, Some(c1), Some(&elsewhere)).unwrap();
        assert_eq!(
            walked.len(),
            4,
            "the commit, the new blob, two trees: {walked:?}"
        );
        push_local(&repo, &url, MAIN, c2, &FreshPacks::default(), Some(&made)).unwrap();
        assert_landed(&bare, c2, "after a push of what the commit placed");
    }

    /// The packs a commit stored are trusted while their files are the ones written, and the
    /// push lands sound; a pack replaced by a copy of itself (same name and bytes, another
    /// inode) is no longer trusted (hashed again) and is forgotten; a pack another process
    /// wrote never is.
    #[test]
    fn a_commits_own_packs_are_trusted_only_while_their_files_are_the_ones_written() {
        let (_dir, repo, bare, url) = work_and_remote();
        let pack_dir = repo.path().join("objects/pack");
        let (c1, stored) = commit_stored(&repo, 1, 20, None);
        assert_eq!(stored.len(), 1, "one pack");
        let mut fresh = FreshPacks::default();
        fresh.add(stored);
        fresh.retain_on_disk(&pack_dir);
        assert_eq!(fresh.len(), 1, "kept: on disk as written");
        assert_eq!(trusted(repo.path(), &fresh), [true]);
        assert_eq!(
            trusted(repo.path(), &FreshPacks::default()),
            [false],
            "nothing trusted but what is recorded"
        );
        push_local(&repo, &url, MAIN, c1, &fresh, None).unwrap();
        assert_fsck_clean(&bare, "after a push of a fresh pack");

        // Another process's pack (stock git's), next to a fresh one: not trusted.
        let (c2, stored) = commit_stored(&repo, 2, 5, Some(c1));
        fresh.add(stored);
        let o = Command::new("git")
            .arg("--git-dir")
            .arg(repo.path())
            .args(["pack-objects", "-q"])
            .arg(pack_dir.join("pack"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .and_then(|mut child| {
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(format!("{c2}\n").as_bytes())?;
                child.wait()
            });
        if o.is_ok_and(|s| s.success()) {
            let mut flags = trusted(repo.path(), &fresh);
            flags.sort();
            assert_eq!(flags, [false, true, true], "git's pack is not");
        }

        // Each fresh pack replaced by a copy of itself: its files are others, hashed again.
        for stem in idx_stems(&pack_dir).unwrap() {
            for ext in ["pack", "idx"] {
                let path = stem.with_extension(ext);
                let bytes = std::fs::read(&path).unwrap();
                replace(&path, &bytes);
            }
        }
        assert!(trusted(repo.path(), &fresh).iter().all(|t| !t));
        push_local(&repo, &url, MAIN, c2, &fresh, None).unwrap();
        assert_fsck_clean(&bare, "after a push of replaced packs");
        fresh.retain_on_disk(&pack_dir);
        assert_eq!(fresh.len(), 0, "forgotten: no longer the files written");
    }

    /// An entry of a fresh pack changed on the disk after the commit, the file's identity
    /// kept (written in place, its size unchanged): the push still trusts the
    /// pack, and the entry's CRC-32 catches the change; the object is read through the object
    /// database, which holds only that damaged copy, so the push fails without landing
    /// anything, the remote's branch where it was; repaired, the same push lands.
    #[test]
    fn a_fresh_packs_entry_changed_on_the_disk_is_caught_by_its_crc() {
        let (_dir, repo, bare, url) = work_and_remote();
        let remote = Repository::open_bare(&bare).unwrap();
        let c1 = commit(&repo, 1, 20, None);
        push_local(&repo, &url, MAIN, c1, &FreshPacks::default(), None).unwrap();
        let (c2, stored) = commit_stored(&repo, 2, 5, Some(c1));
        let mut fresh = FreshPacks::default();
        fresh.add(stored);
        // The new blob of the first tenant, and a byte amid its compressed bytes.
        let blob = repo
            .find_tree(repo.find_commit(c2).unwrap().tree_id())
            .unwrap()
            .get_path(Path::new("t0/app.yaml"))
            .unwrap()
            .id();
        let pack = Stored::all(&repo.path().join("objects/pack"), &fresh)
            .unwrap()
            .into_iter()
            .find(|p| p.trusted)
            .unwrap();
        let (e, end) = pack.find(blob).unwrap();
        let path = pack.stem.with_extension("pack");
        drop(pack);
        let good = std::fs::read(&path).unwrap();
        let mut bad = good.clone();
        bad[(e.offset + end) as usize / 2] ^= 0x55;
        write_in_place(&path, &bad);
        assert_eq!(
            trusted(repo.path(), &fresh).iter().filter(|t| **t).count(),
            1,
            "the same file: still trusted"
        );
        let packs = crate::io::repo::bulk::tests::packs(&bare);
        let e = push_local(&repo, &url, MAIN, c2, &fresh, None).unwrap_err();
        assert!(
            matches!(&e, PushFailure::Refused { message, .. } if message.contains("unpack failed")),
            "{e}"
        );
        assert_eq!(remote.refname_to_id(MAIN).unwrap(), c1, "not moved");
        assert_eq!(
            crate::io::repo::bulk::tests::packs(&bare),
            packs,
            "nothing landed"
        );
        assert_fsck_clean(&bare, "after the refused push");

        write_in_place(&path, &good);
        push_local(&repo, &url, MAIN, c2, &fresh, None).unwrap();
        assert_eq!(remote.refname_to_id(MAIN).unwrap(), c2);
        assert_fsck_clean(&bare, "after the repaired push");
    }

    /// After a roll-up of the clone's packs (the fresh ones among them), the record forgets
    /// them, the roll-up's pack is not trusted, and the push lands sound.
    #[test]
    fn a_push_after_a_roll_up_lands() {
        let (_dir, repo, bare, url) = work_and_remote();
        let pack_dir = repo.path().join("objects/pack");
        let mut fresh = FreshPacks::default();
        let (c1, stored) = commit_stored(&repo, 1, 20, None);
        fresh.add(stored);
        push_local(&repo, &url, MAIN, c1, &fresh, None).unwrap();
        let mut head = c1;
        for v in 2..5 {
            let (c, stored) = commit_stored(&repo, v, 3, Some(head));
            fresh.add(stored);
            head = c;
        }
        let r = super::super::rollup::consolidate(repo.path(), 1)
            .unwrap()
            .expect("rolled up");
        assert!(r.packs > 1);
        fresh.retain_on_disk(&pack_dir);
        assert_eq!(
            fresh.len(),
            4 - r.packs,
            "the rolled-up packs are forgotten"
        );
        let packs = Stored::all(&pack_dir, &fresh).unwrap();
        assert_eq!(packs.len(), 5 - r.packs);
        for p in &packs {
            let rolled = p.stem.file_name().unwrap() == r.into.as_str();
            assert_eq!(
                p.trusted, !rolled,
                "{:?}: only the packs left as written",
                p.stem
            );
        }
        push_local(&repo, &url, MAIN, head, &fresh, None).unwrap();
        assert_landed(&bare, head, "after a push following a roll-up");
    }

    /// Odd files named like packs in the clone — a FIFO `pack-*.idx`, a real `.idx` whose
    /// `.pack` is a FIFO, an `.idx` linked to `/dev/zero` — are left out, never waited on
    /// or read without end: the push lands, within a bound.
    #[test]
    fn odd_files_named_like_packs_do_not_stop_a_push() {
        let (_dir, repo, bare, url) = work_and_remote();
        let pack_dir = repo.path().join("objects/pack");
        let c1 = commit(&repo, 1, 20, None);
        let fifo = |path: &Path| {
            let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "{path:?}");
        };
        fifo(&pack_dir.join("pack-0000000000000000000000000000000000000000.idx"));
        let real = idx_stems(&pack_dir).unwrap().pop().unwrap();
        let stem = pack_dir.join("pack-1111111111111111111111111111111111111111");
        std::fs::copy(real.with_extension("idx"), stem.with_extension("idx")).unwrap();
        fifo(&stem.with_extension("pack"));
        std::os::unix::fs::symlink(
            "/dev/zero",
            pack_dir.join("pack-2222222222222222222222222222222222222222.idx"),
        )
        .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let git_dir = repo.path().to_owned();
        std::thread::spawn(move || {
            let repo = Repository::open(git_dir).unwrap();
            let _ = tx.send(
                push_local(&repo, &url, MAIN, c1, &FreshPacks::default(), None)
                    .map_err(|e| e.to_string()),
            );
        });
        let pushed = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the push ended");
        pushed.unwrap();
        assert_landed(&bare, c1, "after a push past odd files");
    }
}

#[cfg(test)]
mod moved_subtrees {
    use std::collections::HashSet;

    use super::super::tests::assert_fsck_clean;
    use super::*;

    const MAIN: &str = "refs/heads/main";

    /// A tree of loose objects: each `(name, files)` a directory holding those files (name,
    /// content).
    fn tree(repo: &Repository, dirs: &[(&str, &[(&str, &str)])]) -> Oid {
        let mut root = repo.treebuilder(None).unwrap();
        for (name, files) in dirs {
            let mut dir = repo.treebuilder(None).unwrap();
            for (file, content) in *files {
                let blob = repo.blob(content.as_bytes()).unwrap();
                dir.insert(file, blob, 0o100644).unwrap();
            }
            root.insert(name, dir.write().unwrap(), 0o040000).unwrap();
        }
        root.write().unwrap()
    }

    fn commit(repo: &Repository, tree: Oid, parent: Option<Oid>, time: i64) -> Oid {
        let sig = git2::Signature::new("t", "t@example.com", &git2::Time::new(time, 0)).unwrap();
        let tree = repo.find_tree(tree).unwrap();
        let parents: Vec<_> = parent
            .map(|p| repo.find_commit(p).unwrap())
            .into_iter()
            .collect();
        let parents: Vec<_> = parents.iter().collect();
        let id = repo.commit(None, &sig, &sig, "c", &tree, &parents).unwrap();
        repo.reference(MAIN, id, true, "c").unwrap();
        id
    }

    /// Subtrees that trade places from commit to commit: each holds the same new blob `x`,
    /// and each commit's tree at a path holding `x` is one an earlier or later commit listed
    /// at another path. Every object the new commits reach reaches the remote, whatever
    /// order the commits are visited in.
    #[test]
    fn subtrees_trading_paths_between_new_commits_are_sent_whole() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path().join("work.git")).unwrap();
        let bare = dir.path().join("remote.git");
        Repository::init_bare(&bare).unwrap();
        let url = bare.display().to_string();
        let x = ("x", "the new blob\n");
        let u: &[(&str, &str)] = &[x, ("u", "u\n")];
        let v: &[(&str, &str)] = &[x, ("v", "v\n")];
        let w: &[(&str, &str)] = &[x, ("w", "w\n")];
        let t: &[(&str, &str)] = &[x, ("t", "t\n")];
        let a = commit(&repo, tree(&repo, &[("a", &[("a", "a\n")])]), None, 1);
        push_local(&repo, &url, MAIN, a, &FreshPacks::default(), None).unwrap();
        let b = commit(&repo, tree(&repo, &[("q", v), ("r", u)]), Some(a), 2);
        let c = commit(
            &repo,
            tree(&repo, &[("p", u), ("q", v), ("r", w)]),
            Some(b),
            3,
        );
        let d = commit(
            &repo,
            tree(&repo, &[("p", t), ("q", u), ("r", v)]),
            Some(c),
            4,
        );
        let blob_x = repo.blob(x.1.as_bytes()).unwrap();
        let sent = outgoing(&repo, d, Some(a)).unwrap();
        assert!(sent.contains(&blob_x), "the new blob x is not sent");
        push_local(&repo, &url, MAIN, d, &FreshPacks::default(), None).unwrap();
        assert_fsck_clean(&bare, "after the push");
    }

    /// A malformed tree that names an entry twice (`git fsck`'s `duplicateEntries`, which
    /// libgit2 reads as it is) — two blobs, and a blob and a tree, under one name — has every
    /// entry listed, as libgit2's walk of the tree listed them: none is shadowed by the other,
    /// whether the tree is read loose (libgit2) or from a pack (`packed`).
    #[test]
    fn every_entry_of_a_tree_naming_one_twice_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path().join("work.git")).unwrap();
        let (a, b, c) = (
            repo.blob(b"a\n").unwrap(),
            repo.blob(b"b\n").unwrap(),
            repo.blob(b"c\n").unwrap(),
        );
        let sub = tree(&repo, &[]);
        let mut raw = Vec::new();
        for (mode, name, id) in [
            ("100644", "d", c),
            ("40000", "d", sub),
            ("100644", "f", a),
            ("100644", "f", b),
        ] {
            raw.extend_from_slice(format!("{mode} {name}\0").as_bytes());
            raw.extend_from_slice(id.as_bytes());
        }
        let root = repo
            .odb()
            .unwrap()
            .write(git2::ObjectType::Tree, &raw)
            .unwrap();
        let new = commit(&repo, root, None, 1);
        for packed in [false, true] {
            if packed {
                let o = std::process::Command::new("git")
                    .arg("--git-dir")
                    .arg(repo.path())
                    .args(["repack", "-adq"])
                    .output()
                    .unwrap();
                assert!(o.status.success(), "{o:?}");
                assert_eq!(Packed::open(repo.path()).len(), 1);
            }
            let sent: HashSet<Oid> = outgoing(&repo, new, None).unwrap().into_iter().collect();
            for (what, id) in [("a", a), ("b", b), ("c", c), ("the subtree", sub)] {
                assert!(sent.contains(&id), "{what} never sent (packed: {packed})");
            }
        }
        // A local remote (no connectivity check of its own) holds every object after the push.
        let bare = dir.path().join("remote.git");
        let remote = Repository::init_bare(&bare).unwrap();
        push_local(
            &repo,
            &bare.display().to_string(),
            MAIN,
            new,
            &FreshPacks::default(),
            None,
        )
        .unwrap();
        let odb = remote.odb().unwrap();
        for (what, id) in [("a", a), ("b", b), ("c", c), ("the subtree", sub)] {
            assert!(odb.exists(id), "the remote lacks {what}");
        }
    }

    /// Every object reachable from `id` (a commit or tree), through git2.
    fn reachable(repo: &Repository, id: Oid, out: &mut HashSet<Oid>) {
        if !out.insert(id) {
            return;
        }
        if let Ok(c) = repo.find_commit(id) {
            reachable(repo, c.tree_id(), out);
            for p in c.parent_ids() {
                reachable(repo, p, out);
            }
        } else if let Ok(t) = repo.find_tree(id) {
            for e in t.iter() {
                reachable(repo, e.id(), out);
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Random histories — merges, roots in the middle, dates out of order, directories
        /// drawn from a small pool at a few paths, nested, so trees recur, move and come back
        /// — lose nothing: whatever `new` reaches, the remote at `old` has or is sent.
        #[test]
        fn whatever_the_history_every_object_new_reaches_is_sent_or_the_remotes(
            steps in proptest::collection::vec(
                (0usize..8, proptest::option::of(0usize..8), 0i64..5,
                 proptest::collection::vec((0usize..3, 0usize..4, 0usize..2, proptest::bool::ANY), 1..4)),
                2..9),
            old_at in 0usize..8,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let repo = Repository::init_bare(dir.path().join("work.git")).unwrap();
            let sig = |t: i64| git2::Signature::new("t", "t@example.com", &git2::Time::new(t, 0)).unwrap();
            let mut commits: Vec<Oid> = Vec::new();
            for (i, (first, second, time, dirs)) in steps.iter().enumerate() {
                let mut root = repo.treebuilder(None).unwrap();
                // The first commit holds none of the directories: a remote there lacks them.
                let dirs = if i == 0 { &[][..] } else { &dirs[..] };
                for (path, content, shared, nested) in dirs {
                    let mut d = repo.treebuilder(None).unwrap();
                    let blob = repo.blob(format!("shared {shared}\n").as_bytes()).unwrap();
                    d.insert("x", blob, 0o100644).unwrap();
                    let mark = repo.blob(format!("mark {content}\n").as_bytes()).unwrap();
                    d.insert(format!("m{content}"), mark, 0o100644).unwrap();
                    if *nested {
                        let mut inner = repo.treebuilder(None).unwrap();
                        inner.insert("x", blob, 0o100644).unwrap();
                        d.insert("inner", inner.write().unwrap(), 0o040000).unwrap();
                    }
                    root.insert(format!("p{path}"), d.write().unwrap(), 0o040000).unwrap();
                }
                let tree = repo.find_tree(root.write().unwrap()).unwrap();
                let mut parents = Vec::new();
                // Step 0 is a root; a `first` of 7 makes another root in the middle.
                if i > 0 && *first != 7 {
                    parents.push(commits[first % i]);
                    if let Some(second) = second {
                        let p = commits[second % i];
                        if !parents.contains(&p) {
                            parents.push(p);
                        }
                    }
                }
                let parents: Vec<_> = parents.iter().map(|p| repo.find_commit(*p).unwrap()).collect();
                let parents: Vec<_> = parents.iter().collect();
                let t = 100 + (i as i64) * 10 - time * 7;
                commits.push(repo.commit(None, &sig(t), &sig(t), "c", &tree, &parents).unwrap());
            }
            let new = *commits.last().unwrap();
            let candidate = commits[old_at.saturating_sub(4) % commits.len()];
            let old = (candidate != new && repo.graph_descendant_of(new, candidate).unwrap())
                .then_some(candidate);
            let sent: HashSet<Oid> = outgoing(&repo, new, old).unwrap().into_iter().collect();
            let mut remote = HashSet::new();
            if let Some(old) = old {
                reachable(&repo, old, &mut remote);
            }
            let mut wanted = HashSet::new();
            reachable(&repo, new, &mut wanted);
            let missing: Vec<_> = wanted.iter().filter(|o| !sent.contains(o) && !remote.contains(o)).collect();
            proptest::prop_assert!(missing.is_empty(), "never sent: {:?}", missing);
            // The same list when stock git packed the objects (whole and as deltas), the
            // trees then read from the packs.
            let loose = outgoing(&repo, new, old).unwrap();
            repo.reference("refs/heads/main", new, true, "t").unwrap();
            let o = std::process::Command::new("git")
                .arg("--git-dir")
                .arg(repo.path())
                .args(["repack", "-adq", "--window=4"])
                .output()
                .unwrap();
            proptest::prop_assert!(o.status.success(), "{:?}", o);
            proptest::prop_assert_eq!(Packed::open(repo.path()).len(), 1);
            proptest::prop_assert_eq!(outgoing(&repo, new, old).unwrap(), loose);
        }
    }
}
