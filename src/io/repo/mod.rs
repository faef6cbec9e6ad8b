//! The one git layer (git2, and ssh2 for pushes over ssh; nothing shells out to `git`). The registry repository (the
//! intake's commits, watch's clone of a registry branch) and the manifests repository (the
//! output's commits and pushes) both go through here.
//!
//! - [`Repo`] (this file): opening a repository with a work tree, paths inside it, HEAD,
//!   remotes, fetch, and [`GitError`], the one error type, naming what it was doing and where.
//! - [`commit`]: commits built from HEAD's tree plus a change set — never from whatever the
//!   index holds — written durably, the branch moved only if it still points where the tree
//!   was built; the work tree and index brought in step afterwards.
//! - [`output`]: the output directory as a work tree of the manifests repository: staging
//!   what `generate` wrote, committing it by editing HEAD's tree.
//! - [`sync`]: one push attempt (by [`push`], [`send_http`] or [`send_ssh`], never libgit2's
//!   push) with its failure classified; hard reset onto a fetched head.
//! - [`push`]: a push of the packs provisio stored: the pack a remote needs assembled from
//!   their entries, and a local remote's receiving side.
//! - [`failure`]: why a push attempt failed, and the remote's refusal classified, for every
//!   push path.
//! - [`worktree`]: the registry's work tree and index after an intake commit: updated under
//!   git's `index.lock` against the index as it is on disk, from an intent written before
//!   the commit, never over a person's edit.
//! - [`index`]: the output clone's index moved from a commit's parent to the commit by
//!   streaming its file once (a splice), when it is the file provisio wrote.
//! - [`lock`]: provisio's own lock on a repository, recording its holder, and the git lock
//!   files a killed provisio run left (only those).
//! - [`follow`]: a clone following one branch of a remote (watch `--registry-git`).
//! - [`upstream`]: provisio's own clone of a shared branch that it commits to and pushes
//!   (serve `--registry-git`): opened onto the remote head, rolled back onto it.
//! - [`message`]: what an output commit changed and its message.
//! - [`send_pack`]: git's receive-pack protocol v0 as a pushing client speaks it (pkt-lines,
//!   the advertisement, the command, the side band, the report), no I/O of its own.
//! - [`send_http`]: provisio's own client for pushing a pack it already holds to an https
//!   remote (git's receive-pack over smart HTTP), without libgit2's pack builder.
//! - [`send_ssh`]: the same over ssh (`git-receive-pack` run through libssh2), the host key
//!   checked against the known_hosts file as the fetch's transport checks it.
//! - [`handle`]: the one way a repository is opened or created (libgit2's process options
//!   set before the first).
//! - [`transport`]: how every fetch and push reaches its remote (https token and CA bundle,
//!   ssh key and known_hosts via [`known_hosts`]), and the failures in their own terms.

pub mod bulk;
pub mod commit;
pub mod failure;
pub mod follow;
mod handle;
pub mod index;
pub mod known_hosts;
pub mod lock;
pub mod message;
pub mod output;
pub mod pack;
pub mod packed;
pub mod push;
pub mod rollup;
pub mod send_http;
pub mod send_pack;
pub mod send_ssh;
pub mod sync;
pub mod transport;
pub mod upstream;
pub mod worktree;

use std::path::{Path, PathBuf};

use git2::{ErrorCode, Repository, Signature};

pub use transport::{RemoteError, Transport};

/// A commit or object id.
pub use git2::Oid;

/// How much of its pack files libgit2 keeps mapped at once, process-wide (`mwindow.c`): each
/// read of a packed object goes through a window of the file mapped whole, by default up to
/// 1 GiB long and up to 8 GiB mapped in all, released only when the limit is passed or the
/// pack is closed. Every page of a window that was read stays counted in the process's
/// resident memory (as file or shared memory), so with the defaults a first commit of
/// 10,000 tenants (its packs: 281 MB, whole objects) kept them all resident: 370 of its
/// 587 MiB peak (BENCHMARKS.md, issue 13). 16 MiB windows and 32 MiB mapped in all bound
/// that part (libgit2's own defaults on 32-bit systems are 32 MiB and 256 MiB); a window
/// that is not in use is unmapped when a new one would pass the limit (`new_window_locked`,
/// least recently used first), so the limit is soft: windows in use are never closed.
const PACK_WINDOW_SIZE: usize = 16 << 20;
const PACK_MAPPED_LIMIT: usize = 32 << 20;

/// What must happen before the process starts a second thread, called first thing by
/// `cli::main`: OpenSSL's certificate locations (`SSL_CERT_FILE`, `SSL_CERT_DIR`) put in the
/// environment, as git2 puts them when libgit2 is first used (`openssl_env_init`, through
/// `openssl_probe`). libgit2 is initialised lazily ([`handle`]), possibly while other threads
/// run (serve's runtime), and `setenv` there races any `getenv`; found set already, the later
/// call leaves the environment alone (`openssl_probe`'s `put` sets a variable only when it
/// differs). Cheap: a few `stat`s.
pub fn before_threads() {
    // SAFETY: called while the process has one thread: nothing reads the environment
    // concurrently.
    unsafe { openssl_probe::init_openssl_env_vars() };
}

/// Sets libgit2's process-wide options, once per process: every repository handle is taken
/// through [`handle`], which calls this first, so the options hold before the first handle
/// exists (and the cost of initialising libgit2 is paid only by runs that open one). No
/// option set here changes what is written.
///
/// - The pack windows ([`PACK_WINDOW_SIZE`], [`PACK_MAPPED_LIMIT`]) bound memory.
/// - libgit2's read-back hash check is off (`GIT_OPT_ENABLE_STRICT_HASH_VERIFICATION`, on by
///   default: `odb.c` `git_odb_read` hashes every object it reads and compares the result with
///   the id asked for). It was 18 % of the samples of a product's version bump at 10,000
///   tenants (BENCHMARKS.md, issue 13, fourth round): every tree the commit edits and every
///   tree and blob the push's pack builder walks or packs is hashed again. Stock git checks
///   on receipt (`index-pack`, `unpack-objects`), in `fsck`, and when it parses an object
///   for a walk (`object.c` `parse_object`: "hash mismatch"), not on every read (`cat-file`,
///   `pack-objects` reusing packed data). The objects provisio reads are ones it wrote itself
///   (hashed as they were written), ones received through a fetch, whose indexer hashes every
///   object of the pack (libgit2's `indexer.c`, independent of this option), or ones another
///   git wrote into the clone (hashed as it wrote them); a damaged object still fails to
///   inflate (zlib's Adler-32), and `git fsck` finds the rest as in any git repository. What
///   the check no longer guards is provisio's own `.idx` ([`pack`]): a wrong offset would
///   read back another object under the id asked for, which its tests rule out (`git
///   index-pack` computes the same bytes). The remote's own checks are untouched: a push's
///   pack is indexed, and hashed, by the server.
/// - libgit2's object cache keeps no trees (`GIT_OPT_SET_CACHE_OBJECT_LIMIT` for trees at 0;
///   `cache.c`: every commit, tree and tag under 4 KiB that is read stays parsed in memory,
///   up to 256 MiB for the process). provisio reads most trees once per run (a commit's
///   edit, a push's walk, the index's diff), so the cache held tens of thousands of trees
///   nobody asked for again: with them, a first push of 10,000 tenants peaked at 368 MiB
///   (the index brought in step beside the push on a second repository handle, a second
///   cache); without, 262 MiB. Commits stay cached (the cache is not turned off whole): serve
///   reads its registry's whole history again (`messages_from`: a revwalk, then each commit)
///   at start and whenever another author moved HEAD, and with no cache each reload inflated
///   every commit twice (50,000 commits: about 0.4 s a reload instead of 0.2 s); a run's
///   output commits are a handful.
pub fn set_process_options() {
    static SET: std::sync::Once = std::sync::Once::new();
    SET.call_once(set_options_now);
}

fn set_options_now() {
    // SAFETY: process-wide settings of libgit2, written before any repository handle exists:
    // every handle is taken through `handle`, after this `Once` has run (a concurrent caller
    // waits for it).
    let set = unsafe {
        git2::opts::set_mwindow_size(PACK_WINDOW_SIZE)
            .and_then(|()| git2::opts::set_mwindow_mapped_limit(PACK_MAPPED_LIMIT))
    };
    if let Err(e) = set {
        tracing::warn!("libgit2 kept its default pack windows: {e}");
    }
    git2::opts::strict_hash_verification(false);
    // SAFETY: as above.
    if let Err(e) = unsafe { git2::opts::set_cache_object_limit(git2::ObjectType::Tree, 0) } {
        tracing::warn!("libgit2 keeps caching trees: {e}");
    }
}

/// Errors of the git layer, each naming what it was doing and in which repository.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// A git operation failed.
    #[error("git: cannot {action} in {repo}")]
    Git {
        action: String,
        repo: PathBuf,
        #[source]
        source: git2::Error,
    },
    /// A file of the work tree could not be read or written.
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not inside the work tree of {repo}")]
    Outside { path: PathBuf, repo: PathBuf },
    #[error("{0} is a bare repository; provisio needs a work tree")]
    Bare(PathBuf),
    #[error(
        "{0} is not inside a git repository; clone the manifests repository there or give its URL (--manifests-url)"
    )]
    NotARepository(PathBuf),
    #[error("another provisio process holds {0}; only one may write to this repository at a time")]
    Locked(PathBuf),
    /// Another git process holds the index (`git add`, `git commit`, `git status` refreshing
    /// it); provisio never writes an index it does not hold the lock of.
    #[error("the index of {repo} is locked by another git process ({lock} exists)")]
    IndexLocked { repo: PathBuf, lock: PathBuf },
    /// A git lock file that no killed provisio run left (`super::lock`): a person's git at
    /// work or killed, or a link; provisio never removes it.
    #[error(
        "{lock} is not provisio's: another git process is working in {repo} or was killed; remove it by hand when no git process runs there"
    )]
    ForeignLock { repo: PathBuf, lock: PathBuf },
    /// `provisio.lock` is not a regular file (a symbolic link, a directory, a FIFO): never
    /// followed, read or written (`super::lock`).
    #[error(
        "{0} is not a regular file: provisio's lock file is never followed, read or written through anything else; remove it by hand (no git needs it)"
    )]
    NotALockFile(PathBuf),
    #[error("the repository {repo} has {actual} checked out, expected branch {expected}")]
    WrongBranch {
        repo: PathBuf,
        actual: String,
        expected: String,
    },
    /// A branch name git refuses (`git check-ref-format --branch`), checked before a
    /// repository is created with its HEAD on it.
    #[error("`{0}` is not a valid branch name")]
    InvalidBranch(String),
    #[error("the repository {0} has a detached HEAD; check out a branch")]
    DetachedHead(PathBuf),
    #[error("the repository {repo} has no remote `{remote}`; give --manifests-url")]
    NoRemote { repo: PathBuf, remote: String },
    #[error("the repository at {url} has no branch `{branch}`")]
    NoBranch { url: String, branch: String },
    /// The remote could not be fetched from (unreachable, refused, or not a repository).
    #[error("git: cannot fetch {branch} from {remote} into {repo}")]
    Fetch {
        remote: String,
        branch: String,
        repo: PathBuf,
        #[source]
        source: Box<RemoteError>,
    },
    /// The remote cannot be used as configured (a password in its URL, ssh without a
    /// known_hosts file…).
    #[error(transparent)]
    Remote(Box<RemoteError>),
}

impl From<RemoteError> for GitError {
    fn from(e: RemoteError) -> Self {
        GitError::Remote(Box::new(e))
    }
}

pub type Result<T, E = GitError> = std::result::Result<T, E>;

/// The error maker for a git2 failure while doing `action` in `repo`.
pub fn git(action: &str, repo: &Path) -> impl FnOnce(git2::Error) -> GitError + use<> {
    let (action, repo) = (action.to_owned(), repo.to_path_buf());
    move |source| GitError::Git {
        action,
        repo,
        source,
    }
}

/// The error maker for a file-system failure while doing `action` on `path`.
pub fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> GitError + use<> {
    let path = path.to_path_buf();
    move |source| GitError::Io {
        action,
        path,
        source,
    }
}

/// Who commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    pub name: String,
    pub email: String,
}

impl Default for Author {
    fn default() -> Self {
        Author {
            name: "provisio".to_owned(),
            email: "provisio@localhost".to_owned(),
        }
    }
}

/// A repository with a work tree, and how its remotes are reached.
pub struct Repo {
    pub(super) repo: Repository,
    /// The work tree's root, canonical.
    workdir: PathBuf,
    /// Credentials and verification for every fetch and push of this repository.
    transport: Transport,
}

impl Repo {
    /// The repository containing `path` (searching upwards).
    pub fn discover(path: &Path) -> Result<Self> {
        match handle::discover(path) {
            Ok(r) => Self::with_workdir(r, path),
            Err(e) if e.code() == ErrorCode::NotFound => {
                Err(GitError::NotARepository(path.to_path_buf()))
            }
            Err(e) => Err(git("open the repository", path)(e)),
        }
    }

    /// The repository at `dir`; when `dir` is in none yet, one created there, empty, its
    /// HEAD on `branch` ([`create_whole`]: complete or not there at all). Creating it, or
    /// removing what a creation left, is done by one run at a time ([`creation_lock`]); a run
    /// that waited opens the repository the other created.
    pub fn open_or_init(dir: &Path, branch: &str) -> Result<Self> {
        let head = branch_ref(branch)?;
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        let staging = dir.join(NEW_REPOSITORY);
        match handle::discover(dir) {
            Ok(r) if std::fs::symlink_metadata(&staging).is_err() => {
                return Self::with_workdir(r, dir);
            }
            Ok(_) => {}
            Err(e) if e.code() == ErrorCode::NotFound => {}
            Err(e) => return Err(git("open the repository", dir)(e)),
        }
        let _creating = creation_lock(dir);
        match handle::discover(dir) {
            Ok(r) => {
                // A creation killed after its rename leaves the staging directory empty.
                let _ = std::fs::remove_dir(&staging);
                Self::with_workdir(r, dir)
            }
            Err(e) if e.code() == ErrorCode::NotFound => {
                Self::with_workdir(create_whole(dir, &head)?, dir)
            }
            Err(e) => Err(git("open the repository", dir)(e)),
        }
    }

    /// Creates a repository at `path` and commits every file below it that is not ignored,
    /// as the first commit. For tests and first-time setup.
    pub fn init_with_all(path: &Path, message: &str, author: &Author) -> Result<Self> {
        let repo = handle::init(path).map_err(git("init a repository", path))?;
        let mut index = repo.index().map_err(git("read the index", path))?;
        index
            .add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)
            .map_err(git("stage files", path))?;
        index.write().map_err(git("write the index", path))?;
        let tree_id = index.write_tree().map_err(git("write a tree", path))?;
        {
            let tree = repo.find_tree(tree_id).map_err(git("read a tree", path))?;
            let sig = signature(author, path)?;
            repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &[])
                .map_err(git("commit", path))?;
        }
        Self::with_workdir(repo, path)
    }

    fn with_workdir(repo: Repository, path: &Path) -> Result<Self> {
        let workdir = repo
            .workdir()
            .ok_or_else(|| GitError::Bare(path.to_path_buf()))?
            .to_path_buf();
        let workdir = workdir.canonicalize().unwrap_or(workdir);
        Ok(Repo {
            repo,
            workdir,
            transport: Transport::default(),
        })
    }

    /// Reaches the remotes with `transport` from now on.
    pub fn set_transport(&mut self, transport: Transport) {
        self.transport = transport;
    }

    /// How the remotes are reached.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The work tree's root.
    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// The `.git` directory.
    pub fn git_dir(&self) -> &Path {
        self.repo.path()
    }

    /// `dir` relative to the work tree root, `/`-separated (`""` for the root itself).
    pub fn relative(&self, dir: &Path) -> Result<String> {
        let abs = dir.canonicalize().map_err(io("resolve", dir))?;
        let rel = abs
            .strip_prefix(&self.workdir)
            .map_err(|_| GitError::Outside {
                path: dir.to_path_buf(),
                repo: self.workdir.clone(),
            })?;
        Ok(rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/"))
    }

    /// The error maker for `action` in this repository.
    pub(super) fn err(&self, action: &str) -> impl FnOnce(git2::Error) -> GitError + use<> {
        git(action, &self.workdir)
    }

    /// The commit HEAD points at, if any.
    pub fn head(&self) -> Result<Option<Oid>> {
        match self.repo.head() {
            Ok(r) => Ok(r.target()),
            Err(e) if e.code() == ErrorCode::UnbornBranch || e.code() == ErrorCode::NotFound => {
                Ok(None)
            }
            Err(e) => Err(self.err("read HEAD")(e)),
        }
    }

    /// The remote called `name`: its URL set to `url` when given (added when missing).
    pub fn ensure_remote(&self, name: &str, url: &str) -> Result<()> {
        // Never store a URL with a password in the clone's config.
        transport::endpoint(url)?;
        match self.repo.find_remote(name) {
            Ok(r) if r.url().ok() == Some(url) => Ok(()),
            Ok(_) => self
                .repo
                .remote_set_url(name, url)
                .map_err(self.err("set the remote URL")),
            Err(e) if e.code() == ErrorCode::NotFound => self
                .repo
                .remote(name, url)
                .map(drop)
                .map_err(self.err("add the remote")),
            Err(e) => Err(self.err("read the remote")(e)),
        }
    }

    /// The URL of the remote `name`, `None` when there is no such remote.
    pub fn remote_url(&self, name: &str) -> Result<Option<String>> {
        match self.repo.find_remote(name) {
            Ok(r) => Ok(r.url().ok().map(str::to_owned)),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(self.err("read the remote")(e)),
        }
    }

    /// The remote-tracking commit `refs/remotes/<remote>/<branch>`, as of the last fetch.
    pub fn tracking_head(&self, remote: &str, branch: &str) -> Result<Option<Oid>> {
        match self
            .repo
            .find_reference(&format!("refs/remotes/{remote}/{branch}"))
        {
            Ok(r) => Ok(r.target()),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(self.err("read the remote-tracking branch")(e)),
        }
    }

    /// Fetches `branch` of `remote` into its remote-tracking ref and returns that commit
    /// (`None` when the remote has no such branch).
    pub fn fetch_branch(&self, remote: &str, branch: &str) -> Result<Option<Oid>> {
        let mut r = self.repo.find_remote(remote).map_err(|e| {
            if e.code() == ErrorCode::NotFound {
                GitError::NoRemote {
                    repo: self.workdir.clone(),
                    remote: remote.to_owned(),
                }
            } else {
                self.err("read the remote")(e)
            }
        })?;
        let spec = format!("+refs/heads/{branch}:refs/remotes/{remote}/{branch}");
        let url = r.url().unwrap_or_default().to_owned();
        let (callbacks, session) = self.transport.callbacks(&url)?;
        let mut opts = git2::FetchOptions::new();
        opts.remote_callbacks(callbacks);
        r.fetch(&[spec], Some(&mut opts), None)
            .map_err(|e| GitError::Fetch {
                remote: remote.to_owned(),
                branch: branch.to_owned(),
                repo: self.workdir.clone(),
                source: Box::new(session.error(e)),
            })?;
        drop(opts);
        drop(r);
        self.tracking_head(remote, branch)
    }

    /// The summary line of a commit.
    pub fn summary(&self, id: Oid) -> Result<String> {
        let c = self
            .repo
            .find_commit(id)
            .map_err(self.err("read a commit"))?;
        Ok(c.summary().ok().flatten().unwrap_or("").to_owned())
    }
}

/// Whether commit `ancestor` is `descendant` or one of its ancestors, in the repository
/// holding `path`; `None` when there is no repository or it does not know either commit
/// (a commit it has not fetched yet is newer than anything it has).
pub fn is_ancestor_in(path: &Path, ancestor: &str, descendant: &str) -> Option<bool> {
    let repo = handle::discover(path).ok()?;
    let (a, d) = (
        Oid::from_str(ancestor).ok()?,
        Oid::from_str(descendant).ok()?,
    );
    repo.find_commit(a).ok()?;
    repo.find_commit(d).ok()?;
    Some(a == d || repo.graph_descendant_of(d, a).ok()?)
}

/// The commit HEAD points at in the repository holding `path`, if it is in one.
pub fn head_of(path: &Path) -> Option<String> {
    let repo = handle::discover(path).ok()?;
    let id = repo.head().ok()?.target()?;
    Some(id.to_string())
}

pub(super) fn signature(author: &Author, repo: &Path) -> Result<Signature<'static>> {
    Signature::now(&author.name, &author.email).map_err(git("make a signature", repo))
}

/// `dir` relative to the canonical `workdir` as a path prefix (`""` or `"a/b/"`); `None` if
/// outside.
pub(super) fn prefix_of(workdir: &Path, dir: &Path) -> Option<String> {
    let o = dir.canonicalize().ok()?;
    let rel = o.strip_prefix(workdir).ok()?;
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

/// `refs/heads/<branch>`, or [`GitError::InvalidBranch`] when git would refuse that name.
pub fn branch_ref(branch: &str) -> Result<String> {
    let full = format!("refs/heads/{branch}");
    if git2::Reference::is_valid_name(&full) {
        Ok(full)
    } else {
        Err(GitError::InvalidBranch(branch.to_owned()))
    }
}

/// The lock held while one run creates the repository in a directory, or removes what a creation
/// left there: an exclusive `flock` on the directory itself, waited for. Two runs creating at
/// once (two `generate --commit` on a fresh directory) otherwise each removed the staging
/// directory the other's libgit2 was writing, and a `.git` holding only `HEAD` and `config`
/// could be renamed into place, which no later run could replace. It is the output writer's
/// lock when the directory is the output root ([`crate::io::output::lock_output`]): a run
/// creating the clone there waits for a `generate` writing the tree, which is short, and
/// never holds it past the creation. A file system without `flock` runs unlocked.
fn creation_lock(dir: &Path) -> Option<crate::io::fsx::Flock> {
    match std::fs::File::open(dir).and_then(crate::io::fsx::Flock::wait) {
        Ok(lock) => Some(lock),
        Err(e) => {
            tracing::warn!("cannot lock {}: {e}; creating unlocked", dir.display());
            None
        }
    }
}

/// Name of the directory below a new repository's work tree in which [`create_whole`] builds
/// its `.git` (a `.provisio-` temporary: every reader skips it, the next creation removes it).
pub const NEW_REPOSITORY: &str = ".provisio-new-repository";

/// Creates the repository `dir/.git`, HEAD on `head` (a full, valid ref name: libgit2
/// writes `initial_head` into HEAD unchecked, and reads a name not starting with `refs/` as
/// a branch's), unborn, whole or not at all: libgit2 writes it in `dir/`[`NEW_REPOSITORY`]
/// and the finished `.git` is renamed into place. A run
/// killed while libgit2 writes (its `config.lock` and `HEAD.lock` exist then, before
/// provisio's lock can) or before HEAD names the branch leaves only that directory, which the
/// next creation removes — never a `.git` that the next run would refuse for a lock no
/// provisio run recorded, or would open on libgit2's default branch instead of `branch`.
fn create_whole(dir: &Path, head: &str) -> Result<Repository> {
    let (staging, to) = (dir.join(NEW_REPOSITORY), dir.join(".git"));
    // Something at `.git` that libgit2 found no repository in (a link or a `gitdir:` file
    // pointing nowhere, a directory that is no repository) is a person's to sort out: said
    // before anything is created, never replaced. An empty directory is replaced.
    match std::fs::symlink_metadata(&to) {
        Ok(m) if m.is_dir() && std::fs::read_dir(&to).is_ok_and(|mut d| d.next().is_none()) => {}
        Ok(_) => {
            return Err(io("create a repository at", &to)(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "something is there that is no git repository (a link or a `gitdir:` file \
                 pointing nowhere, or another directory); remove it by hand",
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("inspect", &to)(e)),
    }
    // A leftover, even a link planted under that name, is removed, never followed.
    crate::io::fsx::remove_leftover(&staging).map_err(io("remove", &staging))?;
    let mut opts = git2::RepositoryInitOptions::new();
    opts.no_reinit(true).initial_head(head);
    drop(handle::init_opts(&staging, &opts).map_err(git("create a repository", &staging))?);
    std::fs::rename(staging.join(".git"), &to).map_err(io("move the new repository into", &to))?;
    std::fs::remove_dir(&staging).map_err(io("remove", &staging))?;
    handle::open(dir).map_err(git("open the repository", dir))
}

#[cfg(test)]
pub(crate) mod tests {
    /// Whether stock git is on PATH for a test to check what provisio wrote against; without
    /// it the check is skipped (said on stderr), except with `PROVISIO_REQUIRE_TOOLS=1` (CI),
    /// where the test fails instead.
    pub(crate) fn stock_git_here() -> bool {
        let here = std::process::Command::new("git")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !here {
            assert!(
                std::env::var("PROVISIO_REQUIRE_TOOLS").as_deref() != Ok("1"),
                "git is required (PROVISIO_REQUIRE_TOOLS=1) but not on PATH"
            );
            eprintln!("SKIPPED: git not on PATH");
        }
        here
    }

    /// Asserts that stock git finds the repository at `git_dir` sound (`git fsck --full
    /// --strict --no-dangling`; `what` names the state checked, for the failure); skipped
    /// without stock git as [`stock_git_here`] says.
    pub(crate) fn assert_fsck_clean(git_dir: &std::path::Path, what: &str) {
        if !stock_git_here() {
            return;
        }
        let fsck = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(git_dir)
            .args(["fsck", "--full", "--strict", "--no-dangling"])
            .output()
            .unwrap();
        assert!(fsck.status.success(), "{what}: {fsck:?}");
    }

    use super::*;

    /// What a run killed while creating a repository leaves — libgit2's half-written
    /// repository with its lock files, or a link planted under the staging name — is removed
    /// by the next creation, which makes the repository whole, on the branch asked for.
    #[test]
    fn a_creation_killed_halfway_is_redone_whole_on_the_branch() {
        // Skipped by every reader of a work tree, as a `.provisio-` temporary.
        assert!(NEW_REPOSITORY.starts_with(crate::io::fsx::TEMP_PREFIX));
        let root = tempfile::tempdir().unwrap();
        let outside = root.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "a person's file").unwrap();
        for leftover in ["half-written", "link"] {
            let dir = root.path().join(leftover);
            let staging = dir.join(NEW_REPOSITORY);
            std::fs::create_dir_all(&dir).unwrap();
            if leftover == "link" {
                std::os::unix::fs::symlink(&outside, &staging).unwrap();
            } else {
                // As libgit2 leaves a repository it was writing when the process died.
                std::fs::create_dir_all(staging.join(".git/objects")).unwrap();
                std::fs::write(staging.join(".git/config.lock"), "[core]\n").unwrap();
                std::fs::write(staging.join(".git/HEAD.lock"), "").unwrap();
            }
            let repo = Repo::open_or_init(&dir, "release").unwrap();
            assert!(!staging.exists() && !staging.is_symlink(), "{leftover}");
            assert_eq!(repo.workdir(), dir.canonicalize().unwrap(), "{leftover}");
            let head = repo.repo.find_reference("HEAD").unwrap();
            assert_eq!(
                head.symbolic_target().ok().flatten(),
                Some("refs/heads/release")
            );
            let locks: Vec<_> = std::fs::read_dir(dir.join(".git"))
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".lock"))
                .collect();
            assert!(locks.is_empty(), "{leftover}: {locks:?}");
            assert_fsck_clean(&dir.join(".git"), leftover);
        }
        assert_eq!(
            std::fs::read_to_string(outside.join("keep")).unwrap(),
            "a person's file"
        );
        // Opened again (after a kill between the rename and the staging directory's removal):
        // the same repository, not created anew, and the empty staging directory gone.
        let dir = root.path().join("link");
        std::fs::create_dir(dir.join(NEW_REPOSITORY)).unwrap();
        let again = Repo::open_or_init(&dir, "other").unwrap();
        let head = again.repo.find_reference("HEAD").unwrap();
        assert_eq!(
            head.symbolic_target().ok().flatten(),
            Some("refs/heads/release")
        );
        assert!(!dir.join(NEW_REPOSITORY).exists());
    }

    /// A branch name git refuses is refused before anything is created: libgit2 writes
    /// `initial_head` into HEAD unchecked, and a `.git` whose HEAD names an invalid ref fails
    /// every later run ("cannot read HEAD"), even one given a valid branch.
    #[test]
    fn an_invalid_branch_creates_nothing_and_a_valid_one_then_succeeds() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("clone");
        for bad in ["a..b", "bad name", "x.lock", "a/", "a~1"] {
            let err = Repo::open_or_init(&dir, bad).err().expect(bad).to_string();
            assert!(err.contains(&format!("`{bad}`")), "{bad}: {err}");
            assert!(err.contains("not a valid branch name"), "{bad}: {err}");
            assert!(!dir.join(".git").exists(), "{bad}: .git created");
            assert!(!dir.join(NEW_REPOSITORY).exists(), "{bad}: staging left");
        }
        let repo = Repo::open_or_init(&dir, "main").unwrap();
        assert_eq!(repo.head().unwrap(), None);
        let head = repo.repo.find_reference("HEAD").unwrap();
        assert_eq!(
            head.symbolic_target().ok().flatten(),
            Some("refs/heads/main")
        );
    }

    /// A `.git` libgit2 finds no repository in — a dangling link, a `gitdir:` file pointing
    /// nowhere, a directory with something else in it — is named and left as it is, and
    /// nothing is created; an empty directory there is replaced by the new repository.
    #[test]
    fn something_at_dot_git_that_is_no_repository_is_named_and_left() {
        let root = tempfile::tempdir().unwrap();
        type Plant = fn(&Path);
        let plant: [(&str, Plant); 3] = [
            ("dangling link", |g| {
                std::os::unix::fs::symlink("/nonexistent/provisio", g).unwrap()
            }),
            ("gitdir file", |g| {
                std::fs::write(g, "gitdir: /nonexistent/provisio\n").unwrap()
            }),
            ("other directory", |g| {
                std::fs::create_dir(g).unwrap();
                std::fs::write(g.join("notes.txt"), "a person's").unwrap();
            }),
        ];
        for (what, plant) in plant {
            let dir = root.path().join(what.replace(' ', "-"));
            std::fs::create_dir(&dir).unwrap();
            plant(&dir.join(".git"));
            let err = Repo::open_or_init(&dir, "main").err().expect(what);
            // The message with its causes, as the command line prints it.
            let mut text = err.to_string();
            let mut cause = std::error::Error::source(&err);
            while let Some(c) = cause {
                text.push_str(&format!(": {c}"));
                cause = c.source();
            }
            let err = text;
            assert!(
                err.contains(".git") && err.contains("no git repository"),
                "{what}: {err}"
            );
            assert!(!dir.join(NEW_REPOSITORY).exists(), "{what}");
        }
        assert_eq!(
            std::fs::read_to_string(root.path().join("other-directory/.git/notes.txt")).unwrap(),
            "a person's"
        );
        let empty = root.path().join("empty");
        std::fs::create_dir_all(empty.join(".git")).unwrap();
        Repo::open_or_init(&empty, "main").unwrap();
        assert!(git2::Repository::open(&empty).is_ok());
    }

    /// Runs creating the same repository at once (two `generate --commit` on a fresh
    /// directory, a CI retry beside a still running job) each open it whole: one creates it,
    /// the others find it. Unserialized, one run's removal of the staging directory deleted
    /// what another's libgit2 was writing, and a `.git` holding only `HEAD` and `config` was
    /// renamed into place, which every later run failed to replace ("Directory not empty").
    #[test]
    fn runs_creating_one_repository_at_once_all_open_it_whole() {
        use std::sync::{Arc, Barrier};
        let root = tempfile::tempdir().unwrap();
        for round in 0..40 {
            let dir = root.path().join(format!("r{round}"));
            let barrier = Arc::new(Barrier::new(3));
            let runs: Vec<_> = (0..3)
                .map(|_| {
                    let (dir, barrier) = (dir.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        Repo::open_or_init(&dir, "main").map(|r| r.workdir().to_path_buf())
                    })
                })
                .collect();
            for run in runs {
                let opened = run.join().unwrap();
                assert!(opened.is_ok(), "round {round}: {:?}", opened.err());
            }
            let repo = git2::Repository::open(&dir).unwrap();
            let head = repo.find_reference("HEAD").unwrap();
            assert_eq!(
                head.symbolic_target().ok().flatten(),
                Some("refs/heads/main"),
                "round {round}"
            );
            assert!(!dir.join(NEW_REPOSITORY).exists(), "round {round}");
        }
        assert_fsck_clean(&root.path().join("r0/.git"), "raced creation");
    }

    #[test]
    fn prefix_of_the_output_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        assert_eq!(prefix_of(&root, &root).unwrap(), "");
        assert_eq!(prefix_of(&root, &root.join("a/b")).unwrap(), "a/b/");
        let outside = tempfile::tempdir().unwrap();
        assert_eq!(prefix_of(&root, outside.path()), None);
    }
}
