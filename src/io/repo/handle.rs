//! The one way provisio opens or creates a repository: every handle is taken here, so
//! libgit2's process-wide options ([`super::set_process_options`]) are set, once, before the
//! first handle exists. Taken when a repository is first needed, not at start: initialising
//! libgit2 initialises OpenSSL (about 40 ms on one core), which a run that opens no
//! repository (a `generate` without `--commit`, `validate`, `plan`) has no use for.

use std::path::Path;

use git2::{Repository, RepositoryInitOptions};

/// The repository containing `path` (searching upwards).
pub(super) fn discover(path: &Path) -> Result<Repository, git2::Error> {
    super::set_process_options();
    Repository::discover(path)
}

/// The repository at `path` (its work tree or its git directory).
pub(super) fn open(path: &Path) -> Result<Repository, git2::Error> {
    super::set_process_options();
    Repository::open(path)
}

/// A new repository with a work tree at `path` (libgit2's defaults).
pub(super) fn init(path: &Path) -> Result<Repository, git2::Error> {
    super::set_process_options();
    Repository::init(path)
}

/// A new repository at `path`, as `opts` say.
pub(super) fn init_opts(
    path: &Path,
    opts: &RepositoryInitOptions,
) -> Result<Repository, git2::Error> {
    super::set_process_options();
    Repository::init_opts(path, opts)
}
