//! `provisio plan`, pinned: each `tests/data/plan/<case>/` changes the example registry (its
//! files overlay it; a file whose content is `DELETE` removes it; files under `base/` change
//! the base instead) and `expected.txt` is the whole text `plan --base-dir` prints for it.
//! The cases: a product added, a product changed (a SAML level, a retention, a quota), a
//! product removed, armed for destruction, then destroyed, a team's level changed, and a
//! product's Artifactory switched off. `PROVISIO_BLESS=1` rewrites the expectations (review
//! the diff). Also: `--base <revision>` in a git repository (what the registry pipeline runs),
//! `--exit-code`, and the errors.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::Workspace;

const NOW: [&str; 2] = ["--now", "2025-02-01T00:00:00Z"];

/// Applies the files of `case/rel` onto `target` (skipping `expected.txt` and `base/` at the
/// top).
fn overlay(case: &Path, rel: &Path, target: &Path) {
    for entry in std::fs::read_dir(case.join(rel)).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = rel.join(&name);
        if rel == Path::new("expected.txt") || rel == Path::new("base") {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            overlay(case, &rel, target);
        } else {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            let to = target.join(&rel);
            if text.trim() == "DELETE" {
                std::fs::remove_file(&to).unwrap();
            } else {
                std::fs::create_dir_all(to.parent().unwrap()).unwrap();
                std::fs::write(&to, text).unwrap();
            }
        }
    }
}

fn provisio(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_provisio"))
        .current_dir(dir)
        .env("PROVISIO_LOG", "off")
        .args(args)
        .args(NOW)
        .output()
        .unwrap()
}

#[test]
fn plans_are_pinned_for_every_kind_of_change() {
    let data = common::repo_root().join("tests/data/plan");
    let mut cases: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 7, "the plan cases are missing");
    let mut failures = Vec::new();
    for case in cases {
        let ws = Workspace::new();
        let base = ws.dir.path().join("base");
        common::copy_dir(&ws.registry(), &base);
        if case.join("base").is_dir() {
            overlay(&case.join("base"), Path::new(""), &base);
        }
        overlay(&case, Path::new(""), &ws.registry());
        let out = provisio(ws.dir.path(), &["plan", "--base-dir", "base"]);
        assert!(
            out.status.success(),
            "{}: exit {:?}\n{}",
            case.display(),
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let expected_path = case.join("expected.txt");
        if common::bless() {
            std::fs::write(&expected_path, &text).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != text {
            failures.push(format!(
                "--- {} expected:\n{expected}\n--- got:\n{text}",
                case.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n(rerun with PROVISIO_BLESS=1 to accept)",
        failures.join("\n")
    );
}

fn git(args: &[&str], dir: &Path) -> String {
    let o = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// What the merge-request job runs: the registry is a git work tree, the base a revision.
/// Only the platform tools' loss decides `--exit-code`; an unknown revision and an invalid
/// registry are exit 2 with the reason.
#[test]
fn plan_against_a_git_revision_as_the_pipeline_runs_it() {
    let ws = Workspace::new();
    let dir = ws.dir.path();
    git(&["init", "-q", "-b", "main"], dir);
    git(&["add", "registry"], dir);
    git(&["commit", "-q", "-m", "registry"], dir);
    // Nothing changed.
    let out = provisio(dir, &["plan", "--base", "main", "--exit-code"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("provisio plan (platform tools): main → registry/\n"),
        "{text}"
    );
    assert!(
        text.ends_with("No change to the platform tools.\n"),
        "{text}"
    );

    // A removal: exit 1 with --exit-code (a reviewer must approve), 0 without.
    std::fs::remove_file(ws.registry().join("products/baskets.yaml")).unwrap();
    let out = provisio(dir, &["plan", "--base", "main", "--exit-code"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("  products removed: baskets"), "{text}");
    assert!(
        text.contains(
            "  - removes SamlGroupLink okta-checkout→Developer on group ecommerce/commerce/baskets\n"
        ),
        "{text}"
    );
    let out = provisio(dir, &["plan", "--base", "main"]);
    assert_eq!(out.status.code(), Some(0));
    // The base is read from git, not from the work tree: a commit moves it.
    git(&["commit", "-q", "-am", "remove baskets"], dir);
    let out = provisio(dir, &["plan", "--base", "HEAD~1"]);
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("products removed: baskets")
    );
    let out = provisio(dir, &["plan", "--base", "HEAD", "--exit-code"]);
    assert_eq!(out.status.code(), Some(0));

    let out = provisio(dir, &["plan", "--base", "origin/nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: no revision `origin/nope` in the registry's git repository\n"
    );

    // A base that does not validate says so, after its diagnostics.
    let base = dir.join("broken-base");
    common::copy_dir(&ws.registry(), &base);
    std::fs::write(
        base.join("teams/identity.yaml"),
        "name: identity\nbogus: 1\n",
    )
    .unwrap();
    let out = provisio(dir, &["plan", "--base-dir", "broken-base"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown field `bogus`"), "{err}");
    assert!(
        err.ends_with("error: the base registry (broken-base/) is invalid\n"),
        "{err}"
    );

    let orders = ws.registry().join("products/orders.yaml");
    let text = std::fs::read_to_string(&orders)
        .unwrap()
        .replace("gitlab: developer", "gitlab: admin");
    std::fs::write(&orders, text).unwrap();
    let out = provisio(dir, &["plan", "--base", "HEAD"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: `admin` is not a GitLab access level\n  --> products/orders.yaml:"),
        "{err}"
    );
}
