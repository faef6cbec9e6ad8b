//! Git for provisio's authors (the intake, later watch mode): commit a set of files into a
//! repository without touching anything else in it, read files as committed, walk commit
//! messages. The only module of the intake that uses git2.
//!
//! A commit is built from HEAD's tree plus the given files (never from the index, so changes
//! a person staged are not swept in). Its objects are made durable with one `syncfs` of the
//! git directory's file system (not one fsync per object: that is what lets a group of
//! events cost one flush), then HEAD's branch is moved — only if it still points at the
//! commit the tree was built on — and flushed again. Then the work tree files are replaced
//! atomically and their index entries updated, so `git status` stays clean. If the process
//! dies between the ref update and the work tree write, [`Repo::discover`] followed by
//! [`Repo::restore_unsynced`] puts the committed version back.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use git2::{FileMode, ObjectType, Repository, Signature, Sort, TreeWalkMode, TreeWalkResult};

/// A commit or object id.
pub use git2::Oid;

/// Errors of the git layer, each naming what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("git: cannot {action} in {repo}")]
    Git {
        action: String,
        repo: String,
        #[source]
        source: git2::Error,
    },
    #[error("cannot write {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not inside the work tree of {repo}")]
    Outside { path: String, repo: String },
    #[error("{0} is a bare repository; provisio needs a work tree")]
    Bare(String),
}

type Result<T> = std::result::Result<T, GitError>;

/// One file to write, by path relative to the repository root (`/`-separated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    pub path: String,
    /// `None` removes the file.
    pub content: Option<Vec<u8>>,
}

/// Who commits.
#[derive(Debug, Clone)]
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

/// A repository with a work tree.
pub struct Repo {
    repo: Repository,
    workdir: PathBuf,
}

impl Repo {
    /// The repository containing `path` (searching upwards).
    pub fn discover(path: &Path) -> Result<Self> {
        let repo = Repository::discover(path).map_err(git("open the repository", path))?;
        Self::from_repository(repo, path)
    }

    /// Creates a repository at `path` (if none) and commits every file below it that is not
    /// ignored, as the first commit. For tests and first-time setup.
    pub fn init_with_all(path: &Path, message: &str, author: &Author) -> Result<Self> {
        let repo = Repository::init(path).map_err(git("init a repository", path))?;
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
        Self::from_repository(repo, path)
    }

    fn from_repository(repo: Repository, path: &Path) -> Result<Self> {
        let workdir = repo
            .workdir()
            .ok_or_else(|| GitError::Bare(path.display().to_string()))?
            .to_path_buf();
        let workdir = workdir.canonicalize().unwrap_or(workdir);
        Ok(Repo { repo, workdir })
    }

    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// `dir` relative to the work tree root, `/`-separated ("" for the root itself).
    pub fn relative(&self, dir: &Path) -> Result<String> {
        let abs = dir.canonicalize().map_err(|source| GitError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let rel = abs
            .strip_prefix(&self.workdir)
            .map_err(|_| GitError::Outside {
                path: dir.display().to_string(),
                repo: self.workdir.display().to_string(),
            })?;
        Ok(rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/"))
    }

    fn err(&self, action: &str) -> impl FnOnce(git2::Error) -> GitError + use<> {
        git(action, &self.workdir)
    }

    /// The commit HEAD points at, if any.
    pub fn head(&self) -> Result<Option<Oid>> {
        match self.repo.head() {
            Ok(r) => Ok(r.target()),
            Err(e) if e.code() == git2::ErrorCode::UnbornBranch => Ok(None),
            Err(e) => Err(self.err("read HEAD")(e)),
        }
    }

    /// Every file below `under` (a `/`-separated directory, "" = the root) in HEAD's tree,
    /// keyed by its path relative to `under`.
    pub fn read_committed(&self, under: &str) -> Result<BTreeMap<String, Vec<u8>>> {
        let mut files = BTreeMap::new();
        let Some(head) = self.head()? else {
            return Ok(files);
        };
        let commit = self
            .repo
            .find_commit(head)
            .map_err(self.err("read HEAD's commit"))?;
        let root = commit.tree().map_err(self.err("read HEAD's tree"))?;
        let tree = if under.is_empty() {
            root
        } else {
            match root.get_path(Path::new(under)) {
                Ok(entry) => self
                    .repo
                    .find_tree(entry.id())
                    .map_err(self.err("read a tree"))?,
                Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(files),
                Err(e) => return Err(self.err("read a tree")(e)),
            }
        };
        let mut failure = None;
        tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
            if entry.kind() != Some(ObjectType::Blob) {
                return TreeWalkResult::Ok;
            }
            let name = entry.name().unwrap_or_default();
            match self.repo.find_blob(entry.id()) {
                Ok(blob) => {
                    files.insert(format!("{dir}{name}"), blob.content().to_vec());
                    TreeWalkResult::Ok
                }
                Err(e) => {
                    failure = Some(e);
                    TreeWalkResult::Abort
                }
            }
        })
        .map_err(self.err("walk a tree"))?;
        match failure {
            Some(e) => Err(self.err("read a file")(e)),
            None => Ok(files),
        }
    }

    /// Commits `changes` on top of HEAD with `message`; returns the new commit, or `None`
    /// when the files already have that content. See the module documentation for the
    /// order of writes.
    pub fn commit_files(
        &self,
        changes: &[FileChange],
        message: &str,
        author: &Author,
    ) -> Result<Option<Oid>> {
        let head = self.head()?;
        let parent = match head {
            Some(h) => Some(
                self.repo
                    .find_commit(h)
                    .map_err(self.err("read HEAD's commit"))?,
            ),
            None => None,
        };
        let base = match &parent {
            Some(c) => c.tree().map_err(self.err("read HEAD's tree"))?,
            None => {
                let empty = self
                    .repo
                    .treebuilder(None)
                    .and_then(|b| b.write())
                    .map_err(self.err("write an empty tree"))?;
                self.repo
                    .find_tree(empty)
                    .map_err(self.err("read a tree"))?
            }
        };
        let mut update = git2::build::TreeUpdateBuilder::new();
        for c in changes {
            match &c.content {
                Some(bytes) => {
                    let blob = self.repo.blob(bytes).map_err(self.err("write a blob"))?;
                    update.upsert(c.path.as_str(), blob, FileMode::Blob);
                }
                None => {
                    update.remove(c.path.as_str());
                }
            }
        }
        let tree_id = update
            .create_updated(&self.repo, &base)
            .map_err(self.err("build the tree"))?;
        if tree_id == base.id() && parent.is_some() {
            return Ok(None);
        }
        let tree = self
            .repo
            .find_tree(tree_id)
            .map_err(self.err("read the new tree"))?;
        let sig = signature(author, &self.workdir)?;
        let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
        let oid = self
            .repo
            .commit(None, &sig, &sig, message, &tree, &parents)
            .map_err(self.err("commit"))?;
        // Objects first, durably; only then does the branch point at them.
        self.sync_gitdir()?;
        self.move_head(oid, head, message)?;
        self.sync_gitdir()?;
        self.sync_worktree(changes)?;
        Ok(Some(oid))
    }

    /// Moves the branch HEAD names (or a detached HEAD) from `expected` to `new`, refusing
    /// if it moved meanwhile: a commit made by someone else is never lost.
    fn move_head(&self, new: Oid, expected: Option<Oid>, message: &str) -> Result<()> {
        let head = self
            .repo
            .find_reference("HEAD")
            .map_err(self.err("read HEAD"))?;
        let name = head
            .symbolic_target()
            .map_err(self.err("read HEAD"))?
            .unwrap_or("HEAD")
            .to_owned();
        let log = format!("provisio: {}", message.lines().next().unwrap_or_default());
        match expected {
            Some(old) => self.repo.reference_matching(&name, new, true, old, &log),
            None => self.repo.reference(&name, new, false, &log),
        }
        .map(drop)
        .map_err(self.err("move HEAD (did someone else commit meanwhile?)"))
    }

    /// Flushes everything written to the git directory's file system with one `syncfs`
    /// (one journal commit for all the group's objects, instead of one fsync per object).
    fn sync_gitdir(&self) -> Result<()> {
        let path = self.repo.path();
        let dir = std::fs::File::open(path).map_err(|source| GitError::Io {
            path: path.display().to_string(),
            source,
        })?;
        sync_filesystem(&dir).map_err(|source| GitError::Io {
            path: path.display().to_string(),
            source,
        })
    }

    /// Writes the committed content of `changes` to the work tree and the index.
    fn sync_worktree(&self, changes: &[FileChange]) -> Result<()> {
        let mut index = self.repo.index().map_err(self.err("read the index"))?;
        for c in changes {
            let abs = self.workdir.join(&c.path);
            match &c.content {
                Some(bytes) => {
                    write_atomic(&abs, bytes)?;
                    index
                        .add_path(Path::new(&c.path))
                        .map_err(self.err("stage a file"))?;
                }
                None => {
                    match std::fs::remove_file(&abs) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(source) => {
                            return Err(GitError::Io {
                                path: abs.display().to_string(),
                                source,
                            });
                        }
                    }
                    match index.remove_path(Path::new(&c.path)) {
                        Ok(()) => {}
                        Err(e) if e.code() == git2::ErrorCode::NotFound => {}
                        Err(e) => return Err(self.err("unstage a file")(e)),
                    }
                }
            }
        }
        index.write().map_err(self.err("write the index"))
    }

    /// After a crash between a commit and its work tree write: every file below `under`
    /// whose index entry differs from HEAD gets HEAD's content in the index and the work
    /// tree. A file a person edited but did not stage (index = HEAD) is left alone. Returns
    /// the restored paths.
    pub fn restore_unsynced(&self, under: &str) -> Result<Vec<String>> {
        let committed = self.read_committed(under)?;
        let index = self.repo.index().map_err(self.err("read the index"))?;
        let prefix = if under.is_empty() {
            String::new()
        } else {
            format!("{under}/")
        };
        let mut changes = Vec::new();
        for (rel, bytes) in committed {
            let path = format!("{prefix}{rel}");
            let head_id =
                Oid::hash_object(ObjectType::Blob, &bytes).map_err(self.err("hash a file"))?;
            let staged = index.get_path(Path::new(&path), 0).map(|e| e.id);
            if staged != Some(head_id) {
                changes.push(FileChange {
                    path,
                    content: Some(bytes),
                });
            }
        }
        drop(index);
        if !changes.is_empty() {
            self.sync_worktree(&changes)?;
        }
        Ok(changes.into_iter().map(|c| c.path).collect())
    }

    /// Commit messages from HEAD back to the root, newest first.
    pub fn messages(&self) -> Result<Vec<String>> {
        let Some(head) = self.head()? else {
            return Ok(Vec::new());
        };
        let mut walk = self.repo.revwalk().map_err(self.err("walk history"))?;
        walk.set_sorting(Sort::TOPOLOGICAL)
            .map_err(self.err("walk history"))?;
        walk.push(head).map_err(self.err("walk history"))?;
        let mut out = Vec::new();
        for oid in walk {
            let oid = oid.map_err(self.err("walk history"))?;
            let commit = self
                .repo
                .find_commit(oid)
                .map_err(self.err("read a commit"))?;
            out.push(String::from_utf8_lossy(commit.message_bytes()).into_owned());
        }
        Ok(out)
    }
}

fn signature(author: &Author, repo: &Path) -> Result<Signature<'static>> {
    Signature::now(&author.name, &author.email).map_err(git("make a signature", repo))
}

fn git(action: &str, repo: &Path) -> impl FnOnce(git2::Error) -> GitError + use<> {
    let action = action.to_owned();
    let repo = repo.display().to_string();
    move |source| GitError::Git {
        action,
        repo,
        source,
    }
}

/// `syncfs(2)`: every dirty page of the file system holding `f`. Elsewhere, `fsync` of the
/// directory plus libgit2's own fsync (turned on at first use).
#[cfg(target_os = "linux")]
fn sync_filesystem(f: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid open file descriptor, borrowed for the duration of the call.
    if unsafe { libc::syncfs(f.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn sync_filesystem(f: &std::fs::File) -> std::io::Result<()> {
    static FSYNC: std::sync::Once = std::sync::Once::new();
    FSYNC.call_once(|| {
        git2::opts::enable_caching(true);
        // SAFETY: a documented libgit2 option taking one int.
        unsafe {
            libgit2_sys::git_libgit2_opts(
                libgit2_sys::GIT_OPT_ENABLE_FSYNC_GITDIR as std::os::raw::c_int,
                1 as std::os::raw::c_int,
            );
        }
    });
    f.sync_all()
}

/// Temporary file in the same directory, renamed into place: readers never see half a file.
/// Not fsynced: the commit is the durable record, and [`Repo::restore_unsynced`] rewrites a
/// file whose index entry lags behind HEAD.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source| GitError::Io {
        path: path.display().to_string(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".provisio-")
        .tempfile_in(dir)
        .map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_with(files: &[(&str, &str)]) -> (tempfile::TempDir, Repo) {
        let dir = tempfile::tempdir().unwrap();
        for (p, c) in files {
            let abs = dir.path().join(p);
            std::fs::create_dir_all(abs.parent().unwrap()).unwrap();
            std::fs::write(abs, c).unwrap();
        }
        let repo = Repo::init_with_all(dir.path(), "initial", &Author::default()).unwrap();
        (dir, repo)
    }

    fn change(path: &str, content: &str) -> FileChange {
        FileChange {
            path: path.to_owned(),
            content: Some(content.as_bytes().to_vec()),
        }
    }

    #[test]
    fn commits_only_the_given_files_and_keeps_status_clean() {
        let (dir, repo) = repo_with(&[("reg/a.yaml", "a: 1\n"), ("other.txt", "x")]);
        // A person's staged, uncommitted change elsewhere must not be swept in.
        std::fs::write(dir.path().join("other.txt"), "staged by a person").unwrap();
        let mut index = repo.repo.index().unwrap();
        index.add_path(Path::new("other.txt")).unwrap();
        index.write().unwrap();

        let oid = repo
            .commit_files(
                &[change("reg/b.yaml", "b: 2\n")],
                "add b",
                &Author::default(),
            )
            .unwrap()
            .expect("a commit");
        let committed = repo.read_committed("reg").unwrap();
        assert_eq!(committed.keys().collect::<Vec<_>>(), ["a.yaml", "b.yaml"]);
        assert_eq!(repo.read_committed("").unwrap()["other.txt"], b"x");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("reg/b.yaml")).unwrap(),
            "b: 2\n"
        );
        let statuses = repo.repo.statuses(None).unwrap();
        let dirty: Vec<_> = statuses
            .iter()
            .filter_map(|s| s.path().ok().map(str::to_owned))
            .collect();
        assert_eq!(dirty, ["other.txt"], "only the person's change is pending");
        assert_eq!(repo.head().unwrap(), Some(oid));
        assert_eq!(repo.messages().unwrap(), ["add b", "initial"]);

        // Same content again: no commit.
        assert_eq!(
            repo.commit_files(
                &[change("reg/b.yaml", "b: 2\n")],
                "again",
                &Author::default()
            )
            .unwrap(),
            None
        );
    }

    #[test]
    fn restores_files_committed_but_not_written() {
        let (dir, repo) = repo_with(&[("reg/a.yaml", "a: 1\n")]);
        repo.commit_files(&[change("reg/a.yaml", "a: 2\n")], "a2", &Author::default())
            .unwrap();
        // Simulate the crash: work tree and index back to the old content.
        std::fs::write(dir.path().join("reg/a.yaml"), "a: 1\n").unwrap();
        let mut index = repo.repo.index().unwrap();
        index.add_path(Path::new("reg/a.yaml")).unwrap();
        index.write().unwrap();
        assert_eq!(repo.restore_unsynced("reg").unwrap(), ["reg/a.yaml"]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("reg/a.yaml")).unwrap(),
            "a: 2\n"
        );
        // An unstaged edit by a person is left alone.
        std::fs::write(dir.path().join("reg/a.yaml"), "a: 3\n").unwrap();
        assert!(repo.restore_unsynced("reg").unwrap().is_empty());
    }

    #[test]
    fn relative_paths_and_removal() {
        let (dir, repo) = repo_with(&[("reg/t/a.yaml", "a\n"), ("reg/t/b.yaml", "b\n")]);
        assert_eq!(repo.relative(&dir.path().join("reg")).unwrap(), "reg");
        assert_eq!(repo.relative(dir.path()).unwrap(), "");
        repo.commit_files(
            &[FileChange {
                path: "reg/t/a.yaml".to_owned(),
                content: None,
            }],
            "rm a",
            &Author::default(),
        )
        .unwrap();
        assert_eq!(
            repo.read_committed("reg/t")
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["b.yaml"]
        );
        assert!(!dir.path().join("reg/t/a.yaml").exists());
        let outside = tempfile::tempdir().unwrap();
        assert!(matches!(
            repo.relative(outside.path()),
            Err(GitError::Outside { .. })
        ));
    }
}
