//! The error of the operations: what went wrong, in the registry's terms where it is the
//! registry's fault.

use provisio_core::diagnostic::Report;
use provisio_core::render::RenderError;

use crate::io::output::WriteError;
use crate::io::registry_dir::ReadError;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The registry directory could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The registry has errors; nothing was written.
    #[error("the registry is invalid")]
    Invalid(Box<Report>),
    /// Rendering failed (a bug).
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The output tree could not be read or written.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// The change would remove too many tenants at once; nothing was written.
    #[error(
        "refusing to remove {} of {total} tenants at once (more than {max_percent}%): {}; if this is intended, run again with --allow-mass-delete",
        removed.len(),
        removed.join(", ")
    )]
    MassDelete {
        removed: Vec<String>,
        total: usize,
        max_percent: u32,
    },
    /// The change would remove the platform tools of too many products (or teams) at once;
    /// nothing was written.
    #[error(
        "refusing to remove the platform tools of {} {} at once (more than platformTools.maxProductRemovals = {max}): {}; if this is intended, run again with --allow-mass-delete",
        removed.len(),
        if removed.len() == 1 { what.trim_end_matches('s') } else { what },
        removed.join(", ")
    )]
    MassPlatformRemoval {
        /// `products` or `teams`.
        what: &'static str,
        removed: Vec<String>,
        max: u32,
    },
}
