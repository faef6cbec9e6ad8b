//! The pipeline as operations the commands (and watch mode) call: load → plan → render →
//! write. Each step is one module; this file only strings them together, one tenant at a
//! time so memory stays flat at any registry size.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::io::output::{self, Summary, WriteError, Writer, diff};
use crate::io::registry_dir::{self, ReadError};
use provisio_core::diagnostic::Report;
use provisio_core::plan::plan_tenant;
use provisio_core::registry::{self, Registry};
use provisio_core::render::{self, ARGOCD_DIR, RenderError, Renderer, TENANTS_DIR};

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
}

/// How `generate` runs.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// The time to render for.
    pub now: DateTime<Utc>,
    /// Re-render every tenant and compare every file with the disk (repairs hand edits).
    pub full: bool,
    pub mass_delete: MassDeleteGuard,
}

impl GenerateOptions {
    pub fn new(now: DateTime<Utc>) -> Self {
        GenerateOptions {
            now,
            full: false,
            mass_delete: MassDeleteGuard::default(),
        }
    }
}

/// A registry that suddenly lacks many tenants is far more likely a mistake (a bad merge, a
/// wrong directory) than a decision: removing more than `max_percent` of the existing
/// tenants, and at least 2, is refused unless `allow` is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MassDeleteGuard {
    pub max_percent: u32,
    pub allow: bool,
}

impl Default for MassDeleteGuard {
    fn default() -> Self {
        MassDeleteGuard {
            max_percent: 10,
            allow: false,
        }
    }
}

impl MassDeleteGuard {
    /// `Err` when removing `removed` of `existing` tenants is too many.
    pub fn check(&self, removed: Vec<String>, existing: usize) -> Result<(), PipelineError> {
        let too_many = removed.len() >= 2
            && removed.len() as u64 * 100 > u64::from(self.max_percent) * existing as u64;
        if too_many && !self.allow {
            return Err(PipelineError::MassDelete {
                removed,
                total: existing,
                max_percent: self.max_percent,
            });
        }
        Ok(())
    }
}

/// Where to read the registry and where to write the output.
#[derive(Debug, Clone)]
pub struct Paths {
    pub registry: PathBuf,
    pub out: PathBuf,
}

/// Loads and validates the registry; any diagnostic is an error.
pub fn load(registry_dir: &Path) -> Result<(Registry, registry::Sources), PipelineError> {
    let loaded = registry::load_sources(registry_dir::read_dir(registry_dir)?);
    let sources = loaded.report.sources.clone();
    let reg = loaded
        .into_result()
        .map_err(|r| PipelineError::Invalid(Box::new(r)))?;
    Ok((reg, sources))
}

/// `generate`: renders the tenants whose inputs changed since the last run and writes what
/// differs. With `full`, every tenant is re-rendered and compared with the disk (repairs
/// hand edits).
pub fn generate(paths: &Paths, opts: &GenerateOptions) -> Result<Summary, PipelineError> {
    let (now, full) = (opts.now, opts.full);
    let (reg, sources) = load(&paths.registry)?;
    let existing = output::list_dirs(&paths.out.join(TENANTS_DIR))?;
    let existing: Vec<String> = existing
        .into_iter()
        .filter(|d| !d.starts_with('.'))
        .collect();
    let removed: Vec<String> = existing
        .iter()
        .filter(|id| !reg.tenants.contains_key(*id))
        .cloned()
        .collect();
    opts.mass_delete.check(removed, existing.len())?;
    let inputs = output::fingerprint(&sources);
    let previous = output::read_state(&paths.out)?;
    let trusted = previous
        .as_ref()
        .filter(|p| !full && p.shared == inputs.shared);
    let mut writer = Writer::new(&paths.out, previous.as_ref(), &inputs);
    let mut stale: Vec<(&String, &registry::Tenant)> = Vec::new();
    for (id, tenant) in &reg.tenants {
        let unchanged = trusted
            .and_then(|p| p.tenants.get(id))
            .is_some_and(|t| t.input == inputs.tenants[id]);
        if !(unchanged && writer.keep(id)) {
            stale.push((id, tenant));
        }
    }
    render_in_parallel(&reg, &stale, now, |id, files| {
        writer.tenant(id, &inputs.tenants[id], &files)?;
        Ok(())
    })?;
    writer.argocd(&render::argocd::render_argocd(&reg)?)?;
    let all: BTreeSet<String> = reg.tenants.keys().cloned().collect();
    Ok(writer.finish(&all)?)
}

/// Renders `tenants` on every core and hands each tree to `sink` on the calling thread, in
/// any order (the writer does not care; its output does not depend on the order).
fn render_in_parallel<'r>(
    reg: &'r Registry,
    tenants: &[(&'r String, &'r registry::Tenant)],
    now: DateTime<Utc>,
    mut sink: impl FnMut(&str, render::Files) -> Result<(), PipelineError>,
) -> Result<(), PipelineError> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(tenants.len().max(1));
    let next = AtomicUsize::new(0);
    let renderer = Renderer::new();
    std::thread::scope(|scope| {
        let (tx, rx) =
            std::sync::mpsc::sync_channel::<(&str, Result<render::Files, RenderError>)>(64);
        for _ in 0..workers {
            let tx = tx.clone();
            let (next, renderer) = (&next, &renderer);
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((id, tenant)) = tenants.get(i) else {
                        break;
                    };
                    let files = renderer.tenant(&plan_tenant(reg, tenant, now));
                    if tx.send((id.as_str(), files)).is_err() {
                        break; // the sink failed and stopped listening
                    }
                }
            });
        }
        drop(tx);
        for (id, files) in rx {
            sink(id, files?)?;
        }
        Ok(())
    })
}

/// What `check` found.
pub struct CheckResult {
    pub drifts: Vec<diff::Drift>,
    /// Unified diff of every drift (at most `max_diff_lines` per file).
    pub diff: String,
    /// Files the registry renders.
    pub files: usize,
}

/// `check`: renders everything, tenant by tenant, and compares it with the disk.
pub fn check(
    paths: &Paths,
    now: DateTime<Utc>,
    max_diff_lines: usize,
) -> Result<CheckResult, PipelineError> {
    let (reg, _) = load(&paths.registry)?;
    let renderer = Renderer::new();
    let mut result = CheckResult {
        drifts: Vec::new(),
        diff: String::new(),
        files: 0,
    };
    let mut compare = |expected: &render::Files, dir: &str| -> Result<(), PipelineError> {
        let actual = output::read_files(&paths.out, dir)?;
        let drifts = diff::compare(expected, &actual);
        result
            .diff
            .push_str(&diff::render(&drifts, expected, &actual, max_diff_lines));
        result.drifts.extend(drifts);
        result.files += expected.len();
        Ok(())
    };
    for (id, tenant) in &reg.tenants {
        let files = renderer.tenant(&plan_tenant(&reg, tenant, now))?;
        compare(&files, &format!("{TENANTS_DIR}/{id}"))?;
    }
    compare(&render::argocd::render_argocd(&reg)?, ARGOCD_DIR)?;
    // Trees of tenants that are not in the registry, and stray files at the top.
    let mut stray = render::Files::new();
    for dir in output::list_dirs(&paths.out.join(TENANTS_DIR))? {
        if !reg.tenants.contains_key(&dir) {
            stray.extend(output::read_files(
                &paths.out,
                &format!("{TENANTS_DIR}/{dir}"),
            )?);
        }
    }
    for file in output::list_top_files(&paths.out.join(TENANTS_DIR))? {
        stray.insert(format!("{TENANTS_DIR}/{file}"), Vec::new());
    }
    let drifts = diff::compare(&render::Files::new(), &stray);
    result
        .diff
        .push_str(&diff::render(&drifts, &render::Files::new(), &stray, 0));
    result.drifts.extend(drifts);
    Ok(result)
}
