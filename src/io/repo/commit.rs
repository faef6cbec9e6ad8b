//! Commits built from HEAD's tree plus a change set, for the registry side (the intake's
//! tenant files) and the output side ([`super::output`] builds its trees from the output
//! directory and commits them with [`Repo::commit_tree`]).
//!
//! A commit is never built from the index, so changes a person staged are not swept in. Its
//! objects are made durable with one `syncfs` of the git directory's file system (not one
//! fsync per object: that is what lets a group of events cost one flush), then HEAD's branch
//! is moved — only if it still points at the commit the tree was built on — and flushed
//! again. Then the work tree files are replaced atomically and their index entries updated,
//! so `git status` stays clean. If the process dies between the ref update and the work tree
//! write, [`Repo::restore_unsynced`] puts the committed version back.

use std::collections::BTreeMap;
use std::path::Path;

use git2::{FileMode, ObjectType, Sort, TreeWalkMode, TreeWalkResult};

use super::{Author, Oid, Repo, Result, io, signature};
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

impl Repo {
    /// Every file below `under` (a `/`-separated directory, "" = the root) in HEAD's tree,
    /// keyed by its path relative to `under`.
    pub fn read_committed(&self, under: &str) -> Result<BTreeMap<String, Vec<u8>>> {
        let Some(head) = self.head()? else {
            return Ok(BTreeMap::new());
        };
        let commit = self
            .repo
            .find_commit(head)
            .map_err(self.err("read HEAD's commit"))?;
        let root = commit.tree().map_err(self.err("read HEAD's tree"))?;
        self.read_tree_below(root, under)
    }

    /// Every file below `under` at revision `rev` (anything `git rev-parse` takes: a branch,
    /// `origin/main`, a commit id), keyed by its path relative to `under`; `Ok(None)` when the
    /// revision does not exist.
    pub fn read_revision(
        &self,
        rev: &str,
        under: &str,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>> {
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
    ) -> Result<BTreeMap<String, Vec<u8>>> {
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
        let oid = self.commit_on_head(&tree, parent.as_ref(), message, author, Flush::Synced)?;
        self.sync_worktree(changes)?;
        Ok(Some(oid))
    }

    /// Writes a commit of `tree` on `parent` and moves HEAD's branch to it, only if the branch
    /// still points at `parent` (a commit someone else made meanwhile is never lost). With
    /// [`Flush::Synced`] the objects are on disk before the branch moves, and the branch
    /// after.
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
        if flush == Flush::Synced {
            self.sync_gitdir()?;
        }
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

    /// Writes the committed content of `changes` to the work tree and the index.
    fn sync_worktree(&self, changes: &[FileChange]) -> Result<()> {
        let mut index = self.repo.index().map_err(self.err("read the index"))?;
        for c in changes {
            let abs = self.workdir().join(&c.path);
            match &c.content {
                Some(bytes) => {
                    fsx::write_atomic(&abs, bytes).map_err(io("write", &abs))?;
                    index
                        .add_path(Path::new(&c.path))
                        .map_err(self.err("stage a file"))?;
                }
                None => {
                    match std::fs::remove_file(&abs) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(io("remove", &abs)(e)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::repo::GitError;

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
