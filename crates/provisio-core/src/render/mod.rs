//! Rendering: plans → typed objects → file bytes. Pure: no file system, clock or environment
//! (templates are compiled in); the same registry gives the same bytes on any machine.
//!
//! Architecture Invariant: nothing in this module does I/O. Its output is a map from
//! output-relative path to bytes, which only `output` writes.

pub mod argocd;
pub mod crd;
mod emit;
pub mod jobs;
pub mod lifecycle;
mod objects;
pub mod platform;
pub mod templates;
pub mod tenant;
pub mod yaml;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::plan::{TenantPlan, plan_tenant};
use crate::registry::Registry;
pub use platform::PLATFORM_DIR;
pub use yaml::{ARGOCD_DIR, Files, HEADER, RenderError, TENANTS_DIR};

/// The whole output: one file set per tenant, the platform tree, and the Argo CD objects.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Output {
    /// Tenant id → files of `tenants-out/<id>/`, keyed by output-relative path.
    pub tenants: BTreeMap<String, Files>,
    /// Files of `platform-out/` (none without `platformTools`).
    pub platform: Files,
    /// Files of `argocd/`.
    pub argocd: Files,
}

/// Renders tenants one at a time (the template environment is built once).
pub struct Renderer {
    env: templates::Environment<'static>,
}

impl Default for Renderer {
    fn default() -> Self {
        Self::new()
    }
}

impl Renderer {
    pub fn new() -> Self {
        Renderer {
            env: templates::environment(),
        }
    }

    /// The files of one tenant's tree, keyed by output-relative path.
    pub fn tenant(&self, plan: &TenantPlan<'_>) -> Result<Files, RenderError> {
        tenant::render_tenant(plan, &self.env)
    }

    /// The files of one tenant's tree that the versions of the `released` products reach
    /// ([`tenant::render_tenant_release`]).
    pub fn tenant_release(
        &self,
        plan: &TenantPlan<'_>,
        released: &std::collections::BTreeSet<String>,
    ) -> Result<Files, RenderError> {
        tenant::render_tenant_release(plan, released)
    }
}

/// Renders everything in memory: every tenant tree, the platform tree and the Argo CD objects. The commands
/// stream tenant by tenant instead; this is for tests and small registries.
pub fn render_all(reg: &Registry, now: DateTime<Utc>) -> Result<Output, RenderError> {
    let renderer = Renderer::new();
    let mut tenants = BTreeMap::new();
    for t in reg.tenants.values() {
        let plan = plan_tenant(reg, t, now);
        let files = renderer.tenant(&plan)?;
        // A removed tenant has no tree.
        if !files.is_empty() {
            tenants.insert(plan.id.to_owned(), files);
        }
    }
    Ok(Output {
        tenants,
        platform: platform::render_platform(reg)?.files,
        argocd: argocd::render_argocd(reg)?,
    })
}
