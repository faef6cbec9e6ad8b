//! `generate`: load → plan → render → write, one tenant at a time so memory stays flat at any
//! registry size; only tenants whose inputs changed are rendered (`--full` renders all). The
//! platform tree (`platform-out/`, small) is rendered whole every run and written where its bytes
//! changed. A run that would remove too many tenants, or more products or teams than
//! `platformTools.maxProductRemovals`, at once is refused before anything is written.

use std::collections::BTreeSet;
use std::path::PathBuf;

use chrono::{DateTime, Utc};

use super::error::PipelineError;
use super::load::load;
use crate::io::output::{self, Summary, Writer};
use provisio_core::plan::{TenantPlan, plan_tenant};
use provisio_core::registry::{self, Registry};
use provisio_core::render::platform::{PlatformOutput, TOOLS_DIR};
use provisio_core::render::{self, Renderer, TENANTS_DIR};

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
/// tenants, and at least 2, is refused unless `allow` is set. Only unexplained removals count
/// (a tree whose tenant file is gone); the tree of a tenant whose file says `removed` (a
/// tombstone serve wrote after its recorded backup or rollback and teardown) is an explained
/// removal, never refused.
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

impl MassDeleteGuard {
    /// `Err` when more products (or teams) than `platformTools.maxProductRemovals` would leave
    /// the platform tree at once: their directories under `platform-out/tools/products/`
    /// (`teams/`) exist on disk and the registry no longer renders them.
    pub fn check_platform(
        &self,
        out: &std::path::Path,
        reg: &Registry,
        platform: &PlatformOutput,
    ) -> Result<(), PipelineError> {
        let max = reg
            .platform
            .platform_tools
            .as_ref()
            .map_or(0, |pt| pt.max_product_removals.value);
        for what in ["products", "teams"] {
            let existing = output::list_dirs(&out.join(TOOLS_DIR).join(what))?;
            let prefix = format!("{TOOLS_DIR}/{what}/");
            let rendered: BTreeSet<&str> = platform
                .files
                .keys()
                .filter_map(|f| f.strip_prefix(&prefix))
                .filter_map(|rest| rest.split('/').next())
                .collect();
            let removed: Vec<String> = existing
                .into_iter()
                .filter(|d| !d.starts_with('.') && !rendered.contains(d.as_str()))
                .collect();
            if removed.len() > max as usize && !self.allow {
                return Err(PipelineError::MassPlatformRemoval { what, removed, max });
            }
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

/// `generate`: renders the tenants whose inputs changed since the last run and writes what
/// differs. With `full`, every tenant is re-rendered and compared with the disk (repairs
/// hand edits).
pub fn generate(paths: &Paths, opts: &GenerateOptions) -> Result<Summary, PipelineError> {
    generate_observed(paths, opts, &mut |_| {})
}

/// [`generate`], handing the validated registry to `observe` before anything is written
/// (watch's lifecycle metrics read it there instead of loading the registry twice).
pub fn generate_observed(
    paths: &Paths,
    opts: &GenerateOptions,
    observe: &mut dyn FnMut(&Registry),
) -> Result<Summary, PipelineError> {
    let (now, full) = (opts.now, opts.full);
    // One writer per output tree, until the state file is written.
    let _lock = output::lock_output(&paths.out)?;
    let (reg, sources) = load(&paths.registry)?;
    observe(&reg);
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
    opts.mass_delete.check(removed.clone(), existing.len())?;
    // Tenants whose lifecycle is over have no tree (their directory, if any, is removed).
    let live: BTreeSet<String> = reg
        .tenants
        .iter()
        .filter(|(_, t)| !provisio_core::lifecycle::phase(t, now).is_removed())
        .map(|(id, _)| id.clone())
        .collect();
    let offboarded: Vec<String> = existing
        .iter()
        .filter(|id| reg.tenants.contains_key(*id) && !live.contains(*id))
        .cloned()
        .collect();
    let platform = render::platform::render_platform(&reg)?;
    opts.mass_delete
        .check_platform(&paths.out, &reg, &platform)?;
    // The phase is part of a tenant's input: a deletion date that passes re-renders the
    // tenant although its file did not change.
    let inputs = output::fingerprint(&sources, &reg, |id| {
        reg.tenants
            .get(id)
            .map(|t| provisio_core::lifecycle::phase(t, now).label())
    });
    let previous = output::read_state(&paths.out)?;
    // Trees a killed run may have half written: their recorded hashes are not trusted.
    let torn = output::read_journal(&paths.out)?;
    let trusted = previous
        .as_ref()
        .filter(|p| !full && p.shared == inputs.shared && !torn.contains("*"));
    // Which trees a release may take for the recorded ones without reading them.
    let stats = output::read_stats(&paths.out);
    let keeps_stats = output::stats_kept(&paths.out);
    let mut writer = Writer::new(&paths.out, previous.as_ref(), &inputs, &stats);
    if full || torn.contains("*") {
        writer.distrust(None);
    } else {
        writer.distrust(Some(&torn));
    }
    // Only product versions moved since the recorded state: a tenant whose own input did not
    // change needs only the files those versions reach (`Renderer::tenant_release`).
    let released = trusted
        .map(|p| inputs.released_since(p))
        .unwrap_or_default();
    let mut stale: Vec<(&String, &registry::Tenant)> = Vec::new();
    let mut releasing: Vec<(&String, &registry::Tenant)> = Vec::new();
    for (id, tenant) in reg.tenants.iter().filter(|(id, _)| live.contains(*id)) {
        let unchanged = !torn.contains(id)
            && trusted
                .and_then(|p| p.tenants.get(id))
                .is_some_and(|t| t.input == inputs.tenants[id]);
        if unchanged && !released.is_empty() {
            releasing.push((id, tenant));
        } else if !(unchanged && writer.keep(id)?) {
            stale.push((id, tenant));
        }
    }
    let mut in_flight: BTreeSet<String> = stale.iter().map(|(id, _)| (*id).clone()).collect();
    in_flight.extend(releasing.iter().map(|(id, _)| (*id).clone()));
    in_flight.extend(removed);
    in_flight.extend(offboarded);
    in_flight.extend(torn.into_iter().filter(|t| t != "*"));
    writer.begin(&in_flight)?;
    let mut fallback: BTreeSet<String> = BTreeSet::new();
    // Each tree is read and hashed on the rendering threads; the writer only writes.
    render_in_parallel(
        &reg,
        &releasing,
        now,
        |renderer, plan| {
            let files = renderer.tenant_release(plan, &released)?;
            let known = trusted
                .and_then(|p| p.tenants.get(plan.id))
                .and_then(|t| Some((t.tree.as_str(), stats.vouching(plan.id, &t.tree)?)));
            Ok(output::prepare_release(&paths.out, plan.id, &files, known)?)
        },
        |id, prepared| {
            if !writer.tenant_release(id, &inputs.tenants[id], prepared)? {
                fallback.insert(id.to_owned());
            }
            Ok(())
        },
    )?;
    // Trees the disk no longer holds as recorded: rendered whole.
    stale.extend(releasing.iter().filter(|(id, _)| fallback.contains(*id)));
    render_in_parallel(
        &reg,
        &stale,
        now,
        |renderer, plan| {
            let files = renderer.tenant(plan)?;
            Ok(output::prepare_tenant(
                &paths.out,
                plan.id,
                files,
                keeps_stats,
            )?)
        },
        |id, prepared| {
            writer.tenant(id, &inputs.tenants[id], prepared)?;
            Ok(())
        },
    )?;
    writer.platform(&platform.files)?;
    writer.argocd(&render::argocd::render_argocd(&reg)?)?;
    let mut summary = writer.finish(&live)?;
    summary.next_deadline = provisio_core::lifecycle::next_deadline(reg.tenants.values(), now);
    Ok(summary)
}

/// Renders `tenants` on every core (each one's files as `render` picks them from its plan)
/// and hands each file set to `sink` on the calling thread, in any order (the writer does not
/// care; its output does not depend on the order).
pub(crate) fn render_in_parallel<'r, T: Send>(
    reg: &'r Registry,
    tenants: &[(&'r String, &'r registry::Tenant)],
    now: DateTime<Utc>,
    render: impl Fn(&Renderer, &TenantPlan<'_>) -> Result<T, PipelineError> + Sync,
    mut sink: impl FnMut(&str, T) -> Result<(), PipelineError>,
) -> Result<(), PipelineError> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(tenants.len().max(1));
    let next = AtomicUsize::new(0);
    let renderer = Renderer::new();
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(&str, Result<T, PipelineError>)>(64);
        for _ in 0..workers {
            let tx = tx.clone();
            let (next, renderer, render) = (&next, &renderer, &render);
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((id, tenant)) = tenants.get(i) else {
                        break;
                    };
                    let files = render(renderer, &plan_tenant(reg, tenant, now));
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
