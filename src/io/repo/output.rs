//! The output directory as a work tree of the manifests repository: what `generate` wrote is
//! committed as one commit that says which tenants were added, updated and removed.
//!
//! - Only `tenants-out/`, `platform-out/`, `argocd/` and `.provisio-state.json` are
//!   committed (crash leftovers of the writer, `.provisio-*`, are skipped).
//! - A commit is built by editing HEAD's tree: only the tenant directories a run touched, or
//!   that the committed state file records differently from the one on disk, are read from
//!   disk, so a one-tenant change costs the same at 10,000 tenants as at 10; the index is
//!   brought back in step afterwards ([`OutputRepo::sync_index`]).
//! - The clone is provisio's: it holds provisio's lock while open, and on a rejected push
//!   the caller resets it onto the remote head ([`OutputRepo::reset_to`]) before
//!   regenerating (see `ops::deliver`).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use git2::{ErrorCode, ObjectType, Tree};
use tracing::{debug, info, warn};

use super::bulk::{Bulk, HashedBlob, in_bulk_stored, normalize_mode};
use super::commit::Flush;
use super::index;
use super::lock::{self, Lock};
use super::message::{Changes, CommitInfo, FileChanges, PlatformChanges, Why, commit_message};
use super::pack::FreshPacks;
use super::push::Made;
use super::rollup;
use super::sync::PushFailure;
use super::{Author, GitError, Oid, Repo, Result, Transport, io};
use crate::io::fsx::TEMP_PREFIX;
use crate::io::output::{STATE_FILE, State, Summary};
use provisio_core::render::platform::{NAMESPACES_DIR, TOOLS_DIR};
use provisio_core::render::{ARGOCD_DIR, PLATFORM_DIR, TENANTS_DIR};

/// Where the output repository lives and how to reach its remote.
#[derive(Debug, Clone)]
pub struct RepoConfig {
    /// The remote's name (`origin`).
    pub remote: String,
    /// The manifests repository; used to create the clone when the output directory is not
    /// a repository yet, and to add the remote when it is missing.
    pub url: Option<String>,
    /// The branch to commit to; `None`: the branch checked out.
    pub branch: Option<String>,
    pub author: Author,
    /// How the remote is reached.
    pub transport: Transport,
}

/// An edit of a tree: the path's components, and its new entry (id and mode; `None`:
/// removed).
type TreeEdit<'a> = (Vec<&'a str>, Option<(Oid, i32)>);
impl Default for RepoConfig {
    fn default() -> Self {
        RepoConfig {
            remote: "origin".into(),
            url: None,
            branch: None,
            author: Author::default(),
            transport: Transport::default(),
        }
    }
}

/// What a commit reads from the output directory.
struct Touched {
    /// The tenant directories; `None`: all of `tenants-out/`.
    tenants: Option<BTreeSet<String>>,
    /// Tenants among them whose committed tree is the one the run found on disk: only these
    /// paths (relative to the tenant's directory; `true`: written, `false`: removed) differ.
    edits: BTreeMap<String, Vec<(String, bool)>>,
    argocd: bool,
    platform: bool,
}

/// The output directory as a work tree of the manifests repository.
pub struct OutputRepo {
    repo: Repo,
    /// The output root relative to the work tree, `""` or ending in `/`.
    prefix: String,
    branch: String,
    remote: String,
    author: Author,
    /// provisio's lock on the repository, held while this value lives.
    _lock: Lock,
    /// Push attempts by outcome since the last [`OutputRepo::take_push_outcomes`].
    pushes: RefCell<BTreeMap<&'static str, u64>>,
    /// The packs this process's commits stored, while still on disk as written: a push to a
    /// local remote copies their entries on their CRC-32 alone ([`FreshPacks`]).
    fresh: RefCell<FreshPacks>,
    /// What the last commit made on its parent, for the push that follows ([`Made`]).
    made: RefCell<Option<Made>>,
}

impl OutputRepo {
    /// Opens the repository holding `out` (the output root may be a sub-directory of its work
    /// tree) and takes provisio's lock on it, removing the git lock files a killed provisio run
    /// left (one that is not provisio's is an error: [`super::lock`]). When `out` is in no
    /// repository and `cfg.url` is given, creates it as a clone of that URL (an empty remote
    /// is fine: the first commit creates the branch).
    pub fn open(out: &Path, cfg: &RepoConfig) -> Result<OutputRepo> {
        // Refused before anything is created or changed, whatever state the clone is in.
        let wanted_ref = cfg.branch.as_deref().map(super::branch_ref).transpose()?;
        std::fs::create_dir_all(out).map_err(io("create", out))?;
        let mut repo = if cfg.url.is_some() {
            // Created when missing, on the branch asked for (`main` by default).
            Repo::open_or_init(out, cfg.branch.as_deref().unwrap_or("main"))?
        } else {
            Repo::discover(out)?
        };
        repo.set_transport(cfg.transport.clone());
        let git_dir = repo.git_dir().to_path_buf();
        let lock = lock::acquire(&git_dir)?;
        let prefix = super::prefix_of(repo.workdir(), out).ok_or_else(|| GitError::Outside {
            path: out.to_path_buf(),
            repo: repo.workdir().to_path_buf(),
        })?;
        let head = repo
            .repo
            .find_reference("HEAD")
            .map_err(repo.err("read HEAD"))?;
        let current = match head.symbolic_target().ok().flatten() {
            Some(t) => t.strip_prefix("refs/heads/").unwrap_or(t).to_owned(),
            None => return Err(GitError::DetachedHead(git_dir)),
        };
        drop(head);
        let unborn = repo.head()?.is_none();
        let branch = match cfg.branch.as_ref().zip(wanted_ref.as_deref()) {
            Some((b, full)) if *b != current => {
                if unborn {
                    repo.repo
                        .set_head(full)
                        .map_err(repo.err("point HEAD at the branch"))?;
                    b.clone()
                } else {
                    return Err(GitError::WrongBranch {
                        repo: git_dir,
                        actual: current,
                        expected: b.clone(),
                    });
                }
            }
            _ => current,
        };
        if let Some(url) = &cfg.url {
            match repo.remote_url(&cfg.remote)? {
                Some(existing) if existing != *url => {
                    let (existing, url) = (
                        super::transport::redact(&existing),
                        super::transport::redact(url),
                    );
                    warn!(remote = %cfg.remote, configured = %existing, given = %url,
                        "the output repository's remote differs from --manifests-url; using the repository's");
                }
                Some(_) => {}
                None => repo.ensure_remote(&cfg.remote, url)?,
            }
        }
        let this = OutputRepo {
            repo,
            prefix,
            branch,
            remote: cfg.remote.clone(),
            author: cfg.author.clone(),
            _lock: lock,
            pushes: RefCell::default(),
            fresh: RefCell::default(),
            made: RefCell::default(),
        };
        if unborn && this.repo.remote_url(&this.remote)?.is_some() {
            // A fresh clone: start from the remote branch when it exists.
            if let Some(remote_head) = this.fetch()? {
                info!(branch = %this.branch, commit = %remote_head, "checking out the remote branch");
                this.reset_to(remote_head)?;
            }
        }
        Ok(this)
    }

    /// The underlying repository.
    pub fn repo(&self) -> &Repo {
        &self.repo
    }

    /// Fetches the branch into its remote-tracking ref; the remote's head, if it has the
    /// branch.
    pub fn fetch(&self) -> Result<Option<Oid>> {
        self.repo.fetch_branch(&self.remote, &self.branch)
    }

    /// Points the branch at `commit`, work tree and index included (after a fetch, to commit
    /// on top of another writer's output). The index is first brought in step with HEAD:
    /// commits are built without it, and a checkout takes a file the index does not list for
    /// an untracked one and leaves it in the work tree.
    pub fn reset_to(&self, commit: Oid) -> Result<()> {
        self.sync_index()?;
        self.repo.reset_branch_to(&self.branch, commit)
    }

    /// One push of the branch to the remote, never forced.
    pub fn push_once(&self) -> std::result::Result<(), PushFailure> {
        let result = self.repo.push_branch_with(
            &self.remote,
            &self.branch,
            &self.fresh.borrow(),
            self.made.borrow().as_ref(),
        );
        let outcome = match &result {
            Ok(()) => "ok",
            Err(f) => f.outcome(),
        };
        *self.pushes.borrow_mut().entry(outcome).or_default() += 1;
        result
    }

    /// The `Registry-Commit:` an output commit names, if any.
    pub fn registry_commit_at(&self, commit: Oid) -> Result<Option<String>> {
        let c = self
            .repo
            .repo
            .find_commit(commit)
            .map_err(self.repo.err("read a commit"))?;
        let message = String::from_utf8_lossy(c.message_bytes());
        Ok(super::message::registry_commit_of(&message).map(str::to_owned))
    }

    /// Push attempts by outcome (`ok`, `rejected`, `auth`, `verify`, `error`) since the last
    /// call, for the metrics.
    pub fn take_push_outcomes(&self) -> BTreeMap<&'static str, u64> {
        std::mem::take(&mut *self.pushes.borrow_mut())
    }

    /// Commits of the branch the remote-tracking branch lacks (as of the last fetch or push).
    pub fn unpushed(&self) -> Result<usize> {
        self.repo.unpushed(&self.remote, &self.branch)
    }

    /// The remote's name.
    pub fn remote(&self) -> &str {
        &self.remote
    }

    /// Who commits.
    pub fn author(&self) -> &Author {
        &self.author
    }
    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// The current commit of the branch (`None` before the first commit).
    pub fn head(&self) -> Option<Oid> {
        self.repo.repo.head().ok().and_then(|h| h.target())
    }

    /// The remote-tracking commit of the branch, as of the last fetch or push.
    pub fn remote_head(&self) -> Result<Option<Oid>> {
        self.repo.tracking_head(&self.remote, &self.branch)
    }

    /// Whether the branch has commits the remote-tracking branch lacks.
    pub fn ahead(&self) -> Result<bool> {
        Ok(match (self.head(), self.remote_head()?) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(h), Some(r)) => h != r,
        })
    }

    /// Commits what the output directory holds and HEAD lacks, by editing HEAD's tree (an
    /// empty tree before the first commit): the one commit path of `generate --commit` and
    /// watch. Only the tenant directories that differ are read from disk — those `summary`
    /// (one `generate` run) wrote or removed, and those whose tree hash in the state file on
    /// disk differs from the one in HEAD's state file (output generated earlier and not
    /// committed: a CI job after a run without `--commit`, a failed cycle, a killed run) —
    /// plus `platform-out/` and `argocd/` when touched, and the state file. Of a tree the run
    /// found on disk as HEAD recorded it ([`Summary::vouched`]), only the files it wrote or
    /// removed are read. A one-tenant
    /// change costs the same at 10,000 tenants as at 10; the index (270,000 entries at
    /// 10,000 tenants) is neither read nor rewritten, see [`OutputRepo::sync_index`]. When
    /// HEAD has no readable state file (a first commit, another tool's commit), every output
    /// path is read from disk.
    pub fn commit_summary(&self, summary: &Summary, why: &Why) -> Result<Option<CommitInfo>> {
        let root = match self.repo.repo.head() {
            Ok(h) => Some(
                h.peel_to_commit()
                    .and_then(|c| c.tree())
                    .map_err(self.repo.err("read HEAD's tree"))?,
            ),
            Err(_) => None,
        };
        let out = self
            .repo
            .repo
            .workdir()
            .expect("checked at open")
            .join(&self.prefix);
        let touched = self.touched(root.as_ref(), summary, &out)?;
        // Every new blob and tree goes to memory and is stored as packs before the commit
        // that names them is written.
        let (tree, stored) = in_bulk_stored(
            self.repo.git_dir(),
            |what, e| self.repo.err(what)(e),
            |bulk| {
                let mut log = PathLog::default();
                let tree = self.build_tree(bulk, root.as_ref(), &touched, &out, &mut log)?;
                Ok((tree, log.finish()))
            },
        )?;
        let (tree, paths) = tree;
        self.consolidate_packs();
        {
            // Recorded after the roll-up, which may have taken them in already; packs gone
            // or changed since (rolled up now or after an earlier commit) are forgotten.
            let mut fresh = self.fresh.borrow_mut();
            fresh.add(stored.packs);
            fresh.retain_on_disk(&self.repo.git_dir().join("objects").join("pack"));
        }
        *self.made.borrow_mut() = None;
        let Some(tree) = tree else {
            // Nothing in the output and nothing committed yet: no commit.
            return Ok(None);
        };
        let info = self.commit_tree(tree, why, paths)?;
        // Only when the edits placed more new objects than ones stored already: a tree read
        // whole (the tenants directory on `--full`, watch's first cycle, with no state file
        // to trust; a tenant whose recorded tree moved in a run that did not commit it) places
        // every object below it, which the remote mostly holds, and the walk sends what
        // changed instead of all of them.
        if let Some(CommitInfo {
            id,
            parent: Some(parent),
            ..
        }) = &info
            && touched.tenants.is_some()
            && stored.reused <= stored.placed.len() - stored.reused
        {
            *self.made.borrow_mut() = Some(Made {
                commit: *id,
                parent: *parent,
                objects: stored.placed,
            });
        }
        Ok(info)
    }

    /// Keeps the output clone's pack count bounded ([`rollup::consolidate`]): each commit (and
    /// each fetch) adds packs, and libgit2 looks a new object up in every pack. A failure is
    /// logged, not returned: the objects are stored either way, and the next commit tries
    /// again. After a roll-up this process's handle of the repository gets a fresh object
    /// database: libgit2 never drops a pack it has listed (`odb_pack.c`
    /// `pack_backend__refresh` only adds), so a long-lived handle (watch's) would keep every
    /// removed pack's index mapped, and the file on the disk, for as long as it lives.
    /// `PROVISIO_PACK_LIMIT` overrides [`rollup::PACK_LIMIT`] (tests and measurements).
    fn consolidate_packs(&self) {
        let limit = std::env::var("PROVISIO_PACK_LIMIT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(rollup::PACK_LIMIT);
        let started = std::time::Instant::now();
        match rollup::consolidate(self.repo.git_dir(), limit) {
            Ok(None) => {}
            Ok(Some(r)) => {
                tracing::debug!(
                    packs = r.packs,
                    objects = r.objects,
                    into = %r.into,
                    ms = started.elapsed().as_millis() as u64,
                    "packs rolled up"
                );
                // The fresh handle's object database, shared; when that handle is freed,
                // libgit2 clears the database's owner (`repository.c` `set_odb`), which only
                // gives it an object cache of its own.
                let fresh = super::handle::open(self.repo.git_dir())
                    .and_then(|r| self.repo.repo.set_odb(&r.odb()?));
                if let Err(e) = fresh {
                    warn!("the object database was not reopened after a roll-up: {e}");
                }
            }
            Err(e) => warn!(
                "the output clone's packs were not rolled up (the next commit tries again): {e}"
            ),
        }
    }

    /// The tree of the next commit: `root` (HEAD's, `None` before the first commit) with what
    /// `touched` names replaced by what `out` holds. `None`: no commit (nothing to commit on
    /// an unborn branch).
    fn build_tree(
        &self,
        bulk: &Bulk<'_>,
        root: Option<&Tree>,
        touched: &Touched,
        out: &Path,
        log: &mut PathLog,
    ) -> Result<Option<Oid>> {
        let tdir = format!("{}{TENANTS_DIR}", self.prefix);
        if touched.tenants.is_none()
            || touched.platform
            || touched.argocd
            || root.is_some_and(|r| file_on_the_way(r, &tdir))
        {
            // Directories written whole: their paths are not logged. Or HEAD (someone's
            // commit) holds a file where the tenants directory, or one on its way, goes: its
            // removal is no path the log holds.
            log.whole = true;
        }
        let new_tdir = match &touched.tenants {
            None => {
                let dir = out.join(TENANTS_DIR);
                if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
                    self.write_dir_tree(bulk, &dir)?
                } else {
                    None
                }
            }
            Some(ids) => self.edit_tenants(bulk, root, ids, &touched.edits, out, log)?,
        };
        let mut edits = vec![(tdir, new_tdir.map(|o| (o, 0o040000)))];
        for (touched, dir) in [
            (touched.platform, PLATFORM_DIR),
            (touched.argocd, ARGOCD_DIR),
        ] {
            if !touched {
                continue;
            }
            // Small (tens of objects per product, one per shard): stored whole.
            let path = out.join(dir);
            let tree = if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                self.write_dir_tree(bulk, &path)?
            } else {
                None
            };
            edits.push((format!("{}{dir}", self.prefix), tree.map(|o| (o, 0o040000))));
        }
        let state = out.join(STATE_FILE);
        let state_blob = if std::fs::symlink_metadata(&state).is_ok_and(|m| m.is_file()) {
            Some((self.store_file(bulk, &state)?, 0o100644))
        } else {
            None
        };
        let state_path = format!("{}{STATE_FILE}", self.prefix);
        let old_state = root
            .and_then(|r| r.get_path(Path::new(&state_path)).ok())
            .map(|e| (e.id(), e.filemode()));
        log.edits
            .push((state_path.clone().into_bytes(), old_state, state_blob));
        edits.push((state_path, state_blob));
        let edits: Vec<TreeEdit<'_>> = edits
            .iter()
            .map(|(path, entry)| (path.split('/').collect(), *entry))
            .collect();
        let tree = self.replace_all(bulk, root.map(Tree::id), &edits, None)?;
        match tree {
            Some(t) => Ok(Some(t)),
            None if root.is_none() => Ok(None),
            // Everything removed: an empty tree.
            None => {
                let tb = bulk
                    .treebuilder(None)
                    .map_err(self.repo.err("write a tree"))?;
                Ok(Some(
                    bulk.write_tree(&tb)
                        .map_err(self.repo.err("write a tree"))?,
                ))
            }
        }
    }

    /// What a commit on `root` must read from `out`: what `summary` touched, and what the
    /// state file on disk records differently from the state file committed in `root`.
    fn touched(&self, root: Option<&Tree>, summary: &Summary, out: &Path) -> Result<Touched> {
        let mut t = Touched {
            tenants: Some(BTreeSet::new()),
            edits: BTreeMap::new(),
            argocd: false,
            platform: false,
        };
        let tenants_prefix = format!("{TENANTS_DIR}/");
        let (argocd_prefix, platform_prefix) =
            (format!("{ARGOCD_DIR}/"), format!("{PLATFORM_DIR}/"));
        for p in summary.written.iter().chain(&summary.removed) {
            if let Some(rest) = p.strip_prefix(&tenants_prefix) {
                if let Some(ids) = &mut t.tenants {
                    ids.insert(rest.split('/').next().unwrap_or(rest).to_owned());
                }
            } else if p.starts_with(&argocd_prefix) {
                t.argocd = true;
            } else if p.starts_with(&platform_prefix) {
                t.platform = true;
            }
        }
        let committed = match root {
            Some(r) => self.committed_state(r)?,
            None => None,
        };
        let path = out.join(STATE_FILE);
        let on_disk = if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
            State::from_bytes(&std::fs::read(&path).map_err(io("read", &path))?)
        } else {
            None
        };
        let (Some(committed), Some(on_disk), false) = (committed, on_disk, summary.full) else {
            // Nothing to compare with, or a full run (the safety net): read everything.
            return Ok(Touched {
                tenants: None,
                edits: BTreeMap::new(),
                argocd: true,
                platform: true,
            });
        };
        if let Some(ids) = &mut t.tenants {
            for (id, now) in &on_disk.tenants {
                if committed.tenants.get(id).map(|c| &c.tree) != Some(&now.tree) {
                    ids.insert(id.clone());
                }
            }
            for id in committed.tenants.keys() {
                if !on_disk.tenants.contains_key(id) {
                    ids.insert(id.clone());
                }
            }
        }
        // A tree the run found on disk as HEAD recorded it changed by exactly the run's writes
        // and removals: those files are all a commit needs to read.
        for (id, before) in &summary.vouched {
            if committed.tenants.get(id).is_some_and(|c| c.tree == *before) {
                t.edits.insert(id.clone(), Vec::new());
            }
        }
        // Removals first: applied in this order, a path that changed kind (a file `x` become
        // the directory of `x/y`, or the reverse) ends as the disk holds it; a removal applied
        // after the write would drop the new file or directory with the old one.
        for (paths, written) in [(&summary.removed, false), (&summary.written, true)] {
            for p in paths {
                let Some((id, rel)) = p
                    .strip_prefix(&tenants_prefix)
                    .and_then(|rest| rest.split_once('/'))
                else {
                    continue;
                };
                if let Some(e) = t.edits.get_mut(id) {
                    e.push((rel.to_owned(), written));
                }
            }
        }
        t.argocd |= committed.argocd != on_disk.argocd;
        t.platform |= committed.platform != on_disk.platform;
        Ok(t)
    }

    /// The state file committed in `root`, if it is there and readable.
    fn committed_state(&self, root: &Tree) -> Result<Option<State>> {
        let path = format!("{}{STATE_FILE}", self.prefix);
        let entry = match root.get_path(Path::new(&path)) {
            Ok(e) if e.kind() == Some(ObjectType::Blob) => e,
            Ok(_) => return Ok(None),
            Err(e) if e.code() == ErrorCode::NotFound => return Ok(None),
            Err(e) => return Err(self.repo.err("read HEAD's state file")(e)),
        };
        let blob = self
            .repo
            .repo
            .find_blob(entry.id())
            .map_err(self.repo.err("read HEAD's state file"))?;
        Ok(State::from_bytes(blob.content()))
    }

    /// The tenants directory of `root` (at `<prefix>tenants-out`) with the directories of `ids` replaced by
    /// what `out` holds (removed when it holds nothing).
    fn edit_tenants(
        &self,
        bulk: &Bulk<'_>,
        root: Option<&Tree>,
        ids: &BTreeSet<String>,
        edits: &BTreeMap<String, Vec<(String, bool)>>,
        out: &Path,
        log: &mut PathLog,
    ) -> Result<Option<Oid>> {
        let tdir = format!("{}{TENANTS_DIR}", self.prefix);
        let old_tdir = root
            .and_then(|r| r.get_path(Path::new(&tdir)).ok())
            .filter(|e| e.kind() == Some(ObjectType::Tree))
            .map(|e| e.id());
        let old_tdir = match old_tdir {
            Some(id) => Some(bulk.find_tree(id).map_err(self.repo.err("read a tree"))?),
            None => None,
        };
        let mut tb = bulk
            .treebuilder(old_tdir.as_ref())
            .map_err(self.repo.err("edit a tree"))?;
        // The files written, read and hashed on a thread of their own in the order they are
        // stored here (a release: 20,000 files, 230 MB, at 10,000 tenants).
        let written: Vec<std::path::PathBuf> = ids
            .iter()
            .filter_map(|id| Some((id, edits.get(id)?)))
            .flat_map(|(id, changes)| {
                let dir = out.join(TENANTS_DIR).join(id);
                changes
                    .iter()
                    .filter(|(_, written)| *written)
                    .map(move |(rel, _)| dir.join(rel))
            })
            .collect();
        std::thread::scope(|scope| {
            let mut blobs = read_ahead(scope, written);
            for id in ids {
                let dir = out.join(TENANTS_DIR).join(id);
                let new = if let Some(changes) = edits.get(id) {
                    // HEAD's tree of the tenant, with the files this run wrote or removed.
                    // A tree by its kind, as libgit2 reads it (`git_tree_entry_type`: the type
                    // bits).
                    let tree = old_tdir.as_ref().and_then(|t| t.get_tree(id));
                    let mut tree_edits = Vec::with_capacity(changes.len());
                    for (rel, written) in changes {
                        let entry = if *written {
                            let (path, blob) = blobs
                                .next()
                                .expect("one blob read ahead for each file written");
                            debug_assert_eq!(path, dir.join(rel));
                            Some((self.store_hashed(bulk, &path, blob?)?, 0o100644))
                        } else {
                            None
                        };
                        tree_edits.push((rel.split('/').collect(), entry));
                    }
                    if old_tdir
                        .as_ref()
                        .and_then(|t| t.get(id))
                        .is_some_and(|(_, mode)| mode != 0o040000)
                    {
                        // A file where the tenant's directory goes: replaced, as above.
                        log.whole = true;
                    }
                    log.prefix = format!("{tdir}/{id}/").into_bytes();
                    self.replace_all(bulk, tree, &tree_edits, Some(log))?
                } else if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
                    log.whole = true;
                    self.write_dir_tree(bulk, &dir)?
                } else {
                    log.whole = true;
                    None
                };
                match new {
                    Some(oid) => {
                        tb.insert(id, oid, 0o040000)
                            .map_err(self.repo.err("edit a tree"))?;
                    }
                    None => tb.remove(id),
                }
            }
            Ok::<_, GitError>(())
        })?;
        if tb.is_empty() {
            Ok(None)
        } else {
            Ok(Some(
                bulk.write_tree(&tb)
                    .map_err(self.repo.err("write a tree"))?,
            ))
        }
    }

    /// `tree` with each `(path, entry)` of `edits` applied in order (the entry at `path`
    /// replaced; `None`: removed); `None` when it ends up empty. Each tree on the way is
    /// written once however many edits reach it: a product's release changes two files of
    /// every tenant, and writing the tenant's tree once per file stored 10,000 trees per
    /// release that no commit names.
    fn replace_all(
        &self,
        bulk: &Bulk<'_>,
        tree: Option<Oid>,
        edits: &[TreeEdit<'_>],
        mut log: Option<&mut PathLog>,
    ) -> Result<Option<Oid>> {
        let tree = match tree {
            Some(t) => Some(bulk.find_tree(t).map_err(self.repo.err("read a tree"))?),
            None => None,
        };
        let mut tb = bulk
            .treebuilder(tree.as_ref())
            .map_err(self.repo.err("edit a tree"))?;
        for (name, mine) in by_first_name(edits) {
            let original = tree.as_ref().and_then(|t| t.get(name));
            let mut current = original;
            let (mut set, mut below_set) = (false, false);
            let mut i = 0;
            while i < mine.len() {
                let (path, entry) = mine[i];
                if path.len() == 1 {
                    current = *entry;
                    set = true;
                    i += 1;
                    continue;
                }
                below_set = true;
                // A run of edits below `name`: one pass over its tree.
                let mut below = Vec::new();
                while i < mine.len() && mine[i].0.len() > 1 {
                    below.push((mine[i].0[1..].to_vec(), mine[i].1));
                    i += 1;
                }
                let child = current
                    .filter(|(_, mode)| *mode == 0o040000)
                    .map(|(o, _)| o);
                if let Some(l) = log.as_deref_mut()
                    && current.is_some() != child.is_some()
                {
                    // A file (or link, or submodule) replaced by the directory the edits
                    // below it make: its removal is no path the log holds.
                    l.whole = true;
                }
                let mut sub = log.as_deref_mut();
                let len = sub.as_ref().map_or(0, |l| l.prefix.len());
                if let Some(l) = &mut sub {
                    l.prefix.extend_from_slice(name.as_bytes());
                    l.prefix.push(b'/');
                }
                current = self
                    .replace_all(bulk, child, &below, sub)?
                    .map(|o| (o, 0o040000));
                if let Some(l) = log.as_deref_mut() {
                    l.prefix.truncate(len);
                }
            }
            if let Some(l) = log.as_deref_mut() {
                if set && below_set {
                    // A path set and also edited below: not a plain file edit.
                    l.whole = true;
                } else if set {
                    let mut path = l.prefix.clone();
                    path.extend_from_slice(name.as_bytes());
                    l.edits.push((path, original, current));
                }
            }
            match current {
                Some((oid, mode)) => {
                    tb.insert(name, oid, mode)
                        .map_err(self.repo.err("edit a tree"))?;
                }
                None => tb.remove(name),
            }
        }
        if tb.is_empty() {
            Ok(None)
        } else {
            Ok(Some(
                bulk.write_tree(&tb)
                    .map_err(self.repo.err("write a tree"))?,
            ))
        }
    }

    /// Stores the files below `dir` as blobs and trees (skipping the writer's `.provisio-*`
    /// temporaries); `None` when there are none.
    fn write_dir_tree(&self, bulk: &Bulk<'_>, dir: &Path) -> Result<Option<Oid>> {
        let entries = std::fs::read_dir(dir).map_err(io("list", dir))?;
        let mut tb = bulk
            .treebuilder(None)
            .map_err(self.repo.err("build a tree"))?;
        for e in entries {
            let e = e.map_err(io("list", dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(TEMP_PREFIX) && name != STATE_FILE {
                continue;
            }
            let path = e.path();
            // `DirEntry::file_type` does not follow links; a link is never stored (the
            // writer refuses them; this is the last line of defence).
            let kind = e.file_type().map_err(io("stat", &path))?;
            if !kind.is_dir() && !kind.is_file() {
                return Err(io("store", &path)(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "not a regular file (a symbolic link?): the output tree holds only files and directories",
                )));
            }
            if kind.is_dir() {
                if let Some(oid) = self.write_dir_tree(bulk, &path)? {
                    tb.insert(&name, oid, 0o040000)
                        .map_err(self.repo.err("build a tree"))?;
                }
            } else {
                let oid = self.store_file(bulk, &path)?;
                tb.insert(&name, oid, 0o100644)
                    .map_err(self.repo.err("build a tree"))?;
            }
        }
        if tb.is_empty() {
            Ok(None)
        } else {
            Ok(Some(
                bulk.write_tree(&tb)
                    .map_err(self.repo.err("build a tree"))?,
            ))
        }
    }

    /// Stores the regular file at `path` as a blob (a link is never followed or stored: the
    /// writer refuses them; this is the last line of defence).
    fn store_file(&self, bulk: &Bulk<'_>, path: &Path) -> Result<Oid> {
        let blob = read_blob(path)?;
        self.store_hashed(bulk, path, blob)
    }

    /// Stores the blob read from `path` ([`read_blob`]).
    fn store_hashed(
        &self,
        bulk: &Bulk<'_>,
        path: &Path,
        blob: std::result::Result<HashedBlob, git2::Error>,
    ) -> Result<Oid> {
        blob.and_then(|b| bulk.store_blob(b))
            .map_err(self.repo.err(&format!("store {}", path.display())))
    }

    /// Makes the index match HEAD (after commits made by [`OutputRepo::commit_summary`]), so
    /// that `git status` in the output clone is clean ([`Repo::sync_index`]).
    pub fn sync_index(&self) -> Result<()> {
        self.repo.sync_index()
    }

    /// Brings the index in step with HEAD after a run that made no commit
    /// ([`Repo::sync_index_to_head`]).
    pub fn sync_index_to_head(&self) -> Result<()> {
        self.repo.sync_index_to_head()
    }

    /// Brings the index in step after `commit` ([`Repo::sync_index_after`]).
    pub fn sync_index_after(&self, commit: &CommitInfo) -> Result<()> {
        self.repo.sync_index_after(commit)
    }

    /// A second handle on this repository that brings its index in step after a commit on
    /// another thread ([`IndexSyncer`]), opened now: after the commit it will sync to.
    pub fn index_syncer(&self) -> Result<IndexSyncer> {
        let path = self.repo.repo.path();
        let repo = super::handle::open(path).map_err(self.repo.err("open the repository"))?;
        Ok(IndexSyncer(Repo::with_workdir(repo, &self.repo.workdir)?))
    }

    /// Commits `tree_id` on HEAD when it differs from HEAD's tree.
    fn commit_tree(
        &self,
        tree_id: Oid,
        why: &Why,
        paths: Option<Vec<index::PathEdit>>,
    ) -> Result<Option<CommitInfo>> {
        let parent = match self.repo.repo.head() {
            Ok(h) => Some(h.peel_to_commit().map_err(self.repo.err("read HEAD"))?),
            Err(_) => None,
        };
        if parent.as_ref().is_some_and(|p| p.tree_id() == tree_id) {
            return Ok(None);
        }
        let tree = self
            .repo
            .repo
            .find_tree(tree_id)
            .map_err(self.repo.err("read the tree"))?;
        let old_tree = match &parent {
            Some(p) => Some(p.tree().map_err(self.repo.err("read HEAD's tree"))?),
            None => None,
        };
        let changes = self.changes(old_tree.as_ref(), &tree)?;
        let message = commit_message(&changes, why);
        let id = self.repo.commit_on_head(
            &tree,
            parent.as_ref(),
            &message,
            &self.author,
            Flush::Lazy,
        )?;
        info!(commit = %id, added = changes.added.len(), updated = changes.updated.len(),
            removed = changes.removed.len(), platform = !changes.platform.is_empty(),
            "committed the output");
        Ok(Some(CommitInfo {
            id,
            paths: paths.filter(|_| parent.is_some()),
            parent: parent.map(|p| p.id()),
            changes,
            message,
        }))
    }

    /// Tenants added, updated and removed between two trees, by comparing the tenant
    /// directories' tree ids (no recursion into unchanged tenants).
    fn changes(&self, old: Option<&Tree>, new: &Tree) -> Result<Changes> {
        let sub = |tree: Option<&Tree>, dir: &str| -> Result<Option<Tree<'_>>> {
            let Some(tree) = tree else { return Ok(None) };
            match tree.get_path(Path::new(&format!("{}{dir}", self.prefix))) {
                Ok(e) if e.kind() == Some(ObjectType::Tree) => Ok(Some(
                    self.repo
                        .repo
                        .find_tree(e.id())
                        .map_err(self.repo.err("read a tree"))?,
                )),
                Ok(_) => Ok(None),
                Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
                Err(e) => Err(self.repo.err("read a tree")(e)),
            }
        };
        let entries = |t: Option<Tree>| -> std::collections::BTreeMap<String, Oid> {
            t.map(|t| {
                t.iter()
                    .filter(|e| e.kind() == Some(ObjectType::Tree))
                    .filter_map(|e| e.name().ok().map(|n| (n.to_owned(), e.id())))
                    .collect()
            })
            .unwrap_or_default()
        };
        let before = entries(sub(old, TENANTS_DIR)?);
        let after = entries(sub(Some(new), TENANTS_DIR)?);
        let mut changes = Changes::default();
        for (id, oid) in &after {
            match before.get(id) {
                None => {
                    changes.added.insert(id.clone());
                }
                Some(o) if o != oid => {
                    changes.updated.insert(id.clone());
                }
                Some(_) => {}
            }
        }
        for id in before.keys() {
            if !after.contains_key(id) {
                changes.removed.insert(id.clone());
            }
        }
        let argo_old = sub(old, ARGOCD_DIR)?.map(|t| t.id());
        let argo_new = sub(Some(new), ARGOCD_DIR)?.map(|t| t.id());
        changes.argocd = argo_old != argo_new;
        changes.platform = self.platform_changes(old, new)?;
        Ok(changes)
    }

    /// Products and teams whose platform objects appeared, changed or went between two trees,
    /// by their directories' tree ids (a product's: `platform-out/tools/products/<p>` and
    /// `platform-out/namespaces/<env>/<p>` of every environment), and whether the platform-wide
    /// files of `platform-out/tools` changed.
    fn platform_changes(&self, old: Option<&Tree>, new: &Tree) -> Result<PlatformChanges> {
        use std::collections::BTreeMap;
        type Owners = BTreeMap<String, Vec<(String, Oid)>>;
        let read = |tree: Option<&Tree>| -> Result<(Owners, Vec<(String, Oid)>)> {
            let mut owners = Owners::new();
            let mut shared = Vec::new();
            let Some(tree) = tree else {
                return Ok((owners, shared));
            };
            let entries = |dir: &str| -> Result<Vec<(String, Oid, bool)>> {
                match tree.get_path(Path::new(&format!("{}{dir}", self.prefix))) {
                    Ok(e) if e.kind() == Some(ObjectType::Tree) => {
                        let t = self
                            .repo
                            .repo
                            .find_tree(e.id())
                            .map_err(self.repo.err("read a tree"))?;
                        Ok(t.iter()
                            .filter_map(|e| {
                                let dir = e.kind() == Some(ObjectType::Tree);
                                e.name().ok().map(|n| (n.to_owned(), e.id(), dir))
                            })
                            .collect())
                    }
                    Ok(_) => Ok(Vec::new()),
                    Err(e) if e.code() == ErrorCode::NotFound => Ok(Vec::new()),
                    Err(e) => Err(self.repo.err("read a tree")(e)),
                }
            };
            for (name, id, dir) in entries(TOOLS_DIR)? {
                if !dir && name != "kustomization.yaml" {
                    shared.push((name, id));
                }
            }
            for (name, id, _) in entries(&format!("{TOOLS_DIR}/products"))? {
                owners.entry(name).or_default().push(("tools".into(), id));
            }
            for (name, id, _) in entries(&format!("{TOOLS_DIR}/teams"))? {
                owners
                    .entry(format!("team {name}"))
                    .or_default()
                    .push(("tools".into(), id));
            }
            for (env, _, dir) in entries(NAMESPACES_DIR)? {
                if !dir {
                    continue;
                }
                for (name, id, dir) in entries(&format!("{NAMESPACES_DIR}/{env}"))? {
                    if dir {
                        owners.entry(name).or_default().push((env.clone(), id));
                    }
                }
            }
            Ok((owners, shared))
        };
        let (before, shared_before) = read(old)?;
        let (after, shared_after) = read(Some(new))?;
        let mut p = PlatformChanges {
            shared: shared_before != shared_after,
            ..PlatformChanges::default()
        };
        for (owner, dirs) in &after {
            match before.get(owner) {
                None => {
                    p.added.insert(owner.clone());
                }
                Some(b) if b != dirs => {
                    p.updated.insert(owner.clone());
                }
                Some(_) => {}
            }
        }
        for owner in before.keys() {
            if !after.contains_key(owner) {
                p.removed.insert(owner.clone());
            }
        }
        Ok(p)
    }

    /// The files a commit added, modified and removed (root-relative), for the Argo CD
    /// nudge; `None` past `limit` files (the nudge then lists none, and Argo CD refreshes
    /// every application of the repository).
    pub fn changed_files(&self, commit: &CommitInfo, limit: usize) -> Result<Option<FileChanges>> {
        let total = commit.changes.added.len()
            + commit.changes.updated.len()
            + commit.changes.removed.len();
        if total * 30 > limit {
            return Ok(None);
        }
        let new = self
            .repo
            .repo
            .find_commit(commit.id)
            .and_then(|c| c.tree())
            .map_err(self.repo.err("read the commit"))?;
        let old = match commit.parent {
            Some(p) => Some(
                self.repo
                    .repo
                    .find_commit(p)
                    .and_then(|c| c.tree())
                    .map_err(self.repo.err("read the parent commit"))?,
            ),
            None => None,
        };
        let diff = self
            .repo
            .repo
            .diff_tree_to_tree(old.as_ref(), Some(&new), None)
            .map_err(self.repo.err("diff the commit"))?;
        let mut files = FileChanges::default();
        for d in diff.deltas() {
            let path = d
                .new_file()
                .path()
                .or_else(|| d.old_file().path())
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            let path = path.strip_prefix(&self.prefix).unwrap_or(&path).to_owned();
            match d.status() {
                git2::Delta::Added => files.added.push(path),
                git2::Delta::Deleted => files.removed.push(path),
                _ => files.modified.push(path),
            }
            if files.added.len() + files.modified.len() + files.removed.len() > limit {
                return Ok(None);
            }
        }
        Ok(Some(files))
    }
}

/// A handle of its own on an output repository, for bringing the index in step after a
/// commit while the same process pushes that commit ([`crate::ops::deliver::deliver`]): the
/// two touch different files (`.git/index` and provisio's record of it; the branch's
/// remote-tracking ref and the remote), and a `git2::Repository` is used by one thread at a
/// time. Made by [`OutputRepo::index_syncer`].
pub struct IndexSyncer(Repo);

impl IndexSyncer {
    /// [`OutputRepo::sync_index_after`], on this handle.
    pub fn sync_index_after(&self, commit: &CommitInfo) -> Result<()> {
        self.0.sync_index_after(commit)
    }
}

/// The index of an output repository: kept in step with HEAD after provisio's commits, which
/// are built without it.
impl Repo {
    /// Makes the index match HEAD (after commits made by [`OutputRepo::commit_summary`]), so
    /// that `git status` in the output clone is clean. Costs a walk of the whole tree.
    pub fn sync_index(&self) -> Result<()> {
        let Ok(head) = self.repo.head() else {
            return Ok(());
        };
        let tree = head.peel_to_tree().map_err(self.err("read HEAD's tree"))?;
        let mut index = self.repo.index().map_err(self.err("read the index"))?;
        let written = index
            .read_tree(&tree)
            .and_then(|()| index.write())
            .map_err(self.err("write the index"));
        self.after_index_write(&mut index, written, tree.id())
    }

    /// After `index` (the repository's) was changed to hold `tree` and written (`written`):
    /// records that the file with this checksum holds `tree` ([`IndexRecord`]); when the write
    /// failed, reloads the index from the disk instead, so that the repository's cached index
    /// never holds changes the file lacks (its checksum would then describe other entries).
    fn after_index_write(
        &self,
        index: &mut git2::Index,
        written: Result<()>,
        tree: Oid,
    ) -> Result<()> {
        let record = IndexRecord::path(self.repo.path());
        if let Err(e) = written {
            let _ = std::fs::remove_file(&record);
            let _ = index.read(true);
            return Err(e);
        }
        if let Err(e) = IndexRecord::write(&record, index_checksum(index), tree) {
            // Only the next run's shortcut is lost: it checks the index whole.
            warn!(
                "cannot record the index's tree in {}: {e}",
                record.display()
            );
        }
        Ok(())
    }

    /// Brings the index in step with HEAD after a run that made no commit. A run killed after
    /// moving HEAD and before updating the index left the index holding the parent's tree; a
    /// run after it that finds nothing to commit must still repair it (otherwise `git status`
    /// in the output clone shows the last commit undone, staged, until the next commit).
    /// Cheap when the index file is the one provisio last wrote holding HEAD's tree: its
    /// trailer and the record say so without reading the index; otherwise the index's tree
    /// is built and compared, and the index rebuilt from HEAD when it differs.
    pub fn sync_index_to_head(&self) -> Result<()> {
        let repo = &self.repo;
        let Ok(head) = repo.head() else {
            return Ok(());
        };
        let tree = head.peel_to_tree().map_err(self.err("read HEAD's tree"))?;
        let recorded = IndexRecord::read(&IndexRecord::path(repo.path()));
        if let Some((checksum, recorded_tree)) = recorded
            && recorded_tree == tree.id()
            && index_file_trailer(&repo.path().join("index")) == Some(checksum)
        {
            return Ok(());
        }
        let mut index = repo.index().map_err(self.err("read the index"))?;
        // The file on disk, not a copy this process read earlier.
        index.read(false).map_err(self.err("read the index"))?;
        if !index.is_empty() && index.write_tree().ok() == Some(tree.id()) {
            // Recorded (the checksum is of the bytes just read), so that the next run with
            // nothing to commit takes the free path again.
            let record = IndexRecord::path(repo.path());
            if let Err(e) = IndexRecord::write(&record, index_checksum(&index), tree.id()) {
                warn!(
                    "cannot record the index's tree in {}: {e}",
                    record.display()
                );
            }
            return Ok(());
        }
        self.sync_index()
    }

    /// The index changes `commit` makes on its parent: from the paths its tree edits set when
    /// they are all it changed ([`CommitInfo::paths`]: no tree read), else by a diff of the
    /// two trees ([`index::tree_changes`]). Debug builds (the tests) check the first against
    /// the second.
    fn commit_changes(
        &self,
        commit: &CommitInfo,
        old: &Tree<'_>,
        new: &Tree<'_>,
        workdir: &Path,
    ) -> Result<index::Changes> {
        let diff = || {
            index::tree_changes(&self.repo, old, new, workdir).map_err(self.err("diff the commit"))
        };
        let Some(changes) = commit
            .paths
            .as_deref()
            .and_then(|p| index::changes_of(p, workdir))
        else {
            return diff();
        };
        #[cfg(debug_assertions)]
        {
            let key = |c: &index::Changes| {
                let list: Vec<_> = c
                    .list
                    .iter()
                    .map(|(p, e)| (p.clone(), e.as_ref().map(|e| (e.id, e.mode))))
                    .collect();
                (list, c.added, c.removed)
            };
            assert_eq!(
                key(&changes),
                key(&diff()?),
                "the commit's paths are its diff"
            );
        }
        Ok(changes)
    }

    /// Brings the index in step after `commit` (one [`OutputRepo::commit_summary`] made on
    /// HEAD). When the index file is still the one provisio wrote holding the parent's tree
    /// (its trailer and the record say so without reading it), the file is spliced
    /// ([`index::splice`]: streamed once, only the commit's paths changed) — libgit2 would
    /// parse and hash 270,000 entries at 10,000 tenants, twice. Otherwise, or when the file
    /// is not one the splice handles, libgit2 updates only the commit's paths when the index
    /// holds the parent's tree (its cached tree says so without a walk), or rebuilds it whole
    /// from HEAD ([`Repo::sync_index`]).
    pub fn sync_index_after(&self, commit: &CommitInfo) -> Result<()> {
        let repo = &self.repo;
        let tree_of = |c: Oid| {
            repo.find_commit(c)
                .and_then(|c| c.tree())
                .map_err(self.err("read a commit's tree"))
        };
        let Some(parent) = commit.parent else {
            return self.sync_index();
        };
        let old = tree_of(parent)?;
        let new = tree_of(commit.id)?;
        let workdir = repo.workdir().expect("checked at open");
        let record = IndexRecord::path(repo.path());
        let recorded = IndexRecord::read(&record);
        // The commit's changes, found once: the splice's, then libgit2's path's when the file
        // is not one the splice handles.
        let mut diffed = None;
        if let Some((checksum, tree)) = recorded
            && tree == old.id()
            && index_file_trailer(&repo.path().join("index")) == Some(checksum)
        {
            let started = std::time::Instant::now();
            let changes = self.commit_changes(commit, &old, &new, workdir)?;
            debug!(elapsed = ?started.elapsed(), changes = changes.list.len(), from_paths = commit.paths.is_some(), "index: commit diffed");
            let spliced = index::splice(repo.path(), workdir, checksum, &changes)?;
            diffed = Some(changes);
            match spliced {
                index::Spliced::Written(checksum) => {
                    // A `git2::Index` this process holds (`Repository::index` caches one)
                    // still has the old entries: libgit2 re-reads the file before using it
                    // (`git_index_read(index, false)`: the file's stamp or trailer differ).
                    if let Err(e) = IndexRecord::write(&record, checksum, new.id()) {
                        warn!(
                            "cannot record the index's tree in {}: {e}",
                            record.display()
                        );
                    }
                    return Ok(());
                }
                index::Spliced::Unsupported(why) => {
                    debug!(why, "the index is updated by libgit2, not spliced");
                }
            }
        }
        let mut index = repo.index().map_err(self.err("read the index"))?;
        // The file on disk, not a copy this process read before a splice replaced it.
        index.read(false).map_err(self.err("read the index"))?;
        // Whether the index holds the parent's tree: known without reading every tree when
        // the file is still the one provisio wrote holding it (same checksum); otherwise by
        // building the index's tree (its cached tree is invalid after the last update).
        let holds_old = recorded == Some((index_checksum(&index), old.id()))
            || (!index.is_empty() && index.write_tree().ok() == Some(old.id()));
        if !holds_old {
            debug!("the index does not hold the parent's tree: rebuilt from HEAD");
            return self.sync_index();
        }
        let changes = match diffed {
            Some(c) => c,
            None => self.commit_changes(commit, &old, &new, workdir)?,
        };
        let update = |index: &mut git2::Index| -> std::result::Result<(), git2::Error> {
            use std::os::unix::ffi::OsStrExt;
            // Removals first: a directory replaced by a file (or back) never collides.
            for (path, _) in changes.list.iter().filter(|(_, c)| c.is_none()) {
                index.remove_path(Path::new(std::ffi::OsStr::from_bytes(path)))?;
            }
            for entry in changes.list.iter().filter_map(|(_, c)| c.as_ref()) {
                index.add(entry)?;
            }
            index.write()
        };
        let written = update(&mut index).map_err(self.err("update the index"));
        self.after_index_write(&mut index, written, new.id())
    }
}

/// The regular file at `path` read and hashed as a blob. The outer error is reading's, the
/// inner one hashing's (none for a blob: its id is a plain SHA-1, [`super::pack::object_id`],
/// which detects no collision). Read as the writer reads the output
/// ([`crate::io::output::tree::read_file`]): opened without following a link or waiting for a FIFO's writer,
/// then checked through the descriptor, so what is read is what was checked (a link is never
/// followed or stored: the writer refuses them; this is the last line of defence). Checked by
/// path first, a file swapped for a link or a FIFO before its read would be followed
/// (another file's bytes committed) or waited on for ever.
fn read_blob(path: &Path) -> Result<std::result::Result<HashedBlob, git2::Error>> {
    let bytes = crate::io::output::tree::read_file(path)
        .map_err(|e| io("store", path)(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?
        .ok_or_else(|| io("read", path)(std::io::ErrorKind::NotFound.into()))?;
    Ok(HashedBlob::of(bytes))
}

/// Whether `root` holds something other than a directory (as the index reads a mode:
/// [`normalize_mode`]) at `path` or at a directory on its way.
fn file_on_the_way(root: &Tree<'_>, path: &str) -> bool {
    path.match_indices('/')
        .map(|(i, _)| &path[..i])
        .chain([path])
        .map_while(|p| root.get_path(Path::new(p)).ok())
        .any(|e| normalize_mode(e.filemode_raw()) != 0o040000)
}

/// The paths a commit's tree edits set ([`CommitInfo::paths`]), logged as the trees are
/// edited.
#[derive(Default)]
struct PathLog {
    /// Where the tree being edited is (its path and a `/`).
    prefix: Vec<u8>,
    edits: Vec<index::PathEdit>,
    /// A directory was written whole, or a path set in a way the log does not describe.
    whole: bool,
}

impl PathLog {
    fn finish(self) -> Option<Vec<index::PathEdit>> {
        (!self.whole).then_some(self.edits)
    }
}

/// A blob read ahead: its path, and [`read_blob`]'s result.
type ReadAhead = (
    std::path::PathBuf,
    Result<std::result::Result<HashedBlob, git2::Error>>,
);

/// The blobs of `paths` ([`read_blob`]), read and hashed on a thread of `scope`, in order, a
/// few ahead of the caller: the caller stores them while the next are hashed. Dropping the
/// iterator early stops the thread at its next file.
fn read_ahead<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    paths: Vec<std::path::PathBuf>,
) -> impl Iterator<Item = ReadAhead> + 'scope {
    let (tx, rx) = std::sync::mpsc::sync_channel(64);
    scope.spawn(move || {
        for path in paths {
            let blob = read_blob(&path);
            if tx.send((path, blob)).is_err() {
                break;
            }
        }
    });
    rx.into_iter()
}

/// The checksum libgit2 keeps of the index file it last read or wrote (the SHA-1 trailer of
/// that file, `index.c`: set by `parse_index` from the bytes it parsed, and by
/// `git_indexwriter_commit` from the bytes it wrote). git2 does not expose it.
fn index_checksum(index: &git2::Index) -> [u8; 20] {
    use git2::Binding;
    unsafe extern "C" {
        fn git_index_checksum(index: *mut libgit2_sys::git_index) -> *const libgit2_sys::git_oid;
    }
    // SAFETY: `index` is a live index; libgit2 returns a pointer into it (a SHA-1 repository:
    // 20 bytes), copied before `index` can change.
    unsafe { (*git_index_checksum(index.raw())).id }
}

/// The last 20 bytes of the index file at `path` (its SHA-1 trailer; zeros when written with
/// `index.skipHash`, which no recorded checksum equals).
fn index_file_trailer(path: &Path) -> Option<[u8; 20]> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    f.seek(SeekFrom::End(-20)).ok()?;
    let mut trailer = [0u8; 20];
    f.read_exact(&mut trailer).ok()?;
    Some(trailer)
}

/// `.git/provisio-index`: the checksum of the index file provisio last wrote and the tree it
/// holds. When the index still has that checksum, it is that file (a write by anyone else —
/// `git add`, a checkout, `git status` refreshing it — changes the checksum), so the tree is
/// known without rebuilding it from 270,000 entries. Written after the index, by rename; lost
/// or stale, it only sends the next run through the full check.
struct IndexRecord;

impl IndexRecord {
    fn path(git_dir: &Path) -> std::path::PathBuf {
        git_dir.join("provisio-index")
    }

    fn write(path: &Path, checksum: [u8; 20], tree: Oid) -> std::io::Result<()> {
        let hex: String = checksum.iter().map(|b| format!("{b:02x}")).collect();
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{hex} {tree}\n"))?;
        std::fs::rename(&tmp, path)
    }

    fn read(path: &Path) -> Option<([u8; 20], Oid)> {
        let text = std::fs::read_to_string(path).ok()?;
        let (hex, tree) = text.trim_end().split_once(' ')?;
        if hex.len() != 40 {
            return None;
        }
        let mut checksum = [0u8; 20];
        for (i, b) in checksum.iter_mut().enumerate() {
            *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some((checksum, Oid::from_str(tree).ok()?))
    }
}

/// `edits` grouped by their first path component: the names in the order first edited, each
/// name's edits in their order. One pass, whatever the number of names.
fn by_first_name<'e, 'a>(edits: &'e [TreeEdit<'a>]) -> Vec<(&'a str, Vec<&'e TreeEdit<'a>>)> {
    let mut groups: Vec<(&'a str, Vec<&'e TreeEdit<'a>>)> = Vec::new();
    let mut index: BTreeMap<&'a str, usize> = BTreeMap::new();
    for edit in edits {
        let name = edit.0[0];
        let i = *index.entry(name).or_insert_with(|| {
            groups.push((name, Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push(edit);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::super::bulk::in_bulk;
    use super::*;

    /// A file replaced by a FIFO or by a link to another file while the commit reads it
    /// (swapped in by `rename`, again and again): the FIFO is never waited on, the link
    /// never followed; the file's own bytes or a refusal, each time.
    #[test]
    fn a_file_swapped_for_a_fifo_or_a_link_is_neither_waited_on_nor_followed() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        std::fs::write(dir.join("secret"), "not the output's\n").unwrap();
        let path = dir.join("f");
        std::fs::write(&path, "file\n").unwrap();
        let file = HashedBlob::of(b"file\n".to_vec()).unwrap().id();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let swapper = {
            let (dir, stop) = (dir.clone(), stop.clone());
            std::thread::spawn(move || {
                let fifo =
                    std::ffi::CString::new(dir.join("p").into_os_string().into_encoded_bytes())
                        .unwrap();
                while !stop.load(Ordering::Relaxed) {
                    std::fs::write(dir.join("r"), "file\n").unwrap();
                    std::fs::rename(dir.join("r"), dir.join("f")).unwrap();
                    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
                    std::fs::rename(dir.join("p"), dir.join("f")).unwrap();
                    std::os::unix::fs::symlink(dir.join("secret"), dir.join("l")).unwrap();
                    std::fs::rename(dir.join("l"), dir.join("f")).unwrap();
                }
            })
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut read, mut refused) = (0, 0);
            for _ in 0..20_000 {
                match read_blob(&path) {
                    Ok(blob) => {
                        assert_eq!(blob.unwrap().id(), file, "another file's bytes");
                        read += 1;
                    }
                    Err(_) => refused += 1,
                }
            }
            let _ = tx.send((read, refused));
        });
        let got = rx.recv_timeout(std::time::Duration::from_secs(60));
        stop.store(true, Ordering::Relaxed);
        let (read, refused) = got.expect("every read ended (none waited on a FIFO)");
        swapper.join().unwrap();
        assert!(read > 0 && refused > 0, "read {read}, refused {refused}");
    }

    #[test]
    fn edits_are_grouped_by_first_name_in_first_edited_order() {
        let blob = |n: u8| Some((Oid::from_bytes(&[n; 20]).unwrap(), 0o100644));
        // `b` replaced whole then edited below; `a` removed then added again; `c` once.
        let edits: Vec<TreeEdit<'_>> = vec![
            (vec!["b"], blob(1)),
            (vec!["a", "x"], None),
            (vec!["b", "y"], blob(2)),
            (vec!["c"], None),
            (vec!["a", "x"], blob(3)),
            (vec!["b"], None),
        ];
        let groups: Vec<(&str, Vec<TreeEdit<'_>>)> = by_first_name(&edits)
            .into_iter()
            .map(|(name, mine)| (name, mine.into_iter().cloned().collect()))
            .collect();
        assert_eq!(
            groups,
            vec![
                (
                    "b",
                    vec![
                        (vec!["b"], blob(1)),
                        (vec!["b", "y"], blob(2)),
                        (vec!["b"], None)
                    ]
                ),
                ("a", vec![(vec!["a", "x"], None), (vec!["a", "x"], blob(3))]),
                ("c", vec![(vec!["c"], None)]),
            ]
        );
        assert!(by_first_name(&[]).is_empty());
    }

    /// main's (`779c300`) grouping, as `replace_all` did it inline: the names in the order
    /// first edited, then each name's edits filtered out of all of them in order.
    fn by_first_name_before<'e, 'a>(
        edits: &'e [TreeEdit<'a>],
    ) -> Vec<(&'a str, Vec<&'e TreeEdit<'a>>)> {
        let mut names: Vec<&str> = Vec::new();
        for (path, _) in edits {
            if !names.contains(&path[0]) {
                names.push(path[0]);
            }
        }
        names
            .into_iter()
            .map(|name| (name, edits.iter().filter(|(p, _)| p[0] == name).collect()))
            .collect()
    }

    const NAMES: [&str; 4] = ["a", "b", "ab", "a.b"];

    /// Edit lists over few names (so that they collide), paths of depth 1 to 3, each a
    /// blob, a tree-less removal, or (at depth 1) a blob where others expect a tree.
    fn edit_lists() -> impl proptest::strategy::Strategy<Value = Vec<(Vec<usize>, Option<u8>)>> {
        use proptest::prelude::*;
        proptest::collection::vec(
            (
                proptest::collection::vec(0..NAMES.len(), 1..4),
                proptest::option::of(any::<u8>()),
            ),
            0..24,
        )
    }

    fn edits_of(list: &[(Vec<usize>, Option<u8>)]) -> Vec<TreeEdit<'static>> {
        list.iter()
            .map(|(path, blob)| {
                (
                    path.iter().map(|&i| NAMES[i]).collect(),
                    blob.map(|n| (Oid::from_bytes(&[n; 20]).unwrap(), 0o100644)),
                )
            })
            .collect()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]
        #[test]
        fn grouping_is_mains(list in edit_lists()) {
            let edits = edits_of(&list);
            proptest::prop_assert_eq!(by_first_name(&edits), by_first_name_before(&edits));
        }
    }

    /// A file planted in the output tree under a name an NTFS checkout reads as `.git` (`.git:x`,
    /// an alternate data stream of `.git`; `git~1\x`, its short name and a separator) is refused
    /// with its name, as libgit2's tree builder refused it (and so are the names HFS+, or git
    /// after a `\`, reads as `.git`), and nothing is stored: such a tree
    /// fails `git fsck --strict` (`hasDotgit`) and every server that checks what it receives.
    #[test]
    fn a_planted_file_named_as_ntfs_reads_dot_git_is_refused() {
        for name in [
            ".git:x",
            ".GIT\\config",
            "git~1:x",
            "GIT~1\\HEAD",
            // What libgit2 accepted but `git fsck --strict` refuses too.
            "x\\.git",
            ".g\u{200c}it",
        ] {
            let (dir, out) = empty_repo();
            let git_dir = out.repo.git_dir().to_path_buf();
            let planted = dir.path().join("planted");
            std::fs::create_dir_all(planted.join("t1")).unwrap();
            std::fs::write(planted.join("t1/ok.yaml"), b"a: 1\n").unwrap();
            std::fs::write(planted.join("t1").join(name), b"x\n").unwrap();
            let err = in_bulk(
                &git_dir,
                |what, e| out.repo.err(what)(e),
                |bulk| out.write_dir_tree(bulk, &planted),
            )
            .unwrap_err();
            let mut text = err.to_string();
            let mut source = std::error::Error::source(&err);
            while let Some(e) = source {
                text += &format!(": {e}");
                source = e.source();
            }
            assert!(
                text.contains("invalid name for a tree entry") && text.contains(name),
                "{name}: {text}"
            );
            assert_eq!(
                crate::io::repo::bulk::tests::packs(&git_dir),
                0,
                "{name}: nothing stored"
            );
        }
    }

    /// A tenant's directory in HEAD whose mode carries bits besides a tree's (`41000`, as some
    /// tool wrote it) is read as a tree, as libgit2 reads its kind (`git_tree_entry_type`:
    /// `S_ISDIR`) and as provisio edited it through libgit2's tree builder: a run that wrote one
    /// of its files keeps the others.
    #[test]
    fn a_tenant_directory_with_extra_mode_bits_keeps_its_other_files_when_edited() {
        let (dir, out) = empty_repo();
        let git_dir = out.repo.git_dir().to_path_buf();
        let repo = git2::Repository::open(&git_dir).unwrap();
        let mut t1 = repo.treebuilder(None).unwrap();
        t1.insert("a.yaml", repo.blob(b"a: 1\n").unwrap(), 0o100644)
            .unwrap();
        t1.insert("b.yaml", repo.blob(b"b: 1\n").unwrap(), 0o100644)
            .unwrap();
        let t1 = t1.write().unwrap();
        let mut raw = b"41000 t1\0".to_vec();
        raw.extend_from_slice(t1.as_bytes());
        let tenants = repo.odb().unwrap().write(ObjectType::Tree, &raw).unwrap();
        let mut root = repo.treebuilder(None).unwrap();
        root.insert(TENANTS_DIR, tenants, 0o040000).unwrap();
        let root = repo.find_tree(root.write().unwrap()).unwrap();
        let outdir = dir.path().join("out");
        std::fs::create_dir_all(outdir.join(TENANTS_DIR).join("t1")).unwrap();
        std::fs::write(outdir.join(TENANTS_DIR).join("t1/a.yaml"), b"a: 2\n").unwrap();
        let ids = BTreeSet::from(["t1".to_owned()]);
        let edits = BTreeMap::from([("t1".to_owned(), vec![("a.yaml".to_owned(), true)])]);
        let new = in_bulk(
            &git_dir,
            |what, e| out.repo.err(what)(e),
            |bulk| {
                out.edit_tenants(
                    bulk,
                    Some(&root),
                    &ids,
                    &edits,
                    &outdir,
                    &mut PathLog::default(),
                )
            },
        )
        .unwrap()
        .unwrap();
        let repo = git2::Repository::open(&git_dir).unwrap();
        let t1 = repo.find_tree(new).unwrap().get_name("t1").unwrap().id();
        let names: Vec<String> = repo
            .find_tree(t1)
            .unwrap()
            .iter()
            .map(|e| e.name().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["a.yaml", "b.yaml"]);
    }

    /// An empty repository to edit trees in.
    fn empty_repo() -> (tempfile::TempDir, OutputRepo) {
        let dir = tempfile::tempdir().unwrap();
        git2::Repository::init(dir.path()).unwrap();
        let repo = OutputRepo::open(dir.path(), &RepoConfig::default()).unwrap();
        (dir, repo)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(120))]
        /// A list of edits applied at once ends where applying them one at a time, in order,
        /// ends: duplicated names, removals then additions, a name replaced whole then edited
        /// below, a file where a directory was and the reverse.
        #[test]
        fn edits_at_once_end_where_edits_one_by_one_end(
            base in edit_lists(),
            list in edit_lists(),
        ) {
            let (_dir, out) = empty_repo();
            let git_dir = out.repo.git_dir().to_path_buf();
            let (at_once, one_by_one) = in_bulk(
                &git_dir,
                |what, e| out.repo.err(what)(e),
                |bulk| {
                    // Real blobs for the oids the edits name, so that the trees are sound.
                    let mut blobs = BTreeMap::new();
                    for n in 0..=255u8 {
                        let oid = bulk.blob(&[n]).map_err(out.repo.err("blob"))?;
                        blobs.insert(Oid::from_bytes(&[n; 20]).unwrap(), oid);
                    }
                    let real = |edits: Vec<TreeEdit<'static>>| -> Vec<TreeEdit<'static>> {
                        edits
                            .into_iter()
                            .map(|(p, e)| (p, e.map(|(o, m)| (blobs[&o], m))))
                            .collect()
                    };
                    let mut start = None;
                    for edit in real(edits_of(&base)) {
                        start = out.replace_all(bulk, start, &[edit], None)?;
                    }
                    let edits = real(edits_of(&list));
                    let at_once = out.replace_all(bulk, start, &edits, None)?;
                    let mut one_by_one = start;
                    for edit in edits {
                        one_by_one = out.replace_all(bulk, one_by_one, &[edit], None)?;
                    }
                    Ok((
                        at_once,
                        one_by_one,
                    ))
                },
            )
            .unwrap();
            proptest::prop_assert_eq!(at_once, one_by_one);
        }
    }
}
