//! Why one push attempt failed ([`PushFailure`]) and the remote's refusal of a branch
//! classified ([`refusal`]): shared by every push path (a local remote's in [`super::push`],
//! the send-pack clients' through [`super::send_pack`]), which is why they live apart from
//! all of them (a path using them and called from `sync` would otherwise make an import
//! cycle).

use super::RemoteError;

/// Why one push attempt failed.
#[derive(Debug)]
pub enum PushFailure {
    /// The remote moved (non-fast-forward, or the branch changed between the remote's
    /// advertisement and its update): fetch and redo the work on top.
    Moved(String),
    /// The remote refused for another reason (a hook, a protected branch): retrying will
    /// not help.
    Refused { refname: String, message: String },
    /// Reaching the remote failed: transient ([`RemoteError::is_transient`]) or not
    /// (credentials, certificate, host key, configuration).
    Remote(RemoteError),
}

impl PushFailure {
    /// The `outcome` label of `provisio_git_pushes_total` for this attempt.
    pub fn outcome(&self) -> &'static str {
        match self {
            PushFailure::Moved(_) => "rejected",
            PushFailure::Refused { .. } => "error",
            PushFailure::Remote(e) => e.outcome(),
        }
    }

    /// Whether waiting and pushing again (or fetching and redoing the work) can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            PushFailure::Moved(_) => true,
            PushFailure::Refused { .. } => false,
            PushFailure::Remote(e) => e.is_transient(),
        }
    }
}

impl std::fmt::Display for PushFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushFailure::Moved(m) => write!(f, "the remote moved ({m})"),
            PushFailure::Refused { refname, message } => {
                write!(f, "the remote refused {refname}: {message}")
            }
            PushFailure::Remote(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for PushFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PushFailure::Remote(e) => e.source(),
            _ => None,
        }
    }
}

/// The remote's refusal of `refname` with `message` (the `ng` line of `receive-pack`'s
/// report, or libgit2's error updating a local remote's branch), classified: a lock held in
/// the remote, the remote having moved, or a refusal that retrying will not change.
pub(super) fn refusal(url: &str, refname: String, message: String) -> PushFailure {
    if let Some(lock) = held_lock(&message) {
        PushFailure::Remote(RemoteError::Locked {
            url: url.to_owned(),
            lock,
        })
    } else if remote_moved(&message) {
        PushFailure::Moved(format!("{refname}: {message}"))
    } else {
        PushFailure::Refused { refname, message }
    }
}

/// The lock file a refusal names when libgit2 could not take it updating a local remote's
/// branch ([`super::push`]; `failed to lock file '<path>' for writing`), if it is still
/// there: not the remote moving (no fetch or regeneration helps) but a push in progress or a
/// lock a killed push left. A lock gone by now was a concurrent push's, which may have moved
/// the branch: [`remote_moved`] decides.
fn held_lock(message: &str) -> Option<String> {
    let (_, rest) = message.split_once("failed to lock file '")?;
    let (path, _) = rest.split_once('\'')?;
    std::fs::symlink_metadata(path)
        .is_ok()
        .then(|| path.to_owned())
}

/// Whether the remote's refusal means its branch moved: not a fast-forward, or (the
/// compare-and-swap of `git receive-pack`) the branch changed between the advertisement and
/// the update.
fn remote_moved(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "non-fast-forward",
        "fetch first",
        "not present locally",
        "failed to update ref",
        "failed to lock",
        "cannot lock ref",
        "stale info",
    ]
    .iter()
    .any(|s| m.contains(s))
}
