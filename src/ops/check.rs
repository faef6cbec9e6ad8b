//! `check`: renders everything, tenant by tenant, and the platform tree, and compares it with
//! the output on disk (stale or hand-edited files, trees of tenants that left, stray files).

use chrono::{DateTime, Utc};
use provisio_core::plan::plan_tenant;
use provisio_core::render::{self, ARGOCD_DIR, PLATFORM_DIR, Renderer, TENANTS_DIR};

use super::error::PipelineError;
use super::generate::Paths;
use super::load::load;
use crate::io::output::{self, diff};

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
    compare(
        &render::platform::render_platform(&reg)?.files,
        PLATFORM_DIR,
    )?;
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
