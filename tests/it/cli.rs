//! CLI transcripts: each command's whole stdout, stderr and exit code, pinned. The exit codes
//! are the README's: 0 ok, 1 drift, 2 invalid input, 3 a server or remote unavailable,
//! 4 refused by a guard, 5 a local failure. `PROVISIO_BLESS=1` rewrites the snapshots in this
//! file from what the binary prints (review the diff).

use crate::common;

use snapbox::cmd::Command;
use snapbox::{Assert, Redactions, str};

use common::Workspace;

/// The binary in `ws`, rendering for the tests' fixed time, logs off.
fn provisio(ws: &Workspace) -> Command {
    Command::new(env!("CARGO_BIN_EXE_provisio"))
        .current_dir(ws.dir.path())
        .env("PROVISIO_LOG", "off")
        .env_remove("PROVISIO_WEBHOOK_SECRET")
        .with_assert(assert(ws))
}

/// Compare, or with `PROVISIO_BLESS=1` overwrite; the workspace path reads `[WS]`.
fn assert(ws: &Workspace) -> Assert {
    let mut r = Redactions::new();
    r.insert("[WS]", ws.dir.path().canonicalize().unwrap())
        .unwrap();
    Assert::new()
        .action(if common::bless() {
            snapbox::assert::Action::Overwrite
        } else {
            snapbox::assert::Action::Verify
        })
        .redact_with(r)
}

const NOW: [&str; 2] = ["--now", "2025-02-01T00:00:00Z"];

#[test]
fn generate_then_check_is_clean_and_a_second_generate_writes_nothing() {
    let ws = Workspace::new();
    provisio(&ws)
        .args(["generate", "--out", "out"])
        .args(NOW)
        .assert()
        .code(0)
        .stdout_eq(str![""])
        .stderr_eq(str![[r#"
generate: 144 written, 0 removed, 0 unchanged (3 tenant(s) changed, 0 removed)

"#]]);
    provisio(&ws)
        .args(["generate", "--out", "out"])
        .args(NOW)
        .assert()
        .code(0)
        .stderr_eq(str![[r#"
generate: 0 written, 0 removed, 57 unchanged (0 tenant(s) changed, 0 removed)

"#]]);
    provisio(&ws)
        .args(["check", "--out", "out"])
        .args(NOW)
        .assert()
        .code(0)
        .stdout_eq(str![""])
        .stderr_eq(str![[r#"
check: the output is up to date (144 files)

"#]]);
}

#[test]
fn check_exits_1_with_a_diff_on_drift() {
    let ws = Workspace::new();
    provisio(&ws)
        .args(["generate", "--out", "out"])
        .args(NOW)
        .assert()
        .code(0);
    let f = ws
        .out()
        .join("tenants-out/cafe-creme-93b31b/limit-range.yaml");
    let t = std::fs::read_to_string(&f)
        .unwrap()
        .replace("memory: 4Gi", "memory: 40Gi");
    std::fs::write(&f, t).unwrap();
    provisio(&ws)
        .args(["check", "--out", "out"])
        .args(NOW)
        .assert()
        .code(1)
        .stdout_eq(str![[r#"
--- tenants-out/cafe-creme-93b31b/limit-range.yaml (on disk)
+++ tenants-out/cafe-creme-93b31b/limit-range.yaml (rendered)
@@ -23,5 +23,5 @@
     max:
       cpu: "2"
-      memory: 40Gi
+      memory: 4Gi
     min:
       cpu: 100m

"#]])
        .stderr_eq(str![[r#"
check: 1 file(s) differ from what the registry renders; run `provisio generate`

"#]]);
}

#[test]
fn invalid_registry_exits_2_with_the_position_and_writes_nothing() {
    let ws = Workspace::new();
    ws.write(
        "tenants/cafe-creme-93b31b.yaml",
        &std::fs::read_to_string(ws.registry().join("tenants/cafe-creme-93b31b.yaml"))
            .unwrap()
            .replace("tier: standard", "tier: gold"),
    );
    let diagnostic = str![[r#"
error: unknown tier `gold`
 --> tenants/cafe-creme-93b31b.yaml:4:7
  |
4 | tier: gold
  |       ^^^^ expected one of: business, premium, standard

error: the registry has 1 error in 1 file

"#]];
    provisio(&ws)
        .args(["validate"])
        .assert()
        .code(2)
        .stdout_eq(str![""])
        .stderr_eq(diagnostic.clone());
    for cmd in [["generate", "--out", "out"], ["check", "--out", "out"]] {
        provisio(&ws)
            .args(cmd)
            .args(NOW)
            .assert()
            .code(2)
            .stdout_eq(str![""])
            .stderr_eq(diagnostic.clone());
    }
    assert!(
        std::fs::read_dir(ws.out()).unwrap().next().is_none(),
        "something was written"
    );
}

#[test]
fn validate_a_valid_registry() {
    let ws = Workspace::new();
    provisio(&ws)
        .args(["validate"])
        .assert()
        .code(0)
        .stdout_eq(str![""])
        .stderr_eq(str![[r#"
validate: the registry is valid (3 tenants, 12 products, 3 tiers, 5 regions, 2 teams)

"#]]);
}

#[test]
fn usage_errors_exit_2() {
    let ws = Workspace::new();
    provisio(&ws)
        .args(["generate", "--bogus"])
        .assert()
        .code(2)
        .stdout_eq(str![""])
        .stderr_eq(str![[r#"
error: unexpected argument '--bogus' found

Usage: provisio generate [OPTIONS]

For more information, try '--help'.

"#]]);
    provisio(&ws)
        .args(["generate", "--now", "yesterday"])
        .assert()
        .code(2)
        .stdout_eq(str![""])
        .stderr_eq(str![[r#"
error: invalid value 'yesterday' for '--now <NOW>': expected an RFC 3339 time such as 2025-01-15T10:00:00Z (premature end of input)

For more information, try '--help'.

"#]]);
}

#[test]
fn commit_outside_a_repository_exits_2_and_says_what_to_do() {
    let ws = Workspace::new();
    provisio(&ws)
        .args(["generate", "--out", "out", "--commit"])
        .args(NOW)
        .assert()
        .code(2)
        .stdout_eq(str![""])
        .stderr_eq(str![[r#"
error: out is not inside a git repository; clone the manifests repository there or give its URL (--manifests-url)

"#]]);
}

#[test]
fn a_push_that_cannot_reach_the_remote_exits_3_and_keeps_the_commit() {
    let ws = Workspace::new();
    let remote = ws.dir.path().join("manifests.git");
    let git = |args: &[&str], dir: &std::path::Path| {
        let o = std::process::Command::new("git")
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
    };
    git(&["init", "-q", "--bare", "manifests.git"], ws.dir.path());
    let url = format!("file://{}", remote.display());
    let push = |code: i32| {
        provisio(&ws)
            .args(["generate", "--out", "out", "--commit", "--push"])
            .args([
                "--push-attempts",
                "2",
                "--push-backoff-ms",
                "1",
                "--manifests-url",
                &url,
            ])
            .args(NOW)
            .assert()
            .code(code)
    };
    push(0);
    // The remote goes away; a registry change is committed locally and the push fails.
    std::fs::rename(&remote, ws.dir.path().join("moved.git")).unwrap();
    ws.write(
        "tenants/cafe-creme-93b31b.yaml",
        &std::fs::read_to_string(ws.registry().join("tenants/cafe-creme-93b31b.yaml"))
            .unwrap()
            .replace("tier: standard", "tier: business"),
    );
    push(3).stdout_eq(str![""]).stderr_eq(str![[r#"
generate: 28 written, 0 removed, 58 unchanged (1 tenant(s) changed, 0 removed)
error: pushing main to origin failed after 2 attempt(s); the local commit is kept and pushed by the next attempt
  caused by: cannot reach file://[WS]/manifests.git
  caused by: failed to resolve path '[WS]/manifests.git': No such file or directory; class=Os (2); code=NotFound (-3)

"#]]);
    assert_eq!(
        git(&["log", "--format=%s"], &ws.out()),
        "provisio: update 1 tenant\nprovisio: add 3 tenants; platform tools: add 3 products, 2 teams\n",
        "the local commit is kept"
    );
}

#[test]
fn teardown_before_the_deletion_date_exits_4() {
    let ws = Workspace::new();
    let spec = ws.dir.path().join("spec.json");
    std::fs::write(
        &spec,
        r#"{"version":1,"tenant":"nordwind-logistik-7ace77","lifecycle":{"status":"deprovisioning","deletionDate":"2030-01-01T00:00:00Z"}}"#,
    )
    .unwrap();
    provisio(&ws)
        .args(["teardown", "mysql", "--spec", "spec.json", "--secret-store", "file:store"])
        .args(NOW)
        .assert()
        .code(4)
        .stdout_eq(str![""])
        .stderr_eq(str![[r#"
error: teardown mysql: refusing to tear down tenant nordwind-logistik-7ace77: its deletion date 2030-01-01T00:00:00Z has not passed (now 2025-02-01T00:00:00Z)

"#]]);
}

#[test]
fn help_lists_the_commands() {
    let ws = Workspace::new();
    provisio(&ws)
        .args(["--help"])
        .assert()
        .code(0)
        .stderr_eq(str![""])
        .stdout_eq(str![[r#"
Tenant provisioning for a multi-tenant SaaS, the GitOps way

Usage: provisio <COMMAND>

Commands:
  generate        Render the registry into `<out>/tenants-out/`, `<out>/platform-out/` and `<out>/argocd/`
  check           Exit 1 with a diff when the output on disk differs from what the registry renders
  validate        Check the registry only
  plan            Print what a registry change does to GitLab, Grafana, Artifactory and the team namespaces (losses first), compared with a base revision or directory
  setup           Create or converge a tenant's databases, users, vhosts, queues or buckets (setup Jobs)
  teardown        Remove them, for a tenant past its deletion date (run by hand; docs/registry.md)
  serve           Receive the billing system's webhooks and the tenants' lifecycle reports; commit tenant files
  watch           Regenerate on every registry change, commit and push the output, nudge Argo CD
  rollback        Remove a tenant that was never activated (no welcome email sent) through the ordered removal, without a backup: edits its tenant file for a person to commit
  report          Send one signed lifecycle report of a tenant to serve, as its Jobs do
  website-status  Set the tenant's website record to its status (the website-status Job)
  purge-check     Verify a step of a purging tenant's removal on the cluster, then report it (the purge-check and namespace-check Jobs)
  activate        Probe a provisioning tenant until healthy, register its website, send the welcome email once and report it active (the activate Job)
  backup          Archive a deprovisioning tenant's databases and buckets with a manifest, then report it (the backup Job)
  help            Print this message or the help of the given subcommand(s)

Options:
  -h, --help     Print help
  -V, --version  Print version

"#]]);
}
