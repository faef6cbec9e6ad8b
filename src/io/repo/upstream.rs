//! provisio's own clone of one branch of a shared repository, which it commits to and pushes
//! (`serve --registry-git URL --branch B`). The remote is the truth and the clone is
//! disposable:
//!
//! - it is opened onto the remote head: commits a previous run left locally were never
//!   acknowledged (an answer waits for the push) and are dropped;
//! - after a push that cannot be made, the branch is rolled back onto the remote-tracking
//!   head, so the clone never holds what the remote does not;
//! - a push is never forced; the caller redoes its work on top of a remote that moved.
//!
//! The clone holds provisio's lock ([`super::lock`]) while open: nothing else writes to it.

use std::path::Path;

use git2::{ObjectType, ResetType};
use tracing::info;

use super::lock::{self, Lock};
use super::{GitError, Oid, Repo, Result, Transport, io};

/// The remote of provisio's clones.
pub const REMOTE: &str = "origin";

/// A branch of a shared repository, and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub url: String,
    pub branch: String,
    pub transport: Transport,
}

impl Repo {
    /// Opens `dir` as provisio's clone of `up` (created when `dir` holds no repository yet;
    /// never a repository found in a parent directory), takes provisio's lock on it (removing
    /// the git lock files a killed run left: [`super::lock`]), fetches
    /// the branch and puts the local branch, index and work tree on the remote head.
    pub fn open_upstream(dir: &Path, up: &Upstream) -> Result<(Repo, Lock)> {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        let raw = match super::handle::open(dir) {
            Ok(r) => r,
            Err(e) if e.code() == git2::ErrorCode::NotFound => {
                super::handle::init(dir).map_err(super::git("create a repository", dir))?
            }
            Err(e) => return Err(super::git("open the repository", dir)(e)),
        };
        let mut repo = Repo::with_workdir(raw, dir)?;
        repo.set_transport(up.transport.clone());
        let lock = lock::acquire(repo.git_dir())?;
        repo.ensure_remote(REMOTE, &up.url)?;
        let head = repo.reset_to_upstream(&up.branch, &up.url)?;
        info!(branch = %up.branch, commit = %head, "the clone is on the remote head");
        Ok((repo, lock))
    }

    /// Fetches `branch` and moves the local branch (index and work tree included) onto the
    /// remote head, which it returns.
    pub fn reset_to_upstream(&self, branch: &str, url: &str) -> Result<Oid> {
        let head = self
            .fetch_branch(REMOTE, branch)?
            .ok_or_else(|| GitError::NoBranch {
                url: super::transport::redact(url),
                branch: branch.to_owned(),
            })?;
        self.put_branch_at(branch, head)?;
        Ok(head)
    }

    /// Moves the local branch onto the remote-tracking head as last fetched or pushed (no
    /// network): what the group being rolled back committed is dropped.
    pub fn roll_back_to_tracking(&self, branch: &str) -> Result<Option<Oid>> {
        let tracking = self.tracking_head(REMOTE, branch)?;
        if let Some(t) = tracking {
            self.put_branch_at(branch, t)?;
        }
        Ok(tracking)
    }

    /// How many commits the local `branch` has that `remote`'s tracking branch lacks.
    pub fn unpushed(&self, remote: &str, branch: &str) -> Result<usize> {
        let local = self
            .repo
            .find_reference(&format!("refs/heads/{branch}"))
            .ok()
            .and_then(|r| r.target());
        let Some(local) = local else { return Ok(0) };
        match self.tracking_head(remote, branch)? {
            None => {
                let mut walk = self.repo.revwalk().map_err(self.err("walk history"))?;
                walk.push(local).map_err(self.err("walk history"))?;
                Ok(walk.count())
            }
            Some(remote) => Ok(self
                .repo
                .graph_ahead_behind(local, remote)
                .map_err(self.err("compare with the remote"))?
                .0),
        }
    }

    /// Checks out `branch` at `commit`: the branch created or moved, HEAD on it, index and
    /// work tree forced to the commit, a pending intake intent dropped (its commit is either
    /// in `commit` already or gone).
    fn put_branch_at(&self, branch: &str, commit: Oid) -> Result<()> {
        let refname = format!("refs/heads/{branch}");
        let obj = self
            .repo
            .find_object(commit, Some(ObjectType::Commit))
            .map_err(self.err("read the remote head"))?;
        self.repo
            .reference(&refname, commit, true, "provisio: onto the remote head")
            .map_err(self.err("move the branch"))?;
        self.repo
            .set_head(&refname)
            .map_err(self.err("point HEAD at the branch"))?;
        let mut co = git2::build::CheckoutBuilder::new();
        co.force().remove_untracked(true);
        self.repo
            .reset(&obj, ResetType::Hard, Some(&mut co))
            .map_err(self.err("reset onto the remote head"))?;
        self.clear_intent()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::repo::Author;
    use git2::Repository;

    /// A bare remote with one commit on `main`, its file:// URL.
    fn remote(dir: &Path) -> String {
        let work = dir.join("seed");
        std::fs::create_dir_all(&work).unwrap();
        std::fs::write(work.join("a.yaml"), "a: 1\n").unwrap();
        let seed = Repo::init_with_all(&work, "seed", &Author::default()).unwrap();
        let bare = dir.join("remote.git");
        Repository::init_bare(&bare).unwrap();
        let url = format!("file://{}", bare.display());
        seed.ensure_remote(REMOTE, &url).unwrap();
        let head = seed.repo.head().unwrap().shorthand().unwrap().to_owned();
        seed.push_branch(REMOTE, &head).unwrap();
        // The remote's branch is `main` whatever the seed's default was.
        let b = Repository::open(&bare).unwrap();
        let id = b
            .find_reference(&format!("refs/heads/{head}"))
            .unwrap()
            .target()
            .unwrap();
        b.reference("refs/heads/main", id, true, "main").unwrap();
        url
    }

    #[test]
    fn opens_onto_the_remote_head_and_drops_unpushed_commits() {
        let d = tempfile::tempdir().unwrap();
        let url = remote(d.path());
        let up = Upstream {
            url: url.clone(),
            branch: "main".into(),
            transport: Transport::default(),
        };
        let clone = d.path().join("clone");
        let (repo, lock) = Repo::open_upstream(&clone, &up).unwrap();
        let remote_head = repo.head().unwrap().unwrap();
        assert_eq!(
            std::fs::read_to_string(clone.join("a.yaml")).unwrap(),
            "a: 1\n"
        );
        // A local commit that never reached the remote (a run killed before its push).
        repo.commit_files(
            &[crate::io::repo::commit::FileChange {
                path: "b.yaml".into(),
                content: Some(b"b\n".to_vec()),
            }],
            "unpushed",
            &Author::default(),
        )
        .unwrap();
        assert_eq!(repo.unpushed(REMOTE, "main").unwrap(), 1);
        // A second opener is refused while the first holds the clone.
        assert!(matches!(
            Repo::open_upstream(&clone, &up),
            Err(GitError::Locked(_))
        ));
        drop((repo, lock));
        let (repo, _lock) = Repo::open_upstream(&clone, &up).unwrap();
        assert_eq!(repo.head().unwrap(), Some(remote_head));
        assert!(!clone.join("b.yaml").exists());
        assert_eq!(repo.unpushed(REMOTE, "main").unwrap(), 0);
    }

    #[test]
    fn a_missing_branch_is_named() {
        let d = tempfile::tempdir().unwrap();
        let url = remote(d.path());
        let up = Upstream {
            url,
            branch: "nope".into(),
            transport: Transport::default(),
        };
        let e = Repo::open_upstream(&d.path().join("c"), &up).err().unwrap();
        assert!(matches!(e, GitError::NoBranch { .. }), "{e}");
    }
}
