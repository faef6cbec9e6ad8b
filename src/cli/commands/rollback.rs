//! `provisio rollback <tenant>`: a person removes a never-activated tenant (docs/lifecycle.md,
//! "Rollback"): the tenant file is edited in place; the person commits it.

use std::path::PathBuf;

use super::args::NowArg;
use crate::cli::Exit;
use crate::ops::rollback::{RollbackError, rollback};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The tenant's id.
    pub tenant: String,
    /// The registry directory.
    #[arg(long, default_value = "registry")]
    pub registry: PathBuf,
    /// Why, recorded in the tenant file (`rollback.reason`; one line, at most 500 characters).
    #[arg(long, default_value = "rolled back by hand: never activated")]
    pub reason: String,
    #[command(flatten)]
    pub now: NowArg,
}

pub fn run(a: Args) -> Exit {
    match rollback(&a.registry, &a.tenant, &a.reason, a.now.get()) {
        Ok(done) => {
            eprintln!("rollback: {}", done.summary);
            eprintln!(
                "rollback: {} edited; commit it, then `provisio generate` renders the ordered removal",
                done.path.display()
            );
            Exit::Ok
        }
        Err(e) => {
            let exit = match &e {
                // The registry's diagnostics, as `validate` prints them.
                RollbackError::Pipeline(p) => return super::report(p),
                RollbackError::UnknownTenant(_) => Exit::Invalid,
                RollbackError::Refused(r) if r.is_conflict() => Exit::Refused,
                RollbackError::Refused(_) => Exit::Invalid,
                RollbackError::Edit { .. } | RollbackError::Write { .. } => Exit::Failed,
            };
            crate::report::print(&e);
            exit
        }
    }
}
