//! The Argo CD objects (`argocd/`): the `tenants` AppProject and one ApplicationSet per shard.
//!
//! Each ApplicationSet uses the git *files* generator over `tenants-out/*/config.json` with a
//! post-selector on the tenant's `shard` parameter, so adding a tenant adds files and never
//! rewrites an ApplicationSet. Shards are `tenants-<region>-<nn>`, `nn = sha256(id) mod
//! shards(region)`: a tenant never moves when others come or go.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::crd::*;
use super::objects::match_labels;
use super::yaml::{ARGOCD_DIR, Files, RenderError, TENANTS_DIR, to_yaml, yaml_file};
use crate::naming;
use crate::registry::Registry;

/// Namespaced kinds a tenant tree may contain (the AppProject allows nothing else).
const NAMESPACED_KINDS: &[(&str, &str)] = &[
    ("", "ConfigMap"),
    ("", "LimitRange"),
    ("", "ResourceQuota"),
    ("", "Service"),
    ("", "ServiceAccount"),
    ("apps", "Deployment"),
    ("batch", "Job"),
    ("cert-manager.io", "Certificate"),
    ("external-secrets.io", "ExternalSecret"),
    ("monitoring.coreos.com", "PrometheusRule"),
    ("monitoring.coreos.com", "ServiceMonitor"),
    ("networking.k8s.io", "Ingress"),
    ("networking.k8s.io", "NetworkPolicy"),
    ("rbac.authorization.k8s.io", "Role"),
    ("rbac.authorization.k8s.io", "RoleBinding"),
];

fn meta(reg: &Registry, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(reg.platform.argocd.namespace.clone()),
        labels: Some(BTreeMap::from([(
            "managed-by".to_owned(),
            "provisio".to_owned(),
        )])),
        ..Default::default()
    }
}

pub fn render_argocd(reg: &Registry) -> Result<Files, RenderError> {
    let mut files = Files::new();
    files.insert(
        format!("{ARGOCD_DIR}/project.yaml"),
        yaml_file(&[to_yaml("AppProject", &project(reg))?]),
    );
    // Every shard of every region exists, even empty, so the set of ApplicationSets depends
    // on platform.yaml only.
    let mut shards: BTreeSet<String> = BTreeSet::new();
    for (region, cfg) in &reg.platform.regions {
        for n in 0..cfg.shards.value {
            shards.insert(naming::shard_name(region, n));
        }
    }
    let mut resources = vec!["project.yaml".to_owned()];
    for shard in &shards {
        let region = shard_region(reg, shard);
        let file = format!("applicationsets/{shard}.yaml");
        files.insert(
            format!("{ARGOCD_DIR}/{file}"),
            yaml_file(&[to_yaml(
                "ApplicationSet",
                &application_set(reg, shard, region),
            )?]),
        );
        resources.push(file);
    }
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Kustomization {
        api_version: &'static str,
        kind: &'static str,
        resources: Vec<String>,
    }
    files.insert(
        format!("{ARGOCD_DIR}/kustomization.yaml"),
        yaml_file(&[to_yaml(
            "Kustomization",
            &Kustomization {
                api_version: "kustomize.config.k8s.io/v1beta1",
                kind: "Kustomization",
                resources,
            },
        )?]),
    );
    Ok(files)
}

fn shard_region<'a>(reg: &'a Registry, shard: &str) -> &'a str {
    reg.platform
        .regions
        .keys()
        .find(|r| {
            shard
                .strip_prefix(&format!("tenants-{r}-"))
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(String::as_str)
        .expect("shards are named after regions")
}

fn project(reg: &Registry) -> CustomResource<AppProjectSpec> {
    let p = &reg.platform;
    let mut destinations = BTreeSet::new();
    for r in p.regions.values() {
        destinations.insert(Destination {
            server: r.cluster.value.clone(),
            namespace: format!("{}*", p.namespace_prefix.value),
        });
        destinations.insert(Destination {
            server: r.cluster.value.clone(),
            namespace: p.shared_services.namespace.clone(),
        });
    }
    CustomResource {
        api_version: ARGO_API,
        kind: "AppProject",
        metadata: meta(reg, &p.argocd.project),
        spec: AppProjectSpec {
            description: "Tenant trees rendered by provisio; nothing else may deploy here.".into(),
            source_repos: vec![p.argocd.repo_url.clone()],
            destinations: destinations.into_iter().collect(),
            cluster_resource_whitelist: vec![GroupKind {
                group: String::new(),
                kind: "Namespace".into(),
            }],
            namespace_resource_whitelist: NAMESPACED_KINDS
                .iter()
                .map(|(g, k)| GroupKind {
                    group: (*g).to_owned(),
                    kind: (*k).to_owned(),
                })
                .collect(),
            orphaned_resources: OrphanedResources { warn: true },
        },
    }
}

fn application_set(
    reg: &Registry,
    shard: &str,
    region: &str,
) -> CustomResource<ApplicationSetSpec> {
    let a = &reg.platform.argocd;
    let prefix = if a.path_prefix.is_empty() {
        String::new()
    } else {
        format!("{}/", a.path_prefix.trim_end_matches('/'))
    };
    let mut m = meta(reg, shard);
    m.labels
        .get_or_insert_with(BTreeMap::new)
        .insert("region".into(), region.to_owned());
    CustomResource {
        api_version: ARGO_API,
        kind: "ApplicationSet",
        metadata: m,
        spec: ApplicationSetSpec {
            go_template: true,
            go_template_options: vec!["missingkey=error".into()],
            generators: vec![Generator {
                git: GitGenerator {
                    repo_url: a.repo_url.clone(),
                    revision: a.target_revision.clone(),
                    files: vec![GitFile {
                        path: format!("{prefix}{TENANTS_DIR}/*/config.json"),
                    }],
                },
                selector: match_labels(&[("shard", shard)]),
            }],
            // Deleting an ApplicationSet (or a tenant leaving it) never deletes a tenant's
            // resources: removal is explicit, after the grace period and the backup.
            sync_policy: ApplicationSetSyncPolicy {
                preserve_resources_on_deletion: true,
            },
            template: ApplicationTemplate {
                metadata: TemplateMeta {
                    name: "{{ .application }}".into(),
                    labels: BTreeMap::from([
                        ("managed-by".into(), "provisio".into()),
                        ("region".into(), "{{ .region }}".into()),
                        ("shard".into(), "{{ .shard }}".into()),
                        ("tenant".into(), "{{ .tenant }}".into()),
                        ("tier".into(), "{{ .tier }}".into()),
                    ]),
                    annotations: BTreeMap::from([(
                        "provisio/domain".into(),
                        "{{ .domain }}".into(),
                    )]),
                },
                spec: ApplicationSpec {
                    project: a.project.clone(),
                    source: ApplicationSource {
                        repo_url: a.repo_url.clone(),
                        target_revision: a.target_revision.clone(),
                        path: "{{ .path }}".into(),
                    },
                    destination: Destination {
                        server: "{{ .cluster }}".into(),
                        namespace: "{{ .namespace }}".into(),
                    },
                    sync_policy: ApplicationSyncPolicy {
                        automated: Automated {
                            prune: true,
                            self_heal: true,
                        },
                        sync_options: vec!["PruneLast=true".into(), "ServerSideApply=true".into()],
                        retry: Retry {
                            limit: 10,
                            backoff: Backoff {
                                duration: "10s".into(),
                                factor: 2,
                                max_duration: "5m".into(),
                            },
                        },
                    },
                },
            },
        },
    }
}
