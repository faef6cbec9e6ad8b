//! The tenant's workloads: the tenant ConfigMap (non-secret endpoints), one Deployment and
//! Service per product, and the products' migration Jobs.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapEnvSource, Container, ContainerPort, EnvFromSource, EnvVar, HTTPGetAction,
    PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SecretEnvSource, Service, ServicePort,
    ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sha2::{Digest, Sha256};

use super::rbac::APP_SERVICE_ACCOUNT;
use crate::plan::{self, ProductPlan, TenantPlan};
use crate::render::objects::{
    self, annotate, cpu_memory, match_labels, meta, pod_security_context,
    restricted_security_context, wave,
};

/// The tenant ConfigMap: identity, plan, and the non-secret endpoints of shared services.
pub(super) fn tenant_config(plan: &TenantPlan<'_>) -> ConfigMap {
    let p = plan.platform;
    let s = &p.shared_services;
    let mut data = BTreeMap::from([
        ("TENANT_ID".to_owned(), plan.id.to_owned()),
        ("TENANT_NAME".to_owned(), plan.tenant.name.clone()),
        ("TENANT_TIER".to_owned(), plan.tier_name.to_owned()),
        ("TENANT_REGION".to_owned(), plan.region.to_owned()),
        ("TENANT_DOMAIN".to_owned(), plan.domain.clone()),
        ("TENANT_SITES".to_owned(), plan.tier.sites.to_string()),
        ("TENANT_STATUS".to_owned(), plan.status.as_str().to_owned()),
        ("APP_ENV".to_owned(), p.environment.clone()),
        ("APP_DEBUG".to_owned(), "false".to_owned()),
        ("APP_URL".to_owned(), format!("https://{}", plan.domain)),
        ("LOG_LEVEL".to_owned(), "info".to_owned()),
    ]);
    if plan.uses_mysql() {
        data.insert("DB_CONNECTION".into(), "mysql".into());
        data.insert("DB_HOST".into(), s.mysql.host.clone());
        data.insert("DB_PORT".into(), s.mysql.port.to_string());
    }
    if plan.uses_minio() {
        data.insert(
            "MINIO_ENDPOINT".into(),
            format!("{}:{}", s.minio.host, s.minio.port),
        );
        data.insert("MINIO_USE_SSL".into(), s.minio.use_ssl.to_string());
        for b in &plan.buckets {
            data.insert(
                format!("MINIO_BUCKET_{}", b.short.to_ascii_uppercase()),
                b.name.clone(),
            );
        }
    }
    if plan.uses_rabbitmq() {
        data.insert("RABBITMQ_HOST".into(), s.rabbitmq.host.clone());
        data.insert("RABBITMQ_PORT".into(), s.rabbitmq.port.to_string());
        data.insert("RABBITMQ_VHOST".into(), plan.rabbitmq.vhost.clone());
        data.insert("RABBITMQ_EXCHANGE".into(), plan.rabbitmq.exchange.clone());
    }
    ConfigMap {
        metadata: meta(plan, plan::TENANT_CONFIG, wave::CONFIG, &[]),
        data: Some(data),
        ..Default::default()
    }
}

/// SHA-256 of the ConfigMap data, put on pod templates so a config change rolls the pods.
pub(super) fn hash_config(cm: &ConfigMap) -> String {
    let mut h = Sha256::new();
    for (k, v) in cm.data.iter().flatten() {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..16])
}

/// Environment of a product's containers: the tenant ConfigMap, its own credentials only.
pub(super) fn env_sources(p: &ProductPlan<'_>) -> (Vec<EnvFromSource>, Vec<EnvVar>) {
    let mut from = vec![EnvFromSource {
        config_map_ref: Some(ConfigMapEnvSource {
            name: plan::TENANT_CONFIG.to_owned(),
            optional: Some(false),
        }),
        ..Default::default()
    }];
    let secret = |name: &str| EnvFromSource {
        secret_ref: Some(SecretEnvSource {
            name: name.to_owned(),
            optional: Some(false),
        }),
        ..Default::default()
    };
    let mut env = Vec::new();
    if let Some(db) = &p.database {
        from.push(secret(&db.secret_name));
        env.push(EnvVar {
            name: "DB_DATABASE".into(),
            value: Some(db.database.clone()),
            ..Default::default()
        });
    }
    if p.uses_minio {
        from.push(secret(plan::MINIO_SECRET));
    }
    if p.uses_rabbitmq {
        from.push(secret(plan::RABBITMQ_SECRET));
    }
    if let Some(q) = &p.queue {
        env.push(EnvVar {
            name: "RABBITMQ_QUEUE".into(),
            value: Some(q.name.clone()),
            ..Default::default()
        });
    }
    env.extend(p.product.env.iter().map(|(k, v)| EnvVar {
        name: k.clone(),
        value: Some(v.clone()),
        ..Default::default()
    }));
    (from, env)
}

pub(super) fn http_probe(probe: &crate::registry::Probe, port: u16) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(probe.path.clone()),
            port: IntOrString::Int(i32::from(port)),
            ..Default::default()
        }),
        initial_delay_seconds: Some(probe.initial_delay_seconds),
        period_seconds: Some(probe.period_seconds),
        ..Default::default()
    }
}

pub(super) fn resources(p: &ProductPlan<'_>) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(cpu_memory(&p.product.resources.requests)),
        limits: Some(cpu_memory(&p.product.resources.limits)),
        ..Default::default()
    }
}

pub(super) fn deployment(
    plan: &TenantPlan<'_>,
    p: &ProductPlan<'_>,
    config_hash: &str,
) -> Deployment {
    let product = p.product;
    let mut ports = vec![ContainerPort {
        name: Some("http".into()),
        container_port: i32::from(product.port.value),
        protocol: Some("TCP".into()),
        ..Default::default()
    }];
    if let Some(m) = &product.metrics_port {
        ports.push(ContainerPort {
            name: Some("metrics".into()),
            container_port: i32::from(m.value),
            protocol: Some("TCP".into()),
            ..Default::default()
        });
    }
    let (env_from, env) = env_sources(p);
    let mut pod_labels = plan.labels.clone();
    pod_labels.insert("app".into(), p.name.to_owned());
    pod_labels.insert("version".into(), p.version.to_owned());
    Deployment {
        metadata: meta(plan, p.name, wave::WORKLOADS, &[("app", p.name)]),
        spec: Some(DeploymentSpec {
            replicas: Some(p.replicas as i32),
            revision_history_limit: Some(5),
            // Only `app`: selectors are immutable, and the tier label changes on upgrades.
            selector: match_labels(&[("app", p.name)]),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(BTreeMap::from([(
                        "provisio/config-hash".to_owned(),
                        config_hash.to_owned(),
                    )])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(APP_SERVICE_ACCOUNT.into()),
                    automount_service_account_token: Some(false),
                    security_context: Some(pod_security_context()),
                    containers: vec![Container {
                        name: p.name.to_owned(),
                        image: Some(p.image.clone()),
                        image_pull_policy: plan.platform.images.pull_policy.clone(),
                        ports: Some(ports),
                        env_from: Some(env_from),
                        env: (!env.is_empty()).then_some(env),
                        resources: Some(resources(p)),
                        liveness_probe: Some(http_probe(
                            &product.probes.liveness,
                            product.port.value,
                        )),
                        readiness_probe: Some(http_probe(
                            &product.probes.readiness,
                            product.port.value,
                        )),
                        security_context: Some(restricted_security_context()),
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

pub(super) fn service(plan: &TenantPlan<'_>, p: &ProductPlan<'_>) -> Service {
    let product = p.product;
    let mut ports = vec![ServicePort {
        name: Some("http".into()),
        port: i32::from(product.port.value),
        target_port: Some(IntOrString::String("http".into())),
        protocol: Some("TCP".into()),
        ..Default::default()
    }];
    let mut extra = vec![("app", p.name)];
    if let Some(m) = &product.metrics_port {
        ports.push(ServicePort {
            name: Some("metrics".into()),
            port: i32::from(m.value),
            target_port: Some(IntOrString::String("metrics".into())),
            protocol: Some("TCP".into()),
            ..Default::default()
        });
        extra.push(("provisio/metrics", "true"));
    }
    Service {
        metadata: meta(plan, p.name, wave::WORKLOADS, &extra),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(objects::labels(&[("app", p.name)])),
            ports: Some(ports),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A product's schema migration: an Argo CD Sync hook that runs before the workloads roll.
pub(super) fn migration_job(plan: &TenantPlan<'_>, p: &ProductPlan<'_>) -> Option<Job> {
    let m = p.product.migration.as_ref()?;
    let name = format!("migrate-{}", p.name);
    let (env_from, env) = env_sources(p);
    let metadata = annotate(
        meta(plan, &name, wave::MIGRATIONS, &[("app", p.name)]),
        [
            (objects::HOOK.to_owned(), "Sync".to_owned()),
            (
                objects::HOOK_DELETE_POLICY.to_owned(),
                "BeforeHookCreation".to_owned(),
            ),
        ],
    );
    Some(Job {
        metadata,
        spec: Some(JobSpec {
            backoff_limit: Some(3),
            active_deadline_seconds: Some(900),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(objects::labels(&[("app", p.name), ("tenant", plan.id)])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    service_account_name: Some(APP_SERVICE_ACCOUNT.into()),
                    automount_service_account_token: Some(false),
                    security_context: Some(pod_security_context()),
                    containers: vec![Container {
                        name: "migrate".into(),
                        image: Some(p.image.clone()),
                        command: Some(m.command.clone()),
                        env_from: Some(env_from),
                        env: (!env.is_empty()).then_some(env),
                        resources: Some(resources(p)),
                        security_context: Some(restricted_security_context()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    })
}
