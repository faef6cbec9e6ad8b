//! Names of the platform tools' objects and the rules of the systems they live in: GitLab
//! paths, branch and user names, Okta group names, Artifactory repository keys.
//!
//! Object names are parts joined by `--`. No part contains `--` (product, team and
//! environment names forbid it; [`slug`] collapses runs of `-`), so a name says which parts it
//! was made of: two different part lists never give the same name. A name longer than 63 is
//! cut and ends with 8 hex digits of SHA-256 over its parts ([`super::bounded`]). Names depend
//! only on what they name, never on the rest of the registry: renaming nothing keeps every
//! name, and adding a product renames nothing (property tests below).

use super::{DNS_LABEL_MAX, bounded, sha256_hex};

/// Prefix of the objects a team owns (`team--<team>`).
pub const TEAM: &str = "team";
/// Prefix of the objects the platform owns (`platform--root`).
pub const PLATFORM: &str = "platform";
/// Prefix of the objects an Okta group names (`okta--<group>`).
pub const OKTA: &str = "okta";
/// Product names that would make names read as the prefixes above.
pub const RESERVED_PRODUCT_NAMES: [&str; 3] = [TEAM, PLATFORM, OKTA];

/// An object name from its parts: `a--b--c`, at most 63 characters.
pub fn object_name(parts: &[&str]) -> String {
    bounded(&parts.join("--"), DNS_LABEL_MAX, '-', parts)
}

/// `x` as a name part: lower-cased, every run of characters other than `[a-z0-9]` replaced by
/// one `-`, trimmed; when that changed `x`, `-` and 6 hex digits of SHA-256(`x`) are appended,
/// so `Okta.Checkout` and `okta-checkout` never share a name. Never empty, never `--`.
pub fn slug(x: &str) -> String {
    let mut s = String::with_capacity(x.len());
    for c in x.to_lowercase().chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            s.push(c);
        } else if !s.is_empty() && !s.ends_with('-') {
            s.push('-');
        }
    }
    let s = s.trim_end_matches('-');
    if s == x {
        return s.to_owned();
    }
    let hash = &sha256_hex(&[x])[..6];
    if s.is_empty() {
        hash.to_owned()
    } else {
        format!("{s}-{hash}")
    }
}

/// The namespace of a product in an environment: `<product>-<env>`.
pub fn product_namespace(product: &str, env: &str) -> String {
    format!("{product}-{env}")
}

/// The Grafana uid of a product's service dashboard (Grafana uids are at most 40).
pub fn dashboard_uid(product: &str) -> String {
    bounded(&format!("{product}-svc"), 40, '-', &[product, "svc"])
}

/// Default key of a product's local repository of a package type.
pub fn local_key(product: &str, package_type: &str) -> String {
    format!("{product}-{package_type}-local")
}

/// Default key of a product's virtual repository of a package type.
pub fn virtual_key(product: &str, package_type: &str) -> String {
    format!("{product}-{package_type}")
}

/// The JFrog permission (its name in Artifactory) on a product's local repositories.
pub fn artifacts_permission(product: &str) -> String {
    format!("{product}-artifacts")
}

/// The JFrog permission on the remotes a product's virtual repositories aggregate.
pub fn remote_cache_permission(product: &str) -> String {
    format!("{product}-remote-cache")
}

/// Path words GitLab reserves below a namespace (projects and subgroups):
/// `PROJECT_WILDCARD_ROUTES` and `GROUP_ROUTES` of `lib/gitlab/path_regex.rb`.
pub const GITLAB_RESERVED_PATHS: [&str; 18] = [
    "-",
    "badges",
    "blame",
    "blob",
    "builds",
    "commits",
    "create",
    "create_dir",
    "edit",
    "files",
    "find_file",
    "new",
    "preview",
    "raw",
    "refs",
    "tree",
    "update",
    "wikis",
];

/// Why GitLab would refuse `s` as a path segment (group, project or user name), or `None`:
/// letters, digits, `_`, `.` and `-`, starting and ending with a letter or digit, no two
/// special characters in a row, not ending in `.git` or `.atom`, at most 255 (GitLab's
/// `doc/user/reserved_names.md`, `Gitlab::PathRegex`).
pub fn gitlab_path_refusal(s: &str) -> Option<&'static str> {
    let special = |c: u8| matches!(c, b'_' | b'.' | b'-');
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 255 {
        return Some("a path has 1 to 255 characters");
    }
    if !b.iter().all(|c| c.is_ascii_alphanumeric() || special(*c)) {
        return Some("a path has only letters, digits, `_`, `.` and `-`");
    }
    if special(b[0])
        || special(b[b.len() - 1])
        || b.windows(2).any(|w| special(w[0]) && special(w[1]))
        || s.ends_with(".git")
        || s.ends_with(".atom")
    {
        return Some(
            "a path starts and ends with a letter or digit, has no two special characters in a row and does not end in `.git` or `.atom`",
        );
    }
    None
}

/// Whether `s` is a path provisio accepts for the groups and projects it creates: lower-case
/// letters and digits in words joined by single `-`, at most 63 (GitLab also allows `_`, `.`
/// and capitals; provisio derives Kubernetes names from paths).
pub fn is_provisio_path(s: &str) -> bool {
    super::check_dns_name(s, DNS_LABEL_MAX).is_none()
}

/// Whether `s` is an Okta group name provisio accepts: 1 to 64 letters, digits, `.`, `_`, `-`,
/// starting with a letter or digit. The same string is the SAML group name in GitLab, the
/// Artifactory group name (at most 64) and, prefixed, the Kubernetes group.
pub fn is_okta_group(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// Whether `s` is an Artifactory repository key provisio accepts: a letter, then lower-case
/// letters, digits and `-`, at most 64, not ending in `-` (Artifactory: "1-64 alphanumeric and
/// hyphen characters"; lower case because the key is also the object's name).
pub fn is_repository_key(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1] != b'-'
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// Whether `s` is a git branch name (`git check-ref-format --branch`); with `wildcard`, `*`
/// is allowed too (GitLab protects `release/*`).
pub fn is_branch_name(s: &str, wildcard: bool) -> bool {
    let forbidden = |c: char| {
        c.is_ascii_control()
            || matches!(c, ' ' | '~' | '^' | ':' | '?' | '[' | '\\')
            || (c == '*' && !wildcard)
    };
    !s.is_empty()
        && s.len() <= 255
        && !s.starts_with('-')
        && s != "HEAD"
        && s != "@"
        && !s.chars().any(forbidden)
        && !s.contains("..")
        && !s.contains("@{")
        && !s.ends_with('.')
        && s.split('/')
            .all(|c| !c.is_empty() && !c.starts_with('.') && !c.ends_with(".lock"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn slugs_keep_clean_names_and_mark_changed_ones() {
        assert_eq!(slug("okta-checkout"), "okta-checkout");
        assert_eq!(slug("main"), "main");
        let s = slug("Okta.Checkout");
        assert!(
            s.starts_with("okta-checkout-") && s.len() == "okta-checkout-".len() + 6,
            "{s}"
        );
        assert_ne!(slug("release/*"), slug("release/**"));
        assert!(!slug("***").is_empty());
    }

    #[test]
    fn gitlab_paths() {
        for ok in ["orders", "orders-service", "a1", "Orders_Api", "a.b"] {
            assert_eq!(gitlab_path_refusal(ok), None, "{ok}");
        }
        for bad in [
            "",
            "-orders",
            "orders-",
            "orders.git",
            "a..b",
            "a_-b",
            "a b",
            "ö",
        ] {
            assert!(gitlab_path_refusal(bad).is_some(), "{bad}");
        }
        assert!(is_provisio_path("orders-service"));
        assert!(!is_provisio_path("Orders_Api"));
    }

    #[test]
    fn branches_okta_groups_and_keys() {
        assert!(is_branch_name("main", false));
        assert!(is_branch_name("release/*", true));
        assert!(!is_branch_name("release/*", false));
        for bad in ["main..x", "-x", "a.lock", "a/", "x.", "a b", "HEAD", "a@{b"] {
            assert!(!is_branch_name(bad, true), "{bad}");
        }
        assert!(is_okta_group("okta-checkout"));
        assert!(is_okta_group("Okta.Checkout_2"));
        assert!(!is_okta_group("Commerce Devs"));
        assert!(!is_okta_group("-x"));
        assert!(is_repository_key("orders-docker-local"));
        assert!(!is_repository_key("Orders_Docker"));
        assert!(!is_repository_key("1abc"));
    }

    fn part() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,15}(-[a-z0-9]{1,15}){0,4}"
    }

    proptest! {
        /// Object names are DNS labels, stable, and injective over part lists.
        #[test]
        fn object_names_are_labels_and_injective(
            a in prop::collection::vec(part(), 1..5),
            b in prop::collection::vec(part(), 1..5),
        ) {
            let na = object_name(&a.iter().map(String::as_str).collect::<Vec<_>>());
            let nb = object_name(&b.iter().map(String::as_str).collect::<Vec<_>>());
            prop_assert!(super::super::is_dns1123_label(&na), "{na}");
            prop_assert_eq!(&na, &object_name(&a.iter().map(String::as_str).collect::<Vec<_>>()));
            if a != b {
                prop_assert_ne!(na, nb);
            }
        }

        /// Slugs are name parts (no `--`, DNS label characters) and keep different inputs apart.
        #[test]
        fn slugs_are_parts(x in "[A-Za-z0-9._/*-]{1,40}", y in "[A-Za-z0-9._/*-]{1,40}") {
            let s = slug(&x);
            prop_assert!(super::super::is_dns1123_label(&s) && !s.contains("--"), "{x} → {s}");
            if x != y {
                prop_assert_ne!(s, slug(&y));
            }
        }
    }
}
