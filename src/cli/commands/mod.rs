//! One module per sub-command: parse its arguments (clap), call the pipeline, print.

pub mod check;
pub mod generate;
pub mod serve;
pub mod setup;
pub mod validate;
pub mod watch;

use chrono::{DateTime, Utc};

use crate::cli::EXIT_INVALID;
use crate::ops::generate::PipelineError;

/// `--registry` and `--out`, shared by the commands that render.
#[derive(Debug, Clone, clap::Args)]
pub struct PathArgs {
    /// The registry directory (platform.yaml, tiers.yaml, products/, tenants/).
    #[arg(long, default_value = "registry")]
    pub registry: std::path::PathBuf,
    /// The output root: `tenants-out/` and `argocd/` are written below it.
    #[arg(long, default_value = ".")]
    pub out: std::path::PathBuf,
}

impl PathArgs {
    pub fn paths(&self) -> crate::ops::generate::Paths {
        crate::ops::generate::Paths {
            registry: self.registry.clone(),
            out: self.out.clone(),
        }
    }
}

/// `--now`, for deterministic runs; defaults to the current time.
#[derive(Debug, Clone, clap::Args)]
pub struct NowArg {
    /// The time to render for (RFC 3339), e.g. `2025-07-16T00:00:00Z`.
    #[arg(long, value_parser = parse_now)]
    pub now: Option<DateTime<Utc>>,
}

impl NowArg {
    pub fn get(&self) -> DateTime<Utc> {
        self.now.unwrap_or_else(Utc::now)
    }
}

fn parse_now(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("expected an RFC 3339 time such as 2025-01-15T10:00:00Z ({e})"))
}

/// Prints a pipeline error to stderr; returns the exit code.
pub fn report(e: &PipelineError) -> u8 {
    match e {
        PipelineError::Invalid(report) => eprint!("{}", report.render()),
        other => {
            eprintln!("error: {other}");
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
        }
    }
    EXIT_INVALID
}
