//! The platform tree (`platform-out/`): what the products' `tools`, `teams/` and
//! `platformTools` describe, as objects existing controllers reconcile — Crossplane managed
//! resources for GitLab ([`gitlab`]), Grafana ([`grafana`]) and Artifactory ([`artifactory`])
//! in `platform-out/tools/`, and plain Kubernetes objects for the team namespaces
//! ([`namespaces`]) in `platform-out/namespaces/<env>/` — and the Argo CD objects that sync them
//! ([`argocd`], written into `argocd/` by `render::argocd`).
//!
//! Deletion is never silent: objects that hold data (GitLab groups, projects and protected
//! branches, Grafana folders and dashboards, Artifactory repositories, namespaces) carry no
//! `Delete` in their `managementPolicies` (namespaces: Argo CD's `Prune=false,Delete=false`)
//! unless their owner's registry entry says `destroy: true`; removing them from the registry
//! releases them. Grants (SAML links, members, folder permissions, JFrog permissions, role
//! bindings) follow the registry, removal included, so that access is really revoked.
//!
//! Pure, like every renderer: the same registry gives the same bytes.

pub mod argocd;
mod artifactory;
pub mod crossplane;
mod gitlab;
mod grafana;
mod namespaces;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

use super::templates::{self, Environment};
use super::yaml::{Files, RenderError, to_yaml, yaml_file};
use crate::registry::{PlatformTools, Product, ProductTools, Registry, Team};

/// Output root of the platform tree.
pub const PLATFORM_DIR: &str = "platform-out";
/// The managed resources, synced by the Application `platform-tools`.
pub const TOOLS_DIR: &str = "platform-out/tools";
/// The team namespaces of each environment, one Application each.
pub const NAMESPACES_DIR: &str = "platform-out/namespaces";

/// Who an object belongs to: what a removal removes, and what the plan groups by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Owner {
    /// Platform-wide: the tools namespace, the GitLab root group, the Artifactory remotes,
    /// the JFrog groups of the Okta groups.
    Platform,
    Team(String),
    Product(String),
}

/// One rendered object of the platform tree, as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// The file it is written to, output-relative.
    pub file: String,
    pub owner: Owner,
    /// The object (apiVersion, kind, metadata, spec…).
    pub value: serde_json::Value,
}

impl Object {
    pub fn api_version(&self) -> &str {
        self.value["apiVersion"].as_str().unwrap_or_default()
    }
    /// The API group (`""` for the core group).
    pub fn group(&self) -> &str {
        self.api_version().rsplit_once('/').map_or("", |(g, _)| g)
    }
    pub fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or_default()
    }
    pub fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or_default()
    }
    pub fn namespace(&self) -> &str {
        self.value["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
    }
    /// `spec.managementPolicies` (empty for objects that are not managed resources).
    pub fn policies(&self) -> Vec<&str> {
        self.value["spec"]["managementPolicies"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default()
    }
}

/// The platform tree: its objects in file order, and its files (`platform-out/…`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlatformOutput {
    pub objects: Vec<Object>,
    pub files: Files,
}

/// What every part of the renderer needs.
pub(crate) struct Ctx<'a> {
    pub reg: &'a Registry,
    pub pt: &'a PlatformTools,
    pub env: Environment<'static>,
}

/// A product with platform tools, and its team (validated: it exists).
pub(crate) struct Tooled<'a> {
    pub name: &'a str,
    pub product: &'a Product,
    pub tools: &'a ProductTools,
    pub team: &'a Team,
}

impl<'a> Ctx<'a> {
    /// The products with `tools`, by name.
    pub fn tooled(&self) -> Vec<Tooled<'a>> {
        let reg = self.reg;
        reg.products
            .iter()
            .filter_map(|(name, p)| {
                let tools = p.tools.as_ref()?;
                let team = p.team.as_ref().and_then(|t| team_named(reg, &t.value))?;
                Some(Tooled {
                    name,
                    product: p,
                    tools,
                    team,
                })
            })
            .collect()
    }

    /// Metadata of a managed resource in the tools namespace.
    pub fn meta(&self, name: &str, owner: &Owner, external_name: Option<String>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(self.pt.namespace.value.clone()),
            labels: Some(labels(owner, self.reg)),
            annotations: external_name
                .map(|e| BTreeMap::from([(crossplane::EXTERNAL_NAME.to_owned(), e)])),
            ..Default::default()
        }
    }
}

/// The team of that name (teams are keyed by file; a valid registry has them equal).
pub(crate) fn team_named<'r>(reg: &'r Registry, name: &str) -> Option<&'r Team> {
    reg.teams.get(name).filter(|t| t.name.value == name)
}

/// `managed-by: provisio`, and `team` / `product` for what a team or a product owns.
pub(crate) fn labels(owner: &Owner, reg: &Registry) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([("managed-by".to_owned(), "provisio".to_owned())]);
    match owner {
        Owner::Platform => {}
        Owner::Team(t) => {
            l.insert("team".into(), t.clone());
        }
        Owner::Product(p) => {
            l.insert("product".into(), p.clone());
            if let Some(t) = reg.products.get(p).and_then(|p| p.team.as_ref()) {
                l.insert("team".into(), t.value.clone());
            }
        }
    }
    l
}

/// The documents of one file, in order.
#[derive(Default)]
pub(crate) struct FileSet {
    files: BTreeMap<String, Vec<(Owner, serde_json::Value)>>,
}

impl FileSet {
    /// Appends an object to `file`.
    pub fn push<T: Serialize>(
        &mut self,
        file: &str,
        owner: &Owner,
        obj: &T,
    ) -> Result<(), RenderError> {
        let value = serde_json::to_value(obj).map_err(|source| RenderError::ToValue {
            what: file.to_owned(),
            source,
        })?;
        self.files
            .entry(file.to_owned())
            .or_default()
            .push((owner.clone(), value));
        Ok(())
    }

    /// The files below `dir` (relative to it), for its kustomization.
    fn below(&self, dir: &str) -> Vec<String> {
        let prefix = format!("{dir}/");
        self.files
            .keys()
            .filter_map(|f| f.strip_prefix(&prefix).map(str::to_owned))
            .collect()
    }
}

/// Renders the platform tree of a registry; empty without `platformTools`.
pub fn render_platform(reg: &Registry) -> Result<PlatformOutput, RenderError> {
    let Some(pt) = &reg.platform.platform_tools else {
        return Ok(PlatformOutput::default());
    };
    let ctx = Ctx {
        reg,
        pt,
        env: templates::environment(),
    };
    let mut set = FileSet::default();
    let tooled = ctx.tooled();
    // Platform-owned.
    namespaces::tools_namespace(&ctx, &mut set)?;
    gitlab::root(&ctx, &mut set)?;
    artifactory::platform(&ctx, &tooled, &mut set)?;
    // Team-owned.
    for team in reg.teams.values() {
        gitlab::team(&ctx, team, &mut set)?;
        grafana::team(&ctx, team, &mut set)?;
    }
    // Product-owned.
    for t in &tooled {
        gitlab::product(&ctx, t, &mut set)?;
        grafana::product(&ctx, t, &mut set)?;
        artifactory::product(&ctx, t, &mut set)?;
        namespaces::product(&ctx, t, &mut set)?;
    }

    let mut out = PlatformOutput::default();
    let mut kustomizations = vec![TOOLS_DIR.to_owned()];
    // Every environment has its tree, empty or not (see `argocd`).
    kustomizations.extend(
        pt.kubernetes
            .environments
            .keys()
            .map(|env| format!("{NAMESPACES_DIR}/{}", env.as_str())),
    );
    for dir in &kustomizations {
        let k = Kustomization {
            api_version: "kustomize.config.k8s.io/v1beta1",
            kind: "Kustomization",
            resources: set.below(dir),
        };
        out.files.insert(
            format!("{dir}/kustomization.yaml"),
            yaml_file(&[to_yaml("Kustomization", &k)?]),
        );
    }
    for (file, docs) in set.files {
        let mut texts = Vec::with_capacity(docs.len());
        for (owner, value) in docs {
            texts.push(to_yaml(&file, &value)?);
            out.objects.push(Object {
                file: file.clone(),
                owner,
                value,
            });
        }
        out.files.insert(file, yaml_file(&texts));
    }
    Ok(out)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Kustomization {
    api_version: &'static str,
    kind: &'static str,
    resources: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{edited_registry, example_registry, replace_in};

    fn objects(reg: &Registry) -> Vec<Object> {
        render_platform(reg).unwrap().objects
    }

    fn find<'a>(objects: &'a [Object], kind: &str, name: &str) -> &'a Object {
        objects
            .iter()
            .find(|o| o.kind() == kind && o.name() == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    }

    #[test]
    fn without_platform_tools_nothing_is_rendered() {
        let reg = edited_registry(|s| {
            let p = s["platform.yaml"].clone();
            let cut = p.find("\n# Platform tools (GitLab").unwrap();
            let end = p.find("\n# The tenant lifecycle").unwrap();
            s.insert(
                "platform.yaml".into(),
                format!("{}{}", &p[..=cut], &p[end + 1..]),
            );
            s.retain(|k, _| !k.starts_with("teams/"));
            for f in ["orders", "baskets", "auth"] {
                let path = format!("products/{f}.yaml");
                let t = s[&path].clone();
                let cut = t.find("\ntools:\n").unwrap();
                s.insert(path, t[..=cut].to_owned());
            }
        });
        assert_eq!(render_platform(&reg).unwrap(), PlatformOutput::default());
        let argocd = crate::render::argocd::render_argocd(&reg).unwrap();
        assert!(!argocd.keys().any(|k| k.contains("platform-")));
    }

    /// Data objects carry no Delete until the owner is armed; then `*`, GitLab's onDestroy
    /// settings, and namespaces lose Prune=false. Grants are `*` either way.
    #[test]
    fn destroy_arms_data_objects_only_when_asked() {
        let before = objects(&example_registry());
        let g = find(&before, "Group", "baskets");
        assert_eq!(
            g.policies(),
            ["Observe", "Create", "Update", "LateInitialize"]
        );
        assert!(
            g.value["spec"]["forProvider"]
                .get("permanentlyRemove")
                .is_none()
        );
        assert_eq!(
            find(&before, "SamlGroupLink", "baskets--okta-sre--maintainer").policies(),
            ["*"]
        );
        let armed = objects(&edited_registry(|s| {
            replace_in(
                s,
                "products/baskets.yaml",
                "tools:\n",
                "tools:\n  destroy: true\n",
            );
        }));
        let g = find(&armed, "Group", "baskets");
        assert_eq!(g.policies(), ["*"]);
        assert_eq!(g.value["spec"]["forProvider"]["permanentlyRemove"], false);
        assert_eq!(
            g.value["spec"]["forProvider"]["removeFinalizerOnPendingDeletion"],
            true
        );
        assert_eq!(find(&armed, "Folder", "baskets").policies(), ["*"]);
        assert_eq!(
            find(&armed, "DockerV2Repository", "baskets-docker-local").policies(),
            ["*"]
        );
        let ns = find(&armed, "Namespace", "baskets-dev");
        assert!(
            ns.value["metadata"].get("annotations").is_none(),
            "{}",
            ns.value
        );
        // Nothing of another owner changed.
        for o in &armed {
            if o.owner != Owner::Product("baskets".into()) {
                assert!(before.contains(o), "{} {} changed", o.kind(), o.name());
            }
        }
    }

    #[test]
    fn grafana_team_sync_only_on_enterprise() {
        let sync = |team_sync: bool| {
            let reg = edited_registry(|s| {
                replace_in(
                    s,
                    "teams/commerce.yaml",
                    "  team: Commerce\n",
                    "  team: Commerce\n  sync: [okta-commerce, okta-sre]\n",
                );
                if team_sync {
                    replace_in(s, "platform.yaml", "teamSync: false", "teamSync: true");
                }
            });
            find(&objects(&reg), "Team", "team--commerce").value["spec"]["forProvider"]
                .get("teamSync")
                .cloned()
        };
        assert_eq!(
            sync(true),
            Some(serde_json::json!([{"groups": ["okta-commerce", "okta-sre"]}]))
        );
        // Without Enterprise the registry is refused (T7); the renderer never reaches it.
        let report = crate::registry::load_sources({
            let mut s = crate::testing::example_sources();
            replace_in(
                &mut s,
                "teams/commerce.yaml",
                "  team: Commerce\n",
                "  team: Commerce\n  sync: [okta-commerce]\n",
            );
            s
        })
        .report;
        assert!(
            report
                .render()
                .contains("Grafana team sync needs Grafana Enterprise")
        );
    }

    #[test]
    fn artifactory_switches_render_nothing_for_artifactory() {
        let off = objects(&edited_registry(|s| {
            replace_in(
                s,
                "platform.yaml",
                "  artifactory:\n    enabled: true",
                "  artifactory:\n    enabled: false",
            );
        }));
        assert!(
            !off.iter().any(|o| o.group().contains("jfrog")),
            "platform switch"
        );
        let auth = objects(&example_registry());
        assert!(
            !auth
                .iter()
                .any(|o| o.owner == Owner::Product("auth".into()) && o.group().contains("jfrog")),
            "auth's switch is off"
        );
    }

    #[test]
    fn long_names_are_bounded_and_stay_labels() {
        let name = object_name_of_link(
            "a-product-name-of-forty-characters-xyzab",
            "Okta.Group-With.A.Long_Name-Of-Sixty-Four-Characters-123456789",
        );
        assert!(crate::naming::is_dns1123_label(&name), "{name}");
        assert_eq!(name.len(), 63);
    }

    fn object_name_of_link(product: &str, okta: &str) -> String {
        crate::naming::platform::object_name(&[
            product,
            &crate::naming::platform::slug(okta),
            "maintainer",
        ])
    }
}
