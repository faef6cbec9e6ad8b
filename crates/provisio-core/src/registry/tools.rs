//! The registry's platform-tools model: `teams/<team>.yaml`, the `tools` section of a product
//! and the `platformTools` section of `platform.yaml` (GitLab groups, projects and SAML links,
//! Artifactory repositories, Grafana folders and teams, team namespaces). See
//! `docs/platform-tools.md` for the format.
//!
//! Closed sets (access levels, visibilities, package types, roles…) are parsed as strings and
//! checked by `registry::tools_rules`, so that an error can say what was expected and suggest
//! the closest value; map keys a rule may reject are [`Key`]s, which remember where they were
//! written.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use super::resources::{LimitRangeSpec, Sp};

/// A map key that remembers where it was written. Ordered and compared by its text only, so
/// it can key a `BTreeMap` (output order) while diagnostics point at it.
#[derive(Debug, Clone)]
pub struct Key(pub Sp<String>);

impl Key {
    pub fn as_str(&self) -> &str {
        &self.0.value
    }
    pub fn location(&self) -> Location {
        self.0.referenced
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.0.value == other.0.value
    }
}
impl Eq for Key {}
impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Key {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.value.cmp(&other.0.value)
    }
}
impl std::borrow::Borrow<str> for Key {
    fn borrow(&self) -> &str {
        &self.0.value
    }
}
impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Sp::<String>::deserialize(d).map(Key)
    }
}

fn here<T>(value: T) -> Sp<T> {
    Spanned::new(value, Location::UNKNOWN, Location::UNKNOWN)
}

// ---------------------------------------------------------------------------------------------
// teams/<team>.yaml
// ---------------------------------------------------------------------------------------------

/// A team: owns products (their `team` field names it), has a GitLab group below the root
/// group, Okta groups that get access to every product group of the team, and a Grafana team.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Team {
    /// Must equal the file name without `.yaml`.
    pub name: Sp<String>,
    /// GitLab group name and default Grafana team name; default: `name`.
    #[serde(default)]
    pub display_name: Option<Sp<String>>,
    /// Armed for destruction: see `docs/platform-tools.md`, "Deletion".
    #[serde(default)]
    pub destroy: Option<Sp<bool>>,
    #[serde(default)]
    pub gitlab: TeamGitlab,
    /// Team-wide Okta groups: one SAML link each on the team's GitLab group.
    #[serde(default)]
    pub okta: Vec<TeamOkta>,
    #[serde(default)]
    pub grafana: TeamGrafana,
}

impl Team {
    pub fn display_name(&self) -> &str {
        self.display_name
            .as_ref()
            .map_or(&self.name.value, |d| &d.value)
    }
    pub fn destroy(&self) -> bool {
        self.destroy.as_ref().is_some_and(|d| d.value)
    }
    /// The team's GitLab path segment (default: its name).
    pub fn gitlab_path(&self) -> &str {
        self.gitlab
            .group
            .as_ref()
            .map_or(&self.name.value, |g| &g.value)
    }
    /// The Grafana team's name (default: the display name).
    pub fn grafana_team(&self) -> &str {
        self.grafana
            .team
            .as_ref()
            .map_or(self.display_name(), |t| &t.value)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TeamGitlab {
    /// Path segment below the root group; default: the team's name.
    #[serde(default)]
    pub group: Option<Sp<String>>,
    /// `private` (default), `internal` or `public`.
    #[serde(default)]
    pub visibility: Option<Sp<String>>,
    /// Adopt an existing GitLab group by its numeric id.
    #[serde(default)]
    pub id: Option<Sp<u64>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TeamOkta {
    /// The Okta group (the SAML group name GitLab sees).
    pub group: Sp<String>,
    /// Its GitLab access level on the team's group (inherited by every product group).
    pub gitlab: Sp<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TeamGrafana {
    /// Grafana team name; default: the team's display name.
    #[serde(default)]
    pub team: Option<Sp<String>>,
    /// Okta groups synchronised into the team (Grafana Enterprise or Cloud only).
    #[serde(default)]
    pub sync: Vec<Sp<String>>,
}

// ---------------------------------------------------------------------------------------------
// products/<name>.yaml: `tools`
// ---------------------------------------------------------------------------------------------

/// A product's platform tools: its GitLab group and projects, what each Okta group gets, its
/// Artifactory repositories, its Grafana folder and its namespaces per environment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProductTools {
    /// Armed for destruction: see `docs/platform-tools.md`, "Deletion".
    #[serde(default)]
    pub destroy: Option<Sp<bool>>,
    #[serde(default)]
    pub gitlab: ProductGitlab,
    /// One entry per Okta group: what it gets in GitLab, Kubernetes and Artifactory.
    #[serde(default)]
    pub okta: Vec<OktaGrant>,
    #[serde(default)]
    pub artifactory: ProductArtifactory,
    #[serde(default)]
    pub grafana: ProductGrafana,
    /// Environment → the product's namespace there.
    #[serde(default)]
    pub namespaces: BTreeMap<Key, EnvNamespace>,
}

impl ProductTools {
    pub fn destroy(&self) -> bool {
        self.destroy.as_ref().is_some_and(|d| d.value)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProductGitlab {
    /// Path segment below the team's group; default: the product's name.
    #[serde(default)]
    pub group: Option<Sp<String>>,
    /// Default `private`; never more visible than the team's group.
    #[serde(default)]
    pub visibility: Option<Sp<String>>,
    /// Adopt an existing GitLab group by its numeric id.
    #[serde(default)]
    pub id: Option<Sp<u64>>,
    #[serde(default)]
    pub projects: Vec<GitlabProject>,
    /// Direct members that never sign in through SAML (bots).
    #[serde(default)]
    pub members: Vec<GitlabMember>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GitlabProject {
    /// Path segment (and name) of the project in the product's group.
    pub path: Sp<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Default: the product group's visibility.
    #[serde(default)]
    pub visibility: Option<Sp<String>>,
    /// Default `main`.
    #[serde(default)]
    pub default_branch: Option<Sp<String>>,
    /// Adopt an existing GitLab project by its numeric id.
    #[serde(default)]
    pub id: Option<Sp<u64>>,
    #[serde(default)]
    pub protected_branches: Vec<ProtectedBranchSpec>,
}

impl GitlabProject {
    pub fn default_branch(&self) -> &str {
        self.default_branch.as_ref().map_or("main", |b| &b.value)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProtectedBranchSpec {
    /// A branch name or a wildcard (`release/*`).
    pub branch: Sp<String>,
    /// Who may push: `no-one`, `developer` or `maintainer` (default).
    #[serde(default)]
    pub push: Option<Sp<String>>,
    /// Who may merge: same values.
    #[serde(default)]
    pub merge: Option<Sp<String>>,
    #[serde(default)]
    pub allow_force_push: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GitlabMember {
    /// A GitLab username.
    pub user: Sp<String>,
    /// A GitLab access level.
    pub access: Sp<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OktaGrant {
    pub group: Sp<String>,
    /// SAML link access level on the product's GitLab group.
    #[serde(default)]
    pub gitlab: Option<Sp<String>>,
    /// Environment → `edit` or `view` in the product's namespace there.
    #[serde(default)]
    pub kubernetes: BTreeMap<Key, Sp<String>>,
    /// `read` or `deploy` on the product's local repositories.
    #[serde(default)]
    pub artifactory: Option<Sp<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProductArtifactory {
    /// The team's switch (default on): off renders no repository and no permission.
    #[serde(default)]
    pub enabled: Option<Sp<bool>>,
    /// Package type → one local and one virtual repository.
    #[serde(default)]
    pub packages: BTreeMap<Key, PackageRepos>,
}

impl ProductArtifactory {
    pub fn enabled(&self) -> bool {
        self.enabled.as_ref().is_none_or(|e| e.value)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PackageRepos {
    /// Tags kept per image (docker and helmoci only); absent: no limit.
    #[serde(default)]
    pub max_unique_tags: Option<Sp<u32>>,
    /// Platform remotes the virtual repository aggregates, in resolution order.
    #[serde(default)]
    pub remotes: Vec<Sp<String>>,
    /// Default `<product>-<type>-local`.
    #[serde(default)]
    pub local_key: Option<Sp<String>>,
    /// Default `<product>-<type>`.
    #[serde(default)]
    pub virtual_key: Option<Sp<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProductGrafana {
    /// Folder title; default: the product's name.
    #[serde(default)]
    pub folder: Option<Sp<String>>,
    /// The owning team's permission on the folder: `Edit` (default) or `Admin`.
    #[serde(default)]
    pub team_permission: Option<Sp<String>>,
    /// Role Viewer gets View (default true).
    #[serde(default)]
    pub org_viewers: Option<bool>,
    /// Render the service dashboard (default true).
    #[serde(default)]
    pub dashboard: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EnvNamespace {
    /// Merged over the environment's default quota, key by key.
    #[serde(default)]
    pub quota: BTreeMap<String, Sp<String>>,
}

// ---------------------------------------------------------------------------------------------
// platform.yaml: `platformTools`
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PlatformTools {
    /// Namespace of every managed resource (on the management cluster).
    #[serde(default = "default_tools_namespace")]
    pub namespace: Sp<String>,
    /// The cluster running Crossplane and the providers (API server URL as in Argo CD).
    pub cluster: Sp<String>,
    /// AppProject of the platform Applications.
    #[serde(default = "default_tools_project")]
    pub argocd_project: Sp<String>,
    /// Products (and, separately, teams) one change may remove without `--allow-mass-delete`.
    #[serde(default = "default_max_removals")]
    pub max_product_removals: Sp<u32>,
    pub gitlab: PlatformGitlab,
    pub grafana: PlatformGrafana,
    /// Absent: Artifactory is off.
    #[serde(default)]
    pub artifactory: Option<PlatformArtifactory>,
    pub kubernetes: PlatformKubernetes,
}

fn default_tools_namespace() -> Sp<String> {
    here("platform-tools".to_owned())
}
fn default_tools_project() -> Sp<String> {
    here("platform".to_owned())
}
fn default_max_removals() -> Sp<u32> {
    here(1)
}

impl PlatformTools {
    /// The Artifactory settings when Artifactory is on platform-wide.
    pub fn artifactory_on(&self) -> Option<&PlatformArtifactory> {
        self.artifactory.as_ref().filter(|a| a.enabled)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PlatformGitlab {
    /// `ClusterProviderConfig` of `gitlab.m.crossplane.io`.
    pub provider_config: Sp<String>,
    /// The existing top-level group every team group lives in (observed, never changed).
    pub root_group: Sp<String>,
    /// Its numeric id.
    pub root_group_id: Sp<u64>,
    /// Rendered on GitLab groups and projects whose owner has `destroy: true` only.
    #[serde(default)]
    pub on_destroy: OnDestroy,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OnDestroy {
    /// Delete at once instead of GitLab's delayed deletion (subgroups only).
    #[serde(default)]
    pub permanently_remove: bool,
    /// Let the managed resource go while GitLab holds the group pending deletion.
    #[serde(default = "yes")]
    pub remove_finalizer_on_pending_deletion: bool,
}

impl Default for OnDestroy {
    fn default() -> Self {
        OnDestroy {
            permanently_remove: false,
            remove_finalizer_on_pending_deletion: true,
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PlatformGrafana {
    /// `ClusterProviderConfig` of `grafana.m.crossplane.io`.
    pub provider_config: Sp<String>,
    /// Grafana Enterprise or Cloud: teams' members follow Okta groups (`teamSync`).
    #[serde(default)]
    pub team_sync: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PlatformArtifactory {
    /// The platform-wide switch: off renders nothing for Artifactory.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `ClusterProviderConfig` of `artifactory.jfrog.m.crossplane.io` (repositories).
    pub provider_config: Sp<String>,
    /// `ClusterProviderConfig` of `platform.jfrog.m.crossplane.io` (groups, permissions).
    pub platform_provider_config: Sp<String>,
    /// Key → remote repository, shared by every product.
    #[serde(default)]
    pub remotes: BTreeMap<Key, RemoteRepo>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RemoteRepo {
    pub package_type: Sp<String>,
    /// The upstream (https).
    pub url: Sp<String>,
    /// Composer only: the package index (`composerRegistryUrl`).
    #[serde(default)]
    pub registry_url: Option<Sp<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PlatformKubernetes {
    /// The API server's OIDC groups prefix (`--oidc-groups-prefix`,
    /// `claimMappings.groups.prefix`); may be empty.
    #[serde(default)]
    pub oidc_groups_prefix: String,
    /// Environment → where its namespaces live and their defaults.
    #[serde(default)]
    pub environments: BTreeMap<Key, Environment>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Environment {
    /// API server URL as registered in Argo CD.
    pub cluster: Sp<String>,
    /// Default ResourceQuota `spec.hard` of a product namespace.
    pub quota: BTreeMap<String, Sp<String>>,
    pub limit_range: LimitRangeSpec,
}

// ---------------------------------------------------------------------------------------------
// The closed sets the registry's strings name (checked by `tools_rules`, read by the renderer)
// ---------------------------------------------------------------------------------------------

/// GitLab access levels by name, for SAML links and members (`lib/gitlab/access.rb`). Minimal
/// Access (5) is left out: GitLab's API refuses it for SAML links (gitlab-org/gitlab#525087).
/// `planner` needs GitLab 17.7 or later.
pub const GITLAB_ACCESS_LEVELS: [(&str, u8); 6] = [
    ("guest", 10),
    ("planner", 15),
    ("reporter", 20),
    ("developer", 30),
    ("maintainer", 40),
    ("owner", 50),
];

/// Who may push or merge to a protected branch: the provider sends one role per list.
pub const BRANCH_ACCESS_LEVELS: [(&str, u8); 3] =
    [("no-one", 0), ("developer", 30), ("maintainer", 40)];

/// GitLab visibilities, least visible first.
pub const VISIBILITIES: [&str; 3] = ["private", "internal", "public"];

/// Artifactory package types provisio renders, with their kinds: local, remote, virtual.
pub const PACKAGE_TYPES: [(&str, [&str; 3]); 5] = [
    (
        "composer",
        [
            "ComposerRepository",
            "ComposerRepository",
            "ComposerRepository",
        ],
    ),
    (
        "docker",
        ["DockerV2Repository", "DockerRepository", "DockerRepository"],
    ),
    (
        "generic",
        [
            "GenericRepository",
            "GenericRepository",
            "GenericRepository",
        ],
    ),
    (
        "helmoci",
        [
            "HelmOCIRepository",
            "HelmOCIRepository",
            "HelmOCIRepository",
        ],
    ),
    ("npm", ["NPMRepository", "NPMRepository", "NPMRepository"]),
];

/// Package types whose local repositories keep a tag limit (`maxUniqueTags`).
pub const TAG_LIMITED_PACKAGE_TYPES: [&str; 2] = ["docker", "helmoci"];

/// ClusterRoles an Okta group may be bound to in a product namespace.
pub const KUBERNETES_ROLES: [&str; 2] = ["edit", "view"];

/// What an Okta group may get on a product's Artifactory repositories.
pub const ARTIFACTORY_ACCESS: [&str; 2] = ["read", "deploy"];

/// The owning team's permission on a product's Grafana folder.
pub const TEAM_PERMISSIONS: [&str; 2] = ["Edit", "Admin"];

/// The level of a GitLab access level name.
pub fn gitlab_access_level(name: &str) -> Option<u8> {
    GITLAB_ACCESS_LEVELS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, l)| *l)
}

/// The level of a protected-branch role name.
pub fn branch_access_level(name: &str) -> Option<u8> {
    BRANCH_ACCESS_LEVELS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, l)| *l)
}

/// The rank of a visibility (private 0, internal 1, public 2).
pub fn visibility_rank(name: &str) -> Option<usize> {
    VISIBILITIES.iter().position(|v| *v == name)
}

/// The local, remote and virtual kinds of a package type.
pub fn package_kinds(package_type: &str) -> Option<[&'static str; 3]> {
    PACKAGE_TYPES
        .iter()
        .find(|(t, _)| *t == package_type)
        .map(|(_, k)| *k)
}
