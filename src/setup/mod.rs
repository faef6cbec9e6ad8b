//! The setup work Kubernetes cannot do: MySQL databases and users, RabbitMQ vhosts, users and
//! topology, S3 buckets, created (and, for a tenant past its deletion date, removed) from a
//! typed [`SetupSpec`] that the generator derives from the registry and renders into
//! the setup Jobs (`render::jobs`).
//!
//! Every operation is idempotent and reports what it did ([`Report`]); identifiers are
//! validated before they reach SQL or a URL, values are bound or encoded; transient failures
//! are retried with exponential backoff ([`Retry`]).

pub mod aws;

pub mod madmin;
pub mod mysql;
pub mod rabbitmq;
pub mod s3;

pub mod secrets;

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

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

/// Retries transient failures: `attempts` tries, sleeping `base`, `2·base`, `4·base`… between.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    pub base: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 6,
            base: Duration::from_millis(500),
        }
    }
}

/// Whether an error is worth another try, and the error itself.
pub enum Attempt<E> {
    Transient(E),
    Fatal(E),
}

impl Retry {
    /// Runs `op` until it succeeds, fails fatally, or the attempts are spent; returns the
    /// last error with the number of attempts made.
    pub fn run<T, E: fmt::Display>(
        &self,
        what: &str,
        mut op: impl FnMut() -> Result<T, Attempt<E>>,
    ) -> Result<T, (E, u32)> {
        let mut delay = self.base;
        let attempts = self.attempts.max(1);
        for n in 1..=attempts {
            match op() {
                Ok(v) => return Ok(v),
                Err(Attempt::Fatal(e)) => return Err((e, n)),
                Err(Attempt::Transient(e)) if n == attempts => return Err((e, n)),
                Err(Attempt::Transient(e)) => {
                    tracing::warn!(%what, attempt = n, error = %e, retry_in = ?delay, "transient failure");
                    std::thread::sleep(delay);
                    delay = delay.saturating_mul(2).min(Duration::from_secs(30));
                }
            }
        }
        unreachable!("the loop returns on its last attempt")
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
