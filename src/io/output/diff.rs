//! Drift: what differs between the rendered output and the tree on disk, as a readable
//! unified diff (used by `provisio check`).

use std::fmt::Write;

use similar::TextDiff;

use provisio_core::render::Files;

/// One difference between expected and actual output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// Rendered but absent on disk.
    Missing(String),
    /// On disk but not rendered (a deleted tenant not yet removed, or a stray file).
    Unexpected(String),
    /// Present on both sides with other bytes (stale, or edited by hand).
    Changed(String),
}

impl Drift {
    pub fn path(&self) -> &str {
        match self {
            Drift::Missing(p) | Drift::Unexpected(p) | Drift::Changed(p) => p,
        }
    }
}

/// Compares expected and actual files; sorted by path.
pub fn compare(expected: &Files, actual: &Files) -> Vec<Drift> {
    let mut out = Vec::new();
    for (path, bytes) in expected {
        match actual.get(path) {
            None => out.push(Drift::Missing(path.clone())),
            Some(b) if b != bytes => out.push(Drift::Changed(path.clone())),
            Some(_) => {}
        }
    }
    for path in actual.keys() {
        if !expected.contains_key(path) {
            out.push(Drift::Unexpected(path.clone()));
        }
    }
    out.sort_by(|a, b| a.path().cmp(b.path()));
    out
}

/// A unified diff of every drift, at most `max_lines` lines of diff body per file.
pub fn render(drifts: &[Drift], expected: &Files, actual: &Files, max_lines: usize) -> String {
    let mut out = String::new();
    for d in drifts {
        match d {
            Drift::Missing(p) => {
                let _ = writeln!(
                    out,
                    "missing: {p} (the registry renders it; run `provisio generate`)"
                );
            }
            Drift::Unexpected(p) => {
                let _ = writeln!(out, "unexpected: {p} (the registry does not render it)");
            }
            Drift::Changed(p) => {
                let old = String::from_utf8_lossy(&actual[p]);
                let new = String::from_utf8_lossy(&expected[p]);
                let diff = TextDiff::from_lines(old.as_ref(), new.as_ref());
                let text = diff
                    .unified_diff()
                    .context_radius(2)
                    .header(&format!("{p} (on disk)"), &format!("{p} (rendered)"))
                    .to_string();
                let total = text.lines().count();
                for line in text.lines().take(max_lines) {
                    let _ = writeln!(out, "{line}");
                }
                if total > max_lines {
                    let _ = writeln!(out, "… {} more lines", total - max_lines);
                }
            }
        }
    }
    out
}
