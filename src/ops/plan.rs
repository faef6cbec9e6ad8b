//! `plan`: what a registry change does to the platform tools. Loads the registry and a base
//! (a git revision of the registry's repository, or another directory), validates both,
//! renders both platform trees in memory and hands them to `provisio_core::review`. Nothing is
//! written. Tenant trees are compared too, only to say whether they change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::error::PipelineError;
use super::generate::render_in_parallel;
use super::load::load;
use crate::io::output::state::tree_hash;
use crate::io::registry_dir;
use crate::io::repo::{GitError, Repo};
use provisio_core::diagnostic::Report;
use provisio_core::registry::{self, Registry, Sources};
use provisio_core::review::{self, text::Header};

/// What the change is compared with.
#[derive(Debug, Clone)]
pub enum Base {
    /// A revision of the git repository holding the registry (`origin/main`).
    Revision(String),
    /// Another registry directory.
    Dir(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The registry reviewed cannot be read or is invalid.
    #[error(transparent)]
    Head(#[from] PipelineError),
    /// The base registry is invalid (its diagnostics follow).
    #[error("the base registry ({label}) is invalid")]
    InvalidBase { label: String, report: Box<Report> },
    /// `--base` names no revision of the registry's repository.
    #[error("no revision `{0}` in the registry's git repository")]
    UnknownRevision(String),
    /// The registry's repository could not be read.
    #[error(transparent)]
    Git(#[from] GitError),
}

/// The plan's text, and whether anything is lost (for `--exit-code`).
#[derive(Debug)]
pub struct Planned {
    pub text: String,
    pub loses: bool,
}

/// Compares the registry at `registry` with `base` and prints what the platform tools gain,
/// change and lose.
pub fn plan(registry: &Path, base: &Base, now: DateTime<Utc>) -> Result<Planned, PlanError> {
    let (head, head_sources) = load(registry)?;
    let (label, base_sources) = match base {
        Base::Dir(dir) => (
            with_slash(dir),
            registry_dir::read_dir(dir).map_err(PipelineError::from)?,
        ),
        Base::Revision(rev) => (rev.clone(), at_revision(registry, rev)?),
    };
    let base_reg = registry::load_sources(base_sources.clone())
        .into_result()
        .map_err(|report| PlanError::InvalidBase {
            label: label.clone(),
            report: Box::new(report),
        })?;
    let review = review::review(&base_reg, &head).map_err(PipelineError::from)?;
    let tenants = tenant_changes(&base_reg, &base_sources, &head, &head_sources, now)
        .map_err(PlanError::Head)?;
    let header = Header {
        base: label,
        head: with_slash(registry),
        tenants,
    };
    Ok(Planned {
        text: review::text::render(&review, &header),
        loses: review.loses(),
    })
}

fn with_slash(p: &Path) -> String {
    let s = p.display().to_string();
    if s.ends_with('/') { s } else { format!("{s}/") }
}

/// The registry files at a revision of the repository holding `registry`.
fn at_revision(registry: &Path, rev: &str) -> Result<Sources, PlanError> {
    let repo = Repo::discover(registry)?;
    let prefix = repo.relative(registry)?;
    let files = repo
        .read_revision(rev, &prefix)?
        .ok_or_else(|| PlanError::UnknownRevision(rev.to_owned()))?;
    Ok(registry_dir::sources_from_git(files))
}

/// How many tenant trees differ between the two registries, and how many tenants the
/// reviewed registry has; `None` when none differs. Tenant trees depend on every registry
/// file but the teams', so they are rendered only when one of those differs.
fn tenant_changes(
    base: &Registry,
    base_sources: &Sources,
    head: &Registry,
    head_sources: &Sources,
    now: DateTime<Utc>,
) -> Result<Option<(usize, usize)>, PipelineError> {
    let relevant = |s: &Sources| -> Sources {
        s.iter()
            .filter(|(k, _)| !k.starts_with("teams/"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    if relevant(base_sources) == relevant(head_sources) {
        return Ok(None);
    }
    let hashes = |reg: &Registry| -> Result<BTreeMap<String, String>, PipelineError> {
        let tenants: Vec<_> = reg.tenants.iter().collect();
        let mut out = BTreeMap::new();
        render_in_parallel(
            reg,
            &tenants,
            now,
            |r, plan| Ok(r.tenant(plan)?),
            |id, files| {
                out.insert(id.to_owned(), tree_hash(&files));
                Ok(())
            },
        )?;
        Ok(out)
    };
    let (a, b) = (hashes(base)?, hashes(head)?);
    let changed = a
        .keys()
        .chain(b.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|id| a.get(*id) != b.get(*id))
        .count();
    Ok((changed > 0).then_some((changed, head.tenants.len())))
}
