//! `provisio backup`: run by the backup Job of a deprovisioning tenant from its deletion date:
//! archives its databases and buckets with a manifest, then reports `backup-completed`. Exits
//! 0 when reported, 2 on invalid input or a refused report, 3 when a server, the archive or
//! serve is unreachable or refuses, 4 before the deletion date (nothing done).

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::cli::Exit;
use crate::ops::backup::{BackupError, run as backup};
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
    /// Attempts per request before giving up.
    #[arg(long, default_value_t = 6)]
    pub attempts: u32,
    /// First backoff delay in milliseconds (doubled after each failed attempt, at most 30 s).
    #[arg(long, default_value_t = 500)]
    pub backoff_ms: u64,
    /// The time checked against the deletion date (RFC 3339); default: now.
    #[arg(long, value_parser = super::args::parse_now)]
    pub now: Option<DateTime<Utc>>,
    /// Size of the parts dumps and objects are read and uploaded in, in MiB (at least 5, S3's
    /// smallest part): about twice this is held in memory at once. A dump past 2,000 parts
    /// doubles its parts every 2,000 (at most 16 times this), so that S3's 10,000 parts hold it.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(5..=512))]
    pub part_mib: u32,
}

pub fn run(a: Args) -> Exit {
    let retry = Policy::new(a.attempts, Duration::from_millis(a.backoff_ms));
    let now = a.now.unwrap_or_else(Utc::now);
    let part_size = a.part_mib as usize * 1024 * 1024;
    let result = backup(
        a.spec.as_ref(),
        &a.secret_store,
        retry,
        part_size,
        now,
        Utc::now,
    );
    match result {
        Ok(done) => {
            println!(
                "backup: {} files, {} bytes at {} (manifest sha256 {}); {} {}",
                done.files,
                done.bytes,
                done.location,
                done.manifest_sha256,
                done.sent.tenant,
                if done.sent.recorded {
                    "recorded"
                } else {
                    "was already recorded"
                }
            );
            Exit::Ok
        }
        Err(e) => {
            crate::report::print_in("backup", &e);
            exit_of(&e)
        }
    }
}

fn exit_of(e: &BackupError) -> Exit {
    match e {
        BackupError::Setup(s) => s.into(),
        BackupError::NotDue { .. } => Exit::Refused,
        BackupError::Incomplete { .. } => Exit::Unavailable,
        BackupError::Report(ReportError::Unavailable(_)) => Exit::Unavailable,
        BackupError::Report(_) => Exit::Invalid,
    }
}
