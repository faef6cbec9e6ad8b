//! Typed Crossplane managed resources: the subset of each provider's CRD that provisio writes
//! (provider-gitlab's `groups|projects.gitlab.m.crossplane.io`, Grafana's
//! `oss.grafana.m.crossplane.io`, the JFrog providers' `local|remote|virtual.artifactory.jfrog.m`
//! and `platform.jfrog.m`), at the versions of `../shared/crds/SOURCES.md`. Fields of
//! `forProvider` are declared in alphabetical order, so every object reads the same way;
//! `None` fields are omitted. The CRD-schema test validates every rendered object.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

use crate::render::crd::CustomResource;

pub const GITLAB_GROUPS_API: &str = "groups.gitlab.m.crossplane.io/v1alpha1";
pub const GITLAB_PROJECTS_API: &str = "projects.gitlab.m.crossplane.io/v1alpha1";
pub const GRAFANA_API: &str = "oss.grafana.m.crossplane.io/v1alpha1";
pub const JFROG_PLATFORM_API: &str = "platform.jfrog.m.crossplane.io/v1alpha1";
pub const LOCAL_REPOSITORY_API: &str = "local.artifactory.jfrog.m.crossplane.io/v1alpha1";
pub const REMOTE_REPOSITORY_API: &str = "remote.artifactory.jfrog.m.crossplane.io/v1alpha1";
pub const VIRTUAL_REPOSITORY_API: &str = "virtual.artifactory.jfrog.m.crossplane.io/v1alpha1";

/// The annotation naming the external object a managed resource stands for.
pub const EXTERNAL_NAME: &str = "crossplane.io/external-name";

/// What Crossplane may do to the external object (crossplane-runtime's supported sets only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policies {
    /// `[*]`: create, update, and delete the external object when the resource goes.
    All,
    /// `[Observe, Create, Update, LateInitialize]`: never deleted; removal releases it.
    Keep,
    /// `[Observe, Create, Update]`: never deleted, nothing captured from the external object.
    KeepNoLateInit,
    /// `[Observe, Create, Update, Delete]`: deleted when the resource goes, nothing captured.
    DestroyNoLateInit,
    /// `[Observe]`: read only.
    Observe,
}

impl Policies {
    pub fn list(self) -> Vec<&'static str> {
        match self {
            Policies::All => vec!["*"],
            Policies::Keep => vec!["Observe", "Create", "Update", "LateInitialize"],
            Policies::KeepNoLateInit => vec!["Observe", "Create", "Update"],
            Policies::DestroyNoLateInit => vec!["Observe", "Create", "Update", "Delete"],
            Policies::Observe => vec!["Observe"],
        }
    }
}

/// `spec` of every managed resource.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedSpec<P> {
    pub for_provider: P,
    pub management_policies: Vec<&'static str>,
    pub provider_config_ref: ProviderConfigRef,
}

/// Credentials are the provider config's: a `ClusterProviderConfig` that points at a secret.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderConfigRef {
    pub kind: &'static str,
    pub name: String,
}

/// A managed resource.
pub type Managed<P> = CustomResource<ManagedSpec<P>>;

pub fn managed<P>(
    api_version: &'static str,
    kind: &'static str,
    metadata: ObjectMeta,
    for_provider: P,
    policies: Policies,
    provider_config: &str,
) -> Managed<P> {
    CustomResource {
        api_version,
        kind,
        metadata,
        spec: ManagedSpec {
            for_provider,
            management_policies: policies.list(),
            provider_config_ref: ProviderConfigRef {
                kind: "ClusterProviderConfig",
                name: provider_config.to_owned(),
            },
        },
    }
}

/// A reference to another managed resource in the same namespace, by name.
#[derive(Debug, Clone, Serialize)]
pub struct Ref {
    pub name: String,
}

pub fn to(name: &str) -> Ref {
    Ref {
        name: name.to_owned(),
    }
}

// --- provider-gitlab -------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupParams {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Always set: the provider would use the object's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id_ref: Option<Ref>,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permanently_remove: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remove_finalizer_on_pending_deletion: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visibility: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectParams {
    pub default_branch: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `defaultBranch` needs it; immutable, so set at creation.
    pub initialize_with_readme: bool,
    pub name: String,
    pub namespace_id_ref: Ref,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permanently_remove: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remove_finalizer_on_pending_deletion: Option<bool>,
    pub visibility: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessLevel {
    pub access_level: u8,
}

/// Never `unprotectAccessLevels`: GitLab Free returns none, and the provider would unprotect
/// and re-protect the branch on every poll.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProtectedBranchParams {
    pub allow_force_push: bool,
    pub branch_name: String,
    pub merge_access_levels: Vec<AccessLevel>,
    pub project_id_ref: Ref,
    pub push_access_levels: Vec<AccessLevel>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SamlGroupLinkParams {
    pub access_level: u8,
    pub group_id_ref: Ref,
    /// The SAML group name (the Okta group).
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberParams {
    pub access_level: u8,
    pub group_id_ref: Ref,
    pub user_name: String,
}

// --- Grafana ---------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FolderParams {
    pub prevent_destroy_if_not_empty: bool,
    pub title: String,
    pub uid: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FolderPermissionParams {
    pub folder_ref: Ref,
    pub permissions: Vec<FolderPermissionItem>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FolderPermissionItem {
    pub permission: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team_ref: Option<Ref>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DashboardParams {
    pub config_json: String,
    pub folder_ref: Ref,
    pub overwrite: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TeamParams {
    /// Users of the same namespace, by object name (the provider resolves each to its email).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_refs: Option<Vec<Ref>>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team_sync: Option<Vec<TeamSync>>,
}

/// A Grafana user; its password comes from a Secret of the user's namespace (the namespaced
/// API's secret reference has `name` and `key` only).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserParams {
    pub email: String,
    pub is_admin: bool,
    pub login: String,
    pub name: String,
    pub password_secret_ref: SecretKeyRef,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    pub key: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TeamSync {
    pub groups: Vec<String>,
}

// --- JFrog -----------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteRepositoryParams {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub composer_registry_url: Option<String>,
    pub description: String,
    pub url: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalRepositoryParams {
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_unique_tags: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualRepositoryParams {
    pub default_deployment_repo: String,
    pub description: String,
    /// Keys in resolution order.
    pub repositories: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JfrogGroupParams {
    pub description: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PermissionParams {
    pub artifact: PermissionArtifact,
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PermissionArtifact {
    pub actions: PermissionActions,
    pub targets: Vec<PermissionTarget>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PermissionActions {
    pub groups: Vec<PermissionGroup>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PermissionGroup {
    pub name: String,
    pub permissions: Vec<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PermissionTarget {
    pub name: String,
}
