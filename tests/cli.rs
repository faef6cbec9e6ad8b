//! CLI transcripts: exit codes (0 ok, 1 drift, 2 invalid input or usage), what goes to
//! stdout and stderr.

mod common;

use std::process::{Command, Output};

use common::Workspace;

fn provisio(args: &[&str], ws: &Workspace) -> Output {
    Command::new(env!("CARGO_BIN_EXE_provisio"))
        .args(args)
        .args(
            ["--now", "2025-02-01T00:00:00Z"]
                .iter()
                .filter(|_| !args.contains(&"validate")),
        )
        .current_dir(ws.dir.path())
        .env("PROVISIO_LOG", "off")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn generate_then_check_is_clean() {
    let ws = Workspace::new();
    let out = provisio(&["generate", "--out", "out"], &ws);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("written"));
    let out = provisio(&["check", "--out", "out"], &ws);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
}

#[test]
fn check_exits_1_with_a_diff_on_drift() {
    let ws = Workspace::new();
    provisio(&["generate", "--out", "out"], &ws);
    let f = ws
        .out()
        .join("tenants-out/cafe-creme-93b31b/limit-range.yaml");
    let t = std::fs::read_to_string(&f)
        .unwrap()
        .replace("memory: 4Gi", "memory: 40Gi");
    std::fs::write(&f, t).unwrap();
    let out = provisio(&["check", "--out", "out"], &ws);
    assert_eq!(out.status.code(), Some(1));
    let diff = text(&out.stdout);
    assert!(
        diff.contains("limit-range.yaml (on disk)") && diff.contains("-      memory: 40Gi"),
        "{diff}"
    );
    assert!(text(&out.stderr).contains("1 file(s) differ"));
}

#[test]
fn invalid_registry_exits_2_and_writes_nothing() {
    let ws = Workspace::new();
    ws.write(
        "tenants/cafe-creme-93b31b.yaml",
        &std::fs::read_to_string(ws.registry().join("tenants/cafe-creme-93b31b.yaml"))
            .unwrap()
            .replace("tier: standard", "tier: gold"),
    );
    for cmd in [
        &["validate"][..],
        &["generate", "--out", "out"],
        &["check", "--out", "out"],
    ] {
        let out = provisio(cmd, &ws);
        assert_eq!(out.status.code(), Some(2), "{cmd:?}");
        let err = text(&out.stderr);
        assert!(err.contains("unknown tier `gold`"), "{err}");
        assert!(
            err.contains("--> tenants/cafe-creme-93b31b.yaml:4:7"),
            "{err}"
        );
    }
    assert!(
        std::fs::read_dir(ws.out()).unwrap().next().is_none(),
        "something was written"
    );
}

#[test]
fn usage_errors_exit_2() {
    let ws = Workspace::new();
    let out = provisio(&["generate", "--bogus"], &ws);
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(env!("CARGO_BIN_EXE_provisio"))
        .args(["generate", "--now", "yesterday"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("RFC 3339"));
}
