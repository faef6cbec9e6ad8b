//! Loading: registry files → [`Registry`] plus *every* diagnostic. Parsing and checking work
//! on in-memory sources ([`load_sources`]), so the webhook and the tests can validate a
//! candidate registry without touching disk (the `provisio` crate reads the directory).
//!
//! Architecture Invariant: the loader never stops at the first problem. A broken tenant file
//! is reported and listed in [`Loaded::broken_tenants`], never silently dropped, so that no
//! caller can mistake it for a deleted tenant.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use serde::de::DeserializeOwned;
use serde_saphyr::{MessageFormatter, UserMessageFormatter};

use super::layout::{
    FileKind, PLATFORM_FILE, PRODUCTS_DIR, Sources, TEAMS_DIR, TENANTS_DIR, TIERS_FILE, Unreadable,
    classify,
};
use super::model::*;
use super::tools::Team;
use super::{headroom, lifecycle_rules, rules, tools_rules, values};
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
        values::check_platform_values(p, &sources[PLATFORM_FILE], PLATFORM_FILE, &mut diags);
    }
    if let Some(t) = &tiers {
        rules::check_tiers(t, TIERS_FILE, &mut diags);
        values::check_tier_values(t, TIERS_FILE, &mut diags);
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
                values::check_product_values(
                    &p,
                    platform.as_ref(),
                    tiers.as_ref(),
                    text,
                    path,
                    &mut diags,
                );
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
    if let Some(p) = &platform {
        lifecycle_rules::check_settings(p, &products, PLATFORM_FILE, &mut diags);
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
    let tenant_files: Vec<(&str, &str)> = files_in(&sources, TENANTS_DIR).collect();
    for ((path, _), parsed) in tenant_files.iter().zip(parse_all::<Tenant>(&tenant_files)) {
        let Some(stem) = yaml_stem(path, &mut diags) else {
            continue;
        };
        match parsed {
            Ok(t) => {
                tenants.insert(stem.to_owned(), ((*path).to_owned(), t));
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

/// The files of `dir` the loader reads (those [`refused_entry`] reported are left out).
fn files_in<'a>(sources: &'a Sources, dir: &str) -> impl Iterator<Item = (&'a str, &'a str)> {
    sources
        .iter()
        .filter(move |(k, v)| {
            let wanted = match classify(k) {
                FileKind::Product(_) => dir == PRODUCTS_DIR,
                FileKind::Tenant(_) => dir == TENANTS_DIR,
                FileKind::Team(_) => dir == TEAMS_DIR,
                _ => false,
            };
            wanted && refused_entry(k, v).is_none()
        })
        .map(|(k, v)| (k.as_str(), v.as_str()))
}

/// Why an entry of the registry is not a file the loader reads, when it is not: a link, a
/// directory, a special file, a submodule, a hidden file, a file in a subdirectory of
/// `products/`, `teams/` or `tenants/`. (`platform.yaml` and `tiers.yaml` are reported by [`parse`],
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
        FileKind::Team(name) if name.starts_with('.') => (TEAMS_DIR, None),
        FileKind::Product(_) => (PRODUCTS_DIR, Some("product")),
        FileKind::Tenant(_) => (TENANTS_DIR, Some("tenant")),
        FileKind::Team(_) => (TEAMS_DIR, Some("team")),
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
/// Files below this many are parsed on the calling thread: a thread costs more than it saves.
const PARALLEL_FROM: usize = 256;

/// [`parse`] of each `(path, text)` of `files`, in their order, on every core: parsing 10,000
/// tenant files is a third of a `generate` that finds nothing to do (BENCHMARKS.md, issue 13,
/// fifth round). Each file is parsed on its own, so the results (and the diagnostics made
/// from them, in this order) are those of a loop over `files`.
fn parse_all<T: DeserializeOwned + Send>(
    files: &[(&str, &str)],
) -> Vec<Result<T, Box<Diagnostic>>> {
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    if workers < 2 || files.len() < PARALLEL_FROM {
        return files.iter().map(|(p, t)| parse::<T>(p, t)).collect();
    }
    let chunk = files.len().div_ceil(workers);
    std::thread::scope(|scope| {
        let parts: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(p, t)| parse::<T>(p, t))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|h| match h.join() {
                Ok(v) => v,
                // A parser panic is a bug; carry it to the caller as a loop would have.
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

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

/// The parser's message in the registry's terms, without its location (the diagnostic
/// carries it).
fn bare_message(e: &serde_saphyr::Error) -> String {
    let s = RegistryMessages.format_message(e).into_owned();
    let s = s.lines().next().unwrap_or(&s).trim();
    // Scanner messages end with their own " at line N, column M": the diagnostic says it.
    match s.rfind(" at line ") {
        Some(i) if s[i..].contains(", column ") => s[..i].to_owned(),
        _ => s.to_owned(),
    }
}

/// serde-saphyr's messages said in the registry's terms. Its default wording is meant for
/// the developer calling it ("invalid u32", "duplicate mapping key: tier, set
/// DuplicateKeyPolicy in Options if acceptable", "expected struct Tenant"); a registry
/// author needs to read what the value should be. Everything not rephrased here goes to
/// the library's own user-facing formatter.
struct RegistryMessages;

impl MessageFormatter for RegistryMessages {
    fn format_message<'a>(&self, err: &'a serde_saphyr::Error) -> Cow<'a, str> {
        use serde_saphyr::Error as E;
        match err {
            E::WithSnippet { error, .. } => self.format_message(error),
            E::InvalidScalar { ty, .. } => Cow::Owned(format!("expected {}", expected_value(ty))),
            E::SerdeInvalidType {
                unexpected,
                expected,
                ..
            }
            | E::SerdeInvalidValue {
                unexpected,
                expected,
                ..
            } => Cow::Owned(format!(
                "expected {}, found {}",
                expected_value(expected),
                found_value(unexpected)
            )),
            E::DuplicateMappingKey { key: Some(k), .. } => {
                Cow::Owned(format!("`{k}` is given twice in this mapping"))
            }
            E::DuplicateMappingKey { key: None, .. } => {
                Cow::Borrowed("a key is given twice in this mapping")
            }
            E::Unexpected { expected, .. } => {
                Cow::Owned(format!("expected {}", expected_value(expected)))
            }
            E::NullIntoString { .. } => Cow::Borrowed("expected a text value, found nothing"),
            E::Message { msg, .. } if CHRONO_MESSAGES.contains(&msg.as_str()) => Cow::Borrowed(
                "expected a date and time such as `2025-01-15T10:00:00Z` (RFC 3339, with its offset)",
            ),
            _ => UserMessageFormatter.format_message(err),
        }
    }
}

/// chrono's parse errors (`ParseErrorKind`), which reach us as custom messages: only the
/// registry's dates are parsed with chrono.
const CHRONO_MESSAGES: &[&str] = &[
    "input is out of range",
    "no possible date and time matching input",
    "input is not enough for unique date and time",
    "input contains invalid characters",
    "premature end of input",
    "trailing input",
    "bad or unsupported format string",
];

/// What a value should be, from the Rust type or the parser's expectation.
fn expected_value(expected: &str) -> String {
    let range = |max: u64| format!("a whole number from 0 to {max}");
    match expected {
        "u8" => range(u8::MAX.into()),
        "u16" => range(u16::MAX.into()),
        "u32" => range(u32::MAX.into()),
        "u64" | "usize" => range(u64::MAX),
        "i8" | "i16" | "i32" | "i64" | "isize" | "an integer" => "a whole number".to_owned(),
        "f32" | "f64" | "a number" => "a number".to_owned(),
        "bool" | "a boolean" => "`true` or `false`".to_owned(),
        "a string" | "string scalar" | "a borrowed string" => "a text value".to_owned(),
        "a sequence" | "sequence start" => "a list (`- item` lines or `[a, b]`)".to_owned(),
        "mapping start" | "a map" => "a mapping (`key: value` lines)".to_owned(),
        e if e.starts_with("struct ") => "a mapping (`key: value` lines)".to_owned(),
        e if e.starts_with("a ") || e.starts_with("an ") || e.starts_with("one of") => e.to_owned(),
        e => format!("a {e}"),
    }
}

/// What was found instead, from serde's `Unexpected` text.
fn found_value(unexpected: &str) -> String {
    if let Some(v) = unexpected
        .strip_prefix("integer ")
        .or_else(|| unexpected.strip_prefix("floating point "))
    {
        return format!("the number {}", v.trim_matches('`'));
    }
    if let Some(v) = unexpected.strip_prefix("string ") {
        return format!("the text {v}");
    }
    if let Some(v) = unexpected.strip_prefix("boolean ") {
        return v.to_owned();
    }
    match unexpected {
        "sequence" => "a list".to_owned(),
        "map" => "a mapping".to_owned(),
        "unit value" | "null" => "nothing".to_owned(),
        other => other.to_owned(),
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

    /// The parser's developer wording never reaches a registry author.
    #[test]
    fn parser_errors_are_said_in_the_registrys_terms() {
        let tenant = |edit: &dyn Fn(&str) -> String| {
            let mut sources = example_sources();
            let path = format!("tenants/{}.yaml", crate::testing::DEPROVISIONING);
            let text = edit(&sources[&path]);
            sources.insert(path, text);
            let loaded = load_sources(sources);
            assert_eq!(
                loaded.report.diagnostics.len(),
                1,
                "{}",
                loaded.report.render()
            );
            let d = &loaded.report.diagnostics[0];
            (d.message.clone(), d.line)
        };
        type Edit<'a> = &'a dyn Fn(&str) -> String;
        let cases: [(Edit, &str); 7] = [
            (
                &|t| t.replace("api-gateway: 4", "api-gateway: -1"),
                "expected a whole number from 0 to 4294967295",
            ),
            (
                &|t| t.replace("api-gateway: 4", "api-gateway: lots"),
                "expected a whole number from 0 to 4294967295",
            ),
            (
                &|t| t.replace("tier: business", "tier: business\ntier: premium"),
                "`tier` is given twice in this mapping",
            ),
            (
                &|t| t.replace("created: 2024-11-20T14:00:00Z", "created: yesterday"),
                "expected a date and time such as `2025-01-15T10:00:00Z` (RFC 3339, with its offset)",
            ),
            (
                &|t| t.replace("contacts:", "contacts: 3\nxcontacts:"),
                "expected a mapping (`key: value` lines)",
            ),
            (
                &|t| t.replace("name: Nordwind Logistik GmbH", "name: [a, b]"),
                "expected a text value",
            ),
            (
                &|_| "- 1\n".to_owned(),
                "expected a mapping (`key: value` lines)",
            ),
        ];
        for (edit, message) in cases {
            let (got, line) = tenant(edit);
            assert_eq!(got, message);
            assert!(line > 0, "{got}: positioned");
            for library in [
                "invalid u",
                "DuplicateKeyPolicy",
                "struct",
                "scalar",
                "Options",
            ] {
                assert!(!got.contains(library), "{got}");
            }
        }
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

#[cfg(test)]
mod parse_all_tests {
    use super::*;

    /// Parsed on several threads, the results are a loop's, in the files' order: good files,
    /// bad YAML, unknown fields, empty and non-UTF-8 markers interleaved, past the size from
    /// which threads are used.
    #[test]
    fn parse_all_answers_as_a_loop_in_order() {
        let texts = [
            "a: 1\nb: [x, y]\n",
            "a: [unclosed\n",
            "",
            "a: 2\nc: {d: e}\n",
            super::super::layout::NOT_UTF8,
            "- just\n- a list\n",
            "a: 3\n",
        ];
        let files: Vec<(String, String)> = (0..PARALLEL_FROM * 3 + 5)
            .map(|i| {
                let t = texts[(i * 7 + i / 3) % texts.len()];
                (
                    format!("tenants/t{i:04}.yaml"),
                    format!("{t}{}", "#\n".repeat(i % 4)),
                )
            })
            .collect();
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, t)| (p.as_str(), t.as_str()))
            .collect();
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)] // read through Debug
        struct Doc {
            a: u32,
            #[serde(default)]
            b: Vec<String>,
        }
        let show = |r: &Result<Doc, Box<Diagnostic>>| format!("{r:?}");
        let threaded: Vec<String> = parse_all::<Doc>(&refs).iter().map(show).collect();
        let looped: Vec<String> = refs
            .iter()
            .map(|(p, t)| show(&parse::<Doc>(p, t)))
            .collect();
        assert_eq!(threaded.len(), refs.len());
        assert_eq!(threaded, looped);
        assert!(threaded.iter().any(|r| r.starts_with("Ok")));
        assert!(threaded.iter().any(|r| r.starts_with("Err")));
    }
}
