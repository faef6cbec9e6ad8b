//! Delivery of the output tree to the manifests repository with git2 (no `git` binary):
//! the output directory is a work tree of that repository; each regeneration that changed
//! something becomes one commit that says what changed and why, pushed without ever forcing.
//!
//! - Only `tenants-out/`, `argocd/` and `.provisio-state.json` are staged (`git add -A`
//!   semantics on those paths; crash leftovers of the writer, `.provisio-*`, are skipped).
//! - A push the remote rejects because it moved is "rebased" by regenerating: fetch, reset
//!   onto the remote head, run `generate` again (the output is a pure function of the
//!   registry), commit, push again, with bounded exponential backoff.
//! - A transport failure is retried with backoff; the local commit is kept either way and
//!   pushed by the next attempt.
//! - Only local paths and `file://` URLs work with the default build (git2 without its
//!   `https`/`ssh` features, so no OpenSSL); see `docs/watch.md`.

use crate::io::nudge;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use git2::{
    BranchType, ErrorClass, ErrorCode, IndexAddOption, ObjectType, Oid, Repository, ResetType,
    Signature, Tree,
};
use tracing::{debug, info, warn};

use crate::io::output::{STATE_FILE, Summary};
use crate::ops::generate::PipelineError;
use provisio_core::render::{ARGOCD_DIR, TENANTS_DIR};

/// At most this many tenant ids are listed per line of a commit message.
const MAX_LISTED: usize = 25;

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// A git operation on the output repository failed.
    #[error("cannot {action} in the output repository {repo}")]
    Git {
        action: String,
        repo: PathBuf,
        #[source]
        source: git2::Error,
    },
    #[error(
        "{0} is not inside a git repository; clone the manifests repository there or give its URL (--manifests-url)"
    )]
    NotARepository(PathBuf),
    #[error("cannot create the output directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the output directory {out} is outside the work tree of {repo} (a bare repository?)")]
    OutsideWorkTree { out: PathBuf, repo: PathBuf },
    #[error("the output repository {repo} has {actual} checked out, expected branch {expected}")]
    WrongBranch {
        repo: PathBuf,
        actual: String,
        expected: String,
    },
    #[error("the output repository {0} has a detached HEAD; check out a branch")]
    DetachedHead(PathBuf),
    #[error(
        "another provisio process holds {0}; only one may deliver to an output repository at a time"
    )]
    Locked(PathBuf),
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the output repository {repo} has no remote `{remote}`; give --manifests-url")]
    NoRemote { repo: PathBuf, remote: String },
    /// Pushing failed `attempts` times; the local commit is kept.
    #[error(
        "pushing {branch} to {remote} failed after {attempts} attempt(s); the local commit is kept and pushed by the next attempt"
    )]
    PushGaveUp {
        branch: String,
        remote: String,
        attempts: u32,
        #[source]
        last: git2::Error,
    },
    /// The remote refused the push for a reason other than having moved (e.g. a hook).
    #[error("the remote refused {refname}: {message}")]
    PushRefused { refname: String, message: String },
    /// Regenerating on top of the remote head (after a rejected push) failed.
    #[error("regenerating on top of the remote head failed")]
    Regenerate(#[source] Box<PipelineError>),
    /// Stopped (SIGTERM) while waiting to retry a push; the local commit is kept.
    #[error(
        "stopped before the push succeeded; the local commit is kept and pushed on the next run"
    )]
    Interrupted,
}

type Result<T, E = DeliveryError> = std::result::Result<T, E>;

/// Who commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub email: String,
}

impl Default for Identity {
    fn default() -> Self {
        Identity {
            name: "provisio".into(),
            email: "provisio@localhost".into(),
        }
    }
}

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
    pub author: Identity,
    /// This process is the only writer of the repository (watch mode): git lock files found
    /// while holding provisio's own lock were left by a killed run and are removed.
    pub exclusive: bool,
}

impl Default for RepoConfig {
    fn default() -> Self {
        RepoConfig {
            remote: "origin".into(),
            url: None,
            branch: None,
            author: Identity::default(),
            exclusive: false,
        }
    }
}

/// Bounded exponential backoff for pushes.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Push attempts in all (the first one included).
    pub attempts: u32,
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            attempts: 6,
            initial: Duration::from_millis(200),
            max: Duration::from_secs(10),
        }
    }
}

/// Why a regeneration happened, for the commit message.
#[derive(Debug, Clone, Default)]
pub struct Why {
    /// What triggered it, e.g. "tenants/acme-1a2b3c.yaml changed".
    pub trigger: String,
    /// The registry's commit, when the registry is a git repository.
    pub registry_commit: Option<String>,
}

/// What a commit changed, read from the trees (so it is true even for a commit that picks up
/// files left by an interrupted run).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: BTreeSet<String>,
    pub updated: BTreeSet<String>,
    pub removed: BTreeSet<String>,
    pub argocd: bool,
}

/// One commit made.
#[derive(Debug, Clone)]
pub struct CommitInfo {
    pub id: Oid,
    pub parent: Option<Oid>,
    pub changes: Changes,
    pub message: String,
}

/// What [`OutputRepo::deliver`] did.
#[derive(Debug, Default)]
pub struct Delivered {
    /// Commits made (more than one when a rejected push was regenerated on top).
    pub commits: Vec<CommitInfo>,
    /// The remote head before and after, when a push succeeded.
    pub pushed: Option<(Option<Oid>, Oid)>,
    /// Push attempts after the first.
    pub push_retries: u32,
}

/// Why one push attempt failed.
enum PushFailure {
    /// The remote moved (non-fast-forward): fetch and regenerate on top.
    Moved(String),
    /// The remote refused for another reason: retrying will not help.
    Refused { refname: String, message: String },
    /// Transport or remote failure: retry later.
    Transient(git2::Error),
    /// Credentials or certificates: retrying will not help.
    Fatal(git2::Error),
}

/// The output directory as a work tree of the manifests repository.
pub struct OutputRepo {
    repo: Repository,
    /// The repository's `.git` directory (for messages).
    git_dir: PathBuf,
    /// The output root relative to the work tree, `""` or ending in `/`.
    prefix: String,
    branch: String,
    remote: String,
    author: Identity,
    /// provisio's lock on the repository, held while this value lives.
    _lock: std::fs::File,
}

/// Takes provisio's exclusive lock on the repository (`<git dir>/provisio.lock`, `flock`,
/// released by the kernel when the process dies, however it dies).
fn lock(git_dir: &Path) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let path = git_dir.join("provisio.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| DeliveryError::Io {
            action: "open",
            path: path.clone(),
            source,
        })?;
    // SAFETY: flock on a descriptor we own.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        return Err(DeliveryError::Locked(path));
    }
    Ok(file)
}

/// Removes the git lock files a killed run may have left (`index.lock`, `HEAD.lock`,
/// `refs/**.lock`…). Only called while holding provisio's lock in exclusive mode.
fn remove_stale_git_locks(git_dir: &Path) -> Result<()> {
    let mut found = Vec::new();
    for top in ["index.lock", "HEAD.lock", "config.lock", "packed-refs.lock"] {
        let p = git_dir.join(top);
        if p.exists() {
            found.push(p);
        }
    }
    let mut stack = vec![git_dir.join("refs")];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "lock") {
                found.push(p);
            }
        }
    }
    for p in found {
        warn!(path = %p.display(), "removing a git lock file left by an interrupted run");
        std::fs::remove_file(&p).map_err(|source| DeliveryError::Io {
            action: "remove",
            path: p.clone(),
            source,
        })?;
    }
    Ok(())
}

impl OutputRepo {
    /// Opens the repository holding `out` (the output root may be a sub-directory of its work
    /// tree). When `out` is in no repository and `cfg.url` is given, creates it as a clone
    /// of that URL (an empty remote is fine: the first commit creates the branch).
    pub fn open(out: &Path, cfg: &RepoConfig) -> Result<OutputRepo> {
        std::fs::create_dir_all(out).map_err(|source| DeliveryError::CreateDir {
            path: out.to_path_buf(),
            source,
        })?;
        let mut created = false;
        let repo = match Repository::discover(out) {
            Ok(r) => r,
            Err(e) if e.code() == ErrorCode::NotFound => match &cfg.url {
                Some(_) => {
                    created = true;
                    Repository::init(out).map_err(git("create a repository", out))?
                }
                None => return Err(DeliveryError::NotARepository(out.to_path_buf())),
            },
            Err(e) => return Err(git("open the repository", out)(e)),
        };
        let git_dir = repo.path().to_path_buf();
        let file_lock = lock(&git_dir)?;
        if cfg.exclusive {
            remove_stale_git_locks(&git_dir)?;
        }
        let workdir = repo
            .workdir()
            .ok_or_else(|| DeliveryError::OutsideWorkTree {
                out: out.to_path_buf(),
                repo: git_dir.clone(),
            })?
            .to_path_buf();
        let prefix =
            relative_prefix(&workdir, out).ok_or_else(|| DeliveryError::OutsideWorkTree {
                out: out.to_path_buf(),
                repo: git_dir.clone(),
            })?;
        let head = repo
            .find_reference("HEAD")
            .map_err(git("read HEAD", &git_dir))?;
        let current = match head.symbolic_target().ok().flatten() {
            Some(t) => t.strip_prefix("refs/heads/").unwrap_or(t).to_owned(),
            None => return Err(DeliveryError::DetachedHead(git_dir)),
        };
        drop(head);
        let unborn = repo.head().is_err();
        let wanted = match &cfg.branch {
            None if created => Some("main".to_owned()),
            b => b.clone(),
        };
        let branch = match &wanted {
            Some(b) if *b != current => {
                if unborn {
                    repo.set_head(&format!("refs/heads/{b}"))
                        .map_err(git("point HEAD at the branch", &git_dir))?;
                    b.clone()
                } else {
                    return Err(DeliveryError::WrongBranch {
                        repo: git_dir,
                        actual: current,
                        expected: b.clone(),
                    });
                }
            }
            _ => current,
        };
        if let Some(url) = &cfg.url {
            match repo.find_remote(&cfg.remote) {
                Ok(r) => {
                    if r.url().ok() != Some(url.as_str()) {
                        warn!(remote = %cfg.remote, configured = ?r.url().ok(), given = %url,
                            "the output repository's remote differs from --manifests-url; using the repository's");
                    }
                }
                Err(e) if e.code() == ErrorCode::NotFound => {
                    repo.remote(&cfg.remote, url)
                        .map_err(git("add the remote", &git_dir))?;
                }
                Err(e) => return Err(git("read the remote", &git_dir)(e)),
            }
        }
        let this = OutputRepo {
            repo,
            git_dir,
            prefix,
            branch,
            remote: cfg.remote.clone(),
            author: cfg.author.clone(),
            _lock: file_lock,
        };
        if unborn && this.repo.find_remote(&this.remote).is_ok() {
            // A fresh clone: start from the remote branch when it exists.
            this.fetch()?;
            if let Some(remote_head) = this.remote_head()? {
                info!(branch = %this.branch, commit = %remote_head, "checking out the remote branch");
                this.reset_to(remote_head)?;
            }
        }
        Ok(this)
    }

    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// The current commit of the branch (`None` before the first commit).
    pub fn head(&self) -> Option<Oid> {
        self.repo.head().ok().and_then(|h| h.target())
    }

    /// The remote-tracking commit of the branch, as of the last fetch or push.
    pub fn remote_head(&self) -> Result<Option<Oid>> {
        let name = format!("{}/{}", self.remote, self.branch);
        match self.repo.find_branch(&name, BranchType::Remote) {
            Ok(b) => Ok(b.get().target()),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(self.git("read the remote-tracking branch")(e)),
        }
    }

    /// Whether the branch has commits the remote-tracking branch lacks.
    pub fn ahead(&self) -> Result<bool> {
        Ok(match (self.head(), self.remote_head()?) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(h), Some(r)) => h != r,
        })
    }

    fn git(&self, action: &str) -> impl FnOnce(git2::Error) -> DeliveryError + use<> {
        git(action, &self.git_dir)
    }

    fn paths(&self) -> [String; 3] {
        [
            format!("{}{TENANTS_DIR}", self.prefix),
            format!("{}{ARGOCD_DIR}", self.prefix),
            format!("{}{STATE_FILE}", self.prefix),
        ]
    }

    /// Stages the output paths as `git add -A` would: new, changed and deleted files, skipping
    /// the writer's temporary files and staging directories left by a crash.
    pub fn stage_all(&self) -> Result<()> {
        let mut index = self.repo.index().map_err(self.git("read the index"))?;
        index.read(false).map_err(self.git("read the index"))?;
        let mut skip_temp = |path: &Path, _: &[u8]| -> i32 {
            let temp = path.components().any(|c| {
                let c = c.as_os_str().to_string_lossy();
                c.starts_with(".provisio-") && c != STATE_FILE
            });
            i32::from(temp)
        };
        let paths = self.paths();
        index
            .add_all(paths.iter(), IndexAddOption::DEFAULT, Some(&mut skip_temp))
            .map_err(self.git("stage the output"))?;
        index
            .update_all(paths.iter(), None)
            .map_err(self.git("stage removed files"))?;
        index.write().map_err(self.git("write the index"))?;
        Ok(())
    }

    /// Stages exactly what one `generate` run wrote and removed (fast: no scan of the tree).
    pub fn stage(&self, summary: &Summary) -> Result<()> {
        let mut index = self.repo.index().map_err(self.git("read the index"))?;
        index.read(false).map_err(self.git("read the index"))?;
        for p in &summary.written {
            index
                .add_path(Path::new(&format!("{}{p}", self.prefix)))
                .map_err(self.git(&format!("stage {p}")))?;
        }
        for p in &summary.removed {
            match index.remove_path(Path::new(&format!("{}{p}", self.prefix))) {
                Ok(()) => {}
                Err(e) if e.code() == ErrorCode::NotFound => {}
                Err(e) => return Err(self.git(&format!("unstage {p}"))(e)),
            }
        }
        let state = format!("{}{STATE_FILE}", self.prefix);
        if self.repo.workdir().is_some_and(|w| w.join(&state).exists()) {
            index
                .add_path(Path::new(&state))
                .map_err(self.git("stage the state file"))?;
        }
        index.write().map_err(self.git("write the index"))?;
        Ok(())
    }

    /// Commits the index when its tree differs from HEAD's; `None` when there is nothing to
    /// commit.
    pub fn commit(&self, why: &Why) -> Result<Option<CommitInfo>> {
        let mut index = self.repo.index().map_err(self.git("read the index"))?;
        let tree_id = index.write_tree().map_err(self.git("write the tree"))?;
        if self.repo.head().is_err() && index.is_empty() {
            return Ok(None);
        }
        self.commit_tree(tree_id, why)
    }

    /// Commits what one `generate` run wrote and removed by editing HEAD's tree: only the
    /// tenant directories the run touched, `argocd/` when touched, and the state file are
    /// read from disk, so a one-tenant change costs the same at 10,000 tenants as at 10 (the
    /// index, 270,000 entries at 10,000 tenants, is neither read nor rewritten; it is brought
    /// back in step by [`OutputRepo::sync_index`] and by [`OutputRepo::stage_all`]). Before the
    /// first commit it stages through the index instead.
    pub fn commit_summary(&self, summary: &Summary, why: &Why) -> Result<Option<CommitInfo>> {
        let root = match self.repo.head() {
            Ok(h) => h
                .peel_to_commit()
                .and_then(|c| c.tree())
                .map_err(self.git("read HEAD's tree"))?,
            Err(_) => {
                self.stage(summary)?;
                return self.commit(why);
            }
        };
        let out = self
            .repo
            .workdir()
            .expect("checked at open")
            .join(&self.prefix);
        let mut tenants = BTreeSet::new();
        let mut argocd = false;
        for p in summary.written.iter().chain(&summary.removed) {
            if let Some(rest) = p.strip_prefix(&format!("{TENANTS_DIR}/")) {
                tenants.insert(rest.split('/').next().unwrap_or(rest).to_owned());
            } else if p.starts_with(&format!("{ARGOCD_DIR}/")) {
                argocd = true;
            }
        }
        let tdir = format!("{}{TENANTS_DIR}", self.prefix);
        let old_tdir = root
            .get_path(Path::new(&tdir))
            .ok()
            .filter(|e| e.kind() == Some(ObjectType::Tree))
            .map(|e| e.id());
        let old_tdir = match old_tdir {
            Some(id) => Some(self.repo.find_tree(id).map_err(self.git("read a tree"))?),
            None => None,
        };
        let mut tb = self
            .repo
            .treebuilder(old_tdir.as_ref())
            .map_err(self.git("edit a tree"))?;
        for id in &tenants {
            let dir = out.join(TENANTS_DIR).join(id);
            let new = if dir.is_dir() {
                self.write_dir_tree(&dir)?
            } else {
                None
            };
            match new {
                Some(oid) => {
                    tb.insert(id, oid, 0o040000)
                        .map_err(self.git("edit a tree"))?;
                }
                None => {
                    if tb.get(id).ok().flatten().is_some() {
                        tb.remove(id).map_err(self.git("edit a tree"))?;
                    }
                }
            }
        }
        let new_tdir = if tb.is_empty() {
            None
        } else {
            Some(tb.write().map_err(self.git("write a tree"))?)
        };
        let mut edits = vec![(tdir, new_tdir.map(|o| (o, 0o040000)))];
        if argocd {
            let tree = self.write_dir_tree(&out.join(ARGOCD_DIR))?;
            edits.push((
                format!("{}{ARGOCD_DIR}", self.prefix),
                tree.map(|o| (o, 0o040000)),
            ));
        }
        let state = out.join(STATE_FILE);
        if state.exists() {
            let blob = self
                .repo
                .blob_path(&state)
                .map_err(self.git("store the state file"))?;
            edits.push((
                format!("{}{STATE_FILE}", self.prefix),
                Some((blob, 0o100644)),
            ));
        }
        let mut tree = Some(root.id());
        for (path, entry) in edits {
            let comps: Vec<&str> = path.split('/').collect();
            tree = self.replace_at(tree, &comps, entry)?;
        }
        let tree = match tree {
            Some(t) => t,
            None => self
                .repo
                .treebuilder(None)
                .and_then(|b| b.write())
                .map_err(self.git("write a tree"))?,
        };
        self.commit_tree(tree, why)
    }

    /// `tree` with the entry at `path` replaced (`None`: removed); `None` when it ends up empty.
    fn replace_at(
        &self,
        tree: Option<Oid>,
        path: &[&str],
        entry: Option<(Oid, i32)>,
    ) -> Result<Option<Oid>> {
        let tree = match tree {
            Some(t) => Some(self.repo.find_tree(t).map_err(self.git("read a tree"))?),
            None => None,
        };
        let mut tb = self
            .repo
            .treebuilder(tree.as_ref())
            .map_err(self.git("edit a tree"))?;
        let (name, rest) = (path[0], &path[1..]);
        let new = if rest.is_empty() {
            entry
        } else {
            let child = tree
                .as_ref()
                .and_then(|t| t.get_name(name))
                .filter(|e| e.kind() == Some(ObjectType::Tree))
                .map(|e| e.id());
            self.replace_at(child, rest, entry)?.map(|o| (o, 0o040000))
        };
        match new {
            Some((oid, mode)) => {
                tb.insert(name, oid, mode)
                    .map_err(self.git("edit a tree"))?;
            }
            None => {
                if tb.get(name).ok().flatten().is_some() {
                    tb.remove(name).map_err(self.git("edit a tree"))?;
                }
            }
        }
        if tb.is_empty() {
            Ok(None)
        } else {
            Ok(Some(tb.write().map_err(self.git("write a tree"))?))
        }
    }

    /// Stores the files below `dir` as blobs and trees (skipping the writer's `.provisio-*`
    /// temporaries); `None` when there are none.
    fn write_dir_tree(&self, dir: &Path) -> Result<Option<Oid>> {
        let entries = std::fs::read_dir(dir).map_err(|source| DeliveryError::Io {
            action: "list",
            path: dir.to_path_buf(),
            source,
        })?;
        let mut tb = self
            .repo
            .treebuilder(None)
            .map_err(self.git("build a tree"))?;
        for e in entries {
            let e = e.map_err(|source| DeliveryError::Io {
                action: "list",
                path: dir.to_path_buf(),
                source,
            })?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".provisio-") && name != STATE_FILE {
                continue;
            }
            let path = e.path();
            let is_dir = e
                .file_type()
                .map_err(|source| DeliveryError::Io {
                    action: "stat",
                    path: path.clone(),
                    source,
                })?
                .is_dir();
            if is_dir {
                if let Some(oid) = self.write_dir_tree(&path)? {
                    tb.insert(&name, oid, 0o040000)
                        .map_err(self.git("build a tree"))?;
                }
            } else {
                let oid = self
                    .repo
                    .blob_path(&path)
                    .map_err(self.git(&format!("store {}", path.display())))?;
                tb.insert(&name, oid, 0o100644)
                    .map_err(self.git("build a tree"))?;
            }
        }
        if tb.is_empty() {
            Ok(None)
        } else {
            Ok(Some(tb.write().map_err(self.git("build a tree"))?))
        }
    }

    /// Makes the index match HEAD (after commits made by [`OutputRepo::commit_summary`]), so
    /// that `git status` in the output clone is clean. Costs a walk of the whole tree.
    pub fn sync_index(&self) -> Result<()> {
        let Ok(head) = self.repo.head() else {
            return Ok(());
        };
        let tree = head.peel_to_tree().map_err(self.git("read HEAD's tree"))?;
        let mut index = self.repo.index().map_err(self.git("read the index"))?;
        index
            .read_tree(&tree)
            .map_err(self.git("read HEAD into the index"))?;
        index.write().map_err(self.git("write the index"))
    }

    /// Commits `tree_id` on HEAD when it differs from HEAD's tree.
    fn commit_tree(&self, tree_id: Oid, why: &Why) -> Result<Option<CommitInfo>> {
        let parent = match self.repo.head() {
            Ok(h) => Some(h.peel_to_commit().map_err(self.git("read HEAD"))?),
            Err(_) => None,
        };
        if parent.as_ref().is_some_and(|p| p.tree_id() == tree_id) {
            return Ok(None);
        }
        let tree = self
            .repo
            .find_tree(tree_id)
            .map_err(self.git("read the tree"))?;
        let old_tree = match &parent {
            Some(p) => Some(p.tree().map_err(self.git("read HEAD's tree"))?),
            None => None,
        };
        let changes = self.changes(old_tree.as_ref(), &tree)?;
        let message = commit_message(&changes, why);
        let sig = Signature::now(&self.author.name, &self.author.email)
            .map_err(self.git("build the author signature"))?;
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        let id = self
            .repo
            .commit(Some("HEAD"), &sig, &sig, &message, &tree, &parents)
            .map_err(self.git("commit"))?;
        info!(commit = %id, added = changes.added.len(), updated = changes.updated.len(),
            removed = changes.removed.len(), "committed the output");
        Ok(Some(CommitInfo {
            id,
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
                        .find_tree(e.id())
                        .map_err(self.git("read a tree"))?,
                )),
                Ok(_) => Ok(None),
                Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
                Err(e) => Err(self.git("read a tree")(e)),
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
        Ok(changes)
    }

    /// Fetches the branch into its remote-tracking ref.
    pub fn fetch(&self) -> Result<()> {
        let mut remote = self.find_remote()?;
        let spec = format!(
            "+refs/heads/{b}:refs/remotes/{r}/{b}",
            b = self.branch,
            r = self.remote
        );
        remote
            .fetch(&[spec], None, None)
            .map_err(self.git(&format!("fetch {} from {}", self.branch, self.remote)))
    }

    fn find_remote(&self) -> Result<git2::Remote<'_>> {
        self.repo.find_remote(&self.remote).map_err(|e| {
            if e.code() == ErrorCode::NotFound {
                DeliveryError::NoRemote {
                    repo: self.git_dir.clone(),
                    remote: self.remote.clone(),
                }
            } else {
                self.git("read the remote")(e)
            }
        })
    }

    /// Points the branch at `commit` and makes the index and work tree match it (files the
    /// old commit had and this one lacks are removed).
    fn reset_to(&self, commit: Oid) -> Result<()> {
        let obj = self
            .repo
            .find_object(commit, Some(ObjectType::Commit))
            .map_err(self.git("read the remote head"))?;
        let refname = format!("refs/heads/{}", self.branch);
        if self.repo.head().is_err() {
            self.repo
                .reference(&refname, commit, true, "provisio: start from the remote")
                .map_err(self.git("create the branch"))?;
            self.repo
                .set_head(&refname)
                .map_err(self.git("point HEAD at the branch"))?;
        }
        let mut co = git2::build::CheckoutBuilder::new();
        co.force();
        self.repo
            .reset(&obj, ResetType::Hard, Some(&mut co))
            .map_err(self.git("reset onto the remote head"))
    }

    /// One push attempt, never forced.
    fn push_once(&self) -> std::result::Result<(), PushFailure> {
        let mut remote = self.find_remote().map_err(|e| match e {
            DeliveryError::Git { source, .. } => PushFailure::Fatal(source),
            other => PushFailure::Fatal(git2::Error::from_str(&other.to_string())),
        })?;
        let refused: RefCell<Option<(String, String)>> = RefCell::new(None);
        let mut cbs = git2::RemoteCallbacks::new();
        cbs.push_update_reference(|refname, status| {
            if let Some(msg) = status {
                *refused.borrow_mut() = Some((refname.to_owned(), msg.to_owned()));
            }
            Ok(())
        });
        let mut opts = git2::PushOptions::new();
        opts.remote_callbacks(cbs);
        let spec = format!("refs/heads/{b}:refs/heads/{b}", b = self.branch);
        let result = remote.push(&[spec], Some(&mut opts));
        drop(opts);
        match result {
            Ok(()) => match refused.into_inner() {
                None => Ok(()),
                Some((refname, message)) if is_non_fast_forward(&message) => {
                    Err(PushFailure::Moved(format!("{refname}: {message}")))
                }
                Some((refname, message)) => Err(PushFailure::Refused { refname, message }),
            },
            Err(e) if e.code() == ErrorCode::NotFastForward => {
                Err(PushFailure::Moved(e.message().to_owned()))
            }
            Err(e)
                if e.code() == ErrorCode::Auth
                    || e.code() == ErrorCode::Certificate
                    || e.class() == ErrorClass::Ssl =>
            {
                Err(PushFailure::Fatal(e))
            }
            Err(e) => Err(PushFailure::Transient(e)),
        }
    }

    /// Stages (`summary`: what one `generate` run did; `None`: scan the output paths), commits
    /// when anything changed and, with `push`, pushes whatever the remote lacks. A push
    /// rejected because the remote moved is fetched, reset onto and regenerated on top by
    /// `regenerate`; transport failures are retried with `backoff`; `stop` abandons the
    /// waiting between attempts (the commit stays local).
    pub fn deliver(
        &self,
        summary: Option<&Summary>,
        why: &Why,
        push: Option<&Backoff>,
        regenerate: &mut dyn FnMut() -> std::result::Result<Summary, PipelineError>,
        stop: &dyn Fn() -> bool,
    ) -> Result<Delivered> {
        let t = Instant::now();
        let mut out = Delivered::default();
        out.commits.extend(match summary {
            Some(s) => self.commit_summary(s, why)?,
            None => {
                self.stage_all()?;
                self.commit(why)?
            }
        });
        debug!(elapsed = ?t.elapsed(), "staged and committed");
        let Some(backoff) = push else {
            return Ok(out);
        };
        if self.head().is_none() || (out.commits.is_empty() && !self.ahead()?) {
            return Ok(out); // nothing the remote lacks
        }
        let before = self.remote_head()?;
        let mut delay = backoff.initial;
        let mut last = None;
        for attempt in 1..=backoff.attempts.max(1) {
            if attempt > 1 {
                out.push_retries += 1;
            }
            let started = Instant::now();
            match self.push_once() {
                Ok(()) => {
                    let head = self.head().expect("a branch with commits");
                    debug!(elapsed = ?started.elapsed(), commit = %head, "pushed");
                    out.pushed = Some((before, head));
                    return Ok(out);
                }
                Err(PushFailure::Moved(msg)) => {
                    warn!(attempt, reason = %msg,
                        "the remote moved; regenerating on top of its head");
                    if attempt > 1 {
                        sleep_unless_stopped(delay, stop)?;
                    }
                    if let Err(e) = self.fetch() {
                        warn!(error = %chain(&e), "fetch failed; retrying");
                        last = Some(git2::Error::from_str(&chain(&e)));
                    } else {
                        let remote = self.remote_head()?;
                        if let Some(r) = remote {
                            self.reset_to(r)?;
                        }
                        let s = regenerate().map_err(|e| DeliveryError::Regenerate(Box::new(e)))?;
                        let mut again = why.clone();
                        again.trigger = format!(
                            "{} (regenerated on top of {} after the push was rejected)",
                            why.trigger,
                            remote.map_or_else(|| "nothing".to_owned(), |r| r.to_string())
                        );
                        match self.commit_summary(&s, &again)? {
                            Some(c) => out.commits.push(c),
                            None => {
                                info!("the remote already holds this output");
                                out.pushed = None;
                                return Ok(out);
                            }
                        }
                    }
                }
                Err(PushFailure::Refused { refname, message }) => {
                    return Err(DeliveryError::PushRefused { refname, message });
                }
                Err(PushFailure::Transient(e)) => {
                    warn!(attempt, error = %e, retry_in = ?delay, "push failed; retrying");
                    last = Some(e);
                    if attempt < backoff.attempts {
                        sleep_unless_stopped(delay, stop)?;
                    }
                }
                Err(PushFailure::Fatal(e)) => {
                    return Err(DeliveryError::PushGaveUp {
                        branch: self.branch.clone(),
                        remote: self.remote.clone(),
                        attempts: attempt,
                        last: e,
                    });
                }
            }
            delay = (delay * 2).min(backoff.max);
            if stop() {
                return Err(DeliveryError::Interrupted);
            }
        }
        Err(DeliveryError::PushGaveUp {
            branch: self.branch.clone(),
            remote: self.remote.clone(),
            attempts: backoff.attempts.max(1),
            last: last.unwrap_or_else(|| git2::Error::from_str("the remote kept moving")),
        })
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
            .find_commit(commit.id)
            .and_then(|c| c.tree())
            .map_err(self.git("read the commit"))?;
        let old = match commit.parent {
            Some(p) => Some(
                self.repo
                    .find_commit(p)
                    .and_then(|c| c.tree())
                    .map_err(self.git("read the parent commit"))?,
            ),
            None => None,
        };
        let diff = self
            .repo
            .diff_tree_to_tree(old.as_ref(), Some(&new), None)
            .map_err(self.git("diff the commit"))?;
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

/// Everything one delivery needs.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub repo: RepoConfig,
    /// Push with this backoff; `None`: commit only.
    pub push: Option<Backoff>,
    /// Nudge Argo CD after a push.
    pub nudge: Option<nudge::Nudge>,
}

impl OutputRepo {
    /// Tells Argo CD about what `d` pushed (nothing when nothing was pushed). A failure is
    /// the caller's to log: the push stands and Argo CD's poll picks it up.
    pub fn nudge(&self, n: &nudge::Nudge, d: &Delivered) -> Result<Option<u16>, nudge::NudgeError> {
        let Some((before, after)) = d.pushed else {
            return Ok(None);
        };
        if before == Some(after) {
            return Ok(None);
        }
        // Only the last commit is on the remote (earlier ones were regenerated on top).
        let last: Vec<CommitInfo> = d.commits.last().cloned().into_iter().collect();
        let files = match last.first() {
            Some(c) => match self.changed_files(c, 5_000) {
                Ok(f) => f,
                Err(e) => {
                    warn!(error = %chain(&e), "cannot list the pushed files; nudging without them");
                    None
                }
            },
            None => None,
        };
        n.send(&nudge::PushEvent {
            branch: &self.branch,
            before,
            after,
            commits: &last,
            files: files.as_ref(),
            author: &self.author,
        })
        .map(Some)
    }
}

/// Files changed by a commit, root-relative.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileChanges {
    pub added: Vec<String>,
    pub modified: Vec<String>,
    pub removed: Vec<String>,
}

fn is_non_fast_forward(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("non-fast-forward") || m.contains("fetch first") || m.contains("not present locally")
}

fn sleep_unless_stopped(total: Duration, stop: &dyn Fn() -> bool) -> Result<()> {
    let deadline = Instant::now() + total;
    loop {
        if stop() {
            return Err(DeliveryError::Interrupted);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(());
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}

fn git(action: &str, repo: &Path) -> impl FnOnce(git2::Error) -> DeliveryError + use<> {
    let (action, repo) = (action.to_owned(), repo.to_path_buf());
    move |source| DeliveryError::Git {
        action,
        repo,
        source,
    }
}

/// The error and its causes on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(c) = source {
        s.push_str(": ");
        s.push_str(&c.to_string());
        source = c.source();
    }
    s
}

/// `out` relative to `workdir` as a path prefix (`""` or `"a/b/"`); `None` if outside.
fn relative_prefix(workdir: &Path, out: &Path) -> Option<String> {
    let w = workdir.canonicalize().ok()?;
    let o = out.canonicalize().ok()?;
    let rel = o.strip_prefix(&w).ok()?;
    let mut s = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/");
    if !s.is_empty() {
        s.push('/');
    }
    Some(s)
}

/// The commit of the repository holding `registry` (its HEAD), if it is in one.
pub fn registry_commit(registry: &Path) -> Option<String> {
    let repo = Repository::discover(registry).ok()?;
    let id = repo.head().ok()?.target()?;
    Some(id.to_string())
}

/// The commit message: a subject counting tenants added/updated/removed, the lists, the
/// trigger, and the registry commit as a trailer.
pub fn commit_message(c: &Changes, why: &Why) -> String {
    let mut parts = Vec::new();
    for (n, verb) in [
        (c.added.len(), "add"),
        (c.updated.len(), "update"),
        (c.removed.len(), "remove"),
    ] {
        if n > 0 {
            parts.push(format!("{verb} {n}"));
        }
    }
    let subject = if parts.is_empty() {
        if c.argocd {
            "provisio: update the Argo CD objects".to_owned()
        } else {
            "provisio: update the generator state".to_owned()
        }
    } else {
        let n = c.added.len() + c.updated.len() + c.removed.len();
        format!(
            "provisio: {} tenant{}",
            parts.join(", "),
            if n == 1 { "" } else { "s" }
        )
    };
    let mut m = format!("{subject}\n\n");
    let list = |set: &BTreeSet<String>| {
        let mut s = set
            .iter()
            .take(MAX_LISTED)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if set.len() > MAX_LISTED {
            s.push_str(&format!(" … and {} more", set.len() - MAX_LISTED));
        }
        s
    };
    for (label, set) in [
        ("Added", &c.added),
        ("Updated", &c.updated),
        ("Removed", &c.removed),
    ] {
        if !set.is_empty() {
            m.push_str(&format!("{label}: {}\n", list(set)));
        }
    }
    if c.argocd {
        m.push_str("Argo CD objects (argocd/) updated\n");
    }
    if !why.trigger.is_empty() {
        m.push_str(&format!("Why: {}\n", why.trigger));
    }
    if let Some(r) = &why.registry_commit {
        m.push_str(&format!("\nRegistry-Commit: {r}\n"));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_counts_and_lists_tenants_and_names_the_registry_commit() {
        let c = Changes {
            added: ["a".to_owned()].into(),
            updated: ["b".to_owned(), "c".to_owned()].into(),
            removed: BTreeSet::new(),
            argocd: true,
        };
        let m = commit_message(
            &c,
            &Why {
                trigger: "tenants/a.yaml changed".into(),
                registry_commit: Some("abc123".into()),
            },
        );
        assert_eq!(
            m,
            "provisio: add 1, update 2 tenants\n\nAdded: a\nUpdated: b, c\nArgo CD objects (argocd/) updated\nWhy: tenants/a.yaml changed\n\nRegistry-Commit: abc123\n"
        );
    }

    #[test]
    fn long_lists_are_cut() {
        let c = Changes {
            updated: (0..30).map(|i| format!("t{i:02}")).collect(),
            ..Changes::default()
        };
        let m = commit_message(&c, &Why::default());
        assert!(m.starts_with("provisio: update 30 tenants\n"), "{m}");
        assert!(m.contains("t24 … and 5 more\n"), "{m}");
    }

    #[test]
    fn prefix_of_the_output_root() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/b")).unwrap();
        assert_eq!(relative_prefix(d.path(), d.path()).unwrap(), "");
        assert_eq!(
            relative_prefix(d.path(), &d.path().join("a/b")).unwrap(),
            "a/b/"
        );
    }
}
