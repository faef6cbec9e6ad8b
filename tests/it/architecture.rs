//! The architecture invariants that the compiler alone does not check, checked on the source:
//!
//! - no import cycle between modules (files), in either crate;
//! - the application crate's layers depend one way: `cli` → `services` → `ops` → `io` /
//!   `setup` → `report` (and everything may use `provisio_core`);
//! - the core crate's manifest lists no I/O crate (`cargo tree -p provisio-core` in CI shows
//!   the same for its whole dependency tree);
//! - every repository handle is taken through `io::repo::handle` (libgit2's process-wide
//!   options are set there, before the first).
//!
//! A module's dependencies are the `crate::…`, `super::…` and `self::…` paths its file names
//! (in `use` declarations and inline), resolved to the deepest module file they reach. A
//! parent declaring `mod child;` is not a dependency; a parent re-exporting or calling a
//! child's items is. Inline `#[cfg(test)]` modules are left out: tests may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A crate's modules: module path (`["io", "repo"]`) → its file's text (tests removed).
fn modules(src: &Path) -> BTreeMap<Vec<String>, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = p.strip_prefix(src).unwrap();
            let mut parts: Vec<String> = rel
                .iter()
                .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_owned())
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            if rel == Path::new("main.rs") {
                continue; // the binary: `provisio::cli::main()` only
            }
            let text = std::fs::read_to_string(&p).unwrap();
            out.insert(parts, without_tests(&text));
        }
    }
    out
}

/// The text before the first `#[cfg(test)]` that opens an inline module, less the
/// `#[cfg(test)]` modules declared in files of their own.
fn without_tests(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut keep = Vec::new();
    let mut skip = false;
    for (i, l) in lines.iter().enumerate() {
        if std::mem::take(&mut skip) {
            continue;
        }
        let test_mod = lines.get(i + 1).map(|n| n.trim()).filter(|n| {
            ["mod ", "pub(crate) mod ", "pub(super) mod "]
                .iter()
                .any(|p| n.starts_with(p))
        });
        match test_mod {
            // A test module in a file of its own (`mod properties;`): that line left out.
            Some(n) if l.trim() == "#[cfg(test)]" && n.ends_with(';') => skip = true,
            Some(_) if l.trim() == "#[cfg(test)]" => break,
            _ => keep.push(*l),
        }
    }
    keep.join("\n")
}

/// Every path starting with `crate::`, `super::` or `self::` in `text`, braces expanded, as
/// segment lists. Comments are skipped.
fn paths(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let bytes = code.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if !code.is_char_boundary(i) {
                i += 1;
                continue;
            }
            let rest = &code[i..];
            let starts = ["crate::", "super::", "self::"]
                .iter()
                .any(|p| rest.starts_with(p));
            let boundary = i == 0
                || !(bytes[i - 1].is_ascii_alphanumeric()
                    || bytes[i - 1] == b'_'
                    || bytes[i - 1] == b':');
            if starts && boundary {
                let (tree, used) = take_tree(rest);
                for p in expand(&tree) {
                    out.push(p);
                }
                i += used.max(1);
            } else {
                i += 1;
            }
        }
    }
    out
}

/// The use-tree at the start of `s` (`a::b::{c, d::e}`), and how many bytes it took.
fn take_tree(s: &str) -> (String, usize) {
    let mut depth = 0;
    let mut end = 0;
    for (i, ch) in s.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' if depth > 0 => depth -= 1,
            '}' => break,
            c if depth == 0 && !(c.is_alphanumeric() || c == '_' || c == ':') => break,
            _ => {}
        }
        end = i + ch.len_utf8();
    }
    (s[..end].to_owned(), end)
}

/// `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e` (unbalanced input: best effort).
fn expand(tree: &str) -> Vec<Vec<String>> {
    let Some(open) = tree.find('{') else {
        return vec![split(tree)];
    };
    let prefix = &tree[..open];
    let inner = tree[open + 1..]
        .strip_suffix('}')
        .unwrap_or(&tree[open + 1..]);
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, ch) in inner.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    let mut out = Vec::new();
    for p in parts {
        let p = p.trim();
        if p.is_empty() {
            continue;
        }
        for tail in expand(p) {
            let mut full = split(prefix);
            full.extend(tail);
            out.push(full);
        }
    }
    out
}

fn split(s: &str) -> Vec<String> {
    s.split("::")
        .map(|p| p.split_whitespace().next().unwrap_or("").to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The module file a path from module `from` reaches, if it names one of this crate's
/// modules.
fn resolve(
    from: &[String],
    path: &[String],
    mods: &BTreeMap<Vec<String>, String>,
) -> Option<Vec<String>> {
    let mut base: Vec<String> = Vec::new();
    let mut rest = path;
    match path.first().map(String::as_str) {
        Some("crate") => rest = &path[1..],
        Some("super") | Some("self") => {
            base = from.to_vec();
            while let Some(first) = rest.first() {
                match first.as_str() {
                    "super" => {
                        base.pop();
                    }
                    "self" => {}
                    _ => break,
                }
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    let mut best = base.clone();
    let mut cur = base;
    for seg in rest {
        cur.push(seg.clone());
        if mods.contains_key(&cur) {
            best = cur.clone();
        } else {
            break;
        }
    }
    Some(best)
}

fn graph(src: &Path) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mods = modules(src);
    let mut g = BTreeMap::new();
    for (m, text) in &mods {
        let mut deps = BTreeSet::new();
        for p in paths(text) {
            if let Some(to) = resolve(m, &p, &mods)
                && to != *m
                // A module reaching its own ancestor only to name a sibling is resolved to
                // the sibling; reaching the bare ancestor (its `mod.rs` items) is an edge.
                && mods.contains_key(&to)
            {
                deps.insert(to);
            }
        }
        g.insert(m.clone(), deps);
    }
    g
}

/// The strongly connected components with more than one module (Tarjan).
fn cycles(g: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        on: BTreeSet<&'a Vec<String>>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a Vec<String>) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).into_iter().flatten() {
            let Some((w, _)) = t.g.get_key_value(w) else {
                continue;
            };
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(lw));
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(iw));
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.join("::"));
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn no_module_depends_on_itself_through_others() {
    for src in [root().join("src"), root().join("crates/provisio-core/src")] {
        let g = graph(&src);
        assert!(
            g.len() > 10,
            "found only {} modules in {}",
            g.len(),
            src.display()
        );
        let c = cycles(&g);
        assert!(c.is_empty(), "import cycles in {}: {c:#?}", src.display());
    }
}

#[test]
fn the_application_layers_depend_one_way() {
    // Lower number = lower layer; a module may use its own layer and the ones below.
    let layer = |m: &[String]| match m.first().map(String::as_str) {
        None => 5, // lib.rs: declares the modules
        Some("cli") => 4,
        Some("services") => 3,
        Some("ops") => 2,
        Some("io" | "setup") => 1,
        Some("report") => 0,
        Some(other) => panic!("unknown top-level module `{other}`: give it a layer here"),
    };
    let g = graph(&root().join("src"));
    let mut wrong = Vec::new();
    for (m, deps) in &g {
        for d in deps {
            if layer(d) > layer(m) {
                wrong.push(format!("{} → {}", m.join("::"), d.join("::")));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "dependencies pointing up a layer: {wrong:#?}"
    );
}

#[test]
fn the_core_manifest_has_no_io_crate() {
    let manifest = std::fs::read_to_string(root().join("crates/provisio-core/Cargo.toml")).unwrap();
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .unwrap()
        .split("\n[")
        .next()
        .unwrap();
    for io in [
        "git2",
        "tokio",
        "axum",
        "ureq",
        "mysql",
        "notify",
        "tempfile",
        "hyper",
        "reqwest",
        "signal-hook",
        "tracing-subscriber",
        "backon",
        "lettre",
    ] {
        assert!(
            !deps.lines().any(|l| l.trim_start().starts_with(io)),
            "provisio-core depends on the I/O crate `{io}`"
        );
    }
    assert!(
        !deps.contains("\"clock\""),
        "provisio-core must not enable chrono's clock"
    );
}

/// git2's constructors of a `Repository` (`handle` wraps the ones provisio uses), and of an
/// object database without one (its packs read through libgit2's windows all the same), as
/// they read with every space removed. An alias of `Repository` is counted too: its calls
/// could not be told from any other type's.
const REPOSITORY_CONSTRUCTORS: [&str; 9] = [
    "Repository::open",
    "Repository::init",
    "Repository::discover",
    "Repository::clone",
    "Repository::from_odb",
    "Repository>::",
    "Repositoryas",
    "RepoBuilder",
    "Odb::new",
];

/// The lines (1-based) of `text` that take a repository handle by one of git2's
/// constructors ([`REPOSITORY_CONSTRUCTORS`]): the code read without its comments and
/// string literals and with every space removed, so a call split over lines or spaced out
/// is seen (at the line where it starts).
fn repository_handles(text: &str) -> Vec<usize> {
    // The code's characters, each with its line.
    let mut code: Vec<(char, usize)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut chars = line.chars().peekable();
        let mut in_string = false;
        while let Some(c) = chars.next() {
            match c {
                '\\' if in_string => {
                    chars.next();
                }
                // A quote as a character (`'"'`) opens no string.
                '\'' if !in_string && chars.peek() == Some(&'"') => {
                    chars.next();
                }
                '"' => in_string = !in_string,
                '/' if !in_string && chars.peek() == Some(&'/') => break,
                c if in_string || c.is_whitespace() => {}
                c => code.push((c, n + 1)),
            }
        }
    }
    let flat: String = code.iter().map(|(c, _)| *c).collect();
    let mut found = BTreeSet::new();
    for pattern in REPOSITORY_CONSTRUCTORS {
        for (at, _) in flat.match_indices(pattern) {
            // `flat` is ASCII where it matters; count characters, not bytes.
            found.insert(code[flat[..at].chars().count()].1);
        }
    }
    found.into_iter().collect()
}

#[test]
fn every_repository_handle_is_taken_through_io_repo_handle() {
    let mut found = Vec::new();
    for src in [root().join("src"), root().join("crates/provisio-core/src")] {
        for (m, text) in modules(&src) {
            if m == ["io", "repo", "handle"] {
                continue;
            }
            for n in repository_handles(&text) {
                let line = text.lines().nth(n - 1).unwrap_or_default();
                found.push(format!("{}:{}: {}", m.join("::"), n, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "repository handles taken outside io::repo::handle (libgit2's process options \
         would not be set first): {found:#?}"
    );
    // The check sees what it looks for: `handle` itself takes handles.
    let handle = std::fs::read_to_string(root().join("src/io/repo/handle.rs")).unwrap();
    assert!(!repository_handles(&handle).is_empty());
}

/// The handle check is not fooled by a call split over lines, spaced out, behind an alias or
/// a qualified path, after a string holding `//`, or by an object database made without a
/// repository (its packs read with libgit2's windows, as a repository's are).
#[test]
fn the_handle_check_sees_disguised_constructors() {
    let disguised = [
        "let r = git2::Repository::\n    open(path)?;",
        "let r = git2::Repository\n    ::open(path)?;",
        "let r = Repository :: open(path)?;",
        "use git2::Repository as R;",
        "use git2::{Odb, Repository as Repo};",
        "let r = <git2::Repository>::open(path)?;",
        "let u = \"file://x\"; let r = Repository::open(path)?;",
        "let odb = git2::Odb::new()?;",
        "let r = git2::Repository::open_bare(path)?;",
        "let r = git2::Repository::open_ext(path, flags, ceiling)?;",
        "let r = git2::Repository::init_opts(path, &opts)?;",
    ];
    for text in disguised {
        assert!(!repository_handles(text).is_empty(), "not seen: {text:?}");
    }
    let harmless = [
        "fn open(path: &Path) -> Result<Repository, git2::Error> {",
        "use git2::{Oid, Repository};",
        "// git2::Repository::open(path) in a comment",
        "let s = \"Repository::open\"; // a message naming it",
        "match c { '\"' => q = !q, _ => {} } // not Repository::open",
        "let r = super::handle::open(path)?;",
        "pub(super) repo: Repository,",
    ];
    for text in harmless {
        assert_eq!(
            repository_handles(text),
            Vec::<usize>::new(),
            "seen: {text:?}"
        );
    }
    // Where a call split over lines starts.
    assert_eq!(
        repository_handles("fn f() {\n    let r = git2::Repository::\n        open(p);\n}"),
        vec![2]
    );
}

/// A test module declared in its own file (`#[cfg(test)] mod properties;`) is left out, and
/// what follows it is not.
#[test]
fn a_test_module_declaration_hides_nothing_after_it() {
    let text = "#[cfg(test)]\nmod properties;\npub mod text;\nuse crate::a::b;\n\
                #[cfg(test)]\nmod tests {\n    use crate::c::d;\n}\n";
    let kept = without_tests(text);
    assert!(kept.contains("use crate::a::b;"), "{kept}");
    assert!(!kept.contains("mod properties"), "{kept}");
    assert!(!kept.contains("crate::c::d"), "{kept}");
}

#[test]
fn the_checker_sees_a_cycle() {
    let mut g = BTreeMap::new();
    let (a, b) = (vec!["a".to_owned()], vec!["b".to_owned()]);
    g.insert(a.clone(), BTreeSet::from([b.clone()]));
    g.insert(b.clone(), BTreeSet::from([a.clone()]));
    assert_eq!(cycles(&g), vec![vec!["a".to_owned(), "b".to_owned()]]);
    assert_eq!(
        expand("io::{fsx, repo::{Author, Repo}}"),
        vec![
            split("io::fsx"),
            split("io::repo::Author"),
            split("io::repo::Repo")
        ]
    );
}
