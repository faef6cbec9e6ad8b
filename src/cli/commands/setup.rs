//! `provisio setup mysql|rabbitmq|minio|credentials` and `provisio teardown …`: run by the setup Jobs (see
//! `render::jobs`) with the tenant's [`SetupSpec`] and the admin credentials of the shared
//! service in their environment. Prints one line per object and `unchanged` when a run
//! changed nothing; exits 0 when done, 2 on invalid input, 3 when a server is unreachable
//! or refuses, 4 when teardown refuses a tenant that is not due for deletion.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::cli::Exit;
use crate::ops::setup::{Request, Service, Store};
use crate::setup::Policy;

pub use provisio_core::plan::setup::SPEC_ENV;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which shared service to set up.
    #[arg(value_enum)]
    pub service: ServiceArg,
    /// The tenant's setup spec (JSON); default: the `PROVISIO_SETUP_SPEC` variable.
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// Where tenant credentials live: `aws-secrets-manager` (region and access from the
    /// standard `AWS_*` variables) or `file:<dir>` (one JSON file per key).
    #[arg(long, value_parser = parse_store)]
    pub secret_store: Store,
    /// Attempts per connection before giving up on an unreachable server.
    #[arg(long, default_value_t = 6)]
    pub attempts: u32,
    /// First backoff delay in milliseconds (doubled after each failed attempt, at most 30 s,
    /// plus a random part up to the delay itself).
    #[arg(long, default_value_t = 500)]
    pub backoff_ms: u64,
    /// `minio` only: buckets through the S3 API, without the tenant user and policy of
    /// MinIO's admin API (for S3 servers that have none).
    #[arg(long)]
    pub buckets_only: bool,
    /// The time teardown checks the deletion date against (RFC 3339); default: now.
    #[arg(long, value_parser = super::args::parse_now)]
    pub now: Option<DateTime<Utc>>,
}

pub fn parse_store(s: &str) -> Result<Store, String> {
    match s.split_once(':') {
        _ if s == "aws-secrets-manager" => Ok(Store::AwsSecretsManager),
        Some(("file", dir)) if !dir.is_empty() => Ok(Store::File(PathBuf::from(dir))),
        _ => Err("expected `aws-secrets-manager` or `file:<dir>`".to_owned()),
    }
}

/// Which shared service (the command-line spelling of [`Service`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServiceArg {
    Mysql,
    Rabbitmq,
    /// Buckets through the S3 API (and the tenant's MinIO user).
    Minio,
    /// The tenant's admin password, internal API token and report key in the secret store
    /// (`setup` only; the report master secret from `PROVISIO_REPORT_SECRET`).
    Credentials,
    /// Everything of a purging tenant in every shared service, once its backup (or rollback)
    /// is verified, then the report (`teardown` only: the teardown Job).
    Tenant,
}

fn run_with(args: Args, teardown: bool) -> Exit {
    if args.service == ServiceArg::Tenant {
        if !teardown {
            crate::report::print_in(
                "setup tenant",
                &crate::setup::SetupError::invalid(
                    "service",
                    "`tenant` is for `teardown` only (setup runs per service)",
                ),
            );
            return Exit::Invalid;
        }
        return super::teardown::run(&crate::ops::teardown::Request {
            spec: args.spec,
            store: args.secret_store,
            retry: Policy::new(args.attempts, Duration::from_millis(args.backoff_ms)),
            now: args.now.unwrap_or_else(Utc::now),
            buckets_only: args.buckets_only,
        });
    }
    let service = match args.service {
        ServiceArg::Tenant => unreachable!("handled above"),
        ServiceArg::Mysql => Service::Mysql,
        ServiceArg::Rabbitmq => Service::Rabbitmq,
        ServiceArg::Minio => Service::Minio,
        ServiceArg::Credentials => Service::Credentials,
    };
    let req = Request {
        service,
        teardown,
        spec: args.spec,
        store: args.secret_store,
        retry: Policy::new(args.attempts, Duration::from_millis(args.backoff_ms)),
        buckets_only: args.buckets_only,
        now: args.now.unwrap_or_else(Utc::now),
    };
    let verb = if teardown { "teardown" } else { "setup" };
    match crate::ops::setup::run(&req) {
        Ok(report) => {
            print!("{}", report.render(service.as_str()));
            Exit::Ok
        }
        Err(e) => {
            crate::report::print_in(&format!("{verb} {}", service.as_str()), &e);
            (&e).into()
        }
    }
}

/// `provisio setup <service>`.
pub fn run(args: Args) -> Exit {
    run_with(args, false)
}

/// `provisio teardown <service>`.
pub fn run_teardown(args: Args) -> Exit {
    run_with(args, true)
}
