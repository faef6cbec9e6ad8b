//! `report sync-failed`: the SyncFail hook of a provisioning (or failed) tenant. It finds out
//! why the sync failed — the first failed Job of the shared namespace in the order they run
//! (setup, activate) with its pod's termination message, else a Deployment that stopped
//! progressing or is unavailable, else the Certificate not ready — and reports `failed` with
//! that reason (one line, at most 500 characters), signed with the key `setup credentials`
//! stored. serve counts the attempts and may roll the tenant back (docs/lifecycle.md).

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::purge_check::JobError;
use super::report::{Sent, Target, job_report_id, send, stored_key};
use super::setup::{Store, spec_text};
use crate::io::http;
use crate::io::kube::{Kube, KubeError};
use crate::io::retry::Policy;
use crate::setup::SetupError;
use provisio_core::lifecycle::{Report, ReportBody};
use provisio_core::plan::lifecycle::SyncFailedSpec;

/// The longest reason serve takes.
const MAX_REASON: usize = 500;

/// The condition `type` of an object whose status is `status`: `reason: message`.
fn condition(obj: &Value, kind: &str, status: &str) -> Option<String> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind && c["status"] == status)
        .map(|c| {
            let reason = c["reason"].as_str().unwrap_or(kind);
            match c["message"].as_str() {
                Some(m) if !m.is_empty() => format!("{reason}: {m}"),
                _ => reason.to_owned(),
            }
        })
}

/// The termination message of a Job's failed pod (what provisio's Jobs write when they fail).
fn termination_message(kube: &Kube, ns: &str, job: &str) -> Result<Option<String>, KubeError> {
    let path = format!(
        "/api/v1/namespaces/{}/pods?labelSelector={}",
        http::seg(ns),
        http::seg(&format!("job-name={job}"))
    );
    let Some(pods) = kube.get(&path)? else {
        return Ok(None);
    };
    Ok(pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| {
            p["status"]["containerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
        })
        .filter_map(|c| {
            c["state"]["terminated"]["message"]
                .as_str()
                .or(c["lastState"]["terminated"]["message"].as_str())
        })
        .map(str::trim)
        .find(|m| !m.is_empty())
        .map(str::to_owned))
}

/// Why the sync failed, as far as the cluster tells.
pub fn reason(kube: &Kube, spec: &SyncFailedSpec) -> Result<String, KubeError> {
    let i = &spec.inspect;
    for job in &i.jobs {
        let path = format!(
            "/apis/batch/v1/namespaces/{}/jobs/{}",
            http::seg(&i.shared_namespace),
            http::seg(job)
        );
        if let Some(obj) = kube.get(&path)?
            && let Some(why) = condition(&obj, "Failed", "True")
        {
            return Ok(match termination_message(kube, &i.shared_namespace, job)? {
                Some(m) => format!("{job}: {m}"),
                None => format!("{job}: {why}"),
            });
        }
    }
    for d in &i.deployments {
        let path = format!(
            "/apis/apps/v1/namespaces/{}/deployments/{}",
            http::seg(&i.tenant_namespace),
            http::seg(d)
        );
        if let Some(obj) = kube.get(&path)?
            && let Some(why) = condition(&obj, "Progressing", "False")
                .or_else(|| condition(&obj, "Available", "False"))
        {
            return Ok(format!("deployment {d}: {why}"));
        }
    }
    let path = format!(
        "/apis/cert-manager.io/v1/namespaces/{}/certificates/{}",
        http::seg(&i.tenant_namespace),
        http::seg(&i.certificate)
    );
    if let Some(obj) = kube.get(&path)?
        && let Some(why) = condition(&obj, "Ready", "False")
    {
        return Ok(format!("certificate {}: {why}", i.certificate));
    }
    Ok("the sync failed; no failed Job, stalled Deployment or unready Certificate found (see the Application's operation state in Argo CD)".to_owned())
}

/// One line of at most [`MAX_REASON`] characters.
fn one_line(s: &str) -> String {
    let flat: String = s
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" / ");
    flat.chars().take(MAX_REASON).collect()
}

/// Finds the reason and reports `failed`.
pub fn run(
    spec: Option<&PathBuf>,
    store: &Store,
    retry: Policy,
    clock: impl Fn() -> DateTime<Utc>,
) -> Result<(String, Sent), JobError> {
    let spec = SyncFailedSpec::parse(&spec_text(spec)?).map_err(SetupError::from)?;
    let kube = Kube::from_env(retry)?;
    let why = one_line(&reason(&kube, &spec)?);
    let store = store.open(retry)?;
    let key = stored_key(&*store, &spec.report.key_secret, &spec.tenant)?;
    let now = clock();
    let report = Report {
        id: job_report_id("failed", &spec.tenant, now),
        at: now,
        body: ReportBody::Failed {
            reason: why.clone(),
        },
    };
    let target = Target {
        url: spec.report.url.clone(),
        tenant: spec.tenant.clone(),
        key,
    };
    Ok((why, send(&target, &report, &retry, clock)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_one_bounded_line() {
        let long = format!("first\n\n  second \r\n{}", "x".repeat(600));
        let r = one_line(&long);
        assert!(r.starts_with("first / second / xxx"), "{r}");
        assert_eq!(r.chars().count(), MAX_REASON);
        assert!(!r.contains('\n'));
    }

    #[test]
    fn conditions_give_reason_and_message() {
        let obj = serde_json::json!({"status": {"conditions": [
            {"type": "Complete", "status": "False"},
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
             "message": "Job has reached the specified backoff limit"}]}});
        assert_eq!(
            condition(&obj, "Failed", "True").unwrap(),
            "BackoffLimitExceeded: Job has reached the specified backoff limit"
        );
        assert_eq!(condition(&obj, "Complete", "True"), None);
    }
}
