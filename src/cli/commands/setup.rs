//! `provisio setup mysql|rabbitmq|s3` and `provisio teardown …`: run by the setup Jobs (see
//! `render::jobs`) with the tenant's [`SetupSpec`] and the admin credentials of the shared
//! service in their environment. Prints one line per object and `unchanged` when a run
//! changed nothing; exits 0 when done, 2 on invalid input, 3 when a server is unreachable
//! or refuses, 4 when teardown refuses a tenant that is not due for deletion.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::cli::EXIT_OK;
use crate::setup::aws::{self, Credentials};
use crate::setup::secrets::{AwsSecretsManager, FileStore, SecretStore};
use crate::setup::{self, Policy, Report, SetupError, SetupSpec};

pub use provisio_core::plan::setup::SPEC_ENV;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Service {
    Mysql,
    Rabbitmq,
    /// Buckets through the S3 API (and the tenant's MinIO user).
    Minio,
}

impl Service {
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Mysql => "mysql",
            Service::Rabbitmq => "rabbitmq",
            Service::Minio => "minio",
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which shared service to set up.
    #[arg(value_enum)]
    pub service: Service,
    /// The tenant's setup spec (JSON); default: the `PROVISIO_SETUP_SPEC` variable.
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// Where tenant credentials live: `aws-secrets-manager` (region and access from the
    /// standard `AWS_*` variables) or `file:<dir>` (one JSON file per key).
    #[arg(long, value_parser = parse_store)]
    pub secret_store: StoreArg,
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
    #[arg(long, value_parser = super::parse_now)]
    pub now: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub enum StoreArg {
    AwsSecretsManager,
    File(PathBuf),
}

fn parse_store(s: &str) -> Result<StoreArg, String> {
    match s.split_once(':') {
        _ if s == "aws-secrets-manager" => Ok(StoreArg::AwsSecretsManager),
        Some(("file", dir)) if !dir.is_empty() => Ok(StoreArg::File(PathBuf::from(dir))),
        _ => Err("expected `aws-secrets-manager` or `file:<dir>`".to_owned()),
    }
}

/// AWS access from the standard variables: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// optional `AWS_SESSION_TOKEN`.
fn aws_credentials() -> Result<Credentials, SetupError> {
    Ok(Credentials {
        access_key: env("AWS_ACCESS_KEY_ID")?,
        secret_key: env("AWS_SECRET_ACCESS_KEY")?,
        session_token: std::env::var("AWS_SESSION_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
    })
}

impl StoreArg {
    fn open(&self, retry: Policy) -> Result<Box<dyn SecretStore>, SetupError> {
        match self {
            StoreArg::File(dir) => Ok(Box::new(FileStore::new(dir))),
            StoreArg::AwsSecretsManager => {
                let region = env("AWS_REGION").or_else(|_| env("AWS_DEFAULT_REGION"))?;
                let endpoint = std::env::var("AWS_ENDPOINT_URL_SECRETS_MANAGER")
                    .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
                    .unwrap_or_else(|_| format!("https://secretsmanager.{region}.amazonaws.com"));
                let client = aws::Client::new(
                    "secrets manager",
                    "secretsmanager",
                    &endpoint,
                    &region,
                    aws_credentials()?,
                    retry,
                )?;
                Ok(Box::new(AwsSecretsManager::new(client)))
            }
        }
    }
}

fn load_spec(args: &Args) -> Result<SetupSpec, SetupError> {
    let json = match &args.spec {
        Some(path) => std::fs::read_to_string(path).map_err(|source| SetupError::Io {
            action: "read the setup spec",
            path: path.display().to_string(),
            source,
        })?,
        None => std::env::var(SPEC_ENV).map_err(|_| {
            SetupError::invalid(
                "setup spec",
                format!("give --spec <file> or set {SPEC_ENV}"),
            )
        })?,
    };
    Ok(SetupSpec::parse(&json)?)
}

fn env(name: &str) -> Result<String, SetupError> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => Err(SetupError::invalid(
            "environment",
            format!("{name} must be set (the admin credentials of the shared service)"),
        )),
    }
}

fn mysql_admin() -> Result<setup::mysql::Admin, SetupError> {
    Ok(setup::mysql::Admin {
        user: env("MYSQL_ADMIN_USER")?,
        password: env("MYSQL_ADMIN_PASSWORD")?,
    })
}

fn rabbitmq_admin() -> Result<setup::rabbitmq::Admin, SetupError> {
    Ok(setup::rabbitmq::Admin {
        user: env("RABBITMQ_ADMIN_USER")?,
        password: env("RABBITMQ_ADMIN_PASSWORD")?,
    })
}

/// The S3 API of the shared MinIO as one user (the root user: `MINIO_ROOT_USER`/`MINIO_ROOT_PASSWORD`).
fn minio_s3_client(
    label: &'static str,
    spec: &provisio_core::plan::setup::S3Spec,
    access_key: &str,
    secret_key: &str,
    retry: Policy,
) -> Result<aws::Client, SetupError> {
    let scheme = if spec.use_ssl { "https" } else { "http" };
    let region = std::env::var("MINIO_REGION").unwrap_or_else(|_| "us-east-1".to_owned());
    aws::Client::new(
        label,
        "s3",
        &format!("{scheme}://{}:{}", spec.host, spec.port),
        &region,
        Credentials {
            access_key: access_key.to_owned(),
            secret_key: secret_key.to_owned(),
            session_token: None,
        },
        retry,
    )
}

fn not_needed(spec: &SetupSpec, service: Service) -> Report {
    tracing::info!(tenant = %spec.tenant, service = service.as_str(), "the tenant does not use this service");
    Report::default()
}

fn execute(args: &Args, teardown: bool) -> Result<Report, SetupError> {
    let spec = load_spec(args)?;
    if teardown {
        setup::check_deletion_due(&spec, args.now.unwrap_or_else(Utc::now))?;
    }
    let retry = Policy::new(args.attempts, Duration::from_millis(args.backoff_ms));
    let store = args.secret_store.open(retry)?;
    match args.service {
        Service::Mysql => match &spec.mysql {
            None => Ok(not_needed(&spec, args.service)),
            Some(m) if teardown => setup::mysql::teardown(m, &mysql_admin()?, &*store, &retry),
            Some(m) => setup::mysql::setup(m, &mysql_admin()?, &*store, &retry),
        },
        Service::Rabbitmq => match &spec.rabbitmq {
            None => Ok(not_needed(&spec, args.service)),
            Some(r) if teardown => {
                setup::rabbitmq::teardown(r, &rabbitmq_admin()?, &*store, &retry)
            }
            Some(r) => setup::rabbitmq::setup(r, &rabbitmq_admin()?, &*store, &retry),
        },
        Service::Minio => match &spec.s3 {
            None => Ok(not_needed(&spec, args.service)),
            Some(s) => {
                let (root_user, root_password) =
                    (env("MINIO_ROOT_USER")?, env("MINIO_ROOT_PASSWORD")?);
                let client = minio_s3_client("s3", s, &root_user, &root_password, retry)?;
                let admin = setup::madmin::MinioAdmin::new(
                    minio_s3_client("minio admin API", s, &root_user, &root_password, retry)?,
                    root_password.clone(),
                );
                let mut report = Report::default();
                if teardown {
                    if !args.buckets_only {
                        report
                            .items
                            .extend(setup::madmin::teardown_user(&admin, s, &*store)?.items);
                    }
                    report
                        .items
                        .extend(setup::s3::teardown_buckets(&client, s)?.items);
                } else {
                    report
                        .items
                        .extend(setup::s3::setup_buckets(&client, s)?.items);
                    if args.buckets_only {
                        return Ok(report);
                    }
                    let can_sign_in = |user: &str, secret: &str| {
                        let as_user = minio_s3_client("s3", s, user, secret, retry)?;
                        setup::s3::credentials_work(&as_user, s)
                    };
                    report
                        .items
                        .extend(setup::madmin::setup_user(&admin, s, &*store, can_sign_in)?.items);
                }
                Ok(report)
            }
        },
    }
}

fn run_with(args: Args, teardown: bool) -> u8 {
    let verb = if teardown { "teardown" } else { "setup" };
    match execute(&args, teardown) {
        Ok(report) => {
            print!("{}", report.render(args.service.as_str()));
            EXIT_OK
        }
        Err(e) => {
            eprintln!("error: {verb} {}: {e}", args.service.as_str());
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            e.exit_code()
        }
    }
}

/// `provisio setup <service>`.
pub fn run(args: Args) -> u8 {
    run_with(args, false)
}

/// `provisio teardown <service>`.
pub fn run_teardown(args: Args) -> u8 {
    run_with(args, true)
}
