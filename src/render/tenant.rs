//! One tenant's tree (`tenants-out/<id>/`): one file per concern, built from k8s-openapi
//! types and the typed custom resources of [`super::crd`], ordered with Argo CD sync waves.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapEnvSource, Container, ContainerPort, EnvFromSource, EnvVar,
    HTTPGetAction, LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, PodSecurityContext,
    PodSpec, PodTemplateSpec, Probe, ResourceQuota, ResourceQuotaSpec, ResourceRequirements,
    SeccompProfile, SecretEnvSource, SecurityContext, Service, ServiceAccount, ServicePort,
    ServiceSpec,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, IPBlock, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, NetworkPolicy, NetworkPolicyEgressRule,
    NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
    ServiceBackendPort,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::crd::*;
use super::objects::{self, annotate, cpu_memory, match_labels, match_map, meta, quantity, wave};
use super::templates::{self, Environment};
use super::{Files, RenderError, TENANTS_DIR, to_yaml, yaml_file};
use crate::plan::{self, ProductPlan, TenantPlan};
use crate::registry::TenantStatus;

/// Service account of the tenant's workloads (no API access, no token mounted).
pub const APP_SERVICE_ACCOUNT: &str = "tenant-app";
/// Service account of provisio's in-namespace Jobs (reads workload health only).
pub const PROVISIO_SERVICE_ACCOUNT: &str = "provisio";
pub const TLS_SECRET: &str = "tenant-tls-secret";

/// The files of one tenant, keyed by output-relative path (`tenants-out/<id>/…`).
pub fn render_tenant(plan: &TenantPlan<'_>, env: &Environment) -> Result<Files, RenderError> {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut add = |name: &str, docs: Vec<String>| {
        files.insert(name.to_owned(), yaml_file(&docs));
    };
    add(
        "namespace.yaml",
        vec![to_yaml("Namespace", &namespace(plan))?],
    );
    add(
        "resource-quota.yaml",
        vec![to_yaml("ResourceQuota", &resource_quota(plan))?],
    );
    add(
        "limit-range.yaml",
        vec![to_yaml("LimitRange", &limit_range(plan))?],
    );
    add(
        "network-policy.yaml",
        each("NetworkPolicy", &network_policies(plan))?,
    );
    let (sas, role, binding) = rbac(plan);
    let mut docs = each("ServiceAccount", &sas)?;
    docs.push(to_yaml("Role", &role)?);
    docs.push(to_yaml("RoleBinding", &binding)?);
    add("rbac.yaml", docs);
    add(
        "external-secrets.yaml",
        each("ExternalSecret", &external_secrets(plan))?,
    );
    let config = tenant_config(plan);
    let config_hash = hash_config(&config);
    add("config-map.yaml", vec![to_yaml("ConfigMap", &config)?]);
    for p in &plan.products {
        add(
            &format!("deployments/{}.yaml", p.name),
            vec![
                to_yaml("Deployment", &deployment(plan, p, &config_hash))?,
                to_yaml("Service", &service(plan, p))?,
            ],
        );
    }
    let migrations: Vec<Job> = plan
        .products
        .iter()
        .filter_map(|p| migration_job(plan, p))
        .collect();
    if !migrations.is_empty() {
        add("jobs.yaml", each("Job", &migrations)?);
    }
    let setup_jobs = super::jobs::jobs(plan);
    if !setup_jobs.is_empty() {
        add("setup-jobs.yaml", each("Job", &setup_jobs)?);
    }
    add(
        "certificate.yaml",
        vec![to_yaml("Certificate", &certificate(plan))?],
    );
    add("ingress.yaml", vec![to_yaml("Ingress", &ingress(plan))?]);
    add(
        "service-monitor.yaml",
        vec![to_yaml("ServiceMonitor", &service_monitor(plan))?],
    );
    add(
        "prometheus-rule.yaml",
        vec![to_yaml("PrometheusRule", &prometheus_rule(plan))?],
    );
    add(
        "grafana-dashboard.yaml",
        vec![to_yaml("ConfigMap", &dashboard(plan, env)?)?],
    );

    let resources: Vec<String> = files.keys().cloned().collect();
    files.insert(
        "kustomization.yaml".to_owned(),
        yaml_file(&[to_yaml("Kustomization", &Kustomization::new(resources))?]),
    );

    let prefix = format!("{TENANTS_DIR}/{}/", plan.id);
    let mut out: Files = files
        .into_iter()
        .map(|(k, v)| (format!("{prefix}{k}"), v))
        .collect();
    out.insert(format!("{prefix}config.json"), config_json(plan));
    Ok(out)
}

fn each<T: Serialize>(what: &str, objs: &[T]) -> Result<Vec<String>, RenderError> {
    objs.iter().map(|o| to_yaml(what, o)).collect()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Kustomization {
    api_version: &'static str,
    kind: &'static str,
    resources: Vec<String>,
}

impl Kustomization {
    fn new(resources: Vec<String>) -> Self {
        Kustomization {
            api_version: "kustomize.config.k8s.io/v1beta1",
            kind: "Kustomization",
            resources,
        }
    }
}

/// Parameters of the tenant for the ApplicationSet's git files generator.
#[derive(Serialize)]
struct ConfigJson<'a> {
    application: &'a str,
    cluster: &'a str,
    domain: &'a str,
    namespace: &'a str,
    path: String,
    region: &'a str,
    shard: &'a str,
    status: &'a str,
    tenant: &'a str,
    tier: &'a str,
}

fn config_json(plan: &TenantPlan<'_>) -> Vec<u8> {
    let prefix = &plan.platform.argocd.path_prefix;
    let path = if prefix.is_empty() {
        format!("{TENANTS_DIR}/{}", plan.id)
    } else {
        format!("{}/{TENANTS_DIR}/{}", prefix.trim_end_matches('/'), plan.id)
    };
    let c = ConfigJson {
        application: &plan.application,
        cluster: plan.cluster,
        domain: &plan.domain,
        namespace: &plan.namespace,
        path,
        region: plan.region,
        shard: &plan.shard,
        status: plan.status.as_str(),
        tenant: plan.id,
        tier: plan.tier_name,
    };
    let mut bytes = serde_json::to_vec_pretty(&c).expect("plain strings serialize");
    bytes.push(b'\n');
    bytes
}

fn namespace(plan: &TenantPlan<'_>) -> Namespace {
    let t = plan.tenant;
    let mut labels = plan.labels.clone();
    // Every pod of a tenant meets the `restricted` Pod Security Standard.
    labels.insert(
        "pod-security.kubernetes.io/enforce".into(),
        "restricted".into(),
    );
    labels.insert(
        "pod-security.kubernetes.io/enforce-version".into(),
        "v1.32".into(),
    );
    let mut annotations = BTreeMap::from([
        (objects::SYNC_WAVE.to_owned(), wave::NAMESPACE.to_string()),
        // Argo CD never deletes a tenant namespace, neither by pruning nor when the
        // Application goes: deletion is `provisio teardown`'s, after grace period and backup.
        (
            objects::SYNC_OPTIONS.to_owned(),
            "Prune=false,Delete=false".to_owned(),
        ),
        ("domain".to_owned(), plan.domain.clone()),
        ("subscription-id".to_owned(), t.subscription.value.clone()),
        ("created-date".to_owned(), plan::timestamp(&t.created)),
        ("billing-email".to_owned(), t.contacts.billing.value.clone()),
        ("tenant-name".to_owned(), t.name.clone()),
    ]);
    if plan.status == TenantStatus::Deprovisioning {
        labels.insert("deprovisioning".into(), "true".into());
        if let Some(c) = &t.cancellation {
            annotations.insert("deprovisioning".into(), "true".into());
            annotations.insert("deprovisioning-date".into(), plan::timestamp(&c.requested));
            annotations.insert("deletion-date".into(), plan::timestamp(&c.deletion.value));
            annotations.insert("backup-required".into(), "true".into());
            if let Some(r) = &c.reason {
                annotations.insert("cancellation-reason".into(), r.clone());
            }
        }
    }
    Namespace {
        metadata: ObjectMeta {
            name: Some(plan.namespace.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn resource_quota(plan: &TenantPlan<'_>) -> ResourceQuota {
    ResourceQuota {
        metadata: meta(plan, "tenant-quota", wave::GUARDRAILS, &[]),
        spec: Some(ResourceQuotaSpec {
            hard: Some(
                plan.tier
                    .quota
                    .iter()
                    .map(|(k, v)| (k.clone(), quantity(&v.value)))
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn limit_range(plan: &TenantPlan<'_>) -> LimitRange {
    let c = &plan.tier.limit_range.container;
    let mut limits = vec![LimitRangeItem {
        type_: "Container".to_owned(),
        max: Some(cpu_memory(&c.max)),
        min: Some(cpu_memory(&c.min)),
        default: Some(cpu_memory(&c.default)),
        default_request: Some(cpu_memory(&c.default_request)),
        ..Default::default()
    }];
    if let Some(pvc) = &plan.tier.limit_range.persistent_volume_claim {
        limits.push(LimitRangeItem {
            type_: "PersistentVolumeClaim".to_owned(),
            max: Some(BTreeMap::from([(
                "storage".to_owned(),
                quantity(&pvc.max.value),
            )])),
            min: Some(BTreeMap::from([(
                "storage".to_owned(),
                quantity(&pvc.min.value),
            )])),
            ..Default::default()
        });
    }
    LimitRange {
        metadata: meta(plan, "tenant-limits", wave::GUARDRAILS, &[]),
        spec: Some(LimitRangeSpec { limits }),
    }
}

fn tcp(port: u16) -> NetworkPolicyPort {
    NetworkPolicyPort {
        protocol: Some("TCP".to_owned()),
        port: Some(IntOrString::Int(i32::from(port))),
        ..Default::default()
    }
}

fn namespace_peer(ns: &str, pods: Option<&BTreeMap<String, String>>) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(match_labels(&[("kubernetes.io/metadata.name", ns)])),
        pod_selector: pods.map(match_map),
        ..Default::default()
    }
}

/// Default deny, then: the ingress controller to the gateway, the namespace to itself,
/// Prometheus to metrics ports; out: DNS, the shared MySQL/RabbitMQ/MinIO, HTTPS.
fn network_policies(plan: &TenantPlan<'_>) -> Vec<NetworkPolicy> {
    let p = plan.platform;
    let shared = &p.shared_services;
    let policy = |name: &str, spec: NetworkPolicySpec| NetworkPolicy {
        metadata: meta(plan, name, wave::GUARDRAILS, &[]),
        spec: Some(spec),
    };
    let all_pods = LabelSelector::default();
    let gateway = plan.gateway();
    let mut metrics_ports: Vec<u16> = plan
        .products
        .iter()
        .filter_map(|pp| pp.product.metrics_port.as_ref().map(|m| m.value))
        .collect();
    metrics_ports.sort_unstable();
    metrics_ports.dedup();

    let mut out = vec![
        policy(
            "default-deny",
            NetworkPolicySpec {
                pod_selector: Some(all_pods.clone()),
                policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
                ..Default::default()
            },
        ),
        policy(
            "allow-ingress-controller",
            NetworkPolicySpec {
                pod_selector: Some(match_labels(&[("app", gateway.name)])),
                policy_types: Some(vec!["Ingress".into()]),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(vec![namespace_peer(&p.ingress.controller_namespace, None)]),
                    ports: Some(vec![tcp(gateway.product.port.value)]),
                }]),
                ..Default::default()
            },
        ),
        policy(
            "allow-same-namespace",
            NetworkPolicySpec {
                pod_selector: Some(all_pods.clone()),
                policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(vec![NetworkPolicyPeer {
                        pod_selector: Some(all_pods.clone()),
                        ..Default::default()
                    }]),
                    ports: None,
                }]),
                egress: Some(vec![NetworkPolicyEgressRule {
                    to: Some(vec![NetworkPolicyPeer {
                        pod_selector: Some(all_pods.clone()),
                        ..Default::default()
                    }]),
                    ports: None,
                }]),
            },
        ),
    ];
    if !metrics_ports.is_empty() {
        out.push(policy(
            "allow-prometheus",
            NetworkPolicySpec {
                pod_selector: Some(all_pods.clone()),
                policy_types: Some(vec!["Ingress".into()]),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(vec![namespace_peer(
                        &p.monitoring.prometheus_namespace,
                        None,
                    )]),
                    ports: Some(metrics_ports.into_iter().map(tcp).collect()),
                }]),
                ..Default::default()
            },
        ));
    }
    let dns_ports = ["UDP", "TCP"]
        .into_iter()
        .map(|proto| NetworkPolicyPort {
            protocol: Some(proto.to_owned()),
            port: Some(IntOrString::Int(53)),
            ..Default::default()
        })
        .collect();
    let mut egress = vec![NetworkPolicyEgressRule {
        to: Some(vec![namespace_peer(&p.dns_namespace, None)]),
        ports: Some(dns_ports),
    }];
    let mut shared_rule = |labels: &BTreeMap<String, String>, port: u16| {
        egress.push(NetworkPolicyEgressRule {
            to: Some(vec![namespace_peer(&shared.namespace, Some(labels))]),
            ports: Some(vec![tcp(port)]),
        })
    };
    if plan.uses_mysql() {
        shared_rule(&shared.mysql.pod_labels, shared.mysql.port);
    }
    if plan.uses_rabbitmq() {
        shared_rule(&shared.rabbitmq.pod_labels, shared.rabbitmq.port);
    }
    if plan.uses_minio() {
        shared_rule(&shared.minio.pod_labels, shared.minio.port);
    }
    egress.push(NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            ip_block: Some(IPBlock {
                cidr: "0.0.0.0/0".to_owned(),
                // Cloud instance metadata stays out of reach.
                except: Some(vec!["169.254.169.254/32".to_owned()]),
            }),
            ..Default::default()
        }]),
        ports: Some(vec![tcp(443)]),
    });
    out.push(policy(
        "allow-egress",
        NetworkPolicySpec {
            pod_selector: Some(all_pods),
            policy_types: Some(vec!["Egress".into()]),
            egress: Some(egress),
            ..Default::default()
        },
    ));
    out
}

fn rbac(plan: &TenantPlan<'_>) -> (Vec<ServiceAccount>, Role, RoleBinding) {
    let sa = |name: &str| ServiceAccount {
        metadata: meta(plan, name, wave::GUARDRAILS, &[]),
        automount_service_account_token: Some(false),
        ..Default::default()
    };
    let role = Role {
        metadata: meta(plan, "provisio-health-reader", wave::GUARDRAILS, &[]),
        rules: Some(vec![
            PolicyRule {
                api_groups: Some(vec!["apps".into()]),
                resources: Some(vec!["deployments".into()]),
                verbs: vec!["get".into(), "list".into(), "watch".into()],
                ..Default::default()
            },
            PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["pods".into()]),
                verbs: vec!["get".into(), "list".into(), "watch".into()],
                ..Default::default()
            },
        ]),
    };
    let binding = RoleBinding {
        metadata: meta(plan, "provisio-health-reader", wave::GUARDRAILS, &[]),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: "provisio-health-reader".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: PROVISIO_SERVICE_ACCOUNT.into(),
            namespace: Some(plan.namespace.clone()),
            ..Default::default()
        }]),
    };
    (
        vec![sa(APP_SERVICE_ACCOUNT), sa(PROVISIO_SERVICE_ACCOUNT)],
        role,
        binding,
    )
}

fn external_secret(
    plan: &TenantPlan<'_>,
    name: &str,
    remote_key: &str,
    keys: &[(&str, &str)],
) -> CustomResource<ExternalSecretSpec> {
    let store = &plan.platform.secret_store;
    CustomResource {
        api_version: EXTERNAL_SECRET_API,
        kind: "ExternalSecret",
        metadata: meta(plan, name, wave::CONFIG, &[]),
        spec: ExternalSecretSpec {
            refresh_interval: store.refresh_interval.clone(),
            secret_store_ref: SecretStoreRef {
                name: store.name.clone(),
                kind: store.kind.value.clone(),
            },
            target: ExternalSecretTarget {
                name: name.to_owned(),
                creation_policy: "Owner",
                deletion_policy: "Retain",
            },
            data: keys
                .iter()
                .map(|(secret_key, property)| ExternalSecretData {
                    secret_key: (*secret_key).to_owned(),
                    remote_ref: RemoteRef {
                        key: remote_key.to_owned(),
                        property: (*property).to_owned(),
                        conversion_strategy: "Default",
                        decoding_strategy: "None",
                    },
                })
                .collect(),
        },
    }
}

/// Only credentials come from the secret store; host names, ports, databases and buckets are
/// not secret and live in the tenant ConfigMap or the Deployment.
fn external_secrets(plan: &TenantPlan<'_>) -> Vec<CustomResource<ExternalSecretSpec>> {
    let mut out: Vec<_> = plan
        .products
        .iter()
        .filter_map(|p| p.database.as_ref())
        .map(|db| {
            external_secret(
                plan,
                &db.secret_name,
                &db.remote_key,
                &[("DB_USERNAME", "username"), ("DB_PASSWORD", "password")],
            )
        })
        .collect();
    if plan.uses_minio() {
        out.push(external_secret(
            plan,
            plan::MINIO_SECRET,
            &plan.minio_remote_key,
            &[
                ("MINIO_ACCESS_KEY", "access_key"),
                ("MINIO_SECRET_KEY", "secret_key"),
            ],
        ));
    }
    if plan.uses_rabbitmq() {
        out.push(external_secret(
            plan,
            plan::RABBITMQ_SECRET,
            &plan.rabbitmq_remote_key,
            &[
                ("RABBITMQ_USER", "username"),
                ("RABBITMQ_PASSWORD", "password"),
            ],
        ));
    }
    out
}

/// The tenant ConfigMap: identity, plan, and the non-secret endpoints of shared services.
fn tenant_config(plan: &TenantPlan<'_>) -> ConfigMap {
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
fn hash_config(cm: &ConfigMap) -> String {
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
fn env_sources(p: &ProductPlan<'_>) -> (Vec<EnvFromSource>, Vec<EnvVar>) {
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

/// Container security context meeting the `restricted` Pod Security Standard.
pub(crate) fn restricted_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Pod security context meeting the `restricted` Pod Security Standard.
pub(crate) fn pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn http_probe(probe: &crate::registry::Probe, port: u16) -> Probe {
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

fn resources(p: &ProductPlan<'_>) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(cpu_memory(&p.product.resources.requests)),
        limits: Some(cpu_memory(&p.product.resources.limits)),
        ..Default::default()
    }
}

fn deployment(plan: &TenantPlan<'_>, p: &ProductPlan<'_>, config_hash: &str) -> Deployment {
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

fn service(plan: &TenantPlan<'_>, p: &ProductPlan<'_>) -> Service {
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
fn migration_job(plan: &TenantPlan<'_>, p: &ProductPlan<'_>) -> Option<Job> {
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

fn certificate(plan: &TenantPlan<'_>) -> CustomResource<CertificateSpec> {
    let c = &plan.platform.certificates;
    CustomResource {
        api_version: CERTIFICATE_API,
        kind: "Certificate",
        metadata: meta(plan, "tenant-tls", wave::EXPOSURE, &[]),
        spec: CertificateSpec {
            secret_name: TLS_SECRET.into(),
            issuer_ref: IssuerRef {
                name: c.issuer.clone(),
                kind: c.issuer_kind.value.clone(),
                group: "cert-manager.io",
            },
            dns_names: plan.hosts.clone(),
        },
    }
}

/// The Ingress. No `cert-manager.io/cluster-issuer` annotation (the seed has one): the
/// Certificate above already manages the TLS secret, and the annotation would make
/// cert-manager create a second Certificate fighting over it.
fn ingress(plan: &TenantPlan<'_>) -> Ingress {
    let gw = plan.gateway();
    let backend = IngressBackend {
        service: Some(IngressServiceBackend {
            name: gw.name.to_owned(),
            port: Some(ServiceBackendPort {
                number: Some(i32::from(gw.product.port.value)),
                ..Default::default()
            }),
        }),
        ..Default::default()
    };
    let ann = plan
        .platform
        .ingress
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()));
    Ingress {
        metadata: annotate(meta(plan, "tenant-ingress", wave::EXPOSURE, &[]), ann),
        spec: Some(IngressSpec {
            ingress_class_name: Some(plan.platform.ingress.class_name.clone()),
            tls: Some(vec![IngressTLS {
                hosts: Some(plan.hosts.clone()),
                secret_name: Some(TLS_SECRET.into()),
            }]),
            rules: Some(
                plan.hosts
                    .iter()
                    .map(|h| IngressRule {
                        host: Some(h.clone()),
                        http: Some(HTTPIngressRuleValue {
                            paths: vec![HTTPIngressPath {
                                path: Some("/".into()),
                                path_type: "Prefix".into(),
                                backend: backend.clone(),
                            }],
                        }),
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn monitoring_meta(plan: &TenantPlan<'_>, name: &str) -> ObjectMeta {
    let extra: Vec<(&str, &str)> = plan
        .platform
        .monitoring
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    meta(plan, name, wave::MONITORING, &extra)
}

fn service_monitor(plan: &TenantPlan<'_>) -> CustomResource<ServiceMonitorSpec> {
    CustomResource {
        api_version: MONITORING_API,
        kind: "ServiceMonitor",
        metadata: monitoring_meta(plan, "tenant-monitoring"),
        spec: ServiceMonitorSpec {
            selector: match_labels(&[("tenant", plan.id), ("provisio/metrics", "true")]),
            namespace_selector: NamespaceSelector {
                match_names: vec![plan.namespace.clone()],
            },
            endpoints: vec![MonitorEndpoint {
                port: "metrics".into(),
                interval: plan.platform.monitoring.interval.clone(),
                path: "/metrics".into(),
            }],
        },
    }
}

/// The seed's three alerts, with two of its mistakes fixed: `kube_resourcequota` has a `type`
/// label (`hard`/`used`), so the memory ratio must select `type="hard"` or it halves; and
/// restarts use `increase` over the window so one restart is not a "loop".
fn prometheus_rule(plan: &TenantPlan<'_>) -> CustomResource<PrometheusRuleSpec> {
    let ns = &plan.namespace;
    let id = plan.id;
    let labels = |severity: &str| {
        objects::labels(&[
            ("severity", severity),
            ("tenant", id),
            ("tier", plan.tier_name),
        ])
    };
    let annotations = |summary: String, description: &str| {
        BTreeMap::from([
            ("summary".to_owned(), summary),
            ("description".to_owned(), description.to_owned()),
        ])
    };
    let rules = vec![
        AlertRule {
            alert: "TenantHighErrorRate".into(),
            expr: format!(
                "sum(rate(http_requests_total{{namespace=\"{ns}\",status=~\"5..\"}}[5m]))\n  /\nsum(rate(http_requests_total{{namespace=\"{ns}\"}}[5m])) > 0.05\n"
            ),
            for_: "5m".into(),
            labels: labels("warning"),
            annotations: annotations(
                format!("High HTTP error rate for tenant {id}"),
                "5xx responses are {{ $value | humanizePercentage }} of all requests.",
            ),
        },
        AlertRule {
            alert: "TenantHighMemoryUsage".into(),
            expr: format!(
                "sum(container_memory_working_set_bytes{{namespace=\"{ns}\",container!=\"\"}})\n  /\nsum(kube_resourcequota{{namespace=\"{ns}\",resource=\"limits.memory\",type=\"hard\"}}) > 0.90\n"
            ),
            for_: "10m".into(),
            labels: labels("warning"),
            annotations: annotations(
                format!("Memory use of tenant {id} is close to its quota"),
                "Memory in use is {{ $value | humanizePercentage }} of the tier's limit.",
            ),
        },
        AlertRule {
            alert: "TenantPodCrashLooping".into(),
            expr: format!(
                "increase(kube_pod_container_status_restarts_total{{namespace=\"{ns}\"}}[15m]) > 2\n"
            ),
            for_: "5m".into(),
            labels: labels("critical"),
            annotations: annotations(
                format!("A pod of tenant {id} keeps restarting"),
                "Pod {{ $labels.pod }} restarted {{ $value }} times in 15 minutes.",
            ),
        },
    ];
    CustomResource {
        api_version: MONITORING_API,
        kind: "PrometheusRule",
        metadata: monitoring_meta(plan, "tenant-alerts"),
        spec: PrometheusRuleSpec {
            groups: vec![RuleGroup {
                name: format!("tenant-{id}"),
                interval: plan.platform.monitoring.interval.clone(),
                rules,
            }],
        },
    }
}

/// The Grafana dashboard as a ConfigMap the Grafana sidecar picks up (label and folder
/// annotation from `platform.monitoring`).
fn dashboard(plan: &TenantPlan<'_>, env: &Environment) -> Result<ConfigMap, RenderError> {
    let m = &plan.platform.monitoring;
    let json = templates::dashboard_json(env, plan)?;
    let metadata = annotate(
        meta(
            plan,
            "tenant-dashboard",
            wave::MONITORING,
            &[(&m.dashboard_label, &m.dashboard_label_value)],
        ),
        [("grafana_folder".to_owned(), m.dashboard_folder.clone())],
    );
    Ok(ConfigMap {
        metadata,
        data: Some(BTreeMap::from([(format!("tenant-{}.json", plan.id), json)])),
        ..Default::default()
    })
}
