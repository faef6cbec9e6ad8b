//! `provisio website-status`: run by the `website-status` PostSync Job of an active or
//! cancelled tenant: its website record's status becomes the tenant's (`active`, or
//! `deprovisioning` from the cancellation on: the seed's soft delete). Exits 0 when done, 2 on
//! invalid input or an ambiguous record, 3 when the service is unreachable or refuses.

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::Exit;
use crate::ops::setup::Store;
use crate::setup::Policy;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The Job's spec (JSON); default: the `PROVISIO_SETUP_SPEC` variable.
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// Where the tenant's internal API token lives (as for `setup`).
    #[arg(long, value_parser = super::setup::parse_store)]
    pub secret_store: Store,
    /// Attempts per request before giving up on an unreachable service.
    #[arg(long, default_value_t = 6)]
    pub attempts: u32,
    /// First backoff delay in milliseconds (doubled after each failed attempt).
    #[arg(long, default_value_t = 500)]
    pub backoff_ms: u64,
}

pub fn run(a: Args) -> Exit {
    let retry = Policy::new(a.attempts, Duration::from_millis(a.backoff_ms));
    match crate::ops::setup::website_status(a.spec.as_ref(), &a.secret_store, retry) {
        Ok(report) => {
            print!("{}", report.render("website-status"));
            Exit::Ok
        }
        Err(e) => {
            crate::report::print_in("website-status", &e);
            (&e).into()
        }
    }
}
