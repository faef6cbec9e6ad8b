//! Why the output tree could not be read or written: one error type for the writer and for
//! the link-refusing reads ([`super::tree`]).

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A file or directory of the output tree could not be read, written or removed.
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A symbolic link inside the output tree: never followed.
    #[error(
        "refusing to follow {path}: it is a symbolic link (to {target}); the output tree holds only the directories and files provisio writes, remove the link"
    )]
    Symlink { path: PathBuf, target: String },
    /// Something that is neither a directory nor a regular file inside the output tree.
    #[error("refusing to use {path}: it is a {kind}, not a regular file or directory; remove it")]
    NotAFile { path: PathBuf, kind: &'static str },
}

impl WriteError {
    /// A link or special file planted in the output tree (a safety refusal, not an I/O
    /// failure).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            WriteError::Symlink { .. } | WriteError::NotAFile { .. }
        )
    }
}

pub(super) fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> WriteError {
    let path = path.to_path_buf();
    move |source| WriteError::Io {
        action,
        path,
        source,
    }
}
