//! Argument groups several commands share: where the registry and the output are, the time
//! to render for, and how the output is delivered to the manifests repository.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::io::nudge;
use crate::io::repo::Author;
use crate::io::repo::output::RepoConfig;
use crate::io::retry::Policy;
use crate::ops::deliver::Config;
use crate::report;

/// `--registry` and `--out`, shared by the commands that render.
#[derive(Debug, Clone, clap::Args)]
pub struct PathArgs {
    /// The registry directory (platform.yaml, tiers.yaml, products/, teams/, tenants/).
    #[arg(long, default_value = "registry")]
    pub registry: std::path::PathBuf,
    /// The output root: `tenants-out/`, `platform-out/` and `argocd/` are written below it.
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

pub fn parse_now(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("expected an RFC 3339 time such as 2025-01-15T10:00:00Z ({e})"))
}

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
    pub fn config(&self, push: bool, exclusive: bool) -> Result<Config, String> {
        let nudge = match &self.argocd_webhook {
            None => None,
            Some(url) => {
                let secret = if let Some(var) = &self.argocd_webhook_secret_env {
                    Some(nudge::secret_from_env(var).map_err(|e| e.to_string())?)
                } else if let Some(file) = &self.argocd_webhook_secret_file {
                    Some(nudge::secret_from_file(file).map_err(|e| report::chain(&e))?)
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
        Ok(Config {
            repo: RepoConfig {
                remote: self.remote.clone(),
                url: self.manifests_url.clone(),
                branch: self.out_branch.clone(),
                author: Author {
                    name: self.author_name.clone(),
                    email: self.author_email.clone(),
                },
                exclusive,
            },
            push: push.then_some(Policy {
                max: Duration::from_secs(10),
                ..Policy::new(
                    self.push_attempts,
                    Duration::from_millis(self.push_backoff_ms),
                )
            }),
            nudge,
        })
    }
}
