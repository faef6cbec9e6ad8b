//! Loading: registry files → [`Registry`] plus *every* diagnostic. Parsing and checking work
//! on in-memory sources ([`load_sources`]), so the webhook and the tests can validate a
//! candidate registry without touching disk (the `provisio` crate reads the directory).
//!
//! Architecture Invariant: the loader never stops at the first problem. A broken tenant file
//! is reported and listed in [`Loaded::broken_tenants`], never silently dropped, so that no
//! caller can mistake it for a deleted tenant.

use std::collections::{BTreeMap, BTreeSet};

use serde::de::DeserializeOwned;

use super::layout::{
    FileKind, PLATFORM_FILE, PRODUCTS_DIR, Sources, TENANTS_DIR, TIERS_FILE, Unreadable, classify,
};
use super::model::*;
use super::rules;
use crate::diagnostic::{Diagnostic, Report};

/// What a load produced: the model when the shared files are sound, and all diagnostics.
#[derive(Debug)]
pub struct Loaded {
    /// `None` when `platform.yaml`, `tiers.yaml` or a product is broken (nothing can render).
    /// Otherwise the registry of every tenant that is valid.
    pub registry: Option<Registry>,
    pub report: Report,
    /// Tenant ids (file stems) whose file has an error: they are *not* deleted tenants.
    pub broken_tenants: BTreeSet<String>,
}

impl Loaded {
    /// The registry, or the report when anything at all is wrong.
    pub fn into_result(self) -> Result<Registry, Report> {
        match self.registry {
            Some(r) if self.report.is_empty() => Ok(r),
            _ => Err(self.report),
        }
    }
}

/// Parses and checks every file; returns the model and every diagnostic.
pub fn load_sources(sources: Sources) -> Loaded {
    let mut diags = Vec::new();
    let mut broken = BTreeSet::new();
    let mut product_files_ok = true;
    // Every entry that is not a registry file the loader can read is reported, never
    // skipped: a skipped tenant file would look like a deleted tenant.
    for (path, text) in &sources {
        if let Some(d) = refused_entry(path, text) {
            diags.push(d);
            match classify(path) {
                FileKind::Tenant(name) => {
                    broken.insert(name.strip_suffix(".yaml").unwrap_or(name).to_owned());
                }
                FileKind::Product(_) => product_files_ok = false,
                _ => {}
            }
        }
    }
    let platform = required::<Platform>(&sources, PLATFORM_FILE, &mut diags);
    let tiers = required::<TiersFile>(&sources, TIERS_FILE, &mut diags).map(|t| t.tiers);

    if let Some(p) = &platform {
        rules::check_platform(p, PLATFORM_FILE, &mut diags);
    }
    if let Some(t) = &tiers {
        rules::check_tiers(t, TIERS_FILE, &mut diags);
    }

    let mut products = BTreeMap::new();
    for (path, text) in files_in(&sources, PRODUCTS_DIR) {
        let Some(stem) = yaml_stem(path, &mut diags) else {
            product_files_ok = false;
            continue;
        };
        match parse::<Product>(path, text) {
            Ok(p) => {
                let before = diags.len();
                rules::check_product(&p, stem, path, &mut diags);
                product_files_ok &= diags.len() == before;
                products.insert(stem.to_owned(), (path.to_owned(), p));
            }
            Err(d) => {
                diags.push(*d);
                product_files_ok = false;
            }
        }
    }
    if product_files_ok {
        rules::check_products_together(&products, &mut diags);
    }
    if products.is_empty() {
        diags.push(Diagnostic::file(
            PRODUCTS_DIR,
            "the registry defines no product: add at least one `products/<name>.yaml`",
        ));
    }

    let mut tenants: BTreeMap<String, (String, Tenant)> = BTreeMap::new();
    for (path, text) in files_in(&sources, TENANTS_DIR) {
        let Some(stem) = yaml_stem(path, &mut diags) else {
            continue;
        };
        match parse::<Tenant>(path, text) {
            Ok(t) => {
                tenants.insert(stem.to_owned(), (path.to_owned(), t));
            }
            Err(d) => {
                diags.push(*d);
                broken.insert(stem.to_owned());
            }
        }
    }
    if let (Some(platform), Some(tiers)) = (&platform, &tiers) {
        let ctx = rules::TenantContext {
            platform,
            tiers,
            products: &products,
        };
        rules::check_tenants(&ctx, &mut tenants, &mut broken, &mut diags);
        rules::check_shards(platform, tenants.values().map(|(_, t)| t), &mut diags);
    }

    let registry = match (platform, tiers) {
        (Some(platform), Some(tiers)) if product_files_ok && !products.is_empty() => {
            Some(Registry {
                platform,
                tiers,
                products: products.into_iter().map(|(k, (_, p))| (k, p)).collect(),
                tenants: tenants
                    .into_iter()
                    .filter(|(k, _)| !broken.contains(k))
                    .map(|(k, (_, t))| (k, t))
                    .collect(),
            })
        }
        _ => None,
    };
    Loaded {
        registry,
        report: Report {
            diagnostics: diags,
            sources,
        },
        broken_tenants: broken,
    }
}

/// The files of `dir` the loader reads (those [`refused_entry`] reported are left out).
fn files_in<'a>(sources: &'a Sources, dir: &str) -> impl Iterator<Item = (&'a str, &'a str)> {
    let products = dir == PRODUCTS_DIR;
    sources
        .iter()
        .filter(move |(k, v)| {
            let wanted = match classify(k) {
                FileKind::Product(_) => products,
                FileKind::Tenant(_) => !products,
                _ => false,
            };
            wanted && refused_entry(k, v).is_none()
        })
        .map(|(k, v)| (k.as_str(), v.as_str()))
}

/// Why an entry of the registry is not a file the loader reads, when it is not: a link, a
/// directory, a special file, a submodule, a hidden file, a file in a subdirectory of
/// `products/` or `tenants/`. (`platform.yaml` and `tiers.yaml` are reported by [`parse`],
/// a file that is not UTF-8 too.)
fn refused_entry(path: &str, text: &str) -> Option<Diagnostic> {
    let (dir, what) = match classify(path) {
        FileKind::Platform | FileKind::Tiers => return None,
        FileKind::Misplaced(dir) => {
            return Some(
                Diagnostic::file(path, format!("file in a subdirectory of `{dir}/`")).with_help(
                    format!(
                        "the registry reads only the files directly in `{dir}/`: move it there, or out of the registry"
                    ),
                ),
            );
        }
        FileKind::Product(name) if name.starts_with('.') => (PRODUCTS_DIR, None),
        FileKind::Tenant(name) if name.starts_with('.') => (TENANTS_DIR, None),
        FileKind::Product(_) => (PRODUCTS_DIR, Some("product")),
        FileKind::Tenant(_) => (TENANTS_DIR, Some("tenant")),
        FileKind::Other => ("", Some("file")),
    };
    let unreadable = Unreadable::of(text).filter(|u| *u != Unreadable::NotUtf8);
    match (unreadable, what) {
        (Some(u), what) => Some(unreadable_diagnostic(path, &u, dir, what.unwrap_or("file"))),
        (None, None) => Some(
            Diagnostic::file(path, format!("hidden file in `{dir}/`")).with_help(format!(
                "a name starting with `.` is never read: rename it to `<name>.yaml`, or move it out of `{dir}/`"
            )),
        ),
        (None, Some(_)) => None,
    }
}

fn unreadable_diagnostic(path: &str, u: &Unreadable, dir: &str, what: &str) -> Diagnostic {
    match u {
        Unreadable::Symlink(target) => Diagnostic::file(
            path,
            format!("symbolic link in the registry (to `{target}`)"),
        )
        .with_help(
            "registry files and folders must be real files and directories: git stores a link as a link, so `provisio serve` would see the link and not the file; replace it by the file itself",
        ),
        Unreadable::Directory if !dir.is_empty() => {
            Diagnostic::file(path, format!("directory in `{dir}/`")).with_help(format!(
                "`{dir}/` holds one `<name>.yaml` file per {what}; nothing is read from subdirectories"
            ))
        }
        Unreadable::Directory => Diagnostic::file(path, "directory where the registry expects a file"),
        Unreadable::Special(kind) => {
            Diagnostic::file(path, format!("{kind} in the registry, not a regular file"))
                .with_help("remove it")
        }
        Unreadable::Submodule => {
            Diagnostic::file(path, "git submodule in the registry, not a file").with_help("remove it")
        }
        Unreadable::NotAFolder => Diagnostic::file(
            path,
            format!("a file where the registry expects the folder `{path}/`"),
        )
        .with_help("nothing in it is read: make it a directory of `<name>.yaml` files"),
        Unreadable::NotUtf8 => Diagnostic::file(path, "the file is not valid UTF-8"),
    }
}

/// `tenants/abc.yaml` → `abc`; anything not ending in `.yaml` is an error (a stray `.yml`
/// would otherwise be a tenant silently ignored).
fn yaml_stem<'a>(path: &'a str, diags: &mut Vec<Diagnostic>) -> Option<&'a str> {
    let name = path.rsplit('/').next().unwrap_or(path);
    match name.strip_suffix(".yaml") {
        Some(stem) if !stem.is_empty() => Some(stem),
        _ => {
            diags.push(
                Diagnostic::file(path, "unexpected file in the registry")
                    .with_help("registry files end with `.yaml`; rename it or move it away"),
            );
            None
        }
    }
}

fn required<T: DeserializeOwned>(
    sources: &Sources,
    path: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<T> {
    let Some(text) = sources.get(path) else {
        diags.push(Diagnostic::file(path, format!("missing `{path}`")));
        return None;
    };
    parse(path, text).map_err(|d| diags.push(*d)).ok()
}

/// Deserializes one file, turning a parser error into a positioned diagnostic.
pub fn parse<T: DeserializeOwned>(path: &str, text: &str) -> Result<T, Box<Diagnostic>> {
    if let Some(u) = Unreadable::of(text) {
        return Err(Box::new(unreadable_diagnostic(path, &u, "", "file")));
    }
    if text.trim().is_empty() {
        return Err(Box::new(Diagnostic::file(path, "the file is empty")));
    }
    serde_saphyr::from_str::<T>(text).map_err(|e| {
        let message = bare_message(&e);
        Box::new(match e.location() {
            Some(loc) if loc.line() > 0 => Diagnostic::at(path, loc, message),
            _ => Diagnostic::file(path, message),
        })
    })
}

/// The parser's message without its own location prefix and snippet.
fn bare_message(e: &serde_saphyr::Error) -> String {
    let s = e.without_snippet().to_string();
    let s = s.strip_prefix("error: ").unwrap_or(&s);
    let s = match s.strip_prefix("line ") {
        // "line 3 column 1: unknown field …"
        Some(rest) => rest.split_once(": ").map(|(_, m)| m).unwrap_or(rest),
        None => s,
    };
    let s = s.lines().next().unwrap_or(s).trim();
    // Scanner messages end with their own " at line N, column M": the diagnostic says it.
    match s.rfind(" at line ") {
        Some(i) if s[i..].contains(", column ") => s[..i].to_owned(),
        _ => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{ACTIVE, example_sources};

    /// What git gives a reader (nested paths, links, submodules) is reported like what the
    /// directory reader gives: every refused entry is a diagnostic naming its path, and a
    /// tenant file among them is listed as broken, never as deleted.
    #[test]
    fn every_entry_the_loader_does_not_read_is_reported() {
        let mut sources = example_sources();
        let active = sources.remove(&format!("tenants/{ACTIVE}.yaml")).unwrap();
        sources.insert(format!("tenants/archive/{ACTIVE}.yaml"), active.clone());
        sources.insert(format!("tenants/.{ACTIVE}.yaml"), active);
        sources.insert(
            "tenants/linked-1a2b3c.yaml".into(),
            Unreadable::Symlink("../x.yaml".into()).marker(),
        );
        sources.insert(
            "tenants/module-1a2b3c.yaml".into(),
            Unreadable::Submodule.marker(),
        );
        sources.insert("products/deep/orders.yaml".into(), "name: orders\n".into());
        let loaded = load_sources(sources);
        let found: Vec<(String, String)> = loaded
            .report
            .diagnostics
            .iter()
            .map(|d| (d.file.clone(), d.message.clone()))
            .collect();
        let expected = [
            (
                "products/deep/orders.yaml",
                "file in a subdirectory of `products/`",
            ),
            (
                "tenants/.abc-corporation-7f3a9c.yaml",
                "hidden file in `tenants/`",
            ),
            (
                "tenants/archive/abc-corporation-7f3a9c.yaml",
                "file in a subdirectory of `tenants/`",
            ),
            (
                "tenants/linked-1a2b3c.yaml",
                "symbolic link in the registry (to `../x.yaml`)",
            ),
            (
                "tenants/module-1a2b3c.yaml",
                "git submodule in the registry, not a file",
            ),
        ];
        assert_eq!(
            found,
            expected.map(|(f, m)| (f.to_owned(), m.to_owned())).to_vec()
        );
        assert!(loaded.broken_tenants.contains("linked-1a2b3c"));
        assert!(loaded.broken_tenants.contains("module-1a2b3c"));
    }

    #[test]
    fn a_file_where_a_folder_belongs_is_reported() {
        let mut sources: Sources = example_sources()
            .into_iter()
            .filter(|(k, _)| !k.starts_with("tenants/"))
            .collect();
        sources.insert("tenants".into(), Unreadable::NotAFolder.marker());
        let loaded = load_sources(sources);
        assert_eq!(
            loaded.report.diagnostics[0].message,
            "a file where the registry expects the folder `tenants/`"
        );
    }
}
