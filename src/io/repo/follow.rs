//! A clone following one branch of a remote (watch `--registry-git URL --branch B`): fetched
//! every interval; a new head is checked out, detached and forced, and reported as a change.
//! The clone is provisio's own: watch never commits to it, and anything else in it is
//! overwritten by the remote's state (the registry's truth is the remote branch).

use std::path::Path;
use std::time::Duration;

use tracing::info;

use super::{GitError, Oid, Repo, Result, Transport};

const REMOTE: &str = "origin";

/// Which registry repository to follow.
#[derive(Debug, Clone)]
pub struct FollowConfig {
    pub url: String,
    pub branch: String,
    pub interval: Duration,
    /// How the registry remote is reached.
    pub transport: Transport,
}

/// A local clone following one branch.
pub struct Follower {
    repo: Repo,
    url: String,
    branch: String,
}

impl Follower {
    /// Opens the clone in `dir`, creating it when `dir` is not a repository yet.
    pub fn open(cfg: &FollowConfig, dir: &Path) -> Result<Follower> {
        let (mut repo, _) = Repo::open_or_init(dir)?;
        repo.set_transport(cfg.transport.clone());
        repo.ensure_remote(REMOTE, &cfg.url)?;
        Ok(Follower {
            repo,
            url: cfg.url.clone(),
            branch: cfg.branch.clone(),
        })
    }

    /// The commit checked out (short), or "nothing yet".
    pub fn describe(&self) -> String {
        match self.repo.head().ok().flatten() {
            Some(id) => id.to_string()[..12].to_owned(),
            None => "nothing yet".into(),
        }
    }

    /// The commit checked out.
    pub fn head(&self) -> Option<Oid> {
        self.repo.head().ok().flatten()
    }

    /// The committer time (Unix seconds) of the earliest commit on the first-parent line from
    /// HEAD back to `last_valid` (excluded): the earliest moment the registry can have become
    /// invalid. HEAD's own when `last_valid` is unknown or more than 1,000 commits back;
    /// `None` before anything was fetched.
    pub fn first_commit_after(&self, last_valid: Option<Oid>) -> Result<Option<i64>> {
        let Some(head) = self.head() else {
            return Ok(None);
        };
        let read = |id: Oid| {
            self.repo
                .repo
                .find_commit(id)
                .map_err(self.repo.err("read the registry history"))
        };
        let head_commit = read(head)?;
        let Some(valid) = last_valid else {
            return Ok(Some(head_commit.committer().when().seconds()));
        };
        let mut earliest = head_commit.clone();
        let mut current = head_commit.clone();
        for _ in 0..1_000 {
            if current.id() == valid {
                return Ok(Some(earliest.committer().when().seconds()));
            }
            earliest = current.clone();
            match current.parent_ids().next() {
                Some(p) => current = read(p)?,
                None => break,
            }
        }
        Ok(Some(head_commit.committer().when().seconds()))
    }

    /// Fetches the branch; when its head moved, checks it out and returns what changed.
    pub fn update(&mut self) -> Result<Option<String>> {
        let no_branch = || GitError::NoBranch {
            url: super::transport::redact(&self.url),
            branch: self.branch.clone(),
        };
        let target: Oid = self
            .repo
            .fetch_branch(REMOTE, &self.branch)?
            .ok_or_else(no_branch)?;
        if self.repo.head()? == Some(target) {
            return Ok(None);
        }
        self.repo.checkout_detached(target)?;
        let subject = self.repo.summary(target)?;
        info!(commit = %target, subject, "registry moved");
        Ok(Some(format!(
            "registry commit {} ({subject})",
            &target.to_string()[..12]
        )))
    }
}
