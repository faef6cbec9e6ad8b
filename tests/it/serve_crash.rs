//! Crash safety of `provisio serve`: the real binary under load is killed with SIGKILL; after
//! a restart every event that was answered 2xx is in the registry's git history, none is
//! there twice, the work tree matches the commit, and redelivering everything converges.

use crate::serve_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serve_support::*;

/// Subscription id → how many commit trailers name it.
fn trailers(f: &Fixture) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for msg in f.commits() {
        for line in msg.lines() {
            if let Some(rest) = line.strip_prefix("Provisio-Event: ") {
                let sub = rest.split_whitespace().nth(2).unwrap().to_owned();
                *m.entry(sub).or_default() += 1;
            }
        }
    }
    m
}

#[test]
fn sigkill_under_load_loses_no_acknowledged_event() {
    let f = Fixture::new();
    let mut server = start_binary(&f, SecretFrom::Env);
    let addr = server.addr;
    let acked: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let sent: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let (acked, sent, stop) = (acked.clone(), sent.clone(), stop.clone());
            std::thread::spawn(move || {
                let agent = agent();
                let bearer = format!("Bearer {SECRET}");
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let sub = format!("sub_crash_{c}_{i}");
                    sent.lock().unwrap().insert(sub.clone());
                    let body = created(&sub, &format!("Crash Shop {c} {i}")).to_string();
                    let req = ureq::http::Request::builder()
                        .method("POST")
                        .uri(format!(
                            "http://{addr}/api/v1/provisioning/webhooks/subscription-created"
                        ))
                        .header("authorization", &bearer)
                        .header("content-type", "application/json")
                        .body(body.into_bytes())
                        .unwrap();
                    match agent.run(req) {
                        Ok(mut r) if r.status().is_success() => {
                            let v: serde_json::Value =
                                serde_json::from_str(&r.body_mut().read_to_string().unwrap())
                                    .unwrap();
                            let id = v["tenant_id"].as_str().unwrap().to_owned();
                            acked.lock().unwrap().insert(sub, id);
                        }
                        Ok(r) => panic!("unexpected status {} for {sub}", r.status()),
                        // The server is gone.
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    // Let the load run, then kill the server in the middle of it.
    let t0 = Instant::now();
    while acked.lock().unwrap().len() < 200 && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let sent = sent.lock().unwrap().clone();
    assert!(
        acked.len() >= 50,
        "only {} events acknowledged",
        acked.len()
    );

    // Restart: the repository is consistent and every acknowledged event is committed once.
    let server = start_binary(&f, SecretFrom::Env);
    let addr = server.addr;
    let committed = f.committed_tenants();
    let counts = trailers(&f);
    for (sub, id) in &acked {
        assert!(
            committed.contains(&format!("{id}.yaml")),
            "{sub} → {id} acknowledged but not committed"
        );
        assert_eq!(
            counts.get(sub),
            Some(&1),
            "{sub} committed {:?} times",
            counts.get(sub)
        );
    }
    assert!(counts.values().all(|n| *n == 1), "an event committed twice");
    assert_eq!(
        committed.len(),
        3 + counts.len(),
        "tenant files = example + committed events"
    );
    // The work tree holds exactly what is committed, and it is a valid registry.
    for (name, bytes) in f.repo().read_committed("registry/tenants").unwrap() {
        let disk = std::fs::read(f.registry.join("tenants").join(&name)).unwrap();
        assert_eq!(disk, bytes, "{name} differs from the commit");
    }
    provisio::io::registry_dir::load_dir(&f.registry)
        .unwrap()
        .into_result()
        .unwrap();

    // The billing system redelivers everything it sent: all accepted, nothing twice.
    for sub in &sent {
        let c: usize = sub
            .trim_start_matches("sub_crash_")
            .split('_')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let i: usize = sub.rsplit('_').next().unwrap().parse().unwrap();
        let a = post(
            addr,
            "subscription-created",
            &created(sub, &format!("Crash Shop {c} {i}")),
        );
        let expected = if counts.contains_key(sub) { 200 } else { 201 };
        assert_eq!(a.status, expected, "{sub}: {}", a.body);
    }
    let counts = trailers(&f);
    assert_eq!(counts.len(), sent.len());
    assert!(counts.values().all(|n| *n == 1));
    drop(server);
}
