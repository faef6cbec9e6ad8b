//! What an output commit changed (tenants added, updated, removed; whether `argocd/` moved)
//! and the commit message that says so, with why the regeneration happened and the registry
//! commit it was made from.

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
}

/// One commit made.
#[derive(Debug, Clone)]
pub struct CommitInfo {
    pub id: Oid,
    pub parent: Option<Oid>,
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
    let subject = if parts.is_empty() {
        if c.argocd {
            "provisio: update the Argo CD objects".to_owned()
        } else {
            "provisio: update the generator state".to_owned()
        }
    } else {
        let n = c.added.len() + c.updated.len() + c.removed.len();
        format!(
            "provisio: {} tenant{}",
            parts.join(", "),
            if n == 1 { "" } else { "s" }
        )
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
