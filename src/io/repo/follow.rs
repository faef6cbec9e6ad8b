//! A clone following one branch of a remote (watch `--registry-git URL --branch B`): fetched
//! every interval; a new head is checked out, detached and forced, and reported as a change.
//! The clone is provisio's own: watch never commits to it, and anything else in it is
//! overwritten by the remote's state (the registry's truth is the remote branch). It is held
//! under provisio's lock ([`super::lock`]) like every clone provisio writes to, so a watch
//! killed inside a fetch or a checkout does not leave git lock files that fail every later
//! fetch, and two watches cannot follow into one clone.

use std::path::Path;
use std::time::Duration;

use tracing::info;

use super::lock::{self, Lock};
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
    /// provisio's lock on the clone, held while this value lives.
    _lock: Lock,
}

impl Follower {
    /// Opens the clone in `dir`, creating it when `dir` is not a repository yet, and takes
    /// provisio's lock on it, removing the git lock files a killed provisio run left (one
    /// that is not provisio's is an error: [`super::lock`]).
    pub fn open(cfg: &FollowConfig, dir: &Path) -> Result<Follower> {
        let mut repo = Repo::open_or_init(dir, &cfg.branch)?;
        let lock = lock::acquire(repo.git_dir())?;
        repo.set_transport(cfg.transport.clone());
        repo.ensure_remote(REMOTE, &cfg.url)?;
        Ok(Follower {
            repo,
            url: cfg.url.clone(),
            branch: cfg.branch.clone(),
            _lock: lock,
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A repository at `dir` whose `main` has one more commit (a file `n` holding `text`).
    fn commit(dir: &Path, text: &str) {
        let repo = git2::Repository::open(dir)
            .or_else(|_| git2::Repository::init(dir))
            .unwrap();
        std::fs::write(dir.join("n"), text).unwrap();
        let mut index = repo.index().unwrap();
        index.add_path(Path::new("n")).unwrap();
        index.write().unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        let parent = repo
            .find_reference("refs/heads/main")
            .ok()
            .and_then(|r| r.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        repo.commit(Some("refs/heads/main"), &sig, &sig, text, &tree, &parents)
            .unwrap();
    }

    /// What a watch `--registry-git` SIGKILLed inside a fetch leaves in its clone — the lock
    /// record of a run that never released it, then (newer) libgit2's lock files of the fetch
    /// — must not block every later watch: the next one removes them and follows the branch.
    #[test]
    fn the_git_locks_a_killed_watch_left_in_its_registry_clone_do_not_block_the_next() {
        let d = tempfile::tempdir().unwrap();
        let remote = d.path().join("remote");
        std::fs::create_dir_all(&remote).unwrap();
        commit(&remote, "1");
        let cfg = FollowConfig {
            url: remote.display().to_string(),
            branch: "main".into(),
            interval: Duration::from_secs(1),
            transport: Transport::default(),
        };
        let clone = d.path().join("clone");
        let mut follower = Follower::open(&cfg, &clone).unwrap();
        assert!(follower.update().unwrap().is_some());
        drop(follower);

        let git_dir = clone.join(".git");
        std::fs::write(
            git_dir.join(super::super::lock::LOCK_FILE),
            "provisio running pid=4194303\n",
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let left = [
            git_dir.join("FETCH_HEAD.lock"),
            git_dir.join("refs/remotes/origin/main.lock"),
        ];
        for lock in &left {
            std::fs::write(lock, "half written").unwrap();
        }
        commit(&remote, "2");

        let mut follower = Follower::open(&cfg, &clone).unwrap();
        let moved = follower.update();
        assert!(
            matches!(moved, Ok(Some(_))),
            "the killed watch's locks block the next: {moved:?}"
        );
        for lock in &left {
            assert!(!lock.exists(), "{} left", lock.display());
        }
    }
}
