//! What the systems that consume provisio's names and values accept, one validator each:
//! S3 and MinIO (bucket names, object prefixes), DNS (hosts, domains), OCI registries
//! (image references), AWS Secrets Manager (secret names), RabbitMQ (routing keys) and
//! Kubernetes (quantities). The registry loader and the setup spec ([`crate::plan::setup`])
//! call the same functions, so `validate` accepts exactly what the consumers accept: a value
//! refused at sync time, after review and merge, is a value the loader refused first.
//!
//! Each `*_problem` function returns why a value is refused (to follow "… `value` …"), or
//! `None`. The rules, and where they come from:
//! - buckets: AWS S3 "General purpose bucket naming rules" (3–63 of `[a-z0-9.-]`, starting
//!   and ending with a letter or digit, no `..`, not formatted as an IP address, none of the
//!   reserved prefixes `xn--`, `sthree-`, `amzn-s3-demo-` and suffixes `-s3alias`,
//!   `--ol-s3`, `.mrap`, `--x-s3`, `--table-s3`) and MinIO's `s3utils.CheckValidBucketName`
//!   (`^(\d+\.){3}\d+$` is an IP address; `.-` and `-.` are refused too);
//! - hosts: RFC 1123 host names (labels of 1–63 letters, digits and `-`, not starting or
//!   ending with `-`, 253 at most) or an IPv4 address; IPv6 is refused because the setup
//!   clients build `http://host:port` URLs from it;
//! - image references: the grammar of `github.com/distribution/reference` (`name [":" tag]
//!   ["@" digest]`, path components `[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*`, tag
//!   `[\w][\w.-]{0,127}`, name at most 255 characters);
//! - secret names: AWS Secrets Manager's (1–512 of ASCII letters, digits and `/_+=.@-`),
//!   without `.` or `..` segments (the keys are paths);
//! - quantities: Kubernetes' `resource.Quantity` grammar; quota values must not be
//!   negative and object counts must be whole numbers (`ValidateResourceQuantityValue`,
//!   `IsIntegerResourceName`).

/// Bucket-name prefixes S3 reserves.
pub const BUCKET_RESERVED_PREFIXES: &[&str] = &["xn--", "sthree-", "amzn-s3-demo-"];
/// Bucket-name suffixes S3 reserves.
pub const BUCKET_RESERVED_SUFFIXES: &[&str] =
    &["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"];

/// Whether `s` is formatted like an IPv4 address (MinIO's `^(\d+\.){3}\d+$`): a name such as
/// `999.1.1.1` is refused even though it is no address.
fn looks_like_ipv4(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Why S3 or MinIO would refuse the bucket name `s`.
pub fn bucket_problem(s: &str) -> Option<String> {
    let b = s.as_bytes();
    if !(3..=63).contains(&b.len()) {
        return Some(format!("is {} characters long; S3 takes 3 to 63", b.len()));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '.' || *c == '-'))
    {
        return Some(format!(
            "contains `{c}`; S3 takes lower-case letters, digits, `.` and `-`"
        ));
    }
    if !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return Some("must start and end with a letter or digit".to_owned());
    }
    if let Some(bad) = ["..", ".-", "-."].into_iter().find(|p| s.contains(p)) {
        return Some(format!("contains `{bad}`, which S3 and MinIO refuse"));
    }
    if looks_like_ipv4(s) {
        return Some("is formatted as an IP address".to_owned());
    }
    if let Some(p) = BUCKET_RESERVED_PREFIXES.iter().find(|p| s.starts_with(*p)) {
        return Some(format!("starts with `{p}`, a prefix S3 reserves"));
    }
    if let Some(x) = BUCKET_RESERVED_SUFFIXES.iter().find(|x| s.ends_with(*x)) {
        return Some(format!("ends with `{x}`, a suffix S3 reserves"));
    }
    None
}

/// Why an object-key prefix (a bucket's `publicPrefix`, made readable by anonymous users
/// through a bucket policy on `<bucket>/<prefix>*`) is refused: 1–200 of `[a-z0-9._/-]`,
/// ending with `/`, not starting with `/`, no empty, `.` or `..` segment, no wildcard.
pub fn object_prefix_problem(p: &str) -> Option<String> {
    if p.is_empty() || p.len() > 200 {
        return Some("must be 1 to 200 characters".to_owned());
    }
    if let Some(c) = p.chars().find(|c| {
        !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '/' | '-'))
    }) {
        return Some(format!(
            "contains `{c}`; use lower-case letters, digits, `.`, `_`, `-` and `/`"
        ));
    }
    if !p.ends_with('/') {
        return Some("must end with `/` (a folder, such as `public/`)".to_owned());
    }
    if p.starts_with('/') {
        return Some("must not start with `/`".to_owned());
    }
    if p[..p.len() - 1]
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Some("must not have an empty, `.` or `..` segment".to_owned());
    }
    None
}

/// Whether `s` is a host name per RFC 1123 (letters of either case).
fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// Why a service host (MySQL, MinIO, RabbitMQ) is refused: a DNS name or an IPv4 address.
pub fn host_problem(h: &str) -> Option<String> {
    if h.parse::<std::net::Ipv4Addr>().is_ok() {
        return None;
    }
    if h.parse::<std::net::Ipv6Addr>().is_ok() || h.starts_with('[') {
        return Some(
            "is an IPv6 address; use a DNS name (the setup clients build `http://host:port` URLs)"
                .to_owned(),
        );
    }
    if looks_like_ipv4(h) {
        return Some("looks like an IPv4 address but is not one".to_owned());
    }
    if !is_host_name(h) {
        return Some(
            "is not a DNS name: labels of 1 to 63 letters, digits and `-`, not starting or ending with `-`, separated by `.`"
                .to_owned(),
        );
    }
    None
}

/// Why a secret-store key (or key prefix) is refused by AWS Secrets Manager, or would be an
/// ambiguous path.
pub fn secret_key_problem(k: &str) -> Option<String> {
    if k.len() > 512 {
        return Some(format!(
            "is {} characters long; AWS Secrets Manager takes 512",
            k.len()
        ));
    }
    if let Some(c) = k
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "/_+=.@-".contains(*c)))
    {
        return Some(format!(
            "contains `{c}`; secret names take ASCII letters, digits and `/_+=.@-`"
        ));
    }
    if k.split('/').any(|seg| seg == "." || seg == "..") {
        return Some("must not have a `.` or `..` segment".to_owned());
    }
    None
}

/// A topic routing key or binding pattern: words of `[A-Za-z0-9_-]`, or `*`/`#`, split by
/// `.`; at most 255 bytes (AMQP's short string).
pub fn is_routing_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.split('.').all(|w| {
            w == "*"
                || w == "#"
                || (!w.is_empty()
                    && w.bytes()
                        .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-'))
        })
}

/// An image tag: `[\w][\w.-]{0,127}`.
pub fn is_image_tag(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// A path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn is_path_component(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            i += 1;
            continue;
        }
        // A separator: `.`, `_`, `__` or a run of `-`, between alphanumerics.
        let start = i;
        match c {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if b.get(i) == Some(&b'_') {
                    i += 1;
                }
            }
            b'-' => {
                while b.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start
            || !b
                .get(i)
                .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            return false;
        }
    }
    true
}

/// `host[:port]` where host is a domain name, an IPv4 address or `[IPv6]`.
fn is_registry_domain(s: &str) -> bool {
    let (host, port) = match s.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((v6, tail)) => {
                if v6.parse::<std::net::Ipv6Addr>().is_err() {
                    return false;
                }
                ("v6", tail.strip_prefix(':'))
            }
            None => return false,
        },
        None => match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        },
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let host_ok = host == "v6"
        || host.split('.').all(|c| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !c.starts_with('-')
                && !c.ends_with('-')
        });
    port_ok && host_ok
}

/// Why an image reference (`registry/path:tag`, `…@sha256:…`) is refused by the OCI
/// distribution reference grammar.
pub fn image_reference_problem(r: &str) -> Option<String> {
    let (rest, digest) = match r.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (r, None),
    };
    // The tag follows the last `:` after the last `/` (a `:` before it is a port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if name.is_empty() {
        return Some("has no repository name".to_owned());
    }
    if name.len() > 255 {
        return Some(format!(
            "has a name of {} characters; at most 255",
            name.len()
        ));
    }
    let mut components: Vec<&str> = name.split('/').collect();
    let first = components[0];
    let is_domain = components.len() > 1
        && (first.contains('.')
            || first.contains(':')
            || first == "localhost"
            || first.bytes().any(|b| b.is_ascii_uppercase()));
    if is_domain {
        if !is_registry_domain(first) {
            return Some(format!("has an invalid registry host `{first}`"));
        }
        components.remove(0);
    }
    if let Some(c) = components.iter().find(|c| !is_path_component(c)) {
        return Some(format!(
            "has an invalid path component `{c}`: lower-case letters and digits, separated by `.`, `_`, `__` or `-`"
        ));
    }
    if let Some(t) = tag
        && !is_image_tag(t)
    {
        return Some(format!(
            "has an invalid tag `{t}`: letters, digits, `_`, `.` and `-`, at most 128, not starting with `.` or `-`"
        ));
    }
    if let Some(d) = digest {
        let ok = d.split_once(':').is_some_and(|(alg, hex)| {
            alg.split(['+', '.', '-', '_']).all(|c| {
                c.starts_with(|x: char| x.is_ascii_alphabetic())
                    && c.bytes().all(|b| b.is_ascii_alphanumeric())
            }) && hex.len() >= 32
                && hex.bytes().all(|b| b.is_ascii_hexdigit())
        });
        if !ok {
            return Some(format!("has an invalid digest `{d}`"));
        }
    }
    None
}

/// The value of a Kubernetes quantity in its base unit (cores, bytes, objects), or `None`
/// when `s` is not a quantity. Precise enough to compare and to bound.
pub fn quantity_value(s: &str) -> Option<f64> {
    let (sign, body) = match s.strip_prefix('-') {
        Some(b) => (-1.0, b),
        None => (1.0, s.strip_prefix('+').unwrap_or(s)),
    };
    let end = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (num, suffix) = body.split_at(end);
    if num.is_empty() || num.matches('.').count() > 1 || !num.chars().any(|c| c.is_ascii_digit()) {
        return None;
    }
    let n: f64 = num.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => {
            let exp = &e[1..];
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            10f64.powi(exp.parse::<i32>().ok()?)
        }
        _ => return None,
    };
    Some(sign * n * factor)
}

/// Kubernetes quantities are 63-bit signed integers of their smallest unit: a value whose
/// milli-units do not fit is refused (`resource.Quantity` overflows).
pub const QUANTITY_MAX: f64 = 9.2e15;

/// Why a ResourceQuota `hard` value (or a limit) is refused by Kubernetes: negative, too
/// large to represent, or a fraction where an object count is expected.
pub fn quota_value_problem(resource: &str, value: &str) -> Option<String> {
    let v = quantity_value(value)?;
    if v < 0.0 {
        return Some("must not be negative".to_owned());
    }
    if v > QUANTITY_MAX {
        return Some("is larger than Kubernetes can hold".to_owned());
    }
    if is_count_resource(resource) && v.fract() != 0.0 {
        return Some(format!(
            "is not a whole number: `{resource}` counts objects"
        ));
    }
    None
}

/// Resources Kubernetes counts in whole objects (`IsIntegerResourceName`).
pub fn is_count_resource(resource: &str) -> bool {
    resource.starts_with("count/")
        || matches!(
            resource,
            "pods"
                | "services"
                | "replicationcontrollers"
                | "resourcequotas"
                | "secrets"
                | "configmaps"
                | "persistentvolumeclaims"
                | "services.nodeports"
                | "services.loadbalancers"
        )
}

/// A plain e-mail address (no display name), ASCII or internationalised.
pub fn is_email(s: &str) -> bool {
    s.len() <= 254
        && !s.contains(['<', '>', ' '])
        && s.split_once('@').is_some_and(|(_, d)| d.contains('.'))
        && email_address::EmailAddress::is_valid(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_s3_and_minio() {
        for ok in ["abc-corporation-7f3a9c-products", "a1b", "my.bucket"] {
            assert_eq!(bucket_problem(ok), None, "{ok}");
        }
        for (bad, why) in [
            ("ab", "3 to 63"),
            ("Abc", "contains `A`"),
            ("-abc", "start and end"),
            ("a..b", "`..`"),
            ("a.-b", "`.-`"),
            ("a-.b", "`-.`"),
            ("192.168.5.4", "IP address"),
            ("999.1.1.1", "IP address"),
            ("xn--abc", "`xn--`"),
            ("sthree-shop-1a2b3c-media", "`sthree-`"),
            ("sthree-configurator-x", "`sthree-`"),
            ("amzn-s3-demo-bucket", "`amzn-s3-demo-`"),
            ("shop-1a2b3c-s3alias", "`-s3alias`"),
            ("shop--ol-s3", "`--ol-s3`"),
            ("shop.mrap", "`.mrap`"),
            ("shop--x-s3", "`--x-s3`"),
            ("shop--table-s3", "`--table-s3`"),
        ] {
            let p = bucket_problem(bad).unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(p.contains(why), "{bad}: {p}");
        }
    }

    #[test]
    fn hosts_are_dns_names_or_ipv4() {
        for ok in [
            "mysql.e-commerce-shared.svc.cluster.local",
            "10.0.0.5",
            "MinIO.example.com",
            "localhost",
        ] {
            assert_eq!(host_problem(ok), None, "{ok}");
        }
        for bad in [
            "",
            "-mysql",
            "mysql-",
            "a..b",
            "my_sql",
            "::1",
            "[::1]",
            "999.1.1.1",
            "a b",
        ] {
            assert!(host_problem(bad).is_some(), "{bad}");
        }
        assert!(host_problem(&"a".repeat(64)).is_some());
    }

    #[test]
    fn image_references_follow_the_distribution_grammar() {
        for ok in [
            "registry.collectverything.com/ecommerce/orders:v1.2.3",
            "registry.collectverything.com/platform/provisio:0.1.0",
            "localhost:5000/a/b__c/d-e---f:latest",
            "nginx",
            "docker.io/library/nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "[::1]:5000/x:y",
        ] {
            assert_eq!(image_reference_problem(ok), None, "{ok}");
        }
        for bad in [
            "registry.example.com/Orders:v1",
            "registry.example.com/orders:v1 beta",
            "registry.example.com//orders:v1",
            "registry.example.com/orders.:v1",
            "registry.example.com/orders:.v1",
            "-registry.example.com/x:y",
            "registry.example.com/x@sha256:abc",
            "registry.example.com/orders:",
            ":tag",
        ] {
            assert!(image_reference_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn prefixes_keys_and_quantities() {
        assert_eq!(object_prefix_problem("public/"), None);
        assert_eq!(object_prefix_problem("media/public/"), None);
        for bad in [
            "", "public", "/public/", "Public/", "a//b/", "../x/", "pub*/", "a b/",
        ] {
            assert!(object_prefix_problem(bad).is_some(), "{bad}");
        }
        assert_eq!(secret_key_problem("/e-commerce/tenants"), None);
        for bad in ["a b", "x/../y", "é", &"k".repeat(513)] {
            assert!(secret_key_problem(bad).is_some(), "{bad}");
        }
        assert_eq!(quantity_value("500m"), Some(0.5));
        assert_eq!(quantity_value("1Gi"), Some(1073741824.0));
        assert_eq!(quantity_value("1e3"), Some(1000.0));
        assert_eq!(quantity_value("-2"), Some(-2.0));
        assert_eq!(quantity_value("12GB"), None);
        assert_eq!(quota_value_problem("requests.cpu", "6"), None);
        assert!(quota_value_problem("requests.cpu", "-1").is_some());
        assert!(quota_value_problem("pods", "10.5").is_some());
        assert!(quota_value_problem("count/jobs.batch", "500m").is_some());
        assert!(quota_value_problem("limits.memory", "100E").is_some());
    }
}
