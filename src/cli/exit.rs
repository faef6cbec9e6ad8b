//! The process exit codes: one enum, documented in the README, mapped to the process status
//! once, in `main`. Every command returns one of these.

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Done.
    Ok = 0,
    /// `check`: the output on disk differs from what the registry renders; `plan
    /// --exit-code`: the change loses something.
    Drift = 1,
    /// Invalid input: the registry, a setup spec, the arguments or the repository set-up
    /// they name; nothing was changed.
    Invalid = 2,
    /// A server or git remote could not be reached or refused, after retries: setup's
    /// MySQL/RabbitMQ/S3 servers, the manifests repository's remote (a push that failed;
    /// the local commit is kept).
    Unavailable = 3,
    /// A safety guard refused: teardown of a tenant before its deletion date; a symbolic
    /// link (or another special file) inside the output tree.
    Refused = 4,
    /// A local failure: the output tree or a repository could not be read or written,
    /// another provisio process holds the repository, a listener could not bind.
    Failed = 5,
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e as u8)
    }
}

use crate::io::repo::GitError;
use crate::ops::PipelineError;
use crate::ops::deliver::DeliveryError;
use crate::ops::plan::PlanError;
use crate::setup::SetupError;

impl From<&PipelineError> for Exit {
    fn from(e: &PipelineError) -> Self {
        match e {
            PipelineError::Read(_)
            | PipelineError::Invalid(_)
            | PipelineError::MassDelete { .. }
            | PipelineError::MassPlatformRemoval { .. } => Exit::Invalid,
            PipelineError::Write(w) if w.is_refusal() => Exit::Refused,
            PipelineError::Render(_) | PipelineError::Write(_) => Exit::Failed,
        }
    }
}

impl From<&PlanError> for Exit {
    fn from(e: &PlanError) -> Self {
        match e {
            PlanError::Head(e) => e.into(),
            PlanError::InvalidBase { .. } | PlanError::UnknownRevision(_) => Exit::Invalid,
            PlanError::Git(e) => e.into(),
        }
    }
}

impl From<&GitError> for Exit {
    fn from(e: &GitError) -> Self {
        match e {
            GitError::NotARepository(_)
            | GitError::Bare(_)
            | GitError::Outside { .. }
            | GitError::WrongBranch { .. }
            | GitError::DetachedHead(_)
            | GitError::InvalidBranch(_)
            | GitError::NoRemote { .. } => Exit::Invalid,
            GitError::Remote(r)
                if matches!(**r, crate::io::repo::RemoteError::PasswordInUrl { .. }) =>
            {
                Exit::Invalid
            }
            GitError::NoBranch { .. } | GitError::Fetch { .. } | GitError::Remote(_) => {
                Exit::Unavailable
            }
            GitError::Git { .. }
            | GitError::Io { .. }
            | GitError::Locked(_)
            | GitError::ForeignLock { .. }
            | GitError::NotALockFile(_)
            | GitError::IndexLocked { .. } => Exit::Failed,
        }
    }
}

impl From<&DeliveryError> for Exit {
    fn from(e: &DeliveryError) -> Self {
        match e {
            DeliveryError::Git(g) => g.into(),
            DeliveryError::PushGaveUp { .. }
            | DeliveryError::PushRefused { .. }
            | DeliveryError::Interrupted => Exit::Unavailable,
            DeliveryError::Regenerate(p) => p.as_ref().into(),
        }
    }
}

impl From<&SetupError> for Exit {
    fn from(e: &SetupError) -> Self {
        match e {
            SetupError::Invalid { .. } | SetupError::Io { .. } => Exit::Invalid,
            SetupError::NotDue { .. } => Exit::Refused,
            _ => Exit::Unavailable,
        }
    }
}
