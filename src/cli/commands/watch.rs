//! `provisio watch`: the arguments of watch mode and of the delivery that `generate --commit`
//! shares, and the wiring around the loop on a small runtime thread: signal handling
//! ([`crate::services::signal`]: SIGTERM/SIGINT set a flag the loop checks; a second signal
//! exits at once with code 1) and the `/metrics` server ([`crate::services::http`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::cli::{EXIT_INVALID, EXIT_OK};
use crate::io::nudge;
use crate::io::repo::deliver::{self as delivery, Backoff, Identity, RepoConfig};
use crate::io::repo::follow as poll;
use crate::ops::generate::MassDeleteGuard;
use crate::services::watch::{self, WatchConfig, metrics};
use crate::services::{self, http, signal};

/// Where and how the output is committed and pushed (watch, and `generate --commit`).
#[derive(Debug, Clone, clap::Args)]
pub struct DeliveryArgs {
    /// URL of the manifests repository (a path or file:// URL with the default build). Used
    /// to create the clone when `--out` is not inside a git repository yet, and as the
    /// remote when the clone has none.
    #[arg(long)]
    pub manifests_url: Option<String>,
    /// The remote to push to.
    #[arg(long, default_value = "origin")]
    pub remote: String,
    /// The branch of the manifests repository to commit to (default: the branch checked
    /// out; `main` in a new clone of an empty repository).
    #[arg(long)]
    pub out_branch: Option<String>,
    /// Commit author name.
    #[arg(long, default_value = "provisio")]
    pub author_name: String,
    /// Commit author e-mail.
    #[arg(long, default_value = "provisio@localhost")]
    pub author_email: String,
    /// Push attempts in all before giving up (the commit stays local and is pushed later).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub push_attempts: u32,
    /// First wait between push attempts, doubled each time (at most 10 s).
    #[arg(long, default_value_t = 200)]
    pub push_backoff_ms: u64,
    /// After a push, POST a GitHub-format push event to this Argo CD webhook URL, e.g.
    /// https://argocd.example.com/api/webhook.
    #[arg(long)]
    pub argocd_webhook: Option<String>,
    /// The repository URL as Argo CD's Applications name it (default: --manifests-url).
    #[arg(long)]
    pub argocd_repo_url: Option<String>,
    /// Name of the environment variable holding the webhook secret (never the secret
    /// itself on the command line).
    #[arg(long, conflicts_with = "argocd_webhook_secret_file")]
    pub argocd_webhook_secret_env: Option<String>,
    /// File holding the webhook secret.
    #[arg(long)]
    pub argocd_webhook_secret_file: Option<PathBuf>,
}

impl DeliveryArgs {
    /// The delivery configuration; `Err` with a message for the user.
    pub fn config(&self, push: bool, exclusive: bool) -> Result<delivery::Config, String> {
        let nudge = match &self.argocd_webhook {
            None => None,
            Some(url) => {
                let secret = if let Some(var) = &self.argocd_webhook_secret_env {
                    Some(nudge::secret_from_env(var).map_err(|e| e.to_string())?)
                } else if let Some(file) = &self.argocd_webhook_secret_file {
                    Some(nudge::secret_from_file(file).map_err(|e| delivery::chain(&e))?)
                } else {
                    None
                };
                let repo_url = self
                    .argocd_repo_url
                    .clone()
                    .or_else(|| self.manifests_url.clone())
                    .ok_or("--argocd-webhook needs --argocd-repo-url or --manifests-url")?;
                Some(nudge::Nudge {
                    url: url.clone(),
                    repo_url,
                    secret,
                    timeout: Duration::from_secs(10),
                })
            }
        };
        Ok(delivery::Config {
            repo: RepoConfig {
                remote: self.remote.clone(),
                url: self.manifests_url.clone(),
                branch: self.out_branch.clone(),
                author: Identity {
                    name: self.author_name.clone(),
                    email: self.author_email.clone(),
                },
                exclusive,
            },
            push: push.then_some(Backoff {
                attempts: self.push_attempts,
                initial: Duration::from_millis(self.push_backoff_ms),
                max: Duration::from_secs(10),
            }),
            nudge,
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub paths: super::PathArgs,
    #[command(flatten)]
    pub now: super::NowArg,
    #[command(flatten)]
    pub delivery: DeliveryArgs,
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
    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9464.
    #[arg(long)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Follow this registry repository instead of watching --registry (which becomes the
    /// local clone).
    #[arg(long, requires = "branch")]
    pub registry_git: Option<String>,
    /// The registry branch to follow (with --registry-git).
    #[arg(long, requires = "registry_git")]
    pub branch: Option<String>,
    /// Seconds between fetches of --registry-git.
    #[arg(long, default_value_t = 30)]
    pub poll_interval_secs: u64,
    /// Skip the full re-render of the first cycle (trust the state file at start).
    #[arg(long)]
    pub no_full_on_start: bool,
}

pub fn run(args: Args) -> u8 {
    let delivery = if args.no_commit {
        None
    } else {
        match args.delivery.config(!args.no_push, true) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_INVALID;
            }
        }
    };
    // Signals and /metrics run on a small runtime thread; the loop itself is synchronous.
    let runtime = match http::RuntimeThread::start("provisio-watch-edge", 0) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {}", delivery::chain(&e));
            return EXIT_INVALID;
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    if let Err(e) = signal::stop_on_signals(runtime.handle(), stop.clone()) {
        eprintln!("error: cannot install the signal handler: {e}");
        return EXIT_INVALID;
    }
    let metrics = Arc::new(metrics::Metrics::new());
    let server = match args.metrics_addr {
        Some(addr) => {
            let started = http::bind(addr).and_then(|listener| {
                let router = services::metrics::router(metrics.registry());
                http::Server::start(runtime.handle(), listener, router)
            });
            match started {
                Ok(server) => {
                    let bound = server.addr();
                    tracing::info!(%bound, "serving /metrics");
                    eprintln!("watch: metrics at http://{bound}/metrics");
                    Some(server)
                }
                Err(e) => {
                    eprintln!("error: cannot serve /metrics: {}", delivery::chain(&e));
                    return EXIT_INVALID;
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
    cfg.poll = match (args.registry_git, args.branch) {
        (Some(url), Some(branch)) => Some(poll::PollConfig {
            url,
            branch,
            interval: Duration::from_secs(args.poll_interval_secs.max(1)),
        }),
        _ => None,
    };
    let result = watch::run(&cfg, &metrics, &stop);
    // From here a signal exits at once (code 1), as during a stop.
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    if let Some(s) = server
        && let Err(e) = s.stop()
    {
        tracing::warn!(error = %delivery::chain(&e), "the /metrics server failed");
    }
    match result {
        Ok(()) => {
            eprintln!("watch: stopped");
            EXIT_OK
        }
        Err(e) => {
            eprintln!("error: {}", delivery::chain(&e));
            EXIT_INVALID
        }
    }
}
