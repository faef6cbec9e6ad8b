//! Loading the registry for an operation: read the directory, parse and check everything;
//! any diagnostic is an error.

use std::path::Path;

use provisio_core::registry::{self, Registry};

use super::error::PipelineError;
use crate::io::registry_dir;

/// Loads and validates the registry; any diagnostic is an error.
pub fn load(dir: &Path) -> Result<(Registry, registry::Sources), PipelineError> {
    let loaded = registry::load_sources(registry_dir::read_dir(dir)?);
    let sources = loaded.report.sources.clone();
    let reg = loaded
        .into_result()
        .map_err(|r| PipelineError::Invalid(Box::new(r)))?;
    Ok((reg, sources))
}
