//! The lifecycle Jobs' specs: what each Job of a tenant's tree is told, derived from its
//! [`TenantPlan`] (pure) and mounted as `spec.json` from a ConfigMap of the Job's name. Like
//! [`super::setup::SetupSpec`], they are the contract between the renderer (which writes them)
//! and the commands the Jobs run (which read them): names, endpoints, secret-store keys,
//! never a secret value. Each `validate()` re-checks what reaches a server or a URL with the
//! consumers' rules.
//!
//! | Job | command | spec |
//! |---|---|---|
//! | `setup-credentials-<id>` (PreSync) | `provisio setup credentials` | [`CredentialsSpec`] |
//! | `activate-<id>` (PostSync) | `provisio activate` | [`ActivationSpec`] |
//! | `sync-failed-<id>` (SyncFail) | `provisio report sync-failed` | [`SyncFailedSpec`] |
//! | `website-status-<id>` (PostSync) | `provisio website-status` | [`WebsiteStatusSpec`] |
//! | `backup-<id>` (ordinary Job) | `provisio backup` | [`BackupSpec`] |
//! | `purge-check-<id>`, `namespace-check-<id>` (PostSync) | `provisio purge-check` | [`PurgeCheckSpec`] |
//! | `teardown-<id>` (ordinary Job) | `provisio teardown tenant` | [`super::setup::SetupSpec`] with its [`super::setup::TeardownPart`] |

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::TenantPlan;
pub use super::spec::{
    Archive, LIFECYCLE_ROUTE, LIFECYCLE_SPEC_VERSION, ReportTarget, pretty, report_url,
};
use super::spec::{
    SpecError, check_host, check_key, check_label, check_tenant, check_url, check_version,
    parse_spec,
};
use crate::lifecycle::Phase;
use crate::registry::lifecycle::duration_secs;
use crate::registry::lifecycle_rules::mailbox_address;
use crate::registry::{PurgeStep, TenantStatus};
use crate::{consumers, naming};

/// Key of a test object activate writes and removes in each bucket.
pub const S3_PROBE_KEY: &str = ".provisio/activation-probe";

// ---------------------------------------------------------------------------------------------
// setup credentials (PreSync)
// ---------------------------------------------------------------------------------------------

/// `provisio setup credentials`: creates once, in the secret store, the admin's initial
/// password, the websites-service token and the tenant's report key (derived from
/// `PROVISIO_REPORT_SECRET`, the Secret `provisio-report-master`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CredentialsSpec {
    pub version: u32,
    pub tenant: String,
    pub credentials: Credentials,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Credentials {
    /// `{"tenant", "password"}`: the tenant admin's initial password (Grafana; the email).
    pub admin: StoreKey,
    /// `{"tenant", "token"}`: the bearer token of the websites-service (absent without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_api: Option<StoreKey>,
    /// `{"tenant", "key"}`: the report key, derived from the master secret.
    pub report: StoreKey,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StoreKey {
    pub secret_key: String,
}

impl CredentialsSpec {
    pub fn from_plan(plan: &TenantPlan<'_>) -> Self {
        CredentialsSpec {
            version: LIFECYCLE_SPEC_VERSION,
            tenant: plan.id.to_owned(),
            credentials: Credentials {
                admin: StoreKey {
                    secret_key: plan.admin_remote_key.clone(),
                },
                internal_api: plan.websites().map(|_| StoreKey {
                    secret_key: plan.internal_api_remote_key.clone(),
                }),
                report: StoreKey {
                    secret_key: plan.report_remote_key.clone(),
                },
            },
        }
    }

    pub fn parse(json: &str) -> Result<Self, SpecError> {
        let s: Self = parse_spec("credentials spec", json)?;
        s.validate()?;
        Ok(s)
    }

    pub fn validate(&self) -> Result<(), SpecError> {
        check_version("credentials spec", self.version)?;
        check_tenant(&self.tenant)?;
        let c = &self.credentials;
        check_key(&c.admin.secret_key)?;
        check_key(&c.report.secret_key)?;
        if let Some(i) = &c.internal_api {
            check_key(&i.secret_key)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// activate (PostSync of provisioning / failed)
// ---------------------------------------------------------------------------------------------

/// `provisio activate`: probes, the website record, the welcome email, then `activated`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ActivationSpec {
    pub version: u32,
    pub tenant: String,
    /// How long the probes are retried (`lifecycle.activation.deadline`).
    pub deadline_seconds: u64,
    pub report: ReportTarget,
    pub probes: Probes,
    /// The websites-service record (absent without `lifecycle.websites`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website: Option<WebsiteRecord>,
    pub grafana: GrafanaObjects,
    pub welcome: Welcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Probes {
    pub deployments: DeploymentsProbe,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mysql: Option<MysqlProbe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Probe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rabbitmq: Option<RabbitProbe>,
    pub health: HealthProbe,
}

/// Every Deployment available at its generation, no pod of an old ReplicaSet left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeploymentsProbe {
    pub namespace: String,
    pub names: Vec<String>,
}

impl DeploymentsProbe {
    /// The Deployment of each of the tenant's products, in its namespace.
    fn of(plan: &TenantPlan<'_>) -> Self {
        DeploymentsProbe {
            namespace: plan.namespace.clone(),
            names: plan.products.iter().map(|pp| pp.name.to_owned()).collect(),
        }
    }
}

/// Each database reachable with the product's own credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MysqlProbe {
    pub host: String,
    pub port: u16,
    pub databases: Vec<ProbedDatabase>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProbedDatabase {
    pub product: String,
    pub database: String,
    /// `{username, password}` of the product's user.
    pub secret_key: String,
    /// The product has a migration: a table must exist.
    pub migrated: bool,
}

/// Each bucket present and writable by the tenant's user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct S3Probe {
    pub host: String,
    pub port: u16,
    pub use_ssl: bool,
    /// `{access_key, secret_key}` of the tenant's user.
    pub secret_key: String,
    pub buckets: Vec<String>,
    pub probe_key: String,
}

/// The vhost reachable by the tenant's user (AMQP), its exchange declared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RabbitProbe {
    pub host: String,
    /// The AMQP port.
    pub port: u16,
    pub vhost: String,
    pub exchange: String,
    /// `{username, password}` of the tenant's user.
    pub secret_key: String,
}

/// `https://<domain><healthPath>` answers 200.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HealthProbe {
    pub url: String,
    /// Connect to this host instead of the domain's address (TLS name stays the domain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

/// The websites-service record (seed phase 9): looked up by domain, created once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WebsiteRecord {
    /// `http://<product>.<namespace>.svc.cluster.local:<port><path>`.
    pub url: String,
    /// `{tenant, token}`: the bearer token.
    pub token_secret: String,
    /// The seed's body.
    pub record: WebsiteBody,
}

/// The seed's `POST /api/v1/websites` body (snake_case, as the seed writes it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebsiteBody {
    pub name: String,
    pub domain: String,
    pub tenant_id: String,
    pub subscription_id: String,
    pub tier: String,
    pub status: String,
}

/// The tenant's Grafana objects activate waits for (`Ready` and `Synced`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GrafanaObjects {
    pub namespace: String,
    /// API group/version of the objects (`oss.grafana.m.crossplane.io/v1alpha1`).
    pub api_version: String,
    pub objects: Vec<NamedObject>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NamedObject {
    pub kind: String,
    pub name: String,
}

/// The welcome email (seed phase 11.2): sent once, over SMTP, from the compiled-in template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Welcome {
    pub smtp: Smtp,
    pub from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    pub to: String,
    /// `<welcome.<tenant>@<from's domain>>`: fixed, so a duplicate is recognisable.
    pub message_id: String,
    /// `{tenant, password}`: the admin's initial password.
    pub admin_secret: String,
    pub context: WelcomeContext,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    /// `tls`, `starttls` or `none`.
    pub security: String,
}

/// Everything the welcome template says, but the password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WelcomeContext {
    pub tenant: TenantName,
    pub store_url: String,
    pub admin_url: String,
    pub admin_username: String,
    pub grafana: GrafanaLogin,
    pub tier: TierOffer,
    pub docs_url: String,
    pub support_email: String,
    pub brand: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TenantName {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GrafanaLogin {
    pub url: String,
    pub login: String,
}

/// The tier as sold: its `offer` (absent from `tiers.yaml`: no resources are promised).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TierOffer {
    pub name: String,
    pub title: String,
    pub sites: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
}

/// API group/version of Grafana's Crossplane provider (namespaced), as
/// `render::platform::crossplane::GRAFANA_API` (a test keeps them equal).
pub const GRAFANA_API: &str = "oss.grafana.m.crossplane.io/v1alpha1";

/// The Grafana objects of a tenant tree (`render::tenant::grafana`), in creation order.
pub const GRAFANA_OBJECTS: [(&str, &str); 5] = [
    ("Folder", "tenant"),
    ("Dashboard", "tenant"),
    ("User", "tenant-admin"),
    ("Team", "tenant"),
    ("FolderPermission", "tenant"),
];

/// The Grafana login of a tenant's admin.
pub fn grafana_login(tenant: &str) -> String {
    format!("{tenant}-admin")
}

impl ActivationSpec {
    pub fn from_plan(plan: &TenantPlan<'_>) -> Self {
        let p = plan.platform;
        let l = &p.lifecycle;
        let shared = &p.shared_services;
        let t = plan.tenant;
        let databases: Vec<ProbedDatabase> = plan
            .products
            .iter()
            .filter_map(|pp| {
                pp.database.as_ref().map(|d| ProbedDatabase {
                    product: pp.name.to_owned(),
                    database: d.database.clone(),
                    secret_key: d.remote_key.clone(),
                    migrated: pp.product.migration.is_some(),
                })
            })
            .collect();
        let from_domain = mailbox_address(&l.email.from.value)
            .and_then(|a| a.rsplit_once('@'))
            .map_or(p.base_domain.value.as_str(), |(_, d)| d);
        let tier_offer = plan.tier.offer.as_ref();
        ActivationSpec {
            version: LIFECYCLE_SPEC_VERSION,
            tenant: plan.id.to_owned(),
            deadline_seconds: duration_secs(&l.activation.deadline.value).unwrap_or(1800),
            report: ReportTarget::of(plan),
            probes: Probes {
                deployments: DeploymentsProbe::of(plan),
                mysql: (!databases.is_empty()).then(|| MysqlProbe {
                    host: shared.mysql.host.clone(),
                    port: shared.mysql.port,
                    databases,
                }),
                s3: plan.uses_minio().then(|| S3Probe {
                    host: shared.minio.host.clone(),
                    port: shared.minio.port,
                    use_ssl: shared.minio.use_ssl,
                    secret_key: plan.minio_remote_key.clone(),
                    buckets: plan.buckets.iter().map(|b| b.name.clone()).collect(),
                    probe_key: S3_PROBE_KEY.to_owned(),
                }),
                rabbitmq: plan.uses_rabbitmq().then(|| RabbitProbe {
                    host: shared.rabbitmq.host.clone(),
                    port: shared.rabbitmq.port,
                    vhost: plan.rabbitmq.vhost.clone(),
                    exchange: plan.rabbitmq.exchange.clone(),
                    secret_key: plan.rabbitmq_remote_key.clone(),
                }),
                health: HealthProbe {
                    url: format!("https://{}{}", plan.domain, l.activation.health_path.value),
                    via: l.activation.health_via.as_ref().map(|v| v.value.clone()),
                },
            },
            website: website_url(plan).map(|url| WebsiteRecord {
                url,
                token_secret: plan.internal_api_remote_key.clone(),
                record: WebsiteBody {
                    name: format!("{} Store", t.name),
                    domain: plan.domain.clone(),
                    tenant_id: plan.id.to_owned(),
                    subscription_id: t.subscription.value.clone(),
                    tier: plan.tier_name.to_owned(),
                    status: "active".to_owned(),
                },
            }),
            grafana: GrafanaObjects {
                namespace: plan.namespace.clone(),
                api_version: GRAFANA_API.to_owned(),
                objects: GRAFANA_OBJECTS
                    .iter()
                    .map(|(kind, name)| NamedObject {
                        kind: (*kind).to_owned(),
                        name: (*name).to_owned(),
                    })
                    .collect(),
            },
            welcome: Welcome {
                smtp: Smtp {
                    host: l.email.smtp.host.value.clone(),
                    port: l.email.smtp.port.value,
                    security: l.email.smtp.security.value.clone(),
                },
                from: l.email.from.value.clone(),
                reply_to: l.email.reply_to.as_ref().map(|r| r.value.clone()),
                to: t.contacts.admin.value.clone(),
                message_id: format!("<welcome.{}@{from_domain}>", plan.id),
                admin_secret: plan.admin_remote_key.clone(),
                context: WelcomeContext {
                    tenant: TenantName {
                        id: plan.id.to_owned(),
                        name: t.name.clone(),
                    },
                    store_url: format!("https://{}", plan.domain),
                    admin_url: format!("https://{}/admin", plan.domain),
                    admin_username: t.contacts.admin.value.clone(),
                    grafana: GrafanaLogin {
                        url: l.grafana.url.value.clone(),
                        login: grafana_login(plan.id),
                    },
                    tier: TierOffer {
                        name: plan.tier_name.to_owned(),
                        title: tier_offer
                            .map_or_else(|| plan.tier_name.to_owned(), |o| o.title.clone()),
                        sites: plan.tier.sites,
                        cpu: tier_offer.map(|o| o.cpu.value.clone()),
                        memory: tier_offer.map(|o| o.memory.value.clone()),
                        storage: tier_offer.map(|o| o.storage.value.clone()),
                    },
                    docs_url: l.email.docs_url.value.clone(),
                    support_email: l.email.support_email.value.clone(),
                    brand: l.email.brand.clone(),
                },
            },
        }
    }

    pub fn parse(json: &str) -> Result<Self, SpecError> {
        let s: Self = parse_spec("activation spec", json)?;
        s.validate()?;
        Ok(s)
    }

    pub fn validate(&self) -> Result<(), SpecError> {
        check_version("activation spec", self.version)?;
        check_tenant(&self.tenant)?;
        self.report.validate(&self.tenant)?;
        let p = &self.probes;
        check_label("namespace", &p.deployments.namespace)?;
        for d in &p.deployments.names {
            check_label("Deployment", d)?;
        }
        if let Some(m) = &p.mysql {
            check_host(&m.host)?;
            for d in &m.databases {
                if !naming::is_valid_mysql_name(&d.database, naming::MYSQL_DB_MAX) {
                    return Err(SpecError::new(
                        format!("MySQL database `{}`", d.database.escape_default()),
                        "expected 1-64 characters of [a-z0-9_]",
                    ));
                }
                check_key(&d.secret_key)?;
            }
        }
        if let Some(s) = &p.s3 {
            check_host(&s.host)?;
            check_key(&s.secret_key)?;
            for b in &s.buckets {
                if let Some(why) = consumers::bucket_problem(b) {
                    return Err(SpecError::new(
                        format!("bucket `{}`", b.escape_default()),
                        format!("it {why}"),
                    ));
                }
            }
        }
        if let Some(r) = &p.rabbitmq {
            check_host(&r.host)?;
            check_key(&r.secret_key)?;
        }
        check_url("health URL", &p.health.url, false)?;
        if let Some(v) = &p.health.via {
            check_host(v)?;
        }
        if let Some(w) = &self.website {
            check_url("websites URL", &w.url, true)?;
            check_key(&w.token_secret)?;
        }
        check_label("namespace", &self.grafana.namespace)?;
        let w = &self.welcome;
        check_host(&w.smtp.host)?;
        if !matches!(w.smtp.security.as_str(), "tls" | "starttls" | "none") {
            return Err(SpecError::new(
                "SMTP security",
                "expected tls, starttls or none",
            ));
        }
        for (what, mb) in [("from", Some(&w.from)), ("replyTo", w.reply_to.as_ref())] {
            if let Some(mb) = mb
                && mailbox_address(mb).is_none()
            {
                return Err(SpecError::new(
                    format!("`{what}` mailbox"),
                    "expected `Name <a@b.c>` or `a@b.c`",
                ));
            }
        }
        if !consumers::is_email(&w.to) {
            return Err(SpecError::new(
                format!("recipient `{}`", w.to.escape_default()),
                "expected an e-mail address",
            ));
        }
        check_key(&w.admin_secret)
    }
}

/// The websites-service's URL inside the cluster (the tenant's own product), if configured.
fn website_url(plan: &TenantPlan<'_>) -> Option<String> {
    let w = plan.platform.lifecycle.websites.as_ref()?;
    let product = plan.websites()?;
    Some(format!(
        "http://{}.{}.svc.cluster.local:{}{}",
        product.name, plan.namespace, product.product.port.value, w.path.value
    ))
}

// ---------------------------------------------------------------------------------------------
// sync-failed (SyncFail of provisioning / failed)
// ---------------------------------------------------------------------------------------------

/// `provisio report sync-failed`: finds why the sync failed and reports `failed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SyncFailedSpec {
    pub version: u32,
    pub tenant: String,
    pub report: ReportTarget,
    pub inspect: Inspect,
}

/// Where the reason of a failed sync may be read (Job termination messages, Deployments'
/// conditions, the Certificate's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Inspect {
    pub shared_namespace: String,
    pub tenant_namespace: String,
    /// Jobs of the shared namespace (setup and activate), in the order they run.
    pub jobs: Vec<String>,
    pub deployments: Vec<String>,
    pub certificate: String,
}

impl SyncFailedSpec {
    pub fn parse(json: &str) -> Result<Self, SpecError> {
        let s: Self = parse_spec("sync-failed spec", json)?;
        check_version("sync-failed spec", s.version)?;
        check_tenant(&s.tenant)?;
        s.report.validate(&s.tenant)?;
        check_label("namespace", &s.inspect.shared_namespace)?;
        check_label("namespace", &s.inspect.tenant_namespace)?;
        Ok(s)
    }
}

// ---------------------------------------------------------------------------------------------
// website-status (PostSync of active / deprovisioning)
// ---------------------------------------------------------------------------------------------

/// `provisio website-status`: the website record's status follows the tenant's (`active`;
/// `deprovisioning` during the grace period: the seed's soft delete).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WebsiteStatusSpec {
    pub version: u32,
    pub tenant: String,
    pub website: WebsiteStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WebsiteStatus {
    pub url: String,
    pub token_secret: String,
    /// The record id activation recorded; absent: looked up by domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub domain: String,
    pub status: String,
}

impl WebsiteStatusSpec {
    pub fn from_plan(plan: &TenantPlan<'_>) -> Option<Self> {
        let url = website_url(plan)?;
        Some(WebsiteStatusSpec {
            version: LIFECYCLE_SPEC_VERSION,
            tenant: plan.id.to_owned(),
            website: WebsiteStatus {
                url,
                token_secret: plan.internal_api_remote_key.clone(),
                id: plan
                    .tenant
                    .activation
                    .as_ref()
                    .and_then(|a| a.website.as_ref())
                    .map(|w| w.value.clone()),
                domain: plan.domain.clone(),
                status: match plan.status {
                    TenantStatus::Deprovisioning => "deprovisioning",
                    _ => "active",
                }
                .to_owned(),
            },
        })
    }

    pub fn parse(json: &str) -> Result<Self, SpecError> {
        let s: Self = parse_spec("website-status spec", json)?;
        check_version("website-status spec", s.version)?;
        check_tenant(&s.tenant)?;
        check_url("websites URL", &s.website.url, true)?;
        check_key(&s.website.token_secret)?;
        if !matches!(s.website.status.as_str(), "active" | "deprovisioning") {
            return Err(SpecError::new(
                "website status",
                "expected active or deprovisioning",
            ));
        }
        Ok(s)
    }
}

// ---------------------------------------------------------------------------------------------
// backup (ordinary Job of a deprovisioning tenant from its deletion date)
// ---------------------------------------------------------------------------------------------

/// `provisio backup`: a consistent dump of each database and a copy of each bucket's current
/// objects into the archive, with a manifest; reports `backup-completed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackupSpec {
    pub version: u32,
    pub tenant: String,
    /// The Job refuses (exit 4) before it, by its own clock.
    pub deletion_date: DateTime<Utc>,
    /// How long the Job may run (`lifecycle.archive.deadline`).
    pub deadline_seconds: u64,
    pub report: ReportTarget,
    /// No pod of these Deployments may run while the dump is taken.
    pub quiesce: DeploymentsProbe,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mysql: Option<BackupMysql>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<BackupS3>,
    /// The vhost whose queues the manifest lists with their message counts (messages are
    /// not archived: docs/lifecycle.md, "What a backup holds").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rabbitmq: Option<BackupRabbit>,
    pub archive: Archive,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackupRabbit {
    pub host: String,
    /// The AMQP port: the counts come from a passive `Queue.Declare` of each queue.
    pub port: u16,
    /// The management API's port: the queues' names.
    pub management_port: u16,
    pub vhost: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackupMysql {
    pub host: String,
    pub port: u16,
    pub databases: Vec<BackupDatabase>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackupDatabase {
    pub product: String,
    pub database: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackupS3 {
    pub host: String,
    pub port: u16,
    pub use_ssl: bool,
    pub buckets: Vec<BackupBucket>,
    /// `current`: the current version of every object.
    pub versions: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackupBucket {
    pub short: String,
    pub name: String,
}

impl BackupSpec {
    /// `None` unless the tenant has a cancellation.
    pub fn from_plan(plan: &TenantPlan<'_>) -> Option<Self> {
        let c = plan.tenant.cancellation.as_ref()?;
        let shared = &plan.platform.shared_services;
        let databases: Vec<BackupDatabase> = plan
            .products
            .iter()
            .filter_map(|pp| {
                pp.database.as_ref().map(|d| BackupDatabase {
                    product: pp.name.to_owned(),
                    database: d.database.clone(),
                })
            })
            .collect();
        Some(BackupSpec {
            version: LIFECYCLE_SPEC_VERSION,
            tenant: plan.id.to_owned(),
            deletion_date: c.deletion.value,
            deadline_seconds: duration_secs(&plan.platform.lifecycle.archive.deadline.value)
                .unwrap_or(6 * 3600),
            report: ReportTarget::of(plan),
            quiesce: DeploymentsProbe::of(plan),
            mysql: (!databases.is_empty()).then(|| BackupMysql {
                host: shared.mysql.host.clone(),
                port: shared.mysql.port,
                databases,
            }),
            s3: plan.uses_minio().then(|| BackupS3 {
                host: shared.minio.host.clone(),
                port: shared.minio.port,
                use_ssl: shared.minio.use_ssl,
                buckets: plan
                    .buckets
                    .iter()
                    .map(|b| BackupBucket {
                        short: b.short.clone(),
                        name: b.name.clone(),
                    })
                    .collect(),
                versions: "current".to_owned(),
            }),
            rabbitmq: plan.uses_rabbitmq().then(|| BackupRabbit {
                host: shared.rabbitmq.host.clone(),
                port: shared.rabbitmq.port,
                management_port: shared.rabbitmq.management_port,
                vhost: plan.rabbitmq.vhost.clone(),
            }),
            archive: Archive::of(plan),
        })
    }

    pub fn parse(json: &str) -> Result<Self, SpecError> {
        let s: Self = parse_spec("backup spec", json)?;
        check_version("backup spec", s.version)?;
        check_tenant(&s.tenant)?;
        s.report.validate(&s.tenant)?;
        check_label("namespace", &s.quiesce.namespace)?;
        if let Some(m) = &s.mysql {
            check_host(&m.host)?;
            for d in &m.databases {
                if !naming::is_valid_mysql_name(&d.database, naming::MYSQL_DB_MAX) {
                    return Err(SpecError::new(
                        format!("MySQL database `{}`", d.database.escape_default()),
                        "expected 1-64 characters of [a-z0-9_]",
                    ));
                }
            }
        }
        if let Some(b) = &s.s3 {
            check_host(&b.host)?;
            for bucket in &b.buckets {
                if let Some(why) = consumers::bucket_problem(&bucket.name) {
                    return Err(SpecError::new(
                        format!("bucket `{}`", bucket.name.escape_default()),
                        format!("it {why}"),
                    ));
                }
            }
        }
        if let Some(r) = &s.rabbitmq {
            check_host(&r.host)?;
        }
        s.archive.validate(&s.tenant)?;
        Ok(s)
    }
}

// ---------------------------------------------------------------------------------------------
// purge-check / namespace-check (PostSync of purging)
// ---------------------------------------------------------------------------------------------

/// What a purge check verifies before it reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PurgeCheck {
    /// No Deployment, running Pod, Ingress, Certificate, ExternalSecret or Grafana object is
    /// left in the namespace → `workloads-pruned`.
    WorkloadsGone,
    /// The namespace is gone (`GET` answers 404) → `namespace-removed`.
    NamespaceGone,
}

/// `provisio purge-check`: verifies one step of the ordered removal and reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PurgeCheckSpec {
    pub version: u32,
    pub tenant: String,
    pub check: PurgeCheck,
    pub namespace: String,
    pub report: ReportTarget,
}

impl PurgeCheckSpec {
    pub fn from_plan(plan: &TenantPlan<'_>, check: PurgeCheck) -> Self {
        PurgeCheckSpec {
            version: LIFECYCLE_SPEC_VERSION,
            tenant: plan.id.to_owned(),
            check,
            namespace: plan.namespace.clone(),
            report: ReportTarget::of(plan),
        }
    }

    pub fn parse(json: &str) -> Result<Self, SpecError> {
        let s: Self = parse_spec("purge-check spec", json)?;
        check_version("purge-check spec", s.version)?;
        check_tenant(&s.tenant)?;
        check_label("namespace", &s.namespace)?;
        s.report.validate(&s.tenant)?;
        Ok(s)
    }
}

/// Whether a phase renders a given lifecycle Job (for tests and documentation).
pub fn renders(phase: Phase, job: &str) -> bool {
    match job {
        "setup-credentials" => phase.runs(),
        "activate" | "sync-failed" => phase.activating(),
        "website-status" => matches!(phase, Phase::Active | Phase::Grace | Phase::Due),
        "backup" => phase == Phase::Due,
        "purge-check" => phase == Phase::Purging(PurgeStep::Workloads),
        "teardown" => phase == Phase::Purging(PurgeStep::Teardown),
        "namespace-check" => phase == Phase::Purging(PurgeStep::Namespace),
        _ => false,
    }
}
