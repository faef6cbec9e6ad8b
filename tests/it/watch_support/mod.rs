//! Helpers of the delivery and watch tests: bare repositories on disk as remotes (file://
//! URLs), reading trees and histories with git2, a second writer, new tenant files, the
//! expected output of a registry, the real binary as a child process, bounded waits.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use git2::{Oid, Repository};

pub const NOW: &str = "2025-02-01T00:00:00Z";

/// A new bare repository (the "manifests" remote) and its file:// URL.
pub fn bare(dir: &Path) -> (PathBuf, String) {
    let path = dir.join("manifests.git");
    Repository::init_bare(&path).unwrap();
    let url = format!("file://{}", path.display());
    (path, url)
}

/// The commit of `branch` in a (bare) repository.
pub fn head_of(repo: &Path, branch: &str) -> Option<Oid> {
    let r = Repository::open(repo).ok()?;
    let reference = r.find_reference(&format!("refs/heads/{branch}")).ok()?;
    reference.target()
}

/// Every blob of a commit's tree, path → bytes.
pub fn tree_files(repo: &Path, commit: Oid) -> BTreeMap<String, Vec<u8>> {
    let r = Repository::open(repo).unwrap();
    let tree = r.find_commit(commit).unwrap().tree().unwrap();
    let mut out = BTreeMap::new();
    tree.walk(git2::TreeWalkMode::PreOrder, |dir, e| {
        if e.kind() == Some(git2::ObjectType::Blob) {
            let blob = r.find_blob(e.id()).unwrap();
            out.insert(
                format!("{dir}{}", e.name().unwrap()),
                blob.content().to_vec(),
            );
        }
        git2::TreeWalkResult::Ok
    })
    .unwrap();
    out
}

pub fn message(repo: &Path, commit: Oid) -> String {
    let r = Repository::open(repo).unwrap();
    let c = r.find_commit(commit).unwrap();
    c.message().unwrap().to_owned()
}

pub fn parents(repo: &Path, commit: Oid) -> Vec<Oid> {
    let r = Repository::open(repo).unwrap();
    r.find_commit(commit).unwrap().parent_ids().collect()
}

/// Commits reachable from `commit`, newest first.
pub fn history(repo: &Path, commit: Oid) -> Vec<Oid> {
    let r = Repository::open(repo).unwrap();
    let mut walk = r.revwalk().unwrap();
    walk.push(commit).unwrap();
    walk.map(|c| c.unwrap()).collect()
}

/// What `generate` renders for `registry` from scratch: the output tree and the state file.
pub fn expected(registry: &Path) -> BTreeMap<String, Vec<u8>> {
    let out = tempfile::tempdir().unwrap();
    let opts = provisio::ops::generate::GenerateOptions::new(
        chrono::DateTime::parse_from_rfc3339(NOW)
            .unwrap()
            .with_timezone(&chrono::Utc),
    );
    provisio::ops::generate::generate(
        &provisio::ops::generate::Paths {
            registry: registry.to_path_buf(),
            out: out.path().to_path_buf(),
        },
        &opts,
    )
    .expect("generate");
    let mut files = provisio::io::output::read_tree(out.path()).unwrap();
    files.insert(
        provisio::io::output::STATE_FILE.to_owned(),
        std::fs::read(out.path().join(provisio::io::output::STATE_FILE)).unwrap(),
    );
    files
}

/// The generator's files of a tree (drops files another writer added).
pub fn output_only(files: BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    files
        .into_iter()
        .filter(|(p, _)| {
            p.starts_with("tenants-out/")
                || p.starts_with("platform-out/")
                || p.starts_with("argocd/")
                || p == provisio::io::output::STATE_FILE
        })
        .collect()
}

/// A valid new tenant file; returns (id, relative path, text).
pub fn new_tenant(n: usize) -> (String, String, String) {
    let name = format!("Customer {n} Shop");
    let sub = format!("sub_t{n:06}");
    let id = provisio_core::naming::tenant_id(&name, &sub);
    let text = format!(
        "id: {id}\nname: {name}\ntier: standard\nregion: us-east\nsubscription: {sub}\ncontacts: {{admin: admin{n}@example.com, billing: billing{n}@example.com}}\ncreated: 2025-01-01T00:00:00Z\nstatus: active\n"
    );
    let rel = format!("tenants/{id}.yaml");
    (id, rel, text)
}

/// Another writer: clones `bare`, lets `change` edit the work tree, commits everything and
/// pushes. Returns the commit.
pub fn other_writer(bare: &Path, branch: &str, change: impl FnOnce(&Path)) -> Oid {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", bare.display());
    let repo = git2::build::RepoBuilder::new()
        .branch(branch)
        .clone(&url, dir.path())
        .unwrap();
    change(dir.path());
    let mut index = repo.index().unwrap();
    index
        .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .unwrap();
    index.update_all(["*"], None).unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = git2::Signature::now("other", "other@example.com").unwrap();
    let parent = repo.head().unwrap().peel_to_commit().unwrap();
    let id = repo
        .commit(
            Some("HEAD"),
            &sig,
            &sig,
            "another writer",
            &tree,
            &[&parent],
        )
        .unwrap();
    let mut remote = repo.find_remote("origin").unwrap();
    remote
        .push(&[format!("refs/heads/{branch}:refs/heads/{branch}")], None)
        .unwrap();
    id
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; panics with `what`.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `git fsck --full --strict` (the real git, as an independent checker) must be clean.
pub fn fsck(repo: &Path) {
    let out = Command::new("git")
        .args(["fsck", "--full", "--strict", "--no-dangling"])
        .current_dir(repo)
        .output()
        .expect("git is needed to check the repositories");
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "git fsck in {}: {}\n{}",
        repo.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The real binary running `watch`, its stderr in a file.
pub struct Watch {
    pub child: Child,
    pub log: PathBuf,
}

impl Watch {
    pub fn spawn(registry: &Path, out: &Path, url: &str, extra: &[&str], log: &Path) -> Watch {
        Self::spawn_at(registry, out, url, extra, log, Some(NOW))
    }

    /// As [`Watch::spawn`], on the real clock (the lifecycle's deletion dates pass).
    pub fn spawn_real_clock(
        registry: &Path,
        out: &Path,
        url: &str,
        extra: &[&str],
        log: &Path,
    ) -> Watch {
        Self::spawn_at(registry, out, url, extra, log, None)
    }

    fn spawn_at(
        registry: &Path,
        out: &Path,
        url: &str,
        extra: &[&str],
        log: &Path,
        now: Option<&str>,
    ) -> Watch {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        // Fast defaults, unless `extra` sets them.
        let mut defaults = Vec::new();
        for (flag, value) in [
            ("--debounce-ms", "50"),
            ("--push-backoff-ms", "20"),
            ("--retry-interval-secs", "1"),
        ] {
            if !extra.contains(&flag) {
                defaults.extend([flag, value]);
            }
        }
        let child = Command::new(env!("CARGO_BIN_EXE_provisio"))
            .arg("watch")
            .arg("--registry")
            .arg(registry)
            .arg("--out")
            .arg(out)
            .args(["--manifests-url", url])
            .args(now.map(|n| ["--now", n]).into_iter().flatten())
            .args(defaults)
            .args(extra)
            .env("PROVISIO_LOG", "provisio=info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        Watch {
            child,
            log: log.to_path_buf(),
        }
    }

    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            f.read_to_string(&mut s).unwrap();
        }
        s
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    /// Waits for the exit (bounded) and returns the exit code.
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "watch did not exit within {timeout:?}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
