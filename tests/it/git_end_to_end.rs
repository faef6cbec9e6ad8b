//! The whole loop against real git servers on 127.0.0.1, over https (git http-backend behind
//! lighttpd, TLS with the test CA given to provisio, basic auth) and over ssh (sshd, a deploy
//! key, known_hosts): a billing event to `serve` → a commit in the registry repository →
//! `watch`, following that repository, regenerates (at once on the registry's push webhook,
//! and by polling without it) → a commit in the manifests repository → a GitLab push event
//! at a stand-in for Argo CD that checks `X-Gitlab-Event` and `X-Gitlab-Token`. `serve`
//! killed with SIGKILL right after a 2xx: the event is in the registry repository. And the
//! registry is shared with people: their commits are built on, never overwritten, and a head
//! they broke is waited out.

use crate::git_support;

use std::time::Duration;

use git_support::*;

const NOW: &str = "2025-02-01T00:00:00Z";
const ARGOCD_SECRET: &str = "argocd-gitlab-secret";
const HOOK_SECRET: &str = "registry-hook-secret";
const WAIT: Duration = Duration::from_secs(60);

struct Setup {
    server: GitServer,
    registry: std::path::PathBuf,
    manifests: std::path::PathBuf,
    argocd: ArgoCd,
    work: tempfile::TempDir,
}

fn setup(kind: Kind) -> Option<Setup> {
    let server = GitServer::start(kind)?;
    let registry = server.create_with(
        "registry",
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("registry"),
    );
    let manifests = server.create("manifests");
    let work = tempfile::tempdir().unwrap();
    for (name, value) in [("argocd", ARGOCD_SECRET), ("hook", HOOK_SECRET)] {
        std::fs::write(work.path().join(name), format!("{value}\n")).unwrap();
    }
    Some(Setup {
        server,
        registry,
        manifests,
        argocd: ArgoCd::start(ARGOCD_SECRET),
        work,
    })
}

impl Setup {
    fn path(&self, name: &str) -> String {
        self.work.path().join(name).display().to_string()
    }

    fn serve(&self, name: &str) -> Process {
        let addr = free_addr();
        let mut args: Vec<String> = [
            "serve",
            "--registry",
            &self.path(name),
            "--registry-git",
            &self.server.url("registry"),
            "--branch",
            "main",
            "--listen",
            &addr.to_string(),
        ]
        .map(String::from)
        .into();
        args.extend(self.server.flags());
        let mut p = Process::spawn(
            &args,
            &[("PROVISIO_WEBHOOK_SECRET", BILLING_SECRET)],
            &self.work.path().join(format!("{name}.log")),
            addr,
        );
        p.wait_ready("/readyz", WAIT);
        p
    }

    fn watch(&self, name: &str, poll_secs: u64) -> Process {
        let addr = free_addr();
        let mut args: Vec<String> = [
            "watch",
            "--registry",
            &self.path(&format!("{name}-registry")),
            "--registry-git",
            &self.server.url("registry"),
            "--branch",
            "main",
            "--poll-interval-secs",
            &poll_secs.to_string(),
            "--out",
            &self.path(&format!("{name}-out")),
            "--manifests-url",
            &self.server.url("manifests"),
            "--out-branch",
            "main",
            "--now",
            NOW,
            "--push-backoff-ms",
            "20",
            "--retry-interval-secs",
            "1",
            "--metrics-addr",
            &addr.to_string(),
            "--argocd-webhook",
            &self.argocd.url,
            "--argocd-repo-url",
            "https://gitlab.example.com/platform/manifests.git",
            "--argocd-webhook-format",
            "gitlab",
            "--argocd-webhook-secret-file",
            &self.path("argocd"),
            "--registry-webhook-secret-file",
            &self.path("hook"),
        ]
        .map(String::from)
        .into();
        args.extend(self.server.flags());
        let mut p = Process::spawn(
            &args,
            &[],
            &self.work.path().join(format!("{name}.log")),
            addr,
        );
        p.wait_ready("/readyz", WAIT);
        p
    }
}

/// Tells watch about a push to the registry's `main`, as GitLab would.
fn registry_webhook(watch: &Process) -> u16 {
    let body = serde_json::json!({"object_kind": "push", "ref": "refs/heads/main"}).to_string();
    http(
        watch.addr,
        "POST",
        "/api/v1/webhooks/registry",
        &[
            ("x-gitlab-event", "Push Hook"),
            ("x-gitlab-token", HOOK_SECRET),
            ("content-type", "application/json"),
        ],
        body.as_bytes(),
    )
    .expect("watch answers")
    .0
}

fn end_to_end(kind: Kind) {
    let Some(s) = setup(kind) else { return };
    // watch: polling once an hour, so only the webhook can bring the first change quickly.
    let mut watch = s.watch("watch", 3600);
    let logs = || format!("{}\n---\n", watch_log(&s));
    assert!(
        has_path(
            &s.manifests,
            "tenants-out/abc-corporation-7f3a9c/kustomization.yaml"
        ),
        "the start-up cycle delivered nothing:\n{}",
        logs()
    );
    let start_nudges = s.argocd.accepted().len();
    assert_eq!(start_nudges, 1, "the start-up push nudged Argo CD once");

    // 1. A billing event → serve → the registry repository, before the answer.
    let mut serve = s.serve("serve");
    let (status, tenant) = post_created(serve.addr, "sub_e2e_1", "Nordwind Logistik");
    assert_eq!(status, 201, "{tenant}");
    let id = tenant["tenant_id"].as_str().unwrap().to_owned();
    let file = format!("tenants/{id}.yaml");
    let committed = file_at_main(&s.registry, &file).expect("the tenant is in the remote at 2xx");
    assert!(String::from_utf8(committed).unwrap().contains("sub_e2e_1"));

    // 2. The registry webhook → watch fetches at once → the manifests repository. A
    // delivery with a wrong token is refused first.
    let forged = http(
        watch.addr,
        "POST",
        "/api/v1/webhooks/registry",
        &[
            ("x-gitlab-event", "Push Hook"),
            ("x-gitlab-token", "guessed"),
        ],
        br#"{"ref":"refs/heads/main"}"#,
    )
    .unwrap();
    assert_eq!(forged.0, 401, "{}", forged.1);
    assert_eq!(registry_webhook(&watch), 202);
    let tree = format!("tenants-out/{id}/kustomization.yaml");
    wait_until("the tenant in the manifests repository", WAIT, logs, || {
        has_path(&s.manifests, &tree)
    });
    let head = main_of(&s.manifests).unwrap().to_string();
    let msg = messages(&s.manifests).remove(0);
    assert!(msg.contains(&format!("Added: {id}")), "{msg}");
    assert!(msg.contains("announced by the registry webhook"), "{msg}");

    // 3. Argo CD got a GitLab push event for that commit, with the token.
    wait_until("the nudge", WAIT, logs, || {
        s.argocd.accepted().len() > start_nudges
    });
    let nudge = s.argocd.accepted().pop().unwrap();
    assert_eq!(nudge.header("x-gitlab-event"), Some("push hook"));
    let v: serde_json::Value = serde_json::from_slice(&nudge.body).unwrap();
    assert_eq!(v["object_kind"], "push");
    assert_eq!(v["ref"], "refs/heads/main");
    assert_eq!(v["after"], head);
    assert_eq!(
        v["project"]["web_url"],
        "https://gitlab.example.com/platform/manifests"
    );
    assert_eq!(v["project"]["default_branch"], "main");
    let added: Vec<String> = serde_json::from_value(v["commits"][0]["added"].clone()).unwrap();
    assert!(added.contains(&tree), "{added:?}");

    // 4. SIGKILL right after a 2xx: the event is in the registry repository all the same.
    let (status, tenant) = post_created(serve.addr, "sub_e2e_2", "Café Crème & Fils");
    serve.kill();
    assert_eq!(status, 201, "{tenant}");
    let id2 = tenant["tenant_id"].as_str().unwrap().to_owned();
    assert!(file_at_main(&s.registry, &format!("tenants/{id2}.yaml")).is_some());
    assert_eq!(trailers(&s.registry).get("sub_e2e_2"), Some(&1));

    // 5. Polling without the webhook: a watch polling every second picks up an event served
    // by a new serve (its clone survived the kill; it starts on the remote head).
    assert_eq!(watch.terminate(WAIT), Some(0));
    let mut watch = s.watch("watch", 1);
    // The start-up cycle delivered the killed serve's event.
    assert!(has_path(
        &s.manifests,
        &format!("tenants-out/{id2}/kustomization.yaml")
    ));
    let mut serve = s.serve("serve");
    let (status, tenant) = post_created(serve.addr, "sub_e2e_3", "Polling Shop");
    assert_eq!(status, 201, "{tenant}");
    let id3 = tenant["tenant_id"].as_str().unwrap().to_owned();
    let tree3 = format!("tenants-out/{id3}/kustomization.yaml");
    wait_until(
        "the polled change in the manifests",
        WAIT,
        || watch.log(),
        || has_path(&s.manifests, &tree3),
    );
    // Redelivering the first event: answered from the registry, nothing new committed.
    let before = main_of(&s.registry);
    let (status, _) = post_created(serve.addr, "sub_e2e_1", "Nordwind Logistik");
    assert_eq!(status, 200);
    assert_eq!(main_of(&s.registry), before);

    // Metrics of both sides: pushes succeeded, nothing unpushed, the registry valid.
    let (_, m) = http_get(watch.addr, "/metrics").unwrap();
    for line in [
        "provisio_git_pushes_total{repository=\"manifests\",outcome=\"ok\"}",
        "provisio_git_unpushed_commits{repository=\"manifests\"} 0",
        "provisio_git_last_fetch_success_timestamp_seconds{repository=\"registry\"}",
        "provisio_registry_valid 1",
        "provisio_registry_invalid_since_timestamp_seconds 0",
        // The example's one, and the three events'.
        "provisio_registry_tenants{status=\"provisioning\"} 4",
        "provisio_tenant_deletion_timestamp_seconds{tenant=\"nordwind-logistik-7ace77\"}",
        "provisio_build_info{version=",
    ] {
        assert!(m.contains(line), "{line} missing from\n{m}");
    }
    let (_, m) = http_get(serve.addr, "/metrics").unwrap();
    for line in [
        "provisio_git_pushes_total{repository=\"registry\",outcome=\"ok\"} 1",
        "provisio_git_unpushed_commits{repository=\"registry\"} 0",
        "provisio_intake_events_total{event=\"created\",outcome=\"created\",status=\"201\"} 1",
    ] {
        assert!(m.contains(line), "{line} missing from\n{m}");
    }
    serve.kill();
    assert_eq!(watch.terminate(WAIT), Some(0));

    // Nothing in any log holds the password.
    if let Some(pw) = s.server.password() {
        for name in ["serve.log", "watch.log"] {
            let log = std::fs::read_to_string(s.work.path().join(name)).unwrap();
            assert!(!log.contains(pw), "{name} holds the password");
        }
    }
}

fn watch_log(s: &Setup) -> String {
    std::fs::read_to_string(s.work.path().join("watch.log")).unwrap_or_default()
}

#[test]
fn end_to_end_over_https() {
    end_to_end(Kind::Https);
}

#[test]
fn end_to_end_over_ssh() {
    end_to_end(Kind::Ssh);
}

/// A person commits to the registry's `main` (through the remote's directory, while serve is
/// idle) and pushes; returns the commit.
fn person_commits(
    bare: &std::path::Path,
    path: &str,
    edit: impl FnOnce(&str) -> String,
) -> git2::Oid {
    let dir = tempfile::tempdir().unwrap();
    let repo = git2::build::RepoBuilder::new()
        .branch("main")
        .clone(bare.to_str().unwrap(), dir.path())
        .unwrap();
    let file = dir.path().join(path);
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, edit(&text)).unwrap();
    let mut index = repo.index().unwrap();
    index.add_path(std::path::Path::new(path)).unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = git2::Signature::now("A Person", "person@example.com").unwrap();
    let parent = repo.head().unwrap().peel_to_commit().unwrap();
    let id = repo
        .commit(Some("HEAD"), &sig, &sig, "by hand", &tree, &[&parent])
        .unwrap();
    repo.find_remote("origin")
        .unwrap()
        .push(&["refs/heads/main:refs/heads/main"], None)
        .unwrap();
    id
}

/// The shared registry is also edited by people: serve builds on their commits (a rejected
/// push is redone on top), refuses events while the registry's head does not validate, and
/// fetches until someone fixes it.
#[test]
fn a_persons_commits_to_the_registry_are_built_on_and_a_broken_head_is_waited_out() {
    let Some(s) = setup(Kind::Ssh) else { return };
    let mut serve = s.serve("serve");
    let cafe = "tenants/cafe-creme-93b31b.yaml";

    // A person's commit the clone has not seen: the event's push is rejected, redone on top.
    let by_hand = person_commits(&s.registry, cafe, |t| {
        t.replace("tier: standard", "tier: business")
    });
    let (status, tenant) = post_created(serve.addr, "sub_person_1", "Atelier Nord");
    assert_eq!(status, 201, "{tenant}");
    let id = tenant["tenant_id"].as_str().unwrap();
    let cafe_now = String::from_utf8(file_at_main(&s.registry, cafe).unwrap()).unwrap();
    assert!(
        cafe_now.contains("tier: business"),
        "the person's edit was overwritten:\n{cafe_now}"
    );
    assert!(file_at_main(&s.registry, &format!("tenants/{id}.yaml")).is_some());
    let r = git2::Repository::open_bare(&s.registry).unwrap();
    let head = main_of(&s.registry).unwrap();
    assert!(r.graph_descendant_of(head, by_hand).unwrap());
    assert!(
        serve
            .log()
            .contains("applying the events again on top of its head"),
        "{}",
        serve.log()
    );

    // A person pushes a registry that does not validate: events are refused, naming it.
    person_commits(&s.registry, cafe, |t| {
        t.replace("tier: business", "tier: premiun")
    });
    let before = main_of(&s.registry);
    let (status, body) = post_created(serve.addr, "sub_person_2", "Atelier Sud");
    assert_eq!(status, 503, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("does not validate") && message.contains(cafe),
        "{message}"
    );
    assert_eq!(main_of(&s.registry), before, "nothing was pushed");

    // Fixed in the remote: serve fetches it and takes the event.
    person_commits(&s.registry, cafe, |t| {
        t.replace("tier: premiun", "tier: premium")
    });
    let (status, body) = post_created(serve.addr, "sub_person_2", "Atelier Sud");
    assert_eq!(status, 201, "{body}");
    assert_eq!(trailers(&s.registry).get("sub_person_2"), Some(&1));
    serve.kill();
}

/// An RSA deploy key in PEM format works too (libssh2 1.11, bundled, signs with rsa-sha2;
/// OpenSSH 8.8+ refuses the SHA-1 `ssh-rsa` signatures older libssh2 sent).
#[test]
fn an_rsa_deploy_key_in_pem_format_pushes_over_ssh() {
    let Some(server) = GitServer::start(Kind::Ssh) else {
        return;
    };
    let manifests = server.create("manifests");
    let out = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_provisio"))
        .args(["generate", "--registry"])
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("registry"))
        .arg("--out")
        .arg(out.path())
        .args(["--commit", "--push", "--now", NOW, "--manifests-url"])
        .arg(server.url("manifests"))
        .args(["--ssh-key-file", server.var("GIT_SSH_KEY_RSA")])
        .args(["--ssh-known-hosts-file", server.var("GIT_SSH_KNOWN_HOSTS")])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert!(has_path(
        &manifests,
        "tenants-out/abc-corporation-7f3a9c/kustomization.yaml"
    ));
}
