//! Benchmark (not a timed test): synthesises registries of 1,000 and 10,000 tenants from the
//! bundled example and measures, with the release binary, cold `generate`, no-op `generate`,
//! a one-tenant change and `check`, each with its peak memory (max RSS from `wait4`); then
//! the same tenants built by `kubectl kustomize` as overlays of one base, the way a team would
//! do it without provisio. Run: `cargo bench --bench generate` (sizes: `BENCH_SIZES=1000,10000`;
//! `BENCH_KUSTOMIZE=0` skips the kustomize comparison).

use std::path::Path;
use std::process::Command;

mod common;
#[path = "common/kustomize.rs"]
mod kustomize;
#[path = "common/measure.rs"]
mod measure;

use common::synthesise;
use kustomize::kustomize_overlays;
use measure::measure;

fn provisio(args: &[&str], dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_provisio"));
    c.args(args)
        .args(["--now", "2025-02-01T00:00:00Z"])
        .current_dir(dir)
        .stderr(std::process::Stdio::null());
    c
}

fn row(what: &str, n: usize, (s, mb): (f64, f64)) {
    println!("| {what} | {n} | {s:.2} s | {mb:.0} MiB |");
}

const KUSTOMIZE_SAMPLE: usize = 50;

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("BENCH_SIZES: numbers"))
        .collect();
    println!("| step | tenants | time | peak memory |\n|---|---|---|---|");
    for &n in &sizes {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        synthesise(&dir.join("registry"), n);
        row(
            "generate, cold",
            n,
            measure(&mut provisio(&["generate"], dir)),
        );
        row(
            "generate, no-op",
            n,
            measure(&mut provisio(&["generate"], dir)),
        );
        let first = std::fs::read_dir(dir.join("registry/tenants"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .min()
            .unwrap();
        let text = std::fs::read_to_string(&first).unwrap();
        let changed = if text.contains("tier: premium") {
            text.replace("tier: premium", "tier: business")
        } else {
            text.replace("tier: standard", "tier: premium")
                .replace("tier: business", "tier: premium")
        };
        std::fs::write(&first, changed).unwrap();
        row(
            "generate, one tenant changed",
            n,
            measure(&mut provisio(&["generate"], dir)),
        );
        row(
            "check (full render + compare)",
            n,
            measure(&mut provisio(&["check"], dir)),
        );

        if std::env::var("BENCH_KUSTOMIZE").is_ok_and(|v| v == "0") {
            continue;
        }
        // kustomize re-builds the base for every overlay (~0.5 s each here), so it is
        // measured on a sample and extrapolated linearly; the table says so.
        let sample = n.min(KUSTOMIZE_SAMPLE);
        let kdir = dir.join("kustomize");
        let tree = std::fs::read_dir(dir.join("tenants-out"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        kustomize_overlays(&kdir, &tree, sample);
        let mut k = Command::new("kubectl");
        k.arg("kustomize")
            .arg(&kdir)
            .stdout(std::process::Stdio::null());
        let (s, mb) = measure(&mut k);
        row(
            &format!("kubectl kustomize, {sample} overlays of one base (measured)"),
            sample,
            (s, mb),
        );
        row(
            "kubectl kustomize, extrapolated ×n/sample",
            n,
            (s * n as f64 / sample as f64, mb),
        );
    }
}
