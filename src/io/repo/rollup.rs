//! The pack count kept bounded ([`consolidate`]): packs rolled up, and what is left in
//! `objects/pack/` removed or reported.
//!
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
//!   pack does not stop every later roll-up. The new pack is made visible as
//!   [`super::pack`] makes any pack visible before any rolled-up one is removed (a
//!   multi-pack-index naming them first), each by renaming its `.pack` to a
//!   `tmp_pack_rolled_` temporary, then removing its `.idx` and companions, then the
//!   temporary ([`remove_pack`] gives the readers' side); a pack with a `.keep` or
//!   `.promisor` is never rolled up. Killed anywhere, every object stays readable (an object
//!   in two packs is harmless), and the next call finishes a half-done removal, removes old
//!   temporaries and rolls up again.

use std::collections::HashSet;
use std::fs::File;
use std::path::Path;

use git2::Odb;

use super::pack::{
    Damaged, Deflater, PackEntry, check_pair, copy_entry, idx_entries, idx_object_count,
    read_regular, store_with,
};

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
    // A handle of its own: the packs as they are now.
    let repo = super::handle::open(git_dir).map_err(std::io::Error::other)?;
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

/// Writes the objects of the packs `sources` (paths without extension) into one new pack in
/// `pack_dir`, each object once, as [`PlainPack::store`](super::pack::PlainPack::store) does; returns its
/// name and object count. An entry holding a whole object (all of provisio's packs) is copied
/// as it is, header and compressed bytes, after checking its bytes against the CRC-32 its
/// `.idx` records, as git's `pack-objects` does when it reuses an entry
/// (`builtin/pack-objects.c` `write_reuse_object` → `check_pack_crc`); a delta (a fetched
/// pack's) is read whole through `odb`, which resolves it, and compressed again.
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
        let (idx, _) = read_regular(&stem.with_extension("idx"))?;
        let mut all = idx_entries(&idx).map_err(|e| Damaged::error(stem, e.to_string()))?;
        let pack_len = check_pair(stem, &idx, all.len())?.1.len();
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
        let mut buf = Vec::new();
        let mut zbuf = Deflater::default();
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
                let crc = copy_entry(stem, e, &buf, odb, out, &mut zbuf)?;
                entries.push(PackEntry {
                    oid: e.oid,
                    offset,
                    crc,
                });
            }
        }
        Ok(())
    })?;
    Ok((name.name, count))
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

#[cfg(test)]
mod tests {
    use crate::io::repo::tests::{assert_fsck_clean, stock_git_here};
    use git2::Repository;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    use git2::Oid;

    use super::super::bulk::in_bulk;
    use super::super::bulk::tests::packs;
    use super::*;

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
        if !stock_git_here() {
            return None;
        }
        assert_fsck_clean(git_dir, "git fsck");
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
        if !stock_git_here() {
            return;
        }
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
        if stock_git_here()
            && let Ok(out) = std::process::Command::new("git")
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
            if !stock_git_here() {
                return;
            }
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
            assert_fsck_clean(git_dir, &format!("step {step}"));
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
