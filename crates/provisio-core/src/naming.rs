//! Every derived name: tenant ids from company names, and the names a tenant gets in
//! Kubernetes, MySQL, S3/MinIO and RabbitMQ. Pure functions; each result obeys its system's
//! rules (proven by the property tests at the bottom of this file).
//!
//! Rules enforced here:
//! - tenant id: DNS-1123 label, `[a-z0-9]+(-[a-z0-9]+)*`, at most [`MAX_TENANT_ID_LEN`];
//! - namespace: DNS-1123 label, at most 63;
//! - MySQL database: at most 64 characters of `[a-z0-9_]`; MySQL 8.0 user: at most 32;
//! - S3 bucket: S3's and MinIO's rules ([`crate::consumers::bucket_problem`]: 3–63, no
//!   reserved prefix or suffix, not an IP); a tenant id never starts like a reserved prefix;
//! - RabbitMQ vhost / queue / exchange: printable ASCII without `/`, at most 255 bytes.
//!
//! Where a readable name would be too long it is cut and ends with 8 hex digits of a SHA-256
//! over the unambiguous parts, so two different inputs never share a name by truncation.

use sha2::{Digest, Sha256};

pub mod platform;

/// Longest slug kept from a company name (the seed's 20).
pub const MAX_SLUG_LEN: usize = 20;
/// Longest tenant id: `e-commerce-` (11) + id must stay a 63-character DNS label.
pub const MAX_TENANT_ID_LEN: usize = 52;
/// Longest product name (it prefixes object names such as `<product>-db-credentials` and
/// secret-store keys `…/<product>-db`).
pub const MAX_PRODUCT_NAME_LEN: usize = 40;
/// MySQL 8.0 user names.
pub const MYSQL_USER_MAX: usize = 32;
/// MySQL database names.
pub const MYSQL_DB_MAX: usize = 64;
/// S3 bucket names.
pub const BUCKET_MAX: usize = 63;
/// Kubernetes label values and DNS-1123 labels.
pub const DNS_LABEL_MAX: usize = 63;

pub(crate) fn sha256_hex(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update([0u8]);
        }
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Lower-case ASCII slug of a company name: transliterated (`Café Crème` → `cafe-creme`,
/// `AT&T` → `at-t`), runs of anything else become one `-`, at most [`MAX_SLUG_LEN`]
/// characters, never starting or ending with `-`. Empty input gives `tenant`.
pub fn slugify(name: &str) -> String {
    let ascii = deunicode::deunicode(name).to_ascii_lowercase();
    let mut slug = String::with_capacity(ascii.len());
    for c in ascii.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    slug.truncate(MAX_SLUG_LEN);
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() {
        "tenant".to_owned()
    } else {
        slug.to_owned()
    }
}

/// Hex digits of the tenant id suffix when there is no collision.
pub const SUFFIX_LEN: usize = 6;
/// The longest suffix [`tenant_id_candidates`] goes to (slug 20 + `-` + 16 = 37 ≤ 52).
pub const MAX_SUFFIX_LEN: usize = 16;

/// Six hex digits derived from the subscription id: stable, so a retried webhook yields the
/// same tenant id.
pub fn tenant_suffix(subscription: &str) -> String {
    sha256_hex(&[subscription])[..SUFFIX_LEN].to_owned()
}

/// `ABC Corporation` + `sub_abc123` → `abc-corporation-<6 hex>`.
pub fn tenant_id(company_name: &str, subscription: &str) -> String {
    format!(
        "{}-{}",
        tenant_slug(company_name),
        tenant_suffix(subscription)
    )
}

/// [`slugify`], made safe as the start of bucket names: a slug with which `<id>-<bucket>`
/// would begin with a prefix S3 reserves (`sthree-`, `amzn-s3-demo-`; `xn--` cannot occur,
/// a slug never holds `--`) gets `t-` in front, so no customer is refused for their name.
pub fn tenant_slug(name: &str) -> String {
    let slug = slugify(name);
    let with_dash = format!("{slug}-");
    if crate::consumers::BUCKET_RESERVED_PREFIXES
        .iter()
        .any(|p| with_dash.starts_with(p))
    {
        let mut safe = format!("t-{slug}");
        safe.truncate(MAX_SLUG_LEN);
        safe.trim_end_matches('-').to_owned()
    } else {
        slug
    }
}

/// The ids a new tenant may get, in order of preference: [`tenant_id`] first, then the same
/// slug with 8, 10, … up to [`MAX_SUFFIX_LEN`] hex digits of the *same* hash of the
/// subscription. Two customers whose names give the same slug and whose subscriptions share
/// the first six digits therefore still get distinct ids, and the choice is deterministic:
/// the first candidate no other subscription holds (the intake's rule).
pub fn tenant_id_candidates(company_name: &str, subscription: &str) -> Vec<String> {
    let slug = tenant_slug(company_name);
    let hash = sha256_hex(&[subscription]);
    (SUFFIX_LEN..=MAX_SUFFIX_LEN)
        .step_by(2)
        .map(|n| format!("{slug}-{}", &hash[..n]))
        .collect()
}

/// Why a string is not a valid tenant id (or product name), or `None` when it is.
pub fn check_dns_name(s: &str, max: usize) -> Option<String> {
    if s.is_empty() {
        return Some("must not be empty".to_owned());
    }
    if s.len() > max {
        return Some(format!(
            "is {} characters long, at most {max} allowed",
            s.len()
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Some(format!(
            "contains `{c}`; only lower-case letters, digits and `-` are allowed"
        ));
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Some("must start and end with a letter or digit".to_owned());
    }
    if s.contains("--") {
        return Some("must not contain `--`".to_owned());
    }
    None
}

/// Whether `s` is a DNS-1123 label (Kubernetes object and namespace names).
pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= DNS_LABEL_MAX
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Whether `s` is a DNS name made of DNS-1123 labels (a host name; at most 253).
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// `readable` if it fits in `max`, otherwise its first characters, cut at a clean boundary,
/// then `sep` and 8 hex digits of SHA-256 over `key` (the unambiguous parts).
pub(crate) fn bounded(readable: &str, max: usize, sep: char, key: &[&str]) -> String {
    if readable.len() <= max {
        return readable.to_owned();
    }
    let hash = &sha256_hex(key)[..8];
    let keep = max - 1 - hash.len();
    let head = readable[..keep].trim_end_matches(['-', '_', '.']);
    format!("{head}{sep}{hash}")
}

/// Tenant namespace: `<prefix><tenant-id>`.
pub fn namespace(prefix: &str, tenant: &str) -> String {
    format!("{prefix}{tenant}")
}

/// Name of the Argo CD Application of a tenant.
pub fn application(tenant: &str) -> String {
    format!("tenant-{tenant}")
}

fn underscored(s: &str) -> String {
    s.replace('-', "_")
}

/// MySQL database of one product of one tenant: `<tenant>__<product>` with `-` → `_`
/// (the double underscore keeps `a-b`+`c` apart from `a`+`b-c`), at most 64 characters.
pub fn mysql_database(tenant: &str, product: &str) -> String {
    let readable = format!("{}__{}", underscored(tenant), underscored(product));
    bounded(&readable, MYSQL_DB_MAX, '_', &["db", tenant, product])
}

/// MySQL user of one product of one tenant, at most 32 characters (MySQL 8.0's limit; the
/// seed's `abc_corporation_7f3a9c_products_user` is 36 and would be refused).
pub fn mysql_user(tenant: &str, product: &str) -> String {
    let readable = format!("{}__{}", underscored(tenant), underscored(product));
    bounded(&readable, MYSQL_USER_MAX, '_', &["user", tenant, product])
}

/// S3/MinIO bucket: `<tenant>-<short>`; `short` is `[a-z0-9]+` (validated by the loader), so
/// the last `-` separates tenant and bucket unambiguously.
pub fn bucket(tenant: &str, short: &str) -> String {
    let readable = format!("{tenant}-{short}");
    bounded(&readable, BUCKET_MAX, '-', &["bucket", tenant, short])
}

/// MinIO user (access key) of a tenant.
pub fn minio_user(tenant: &str) -> String {
    format!("{tenant}-app")
}

/// RabbitMQ virtual host of a tenant.
pub fn rabbitmq_vhost(tenant: &str) -> String {
    tenant.to_owned()
}

/// RabbitMQ user of a tenant.
pub fn rabbitmq_user(tenant: &str) -> String {
    format!("{tenant}-app")
}

/// The tenant's topic exchange.
pub fn rabbitmq_exchange(tenant: &str) -> String {
    format!("{tenant}.events")
}

/// A product's queue in the tenant vhost.
pub fn rabbitmq_queue(tenant: &str, product: &str) -> String {
    format!("{tenant}.{product}")
}

/// Secret-store key holding one credential set of a tenant: `<prefix>/<tenant>/<purpose>`.
pub fn remote_key(prefix: &str, tenant: &str, purpose: &str) -> String {
    format!("{}/{tenant}/{purpose}", prefix.trim_end_matches('/'))
}

/// Whether a bucket name obeys the S3 and MinIO naming rules
/// ([`crate::consumers::bucket_problem`] says why not).
pub fn is_valid_bucket(s: &str) -> bool {
    crate::consumers::bucket_problem(s).is_none()
}

/// Whether a name is a valid MySQL identifier we are willing to create: `[a-z0-9_]`, 1..=max.
pub fn is_valid_mysql_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
}

/// Highest ApplicationSet shard number of a region (`tenants-<region>-9999`).
pub const MAX_SHARD: u32 = 9999;

/// Name of an ApplicationSet shard: `tenants-<region>-<nn>` (at least two digits).
pub fn shard_name(region: &str, shard: u32) -> String {
    format!("tenants-{region}-{shard:02}")
}

/// The file of a tenant tree that the ApplicationSet `shard` reads (its git files generator's
/// parameters): `config.<shard>.json`. Its name carries the shard, so each ApplicationSet's
/// pattern matches its own tenants' files only.
pub fn shard_config_file(shard: &str) -> String {
    format!("config.{shard}.json")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn seed_examples() {
        assert_eq!(slugify("ABC Corporation"), "abc-corporation");
        assert_eq!(slugify("Café Crème"), "cafe-creme");
        assert_eq!(slugify("AT&T"), "at-t");
        assert_eq!(slugify("  ---  "), "tenant");
        assert_eq!(slugify("東京 Trading"), "dong-jing-trading");
        // Truncation at 20 never leaves a trailing `-`.
        assert_eq!(
            slugify("International Business Machines"),
            "international-busine"
        );
        assert_eq!(slugify("Abcdefghijklmnopqrs Tuv"), "abcdefghijklmnopqrs");
        let id = tenant_id("ABC Corporation", "sub_abc123");
        assert!(id.starts_with("abc-corporation-"));
        assert_eq!(id.len(), "abc-corporation-".len() + 6);
        assert_eq!(id, tenant_id("ABC Corporation", "sub_abc123"), "stable");
        assert_ne!(id, tenant_id("ABC Corporation", "sub_other"));
    }

    #[test]
    fn names_that_start_like_a_reserved_bucket_prefix_are_made_safe() {
        assert_eq!(tenant_slug("Sthree Ltd"), "t-sthree-ltd");
        assert_eq!(tenant_slug("STHREE"), "t-sthree");
        assert_eq!(tenant_slug("Amzn S3 Demo Shop"), "t-amzn-s3-demo-shop");
        assert_eq!(tenant_slug("Sthreed"), "sthreed");
        let id = tenant_id("Sthree Configurator GmbH", "sub_1");
        assert!(id.starts_with("t-sthree-configurat"), "{id}");
        assert!(is_valid_bucket(&bucket(&id, "media")));
    }

    #[test]
    fn colliding_suffixes_extend_from_the_same_hash() {
        // Constructed collision: both subscriptions hash to 44b014… (then 536b / 0789).
        let (a, b) = ("sub_c566", "sub_c1748");
        assert_eq!(tenant_suffix(a), tenant_suffix(b));
        assert_eq!(tenant_id("Acme Shop", a), tenant_id("ACME shop!", b));
        let ca = tenant_id_candidates("Acme Shop", a);
        let cb = tenant_id_candidates("ACME shop!", b);
        assert_eq!(ca[0], tenant_id("Acme Shop", a));
        assert_eq!(ca[1], "acme-shop-44b01453");
        assert_eq!(cb[1], "acme-shop-44b01407");
        assert_eq!(
            cb.last().unwrap().len(),
            "acme-shop-".len() + MAX_SUFFIX_LEN
        );
        for id in &cb {
            assert!(check_dns_name(id, MAX_TENANT_ID_LEN).is_none(), "{id}");
        }
    }

    #[test]
    fn seed_user_name_now_fits_mysql() {
        let u = mysql_user("abc-corporation-7f3a9c", "products");
        assert_eq!(u, "abc_corporation_7f3a9c__products");
        assert!(u.len() <= 32);
        let u = mysql_user("abc-corporation-7f3a9c", "newsletters");
        assert!(u.len() <= 32, "{u}");
        assert!(u.starts_with("abc_corporation_7f3a9c"), "{u}");
        assert_eq!(
            mysql_database("abc-corporation-7f3a9c", "products"),
            "abc_corporation_7f3a9c__products"
        );
    }

    #[test]
    fn separators_keep_names_apart() {
        assert_ne!(mysql_database("a-b", "c"), mysql_database("a", "b-c"));
        assert_ne!(mysql_user("a-b", "c"), mysql_user("a", "b-c"));
    }

    fn tenant_ids() -> impl Strategy<Value = String> {
        (any::<String>(), "[a-zA-Z0-9_]{1,40}").prop_map(|(n, s)| tenant_id(&n, &s))
    }

    fn product_names() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9]{0,12}(-[a-z0-9]{1,12}){0,3}"
    }

    proptest! {
        #[test]
        fn tenant_ids_are_dns_labels(name in any::<String>(), sub in ".{1,60}") {
            for id in tenant_id_candidates(&name, &sub) {
                prop_assert!(check_dns_name(&id, MAX_TENANT_ID_LEN).is_none(), "{id}");
                prop_assert!(is_dns1123_label(&namespace("e-commerce-", &id)));
                prop_assert!(application(&id).len() <= DNS_LABEL_MAX);
            }
        }

        #[test]
        fn slugs_are_clean(name in any::<String>()) {
            let s = slugify(&name);
            prop_assert!(!s.is_empty() && s.len() <= MAX_SLUG_LEN);
            prop_assert!(!s.starts_with('-') && !s.ends_with('-') && !s.contains("--"), "{s}");
        }

        #[test]
        fn derived_names_fit_their_systems(
            t in "[a-z0-9]{1,20}(-[a-z0-9]{1,20}){0,4}",
            p in product_names(),
            b in "[a-z0-9]{1,30}",
        ) {
            prop_assume!(t.len() <= MAX_TENANT_ID_LEN);
            // Ids and short names the loader refuses (S3-reserved prefixes and suffixes).
            prop_assume!(!["sthree-", "amzn-s3-demo-"].iter().any(|p| format!("{t}-").starts_with(p)));
            prop_assume!(b != "s3alias");
            let db = mysql_database(&t, &p);
            prop_assert!(is_valid_mysql_name(&db, MYSQL_DB_MAX), "{db}");
            let user = mysql_user(&t, &p);
            prop_assert!(is_valid_mysql_name(&user, MYSQL_USER_MAX), "{user}");
            let bucket = bucket(&t, &b);
            prop_assert!(is_valid_bucket(&bucket), "{bucket}");
            let vhost = rabbitmq_vhost(&t);
            prop_assert!(!vhost.contains('/') && vhost.len() <= 255);
            prop_assert!(rabbitmq_queue(&t, &p).len() <= 255);
        }

        #[test]
        fn derived_names_are_injective(
            t1 in tenant_ids(), t2 in tenant_ids(), p1 in product_names(), p2 in product_names(),
        ) {
            prop_assume!((&t1, &p1) != (&t2, &p2));
            prop_assert_ne!(mysql_database(&t1, &p1), mysql_database(&t2, &p2));
            prop_assert_ne!(mysql_user(&t1, &p1), mysql_user(&t2, &p2));
        }

        #[test]
        fn shard_names_are_object_names(region in "[a-z][a-z0-9-]{0,28}[a-z0-9]", n in 0..=MAX_SHARD) {
            let name = shard_name(&region, n);
            prop_assert!(is_dns1123_label(&name), "{name}");
            prop_assert!(shard_name(&region, n) != shard_name(&region, n + 1));
        }

        #[test]
        fn intake_ids_give_buckets_s3_accepts(name in any::<String>(), sub in ".{1,60}", b in "[a-z0-9]{1,20}") {
            prop_assume!(b != "s3alias");
            for id in tenant_id_candidates(&name, &sub) {
                let bucket = bucket(&id, &b);
                prop_assert!(is_valid_bucket(&bucket), "{bucket}");
            }
        }
    }
}
