//! Moving commits between a repository and its remote: one push attempt (never forced) with
//! its failure classified, so the caller knows whether to regenerate on top, wait and retry,
//! or give up; and moving a branch or a detached HEAD onto a fetched commit, work tree
//! included. The retry policy and what "regenerate on top" means belong to the caller
//! (`ops::deliver`).

use git2::{ObjectType, ResetType};

pub use super::failure::PushFailure;
use super::pack::FreshPacks;
use super::push::Made;
use super::transport::{Scheme, redact};
use super::{Oid, RemoteError, Repo, Result};

impl Repo {
    /// Pushes `branch` to the same branch of `remote`, never forced, with the packs provisio
    /// stored ([`super::push`]): into a local remote (a path or `file://` URL) directly, to an
    /// https (or plain http) one by [`super::send_http`], to an ssh one by
    /// [`super::send_ssh`]. libgit2's push (whose pack builder re-reads, delta-searches and
    /// re-compresses every object sent) is not used.
    pub fn push_branch(&self, remote: &str, branch: &str) -> Result<(), PushFailure> {
        self.push_branch_with(remote, branch, &FreshPacks::default(), None)
    }

    /// [`Repo::push_branch`], the entries of the packs `fresh` records (packs this process
    /// stored, still the files it wrote) copied into a local remote on their CRC-32 alone
    /// ([`FreshPacks`]); an ssh or https remote checks what it receives itself. When `made`
    /// says the branch's commit was made on the remote's, its objects are sent without a walk
    /// of the two trees ([`Made`]).
    pub(super) fn push_branch_with(
        &self,
        remote: &str,
        branch: &str,
        fresh: &FreshPacks,
        made: Option<&Made>,
    ) -> Result<(), PushFailure> {
        let r = self.repo.find_remote(remote).map_err(|e| {
            PushFailure::Remote(RemoteError::Setup {
                url: remote.to_owned(),
                reason: format!("no remote `{remote}` ({})", e.message()),
            })
        })?;
        // The URL a push goes to: `pushurl` when set, as libgit2's push takes it
        // (`remote.c` `git_remote__urlfordirection`), `pushInsteadOf` already applied.
        let url = std::str::from_utf8(r.pushurl_bytes().unwrap_or(r.url_bytes()))
            .map(str::to_owned)
            .map_err(|_| {
                PushFailure::Remote(RemoteError::Setup {
                    url: remote.to_owned(),
                    reason: format!("the URL of remote `{remote}` is not UTF-8"),
                })
            })?;
        let scheme = self
            .transport
            .check(&url)
            .map_err(PushFailure::Remote)?
            .scheme;
        let refname = format!("refs/heads/{branch}");
        let new = self.repo.refname_to_id(&refname).map_err(|e| {
            PushFailure::Remote(RemoteError::Setup {
                url: redact(&url),
                reason: format!("no local branch `{branch}` ({})", e.message()),
            })
        })?;
        let mut pack_for =
            |old: Option<Oid>| super::push::pack_for(&self.repo, &url, &refname, new, old, made);
        match scheme {
            Scheme::Local => super::push::push_local(&self.repo, &url, &refname, new, fresh, made)?,
            Scheme::Https | Scheme::Http => {
                super::send_http::push(&self.transport, &url, &refname, new, &mut pack_for)?
            }
            Scheme::Ssh => {
                super::send_ssh::push(&self.transport, &url, &refname, new, &mut pack_for)?
            }
            Scheme::Other(other) => {
                return Err(PushFailure::Remote(RemoteError::Setup {
                    url: redact(&url),
                    reason: format!(
                        "provisio pushes over https, http, ssh or to a local path, not `{other}`"
                    ),
                }));
            }
        }
        self.update_tracking(remote, &url, &refname, new)
    }

    /// After `refname` of `remote` was pushed to `new`: the remote-tracking ref its fetch
    /// refspec maps it to (`refs/remotes/<remote>/<branch>`) moved to `new`, as libgit2's push
    /// moves it (`push.c` `git_push_update_tips`, "update by push"). A failure is transient:
    /// the next attempt finds the remote there, sends nothing and moves the ref.
    fn update_tracking(
        &self,
        remote: &str,
        url: &str,
        refname: &str,
        new: Oid,
    ) -> Result<(), PushFailure> {
        let network = |e: git2::Error| {
            PushFailure::Remote(RemoteError::Network {
                url: redact(url),
                source: Box::new(e),
            })
        };
        let r = self.repo.find_remote(remote).map_err(network)?;
        let tracking = r.refspecs().find_map(|spec| {
            (spec.direction() == git2::Direction::Fetch && spec.src_matches(refname))
                .then(|| spec.transform(refname))
        });
        if let Some(name) = tracking {
            let name = name.map_err(network)?;
            let name = name.as_str().unwrap_or_default();
            self.repo
                .reference(name, new, true, "update by push")
                .map_err(network)?;
        }
        Ok(())
    }

    /// Points `branch` (checked out; created when HEAD is unborn) at `commit` and makes the
    /// index and work tree match it: files the old commit had and this one lacks are
    /// removed. Only for a work tree provisio owns (the output clone).
    pub fn reset_branch_to(&self, branch: &str, commit: Oid) -> Result<()> {
        let obj = self
            .repo
            .find_object(commit, Some(ObjectType::Commit))
            .map_err(self.err("read the remote head"))?;
        let refname = format!("refs/heads/{branch}");
        if self.repo.head().is_err() {
            self.repo
                .reference(&refname, commit, true, "provisio: start from the remote")
                .map_err(self.err("create the branch"))?;
            self.repo
                .set_head(&refname)
                .map_err(self.err("point HEAD at the branch"))?;
        }
        let mut co = git2::build::CheckoutBuilder::new();
        co.force();
        self.repo
            .reset(&obj, ResetType::Hard, Some(&mut co))
            .map_err(self.err("reset onto the remote head"))
    }

    /// Checks `commit` out with a detached HEAD, forced, removing untracked files: the
    /// clone becomes exactly that commit. Only for a clone provisio owns (watch's registry
    /// clone).
    pub fn checkout_detached(&self, commit: Oid) -> Result<()> {
        let c = self
            .repo
            .find_commit(commit)
            .map_err(self.err("read the fetched commit"))?;
        let mut co = git2::build::CheckoutBuilder::new();
        co.force().remove_untracked(true);
        self.repo
            .checkout_tree(c.as_object(), Some(&mut co))
            .map_err(self.err("check out the fetched commit"))?;
        self.repo
            .set_head_detached(commit)
            .map_err(self.err("move HEAD"))
    }
}
