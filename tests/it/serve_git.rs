//! `provisio serve` sharing its registry checkout with people who use stock `git` (issue 10,
//! items 1, 2, 4 and 10): a person's commit never looks deleted after an event, events are
//! refused while HEAD does not validate, a person's uncommitted work is never overwritten or
//! "restored", and a held `index.lock` gets a true answer. Real HTTP, real git repositories,
//! the `git` command line as the person, SIGKILL for the crash.

use crate::serve_support;

use std::path::Path;
use std::process::Command;

use serde_json::json;
use serve_support::*;

/// Runs stock `git` in `dir` as a person would; panics with its output when it fails.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=A Person",
            "-c",
            "user.email=person@example.com",
        ])
        .args(args)
        .current_dir(dir)
        .env_remove("GIT_DIR")
        .env_remove("GIT_INDEX_FILE")
        .output()
        .expect("git on PATH");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn status(f: &Fixture) -> String {
    git(f.dir.path(), &["status", "--porcelain"])
}

fn hand_tenant(id: &str, sub: &str, admin: &str) -> String {
    format!(
        "id: {id}\nname: Hand Made\ntier: standard\nregion: eu-west\nsubscription: {sub}\n\
         contacts:\n  admin: {admin}\n  billing: billing@example.com\n\
         created: 2025-06-01T00:00:00Z\nstatus: active\n"
    )
}

/// The created event that matches `hand_tenant` (same customer, same plan).
fn created_for_hand(sub: &str) -> serde_json::Value {
    let mut e = created(sub, "Hand Made");
    e["data"]["plan"]["tier"] = json!("standard");
    e["data"]["metadata"]["region"] = json!("eu-west");
    e
}

/// Item 1: the index the writer holds in memory is never written back over a person's
/// commit.
#[test]
fn a_tenant_committed_by_hand_with_git_stays_tracked_after_an_event() {
    let f = Fixture::new();
    let server = f.start();
    let addr = server.addr();
    // The writer has loaded (and cached) the index by now: one event first.
    assert_eq!(
        post(addr, "subscription-created", &created("sub_first", "First")).status,
        201
    );
    std::fs::write(
        f.registry.join("tenants/hand-made-1a2b3c.yaml"),
        hand_tenant("hand-made-1a2b3c", "sub_hand", "admin@example.com"),
    )
    .unwrap();
    git(
        f.dir.path(),
        &["add", "registry/tenants/hand-made-1a2b3c.yaml"],
    );
    git(
        f.dir.path(),
        &["commit", "-q", "-m", "add a tenant by hand"],
    );
    // A person also edits an existing tenant by hand and commits it.
    let cafe = f.registry.join("tenants/cafe-creme-93b31b.yaml");
    let text = std::fs::read_to_string(&cafe).unwrap();
    std::fs::write(
        &cafe,
        text.replace("name: Café Crème", "name: Café Crème SARL"),
    )
    .unwrap();
    git(f.dir.path(), &["commit", "-q", "-am", "rename a tenant"]);
    // And stages an unrelated new file without committing it.
    std::fs::write(f.dir.path().join("NOTES.md"), "staged\n").unwrap();
    git(f.dir.path(), &["add", "NOTES.md"]);

    let a = post(
        addr,
        "subscription-created",
        &created("sub_second", "Second"),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(status(&f), "A  NOTES.md\n", "only the person's staged file");
    let tracked = git(f.dir.path(), &["ls-files", "registry/tenants"]);
    assert!(tracked.contains("hand-made-1a2b3c.yaml"), "{tracked}");
    // `git commit -a` by the person now deletes nothing.
    git(f.dir.path(), &["commit", "-q", "-am", "notes"]);
    assert!(
        f.committed("registry/tenants/hand-made-1a2b3c.yaml")
            .is_some(),
        "the hand-made tenant survived `git commit -a`"
    );
    assert_eq!(status(&f), "");
    server.stop().unwrap();
}

/// Item 2: HEAD moved to a commit whose registry does not validate: every event is refused
/// (503, naming the problem) until HEAD validates again; no event is applied to the state of
/// the older HEAD, so no second tenant ever gets the broken tenant's subscription.
#[test]
fn events_are_refused_while_head_does_not_validate() {
    let f = Fixture::new();
    let server = f.start();
    let addr = server.addr();
    let path = f.registry.join("tenants/hand-made-1a2b3c.yaml");
    std::fs::write(
        &path,
        hand_tenant("hand-made-1a2b3c", "sub_broken", "not-an-email"),
    )
    .unwrap();
    git(f.dir.path(), &["add", "-A"]);
    git(
        f.dir.path(),
        &["commit", "-q", "-m", "a tenant with a typo"],
    );
    let commits = f.commits().len();

    for _ in 0..3 {
        let a = post(addr, "subscription-created", &created("sub_other", "Other"));
        assert_eq!(a.status, 503, "{}", a.body);
        assert_eq!(a.error().0, "unavailable");
        let message = a.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(
            message.contains("tenants/hand-made-1a2b3c.yaml:7:10: invalid admin e-mail"),
            "{message}"
        );
        assert!(a.header("retry-after").is_some());
    }
    // The broken tenant's own subscription: refused as well (the old view would have
    // provisioned a second tenant for it).
    let a = post(
        addr,
        "subscription-created",
        &created_for_hand("sub_broken"),
    );
    assert_eq!(a.status, 503, "{}", a.body);
    assert_eq!(f.commits().len(), commits, "nothing committed meanwhile");

    // Fixed by hand: events are applied again, on the new HEAD.
    std::fs::write(
        &path,
        hand_tenant("hand-made-1a2b3c", "sub_broken", "admin@example.com"),
    )
    .unwrap();
    git(f.dir.path(), &["commit", "-q", "-am", "fix the e-mail"]);
    let a = post(
        addr,
        "subscription-created",
        &created_for_hand("sub_broken"),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["tenant_id"], "hand-made-1a2b3c");
    let a = post(addr, "subscription-created", &created("sub_other", "Other"));
    assert_eq!(a.status, 201, "{}", a.body);
    server.stop().unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_provisio"))
        .args(["validate", "--registry"])
        .arg(&f.registry)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let with_sub = f
        .committed_tenants()
        .into_iter()
        .filter(|t| {
            f.committed(&format!("registry/tenants/{t}"))
                .unwrap()
                .contains("subscription: sub_broken")
        })
        .count();
    assert_eq!(with_sub, 1);
}

/// Item 4: a person's unstaged or staged edit of a tenant file is theirs: the event that
/// would write that file is refused (503 naming it) and the edit survives; committed, it is
/// the registry and the event goes through on top of it.
#[test]
fn a_persons_uncommitted_edit_is_refused_not_overwritten() {
    let f = Fixture::new();
    let server = f.start();
    let addr = server.addr();
    let cafe = f.registry.join("tenants/cafe-creme-93b31b.yaml");
    let text = std::fs::read_to_string(&cafe).unwrap();
    let edited = text.replace("name: Café Crème", "name: Café Crème (edited)");
    assert_ne!(text, edited);
    std::fs::write(&cafe, &edited).unwrap();
    let head = f.repo().head().unwrap();

    let upgrade = |id: &str| updated("sub_cafe456", "premium", id);
    let a = post(addr, "subscription-updated", &upgrade("evt_1"));
    assert_eq!(a.status, 503, "{}", a.body);
    assert_eq!(a.error().0, "uncommitted_changes");
    let message = a.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        message.starts_with(
            "registry/tenants/cafe-creme-93b31b.yaml has uncommitted changes in the work tree"
        ),
        "{message}"
    );
    assert_eq!(std::fs::read_to_string(&cafe).unwrap(), edited);
    assert_eq!(f.repo().head().unwrap(), head);
    // Other tenants are not held up.
    assert_eq!(
        post(addr, "subscription-created", &created("sub_free", "Free")).status,
        201
    );

    git(
        f.dir.path(),
        &["add", "registry/tenants/cafe-creme-93b31b.yaml"],
    );
    let a = post(addr, "subscription-updated", &upgrade("evt_2"));
    assert_eq!(a.status, 503, "{}", a.body);
    assert!(
        a.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("has staged changes"),
        "{}",
        a.body
    );
    assert_eq!(std::fs::read_to_string(&cafe).unwrap(), edited);

    git(f.dir.path(), &["commit", "-q", "-m", "rename by hand"]);
    let a = post(addr, "subscription-updated", &upgrade("evt_3"));
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["tier"], "premium");
    let now = std::fs::read_to_string(&cafe).unwrap();
    assert!(
        now.contains("(edited)") && now.contains("tier: premium"),
        "{now}"
    );
    assert_eq!(status(&f), "");
    server.stop().unwrap();
}

/// Item 4 at start-up: a staged edit is not mistaken for provisio's crash leftover (it was
/// "restored" from HEAD before), and an untracked new tenant file is not overwritten by an
/// event that would create the same file.
#[test]
fn start_up_leaves_a_staged_edit_alone() {
    let f = Fixture::new();
    let cafe = f.registry.join("tenants/cafe-creme-93b31b.yaml");
    let text = std::fs::read_to_string(&cafe).unwrap();
    let edited = text.replace("name: Café Crème", "name: Café Crème (staged)");
    std::fs::write(&cafe, &edited).unwrap();
    git(f.dir.path(), &["add", "-A"]);
    let server = start_binary(&f, SecretFrom::Env);
    assert_eq!(std::fs::read_to_string(&cafe).unwrap(), edited);
    assert_eq!(status(&f), "M  registry/tenants/cafe-creme-93b31b.yaml\n");

    // A person drafts the very file an event would create.
    let id = provisio_core::naming::tenant_id("Drafted", "sub_draft");
    let draft = f.registry.join(format!("tenants/{id}.yaml"));
    std::fs::write(&draft, "# a person's draft\n").unwrap();
    let a = post(
        server.addr,
        "subscription-created",
        &created("sub_draft", "Drafted"),
    );
    assert_eq!(a.status, 503, "{}", a.body);
    assert!(
        a.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exists in the work tree but is not committed"),
        "{}",
        a.body
    );
    assert_eq!(
        std::fs::read_to_string(&draft).unwrap(),
        "# a person's draft\n"
    );
}

/// Item 10 and the crash leftover: with `index.lock` held by another git process the event
/// is committed and answered as recorded (not "nothing was recorded"); the process is then
/// killed with SIGKILL; at the next start the unfinished work-tree write is finished from
/// the intent file, and the status is clean.
#[test]
fn a_held_index_lock_gets_a_true_answer_and_is_repaired_after_sigkill() {
    let f = Fixture::new();
    let mut server = start_binary(&f, SecretFrom::Env);
    let lock = f.dir.path().join(".git/index.lock");
    std::fs::write(&lock, "").unwrap();
    let before = f.commits().len();
    let a = post(
        server.addr,
        "subscription-created",
        &created("sub_locked", "Locked"),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    let id = a.json()["tenant_id"].as_str().unwrap().to_owned();
    let path = format!("registry/tenants/{id}.yaml");
    assert_eq!(f.commits().len(), before + 1, "recorded");
    assert!(f.committed(&path).is_some());
    assert!(
        !f.dir.path().join(&path).exists(),
        "the work tree is not written without the index lock"
    );
    // A redelivery is answered from the registry: the same tenant, nothing new.
    let again = post(
        server.addr,
        "subscription-created",
        &created("sub_locked", "Locked"),
    );
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(f.commits().len(), before + 1);

    server.kill(); // SIGKILL
    std::fs::remove_file(&lock).unwrap();
    let server = start_binary(&f, SecretFrom::Env);
    assert_eq!(
        std::fs::read_to_string(f.dir.path().join(&path)).unwrap(),
        f.committed(&path).unwrap()
    );
    assert_eq!(status(&f), "");
    assert!(!f.dir.path().join(".git/provisio-intake-intent").exists());
    // And the writer goes on.
    assert_eq!(
        post(
            server.addr,
            "subscription-created",
            &created("sub_after", "After")
        )
        .status,
        201
    );
    assert_eq!(status(&f), "");
}

/// Item 10 while running: the lock released, the next event finishes the earlier sync.
#[test]
fn a_released_index_lock_is_caught_up_at_the_next_event() {
    let f = Fixture::new();
    let server = f.start();
    let lock = f.dir.path().join(".git/index.lock");
    std::fs::write(&lock, "").unwrap();
    let a = post(
        server.addr(),
        "subscription-created",
        &created("sub_l1", "Locked One"),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    std::fs::remove_file(&lock).unwrap();
    let b = post(
        server.addr(),
        "subscription-created",
        &created("sub_l2", "Locked Two"),
    );
    assert_eq!(b.status, 201, "{}", b.body);
    for answer in [&a, &b] {
        let id = answer.json()["tenant_id"].as_str().unwrap().to_owned();
        assert!(
            f.registry.join(format!("tenants/{id}.yaml")).exists(),
            "{id}"
        );
    }
    assert_eq!(status(&f), "");
    server.stop().unwrap();
}

/// Item 7 through git: a tenant file committed as a symbolic link, or moved into a
/// subdirectory of `tenants/`, is reported by the intake (503 naming it) instead of being
/// read as a link's target or skipped (which made its subscription look free).
#[test]
fn a_linked_or_nested_tenant_in_head_is_reported_not_skipped() {
    for (what, setup, expected) in [
        (
            "link",
            &["ln -sf ../../elsewhere.yaml registry/tenants/cafe-creme-93b31b.yaml"][..],
            "registry/tenants/cafe-creme-93b31b.yaml: symbolic link in the registry (to `../../elsewhere.yaml`)",
        ),
        (
            "nested",
            &[
                "mkdir -p registry/tenants/archive",
                "git mv registry/tenants/cafe-creme-93b31b.yaml registry/tenants/archive/",
            ][..],
            "tenants/archive/cafe-creme-93b31b.yaml: file in a subdirectory of `tenants/`",
        ),
    ] {
        let f = Fixture::new();
        let server = f.start();
        for cmd in setup {
            let ok = Command::new("sh")
                .args(["-c", cmd])
                .current_dir(f.dir.path())
                .status()
                .unwrap()
                .success();
            assert!(ok, "{cmd}");
        }
        git(f.dir.path(), &["add", "-A"]);
        git(f.dir.path(), &["commit", "-q", "-m", what]);
        // The moved tenant's subscription must not look free.
        let mut cafe = created("sub_cafe456", "Café Crème");
        cafe["data"]["plan"]["tier"] = json!("standard");
        cafe["data"]["metadata"]["region"] = json!("eu-west");
        let a = post(server.addr(), "subscription-created", &cafe);
        assert_eq!(a.status, 503, "{what}: {}", a.body);
        let message = a.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(
            message.contains(expected.trim_start_matches("registry/")),
            "{what}: {message}"
        );
        server.stop().unwrap();
    }
}
