//! `provisio watch`, the real binary against a registry directory and a bare "manifests"
//! repository (file:// URL): a broken registry file changes nothing and is picked up once
//! fixed; mass deletions are refused with the count and the ids; a burst of writes is one
//! commit; SIGTERM/SIGINT exit 0, a second signal while stopping 1; `/metrics`; the Argo CD nudge; `--registry-git` polling;
//! platform-tools changes delivered like tenant changes, and their mass removal refused; a
//! deletion date passing with no registry change delivers the tenant's due tree.

use crate::common;
use crate::watch_support;

use std::io::{Read, Write};
use std::time::Duration;

use common::Workspace;
use watch_support::*;

const T: Duration = Duration::from_secs(20);

/// Starts watch on a workspace and waits for its first commit in the remote.
fn start(ws: &Workspace, extra: &[&str]) -> (Watch, std::path::PathBuf, git2::Oid) {
    let (bare, url) = bare(ws.dir.path());
    let w = Watch::spawn(
        &ws.registry(),
        &ws.out(),
        &url,
        extra,
        &ws.dir.path().join("watch.log"),
    );
    wait_for("the first commit in the remote", T, || {
        head_of(&bare, "main").is_some()
    });
    let first = head_of(&bare, "main").unwrap();
    (w, bare, first)
}

fn stop(mut w: Watch) -> String {
    w.signal(libc::SIGTERM);
    let code = w.wait(T);
    let log = w.log();
    assert_eq!(code, Some(0), "{log}");
    log
}

#[test]
fn a_broken_registry_file_changes_nothing_and_is_picked_up_once_fixed() {
    let ws = Workspace::new();
    let (w, bare, first) = start(&ws, &[]);
    assert_eq!(tree_files(&bare, first), expected(&ws.registry()));
    let abc = "tenants/abc-corporation-7f3a9c.yaml";
    let good = std::fs::read_to_string(ws.registry().join(abc)).unwrap();

    // A YAML syntax error, then a validation error: each logged with file, line and
    // column; nothing written, nothing committed, the tenant not treated as deleted.
    ws.write(abc, &good.replace("tier: premium", "tier: [premium"));
    wait_for("the parse error in the log", T, || {
        w.log().contains("tenants/abc-corporation-7f3a9c.yaml:")
    });
    ws.write(abc, &good.replace("tier: premium", "tier: premiun"));
    wait_for("the validation error in the log", T, || {
        w.log().contains("unknown tier `premiun`")
    });
    let log = w.log();
    assert!(
        log.contains("--> tenants/abc-corporation-7f3a9c.yaml:4:7"),
        "{log}"
    );
    assert!(log.contains("did you mean `premium`?"), "{log}");
    assert!(
        log.contains("keeping the last good output and committing nothing"),
        "{log}"
    );
    assert_eq!(head_of(&bare, "main"), Some(first));
    assert!(
        ws.out()
            .join("tenants-out/abc-corporation-7f3a9c/kustomization.yaml")
            .exists()
    );
    assert_eq!(
        output_only(tree_files(&bare, first)),
        expected(&common::repo_root().join("registry"))
    );

    // Fixed (to a real change): one commit updating that tenant.
    ws.write(abc, &good.replace("tier: premium", "tier: business"));
    wait_for("the commit of the fixed file", T, || {
        head_of(&bare, "main") != Some(first)
    });
    let head = head_of(&bare, "main").unwrap();
    assert_eq!(parents(&bare, head), vec![first]);
    let m = message(&bare, head);
    assert!(m.starts_with("provisio: update 1 tenant\n"), "{m}");
    assert!(m.contains("Updated: abc-corporation-7f3a9c\n"), "{m}");
    assert!(
        m.contains("Why: registry changed: tenants/abc-corporation-7f3a9c.yaml"),
        "{m}"
    );
    assert_eq!(tree_files(&bare, head), expected(&ws.registry()));
    stop(w);
    fsck(&bare);
    // Commits edit HEAD's tree without the index; on exit the index is brought in step.
    let clone = git2::Repository::open(ws.out()).unwrap();
    let dirty: Vec<String> = clone
        .statuses(None)
        .unwrap()
        .iter()
        .filter_map(|s| s.path().ok().map(str::to_owned))
        .collect();
    assert!(dirty.is_empty(), "git status not clean: {dirty:?}");
}

#[test]
fn removing_too_many_tenants_is_refused_with_the_count_and_the_ids() {
    let ws = Workspace::new();
    let (w, bare, first) = start(&ws, &[]);
    ws.remove("tenants/cafe-creme-93b31b.yaml");
    ws.remove("tenants/nordwind-logistik-7ace77.yaml");
    wait_for("the refusal in the log", T, || {
        w.log().contains("refusing to remove")
    });
    let log = w.log();
    assert!(
        log.contains("refusing to remove 2 of 3 tenants at once (more than 10%): cafe-creme-93b31b, nordwind-logistik-7ace77"),
        "{log}"
    );
    assert_eq!(head_of(&bare, "main"), Some(first));
    assert!(ws.out().join("tenants-out/cafe-creme-93b31b").is_dir());
    stop(w);

    // The same change with --allow-mass-delete goes through.
    let log_path = ws.dir.path().join("watch2.log");
    let url = format!("file://{}", bare.display());
    let w = Watch::spawn(
        &ws.registry(),
        &ws.out(),
        &url,
        &["--allow-mass-delete"],
        &log_path,
    );
    wait_for("the removal commit", T, || {
        head_of(&bare, "main") != Some(first)
    });
    let m = message(&bare, head_of(&bare, "main").unwrap());
    assert!(m.starts_with("provisio: remove 2 tenants\n"), "{m}");
    assert!(
        m.contains("Removed: cafe-creme-93b31b, nordwind-logistik-7ace77\n"),
        "{m}"
    );
    stop(w);
}

#[test]
fn a_burst_of_writes_is_one_regeneration_and_one_commit() {
    let ws = Workspace::new();
    let (w, bare, first) = start(&ws, &["--debounce-ms", "300"]);
    let mut ids = Vec::new();
    for n in 0..40 {
        let (id, rel, text) = new_tenant(n);
        ws.write(&rel, &text);
        ids.push(id);
    }
    wait_for("the commit of the burst", T, || {
        head_of(&bare, "main") != Some(first)
    });
    let head = head_of(&bare, "main").unwrap();
    // Give a second regeneration (there should be none) the time to show up.
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(head_of(&bare, "main"), Some(head), "more than one commit");
    assert_eq!(parents(&bare, head), vec![first]);
    let m = message(&bare, head);
    assert!(m.starts_with("provisio: add 40 tenants\n"), "{m}");
    assert!(m.contains("… and 15 more"), "{m}");
    assert_eq!(tree_files(&bare, head), expected(&ws.registry()));
    let log = stop(w);
    assert_eq!(log.matches("regenerated").count(), 2, "{log}");
}

#[test]
fn sigterm_and_sigint_exit_zero_after_the_current_cycle() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let ws = Workspace::new();
        let (mut w, bare, first) = start(&ws, &[]);
        // A signal while idle.
        w.signal(sig);
        assert_eq!(w.wait(T), Some(0), "{}", w.log());
        assert!(w.log().contains("watch: stopped"));
        assert_eq!(head_of(&bare, "main"), Some(first));

        // A signal right after a change, while the cycle may be running: it exits 0, and
        // the repository is whole (the change is committed, or picked up at the next start).
        let url = format!("file://{}", bare.display());
        let mut w = Watch::spawn(
            &ws.registry(),
            &ws.out(),
            &url,
            &[],
            &ws.dir.path().join("again.log"),
        );
        wait_for("watching", T, || w.log().contains("watching"));
        let (_, rel, text) = new_tenant(5);
        ws.write(&rel, &text);
        std::thread::sleep(Duration::from_millis(60));
        w.signal(sig);
        assert_eq!(w.wait(T), Some(0), "{}", w.log());
        fsck(&ws.out());
        fsck(&bare);
        let w = Watch::spawn(
            &ws.registry(),
            &ws.out(),
            &url,
            &[],
            &ws.dir.path().join("third.log"),
        );
        wait_for("convergence", T, || {
            head_of(&bare, "main").is_some_and(|h| tree_files(&bare, h) == expected(&ws.registry()))
        });
        stop(w);
    }
}

#[test]
fn a_second_signal_while_stopping_exits_at_once_with_code_1() {
    // An Argo CD webhook that accepts the nudge and never answers keeps the first cycle
    // busy (for the nudge's 10 s timeout) after the push.
    let ws = Workspace::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook = format!("http://{}/api/webhook", listener.local_addr().unwrap());
    let (accepted, nudging) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        accepted.send(()).unwrap();
        std::thread::sleep(Duration::from_secs(30));
        drop(stream);
    });
    let (mut w, _bare, _) = start(
        &ws,
        &[
            "--argocd-webhook",
            &hook,
            "--argocd-repo-url",
            "https://git.example.com/m",
        ],
    );
    nudging.recv_timeout(T).expect("the nudge");
    let stopping = std::time::Instant::now();
    w.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(w.child.try_wait().unwrap(), None, "{}", w.log());
    w.signal(libc::SIGINT);
    assert_eq!(w.wait(T), Some(1), "{}", w.log());
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "waited for the nudge"
    );
    assert!(
        w.log().contains("while stopping: exiting at once"),
        "{}",
        w.log()
    );
}

fn http_get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn metrics_are_served_in_the_prometheus_text_format() {
    let ws = Workspace::new();
    let (w, bare, first) = start(&ws, &["--metrics-addr", "127.0.0.1:0"]);
    let log = w.log();
    let addr = log
        .lines()
        .find_map(|l| l.strip_prefix("watch: metrics at http://"))
        .and_then(|l| l.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("no metrics address in\n{log}"))
        .to_owned();
    // A broken file, then a fix: one invalid regeneration, two good ones, two commits.
    let abc = "tenants/abc-corporation-7f3a9c.yaml";
    let good = std::fs::read_to_string(ws.registry().join(abc)).unwrap();
    ws.write(abc, &good.replace("tier: premium", "tier: premiun"));
    wait_for("the invalid regeneration", T, || {
        http_get(&addr, "/metrics").contains("provisio_regenerations_total{outcome=\"invalid\"} 1")
    });
    // Invalid since a moment ago (a directory registry: when watch saw it), and the change
    // waits to be delivered.
    let gauge = |text: &str, name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
            .parse()
            .unwrap()
    };
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let text = http_get(&addr, "/metrics");
    assert_eq!(gauge(&text, "provisio_registry_valid"), 0.0, "{text}");
    for name in [
        "provisio_registry_invalid_since_timestamp_seconds",
        "provisio_watch_pending_since_timestamp_seconds",
    ] {
        let t = gauge(&text, name);
        assert!(t > 0.0 && (now() - t).abs() < 60.0, "{name} = {t}");
    }
    // Alive and ready while the registry is invalid (the probes are about the loop).
    assert!(http_get(&addr, "/healthz").starts_with("HTTP/1.1 200"));
    assert!(http_get(&addr, "/readyz").starts_with("HTTP/1.1 200"));
    ws.write(abc, &good.replace("tier: premium", "tier: business"));
    wait_for("the second commit", T, || {
        head_of(&bare, "main") != Some(first)
    });
    // The counters are updated right after the push: wait for the cycle's end.
    wait_for("the second cycle in the metrics", T, || {
        http_get(&addr, "/metrics").contains("provisio_regeneration_duration_seconds_count 2")
    });
    let text = http_get(&addr, "/metrics");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("application/openmetrics-text"), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
    for needle in [
        "provisio_regenerations_total{outcome=\"ok\"} 2",
        "provisio_regenerations_total{outcome=\"invalid\"} 1",
        "provisio_failures_total{stage=\"registry\"} 1",
        "provisio_commits_total 2",
        "provisio_push_retries_total 0",
        "provisio_tenants{status=\"changed\"} 1",
        "provisio_tenants{status=\"unchanged\"} 2",
        "provisio_regeneration_duration_seconds_count 2",
        "provisio_registry_valid 1",
        "provisio_registry_invalid_since_timestamp_seconds 0",
        "provisio_watch_pending_since_timestamp_seconds 0",
        "provisio_git_pushes_total{repository=\"manifests\",outcome=\"ok\"} 2",
        "provisio_git_unpushed_commits{repository=\"manifests\"} 0",
        // The example: one tenant in each status; the two that are not active have series.
        "provisio_registry_tenants{status=\"active\"} 1",
        "provisio_tenant_status_since_timestamp_seconds{tenant=\"cafe-creme-93b31b\",status=\"provisioning\"}",
        "provisio_tenant_status_since_timestamp_seconds{tenant=\"nordwind-logistik-7ace77\",status=\"deprovisioning\"}",
        "provisio_tenant_deletion_timestamp_seconds{tenant=\"nordwind-logistik-7ace77\"}",
    ] {
        assert!(text.contains(needle), "{needle} missing:\n{text}");
    }
    assert!(
        !text.contains("tenant=\"abc-corporation-7f3a9c\""),
        "an active tenant has per-tenant series:\n{text}"
    );
    let last: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("provisio_last_success_timestamp_seconds "))
        .unwrap()
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - last).abs() < 60.0, "{last} vs {now}");
    // Without --registry-webhook-secret-file there is no registry webhook.
    assert!(
        http_get(&addr, "/api/v1/webhooks/registry").starts_with("HTTP/1.1 404"),
        "the registry webhook needs its secret"
    );
    assert!(http_get(&addr, "/nope").starts_with("HTTP/1.1 404"));
    stop(w);
}

#[test]
fn watch_nudges_argo_cd_after_each_push() {
    let ws = Workspace::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook = format!("http://{}/api/webhook", listener.local_addr().unwrap());
    let secret = ws.dir.path().join("secret");
    std::fs::write(&secret, "hook-secret\n").unwrap();
    let received = std::thread::spawn(move || {
        // The first push (the initial commit) and the second (a new tenant).
        let mut bodies = Vec::new();
        for _ in 0..2 {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 65536];
            loop {
                let n = s.read(&mut chunk).unwrap();
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf);
                if let Some(end) = text.find("\r\n\r\n") {
                    let len: usize = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap();
                    if buf.len() >= end + 4 + len {
                        break;
                    }
                }
                assert!(n > 0, "connection closed early");
            }
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .unwrap();
            bodies.push(String::from_utf8(buf).unwrap());
        }
        bodies
    });
    let secret_arg = secret.to_string_lossy().into_owned();
    let (w, bare, _) = start(
        &ws,
        &[
            "--argocd-webhook",
            &hook,
            "--argocd-webhook-secret-file",
            &secret_arg,
        ],
    );
    let (id, rel, text) = new_tenant(11);
    ws.write(&rel, &text);
    let bodies = received.join().unwrap();
    let head = head_of(&bare, "main").unwrap();
    let second = &bodies[1];
    let (h, body) = second.split_once("\r\n\r\n").unwrap();
    let h = h.to_ascii_lowercase();
    assert!(h.contains("x-github-event: push"), "{h}");
    let sig = provisio::io::nudge::signature(b"hook-secret", body.as_bytes());
    assert!(h.contains(&format!("x-hub-signature-256: {sig}")), "{h}");
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["after"], head.to_string());
    assert!(body.contains(&format!("tenants-out/{id}/")), "{body}");
    stop(w);
}

#[test]
fn registry_git_polls_a_registry_repository_and_names_its_commit() {
    let ws = Workspace::new();
    // The registry as a repository of its own, pushed to a bare "registry" remote.
    let reg_bare = ws.dir.path().join("registry.git");
    git2::Repository::init_bare(&reg_bare).unwrap();
    let author = tempfile::tempdir().unwrap();
    let repo = git2::Repository::init(author.path()).unwrap();
    common::copy_dir(&ws.registry(), author.path());
    let commit_all = |msg: &str| {
        let mut index = repo.index().unwrap();
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .unwrap();
        index.write().unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("author", "author@example.com").unwrap();
        let parents: Vec<git2::Commit> = repo
            .head()
            .ok()
            .map(|h| h.peel_to_commit().unwrap())
            .into_iter()
            .collect();
        let parents: Vec<&git2::Commit> = parents.iter().collect();
        let id = repo
            .commit(Some("HEAD"), &sig, &sig, msg, &tree, &parents)
            .unwrap();
        let mut remote = repo
            .remote_anonymous(&format!("file://{}", reg_bare.display()))
            .unwrap();
        remote
            .push(&[format!("{}:refs/heads/main", id)], None)
            .unwrap();
        id
    };
    let r1 = commit_all("initial registry");

    let clone = ws.dir.path().join("registry-clone");
    let (bare, url) = bare(ws.dir.path());
    let reg_url = format!("file://{}", reg_bare.display());
    let w = Watch::spawn(
        &clone,
        &ws.out(),
        &url,
        &[
            "--registry-git",
            &reg_url,
            "--branch",
            "main",
            "--poll-interval-secs",
            "1",
        ],
        &ws.dir.path().join("watch.log"),
    );
    wait_for("the first commit", T, || head_of(&bare, "main").is_some());
    let first = head_of(&bare, "main").unwrap();
    assert!(message(&bare, first).contains(&format!("Registry-Commit: {r1}")));

    let (id, rel, text) = new_tenant(21);
    std::fs::write(author.path().join(&rel), text).unwrap();
    let r2 = commit_all("add a tenant");
    wait_for("the commit of the new registry commit", T, || {
        head_of(&bare, "main") != Some(first)
    });
    let head = head_of(&bare, "main").unwrap();
    let m = message(&bare, head);
    assert!(m.contains(&format!("Added: {id}")), "{m}");
    assert!(
        m.contains(&format!(
            "Why: registry commit {} (add a tenant)",
            &r2.to_string()[..12]
        )),
        "{m}"
    );
    assert!(m.contains(&format!("Registry-Commit: {r2}")), "{m}");
    assert_eq!(tree_files(&bare, head), expected(&clone));
    stop(w);
}

/// A platform-tools change (a team's Okta level, in `teams/`) is delivered like a tenant
/// change: one commit naming it, with the replaced SAML link; removing two products' tools at
/// once is refused like mass tenant removal.
#[test]
fn platform_tools_changes_are_delivered_and_mass_removal_refused() {
    let ws = Workspace::new();
    let (w, bare, first) = start(&ws, &[]);
    let team = std::fs::read_to_string(ws.registry().join("teams/commerce.yaml")).unwrap();
    ws.write(
        "teams/commerce.yaml",
        &team.replace("gitlab: reporter", "gitlab: developer"),
    );
    wait_for("the platform commit", T, || {
        head_of(&bare, "main") != Some(first)
    });
    let head = head_of(&bare, "main").unwrap();
    let m = message(&bare, head);
    assert!(
        m.starts_with("provisio: platform tools: update team commerce\n"),
        "{m}"
    );
    let files = tree_files(&bare, head);
    let gitlab =
        String::from_utf8(files["platform-out/tools/teams/commerce/gitlab.yaml"].clone()).unwrap();
    assert!(
        gitlab.contains("name: team--commerce--okta-commerce--developer"),
        "{gitlab}"
    );

    for p in ["orders", "baskets"] {
        let rel = format!("products/{p}.yaml");
        let text = std::fs::read_to_string(ws.registry().join(&rel)).unwrap();
        let cut = text.find("\ntools:\n").unwrap();
        ws.write(&rel, &text[..=cut]);
    }
    wait_for("the refusal in the log", T, || {
        w.log().contains("refusing to remove the platform tools")
    });
    assert!(
        w.log().contains("refusing to remove the platform tools of 2 products at once (more than platformTools.maxProductRemovals = 1): baskets, orders"),
        "{}",
        w.log()
    );
    assert_eq!(head_of(&bare, "main"), Some(head));
    assert!(ws.out().join("platform-out/tools/products/orders").is_dir());
    stop(w);
}

#[test]
fn a_deletion_date_passing_delivers_the_due_tree_without_a_registry_change() {
    let ws = Workspace::new();
    let nord = "tenants/nordwind-logistik-7ace77.yaml";
    let deletion = (chrono::Utc::now() + chrono::Duration::seconds(4))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let text = std::fs::read_to_string(ws.registry().join(nord))
        .unwrap()
        .replace(
            "deletion: 2025-07-15T00:00:00Z",
            &format!("deletion: {deletion}"),
        );
    assert!(text.contains(&deletion));
    ws.write(nord, &text);
    let (bare, url) = bare(ws.dir.path());
    let w = Watch::spawn_real_clock(
        &ws.registry(),
        &ws.out(),
        &url,
        &[],
        &ws.dir.path().join("watch.log"),
    );
    wait_for("the first commit in the remote", T, || {
        head_of(&bare, "main").is_some()
    });
    let first = head_of(&bare, "main").unwrap();
    let backup = "tenants-out/nordwind-logistik-7ace77/backup.yaml";
    assert!(
        !tree_files(&bare, first).contains_key(backup),
        "in its grace period before {deletion}"
    );
    wait_for("the due tree after the deletion date", T, || {
        head_of(&bare, "main")
            .is_some_and(|h| h != first && tree_files(&bare, h).contains_key(backup))
    });
    let head = head_of(&bare, "main").unwrap();
    assert_eq!(parents(&bare, head), vec![first]);
    let files = tree_files(&bare, head);
    let changed: Vec<&String> = files
        .keys()
        .filter(|k| tree_files(&bare, first).get(*k) != files.get(*k))
        .collect();
    assert!(
        changed
            .iter()
            .all(|k| k.starts_with("tenants-out/nordwind-logistik-7ace77/")
                || k.as_str() == ".provisio-state.json"),
        "only the due tenant changed: {changed:?}"
    );
    let log = stop(w);
    assert!(log.contains("a deletion date was reached"), "{log}");
}
