//! Issue 10, item 3: the real `provisio generate` binary is killed with SIGKILL during a run
//! that rewrites every tenant (a platform change), the registry change is reverted, and the
//! next `generate` must converge: `check` is clean. Before the journal, the incremental run
//! trusted the old state file for trees that were half rewritten ("0 written", and `check`
//! reported hundreds of differing files on every run until `--full`). Several kill points
//! are tried, spread over the length of a run; the same for a product release (the run that
//! re-renders only the files a version reaches).

use crate::common;
use crate::watch_support;

use std::process::{Command, Stdio};
use std::time::Instant;

use common::Workspace;

const NOW: &str = "2025-02-01T00:00:00Z";
const TENANTS: usize = 60;

fn provisio(ws: &Workspace, verb: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_provisio"));
    c.arg(verb)
        .arg("--registry")
        .arg(ws.registry())
        .arg("--out")
        .arg(ws.out())
        .args(["--now", NOW])
        .env_remove("PROVISIO_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn run(ws: &Workspace, verb: &str) -> (i32, String) {
    let out = provisio(ws, verb).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn add_tenants(ws: &Workspace) {
    for n in 0..TENANTS {
        let name = format!("Crash Test {n}");
        let sub = format!("sub_crash{n:04}");
        let id = provisio_core::naming::tenant_id(&name, &sub);
        ws.write(
            &format!("tenants/{id}.yaml"),
            &format!(
                "id: {id}\nname: {name}\ntier: standard\nregion: eu-west\nsubscription: {sub}\n\
                 contacts: {{admin: a{n}@example.com, billing: b{n}@example.com}}\n\
                 created: 2025-01-01T00:00:00Z\nstatus: active\n"
            ),
        );
    }
}

#[test]
fn sigkill_during_a_platform_change_then_a_revert_converges() {
    let ws = Workspace::new();
    add_tenants(&ws);
    let platform = std::fs::read_to_string(ws.registry().join("platform.yaml")).unwrap();
    let changed = platform.replace("environment: production", "environment: staging");
    let torn_runs = sigkill_then_revert_converges(&ws, "platform.yaml", &platform, &changed);
    assert!(
        torn_runs > 0,
        "no kill landed while files were being rewritten"
    );
}

/// The same for a product release, whose run re-renders only the files the version reaches
/// and takes the rest of each tree from the disk: a tree it half rewrote is never trusted.
#[test]
fn sigkill_during_a_product_release_then_a_revert_converges() {
    let ws = Workspace::new();
    add_tenants(&ws);
    let rel = "products/orders.yaml";
    let product = std::fs::read_to_string(ws.registry().join(rel)).unwrap();
    let changed = product.replace("version: v1.2.3", "version: v1.3.0");
    let torn_runs = sigkill_then_revert_converges(&ws, rel, &product, &changed);
    println!("{torn_runs} run(s) killed while the journal was written");
}

/// A cold run (every tenant new: each tree written whole into a staging directory by a
/// rendering thread, then renamed into place by the writer) killed at 10–90 % of its length:
/// the next run converges (`check` clean, no staging directory or journal left, and a run
/// after it writes nothing).
#[test]
fn sigkill_during_a_cold_run_converges() {
    let ws = Workspace::new();
    add_tenants(&ws);
    let started = Instant::now();
    let (code, out) = run(&ws, "generate");
    let full_run = started.elapsed();
    assert_eq!(code, 0, "{out}");
    let tenants_out = ws.out().join("tenants-out");
    let staging = |dir: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(".provisio-"))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut staged_left = 0;
    for percent in [10u32, 30, 50, 70, 90] {
        std::fs::remove_dir_all(ws.out()).unwrap();
        let mut child = provisio(&ws, "generate").spawn().unwrap();
        std::thread::sleep(full_run * percent / 100);
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        staged_left += staging(&tenants_out).len();
        let (code, out) = run(&ws, "generate");
        assert_eq!(code, 0, "kill at {percent}% ({status}): {out}");
        let (code, out) = run(&ws, "check");
        assert_eq!(
            code,
            0,
            "kill at {percent}% ({status}): check is not clean:\n{}",
            out.lines().take(20).collect::<Vec<_>>().join("\n")
        );
        assert_eq!(
            staging(&tenants_out),
            Vec::<String>::new(),
            "kill at {percent}%"
        );
        assert!(!ws.out().join(provisio::io::output::JOURNAL_FILE).exists());
        let (code, out) = run(&ws, "generate");
        assert_eq!(code, 0);
        assert!(out.contains("generate: 0 written, 0 removed"), "{out}");
    }
    println!("{staged_left} staging director(y/ies) left by the kills");
}

/// The staging directories a killed run leaves (the rendering threads stage several new trees
/// ahead of the writer) are provisio's own leftovers, not tenants: the next run removes them
/// without reporting a removed tenant or removed files (a tenant counted as removed shows in
/// the CLI's summary, the watcher's metrics and log).
#[test]
fn staging_directories_a_killed_run_left_are_removed_without_being_reported_as_tenants() {
    let ws = Workspace::new();
    let (code, out) = run(&ws, "generate");
    assert_eq!(code, 0, "{out}");
    let tenants_out = ws.out().join("tenants-out");
    // One for a tenant that is still new, one for a tenant since removed from the registry.
    for id in ["some-new-tenant-000000", "gone-tenant-111111"] {
        let staged = tenants_out.join(format!(".provisio-staging-{id}"));
        std::fs::create_dir_all(staged.join("app")).unwrap();
        std::fs::write(staged.join("kustomization.yaml"), "resources: []\n").unwrap();
        std::fs::write(staged.join("app/deployment.yaml"), "kind: Deployment\n").unwrap();
    }
    let (code, out) = run(&ws, "generate");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("generate: 0 written, 0 removed"),
        "leftovers reported as removed files: {out}"
    );
    assert!(
        out.contains("(0 tenant(s) changed, 0 removed)"),
        "leftovers reported as removed tenants: {out}"
    );
    let left: Vec<_> = std::fs::read_dir(&tenants_out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert_eq!(left, Vec::<String>::new());
}

/// The temporary file a run killed inside a write leaves next to the file it was replacing
/// (`.provisio-XXXXXX`, in a tenant's directory or a subdirectory of it) is provisio's own: a
/// run that re-reads the tree removes it without counting a removed file or a changed tenant.
#[test]
fn temporary_files_a_killed_write_left_in_a_tenant_tree_are_removed_without_being_reported() {
    let ws = Workspace::new();
    let (code, out) = run(&ws, "generate");
    assert_eq!(code, 0, "{out}");
    let tenant = ws.out().join("tenants-out/abc-corporation-7f3a9c");
    let leftovers = [
        tenant.join(".provisio-Xk2a9Q"),
        tenant.join("deployments/.provisio-Yk3b0R"),
    ];
    for f in &leftovers {
        std::fs::write(f, "half a file").unwrap();
    }
    let out = provisio(&ws, "generate").arg("--full").output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("generate: 0 written, 0 removed"),
        "leftovers reported as removed files: {text}"
    );
    assert!(
        text.contains("(0 tenant(s) changed, 0 removed)"),
        "leftovers counted as a change: {text}"
    );
    for f in &leftovers {
        assert!(!f.exists(), "{} left", f.display());
    }
}

/// Generates, times a run with `rel` changed to `changed`, then five times kills such a run
/// at 10–90 % of that time, reverts `rel` to `original` and checks that the next run converges
/// (`check` clean, no journal, and a run after it writes nothing). Returns how many kills
/// left a journal (landed while trees were being rewritten).
fn sigkill_then_revert_converges(
    ws: &Workspace,
    rel: &str,
    original: &str,
    changed: &str,
) -> usize {
    assert_ne!(original, changed);
    let (code, out) = run(ws, "generate");
    assert_eq!(code, 0, "{out}");

    // How long a run with the change takes (then back to the baseline).
    ws.write(rel, changed);
    let started = Instant::now();
    let (code, out) = run(ws, "generate");
    let full_run = started.elapsed();
    println!("a run with {rel} changed took {full_run:?}");
    assert_eq!(code, 0, "{out}");
    ws.write(rel, original);
    assert_eq!(run(ws, "generate").0, 0);
    assert_eq!(run(ws, "check").0, 0);

    let mut torn_runs = 0;
    for percent in [10u32, 30, 50, 70, 90] {
        ws.write(rel, changed);
        let mut child = provisio(ws, "generate").spawn().unwrap();
        std::thread::sleep(full_run * percent / 100);
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        if ws.out().join(provisio::io::output::JOURNAL_FILE).exists() {
            torn_runs += 1;
        }
        // The change is reverted before anything else runs.
        ws.write(rel, original);
        let (code, out) = run(ws, "generate");
        assert_eq!(code, 0, "kill at {percent}% ({status}): {out}");
        let (code, out) = run(ws, "check");
        assert_eq!(
            code,
            0,
            "kill at {percent}% ({status}): check after the revert is not clean:\n{}",
            out.lines().take(20).collect::<Vec<_>>().join("\n")
        );
        assert!(
            !ws.out().join(provisio::io::output::JOURNAL_FILE).exists(),
            "a completed run leaves no journal"
        );
        // And the next run has nothing left to do.
        let (code, out) = run(ws, "generate");
        assert_eq!(code, 0);
        assert!(out.contains("generate: 0 written, 0 removed"), "{out}");
    }
    torn_runs
}

/// The same at the library level, deterministic: a run that stops after writing part of
/// the trees (simulated by a journal and half-rewritten files) is repaired by the next
/// incremental run.
#[test]
fn a_journal_left_by_a_killed_run_distrusts_the_trees_it_names() {
    let ws = Workspace::new();
    ws.generate();
    let before = ws.snapshot();
    // A killed run: it had journaled every tenant, rewritten one file, never written state.
    let id = "cafe-creme-93b31b";
    std::fs::write(
        ws.out().join(provisio::io::output::JOURNAL_FILE),
        format!("[\"{id}\"]"),
    )
    .unwrap();
    let file = ws.out().join(format!("tenants-out/{id}/namespace.yaml"));
    std::fs::write(&file, "half: rewritten\n").unwrap();
    let summary = ws.generate();
    assert_eq!(
        summary.written,
        [format!("tenants-out/{id}/namespace.yaml")]
    );
    assert_eq!(ws.snapshot(), before);
    assert!(!ws.out().join(provisio::io::output::JOURNAL_FILE).exists());
}

/// SIGKILL anywhere in a run that commits and pushes a product release (objects stored as a
/// pack, the commit, the index of the output clone and its record `.git/provisio-index`, the
/// push): the next run converges — the pushed commit holds exactly what a fresh render holds,
/// the clone's index holds HEAD's tree (and its record, when it names the index file on disk,
/// names that tree), the clone's objects are whole (`git fsck`).
#[test]
fn sigkill_during_a_committed_release_converges() {
    use watch_support::{bare, expected, head_of, tree_files};
    let ws = Workspace::new();
    add_tenants(&ws);
    let (remote, url) = bare(ws.dir.path());
    let deliver = |ws: &Workspace| {
        let mut c = provisio(ws, "generate");
        c.args(["--commit", "--push", "--manifests-url", &url]);
        c
    };
    let converged = |what: &str| {
        let head = head_of(&remote, "main").expect("a pushed main");
        let mut want = expected(&ws.registry());
        let got = tree_files(&remote, head);
        want.retain(|p, _| got.contains_key(p) || !p.starts_with('.'));
        assert!(got == want, "{what}: the pushed tree is not a fresh render");
        let clone = git2::Repository::open(ws.out()).unwrap();
        let head_tree = clone.head().unwrap().peel_to_tree().unwrap().id();
        let mut index = clone.index().unwrap();
        assert_eq!(index.write_tree().unwrap(), head_tree, "{what}: the index");
        let file = std::fs::read(clone.path().join("index")).unwrap();
        let trailer: String = file[file.len() - 20..]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if let Ok(record) = std::fs::read_to_string(clone.path().join("provisio-index"))
            && record.starts_with(&trailer)
        {
            assert_eq!(
                record,
                format!("{trailer} {head_tree}\n"),
                "{what}: the record"
            );
        }
        if let Ok(out) = Command::new("git")
            .arg("-C")
            .arg(ws.out())
            .args(["fsck", "--full", "--no-dangling"])
            .output()
        {
            assert!(out.status.success(), "{what}: git fsck: {out:?}");
        }
    };
    let out = deliver(&ws).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let rel = "products/orders.yaml";
    let product = std::fs::read_to_string(ws.registry().join(rel)).unwrap();
    let version = |n: u32| product.replace("version: v1.2.3", &format!("version: v1.3.{n}"));
    ws.write(rel, &version(0));
    let started = Instant::now();
    let out = deliver(&ws).output().unwrap();
    let run_time = started.elapsed();
    assert!(out.status.success(), "{out:?}");
    converged("an uninterrupted release");
    for (n, percent) in (1u32..).zip([5u32, 20, 35, 50, 65, 80, 90, 97]) {
        ws.write(rel, &version(n));
        let mut child = deliver(&ws).spawn().unwrap();
        std::thread::sleep(run_time * percent / 100);
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        let out = deliver(&ws).output().unwrap();
        assert!(
            out.status.success(),
            "kill at {percent}% ({status}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        converged(&format!("kill at {percent}% ({status})"));
    }
}
