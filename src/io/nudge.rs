//! The Argo CD nudge: after a push, POST a GitHub-format `push` event to Argo CD's
//! `/api/webhook` so the ApplicationSets and Applications refresh at once instead of at the
//! next poll. Signed with `X-Hub-Signature-256` (HMAC-SHA256 of the body) when a secret is
//! configured; the secret comes from an environment variable or a file, never a flag value.
//! Sent through [`crate::io::http`] under [`RETRY`], within the nudge's `timeout` in all.

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

/// Where and how to nudge.
#[derive(Debug, Clone)]
pub struct Nudge {
    /// Argo CD's webhook endpoint, e.g. `https://argocd.example.com/api/webhook`.
    pub url: String,
    /// The repository URL as Argo CD's Applications name it (`repository.html_url`).
    pub repo_url: String,
    pub secret: Option<Vec<u8>>,
    pub timeout: Duration,
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

impl Nudge {
    /// The GitHub `push` event body, with the fields Argo CD reads: `ref`, `before`, `after`,
    /// `repository.html_url`/`default_branch`, and the changed files of each commit.
    pub fn body(&self, ev: &PushEvent) -> Vec<u8> {
        let zero = "0000000000000000000000000000000000000000".to_owned();
        let files = ev.files.cloned().unwrap_or_default();
        let commits: Vec<_> = ev
            .commits
            .iter()
            .enumerate()
            .map(|(i, c)| {
                // The changed files are attributed to the last commit (the one on the remote).
                let last = i + 1 == ev.commits.len();
                let pick = |v: &Vec<String>| if last { v.clone() } else { Vec::new() };
                json!({
                    "id": c.id.to_string(),
                    "message": c.message,
                    "author": {"name": ev.author.name, "email": ev.author.email},
                    "added": pick(&files.added),
                    "modified": pick(&files.modified),
                    "removed": pick(&files.removed),
                })
            })
            .collect();
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
        let signature = self.secret.as_ref().map(|s| signature(s, &body));
        let sent = http::send(&RETRY.within(self.timeout), "nudge Argo CD", || {
            let mut req = agent
                .post(&self.url)
                .header("Content-Type", "application/json")
                .header("X-GitHub-Event", "push");
            if let Some(sig) = &signature {
                req = req.header("X-Hub-Signature-256", sig);
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
