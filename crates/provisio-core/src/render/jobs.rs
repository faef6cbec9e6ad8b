//! The setup and teardown Jobs of a tenant (pure): `provisio setup mysql|rabbitmq|minio` as
//! Argo CD PreSync hooks and, for a tenant in `deprovisioning`, `provisio teardown …` as
//! PostDelete hooks. They run in the shared-services namespace, never in the tenant's: the
//! admin credentials they read (Secrets `provisio-admin-<service>` and
//! `provisio-secret-store`, provided by the platform) never reach a tenant namespace. The
//! tenant's [`SetupSpec`] travels in the Job as JSON (names and keys only, no secret value).
//! See `docs/credentials.md`.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvFromSource, EnvVar, PodSpec, PodTemplateSpec, ResourceRequirements,
    SecretEnvSource, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sha2::{Digest, Sha256};

use super::objects::{HOOK, HOOK_DELETE_POLICY, SYNC_WAVE};
use crate::plan::TenantPlan;
use crate::plan::setup::SetupSpec;
use crate::registry::TenantStatus;

/// Service account of the setup Jobs in the shared namespace (provided by the platform).
pub const SETUP_SERVICE_ACCOUNT: &str = "provisio-setup";
/// Secret in the shared namespace with the secret store's access (`AWS_REGION`, and
/// `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` unless the service account carries them).
pub const STORE_SECRET: &str = "provisio-secret-store";
/// `--secret-store` of the Jobs.
pub const STORE_ARG: &str = "aws-secrets-manager";
/// Sync wave of the setup hooks within PreSync (before anything else of the tenant).
pub const SETUP_WAVE: i32 = -20;

/// The shared services a tenant may need, in the order their Jobs are listed.
const SERVICES: [&str; 3] = ["mysql", "rabbitmq", "minio"];

fn uses(plan: &TenantPlan<'_>, service: &str) -> bool {
    match service {
        "mysql" => plan.uses_mysql(),
        "rabbitmq" => plan.uses_rabbitmq(),
        _ => plan.uses_minio(),
    }
}

/// Secret holding the admin credentials of one shared service.
pub fn admin_secret(service: &str) -> String {
    format!("provisio-admin-{service}")
}

/// `<verb>-<service>-<tenant>`, cut to 63 characters with a hash suffix when longer (Job
/// names become pod labels).
pub fn job_name(verb: &str, service: &str, tenant: &str) -> String {
    let name = format!("{verb}-{service}-{tenant}");
    if name.len() <= 63 {
        return name;
    }
    let hash = hex::encode(Sha256::digest(name.as_bytes()));
    let head = name[..54].trim_end_matches('-');
    format!("{head}-{}", &hash[..8])
}

/// Every setup Job of the tenant, and its teardown Jobs when it is being deprovisioned.
pub fn jobs(plan: &TenantPlan<'_>) -> Vec<Job> {
    let spec = SetupSpec::from_plan(plan).to_json();
    let mut out: Vec<Job> = SERVICES
        .iter()
        .filter(|s| uses(plan, s))
        .map(|s| job(plan, "setup", s, &spec))
        .collect();
    if plan.status == TenantStatus::Deprovisioning {
        out.extend(
            SERVICES
                .iter()
                .filter(|s| uses(plan, s))
                .map(|s| job(plan, "teardown", s, &spec)),
        );
    }
    out
}

fn job(plan: &TenantPlan<'_>, verb: &str, service: &str, spec: &str) -> Job {
    let name = job_name(verb, service, plan.id);
    let mut labels: BTreeMap<String, String> = plan.labels.clone();
    labels.insert("app".into(), format!("provisio-{verb}"));
    labels.insert("shared-service".into(), service.into());
    let hook = if verb == "setup" {
        "PreSync"
    } else {
        "PostDelete"
    };
    let annotations = BTreeMap::from([
        (HOOK.to_owned(), hook.to_owned()),
        // Kept after the run for its logs; replaced by the next sync's Job.
        (
            HOOK_DELETE_POLICY.to_owned(),
            "BeforeHookCreation".to_owned(),
        ),
        (SYNC_WAVE.to_owned(), SETUP_WAVE.to_string()),
    ]);
    let secret_env = |name: String| EnvFromSource {
        secret_ref: Some(SecretEnvSource {
            name,
            optional: Some(false),
        }),
        ..Default::default()
    };
    let quantity = |s: &str| Quantity(s.to_owned());
    Job {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(plan.platform.shared_services.namespace.clone()),
            labels: Some(labels.clone()),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: Some(JobSpec {
            // The command retries transient failures itself; the Job retries a crash.
            backoff_limit: Some(3),
            active_deadline_seconds: Some(600),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    service_account_name: Some(SETUP_SERVICE_ACCOUNT.into()),
                    security_context: Some(super::objects::pod_security_context()),
                    containers: vec![Container {
                        name: "provisio".into(),
                        image: Some(plan.platform.images.provisio.clone()),
                        image_pull_policy: plan.platform.images.pull_policy.clone(),
                        args: Some(vec![
                            verb.into(),
                            service.into(),
                            "--secret-store".into(),
                            STORE_ARG.into(),
                        ]),
                        env: Some(vec![
                            EnvVar {
                                name: crate::plan::setup::SPEC_ENV.into(),
                                value: Some(spec.to_owned()),
                                ..Default::default()
                            },
                            EnvVar {
                                name: "PROVISIO_LOG".into(),
                                value: Some("info".into()),
                                ..Default::default()
                            },
                        ]),
                        env_from: Some(vec![
                            secret_env(admin_secret(service)),
                            secret_env(STORE_SECRET.to_owned()),
                        ]),
                        resources: Some(ResourceRequirements {
                            requests: Some(BTreeMap::from([
                                ("cpu".into(), quantity("50m")),
                                ("memory".into(), quantity("32Mi")),
                            ])),
                            limits: Some(BTreeMap::from([
                                ("cpu".into(), quantity("500m")),
                                ("memory".into(), quantity("128Mi")),
                            ])),
                            ..Default::default()
                        }),
                        security_context: Some(SecurityContext {
                            read_only_root_filesystem: Some(true),
                            ..super::objects::restricted_security_context()
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_fit_a_label() {
        let long = "a".repeat(52);
        let n = job_name("teardown", "rabbitmq", &long);
        assert!(n.len() <= 63 && crate::naming::is_dns1123_label(&n), "{n}");
        assert_ne!(n, job_name("teardown", "rabbitmq", &"b".repeat(52)));
        assert_eq!(
            job_name("setup", "mysql", "abc-corporation-7f3a9c"),
            "setup-mysql-abc-corporation-7f3a9c"
        );
    }
}
