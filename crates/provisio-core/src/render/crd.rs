//! Typed custom resources: the subset of each upstream CRD that provisio writes, with the API
//! versions that current controllers serve (see `../shared/crds/SOURCES.md`). Field names
//! follow the CRD schemas; `None` fields are omitted. The CRD-schema test validates every
//! rendered object against the upstream schema.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::Serialize;

/// `apiVersion` + `kind` + `metadata` + `spec`, the shape of every custom resource here.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomResource<S> {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: ObjectMeta,
    pub spec: S,
}

// --- external-secrets.io/v1 ------------------------------------------------------------------

pub const EXTERNAL_SECRET_API: &str = "external-secrets.io/v1";

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretSpec {
    pub refresh_interval: String,
    pub secret_store_ref: SecretStoreRef,
    pub target: ExternalSecretTarget,
    pub data: Vec<ExternalSecretData>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretStoreRef {
    pub name: String,
    pub kind: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretTarget {
    pub name: String,
    pub creation_policy: &'static str,
    pub deletion_policy: &'static str,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretData {
    pub secret_key: String,
    pub remote_ref: RemoteRef,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteRef {
    pub key: String,
    pub property: String,
    /// `None`: never decode; values are stored as plain strings.
    pub conversion_strategy: &'static str,
    pub decoding_strategy: &'static str,
}

// --- cert-manager.io/v1 ----------------------------------------------------------------------

pub const CERTIFICATE_API: &str = "cert-manager.io/v1";

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateSpec {
    pub secret_name: String,
    pub issuer_ref: IssuerRef,
    pub dns_names: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    pub name: String,
    pub kind: String,
    pub group: &'static str,
}

// --- monitoring.coreos.com/v1 ----------------------------------------------------------------

pub const MONITORING_API: &str = "monitoring.coreos.com/v1";

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitorSpec {
    pub selector: LabelSelector,
    pub namespace_selector: NamespaceSelector,
    pub endpoints: Vec<MonitorEndpoint>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelector {
    pub match_names: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MonitorEndpoint {
    pub port: String,
    pub interval: String,
    pub path: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusRuleSpec {
    pub groups: Vec<RuleGroup>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleGroup {
    pub name: String,
    pub interval: String,
    pub rules: Vec<AlertRule>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertRule {
    pub alert: String,
    pub expr: String,
    #[serde(rename = "for")]
    pub for_: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

// --- argoproj.io/v1alpha1 --------------------------------------------------------------------

pub const ARGO_API: &str = "argoproj.io/v1alpha1";

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppProjectSpec {
    pub description: String,
    pub source_repos: Vec<String>,
    pub destinations: Vec<Destination>,
    pub cluster_resource_whitelist: Vec<GroupKind>,
    pub namespace_resource_whitelist: Vec<GroupKind>,
    pub orphaned_resources: OrphanedResources,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrphanedResources {
    pub warn: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    pub server: String,
    pub namespace: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct GroupKind {
    pub group: String,
    pub kind: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSetSpec {
    pub go_template: bool,
    pub go_template_options: Vec<String>,
    pub generators: Vec<Generator>,
    pub sync_policy: ApplicationSetSyncPolicy,
    pub template: ApplicationTemplate,
    /// Rendered with each tenant's parameters, then strategic-merged into its Application
    /// (argo-cd `applicationset/controllers/template/patch.go`).
    pub template_patch: String,
}

/// A git *files* generator. No post-selector: the file pattern selects (a selector would
/// drop parameters only after every file was fetched and parsed).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Generator {
    pub git: GitGenerator,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GitGenerator {
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    pub revision: String,
    pub files: Vec<GitFile>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GitFile {
    pub path: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationTemplate {
    pub metadata: TemplateMeta,
    pub spec: ApplicationSpec,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateMeta {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSpec {
    pub project: String,
    pub source: ApplicationSource,
    pub destination: Destination,
    pub sync_policy: ApplicationSyncPolicy,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSource {
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    pub target_revision: String,
    pub path: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSyncPolicy {
    pub automated: Automated,
    pub sync_options: Vec<String>,
    pub retry: Retry,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Automated {
    /// Sync a tree that has become empty (Argo CD refuses to prune to zero resources without
    /// it). Only where emptiness is legitimate: an environment with no product namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_empty: Option<bool>,
    pub prune: bool,
    pub self_heal: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Retry {
    pub limit: i64,
    pub backoff: Backoff,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Backoff {
    pub duration: String,
    pub factor: i64,
    pub max_duration: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSetSyncPolicy {
    pub preserve_resources_on_deletion: bool,
}
