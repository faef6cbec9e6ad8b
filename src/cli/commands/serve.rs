//! `provisio serve`: the billing intake's command line. The webhook secret is read from
//! `PROVISIO_WEBHOOK_SECRET` or `--secret-file`, the lifecycle reports' master secret from
//! `PROVISIO_REPORT_SECRET` or `--report-secret-file`, never from a flag value; so are the git
//! credentials of `--registry-git` (see [`super::args::GitArgs`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use tracing::{error, warn};

use crate::cli::Exit;
use crate::io::repo::upstream::Upstream;
use crate::report;
use crate::services::serve::{self, Config, auth::Secret};
use crate::services::signal;

/// Environment variable holding the webhook secret.
pub const SECRET_ENV: &str = "PROVISIO_WEBHOOK_SECRET";
/// Environment variable holding the report master secret (one line; the file may hold a
/// previous one on a second line during a rotation).
pub const REPORT_SECRET_ENV: &str = "PROVISIO_REPORT_SECRET";

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The registry directory, inside a git work tree (tenant files are committed there);
    /// with --registry-git, provisio's own clone of that repository (created when missing).
    #[arg(long, default_value = "registry")]
    pub registry: PathBuf,
    /// The shared registry repository (https:// or ssh:// URL; a path for tests): --registry
    /// is kept as its clone, and every commit is pushed to it before the events are
    /// answered (a rejected push is redone on top of the remote head).
    #[arg(long, requires = "branch", value_name = "URL")]
    pub registry_git: Option<String>,
    /// The branch of --registry-git to commit to.
    #[arg(long, requires = "registry_git")]
    pub branch: Option<String>,
    #[command(flatten)]
    pub git: super::args::GitArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// File holding the webhook secret (otherwise `PROVISIO_WEBHOOK_SECRET`).
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
    /// File holding the lifecycle reports' master secret, one per line: the current one,
    /// then the previous one during a rotation (otherwise `PROVISIO_REPORT_SECRET`; without
    /// either, lifecycle reports are refused).
    #[arg(long)]
    pub report_secret_file: Option<PathBuf>,
    /// Days between a cancellation and the earliest deletion.
    #[arg(long, default_value_t = provisio_core::intake::DEFAULT_GRACE_DAYS)]
    pub grace_days: i64,
    /// Accepted clock skew of `X-Signature` timestamps, in seconds.
    #[arg(long, default_value_t = 300)]
    pub signature_window: i64,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Seconds a client has to send a request's header (also how long an idle keep-alive
    /// connection is kept).
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub header_timeout: f64,
    /// Seconds a client has to send a request's body once its header arrived (408 after).
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub body_timeout: f64,
    /// Connections served at once; more wait in the kernel's backlog (lowered to fit the
    /// file-descriptor limit).
    #[arg(long, default_value_t = crate::services::http::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
}

/// A duration of at least a millisecond and at most a day, from seconds.
fn seconds(value: f64, flag: &str) -> Result<std::time::Duration, String> {
    if value.is_finite() && (0.001..=86_400.0).contains(&value) {
        Ok(std::time::Duration::from_secs_f64(value))
    } else {
        Err(format!("{flag} must be between 0.001 and 86400 seconds"))
    }
}

pub fn run(a: Args) -> Exit {
    let secret = match read_secret(a.secret_file.as_deref()) {
        Ok(s) => s,
        Err(m) => {
            eprintln!("error: {m}");
            return Exit::Invalid;
        }
    };
    let report_secrets = match read_report_secrets(a.report_secret_file.as_deref()) {
        Ok(s) => s,
        Err(m) => {
            eprintln!("error: {m}");
            return Exit::Invalid;
        }
    };
    if report_secrets.is_empty() {
        warn!(
            "no report secret ({REPORT_SECRET_ENV} or --report-secret-file): lifecycle reports are refused"
        );
    }
    if a.grace_days < 0 || a.signature_window <= 0 {
        eprintln!("error: --grace-days must be ≥ 0 and --signature-window > 0");
        return Exit::Invalid;
    }
    let timeouts = seconds(a.header_timeout, "--header-timeout")
        .and_then(|h| Ok((h, seconds(a.body_timeout, "--body-timeout")?)));
    let (header_timeout, body_timeout) = match timeouts {
        Ok(t) if a.max_connections > 0 => t,
        Ok(_) => {
            eprintln!("error: --max-connections must be at least 1");
            return Exit::Invalid;
        }
        Err(m) => {
            eprintln!("error: {m}");
            return Exit::Invalid;
        }
    };
    let (max_connections, lowered) = crate::services::http::fit_connections(a.max_connections);
    if let Some(why) = lowered {
        warn!("{why}");
        eprintln!("warning: {why}");
    }
    let upstream = match (&a.registry_git, &a.branch) {
        (Some(url), Some(branch)) => {
            let transport = a.git.transport();
            if let Err(e) = transport.check(url) {
                eprintln!("error: --registry-git: {e}");
                return Exit::Invalid;
            }
            Some(Upstream {
                url: url.clone(),
                branch: branch.clone(),
                transport,
            })
        }
        _ => None,
    };
    let mut config = Config::new(a.registry, secret);
    config.upstream = upstream;
    config.report_secrets = report_secrets;
    config.grace = chrono::Duration::days(a.grace_days);
    config.signature_window_secs = a.signature_window;
    config.body_timeout = body_timeout;
    config.limits = crate::services::http::Limits {
        header_timeout,
        max_connections,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.workers.max(1))
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return Exit::Invalid;
        }
    };
    let result = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(a.listen)
            .await
            .map_err(|source| serve::ServeError::Bind {
                addr: a.listen,
                source,
            })?;
        eprintln!(
            "provisio serve: listening on http://{}",
            listener.local_addr().map_err(serve::ServeError::Io)?
        );
        serve::serve(config, listener, signal::terminated()).await
    });
    match result {
        Ok(()) => Exit::Ok,
        Err(e) => {
            error!(error = %report::chain(&e), "serve failed");
            report::print(&e);
            match &e {
                serve::ServeError::Open(serve::writer::OpenError::Git(g)) => g.into(),
                serve::ServeError::Open(_) => Exit::Invalid,
                _ => Exit::Failed,
            }
        }
    }
}

fn read_secret(file: Option<&std::path::Path>) -> Result<Secret, String> {
    let bytes = match file {
        Some(f) => std::fs::read(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?,
        None => std::env::var(SECRET_ENV)
            .map_err(|_| format!("set {SECRET_ENV} or pass --secret-file"))?
            .into_bytes(),
    };
    Secret::new(bytes).ok_or_else(|| "the webhook secret is empty".to_owned())
}

/// The report master secrets, current first: every non-empty line of the file, or the
/// environment variable's value. None configured is not an error (the billing intake works
/// without them); a named file that cannot be read, or holds no secret, is.
fn read_report_secrets(file: Option<&std::path::Path>) -> Result<Vec<Secret>, String> {
    let text = match file {
        Some(f) => {
            let bytes =
                std::fs::read(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| format!("{} is not UTF-8 text", f.display()))?;
            let secrets: Vec<Secret> = text.lines().filter_map(Secret::new).collect();
            if secrets.is_empty() {
                return Err(format!("{} holds no report secret", f.display()));
            }
            return Ok(secrets);
        }
        None => match std::env::var(REPORT_SECRET_ENV) {
            Ok(v) => v,
            Err(_) => return Ok(Vec::new()),
        },
    };
    Ok(Secret::new(text).into_iter().collect())
}
