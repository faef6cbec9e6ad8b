//! `rollback`: a person removes a tenant that was never activated (no welcome email, so no
//! customer data) through the same ordered removal as an offboarded tenant, without a backup
//! (docs/lifecycle.md, "Rollback"). The decision is `provisio_core::lifecycle::rollback`; this
//! module reads the registry, applies the change to the tenant file (other keys and the
//! leading comment kept), checks that the whole registry still loads with it, and only then
//! replaces the file atomically. The commit is the person's (reviewed like any registry edit).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::error::PipelineError;
use super::load::load;
use crate::io::fsx;
use provisio_core::intake::{IntakeError, with_lifecycle_change};
use provisio_core::lifecycle::{self, Refusal};
use provisio_core::registry::{self, layout};

/// What a rollback did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolledBack {
    /// The tenant file written.
    pub path: PathBuf,
    /// One line: `<tenant> → purging (workloads), rolled back: <reason>`.
    pub summary: String,
}

/// Why nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    /// The registry (as it is, or with the edited file) does not load.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// No such tenant in the registry.
    #[error("no tenant `{0}` in the registry")]
    UnknownTenant(String),
    /// The tenant's state does not allow a rollback (it was activated or welcomed, or it is
    /// already being removed).
    #[error("rollback refused: {0}")]
    Refused(#[source] Refusal),
    /// The tenant file could not be edited (a file this version cannot read back).
    #[error("cannot edit {path}: {source}")]
    Edit {
        path: String,
        #[source]
        source: IntakeError,
    },
    /// The edited file could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Rolls back tenant `tenant` of the registry in `dir` at `now`, for `reason`.
pub fn rollback(
    dir: &Path,
    tenant: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<RolledBack, RollbackError> {
    let (reg, mut sources) = load(dir)?;
    let t = reg
        .tenants
        .get(tenant)
        .ok_or_else(|| RollbackError::UnknownTenant(tenant.to_owned()))?;
    let change = lifecycle::rollback(t, now, reason).map_err(RollbackError::Refused)?;
    let rel = layout::tenant_path(tenant);
    let text = sources.get(&rel).cloned().unwrap_or_default();
    let new_text = with_lifecycle_change(&text, &change).map_err(|source| RollbackError::Edit {
        path: rel.clone(),
        source,
    })?;
    // The registry with the edited file must load without a single diagnostic before
    // anything is written.
    sources.insert(rel.clone(), new_text.clone());
    registry::load_sources(sources)
        .into_result()
        .map_err(|r| RollbackError::Pipeline(PipelineError::Invalid(Box::new(r))))?;
    let path = dir.join(&rel);
    fsx::write_atomic(&path, new_text.as_bytes()).map_err(|source| RollbackError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(RolledBack {
        path,
        summary: change.summary,
    })
}
