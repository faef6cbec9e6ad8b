//! The setup spec: everything a setup or teardown Job needs to know about one tenant, derived
//! from its [`TenantPlan`] (pure) and carried to the Job as JSON. It is the contract between
//! the renderer (which writes it into the Jobs) and the setup clients (which read it). It holds names, endpoints
//! and secret-store keys, never a secret value. [`SetupSpec::validate`] re-checks every name
//! against its system's rules before anything reaches a server — the same rules the
//! registry loader applies ([`crate::consumers`]), so a spec the renderer writes from a
//! valid registry is always valid.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use super::spec::SpecError;
use super::spec::{Archive, ReportTarget, check, check_host, check_key, check_label};
use crate::consumers;
use crate::naming;
use crate::plan::TenantPlan;
use crate::registry::{PurgeStep, TenantStatus};

/// A shared service a setup Job works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SharedService {
    Mysql,
    Rabbitmq,
    /// MinIO: buckets through the S3 API, and the tenant's MinIO user.
    Minio,
}

impl SharedService {
    /// In the order their Jobs are listed.
    pub const ALL: [SharedService; 3] = [
        SharedService::Mysql,
        SharedService::Rabbitmq,
        SharedService::Minio,
    ];

    /// The name on the command line (`provisio setup <name>`) and in object names.
    pub fn as_str(self) -> &'static str {
        match self {
            SharedService::Mysql => "mysql",
            SharedService::Rabbitmq => "rabbitmq",
            SharedService::Minio => "minio",
        }
    }
}

/// Format version of the spec; a Job refuses a spec it does not know.
pub const SPEC_VERSION: u32 = 1;
/// Environment variable carrying the spec (JSON) into a Job when `--spec` is not given.
pub const SPEC_ENV: &str = "PROVISIO_SETUP_SPEC";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SetupSpec {
    pub version: u32,
    pub tenant: String,
    pub lifecycle: Lifecycle,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mysql: Option<MysqlSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rabbitmq: Option<RabbitSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Spec>,
    /// Only in the teardown Job's spec (a `purging` tenant at step `teardown`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teardown: Option<TeardownPart>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Lifecycle {
    pub status: TenantStatus,
    /// Not before this moment may anything of the tenant be deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_date: Option<DateTime<Utc>>,
    /// The step of a `purging` tenant's removal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge_step: Option<PurgeStep>,
    /// The recorded backup of an offboarded tenant: teardown re-reads its manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupRef>,
    /// The tenant was rolled back (never activated): no backup.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rollback: bool,
}

/// A recorded backup, as teardown checks it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackupRef {
    pub location: String,
    pub manifest_sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MysqlSpec {
    pub host: String,
    pub port: u16,
    pub databases: Vec<DatabaseSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DatabaseSpec {
    pub product: String,
    pub database: String,
    pub user: String,
    /// Secret-store key holding `{username, password}`.
    pub secret_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RabbitSpec {
    pub host: String,
    pub management_port: u16,
    pub vhost: String,
    pub user: String,
    pub exchange: String,
    /// Secret-store key holding `{username, password}`.
    pub secret_key: String,
    pub queues: Vec<QueueSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct QueueSpec {
    pub product: String,
    pub name: String,
    pub routing_keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_ttl_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct S3Spec {
    pub host: String,
    pub port: u16,
    pub use_ssl: bool,
    /// The tenant's MinIO user (access key).
    pub user: String,
    /// Secret-store key holding `{access_key, secret_key}`.
    pub secret_key: String,
    pub buckets: Vec<BucketSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BucketSpec {
    pub name: String,
    /// Prefix readable anonymously (e.g. `public/`); absent = private.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_prefix: Option<String>,
}

impl SetupSpec {
    /// Derives the spec of one tenant from its plan. Pure.
    pub fn from_plan(plan: &TenantPlan<'_>) -> SetupSpec {
        let shared = &plan.platform.shared_services;
        let databases: Vec<DatabaseSpec> = plan
            .products
            .iter()
            .filter_map(|p| {
                p.database.as_ref().map(|d| DatabaseSpec {
                    product: p.name.to_owned(),
                    database: d.database.clone(),
                    user: d.user.clone(),
                    secret_key: d.remote_key.clone(),
                })
            })
            .collect();
        let queues: Vec<QueueSpec> = plan
            .products
            .iter()
            .filter_map(|p| {
                p.queue.as_ref().map(|q| QueueSpec {
                    product: p.name.to_owned(),
                    name: q.name.clone(),
                    routing_keys: q.routing_keys.clone(),
                    message_ttl_ms: q.message_ttl_ms,
                    max_length: q.max_length,
                })
            })
            .collect();
        SetupSpec {
            version: SPEC_VERSION,
            tenant: plan.id.to_owned(),
            lifecycle: Lifecycle {
                status: plan.status,
                deletion_date: plan.tenant.cancellation.as_ref().map(|c| c.deletion.value),
                purge_step: plan
                    .tenant
                    .purge
                    .as_ref()
                    .filter(|_| plan.status == TenantStatus::Purging)
                    .map(|p| p.step.value),
                backup: plan.tenant.backup.as_ref().map(|b| BackupRef {
                    location: b.location.value.clone(),
                    manifest_sha256: b.manifest_sha256.value.clone(),
                }),
                rollback: plan.tenant.rollback.is_some(),
            },
            mysql: (!databases.is_empty()).then(|| MysqlSpec {
                host: shared.mysql.host.clone(),
                port: shared.mysql.port,
                databases,
            }),
            rabbitmq: plan.uses_rabbitmq().then(|| RabbitSpec {
                host: shared.rabbitmq.host.clone(),
                management_port: shared.rabbitmq.management_port,
                vhost: plan.rabbitmq.vhost.clone(),
                user: plan.rabbitmq.user.clone(),
                exchange: plan.rabbitmq.exchange.clone(),
                secret_key: plan.rabbitmq_remote_key.clone(),
                queues,
            }),
            s3: plan.uses_minio().then(|| S3Spec {
                host: shared.minio.host.clone(),
                port: shared.minio.port,
                use_ssl: shared.minio.use_ssl,
                user: plan.minio_user.clone(),
                secret_key: plan.minio_remote_key.clone(),
                buckets: plan
                    .buckets
                    .iter()
                    .map(|b| BucketSpec {
                        name: b.name.clone(),
                        public_prefix: b.public_prefix.clone(),
                    })
                    .collect(),
            }),
            teardown: None,
        }
    }

    /// The teardown Job's spec: every service section, the lifecycle with its backup (or
    /// rollback), and the teardown part.
    pub fn teardown_from_plan(plan: &TenantPlan<'_>) -> SetupSpec {
        SetupSpec {
            teardown: Some(TeardownPart::from_plan(plan)),
            ..SetupSpec::from_plan(plan)
        }
    }

    /// Parses a spec (JSON) and validates it.
    pub fn parse(json: &str) -> Result<SetupSpec, SpecError> {
        let spec: SetupSpec =
            serde_json::from_str(json).map_err(|e| SpecError::new("setup spec", e.to_string()))?;
        spec.validate()?;
        Ok(spec)
    }

    /// Compact JSON (the `PROVISIO_SETUP_SPEC` variable of a run outside the cluster).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("plain data serializes")
    }

    /// The spec as a setup Job mounts it: pretty-printed JSON ending in a newline, one field
    /// per line, so a change reads as a small diff.
    pub fn to_pretty_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("plain data serializes");
        text.push('\n');
        text
    }

    /// What one service's Job needs: the tenant, its lifecycle (teardown's guard) and that
    /// service's section only, so a change to another service never rewrites this Job.
    /// `None` when the tenant does not use the service.
    pub fn for_service(&self, service: SharedService) -> Option<SetupSpec> {
        let mut only = SetupSpec {
            mysql: None,
            rabbitmq: None,
            s3: None,
            teardown: None,
            ..self.clone()
        };
        match service {
            SharedService::Mysql => only.mysql = Some(self.mysql.clone()?),
            SharedService::Rabbitmq => only.rabbitmq = Some(self.rabbitmq.clone()?),
            SharedService::Minio => only.s3 = Some(self.s3.clone()?),
        }
        Some(only)
    }

    /// Re-checks every name; setup relies on this before building any statement or URL.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.version != SPEC_VERSION {
            return Err(SpecError::new(
                "setup spec",
                format!(
                    "version {} is not supported (expected {SPEC_VERSION})",
                    self.version
                ),
            ));
        }
        if let Some(reason) = naming::check_dns_name(&self.tenant, naming::MAX_TENANT_ID_LEN) {
            return Err(SpecError::new(
                format!("tenant id `{}`", self.tenant),
                reason,
            ));
        }
        if let Some(m) = &self.mysql {
            check_host(&m.host)?;
            for d in &m.databases {
                check(
                    naming::is_valid_mysql_name(&d.database, naming::MYSQL_DB_MAX),
                    "MySQL database",
                    &d.database,
                    "1-64 characters of [a-z0-9_]",
                )?;
                check(
                    naming::is_valid_mysql_name(&d.user, naming::MYSQL_USER_MAX),
                    "MySQL user",
                    &d.user,
                    "1-32 characters of [a-z0-9_]",
                )?;
                check_key(&d.secret_key)?;
            }
        }
        if let Some(r) = &self.rabbitmq {
            check_host(&r.host)?;
            for (what, name) in [
                ("RabbitMQ vhost", &r.vhost),
                ("RabbitMQ user", &r.user),
                ("RabbitMQ exchange", &r.exchange),
            ] {
                check(
                    is_rabbit_name(name),
                    what,
                    name,
                    "1-255 characters of [a-z0-9._-] starting with a letter or digit",
                )?;
            }
            check_key(&r.secret_key)?;
            for q in &r.queues {
                check(
                    is_rabbit_name(&q.name),
                    "RabbitMQ queue",
                    &q.name,
                    "1-255 characters of [a-z0-9._-] starting with a letter or digit",
                )?;
                for k in &q.routing_keys {
                    check(
                        is_routing_key(k),
                        "routing key",
                        k,
                        "1-255 characters of [A-Za-z0-9._-*#]",
                    )?;
                }
            }
        }
        if let Some(t) = &self.teardown {
            t.validate(&self.tenant)?;
        }
        if let Some(b) = &self.lifecycle.backup
            && !crate::registry::lifecycle_rules::is_sha256_hex(&b.manifest_sha256)
        {
            return Err(SpecError::new(
                "backup manifest hash",
                "expected 64 lower-case hexadecimal digits",
            ));
        }
        if let Some(s) = &self.s3 {
            check_host(&s.host)?;
            check(
                naming::is_dns1123_label(&s.user),
                "MinIO user",
                &s.user,
                "a DNS-1123 label",
            )?;
            check_key(&s.secret_key)?;
            for b in &s.buckets {
                if let Some(why) = consumers::bucket_problem(&b.name) {
                    return Err(SpecError::new(
                        format!("bucket `{}`", b.name.escape_default()),
                        format!("it {why}"),
                    ));
                }
                if let Some(p) = &b.public_prefix
                    && let Some(why) = consumers::object_prefix_problem(p)
                {
                    return Err(SpecError::new(
                        format!("public prefix `{}`", p.escape_default()),
                        format!("it {why}"),
                    ));
                }
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------

/// What only the teardown Job's spec carries, next to the setup spec's service sections (so
/// `provisio teardown mysql|rabbitmq|minio --spec` takes the teardown Job's spec too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TeardownPart {
    pub namespace: String,
    pub shared_namespace: String,
    /// Secret-store keys no service's teardown owns: the admin password, the websites
    /// token; the report key stays for the `namespace-check` Job, which deletes it after the
    /// tenant's last report.
    pub store_keys: Vec<String>,
    pub report: ReportTarget,
    /// Where the teardown re-reads the backup's manifest (absent after a rollback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<Archive>,
}

impl TeardownPart {
    pub fn from_plan(plan: &TenantPlan<'_>) -> Self {
        let mut store_keys = vec![plan.admin_remote_key.clone()];
        if plan.websites().is_some() {
            store_keys.push(plan.internal_api_remote_key.clone());
        }
        TeardownPart {
            namespace: plan.namespace.clone(),
            shared_namespace: plan.platform.shared_services.namespace.clone(),
            store_keys,
            report: ReportTarget::of(plan),
            archive: plan.tenant.backup.is_some().then(|| Archive::of(plan)),
        }
    }

    pub fn validate(&self, tenant: &str) -> Result<(), SpecError> {
        check_label("namespace", &self.namespace)?;
        check_label("namespace", &self.shared_namespace)?;
        for k in &self.store_keys {
            check_key(k)?;
        }
        self.report.validate(tenant)?;
        if let Some(a) = &self.archive {
            a.validate(tenant)?;
        }
        Ok(())
    }
}

/// Names provisio gives to RabbitMQ objects: `[a-z0-9._-]`, 1..=255, starting with a letter
/// or digit (so never `.` or `..` in a URL path).
pub fn is_rabbit_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// Topic routing keys and binding patterns (the consumers' rule, shared with the loader).
pub use crate::consumers::is_routing_key;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_keys() {
        assert!(is_routing_key("order.created"));
        assert!(is_routing_key("order.*"));
        assert!(is_routing_key("#"));
        assert!(!is_routing_key("order..created"));
        assert!(!is_routing_key("order created"));
        assert!(!is_routing_key(""));
    }

    /// The spec refuses what the registry loader refuses: one set of rules
    /// ([`crate::consumers`]).
    #[test]
    fn the_spec_applies_the_loaders_rules() {
        let reg = crate::testing::example_registry();
        let plan = crate::plan::plan_tenant(
            &reg,
            &reg.tenants[crate::testing::ACTIVE],
            crate::testing::now(),
        );
        let spec = SetupSpec::from_plan(&plan);
        spec.validate().unwrap();
        let refused = |edit: &dyn Fn(&mut SetupSpec)| {
            let mut s = spec.clone();
            edit(&mut s);
            s.validate().unwrap_err().to_string()
        };
        let e = refused(&|s| s.s3.as_mut().unwrap().buckets[0].name = "sthree-shop-media".into());
        assert!(
            e.contains("starts with `sthree-`, a prefix S3 reserves"),
            "{e}"
        );
        let e = refused(&|s| s.s3.as_mut().unwrap().buckets[0].name = "shop-s3alias".into());
        assert!(e.contains("ends with `-s3alias`"), "{e}");
        let e =
            refused(&|s| s.s3.as_mut().unwrap().buckets[0].public_prefix = Some("Public/".into()));
        assert!(e.contains("contains `P`"), "{e}");
        let e = refused(&|s| s.mysql.as_mut().unwrap().host = "::1".into());
        assert!(e.contains("IPv6"), "{e}");
        let e = refused(&|s| s.mysql.as_mut().unwrap().host = "-mysql.local".into());
        assert!(e.contains("not a DNS name"), "{e}");
        let e = refused(&|s| s.rabbitmq.as_mut().unwrap().secret_key = "a/../b".into());
        assert!(e.contains("`..` segment"), "{e}");
    }

    #[test]
    fn rabbit_names() {
        assert!(is_rabbit_name("abc-corporation-7f3a9c.orders"));
        assert!(!is_rabbit_name("a/b"));
        assert!(!is_rabbit_name("A"));
        assert!(!is_rabbit_name(".."));
    }
}
