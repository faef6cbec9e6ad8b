//! Load benchmark of `provisio serve` on loopback (ignored by default; run with
//! `cargo test --release --test it serve_load:: -- --ignored --nocapture`): 50 concurrent clients
//! with keep-alive send distinct `subscription-created` events for a fixed time; prints
//! events/s, p50/p99 latency, and checks that the acknowledged count equals the events
//! found in git afterwards. `PROVISIO_LOAD_SECS` (default 10) and `PROVISIO_LOAD_CLIENTS`
//! (default 50) change the run.
//!
//! - `load_50_clients_distinct_events`: commits into a local checkout (no push);
//! - `load_50_clients_pushing_to_a_remote`: `--registry-git` mode, every group pushed to a
//!   real git server on 127.0.0.1 before it is answered (`PROVISIO_LOAD_REMOTE=ssh`, the
//!   default, or `https`), the events counted in the remote.

use crate::git_support;
use crate::serve_support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use provisio::io::repo::transport::{Token, Transport};
use provisio::io::repo::upstream::Upstream;
use provisio::services::serve::{self, Config, auth::Secret};
use serve_support::*;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Stats {
    ok: usize,
    failed: usize,
    latencies: Vec<Duration>,
    elapsed: Duration,
}

/// `clients` threads send distinct created events to `addr` for `secs` seconds.
fn drive(addr: SocketAddr, clients: usize, secs: u64) -> Stats {
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
    let mut latencies: Vec<Duration> = results.iter().flat_map(|r| r.2.clone()).collect();
    latencies.sort();
    Stats {
        ok: results.iter().map(|r| r.0).sum(),
        failed: results.iter().map(|r| r.1).sum(),
        latencies,
        elapsed: started.elapsed(),
    }
}

/// Subscription → how many commit trailers name it, in `messages`.
fn in_git(messages: &[String]) -> BTreeMap<String, usize> {
    let mut m: BTreeMap<String, usize> = BTreeMap::new();
    for msg in messages {
        for line in msg.lines().filter(|l| l.starts_with("Provisio-Event: ")) {
            *m.entry(line.split_whitespace().nth(3).unwrap().to_owned())
                .or_default() += 1;
        }
    }
    m
}

fn print(label: &str, clients: usize, s: &Stats, new_commits: usize, in_git: usize) {
    let pct =
        |p: f64| s.latencies[((s.latencies.len() as f64 * p) as usize).min(s.latencies.len() - 1)];
    println!(
        "serve load ({label}): {clients} clients, {:.1} s: {} acknowledged (201), {} other; {:.0} events/s; \
         latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {new_commits} commits ({:.1} events/commit); \
         {in_git} events in git",
        s.elapsed.as_secs_f64(),
        s.ok,
        s.failed,
        s.ok as f64 / s.elapsed.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        s.latencies.last().unwrap().as_secs_f64() * 1e3,
        s.ok as f64 / new_commits.max(1) as f64,
    );
}

#[test]
#[ignore = "benchmark: run with --release -- --ignored --nocapture"]
fn load_50_clients_distinct_events() {
    let secs = env_or("PROVISIO_LOAD_SECS", 10);
    let clients = env_or("PROVISIO_LOAD_CLIENTS", 50) as usize;
    let f = Fixture::new();
    // No re-shard first: the intake places each new tenant in a shard with room.
    let server = f.start();
    let before = f.commits().len();
    let stats = drive(server.addr(), clients, secs);
    let commits = f.commits();
    let found = in_git(&commits);
    print(
        "local commit",
        clients,
        &stats,
        commits.len() - before,
        found.len(),
    );
    assert_eq!(stats.failed, 0);
    assert_eq!(found.len(), stats.ok, "acknowledged events = events in git");
    assert!(found.values().all(|n| *n == 1));
    assert_eq!(f.committed_tenants().len(), 3 + stats.ok);
}

#[test]
#[ignore = "benchmark: run with --release -- --ignored --nocapture"]
fn load_50_clients_pushing_to_a_remote() {
    let secs = env_or("PROVISIO_LOAD_SECS", 10);
    let clients = env_or("PROVISIO_LOAD_CLIENTS", 50) as usize;
    let kind = match std::env::var("PROVISIO_LOAD_REMOTE").as_deref() {
        Ok("https") => git_support::Kind::Https,
        _ => git_support::Kind::Ssh,
    };
    let Some(git) = git_support::GitServer::start(kind) else {
        return;
    };
    let remote = git.create_with(
        "registry",
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("registry"),
    );
    let transport = match kind {
        git_support::Kind::Https => Transport {
            username: Some(git.var("GIT_HTTPS_USER").to_owned()),
            token: Some(Token::File(git.var("GIT_HTTPS_PASSWORD_FILE").into())),
            ca_file: Some(git.var("GIT_HTTPS_CA").into()),
            ..Transport::default()
        },
        git_support::Kind::Ssh => Transport {
            ssh_key: Some(git.var("GIT_SSH_KEY").into()),
            known_hosts: Some(git.var("GIT_SSH_KNOWN_HOSTS").into()),
            ..Transport::default()
        },
    };
    let clone = tempfile::tempdir().unwrap();
    let mut config = Config::new(clone.path().join("registry"), Secret::new(SECRET).unwrap());
    config.clock = Arc::new(now);
    config.upstream = Some(Upstream {
        url: git.url("registry"),
        branch: "main".into(),
        transport,
    });
    let server = serve::spawn(config, "127.0.0.1:0".parse().unwrap(), 2).unwrap();
    let before = git_support::messages(&remote).len();
    let stats = drive(server.addr(), clients, secs);
    let messages = git_support::messages(&remote);
    let found = in_git(&messages);
    print(
        &format!("push to {kind:?} remote"),
        clients,
        &stats,
        messages.len() - before,
        found.len(),
    );
    assert_eq!(stats.failed, 0);
    assert_eq!(
        found.len(),
        stats.ok,
        "acknowledged events = events in the remote"
    );
    assert!(found.values().all(|n| *n == 1));
    drop(server);
}
