//! Two writers are safe (deploy/ runs one of each with `strategy: Recreate`, and this is what
//! makes an accidental second one harmless): two `serve` processes on two clones of one
//! registry repository take billing events at the same time — some of them delivered to
//! both — and two `watch` processes deliver to one manifests repository, all over ssh on
//! 127.0.0.1 (git receive-pack's compare-and-swap; libgit2's file:// transport has none).
//! Afterwards: every acknowledged event is in the registry exactly once;
//! the manifests repository holds exactly the rendering of the final registry; no commit is
//! empty; and the remotes' ref logs show that every update of either branch was a
//! fast-forward: no commit was ever lost.

use crate::git_support;
use crate::watch_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use git_support::*;

const WAIT: Duration = Duration::from_secs(120);

/// Logs every update of the repository's refs (receive-pack honours it), to check them later.
fn log_ref_updates(bare: &Path) {
    let r = git2::Repository::open_bare(bare).unwrap();
    r.config()
        .unwrap()
        .set_str("core.logAllRefUpdates", "always")
        .unwrap();
}

/// Every update of `main` in the ref log is a fast-forward (new descends from old).
fn only_fast_forwards(bare: &Path) -> usize {
    let r = git2::Repository::open_bare(bare).unwrap();
    let log = r.reflog("refs/heads/main").unwrap();
    for e in log.iter() {
        let (old, new) = (e.id_old(), e.id_new());
        if !old.is_zero() {
            assert!(
                old == new || r.graph_descendant_of(new, old).unwrap(),
                "{}: main moved from {old} to {new}, not a fast-forward: a commit was lost",
                bare.display()
            );
        }
    }
    log.len()
}

fn serve(server: &GitServer, work: &Path, name: &str) -> Process {
    let addr = free_addr();
    let mut args: Vec<String> = [
        "serve",
        "--registry",
        &work.join(name).display().to_string(),
        "--registry-git",
        &server.url("registry"),
        "--branch",
        "main",
        "--listen",
        &addr.to_string(),
    ]
    .map(String::from)
    .into();
    args.extend(server.flags());
    let mut p = Process::spawn(
        &args,
        &[("PROVISIO_WEBHOOK_SECRET", BILLING_SECRET)],
        &work.join(format!("{name}.log")),
        addr,
    );
    p.wait_ready("/readyz", WAIT);
    p
}

fn watch(server: &GitServer, work: &Path, name: &str) -> Process {
    let addr = free_addr();
    let mut args: Vec<String> = [
        "watch",
        "--registry",
        &work.join(format!("{name}-registry")).display().to_string(),
        "--registry-git",
        &server.url("registry"),
        "--branch",
        "main",
        "--poll-interval-secs",
        "1",
        "--out",
        &work.join(format!("{name}-out")).display().to_string(),
        "--manifests-url",
        &server.url("manifests"),
        "--out-branch",
        "main",
        "--now",
        watch_support::NOW,
        "--push-backoff-ms",
        "20",
        "--retry-interval-secs",
        "1",
        "--metrics-addr",
        &addr.to_string(),
    ]
    .map(String::from)
    .into();
    args.extend(server.flags());
    let mut p = Process::spawn(&args, &[], &work.join(format!("{name}.log")), addr);
    p.wait_ready("/readyz", WAIT);
    p
}

/// Sends `created(sub)` until it is answered 2xx (a billing system retries a 503), returns
/// the status.
fn deliver(addr: std::net::SocketAddr, sub: &str, name: &str) -> u16 {
    for _ in 0..20 {
        let (status, body) = post_created(addr, sub, name);
        match status {
            200 | 201 => return status,
            503 => std::thread::sleep(Duration::from_millis(200)),
            other => panic!("{sub}: {other} {body}"),
        }
    }
    panic!("{sub}: still 503 after 20 deliveries");
}

#[test]
fn two_serves_and_two_watches_on_the_same_remotes_lose_and_duplicate_nothing() {
    let Some(server) = GitServer::start(Kind::Ssh) else {
        return;
    };
    let registry = server.create_with(
        "registry",
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("registry"),
    );
    let manifests = server.create("manifests");
    log_ref_updates(&registry);
    log_ref_updates(&manifests);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();

    let watches = [watch(&server, w, "watch-a"), watch(&server, w, "watch-b")];
    let serves = [serve(&server, w, "serve-a"), serve(&server, w, "serve-b")];
    let addrs = [serves[0].addr, serves[1].addr];

    // 4 clients × 12 events; every third one is delivered to both servers at once.
    let answers: Arc<Mutex<BTreeMap<String, Vec<u16>>>> = Arc::default();
    std::thread::scope(|s| {
        for c in 0..4 {
            let answers = answers.clone();
            s.spawn(move || {
                for i in 0..12 {
                    let sub = format!("sub_two_{c}_{i}");
                    let name = format!("Two Writers {c} {i}");
                    let first = addrs[(c + i) % 2];
                    let mut got = Vec::new();
                    if i % 3 == 0 {
                        let other = addrs[(c + i + 1) % 2];
                        let (a, b) = std::thread::scope(|t| {
                            let a = t.spawn(|| deliver(first, &sub, &name));
                            let b = t.spawn(|| deliver(other, &sub, &name));
                            (a.join().unwrap(), b.join().unwrap())
                        });
                        got.extend([a, b]);
                    } else {
                        got.push(deliver(first, &sub, &name));
                    }
                    answers.lock().unwrap().insert(sub, got);
                }
            });
        }
    });

    // The registry: every event once.
    let answers = answers.lock().unwrap().clone();
    let counts = trailers(&registry);
    for (sub, got) in &answers {
        assert_eq!(
            counts.get(sub),
            Some(&1),
            "{sub} is in the registry {:?} times",
            counts.get(sub)
        );
        // One of the deliveries created it; the other is a redelivery (200) — or, when both
        // servers built the very same commit (same parent, content and second: the same
        // commit id), also 201: one commit, pushed twice.
        assert!(got.contains(&201), "{sub} answered {got:?}: never created");
    }
    assert_eq!(counts.len(), answers.len(), "no event that was not sent");
    let replays: usize = serves
        .iter()
        .map(|p| {
            p.log()
                .matches("applying the events again on top of its head")
                .count()
        })
        .sum();
    eprintln!(
        "two serves: {} events, {replays} group(s) redone on top of the other's push",
        answers.len()
    );

    // The manifests: both watches converge on the rendering of the final registry.
    let checkout = tempfile::tempdir().unwrap();
    git2::build::RepoBuilder::new()
        .branch("main")
        .clone(registry.to_str().unwrap(), checkout.path())
        .unwrap();
    let want = watch_support::expected(checkout.path());
    let logs = || {
        watches
            .iter()
            .map(|p| {
                p.log()
                    .lines()
                    .rev()
                    .take(15)
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    wait_until(
        "the manifests to hold the final registry",
        WAIT,
        logs,
        || {
            main_of(&manifests).is_some_and(|head| {
                watch_support::output_only(watch_support::tree_files(&manifests, head)) == want
            })
        },
    );
    // And stay so once both have seen the final registry (nothing more is pushed).
    std::thread::sleep(Duration::from_secs(3));
    let head = main_of(&manifests).unwrap();
    let got = watch_support::output_only(watch_support::tree_files(&manifests, head));
    let differ: Vec<&String> = got
        .keys()
        .chain(want.keys())
        .filter(|k| got.get(*k) != want.get(*k))
        .collect();
    assert!(
        differ.is_empty(),
        "the manifests moved away from the final registry's output: {differ:?}\n{}",
        logs()
    );
    // Output never went back in time: every manifests commit names a registry commit at
    // least as new as its parent's (a writer with an older registry never pushed over a
    // newer one's output, which would have removed the newest tenants' trees for a while).
    let reg = git2::Repository::open_bare(&registry).unwrap();
    let registry_commit = |id: git2::Oid| {
        let m = watch_support::message(&manifests, id);
        m.lines()
            .find_map(|l| l.strip_prefix("Registry-Commit: "))
            .map(|s| git2::Oid::from_str(s.trim()).unwrap())
    };
    let r = git2::Repository::open_bare(&manifests).unwrap();
    for id in watch_support::history(&manifests, head) {
        let c = r.find_commit(id).unwrap();
        if let Ok(p) = c.parent(0) {
            assert_ne!(c.tree_id(), p.tree_id(), "commit {id} changes nothing");
            if let (Some(now), Some(before)) = (registry_commit(id), registry_commit(p.id())) {
                assert!(
                    now == before || reg.graph_descendant_of(now, before).unwrap(),
                    "manifests commit {id} was made from registry {now}, older than its parent's {before}"
                );
            }
        }
    }
    let updates = (
        only_fast_forwards(&registry),
        only_fast_forwards(&manifests),
    );
    eprintln!(
        "ref updates: registry {}, manifests {}",
        updates.0, updates.1
    );
    drop(serves);
    drop(watches);
}
