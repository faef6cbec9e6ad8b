//! One tenant's tree (`tenants-out/<id>/`): one file per concern, built from k8s-openapi
//! types and the typed custom resources of [`super::crd`], ordered with Argo CD sync waves.
//! Each concern has its own module; this one assembles the files.

mod ingress;
mod monitoring;
mod namespace;
mod network;
mod rbac;
mod secrets;
mod workloads;

use ingress::{certificate, ingress};
use monitoring::{dashboard, prometheus_rule, service_monitor};
use namespace::{limit_range, namespace, resource_quota};
use network::network_policies;
use rbac::rbac;
use secrets::external_secrets;
use workloads::{deployment, hash_config, migration_job, service, tenant_config};

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use serde::Serialize;

use crate::plan::TenantPlan;
use crate::render::templates::Environment;
use crate::render::yaml::{Files, RenderError, TENANTS_DIR, to_yaml, yaml_file};

pub use ingress::TLS_SECRET;
pub use rbac::{APP_SERVICE_ACCOUNT, PROVISIO_SERVICE_ACCOUNT};

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
