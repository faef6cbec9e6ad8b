//! Delivery to the manifests repository with real git repositories: a bare repository on
//! disk is the remote (file:// URL). Commit content and message, no-op runs, a remote that
//! moved (another writer), a remote that is unreachable, `generate --commit --push`, and the
//! Argo CD nudge received by a listener on 127.0.0.1.

use crate::common;
use crate::watch_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use common::Workspace;
use provisio::io::output::Summary;
use provisio::io::repo::Author;
use provisio::io::repo::message::Why;
use provisio::io::repo::output::{OutputRepo, RepoConfig};
use provisio::io::retry::Policy;
use provisio::ops::deliver::{self as delivery, DeliveryError};
use provisio::ops::generate::{self as pipeline, GenerateOptions};
use watch_support::*;

fn cfg(url: &str) -> RepoConfig {
    RepoConfig {
        url: Some(url.to_owned()),
        author: Author {
            name: "Provisio Bot".into(),
            email: "bot@example.com".into(),
        },
        ..RepoConfig::default()
    }
}

fn fast() -> Policy {
    Policy {
        max: Duration::from_millis(40),
        ..Policy::new(3, Duration::from_millis(10)).without_jitter()
    }
}

/// One delivery that never needs to regenerate: nobody else pushes to the remote.
fn deliver_once(repo: &OutputRepo, summary: Option<&Summary>, why: &Why) -> delivery::Delivered {
    delivery::deliver(
        repo,
        summary,
        why,
        Some(&fast()),
        &mut || unreachable!(),
        None,
        &|| false,
    )
    .unwrap()
}

/// `provisio generate --registry … --out … --now NOW <extra>` of the workspace, run by the
/// binary; asserts exit 0 and returns its standard error.
fn generate_bin(ws: &Workspace, extra: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_provisio"))
        .arg("generate")
        .arg("--registry")
        .arg(ws.registry())
        .arg("--out")
        .arg(ws.out())
        .args(["--now", NOW])
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    stderr
}

/// The paths `git status` would list in a repository (nothing when it is clean).
fn status_paths(repo: &git2::Repository) -> Vec<String> {
    repo.statuses(None)
        .unwrap()
        .iter()
        .filter_map(|s| s.path().ok().map(str::to_owned))
        .collect()
}

fn opts() -> GenerateOptions {
    GenerateOptions::new(common::now())
}

/// generate + deliver once, staging from the run's summary.
fn cycle(ws: &Workspace, repo: &OutputRepo, push: bool) -> delivery::Delivered {
    let summary = ws.generate();
    let paths = ws.paths();
    let mut regenerate = || {
        pipeline::generate(
            &paths,
            &GenerateOptions {
                full: true,
                ..opts()
            },
        )
    };
    delivery::deliver(
        repo,
        Some(&summary),
        &Why {
            trigger: "test".into(),
            ..Why::default()
        },
        push.then(fast).as_ref(),
        &mut regenerate,
        None,
        &|| false,
    )
    .expect("deliver")
}

#[test]
fn each_change_is_one_commit_saying_what_changed_and_the_remote_gets_it() {
    let ws = Workspace::new();
    let (bare, url) = bare(ws.dir.path());
    let repo = OutputRepo::open(&ws.out(), &cfg(&url)).unwrap();

    let first = cycle(&ws, &repo, true);
    assert_eq!(first.commits.len(), 1);
    let c1 = head_of(&bare, "main").expect("pushed to main");
    assert_eq!(first.pushed, Some((None, c1)));
    assert_eq!(tree_files(&bare, c1), expected(&ws.registry()));
    let m = message(&bare, c1);
    assert!(
        m.starts_with("provisio: add 3 tenants; platform tools: add 3 products, 2 teams\n\n"),
        "{m}"
    );
    assert!(
        m.contains("Platform tools added: auth, baskets, orders, team commerce, team identity\n"),
        "{m}"
    );
    assert!(
        m.contains("Added: abc-corporation-7f3a9c, cafe-creme-93b31b, nordwind-logistik-7ace77\n"),
        "{m}"
    );
    let r = git2::Repository::open(&bare).unwrap();
    let author = r.find_commit(c1).unwrap().author().to_owned();
    assert_eq!(
        (author.name(), author.email()),
        (Ok("Provisio Bot"), Ok("bot@example.com"))
    );

    // One new tenant: one commit on top, naming it, with exactly the new output.
    let (id, rel, text) = new_tenant(1);
    ws.write(&rel, &text);
    let second = cycle(&ws, &repo, true);
    let c2 = head_of(&bare, "main").unwrap();
    assert_eq!(second.pushed, Some((Some(c1), c2)));
    assert_eq!(parents(&bare, c2), vec![c1]);
    let m = message(&bare, c2);
    assert!(m.starts_with("provisio: add 1 tenant\n"), "{m}");
    assert!(m.contains(&format!("Added: {id}\n")), "{m}");
    // The ApplicationSets use the git files generator: a new tenant adds files only.
    assert!(!m.contains("Argo CD objects"), "{m}");
    assert_eq!(tree_files(&bare, c2), expected(&ws.registry()));

    // An update and a removal.
    let abc = "tenants/abc-corporation-7f3a9c.yaml";
    let t = std::fs::read_to_string(ws.registry().join(abc)).unwrap();
    ws.write(abc, &t.replace("tier: premium", "tier: business"));
    ws.remove(&rel);
    cycle(&ws, &repo, true);
    let c3 = head_of(&bare, "main").unwrap();
    let m = message(&bare, c3);
    assert!(
        m.starts_with("provisio: update 1, remove 1 tenants\n"),
        "{m}"
    );
    assert!(m.contains("Updated: abc-corporation-7f3a9c\n"), "{m}");
    assert!(m.contains(&format!("Removed: {id}\n")), "{m}");
    assert_eq!(tree_files(&bare, c3), expected(&ws.registry()));

    // Nothing changed: no commit, nothing pushed.
    let noop = cycle(&ws, &repo, true);
    assert!(noop.commits.is_empty() && noop.pushed.is_none());
    assert_eq!(head_of(&bare, "main"), Some(c3));
    fsck(&bare);
    fsck(&ws.out());
}

#[test]
fn the_registry_commit_is_named_in_the_message() {
    let ws = Workspace::new();
    let (bare, url) = bare(ws.dir.path());
    // Make the registry a git repository with one commit.
    let reg = git2::Repository::init(ws.registry()).unwrap();
    let mut index = reg.index().unwrap();
    index
        .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .unwrap();
    let tree = reg.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = git2::Signature::now("a", "a@example.com").unwrap();
    let reg_commit = reg
        .commit(Some("HEAD"), &sig, &sig, "registry", &tree, &[])
        .unwrap();
    assert_eq!(
        provisio::io::repo::head_of(&ws.registry()),
        Some(reg_commit.to_string())
    );
    let repo = OutputRepo::open(&ws.out(), &cfg(&url)).unwrap();
    let summary = ws.generate();
    let why = Why {
        trigger: "registry changed: tenants/x.yaml".into(),
        registry_commit: provisio::io::repo::head_of(&ws.registry()),
        registry: Some(ws.registry()),
    };
    deliver_once(&repo, Some(&summary), &why);
    let m = message(&bare, head_of(&bare, "main").unwrap());
    assert!(m.contains("Why: registry changed: tenants/x.yaml\n"), "{m}");
    assert!(
        m.ends_with(&format!("\nRegistry-Commit: {reg_commit}\n")),
        "{m}"
    );
}

#[test]
fn a_push_rejected_because_another_writer_pushed_first_lands_on_top_without_force() {
    let ws = Workspace::new();
    let (bare, url) = bare(ws.dir.path());
    let repo = OutputRepo::open(&ws.out(), &cfg(&url)).unwrap();
    cycle(&ws, &repo, true);

    // Another writer pushes first: a file of its own, and it also deletes a tenant's file
    // and edits the state file (a stale or hand-made commit).
    let theirs = other_writer(&bare, "main", |dir| {
        std::fs::write(dir.join("OWNERS"), "platform-team\n").unwrap();
        std::fs::remove_file(dir.join("tenants-out/cafe-creme-93b31b/namespace.yaml")).unwrap();
    });

    // Our change: a new tenant. The first push is rejected (the remote moved).
    let (id, rel, text) = new_tenant(7);
    ws.write(&rel, &text);
    let d = cycle(&ws, &repo, true);
    assert!(d.push_retries >= 1, "{d:?}");
    let head = head_of(&bare, "main").unwrap();
    assert_eq!(d.pushed.map(|p| p.1), Some(head));
    // On top: the other writer's commit is in the history (nothing was forced).
    assert_eq!(parents(&bare, head), vec![theirs]);
    assert!(history(&bare, head).contains(&theirs));
    let files = tree_files(&bare, head);
    assert_eq!(
        files.get("OWNERS").map(Vec::as_slice),
        Some(&b"platform-team\n"[..])
    );
    // The output is what the registry renders: the new tenant, and the file the other
    // writer deleted restored.
    assert_eq!(output_only(files), expected(&ws.registry()));
    let m = message(&bare, head);
    assert!(m.contains(&format!("Added: {id}")), "{m}");
    assert!(m.contains("Updated: cafe-creme-93b31b"), "{m}");
    assert!(m.contains("after the push was rejected"), "{m}");
    fsck(&bare);
}

/// Commits everything in `dir` (a registry in its own repository) and returns the commit.
fn commit_all(dir: &std::path::Path, message: &str) -> git2::Oid {
    let repo = git2::Repository::open(dir)
        .or_else(|_| git2::Repository::init(dir))
        .unwrap();
    let mut index = repo.index().unwrap();
    index
        .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = git2::Signature::now("person", "person@example.com").unwrap();
    let parents: Vec<git2::Commit> = repo
        .head()
        .ok()
        .and_then(|h| h.peel_to_commit().ok())
        .into_iter()
        .collect();
    let parents: Vec<&git2::Commit> = parents.iter().collect();
    repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
        .unwrap()
}

/// Output never goes back in time: a writer whose registry is older than the one the
/// remote's output was made from does not push its rendering over it (that would remove
/// the newer tenants' trees until its next cycle, and Argo CD could prune them meanwhile).
#[test]
fn a_writer_with_an_older_registry_does_not_push_over_newer_output() {
    let old = Workspace::new();
    let r1 = commit_all(&old.registry(), "registry r1");
    let (bare, url) = bare(old.dir.path());

    // Each writer delivers what its registry renders, naming its registry commit.
    let deliver = |ws: &Workspace, repo: &OutputRepo, at: git2::Oid, full: bool| {
        let o = GenerateOptions { full, ..opts() };
        let summary = pipeline::generate(&ws.paths(), &o).unwrap();
        let paths = ws.paths();
        let mut regenerate = || {
            pipeline::generate(
                &paths,
                &GenerateOptions {
                    full: true,
                    ..opts()
                },
            )
        };
        delivery::deliver(
            repo,
            Some(&summary),
            &Why {
                trigger: "test".into(),
                registry_commit: Some(at.to_string()),
                registry: Some(ws.registry()),
            },
            Some(&fast()),
            &mut regenerate,
            None,
            &|| false,
        )
        .unwrap()
    };
    // The older writer delivers r1 first. Then the registry gets two commits: r15 (one
    // tenant more), which the older writer fetches, and r2 (another one), which only the
    // newer writer has: it delivers r2 on top.
    let older = OutputRepo::open(&old.out(), &cfg(&url)).unwrap();
    deliver(&old, &older, r1, false);
    let (_, rel4, text4) = new_tenant(4);
    old.write(&rel4, &text4);
    let r15 = commit_all(&old.registry(), "registry r15");
    let new = Workspace::new();
    std::fs::remove_dir_all(new.registry()).unwrap();
    git2::build::RepoBuilder::new()
        .clone(old.registry().to_str().unwrap(), &new.registry())
        .unwrap();
    let (id, rel, text) = new_tenant(3);
    new.write(&rel, &text);
    let r2 = commit_all(&new.registry(), "registry r2");
    let newer = OutputRepo::open(&new.out(), &cfg(&url)).unwrap();
    let d = deliver(&new, &newer, r2, false);
    assert!(d.pushed.is_some(), "{d:?}");
    let head = head_of(&bare, "main").unwrap();
    assert!(message(&bare, head).contains(&format!("Registry-Commit: {r2}")));

    // The older writer now delivers r15: its push is rejected (the remote moved), and the
    // remote's head was made from r2, which its registry does not have yet: it leaves it
    // alone instead of rendering r15 over it (which would remove tenant 3's tree).
    let d = deliver(&old, &older, r15, false);
    assert_eq!(d.superseded, Some(r2.to_string()), "{d:?}");
    assert!(d.pushed.is_none());
    assert_eq!(
        head_of(&bare, "main"),
        Some(head),
        "nothing pushed over the newer output"
    );
    assert!(tree_files(&bare, head).contains_key(&format!("tenants-out/{id}/kustomization.yaml")));
}

#[test]
fn an_unreachable_remote_keeps_the_commit_and_the_next_attempt_pushes_it() {
    let ws = Workspace::new();
    let (bare, url) = bare(ws.dir.path());
    let repo = OutputRepo::open(&ws.out(), &cfg(&url)).unwrap();
    cycle(&ws, &repo, true);
    let pushed = head_of(&bare, "main").unwrap();

    // The remote goes away.
    let away = ws.dir.path().join("away.git");
    std::fs::rename(&bare, &away).unwrap();
    let (_, rel, text) = new_tenant(3);
    ws.write(&rel, &text);
    let summary = ws.generate();
    let err = delivery::deliver(
        &repo,
        Some(&summary),
        &Why::default(),
        Some(&fast()),
        &mut || unreachable!("no rejection without a remote"),
        None,
        &|| false,
    )
    .unwrap_err();
    assert!(
        matches!(err, DeliveryError::PushGaveUp { attempts: 3, .. }),
        "{err:?}"
    );
    let local = repo.head().unwrap();
    assert_ne!(local, pushed);
    assert!(repo.ahead().unwrap());

    // It comes back: the next delivery (nothing new to commit) pushes the kept commit.
    std::fs::rename(&away, &bare).unwrap();
    let d = deliver_once(&repo, None, &Why::default());
    assert!(d.commits.is_empty());
    assert_eq!(head_of(&bare, "main"), Some(local));
    assert_eq!(tree_files(&bare, local), expected(&ws.registry()));
}

#[test]
fn generate_commit_push_delivers_once_for_ci() {
    let ws = Workspace::new();
    let (bare, url) = bare(ws.dir.path());
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_provisio"))
            .arg("generate")
            .arg("--registry")
            .arg(ws.registry())
            .arg("--out")
            .arg(ws.out())
            .args(["--now", NOW, "--commit", "--push", "--manifests-url", &url])
            .args(["--author-name", "CI", "--author-email", "ci@example.com"])
            .output()
            .unwrap()
    };
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("generate: committed "), "{stderr}");
    assert!(stderr.contains("generate: pushed "), "{stderr}");
    let head = head_of(&bare, "main").unwrap();
    assert_eq!(tree_files(&bare, head), expected(&ws.registry()));
    assert!(message(&bare, head).contains("Why: provisio generate --commit\n"));

    let again = run();
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("generate: nothing to commit"), "{stderr}");
    assert_eq!(head_of(&bare, "main"), Some(head));

    // --push without --commit is a usage error; --commit outside a repository says how to
    // fix it.
    let usage = std::process::Command::new(env!("CARGO_BIN_EXE_provisio"))
        .args(["generate", "--push"])
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2));
    let elsewhere = tempfile::tempdir().unwrap();
    let no_repo = std::process::Command::new(env!("CARGO_BIN_EXE_provisio"))
        .arg("generate")
        .arg("--registry")
        .arg(ws.registry())
        .arg("--out")
        .arg(elsewhere.path())
        .args(["--now", NOW, "--commit"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&no_repo.stderr);
    assert_eq!(no_repo.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("is not inside a git repository"),
        "{stderr}"
    );
}

/// A release of the `addresses` product: its version moved from `v1.2.3` to `v1.2.4` in the
/// registry (every tenant re-rendered in the files the version reaches).
fn release_addresses(ws: &Workspace) {
    let product = "products/addresses.yaml";
    let text = std::fs::read_to_string(ws.registry().join(product)).unwrap();
    assert!(text.contains("version: v1.2.3"), "{text}");
    ws.write(product, &text.replace("version: v1.2.3", "version: v1.2.4"));
}

/// One commit made of every kind of edit at once: a product's version bump (a file in a
/// nested directory and a top-level file of every tenant), a tier change (a tenant whose
/// input changed, rewritten in its nested directory and at its top), a tenant removed and one
/// added. The commit holds exactly what the registry renders and stores no tree it does not
/// name.
#[test]
fn a_commit_mixing_releases_removals_and_new_tenants_holds_exactly_the_render() {
    let ws = Workspace::new();
    let (bare, url) = bare(ws.dir.path());
    let repo = OutputRepo::open(&ws.out(), &cfg(&url)).unwrap();
    cycle(&ws, &repo, true);
    release_addresses(&ws);
    let abc = "tenants/abc-corporation-7f3a9c.yaml";
    let text = std::fs::read_to_string(ws.registry().join(abc)).unwrap();
    ws.write(abc, &text.replace("tier: premium", "tier: standard"));
    ws.remove("tenants/cafe-creme-93b31b.yaml");
    let (_, rel, text) = new_tenant(7);
    ws.write(&rel, &text);
    let summary = ws.generate();
    assert!(!summary.vouched.is_empty(), "{summary:?}");
    let abc_dir = "tenants-out/abc-corporation-7f3a9c/";
    assert!(
        summary.vouched.contains_key("abc-corporation-7f3a9c"),
        "{summary:?}"
    );
    assert!(
        summary
            .written
            .iter()
            .any(|p| p.starts_with(&format!("{abc_dir}deployments/"))),
        "{summary:?}"
    );
    assert!(
        summary.tenants_removed.contains("cafe-creme-93b31b"),
        "{summary:?}"
    );
    let d = deliver_once(&repo, Some(&summary), &Why::default());
    assert_eq!(d.commits.len(), 1);
    let head = head_of(&bare, "main").unwrap();
    assert_eq!(
        output_only(tree_files(&bare, head)),
        expected(&ws.registry())
    );
    assert_no_dangling_objects(&ws.out());
}

/// A run's writes and removals in one tenant where a path changes kind: a file replaced by a
/// directory of the same name, and a directory replaced by a file. The commit is built from
/// the summary alone (the tenant is vouched), so it must apply the removals before the writes:
/// removing `x` after writing `x/y` drops the new directory, removing `d/y` after writing `d`
/// drops the new file. The renders do not make such a change today (file names end in
/// `.yaml`, directories do not); the order must not depend on that.
#[test]
fn a_path_that_changes_from_file_to_directory_or_back_is_committed_as_the_disk_holds_it() {
    let ws = Workspace::new();
    let (bare, url) = bare(ws.dir.path());
    let repo = OutputRepo::open(&ws.out(), &cfg(&url)).unwrap();
    cycle(&ws, &repo, true);
    let id = "abc-corporation-7f3a9c";
    let tdir = ws.out().join("tenants-out").join(id);
    // namespace.yaml: a file becomes a directory; deployments/: a directory becomes a file.
    std::fs::remove_file(tdir.join("namespace.yaml")).unwrap();
    std::fs::create_dir(tdir.join("namespace.yaml")).unwrap();
    std::fs::write(tdir.join("namespace.yaml/x.yaml"), "x: 1\n").unwrap();
    let deployments: Vec<String> = std::fs::read_dir(tdir.join("deployments"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    std::fs::remove_dir_all(tdir.join("deployments")).unwrap();
    std::fs::write(tdir.join("deployments"), "d: 1\n").unwrap();
    // The state file on disk records another tree for the tenant, as a run that wrote it would.
    let state_path = ws.out().join(provisio::io::output::STATE_FILE);
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
    let before = state["tenants"][id]["tree"].as_str().unwrap().to_owned();
    state["tenants"][id]["tree"] = serde_json::Value::from("changed by the run");
    std::fs::write(&state_path, serde_json::to_vec_pretty(&state).unwrap()).unwrap();
    let prefix = format!("tenants-out/{id}/");
    let summary = Summary {
        written: vec![
            format!("{prefix}deployments"),
            format!("{prefix}namespace.yaml/x.yaml"),
        ],
        removed: deployments
            .iter()
            .map(|f| format!("{prefix}deployments/{f}"))
            .chain([format!("{prefix}namespace.yaml")])
            .collect(),
        vouched: std::collections::BTreeMap::from([(id.to_owned(), before)]),
        ..Summary::default()
    };
    let d = deliver_once(&repo, Some(&summary), &Why::default());
    assert_eq!(d.commits.len(), 1);
    let files = tree_files(&bare, head_of(&bare, "main").unwrap());
    assert_eq!(
        files
            .get(&format!("{prefix}namespace.yaml/x.yaml"))
            .map(Vec::as_slice),
        Some(&b"x: 1\n"[..]),
        "the file that became a directory"
    );
    assert_eq!(
        files
            .get(&format!("{prefix}deployments"))
            .map(Vec::as_slice),
        Some(&b"d: 1\n"[..]),
        "the directory that became a file"
    );
    assert!(!files.contains_key(&format!("{prefix}namespace.yaml")));
    assert!(
        !files
            .keys()
            .any(|p| p.starts_with(&format!("{prefix}deployments/")))
    );
}

/// A product's version bump re-renders every tenant and changes one file of each: the commit
/// edits HEAD's trees file by file (the run found each tree on disk as HEAD recorded it) and
/// still holds exactly what the registry renders; after a hand edit, `--full` distrusts the
/// disk and the commit re-reads whole trees, repairing it.
#[test]
fn a_product_release_commits_exactly_the_full_render() {
    let ws = Workspace::new();
    let (bare, url) = bare(ws.dir.path());
    let repo = OutputRepo::open(&ws.out(), &cfg(&url)).unwrap();
    cycle(&ws, &repo, true);
    release_addresses(&ws);
    let summary = ws.generate();
    assert!(!summary.vouched.is_empty(), "{summary:?}");
    let d = deliver_once(&repo, Some(&summary), &Why::default());
    assert_eq!(d.commits.len(), 1);
    let head = head_of(&bare, "main").unwrap();
    assert_eq!(
        output_only(tree_files(&bare, head)),
        expected(&ws.registry())
    );
    // Every object the commits stored is one they name: a tree edited at two paths (a
    // tenant's deployment and its jobs) is written once, not once per path.
    assert_no_dangling_objects(&ws.out());

    // Someone commits a hand edit to the output repository, the work tree keeping the
    // rendered file: HEAD no longer holds what its state file says, and a run that trusts the
    // state files leaves it. `--full` (the safety net) re-reads the whole output: HEAD is what
    // the registry renders again.
    let r = git2::Repository::open(ws.out()).unwrap();
    let parent = r.head().unwrap().peel_to_commit().unwrap();
    let blob = r.blob(b"hand edit\n").unwrap();
    let mut up = git2::build::TreeUpdateBuilder::new();
    up.upsert(
        "tenants-out/abc-corporation-7f3a9c/namespace.yaml",
        blob,
        git2::FileMode::Blob,
    );
    let tree = up.create_updated(&r, &parent.tree().unwrap()).unwrap();
    let tree = r.find_tree(tree).unwrap();
    let sig = git2::Signature::now("person", "p@example.com").unwrap();
    r.commit(Some("HEAD"), &sig, &sig, "by hand", &tree, &[&parent])
        .unwrap();
    let summary = pipeline::generate(&ws.paths(), &common::full(common::now())).unwrap();
    assert!(summary.full && summary.vouched.is_empty(), "{summary:?}");
    let d = deliver_once(&repo, Some(&summary), &Why::default());
    assert_eq!(d.commits.len(), 1, "the hand edit is reverted");
    let head = head_of(&bare, "main").unwrap();
    assert_eq!(
        output_only(tree_files(&bare, head)),
        expected(&ws.registry())
    );
    fsck(&bare);
}

/// Someone's commit (stock git in the clone: its index holds the commit) put files where the
/// output has directories, leaving the work tree and the state file as they were: a tenant
/// directory, and a tenant's `deployments/`. The next release is vouched for on disk and
/// edits HEAD's trees below those files; the index after its commit is HEAD's tree (the
/// files replaced by directories are no longer in it).
#[test]
fn a_release_over_files_a_foreign_commit_put_where_directories_are_leaves_the_index_on_head() {
    let ws = Workspace::new();
    let (_bare, url) = bare(ws.dir.path());
    let repo = OutputRepo::open(&ws.out(), &cfg(&url)).unwrap();
    cycle(&ws, &repo, true);
    // Tenants the release reaches.
    let mut ids: Vec<String> = std::fs::read_dir(ws.out().join("tenants-out"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|t| t.join("deployments/addresses.yaml").is_file())
        .map(|t| t.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    assert!(ids.len() >= 2, "{ids:?}");
    let r = git2::Repository::open(ws.out()).unwrap();
    let parent = r.head().unwrap().peel_to_commit().unwrap();
    let blob = r.blob(b"a file\n").unwrap();
    let paths = [
        format!("tenants-out/{}", ids[0]),
        format!("tenants-out/{}/deployments", ids[1]),
    ];
    // Removed, then a file put in their place (libgit2 replaces no tree by a blob at once).
    let mut tree = parent.tree().unwrap();
    for put in [false, true] {
        let mut up = git2::build::TreeUpdateBuilder::new();
        for path in &paths {
            if put {
                up.upsert(path, blob, git2::FileMode::Blob);
            } else {
                up.remove(path);
            }
        }
        tree = r.find_tree(up.create_updated(&r, &tree).unwrap()).unwrap();
    }
    let sig = git2::Signature::now("person", "p@example.com").unwrap();
    r.commit(Some("HEAD"), &sig, &sig, "files", &tree, &[&parent])
        .unwrap();
    let mut index = r.index().unwrap();
    index.read_tree(&tree).unwrap();
    index.write().unwrap();
    release_addresses(&ws);
    let summary = ws.generate();
    assert!(
        summary.vouched.contains_key(&ids[0]) && summary.vouched.contains_key(&ids[1]),
        "{summary:?}"
    );
    let d = deliver_once(&repo, Some(&summary), &Why::default());
    assert_eq!(d.commits.len(), 1);
    repo.sync_index_after(&d.commits[0]).unwrap();
    assert_index_holds_head(&ws, "after a release over a foreign commit's files");
}

/// The objects a repository's packs hold (`git count-objects`' `in-pack`).
fn objects_in_packs(git_dir: &std::path::Path) -> usize {
    let out = std::process::Command::new("git")
        .args(["count-objects", "-v"])
        .current_dir(git_dir)
        .output()
        .expect("git is needed to check the repositories");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("in-pack: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{text}"))
}

/// Pushes (after a first cycle pushed everything) a release of `addresses` that `commit_by`
/// generates and returns the summary of, and asserts the remote got what the release changed:
/// per tenant two blobs and two trees, then the tenants directory, the root, the state file
/// and the commit — not the whole output again (at 10,000 tenants, 270,000 objects and
/// 1.6 GB to a remote that holds all but a few).
fn assert_a_release_sends_what_changed(commit_by: impl FnOnce(&Workspace) -> Summary) {
    let ws = Workspace::new();
    let (bare, url) = bare(ws.dir.path());
    let repo = OutputRepo::open(&ws.out(), &cfg(&url)).unwrap();
    cycle(&ws, &repo, true);
    let first = objects_in_packs(&bare);
    release_addresses(&ws);
    let summary = commit_by(&ws);
    let d = deliver_once(&repo, Some(&summary), &Why::default());
    assert_eq!(d.commits.len(), 1);
    let sent = objects_in_packs(&bare) - first;
    let tenants = std::fs::read_dir(ws.out().join("tenants-out"))
        .unwrap()
        .count();
    assert!(
        sent <= 4 * tenants + 4,
        "{sent} objects sent of {first} for {tenants} tenants"
    );
    assert_eq!(
        output_only(tree_files(&bare, head_of(&bare, "main").unwrap())),
        expected(&ws.registry())
    );
    fsck(&bare);
}

/// A `--full` run (as watch's first cycle is, and a run after a killed one) re-reads the
/// tenants directory whole into its commit, so its tree edits store or find every object of
/// the output: the push still sends what the release changed.
#[test]
fn a_full_run_pushes_what_changed_not_the_whole_output() {
    assert_a_release_sends_what_changed(|ws| {
        let summary = pipeline::generate(&ws.paths(), &common::full(common::now())).unwrap();
        assert!(summary.full, "{summary:?}");
        summary
    });
}

/// A release generated by one run and committed by the next (`generate`, then `generate
/// --commit --push`): the commit reads every tenant whose recorded tree moved whole, so its
/// edits find most of the output's objects stored already; the push still sends what changed.
#[test]
fn a_release_committed_by_a_later_run_pushes_what_changed() {
    assert_a_release_sends_what_changed(|ws| {
        ws.generate();
        let summary = ws.generate();
        assert!(summary.written.is_empty(), "{summary:?}");
        summary
    });
}

/// CI may find output that an earlier run generated and never committed (`generate` without
/// `--commit`): the next `generate --commit` writes nothing itself and still commits it (the
/// one commit path edits HEAD's tree where the state file on disk and HEAD's differ), and
/// leaves `git status` in the clone clean.
/// A hand edit in the output work tree that the next render happens to match: the file is
/// not rewritten, so it is not in the run's `written` list, yet HEAD holds the old bytes. The
/// tenant's tree on disk is not the recorded one, so it is not vouched for and the commit
/// reads it whole: HEAD ends up with what the registry renders.
#[test]
fn a_hand_edit_the_render_matches_is_still_committed() {
    let ws = Workspace::new();
    let (bare, url) = bare(ws.dir.path());
    let repo = OutputRepo::open(&ws.out(), &cfg(&url)).unwrap();
    cycle(&ws, &repo, true);
    let before = output_only(tree_files(&bare, head_of(&bare, "main").unwrap()));
    release_addresses(&ws);
    let after = expected(&ws.registry());
    // The person's edit: one file of one tenant set, by hand, to what the release renders.
    let (path, bytes) = after
        .iter()
        .find(|(p, b)| {
            p.starts_with("tenants-out/abc-corporation-7f3a9c/") && before.get(*p) != Some(*b)
        })
        .expect("the release changes a file of the tenant");
    std::fs::write(ws.out().join(path), bytes).unwrap();
    let summary = ws.generate();
    assert!(!summary.written.contains(path), "{summary:?}");
    assert!(
        !summary.vouched.contains_key("abc-corporation-7f3a9c"),
        "a tree that is not the recorded one is not vouched for: {summary:?}"
    );
    let d = deliver_once(&repo, Some(&summary), &Why::default());
    assert_eq!(d.commits.len(), 1);
    let head = head_of(&bare, "main").unwrap();
    assert_eq!(output_only(tree_files(&bare, head)), after);
}

#[test]
fn generate_commit_commits_output_an_earlier_run_left_uncommitted() {
    let ws = Workspace::new();
    let (bare, url) = bare(ws.dir.path());
    let run = |extra: &[&str]| generate_bin(&ws, extra);
    let deliver = ["--commit", "--push", "--manifests-url", url.as_str()];
    run(&deliver);
    let first = head_of(&bare, "main").unwrap();
    let (id, rel, text) = new_tenant(3);
    ws.write(&rel, &text);
    let stderr = run(&[]);
    assert!(
        stderr.contains("(1 tenant(s) changed, 0 removed)"),
        "{stderr}"
    );
    let stderr = run(&deliver);
    assert!(stderr.contains("generate: 0 written"), "{stderr}");
    assert!(stderr.contains("generate: committed "), "{stderr}");
    let head = head_of(&bare, "main").unwrap();
    assert_ne!(head, first);
    assert_eq!(tree_files(&bare, head), expected(&ws.registry()));
    assert!(
        message(&bare, head).contains(&id),
        "{}",
        message(&bare, head)
    );
    let clone = git2::Repository::open(ws.out()).unwrap();
    let dirty = status_paths(&clone);
    assert!(dirty.is_empty(), "{dirty:?}");
}

/// The index of the output clone after a commit: exactly HEAD's tree. A run that finds the
/// index file provisio wrote (same checksum as recorded) skips rebuilding its tree; an index
/// written by anyone else since — here a file staged by hand — is checked whole and rebuilt.
#[test]
fn the_index_follows_each_commit_and_a_foreign_write_is_not_trusted() {
    let ws = Workspace::new();
    let (_bare, url) = bare(ws.dir.path());
    let deliver = |ws: &Workspace| {
        let stderr = generate_bin(ws, &["--commit", "--push", "--manifests-url", &url]);
        assert!(stderr.contains("generate: committed "), "{stderr}");
    };
    let index_holds_head = |what: &str| assert_index_holds_head(&ws, what);
    deliver(&ws);
    index_holds_head("after the first commit");
    for i in 3..5 {
        let (_, rel, text) = new_tenant(i);
        ws.write(&rel, &text);
        deliver(&ws);
        index_holds_head("after a commit on an index provisio wrote");
    }
    // Someone stages a file in the output clone: the index no longer holds HEAD's tree.
    std::fs::write(ws.out().join("NOTES.md"), "by hand\n").unwrap();
    {
        let clone = git2::Repository::open(ws.out()).unwrap();
        let mut index = clone.index().unwrap();
        index.add_path(std::path::Path::new("NOTES.md")).unwrap();
        index.write().unwrap();
    }
    let (_, rel, text) = new_tenant(5);
    ws.write(&rel, &text);
    deliver(&ws);
    index_holds_head("after a commit on an index written by someone else");
}

/// The index brought in step beside the push (a second handle, another thread) holds the
/// pushed commit's tree, and the delivery says so; a delivery rejected because the remote
/// moved still ends with the index and the record of the commit it pushed, whatever the
/// side sync did before the reset.
#[test]
fn the_index_synced_beside_the_push_holds_the_pushed_commit() {
    let ws = Workspace::new();
    let (bare_dir, url) = bare(ws.dir.path());
    let repo = OutputRepo::open(&ws.out(), &cfg(&url)).unwrap();
    let holds = |commit: git2::Oid, what: &str| {
        let clone = git2::Repository::open(ws.out()).unwrap();
        let tree = clone.find_commit(commit).unwrap().tree_id();
        let mut index = clone.index().unwrap();
        index.read(true).unwrap();
        assert_eq!(index.write_tree().unwrap(), tree, "{what}");
        assert!(
            status_paths(&clone).is_empty(),
            "{what}: {:?}",
            status_paths(&clone)
        );
    };
    for i in 3..5 {
        let (_, rel, text) = new_tenant(i);
        ws.write(&rel, &text);
        let summary = ws.generate();
        let d = delivery::deliver(
            &repo,
            Some(&summary),
            &Why::default(),
            Some(&fast()),
            &mut || unreachable!("nobody else pushes"),
            Some(repo.index_syncer().unwrap()),
            &|| false,
        )
        .unwrap();
        let last = d.commits.last().expect("a commit").id;
        assert_eq!(d.index_synced, Some(last), "tenant {i}");
        assert_eq!(d.pushed.map(|(_, after)| after), Some(last));
        holds(last, &format!("after tenant {i}"));
    }
    // Another writer pushes first: the first push is rejected (the side sync ran beside it),
    // the delivery fetches, resets, regenerates on top and pushes; the caller syncs after
    // the last commit, as `generate --commit` does.
    let theirs = other_writer(&bare_dir, "main", |dir| {
        std::fs::write(dir.join("OWNERS"), "platform-team\n").unwrap();
    });
    let (_, rel, text) = new_tenant(5);
    ws.write(&rel, &text);
    let summary = ws.generate();
    let paths = ws.paths();
    let mut regenerate = || {
        pipeline::generate(
            &paths,
            &GenerateOptions {
                full: true,
                ..opts()
            },
        )
    };
    let d = delivery::deliver(
        &repo,
        Some(&summary),
        &Why::default(),
        Some(&fast()),
        &mut regenerate,
        Some(repo.index_syncer().unwrap()),
        &|| false,
    )
    .unwrap();
    assert_eq!(d.commits.len(), 2, "one rejected, one on top");
    let last = d.commits.last().unwrap();
    assert_eq!(
        d.index_synced,
        Some(d.commits[0].id),
        "synced beside the first push"
    );
    repo.sync_index_after(last).unwrap();
    holds(last.id, "after the regenerated commit");
    assert_eq!(head_of(&bare_dir, "main"), Some(last.id));
    assert_eq!(parents(&bare_dir, last.id), vec![theirs]);
}

/// The output clone's index holds HEAD's tree, and `.git/provisio-index` records the index
/// file's trailer with that tree (the next run's free path).
fn assert_index_holds_head(ws: &Workspace, what: &str) {
    let clone = git2::Repository::open(ws.out()).unwrap();
    let head = clone.head().unwrap().peel_to_tree().unwrap().id();
    let mut index = clone.index().unwrap();
    assert_eq!(index.write_tree().unwrap(), head, "{what}");
    let record = std::fs::read_to_string(clone.path().join("provisio-index")).unwrap();
    let file = std::fs::read(clone.path().join("index")).unwrap();
    let trailer: String = file[file.len() - 20..]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(record, format!("{trailer} {head}\n"), "{what}");
}

/// `generate --commit --push` whose first push is rejected (another writer pushed first):
/// the index was brought in step beside that push, then reset with the branch; the command
/// syncs after the commit it regenerated on top. The index and its record end on HEAD.
#[test]
fn generate_commit_push_rejected_once_ends_with_the_index_on_the_pushed_commit() {
    let ws = Workspace::new();
    let (bare_dir, url) = bare(ws.dir.path());
    let stderr = generate_bin(&ws, &["--commit", "--push", "--manifests-url", &url]);
    assert!(stderr.contains("generate: committed "), "{stderr}");
    assert_index_holds_head(&ws, "after the first run");
    let theirs = other_writer(&bare_dir, "main", |dir| {
        std::fs::write(dir.join("OWNERS"), "platform-team\n").unwrap();
    });
    let (_, rel, text) = new_tenant(3);
    ws.write(&rel, &text);
    let stderr = generate_bin(&ws, &["--commit", "--push", "--manifests-url", &url]);
    assert!(stderr.contains("(1 retry)"), "{stderr}");
    let clone = git2::Repository::open(ws.out()).unwrap();
    let head = clone.head().unwrap().target().unwrap();
    assert_eq!(head_of(&bare_dir, "main"), Some(head));
    assert_eq!(parents(&bare_dir, head), vec![theirs]);
    assert_index_holds_head(&ws, "after a run whose first push was rejected");
    assert!(
        status_paths(&clone).is_empty(),
        "{:?}",
        status_paths(&clone)
    );
}

/// A run killed after moving HEAD and before updating the index (its index file and record
/// are those of the commit before): the next run has nothing to commit, and must still bring
/// the index to HEAD's tree — otherwise `git status` in the output clone shows the last
/// commit undone and staged, and a hand commit there would revert it.
#[test]
fn a_run_after_one_killed_before_its_index_update_brings_the_index_to_head() {
    let ws = Workspace::new();
    let (_bare, url) = bare(ws.dir.path());
    let deliver =
        |ws: &Workspace| generate_bin(ws, &["--commit", "--push", "--manifests-url", &url]);
    deliver(&ws);
    let git_dir = ws.out().join(".git");
    let saved: Vec<(std::path::PathBuf, Vec<u8>)> = ["index", "provisio-index"]
        .iter()
        .map(|f| (git_dir.join(f), std::fs::read(git_dir.join(f)).unwrap()))
        .collect();
    let (_, rel, text) = new_tenant(7);
    ws.write(&rel, &text);
    assert!(deliver(&ws).contains("generate: committed "));
    // The kill's leftovers: HEAD is the new commit, the index and record the old ones.
    for (path, bytes) in &saved {
        std::fs::write(path, bytes).unwrap();
    }
    let stderr = deliver(&ws);
    assert!(stderr.contains("generate: nothing to commit"), "{stderr}");
    let clone = git2::Repository::open(ws.out()).unwrap();
    let head = clone.head().unwrap().peel_to_tree().unwrap().id();
    let mut index = clone.index().unwrap();
    assert_eq!(index.write_tree().unwrap(), head);
    let staged = status_paths(&clone);
    assert!(staged.is_empty(), "{staged:?}");
}

/// Stock git in the output clone between runs — `gc` repacking and pruning the packs
/// provisio wrote, `status` refreshing the index, an index written with `index.skipHash`
/// (an all-zero trailer), a `checkout` of the work tree — and then a product release and a
/// new tenant: each run pushes exactly a fresh render and leaves the index holding HEAD.
#[test]
fn stock_git_in_the_output_clone_between_runs_changes_nothing_delivered() {
    let ws = Workspace::new();
    let (bare_path, url) = bare(ws.dir.path());
    let deliver = |ws: &Workspace| {
        generate_bin(ws, &["--commit", "--push", "--manifests-url", &url]);
    };
    let git = |args: &[&str]| {
        let Ok(out) = std::process::Command::new("git")
            .arg("-C")
            .arg(ws.out())
            .args(args)
            .output()
        else {
            return false; // no git here
        };
        assert!(out.status.success(), "git {args:?}: {out:?}");
        true
    };
    let check = |what: &str| {
        let head = head_of(&bare_path, "main").unwrap();
        assert_eq!(
            tree_files(&bare_path, head),
            expected(&ws.registry()),
            "{what}"
        );
        let clone = git2::Repository::open(ws.out()).unwrap();
        let tree = clone.head().unwrap().peel_to_tree().unwrap().id();
        assert_eq!(clone.index().unwrap().write_tree().unwrap(), tree, "{what}");
        git(&["fsck", "--full", "--no-dangling"]);
    };
    deliver(&ws);
    if !git(&["gc", "--prune=now"]) {
        return;
    }
    git(&["status", "--porcelain"]);
    let rel = "products/orders.yaml";
    let product = std::fs::read_to_string(ws.registry().join(rel)).unwrap();
    ws.write(rel, &product.replace("version: v1.2.3", "version: v1.4.0"));
    deliver(&ws);
    check("a release after git gc and git status");
    git(&[
        "-c",
        "index.skipHash=true",
        "update-index",
        "--really-refresh",
    ]);
    git(&["-c", "index.skipHash=true", "checkout", "--", "."]);
    let (_, t, text) = new_tenant(8);
    ws.write(&t, &text);
    ws.write(rel, &product.replace("version: v1.2.3", "version: v1.5.0"));
    deliver(&ws);
    check("a tenant and a release after an index written with index.skipHash");
    git(&["repack", "-a", "-d", "-f"]);
    // An index rewritten by git (new bytes — version 4 — same entries): a run with nothing to commit finds
    // it holds HEAD and records it, so the next such run need not rebuild its tree.
    git(&["update-index", "--index-version", "4"]);
    let git_dir = ws.out().join(".git");
    let file = std::fs::read(git_dir.join("index")).unwrap();
    let before = std::fs::read_to_string(git_dir.join("provisio-index")).unwrap();
    let trailer: String = file[file.len() - 20..]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(
        !before.starts_with(&trailer),
        "git rewrote the index: {before}"
    );
    deliver(&ws);
    check("a run with nothing to do after a repack and an index refresh");
    let head = git2::Repository::open(ws.out())
        .unwrap()
        .head()
        .unwrap()
        .peel_to_tree()
        .unwrap()
        .id();
    assert_eq!(
        std::fs::read_to_string(git_dir.join("provisio-index")).unwrap(),
        format!("{trailer} {head}\n")
    );
}

/// After a commit on the index provisio wrote, the index file is spliced (version 2, no
/// cache tree: not libgit2's write) and stock git agrees it holds HEAD, the work tree clean.
/// Index forms the splice does not take — a split index, a skip-worktree (extended) entry,
/// version 4 — go through libgit2's path: the index still ends holding HEAD, or (a split
/// index, which libgit2 cannot read) the run warns and leaves the file as git wrote it.
#[test]
fn the_index_spliced_after_a_commit_is_what_stock_git_expects() {
    let ws = Workspace::new();
    let (_bare, url) = bare(ws.dir.path());
    let deliver = |ws: &Workspace| {
        let stderr = generate_bin(ws, &["--commit", "--push", "--manifests-url", &url]);
        assert!(stderr.contains("generate: committed "), "{stderr}");
        stderr
    };
    // `--no-optional-locks`: `status` must not rewrite the index it is checking.
    let git = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("git")
            .arg("--no-optional-locks")
            .arg("-C")
            .arg(ws.out())
            .args(args)
            .output()
            .ok()?;
        assert!(out.status.success(), "git {args:?}: {out:?}");
        Some(String::from_utf8(out.stdout).unwrap())
    };
    let git_dir = ws.out().join(".git");
    let index_file = || std::fs::read(git_dir.join("index")).unwrap();
    let spliced = || {
        let file = index_file();
        file[4..8] == [0, 0, 0, 2] && !file.windows(4).any(|w| w == b"TREE")
    };
    let check = |what: &str| {
        let before = index_file();
        assert_eq!(git(&["status", "--porcelain"]).unwrap(), "", "{what}");
        assert_eq!(
            git(&["diff-index", "--cached", "HEAD"]).unwrap(),
            "",
            "{what}"
        );
        let fields = |text: String, id: usize| -> Vec<String> {
            text.lines()
                .map(|l| {
                    let (meta, path) = l.split_once('\t').unwrap();
                    let f: Vec<&str> = meta.split(' ').collect();
                    format!("{} {} {path}", f[0], f[id])
                })
                .collect()
        };
        let staged = fields(git(&["ls-files", "-s"]).unwrap(), 1);
        let committed = fields(git(&["ls-tree", "-r", "HEAD"]).unwrap(), 2);
        assert!(!staged.is_empty());
        assert_eq!(staged, committed, "{what}");
        git(&["fsck", "--no-dangling"]);
        let clone = git2::Repository::open(ws.out()).unwrap();
        let head = clone.head().unwrap().peel_to_tree().unwrap().id();
        assert_eq!(clone.index().unwrap().write_tree().unwrap(), head, "{what}");
        assert_eq!(
            index_file(),
            before,
            "{what}: the checks left the index alone"
        );
    };
    deliver(&ws);
    if git(&["--version"]).is_none() {
        return; // no git here
    }
    check("after the first commit");
    assert!(
        !spliced(),
        "the first commit's index is libgit2's, with a cache tree"
    );
    let mut n = 3;
    let mut next_tenant = |ws: &Workspace| {
        let (_, rel, text) = new_tenant(n);
        n += 1;
        ws.write(&rel, &text);
    };
    for _ in 0..2 {
        next_tenant(&ws);
        deliver(&ws);
        assert!(spliced(), "the commit's index is spliced");
        check("after a spliced commit");
    }
    let rel = "products/orders.yaml";
    let product = std::fs::read_to_string(ws.registry().join(rel)).unwrap();
    ws.write(rel, &product.replace("version: v1.2.3", "version: v1.4.0"));
    deliver(&ws);
    assert!(spliced(), "a release's index is spliced");
    check("after a spliced release");

    // A skip-worktree entry (of a file no later commit changes: libgit2 drops the flag of a
    // path it updates): git writes a version 3 file with an extended entry, and so does
    // libgit2 after it.
    let some_file = committed_path(&git(&["ls-files"]).unwrap());
    git(&["update-index", "--skip-worktree", &some_file]);
    for what in [
        "after skip-worktree (git's file)",
        "after skip-worktree (libgit2's file)",
    ] {
        next_tenant(&ws);
        deliver(&ws);
        assert_eq!(index_file()[4..8], [0, 0, 0, 3], "{what}");
        check(what);
    }
    let skipped = git(&["ls-files", "-v", &some_file]).unwrap();
    assert!(skipped.starts_with("S "), "{skipped}");
    git(&["update-index", "--no-skip-worktree", &some_file]);
    // Version 4 (prefix-compressed names), which libgit2 keeps when it writes.
    git(&["update-index", "--index-version", "4"]);
    for what in [
        "after version 4 (git's file)",
        "after version 4 (libgit2's file)",
    ] {
        next_tenant(&ws);
        deliver(&ws);
        assert_eq!(index_file()[4..8], [0, 0, 0, 4], "{what}");
        check(what);
    }
    git(&["update-index", "--index-version", "2"]);
    // A split index: libgit2 cannot read it (a required `link` extension); the run warns
    // and git's files are left as they are.
    git(&["update-index", "--split-index"]);
    let split = index_file();
    next_tenant(&ws);
    let stderr = deliver(&ws);
    assert!(stderr.contains("warning: "), "{stderr}");
    assert_eq!(index_file(), split);
    git(&["update-index", "--no-split-index"]);
    next_tenant(&ws);
    deliver(&ws);
    check("after the split index is undone");
    next_tenant(&ws);
    deliver(&ws);
    assert!(spliced(), "back on the index provisio wrote");
    check("spliced again");
}

/// A file of an existing tenant's tree.
fn committed_path(ls_files: &str) -> String {
    let file = ls_files.lines().find(|l| l.starts_with("tenants-out/"));
    file.unwrap().to_owned()
}

/// Receives one HTTP request on 127.0.0.1; returns (request head, body).
fn listen_once() -> (String, std::thread::JoinHandle<(String, Vec<u8>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/api/webhook", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut head = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push_str(&line);
        }
        let len: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .expect("a content-length");
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .unwrap();
        (head, body)
    });
    (url, handle)
}

#[test]
fn after_a_push_argo_cd_gets_a_signed_github_push_event() {
    let ws = Workspace::new();
    let (bare, url) = bare(ws.dir.path());
    let repo = OutputRepo::open(&ws.out(), &cfg(&url)).unwrap();
    cycle(&ws, &repo, true);
    let before = head_of(&bare, "main").unwrap();
    let (id, rel, text) = new_tenant(9);
    ws.write(&rel, &text);
    let d = cycle(&ws, &repo, true);
    let after = head_of(&bare, "main").unwrap();

    let (hook, server) = listen_once();
    let nudge = provisio::io::nudge::Nudge {
        url: hook,
        repo_url: "https://git.example.com/platform/manifests".into(),
        secret: Some(b"s3cret".to_vec()),
        timeout: Duration::from_secs(5),
        format: provisio::io::nudge::Format::Github,
    };
    assert_eq!(
        delivery::nudge_argocd(&repo, &nudge, &d).unwrap(),
        Some(200)
    );
    let (head, body) = server.join().unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("post /api/webhook http/1.1"), "{head}");
    assert!(head.contains("x-github-event: push\r\n"), "{head}");
    assert!(
        head.contains("content-type: application/json\r\n"),
        "{head}"
    );
    let sig = provisio::io::nudge::signature(b"s3cret", &body);
    assert!(
        head.contains(&format!("x-hub-signature-256: {sig}\r\n")),
        "{head}"
    );
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["ref"], "refs/heads/main");
    assert_eq!(v["before"], before.to_string());
    assert_eq!(v["after"], after.to_string());
    assert_eq!(
        v["repository"]["html_url"],
        "https://git.example.com/platform/manifests"
    );
    let added: Vec<String> = serde_json::from_value(v["commits"][0]["added"].clone()).unwrap();
    assert!(
        added.contains(&format!("tenants-out/{id}/kustomization.yaml")),
        "{added:?}"
    );
    assert_eq!(v["head_commit"]["id"], after.to_string());

    // A refusing endpoint is an error the caller logs (the push stands).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let refuser = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf);
        s.write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 13\r\nconnection: close\r\n\r\nbad signature")
            .unwrap();
    });
    let err = delivery::nudge_argocd(
        &repo,
        &provisio::io::nudge::Nudge {
            url: format!("http://{addr}/api/webhook"),
            ..nudge
        },
        &d,
    )
    .unwrap_err();
    refuser.join().unwrap();
    assert!(err.to_string().contains("HTTP 403: bad signature"), "{err}");
}

#[test]
fn a_second_process_on_the_same_output_repository_is_refused() {
    let ws = Workspace::new();
    let (_bare, url) = bare(ws.dir.path());
    let _first = OutputRepo::open(&ws.out(), &cfg(&url)).unwrap();
    let second = OutputRepo::open(&ws.out(), &cfg(&url)).err().unwrap();
    assert!(
        matches!(second, provisio::io::repo::GitError::Locked(_)),
        "{second:?}"
    );
}

#[test]
fn an_output_root_below_the_work_tree_is_committed_under_its_prefix_only() {
    let ws = Workspace::new();
    let (bare, url) = bare(ws.dir.path());
    // The clone holds other files; the output root is `deploy/` inside it.
    let clone = ws.dir.path().join("clone");
    let repo = git2::Repository::init(&clone).unwrap();
    repo.remote("origin", &url).unwrap();
    std::fs::write(clone.join("NOTES.md"), "not provisio's\n").unwrap();
    let out = clone.join("deploy");
    let paths = provisio::ops::generate::Paths {
        registry: ws.registry(),
        out: out.clone(),
    };
    let out_repo = OutputRepo::open(&out, &RepoConfig::default()).unwrap();
    let run = || {
        let summary = pipeline::generate(&paths, &opts()).unwrap();
        deliver_once(&out_repo, Some(&summary), &Why::default())
    };
    run(); // the first commit goes through the index
    let (_, rel, text) = new_tenant(4);
    ws.write(&rel, &text);
    run(); // later ones edit HEAD's tree under the prefix
    let head = head_of(&bare, "master")
        .or_else(|| head_of(&bare, "main"))
        .unwrap();
    let files = tree_files(&bare, head);
    assert!(
        !files.contains_key("NOTES.md"),
        "only the output paths are staged"
    );
    let under: std::collections::BTreeMap<String, Vec<u8>> = files
        .into_iter()
        .map(|(p, b)| {
            (
                p.strip_prefix("deploy/").expect("under deploy/").to_owned(),
                b,
            )
        })
        .collect();
    assert_eq!(under, expected(&ws.registry()));
}

/// Stock git finds no object in `work_tree`'s repository that nothing names: every object the
/// commits stored is one they reach.
fn assert_no_dangling_objects(work_tree: &std::path::Path) {
    let fsck = std::process::Command::new("git")
        .args(["fsck", "--full", "--dangling", "--no-reflogs"])
        .current_dir(work_tree)
        .output()
        .expect("git is needed to check the repositories");
    let text = String::from_utf8_lossy(&fsck.stdout);
    assert!(
        fsck.status.success() && !text.contains("dangling"),
        "{text}"
    );
}

/// The `.pack` files in a repository's `objects/pack/`.
fn pack_count(git_dir: &std::path::Path) -> usize {
    std::fs::read_dir(git_dir.join("objects/pack"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".pack")
        })
        .count()
}

/// Watch's case: one output repository open for many commits, each adding a pack. The pack
/// count never passes the limit (rolled up geometrically after the commit that passes it),
/// stock git reads every commit and finds every reachable object, and this process keeps no
/// removed pack open or mapped (its handle's object database is reopened after a roll-up).
#[test]
fn many_commits_keep_the_pack_count_bounded_and_every_commit_readable() {
    let ws = Workspace::new();
    let (_bare, url) = bare(ws.dir.path());
    let repo = OutputRepo::open(&ws.out(), &cfg(&url)).unwrap();
    let git_dir = ws.out().join(".git");
    const COMMITS: usize = 120;
    let limit = provisio::io::repo::rollup::PACK_LIMIT;
    let (mut most, mut rolled_up) = (0, false);
    for n in 0..COMMITS {
        if n > 0 {
            let (_, rel, text) = new_tenant(n);
            ws.write(&rel, &text);
        }
        let before = pack_count(&git_dir);
        assert_eq!(cycle(&ws, &repo, false).commits.len(), 1, "commit {n}");
        let after = pack_count(&git_dir);
        assert!(after <= limit, "{after} packs after commit {n}");
        rolled_up |= after < before;
        most = most.max(after);
    }
    assert!(
        rolled_up,
        "at most {most} packs: the limit was never passed"
    );
    let ours = ws.out().canonicalize().unwrap();
    let ours = ours.to_string_lossy();
    for list in ["/proc/self/maps"] {
        if let Ok(text) = std::fs::read_to_string(list) {
            let held: Vec<&str> = text
                .lines()
                .filter(|l| l.contains(&*ours) && l.contains("(deleted)"))
                .collect();
            assert!(
                held.is_empty(),
                "{} mappings of removed packs, the first: {:?}",
                held.len(),
                &held[..held.len().min(2)]
            );
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                let t = target.to_string_lossy();
                assert!(
                    !(t.contains(&*ours) && t.contains("(deleted)")),
                    "a removed pack still open: {t}"
                );
            }
        }
    }
    drop(repo);
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(&git_dir)
            .args(args)
            .output()
            .ok()?;
        assert!(out.status.success(), "git {args:?}: {out:?}");
        Some(String::from_utf8(out.stdout).unwrap())
    };
    let Some(_) = git(&["fsck", "--full", "--strict", "--no-dangling"]) else {
        return; // no stock git here
    };
    let log = git(&["log", "--format=%H", "--stat"]).unwrap();
    let commits = log.lines().filter(|l| l.len() == 40).count();
    assert_eq!(commits, COMMITS);
    let count = git(&["count-objects", "-v"]).unwrap();
    assert!(count.contains("\ngarbage: 0\n"), "{count}");
    git(&["cat-file", "--batch-all-objects", "--batch-check"]).unwrap();
}
