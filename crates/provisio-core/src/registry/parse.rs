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
    FileKind, NOT_UTF8, PLATFORM_FILE, PRODUCTS_DIR, Sources, TEAMS_DIR, TENANTS_DIR, TIERS_FILE,
    classify,
};
use super::model::*;
use super::tools::Team;
use super::{headroom, rules, tools_rules};
use crate::diagnostic::{Diagnostic, Report};

/// What a load produced: the model when the shared files are sound, and all diagnostics.
#[derive(Debug)]
pub struct Loaded {
    /// `None` when `platform.yaml`, `tiers.yaml`, a product or a team is broken (nothing can
    /// render).
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
    let platform = required::<Platform>(&sources, PLATFORM_FILE, &mut diags);
    let tiers = required::<TiersFile>(&sources, TIERS_FILE, &mut diags).map(|t| t.tiers);

    if let Some(p) = &platform {
        rules::check_platform(p, PLATFORM_FILE, &mut diags);
    }
    if let Some(t) = &tiers {
        rules::check_tiers(t, TIERS_FILE, &mut diags);
    }

    let mut products = BTreeMap::new();
    let mut product_files_ok = true;
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
        if let Some(t) = &tiers {
            headroom::check_tiers(t, &products, TIERS_FILE, &mut diags);
        }
    }
    if products.is_empty() {
        diags.push(Diagnostic::file(
            PRODUCTS_DIR,
            "the registry defines no product: add at least one `products/<name>.yaml`",
        ));
    }

    let mut teams: BTreeMap<String, (String, Team)> = BTreeMap::new();
    let mut team_files_ok = true;
    for (path, text) in files_in(&sources, TEAMS_DIR) {
        let Some(stem) = yaml_stem(path, &mut diags) else {
            team_files_ok = false;
            continue;
        };
        match parse::<Team>(path, text) {
            Ok(t) => {
                teams.insert(stem.to_owned(), (path.to_owned(), t));
            }
            Err(d) => {
                diags.push(*d);
                team_files_ok = false;
            }
        }
    }

    let mut tenants: BTreeMap<String, (String, Tenant)> = BTreeMap::new();
    let mut broken = BTreeSet::new();
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
        rules::check_shards(
            platform,
            tenants.values().map(|(path, t)| (path.as_str(), t)),
            &mut diags,
        );
    }
    if let Some(platform) = &platform
        && product_files_ok
        && team_files_ok
    {
        let tenant_ids: BTreeSet<&str> =
            tenants.keys().chain(&broken).map(String::as_str).collect();
        tools_rules::check(
            &tools_rules::Context {
                platform,
                products: &products,
                teams: &teams,
                tenant_ids: &tenant_ids,
            },
            &mut diags,
        );
    }

    let registry = match (platform, tiers) {
        (Some(platform), Some(tiers))
            if product_files_ok && team_files_ok && !products.is_empty() =>
        {
            Some(Registry {
                platform,
                tiers,
                products: products.into_iter().map(|(k, (_, p))| (k, p)).collect(),
                tenants: tenants
                    .into_iter()
                    .filter(|(k, _)| !broken.contains(k))
                    .map(|(k, (_, t))| (k, t))
                    .collect(),
                teams: teams.into_iter().map(|(k, (_, t))| (k, t)).collect(),
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

fn files_in<'a>(sources: &'a Sources, dir: &str) -> impl Iterator<Item = (&'a str, &'a str)> {
    sources
        .iter()
        .filter(move |(k, _)| match classify(k) {
            FileKind::Product(_) => dir == PRODUCTS_DIR,
            FileKind::Tenant(_) => dir == TENANTS_DIR,
            FileKind::Team(_) => dir == TEAMS_DIR,
            _ => false,
        })
        .map(|(k, v)| (k.as_str(), v.as_str()))
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
    if text == NOT_UTF8 {
        return Err(Box::new(Diagnostic::file(
            path,
            "the file is not valid UTF-8",
        )));
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
