//! The Argo CD objects that sync the platform tree, written into `argocd/` next to the
//! tenants' (`render::argocd` lists them in its kustomization): the AppProject
//! `platformTools.argocdProject` and plain Applications (no generator, no template):
//! `platform-tools` (the managed resources, on the Crossplane cluster) and
//! `platform-namespaces-<env>` (the team namespaces of each environment, on its cluster).
//!
//! Every declared environment has its Application, with `allowEmpty`, even when no product has
//! a namespace there: an Application that disappeared with its environment's last product
//! would be deleted without cascade (no finalizer) and leave that product's role bindings and
//! quota behind; an empty tree is synced instead, which prunes them (the namespace itself is
//! kept by its `Prune=false`).
//!
//! The project admits exactly what the tree holds: the tools namespace and every product
//! namespace on its cluster, `Namespace` as the only cluster-scoped kind, and the namespaced
//! kinds rendered. The Applications carry no `resources-finalizer.argocd.argoproj.io`, so
//! deleting one deletes nothing; they prune what leaves git last (`PruneLast`), which is when a
//! SAML link of a changed level is replaced.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

use super::{NAMESPACES_DIR, PlatformOutput, TOOLS_DIR};
use crate::registry::Registry;
use crate::render::crd::*;
use crate::render::objects::argocd_meta as meta;
use crate::render::yaml::{Files, RenderError, to_yaml, yaml_file};

/// The files, relative to `argocd/`.
pub const PROJECT_FILE: &str = "platform-project.yaml";
pub const APPLICATIONS_FILE: &str = "platform-applications.yaml";

/// The Application syncing `platform-out/tools`.
pub const TOOLS_APPLICATION: &str = "platform-tools";

/// The Application syncing `platform-out/namespaces/<env>`.
pub fn namespaces_application(env: &str) -> String {
    format!("platform-namespaces-{env}")
}

/// Namespaced kinds every namespaces tree may hold.
const NAMESPACE_KINDS: [(&str, &str); 3] = [
    ("", "LimitRange"),
    ("", "ResourceQuota"),
    ("rbac.authorization.k8s.io", "RoleBinding"),
];

/// `argocd/platform-project.yaml` and `argocd/platform-applications.yaml` (keys relative to
/// the output root); nothing without `platformTools`.
pub fn render(reg: &Registry, platform: &PlatformOutput) -> Result<Files, RenderError> {
    let mut files = Files::new();
    let Some(pt) = &reg.platform.platform_tools else {
        return Ok(files);
    };
    let a = &reg.platform.argocd;
    let envs = &pt.kubernetes.environments;
    let mut destinations = BTreeSet::from([Destination {
        server: pt.cluster.value.clone(),
        namespace: pt.namespace.value.clone(),
    }]);
    let mut kinds: BTreeSet<GroupKind> = NAMESPACE_KINDS
        .iter()
        .map(|(g, k)| GroupKind {
            group: (*g).to_owned(),
            kind: (*k).to_owned(),
        })
        .collect();
    let env_prefix = format!("{NAMESPACES_DIR}/");
    for o in &platform.objects {
        if let Some(rest) = o.file.strip_prefix(&env_prefix) {
            let env = rest.split('/').next().unwrap_or(rest);
            if o.kind() == "Namespace" {
                destinations.insert(Destination {
                    server: envs[env].cluster.value.clone(),
                    namespace: o.name().to_owned(),
                });
            }
        } else if o.kind() != "Namespace" {
            kinds.insert(GroupKind {
                group: o.group().to_owned(),
                kind: o.kind().to_owned(),
            });
        }
    }
    let project = CustomResource {
        api_version: ARGO_API,
        kind: "AppProject",
        metadata: meta(reg, &pt.argocd_project.value),
        spec: AppProjectSpec {
            description: "Platform tools rendered by provisio: Crossplane managed resources (GitLab, Grafana, Artifactory) and team namespaces.".into(),
            source_repos: vec![a.repo_url.clone()],
            destinations: destinations.into_iter().collect(),
            cluster_resource_whitelist: vec![GroupKind {
                group: String::new(),
                kind: "Namespace".into(),
            }],
            namespace_resource_whitelist: kinds.into_iter().collect(),
            orphaned_resources: OrphanedResources { warn: true },
        },
    };
    files.insert(
        format!("{}/{PROJECT_FILE}", crate::render::ARGOCD_DIR),
        yaml_file(&[to_yaml("AppProject", &project)?]),
    );

    let prefix = if a.path_prefix.is_empty() {
        String::new()
    } else {
        format!("{}/", a.path_prefix.trim_end_matches('/'))
    };
    let app = |name: String, path: &str, server: &str, namespace: Option<&str>| Application {
        api_version: ARGO_API,
        kind: "Application",
        metadata: meta(reg, &name),
        spec: PlatformApplicationSpec {
            project: pt.argocd_project.value.clone(),
            source: ApplicationSource {
                repo_url: a.repo_url.clone(),
                target_revision: a.target_revision.clone(),
                path: format!("{prefix}{path}"),
            },
            destination: PlatformDestination {
                server: server.to_owned(),
                namespace: namespace.map(str::to_owned),
            },
            sync_policy: ApplicationSyncPolicy {
                automated: Automated {
                    allow_empty: namespace.is_none().then_some(true),
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
    };
    let mut docs = vec![to_yaml(
        "Application",
        &app(
            TOOLS_APPLICATION.to_owned(),
            TOOLS_DIR,
            &pt.cluster.value,
            Some(&pt.namespace.value),
        ),
    )?];
    for (env, e) in envs {
        // No destination namespace: every object of the tree names its own.
        docs.push(to_yaml(
            "Application",
            &app(
                namespaces_application(env.as_str()),
                &format!("{NAMESPACES_DIR}/{}", env.as_str()),
                &e.cluster.value,
                None,
            ),
        )?);
    }
    files.insert(
        format!("{}/{APPLICATIONS_FILE}", crate::render::ARGOCD_DIR),
        yaml_file(&docs),
    );
    Ok(files)
}

/// An Application (not templated: the platform's are few and fixed).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Application {
    api_version: &'static str,
    kind: &'static str,
    metadata: ObjectMeta,
    spec: PlatformApplicationSpec,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct PlatformApplicationSpec {
    project: String,
    source: ApplicationSource,
    destination: PlatformDestination,
    sync_policy: ApplicationSyncPolicy,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct PlatformDestination {
    server: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
}
