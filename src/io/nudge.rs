//! The Argo CD nudge: after a push, POST a `push` event in the platform git host's format to
//! Argo CD's `/api/webhook` so the ApplicationSets and Applications refresh at once instead
//! of at the next poll. Argo CD's handler (`util/webhook/webhook.go`) tells the formats apart
//! by header and reads, from either, the repository's web URL, `ref`, `before`/`after`, the
//! default branch (to know whether HEAD moved) and the commits' added/modified/removed files:
//!
//! - [`Format::Github`]: `X-GitHub-Event: push`, signed with `X-Hub-Signature-256`
//!   (HMAC-SHA256 of the body; Argo CD's `webhook.github.secret`);
//! - [`Format::Gitlab`]: `X-Gitlab-Event: Push Hook` and the secret as `X-Gitlab-Token`
//!   (Argo CD's `webhook.gitlab.secret`), `project.web_url` without `.git` as GitLab sends it.
//!
//! The secret comes from an environment variable or a file, never a flag value. Sent through
//! [`crate::io::http`] under [`RETRY`], within the nudge's `timeout` in all.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use crate::io::http;
use crate::io::repo::Author;
use crate::io::repo::message::{CommitInfo, FileChanges};
use crate::io::retry::Policy;

/// Retries of a nudge: a few quick ones (the nudge only saves Argo CD's next poll), none
/// once the nudge's `timeout` has passed, so a hanging endpoint delays the caller no longer
/// than that.
pub const RETRY: Policy = Policy::new(3, Duration::from_millis(250));

#[derive(Debug, thiserror::Error)]
pub enum NudgeError {
    #[error("the environment variable {0} holding the Argo CD webhook secret is not set")]
    SecretEnv(String),
    #[error("cannot read the Argo CD webhook secret from {path}")]
    SecretFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the Argo CD webhook secret in {0} is empty")]
    EmptySecret(String),
    #[error("cannot POST the push event to {url} (after {attempts} attempt(s))")]
    Transport {
        url: String,
        attempts: u32,
        #[source]
        source: Box<ureq::Error>,
    },
    #[error("{url} answered the push event with HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
}

/// Which git host's push event the nudge imitates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    #[default]
    Github,
    Gitlab,
}

/// Where and how to nudge.
#[derive(Debug, Clone)]
pub struct Nudge {
    /// Argo CD's webhook endpoint, e.g. `https://argocd.example.com/api/webhook`.
    pub url: String,
    /// The repository URL as Argo CD's Applications name it (`repository.html_url`; for
    /// GitLab, `project.web_url` is derived from it).
    pub repo_url: String,
    pub secret: Option<Vec<u8>>,
    pub timeout: Duration,
    pub format: Format,
}

/// The web URL GitLab would send for a repository URL: `https://host[:port]/group/project`,
/// without user, `.git` or trailing slash (also for ssh and scp-like URLs, whose host and
/// path Argo CD matches against the Applications' `repoURL` in any of its forms).
pub fn web_url(repo_url: &str) -> String {
    let (host, path) = match repo_url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            // An ssh port is not the web server's.
            let host = if scheme.contains("ssh") {
                host.split(':').next().unwrap_or(host)
            } else {
                host
            };
            (host.to_owned(), path.to_owned())
        }
        None => match repo_url.split_once(':') {
            Some((authority, path)) => {
                let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
                (host.to_owned(), path.to_owned())
            }
            None => return repo_url.to_owned(),
        },
    };
    let path = path.trim_end_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    format!("https://{host}/{}", path.trim_start_matches('/'))
}

/// Reads the secret from the environment variable `name`.
pub fn secret_from_env(name: &str) -> Result<Vec<u8>, NudgeError> {
    let v = std::env::var(name).map_err(|_| NudgeError::SecretEnv(name.to_owned()))?;
    let v = v.trim_end_matches(['\r', '\n']);
    if v.is_empty() {
        return Err(NudgeError::EmptySecret(format!("${name}")));
    }
    Ok(v.as_bytes().to_vec())
}

/// Reads the secret from a file (a trailing newline is dropped).
pub fn secret_from_file(path: &Path) -> Result<Vec<u8>, NudgeError> {
    let v = std::fs::read(path).map_err(|source| NudgeError::SecretFile {
        path: path.to_path_buf(),
        source,
    })?;
    let end = v
        .iter()
        .rposition(|b| *b != b'\n' && *b != b'\r')
        .map_or(0, |i| i + 1);
    if end == 0 {
        return Err(NudgeError::EmptySecret(path.display().to_string()));
    }
    Ok(v[..end].to_vec())
}

/// `sha256=<hex>` of HMAC-SHA256(secret, body), as GitHub signs its webhooks.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any size");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// What was pushed.
pub struct PushEvent<'a> {
    pub branch: &'a str,
    pub before: Option<git2::Oid>,
    pub after: git2::Oid,
    pub commits: &'a [CommitInfo],
    /// Files changed by the push; `None` when too many to list.
    pub files: Option<&'a FileChanges>,
    pub author: &'a Author,
}

/// The commits of a push event as both formats list them (`extra` adds a format's own
/// fields); the changed files are attributed to the last commit, the one on the remote.
fn commit_entries(
    ev: &PushEvent,
    extra: impl Fn(&CommitInfo) -> serde_json::Value,
) -> Vec<serde_json::Value> {
    let files = ev.files.cloned().unwrap_or_default();
    let last = ev.commits.len().saturating_sub(1);
    ev.commits
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let pick = |v: &Vec<String>| if i == last { v.clone() } else { Vec::new() };
            let mut entry = json!({
                "id": c.id.to_string(),
                "message": c.message,
                "author": {"name": ev.author.name, "email": ev.author.email},
                "added": pick(&files.added),
                "modified": pick(&files.modified),
                "removed": pick(&files.removed),
            });
            if let (Some(entry), serde_json::Value::Object(more)) =
                (entry.as_object_mut(), extra(c))
            {
                entry.extend(more);
            }
            entry
        })
        .collect()
}

impl Nudge {
    /// The push event body in the configured format.
    pub fn body(&self, ev: &PushEvent) -> Vec<u8> {
        match self.format {
            Format::Github => self.github_body(ev),
            Format::Gitlab => self.gitlab_body(ev),
        }
    }

    /// GitLab's `Push Hook` body, with the fields Argo CD reads (`project.web_url`,
    /// `project.default_branch`, `ref`, `before`, `after`, each commit's files) and the
    /// ones GitLab always sends alongside.
    fn gitlab_body(&self, ev: &PushEvent) -> Vec<u8> {
        let zero = "0000000000000000000000000000000000000000".to_owned();
        let web = web_url(&self.repo_url);
        let name = web.rsplit('/').next().unwrap_or_default().to_owned();
        let namespace = web
            .split_once("://")
            .and_then(|(_, r)| r.split_once('/'))
            .map_or(String::new(), |(_, p)| p.to_owned());
        let commits = commit_entries(ev, |c| {
            json!({
                "title": c.message.lines().next().unwrap_or_default(),
                "url": format!("{web}/-/commit/{}", c.id),
            })
        });
        let body = json!({
            "object_kind": "push",
            "event_name": "push",
            "before": ev.before.map_or(zero, |b| b.to_string()),
            "after": ev.after.to_string(),
            "ref": format!("refs/heads/{}", ev.branch),
            "ref_protected": true,
            "checkout_sha": ev.after.to_string(),
            "user_name": ev.author.name,
            "user_email": ev.author.email,
            "project": {
                "name": name,
                "web_url": web,
                "git_http_url": self.repo_url,
                "path_with_namespace": namespace,
                "default_branch": ev.branch,
            },
            "repository": {
                "name": name,
                "url": self.repo_url,
                "homepage": web,
                "git_http_url": self.repo_url,
            },
            "commits": commits,
            "total_commits_count": ev.commits.len(),
        });
        serde_json::to_vec(&body).expect("JSON values serialize")
    }

    /// The GitHub `push` event body, with the fields Argo CD reads: `ref`, `before`, `after`,
    /// `repository.html_url`/`default_branch`, and the changed files of each commit.
    fn github_body(&self, ev: &PushEvent) -> Vec<u8> {
        let zero = "0000000000000000000000000000000000000000".to_owned();
        let commits = commit_entries(ev, |_| json!({}));
        let head = commits.last().cloned().unwrap_or(serde_json::Value::Null);
        let body = json!({
            "ref": format!("refs/heads/{}", ev.branch),
            "before": ev.before.map_or(zero, |b| b.to_string()),
            "after": ev.after.to_string(),
            "created": ev.before.is_none(),
            "deleted": false,
            "forced": false,
            "repository": {
                "html_url": self.repo_url,
                "clone_url": self.repo_url,
                "url": self.repo_url,
                "default_branch": ev.branch,
            },
            "pusher": {"name": ev.author.name, "email": ev.author.email},
            "commits": commits,
            "head_commit": head,
        });
        serde_json::to_vec(&body).expect("JSON values serialize")
    }

    /// POSTs the event; returns the HTTP status (2xx).
    pub fn send(&self, ev: &PushEvent) -> Result<u16, NudgeError> {
        let body = self.body(ev);
        let agent = http::agent(self.timeout);
        let headers: Vec<(&str, String)> = match self.format {
            Format::Github => {
                let mut h = vec![("X-GitHub-Event", "push".to_owned())];
                if let Some(s) = &self.secret {
                    h.push(("X-Hub-Signature-256", signature(s, &body)));
                }
                h
            }
            Format::Gitlab => {
                let mut h = vec![("X-Gitlab-Event", "Push Hook".to_owned())];
                if let Some(s) = &self.secret {
                    h.push(("X-Gitlab-Token", String::from_utf8_lossy(s).into_owned()));
                }
                h
            }
        };
        let sent = http::send(&RETRY.within(self.timeout), "nudge Argo CD", || {
            let mut req = agent
                .post(&self.url)
                .header("Content-Type", "application/json");
            for (k, v) in &headers {
                req = req.header(*k, v);
            }
            req.send(&body[..])
        });
        let status = |r: &http::Response| NudgeError::Status {
            url: self.url.clone(),
            status: r.status,
            body: r.excerpt().to_owned(),
        };
        match sent {
            Ok(r) if r.ok() => Ok(r.status),
            Ok(r) => Err(status(&r)),
            Err(e) => match e.error {
                http::Failure::Status(r) => Err(status(&r)),
                http::Failure::Transport(source) => Err(NudgeError::Transport {
                    url: self.url.clone(),
                    attempts: e.attempts,
                    source: Box::new(source),
                }),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_githubs_documented_example() {
        // From GitHub's "Validating webhook deliveries" documentation.
        assert_eq!(
            signature(b"It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn gitlab_web_urls_are_what_gitlab_sends() {
        for (repo, web) in [
            (
                "https://gitlab.example.com/platform/manifests.git",
                "https://gitlab.example.com/platform/manifests",
            ),
            (
                "https://bot@gitlab.example.com:8443/platform/manifests/",
                "https://gitlab.example.com:8443/platform/manifests",
            ),
            (
                "ssh://git@gitlab.example.com:2222/platform/manifests.git",
                "https://gitlab.example.com/platform/manifests",
            ),
            (
                "git@gitlab.example.com:platform/manifests.git",
                "https://gitlab.example.com/platform/manifests",
            ),
        ] {
            assert_eq!(web_url(repo), web, "{repo}");
        }
    }

    #[test]
    fn secret_file_drops_the_trailing_newline_and_refuses_empty() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s");
        std::fs::write(&p, "s3cret\n").unwrap();
        assert_eq!(secret_from_file(&p).unwrap(), b"s3cret");
        std::fs::write(&p, "\n").unwrap();
        assert!(matches!(
            secret_from_file(&p),
            Err(NudgeError::EmptySecret(_))
        ));
    }
}
