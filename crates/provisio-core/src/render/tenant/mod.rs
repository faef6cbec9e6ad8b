//! One tenant's tree (`tenants-out/<id>/`): one file per concern, built from k8s-openapi
//! types and the typed custom resources of [`super::crd`], ordered with Argo CD sync waves.
//! Each concern has its own module; this one assembles the files the tenant's lifecycle
//! phase calls for (docs/lifecycle.md, "What the rendered tree contains"):
//!
//! - before the purge (provisioning, failed, active, grace, due): everything, plus the
//!   phase's lifecycle Jobs; when due, the Deployments at 0 replicas and no migrations;
//! - purging, step `workloads`: the namespace, its guardrails and the purge check only, so
//!   Argo CD prunes the rest; step `teardown`: the same with the teardown Job instead;
//!   step `namespace`: only the namespace check, so Argo CD prunes the namespace;
//! - removed: nothing at all.

mod grafana;
mod ingress;
mod monitoring;
mod namespace;
mod network;
mod rbac;
mod secrets;
mod workloads;

use ingress::{certificate, ingress};
use monitoring::{prometheus_rule, service_monitor};
use namespace::{limit_range, namespace, resource_quota};
use network::network_policies;
use rbac::rbac;
use secrets::external_secrets;
use workloads::{deployment, hash_config, migration_job, service, tenant_config};

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::lifecycle::Phase;
use crate::plan::{ProductPlan, TenantPlan};
use crate::registry::PurgeStep;
use crate::render::templates::Environment;
use crate::render::yaml::{Files, RenderError, TENANTS_DIR, YamlFile, to_yaml, yaml_file};

pub use grafana::{ADMIN_SECRET, uid_digest};
pub use ingress::{CERTIFICATE, TLS_SECRET};
pub use namespace::LIFECYCLE_PHASE;
pub use rbac::{APP_SERVICE_ACCOUNT, LIFECYCLE_READER};
pub use secrets::INTERNAL_API_SECRET;

/// The files of one tenant, keyed by output-relative path (`tenants-out/<id>/…`). Empty for
/// a removed tenant.
pub fn render_tenant(plan: &TenantPlan<'_>, env: &Environment) -> Result<Files, RenderError> {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let add = |files: &mut BTreeMap<String, Vec<u8>>, name: &str, docs: Vec<String>| {
        files.insert(name.to_owned(), yaml_file(&docs));
    };
    let phase = plan.phase;
    if phase.is_removed() {
        return Ok(Files::new());
    }
    // Everything but the last purge step keeps the namespace and its guardrails.
    if phase != Phase::Purging(PurgeStep::Namespace) {
        add(
            &mut files,
            "namespace.yaml",
            vec![to_yaml("Namespace", &namespace(plan))?],
        );
        add(
            &mut files,
            "resource-quota.yaml",
            vec![to_yaml("ResourceQuota", &resource_quota(plan))?],
        );
        add(
            &mut files,
            "limit-range.yaml",
            vec![to_yaml("LimitRange", &limit_range(plan))?],
        );
        add(
            &mut files,
            "network-policy.yaml",
            each("NetworkPolicy", &network_policies(plan))?,
        );
        let (sas, role, binding) = rbac(plan, phase.runs());
        let mut docs = each("ServiceAccount", &sas)?;
        docs.push(to_yaml("Role", &role)?);
        docs.push(to_yaml("RoleBinding", &binding)?);
        add(&mut files, "rbac.yaml", docs);
    }
    if phase.runs() {
        add(
            &mut files,
            "external-secrets.yaml",
            each("ExternalSecret", &external_secrets(plan))?,
        );
        let config = tenant_config(plan);
        let config_hash = hash_config(&config);
        add(
            &mut files,
            "config-map.yaml",
            vec![to_yaml("ConfigMap", &config)?],
        );
        for p in &plan.products {
            files.insert(
                deployment_file_name(p.name),
                deployment_file(plan, p, &config_hash)?,
            );
        }
        if let Some(bytes) = migrations_file(plan)? {
            files.insert(MIGRATIONS_FILE.to_owned(), bytes);
        }
        let (credentials_spec, credentials_job) = super::jobs::credentials_job(plan);
        let mut docs = vec![
            to_yaml("ConfigMap", &credentials_spec)?,
            to_yaml("Job", &credentials_job)?,
        ];
        for s in &super::jobs::setup_jobs(plan) {
            docs.push(to_yaml("ConfigMap", &s.spec)?);
            docs.push(to_yaml("Job", &s.job)?);
        }
        add(&mut files, "setup-jobs.yaml", docs);
        add(
            &mut files,
            "certificate.yaml",
            vec![to_yaml("Certificate", &certificate(plan))?],
        );
        add(
            &mut files,
            "ingress.yaml",
            vec![to_yaml("Ingress", &ingress(plan))?],
        );
        add(
            &mut files,
            "service-monitor.yaml",
            vec![to_yaml("ServiceMonitor", &service_monitor(plan))?],
        );
        add(
            &mut files,
            "prometheus-rule.yaml",
            vec![to_yaml("PrometheusRule", &prometheus_rule(plan))?],
        );
        add(&mut files, "grafana.yaml", grafana::grafana(plan, env)?);
    }
    let mut by_file: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for j in super::lifecycle::lifecycle_jobs(plan) {
        let docs = by_file.entry(j.file).or_default();
        docs.push(to_yaml("ConfigMap", &j.spec)?);
        docs.push(to_yaml("Job", &j.job)?);
    }
    for (file, docs) in by_file {
        add(&mut files, file, docs);
    }

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
    out.insert(
        format!("{prefix}{}", crate::naming::shard_config_file(&plan.shard)),
        config_json(plan),
    );
    Ok(out)
}

/// The migration Jobs' file of a tenant tree.
pub const MIGRATIONS_FILE: &str = "jobs.yaml";

/// The file of a product's Deployment and Service, relative to the tenant's tree.
pub fn deployment_file_name(product: &str) -> String {
    format!("deployments/{product}.yaml")
}

fn deployment_file(
    plan: &TenantPlan<'_>,
    p: &ProductPlan<'_>,
    config_hash: &str,
) -> Result<Vec<u8>, RenderError> {
    let mut file = YamlFile::with_capacity(4096);
    file.push("Deployment", &deployment(plan, p, config_hash))?;
    file.push("Service", &service(plan, p))?;
    Ok(file.into_bytes())
}

/// `jobs.yaml`: every product's migration Job, absent when no product migrates. No migration
/// runs against a quiesced tenant's databases. Each Job is written as soon as it is built and
/// dropped before the next (a release re-renders this file in every tenant).
fn migrations_file(plan: &TenantPlan<'_>) -> Result<Option<Vec<u8>>, RenderError> {
    if plan.phase == Phase::Due {
        return Ok(None);
    }
    let mut file = YamlFile::with_capacity(2048 * plan.products.len());
    for p in &plan.products {
        if let Some(job) = migration_job(plan, p) {
            file.push("Job", &job)?;
        }
    }
    Ok((!file.is_empty()).then(|| file.into_bytes()))
}

/// The files of a tenant's tree that a product's version reaches, re-rendered for the
/// products named in `released`: each one's `deployments/<product>.yaml` and, when one of them
/// migrates, `jobs.yaml` — byte for byte what [`render_tenant`] writes for them.
///
/// Architecture Invariant: a product's `version` (its image tag) reaches no other file of a
/// tenant's tree, and never decides which files the tree has (the set of files depends on
/// the phase, the products and whether they migrate, not on versions). `generate` relies on
/// it to re-render only these files when nothing but versions changed
/// (`tests/it/incremental.rs` proves a run so made equals a full render).
pub fn render_tenant_release(
    plan: &TenantPlan<'_>,
    released: &BTreeSet<String>,
) -> Result<Files, RenderError> {
    let mut files = Files::new();
    if !plan.phase.runs() {
        return Ok(files);
    }
    let prefix = format!("{TENANTS_DIR}/{}/", plan.id);
    let ours: Vec<&ProductPlan<'_>> = plan
        .products
        .iter()
        .filter(|p| released.contains(p.name))
        .collect();
    if ours.is_empty() {
        return Ok(files);
    }
    let config_hash = hash_config(&tenant_config(plan));
    for p in &ours {
        files.insert(
            format!("{prefix}{}", deployment_file_name(p.name)),
            deployment_file(plan, p, &config_hash)?,
        );
    }
    if ours.iter().any(|p| p.product.migration.is_some())
        && let Some(bytes) = migrations_file(plan)?
    {
        files.insert(format!("{prefix}{MIGRATIONS_FILE}"), bytes);
    }
    Ok(files)
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

/// Parameters of the tenant for the ApplicationSet's git files generator, in
/// `config.<shard>.json` (only its own ApplicationSet's pattern matches it). No `path` key: in
/// goTemplate mode the generator replaces it with the file's path facts (`.path.path` is the
/// tree), so a `path` here would be silently dropped.
#[derive(Serialize)]
struct ConfigJson<'a> {
    /// `"true"` only at the last purge step, whose tree holds nothing but a hook: the
    /// ApplicationSet's `templatePatch` lifts Argo CD's automated-sync guard against wiping
    /// every resource ("auto-sync will wipe out all resources") for that step alone.
    #[serde(rename = "allowEmpty")]
    allow_empty: &'a str,
    application: &'a str,
    cluster: &'a str,
    domain: &'a str,
    namespace: &'a str,
    region: &'a str,
    shard: &'a str,
    status: &'a str,
    tenant: &'a str,
    tier: &'a str,
}

fn config_json(plan: &TenantPlan<'_>) -> Vec<u8> {
    let c = ConfigJson {
        application: &plan.application,
        cluster: plan.cluster,
        domain: &plan.domain,
        namespace: &plan.namespace,
        region: plan.region,
        shard: &plan.shard,
        status: plan.status.as_str(),
        tenant: plan.id,
        tier: plan.tier_name,
        allow_empty: if plan.phase == Phase::Purging(PurgeStep::Namespace) {
            "true"
        } else {
            "false"
        },
    };
    let mut bytes = serde_json::to_vec_pretty(&c).expect("plain strings serialize");
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::templates::environment;
    use crate::render::yaml::HEADER;
    use crate::testing::{ACTIVE, DEPROVISIONING, example_registry, gateway_only_registry, plan};

    /// The file names of a tenant tree, relative to it.
    fn names(files: &Files, id: &str) -> Vec<String> {
        let prefix = format!("{TENANTS_DIR}/{id}/");
        files
            .keys()
            .map(|k| {
                k.strip_prefix(&prefix)
                    .expect("under the tenant's dir")
                    .to_owned()
            })
            .collect()
    }

    fn kustomization_resources(files: &Files, id: &str) -> Vec<String> {
        let text =
            String::from_utf8(files[&format!("{TENANTS_DIR}/{id}/kustomization.yaml")].clone())
                .unwrap();
        let k: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(k["kind"], "Kustomization");
        k["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn a_tenant_tree_has_one_file_per_concern_all_listed_by_its_kustomization() {
        let reg = example_registry();
        let plan = plan(&reg, ACTIVE);
        let files = render_tenant(&plan, &environment()).unwrap();
        let names = names(&files, ACTIVE);
        let mut expected: Vec<String> = [
            "certificate.yaml",
            "config-map.yaml",
            "config.tenants-us-east-00.json",
            "external-secrets.yaml",
            "grafana.yaml",
            "ingress.yaml",
            "jobs.yaml",
            "kustomization.yaml",
            "lifecycle.yaml",
            "limit-range.yaml",
            "namespace.yaml",
            "network-policy.yaml",
            "prometheus-rule.yaml",
            "rbac.yaml",
            "resource-quota.yaml",
            "service-monitor.yaml",
            "setup-jobs.yaml",
        ]
        .map(String::from)
        .into_iter()
        .chain(
            plan.products
                .iter()
                .map(|p| format!("deployments/{}.yaml", p.name)),
        )
        .collect();
        expected.sort();
        assert_eq!(names, expected);
        // Every YAML file is listed (the config file is for the ApplicationSet, not Kustomize).
        let listed = kustomization_resources(&files, ACTIVE);
        let yaml: Vec<String> = names
            .into_iter()
            .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
            .collect();
        assert_eq!(listed, yaml);
        for (path, bytes) in &files {
            if path.ends_with(".yaml") {
                assert!(bytes.starts_with(HEADER.as_bytes()), "{path}");
            }
        }
    }

    #[test]
    fn without_migrations_there_is_no_jobs_file_and_the_kustomization_follows() {
        let reg = gateway_only_registry();
        let files = render_tenant(&plan(&reg, ACTIVE), &environment()).unwrap();
        let names = names(&files, ACTIVE);
        assert!(!names.contains(&"jobs.yaml".to_owned()), "{names:?}");
        assert!(
            names.contains(&"setup-jobs.yaml".to_owned()),
            "RabbitMQ still needs its setup"
        );
        assert!(!kustomization_resources(&files, ACTIVE).contains(&"jobs.yaml".to_owned()));
    }

    #[test]
    fn config_json_carries_the_application_sets_parameters() {
        let reg = example_registry();
        let plan = plan(&reg, DEPROVISIONING);
        let files = render_tenant(&plan, &environment()).unwrap();
        let bytes =
            &files[&format!("{TENANTS_DIR}/{DEPROVISIONING}/config.tenants-eu-central-00.json")];
        assert!(bytes.ends_with(b"}\n"));
        let c: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        assert_eq!(
            c,
            serde_json::json!({
                "allowEmpty": "false",
                "application": plan.application,
                "cluster": "https://k8s-eu-central.collectverything.internal",
                "domain": "shop.nordwind-logistik.de",
                "namespace": "e-commerce-nordwind-logistik-7ace77",
                "region": "eu-central",
                "shard": plan.shard,
                "status": "deprovisioning",
                "tenant": DEPROVISIONING,
                "tier": "business",
            })
        );
    }
}
