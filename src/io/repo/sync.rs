//! Moving commits between a repository and its remote: one push attempt (never forced) with
//! its failure classified, so the caller knows whether to regenerate on top, wait and retry,
//! or give up; and moving a branch or a detached HEAD onto a fetched commit, work tree
//! included. The retry policy and what "regenerate on top" means belong to the caller
//! (`ops::deliver`).

use std::cell::RefCell;
use std::rc::Rc;

use git2::{ErrorCode, ObjectType, ResetType};

pub use super::failure::PushFailure;
use super::failure::refusal;
use super::transport::{Scheme, redact};
use super::{Oid, RemoteError, Repo, Result};

/// What a push's pack builder reads from the configuration (libgit2 `pack-objects.c`): it tries
/// each object it sends as a delta of the 10 objects before it in its sort (type, name, size;
/// `GIT_PACK_WINDOW`, fixed), unless `pack.windowMemory` bounds the memory those objects hold
/// — at 1 byte, one. The files of a tenant tree sort next to the same file of other tenants, so
/// one candidate finds most of the deltas ten do, for a tenth of the search (the first push of
/// 10,000 tenants spent about half its time there; BENCHMARKS.md, issue 13).
const PUSH_PACK_CONFIG: &str = "[pack]\n\twindowMemory = 1\n";

impl Repo {
    /// Pushes `branch` to the same branch of `remote`, never forced.
    ///
    /// A local remote (a path or `file://` URL) and an https (or plain http) one get the
    /// packs provisio stored ([`super::push`]; sent by [`super::send_http`]); an ssh one goes
    /// through libgit2's push.
    pub fn push_branch(&self, remote: &str, branch: &str) -> Result<(), PushFailure> {
        // The URL a push goes to: `pushurl` when set, as libgit2's push takes it
        // (`remote.c` `git_remote__urlfordirection`), `pushInsteadOf` already applied.
        let url = self.repo.find_remote(remote).ok().and_then(|r| {
            r.pushurl_bytes()
                .or(Some(r.url_bytes()))
                .and_then(|u| std::str::from_utf8(u).ok())
                .map(str::to_owned)
        });
        if let Some(url) = url {
            let scheme = self
                .transport
                .check(&url)
                .map_err(PushFailure::Remote)?
                .scheme;
            if matches!(scheme, Scheme::Local | Scheme::Https | Scheme::Http) {
                let refname = format!("refs/heads/{branch}");
                let new = self.repo.refname_to_id(&refname).map_err(|e| {
                    PushFailure::Remote(RemoteError::Setup {
                        url: redact(&url),
                        reason: format!("no local branch `{branch}` ({})", e.message()),
                    })
                })?;
                if scheme == Scheme::Local {
                    super::push::push_local(&self.repo, &url, &refname, new)?;
                } else {
                    super::send_http::push(&self.transport, &url, &refname, new, &mut |old| {
                        super::push::pack_for(&self.repo, &url, &refname, new, old)
                    })?;
                }
                return self.update_tracking(remote, &url, &refname, new);
            }
        }
        let (_config_dir, handle) = self.push_handle().map_err(|e| {
            PushFailure::Remote(RemoteError::Setup {
                url: remote.to_owned(),
                reason: format!("cannot prepare the push: {e}"),
            })
        })?;
        let mut r = handle.find_remote(remote).map_err(|e| {
            PushFailure::Remote(RemoteError::Setup {
                url: remote.to_owned(),
                reason: format!("no remote `{remote}` ({})", e.message()),
            })
        })?;
        let url = r.url().unwrap_or_default().to_owned();
        let (mut cbs, session) = self
            .transport
            .callbacks(&url)
            .map_err(PushFailure::Remote)?;
        let refused: Rc<RefCell<Option<(String, String)>>> = Rc::default();
        {
            let refused = refused.clone();
            cbs.push_update_reference(move |refname, status| {
                if let Some(msg) = status {
                    *refused.borrow_mut() = Some((refname.to_owned(), msg.to_owned()));
                }
                Ok(())
            });
        }
        let mut opts = git2::PushOptions::new();
        opts.remote_callbacks(cbs);
        // One thread builds the pack sent (libgit2's default). Its threaded delta search was
        // slower and larger on the 2-core bench machine at 10,000 tenants: first push 29.3-29.9
        // -> 25.4-26.3 s and 306-324 -> 285 MiB peak, a product's release 5.0-5.2 -> 4.4-4.6 s,
        // the packs sent the same size (BENCHMARKS.md, issue 13, sixth round).
        opts.packbuilder_parallelism(1);
        let spec = format!("refs/heads/{branch}:refs/heads/{branch}");
        let result = r.push(&[spec], Some(&mut opts));
        drop(opts);
        let refused = refused.borrow_mut().take();
        match result {
            Ok(()) => match refused {
                None => Ok(()),
                Some((refname, message)) => Err(refusal(&url, refname, message)),
            },
            Err(e) if e.code() == ErrorCode::NotFastForward => {
                Err(PushFailure::Moved(e.message().to_owned()))
            }
            Err(e) => Err(PushFailure::Remote(session.error(e))),
        }
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

    /// A second handle on the repository for one push, whose configuration has
    /// [`PUSH_PACK_CONFIG`] above every other level (in memory: nothing is written to the
    /// repository's configuration); the directory holding that file lives as long as the
    /// handle must.
    fn push_handle(&self) -> std::result::Result<(tempfile::TempDir, git2::Repository), String> {
        let dir = tempfile::tempdir().map_err(|e| format!("a temporary directory: {e}"))?;
        let file = dir.path().join("push.gitconfig");
        std::fs::write(&file, PUSH_PACK_CONFIG)
            .map_err(|e| format!("write {}: {e}", file.display()))?;
        let handle =
            git2::Repository::open(self.repo.path()).map_err(|e| e.message().to_owned())?;
        handle
            .config()
            .and_then(|mut c| c.add_file(&file, git2::ConfigLevel::App, true))
            .map_err(|e| e.message().to_owned())?;
        Ok((dir, handle))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A push reads [`PUSH_PACK_CONFIG`] and lands, and the repository's configuration on disk is
    /// left as it was.
    #[test]
    fn a_push_leaves_the_repository_configuration_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        let bare = dir.path().join("remote.git");
        git2::Repository::init_bare(&bare).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        std::fs::write(work.join("a.txt"), "a\n").unwrap();
        let author = super::super::Author {
            name: "t".into(),
            email: "t@example.com".into(),
        };
        let repo = Repo::init_with_all(&work, "first", &author).unwrap();
        repo.repo
            .remote("origin", &format!("file://{}", bare.display()))
            .unwrap();
        let config = work.join(".git/config");
        let before = std::fs::read(&config).unwrap();
        let branch = repo.repo.head().unwrap().shorthand().unwrap().to_owned();
        let (_dir, handle) = repo.push_handle().unwrap();
        assert_eq!(
            handle
                .config()
                .unwrap()
                .get_i64("pack.windowMemory")
                .unwrap(),
            1
        );
        repo.push_branch("origin", &branch).unwrap();
        let remote = git2::Repository::open_bare(&bare).unwrap();
        assert_eq!(
            remote
                .find_reference(&format!("refs/heads/{branch}"))
                .unwrap()
                .target(),
            repo.repo.head().unwrap().target()
        );
        assert_eq!(std::fs::read(&config).unwrap(), before);
        assert!(
            repo.repo
                .config()
                .unwrap()
                .get_i64("pack.windowMemory")
                .is_err()
        );
    }

    /// A remote with a `pushurl` is pushed to there, as libgit2's and git's pushes do (a
    /// person's checkout may fetch from one URL and push to another), and its tracking ref
    /// follows.
    #[test]
    fn a_push_goes_to_the_remotes_push_url() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        let fetched = dir.path().join("fetched.git");
        let pushed = dir.path().join("pushed.git");
        git2::Repository::init_bare(&fetched).unwrap();
        git2::Repository::init_bare(&pushed).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        std::fs::write(work.join("a.txt"), "a\n").unwrap();
        let author = super::super::Author {
            name: "t".into(),
            email: "t@example.com".into(),
        };
        let repo = Repo::init_with_all(&work, "first", &author).unwrap();
        repo.repo
            .remote("origin", &format!("file://{}", fetched.display()))
            .unwrap();
        repo.repo
            .remote_set_pushurl("origin", Some(&format!("file://{}", pushed.display())))
            .unwrap();
        let branch = repo.repo.head().unwrap().shorthand().unwrap().to_owned();
        repo.push_branch("origin", &branch).unwrap();
        let head = repo.repo.head().unwrap().target();
        let refname = format!("refs/heads/{branch}");
        let value = |bare: &std::path::Path| {
            git2::Repository::open_bare(bare)
                .unwrap()
                .refname_to_id(&refname)
                .ok()
        };
        assert_eq!(value(&pushed), head, "the push URL has the branch");
        assert_eq!(value(&fetched), None, "the fetch URL is left alone");
    }
}
