//! Commits built from HEAD's tree plus a change set, for the registry side (the intake's
//! tenant files) and the output side ([`super::output`] builds its trees from the output
//! directory and commits them with [`Repo::commit_tree`]).
//!
//! A commit is never built from the index, so changes a person staged are not swept in. On
//! the registry side the order of writes is: the intent (what the work tree is about to
//! get, [`super::worktree`]), the objects, one `syncfs` of the git directory's file system
//! (not one fsync per object: that is what lets a group of events cost one flush), HEAD's
//! branch moved — only if it still points at the commit the caller's state was built on —
//! and flushed again; then the work tree and the index are brought in step under git's
//! `index.lock`. Once the branch moved the change is recorded, whatever happens next: a
//! work-tree sync that cannot run now (the index locked by someone else) is a warning, and
//! the intent is finished later by [`Repo::repair_intake`].

use std::collections::BTreeMap;
use std::path::Path;

use git2::{FileMode, ObjectType, Sort, TreeWalkMode, TreeWalkResult};

use super::worktree::SyncReport;
use super::{Author, GitError, Oid, Repo, Result, io, signature};
use crate::io::fsx;

/// Whether a commit is flushed to disk before and after its branch moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// The registry: an acknowledged billing event must survive a power cut.
    Synced,
    /// The output: derived from the registry, regenerated if lost.
    Lazy,
}

/// One file to write, by path relative to the repository root (`/`-separated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    pub path: String,
    /// `None` removes the file.
    pub content: Option<Vec<u8>>,
}

/// An entry of a committed tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    /// A file and its bytes.
    File(Vec<u8>),
    /// A symbolic link and its target.
    Link(String),
    /// A submodule (a commit of another repository).
    Submodule,
}

/// What [`Repo::commit_files_on`] recorded.
#[derive(Debug, Default)]
pub struct Recorded {
    /// The new commit; `None` when the files already had that content.
    pub commit: Option<Oid>,
    /// What the work-tree sync wrote, and the paths it left alone (a person's edit).
    pub synced: SyncReport,
    /// Failures after the branch moved (a flush, a work-tree sync that will be repaired):
    /// the change is recorded all the same.
    pub warnings: Vec<GitError>,
}

impl Repo {
    /// Every file below `under` (a `/`-separated directory, "" = the root) in HEAD's tree,
    /// keyed by its path relative to `under`.
    pub fn read_committed(&self, under: &str) -> Result<BTreeMap<String, Vec<u8>>> {
        self.read_committed_at(self.head()?, under)
    }

    /// [`Repo::read_committed`] at `commit` (`None`: nothing committed yet).
    pub fn read_committed_at(
        &self,
        commit: Option<Oid>,
        under: &str,
    ) -> Result<BTreeMap<String, Vec<u8>>> {
        Ok(self
            .read_entries_at(commit, under)?
            .into_iter()
            .filter_map(|(path, e)| match e {
                Committed::File(bytes) => Some((path, bytes)),
                _ => None,
            })
            .collect())
    }

    /// Every entry below `under` in the tree of `commit`, by path relative to `under`:
    /// files, symbolic links (their target) and submodules — what a reader must pass on
    /// rather than take a link's target for a file's text.
    pub fn read_entries_at(
        &self,
        commit: Option<Oid>,
        under: &str,
    ) -> Result<BTreeMap<String, Committed>> {
        let Some(id) = commit else {
            return Ok(BTreeMap::new());
        };
        let root = self
            .repo
            .find_commit(id)
            .and_then(|c| c.tree())
            .map_err(self.err("read a commit's tree"))?;
        self.read_tree_below(root, under)
    }

    /// Every entry below `under` at revision `rev` (anything `git rev-parse` takes: a branch,
    /// `origin/main`, a commit id), as [`Repo::read_entries_at`] gives them; `Ok(None)` when
    /// the revision does not exist.
    pub fn read_revision(
        &self,
        rev: &str,
        under: &str,
    ) -> Result<Option<BTreeMap<String, Committed>>> {
        let tree = match self.repo.revparse_single(rev) {
            Ok(obj) => obj
                .peel_to_tree()
                .map_err(self.err(&format!("read the tree of {rev}")))?,
            Err(e)
                if matches!(
                    e.code(),
                    git2::ErrorCode::NotFound
                        | git2::ErrorCode::InvalidSpec
                        | git2::ErrorCode::Ambiguous
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(self.err(&format!("resolve {rev}"))(e)),
        };
        self.read_tree_below(tree, under).map(Some)
    }

    fn read_tree_below(
        &self,
        root: git2::Tree<'_>,
        under: &str,
    ) -> Result<BTreeMap<String, Committed>> {
        let mut files = BTreeMap::new();
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
            let name = entry.name().unwrap_or_default();
            match entry.kind() {
                Some(ObjectType::Blob) => {}
                Some(ObjectType::Commit) => {
                    files.insert(format!("{dir}{name}"), Committed::Submodule);
                    return TreeWalkResult::Ok;
                }
                _ => return TreeWalkResult::Ok,
            }
            let link = entry.filemode() == i32::from(FileMode::Link);
            match self.repo.find_blob(entry.id()) {
                Ok(blob) => {
                    let content = blob.content().to_vec();
                    let value = if link {
                        Committed::Link(String::from_utf8_lossy(&content).into_owned())
                    } else {
                        Committed::File(content)
                    };
                    files.insert(format!("{dir}{name}"), value);
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

    /// Commits `changes` on top of HEAD with `message` (see [`Repo::commit_files_on`]).
    pub fn commit_files(
        &self,
        changes: &[FileChange],
        message: &str,
        author: &Author,
    ) -> Result<Recorded> {
        self.commit_files_on(self.head()?, changes, message, author, Flush::Synced)
    }

    /// Commits `changes` on top of `base` — which must still be HEAD when the branch moves:
    /// a commit someone made meanwhile is never built over without being seen — and brings
    /// the work tree and index in step. `Err` means nothing was recorded; `Ok` means the
    /// commit is on the branch (`commit: None` when the files already had that content),
    /// with whatever went wrong afterwards in `warnings`. See the module documentation for
    /// the order of writes. With [`Flush::Lazy`] nothing is flushed: for a clone whose
    /// commits only count once pushed ([`super::upstream`]).
    pub fn commit_files_on(
        &self,
        base: Option<Oid>,
        changes: &[FileChange],
        message: &str,
        author: &Author,
        flush: Flush,
    ) -> Result<Recorded> {
        let parent = match base {
            Some(h) => Some(
                self.repo
                    .find_commit(h)
                    .map_err(self.err("read HEAD's commit"))?,
            ),
            None => None,
        };
        let base_tree = match &parent {
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
        let mut intent = self.pending_intent()?.unwrap_or_default();
        for c in changes {
            let old = base_tree
                .get_path(Path::new(&c.path))
                .ok()
                .filter(|e| e.kind() == Some(ObjectType::Blob))
                .map(|e| e.id());
            let new = match &c.content {
                Some(bytes) => {
                    let blob = self.repo.blob(bytes).map_err(self.err("write a blob"))?;
                    update.upsert(c.path.as_str(), blob, FileMode::Blob);
                    Some(blob)
                }
                None => {
                    update.remove(c.path.as_str());
                    None
                }
            };
            intent.add(c.path.clone(), old, new);
        }
        let tree_id = update
            .create_updated(&self.repo, &base_tree)
            .map_err(self.err("build the tree"))?;
        if tree_id == base_tree.id() && parent.is_some() {
            return Ok(Recorded::default());
        }
        let tree = self
            .repo
            .find_tree(tree_id)
            .map_err(self.err("read the new tree"))?;
        // The intent first (flushed with the objects): after a crash, start-up knows which
        // work-tree paths are provisio's to finish and which are a person's.
        self.write_intent(&intent)?;
        let oid = self.commit_on_head(&tree, parent.as_ref(), message, author, flush)?;
        let mut committed = Recorded {
            commit: Some(oid),
            ..Recorded::default()
        };
        // Recorded from here on: what fails now is reported, not undone.
        if flush == Flush::Synced
            && let Err(e) = self.sync_gitdir()
        {
            committed.warnings.push(e);
        }
        match self.sync_intent(&intent) {
            Ok(report) => committed.synced = report,
            Err(e) => committed.warnings.push(e),
        }
        Ok(committed)
    }

    /// Writes a commit of `tree` on `parent` and moves HEAD's branch to it, only if the branch
    /// still points at `parent` (a commit someone else made meanwhile is never lost). With
    /// [`Flush::Synced`] the objects are on disk before the branch moves (the caller flushes
    /// the branch after: once it moved, a failed flush no longer means "not recorded").
    pub(super) fn commit_on_head(
        &self,
        tree: &git2::Tree<'_>,
        parent: Option<&git2::Commit<'_>>,
        message: &str,
        author: &Author,
        flush: Flush,
    ) -> Result<Oid> {
        let sig = signature(author, self.workdir())?;
        let parents: Vec<&git2::Commit<'_>> = parent.into_iter().collect();
        let oid = self
            .repo
            .commit(None, &sig, &sig, message, tree, &parents)
            .map_err(self.err("commit"))?;
        if flush == Flush::Synced {
            self.sync_gitdir()?;
        }
        self.move_head(oid, parent.map(|p| p.id()), message)?;
        Ok(oid)
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
        fsx::sync_filesystem_of(path).map_err(io("flush", path))
    }

    /// Whether HEAD holds every one of `changes` (a file with that content, or no file).
    pub fn head_has(&self, changes: &[FileChange]) -> Result<bool> {
        for c in changes {
            let want = match &c.content {
                Some(bytes) => Some(
                    super::pack::object_id(ObjectType::Blob, bytes)
                        .map_err(self.err("hash a file"))?,
                ),
                None => None,
            };
            if self.head_blob(&c.path)? != want {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Commit messages from HEAD back to the root, newest first.
    pub fn messages(&self) -> Result<Vec<String>> {
        self.messages_from(self.head()?)
    }

    /// Commit messages from `commit` back to the root, newest first.
    pub fn messages_from(&self, commit: Option<Oid>) -> Result<Vec<String>> {
        let Some(head) = commit else {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::repo::GitError;
    use crate::io::repo::worktree::Uncommitted;

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

    /// Paths `git status` would list, from a fresh repository handle (another process).
    fn dirty(dir: &Path) -> Vec<String> {
        let other = git2::Repository::open(dir).unwrap();
        let statuses = other.statuses(None).unwrap();
        statuses
            .iter()
            .filter_map(|s| s.path().ok().map(str::to_owned))
            .collect()
    }

    /// A person stages `path` with `content` from another repository handle and commits it.
    fn person_commits(dir: &Path, path: &str, content: &str) {
        std::fs::write(dir.join(path), content).unwrap();
        let other = git2::Repository::open(dir).unwrap();
        let mut index = other.index().unwrap();
        index.add_path(Path::new(path)).unwrap();
        index.write().unwrap();
        let tree = other.find_tree(index.write_tree().unwrap()).unwrap();
        let head = other.head().unwrap().peel_to_commit().unwrap();
        let sig = git2::Signature::now("person", "p@example.com").unwrap();
        other
            .commit(Some("HEAD"), &sig, &sig, "by hand", &tree, &[&head])
            .unwrap();
    }

    #[test]
    fn commits_only_the_given_files_and_keeps_status_clean() {
        let (dir, repo) = repo_with(&[("reg/a.yaml", "a: 1\n"), ("other.txt", "x")]);
        // A person's staged, uncommitted change elsewhere must not be swept in.
        std::fs::write(dir.path().join("other.txt"), "staged by a person").unwrap();
        let mut index = repo.repo.index().unwrap();
        index.add_path(Path::new("other.txt")).unwrap();
        index.write().unwrap();

        let done = repo
            .commit_files(
                &[change("reg/b.yaml", "b: 2\n")],
                "add b",
                &Author::default(),
            )
            .unwrap();
        let oid = done.commit.expect("a commit");
        assert!(done.warnings.is_empty(), "{:?}", done.warnings);
        assert_eq!(done.synced.written, ["reg/b.yaml"]);
        let committed = repo.read_committed("reg").unwrap();
        assert_eq!(committed.keys().collect::<Vec<_>>(), ["a.yaml", "b.yaml"]);
        assert_eq!(repo.read_committed("").unwrap()["other.txt"], b"x");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("reg/b.yaml")).unwrap(),
            "b: 2\n"
        );
        assert_eq!(
            dirty(dir.path()),
            ["other.txt"],
            "only the person's change is pending"
        );
        assert_eq!(repo.head().unwrap(), Some(oid));
        assert_eq!(repo.messages().unwrap(), ["add b", "initial"]);
        assert_eq!(repo.pending_intent().unwrap(), None);

        // Same content again: no commit.
        assert_eq!(
            repo.commit_files(
                &[change("reg/b.yaml", "b: 2\n")],
                "again",
                &Author::default()
            )
            .unwrap()
            .commit,
            None
        );
    }

    /// The index is re-read under `index.lock` before provisio edits it: a file another
    /// process committed meanwhile stays tracked (a cached, older index written back made it
    /// look deleted and untracked).
    #[test]
    fn another_authors_commit_stays_in_the_index() {
        let (dir, repo) = repo_with(&[("reg/a.yaml", "a: 1\n")]);
        // provisio commits once (a long-lived handle, as serve's writer has).
        repo.commit_files(&[change("reg/b.yaml", "b\n")], "b", &Author::default())
            .unwrap();
        person_commits(dir.path(), "reg/person.yaml", "mine\n");
        let done = repo
            .commit_files(&[change("reg/c.yaml", "c\n")], "c", &Author::default())
            .unwrap();
        assert!(done.commit.is_some() && done.warnings.is_empty());
        assert!(dirty(dir.path()).is_empty(), "{:?}", dirty(dir.path()));
    }

    /// A commit built on a HEAD that moved meanwhile is refused (nothing recorded).
    #[test]
    fn a_moved_head_refuses_the_commit() {
        let (dir, repo) = repo_with(&[("reg/a.yaml", "a: 1\n")]);
        let seen = repo.head().unwrap();
        person_commits(dir.path(), "reg/person.yaml", "mine\n");
        let e = repo
            .commit_files_on(
                seen,
                &[change("reg/c.yaml", "c\n")],
                "c",
                &Author::default(),
                Flush::Synced,
            )
            .unwrap_err();
        assert!(e.to_string().contains("move HEAD"), "{e}");
        assert!(!repo.read_committed("reg").unwrap().contains_key("c.yaml"));
    }

    /// `index.lock` held by another git process: the commit is recorded and says so (a
    /// warning), the work tree is left as it was, and the sync is finished later from the
    /// intent file.
    #[test]
    fn a_locked_index_is_a_warning_and_is_repaired_later() {
        let (dir, repo) = repo_with(&[("reg/a.yaml", "a: 1\n")]);
        let lock = repo.git_dir().join("index.lock");
        std::fs::write(&lock, "").unwrap();
        let done = repo
            .commit_files(&[change("reg/a.yaml", "a: 2\n")], "a2", &Author::default())
            .unwrap();
        assert!(done.commit.is_some());
        assert!(
            matches!(done.warnings.as_slice(), [GitError::IndexLocked { .. }]),
            "{:?}",
            done.warnings
        );
        assert_eq!(repo.read_committed("reg").unwrap()["a.yaml"], b"a: 2\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("reg/a.yaml")).unwrap(),
            "a: 1\n",
            "nothing written without the index lock"
        );
        assert!(repo.pending_intent().unwrap().is_some());
        // The pending sync is provisio's, not a person's edit.
        assert!(
            repo.uncommitted(&["reg/a.yaml".to_owned()])
                .unwrap()
                .is_empty()
        );
        // Still locked: the repair waits, then says so.
        assert!(matches!(
            repo.repair_intake(),
            Err(GitError::IndexLocked { .. })
        ));
        std::fs::remove_file(&lock).unwrap();
        let report = repo.repair_intake().unwrap();
        assert_eq!(report.written, ["reg/a.yaml"]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("reg/a.yaml")).unwrap(),
            "a: 2\n"
        );
        assert!(dirty(dir.path()).is_empty(), "{:?}", dirty(dir.path()));
        assert_eq!(repo.pending_intent().unwrap(), None);
    }

    /// A person's staged and unstaged edits are theirs: reported by `uncommitted`, never
    /// restored or overwritten by a repair.
    #[test]
    fn a_persons_edits_are_never_overwritten() {
        let (dir, repo) = repo_with(&[("reg/a.yaml", "a: 1\n"), ("reg/b.yaml", "b: 1\n")]);
        // Staged edit of a, unstaged edit of b, an untracked c.
        std::fs::write(dir.path().join("reg/a.yaml"), "a: staged\n").unwrap();
        let other = git2::Repository::open(dir.path()).unwrap();
        let mut index = other.index().unwrap();
        index.add_path(Path::new("reg/a.yaml")).unwrap();
        index.write().unwrap();
        std::fs::write(dir.path().join("reg/b.yaml"), "b: unstaged\n").unwrap();
        std::fs::write(dir.path().join("reg/c.yaml"), "c: untracked\n").unwrap();
        let paths: Vec<String> = ["reg/a.yaml", "reg/b.yaml", "reg/c.yaml", "reg/d.yaml"]
            .map(str::to_owned)
            .into();
        let found = repo.uncommitted(&paths).unwrap();
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            [
                ("reg/a.yaml".to_owned(), Uncommitted::Staged),
                ("reg/b.yaml".to_owned(), Uncommitted::Unstaged),
                ("reg/c.yaml".to_owned(), Uncommitted::Untracked),
            ]
        );
        // No intent: a start-up repair touches nothing.
        assert_eq!(repo.repair_intake().unwrap(), SyncReport::default());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("reg/a.yaml")).unwrap(),
            "a: staged\n"
        );
        // A commit racing with an unstaged edit: recorded, and the edit is kept.
        let done = repo
            .commit_files(&[change("reg/b.yaml", "b: 2\n")], "b2", &Author::default())
            .unwrap();
        assert_eq!(done.synced.kept, ["reg/b.yaml"]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("reg/b.yaml")).unwrap(),
            "b: unstaged\n"
        );
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
        assert!(dirty(dir.path()).is_empty());
        let outside = tempfile::tempdir().unwrap();
        assert!(matches!(
            repo.relative(outside.path()),
            Err(GitError::Outside { .. })
        ));
    }
}
