//! Benchmark of the delivery paths (issue 13's table), not a timed test: with the release
//! binary at 10,000 tenants (`BENCH_SIZES`), each row next to its floor or its peer, in one
//! run, with peak memory (max RSS of the process from `wait4`; for a sequence of commands,
//! the largest):
//!
//! - first `generate --commit --push` into an empty remote, next to stock `git` adding,
//!   committing and pushing the same files into another empty remote;
//! - `generate --commit --push` with nothing changed, and after one tenant changed;
//! - a product's version bumped → `generate --commit --push` landed in the remote, next to
//!   stock `git` committing and pushing the same changed files (`git add -A`, commit, push);
//! - cold `generate` of `BENCH_COLD_SIZE` tenants (1,000) next to `cp -r` of the tree it
//!   wrote (the floor);
//! - `kubectl kustomize` per tenant overlay (a sample of 50 overlays of one base) next to
//!   provisio per tenant (the cold run divided by its tenants).
//!
//! Times are medians of `BENCH_RUNS` runs (3; the first push and its floor run once).
//! Directories go under `BENCH_DIR` (default `/dev/shm` when it exists: tmpfs, as the issue
//! measures) and are removed afterwards. `PROVISIO_BIN` runs another build of provisio (the
//! commit before a change, for before/after tables). `BENCH_ROWS` runs only the rows it names,
//! comma-separated, from `cold`, `kustomize`, `first`, `noop`, `one`, `bump` (default: every
//! row; a row another depends on still runs, unmeasured: the first push before `noop`, the cold
//! run before `kustomize`). `BENCH_KUSTOMIZE=0` skips kubectl (as leaving `kustomize` out of
//! `BENCH_ROWS` does); `BENCH_SYNTHESISE=<dir>` only writes the registry of the first size there
//! (for profiling).
//! Run: `cargo bench --bench deliver`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;
#[path = "common/kustomize.rs"]
mod kustomize;
#[path = "common/measure.rs"]
mod measure;

use common::{copy_dir, synthesise};
use measure::measure;

const NOW: &str = "2025-02-01T00:00:00Z";

/// Several commands in a row: total seconds, largest peak.
fn measure_all(cmds: &mut [Command]) -> (f64, f64) {
    cmds.iter_mut()
        .map(measure)
        .fold((0.0, 0.0), |(s, m), (s1, m1)| (s + s1, f64::max(m, m1)))
}

fn median(mut v: Vec<(f64, f64)>) -> (f64, f64) {
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mem = v.iter().map(|x| x.1).fold(0.0, f64::max);
    (v[v.len() / 2].0, mem)
}

fn bin() -> PathBuf {
    std::env::var_os("PROVISIO_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_provisio")))
}

fn generate(registry: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.arg("generate")
        .arg("--registry")
        .arg(registry)
        .arg("--out")
        .arg(out)
        .args(["--now", NOW])
        .args(extra)
        .stderr(Stdio::null());
    c
}

fn git(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("git");
    c.arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@example.com",
        ])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

fn run(cmd: &mut Command) {
    assert!(cmd.status().expect("spawn").success(), "{cmd:?} failed");
}

fn row(what: &str, n: usize, (s, mb): (f64, f64), next_to: &str) {
    println!("| {what} | {n} | {s:.2} s | {mb:.0} MiB | {next_to} |");
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The tenant file `i` (in name order) of `registry` with its tier changed.
fn change_tenant(registry: &Path, i: usize) {
    let mut files: Vec<_> = std::fs::read_dir(registry.join("tenants"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let f = &files[i % files.len()];
    let text = std::fs::read_to_string(f).unwrap();
    let changed = if text.contains("tier: premium") {
        text.replace("tier: premium", "tier: business")
    } else {
        text.replace("tier: standard", "tier: premium")
            .replace("tier: business", "tier: premium")
    };
    std::fs::write(f, changed).unwrap();
}

/// Bumps the version of the product `addresses` (the most common change: one file of every
/// tenant changes).
fn bump_product(registry: &Path, run: usize) {
    let product = registry.join("products/addresses.yaml");
    let text = std::fs::read_to_string(&product).unwrap();
    let from = format!("version: v1.2.{}", 3 + run);
    let to = format!("version: v1.2.{}", 4 + run);
    assert!(text.contains(&from), "{from} not in {}", product.display());
    std::fs::write(&product, text.replace(&from, &to)).unwrap();
}

/// Copies into `clone` (a stock git work tree of the same remote) the files the remote's last
/// commit changed, as provisio's output holds them (not timed: the floor is committing them).
fn apply_last_change(bare: &Path, out: &Path, clone: &Path) {
    let o = Command::new("git")
        .arg("-C")
        .arg(bare)
        .args(["diff", "--name-status", "--no-renames", "main~1", "main"])
        .output()
        .unwrap();
    assert!(o.status.success());
    for line in String::from_utf8(o.stdout).unwrap().lines() {
        let (status, path) = line.split_once('\t').unwrap();
        let target = clone.join(path);
        if status == "D" {
            std::fs::remove_file(&target).unwrap();
        } else {
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::copy(out.join(path), &target).unwrap();
        }
    }
}

/// Whether `BENCH_ROWS` (default: every row) names `row`.
fn wanted(row: &str) -> bool {
    std::env::var("BENCH_ROWS").map_or(true, |rows| rows.split(',').any(|r| r.trim() == row))
}

fn main() {
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "10000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("BENCH_SIZES: numbers"))
        .collect();
    if let Some(target) = std::env::var_os("BENCH_SYNTHESISE") {
        // Only the registry, for profiling one step by hand.
        synthesise(Path::new(&target), sizes[0]);
        return;
    }
    let runs = env_or("BENCH_RUNS", 3).max(1);
    let root = std::env::var_os("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let shm = Path::new("/dev/shm");
            if shm.is_dir() {
                shm.to_path_buf()
            } else {
                std::env::temp_dir()
            }
        });
    println!(
        "provisio: {}; {runs} run(s) per row, median",
        bin().display()
    );
    println!("\n| step | tenants | time | peak memory | next to |\n|---|---|---|---|---|");

    // Cold generate against its floor (cp -r of the same tree), and kustomize per overlay.
    let kustomize =
        wanted("kustomize") && !std::env::var("BENCH_KUSTOMIZE").is_ok_and(|v| v == "0");
    if wanted("cold") || kustomize {
        cold_rows(&root, runs, kustomize);
    }
    let delivery = ["first", "noop", "one", "bump"];
    if !delivery.iter().any(|r| wanted(r)) {
        return;
    }
    for &n in &sizes {
        let tmp = tempfile::tempdir_in(&root).unwrap();
        let dir = tmp.path();
        let registry = dir.join("registry");
        let out = dir.join("out");
        let bare = dir.join("manifests.git");
        synthesise(&registry, n);
        run(Command::new("git")
            .args(["init", "-q", "--bare", "-b", "main"])
            .arg(&bare));
        let url = format!("file://{}", bare.display());
        let push = ["--commit", "--push", "--manifests-url", url.as_str()];

        let first = measure(&mut generate(&registry, &out, &push));
        if wanted("first") {
            first_floor(dir, &out, n, first);
        }

        if wanted("noop") {
            let noop = median(
                (0..runs)
                    .map(|_| measure(&mut generate(&registry, &out, &push)))
                    .collect(),
            );
            row("generate --commit --push, nothing changed", n, noop, "");
        }
        if wanted("one") {
            let one = median(
                (0..runs)
                    .map(|i| {
                        change_tenant(&registry, i);
                        measure(&mut generate(&registry, &out, &push))
                    })
                    .collect(),
            );
            row("generate --commit --push, one tenant changed", n, one, "");
        }
        if !wanted("bump") {
            drop(tmp);
            continue;
        }
        // A stock git clone of the remote, for the floor of committing the product's files.
        let clone = dir.join("clone");
        run(Command::new("git")
            .args(["clone", "-q"])
            .arg(&url)
            .arg(&clone));
        let mut bumps = Vec::new();
        let mut floors = Vec::new();
        for r in 0..runs {
            run(&mut git(&clone, &["pull", "-q", "--ff-only"]));
            bump_product(&registry, r);
            bumps.push(measure(&mut generate(&registry, &out, &push)));
            apply_last_change(&bare, &out, &clone);
            let mut push_to = git(&clone, &["push", "-q", "origin", "HEAD:refs/heads/floor"]);
            push_to.arg("--force");
            floors.push(measure_all(&mut [
                git(&clone, &["add", "-A"]),
                git(&clone, &["commit", "-q", "-m", "bump"]),
                push_to,
            ]));
            run(&mut git(&clone, &["reset", "-q", "--hard", "origin/main"]));
        }
        let (bump, floor) = (median(bumps), median(floors));
        row(
            "a product's version bumped → generate --commit --push landed in the remote",
            n,
            bump,
            &format!(
                "git add -A + commit + push of the same files: {:.2} s, {:.0} MiB",
                floor.0, floor.1
            ),
        );
        drop(tmp);
    }
}

/// Cold `generate` of `BENCH_COLD_SIZE` tenants next to `cp -r` of its tree, and (with
/// `kustomize`) `kubectl kustomize` per overlay next to provisio per tenant.
fn cold_rows(root: &Path, runs: usize, kustomize: bool) {
    let cold_n = env_or("BENCH_COLD_SIZE", 1000);
    let tmp = tempfile::tempdir_in(root).unwrap();
    let dir = tmp.path();
    synthesise(&dir.join("registry"), cold_n);
    let out = dir.join("out");
    let mut cold = Vec::new();
    let mut floor = Vec::new();
    // Only the tree for kustomize when the cold row is not wanted.
    let runs = if wanted("cold") { runs } else { 1 };
    for _ in 0..runs {
        let _ = std::fs::remove_dir_all(&out);
        let _ = std::fs::remove_dir_all(dir.join("copy"));
        cold.push(measure(&mut generate(&dir.join("registry"), &out, &[])));
        floor.push(measure(
            Command::new("cp").arg("-r").arg(&out).arg(dir.join("copy")),
        ));
    }
    let (cold, floor) = (median(cold), median(floor));
    if wanted("cold") {
        row(
            "generate, cold (empty output)",
            cold_n,
            cold,
            &format!(
                "cp -r of its tree: {:.2} s, {:.0} MiB ({:.2}×)",
                floor.0,
                floor.1,
                cold.0 / floor.0
            ),
        );
    }
    if !kustomize {
        println!("(kubectl kustomize skipped)");
    } else {
        let sample = 50;
        let kdir = dir.join("kustomize");
        let tree = std::fs::read_dir(out.join("tenants-out"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        kustomize::kustomize_overlays(&kdir, &tree, sample);
        let mut k = Command::new("kubectl");
        k.arg("kustomize").arg(&kdir).stdout(Stdio::null());
        let (s, mb) = measure(&mut k);
        let per_overlay = s / sample as f64 * 1000.0;
        let per_tenant = cold.0 / cold_n as f64 * 1000.0;
        println!(
            "| kubectl kustomize per tenant overlay ({sample} overlays of one base) | {sample} | {per_overlay:.1} ms | {mb:.0} MiB | provisio per tenant: {per_tenant:.2} ms ({:.0}× faster) |",
            per_overlay / per_tenant
        );
    }
}

/// The first push's floor: stock git adding, committing and pushing the files `generate`
/// wrote into `out`, into another empty remote under `dir`; printed next to `first`.
fn first_floor(dir: &Path, out: &Path, n: usize, first: (f64, f64)) {
    // The floor: stock git adding, committing and pushing the same files.
    let git_dir = dir.join("stock");
    let git_bare = dir.join("stock.git");
    std::fs::create_dir_all(&git_dir).unwrap();
    for d in ["tenants-out", "argocd", "platform-out"] {
        if out.join(d).is_dir() {
            copy_dir(&out.join(d), &git_dir.join(d));
        }
    }
    std::fs::copy(
        out.join(".provisio-state.json"),
        git_dir.join(".provisio-state.json"),
    )
    .unwrap();
    run(Command::new("git")
        .args(["init", "-q", "--bare", "-b", "main"])
        .arg(&git_bare));
    run(&mut git(&git_dir, &["init", "-q", "-b", "main"]));
    let git_url = format!("file://{}", git_bare.display());
    run(&mut git(&git_dir, &["remote", "add", "origin", &git_url]));
    let floor = measure_all(&mut [
        git(&git_dir, &["add", "-A"]),
        git(&git_dir, &["commit", "-q", "-m", "first"]),
        git(&git_dir, &["push", "-q", "origin", "main"]),
    ]);
    row(
        "first generate --commit --push into an empty remote",
        n,
        first,
        &format!(
            "git add -A + commit + push of the same files: {:.2} s, {:.0} MiB",
            floor.0, floor.1
        ),
    );
}
