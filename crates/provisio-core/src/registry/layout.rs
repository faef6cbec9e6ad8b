//! The registry's file layout, in one place: which file is shared by every tenant
//! (`platform.yaml`, `tiers.yaml`, `products/<name>.yaml`, and `teams/<team>.yaml`, which the
//! loader needs to validate any registry although no tenant tree depends on it), which one is
//! a tenant (`tenants/<id>.yaml`), and where a tenant's file lives. The loader, the intake,
//! the serve writer and the state file's fingerprints all ask here.
//!
//! Readers (the directory reader, serve's reader of HEAD) pass *every* entry they find at a
//! registry path to the loader: an entry that is not a regular UTF-8 file is put in
//! [`Sources`] as the marker of its [`Unreadable`] kind, so that the loader reports it with
//! its path instead of the reader skipping it (a skipped tenant file looks like a deleted
//! tenant, and its tree would be removed).

/// Registry files by path relative to the registry root (`/`-separated).
pub type Sources = std::collections::BTreeMap<String, String>;

pub const PLATFORM_FILE: &str = "platform.yaml";
pub const TIERS_FILE: &str = "tiers.yaml";
pub const PRODUCTS_DIR: &str = "products";
pub const TENANTS_DIR: &str = "tenants";
/// `teams/<team>.yaml`: owners of the products' platform tools (docs/platform-tools.md).
pub const TEAMS_DIR: &str = "teams";
/// The directories holding one registry file per entry.
pub const ENTRY_DIRS: [&str; 3] = [PRODUCTS_DIR, TEAMS_DIR, TENANTS_DIR];

/// The text a reader puts in [`Sources`] for a file that is not UTF-8, so the loader reports
/// it (with its path) instead of the reader failing or skipping it.
pub const NOT_UTF8: &str = "\u{0}not-utf8";

/// An entry at a registry path that is not a regular UTF-8 file. Carried in [`Sources`] as
/// [`Unreadable::marker`] (text starting with NUL, which no YAML file can hold).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreadable {
    /// A file whose bytes are not UTF-8.
    NotUtf8,
    /// A symbolic link, with its target as written.
    Symlink(String),
    /// A directory.
    Directory,
    /// A FIFO, socket or device (its kind).
    Special(String),
    /// A git submodule (a commit in the tree).
    Submodule,
    /// A file where the registry expects a folder (`products`, `tenants`).
    NotAFolder,
}

impl Unreadable {
    /// The text a reader stores for this entry.
    pub fn marker(&self) -> String {
        match self {
            Unreadable::NotUtf8 => NOT_UTF8.to_owned(),
            Unreadable::Symlink(t) => format!("\u{0}symlink\u{0}{t}"),
            Unreadable::Directory => "\u{0}directory".to_owned(),
            Unreadable::Special(k) => format!("\u{0}special\u{0}{k}"),
            Unreadable::Submodule => "\u{0}submodule".to_owned(),
            Unreadable::NotAFolder => "\u{0}not-a-folder".to_owned(),
        }
    }

    /// The entry a source text stands for, when it is a marker.
    pub fn of(text: &str) -> Option<Unreadable> {
        let rest = text.strip_prefix('\u{0}')?;
        let (kind, detail) = rest.split_once('\u{0}').unwrap_or((rest, ""));
        Some(match kind {
            "not-utf8" => Unreadable::NotUtf8,
            "symlink" => Unreadable::Symlink(detail.to_owned()),
            "directory" => Unreadable::Directory,
            "special" => Unreadable::Special(detail.to_owned()),
            "submodule" => Unreadable::Submodule,
            "not-a-folder" => Unreadable::NotAFolder,
            _ => return None,
        })
    }
}

/// What one registry path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind<'a> {
    /// `platform.yaml`
    Platform,
    /// `tiers.yaml`
    Tiers,
    /// A file directly in `products/` (its name, which the loader checks).
    Product(&'a str),
    /// A file directly in `tenants/` (its name, which the loader checks).
    Tenant(&'a str),
    /// A file directly in `teams/` (its name, which the loader checks).
    Team(&'a str),
    /// Something deeper below `products/`, `teams/` or `tenants/` (its folder): never an
    /// entry, so the loader reports it instead of ignoring it.
    Misplaced(&'a str),
    /// Anything else: not read by the loader.
    Other,
}

impl FileKind<'_> {
    /// Every registry file but the tenants': platform, tiers and products (every tenant's
    /// output depends on them) and teams (no tenant tree depends on a team, but a registry
    /// whose products name teams validates only with them).
    pub fn is_shared(&self) -> bool {
        matches!(
            self,
            FileKind::Platform | FileKind::Tiers | FileKind::Product(_) | FileKind::Team(_)
        )
    }
}

/// Classifies a registry-relative path.
pub fn classify(path: &str) -> FileKind<'_> {
    if path == PLATFORM_FILE {
        return FileKind::Platform;
    }
    if path == TIERS_FILE {
        return FileKind::Tiers;
    }
    let in_dir = |dir: &str| {
        path.strip_prefix(dir)
            .and_then(|r| r.strip_prefix('/'))
            .filter(|name| !name.is_empty() && !name.contains('/'))
    };
    if let Some(name) = in_dir(PRODUCTS_DIR) {
        return FileKind::Product(name);
    }
    if let Some(name) = in_dir(TENANTS_DIR) {
        return FileKind::Tenant(name);
    }
    if let Some(name) = in_dir(TEAMS_DIR) {
        return FileKind::Team(name);
    }
    for dir in ENTRY_DIRS {
        if path
            .strip_prefix(dir)
            .and_then(|r| r.strip_prefix('/'))
            .is_some_and(|r| r.contains('/'))
        {
            return FileKind::Misplaced(dir);
        }
    }
    FileKind::Other
}

/// Whether a file of a registry tree (a git tree, a listing) is one the loader reads:
/// `platform.yaml`, `tiers.yaml`, or a file directly in an entry directory whose name does not
/// start with `.` (the directory reader's rule).
pub fn is_registry_file(path: &str) -> bool {
    let hidden = path.rsplit('/').next().is_some_and(|n| n.starts_with('.'));
    !hidden && classify(path) != FileKind::Other
}

/// `tenants/<id>.yaml`
pub fn tenant_path(id: &str) -> String {
    format!("{TENANTS_DIR}/{id}.yaml")
}

/// `products/<name>.yaml`
pub fn product_path(name: &str) -> String {
    format!("{PRODUCTS_DIR}/{name}.yaml")
}

/// `teams/<name>.yaml`
pub fn team_path(name: &str) -> String {
    format!("{TEAMS_DIR}/{name}.yaml")
}

/// The tenant id a tenant file stands for (its name without `.yaml`), or `None` for any
/// other path.
pub fn tenant_id_of(path: &str) -> Option<&str> {
    match classify(path) {
        FileKind::Tenant(name) => Some(name.strip_suffix(".yaml").unwrap_or(name)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_every_kind_of_path() {
        assert_eq!(classify("platform.yaml"), FileKind::Platform);
        assert_eq!(classify("tiers.yaml"), FileKind::Tiers);
        assert_eq!(
            classify("products/orders.yaml"),
            FileKind::Product("orders.yaml")
        );
        assert_eq!(classify("tenants/a-1.yaml"), FileKind::Tenant("a-1.yaml"));
        assert_eq!(
            classify("tenants/sub/a.yaml"),
            FileKind::Misplaced("tenants")
        );
        assert_eq!(classify("products/x/y/z"), FileKind::Misplaced("products"));
        assert_eq!(classify("teams/a/b.yaml"), FileKind::Misplaced("teams"));
        assert_eq!(
            classify("teams/commerce.yaml"),
            FileKind::Team("commerce.yaml")
        );
        assert!(classify("teams/commerce.yaml").is_shared());
        assert_eq!(team_path("commerce"), "teams/commerce.yaml");
        assert!(is_registry_file("teams/commerce.yaml"));
        assert!(is_registry_file("platform.yaml"));
        assert!(!is_registry_file("teams/.commerce.yaml.swp"));
        assert!(!is_registry_file(".gitlab-ci.yml"));
        assert_eq!(classify("tenants/"), FileKind::Other);
        assert_eq!(classify("README.md"), FileKind::Other);
        assert!(classify("products/x.yaml").is_shared());
        assert!(!classify("tenants/x.yaml").is_shared());
        assert_eq!(tenant_id_of("tenants/a-1.yaml"), Some("a-1"));
        assert_eq!(tenant_id_of("products/a.yaml"), None);
        assert_eq!(tenant_path("a-1"), "tenants/a-1.yaml");
    }

    #[test]
    fn unreadable_entries_round_trip_through_their_marker() {
        for u in [
            Unreadable::NotUtf8,
            Unreadable::Symlink("../x.yaml".into()),
            Unreadable::Directory,
            Unreadable::Special("FIFO".into()),
            Unreadable::Submodule,
            Unreadable::NotAFolder,
        ] {
            assert_eq!(Unreadable::of(&u.marker()), Some(u));
        }
        assert_eq!(Unreadable::of("id: x\n"), None);
    }
}
