//! The registry's typed model: what `platform.yaml`, `tiers.yaml`, `products/*.yaml` and
//! `tenants/*.yaml` contain once parsed. Fields that other files refer to (tier, region,
//! product names, e-mails…) keep their source position (`Spanned`) so that the loader can
//! point at them; everything else is plain data. See `docs/registry.md` for the format.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

pub use super::lifecycle::{
    Activation, BackupRecord, Failure, FailureStep, LifecycleSettings, Offer, Purge, PurgeStep,
    Rollback,
};
pub use super::resources::{ContainerLimits, CpuMemory, LimitRangeSpec, Sp, StorageLimits};

/// The whole registry, validated: every cross reference resolves.
#[derive(Debug, Clone)]
pub struct Registry {
    pub platform: Platform,
    /// Tiers by name.
    pub tiers: BTreeMap<String, Tier>,
    /// Products by name; iteration order is the output order.
    pub products: BTreeMap<String, Product>,
    /// Tenants by id.
    pub tenants: BTreeMap<String, Tenant>,
    /// Teams by name (`teams/<name>.yaml`): owners of products' platform tools.
    pub teams: BTreeMap<String, super::tools::Team>,
}

// ---------------------------------------------------------------------------------------------
// platform.yaml
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Platform {
    /// Tenants get `<slug>.<baseDomain>` unless their file names a domain.
    pub base_domain: Sp<String>,
    /// Namespace of a tenant = `namespacePrefix` + tenant id (the seed: `e-commerce-`).
    pub namespace_prefix: Sp<String>,
    /// `environment` label on tenant namespaces and `APP_ENV` in the tenant ConfigMap.
    pub environment: String,
    pub shared_services: SharedServices,
    pub secret_store: SecretStore,
    pub ingress: IngressSettings,
    pub certificates: CertificateSettings,
    pub images: ImageSettings,
    pub argocd: ArgoSettings,
    /// Region name → where its tenants run.
    pub regions: BTreeMap<String, Region>,
    #[serde(default)]
    pub monitoring: MonitoringSettings,
    /// Namespace whose DNS pods tenants may reach (label `name`).
    #[serde(default = "default_dns_namespace")]
    pub dns_namespace: String,
    /// GitLab, Grafana, Artifactory and team namespaces rendered from `teams/` and the
    /// products' `tools` (docs/platform-tools.md); absent: no product may have `tools`.
    #[serde(default)]
    pub platform_tools: Option<super::tools::PlatformTools>,
    /// Reports, activation, the welcome email, the tenants' Grafana access, the archive and
    /// the rollback policy (docs/lifecycle.md).
    pub lifecycle: LifecycleSettings,
}

fn default_dns_namespace() -> String {
    "kube-system".to_owned()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SharedServices {
    /// Namespace of MySQL, MinIO and RabbitMQ (label `name` carries the same value).
    pub namespace: String,
    pub mysql: Endpoint,
    pub minio: MinioEndpoint,
    pub rabbitmq: RabbitEndpoint,
}

/// A service in the shared namespace: its DNS name, port and the pod labels that network
/// policies select.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub pod_labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MinioEndpoint {
    pub host: String,
    pub port: u16,
    pub pod_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub use_ssl: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RabbitEndpoint {
    pub host: String,
    pub port: u16,
    pub management_port: u16,
    pub pod_labels: BTreeMap<String, String>,
}

/// Where credentials live. The output only ever *references* keys of this store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecretStore {
    /// `ClusterSecretStore` (default) or `SecretStore`.
    #[serde(default = "default_store_kind")]
    pub kind: Sp<String>,
    pub name: String,
    /// Remote keys are `<keyPrefix>/<tenant-id>/<purpose>` (the seed: `/e-commerce/tenants`).
    pub key_prefix: String,
    /// How often External Secrets re-reads the store.
    #[serde(default = "default_refresh")]
    pub refresh_interval: String,
}

fn default_store_kind() -> Sp<String> {
    Spanned::new(
        "ClusterSecretStore".to_owned(),
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )
}

fn default_refresh() -> String {
    "1h".to_owned()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IngressSettings {
    pub class_name: String,
    /// Namespace of the ingress controller (label `kubernetes.io/metadata.name`), allowed in
    /// by the network policies.
    pub controller_namespace: String,
    /// Labels of the ingress controller's pods: with them, the network policies admit those
    /// pods only, not every pod of `controllerNamespace` (empty: the whole namespace).
    #[serde(default)]
    pub controller_pod_labels: BTreeMap<String, String>,
    /// Annotations put on every tenant Ingress (the seed's nginx settings).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// `false`: no tenant serves `www.<domain>`, whatever its file says.
    #[serde(default = "yes")]
    pub www_alias: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CertificateSettings {
    pub issuer: String,
    #[serde(default = "default_issuer_kind")]
    pub issuer_kind: Sp<String>,
}

fn default_issuer_kind() -> Sp<String> {
    Spanned::new(
        "ClusterIssuer".to_owned(),
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImageSettings {
    /// Prefix of product images: `<registry>/<product.image>:<version>`.
    pub registry: String,
    /// Image of provisio itself, run by the setup Jobs.
    pub provisio: String,
    #[serde(default)]
    pub pull_policy: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ArgoSettings {
    #[serde(default = "default_argocd_namespace")]
    pub namespace: String,
    /// AppProject holding every tenant Application.
    #[serde(default = "default_project")]
    pub project: String,
    /// The manifests repository (where the output tree is committed).
    pub repo_url: String,
    #[serde(default = "default_revision")]
    pub target_revision: String,
    /// Path of the output inside the manifests repository ("" = its root).
    #[serde(default)]
    pub path_prefix: String,
    /// An ApplicationSet never holds more tenants than this: the intake places a new tenant
    /// in its region's first shard with room, and the loader refuses a fuller shard.
    #[serde(default = "default_max_per_shard")]
    pub max_tenants_per_shard: Sp<u32>,
}

fn default_argocd_namespace() -> String {
    "argocd".to_owned()
}
fn default_project() -> String {
    "tenants".to_owned()
}
fn default_revision() -> String {
    "HEAD".to_owned()
}
fn default_max_per_shard() -> Sp<u32> {
    Spanned::new(
        500,
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )
}

/// A region: where its tenants run. Its ApplicationSets (`tenants-<region>-<nn>`) follow from
/// the shards its tenants are placed in (`Tenant::shard`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Region {
    /// API server URL of the destination cluster, as registered in Argo CD.
    pub cluster: Sp<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MonitoringSettings {
    /// Label the Grafana dashboard sidecar watches for…
    #[serde(default = "default_dashboard_label")]
    pub dashboard_label: String,
    /// …and its value.
    #[serde(default = "default_dashboard_label_value")]
    pub dashboard_label_value: String,
    /// Grafana folder annotation for the sidecar (`grafana_folder`).
    #[serde(default = "default_dashboard_folder")]
    pub dashboard_folder: String,
    /// Extra labels for PrometheusRule/ServiceMonitor so the Prometheus instance selects them.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Namespace of Prometheus (label `kubernetes.io/metadata.name`), allowed to scrape.
    #[serde(default = "default_prometheus_namespace")]
    pub prometheus_namespace: String,
    /// Evaluation interval of the tenant alert group.
    #[serde(default = "default_interval")]
    pub interval: String,
}

impl Default for MonitoringSettings {
    fn default() -> Self {
        Self {
            dashboard_label: default_dashboard_label(),
            dashboard_label_value: default_dashboard_label_value(),
            dashboard_folder: default_dashboard_folder(),
            labels: BTreeMap::new(),
            prometheus_namespace: default_prometheus_namespace(),
            interval: default_interval(),
        }
    }
}

fn default_dashboard_label() -> String {
    "grafana_dashboard".to_owned()
}
fn default_dashboard_label_value() -> String {
    "1".to_owned()
}
fn default_dashboard_folder() -> String {
    "Tenants".to_owned()
}
fn default_prometheus_namespace() -> String {
    "monitoring".to_owned()
}
fn default_interval() -> String {
    "30s".to_owned()
}

// ---------------------------------------------------------------------------------------------
// tiers.yaml
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TiersFile {
    pub tiers: BTreeMap<String, Tier>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Tier {
    /// Number of e-commerce sites the plan includes (`TENANT_SITES`).
    pub sites: u32,
    /// Replicas of every product unless the product or the tenant says otherwise.
    pub replicas: u32,
    /// ResourceQuota `spec.hard`, verbatim keys (`requests.cpu`, `pods`, …).
    pub quota: BTreeMap<String, Sp<String>>,
    pub limit_range: LimitRangeSpec,
    /// What the plan sells, as the welcome email states it (optional; within the quota).
    #[serde(default)]
    pub offer: Option<Offer>,
}

// ---------------------------------------------------------------------------------------------
// products/*.yaml
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Product {
    /// Must equal the file name without `.yaml`.
    pub name: Sp<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Owning team: free text, or with `tools` a team of `teams/` (not rendered into tenant
    /// trees).
    #[serde(default)]
    pub team: Option<Sp<String>>,
    /// Image repository below `platform.images.registry`.
    pub image: String,
    pub version: Sp<String>,
    /// Container port serving HTTP (named `http`).
    pub port: Sp<u16>,
    /// Port serving `/metrics` (named `metrics`); absent = the service is not scraped.
    #[serde(default)]
    pub metrics_port: Option<Sp<u16>>,
    /// Exactly one product receives the tenant's Ingress traffic (the API gateway).
    #[serde(default)]
    pub ingress: bool,
    /// Replicas, overriding the tier's default.
    #[serde(default)]
    pub replicas: Option<u32>,
    pub probes: Probes,
    pub resources: Resources,
    #[serde(default)]
    pub needs: Needs,
    /// Plain, non-secret environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Run before the new version rolls out (Argo CD Sync hook), e.g. `php artisan migrate`.
    #[serde(default)]
    pub migration: Option<Migration>,
    /// The product's platform tools (docs/platform-tools.md); absent: none rendered.
    #[serde(default)]
    pub tools: Option<super::tools::ProductTools>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Probes {
    pub liveness: Probe,
    pub readiness: Probe,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Probe {
    pub path: String,
    #[serde(default)]
    pub initial_delay_seconds: i32,
    #[serde(default = "ten")]
    pub period_seconds: i32,
}

fn ten() -> i32 {
    10
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Resources {
    pub requests: CpuMemory,
    pub limits: CpuMemory,
}

/// What a product needs from the shared services; drives ExternalSecrets, env and setup.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Needs {
    /// A MySQL database of its own (and a user limited to it).
    #[serde(default)]
    pub database: bool,
    /// A queue on the tenant's topic exchange.
    #[serde(default)]
    pub queue: Option<QueueNeed>,
    /// Buckets (by short name) it reads and writes.
    #[serde(default)]
    pub buckets: Vec<BucketNeed>,
    /// Publishes to the tenant's exchange (gets RabbitMQ credentials without a queue).
    #[serde(default)]
    pub messaging: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct QueueNeed {
    /// Routing keys bound from the tenant exchange to this product's queue.
    pub routing_keys: Vec<Sp<String>>,
    #[serde(default)]
    pub message_ttl_ms: Option<u64>,
    #[serde(default)]
    pub max_length: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BucketNeed {
    /// Short name; the bucket is `<tenant-id>-<name>`.
    pub name: Sp<String>,
    /// Prefix readable anonymously (e.g. `public/`); absent = private.
    #[serde(default)]
    pub public_prefix: Option<Sp<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Migration {
    pub command: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// tenants/<id>.yaml
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Tenant {
    pub id: Sp<String>,
    /// Display name, any Unicode.
    pub name: String,
    pub tier: Sp<String>,
    pub region: Sp<String>,
    /// The region's ApplicationSet shard the tenant is deployed by (`tenants-<region>-<nn>`),
    /// recorded when the tenant is placed (the intake picks the first shard with room) and
    /// never changed after: moving it would delete and recreate its Application. Absent: 0.
    #[serde(default)]
    pub shard: Option<Sp<u32>>,
    /// Defaults to `<id>.<baseDomain>` (unique, unlike a slug without the suffix).
    #[serde(default)]
    pub domain: Option<Sp<String>>,
    /// Also serve `www.<domain>` (one Certificate covers both names, so the `www` record
    /// must exist). Default: yes under the platform's base domain and for an apex domain
    /// (`example.com`), no otherwise; see `plan::serves_www`.
    #[serde(default)]
    pub www_alias: Option<bool>,
    pub subscription: Sp<String>,
    pub contacts: Contacts,
    pub created: DateTime<Utc>,
    pub status: Sp<TenantStatus>,
    /// What activation reported (serve writes it; docs/lifecycle.md).
    #[serde(default)]
    pub activation: Option<Activation>,
    /// The current step's last failed attempt.
    #[serde(default)]
    pub failure: Option<Failure>,
    /// Present once the subscription is cancelled (required when `deprovisioning`).
    #[serde(default)]
    pub cancellation: Option<Cancellation>,
    /// The final backup, recorded when the tenant leaves `deprovisioning`.
    #[serde(default)]
    pub backup: Option<BackupRecord>,
    /// A never-activated tenant removed without a backup.
    #[serde(default)]
    pub rollback: Option<Rollback>,
    /// The ordered removal of a `purging` tenant.
    #[serde(default)]
    pub purge: Option<Purge>,
    /// When the namespace was found gone: the tenant is `removed` (a tombstone).
    #[serde(default)]
    pub removed: Option<Sp<DateTime<Utc>>>,
    #[serde(default)]
    pub overrides: Overrides,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Contacts {
    pub admin: Sp<String>,
    pub billing: Sp<String>,
}

/// Where a tenant is in its life (docs/lifecycle.md draws the transitions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    /// Paid, being set up; not yet reported healthy.
    Provisioning,
    /// A sync failed (reported by its SyncFail Job); Argo CD keeps retrying.
    Failed,
    /// Healthy and welcomed.
    Active,
    /// Cancelled: running until its deletion date, then quiesced and backed up.
    Deprovisioning,
    /// Backed up (or rolled back): being removed in order.
    Purging,
    /// Everything is gone; the file stays as a tombstone.
    Removed,
}

impl Tenant {
    /// Its ApplicationSet shard within its region (0 when the file records none).
    pub fn shard(&self) -> u32 {
        self.shard.as_ref().map_or(0, |s| s.value)
    }

    /// A tombstone: everything of the tenant is gone, its file only keeps the records (its id
    /// and subscription stay reserved; its domain and shard place are free again).
    pub fn is_removed(&self) -> bool {
        self.status.value == TenantStatus::Removed
    }

    /// When activation was reported, if it was.
    pub fn activated(&self) -> Option<DateTime<Utc>> {
        self.activation
            .as_ref()
            .and_then(|a| a.activated.as_ref())
            .map(|a| a.value)
    }

    /// When the welcome email was accepted by the SMTP server, if it was.
    pub fn welcome_sent(&self) -> Option<DateTime<Utc>> {
        self.activation
            .as_ref()
            .and_then(|a| a.welcome_sent.as_ref())
            .map(|a| a.value)
    }
}

impl TenantStatus {
    /// Every status, in the order of a tenant's life.
    pub const ALL: [TenantStatus; 6] = [
        TenantStatus::Provisioning,
        TenantStatus::Failed,
        TenantStatus::Active,
        TenantStatus::Deprovisioning,
        TenantStatus::Purging,
        TenantStatus::Removed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Provisioning => "provisioning",
            TenantStatus::Failed => "failed",
            TenantStatus::Active => "active",
            TenantStatus::Deprovisioning => "deprovisioning",
            TenantStatus::Purging => "purging",
            TenantStatus::Removed => "removed",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Cancellation {
    /// When the billing system cancelled.
    pub requested: DateTime<Utc>,
    /// Not before this moment may anything of the tenant be deleted (grace period end).
    pub deletion: Sp<DateTime<Utc>>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Per-tenant deviations from tier and product defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Overrides {
    /// Product name → replicas.
    #[serde(default)]
    pub replicas: BTreeMap<String, Sp<u32>>,
    /// Product name → image version (pinning or canarying one tenant).
    #[serde(default)]
    pub versions: BTreeMap<String, Sp<String>>,
}
