//! `provisio watch`: the arguments of watch mode and of the delivery that `generate --commit`
//! shares, and the wiring around the loop on a small runtime thread: signal handling
//! ([`crate::services::signal`]: SIGTERM/SIGINT set a flag the loop checks; a second signal
//! exits at once with code 1) and the server of `--metrics-addr` ([`crate::services::http`]:
//! `/metrics`, `/healthz`, `/readyz`, the registry's push webhook).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use std::path::PathBuf;

use crate::cli::Exit;
use crate::io::nudge;
use crate::io::repo::follow::FollowConfig;
use crate::ops::generate::MassDeleteGuard;
use crate::report;
use crate::services::watch::server::{self, Health, RegistryHook};
use crate::services::watch::{self, WatchConfig, metrics};
use crate::services::{http, signal};

/// Environment variable: the registry webhook's secret (when no file is given).
pub const REGISTRY_WEBHOOK_SECRET_ENV: &str = "PROVISIO_REGISTRY_WEBHOOK_SECRET";

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub paths: super::args::PathArgs,
    #[command(flatten)]
    pub now: super::args::NowArg,
    #[command(flatten)]
    pub delivery: super::args::DeliveryArgs,
    /// Only regenerate the output tree: no commit, no push.
    #[arg(long, conflicts_with = "no_push")]
    pub no_commit: bool,
    /// Commit but do not push.
    #[arg(long)]
    pub no_push: bool,
    /// Quiet time (ms) that ends a burst of registry changes.
    #[arg(long, default_value_t = 200)]
    pub debounce_ms: u64,
    /// Seconds between retries of a failed delivery.
    #[arg(long, default_value_t = 30)]
    pub retry_interval_secs: u64,
    /// Allow removing more than `--max-delete-percent` of the tenants in one regeneration.
    #[arg(long)]
    pub allow_mass_delete: bool,
    /// Share of the existing tenants one regeneration may remove without --allow-mass-delete.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub max_delete_percent: u32,
    /// Serve /metrics, /healthz, /readyz (and the registry webhook) at http://ADDR, e.g.
    /// 127.0.0.1:9464.
    #[arg(long)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Follow this registry repository instead of watching --registry (which becomes the
    /// local clone).
    #[arg(long, requires = "branch")]
    pub registry_git: Option<String>,
    /// The registry branch to follow (with --registry-git).
    #[arg(long, requires = "registry_git")]
    pub branch: Option<String>,
    /// Seconds between fetches of --registry-git (the fallback of the registry webhook).
    #[arg(long, default_value_t = 30)]
    pub poll_interval_secs: u64,
    #[command(flatten)]
    pub registry_git_creds: super::args::RegistryGitArgs,
    /// File holding the secret of the registry repository's push webhook (otherwise
    /// PROVISIO_REGISTRY_WEBHOOK_SECRET): enables POST /api/v1/webhooks/registry on
    /// --metrics-addr (GitLab's X-Gitlab-Token or GitHub's X-Hub-Signature-256), which
    /// makes watch fetch --registry-git at once.
    #[arg(long, value_name = "FILE", requires = "registry_git")]
    pub registry_webhook_secret_file: Option<PathBuf>,
    /// Skip the full re-render of the first cycle (trust the state file at start).
    #[arg(long)]
    pub no_full_on_start: bool,
}

pub fn run(args: Args) -> Exit {
    let delivery = if args.no_commit {
        None
    } else {
        match args.delivery.config(!args.no_push) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("error: {e}");
                return Exit::Invalid;
            }
        }
    };
    let poll = match (&args.registry_git, &args.branch) {
        (Some(url), Some(branch)) => {
            let transport = args
                .registry_git_creds
                .transport(&args.delivery.git.transport());
            if let Err(e) = transport.check(url) {
                eprintln!("error: --registry-git: {e}");
                return Exit::Invalid;
            }
            Some(FollowConfig {
                url: url.clone(),
                branch: branch.clone(),
                interval: Duration::from_secs(args.poll_interval_secs.max(1)),
                transport,
            })
        }
        _ => None,
    };
    let hook_secret = match &args.registry_webhook_secret_file {
        Some(f) => Some(nudge::secret_from_file(f).map_err(|e| report::chain(&e))),
        None if args.registry_git.is_some()
            && std::env::var_os(REGISTRY_WEBHOOK_SECRET_ENV).is_some() =>
        {
            Some(nudge::secret_from_env(REGISTRY_WEBHOOK_SECRET_ENV).map_err(|e| e.to_string()))
        }
        None => None,
    };
    let hook = match (hook_secret, &args.branch) {
        (Some(Ok(secret)), Some(branch)) => {
            if args.metrics_addr.is_none() {
                eprintln!("error: the registry webhook is served on --metrics-addr; give it");
                return Exit::Invalid;
            }
            Some(RegistryHook {
                secret,
                branch: branch.clone(),
            })
        }
        (Some(Err(e)), _) => {
            eprintln!("error: the registry webhook secret: {e}");
            return Exit::Invalid;
        }
        _ => None,
    };
    // Signals and /metrics run on a small runtime thread; the loop itself is synchronous.
    let runtime = match http::RuntimeThread::start("provisio-watch-edge", 0) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {}", report::chain(&e));
            return Exit::Failed;
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    if let Err(e) = signal::stop_on_signals(runtime.handle(), stop.clone()) {
        eprintln!("error: cannot install the signal handler: {e}");
        return Exit::Failed;
    }
    let metrics = Arc::new(metrics::Metrics::new());
    let health = Arc::new(Health::default());
    let with_hook = hook.is_some();
    let server = match args.metrics_addr {
        Some(addr) => {
            let started = http::bind(addr).and_then(|listener| {
                let router = server::router(metrics.registry(), health.clone(), hook);
                http::Server::start(runtime.handle(), listener, router, http::Limits::default())
            });
            match started {
                Ok(server) => {
                    let bound = server.addr();
                    tracing::info!(%bound, "serving /metrics, /healthz, /readyz");
                    eprintln!("watch: metrics at http://{bound}/metrics");
                    if with_hook {
                        eprintln!(
                            "watch: registry webhook at http://{bound}{}",
                            server::REGISTRY_HOOK
                        );
                    }
                    Some(server)
                }
                Err(e) => {
                    eprintln!("error: cannot serve /metrics: {}", report::chain(&e));
                    return Exit::Failed;
                }
            }
        }
        None => None,
    };
    let mut cfg = WatchConfig::new(args.paths.paths());
    cfg.now = args.now.now;
    cfg.mass_delete = MassDeleteGuard {
        max_percent: args.max_delete_percent,
        allow: args.allow_mass_delete,
    };
    cfg.debounce = Duration::from_millis(args.debounce_ms);
    cfg.retry_interval = Duration::from_secs(args.retry_interval_secs);
    cfg.delivery = delivery;
    cfg.full_on_start = !args.no_full_on_start;
    cfg.poll = poll;
    let result = watch::run(&cfg, &metrics, &health, &stop);
    // From here a signal exits at once (code 1), as during a stop.
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    if let Some(s) = server
        && let Err(e) = s.stop()
    {
        tracing::warn!(error = %report::chain(&e), "the /metrics server failed");
    }
    match result {
        Ok(()) => {
            eprintln!("watch: stopped");
            Exit::Ok
        }
        Err(e) => {
            eprintln!("error: {}", report::chain(&e));
            match &e {
                watch::WatchError::Git(g) => g.into(),
                watch::WatchError::Delivery(d) => d.into(),
                _ => Exit::Failed,
            }
        }
    }
}
