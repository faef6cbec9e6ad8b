//! SIGKILL at random points: the real `provisio watch` binary is killed again and again while
//! the registry changes under it (start-up, generate, staging, commit, push are all hit);
//! after a clean restart it converges: the remote holds exactly what the registry renders,
//! no change is lost, no commit is half made (`git fsck` is clean, every commit's state file
//! matches its tenant trees) and the history is linear (nothing was forced).

use crate::common;
use crate::watch_support;

use std::time::Duration;

use common::Workspace;
use watch_support::*;

/// Removals made while the watcher was dead pile up and would (rightly) trip the mass
/// deletion guard, which has its own test; here every change must go through.
const KILL_ARGS: &[&str] = &["--allow-mass-delete"];

/// A small deterministic generator (xorshift) so a failure can be replayed with its seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

#[test]
fn killed_at_random_points_it_converges_without_half_commits_or_lost_changes() {
    let seed = std::env::var("KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("KILL_SEED={seed}");
    let mut rng = Rng(seed);
    let ws = Workspace::new();
    let (bare, url) = bare(ws.dir.path());
    let abc = "tenants/abc-corporation-7f3a9c.yaml";
    let good = std::fs::read_to_string(ws.registry().join(abc)).unwrap();
    let mut added: Vec<String> = Vec::new();
    for round in 0..14 {
        let mut w = Watch::spawn(
            &ws.registry(),
            &ws.out(),
            &url,
            KILL_ARGS,
            &ws.dir.path().join(format!("round-{round}.log")),
        );
        // A change: a new tenant, a tier flip, or the removal of a tenant added earlier.
        match rng.next(3) {
            0 if !added.is_empty() => ws.remove(&added.remove(0)),
            1 => {
                let tier = ["premium", "business", "standard"][rng.next(3) as usize];
                ws.write(
                    abc,
                    &good.replace("tier: premium", &format!("tier: {tier}")),
                );
            }
            _ => {
                let (_, rel, text) = new_tenant(100 + round);
                ws.write(&rel, &text);
                added.push(rel);
            }
        }
        std::thread::sleep(Duration::from_millis(rng.next(400)));
        w.signal(libc::SIGKILL);
        assert_eq!(w.wait(Duration::from_secs(10)), None, "killed by a signal");
    }

    // Where the kills landed (for the record; timing decides).
    let logs: Vec<String> = (0..14)
        .map(|r| std::fs::read_to_string(ws.dir.path().join(format!("round-{r}.log"))).unwrap())
        .collect();
    println!(
        "killed runs: {} regenerated, {} committed, {} removed a stale git lock",
        logs.iter().filter(|l| l.contains("regenerated")).count(),
        logs.iter()
            .filter(|l| l.contains("committed the output"))
            .count(),
        logs.iter().filter(|l| l.contains("git lock file")).count(),
    );

    // A clean run converges. One thing it cannot clear itself: the remote is a `file://`
    // repository, whose branch provisio's push updates in this process, so a kill
    // inside that update leaves `refs/heads/main.lock` in the remote (a real remote's
    // `git receive-pack` removes its own lock when the client dies). That lock is not
    // provisio's to remove: the run must name it and leave it, and the operator removes it
    // (a_stale_ref_lock_in_the_remote_is_reported_by_its_path_and_left_alone).
    let remote_lock = bare.join("refs/heads/main.lock");
    let w = Watch::spawn(
        &ws.registry(),
        &ws.out(),
        &url,
        KILL_ARGS,
        &ws.dir.path().join("final.log"),
    );
    if remote_lock.exists() {
        println!("a kill left the remote's ref lock (seed {seed})");
        let reported = format!("{} exists", remote_lock.display());
        wait_for(
            "the remote's stale lock reported",
            Duration::from_secs(30),
            || w.log().contains(&reported),
        );
        assert!(remote_lock.exists(), "the remote's lock was removed");
        std::fs::remove_file(&remote_lock).unwrap();
    }
    let want = expected(&ws.registry());
    let start = std::time::Instant::now();
    while head_of(&bare, "main").is_none_or(|h| tree_files(&bare, h) != want) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no convergence in 30 s (seed {seed}); log of the last run:\n{}",
            w.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut w = w;
    w.signal(libc::SIGTERM);
    assert_eq!(w.wait(Duration::from_secs(20)), Some(0), "{}", w.log());

    fsck(&bare);
    fsck(&ws.out());
    let head = head_of(&bare, "main").unwrap();
    // The local branch is the remote's; the work tree's output is committed.
    let local = git2::Repository::open(ws.out()).unwrap();
    assert_eq!(local.head().unwrap().target(), Some(head));
    let dirty: Vec<String> = local
        .statuses(None)
        .unwrap()
        .iter()
        .filter_map(|s| s.path().ok().map(str::to_owned))
        .filter(|p| !p.contains(".provisio-"))
        .collect();
    assert!(dirty.is_empty(), "uncommitted output: {dirty:?}");
    // Every commit is whole and linear.
    for commit in history(&bare, head) {
        assert!(
            parents(&bare, commit).len() <= 1,
            "a merge in a linear history"
        );
        let files = tree_files(&bare, commit);
        let state: serde_json::Value =
            serde_json::from_slice(&files[provisio::io::output::STATE_FILE]).unwrap();
        let in_state: std::collections::BTreeSet<String> = state["tenants"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let in_tree: std::collections::BTreeSet<String> = files
            .keys()
            .filter_map(|p| p.strip_prefix("tenants-out/"))
            .filter_map(|p| p.split('/').next())
            .map(str::to_owned)
            .collect();
        assert_eq!(
            in_state, in_tree,
            "commit {commit} is not whole (seed {seed})"
        );
        for id in &in_tree {
            assert!(
                files.contains_key(&format!("tenants-out/{id}/kustomization.yaml")),
                "commit {commit}: tenant {id} without kustomization.yaml (seed {seed})"
            );
        }
    }
}

/// A ref lock left in a `file://` remote: provisio's push to a local remote updates its
/// branch itself (there is no `git receive-pack` on the other side to clean up after it), so a
/// push SIGKILLed between taking `refs/heads/main.lock` and renaming it leaves the lock in a
/// repository provisio does not own. Every later push fails to take it. The watcher must say
/// so by the lock's path, must not mistake it for the remote moving (no fetch, no
/// regeneration, no new local commit per attempt), and must leave the lock alone; once the
/// operator removes it, the next retry pushes.
#[test]
fn a_stale_ref_lock_in_the_remote_is_reported_by_its_path_and_left_alone() {
    let ws = Workspace::new();
    let (bare, url) = bare(ws.dir.path());
    let mut w = Watch::spawn(
        &ws.registry(),
        &ws.out(),
        &url,
        KILL_ARGS,
        &ws.dir.path().join("first.log"),
    );
    wait_for("the first push", Duration::from_secs(30), || {
        head_of(&bare, "main").is_some()
    });
    w.signal(libc::SIGTERM);
    assert_eq!(w.wait(Duration::from_secs(20)), Some(0), "{}", w.log());
    let pushed = head_of(&bare, "main").unwrap();

    // What a push killed inside the ref update leaves.
    let lock = bare.join("refs/heads/main.lock");
    std::fs::write(&lock, "").unwrap();
    let (_, rel, text) = new_tenant(100);
    ws.write(&rel, &text);
    let mut w = Watch::spawn(
        &ws.registry(),
        &ws.out(),
        &url,
        KILL_ARGS,
        &ws.dir.path().join("second.log"),
    );
    wait_for("the lock reported", Duration::from_secs(30), || {
        w.log().contains(&format!("{} exists", lock.display()))
    });
    let log = w.log();
    assert!(lock.exists(), "a lock in the remote was removed:\n{log}");
    assert_eq!(head_of(&bare, "main"), Some(pushed));
    assert!(
        !log.contains("the remote moved"),
        "a lock taken for the remote moving:\n{log}"
    );
    assert_eq!(
        log.matches("committed the output").count(),
        1,
        "one commit, not one per attempt:\n{log}"
    );

    // The operator removes the stale lock: the next retry pushes.
    std::fs::remove_file(&lock).unwrap();
    let want = expected(&ws.registry());
    wait_for(
        "the push after the lock is gone",
        Duration::from_secs(30),
        || head_of(&bare, "main").is_some_and(|h| tree_files(&bare, h) == want),
    );
    w.signal(libc::SIGTERM);
    assert_eq!(w.wait(Duration::from_secs(20)), Some(0), "{}", w.log());
}
