//! The registry poller (`--registry-git URL --branch B`): keeps a local clone of the registry
//! repository at the branch's head, fetching with git2 every interval; a new head is checked
//! out (detached, forced: the clone is provisio's own) and reported as a change.

use std::path::{Path, PathBuf};
use std::time::Duration;

use git2::{ErrorCode, Oid, Repository};
use tracing::info;

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("cannot {action} in the registry clone {path}")]
    Git {
        action: String,
        path: PathBuf,
        #[source]
        source: git2::Error,
    },
    #[error("the registry repository has no branch `{branch}` at {url}")]
    NoBranch { url: String, branch: String },
    #[error("cannot create the registry clone directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Which registry repository to follow.
#[derive(Debug, Clone)]
pub struct PollConfig {
    pub url: String,
    pub branch: String,
    pub interval: Duration,
}

/// A local clone following one branch.
pub struct Poller {
    repo: Repository,
    dir: PathBuf,
    url: String,
    branch: String,
}

const REMOTE: &str = "origin";

impl Poller {
    /// Opens the clone in `dir`, creating it when `dir` is not a repository yet.
    pub fn open(cfg: &PollConfig, dir: &Path) -> Result<Poller, PollError> {
        std::fs::create_dir_all(dir).map_err(|source| PollError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let git = |action: &str| {
            let (action, path) = (action.to_owned(), dir.to_path_buf());
            move |source| PollError::Git {
                action,
                path,
                source,
            }
        };
        let repo = match Repository::open(dir) {
            Ok(r) => r,
            Err(e) if e.code() == ErrorCode::NotFound => {
                Repository::init(dir).map_err(git("create the clone"))?
            }
            Err(e) => return Err(git("open the clone")(e)),
        };
        match repo.find_remote(REMOTE) {
            Ok(_) => repo
                .remote_set_url(REMOTE, &cfg.url)
                .map_err(git("set the remote URL"))?,
            Err(e) if e.code() == ErrorCode::NotFound => {
                repo.remote(REMOTE, &cfg.url)
                    .map_err(git("add the remote"))?;
            }
            Err(e) => return Err(git("read the remote")(e)),
        }
        Ok(Poller {
            repo,
            dir: dir.to_path_buf(),
            url: cfg.url.clone(),
            branch: cfg.branch.clone(),
        })
    }

    fn git(&self, action: &str) -> impl FnOnce(git2::Error) -> PollError + use<> {
        let (action, path) = (action.to_owned(), self.dir.clone());
        move |source| PollError::Git {
            action,
            path,
            source,
        }
    }

    /// The commit checked out (short), or "nothing yet".
    pub fn describe(&self) -> String {
        match self.repo.head().ok().and_then(|h| h.target()) {
            Some(id) => id.to_string()[..12].to_owned(),
            None => "nothing yet".into(),
        }
    }

    /// Fetches the branch; when its head moved, checks it out and returns what changed.
    pub fn update(&mut self) -> Result<Option<String>, PollError> {
        let mut remote = self
            .repo
            .find_remote(REMOTE)
            .map_err(self.git("read the remote"))?;
        let tracking = format!("refs/remotes/{REMOTE}/{}", self.branch);
        let spec = format!("+refs/heads/{}:{tracking}", self.branch);
        remote
            .fetch(&[spec], None, None)
            .map_err(self.git(&format!("fetch {} from {}", self.branch, self.url)))?;
        drop(remote);
        let target: Oid = match self.repo.find_reference(&tracking) {
            Ok(r) => r.target().ok_or_else(|| PollError::NoBranch {
                url: self.url.clone(),
                branch: self.branch.clone(),
            })?,
            Err(e) if e.code() == ErrorCode::NotFound => {
                return Err(PollError::NoBranch {
                    url: self.url.clone(),
                    branch: self.branch.clone(),
                });
            }
            Err(e) => return Err(self.git("read the fetched branch")(e)),
        };
        let current = self.repo.head().ok().and_then(|h| h.target());
        if current == Some(target) {
            return Ok(None);
        }
        let commit = self
            .repo
            .find_commit(target)
            .map_err(self.git("read the fetched commit"))?;
        let mut co = git2::build::CheckoutBuilder::new();
        co.force().remove_untracked(true);
        self.repo
            .checkout_tree(commit.as_object(), Some(&mut co))
            .map_err(self.git("check out the fetched commit"))?;
        self.repo
            .set_head_detached(target)
            .map_err(self.git("move HEAD"))?;
        let subject = commit.summary().ok().flatten().unwrap_or("").to_owned();
        info!(commit = %target, subject, "registry moved");
        Ok(Some(format!(
            "registry commit {} ({subject})",
            &target.to_string()[..12]
        )))
    }
}
