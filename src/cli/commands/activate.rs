//! `provisio activate`: run by the `activate` PostSync Job of a provisioning (or failed)
//! tenant (`ops::activate`). Exits 0 when activated (or already active), 2 on invalid input
//! or a refused report, 3 when a probe still fails at the deadline or a server stays
//! unreachable, 4 when the tenant is not provisioning or failed.

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::Exit;
use crate::ops::activate::{ActivateError, Options, Outcome, describe, run as activate};
use crate::ops::report::ReportError;
use crate::ops::setup::Store;
use crate::setup::Policy;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The Job's spec (JSON); default: the `PROVISIO_SETUP_SPEC` variable.
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// Where the tenant's credentials live (as for `setup`).
    #[arg(long, value_parser = super::setup::parse_store)]
    pub secret_store: Store,
    /// Extra trusted root certificates (PEM) for the health probe and the SMTP relay.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Where a failure's reason is written for the kubelet (the Job's termination message).
    #[arg(long, default_value = "/dev/termination-log")]
    pub termination_log: PathBuf,
    /// Attempts per request (serve, the store, the websites-service) before giving up.
    #[arg(long, default_value_t = 6)]
    pub attempts: u32,
    /// First backoff delay in milliseconds, for requests and probe rounds (doubled each time).
    #[arg(long, default_value_t = 2000)]
    pub backoff_ms: u64,
}

pub fn run(a: Args) -> Exit {
    let retry = Policy::new(a.attempts, Duration::from_millis(a.backoff_ms));
    let options = Options {
        spec: a.spec,
        store: a.secret_store,
        ca_file: a.ca_file,
        termination_log: Some(a.termination_log),
        retry,
        round_delay: Duration::from_millis(a.backoff_ms),
    };
    match activate(&options, chrono::Utc::now) {
        Ok(Outcome::AlreadyActive { since }) => {
            match since {
                Some(t) => eprintln!("activate: already active since {}", t.to_rfc3339()),
                None => eprintln!("activate: already active"),
            }
            Exit::Ok
        }
        Ok(Outcome::Activated {
            website,
            welcome_sent,
            sent,
        }) => {
            if let Some(w) = website {
                eprintln!("activate: website {} {}", w.id, describe(&w.change));
            }
            eprintln!(
                "activate: welcome email {}",
                if welcome_sent {
                    "sent"
                } else {
                    "already sent: not sent again"
                }
            );
            eprintln!(
                "activate: {} {} ({})",
                sent.tenant,
                if sent.recorded {
                    "activated"
                } else {
                    "was already recorded active"
                },
                sent.lifecycle.phase
            );
            Exit::Ok
        }
        Err(e) => {
            crate::report::print_in("activate", &e);
            exit_of(&e)
        }
    }
}

fn exit_of(e: &ActivateError) -> Exit {
    match e {
        ActivateError::Setup(s) => s.into(),
        ActivateError::Kube(crate::io::kube::KubeError::Config(_)) => Exit::Invalid,
        ActivateError::Kube(_) | ActivateError::Unhealthy { .. } | ActivateError::Mail { .. } => {
            Exit::Unavailable
        }
        ActivateError::NotActivating { .. } => Exit::Refused,
        ActivateError::Render(_) => Exit::Failed,
        ActivateError::Report(ReportError::Unavailable(_)) => Exit::Unavailable,
        ActivateError::Report(ReportError::Refused { code, .. }) if code == "signature_expired" => {
            Exit::Unavailable
        }
        ActivateError::Report(_) => Exit::Invalid,
    }
}
