//! The setup Jobs of a tenant (pure): `provisio setup mysql|rabbitmq|minio` as Argo CD
//! PreSync hooks. No teardown is rendered: Argo CD's PostDelete hooks are rendered from git,
//! where a departing tenant's tree is already gone, so the Application hangs in Deleting
//! (argo-cd #18070), a failing one is recreated on every reconcile, and v3.5 may kill them
//! before they run (#29100); see `docs/registry.md`, "Offboarding". They run in the
//! shared-services namespace, never in the tenant's: the
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

/// Every setup Job of the tenant: one per shared service it uses.
pub fn jobs(plan: &TenantPlan<'_>) -> Vec<Job> {
    let spec = SetupSpec::from_plan(plan).to_json();
    SERVICES
        .iter()
        .filter(|s| uses(plan, s))
        .map(|s| job(plan, "setup", s, &spec))
        .collect()
}

fn job(plan: &TenantPlan<'_>, verb: &str, service: &str, spec: &str) -> Job {
    let name = job_name(verb, service, plan.id);
    let mut labels: BTreeMap<String, String> = plan.labels.clone();
    labels.insert("app".into(), format!("provisio-{verb}"));
    labels.insert("shared-service".into(), service.into());
    let annotations = BTreeMap::from([
        (HOOK.to_owned(), "PreSync".to_owned()),
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
    use crate::testing::{ACTIVE, DEPROVISIONING, example_registry, gateway_only_registry, plan};

    fn names(jobs: &[Job]) -> Vec<&str> {
        jobs.iter()
            .map(|j| j.metadata.name.as_deref().unwrap())
            .collect()
    }

    fn container(j: &Job) -> &Container {
        &j.spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
    }

    fn annotation<'a>(j: &'a Job, key: &str) -> &'a str {
        &j.metadata.annotations.as_ref().unwrap()[key]
    }

    #[test]
    fn a_tenant_gets_one_presync_setup_job_per_shared_service_it_uses() {
        let reg = example_registry();
        let jobs = jobs(&plan(&reg, ACTIVE));
        assert_eq!(
            names(&jobs),
            [
                "setup-mysql-abc-corporation-7f3a9c",
                "setup-rabbitmq-abc-corporation-7f3a9c",
                "setup-minio-abc-corporation-7f3a9c",
            ]
        );
        for j in &jobs {
            assert_eq!(annotation(j, HOOK), "PreSync");
            assert_eq!(annotation(j, HOOK_DELETE_POLICY), "BeforeHookCreation");
            assert_eq!(annotation(j, SYNC_WAVE), SETUP_WAVE.to_string());
        }
        const { assert!(SETUP_WAVE < crate::render::objects::wave::NAMESPACE) };
        let reg = gateway_only_registry();
        assert_eq!(
            names(&super::jobs(&plan(&reg, ACTIVE))),
            ["setup-rabbitmq-abc-corporation-7f3a9c"]
        );
    }

    /// Teardown is not an Argo CD delete hook (rendered from git after the tree is gone:
    /// argo-cd #18070; killed before it runs: #29100): a deprovisioning tenant gets its
    /// setup Jobs only, and no Job of any tenant is a PreDelete/PostDelete hook.
    #[test]
    fn a_deprovisioning_tenant_gets_no_teardown_hook() {
        let reg = example_registry();
        let jobs = jobs(&plan(&reg, DEPROVISIONING));
        assert_eq!(
            names(&jobs),
            [
                "setup-mysql-nordwind-logistik-7ace77",
                "setup-rabbitmq-nordwind-logistik-7ace77",
                "setup-minio-nordwind-logistik-7ace77",
            ]
        );
        for j in &jobs {
            assert_eq!(container(j).args.as_ref().unwrap()[0], "setup");
            assert_eq!(annotation(j, HOOK), "PreSync");
        }
    }

    #[test]
    fn the_jobs_run_in_the_shared_namespace_with_the_admin_secret_of_their_service_only() {
        let reg = example_registry();
        let plan = plan(&reg, DEPROVISIONING);
        for j in jobs(&plan) {
            let ns = j.metadata.namespace.as_deref().unwrap();
            assert_eq!(ns, "e-commerce-shared");
            assert_ne!(
                ns, plan.namespace,
                "admin credentials never reach a tenant namespace"
            );
            let labels = j.metadata.labels.as_ref().unwrap();
            let service = labels["shared-service"].clone();
            assert_eq!(labels["tenant"], DEPROVISIONING);
            let pod = j.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
            assert_eq!(
                pod.service_account_name.as_deref(),
                Some(SETUP_SERVICE_ACCOUNT)
            );
            assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
            let c = container(&j);
            assert_eq!(
                c.image.as_deref(),
                Some("registry.collectverything.com/platform/provisio:0.1.0")
            );
            let args = c.args.as_ref().unwrap();
            assert_eq!(
                args[1..],
                [service.clone(), "--secret-store".into(), STORE_ARG.into()]
            );
            let secrets: Vec<&str> = c
                .env_from
                .iter()
                .flatten()
                .map(|e| e.secret_ref.as_ref().unwrap().name.as_str())
                .collect();
            assert_eq!(secrets, [admin_secret(&service).as_str(), STORE_SECRET]);
            let sc = c.security_context.as_ref().unwrap();
            assert_eq!(sc.read_only_root_filesystem, Some(true));
            assert_eq!(sc.allow_privilege_escalation, Some(false));
            assert_eq!(sc.run_as_non_root, Some(true));
            let limits = c.resources.as_ref().unwrap().limits.as_ref().unwrap();
            assert!(limits.contains_key("cpu") && limits.contains_key("memory"));
        }
    }

    #[test]
    fn the_jobs_carry_the_tenants_setup_spec_and_no_secret_value() {
        let reg = example_registry();
        let plan = plan(&reg, ACTIVE);
        let expected = SetupSpec::from_plan(&plan);
        for j in jobs(&plan) {
            let env = container(&j).env.as_ref().unwrap();
            let spec = env
                .iter()
                .find(|e| e.name == crate::plan::setup::SPEC_ENV)
                .and_then(|e| e.value.as_deref())
                .expect("the spec variable");
            assert_eq!(SetupSpec::parse(spec).unwrap(), expected);
            // Every variable is a plain value, and the spec names store keys, never a
            // credential: no field of it is a password, and every `secretKey` is a key
            // under the store's prefix.
            assert!(env.iter().all(|e| e.value_from.is_none()));
            let mut fields = Vec::new();
            collect_fields(&serde_json::from_str(spec).unwrap(), &mut fields);
            for (key, value) in &fields {
                assert!(!key.to_ascii_lowercase().contains("password"), "{key}");
                if key == "secretKey" {
                    let prefix = format!("/e-commerce/tenants/{ACTIVE}/");
                    assert!(value.starts_with(&prefix), "{key}: {value}");
                }
            }
            assert!(fields.iter().any(|(k, _)| k == "secretKey"));
        }
    }

    /// Every (key, string value) of a JSON document, at any depth.
    fn collect_fields(v: &serde_json::Value, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    out.push((k.clone(), v.as_str().unwrap_or_default().to_owned()));
                    collect_fields(v, out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| collect_fields(v, out)),
            _ => {}
        }
    }

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
