//! git's lock files in the output clone (`index.lock`, `refs/**.lock`…), with the real
//! binary: the ones a killed provisio run left — planted as such a run leaves them, and left
//! by `generate --commit` SIGKILLed while holding them — are removed by the next run, in every
//! mode (`generate --commit` too, so a crash converges); one held by anyone else — here stock
//! `git commit` waiting for its editor — is never removed: the run stops, names the file and
//! leaves it, and goes through once that git is done.

use crate::common;
use crate::watch_support;

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::Workspace;
use watch_support::*;

/// `provisio generate --commit --push` of the workspace: exit code and standard error.
fn generate_commit(ws: &Workspace, url: &str) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_provisio"))
        .arg("generate")
        .arg("--registry")
        .arg(ws.registry())
        .arg("--out")
        .arg(ws.out())
        .args(["--now", NOW, "--commit", "--push", "--manifests-url", url])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What a `generate --commit` SIGKILLed inside libgit2's commit leaves: the lock record it
/// wrote on taking provisio's lock (`provisio running …`, never overwritten by `released`),
/// then — later, so newer — the index lock and the branch's ref lock libgit2 had created.
#[test]
fn git_locks_a_killed_generate_commit_left_do_not_block_the_next_one() {
    let ws = Workspace::new();
    let (bare, url) = bare(ws.dir.path());
    let (code, stderr) = generate_commit(&ws, &url);
    assert_eq!(code, Some(0), "{stderr}");
    let git_dir = ws.out().join(".git");
    assert_eq!(
        std::fs::read_to_string(git_dir.join("provisio.lock")).unwrap(),
        "released\n",
        "a run that ended normally must say so, or the next takes others' locks for its own"
    );
    std::fs::write(
        git_dir.join("provisio.lock"),
        "provisio running pid=4194303\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let left = [
        git_dir.join("index.lock"),
        git_dir.join("refs/heads/main.lock"),
    ];
    for lock in &left {
        std::fs::write(lock, "half written").unwrap();
    }

    let (_, rel, text) = new_tenant(3);
    ws.write(&rel, &text);
    let (code, stderr) = generate_commit(&ws, &url);
    assert_eq!(
        code,
        Some(0),
        "the killed run's locks blocked the next:\n{stderr}"
    );
    for lock in &left {
        assert!(!lock.exists(), "{} left", lock.display());
        assert!(
            stderr.contains(&lock.display().to_string()),
            "the removal of {} is not logged:\n{stderr}",
            lock.display()
        );
    }
    assert!(stderr.contains("generate: committed "), "{stderr}");
    let head = head_of(&bare, "main").unwrap();
    assert_eq!(tree_files(&bare, head), expected(&ws.registry()));
    fsck(&ws.out());
}

/// The git lock files in a git directory (the names libgit2 takes, and `refs/**.lock`).
fn git_locks_in(git_dir: &Path) -> Vec<String> {
    let mut found: Vec<String> = ["index.lock", "HEAD.lock", "config.lock", "FETCH_HEAD.lock"]
        .iter()
        .filter(|n| std::fs::symlink_metadata(git_dir.join(n)).is_ok())
        .map(|n| n.to_string())
        .collect();
    // A git directory a kill left half written may have no `refs/` yet.
    let mut stack: Vec<_> = Some(git_dir.join("refs"))
        .filter(|r| r.is_dir())
        .into_iter()
        .collect();
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().map(Result::unwrap) {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else if e.path().extension().is_some_and(|x| x == "lock") {
                found.push(e.path().display().to_string());
            }
        }
    }
    found
}

/// The real thing: `generate --commit --push` of a change to every tenant, SIGKILLed the
/// moment a git lock file of its own appears in the clone (`index.lock` or the branch's ref
/// lock: while it commits and writes the index); each time the next `generate --commit
/// --push` must succeed, leave no git lock file behind and deliver exactly the render. A kill
/// lands after the lock is gone now and then; at least one must have left one.
#[test]
fn git_locks_generate_commit_sigkilled_holding_a_git_lock_converges_on_the_next_run() {
    let ws = Workspace::new();
    for n in 0..10 {
        let (_, rel, text) = new_tenant(200 + n);
        ws.write(&rel, &text);
    }
    let (bare, url) = bare(ws.dir.path());
    let (code, stderr) = generate_commit(&ws, &url);
    assert_eq!(code, Some(0), "{stderr}");
    let platform = std::fs::read_to_string(ws.registry().join("platform.yaml")).unwrap();
    let flipped = platform.replace("environment: production", "environment: staging");
    assert_ne!(platform, flipped);

    let git_dir = ws.out().join(".git");
    let watched = [
        git_dir.join("index.lock"),
        git_dir.join("refs/heads/main.lock"),
    ];
    let mut left_a_lock = 0;
    for attempt in 0..12 {
        ws.write(
            "platform.yaml",
            if attempt % 2 == 0 {
                &flipped
            } else {
                &platform
            },
        );
        let mut child = Command::new(env!("CARGO_BIN_EXE_provisio"))
            .arg("generate")
            .arg("--registry")
            .arg(ws.registry())
            .arg("--out")
            .arg(ws.out())
            .args(["--now", NOW, "--commit", "--push", "--manifests-url", &url])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        while child.try_wait().unwrap().is_none()
            && !watched.iter().any(|p| std::fs::symlink_metadata(p).is_ok())
        {
            std::hint::spin_loop();
        }
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        let locks = git_locks_in(&git_dir);
        if !locks.is_empty() {
            left_a_lock += 1;
        }
        let (code, stderr) = generate_commit(&ws, &url);
        assert_eq!(
            code,
            Some(0),
            "after a kill ({status}) that left {locks:?}:\n{stderr}"
        );
        assert_eq!(git_locks_in(&git_dir), Vec::<String>::new());
        let head = head_of(&bare, "main").unwrap();
        assert_eq!(tree_files(&bare, head), expected(&ws.registry()));
        if left_a_lock == 3 {
            break;
        }
    }
    println!("{left_a_lock} kill(s) left a git lock file");
    assert!(left_a_lock > 0, "no kill landed while a git lock was held");
    fsck(&ws.out());
    fsck(&bare);
}

/// The first `generate --commit --push` into a new output directory creates its clone.
/// SIGKILLed the moment the clone's `.git`, or the directory provisio builds it in, appears
/// (libgit2 is writing it then, and provisio's lock does not exist yet), the next run must
/// still succeed, on `main`, and deliver the render. When libgit2 wrote `.git` in place, a
/// kill there left its `HEAD.lock` or `config.lock`, which the next run refused as a
/// person's (no provisio run had recorded them), or a `.git` whose HEAD was libgit2's
/// default branch instead of `main`.
#[test]
fn git_locks_the_first_run_sigkilled_while_creating_the_clone_converges() {
    let ws = Workspace::new();
    let mut mid_creation = 0;
    for attempt in 0..10 {
        let dir = tempfile::tempdir_in(ws.dir.path()).unwrap();
        let (bare, url) = bare(dir.path());
        let out = dir.path().join("out");
        let generate = || {
            let mut c = Command::new(env!("CARGO_BIN_EXE_provisio"));
            c.arg("generate")
                .arg("--registry")
                .arg(ws.registry())
                .arg("--out")
                .arg(&out)
                .args(["--now", NOW, "--commit", "--push", "--manifests-url", &url])
                .env("NO_COLOR", "1");
            c
        };
        let staging = out.join(provisio::io::repo::NEW_REPOSITORY);
        let watched = if attempt % 2 == 0 {
            out.join(".git")
        } else {
            staging.clone()
        };
        let mut child = generate()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        while child.try_wait().unwrap().is_none() && std::fs::symlink_metadata(&watched).is_err() {
            std::hint::spin_loop();
        }
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        if staging.exists() {
            mid_creation += 1;
        }
        let left = git_locks_in(&out.join(".git"));
        let run = generate().output().unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(
            run.status.code(),
            Some(0),
            "after a kill ({status}) at {} that left {left:?}:\n{stderr}",
            watched.display()
        );
        let clone = git2::Repository::open(&out).unwrap();
        let head = clone.find_reference("HEAD").unwrap();
        assert_eq!(
            head.symbolic_target().ok().flatten(),
            Some("refs/heads/main"),
            "attempt {attempt}"
        );
        assert!(
            !staging.exists(),
            "attempt {attempt}: {} left",
            staging.display()
        );
        assert_eq!(git_locks_in(&out.join(".git")), Vec::<String>::new());
        let pushed = head_of(&bare, "main").unwrap();
        assert_eq!(tree_files(&bare, pushed), expected(&ws.registry()));
    }
    println!("{mid_creation} kill(s) landed while the clone was being created");
    assert!(
        mid_creation > 0,
        "no kill landed while the clone was created"
    );
}

/// Stock `git commit -a` in `dir`, holding `index.lock` while its editor waits for standard
/// input (the editor of a person who has not saved yet). Closing stdin ends the editor with
/// the message left empty: git aborts the commit and removes its lock.
fn git_commit_waiting_in_its_editor(dir: &Path) -> Option<Child> {
    common::tool("git")?;
    let child = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=A Person",
            "-c",
            "user.email=person@example.com",
            "commit",
            "-a",
            "--allow-empty",
        ])
        .env("GIT_EDITOR", "cat >/dev/null; :")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Some(child)
}

#[test]
fn git_locks_a_lock_stock_git_holds_is_named_and_left_by_watch_and_generate() {
    let ws = Workspace::new();
    let (bare, url) = bare(ws.dir.path());
    let (code, stderr) = generate_commit(&ws, &url);
    assert_eq!(code, Some(0), "{stderr}");
    let pushed = head_of(&bare, "main").unwrap();
    let Some(mut git) = git_commit_waiting_in_its_editor(&ws.out()) else {
        return;
    };
    let lock = ws.out().join(".git/index.lock");
    wait_for("git's index.lock", Duration::from_secs(20), || {
        lock.exists()
    });
    let (_, rel, text) = new_tenant(3);
    ws.write(&rel, &text);
    let named = format!("{} is not provisio's", lock.display());

    let mut w = Watch::spawn(
        &ws.registry(),
        &ws.out(),
        &url,
        &[],
        &ws.dir.path().join("watch.log"),
    );
    let code = w.wait(Duration::from_secs(30));
    let log = w.log();
    assert_ne!(code, Some(0), "{log}");
    assert!(log.contains(&named), "{log}");
    assert!(log.contains("another git process is working in"), "{log}");
    assert!(lock.exists(), "watch removed git's live lock:\n{log}");

    let (code, stderr) = generate_commit(&ws, &url);
    assert_eq!(code, Some(5), "{stderr}");
    assert!(stderr.contains(&named), "{stderr}");
    assert!(lock.exists(), "generate removed git's live lock:\n{stderr}");
    assert_eq!(head_of(&bare, "main"), Some(pushed));
    assert!(
        git.try_wait().unwrap().is_none(),
        "git commit ended early (its lock was taken from it)"
    );

    // The person's git is done (no message: it aborts and removes its own lock).
    git.stdin.take().unwrap().write_all(b"").unwrap();
    let status = git.wait().unwrap();
    assert!(!status.success(), "the empty message was committed");
    assert!(!lock.exists());
    let (code, stderr) = generate_commit(&ws, &url);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        tree_files(&bare, head_of(&bare, "main").unwrap()),
        expected(&ws.registry())
    );
}

/// watch stopped by SIGTERM ends normally: its record says `released`, so the next run
/// takes no git lock file that appeared since watch started for its own.
#[test]
fn git_locks_watch_stopped_by_sigterm_records_the_release() {
    let ws = Workspace::new();
    let (bare, url) = bare(ws.dir.path());
    let mut w = Watch::spawn(
        &ws.registry(),
        &ws.out(),
        &url,
        &[],
        &ws.dir.path().join("watch.log"),
    );
    let record = ws.out().join(".git/provisio.lock");
    wait_for("the first push", Duration::from_secs(30), || {
        head_of(&bare, "main").is_some()
    });
    assert!(
        std::fs::read_to_string(&record)
            .unwrap()
            .starts_with(&format!("provisio running pid={}\n", w.child.id())),
        "{}",
        w.log()
    );
    w.signal(libc::SIGTERM);
    assert_eq!(w.wait(Duration::from_secs(20)), Some(0), "{}", w.log());
    assert_eq!(std::fs::read_to_string(&record).unwrap(), "released\n");
}
