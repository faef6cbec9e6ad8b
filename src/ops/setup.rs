//! `setup` / `teardown`: the work of the setup Jobs for one shared service. Reads the
//! tenant's [`SetupSpec`] (a file or `PROVISIO_SETUP_SPEC`) and the shared service's admin
//! credentials from the environment, opens the secret store, and runs the service's client;
//! teardown first checks that the tenant is due for deletion.

use std::path::PathBuf;

use chrono::{DateTime, Utc};

use crate::setup::aws::{self, Credentials};
use crate::setup::secrets::{AwsSecretsManager, FileStore, SecretStore};
use crate::setup::{self, Policy, Report, SetupError, SetupSpec};
use provisio_core::plan::setup::SPEC_ENV;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Mysql,
    Rabbitmq,
    /// Buckets through the S3 API (and the tenant's MinIO user).
    Minio,
    /// The tenant's own credentials in the secret store (admin password, internal API token,
    /// report key): `setup` only; its spec is a `CredentialsSpec`.
    Credentials,
}

impl Service {
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Mysql => "mysql",
            Service::Rabbitmq => "rabbitmq",
            Service::Minio => "minio",
            Service::Credentials => "credentials",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Store {
    AwsSecretsManager,
    File(PathBuf),
}

/// One run of `setup` or `teardown`.
#[derive(Debug, Clone)]
pub struct Request {
    pub service: Service,
    pub teardown: bool,
    /// The spec file; `None`: the `PROVISIO_SETUP_SPEC` variable.
    pub spec: Option<PathBuf>,
    pub store: Store,
    pub retry: Policy,
    /// `minio` only: buckets through the S3 API, without MinIO's admin API.
    pub buckets_only: bool,
    /// The time teardown checks the deletion date against.
    pub now: DateTime<Utc>,
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

impl Store {
    pub(crate) fn open(&self, retry: Policy) -> Result<Box<dyn SecretStore>, SetupError> {
        match self {
            Store::File(dir) => Ok(Box::new(FileStore::new(dir))),
            Store::AwsSecretsManager => {
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

/// Environment variable holding the report master secret (`setup credentials`; the Job gets
/// it from the platform's Secret `provisio-report-master`, key `PROVISIO_REPORT_SECRET`).
pub const REPORT_SECRET_ENV: &str = "PROVISIO_REPORT_SECRET";

fn load_spec(spec: Option<&PathBuf>) -> Result<SetupSpec, SetupError> {
    Ok(SetupSpec::parse(&spec_text(spec)?)?)
}

/// The spec's JSON: the file, or the `PROVISIO_SETUP_SPEC` variable.
pub(crate) fn spec_text(spec: Option<&PathBuf>) -> Result<String, SetupError> {
    Ok(match spec {
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
    })
}

/// `setup credentials`: the tenant's own credentials (`setup::credentials`).
fn credentials(req: &Request) -> Result<Report, SetupError> {
    if req.teardown {
        return Err(SetupError::invalid(
            "teardown credentials",
            "the tenant's secret-store entries are removed by its teardown, not on their own",
        ));
    }
    let spec =
        provisio_core::plan::lifecycle::CredentialsSpec::parse(&spec_text(req.spec.as_ref())?)?;
    let master = match std::env::var(REPORT_SECRET_ENV) {
        Ok(v) if !v.trim_end_matches(['\n', '\r']).is_empty() => v,
        _ => {
            return Err(SetupError::invalid(
                "environment",
                format!(
                    "{REPORT_SECRET_ENV} must be set (the report master secret, from the Secret provisio-report-master)"
                ),
            ));
        }
    };
    let store = req.store.open(req.retry)?;
    setup::credentials::setup(
        &spec,
        master.trim_end_matches(['\n', '\r']).as_bytes(),
        &*store,
    )
}

pub(crate) fn env(name: &str) -> Result<String, SetupError> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => Err(SetupError::invalid(
            "environment",
            format!("{name} must be set (the admin credentials of the shared service)"),
        )),
    }
}

pub(crate) fn mysql_admin() -> Result<setup::mysql::Admin, SetupError> {
    Ok(setup::mysql::Admin {
        user: env("MYSQL_ADMIN_USER")?,
        password: env("MYSQL_ADMIN_PASSWORD")?,
    })
}

pub(crate) fn rabbitmq_admin() -> Result<setup::rabbitmq::Admin, SetupError> {
    Ok(setup::rabbitmq::Admin {
        user: env("RABBITMQ_ADMIN_USER")?,
        password: env("RABBITMQ_ADMIN_PASSWORD")?,
    })
}

/// The S3 API of the shared MinIO as one user (the root user: `MINIO_ROOT_USER`/`MINIO_ROOT_PASSWORD`).
pub(crate) fn minio_s3_client(
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

/// Runs one request; the report says what changed.
pub fn run(req: &Request) -> Result<Report, SetupError> {
    if req.service == Service::Credentials {
        return credentials(req);
    }
    let (args, teardown) = (req, req.teardown);
    let spec = load_spec(args.spec.as_ref())?;
    if teardown {
        setup::check_deletion_due(&spec, args.now)?;
    }
    let retry = args.retry;
    let store = args.store.open(retry)?;
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
        Service::Credentials => credentials(req),
    }
}

/// `website-status`: the tenant's website record follows its status (the spec rendered into
/// its `website-status` Job), with the token from the secret store.
pub fn website_status(
    spec: Option<&PathBuf>,
    store: &Store,
    retry: Policy,
) -> Result<Report, SetupError> {
    let spec = provisio_core::plan::lifecycle::WebsiteStatusSpec::parse(&spec_text(spec)?)?;
    let w = &spec.website;
    let store = store.open(retry)?;
    let token = store
        .get(&w.token_secret)?
        .and_then(|c| c.get("token").cloned())
        .ok_or_else(|| {
            SetupError::invalid(
                format!("secret at `{}`", w.token_secret),
                "no `token`: `setup credentials` has not run for this tenant",
            )
        })?;
    let client = setup::websites::Client::new(&w.url, &token, retry);
    setup::websites::set_status(&client, &spec.tenant, &w.domain, w.id.as_deref(), &w.status)
}
