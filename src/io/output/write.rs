//! Writing the output tree. The only code that creates, replaces or removes files under
//! `<out>/tenants-out/`, `<out>/platform-out/` and `<out>/argocd/`.
//!
//! - Tenants are written one at a time ([`Writer::tenant`]), so memory stays flat however
//!   many tenants there are.
//! - A file is written only when its bytes change, through a temporary file in the same
//!   directory renamed over the old one: a crash leaves the old file or the new one, never a
//!   half-written one.
//! - A tenant with no directory yet (a new tenant, every tenant of a cold run) is written
//!   whole into a staging directory by the rendering thread ([`prepare_tenant`]: one create
//!   and one write per file, no temporary file each) and renamed into place by the writer: the
//!   tree appears whole or not at all, and a run killed before the rename leaves only the
//!   staging directory, which no reader takes for a tenant and the next run removes.
//! - Before the first file changes, the run writes down which tenant trees it is about to
//!   touch (the journal, [`JOURNAL_FILE`]); the state file is written last
//!   ([`Writer::finish`]) and the journal removed after it. A run that was killed leaves the
//!   journal: the next run trusts the recorded state of no tenant it names, re-renders them
//!   and compares them with the disk, so a crash followed by a revert of the registry change
//!   converges instead of trusting hashes of trees that were half rewritten.
//! - A tenant directory that is not in the registry is removed (callers guard against mass
//!   removals before calling `finish`).
//! - No path below the output root is ever followed through a symbolic link ([`super::tree`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub use super::error::WriteError;
use super::error::io;
use super::stat::{StatEntry, StatRecord, TreeStat, write_stats};
use super::state::{Inputs, STATE_FILE, State, TenantState, TreeSum, tree_hash, tree_sum};
use super::tree::{self, no_link, relative};
use crate::io::fsx;
use provisio_core::render::{ARGOCD_DIR, Files, PLATFORM_DIR, TENANTS_DIR};

/// The journal of a run in progress: the tenant trees it may have half written.
pub const JOURNAL_FILE: &str = ".provisio-journal.json";

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub written: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: usize,
    /// Tenants whose tree gained, changed or lost a file.
    pub tenants_changed: BTreeSet<String>,
    pub tenants_removed: BTreeSet<String>,
    /// Tenants skipped because their inputs did not change.
    pub tenants_skipped: usize,
    /// Tenants of which only the files product versions reach were rendered
    /// ([`Writer::tenant_release`]).
    pub tenants_released: usize,
    /// Tenants rendered whole ([`Writer::tenant`]).
    pub tenants_rendered: usize,
    /// Of the tenants released, those whose tree was read and hashed whole: no entry of the
    /// stat record ([`super::stat`]) vouched for it, or its files' stat data had moved.
    pub released_read_whole: usize,
    /// The next moment a tenant's tree changes by the clock alone (a cancelled tenant's
    /// deletion date still ahead): when watch regenerates without a registry change. Set by
    /// the caller that knows the registry (`ops::generate`).
    pub next_deadline: Option<chrono::DateTime<chrono::Utc>>,
    /// Tenants re-rendered into a directory that held, before this run, the tree the previous
    /// state file records (its hash here): for them `written` and `removed` are every
    /// difference from that tree, so a commit can edit that tree file by file. Empty for trees
    /// the run was told to distrust ([`Writer::distrust`]: `--full`, a killed run's).
    pub vouched: BTreeMap<String, String>,
    /// The run distrusted every recorded tree (`--full`): a commit of it re-reads the whole
    /// output, making HEAD hold exactly what the disk holds.
    pub full: bool,
}

impl Summary {
    pub fn is_noop(&self) -> bool {
        self.written.is_empty() && self.removed.is_empty()
    }
}

/// Reads the state file of an output root, if any.
pub fn read_state(root: &Path) -> Result<Option<State>, WriteError> {
    let p = root.join(STATE_FILE);
    no_link(root, &p)?;
    Ok(tree::read_file(&p)?.and_then(|b| State::from_bytes(&b)))
}

/// The tenants a killed run may have half written (its journal), if any.
pub fn read_journal(root: &Path) -> Result<BTreeSet<String>, WriteError> {
    let p = root.join(JOURNAL_FILE);
    no_link(root, &p)?;
    Ok(match tree::read_file(&p)? {
        // Unreadable: distrust everything (an empty state does that).
        Some(b) => serde_json::from_slice(&b).unwrap_or_else(|_| BTreeSet::from(["*".to_owned()])),
        None => BTreeSet::new(),
    })
}

/// Writes `bytes` to `path` atomically (temporary file + rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    fsx::write_atomic(path, bytes).map_err(io("write", path))
}

/// Streams a run's output to disk, tenant by tenant.
pub struct Writer<'a> {
    root: &'a Path,
    previous: Option<&'a State>,
    next: State,
    summary: Summary,
    /// Trees whose recorded hash says nothing about the disk (`None`: all of them).
    distrusted: Option<BTreeSet<String>>,
    /// The stat record read at the start ([`super::stat`]), and the one to write.
    stats: &'a StatRecord,
    next_stats: StatRecord,
    /// The output keeps a stat record ([`super::stat::kept`]): stat data is worth taking.
    keeps_stats: bool,
}

impl<'a> Writer<'a> {
    pub fn new(
        root: &'a Path,
        previous: Option<&'a State>,
        inputs: &Inputs,
        stats: &'a StatRecord,
    ) -> Self {
        Writer {
            root,
            previous,
            next: State::empty(inputs),
            summary: Summary::default(),
            distrusted: Some(BTreeSet::new()),
            stats,
            next_stats: StatRecord::default(),
            keeps_stats: super::stat::kept(root),
        }
    }

    /// The recorded trees of `ids` (`None`: of every tenant, as with `--full`) may not be what
    /// the disk holds: a run killed while writing them, hand edits `--full` is asked to
    /// repair. Their changes are not [`Summary::vouched`] for.
    pub fn distrust(&mut self, ids: Option<&BTreeSet<String>>) {
        self.distrusted = match (ids, self.distrusted.take()) {
            (Some(ids), Some(mut d)) => {
                d.extend(ids.iter().cloned());
                Some(d)
            }
            _ => None,
        };
        self.summary.full = self.distrusted.is_none();
    }

    /// A tenant whose inputs did not change: its tree is kept as recorded. False (render it)
    /// when there is no record or its directory has gone.
    pub fn keep(&mut self, id: &str) -> Result<bool, WriteError> {
        let dir = self.root.join(TENANTS_DIR).join(id);
        no_link(self.root, &dir)?;
        match self.previous.and_then(|p| p.tenants.get(id)) {
            Some(t) if tree::is_real_dir(&dir)? => {
                if let Some(e) = self.stats.vouching(id, &t.tree) {
                    self.next_stats.insert(id, e.clone());
                }
                self.next.tenants.insert(id.to_owned(), t.clone());
                self.summary.tenants_skipped += 1;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Records, before anything is written, the tenant trees this run may change (to be
    /// rendered, to be removed, and those a killed run left untrusted): until
    /// [`Writer::finish`] completes, the next run trusts none of them.
    pub fn begin(&mut self, in_flight: &BTreeSet<String>) -> Result<(), WriteError> {
        if in_flight.is_empty() {
            return Ok(());
        }
        let p = self.root.join(JOURNAL_FILE);
        no_link(self.root, &p)?;
        write_atomic(
            &p,
            &serde_json::to_vec(in_flight).expect("strings serialize"),
        )
    }

    /// Writes one tenant's rendered tree (paths `tenants-out/<id>/…`), as [`prepare_tenant`]
    /// left it: a new tree staged whole is renamed into place (it appears whole or not at
    /// all); in an existing directory only files whose bytes differ are written, and files no
    /// longer rendered are removed.
    pub fn tenant(
        &mut self,
        id: &str,
        input: &str,
        prepared: PreparedTenant,
    ) -> Result<(), WriteError> {
        match prepared {
            PreparedTenant::Staged(staged) => {
                self.summary.tenants_rendered += 1;
                let dir = self.root.join(TENANTS_DIR).join(id);
                no_link(self.root, &dir)?;
                if tree::is_real_dir(&dir)? {
                    // Not possible under the output lock; never merged blindly.
                    return Err(io("rename into place", &dir)(std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        "the tenant directory appeared while its tree was staged",
                    )));
                }
                self.place(id, input, staged)
            }
            PreparedTenant::Rendered { files, tree } => {
                self.summary.tenants_rendered += 1;
                let dir = self.root.join(TENANTS_DIR).join(id);
                no_link(self.root, &dir)?;
                if tree::is_real_dir(&dir)? {
                    self.sync_tenant(id, input, &dir, &files, tree)
                } else {
                    let staged = stage(self.root, id, &files, self.keeps_stats)?;
                    self.place(id, input, staged)
                }
            }
        }
    }

    /// Renames a staged tree into place (the tree appears whole or not at all) and records it.
    fn place(&mut self, id: &str, input: &str, staged: Staged) -> Result<(), WriteError> {
        let dir = self.root.join(TENANTS_DIR).join(id);
        std::fs::rename(&staged.dir, &dir).map_err(io("rename into place", &dir))?;
        let mut start = 0;
        for &end in &staged.ends {
            self.summary
                .written
                .push(staged.paths[start..end].to_owned());
            start = end;
        }
        self.summary.tenants_changed.insert(id.to_owned());
        if let Some(entry) = staged.stat {
            self.next_stats.insert(id, entry);
        }
        self.next.tenants.insert(
            id.to_owned(),
            TenantState {
                input: input.to_owned(),
                tree: staged.tree,
            },
        );
        Ok(())
    }

    /// [`Writer::tenant`] in a directory that exists.
    fn sync_tenant(
        &mut self,
        id: &str,
        input: &str,
        dir: &Path,
        files: &Files,
        tree: String,
    ) -> Result<(), WriteError> {
        let recorded = self
            .previous
            .and_then(|p| p.tenants.get(id))
            .filter(|_| self.distrusted.as_ref().is_some_and(|d| !d.contains(id)))
            .map(|t| t.tree.clone());
        let (changed, found) = self.sync_dir(dir, files)?;
        // Vouched only when the disk held exactly the recorded tree before this run: a
        // hand edit the render happens to match (or any other difference) would
        // otherwise be missing from a commit made of `written` and `removed` alone.
        if let Some(recorded) = recorded.filter(|t| *t == found) {
            self.summary.vouched.insert(id.to_owned(), recorded);
        }
        if changed {
            self.summary.tenants_changed.insert(id.to_owned());
        }
        // The disk now holds `files`: its stat data vouches for their hash (a `--full` run,
        // watch's first cycle, leaves a record the next release uses).
        if self.keeps_stats
            && let Some(stat) = TreeStat::of_listed(self.root, &tree::files_below_stat(dir)?)
        {
            self.next_stats.insert(id, stat.entry(&tree));
        }
        self.next.tenants.insert(
            id.to_owned(),
            TenantState {
                input: input.to_owned(),
                tree,
            },
        );
        Ok(())
    }

    /// A tenant whose recorded tree is trusted and whose inputs moved only by product
    /// versions, prepared by [`prepare_release`]: writes the re-rendered files that differ and
    /// records the new tree: true. False (nothing written) when there is nothing to build on —
    /// no trusted record, or the disk did not hold exactly the recorded tree: render the whole
    /// tenant.
    pub fn tenant_release(
        &mut self,
        id: &str,
        input: &str,
        prepared: Option<Release>,
    ) -> Result<bool, WriteError> {
        if self.distrusted.as_ref().is_none_or(|d| d.contains(id)) {
            return Ok(false);
        }
        let Some(recorded) = self.previous.and_then(|p| p.tenants.get(id)) else {
            return Ok(false);
        };
        let Some(release) = prepared.filter(|r| r.found == recorded.tree) else {
            return Ok(false);
        };
        self.summary.released_read_whole += usize::from(release.read_whole);
        if release.changed.is_empty() && release.tree == recorded.tree {
            // Nothing the versions reach differs (a pinned version, a phase without
            // workloads): kept as recorded.
            let kept = self.keep(id)?;
            if kept {
                self.summary.tenants_skipped -= 1;
                self.summary.tenants_released += 1;
                if let Some(stat) = &release.stat {
                    self.next_stats.insert(
                        id,
                        stat.entry(&recorded.tree)
                            .with_sums(kept_here(&release.sums)),
                    );
                }
            }
            return Ok(kept);
        }
        for (path, bytes) in &release.changed {
            let full = self.root.join(path);
            no_link(self.root, full.parent().unwrap_or(self.root))?;
            write_atomic(&full, bytes)?;
            self.summary.written.push(path.clone());
        }
        self.summary.unchanged += release.files - release.changed.len();
        // The disk held exactly the recorded tree before this run.
        self.summary
            .vouched
            .insert(id.to_owned(), recorded.tree.clone());
        if !release.changed.is_empty() {
            self.summary.tenants_changed.insert(id.to_owned());
        }
        self.summary.tenants_released += 1;
        // The stat data of the files just written, taken again: the tree is now the new one.
        if let Some(mut stat) = release.stat
            && release
                .changed
                .keys()
                .all(|p| stat.refresh(self.root, p).is_some())
        {
            self.next_stats.insert(
                id,
                stat.entry(&release.tree)
                    .with_sums(kept_here(&release.sums)),
            );
        }
        self.next.tenants.insert(
            id.to_owned(),
            TenantState {
                input: input.to_owned(),
                tree: release.tree,
            },
        );
        Ok(true)
    }

    /// Writes `argocd/`.
    pub fn argocd(&mut self, files: &Files) -> Result<(), WriteError> {
        let dir = self.root.join(ARGOCD_DIR);
        no_link(self.root, &dir)?;
        self.sync_dir(&dir, files)?;
        self.next.argocd = tree_hash(files);
        Ok(())
    }

    /// Writes `platform-out/` (the platform tools' tree; empty without `platformTools`, which
    /// removes a former tree: the caller guards against mass removals first).
    pub fn platform(&mut self, files: &Files) -> Result<(), WriteError> {
        self.sync_dir(&self.root.join(PLATFORM_DIR), files)?;
        self.next.platform = if files.is_empty() {
            String::new()
        } else {
            tree_hash(files)
        };
        Ok(())
    }

    /// Makes `dir` hold exactly `files` (root-relative paths); true when anything changed.
    /// Returns whether anything changed, and the hash of the tree the directory held before
    /// (as [`tree_hash`] computes it), read on the way.
    fn sync_dir(&mut self, dir: &Path, files: &Files) -> Result<(bool, String), WriteError> {
        let mut changed = false;
        let mut found = Files::new();
        // Each directory is inspected once, component by component; the file itself is
        // opened with O_NOFOLLOW and replaced by a rename (which never follows a link).
        let mut checked = std::collections::BTreeSet::new();
        for (path, bytes) in files {
            let full = self.root.join(path);
            let parent = full.parent().unwrap_or(self.root);
            if !checked.contains(parent) {
                no_link(self.root, parent)?;
                checked.insert(parent.to_path_buf());
            }
            let old = tree::read_file(&full)?;
            let same = old.as_ref().is_some_and(|old| old == bytes);
            if let Some(old) = old {
                found.insert(path.clone(), old);
            }
            if same {
                self.summary.unchanged += 1;
            } else {
                write_atomic(&full, bytes)?;
                self.summary.written.push(path.clone());
                changed = true;
            }
        }
        for file in list_files(dir)? {
            let rel = relative(self.root, &file);
            let leftover = file
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(fsx::TEMP_PREFIX));
            if leftover && !files.contains_key(&rel) {
                // The temporary file of a write a killed run left: provisio's own, not part
                // of the tree (readers and commits skip it), so removed unreported.
                remove_file(&file)?;
            } else if !files.contains_key(&rel) {
                if let Some(old) = tree::read_file(&file)? {
                    found.insert(rel.clone(), old);
                }
                remove_file(&file)?;
                self.summary.removed.push(rel);
                changed = true;
            }
        }
        remove_empty_dirs(dir)?;
        Ok((changed, tree_hash(&found)))
    }

    /// Removes the trees of tenants not in `all_tenants` (and, unreported, the staging
    /// directories a killed run left), writes the state file, and returns what the run did.
    pub fn finish(mut self, all_tenants: &BTreeSet<String>) -> Result<Summary, WriteError> {
        let tenants_root = self.root.join(TENANTS_DIR);
        no_link(self.root, &tenants_root)?;
        for name in list_dirs(&tenants_root)? {
            if name.starts_with(fsx::TEMP_PREFIX) {
                // A staging directory a killed run left: provisio's own, no tenant's tree.
                let dir = tenants_root.join(&name);
                std::fs::remove_dir_all(&dir).map_err(io("remove", &dir))?;
            } else if !all_tenants.contains(&name) {
                let dir = tenants_root.join(&name);
                for file in list_files(&dir)? {
                    self.summary.removed.push(relative(self.root, &file));
                }
                std::fs::remove_dir_all(&dir).map_err(io("remove", &dir))?;
                self.summary.tenants_removed.insert(name);
            }
        }
        self.next.tenants.retain(|id, _| all_tenants.contains(id));
        let state = self.root.join(STATE_FILE);
        no_link(self.root, &state)?;
        if self.previous != Some(&self.next) {
            write_atomic(&state, &self.next.to_bytes())?;
        }
        // After the state file: an entry vouches for a tree hash the state file records.
        let next = &self.next;
        self.next_stats.retain(|id| next.tenants.contains_key(id));
        if self.next_stats != *self.stats {
            write_stats(self.root, &self.next_stats);
        }
        // Only once the state is written: the trees it vouches for are whole.
        let journal = self.root.join(JOURNAL_FILE);
        match std::fs::remove_file(&journal) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove", &journal)(e)),
        }
        self.summary.written.sort();
        self.summary.removed.sort();
        Ok(self.summary)
    }
}

/// A tenant tree with the files product versions reach re-rendered, read and hashed off the
/// writer's thread ([`prepare_release`]) and written by [`Writer::tenant_release`].
#[derive(Debug)]
pub struct Release {
    /// [`tree_hash`] of the tree the disk held.
    found: String,
    /// [`tree_hash`] of the tree with the re-rendered files.
    tree: String,
    /// The re-rendered files whose bytes differ from the disk's.
    changed: Files,
    /// Files in the tree.
    files: usize,
    /// The stat data of the tree's files as found (`None` when one could not be read).
    stat: Option<TreeStat>,
    /// Every file was read and hashed (no stat record entry vouched for the tree).
    read_whole: bool,
    /// Each re-rendered file's part of the new tree hash (`StatEntry::sums`).
    sums: BTreeMap<String, String>,
}

/// A tenant's rendered tree prepared off the writer's thread ([`prepare_tenant`]).
#[derive(Debug)]
pub enum PreparedTenant {
    /// A new tree (no directory on disk), written whole into a staging directory.
    Staged(Staged),
    /// A tree whose directory exists: compared with the disk file by file by the writer.
    Rendered {
        files: Files,
        /// [`tree_hash`] of `files`.
        tree: String,
    },
}

/// A new tenant tree written into its staging directory, not yet in place.
#[derive(Debug)]
pub struct Staged {
    dir: PathBuf,
    /// Root-relative paths of its files, one after the other (ending at `ends`): one
    /// allocation made on the rendering thread instead of one per file, which the writer's
    /// thread copies into [`Summary::written`] and frees at once. Small allocations made on a
    /// rendering thread and kept to the end of the run fragmented that thread's heap (at
    /// 10,000 tenants, a fifth of the samples were malloc searching its bins).
    paths: String,
    ends: Vec<usize>,
    /// [`tree_hash`] of its files.
    tree: String,
    /// The stat record entry vouching for `tree`, from each file's stat data as written (the
    /// rename into place moves the directory, not its files' inodes or times): the next
    /// release reads only what it re-renders (`None`: the output keeps no record).
    stat: Option<StatEntry>,
}

/// Prepares tenant `id`'s rendered `files` for [`Writer::tenant`] on a rendering
/// thread: hashes them and, when the tenant has no directory yet (a new tenant, a cold run),
/// writes them into the tenant's staging directory, so the writer's thread only renames it
/// into place ([`Writer::tenant`]). Writes nothing else; the staging directory is provisio's own (a run killed
/// before the rename leaves it for [`Writer::finish`] to remove: its name is no tenant id).
/// With `stat` (the output keeps a stat record, [`super::stat::kept`]), a staged tree's stat
/// data is taken as it is written.
pub fn prepare_tenant(
    root: &Path,
    id: &str,
    files: Files,
    stat: bool,
) -> Result<PreparedTenant, WriteError> {
    let dir = root.join(TENANTS_DIR).join(id);
    no_link(root, &dir)?;
    if tree::is_real_dir(&dir)? {
        let tree = tree_hash(&files);
        return Ok(PreparedTenant::Rendered { files, tree });
    }
    Ok(PreparedTenant::Staged(stage(root, id, &files, stat)?))
}

/// Writes a new tenant's `files` into `tenants-out/.provisio-staging-<id>/` (a leftover of that
/// name removed first, never followed): one create and one write per file, as `cp` does.
fn stage(root: &Path, id: &str, files: &Files, stat: bool) -> Result<Staged, WriteError> {
    let staging = root
        .join(TENANTS_DIR)
        .join(format!("{}staging-{id}", fsx::TEMP_PREFIX));
    no_link(root, staging.parent().unwrap_or(root))?;
    // A leftover, even a link planted under that name, is removed, never followed.
    fsx::remove_leftover(&staging).map_err(io("remove", &staging))?;
    std::fs::create_dir_all(&staging).map_err(io("create", &staging))?;
    let prefix = format!("{TENANTS_DIR}/{id}/");
    let mut created: BTreeSet<PathBuf> = BTreeSet::new();
    let mut paths = String::with_capacity(files.keys().map(String::len).sum());
    let mut ends = Vec::with_capacity(files.len());
    let mut stats = stat.then(TreeStat::default);
    for (path, bytes) in files {
        let rel = path.strip_prefix(&prefix).unwrap_or(path);
        let target = staging.join(rel);
        let parent = target.parent().unwrap_or(&staging);
        // Each subdirectory is created once, not once per file.
        if parent != staging && !created.contains(parent) {
            std::fs::create_dir_all(parent).map_err(io("create", parent))?;
            created.insert(parent.to_path_buf());
        }
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .and_then(|mut f| std::io::Write::write_all(&mut f, bytes).map(|()| f))
            .map_err(io("write", &target))?;
        if let Some(s) = &mut stats {
            match f.metadata() {
                Ok(m) => s.add(path, &m),
                // Only a shortcut: no entry, and the next release reads the tree whole.
                Err(_) => stats = None,
            }
        }
        paths.push_str(path);
        ends.push(paths.len());
    }
    let tree = tree_hash(files);
    Ok(Staged {
        dir: staging,
        paths,
        ends,
        stat: stats.map(|s| s.entry(&tree)),
        tree,
    })
}

/// Lays `released` (re-rendered files of tenant `id`'s tree, root-relative paths) over the
/// tree on disk and hashes the result. `None` when the directory is gone or lacks one of
/// those files (the tree then has to be rendered whole). When `known` — the tree hash the
/// state file records and a stat record entry vouching for it — matches the files' stat data
/// now ([`super::stat`]), only the released files are read; otherwise every file is read and
/// hashed, and `found` says what the disk held. Reads only; safe on any thread.
pub fn prepare_release(
    root: &Path,
    id: &str,
    released: &Files,
    known: Option<(&str, &StatEntry)>,
) -> Result<Option<Release>, WriteError> {
    let dir = root.join(TENANTS_DIR).join(id);
    no_link(root, &dir)?;
    if !tree::is_real_dir(&dir)? {
        return Ok(None);
    }
    // `dir` checked just above: not again per tenant.
    // The stat data is taken as the tree is listed, before any file is read: a change after
    // this moves it. (A released file the tree lacks is found missing by either path below.)
    let listed = tree::files_below_stat(&dir)?;
    let stat = TreeStat::of_listed(root, &listed);
    if let (Some((recorded, entry)), Some(stat)) = (known, &stat)
        && stat.matches(entry)
        && let Some(release) =
            release_over_recorded(root, recorded, released, stat, listed.len(), entry)?
    {
        return Ok(Some(release));
    }
    let mut files = Files::new();
    for (f, _) in &listed {
        if let Some(bytes) = tree::read_file(f)? {
            files.insert(relative(root, f), bytes);
        }
    }
    if !released.keys().all(|k| files.contains_key(k)) {
        return Ok(None);
    }
    let sum = tree_sum(&files);
    let (tree, changed, sums) = lay_over(sum, released, |path| {
        files
            .get(path)
            .map_or(Old::Missing, |b| Old::Bytes(b.clone()))
    });
    let found = sum.hex();
    Ok(Some(Release {
        found,
        tree,
        changed,
        files: files.len(),
        stat,
        read_whole: true,
        sums,
    }))
}

/// [`prepare_release`] of a tree the stat record says is the recorded one: reads only the
/// released files, and `None` (read everything) when one of them changed since `stat` was
/// taken.
fn release_over_recorded(
    root: &Path,
    recorded: &str,
    released: &Files,
    stat: &TreeStat,
    files: usize,
    entry: &StatEntry,
) -> Result<Option<Release>, WriteError> {
    // A file's old part of the hash as the entry knows it, or its bytes read now.
    let mut old = BTreeMap::new();
    for path in released.keys() {
        if let Some(sum) = entry.sums.get(path).and_then(|s| TreeSum::parse(s)) {
            old.insert(path.as_str(), Old::Sum(sum));
            continue;
        }
        match tree::read_file(&root.join(path))? {
            Some(bytes) => old.insert(path.as_str(), Old::Bytes(bytes)),
            None => return Ok(None),
        };
    }
    // Read after the stat data was taken: unchanged since, or read whole.
    let mut again = stat.clone();
    if !released.keys().all(|p| again.refresh(root, p).is_some())
        || !again.matches(&stat.entry(recorded))
    {
        return Ok(None);
    }
    // A hash not of provisio's form (a hand-edited state file): read whole.
    let Some(sum) = TreeSum::parse(recorded) else {
        return Ok(None);
    };
    let (tree, changed, sums) = lay_over(sum, released, |path| {
        old.remove(path).unwrap_or(Old::Missing)
    });
    Ok(Some(Release {
        found: recorded.to_owned(),
        tree,
        changed,
        files,
        stat: Some(stat.clone()),
        read_whole: false,
        sums,
    }))
}

/// A copy of `sums` made on this thread: the writer keeps it to the end of the run, and the
/// rendering thread's allocations, kept that long, would pin its heap (see [`Staged::paths`]).
fn kept_here(sums: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    sums.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// A released file as the tree held it before the release.
enum Old {
    /// Its bytes.
    Bytes(Vec<u8>),
    /// Its part of the tree hash ([`TreeSum::file`]), as the stat record knows it.
    Sum(TreeSum),
    /// Not in the tree.
    Missing,
}

/// The hash of tree `found` with `released` laid over it (`old` gives a file as `found`
/// held it), the released files whose bytes differ, and each released file's part of the new
/// hash.
fn lay_over(
    found: TreeSum,
    released: &Files,
    mut old: impl FnMut(&str) -> Old,
) -> (String, Files, BTreeMap<String, String>) {
    let mut sum = found;
    let mut changed = Files::new();
    let mut sums = BTreeMap::new();
    for (path, bytes) in released {
        let new = TreeSum::file(path, bytes);
        let before = match old(path) {
            Old::Bytes(b) if b == *bytes => Some(new),
            Old::Bytes(b) => Some(TreeSum::file(path, &b)),
            Old::Sum(s) => Some(s),
            Old::Missing => None,
        };
        if before != Some(new) {
            if let Some(before) = before {
                sum = sum.minus(&before);
            }
            sum = sum.plus(&new);
            changed.insert(path.clone(), bytes.clone());
        }
        sums.insert(path.clone(), new.hex());
    }
    (sum.hex(), changed, sums)
}

fn remove_file(path: &Path) -> Result<(), WriteError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("remove", path)(e)),
    }
}

/// Names of the directories directly below `dir` (none if it does not exist). A link there
/// is an error, never a directory.
pub fn list_dirs(dir: &Path) -> Result<Vec<String>, WriteError> {
    Ok(tree::children(dir)?
        .into_iter()
        .filter_map(|(name, is_dir)| is_dir.then_some(name))
        .collect())
}

/// Names of the regular files directly below `dir`.
pub fn list_top_files(dir: &Path) -> Result<Vec<String>, WriteError> {
    Ok(tree::children(dir)?
        .into_iter()
        .filter_map(|(name, is_dir)| (!is_dir).then_some(name))
        .collect())
}

/// Every file below `dir`, recursively, sorted (none if it does not exist).
pub fn list_files(dir: &Path) -> Result<Vec<PathBuf>, WriteError> {
    tree::files_below(dir)
}

fn remove_empty_dirs(dir: &Path) -> Result<(), WriteError> {
    let mut dirs = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(entries) = std::fs::read_dir(&d) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
            dirs.push(d);
        }
    }
    // Deepest first; a non-empty directory simply stays.
    for d in dirs.iter().rev() {
        if std::fs::read_dir(d).is_ok_and(|mut e| e.next().is_none()) {
            std::fs::remove_dir(d).map_err(io("remove", d))?;
        }
    }
    Ok(())
}

/// The files below `root/<dir>` with their bytes, keyed by root-relative path.
pub fn read_files(root: &Path, dir: &str) -> Result<Files, WriteError> {
    let dir = root.join(dir);
    no_link(root, &dir)?;
    read_below(root, &dir)
}

/// The files below `dir`, a path below `root` already checked by [`no_link`], as
/// [`read_files`] returns them.
fn read_below(root: &Path, dir: &Path) -> Result<Files, WriteError> {
    let mut files = BTreeMap::new();
    for f in list_files(dir)? {
        if let Some(bytes) = tree::read_file(&f)? {
            files.insert(relative(root, &f), bytes);
        }
    }
    Ok(files)
}

/// Files of the output root as `generate` writes them: the tenant trees, the platform tree and
/// `argocd/`.
pub fn read_tree(root: &Path) -> Result<Files, WriteError> {
    let mut files = read_files(root, TENANTS_DIR)?;
    files.extend(read_files(root, PLATFORM_DIR)?);
    files.extend(read_files(root, ARGOCD_DIR)?);
    Ok(files)
}

/// Held while one `generate` writes the output tree at `root`: an exclusive `flock` on the
/// directory itself (no file is added to the tree; the kernel releases it when the process
/// dies however it dies). Without it two runs on one tree — `generate` by hand while CI runs
/// `generate --commit`, or while watch runs — interleave: each writes the state file last,
/// recording trees the other then overwrote, and the next runs keep those trees as recorded.
#[derive(Debug)]
pub struct OutputLock {
    _dir: Option<fsx::Flock>,
}

/// Takes [`OutputLock`] on `root` (created if missing); an error when another process holds
/// it. A file system without `flock` (some network mounts) runs unlocked, as before.
pub fn lock_output(root: &Path) -> Result<OutputLock, WriteError> {
    std::fs::create_dir_all(root).map_err(io("create", root))?;
    let dir = std::fs::File::open(root).map_err(io("open", root))?;
    match fsx::Flock::try_take(dir) {
        Ok(Some(lock)) => Ok(OutputLock { _dir: Some(lock) }),
        Ok(None) => Err(io("lock", root)(std::io::Error::new(
            std::io::ErrorKind::WouldBlock,
            "another provisio process is writing this output tree; only one may at a time",
        ))),
        Err(e) => {
            tracing::warn!("cannot lock {}: {e}; running unlocked", root.display());
            Ok(OutputLock { _dir: None })
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// With the stat record's part of a released file's old bytes, a release does not read
    /// them: the new hash is the recorded one less that part and plus the new file's, whatever
    /// the disk holds (here a part that is not the file's, so the difference shows); without
    /// it, the bytes are read.
    #[test]
    fn a_release_takes_a_files_old_part_from_the_entry_instead_of_reading_it() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let dir = root.join(TENANTS_DIR).join("t");
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (format!("{TENANTS_DIR}/t/a"), format!("{TENANTS_DIR}/t/b"));
        std::fs::write(root.join(&a), "a1").unwrap();
        std::fs::write(root.join(&b), "b").unwrap();
        let before = tree_sum(&Files::from([
            (a.clone(), b"a1".to_vec()),
            (b.clone(), b"b".to_vec()),
        ]));
        let stat = TreeStat::of_listed(root, &tree::files_below_stat(&dir).unwrap()).unwrap();
        let released = Files::from([(a.clone(), b"a2".to_vec())]);
        let other = TreeSum::file(&a, b"not what the disk holds");
        for (sums, old) in [
            (BTreeMap::new(), TreeSum::file(&a, b"a1")),
            (BTreeMap::from([(a.clone(), other.hex())]), other),
        ] {
            let entry = stat.entry(&before.hex()).with_sums(sums);
            let r = prepare_release(root, "t", &released, Some((&before.hex(), &entry)))
                .unwrap()
                .unwrap();
            assert!(!r.read_whole);
            let want = before.minus(&old).plus(&TreeSum::file(&a, b"a2"));
            assert_eq!(r.tree, want.hex());
            assert_eq!(
                r.sums,
                BTreeMap::from([(a.clone(), TreeSum::file(&a, b"a2").hex())])
            );
            assert_eq!(r.changed, released);
        }
    }

    /// A child forked now that holds a copy of every descriptor of this process (the
    /// close-on-exec ones too) for `held` before it execs `true`: what another thread's
    /// `Command::spawn` does for a moment. Returns once the child exists; the handle waits
    /// for it.
    pub(crate) fn fork_holding_descriptors(
        held: std::time::Duration,
    ) -> std::thread::JoinHandle<()> {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let (mut forked, tell) = std::io::pipe().unwrap();
        let child = std::thread::spawn(move || {
            let fd = tell.as_raw_fd();
            let mut cmd = std::process::Command::new("true");
            // SAFETY: write(2) and nanosleep(2) are async-signal-safe.
            unsafe {
                cmd.pre_exec(move || {
                    libc::write(fd, b"x".as_ptr().cast(), 1);
                    std::thread::sleep(held);
                    Ok(())
                });
            }
            let status = cmd.status().unwrap();
            assert!(status.success(), "{status}");
            drop(tell);
        });
        forked.read_exact(&mut [0u8; 1]).unwrap();
        child
    }

    /// The lock is released when it is dropped, not when the last copy of its descriptor is
    /// closed: a child another thread forked meanwhile holds one until it execs (tests of
    /// every module share one process and spawn tools all the time; so do watch's threads),
    /// and the next `generate` on the tree was refused as if another process wrote it.
    #[test]
    fn the_output_lock_is_released_on_drop_while_a_forked_child_holds_its_descriptor() {
        let d = tempfile::tempdir().unwrap();
        let lock = lock_output(d.path()).unwrap();
        let child = fork_holding_descriptors(std::time::Duration::from_millis(500));
        drop(lock);
        let again = lock_output(d.path());
        child.join().unwrap();
        again.expect("the dropped lock is free");
    }

    /// main's (`779c300`) `prepare_release` up to its reading: the tenant directory checked,
    /// then `read_files` checking it again.
    fn read_before(root: &Path, id: &str) -> Result<Option<Files>, WriteError> {
        let dir = root.join(TENANTS_DIR).join(id);
        no_link(root, &dir)?;
        if !tree::is_real_dir(&dir)? {
            return Ok(None);
        }
        read_files(root, &format!("{TENANTS_DIR}/{id}")).map(Some)
    }

    fn mkfifo(path: &Path) {
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    /// A tenant tree planted with `plant`, read for a release by this build and by main's:
    /// the same refusal, message included, or the same files.
    fn same_as_before(plant: impl Fn(&Path, &Path)) -> String {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::write(outside.path().join("a.yaml"), "outside").unwrap();
        let t = r.join(TENANTS_DIR).join("t1");
        std::fs::create_dir_all(t.join("sub")).unwrap();
        std::fs::write(t.join("a.yaml"), "a").unwrap();
        std::fs::write(t.join("sub/b.yaml"), "b").unwrap();
        plant(r, outside.path());
        let released = Files::from([("tenants-out/t1/a.yaml".to_owned(), b"A".to_vec())]);
        let now = prepare_release(r, "t1", &released, None);
        let before = read_before(r, "t1");
        let answer = match (&now, &before) {
            (Err(now), Err(before)) => {
                assert_eq!(now.to_string(), before.to_string());
                assert_eq!(format!("{now:?}"), format!("{before:?}"));
                now.to_string()
            }
            (Ok(None), Ok(None)) => "none".to_owned(),
            (Ok(None), Ok(Some(files))) => {
                assert!(!files.contains_key("tenants-out/t1/a.yaml"), "{files:?}");
                "none".to_owned()
            }
            (Ok(Some(release)), Ok(Some(files))) => {
                assert_eq!(release.files, files.len());
                assert_eq!(release.found, tree_hash(files));
                format!("{} files", release.files)
            }
            _ => panic!("{now:?} / {before:?}"),
        };
        answer.replace(&r.display().to_string(), "<root>")
    }

    #[test]
    fn a_release_reads_every_planted_tree_as_main_read_it() {
        let t = |r: &Path| r.join(TENANTS_DIR).join("t1");
        assert_eq!(same_as_before(|_, _| {}), "2 files");
        let tenant_linked = same_as_before(|r, o| {
            std::fs::remove_dir_all(t(r)).unwrap();
            symlink(o, t(r)).unwrap();
        });
        assert!(tenant_linked.contains("symbolic link"), "{tenant_linked}");
        let tenants_linked = same_as_before(|r, o| {
            std::fs::rename(r.join(TENANTS_DIR), o.join("moved")).unwrap();
            symlink(o.join("moved"), r.join(TENANTS_DIR)).unwrap();
        });
        assert!(tenants_linked.contains("symbolic link"), "{tenants_linked}");
        let sub_linked = same_as_before(|r, o| {
            std::fs::remove_dir_all(t(r).join("sub")).unwrap();
            symlink(o, t(r).join("sub")).unwrap();
        });
        assert!(sub_linked.contains("symbolic link"), "{sub_linked}");
        for target in ["/dev/zero", "/nowhere", "a.yaml"] {
            let file_linked = same_as_before(|r, _| {
                std::fs::remove_file(t(r).join("sub/b.yaml")).unwrap();
                symlink(target, t(r).join("sub/b.yaml")).unwrap();
            });
            assert!(file_linked.contains("symbolic link"), "{file_linked}");
        }
        let dangling_tenant = same_as_before(|r, o| {
            std::fs::remove_dir_all(t(r)).unwrap();
            symlink(o.join("nowhere"), t(r)).unwrap();
        });
        assert!(
            dangling_tenant.contains("symbolic link"),
            "{dangling_tenant}"
        );
        for at in ["fifo", "sub/fifo"] {
            let fifo = same_as_before(|r, _| mkfifo(&t(r).join(at)));
            assert!(fifo.contains("FIFO"), "{fifo}");
        }
        let fifo_tenant = same_as_before(|r, _| {
            std::fs::remove_dir_all(t(r)).unwrap();
            mkfifo(&t(r));
        });
        assert!(fifo_tenant.contains("FIFO"), "{fifo_tenant}");
        let socket = same_as_before(|r, _| {
            let l = std::os::unix::net::UnixListener::bind(t(r).join("sub/s")).unwrap();
            std::mem::forget(l);
        });
        assert!(socket.contains("socket"), "{socket}");
        let file_tenant = same_as_before(|r, _| {
            std::fs::remove_dir_all(t(r)).unwrap();
            std::fs::write(t(r), "not a directory").unwrap();
        });
        assert_eq!(file_tenant, "none");
        assert_eq!(
            same_as_before(|r, _| std::fs::remove_dir_all(t(r)).unwrap()),
            "none"
        );
        let dir_for_file = same_as_before(|r, _| {
            std::fs::remove_file(t(r).join("a.yaml")).unwrap();
            std::fs::create_dir_all(t(r).join("a.yaml")).unwrap();
            std::fs::write(t(r).join("a.yaml/x"), "x").unwrap();
        });
        assert_eq!(dir_for_file, "none");
        assert_eq!(
            same_as_before(|r, _| std::fs::remove_file(t(r).join("a.yaml")).unwrap()),
            "none"
        );
    }
}
