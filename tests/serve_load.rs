//! Load benchmark of `provisio serve` on loopback (ignored by default; run with
//! `cargo test --release --test serve_load -- --ignored --nocapture`): 50 concurrent clients
//! with keep-alive send distinct `subscription-created` events for a fixed time; prints
//! events/s, p50/p99 latency, and checks that the acknowledged count equals the events
//! found in git afterwards. `PROVISIO_LOAD_SECS` (default 10) and `PROVISIO_LOAD_CLIENTS`
//! (default 50) change the run.

mod serve_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serve_support::*;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
#[ignore = "benchmark: run with --release -- --ignored --nocapture"]
fn load_50_clients_distinct_events() {
    let secs = env_or("PROVISIO_LOAD_SECS", 10);
    let clients = env_or("PROVISIO_LOAD_CLIENTS", 50) as usize;
    let f = Fixture::new();
    // No re-shard first: the intake places each new tenant in a shard with room.
    let server = f.start();
    let addr = server.addr();
    let before = f.commits().len();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let results: Vec<(usize, usize, Vec<Duration>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                s.spawn(move || {
                    let agent = agent();
                    let bearer = format!("Bearer {SECRET}");
                    let (mut ok, mut failed, mut lat) = (0, 0, Vec::new());
                    let mut i = 0;
                    while Instant::now() < deadline {
                        let sub = format!("sub_load_{c}_{i}");
                        i += 1;
                        let body = created(&sub, &format!("Load Shop {c} {i}")).to_string();
                        let t = Instant::now();
                        let a = request(
                            &agent,
                            "POST",
                            addr,
                            "/api/v1/provisioning/webhooks/subscription-created",
                            &[
                                ("authorization", bearer.as_str()),
                                ("content-type", "application/json"),
                            ],
                            body.as_bytes(),
                        );
                        lat.push(t.elapsed());
                        if a.status == 201 {
                            ok += 1;
                        } else {
                            if failed == 0 {
                                eprintln!("{sub}: {} {}", a.status, a.body);
                            }
                            failed += 1;
                        }
                    }
                    (ok, failed, lat)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = started.elapsed();
    let ok: usize = results.iter().map(|r| r.0).sum();
    let failed: usize = results.iter().map(|r| r.1).sum();
    let mut lat: Vec<Duration> = results.into_iter().flat_map(|r| r.2).collect();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    let commits = f.commits();
    let new_commits = commits.len() - before;
    let mut in_git: BTreeMap<String, usize> = BTreeMap::new();
    for m in &commits {
        for line in m.lines().filter(|l| l.starts_with("Provisio-Event: ")) {
            *in_git
                .entry(line.split_whitespace().nth(3).unwrap().to_owned())
                .or_default() += 1;
        }
    }
    println!(
        "serve load: {clients} clients, {:.1} s: {ok} acknowledged (201), {failed} other; {:.0} events/s; \
         latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {new_commits} commits ({:.1} events/commit); \
         {} events in git",
        elapsed.as_secs_f64(),
        ok as f64 / elapsed.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        lat.last().unwrap().as_secs_f64() * 1e3,
        ok as f64 / new_commits.max(1) as f64,
        in_git.len(),
    );
    assert_eq!(failed, 0);
    assert_eq!(in_git.len(), ok, "acknowledged events = events in git");
    assert!(in_git.values().all(|n| *n == 1));
    assert_eq!(f.committed_tenants().len(), 3 + ok);
}
