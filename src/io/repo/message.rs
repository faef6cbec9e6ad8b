//! What an output commit changed (tenants added, updated, removed; the products and teams
//! whose platform tools changed; whether `argocd/` moved) and the commit message that says so,
//! with why the regeneration happened and the registry commit it was made from.

use std::collections::BTreeSet;

use super::Oid;

/// At most this many tenant ids are listed per line of a commit message.
const MAX_LISTED: usize = 25;

/// Why a regeneration happened, for the commit message.
#[derive(Debug, Clone, Default)]
pub struct Why {
    /// What triggered it, e.g. "tenants/acme-1a2b3c.yaml changed".
    pub trigger: String,
    /// The registry's commit, when the registry is a git repository.
    pub registry_commit: Option<String>,
    /// The registry directory, to tell whether another writer's output was made from a newer
    /// registry commit than `registry_commit` (see `ops::deliver`).
    pub registry: Option<std::path::PathBuf>,
}

/// The `Registry-Commit:` trailer of an output commit's message.
pub fn registry_commit_of(message: &str) -> Option<&str> {
    message
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("Registry-Commit: "))
        .map(str::trim)
}

/// What a commit changed, read from the trees (so it is true even for a commit that picks up
/// files left by an interrupted run).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: BTreeSet<String>,
    pub updated: BTreeSet<String>,
    pub removed: BTreeSet<String>,
    pub argocd: bool,
    /// The platform tree (`platform-out/`).
    pub platform: PlatformChanges,
}

/// What changed in the platform tree: owners whose objects appeared, changed or went (products
/// by name, teams as `team <name>`), and whether platform-wide objects changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlatformChanges {
    pub added: BTreeSet<String>,
    pub updated: BTreeSet<String>,
    pub removed: BTreeSet<String>,
    /// The tools namespace, the GitLab root group, the remotes, the JFrog groups.
    pub shared: bool,
}

impl PlatformChanges {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.updated.is_empty() && self.removed.is_empty() && !self.shared
    }
}

/// At most this many products and teams are named in a subject.
const MAX_IN_SUBJECT: usize = 3;

/// `platform tools: add payments; update orders` (or counts when there are many).
fn platform_subject(p: &PlatformChanges) -> String {
    let sets = [
        ("add", &p.added),
        ("update", &p.updated),
        ("remove", &p.removed),
    ];
    let named: usize = sets.iter().map(|(_, s)| s.len()).sum();
    let parts: Vec<String> = if named == 0 {
        vec!["update platform-wide objects".to_owned()]
    } else if named <= MAX_IN_SUBJECT {
        sets.iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(verb, s)| {
                format!(
                    "{verb} {}",
                    s.iter().cloned().collect::<Vec<_>>().join(", ")
                )
            })
            .collect()
    } else {
        let count = |n: usize, what: &str| match n {
            0 => None,
            1 => Some(format!("1 {what}")),
            n => Some(format!("{n} {what}s")),
        };
        sets.iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(verb, s)| {
                let teams = s.iter().filter(|o| o.starts_with("team ")).count();
                let counts: Vec<String> = [count(s.len() - teams, "product"), count(teams, "team")]
                    .into_iter()
                    .flatten()
                    .collect();
                format!("{verb} {}", counts.join(", "))
            })
            .collect()
    };
    format!("platform tools: {}", parts.join("; "))
}

/// One commit made.
#[derive(Debug, Clone)]
pub struct CommitInfo {
    pub id: Oid,
    pub parent: Option<Oid>,
    /// Every path the commit's tree edits set on its parent's tree, when they are all it
    /// changed ([`super::index::changes_of`]); `None`: a tree was built whole or replaced.
    pub paths: Option<Vec<super::index::PathEdit>>,
    pub changes: Changes,
    pub message: String,
}

/// Files changed by a commit, root-relative.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileChanges {
    pub added: Vec<String>,
    pub modified: Vec<String>,
    pub removed: Vec<String>,
}

/// The commit message: a subject counting tenants added/updated/removed, the lists, the
/// trigger, and the registry commit as a trailer.
pub fn commit_message(c: &Changes, why: &Why) -> String {
    let mut parts = Vec::new();
    for (n, verb) in [
        (c.added.len(), "add"),
        (c.updated.len(), "update"),
        (c.removed.len(), "remove"),
    ] {
        if n > 0 {
            parts.push(format!("{verb} {n}"));
        }
    }
    let tenants = (!parts.is_empty()).then(|| {
        let n = c.added.len() + c.updated.len() + c.removed.len();
        format!(
            "{} tenant{}",
            parts.join(", "),
            if n == 1 { "" } else { "s" }
        )
    });
    let platform = (!c.platform.is_empty()).then(|| platform_subject(&c.platform));
    let subject = match (tenants, platform) {
        (Some(t), Some(p)) => format!("provisio: {t}; {p}"),
        (Some(t), None) => format!("provisio: {t}"),
        (None, Some(p)) => format!("provisio: {p}"),
        (None, None) if c.argocd => "provisio: update the Argo CD objects".to_owned(),
        (None, None) => "provisio: update the generator state".to_owned(),
    };
    let mut m = format!("{subject}\n\n");
    let list = |set: &BTreeSet<String>| {
        let mut s = set
            .iter()
            .take(MAX_LISTED)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if set.len() > MAX_LISTED {
            s.push_str(&format!(" … and {} more", set.len() - MAX_LISTED));
        }
        s
    };
    for (label, set) in [
        ("Added", &c.added),
        ("Updated", &c.updated),
        ("Removed", &c.removed),
    ] {
        if !set.is_empty() {
            m.push_str(&format!("{label}: {}\n", list(set)));
        }
    }
    for (label, set) in [
        ("Platform tools added", &c.platform.added),
        ("Platform tools updated", &c.platform.updated),
        ("Platform tools removed", &c.platform.removed),
    ] {
        if !set.is_empty() {
            m.push_str(&format!("{label}: {}\n", list(set)));
        }
    }
    if c.platform.shared {
        m.push_str("Platform-wide platform tools (platform-out/tools) updated\n");
    }
    if c.argocd {
        m.push_str("Argo CD objects (argocd/) updated\n");
    }
    if !why.trigger.is_empty() {
        m.push_str(&format!("Why: {}\n", why.trigger));
    }
    if let Some(r) = &why.registry_commit {
        m.push_str(&format!("\nRegistry-Commit: {r}\n"));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_counts_and_lists_tenants_and_names_the_registry_commit() {
        let c = Changes {
            added: ["a".to_owned()].into(),
            updated: ["b".to_owned(), "c".to_owned()].into(),
            removed: BTreeSet::new(),
            argocd: true,
            platform: PlatformChanges::default(),
        };
        let m = commit_message(
            &c,
            &Why {
                trigger: "tenants/a.yaml changed".into(),
                registry_commit: Some("abc123".into()),
                registry: None,
            },
        );
        assert_eq!(registry_commit_of(&m), Some("abc123"));
        assert_eq!(
            m,
            "provisio: add 1, update 2 tenants\n\nAdded: a\nUpdated: b, c\nArgo CD objects (argocd/) updated\nWhy: tenants/a.yaml changed\n\nRegistry-Commit: abc123\n"
        );
    }

    #[test]
    fn platform_changes_are_named_in_the_subject_and_listed() {
        let c = Changes {
            updated: ["abc".to_owned()].into(),
            platform: PlatformChanges {
                added: ["payments".to_owned()].into(),
                removed: ["baskets".to_owned()].into(),
                ..PlatformChanges::default()
            },
            argocd: true,
            ..Changes::default()
        };
        let m = commit_message(&c, &Why::default());
        assert_eq!(
            m,
            "provisio: update 1 tenant; platform tools: add payments; remove baskets\n\nUpdated: abc\nPlatform tools added: payments\nPlatform tools removed: baskets\nArgo CD objects (argocd/) updated\n"
        );
        let many = Changes {
            platform: PlatformChanges {
                updated: (0..5).map(|i| format!("p{i}")).collect(),
                shared: true,
                ..PlatformChanges::default()
            },
            ..Changes::default()
        };
        let m = commit_message(&many, &Why::default());
        assert!(
            m.starts_with("provisio: platform tools: update 5 products\n"),
            "{m}"
        );
        assert!(
            m.contains("Platform-wide platform tools (platform-out/tools) updated\n"),
            "{m}"
        );
        let shared = Changes {
            platform: PlatformChanges {
                shared: true,
                ..PlatformChanges::default()
            },
            ..Changes::default()
        };
        assert!(
            commit_message(&shared, &Why::default())
                .starts_with("provisio: platform tools: update platform-wide objects\n")
        );
    }

    #[test]
    fn long_lists_are_cut() {
        let c = Changes {
            updated: (0..30).map(|i| format!("t{i:02}")).collect(),
            ..Changes::default()
        };
        let m = commit_message(&c, &Why::default());
        assert!(m.starts_with("provisio: update 30 tenants\n"), "{m}");
        assert!(m.contains("t24 … and 5 more\n"), "{m}");
    }
}
