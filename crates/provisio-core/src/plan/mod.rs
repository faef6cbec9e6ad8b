//! Derivation: a validated [`Registry`] → one [`TenantPlan`] per tenant, holding every name,
//! figure and endpoint the renderers and the setup commands need. Pure functions; `now` is a
//! parameter (the core never reads the clock).

pub mod setup;

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::naming;
use crate::registry::rules::tenant_domain;
use crate::registry::{Platform, Product, Registry, Tenant, TenantStatus, Tier};

/// Everything derived for one tenant.
#[derive(Debug, Clone)]
pub struct TenantPlan<'r> {
    pub id: &'r str,
    pub tenant: &'r Tenant,
    pub tier_name: &'r str,
    pub tier: &'r Tier,
    pub platform: &'r Platform,
    pub namespace: String,
    pub application: String,
    pub domain: String,
    /// Host names served: the domain, and its `www.` alias when [`serves_www`].
    pub hosts: Vec<String>,
    pub region: &'r str,
    pub cluster: &'r str,
    /// ApplicationSet shard name (`tenants-<region>-<nn>`).
    pub shard: String,
    pub status: TenantStatus,
    /// Past its deletion date: backups and teardown may run.
    pub deletion_due: bool,
    /// Labels on every object of the tenant.
    pub labels: BTreeMap<String, String>,
    pub products: Vec<ProductPlan<'r>>,
    /// Buckets of the tenant, deduplicated over products, sorted by short name.
    pub buckets: Vec<BucketPlan>,
    pub minio_user: String,
    pub rabbitmq: RabbitPlan,
    /// Remote secret-store keys (never values).
    pub minio_remote_key: String,
    pub rabbitmq_remote_key: String,
}

#[derive(Debug, Clone)]
pub struct ProductPlan<'r> {
    pub name: &'r str,
    pub product: &'r Product,
    /// Full image reference `<registry>/<image>:<version>`.
    pub image: String,
    pub version: &'r str,
    pub replicas: u32,
    pub database: Option<DatabasePlan>,
    pub queue: Option<QueuePlan>,
    /// Needs RabbitMQ credentials (a queue, or publishes events).
    pub uses_rabbitmq: bool,
    /// Needs MinIO credentials (uses a bucket).
    pub uses_minio: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabasePlan {
    pub database: String,
    pub user: String,
    /// Kubernetes Secret (materialised by an ExternalSecret) holding DB_* keys.
    pub secret_name: String,
    pub remote_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuePlan {
    pub name: String,
    pub routing_keys: Vec<String>,
    pub message_ttl_ms: Option<u64>,
    pub max_length: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketPlan {
    pub short: String,
    pub name: String,
    pub public_prefix: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RabbitPlan {
    pub vhost: String,
    pub user: String,
    pub exchange: String,
}

/// Names of the credential Secrets the ExternalSecrets create in the tenant namespace.
pub const MINIO_SECRET: &str = "minio-credentials";
pub const RABBITMQ_SECRET: &str = "rabbitmq-credentials";
pub const TENANT_CONFIG: &str = "tenant-config";

/// RFC 3339 with seconds and `Z`, as written in annotations.
pub fn timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Derives the plan of one tenant. The registry is validated, so lookups cannot fail.
pub fn plan_tenant<'r>(
    reg: &'r Registry,
    tenant: &'r Tenant,
    now: DateTime<Utc>,
) -> TenantPlan<'r> {
    let p = &reg.platform;
    let id = tenant.id.value.as_str();
    let tier_name = tenant.tier.value.as_str();
    let tier = &reg.tiers[tier_name];
    let region = tenant.region.value.as_str();
    let region_cfg = &p.regions[region];
    let domain = tenant_domain(p, tenant);
    let mut hosts = vec![domain.clone()];
    if serves_www(p, tenant, &domain) {
        hosts.push(format!("www.{domain}"));
    }
    let shard = naming::shard_name(region, tenant.shard());
    let status = tenant.status.value;
    let deletion_due = status == TenantStatus::Deprovisioning
        && tenant
            .cancellation
            .as_ref()
            .is_some_and(|c| c.deletion.value <= now);

    let labels = BTreeMap::from([
        ("tenant".to_owned(), id.to_owned()),
        ("tier".to_owned(), tier_name.to_owned()),
        ("region".to_owned(), region.to_owned()),
        ("environment".to_owned(), p.environment.clone()),
        ("managed-by".to_owned(), "provisio".to_owned()),
    ]);

    let key_prefix = &p.secret_store.key_prefix;
    let products = reg
        .products
        .iter()
        .map(|(name, product)| {
            let version = tenant
                .overrides
                .versions
                .get(name)
                .map(|v| v.value.as_str())
                .unwrap_or(product.version.value.as_str());
            let replicas = tenant
                .overrides
                .replicas
                .get(name)
                .map(|r| r.value)
                .or(product.replicas)
                .unwrap_or(tier.replicas);
            let database = product.needs.database.then(|| DatabasePlan {
                database: naming::mysql_database(id, name),
                user: naming::mysql_user(id, name),
                secret_name: format!("{name}-db-credentials"),
                remote_key: naming::remote_key(key_prefix, id, &format!("{name}-db")),
            });
            let queue = product.needs.queue.as_ref().map(|q| QueuePlan {
                name: naming::rabbitmq_queue(id, name),
                routing_keys: q.routing_keys.iter().map(|k| k.value.clone()).collect(),
                message_ttl_ms: q.message_ttl_ms,
                max_length: q.max_length,
            });
            ProductPlan {
                name,
                product,
                image: format!(
                    "{}/{}:{}",
                    p.images.registry.trim_end_matches('/'),
                    product.image,
                    version
                ),
                version,
                replicas,
                database,
                uses_rabbitmq: queue.is_some() || product.needs.messaging,
                queue,
                uses_minio: !product.needs.buckets.is_empty(),
            }
        })
        .collect();

    let mut buckets: BTreeMap<&str, BucketPlan> = BTreeMap::new();
    for product in reg.products.values() {
        for b in &product.needs.buckets {
            buckets.entry(&b.name.value).or_insert_with(|| BucketPlan {
                short: b.name.value.clone(),
                name: naming::bucket(id, &b.name.value),
                public_prefix: b.public_prefix.as_ref().map(|x| x.value.clone()),
            });
        }
    }

    TenantPlan {
        id,
        tenant,
        tier_name,
        tier,
        platform: p,
        namespace: naming::namespace(&p.namespace_prefix.value, id),
        application: naming::application(id),
        domain,
        hosts,
        region,
        cluster: &region_cfg.cluster.value,
        shard,
        status,
        deletion_due,
        labels,
        products,
        buckets: buckets.into_values().collect(),
        minio_user: naming::minio_user(id),
        rabbitmq: RabbitPlan {
            vhost: naming::rabbitmq_vhost(id),
            user: naming::rabbitmq_user(id),
            exchange: naming::rabbitmq_exchange(id),
        },
        minio_remote_key: naming::remote_key(key_prefix, id, "minio"),
        rabbitmq_remote_key: naming::remote_key(key_prefix, id, "rabbitmq"),
    }
}

/// Whether the tenant also serves `www.<domain>`. Its Certificate then covers both names in
/// one ACME order, and a name without a DNS record fails the whole order (cert-manager builds
/// one Order for all `dnsNames`; RFC 8555 §7.1.6: one invalid authorization invalidates the
/// order), so the alias is added only where the record can be expected:
/// - never when `platform.ingress.wwwAlias` is `false`;
/// - the tenant's `wwwAlias` when its file sets it (opt out, or opt in);
/// - otherwise yes under the platform's base domain (the platform runs that DNS zone) and for
///   an apex domain, conservatively *two labels* (`example.com`): without the public-suffix
///   list `example.co.uk` cannot be told from `shop.example.com`, so it gets no alias unless
///   its file asks; a domain that already starts with `www.` never gets one.
pub fn serves_www(platform: &Platform, tenant: &Tenant, domain: &str) -> bool {
    if !platform.ingress.www_alias {
        return false;
    }
    if let Some(explicit) = tenant.www_alias {
        return explicit;
    }
    let base = &platform.base_domain.value;
    let under_base = domain
        .strip_suffix(base.as_str())
        .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.'));
    let apex = domain.split('.').count() == 2;
    !domain.starts_with("www.") && (under_base || apex)
}

impl TenantPlan<'_> {
    pub fn gateway(&self) -> &ProductPlan<'_> {
        self.products
            .iter()
            .find(|p| p.product.ingress)
            .expect("the loader guarantees exactly one ingress product")
    }

    pub fn uses_minio(&self) -> bool {
        !self.buckets.is_empty()
    }

    pub fn uses_rabbitmq(&self) -> bool {
        self.products.iter().any(|p| p.uses_rabbitmq)
    }

    pub fn uses_mysql(&self) -> bool {
        self.products.iter().any(|p| p.database.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{
        ACTIVE, DEPROVISIONING, PROVISIONING, edited_registry, example_registry, plan, replace_in,
    };

    #[test]
    fn www_is_added_under_the_base_domain_and_to_apex_domains_only() {
        let reg = example_registry();
        let t = &reg.tenants[ACTIVE];
        let p = &reg.platform;
        for (domain, www) in [
            ("abc-corporation.collectverything.com", true),
            ("a.b.collectverything.com", true),
            ("nordwind-logistik.de", true),
            ("shop.nordwind-logistik.de", false),
            ("example.co.uk", false),
            ("www.example.com", false),
            ("collectverything.com.evil.example", false),
            ("notcollectverything.com", true),
            ("x.notcollectverything.com", false),
        ] {
            assert_eq!(serves_www(p, t, domain), www, "{domain}");
        }
        // The example: platform subdomains get the alias, the customer's subdomain does not.
        assert_eq!(
            plan(&reg, ACTIVE).hosts,
            [
                "abc-corporation.collectverything.com",
                "www.abc-corporation.collectverything.com"
            ]
        );
        assert_eq!(
            plan(&reg, PROVISIONING).hosts,
            [
                "cafe-creme-93b31b.collectverything.com",
                "www.cafe-creme-93b31b.collectverything.com"
            ]
        );
        assert_eq!(
            plan(&reg, DEPROVISIONING).hosts,
            ["shop.nordwind-logistik.de"]
        );
    }

    #[test]
    fn a_tenant_opts_out_or_in_and_the_platform_switch_wins() {
        let reg = edited_registry(|s| {
            replace_in(
                s,
                &format!("tenants/{ACTIVE}.yaml"),
                "status: active\n",
                "status: active\nwwwAlias: false\n",
            );
            replace_in(
                s,
                &format!("tenants/{DEPROVISIONING}.yaml"),
                "status: deprovisioning\n",
                "status: deprovisioning\nwwwAlias: true\n",
            );
        });
        assert_eq!(
            plan(&reg, ACTIVE).hosts,
            ["abc-corporation.collectverything.com"]
        );
        assert_eq!(
            plan(&reg, DEPROVISIONING).hosts,
            ["shop.nordwind-logistik.de", "www.shop.nordwind-logistik.de"]
        );
        let reg = edited_registry(|s| {
            replace_in(s, "platform.yaml", "wwwAlias: true", "wwwAlias: false");
            replace_in(
                s,
                &format!("tenants/{DEPROVISIONING}.yaml"),
                "status: deprovisioning\n",
                "status: deprovisioning\nwwwAlias: true\n",
            );
        });
        for id in [ACTIVE, PROVISIONING, DEPROVISIONING] {
            assert_eq!(plan(&reg, id).hosts.len(), 1, "{id}");
        }
    }
}
