//! The lifecycle part of the registry's model: the records a tenant file carries once its
//! Jobs report (`activation`, `failure`, `backup`, `rollback`, `purge`, `removed`), and
//! `platform.yaml`'s `lifecycle` section (where reports go, what activation checks and sends,
//! the archive, the rollback policy). Which combinations are allowed is
//! [`super::lifecycle_rules`]; what moves a tenant from one state to the next is
//! [`crate::lifecycle`]. See `docs/lifecycle.md`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::resources::Sp;

// ---------------------------------------------------------------------------------------------
// tenants/<id>.yaml
// ---------------------------------------------------------------------------------------------

/// What the activate Job reported (written by `serve`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Activation {
    /// The SMTP server accepted the welcome email (the email is never sent again).
    #[serde(default)]
    pub welcome_sent: Option<Sp<DateTime<Utc>>>,
    /// The websites-service's record id (a string: the API's id, whatever its JSON type).
    #[serde(default)]
    pub website: Option<Sp<String>>,
    /// Every probe passed and the tenant was activated.
    #[serde(default)]
    pub activated: Option<Sp<DateTime<Utc>>>,
}

/// The current step's last failed attempt; removed when the step succeeds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Failure {
    pub step: Sp<FailureStep>,
    /// One line, 1 to 500 characters.
    pub reason: Sp<String>,
    /// Failed attempts of this step (at least 1).
    pub attempts: Sp<u32>,
    pub at: DateTime<Utc>,
}

/// The step a failure belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureStep {
    /// A sync of a `provisioning`/`failed` tenant (reported by its SyncFail Job).
    Sync,
    /// The backup Job of a `deprovisioning` tenant past its deletion date.
    Backup,
    /// The teardown Job of a `purging` tenant.
    Teardown,
}

impl FailureStep {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureStep::Sync => "sync",
            FailureStep::Backup => "backup",
            FailureStep::Teardown => "teardown",
        }
    }
}

/// The final backup (written by `serve` from the backup Job's report).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackupRecord {
    pub completed: Sp<DateTime<Utc>>,
    /// `s3://<archive bucket>/<tenant>/<backup id>/`.
    pub location: Sp<String>,
    /// SHA-256 of the backup's `manifest.json` (64 lower-case hex digits).
    pub manifest_sha256: Sp<String>,
    /// Files listed in the manifest (at least 1).
    pub files: Sp<u64>,
    /// Their total size.
    pub bytes: u64,
}

/// A never-activated tenant removed without a backup (`provisio rollback`, or the automatic
/// policy after N failed syncs).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rollback {
    pub requested: Sp<DateTime<Utc>>,
    pub reason: Sp<String>,
}

/// Where the ordered removal of a `purging` tenant is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Purge {
    pub step: Sp<PurgeStep>,
    pub started: Sp<DateTime<Utc>>,
    /// The teardown Job reported success (present from step `namespace` on).
    #[serde(default)]
    pub teardown_completed: Option<Sp<DateTime<Utc>>>,
}

/// The steps of the ordered removal, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PurgeStep {
    /// Argo CD prunes the workloads, ingress, certificate, secrets, monitoring and Grafana
    /// objects; the purge-check Job verifies they are gone.
    Workloads,
    /// The teardown Job removes the tenant's data and users from the shared services and its
    /// secret-store entries.
    Teardown,
    /// Argo CD prunes the namespace; the namespace-check Job verifies it is gone.
    Namespace,
}

impl PurgeStep {
    pub fn as_str(self) -> &'static str {
        match self {
            PurgeStep::Workloads => "workloads",
            PurgeStep::Teardown => "teardown",
            PurgeStep::Namespace => "namespace",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// platform.yaml: lifecycle
// ---------------------------------------------------------------------------------------------

/// `platform.yaml` → `lifecycle`: what the lifecycle Jobs of every tenant tree are told.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LifecycleSettings {
    pub reports: ReportSettings,
    #[serde(default)]
    pub activation: ActivationSettings,
    /// The websites-service (seed phase 9); absent: activation registers no website.
    #[serde(default)]
    pub websites: Option<WebsitesSettings>,
    pub email: EmailSettings,
    pub grafana: TenantGrafanaSettings,
    pub archive: ArchiveSettings,
    #[serde(default)]
    pub rollback: RollbackSettings,
}

/// Where the Jobs send their reports: `provisio serve` as they reach it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReportSettings {
    /// `https://…`, or `http://` to an in-cluster Service (`*.svc`, `*.svc.cluster.local`) or
    /// a loopback address.
    pub url: Sp<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ActivationSettings {
    /// How long activate retries its probes (`30m`; 1m to 6h).
    #[serde(default = "default_activation_deadline")]
    pub deadline: Sp<String>,
    /// Path the tenant's gateway answers 200 on when healthy.
    #[serde(default = "default_health_path")]
    pub health_path: Sp<String>,
    /// Probe `https://<domain><healthPath>` through this host (e.g. the ingress controller's
    /// Service) instead of the domain's DNS; the TLS name stays the domain.
    #[serde(default)]
    pub health_via: Option<Sp<String>>,
}

impl Default for ActivationSettings {
    fn default() -> Self {
        ActivationSettings {
            deadline: default_activation_deadline(),
            health_path: default_health_path(),
            health_via: None,
        }
    }
}

fn unspanned<T>(v: T) -> Sp<T> {
    serde_saphyr::Spanned::new(
        v,
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )
}

fn default_activation_deadline() -> Sp<String> {
    unspanned("30m".to_owned())
}

fn default_health_path() -> Sp<String> {
    unspanned("/health".to_owned())
}

/// The websites-service: the tenant's own product of that name (ASSUMPTION, to be confirmed
/// with its team: `GET <path>?domain=` lists records, `PATCH <path>/<id>` sets `status`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WebsitesSettings {
    /// A product of `products/` with a `port`.
    pub product: Sp<String>,
    #[serde(default = "default_websites_path")]
    pub path: Sp<String>,
    /// The variable the product reads the internal bearer token from.
    #[serde(default = "default_token_env")]
    pub token_env: Sp<String>,
}

fn default_websites_path() -> Sp<String> {
    unspanned("/api/v1/websites".to_owned())
}

fn default_token_env() -> Sp<String> {
    unspanned("INTERNAL_SERVICE_TOKEN".to_owned())
}

/// The welcome email (seed phase 11.2).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EmailSettings {
    pub smtp: SmtpSettings,
    /// A mailbox: `Name <address>` or `address`.
    pub from: Sp<String>,
    #[serde(default)]
    pub reply_to: Option<Sp<String>>,
    /// The platform's name in the email.
    pub brand: String,
    pub docs_url: Sp<String>,
    pub support_email: Sp<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SmtpSettings {
    pub host: Sp<String>,
    pub port: Sp<u16>,
    /// `tls` (implicit TLS, 465), `starttls` (587, refused without it) or `none` (only to a
    /// loopback or in-cluster relay).
    pub security: Sp<String>,
}

/// The tenant's Grafana access: Crossplane resources of Grafana's provider in the tenant tree.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TenantGrafanaSettings {
    /// The provider's `ClusterProviderConfig` (Grafana's admin credentials stay there).
    pub provider_config: String,
    /// Grafana as the tenant's admin reaches it (in the welcome email).
    pub url: Sp<String>,
}

/// Where the final backups go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ArchiveSettings {
    pub bucket: Sp<String>,
    pub region: String,
    /// S3 endpoint when the archive is not AWS S3 (`https://…`); absent: AWS.
    #[serde(default)]
    pub endpoint: Option<Sp<String>>,
    /// An S3 storage class for the data files (`DEEP_ARCHIVE`, …); absent: the bucket's
    /// default (MinIO: tier it with a transition rule).
    #[serde(default)]
    pub storage_class: Option<Sp<String>>,
    /// The backup Job's deadline (`6h`; 10m to 48h).
    #[serde(default = "default_backup_deadline")]
    pub deadline: Sp<String>,
}

fn default_backup_deadline() -> Sp<String> {
    unspanned("6h".to_owned())
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RollbackSettings {
    /// 0 (default): never automatic. N: `serve` rolls a never-activated tenant back at its
    /// N-th reported failed sync (Argo CD retries a sync up to 10 times, and every failed
    /// attempt reports: 12 or more is recommended).
    #[serde(default)]
    pub after_failed_attempts: u32,
}

/// The S3 storage classes (the `StorageClass` enum of the S3 API).
pub const STORAGE_CLASSES: &[&str] = &[
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "DEEP_ARCHIVE",
    "OUTPOSTS",
    "GLACIER_IR",
    "SNOW",
    "EXPRESS_ONEZONE",
];

/// A duration as the registry writes it: `<n>s`, `<n>m` or `<n>h`. In seconds.
pub fn duration_secs(s: &str) -> Option<u64> {
    let (n, unit) = s.split_at(s.len().checked_sub(1)?);
    if n.is_empty() || n.len() > 6 || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = n.parse().ok()?;
    match unit {
        "s" => Some(n),
        "m" => Some(n * 60),
        "h" => Some(n * 3600),
        _ => None,
    }
}

/// `tiers.yaml` → a tier's `offer`: what the plan sells (the welcome email says it), which
/// the quota must hold (the quota is larger: it also holds migrations and surge pods).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Offer {
    pub title: String,
    pub cpu: Sp<String>,
    pub memory: Sp<String>,
    pub storage: Sp<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration_secs("30m"), Some(1800));
        assert_eq!(duration_secs("6h"), Some(21600));
        assert_eq!(duration_secs("45s"), Some(45));
        for bad in ["", "m", "30", "1d", "-1m", "1.5h", "30 m", "9999999h"] {
            assert_eq!(duration_secs(bad), None, "{bad}");
        }
    }
}
