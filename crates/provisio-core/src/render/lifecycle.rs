//! The lifecycle Jobs of a tenant tree, by phase (docs/lifecycle.md, "What the rendered tree
//! contains"): each a Job of [`super::jobs::provisio_job`] in the shared-services namespace,
//! with its spec ([`crate::plan::lifecycle`]) in a ConfigMap of its name.
//!
//! | phase | file | Jobs |
//! |---|---|---|
//! | provisioning, failed | `lifecycle.yaml` | `activate` (PostSync), `sync-failed` (SyncFail) |
//! | active, grace, due | `lifecycle.yaml` | `website-status` (PostSync; with a websites product) |
//! | due | `backup.yaml` | `backup` (an ordinary Job, wave 10) |
//! | purging/workloads | `purge.yaml` | `purge-check` (PostSync) |
//! | purging/teardown | `teardown.yaml` | `teardown` (an ordinary Job, wave 10) |
//! | purging/namespace | `purge.yaml` | `namespace-check` (PostSync) |
//!
//! Nothing here is a PreDelete or PostDelete hook: Argo CD renders those from git after the
//! tree is gone (argo-cd #18070) and v3.5 may delete them before they run (#29100). The two
//! Jobs that delete or copy data (backup, teardown) are ordinary Jobs of their own state, so
//! they run once, after the prunes and waves before them, and stay until the state moves on.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;

use super::jobs::{
    ProvisioJob, STORE_SECRET, admin_secret, bounded_name, job_name, provisio_job, spec_args,
};
use super::objects::wave;
use crate::lifecycle::Phase;
use crate::plan::TenantPlan;
use crate::plan::lifecycle::{
    ActivationSpec, BackupSpec, Inspect, PurgeCheck, PurgeCheckSpec, ReportTarget, SyncFailedSpec,
    WebsiteStatusSpec, pretty,
};
use crate::plan::setup::{SetupSpec, SharedService};
use crate::registry::PurgeStep;

/// Secret with `SMTP_USERNAME`/`SMTP_PASSWORD` for the welcome email (optional: a relay
/// without authentication).
pub const SMTP_SECRET: &str = "provisio-smtp";
/// Secret with `MYSQL_BACKUP_USER`/`MYSQL_BACKUP_PASSWORD`: a read-only account for dumps.
pub const BACKUP_MYSQL_SECRET: &str = "provisio-backup-mysql";
/// Secret with `ARCHIVE_ACCESS_KEY_ID`/`ARCHIVE_SECRET_ACCESS_KEY` (optional
/// `ARCHIVE_SESSION_TOKEN`): write access to the archive bucket.
pub const ARCHIVE_SECRET: &str = "provisio-archive";
pub use super::objects::LIFECYCLE_APP;

/// One lifecycle Job: the file it goes to, its spec's ConfigMap and the Job.
pub struct LifecycleJob {
    pub file: &'static str,
    pub step: &'static str,
    pub spec: ConfigMap,
    pub job: Job,
}

fn hook_job(
    plan: &TenantPlan<'_>,
    step: &'static str,
    hook: &'static str,
    args: &[&str],
    secrets: Vec<(String, bool)>,
    (deadline_seconds, backoff_limit): (i64, i32),
    spec_json: String,
) -> (ConfigMap, Job) {
    provisio_job(
        plan,
        &ProvisioJob {
            name: lifecycle_job_name(step, plan.id),
            app: LIFECYCLE_APP,
            role: ("lifecycle-step", step.to_owned()),
            hook: Some(hook),
            spec_wave: -1,
            job_wave: 0,
            args: spec_args(args),
            secrets,
            job_uid: true,
            deadline_seconds,
            backoff_limit,
            limits: ("500m", "128Mi"),
            spec_json,
        },
    )
}

fn ordinary_job(
    plan: &TenantPlan<'_>,
    step: &'static str,
    args: &[&str],
    secrets: Vec<(String, bool)>,
    deadline_seconds: i64,
    limits: (&'static str, &'static str),
    spec_json: String,
) -> (ConfigMap, Job) {
    provisio_job(
        plan,
        &ProvisioJob {
            name: lifecycle_job_name(step, plan.id),
            app: LIFECYCLE_APP,
            role: ("lifecycle-step", step.to_owned()),
            hook: None,
            spec_wave: wave::LIFECYCLE_SPEC,
            job_wave: wave::LIFECYCLE_JOB,
            args: spec_args(args),
            secrets,
            job_uid: true,
            deadline_seconds,
            backoff_limit: 3,
            limits,
            spec_json,
        },
    )
}

fn store() -> (String, bool) {
    (STORE_SECRET.to_owned(), false)
}

/// The name of a tenant's lifecycle Job (`<step>-<tenant>`, cut to 63 with a hash).
pub fn lifecycle_job_name(step: &str, tenant: &str) -> String {
    bounded_name(format!("{step}-{tenant}"))
}

/// Every lifecycle Job of the tenant's phase.
pub fn lifecycle_jobs(plan: &TenantPlan<'_>) -> Vec<LifecycleJob> {
    let mut out = Vec::new();
    let mut push = |file: &'static str, step: &'static str, (spec, job): (ConfigMap, Job)| {
        out.push(LifecycleJob {
            file,
            step,
            spec,
            job,
        })
    };
    let phase = plan.phase;
    if phase.activating() {
        let spec = ActivationSpec::from_plan(plan);
        let deadline = i64::try_from(spec.deadline_seconds).unwrap_or(1800);
        push(
            "lifecycle.yaml",
            "activate",
            hook_job(
                plan,
                "activate",
                "PostSync",
                &["activate"],
                vec![(SMTP_SECRET.to_owned(), true), store()],
                (deadline + 300, 1),
                pretty(&spec),
            ),
        );
        push(
            "lifecycle.yaml",
            "sync-failed",
            hook_job(
                plan,
                "sync-failed",
                "SyncFail",
                &["report", "sync-failed"],
                vec![store()],
                (300, 2),
                pretty(&sync_failed_spec(plan)),
            ),
        );
    }
    if matches!(phase, Phase::Active | Phase::Grace | Phase::Due)
        && let Some(spec) = WebsiteStatusSpec::from_plan(plan)
    {
        push(
            "lifecycle.yaml",
            "website-status",
            hook_job(
                plan,
                "website-status",
                "PostSync",
                &["website-status"],
                vec![store()],
                (300, 2),
                pretty(&spec),
            ),
        );
    }
    if phase == Phase::Due
        && let Some(spec) = BackupSpec::from_plan(plan)
    {
        let deadline = i64::try_from(spec.deadline_seconds).unwrap_or(21_600);
        let mut secrets = vec![(BACKUP_MYSQL_SECRET.to_owned(), false)];
        if plan.uses_minio() {
            secrets.push((admin_secret("minio"), false));
        }
        if plan.uses_rabbitmq() {
            // Read-only use: the queues' names and message counts for the manifest.
            secrets.push((admin_secret("rabbitmq"), false));
        }
        secrets.push((ARCHIVE_SECRET.to_owned(), false));
        secrets.push(store());
        push(
            "backup.yaml",
            "backup",
            ordinary_job(
                plan,
                "backup",
                &["backup"],
                secrets,
                deadline,
                ("1", "512Mi"),
                pretty(&spec),
            ),
        );
    }
    match phase {
        Phase::Purging(PurgeStep::Workloads) => push(
            "purge.yaml",
            "purge-check",
            hook_job(
                plan,
                "purge-check",
                "PostSync",
                &["purge-check"],
                vec![store()],
                (900, 3),
                pretty(&PurgeCheckSpec::from_plan(plan, PurgeCheck::WorkloadsGone)),
            ),
        ),
        Phase::Purging(PurgeStep::Teardown) => {
            let spec = SetupSpec::teardown_from_plan(plan);
            let mut secrets: Vec<(String, bool)> = SharedService::ALL
                .into_iter()
                .filter(|s| spec.for_service(*s).is_some())
                .map(|s| (admin_secret(s.as_str()), false))
                .collect();
            if plan.tenant.backup.is_some() {
                secrets.push((ARCHIVE_SECRET.to_owned(), false));
            }
            secrets.push(store());
            push(
                "teardown.yaml",
                "teardown",
                ordinary_job(
                    plan,
                    "teardown",
                    &["teardown", "tenant"],
                    secrets,
                    3600,
                    ("500m", "128Mi"),
                    spec.to_pretty_json(),
                ),
            );
        }
        Phase::Purging(PurgeStep::Namespace) => push(
            "purge.yaml",
            "namespace-check",
            hook_job(
                plan,
                "namespace-check",
                "PostSync",
                &["purge-check"],
                vec![store()],
                (900, 3),
                pretty(&PurgeCheckSpec::from_plan(plan, PurgeCheck::NamespaceGone)),
            ),
        ),
        _ => {}
    }
    out
}

/// The sync-failed Job's spec: the Jobs and objects whose state says why a sync failed.
fn sync_failed_spec(plan: &TenantPlan<'_>) -> SyncFailedSpec {
    let mut jobs = vec![job_name("setup", "credentials", plan.id)];
    let setup = SetupSpec::from_plan(plan);
    for s in SharedService::ALL {
        if setup.for_service(s).is_some() {
            jobs.push(job_name("setup", s.as_str(), plan.id));
        }
    }
    jobs.push(lifecycle_job_name("activate", plan.id));
    SyncFailedSpec {
        version: crate::plan::lifecycle::LIFECYCLE_SPEC_VERSION,
        tenant: plan.id.to_owned(),
        report: ReportTarget::of(plan),
        inspect: Inspect {
            shared_namespace: plan.platform.shared_services.namespace.clone(),
            tenant_namespace: plan.namespace.clone(),
            jobs,
            deployments: plan.products.iter().map(|p| p.name.to_owned()).collect(),
            certificate: super::objects::CERTIFICATE.to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::jobs::{HOOK_DELETE, SETUP_SERVICE_ACCOUNT, SPEC_KEY};
    use crate::render::objects::{HOOK, HOOK_DELETE_POLICY, SYNC_WAVE};
    use crate::render::templates::environment;
    use crate::render::tenant::render_tenant;
    use crate::render::yaml::TENANTS_DIR;
    use crate::testing::{LIFECYCLE_TENANTS, lifecycle_registry, now};

    /// The files of a tenant's tree, relative to it.
    fn files(reg: &crate::registry::Registry, id: &str) -> Vec<String> {
        let plan = crate::plan::plan_tenant(reg, &reg.tenants[id], now());
        let prefix = format!("{TENANTS_DIR}/{id}/");
        render_tenant(&plan, &environment())
            .unwrap()
            .keys()
            .map(|k| k.strip_prefix(&prefix).unwrap().to_owned())
            .filter(|k| !k.starts_with("deployments/"))
            .collect()
    }

    /// The tree of every phase, file by file (docs/lifecycle.md's table).
    #[test]
    fn each_phase_renders_its_tree() {
        let reg = lifecycle_registry();
        let full: &[&str] = &[
            "certificate.yaml",
            "config-map.yaml",
            "external-secrets.yaml",
            "grafana.yaml",
            "ingress.yaml",
            "kustomization.yaml",
            "limit-range.yaml",
            "namespace.yaml",
            "network-policy.yaml",
            "prometheus-rule.yaml",
            "rbac.yaml",
            "resource-quota.yaml",
            "service-monitor.yaml",
            "setup-jobs.yaml",
        ];
        let with = |extra: &[&str]| {
            let mut v: Vec<String> = full.iter().chain(extra).map(|s| (*s).to_owned()).collect();
            v.sort();
            v
        };
        let guardrails = |extra: &str| {
            let mut v: Vec<String> = [
                "kustomization.yaml",
                "limit-range.yaml",
                "namespace.yaml",
                "network-policy.yaml",
                "rbac.yaml",
                "resource-quota.yaml",
                extra,
            ]
            .map(String::from)
            .to_vec();
            v.sort();
            v
        };
        for (id, phase) in LIFECYCLE_TENANTS {
            let plan = crate::plan::plan_tenant(&reg, &reg.tenants[id], now());
            assert_eq!(plan.phase, phase, "{id}");
            let mut got = files(&reg, id);
            got.retain(|f| !f.starts_with("config."));
            let expected = match phase {
                Phase::Provisioning | Phase::Failed | Phase::Active | Phase::Grace => {
                    with(&["jobs.yaml", "lifecycle.yaml"])
                }
                Phase::Due => with(&["backup.yaml", "lifecycle.yaml"]),
                Phase::Purging(PurgeStep::Workloads) => guardrails("purge.yaml"),
                Phase::Purging(PurgeStep::Teardown) => guardrails("teardown.yaml"),
                Phase::Purging(PurgeStep::Namespace) => {
                    vec!["kustomization.yaml".to_owned(), "purge.yaml".to_owned()]
                }
                Phase::Removed => vec![],
            };
            assert_eq!(got, expected, "{id} ({})", phase.label());
        }
    }

    #[test]
    fn each_phase_runs_its_jobs_and_no_other() {
        let reg = lifecycle_registry();
        for (id, phase) in LIFECYCLE_TENANTS {
            let plan = crate::plan::plan_tenant(&reg, &reg.tenants[id], now());
            let steps: Vec<&str> = lifecycle_jobs(&plan).iter().map(|j| j.step).collect();
            let expected: Vec<&str> = [
                "activate",
                "sync-failed",
                "website-status",
                "backup",
                "purge-check",
                "teardown",
                "namespace-check",
            ]
            .into_iter()
            .filter(|s| crate::plan::lifecycle::renders(phase, s))
            .collect();
            assert_eq!(steps, expected, "{id}");
        }
    }

    /// Every lifecycle Job runs in the shared namespace as `provisio-setup`, mounts its own
    /// spec (which parses back and validates), and carries no secret value; hooks are
    /// PostSync or SyncFail, never a delete hook; backup and teardown are ordinary Jobs of
    /// the last waves.
    #[test]
    fn lifecycle_jobs_are_shared_namespace_jobs_with_their_spec_and_no_secret() {
        let reg = lifecycle_registry();
        for (id, _) in LIFECYCLE_TENANTS {
            let plan = crate::plan::plan_tenant(&reg, &reg.tenants[id], now());
            for j in lifecycle_jobs(&plan) {
                let (cm, job) = (&j.spec.metadata, &j.job);
                assert_eq!(cm.name, job.metadata.name);
                let name = cm.name.as_deref().unwrap();
                assert!(
                    name.len() <= 63 && crate::naming::is_dns1123_label(name),
                    "{name}"
                );
                assert_eq!(name, lifecycle_job_name(j.step, id));
                assert_eq!(cm.namespace.as_deref(), Some("e-commerce-shared"));
                assert_eq!(job.metadata.namespace.as_deref(), Some("e-commerce-shared"));
                let labels = job.metadata.labels.as_ref().unwrap();
                assert_eq!(labels["app"], LIFECYCLE_APP);
                assert_eq!(labels["lifecycle-step"], j.step);
                let ann = job.metadata.annotations.as_ref().unwrap();
                match j.step {
                    "backup" | "teardown" => {
                        assert!(!ann.contains_key(HOOK), "{name}: an ordinary Job");
                        assert_eq!(ann[SYNC_WAVE], wave::LIFECYCLE_JOB.to_string());
                        assert_eq!(
                            cm.annotations.as_ref().unwrap()[SYNC_WAVE],
                            wave::LIFECYCLE_SPEC.to_string()
                        );
                    }
                    "sync-failed" => assert_eq!(ann[HOOK], "SyncFail"),
                    _ => assert_eq!(ann[HOOK], "PostSync"),
                }
                if ann.contains_key(HOOK) {
                    assert_eq!(ann[HOOK_DELETE_POLICY], HOOK_DELETE);
                }
                let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
                assert_eq!(
                    pod.service_account_name.as_deref(),
                    Some(SETUP_SERVICE_ACCOUNT)
                );
                let c = &pod.containers[0];
                let env = c.env.as_ref().unwrap();
                assert!(env.iter().any(|e| e.name == "PROVISIO_JOB_UID"));
                let text = &j.spec.data.as_ref().unwrap()[SPEC_KEY];
                let parsed = match j.step {
                    "activate" => crate::plan::lifecycle::ActivationSpec::parse(text).map(|_| ()),
                    "sync-failed" => {
                        crate::plan::lifecycle::SyncFailedSpec::parse(text).map(|_| ())
                    }
                    "website-status" => {
                        crate::plan::lifecycle::WebsiteStatusSpec::parse(text).map(|_| ())
                    }
                    "backup" => crate::plan::lifecycle::BackupSpec::parse(text).map(|_| ()),
                    "purge-check" | "namespace-check" => {
                        crate::plan::lifecycle::PurgeCheckSpec::parse(text).map(|_| ())
                    }
                    "teardown" => SetupSpec::parse(text).map(|_| ()),
                    other => panic!("{other}"),
                };
                parsed.unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
                let lower = text.to_ascii_lowercase();
                assert!(!lower.contains("\"password\""), "{name}: {text}");
            }
        }
    }

    #[test]
    fn the_backup_reports_to_serve_and_writes_under_the_tenants_archive_prefix() {
        let reg = lifecycle_registry();
        let plan = crate::plan::plan_tenant(&reg, &reg.tenants["life-due-0a0005"], now());
        let spec = BackupSpec::from_plan(&plan).unwrap();
        assert_eq!(
            spec.report.url,
            "http://provisio-serve.provisio.svc.cluster.local:8080/api/v1/lifecycle/tenants/life-due-0a0005/reports"
        );
        assert_eq!(
            spec.report.key_secret,
            "/e-commerce/tenants/life-due-0a0005/report"
        );
        assert_eq!(spec.archive.prefix, "life-due-0a0005/");
        assert_eq!(spec.archive.storage_class.as_deref(), Some("DEEP_ARCHIVE"));
        assert_eq!(spec.deletion_date.to_rfc3339(), "2025-01-15T00:00:00+00:00");
    }

    /// The teardown spec carries the recorded backup (the Job re-reads its manifest) or the
    /// rollback, and the store keys no service owns.
    #[test]
    fn the_teardown_spec_rests_on_the_recorded_backup() {
        let reg = lifecycle_registry();
        let plan = crate::plan::plan_tenant(&reg, &reg.tenants["life-teardown-0a0007"], now());
        let spec = SetupSpec::teardown_from_plan(&plan);
        assert_eq!(spec.lifecycle.purge_step, Some(PurgeStep::Teardown));
        let b = spec.lifecycle.backup.as_ref().unwrap();
        assert!(
            b.location
                .starts_with("s3://ecommerce-tenant-archives/life-teardown-0a0007/")
        );
        let t = spec.teardown.as_ref().unwrap();
        assert_eq!(
            t.store_keys,
            [
                "/e-commerce/tenants/life-teardown-0a0007/admin",
                "/e-commerce/tenants/life-teardown-0a0007/internal-api"
            ]
        );
        assert!(t.archive.is_some());
        assert!(spec.mysql.is_some() && spec.rabbitmq.is_some() && spec.s3.is_some());
    }
}
