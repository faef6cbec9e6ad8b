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
    /// The tenant's report URL (`<serve>/api/v1/lifecycle/tenants/<tenant>/reports`, as the
    /// Jobs' specs carry it; [`reports_url`] builds it from serve's base URL).
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

/// `<base>/api/v1/lifecycle/tenants/<tenant>/reports`.
pub fn reports_url(base: &str, tenant: &str) -> String {
    format!(
        "{}/api/v1/lifecycle/tenants/{}/reports",
        base.trim_end_matches('/'),
        http::seg(tenant)
    )
}

/// The report key stored by `setup credentials` (`{"tenant", "key": hex}`) at `key_secret`.
pub fn stored_key(
    store: &dyn crate::setup::secrets::SecretStore,
    key_secret: &str,
    tenant: &str,
) -> Result<Vec<u8>, crate::setup::SetupError> {
    let c = store.get(key_secret)?;
    match c.as_ref().map(|c| (c.get("tenant"), c.get("key"))) {
        Some((Some(t), Some(k))) if t == tenant => hex::decode(k).map_err(|_| {
            crate::setup::SetupError::invalid(
                format!("secret at `{key_secret}`"),
                "`key` is not hex",
            )
        }),
        _ => Err(crate::setup::SetupError::invalid(
            format!("secret at `{key_secret}`"),
            format!("no report key of tenant {tenant}: `setup credentials` has not run"),
        )),
    }
}

/// The report id of a Job: `<kind>:<its uid>` (`PROVISIO_JOB_UID`, the same for every pod
/// of the Job), else `<kind>:<tenant>-<unix time>`.
pub fn job_report_id(kind: &str, tenant: &str, now: DateTime<Utc>) -> String {
    match std::env::var("PROVISIO_JOB_UID") {
        Ok(uid) if provisio_core::lifecycle::report::is_report_id(&format!("{kind}:{uid}")) => {
            format!("{kind}:{uid}")
        }
        _ => format!("{kind}:{tenant}-{}", now.timestamp()),
    }
}

/// The tenant's lifecycle records as serve has them at HEAD: `GET` of the tenant's route (the
/// report URL without `/reports`), signed like a report with an empty body.
pub fn view(
    target: &Target,
    policy: &Policy,
    clock: impl Fn() -> DateTime<Utc>,
) -> Result<LifecycleView, ReportError> {
    let url = target
        .url
        .strip_suffix("/reports")
        .unwrap_or(&target.url)
        .to_owned();
    let path = url_path(&url)?;
    let agent = http::agent(Duration::from_secs(30));
    let what = format!("lifecycle of {}", target.tenant);
    let answer = http::send(policy, &what, || {
        let sig = signature::header(
            &target.key,
            &target.tenant,
            clock().timestamp(),
            "GET",
            &path,
            b"",
        );
        agent
            .get(&url)
            .header(signature::HEADER, &sig)
            .header("accept", "application/json")
            .call()
    })
    .map_err(ReportError::Unavailable)?;
    if answer.ok() {
        let v: serde_json::Value = answer
            .json()
            .map_err(|e| ReportError::Answer(format!("{e}: {}", answer.excerpt())))?;
        let records = if v["lifecycle"].is_object() {
            v["lifecycle"].clone()
        } else {
            v
        };
        return serde_json::from_value(records)
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
    let url = target.url.clone();
    // The signature covers the path as sent.
    let path = url_path(&url)?;
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

/// The path of a report URL, which the signature covers as sent.
fn url_path(url: &str) -> Result<String, ReportError> {
    url.split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_owned()))
        .ok_or_else(|| {
            ReportError::Invalid(Refusal {
                code: "invalid_field",
                message: format!("the report URL `{url}` has no path"),
                field: None,
            })
        })
}
