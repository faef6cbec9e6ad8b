//! One module per sub-command: parse its arguments (clap), call one operation, print, return
//! an [`Exit`].

pub mod activate;
pub mod args;
pub mod backup;
pub mod check;
pub mod generate;
pub mod plan;
pub mod purge_check;
pub mod report;
pub mod rollback;
pub mod serve;
pub mod setup;
pub mod teardown;
pub mod validate;
pub mod watch;
pub mod website_status;

use crate::cli::Exit;
use crate::ops::PipelineError;

/// Prints an operation's error (the registry's diagnostics as they are, anything else with
/// its causes); returns its exit code.
pub fn report(e: &PipelineError) -> Exit {
    match e {
        PipelineError::Invalid(report) => eprint!("{}", report.render()),
        other => crate::report::print(other),
    }
    e.into()
}
