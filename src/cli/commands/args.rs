//! Argument groups several commands share: where the registry and the output are, the time
//! to render for, how git remotes are reached, and how the output is delivered to the
//! manifests repository. Secrets come from files or the environment, never from a flag
//! value (and no environment value is shown in `--help`).

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::io::nudge;
use crate::io::repo::Author;
use crate::io::repo::output::RepoConfig;
use crate::io::repo::transport::{Token, Transport};
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

/// Environment variable: the https user name (when `--git-username` is not given).
pub const GIT_USERNAME_ENV: &str = "PROVISIO_GIT_USERNAME";
/// Environment variable: the https password or token (when `--git-token-file` is not given).
pub const GIT_TOKEN_ENV: &str = "PROVISIO_GIT_TOKEN";
/// Environment variables of watch's registry remote, when its credentials differ.
pub const REGISTRY_GIT_USERNAME_ENV: &str = "PROVISIO_REGISTRY_GIT_USERNAME";
pub const REGISTRY_GIT_TOKEN_ENV: &str = "PROVISIO_REGISTRY_GIT_TOKEN";

/// How git remotes are reached: https (user, token, CA bundle) or ssh (key, known_hosts).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GitArgs {
    /// https user name (otherwise PROVISIO_GIT_USERNAME; default `oauth2`, which GitLab
    /// accepts with any access token; a deploy token needs its own name).
    #[arg(long, value_name = "NAME")]
    pub git_username: Option<String>,
    /// File holding the https password or token, read at each connection (otherwise the
    /// value of PROVISIO_GIT_TOKEN). Never give a token in a URL.
    #[arg(long, value_name = "FILE")]
    pub git_token_file: Option<PathBuf>,
    /// PEM bundle of the CA that signed the git host's certificate (a private CA), trusted
    /// besides the system's store. Certificates are always verified.
    #[arg(long, value_name = "FILE")]
    pub git_ca_file: Option<PathBuf>,
    /// ssh private key (a deploy key; OpenSSH or PEM format, no passphrase).
    #[arg(long, value_name = "FILE")]
    pub ssh_key_file: Option<PathBuf>,
    /// The git host's ssh host keys (known_hosts format, e.g. from ssh-keyscan, checked
    /// against the fingerprints the host publishes). Required for ssh URLs: an unknown or
    /// changed host key is refused.
    #[arg(long, value_name = "FILE")]
    pub ssh_known_hosts_file: Option<PathBuf>,
}

impl GitArgs {
    /// The transport these arguments (and the environment) describe.
    pub fn transport(&self) -> Transport {
        Transport {
            username: self
                .git_username
                .clone()
                .or_else(|| env_value(GIT_USERNAME_ENV)),
            token: match &self.git_token_file {
                Some(f) => Some(Token::File(f.clone())),
                None => env_value(GIT_TOKEN_ENV).map(|_| Token::Env(GIT_TOKEN_ENV.to_owned())),
            },
            ca_file: self.git_ca_file.clone(),
            ssh_key: self.ssh_key_file.clone(),
            known_hosts: self.ssh_known_hosts_file.clone(),
        }
    }
}

/// A non-empty environment variable.
fn env_value(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// watch's registry remote, when its credentials differ from the manifests remote's (one
/// GitLab project token each); by default the `--git-*` ones.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RegistryGitArgs {
    /// https user name of --registry-git (otherwise PROVISIO_REGISTRY_GIT_USERNAME, then
    /// --git-username).
    #[arg(long, value_name = "NAME", requires = "registry_git")]
    pub registry_git_username: Option<String>,
    /// File holding the token of --registry-git (otherwise PROVISIO_REGISTRY_GIT_TOKEN,
    /// then --git-token-file).
    #[arg(long, value_name = "FILE", requires = "registry_git")]
    pub registry_git_token_file: Option<PathBuf>,
    /// ssh key of --registry-git (default: --ssh-key-file).
    #[arg(long, value_name = "FILE", requires = "registry_git")]
    pub registry_ssh_key_file: Option<PathBuf>,
}

impl RegistryGitArgs {
    /// The registry remote's transport: these credentials over `base` (the CA bundle and
    /// known_hosts are shared).
    pub fn transport(&self, base: &Transport) -> Transport {
        let mut t = base.clone();
        if let Some(u) = self
            .registry_git_username
            .clone()
            .or_else(|| env_value(REGISTRY_GIT_USERNAME_ENV))
        {
            t.username = Some(u);
        }
        if let Some(f) = &self.registry_git_token_file {
            t.token = Some(Token::File(f.clone()));
        } else if env_value(REGISTRY_GIT_TOKEN_ENV).is_some() {
            t.token = Some(Token::Env(REGISTRY_GIT_TOKEN_ENV.to_owned()));
        }
        if let Some(k) = &self.registry_ssh_key_file {
            t.ssh_key = Some(k.clone());
        }
        t
    }
}

/// The push event format of the Argo CD nudge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum WebhookFormat {
    /// `X-GitHub-Event: push`, signed with `X-Hub-Signature-256` (webhook.github.secret).
    #[default]
    Github,
    /// `X-Gitlab-Event: Push Hook` with `X-Gitlab-Token` (webhook.gitlab.secret).
    Gitlab,
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
    /// After a push, POST a push event to this Argo CD webhook URL, e.g.
    /// https://argocd.example.com/api/webhook.
    #[arg(long)]
    pub argocd_webhook: Option<String>,
    /// The git host whose push event the nudge imitates (the secret Argo CD checks is
    /// webhook.github.secret or webhook.gitlab.secret accordingly).
    #[arg(long, value_enum, default_value_t = WebhookFormat::Github)]
    pub argocd_webhook_format: WebhookFormat,
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
    #[command(flatten)]
    pub git: GitArgs,
}

impl DeliveryArgs {
    /// The delivery configuration; `Err` with a message for the user.
    pub fn config(&self, push: bool) -> Result<Config, String> {
        if let Some(url) = &self.manifests_url {
            self.git
                .transport()
                .check(url)
                .map_err(|e| format!("--manifests-url: {e}"))?;
        }
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
                    repo_url: crate::io::repo::transport::redact(&repo_url),
                    secret,
                    timeout: Duration::from_secs(10),
                    format: match self.argocd_webhook_format {
                        WebhookFormat::Github => nudge::Format::Github,
                        WebhookFormat::Gitlab => nudge::Format::Gitlab,
                    },
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
                transport: self.git.transport(),
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
