//! Benchmark of watch mode (not a timed test): synthesises registries of 1,000 and 10,000
//! tenants (as `benches/generate.rs` does), delivers the initial output to a bare "manifests"
//! repository with `generate --commit --push`, starts the release binary's `watch`, then
//! measures the time from saving a file to the new commit being in the remote: one tenant
//! file (several samples, median and max) and one product file (every tenant re-rendered).
//! Run: `cargo bench --bench watch` (sizes: `BENCH_SIZES=1000,10000`; samples:
//! `BENCH_SAMPLES=5`; debounce: `BENCH_DEBOUNCE_MS=200`, watch's default; `BENCH_KEEP=1` keeps
//! the directories for a closer look).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::synthesise;

fn head(bare: &Path) -> Option<git2::Oid> {
    let r = git2::Repository::open_bare(bare).ok()?;
    r.find_reference("refs/heads/main").ok()?.target()
}

/// Seconds from now until the remote's head is no longer `before` (polled every 2 ms).
fn until_pushed(bare: &Path, before: Option<git2::Oid>, start: Instant) -> f64 {
    loop {
        if head(bare) != before {
            return start.elapsed().as_secs_f64();
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "no commit within 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

const NOW: &str = "2025-02-01T00:00:00Z";

fn main() {
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("BENCH_SIZES: numbers"))
        .collect();
    let samples: usize = std::env::var("BENCH_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let debounce = std::env::var("BENCH_DEBOUNCE_MS").unwrap_or_else(|_| "200".into());
    let bin = env!("CARGO_BIN_EXE_provisio");
    println!("debounce {debounce} ms; times are save → commit in the remote\n");
    println!("| step | tenants | time |\n|---|---|---|");
    for &n in &sizes {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        if std::env::var("BENCH_KEEP").is_ok_and(|v| v == "1") {
            println!("(keeping {})", dir.display());
        }
        let registry = dir.join("registry");
        let out = dir.join("out");
        let bare = dir.join("manifests.git");
        synthesise(&registry, n);
        git2::Repository::init_bare(&bare).unwrap();
        let url = format!("file://{}", bare.display());

        let start = Instant::now();
        let status = Command::new(bin)
            .arg("generate")
            .arg("--registry")
            .arg(&registry)
            .arg("--out")
            .arg(&out)
            .args(["--now", NOW, "--commit", "--push", "--manifests-url", &url])
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        println!(
            "| generate --commit --push, cold (initial commit) | {n} | {:.2} s |",
            start.elapsed().as_secs_f64()
        );

        let before = head(&bare);
        let start = Instant::now();
        let mut watch = Command::new(bin)
            .arg("watch")
            .arg("--registry")
            .arg(&registry)
            .arg("--out")
            .arg(&out)
            .args(["--now", NOW, "--manifests-url", &url])
            .args(["--debounce-ms", &debounce])
            .env("PROVISIO_LOG", "provisio=info")
            .stderr(std::fs::File::create(dir.join("watch.log")).unwrap())
            .spawn()
            .unwrap();
        // The start-up cycle (full re-render compared with the disk, `git add -A` scan).
        let log = || std::fs::read_to_string(dir.join("watch.log")).unwrap_or_default();
        while !log().contains("cycle done") {
            assert!(start.elapsed() < Duration::from_secs(600), "{}", log());
            std::thread::sleep(Duration::from_millis(5));
        }
        println!(
            "| watch start-up cycle (full re-render + scan, nothing to commit) | {n} | {:.2} s |",
            start.elapsed().as_secs_f64()
        );
        assert_eq!(
            head(&bare),
            before,
            "the start-up cycle found nothing to commit"
        );

        // One tenant file saved: samples on different tenants.
        let mut files: Vec<_> = std::fs::read_dir(registry.join("tenants"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let mut times = Vec::new();
        for f in files.iter().take(samples) {
            let text = std::fs::read_to_string(f).unwrap();
            let changed = if text.contains("tier: premium") {
                text.replace("tier: premium", "tier: business")
            } else {
                text.replace("tier: standard", "tier: premium")
                    .replace("tier: business", "tier: premium")
            };
            let before = head(&bare);
            let start = Instant::now();
            std::fs::write(f, changed).unwrap();
            times.push(until_pushed(&bare, before, start));
            std::thread::sleep(Duration::from_millis(300));
        }
        times.sort_by(f64::total_cmp);
        println!(
            "| one tenant file saved → commit in the remote (median of {}, max) | {n} | {:.2} s (max {:.2} s) |",
            times.len(),
            times[times.len() / 2],
            times[times.len() - 1]
        );

        // One product file saved: every tenant re-rendered, one commit.
        let product = registry.join("products/addresses.yaml");
        let text = std::fs::read_to_string(&product).unwrap();
        let before = head(&bare);
        let start = Instant::now();
        std::fs::write(&product, text.replace("version: v1.2.3", "version: v1.2.4")).unwrap();
        let t = until_pushed(&bare, before, start);
        println!(
            "| one product file saved (every tenant) → commit in the remote | {n} | {t:.2} s |"
        );

        // SAFETY: signalling our own child.
        unsafe { libc::kill(watch.id() as i32, libc::SIGTERM) };
        let status = watch.wait().unwrap();
        assert!(status.success(), "{}", log());
        if std::env::var("BENCH_KEEP").is_ok_and(|v| v == "1") {
            let _ = tmp.keep();
        }
    }
}
