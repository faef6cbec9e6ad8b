//! The setup work Kubernetes cannot do: MySQL databases and users, RabbitMQ vhosts, users and
//! topology, S3 buckets, created (and, for a tenant past its deletion date, removed) from a
//! typed [`SetupSpec`] that the generator derives from the registry and renders into
//! the setup Jobs (`render::jobs`).
//!
//! Every operation is idempotent and reports what it did ([`Report`]); identifiers are
//! validated before they reach SQL or a URL, values are bound or encoded; transient failures
//! are retried under the one policy of every outbound caller ([`Policy`], from
//! [`crate::io::retry`]), HTTP requests go through [`crate::io::http`].

pub mod amqp;
pub mod aws;
pub mod credentials;
pub mod dump;
pub mod madmin;
pub mod management;
pub mod multipart;
pub mod mysql;
pub mod rabbitmq;
pub mod s3;
pub mod secrets;
pub mod websites;

use std::fmt;

use chrono::{DateTime, Utc};

use crate::io::http;
use crate::io::retry::GaveUp;
pub use crate::io::retry::Policy;

pub use provisio_core::plan::setup::{SetupSpec, SpecError};

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The spec or a credential is not what setup accepts (a bug or a hand edit).
    #[error("invalid {what}: {reason}")]
    Invalid { what: String, reason: String },
    /// The server could not be reached (after retries).
    #[error("cannot reach {service} at {endpoint} (after {attempts} attempt(s))")]
    Unreachable {
        service: &'static str,
        endpoint: String,
        attempts: u32,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The connection broke in the middle of a run; the caller may start over (every step
    /// is idempotent).
    #[error("{service}: the connection broke while trying to {action}")]
    Interrupted {
        service: &'static str,
        action: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The server answered with an error.
    #[error("{service} refused to {action}: {detail}")]
    Refused {
        service: &'static str,
        action: String,
        detail: String,
    },
    /// Teardown for a tenant that is not marked for deletion, or not yet due.
    #[error("refusing to tear down tenant {tenant}: {reason}")]
    NotDue { tenant: String, reason: String },
    /// The secret store failed.
    #[error("secret store: cannot {action} `{key}`")]
    Store {
        action: &'static str,
        key: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Local I/O (reading the spec).
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl From<SpecError> for SetupError {
    fn from(e: SpecError) -> Self {
        SetupError::Invalid {
            what: e.what,
            reason: e.reason,
        }
    }
}

impl SetupError {
    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        SetupError::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

/// What one step did to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Updated,
    Deleted,
    Unchanged,
}

impl Change {
    /// `Deleted` when a removal found something to remove, `Unchanged` when it was gone.
    pub fn deleted_if(removed: bool) -> Change {
        if removed {
            Change::Deleted
        } else {
            Change::Unchanged
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Change::Created => "created",
            Change::Updated => "updated",
            Change::Deleted => "deleted",
            Change::Unchanged => "unchanged",
        })
    }
}

/// The outcome of a run: one line per object, in order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub items: Vec<(String, Change)>,
}

impl Report {
    pub fn record(&mut self, what: impl Into<String>, change: Change) {
        let what = what.into();
        tracing::info!(object = %what, %change, "setup step");
        self.items.push((what, change));
    }

    /// Number of objects created, updated or deleted.
    pub fn changes(&self) -> usize {
        self.items
            .iter()
            .filter(|(_, c)| *c != Change::Unchanged)
            .count()
    }

    pub fn is_unchanged(&self) -> bool {
        self.changes() == 0
    }

    /// The change recorded for `what`, if any.
    pub fn get(&self, what: &str) -> Option<Change> {
        self.items.iter().find(|(w, _)| w == what).map(|(_, c)| *c)
    }

    /// One line per object, then `<service>: unchanged` or `<service>: N change(s)`.
    pub fn render(&self, service: &str) -> String {
        let mut out = String::new();
        for (what, change) in &self.items {
            out.push_str(&format!("{service}: {what}: {change}\n"));
        }
        if self.is_unchanged() {
            out.push_str(&format!("{service}: unchanged\n"));
        } else {
            out.push_str(&format!("{service}: {} change(s)\n", self.changes()));
        }
        out
    }
}

/// The error for a request that got no answer to judge: [`SetupError::Unreachable`] after a
/// transport failure, [`SetupError::Refused`] when a transient status outlived the attempts,
/// [`SetupError::Invalid`] for a request that could not even be built.
pub(crate) fn gave_up(
    service: &'static str,
    endpoint: &str,
    what: &str,
    e: GaveUp<http::Failure>,
) -> SetupError {
    match e.error {
        http::Failure::Transport(ureq::Error::Http(source)) => {
            SetupError::invalid(format!("request {what}"), source.to_string())
        }
        http::Failure::Transport(source) => SetupError::Unreachable {
            service,
            endpoint: endpoint.to_owned(),
            attempts: e.attempts,
            source: Box::new(source),
        },
        http::Failure::Status(r) => SetupError::Refused {
            service,
            action: format!("answer {what} (after {} attempt(s))", e.attempts),
            detail: format!("HTTP {}: {}", r.status, r.excerpt()),
        },
    }
}

/// The error for an answer that is not what `action` needed.
pub(crate) fn refused(service: &'static str, action: &str, r: &http::Response) -> SetupError {
    SetupError::Refused {
        service,
        action: action.to_owned(),
        detail: format!("HTTP {}: {}", r.status, r.excerpt()),
    }
}

/// The JSON body of a management API's answer.
pub(crate) trait JsonAnswer {
    /// The body parsed as `T`, or a refusal of `action` quoting what came instead.
    fn answer<T: serde::de::DeserializeOwned>(
        &self,
        service: &'static str,
        action: &str,
    ) -> Result<T, SetupError>;
}

impl JsonAnswer for http::Response {
    fn answer<T: serde::de::DeserializeOwned>(
        &self,
        service: &'static str,
        action: &str,
    ) -> Result<T, SetupError> {
        self.json().map_err(|e| SetupError::Refused {
            service,
            action: action.to_owned(),
            detail: format!("unexpected answer ({e}): {}", self.excerpt()),
        })
    }
}

/// Teardown guard: only a tenant in `deprovisioning` whose deletion date has passed.
pub fn check_deletion_due(spec: &SetupSpec, now: DateTime<Utc>) -> Result<(), SetupError> {
    let refuse = |reason: String| SetupError::NotDue {
        tenant: spec.tenant.clone(),
        reason,
    };
    if spec.lifecycle.status != provisio_core::registry::TenantStatus::Deprovisioning {
        return Err(refuse(format!(
            "its status is `{}`, not `deprovisioning`",
            spec.lifecycle.status.as_str()
        )));
    }
    match spec.lifecycle.deletion_date {
        None => Err(refuse("it has no deletion date".to_owned())),
        Some(d) if d > now => Err(refuse(format!(
            "its deletion date {} has not passed (now {})",
            provisio_core::plan::timestamp(&d),
            provisio_core::plan::timestamp(&now)
        ))),
        Some(_) => Ok(()),
    }
}
