//! `purge-check`: the PostSync Jobs of the ordered removal (docs/lifecycle.md). Each verifies
//! on the cluster, by itself, that the step Argo CD was to carry out is done — it never trusts
//! Argo CD's health alone (PostSync has fired early: argo-cd #4669, #17408) — and only then
//! reports it: `workloads-gone` (no Deployment, running Pod, Ingress, Certificate,
//! ExternalSecret or Grafana object left in the tenant's namespace) → `workloads-pruned`;
//! `namespace-gone` (`GET` the namespace answers 404) → `namespace-removed`. Something still
//! there is looked at again under the retry policy, then refused naming what is left.

use std::path::PathBuf;

use chrono::{DateTime, Utc};

use super::report::{ReportError, Sent, Target, job_report_id, send, stored_key};
use super::setup::{Store, spec_text};
use crate::io::http;
use crate::io::kube::{Kube, KubeError};
use crate::io::retry::Policy;
use crate::setup::SetupError;
use provisio_core::lifecycle::{Report, ReportBody};
use provisio_core::plan::lifecycle::{PurgeCheck, PurgeCheckSpec};

/// The namespaced kinds whose objects must be gone before the teardown: the API path of
/// their list below `/namespaces/<ns>/`, and the name the refusal uses.
const WORKLOADS: [(&str, &str, &str); 10] = [
    ("/apis/apps/v1", "deployments", "Deployment"),
    ("/api/v1", "pods", "Pod"),
    ("/apis/networking.k8s.io/v1", "ingresses", "Ingress"),
    ("/apis/cert-manager.io/v1", "certificates", "Certificate"),
    (
        "/apis/external-secrets.io/v1",
        "externalsecrets",
        "ExternalSecret",
    ),
    (
        "/apis/oss.grafana.m.crossplane.io/v1alpha1",
        "folders",
        "Folder",
    ),
    (
        "/apis/oss.grafana.m.crossplane.io/v1alpha1",
        "dashboards",
        "Dashboard",
    ),
    (
        "/apis/oss.grafana.m.crossplane.io/v1alpha1",
        "users",
        "User",
    ),
    (
        "/apis/oss.grafana.m.crossplane.io/v1alpha1",
        "teams",
        "Team",
    ),
    (
        "/apis/oss.grafana.m.crossplane.io/v1alpha1",
        "folderpermissions",
        "FolderPermission",
    ),
];

/// Why a lifecycle Job (`purge-check`, `report sync-failed`) did not report.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Kube(#[from] KubeError),
    /// The step is not done: what is still there.
    #[error("not reporting {report}: still in namespace {namespace}: {left}")]
    NotDone {
        report: &'static str,
        namespace: String,
        left: String,
    },
    #[error(transparent)]
    Report(#[from] ReportError),
}

/// What is still there for `check` (empty: the step is done).
fn left(kube: &Kube, check: PurgeCheck, ns: &str) -> Result<Vec<String>, KubeError> {
    let ns_seg = http::seg(ns);
    match check {
        PurgeCheck::NamespaceGone => Ok(kube
            .get(&format!("/api/v1/namespaces/{ns_seg}"))?
            .map(|_| vec![format!("Namespace {ns}")])
            .unwrap_or_default()),
        PurgeCheck::WorkloadsGone => {
            let mut left = Vec::new();
            for (api, plural, kind) in WORKLOADS {
                let Some(list) = kube.get(&format!("{api}/namespaces/{ns_seg}/{plural}"))? else {
                    continue; // the kind is not served: nothing of it can be left
                };
                for item in list["items"].as_array().into_iter().flatten() {
                    // A Pod that ran to completion (a Job's) holds no workload.
                    if kind == "Pod"
                        && matches!(
                            item["status"]["phase"].as_str(),
                            Some("Succeeded" | "Failed")
                        )
                    {
                        continue;
                    }
                    let name = item["metadata"]["name"].as_str().unwrap_or("?");
                    left.push(format!("{kind} {name}"));
                }
            }
            Ok(left)
        }
    }
}

/// Runs the check of the spec's step and reports it; `clock` gives the report's time.
pub fn run(
    spec: Option<&PathBuf>,
    store: &Store,
    retry: Policy,
    clock: impl Fn() -> DateTime<Utc>,
) -> Result<Sent, JobError> {
    let spec = PurgeCheckSpec::parse(&spec_text(spec)?).map_err(SetupError::from)?;
    let (kind, body) = match spec.check {
        PurgeCheck::WorkloadsGone => ("workloads-pruned", ReportBody::WorkloadsPruned),
        PurgeCheck::NamespaceGone => ("namespace-removed", ReportBody::NamespaceRemoved),
    };
    let kube = Kube::from_env(retry)?;
    // Looked at again while something is left, with the policy's waits.
    let mut waits = retry.delays();
    loop {
        let still = left(&kube, spec.check, &spec.namespace)?;
        if still.is_empty() {
            break;
        }
        match waits.next() {
            Some(wait) => {
                tracing::info!(left = %still.join(", "), ?wait, "the step is not done yet");
                std::thread::sleep(wait);
            }
            None => {
                return Err(JobError::NotDone {
                    report: kind,
                    namespace: spec.namespace.clone(),
                    left: still.join(", "),
                });
            }
        }
    }
    let store = store.open(retry)?;
    let key = stored_key(&*store, &spec.report.key_secret, &spec.tenant)?;
    let now = clock();
    let report = Report {
        id: job_report_id(kind, &spec.tenant, now),
        at: now,
        body,
    };
    let target = Target {
        url: spec.report.url.clone(),
        tenant: spec.tenant.clone(),
        key,
    };
    let sent = send(&target, &report, &retry, clock)?;
    if spec.check == PurgeCheck::NamespaceGone {
        // The tenant's last report: serve recorded it removed, no Job of it reports again, so
        // its report key goes now (not at the teardown, whose report this one follows).
        store.delete(&spec.report.key_secret)?;
    }
    Ok(sent)
}
