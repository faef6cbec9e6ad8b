//! The pipeline as operations the commands (and watch mode) call: load → plan → render →
//! write. Each step is one module; this file only strings them together.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::diagnostic::Report;
use crate::output::{self, Change, Summary, WriteError, diff};
use crate::registry::{self, Registry, load::ReadError};
use crate::render::{self, Files, RenderError};

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
}

/// Where to read, where to write, and the time to render for.
#[derive(Debug, Clone)]
pub struct Paths {
    pub registry: PathBuf,
    pub out: PathBuf,
}

/// Loads and validates the registry; any diagnostic is an error.
pub fn load(registry_dir: &Path) -> Result<(Registry, registry::Sources), PipelineError> {
    let sources = registry::read_dir(registry_dir)?;
    let loaded = registry::load_sources(sources);
    let sources = loaded.report.sources.clone();
    let reg = loaded
        .into_result()
        .map_err(|r| PipelineError::Invalid(Box::new(r)))?;
    Ok((reg, sources))
}

/// `generate`: renders what changed since the last run and writes it. With `full`, every
/// tenant is re-rendered and compared with the disk (repairs hand edits).
pub fn generate(paths: &Paths, now: DateTime<Utc>, full: bool) -> Result<Summary, PipelineError> {
    let (reg, sources) = load(&paths.registry)?;
    let inputs = output::fingerprint(&sources);
    let previous = output::read_state(&paths.out)?;
    let stale = |id: &str| match &previous {
        Some(p) if !full && p.shared == inputs.shared => {
            p.tenants.get(id) != inputs.tenants.get(id)
        }
        _ => true,
    };
    let rendered = render::render_selected(&reg, now, stale)?;
    let all: BTreeSet<String> = reg.tenants.keys().cloned().collect();
    let summary = output::apply(
        &paths.out,
        &Change {
            output: &rendered,
            all_tenants: &all,
            previous: previous.as_ref(),
            next_inputs: &inputs,
            verify_disk: full,
        },
    )?;
    Ok(summary)
}

/// `check`: renders everything and compares it with the disk.
pub struct CheckResult {
    pub drifts: Vec<diff::Drift>,
    pub expected: Files,
    pub actual: Files,
}

pub fn check(paths: &Paths, now: DateTime<Utc>) -> Result<CheckResult, PipelineError> {
    let (reg, _) = load(&paths.registry)?;
    let rendered = render::render_all(&reg, now)?;
    let expected: Files = rendered
        .tenants
        .into_values()
        .flatten()
        .chain(rendered.argocd)
        .collect();
    let actual = output::read_tree(&paths.out)?;
    Ok(CheckResult {
        drifts: diff::compare(&expected, &actual),
        expected,
        actual,
    })
}
