//! The setup Jobs of a tenant (pure): `provisio setup mysql|rabbitmq|minio` as Argo CD
//! PreSync hooks, one per shared service the tenant uses, each with a ConfigMap holding only
//! that service's [`SetupSpec`] (pretty-printed JSON, mounted as a file: a change to one
//! service rewrites that service's pair only, and reads as a diff). No teardown is rendered:
//! Argo CD's PostDelete hooks are rendered from git, where a departing tenant's tree is already
//! gone, so the Application hangs in Deleting (argo-cd #18070), a failing one is recreated on
//! every reconcile, and v3.5 may kill them before they run (#29100); see `docs/registry.md`,
//! "Offboarding".
//!
//! They run in the shared-services namespace, never in the tenant's: the admin credentials
//! they read (Secrets `provisio-admin-<service>` and `provisio-secret-store`, provided by the
//! platform) never reach a tenant namespace. The spec holds names and keys only, no secret
//! value. Both hooks are deleted once the sync succeeds (`HookSucceeded`), so nothing piles up
//! in the shared namespace; after a failed sync they stay for their logs until the next sync
//! replaces them (`BeforeHookCreation`). See `docs/credentials.md`.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, EnvFromSource, EnvVar, EnvVarSource,
    ObjectFieldSelector, PodSpec, PodTemplateSpec, ResourceRequirements, SecretEnvSource,
    SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sha2::{Digest, Sha256};

use super::objects::{HOOK, HOOK_DELETE_POLICY, SYNC_WAVE};
use crate::plan::TenantPlan;
use crate::plan::setup::{SetupSpec, SharedService};

/// Service account of the setup Jobs in the shared namespace (provided by the platform).
pub const SETUP_SERVICE_ACCOUNT: &str = "provisio-setup";
/// Secret in the shared namespace with the secret store's access (`AWS_REGION`, and
/// `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` unless the service account carries them).
pub const STORE_SECRET: &str = "provisio-secret-store";
/// `--secret-store` of the Jobs.
pub const STORE_ARG: &str = "aws-secrets-manager";
/// Sync wave of the setup Jobs within PreSync (before anything else of the tenant).
pub const SETUP_WAVE: i32 = -20;
/// Sync wave of their spec ConfigMaps: the wave before, so a Job's pod finds its file.
pub const SPEC_WAVE: i32 = SETUP_WAVE - 1;
/// Argo CD hook delete policy of both: replaced by the next sync's, deleted once the sync
/// succeeds (argo-cd gitops-engine `sync_context.go` deletes `HookSucceeded` hooks when the
/// whole operation has succeeded, so the ConfigMaps outlive their Jobs' runs).
pub const HOOK_DELETE: &str = "BeforeHookCreation,HookSucceeded";
/// Where a Job mounts its ConfigMap, and the spec's file name (the ConfigMap's key).
pub const SPEC_DIR: &str = "/etc/provisio";
pub const SPEC_KEY: &str = "spec.json";

/// One service's setup: the ConfigMap with its spec and the Job that reads it.
#[derive(Debug, Clone)]
pub struct SetupJob {
    pub service: SharedService,
    pub spec: ConfigMap,
    pub job: Job,
}

/// Secret holding the admin credentials of one shared service.
pub fn admin_secret(service: &str) -> String {
    format!("provisio-admin-{service}")
}

/// `<verb>-<service>-<tenant>`, cut to 63 characters with a hash suffix when longer (Job
/// names become pod labels).
pub fn job_name(verb: &str, service: &str, tenant: &str) -> String {
    bounded_name(format!("{verb}-{service}-{tenant}"))
}

/// `name` itself when it fits 63 characters, else its first 54 (no trailing `-`) and 8 hex
/// digits of its hash: different names stay different.
pub fn bounded_name(name: String) -> String {
    if name.len() <= 63 {
        return name;
    }
    let hash = hex::encode(Sha256::digest(name.as_bytes()));
    let head = name[..54].trim_end_matches('-');
    format!("{head}-{}", &hash[..8])
}

/// Every setup Job of the tenant (with its spec ConfigMap): one per shared service it uses.
pub fn setup_jobs(plan: &TenantPlan<'_>) -> Vec<SetupJob> {
    let full = SetupSpec::from_plan(plan);
    SharedService::ALL
        .into_iter()
        .filter_map(|service| {
            let spec = full.for_service(service)?;
            Some(setup_job(plan, service, &spec))
        })
        .collect()
}

/// What distinguishes one provisio Job of a tenant tree from another: its name, labels, when
/// Argo CD runs it, what it runs and reads. Every provisio Job runs in the shared-services
/// namespace as `provisio-setup`, restricted, with its spec mounted read-only from a
/// ConfigMap of its own name.
#[derive(Debug, Clone)]
pub struct ProvisioJob {
    pub name: String,
    /// The `app` label: `provisio-setup` or `provisio-lifecycle`.
    pub app: &'static str,
    /// One more label saying what the Job is for (`shared-service: mysql`,
    /// `lifecycle-step: activate`).
    pub role: (&'static str, String),
    /// The Argo CD hook (`PreSync`, `PostSync`, `SyncFail`), or `None` for an ordinary Job
    /// (applied, kept until the tree's next state prunes it).
    pub hook: Option<&'static str>,
    pub spec_wave: i32,
    pub job_wave: i32,
    pub args: Vec<String>,
    /// Secrets of the shared namespace read through `envFrom`, with whether each may be
    /// absent.
    pub secrets: Vec<(String, bool)>,
    /// Gives the command `PROVISIO_JOB_UID` (the Job's uid: the same for its retried pods),
    /// the idempotency key of its reports.
    pub job_uid: bool,
    pub deadline_seconds: i64,
    pub backoff_limit: i32,
    /// CPU and memory limits (requests are 50m / 32Mi).
    pub limits: (&'static str, &'static str),
    /// The spec, mounted as `/etc/provisio/spec.json`.
    pub spec_json: String,
}

/// Environment variable carrying the Job's uid into a lifecycle Job's command.
pub const JOB_UID_ENV: &str = "PROVISIO_JOB_UID";

fn job_metadata(plan: &TenantPlan<'_>, j: &ProvisioJob, wave: i32) -> ObjectMeta {
    let mut labels: BTreeMap<String, String> = plan.labels.clone();
    labels.insert("app".into(), j.app.into());
    labels.insert(j.role.0.into(), j.role.1.clone());
    let mut annotations = BTreeMap::from([(SYNC_WAVE.to_owned(), wave.to_string())]);
    if let Some(hook) = j.hook {
        annotations.insert(HOOK.to_owned(), hook.to_owned());
        annotations.insert(HOOK_DELETE_POLICY.to_owned(), HOOK_DELETE.to_owned());
    }
    ObjectMeta {
        name: Some(j.name.clone()),
        namespace: Some(plan.platform.shared_services.namespace.clone()),
        labels: Some(labels),
        annotations: Some(annotations),
        ..Default::default()
    }
}

/// The ConfigMap holding a Job's spec and the Job mounting it.
pub fn provisio_job(plan: &TenantPlan<'_>, j: &ProvisioJob) -> (ConfigMap, Job) {
    let config = ConfigMap {
        metadata: job_metadata(plan, j, j.spec_wave),
        data: Some(BTreeMap::from([(SPEC_KEY.to_owned(), j.spec_json.clone())])),
        ..Default::default()
    };
    let metadata = job_metadata(plan, j, j.job_wave);
    let secret_env = |(name, optional): &(String, bool)| EnvFromSource {
        secret_ref: Some(SecretEnvSource {
            name: name.clone(),
            optional: Some(*optional),
        }),
        ..Default::default()
    };
    let quantity = |s: &str| Quantity(s.to_owned());
    let mut env = vec![EnvVar {
        name: "PROVISIO_LOG".into(),
        value: Some("info".into()),
        ..Default::default()
    }];
    if j.job_uid {
        env.push(EnvVar {
            name: JOB_UID_ENV.into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.labels['batch.kubernetes.io/controller-uid']".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    let job = Job {
        spec: Some(JobSpec {
            // The command retries transient failures itself; the Job retries a crash.
            backoff_limit: Some(j.backoff_limit),
            active_deadline_seconds: Some(j.deadline_seconds),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: metadata.labels.clone(),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    service_account_name: Some(SETUP_SERVICE_ACCOUNT.into()),
                    security_context: Some(super::objects::pod_security_context()),
                    volumes: Some(vec![Volume {
                        name: "spec".into(),
                        config_map: Some(ConfigMapVolumeSource {
                            name: j.name.clone(),
                            optional: Some(false),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }]),
                    containers: vec![Container {
                        name: "provisio".into(),
                        image: Some(plan.platform.images.provisio.clone()),
                        image_pull_policy: plan.platform.images.pull_policy.clone(),
                        args: Some(j.args.clone()),
                        env: Some(env),
                        env_from: Some(j.secrets.iter().map(secret_env).collect()),
                        volume_mounts: Some(vec![VolumeMount {
                            name: "spec".into(),
                            mount_path: SPEC_DIR.into(),
                            read_only: Some(true),
                            ..Default::default()
                        }]),
                        resources: Some(ResourceRequirements {
                            requests: Some(BTreeMap::from([
                                ("cpu".into(), quantity("50m")),
                                ("memory".into(), quantity("32Mi")),
                            ])),
                            limits: Some(BTreeMap::from([
                                ("cpu".into(), quantity(j.limits.0)),
                                ("memory".into(), quantity(j.limits.1)),
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
        metadata,
        ..Default::default()
    };
    (config, job)
}

/// The arguments of a Job running `provisio <command…> --spec <mounted spec> --secret-store
/// <the store>`.
pub fn spec_args(command: &[&str]) -> Vec<String> {
    command
        .iter()
        .map(|c| (*c).to_owned())
        .chain([
            "--spec".to_owned(),
            format!("{SPEC_DIR}/{SPEC_KEY}"),
            "--secret-store".to_owned(),
            STORE_ARG.to_owned(),
        ])
        .collect()
}

fn setup_job(plan: &TenantPlan<'_>, service: SharedService, spec: &SetupSpec) -> SetupJob {
    let svc = service.as_str();
    let (config, job) = provisio_job(
        plan,
        &ProvisioJob {
            name: job_name("setup", svc, plan.id),
            app: "provisio-setup",
            role: ("shared-service", svc.to_owned()),
            hook: Some("PreSync"),
            spec_wave: SPEC_WAVE,
            job_wave: SETUP_WAVE,
            args: spec_args(&["setup", svc]),
            secrets: vec![(admin_secret(svc), false), (STORE_SECRET.to_owned(), false)],
            job_uid: false,
            deadline_seconds: 600,
            backoff_limit: 3,
            limits: ("500m", "128Mi"),
            spec_json: spec.to_pretty_json(),
        },
    );
    SetupJob {
        service,
        spec: config,
        job,
    }
}

/// The Secret holding the report master secret (`PROVISIO_REPORT_SECRET`), read by
/// `setup credentials` only (provided by the platform in the shared namespace).
pub const REPORT_MASTER_SECRET: &str = "provisio-report-master";

/// `setup credentials` (PreSync, with the setup Jobs): the admin's initial password, the
/// websites token and the report key, created once in the secret store.
pub fn credentials_job(plan: &TenantPlan<'_>) -> (ConfigMap, Job) {
    let spec = crate::plan::lifecycle::CredentialsSpec::from_plan(plan);
    provisio_job(
        plan,
        &ProvisioJob {
            name: job_name("setup", "credentials", plan.id),
            app: "provisio-setup",
            role: ("lifecycle-step", "credentials".to_owned()),
            hook: Some("PreSync"),
            spec_wave: SPEC_WAVE,
            job_wave: SETUP_WAVE,
            args: spec_args(&["setup", "credentials"]),
            secrets: vec![
                (REPORT_MASTER_SECRET.to_owned(), false),
                (STORE_SECRET.to_owned(), false),
            ],
            job_uid: false,
            deadline_seconds: 600,
            backoff_limit: 3,
            limits: ("500m", "128Mi"),
            spec_json: crate::plan::lifecycle::pretty(&spec),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{
        ACTIVE, DEPROVISIONING, edited_registry, example_registry, gateway_only_registry, plan,
        replace_in,
    };

    fn jobs(plan: &TenantPlan<'_>) -> Vec<Job> {
        setup_jobs(plan).into_iter().map(|s| s.job).collect()
    }

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

    fn annotation<'a>(m: &'a ObjectMeta, key: &str) -> &'a str {
        &m.annotations.as_ref().unwrap()[key]
    }

    fn spec_text(s: &SetupJob) -> &str {
        &s.spec.data.as_ref().unwrap()[SPEC_KEY]
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
            assert_eq!(annotation(&j.metadata, HOOK), "PreSync");
            assert_eq!(
                annotation(&j.metadata, HOOK_DELETE_POLICY),
                "BeforeHookCreation,HookSucceeded"
            );
            assert_eq!(annotation(&j.metadata, SYNC_WAVE), SETUP_WAVE.to_string());
        }
        const { assert!(SETUP_WAVE < crate::render::objects::wave::NAMESPACE) };
        let reg = gateway_only_registry();
        assert_eq!(
            names(&self::tests::jobs(&plan(&reg, ACTIVE))),
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
            assert_eq!(annotation(&j.metadata, HOOK), "PreSync");
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
                [
                    service.clone(),
                    "--spec".into(),
                    "/etc/provisio/spec.json".into(),
                    "--secret-store".into(),
                    STORE_ARG.into()
                ]
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

    /// Each Job mounts a ConfigMap of its own (a PreSync hook one wave earlier, in the same
    /// namespace) holding only its service's part of the spec, pretty-printed; no variable
    /// carries a spec, and nothing in it is a credential.
    #[test]
    fn each_job_mounts_its_own_services_spec_and_no_secret_value() {
        let reg = example_registry();
        let plan = plan(&reg, ACTIVE);
        let full = SetupSpec::from_plan(&plan);
        for s in setup_jobs(&plan) {
            let (cm, j) = (&s.spec.metadata, &s.job);
            assert_eq!(cm.name, j.metadata.name);
            assert_eq!(cm.namespace, j.metadata.namespace);
            assert_eq!(cm.labels, j.metadata.labels);
            assert_eq!(annotation(cm, HOOK), "PreSync");
            assert_eq!(annotation(cm, HOOK_DELETE_POLICY), HOOK_DELETE);
            assert_eq!(annotation(cm, SYNC_WAVE), SPEC_WAVE.to_string());
            const { assert!(SPEC_WAVE < SETUP_WAVE) };
            let pod = j.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
            let [volume] = pod.volumes.as_deref().unwrap() else {
                panic!("one volume")
            };
            assert_eq!(
                volume.config_map.as_ref().unwrap().name,
                *cm.name.as_ref().unwrap()
            );
            let [mount] = container(j).volume_mounts.as_deref().unwrap() else {
                panic!("one mount")
            };
            assert_eq!(
                (
                    mount.name.as_str(),
                    mount.mount_path.as_str(),
                    mount.read_only
                ),
                (volume.name.as_str(), SPEC_DIR, Some(true))
            );
            let env = container(j).env.as_ref().unwrap();
            assert!(env.iter().all(|e| e.name != crate::plan::setup::SPEC_ENV));
            assert!(env.iter().all(|e| e.value_from.is_none()));

            let text = spec_text(&s);
            assert!(text.ends_with("}\n") && text.lines().count() > 5, "{text}");
            assert!(text.lines().all(|l| l.len() < 120), "{text}");
            let spec = SetupSpec::parse(text).unwrap();
            assert_eq!(Some(&spec), full.for_service(s.service).as_ref());
            assert_eq!(
                [
                    spec.mysql.is_some(),
                    spec.rabbitmq.is_some(),
                    spec.s3.is_some()
                ]
                .iter()
                .filter(|b| **b)
                .count(),
                1,
                "{text}"
            );
            let mut fields = Vec::new();
            collect_fields(&serde_json::from_str(text).unwrap(), &mut fields);
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

    /// A RabbitMQ change rewrites the RabbitMQ pair only.
    #[test]
    fn a_change_to_one_service_leaves_the_other_jobs_alone() {
        let before = setup_jobs(&plan(&example_registry(), ACTIVE));
        let reg = edited_registry(|s| {
            replace_in(
                s,
                "products/orders.yaml",
                "routingKeys: [order.*]",
                "routingKeys: [order.*, payment.*]",
            );
        });
        let after = setup_jobs(&plan(&reg, ACTIVE));
        let changed: Vec<&str> = before
            .iter()
            .zip(&after)
            .filter(|(a, b)| spec_text(a) != spec_text(b))
            .map(|(a, _)| a.service.as_str())
            .collect();
        assert_eq!(changed, ["rabbitmq"]);
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
