//! The registry's values checked against what their consumers accept ([`crate::consumers`]):
//! shared service hosts and ports, the secret-store key prefix, image references, quota
//! values, LimitRange bounds, container resources, public prefixes, the bucket names each
//! tenant gets, and tenant domains. A value that S3, MinIO, the API server, an OCI
//! registry or the secret store would refuse at sync time is a positioned diagnostic here.
//!
//! Fields of `platform.yaml` and `products/*.yaml` that the model keeps as plain values are
//! located by a second, lenient parse of the file into the small `*At` mirrors below
//! (only the checked fields, spanned; unknown fields ignored): the model and the renderers
//! stay as they are.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::model::*;
use crate::consumers::{self, quantity_value, quota_value_problem};
use crate::diagnostic::{Diagnostic, at};
use crate::naming;

// --- positions of plain fields ------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct PlatformAt {
    base_domain: Option<Sp<String>>,
    shared_services: SharedAt,
    secret_store: StoreAt,
    images: ImagesAt,
    ingress: IngressAt,
    argocd: ArgoAt,
    monitoring: MonitoringAt,
    dns_namespace: Option<Sp<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct SharedAt {
    namespace: Option<Sp<String>>,
    mysql: EndpointAt,
    minio: EndpointAt,
    rabbitmq: EndpointAt,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct EndpointAt {
    host: Option<Sp<String>>,
    port: Option<Sp<u16>>,
    management_port: Option<Sp<u16>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct StoreAt {
    key_prefix: Option<Sp<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ImagesAt {
    registry: Option<Sp<String>>,
    provisio: Option<Sp<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct IngressAt {
    controller_namespace: Option<Sp<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ArgoAt {
    namespace: Option<Sp<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct MonitoringAt {
    prometheus_namespace: Option<Sp<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ProductAt {
    image: Option<Sp<String>>,
}

/// A diagnostic at `v`'s position when known, on the file otherwise.
fn at_or_file<T>(path: &str, v: &Option<Sp<T>>, message: String) -> Diagnostic {
    match v {
        Some(s) => at(path, s, message),
        None => Diagnostic::file(path, message),
    }
}

// --- platform.yaml ------------------------------------------------------------------------

/// Longest purpose in a secret-store key: `<product>-db` with the longest product name.
const LONGEST_KEY_PURPOSE: usize = naming::MAX_PRODUCT_NAME_LEN + 3;

pub fn check_platform_values(p: &Platform, text: &str, path: &str, diags: &mut Vec<Diagnostic>) {
    let pos: PlatformAt = serde_saphyr::from_str(text).unwrap_or_default();
    let shared = &p.shared_services;
    for (what, host, at_) in [
        (
            "sharedServices.mysql.host",
            &shared.mysql.host,
            &pos.shared_services.mysql.host,
        ),
        (
            "sharedServices.minio.host",
            &shared.minio.host,
            &pos.shared_services.minio.host,
        ),
        (
            "sharedServices.rabbitmq.host",
            &shared.rabbitmq.host,
            &pos.shared_services.rabbitmq.host,
        ),
    ] {
        if let Some(why) = consumers::host_problem(host) {
            diags.push(
                at_or_file(path, at_, format!("invalid host `{host}` in `{what}`: it {why}"))
                    .with_label("expected a DNS name such as `mysql.shared.svc.cluster.local`, or an IPv4 address"),
            );
        }
    }
    for (what, port, at_) in [
        (
            "sharedServices.mysql.port",
            shared.mysql.port,
            &pos.shared_services.mysql.port,
        ),
        (
            "sharedServices.minio.port",
            shared.minio.port,
            &pos.shared_services.minio.port,
        ),
        (
            "sharedServices.rabbitmq.port",
            shared.rabbitmq.port,
            &pos.shared_services.rabbitmq.port,
        ),
        (
            "sharedServices.rabbitmq.managementPort",
            shared.rabbitmq.management_port,
            &pos.shared_services.rabbitmq.management_port,
        ),
    ] {
        if port == 0 {
            diags.push(
                at_or_file(path, at_, format!("port 0 in `{what}` is not a port"))
                    .with_label("expected 1 to 65535"),
            );
        }
    }
    let prefix = &p.secret_store.key_prefix;
    let longest =
        prefix.trim_end_matches('/').len() + 2 + naming::MAX_TENANT_ID_LEN + LONGEST_KEY_PURPOSE;
    let why = consumers::secret_key_problem(prefix).or_else(|| {
        (longest > 512).then(|| {
            format!("makes keys of up to {longest} characters; AWS Secrets Manager takes 512")
        })
    });
    if let Some(why) = why {
        diags.push(
            at_or_file(
                path,
                &pos.secret_store.key_prefix,
                format!("invalid secret-store key prefix `{prefix}`: it {why}"),
            )
            .with_label("keys are `<keyPrefix>/<tenant>/<purpose>`"),
        );
    }
    let registry = p.images.registry.trim_end_matches('/');
    if let Some(why) = consumers::image_reference_problem(&format!("{registry}/x:latest")) {
        diags.push(
            at_or_file(
                path,
                &pos.images.registry,
                format!(
                    "invalid image registry `{}`: `{registry}/<image>:<version>` {why}",
                    p.images.registry
                ),
            )
            .with_label("expected a registry host and path such as `registry.example.com/shop`"),
        );
    }
    if let Some(why) = consumers::image_reference_problem(&p.images.provisio) {
        diags.push(
            at_or_file(
                path,
                &pos.images.provisio,
                format!("invalid image reference `{}`: it {why}", p.images.provisio),
            )
            .with_label("expected `registry/path:tag` (or `…@sha256:…`)"),
        );
    }
    for (what, ns, at_) in [
        (
            "sharedServices.namespace",
            &shared.namespace,
            &pos.shared_services.namespace,
        ),
        (
            "ingress.controllerNamespace",
            &p.ingress.controller_namespace,
            &pos.ingress.controller_namespace,
        ),
        ("dnsNamespace", &p.dns_namespace, &pos.dns_namespace),
        (
            "argocd.namespace",
            &p.argocd.namespace,
            &pos.argocd.namespace,
        ),
        (
            "monitoring.prometheusNamespace",
            &p.monitoring.prometheus_namespace,
            &pos.monitoring.prometheus_namespace,
        ),
    ] {
        if !naming::is_dns1123_label(ns) {
            diags.push(
                at_or_file(path, at_, format!("invalid namespace `{ns}` in `{what}`")).with_label(
                    "expected a DNS-1123 label: lower-case letters, digits and `-`, at most 63",
                ),
            );
        }
    }
    let _ = &pos.base_domain;
}

// --- tiers.yaml ---------------------------------------------------------------------------

/// Quota values Kubernetes accepts; LimitRange bounds in the order the API server demands
/// (`min ≤ defaultRequest ≤ default ≤ max`, per resource: `ValidateLimitRange`); tier
/// replicas within the same bound as a tenant's override.
pub fn check_tier_values(tiers: &BTreeMap<String, Tier>, path: &str, diags: &mut Vec<Diagnostic>) {
    for (name, t) in tiers {
        if t.replicas > MAX_REPLICAS {
            diags.push(Diagnostic::file(
                path,
                format!(
                    "tier `{name}`: {} replicas is more than {MAX_REPLICAS}",
                    t.replicas
                ),
            ));
        }
        for (key, q) in &t.quota {
            if let Some(why) = quota_value_problem(key, &q.value) {
                diags.push(
                    at(path, q, format!("quota `{key}` of tier `{name}` {why}")).with_label(
                        if consumers::is_count_resource(key) {
                            "expected a whole number of objects, 0 or more"
                        } else {
                            "expected a quantity of 0 or more"
                        },
                    ),
                );
            }
        }
        let lr = &t.limit_range.container;
        for (resource, pick) in [
            (
                "cpu",
                (|c: &CpuMemory| &c.cpu) as fn(&CpuMemory) -> &Sp<String>,
            ),
            ("memory", |c: &CpuMemory| &c.memory),
        ] {
            let bounds = [
                ("min", pick(&lr.min)),
                ("defaultRequest", pick(&lr.default_request)),
                ("default", pick(&lr.default)),
                ("max", pick(&lr.max)),
            ];
            check_ordered(path, name, resource, &bounds, diags);
            for (which, q) in bounds {
                if quantity_value(&q.value).is_some_and(|v| v < 0.0) {
                    diags.push(at(
                        path,
                        q,
                        format!("tier `{name}`: limitRange.container.{which}.{resource} must not be negative"),
                    ));
                }
            }
        }
        if let Some(pvc) = &t.limit_range.persistent_volume_claim {
            check_ordered(
                path,
                name,
                "storage",
                &[("min", &pvc.min), ("max", &pvc.max)],
                diags,
            );
        }
    }
}

/// Bounds listed from smallest to largest must not decrease (each pair is checked, as the
/// API server does).
fn check_ordered(
    path: &str,
    tier: &str,
    resource: &str,
    bounds: &[(&str, &Sp<String>)],
    diags: &mut Vec<Diagnostic>,
) {
    for (i, (low_name, low)) in bounds.iter().enumerate() {
        for (high_name, high) in &bounds[i + 1..] {
            if let (Some(l), Some(h)) = (quantity_value(&low.value), quantity_value(&high.value))
                && l > h
            {
                diags.push(
                    at(
                        path,
                        *high,
                        format!(
                            "tier `{tier}`: {resource} {high_name} `{}` is less than {low_name} `{}`",
                            high.value, low.value
                        ),
                    )
                    .with_label(format!(
                        "Kubernetes refuses a LimitRange unless min ≤ defaultRequest ≤ default ≤ max for {resource}"
                    )),
                );
            }
        }
    }
}

/// Whether a tier's container LimitRange is ordered (`min ≤ defaultRequest ≤ default ≤ max`
/// for cpu and memory).
fn limit_range_is_ordered(t: &Tier) -> bool {
    let lr = &t.limit_range.container;
    let mut diags = Vec::new();
    for (resource, pick) in [
        (
            "cpu",
            (|c: &CpuMemory| &c.cpu) as fn(&CpuMemory) -> &Sp<String>,
        ),
        ("memory", |c: &CpuMemory| &c.memory),
    ] {
        let bounds = [
            ("min", pick(&lr.min)),
            ("defaultRequest", pick(&lr.default_request)),
            ("default", pick(&lr.default)),
            ("max", pick(&lr.max)),
        ];
        check_ordered("", "", resource, &bounds, &mut diags);
    }
    diags.is_empty()
}

/// Replicas beyond this are a typo, not a plan (the tenant override's bound).
pub const MAX_REPLICAS: u32 = 100;

// --- products/*.yaml ----------------------------------------------------------------------

/// A product's image reference (`<images.registry>/<image>:<version>`), its container
/// resources (requests ≤ limits, each within every tier's LimitRange), its replicas, and
/// its buckets' public prefixes and short names.
pub fn check_product_values(
    p: &Product,
    platform: Option<&Platform>,
    tiers: Option<&BTreeMap<String, Tier>>,
    text: &str,
    path: &str,
    diags: &mut Vec<Diagnostic>,
) {
    let pos: ProductAt = serde_saphyr::from_str(text).unwrap_or_default();
    if let Some(platform) = platform {
        let registry = platform.images.registry.trim_end_matches('/');
        let reference = format!("{registry}/{}:{}", p.image, p.version.value);
        // A bad registry is reported once, on platform.yaml.
        let registry_ok =
            consumers::image_reference_problem(&format!("{registry}/x:latest")).is_none();
        if registry_ok
            && consumers::is_image_tag(&p.version.value)
            && let Some(why) = consumers::image_reference_problem(&reference)
        {
            diags.push(
                at_or_file(
                    path,
                    &pos.image,
                    format!("invalid image `{}`: `{reference}` {why}", p.image),
                )
                .with_label("expected a repository path such as `ecommerce/orders`"),
            );
        }
    }
    if p.replicas.is_some_and(|r| r > MAX_REPLICAS) {
        diags.push(Diagnostic::file(
            path,
            format!("`replicas` is more than {MAX_REPLICAS}"),
        ));
    }
    let r = &p.resources;
    for (resource, request, limit) in [
        ("cpu", &r.requests.cpu, &r.limits.cpu),
        ("memory", &r.requests.memory, &r.limits.memory),
    ] {
        let (Some(req), Some(lim)) = (quantity_value(&request.value), quantity_value(&limit.value))
        else {
            continue;
        };
        if req < 0.0 || lim < 0.0 {
            diags.push(at(
                path,
                if req < 0.0 { request } else { limit },
                format!("{resource} must not be negative"),
            ));
            continue;
        }
        if req > lim {
            diags.push(
                at(
                    path,
                    request,
                    format!(
                        "{resource} request `{}` is more than its limit `{}`",
                        request.value, limit.value
                    ),
                )
                .with_label("Kubernetes refuses a container whose request exceeds its limit"),
            );
        }
        // Only against tiers whose own LimitRange is sound (an unsound one is reported on
        // tiers.yaml; its bounds would flag every product).
        for (tier_name, tier) in tiers
            .into_iter()
            .flatten()
            .filter(|(_, t)| limit_range_is_ordered(t))
        {
            let lr = &tier.limit_range.container;
            let (min, max) = match resource {
                "cpu" => (&lr.min.cpu, &lr.max.cpu),
                _ => (&lr.min.memory, &lr.max.memory),
            };
            if let Some(m) = quantity_value(&max.value)
                && lim > m
            {
                diags.push(
                    at(
                        path,
                        limit,
                        format!(
                            "{resource} limit `{}` is more than tier `{tier_name}` allows (`{}`)",
                            limit.value, max.value
                        ),
                    )
                    .with_label("the LimitRange of that tier's namespaces refuses the pod"),
                );
            }
            if let Some(m) = quantity_value(&min.value)
                && req < m
            {
                diags.push(
                    at(
                        path,
                        request,
                        format!(
                            "{resource} request `{}` is less than tier `{tier_name}` allows (`{}`)",
                            request.value, min.value
                        ),
                    )
                    .with_label("the LimitRange of that tier's namespaces refuses the pod"),
                );
            }
        }
    }
    for b in &p.needs.buckets {
        if let Some(prefix) = &b.public_prefix
            && let Some(why) = consumers::object_prefix_problem(&prefix.value)
        {
            diags.push(
                at(
                    path,
                    prefix,
                    format!("invalid public prefix `{}`: it {why}", prefix.value),
                )
                .with_label("expected a key prefix such as `public/`"),
            );
        }
        let tail = format!("-{}", b.name.value);
        if let Some(x) = consumers::BUCKET_RESERVED_SUFFIXES
            .iter()
            .find(|x| tail.ends_with(*x))
        {
            diags.push(
                at(
                    path,
                    &b.name,
                    format!(
                        "bucket name `{}` makes every tenant's bucket end with `{x}`",
                        b.name.value
                    ),
                )
                .with_label("S3 reserves that suffix; choose another short name"),
            );
        }
    }
}

// --- tenants/*.yaml -----------------------------------------------------------------------

/// A tenant's own values: the bucket names it gets (S3's reserved prefixes and suffixes),
/// and its domain (a DNS name, never an IP address, never the platform's own domain or
/// deeper than one label below it).
pub fn check_tenant_values(
    platform: &Platform,
    products: &BTreeMap<String, (String, Product)>,
    path: &str,
    t: &Tenant,
    diags: &mut Vec<Diagnostic>,
) {
    let id = &t.id.value;
    let mut seen = std::collections::BTreeSet::new();
    // An id that is no DNS label is reported as such; its buckets would only repeat it.
    let id_ok = naming::check_dns_name(id, naming::MAX_TENANT_ID_LEN).is_none();
    for (_, p) in products.values().filter(|_| id_ok) {
        for b in &p.needs.buckets {
            let bucket = naming::bucket(id, &b.name.value);
            if !seen.insert(bucket.clone()) {
                continue;
            }
            if let Some(why) = consumers::bucket_problem(&bucket) {
                diags.push(
                    at(path, &t.id, format!("tenant id `{id}` gives the bucket `{bucket}`, which S3 and MinIO refuse: it {why}"))
                        .with_help("choose another id (the intake never derives such an id)"),
                );
            }
        }
    }
    if let Some(d) = &t.domain {
        let base = &platform.base_domain.value;
        let host = d.value.as_str();
        if host.parse::<std::net::IpAddr>().is_ok()
            || host
                .split('.')
                .all(|l| l.bytes().all(|b| b.is_ascii_digit()))
        {
            diags.push(
                at(path, d, format!("domain `{host}` is an IP address"))
                    .with_label("an Ingress host and a certificate name are DNS names"),
            );
        } else if host == base || host == format!("www.{base}") {
            diags.push(
                at(path, d, format!("domain `{host}` is the platform's own")).with_label(format!(
                    "`{base}` belongs to the platform; leave `domain` out to get `{id}.{base}`"
                )),
            );
        } else if let Some(sub) = host.strip_suffix(&format!(".{base}"))
            && sub.contains('.')
        {
            diags.push(
                at(path, d, format!("domain `{host}` is more than one label below the platform's `{base}`"))
                    .with_label(format!("tenants get one label under `{base}` (such as `{id}.{base}`); the names below a label belong to the tenant holding it (its `www.` alias among them)")),
            );
        }
    }
}
