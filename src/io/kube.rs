//! A minimal reader of the Kubernetes API for the lifecycle Jobs (`purge-check`): `GET` only,
//! through `io::http` under the one retry policy. In a pod it uses the service account
//! (`KUBERNETES_SERVICE_HOST`/`_PORT`, the token and CA under
//! `/var/run/secrets/kubernetes.io/serviceaccount/`); `PROVISIO_KUBE_API` (with
//! `PROVISIO_KUBE_TOKEN_FILE`) points it elsewhere (tests, a person's proxy). What it may read
//! is the RBAC of the shared namespace's `provisio-setup` (the tenant's
//! `provisio-lifecycle-reader` Role).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::io::http::{self, Failure};
use crate::io::retry::{GaveUp, Policy};

/// Where the service account's files are mounted in a pod.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Overrides the API's base URL.
pub const API_ENV: &str = "PROVISIO_KUBE_API";
/// With [`API_ENV`]: a file holding the bearer token (optional).
pub const TOKEN_FILE_ENV: &str = "PROVISIO_KUBE_TOKEN_FILE";

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// Neither in a pod nor told where the API is, or its files cannot be read.
    #[error("cannot reach the Kubernetes API: {0}")]
    Config(String),
    /// No answer, or a transient one until the attempts were spent.
    #[error("the Kubernetes API did not answer GET {path} after {} attempt(s): {}", .error.attempts, .error.error)]
    Unavailable {
        path: String,
        error: GaveUp<Failure>,
    },
    /// An answer that is not the object (403: RBAC; anything but 200 and 404).
    #[error("the Kubernetes API refused GET {path}: HTTP {status}: {excerpt}")]
    Refused {
        path: String,
        status: u16,
        excerpt: String,
    },
}

/// A client of one API server.
pub struct Kube {
    agent: ureq::Agent,
    base: String,
    bearer: Option<String>,
    retry: Policy,
}

fn read(path: &Path) -> Result<String, KubeError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|e| KubeError::Config(format!("cannot read {}: {e}", path.display())))
}

impl Kube {
    /// From the environment: [`API_ENV`] when set, else the pod's service account.
    pub fn from_env(retry: Policy) -> Result<Kube, KubeError> {
        let timeout = Duration::from_secs(30);
        if let Ok(base) = std::env::var(API_ENV) {
            let bearer = match std::env::var(TOKEN_FILE_ENV) {
                Ok(f) => Some(format!("Bearer {}", read(Path::new(&f))?)),
                Err(_) => None,
            };
            return Ok(Kube {
                agent: http::agent(timeout),
                base: base.trim_end_matches('/').to_owned(),
                bearer,
                retry,
            });
        }
        let (host, port) = match (
            std::env::var("KUBERNETES_SERVICE_HOST"),
            std::env::var("KUBERNETES_SERVICE_PORT"),
        ) {
            (Ok(h), Ok(p)) => (h, p),
            _ => {
                return Err(KubeError::Config(format!(
                    "not in a pod (no KUBERNETES_SERVICE_HOST/PORT) and {API_ENV} is not set"
                )));
            }
        };
        let dir = PathBuf::from(SERVICE_ACCOUNT_DIR);
        let token = read(&dir.join("token"))?;
        let ca = std::fs::read(dir.join("ca.crt"))
            .map_err(|e| KubeError::Config(format!("cannot read the cluster CA: {e}")))?;
        let agent = http::agent_trusting(timeout, &ca)
            .map_err(|e| KubeError::Config(format!("the cluster CA is not PEM: {e}")))?;
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        Ok(Kube {
            agent,
            base: format!("https://{host}:{port}"),
            bearer: Some(format!("Bearer {token}")),
            retry,
        })
    }

    /// `GET path`: the object (or list), `None` when the API answers 404 (no such object, or
    /// no such resource type: a CRD not installed).
    pub fn get(&self, path: &str) -> Result<Option<Value>, KubeError> {
        let url = format!("{}{path}", self.base);
        let r = http::send(&self.retry, &format!("GET {path}"), || {
            let mut req = self.agent.get(&url).header("accept", "application/json");
            if let Some(b) = &self.bearer {
                req = req.header("authorization", b);
            }
            req.call()
        })
        .map_err(|error| KubeError::Unavailable {
            path: path.to_owned(),
            error,
        })?;
        match r.status {
            200 => r.json().map(Some).map_err(|e| KubeError::Refused {
                path: path.to_owned(),
                status: 200,
                excerpt: format!("not JSON ({e}): {}", r.excerpt()),
            }),
            404 => Ok(None),
            status => Err(KubeError::Refused {
                path: path.to_owned(),
                status,
                excerpt: r.excerpt().to_owned(),
            }),
        }
    }
}
