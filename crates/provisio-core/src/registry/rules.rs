//! The registry's semantic rules: what the YAML parser cannot know (unknown tier or region,
//! ids that do not match their file, invalid e-mails, quantities, duplicates…). Each rule
//! pushes a positioned [`Diagnostic`] and carries on, so one run reports everything.

use std::collections::{BTreeMap, BTreeSet};

use super::model::*;
use crate::diagnostic::{Diagnostic, at, located};
use crate::naming;

/// Longest product name (it prefixes object names such as `<product>-db-credentials`).
pub use crate::naming::MAX_PRODUCT_NAME_LEN;
/// Longest short bucket name.
pub const MAX_BUCKET_SHORT_LEN: usize = 20;

/// "did you mean `premium`?" when one known name is close enough.
fn suggest<'a>(wrong: &str, known: impl IntoIterator<Item = &'a String>) -> Option<String> {
    known
        .into_iter()
        .map(|k| (strsim::levenshtein(wrong, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min()
        .map(|(_, k)| format!("did you mean `{k}`?"))
}

fn one_of<'a>(known: impl IntoIterator<Item = &'a String>) -> String {
    let names: Vec<&str> = known.into_iter().map(String::as_str).collect();
    format!("expected one of: {}", names.join(", "))
}

/// Kubernetes resource quantity (`500m`, `12Gi`, `1e3`, `6`).
pub fn is_quantity(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(num_end);
    let digits_ok =
        !num.is_empty() && num.matches('.').count() <= 1 && num.chars().any(|c| c.is_ascii_digit());
    let suffix_ok = match suffix {
        "" | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E" => true,
        "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => true,
        e if e.starts_with(['e', 'E']) => {
            let exp = e[1..].strip_prefix(['+', '-']).unwrap_or(&e[1..]);
            !exp.is_empty() && exp.chars().all(|c| c.is_ascii_digit())
        }
        _ => false,
    };
    digits_ok && suffix_ok
}

pub(crate) fn check_quantity(path: &str, q: &Sp<String>, what: &str, diags: &mut Vec<Diagnostic>) {
    if !is_quantity(&q.value) {
        diags.push(
            at(
                path,
                q,
                format!("`{}` is not a Kubernetes quantity", q.value),
            )
            .with_label(format!(
                "expected a {what} such as `500m`, `2`, `512Mi` or `10Gi`"
            )),
        );
    }
}

pub(crate) fn check_cpu_memory(path: &str, cm: &CpuMemory, diags: &mut Vec<Diagnostic>) {
    check_quantity(path, &cm.cpu, "CPU quantity", diags);
    check_quantity(path, &cm.memory, "memory quantity", diags);
}

/// A container image tag (the consumers' rule).
fn is_image_tag(s: &str) -> bool {
    crate::consumers::is_image_tag(s)
}

/// An AMQP topic routing key (pattern): the consumers' rule.
fn is_routing_key(s: &str) -> bool {
    crate::consumers::is_routing_key(s)
}

pub fn check_platform(p: &Platform, path: &str, diags: &mut Vec<Diagnostic>) {
    if !naming::is_dns_subdomain(&p.base_domain.value) {
        diags.push(
            at(path, &p.base_domain, "invalid base domain")
                .with_label("expected a DNS name such as `example.com`"),
        );
    }
    let prefix = &p.namespace_prefix.value;
    if !prefix.is_empty()
        && (!naming::is_dns1123_label(prefix.trim_end_matches('-'))
            || prefix.len() > 63 - naming::MAX_TENANT_ID_LEN)
    {
        diags.push(
            at(path, &p.namespace_prefix, "invalid namespace prefix").with_label(format!(
                "expected lower-case letters, digits and `-`, at most {} characters",
                63 - naming::MAX_TENANT_ID_LEN
            )),
        );
    }
    if !matches!(
        p.secret_store.kind.value.as_str(),
        "ClusterSecretStore" | "SecretStore"
    ) {
        diags.push(
            at(path, &p.secret_store.kind, "unknown secret store kind")
                .with_label("expected `ClusterSecretStore` or `SecretStore`"),
        );
    }
    if !matches!(
        p.certificates.issuer_kind.value.as_str(),
        "ClusterIssuer" | "Issuer"
    ) {
        diags.push(
            at(path, &p.certificates.issuer_kind, "unknown issuer kind")
                .with_label("expected `ClusterIssuer` or `Issuer`"),
        );
    }
    if p.regions.is_empty() {
        diags.push(Diagnostic::file(
            path,
            "`regions` must name at least one region",
        ));
    }
    for (name, r) in &p.regions {
        if !naming::is_dns1123_label(name) || name.len() > 30 {
            diags.push(
                at(path, &r.cluster, format!("invalid region name `{name}`"))
                    .with_label("region names are DNS labels of at most 30 characters"),
            );
        }
        if !r.cluster.value.starts_with("https://") {
            diags.push(
                at(path, &r.cluster, "invalid cluster URL").with_label(
                    "expected the API server URL as registered in Argo CD, `https://…`",
                ),
            );
        }
    }
    if p.argocd.max_tenants_per_shard.value == 0 {
        diags.push(
            at(path, &p.argocd.max_tenants_per_shard, "invalid shard size")
                .with_label("expected at least 1"),
        );
    }
}

/// ResourceQuota `spec.hard` keys and quantities (tiers, and the platform tools' namespaces):
/// a known resource, `count/<resource>.<group>` for object counts, a quantity.
pub(crate) fn check_quota(
    path: &str,
    quota: &BTreeMap<String, Sp<String>>,
    diags: &mut Vec<Diagnostic>,
) {
    for (key, q) in quota {
        check_quantity(path, q, "quantity", diags);
        let known_prefix = key.starts_with("requests.")
            || key.starts_with("limits.")
            || key.starts_with("count/")
            || key.contains(".storageclass.storage.k8s.io/")
            || matches!(
                key.as_str(),
                "pods"
                    | "services"
                    | "services.loadbalancers"
                    | "services.nodeports"
                    | "persistentvolumeclaims"
                    | "replicationcontrollers"
                    | "resourcequotas"
                    | "secrets"
                    | "configmaps"
                    | "cpu"
                    | "memory"
                    | "ephemeral-storage"
            );
        if matches!(
            key.as_str(),
            "deployments.apps" | "statefulsets.apps" | "jobs.batch" | "cronjobs.batch"
        ) {
            diags.push(
                at(path, q, format!("`{key}` is not a quota resource"))
                    .with_label("object counts are written `count/<resource>.<group>`")
                    .with_help(format!("did you mean `count/{key}`?")),
            );
            continue;
        }
        if !known_prefix {
            diags.push(
                at(path, q, format!("unknown ResourceQuota resource `{key}`")).with_label(
                    "expected e.g. `requests.cpu`, `limits.memory`, `pods`, `count/jobs.batch`",
                ),
            );
        }
    }
}

pub fn check_tiers(tiers: &BTreeMap<String, Tier>, path: &str, diags: &mut Vec<Diagnostic>) {
    if tiers.is_empty() {
        diags.push(Diagnostic::file(
            path,
            "`tiers` must define at least one tier",
        ));
    }
    for (name, t) in tiers {
        if naming::check_dns_name(name, 30).is_some() {
            diags.push(Diagnostic::file(
                path,
                format!("invalid tier name `{name}`: use lower-case letters, digits and `-`"),
            ));
        }
        if t.replicas == 0 {
            diags.push(Diagnostic::file(
                path,
                format!("tier `{name}`: `replicas` must be at least 1"),
            ));
        }
        check_quota(path, &t.quota, diags);
        super::lifecycle_rules::check_offer(name, t, path, diags);
        let lr = &t.limit_range.container;
        for cm in [&lr.max, &lr.min, &lr.default, &lr.default_request] {
            check_cpu_memory(path, cm, diags);
        }
        if let Some(pvc) = &t.limit_range.persistent_volume_claim {
            check_quantity(path, &pvc.max, "storage quantity", diags);
            check_quantity(path, &pvc.min, "storage quantity", diags);
        }
    }
}

pub fn check_product(p: &Product, stem: &str, path: &str, diags: &mut Vec<Diagnostic>) {
    if p.name.value != stem {
        diags.push(
            at(
                path,
                &p.name,
                format!("product name `{}` does not match its file", p.name.value),
            )
            .with_label(format!("expected `{stem}`, the file name without `.yaml`")),
        );
    }
    if let Some(why) = naming::check_dns_name(&p.name.value, MAX_PRODUCT_NAME_LEN) {
        diags.push(at(path, &p.name, format!("invalid product name: it {why}")));
    } else if !p.name.value.starts_with(|c: char| c.is_ascii_lowercase()) {
        diags.push(at(
            path,
            &p.name,
            "invalid product name: it must start with a letter",
        ));
    }
    if !is_image_tag(&p.version.value) {
        diags.push(
            at(
                path,
                &p.version,
                format!("`{}` is not a valid image tag", p.version.value),
            )
            .with_label("expected letters, digits, `_`, `.` and `-`, at most 128"),
        );
    }
    if p.port.value == 0 {
        diags.push(at(path, &p.port, "port 0 is not a port").with_label("expected 1 to 65535"));
    }
    if let Some(m) = &p.metrics_port
        && (m.value == 0 || m.value == p.port.value)
    {
        diags.push(
            at(path, m, "invalid metrics port")
                .with_label("expected a port other than 0 and other than `port`"),
        );
    }
    check_cpu_memory(path, &p.resources.requests, diags);
    check_cpu_memory(path, &p.resources.limits, diags);
    if let Some(q) = &p.needs.queue {
        if q.routing_keys.is_empty() {
            diags.push(Diagnostic::file(
                path,
                "`needs.queue.routingKeys` must list at least one routing key",
            ));
        }
        for k in &q.routing_keys {
            if !is_routing_key(&k.value) {
                diags.push(
                    at(path, k, format!("invalid routing key `{}`", k.value)).with_label(
                        "expected dot-separated words of letters, digits, `_`, `-`, or `*`/`#`",
                    ),
                );
            }
        }
    }
    let mut seen = BTreeSet::new();
    for b in &p.needs.buckets {
        let ok = !b.name.value.is_empty()
            && b.name.value.len() <= MAX_BUCKET_SHORT_LEN
            && b.name
                .value
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !ok {
            diags.push(
                at(path, &b.name, format!("invalid bucket name `{}`", b.name.value)).with_label(
                    format!(
                        "expected 1 to {MAX_BUCKET_SHORT_LEN} lower-case letters and digits (the bucket is `<tenant>-<name>`)"
                    ),
                ),
            );
        }
        if !seen.insert(b.name.value.clone()) {
            diags.push(at(
                path,
                &b.name,
                format!("bucket `{}` listed twice", b.name.value),
            ));
        }
    }
    for key in p.env.keys() {
        let ok = key.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
            && key
                .bytes()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_');
        if !ok {
            diags.push(Diagnostic::file(
                path,
                format!("invalid environment variable name `{key}`: use `[A-Z_][A-Z0-9_]*`"),
            ));
        }
    }
}

/// Rules across products: exactly one ingress product; a bucket shared by two products has
/// one visibility.
pub fn check_products_together(
    products: &BTreeMap<String, (String, Product)>,
    diags: &mut Vec<Diagnostic>,
) {
    let gateways: Vec<&str> = products
        .iter()
        .filter(|(_, (_, p))| p.ingress)
        .map(|(n, _)| n.as_str())
        .collect();
    if !products.is_empty() && gateways.len() != 1 {
        diags.push(Diagnostic::file(
            "products",
            format!(
                "exactly one product must have `ingress: true` (the API gateway); found {}",
                if gateways.is_empty() {
                    "none".to_owned()
                } else {
                    gateways.join(", ")
                }
            ),
        ));
    }
    let mut visibility: BTreeMap<&str, (&str, Option<&str>)> = BTreeMap::new();
    for (path, p) in products.values() {
        for b in &p.needs.buckets {
            let public = b.public_prefix.as_ref().map(|x| x.value.as_str());
            match visibility.get(b.name.value.as_str()) {
                Some((other, prev)) if *prev != public => diags.push(
                    at(
                        path,
                        &b.name,
                        format!(
                            "bucket `{}` has another public prefix in {other}",
                            b.name.value
                        ),
                    )
                    .with_label("products sharing a bucket must agree on `publicPrefix`"),
                ),
                _ => {
                    visibility.insert(&b.name.value, (path, public));
                }
            }
        }
    }
}

pub struct TenantContext<'a> {
    pub platform: &'a Platform,
    pub tiers: &'a BTreeMap<String, Tier>,
    pub products: &'a BTreeMap<String, (String, Product)>,
}

/// Checks every parsed tenant; tenants with an error join `broken`.
pub fn check_tenants(
    ctx: &TenantContext<'_>,
    tenants: &mut BTreeMap<String, (String, Tenant)>,
    broken: &mut BTreeSet<String>,
    diags: &mut Vec<Diagnostic>,
) {
    let mut subscriptions: BTreeMap<&str, &str> = BTreeMap::new();
    let mut domains: BTreeMap<String, (&str, bool)> = BTreeMap::new();
    let mut ids: BTreeMap<&str, &str> = BTreeMap::new();
    for (stem, (path, t)) in tenants.iter() {
        let before = diags.len();
        check_tenant(ctx, stem, path, t, diags);
        if let Some(first) = ids.insert(&t.id.value, path) {
            diags.push(
                at(path, &t.id, format!("duplicate tenant id `{}`", t.id.value))
                    .with_label(format!("also used by {first}")),
            );
        }
        if let Some(first) = subscriptions.insert(&t.subscription.value, path) {
            diags.push(
                at(
                    path,
                    &t.subscription,
                    format!(
                        "subscription `{}` belongs to two tenants",
                        t.subscription.value
                    ),
                )
                .with_label(format!("also in {first}")),
            );
        }
        // Every host the tenant's Ingress and Certificate claim (its domain, and the
        // `www.` alias when the platform serves it) belongs to one tenant only. A removed
        // tenant (a tombstone) serves nothing: its hosts are free again.
        let domain = tenant_domain(ctx.platform, t);
        let hosts = if t.is_removed() {
            Vec::new()
        } else {
            tenant_hosts(ctx.platform, t)
        };
        for host in hosts {
            let Some((first, first_alias)) = domains.insert(host.clone(), (path, host != domain))
            else {
                continue;
            };
            let what = match (host != domain, &t.domain) {
                (true, _) => format!(
                    "the `www.` alias `{host}` of this tenant's domain is used by two tenants"
                ),
                (false, Some(_)) => format!("domain `{domain}` is used by two tenants"),
                (false, None) => format!("derived domain `{domain}` is used by two tenants"),
            };
            let d = match &t.domain {
                Some(d) => at(path, d, what),
                None => at(path, &t.id, what),
            };
            let also = if first_alias {
                format!("also the `www.` alias of the tenant in {first}")
            } else {
                format!("also used by {first}")
            };
            diags.push(d.with_label(also));
        }
        if diags.len() != before {
            broken.insert(stem.clone());
        }
    }
}

/// The first shard of a region with room for one more tenant, given how many tenants each
/// shard holds: where the intake places a new tenant. Never fails: past the last shard in use
/// there is always an empty one.
pub fn first_shard_with_room(count: impl Fn(u32) -> u32, max_per_shard: u32) -> u32 {
    (0..)
        .find(|&n| count(n) < max_per_shard.max(1))
        .expect("an unbounded range has a shard with room")
}

/// No ApplicationSet shard may hold more than `argocd.maxTenantsPerShard` tenants. Shards are
/// recorded per tenant (so tenants never move); the intake always picks one with room, so this
/// catches hand-written placements. Reported once per full shard, at the first tenant (by
/// `created`, then id) beyond the limit. `tenants`: (file, tenant).
pub fn check_shards<'t>(
    platform: &Platform,
    tenants: impl IntoIterator<Item = (&'t str, &'t Tenant)>,
    diags: &mut Vec<Diagnostic>,
) {
    let mut placed: BTreeMap<(&str, u32), Vec<(&str, &Tenant)>> = BTreeMap::new();
    for (path, t) in tenants {
        // A removed tenant has no tree, so no Application: its place in the shard is free.
        if platform.regions.contains_key(&t.region.value) && !t.is_removed() {
            placed
                .entry((t.region.value.as_str(), t.shard()))
                .or_default()
                .push((path, t));
        }
    }
    let max = platform.argocd.max_tenants_per_shard.value.max(1);
    for ((region, shard), members) in &placed {
        let n = members.len();
        if n <= max as usize {
            continue;
        }
        let mut by_age = members.clone();
        by_age.sort_by(|a, b| (a.1.created, &a.1.id.value).cmp(&(b.1.created, &b.1.id.value)));
        let (path, first_over) = by_age[max as usize];
        let count = |s: u32| placed.get(&(*region, s)).map_or(0, |m| m.len() as u32);
        let free = first_shard_with_room(count, max);
        let message = format!(
            "ApplicationSet {} would hold {n} tenants, more than maxTenantsPerShard ({max})",
            naming::shard_name(region, *shard)
        );
        let d = match &first_over.shard {
            Some(s) => at(path, s, message),
            None => at(path, &first_over.id, message),
        };
        let later = n - max as usize - 1;
        let who = match later {
            0 => "this tenant does".to_owned(),
            1 => "this tenant and the one placed after it (by `created`) do".to_owned(),
            k => format!("this tenant and the {k} placed after it (by `created`) do"),
        };
        diags.push(
            d.with_label(format!(
                "{who} not fit in shard {shard} of `{region}`"
            ))
            .with_help(format!(
                "place {} with `shard: {free}`, the first shard of `{region}` with room (the intake places new tenants itself); never move a deployed tenant",
                if later == 0 { "it" } else { "them" }
            )),
        );
    }
}

/// The host names a tenant's Ingress and Certificate claim: its domain, and `www.` + its
/// domain when the platform serves the alias.
pub fn tenant_hosts(platform: &Platform, t: &Tenant) -> Vec<String> {
    let domain = tenant_domain(platform, t);
    if platform.ingress.www_alias {
        vec![format!("www.{domain}"), domain]
    } else {
        vec![domain]
    }
}

/// The tenant's public host name: its `domain`, or `<id>.<baseDomain>`.
pub fn tenant_domain(platform: &Platform, t: &Tenant) -> String {
    match &t.domain {
        Some(d) => d.value.clone(),
        None => format!("{}.{}", t.id.value, platform.base_domain.value),
    }
}

fn check_tenant(
    ctx: &TenantContext<'_>,
    stem: &str,
    path: &str,
    t: &Tenant,
    diags: &mut Vec<Diagnostic>,
) {
    let id = &t.id.value;
    let max_len =
        naming::MAX_TENANT_ID_LEN.min(63 - ctx.platform.namespace_prefix.value.len().min(62));
    if let Some(why) = naming::check_dns_name(id, max_len) {
        diags.push(at(path, &t.id, format!("invalid tenant id: it {why}")));
    }
    if id != stem {
        diags.push(
            at(
                path,
                &t.id,
                format!("tenant id `{id}` does not match its file name"),
            )
            .with_label(format!("expected `{stem}`"))
            .with_help(format!(
                "rename the file to `tenants/{id}.yaml` or fix the id"
            )),
        );
    }
    if t.name.trim().is_empty()
        || t.name.chars().count() > 200
        || t.name.chars().any(char::is_control)
    {
        diags.push(located(
            path,
            t.id.referenced,
            "`name` must be 1 to 200 printable characters",
        ));
    }
    let sub = &t.subscription.value;
    if sub.is_empty()
        || sub.len() > 128
        || !sub
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
    {
        diags.push(
            at(path, &t.subscription, "invalid subscription id")
                .with_label("expected 1 to 128 letters, digits, `_`, `-` or `.`"),
        );
    }
    for (role, email) in [
        ("admin", &t.contacts.admin),
        ("billing", &t.contacts.billing),
    ] {
        if !is_email(&email.value) {
            diags.push(
                at(
                    path,
                    email,
                    format!("invalid {role} e-mail `{}`", email.value),
                )
                .with_label("expected an address such as `admin@example.com`"),
            );
        }
    }
    check_cancellation(path, t, diags);
    super::lifecycle_rules::check_tenant(ctx.platform, path, t, diags);
    if t.is_removed() {
        // A tombstone renders nothing: its tier, region, domain, shard and overrides may name
        // what the registry no longer has (a retired tier); only its id, subscription and
        // records matter.
        return;
    }
    if !ctx.tiers.contains_key(&t.tier.value) {
        let mut d = at(path, &t.tier, format!("unknown tier `{}`", t.tier.value))
            .with_label(one_of(ctx.tiers.keys()));
        if let Some(s) = suggest(&t.tier.value, ctx.tiers.keys()) {
            d = d.with_help(s);
        }
        diags.push(d);
    }
    if !ctx.platform.regions.contains_key(&t.region.value) {
        let mut d = at(
            path,
            &t.region,
            format!("unknown region `{}`", t.region.value),
        )
        .with_label(one_of(ctx.platform.regions.keys()));
        if let Some(s) = suggest(&t.region.value, ctx.platform.regions.keys()) {
            d = d.with_help(s);
        }
        diags.push(d);
    }
    if let Some(shard) = &t.shard
        && shard.value > naming::MAX_SHARD
    {
        diags.push(
            at(path, shard, "invalid shard")
                .with_label(format!("expected 0 to {}", naming::MAX_SHARD)),
        );
    }
    if let Some(d) = &t.domain
        && (!naming::is_dns_subdomain(&d.value) || !d.value.contains('.') || d.value.len() > 240)
    {
        diags.push(
            at(path, d, format!("invalid domain `{}`", d.value))
                .with_label("expected a lower-case DNS name such as `shop.example.com`"),
        );
    }
    for (product, n) in &t.overrides.replicas {
        if !ctx.products.contains_key(product) {
            diags.push(unknown_product(ctx, path, product, n.referenced));
        }
        if n.value > 100 {
            diags.push(at(path, n, "too many replicas").with_label("expected 0 to 100"));
        }
    }
    if let Some(tier) = ctx.tiers.get(&t.tier.value) {
        super::headroom::check_tenant(t, tier, ctx.products, path, diags);
    }
    super::values::check_tenant_values(ctx.platform, ctx.products, path, t, diags);
    for (product, v) in &t.overrides.versions {
        if !ctx.products.contains_key(product) {
            diags.push(unknown_product(ctx, path, product, v.referenced));
        }
        if !is_image_tag(&v.value) {
            diags.push(at(
                path,
                v,
                format!("`{}` is not a valid image tag", v.value),
            ));
        }
    }
}

/// A `deprovisioning` tenant has its cancellation, whose deletion date follows its request.
fn check_cancellation(path: &str, t: &Tenant, diags: &mut Vec<Diagnostic>) {
    match (&t.status.value, &t.cancellation) {
        (TenantStatus::Deprovisioning, None) => diags.push(
            at(
                path,
                &t.status,
                "a deprovisioning tenant needs a `cancellation`",
            )
            .with_label("add `cancellation: {requested: …, deletion: …}`"),
        ),
        (_, Some(c)) if c.deletion.value < c.requested => diags.push(
            at(
                path,
                &c.deletion,
                "the deletion date is before the cancellation",
            )
            .with_label("expected a date after `requested`"),
        ),
        _ => {}
    }
}

fn unknown_product(
    ctx: &TenantContext<'_>,
    path: &str,
    product: &str,
    loc: serde_saphyr::Location,
) -> Diagnostic {
    let mut d = located(
        path,
        loc,
        format!("unknown product `{product}` in overrides"),
    )
    .with_label(one_of(ctx.products.keys()));
    if let Some(s) = suggest(product, ctx.products.keys()) {
        d = d.with_help(s);
    }
    d
}

/// A plain e-mail address (the consumers' rule).
pub use crate::consumers::is_email;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        for ok in ["6", "500m", "12Gi", "0.5", "1e3", "100M", "+1"] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "Gi", "12GB", "1.2.3", "abc", "1e", "five"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }

    #[test]
    fn emails() {
        assert!(is_email("admin@abc-corp.com"));
        assert!(is_email("josé@café.fr"));
        assert!(!is_email("admin@localhost"));
        assert!(!is_email("not-an-email"));
        assert!(!is_email("Bob <bob@example.com>"));
    }

    /// A tenant placed the way the intake places it: the first shard of its region with room.
    fn place(
        template: &Tenant,
        id: String,
        region_counts: &mut Vec<u32>,
        max: u32,
        created: chrono::DateTime<chrono::Utc>,
    ) -> Tenant {
        let shard =
            first_shard_with_room(|n| region_counts.get(n as usize).copied().unwrap_or(0), max);
        if region_counts.len() <= shard as usize {
            region_counts.resize(shard as usize + 1, 0);
        }
        region_counts[shard as usize] += 1;
        let here = serde_saphyr::Location::UNKNOWN;
        let mut t = template.clone();
        t.id = serde_saphyr::Spanned::new(id, here, here);
        t.shard = Some(serde_saphyr::Spanned::new(shard, here, here));
        t.created = created;
        t
    }

    /// Onboarding never blocks on shard capacity: 20,000 tenants in one region, placed one by
    /// one as the intake places them, all fit (40 ApplicationSets of 500) and the loader's
    /// rule accepts the result; when a third of them leave and the limit grows, nobody moves,
    /// and newcomers fill the gaps. Pure code, no disk: well under a second.
    #[test]
    fn twenty_thousand_tenants_in_one_region_never_block() {
        let reg = crate::testing::example_registry();
        let template = &reg.tenants[crate::testing::ACTIVE];
        let max = reg.platform.argocd.max_tenants_per_shard.value;
        assert_eq!(max, 500);
        let t0 = template.created;
        let mut counts = Vec::new();
        let mut tenants: Vec<Tenant> = (0..20_000)
            .map(|i| {
                let created = t0 + chrono::Duration::seconds(i);
                place(template, format!("t{i:05}"), &mut counts, max, created)
            })
            .collect();
        assert_eq!(counts, [500; 40]);
        let check = |tenants: &[Tenant], platform: &Platform| {
            let mut diags = Vec::new();
            check_shards(
                platform,
                tenants.iter().map(|t| ("tenants/t.yaml", t)),
                &mut diags,
            );
            diags
        };
        assert_eq!(check(&tenants, &reg.platform), []);

        let before: BTreeMap<String, u32> = tenants
            .iter()
            .map(|t| (t.id.value.clone(), t.shard()))
            .collect();
        tenants.retain(|t| t.id.value.trim_start_matches('t').parse::<u32>().unwrap() % 3 != 0);
        let mut platform = reg.platform.clone();
        platform.argocd.max_tenants_per_shard.value = 800;
        for t in &tenants {
            assert_eq!(before[&t.id.value], t.shard(), "{} moved", t.id.value);
        }
        let mut counts = vec![0u32; 40];
        for t in &tenants {
            counts[t.shard() as usize] += 1;
        }
        let end = t0 + chrono::Duration::seconds(20_000);
        for i in 0..5_000 {
            let t = place(template, format!("n{i:05}"), &mut counts, 800, end);
            tenants.push(t);
        }
        assert_eq!(check(&tenants, &platform), []);
        assert!(counts.iter().all(|&n| n <= 800));
        assert_eq!(counts.len(), 40, "newcomers filled the gaps, no new shard");
    }

    #[test]
    fn an_overfull_shard_is_an_error_at_the_first_tenant_past_the_limit() {
        let reg = crate::testing::example_registry();
        let template = &reg.tenants[crate::testing::ACTIVE];
        let here = serde_saphyr::Location::UNKNOWN;
        let tenants: Vec<Tenant> = (0..4)
            .map(|i| {
                let mut t = template.clone();
                t.id = serde_saphyr::Spanned::new(format!("t{i}"), here, here);
                t.created = template.created + chrono::Duration::days(4 - i);
                t
            })
            .collect();
        let mut platform = reg.platform.clone();
        platform.argocd.max_tenants_per_shard.value = 2;
        let mut diags = Vec::new();
        let paths = ["a.yaml", "b.yaml", "c.yaml", "d.yaml"];
        check_shards(&platform, paths.iter().copied().zip(&tenants), &mut diags);
        let [d] = &diags[..] else { panic!("{diags:?}") };
        assert_eq!(
            d.message,
            "ApplicationSet tenants-us-east-00 would hold 4 tenants, more than maxTenantsPerShard (2)"
        );
        // Oldest first: t3, t2 fit; t1 (b.yaml) is the first past the limit.
        assert_eq!(d.file, "b.yaml");
        assert_eq!(
            d.help.as_deref(),
            Some(
                "place them with `shard: 1`, the first shard of `us-east` with room (the intake places new tenants itself); never move a deployed tenant"
            )
        );
    }

    #[test]
    fn routing_keys() {
        assert!(is_routing_key("order.*"));
        assert!(is_routing_key("#"));
        assert!(!is_routing_key("order..x"));
        assert!(!is_routing_key("order.a*"));
    }
}
