//! `provisio purge-check`: run by the `purge-check` and `namespace-check` PostSync Jobs of a
//! purging tenant: verifies its step on the cluster, then reports it to serve. Exits 0 when
//! reported (or already recorded), 2 on invalid input or a refused report, 3 when the API or
//! serve is unreachable, 4 when the step is not done (what is left is named).

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::Exit;
use crate::ops::purge_check::{JobError, run as check};
use crate::ops::report::ReportError;
use crate::ops::setup::Store;
use crate::setup::Policy;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The Job's spec (JSON); default: the `PROVISIO_SETUP_SPEC` variable.
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// Where the tenant's report key lives (as for `setup`).
    #[arg(long, value_parser = super::setup::parse_store)]
    pub secret_store: Store,
    /// Looks (and attempts per request) before giving up.
    #[arg(long, default_value_t = 8)]
    pub attempts: u32,
    /// First wait in milliseconds (doubled after each look, at most 30 s).
    #[arg(long, default_value_t = 2000)]
    pub backoff_ms: u64,
}

pub fn run(a: Args) -> Exit {
    let retry = Policy::new(a.attempts, Duration::from_millis(a.backoff_ms));
    match check(a.spec.as_ref(), &a.secret_store, retry, chrono::Utc::now) {
        Ok(sent) => {
            eprintln!(
                "purge-check: {} {} ({})",
                sent.tenant,
                if sent.recorded {
                    "recorded"
                } else {
                    "was already recorded"
                },
                sent.lifecycle.phase
            );
            Exit::Ok
        }
        Err(e) => {
            crate::report::print_in("purge-check", &e);
            exit_of(&e)
        }
    }
}

/// The exit code of a lifecycle Job's failure (purge-check, report sync-failed).
pub fn exit_of(e: &JobError) -> Exit {
    match e {
        JobError::Setup(s) => s.into(),
        JobError::Kube(crate::io::kube::KubeError::Config(_)) => Exit::Invalid,
        JobError::Kube(_) => Exit::Unavailable,
        JobError::NotDone { .. } => Exit::Refused,
        JobError::Report(ReportError::Unavailable(_)) => Exit::Unavailable,
        JobError::Report(ReportError::Refused { code, .. }) if code == "signature_expired" => {
            Exit::Unavailable
        }
        JobError::Report(_) => Exit::Invalid,
    }
}
