//! Issue 10, item 5: whoever can commit to the manifests repository can plant symbolic links
//! in the output tree. `generate` (incremental and `--full`) and `check` never follow one:
//! they stop with an error naming the link (exit 4, a safety refusal), nothing outside the
//! tree is written, deleted or printed. Each case plants the link in a freshly generated
//! tree of the example registry.

use crate::common;

use std::path::Path;
use std::process::{Command, Output};

use common::Workspace;

const NOW: &str = "2025-02-01T00:00:00Z";
const SECRET: &str = "password=hunter2\n";

fn provisio(ws: &Workspace, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_provisio"))
        .args(args)
        .arg("--registry")
        .arg(ws.registry())
        .arg("--out")
        .arg(ws.out())
        .args(["--now", NOW])
        .env_remove("PROVISIO_LOG")
        .output()
        .unwrap()
}

/// Every file below `dir` with its bytes (to prove nothing outside changed).
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push((
                    e.path().display().to_string(),
                    std::fs::read(e.path()).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// A directory outside the output tree with a secret and a file named like a rendered one.
fn outside() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("secret.txt"), SECRET).unwrap();
    std::fs::write(d.path().join("namespace.yaml"), "not provisio's\n").unwrap();
    std::fs::write(d.path().join("precious.txt"), "keep me\n").unwrap();
    d
}

/// Runs `generate`, `generate --full` and `check`: each must refuse with exit 4, name
/// `link` in its error, never print the secret, and leave `outside` untouched.
fn assert_refused_everywhere(ws: &Workspace, link: &Path, outside: &Path) {
    assert_refused_by(
        ws,
        link,
        outside,
        &[&["generate"], &["generate", "--full"], &["check"]],
    );
}

fn assert_refused_by(ws: &Workspace, link: &Path, outside: &Path, runs: &[&[&str]]) {
    let before = snapshot(outside);
    let shown = link.strip_prefix(ws.out()).unwrap().display().to_string();
    for args in runs.iter().copied() {
        let out = provisio(ws, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(4),
            "{args:?} on {shown}:\n{stdout}{stderr}"
        );
        assert!(
            stderr.contains(&format!("refusing to follow {}", link.display())),
            "{args:?}: the error names the link:\n{stderr}"
        );
        assert!(
            stderr.contains("symbolic link"),
            "{args:?}: the error says what it is:\n{stderr}"
        );
        assert!(
            !stdout.contains("hunter2") && !stderr.contains("hunter2"),
            "{args:?} printed a file from outside the tree"
        );
        assert_eq!(snapshot(outside), before, "{args:?} changed files outside");
    }
}

fn generated() -> Workspace {
    let ws = Workspace::new();
    let out = provisio(&ws, &["generate"]);
    assert!(out.status.success(), "{out:?}");
    ws
}

#[test]
fn a_tenant_directory_linked_outside_is_refused() {
    let ws = generated();
    let outside = outside();
    let dir = ws.out().join("tenants-out/cafe-creme-93b31b");
    std::fs::remove_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(outside.path(), &dir).unwrap();
    assert_refused_everywhere(&ws, &dir, outside.path());
}

#[test]
fn a_tenant_directory_of_a_removed_tenant_linked_outside_is_refused() {
    let ws = generated();
    let outside = outside();
    // Not in the registry: `generate` would remove this "tree".
    let dir = ws.out().join("tenants-out/gone-tenant-000000");
    std::os::unix::fs::symlink(outside.path(), &dir).unwrap();
    assert_refused_everywhere(&ws, &dir, outside.path());
}

#[test]
fn a_file_linked_to_a_readable_file_outside_is_refused() {
    let ws = generated();
    let outside = outside();
    let file = ws
        .out()
        .join("tenants-out/abc-corporation-7f3a9c/namespace.yaml");
    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), &file).unwrap();
    // An incremental run does not open the files of a tenant whose inputs did not change
    // (as with any hand edit, `check` and `--full` are what look): it neither reads nor
    // writes through the link.
    let before = snapshot(outside.path());
    let out = provisio(&ws, &["generate"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(snapshot(outside.path()), before);
    assert_refused_by(
        &ws,
        &file,
        outside.path(),
        &[&["generate", "--full"], &["check"], &["generate"]],
    );
    // (The last incremental run refuses too: the refused `--full` run had journaled every
    // tree, so none is trusted until a run completes.)
}

#[test]
fn a_file_link_in_a_changed_tenant_is_refused_by_an_incremental_run() {
    let ws = generated();
    let outside = outside();
    let file = ws
        .out()
        .join("tenants-out/abc-corporation-7f3a9c/namespace.yaml");
    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), &file).unwrap();
    let path = ws.registry().join("tenants/abc-corporation-7f3a9c.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("tier: premium", "tier: business")).unwrap();
    assert_refused_by(&ws, &file, outside.path(), &[&["generate"]]);
}

#[test]
fn argocd_linked_outside_is_refused() {
    let ws = generated();
    let outside = outside();
    let dir = ws.out().join("argocd");
    std::fs::remove_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(outside.path(), &dir).unwrap();
    assert_refused_everywhere(&ws, &dir, outside.path());
}

#[test]
fn tenants_out_itself_linked_outside_is_refused() {
    let ws = generated();
    let outside = outside();
    let dir = ws.out().join("tenants-out");
    std::fs::remove_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(outside.path(), &dir).unwrap();
    assert_refused_everywhere(&ws, &dir, outside.path());
}

#[test]
fn the_state_file_as_a_link_is_refused_by_generate() {
    let ws = generated();
    let outside = outside();
    let state = ws.out().join(provisio::io::output::STATE_FILE);
    std::fs::remove_file(&state).unwrap();
    std::os::unix::fs::symlink(outside.path().join("precious.txt"), &state).unwrap();
    let before = snapshot(outside.path());
    for args in [&["generate"][..], &["generate", "--full"][..]] {
        let out = provisio(&ws, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("refusing to follow {}", state.display())),
            "{stderr}"
        );
    }
    assert_eq!(snapshot(outside.path()), before);
}

/// A FIFO planted in the tree would hang a reader that opens it blocking: refused at once.
#[test]
fn a_fifo_in_the_tree_is_refused_without_hanging() {
    let ws = generated();
    let fifo = ws
        .out()
        .join("tenants-out/abc-corporation-7f3a9c/namespace.yaml");
    std::fs::remove_file(&fifo).unwrap();
    let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    for args in [&["check"][..], &["generate", "--full"][..]] {
        let out = provisio(&ws, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{args:?}: {stderr}");
        assert!(stderr.contains("it is a FIFO"), "{stderr}");
    }
}
