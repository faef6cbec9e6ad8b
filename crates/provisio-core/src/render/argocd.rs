//! The Argo CD objects (`argocd/`): the `tenants` AppProject and one ApplicationSet per shard,
//! and (from `render::platform::argocd`) the platform tools' AppProject and Applications.
//!
//! A tenant's shard (`tenants-<region>-<nn>`) is recorded in its registry file when it is
//! placed and never changes, so no tenant moves when others come or go or when
//! `maxTenantsPerShard` grows. Each ApplicationSet uses the git *files* generator over
//! `tenants-out/*/config.<its name>.json`: it reads its own tenants' files and nothing else (no
//! post-selector), and adding a tenant adds files, never rewrites an ApplicationSet. A region
//! has shard 00 and every shard a tenant is placed in.

use std::collections::{BTreeMap, BTreeSet};

use super::crd::*;
use super::objects::argocd_meta as meta;
use super::yaml::{ARGOCD_DIR, Files, RenderError, TENANTS_DIR, to_yaml, yaml_file};
use crate::naming;
use crate::registry::Registry;

/// Namespaced kinds a tenant tree contains (the renderers produce nothing else; a test holds
/// them to it).
pub const NAMESPACED_KINDS: &[(&str, &str)] = &[
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
    ("oss.grafana.m.crossplane.io", "Dashboard"),
    ("oss.grafana.m.crossplane.io", "Folder"),
    ("oss.grafana.m.crossplane.io", "FolderPermission"),
    ("oss.grafana.m.crossplane.io", "Team"),
    ("oss.grafana.m.crossplane.io", "User"),
    ("rbac.authorization.k8s.io", "Role"),
    ("rbac.authorization.k8s.io", "RoleBinding"),
];

/// Kinds the controllers create *under* a tenant's objects, permitted by the AppProject so
/// that Argo CD shows them. Argo CD has no visibility-only list: the resource tree drops every
/// child whose kind the project does not permit, with its whole subtree (argo-cd v3.5.1
/// `controller/appcontroller.go` `getResourceTree` → `proj.IsResourcePermitted`;
/// `app_project_types.go` `IsGroupKindNamePermitted`; a visibility list was requested in
/// argo-cd #23987 and PR #25369 was closed unmerged). So these kinds are also *deployable* by
/// the project; no tenant tree contains one (a test checks it) and the project's only source
/// is provisio's manifests repository, where `provisio check` reports hand edits.
///
/// - ReplicaSet → Pod: under every Deployment (and Pods under Jobs);
/// - Endpoints, EndpointSlice: under every Service (Endpoints get an inferred owner);
/// - CertificateRequest → Order → Challenge → solver Pod/Service/Ingress: under the
///   Certificate, where a stuck ACME order shows why.
///
/// `Secret` stays out although ExternalSecrets and the Certificate own one: whitelisting it
/// would let a tree ship a Secret, and nothing secret is ever rendered. An ExternalSecret's and
/// a Certificate's own status say whether their Secret was written.
pub const VISIBLE_KINDS: &[(&str, &str)] = &[
    ("", "Endpoints"),
    ("", "Pod"),
    ("acme.cert-manager.io", "Challenge"),
    ("acme.cert-manager.io", "Order"),
    ("apps", "ReplicaSet"),
    ("cert-manager.io", "CertificateRequest"),
    ("discovery.k8s.io", "EndpointSlice"),
];

pub fn render_argocd(reg: &Registry) -> Result<Files, RenderError> {
    let mut files = Files::new();
    files.insert(
        format!("{ARGOCD_DIR}/project.yaml"),
        yaml_file(&[to_yaml("AppProject", &project(reg))?]),
    );
    // Shard 00 of every region (so a region's first tenant adds files only), and every shard
    // a tenant is placed in.
    let mut shards: BTreeSet<String> = reg
        .platform
        .regions
        .keys()
        .map(|region| naming::shard_name(region, 0))
        .collect();
    for t in reg.tenants.values() {
        shards.insert(naming::shard_name(&t.region.value, t.shard()));
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
    let platform = super::platform::render_platform(reg)?;
    let platform_files = super::platform::argocd::render(reg, &platform)?;
    for file in [
        super::platform::argocd::PROJECT_FILE,
        super::platform::argocd::APPLICATIONS_FILE,
    ] {
        if platform_files.contains_key(&format!("{ARGOCD_DIR}/{file}")) {
            resources.push(file.to_owned());
        }
    }
    files.extend(platform_files);
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
                .chain(VISIBLE_KINDS)
                .map(|(g, k)| GroupKind {
                    group: (*g).to_owned(),
                    kind: (*k).to_owned(),
                })
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            orphaned_resources: OrphanedResources { warn: true },
        },
    }
}

/// The per-tenant patch of every ApplicationSet's template (see [`application_set`]).
pub const TEMPLATE_PATCH: &str =
    "spec:\n  syncPolicy:\n    automated:\n      allowEmpty: {{ .allowEmpty }}\n";

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
                    // `git ls-files` pathspec (the repo-server's default): `*` also matches
                    // `/`, so a deeper `config.<shard>.json` would match too; tenant trees have
                    // none (`render::tenant` writes it at the top only).
                    files: vec![GitFile {
                        path: format!(
                            "{prefix}{TENANTS_DIR}/*/{}",
                            naming::shard_config_file(shard)
                        ),
                    }],
                },
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
                        // goTemplate mode: the git files generator *replaces* the file's
                        // `path` key with a map of path facts (argo-cd v3.5.1
                        // `applicationset/generators/git.go`, `generateParamsFromGitFile`);
                        // `.path.path` is the directory holding the file: the tenant's tree.
                        path: "{{ .path.path }}".into(),
                    },
                    destination: Destination {
                        server: "{{ .cluster }}".into(),
                        namespace: "{{ .namespace }}".into(),
                    },
                    sync_policy: ApplicationSyncPolicy {
                        automated: Automated {
                            allow_empty: None,
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
            // Argo CD's automated sync refuses to prune every resource of an Application
            // ("auto-sync will wipe out all resources") unless `allowEmpty`; that guard
            // stays for every tree but the last purge step's, which holds only its
            // namespace check (`config.<shard>.json` → `allowEmpty`; argo-cd
            // `controller/appcontroller.go` `autoSync`, docs "Automatic Pruning with
            // Allow-Empty"). The patch is never empty.
            template_patch: TEMPLATE_PATCH.to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{edited_registry, example_registry, now, replace_in};
    use serde_json::Value;

    /// The YAML documents of a rendered file, as JSON values.
    fn docs(bytes: &[u8]) -> Vec<Value> {
        std::str::from_utf8(bytes)
            .unwrap()
            .split("\n---\n")
            .map(|d| serde_saphyr::from_str(d).unwrap())
            .collect()
    }

    fn appset(files: &Files, shard: &str) -> Value {
        let mut d = docs(&files[&format!("{ARGOCD_DIR}/applicationsets/{shard}.yaml")]);
        assert_eq!(d.len(), 1);
        d.remove(0)
    }

    #[test]
    fn the_project_admits_the_tenant_namespaces_and_the_shared_one_on_every_cluster() {
        let reg = example_registry();
        let p = project(&reg);
        assert_eq!(p.metadata.name.as_deref(), Some("tenants"));
        assert_eq!(p.metadata.namespace.as_deref(), Some("argocd"));
        assert_eq!(p.spec.source_repos, [reg.platform.argocd.repo_url.as_str()]);
        let mut expected: Vec<(String, String)> = reg
            .platform
            .regions
            .values()
            .flat_map(|r| {
                ["e-commerce-*", "e-commerce-shared"]
                    .map(|ns| (r.cluster.value.clone(), ns.to_owned()))
            })
            .collect();
        expected.sort();
        let got: Vec<(String, String)> = p
            .spec
            .destinations
            .iter()
            .map(|d| (d.server.clone(), d.namespace.clone()))
            .collect();
        assert_eq!(got, expected);
        assert_eq!(got.len(), 2 * reg.platform.regions.len());
        let cluster: Vec<_> = p
            .spec
            .cluster_resource_whitelist
            .iter()
            .map(|g| (g.group.as_str(), g.kind.as_str()))
            .collect();
        assert_eq!(cluster, [("", "Namespace")], "no other cluster-scoped kind");
        assert!(p.spec.orphaned_resources.warn);
    }

    /// The AppProject allows exactly the kinds a tenant tree contains, plus the kinds Argo CD
    /// must be allowed to show under them, which no tree contains.
    #[test]
    fn the_project_whitelist_is_the_kinds_rendered_and_the_kinds_shown() {
        let reg = example_registry();
        let out = crate::render::render_all(&reg, now()).unwrap();
        let mut rendered = BTreeSet::new();
        for files in out.tenants.values() {
            for (path, bytes) in files {
                if !path.ends_with(".yaml") || path.ends_with("/kustomization.yaml") {
                    continue;
                }
                for d in docs(bytes) {
                    let api = d["apiVersion"].as_str().unwrap();
                    let group = api.rsplit_once('/').map_or("", |(g, _)| g);
                    rendered.insert((group.to_owned(), d["kind"].as_str().unwrap().to_owned()));
                }
            }
        }
        let p = project(&reg);
        let allowed: BTreeSet<(String, String)> = p
            .spec
            .cluster_resource_whitelist
            .iter()
            .chain(&p.spec.namespace_resource_whitelist)
            .map(|g| (g.group.clone(), g.kind.clone()))
            .collect();
        let pairs = |kinds: &[(&str, &str)]| -> BTreeSet<(String, String)> {
            kinds
                .iter()
                .map(|(g, k)| ((*g).to_owned(), (*k).to_owned()))
                .collect()
        };
        let visible = pairs(VISIBLE_KINDS);
        assert!(
            rendered.is_disjoint(&visible),
            "a tree renders a shown-only kind"
        );
        assert_eq!(
            rendered.union(&visible).cloned().collect::<BTreeSet<_>>(),
            allowed
        );
        let deployable: BTreeSet<_> = pairs(NAMESPACED_KINDS)
            .into_iter()
            .chain([(String::new(), "Namespace".to_owned())])
            .collect();
        assert_eq!(rendered, deployable);
        assert!(!allowed.contains(&(String::new(), "Secret".to_owned())));
    }

    /// Shard 00 of every region, plus every shard a tenant is placed in; each reads its own
    /// tenants' `config.<shard>.json` and throws nothing away.
    #[test]
    fn one_application_set_per_shard_in_use_each_reading_its_own_files() {
        let reg = edited_registry(|s| {
            replace_in(
                s,
                "tenants/abc-corporation-7f3a9c.yaml",
                "shard: 0\n",
                "shard: 2\n",
            );
        });
        let files = render_argocd(&reg).unwrap();
        let sets: Vec<&str> = files
            .keys()
            .filter_map(|k| k.strip_prefix("argocd/applicationsets/"))
            .collect();
        assert_eq!(
            sets,
            [
                "tenants-apac-00.yaml",
                "tenants-eu-central-00.yaml",
                "tenants-eu-west-00.yaml",
                "tenants-us-east-00.yaml",
                "tenants-us-east-02.yaml",
                "tenants-us-west-00.yaml",
            ]
        );
        let k = &docs(&files["argocd/kustomization.yaml"])[0];
        let resources: Vec<&str> = k["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        // The tenants' project and ApplicationSets, then the platform tools' two files.
        let expected: Vec<String> = std::iter::once("project.yaml".to_owned())
            .chain(sets.iter().map(|s| format!("applicationsets/{s}")))
            .chain([
                "platform-project.yaml".to_owned(),
                "platform-applications.yaml".to_owned(),
            ])
            .collect();
        assert_eq!(resources, expected);
        let set = appset(&files, "tenants-us-east-02");
        assert_eq!(set["metadata"]["labels"]["region"], "us-east");
        let generator = &set["spec"]["generators"][0];
        assert_eq!(
            generator["git"]["files"],
            serde_json::json!([{"path": "tenants-out/*/config.tenants-us-east-02.json"}])
        );
        assert!(generator.get("selector").is_none());
        let out = crate::render::render_all(&reg, now()).unwrap();
        assert!(
            out.tenants["abc-corporation-7f3a9c"]
                .contains_key("tenants-out/abc-corporation-7f3a9c/config.tenants-us-east-02.json")
        );
    }

    #[test]
    fn application_sets_read_config_json_and_never_delete_a_tenant() {
        let reg = example_registry();
        let files = render_argocd(&reg).unwrap();
        let set = appset(&files, "tenants-eu-west-00");
        let spec = &set["spec"];
        assert_eq!(spec["goTemplate"], true);
        assert_eq!(
            spec["goTemplateOptions"],
            serde_json::json!(["missingkey=error"])
        );
        let git = &spec["generators"][0]["git"];
        assert_eq!(git["repoURL"], reg.platform.argocd.repo_url.as_str());
        assert_eq!(git["revision"], "main");
        assert_eq!(
            git["files"],
            serde_json::json!([{"path": "tenants-out/*/config.tenants-eu-west-00.json"}])
        );
        assert_eq!(spec["syncPolicy"]["preserveResourcesOnDeletion"], true);
        let app = &spec["template"]["spec"];
        assert_eq!(app["project"], "tenants");
        assert_eq!(
            app["destination"],
            serde_json::json!({"server": "{{ .cluster }}", "namespace": "{{ .namespace }}"})
        );
        assert_eq!(
            app["syncPolicy"]["automated"],
            serde_json::json!({"prune": true, "selfHeal": true})
        );
    }

    /// `missingkey=error`: every parameter the template uses must be a key of the tenants'
    /// `config.json`, or `path.*`, which the files generator sets itself (and which would
    /// overwrite a `path` key of the file: config.json has none).
    #[test]
    fn the_template_uses_only_keys_of_config_json() {
        let reg = example_registry();
        let files = render_argocd(&reg).unwrap();
        let text = std::str::from_utf8(&files["argocd/applicationsets/tenants-us-east-00.yaml"])
            .unwrap()
            .to_owned();
        let used: BTreeSet<&str> = text
            .split("{{ .")
            .skip(1)
            .map(|rest| rest.split_once(" }}").unwrap().0)
            .collect();
        assert!(
            used.contains("application") && used.contains("cluster"),
            "{used:?}"
        );
        assert!(used.contains("path.path"), "{used:?}");
        let used: BTreeSet<&str> = used
            .into_iter()
            .filter(|k| !k.starts_with("path."))
            .collect();
        let out = crate::render::render_all(&reg, now()).unwrap();
        for (id, tree) in &out.tenants {
            let shard = crate::plan::plan_tenant(&reg, &reg.tenants[id], now()).shard;
            let config: Value = serde_json::from_slice(
                &tree[&format!("{TENANTS_DIR}/{id}/{}", naming::shard_config_file(&shard))],
            )
            .unwrap();
            assert!(
                config.get("path").is_none(),
                "{id}: the generator overwrites a `path` key"
            );
            for key in &used {
                assert!(
                    config.get(key).is_some(),
                    "{id}: config.json has no `{key}`"
                );
            }
        }
    }

    #[test]
    fn the_files_generator_follows_the_path_prefix() {
        let reg = edited_registry(|s| {
            replace_in(
                s,
                "platform.yaml",
                "pathPrefix: \"\"",
                "pathPrefix: gitops/",
            );
        });
        let files = render_argocd(&reg).unwrap();
        let set = appset(&files, "tenants-apac-00");
        assert_eq!(
            set["spec"]["generators"][0]["git"]["files"][0]["path"],
            "gitops/tenants-out/*/config.tenants-apac-00.json"
        );
    }
}
