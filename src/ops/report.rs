//! `report`: the client side of serve's lifecycle endpoint (docs/lifecycle.md, "Reports"). A
//! report is checked with the same strict parser serve uses before it leaves, signed with the
//! tenant's report key anew for every attempt (a fresh `t`), and sent through `io::http` under
//! the one retry policy: connection failures and transient statuses are retried, every other
//! answer is final. A repeat (`recorded: false`) is a success like a recorded report.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::io::http::{self, Failure};
use crate::io::retry::{GaveUp, Policy};
use provisio_core::lifecycle::{LifecycleView, Refusal, Report, signature};

/// Where and as whom a report is sent.
#[derive(Clone)]
pub struct Target {
    /// serve's base URL (`http://provisio-serve.provisio.svc.cluster.local:8080`).
    pub url: String,
    pub tenant: String,
    /// The tenant's report key (32 bytes; never printed).
    pub key: Vec<u8>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.url)
            .field("tenant", &self.tenant)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// serve's answer to an accepted report.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Sent {
    pub tenant: String,
    /// `false`: a repeat, nothing changed.
    pub recorded: bool,
    pub lifecycle: LifecycleView,
}

/// Why a report was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The report itself is malformed (checked before sending).
    #[error("the report is invalid: {0}")]
    Invalid(#[source] Refusal),
    /// serve refused it: its status, error code and message.
    #[error("serve refused the report (HTTP {status}, {code}): {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    /// serve could not be reached, or kept answering a transient error.
    #[error("serve could not take the report after {} attempt(s): {}", .0.attempts, .0.error)]
    Unavailable(GaveUp<Failure>),
    /// serve answered 2xx with a body that is not a report result.
    #[error("serve's answer is not a report result: {0}")]
    Answer(String),
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

/// Sends `report` for `target.tenant`; `clock` gives each attempt's signature time.
pub fn send(
    target: &Target,
    report: &Report,
    policy: &Policy,
    clock: impl Fn() -> DateTime<Utc>,
) -> Result<Sent, ReportError> {
    let body = report.to_json();
    // The same parser serve runs: a report that would be refused never leaves.
    provisio_core::lifecycle::report::parse(body.as_bytes()).map_err(ReportError::Invalid)?;
    let path = format!(
        "/api/v1/lifecycle/tenants/{}/reports",
        http::seg(&target.tenant)
    );
    let url = format!("{}{path}", target.url.trim_end_matches('/'));
    let agent = http::agent(Duration::from_secs(30));
    let what = format!("report {} of {}", report.kind().as_str(), target.tenant);
    let answer = http::send(policy, &what, || {
        let sig = signature::header(
            &target.key,
            &target.tenant,
            clock().timestamp(),
            "POST",
            &path,
            body.as_bytes(),
        );
        agent
            .post(&url)
            .header(signature::HEADER, &sig)
            .header("content-type", "application/json")
            .send(body.as_bytes())
    })
    .map_err(ReportError::Unavailable)?;
    if answer.ok() {
        return answer
            .json::<Sent>()
            .map_err(|e| ReportError::Answer(format!("{e}: {}", answer.excerpt())));
    }
    let (code, message) = match answer.json::<ErrorBody>() {
        Ok(b) => (b.error.code, b.error.message),
        Err(_) => ("unknown".to_owned(), answer.excerpt().to_owned()),
    };
    Err(ReportError::Refused {
        status: answer.status,
        code,
        message,
    })
}
