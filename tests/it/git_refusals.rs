//! What provisio refuses on real git servers (127.0.0.1, started by the harness), and how it
//! says so: a wrong password or an unauthorized key is "authentication failed", exit 3, in
//! seconds (libgit2 asks for credentials again after every refusal; provisio answers once),
//! never with the secret in the output; a server certificate from a CA provisio was not
//! given is refused; an unknown or changed ssh host key is refused before anything is sent;
//! a URL with a password is refused before it is used (exit 2). In each case the remote is
//! left untouched.

use crate::git_support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use git_support::*;

/// Runs the binary to completion (at most `limit`): exit code, stderr, how long it took.
fn run(args: &[String], limit: Duration) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_provisio"))
        .args(args)
        .env("PROVISIO_WEBHOOK_SECRET", BILLING_SECRET)
        .env_remove("PROVISIO_GIT_TOKEN")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after {limit:?} (a hang):\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        started.elapsed(),
    )
}

/// `serve` on the server's registry repository with `flags`, expected to refuse to start.
fn serve_args(server: &GitServer, dir: &Path, url: &str, flags: Vec<String>) -> Vec<String> {
    let mut a: Vec<String> = [
        "serve",
        "--registry",
        &dir.join("clone").display().to_string(),
        "--registry-git",
        url,
        "--branch",
        "main",
        "--listen",
        &free_addr().to_string(),
    ]
    .map(String::from)
    .into();
    a.extend(flags);
    let _ = server;
    a
}

/// `generate --commit --push` of the example to the server's manifests repository.
fn push_args(dir: &Path, url: &str, flags: Vec<String>) -> Vec<String> {
    let mut a: Vec<String> = [
        "generate",
        "--registry",
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("registry")
            .display()
            .to_string(),
        "--out",
        &dir.join("out").display().to_string(),
        "--commit",
        "--push",
        "--push-attempts",
        "3",
        "--push-backoff-ms",
        "10",
        "--manifests-url",
        url,
        "--now",
        "2025-02-01T00:00:00Z",
    ]
    .map(String::from)
    .into();
    a.extend(flags);
    a
}

fn seeded(server: &GitServer) -> (std::path::PathBuf, std::path::PathBuf) {
    let registry = server.create_with(
        "registry",
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("registry"),
    );
    let manifests = server.create("manifests");
    (registry, manifests)
}

#[test]
fn https_a_wrong_password_is_a_clear_error_and_exit_3_not_a_hang() {
    let Some(server) = GitServer::start(Kind::Https) else {
        return;
    };
    let (registry, manifests) = seeded(&server);
    let before = main_of(&registry);
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    let flags = vec![
        "--git-username".into(),
        server.var("GIT_HTTPS_USER").into(),
        "--git-token-file".into(),
        wrong.display().to_string(),
        "--git-ca-file".into(),
        server.var("GIT_HTTPS_CA").into(),
    ];
    let url = server.url("registry");
    let (code, err, took) = run(
        &serve_args(&server, dir.path(), &url, flags.clone()),
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains(&format!("authentication failed for {url}"))
            && err.contains(&format!("the token file {}", wrong.display())),
        "{err}"
    );
    assert!(!err.contains("not-the-password"), "{err}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert_eq!(main_of(&registry), before);

    // The same for a push, and the password never shows (the right one is in an
    // environment variable this time, the wrong user name makes it fail).
    let (code, err, _) = run(
        &push_args(
            dir.path(),
            &server.url("manifests"),
            vec![
                "--git-username".into(),
                "nobody".into(),
                "--git-token-file".into(),
                server.var("GIT_HTTPS_PASSWORD_FILE").into(),
                "--git-ca-file".into(),
                server.var("GIT_HTTPS_CA").into(),
            ],
        ),
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("authentication failed"), "{err}");
    assert!(!err.contains(server.var("GIT_HTTPS_PASSWORD")), "{err}");
    assert_eq!(main_of(&manifests), None, "nothing was pushed");
}

#[test]
fn https_a_certificate_from_a_ca_provisio_was_not_given_is_refused() {
    let Some(server) = GitServer::start(Kind::Https) else {
        return;
    };
    let (registry, _) = seeded(&server);
    let before = main_of(&registry);
    let dir = tempfile::tempdir().unwrap();
    // The machine's SSL_CERT_FILE (the system bundle) stays as it is: the test CA is not in it.
    let flags = vec![
        "--git-username".into(),
        server.var("GIT_HTTPS_USER").into(),
        "--git-token-file".into(),
        server.var("GIT_HTTPS_PASSWORD_FILE").into(),
    ];
    let (code, err, _) = run(
        &serve_args(&server, dir.path(), &server.url("registry"), flags),
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("cannot verify")
            && err.contains("certificate")
            && err.contains("--git-ca-file"),
        "{err}"
    );
    assert_eq!(main_of(&registry), before);
}

#[test]
fn ssh_an_unknown_or_changed_host_key_is_refused_before_anything_is_sent() {
    let Some(server) = GitServer::start(Kind::Ssh) else {
        return;
    };
    let (registry, manifests) = seeded(&server);
    let before = main_of(&registry);
    let dir = tempfile::tempdir().unwrap();
    let port = server.var("GIT_SSH_PORT").to_owned();
    // Other keys of every type for the server's address: a changed host key.
    let mut changed = String::new();
    for t in ["ed25519", "ecdsa", "rsa"] {
        let key = dir.path().join(format!("other_{t}"));
        let ok = Command::new("ssh-keygen")
            .args(["-q", "-t", t, "-N", "", "-f"])
            .arg(&key)
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        let public: Vec<&str> = public.split_whitespace().take(2).collect();
        changed.push_str(&format!("[127.0.0.1]:{port} {}\n", public.join(" ")));
    }
    let changed_file = dir.path().join("changed_known_hosts");
    std::fs::write(&changed_file, &changed).unwrap();
    // The server's real keys, but for another port: the host is unknown.
    let real = std::fs::read_to_string(server.var("GIT_SSH_KNOWN_HOSTS")).unwrap();
    let unknown_file = dir.path().join("unknown_known_hosts");
    std::fs::write(&unknown_file, real.replace(&format!("]:{port} "), "]:1 ")).unwrap();

    for (file, says) in [
        (&changed_file, "CHANGED"),
        (&unknown_file, "is not in the known_hosts file"),
    ] {
        let flags = vec![
            "--ssh-key-file".into(),
            server.var("GIT_SSH_KEY").into(),
            "--ssh-known-hosts-file".into(),
            file.display().to_string(),
        ];
        let (code, err, _) = run(
            &serve_args(&server, dir.path(), &server.url("registry"), flags.clone()),
            Duration::from_secs(60),
        );
        assert_eq!(code, Some(3), "{err}");
        assert!(
            err.contains("cannot verify") && err.contains(says) && err.contains("SHA256:"),
            "{err}"
        );
        let (code, err, _) = run(
            &push_args(dir.path(), &server.url("manifests"), flags),
            Duration::from_secs(60),
        );
        assert_eq!(code, Some(3), "{err}");
        assert!(err.contains(says), "{err}");
    }
    assert_eq!(main_of(&registry), before);
    assert_eq!(main_of(&manifests), None, "nothing was pushed");
    // sshd saw no authentication attempt: the host key was refused first.
    let log = std::fs::read_to_string(
        Path::new(server.var("GIT_SSH_REPOS"))
            .parent()
            .unwrap()
            .join("sshd.log"),
    )
    .unwrap_or_default();
    assert!(!log.contains("Accepted publickey"), "{log}");
}

#[test]
fn ssh_a_key_the_server_does_not_know_is_authentication_failed_not_a_hang() {
    let Some(server) = GitServer::start(Kind::Ssh) else {
        return;
    };
    let (registry, _) = seeded(&server);
    let dir = tempfile::tempdir().unwrap();
    let stranger = dir.path().join("stranger");
    assert!(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&stranger)
            .status()
            .unwrap()
            .success()
    );
    let flags = vec![
        "--ssh-key-file".into(),
        stranger.display().to_string(),
        "--ssh-known-hosts-file".into(),
        server.var("GIT_SSH_KNOWN_HOSTS").into(),
    ];
    let (code, err, took) = run(
        &serve_args(&server, dir.path(), &server.url("registry"), flags),
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("authentication failed") && err.contains(&stranger.display().to_string()),
        "{err}"
    );
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert!(main_of(&registry).is_some());
}

#[test]
fn a_url_with_a_password_is_refused_before_it_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let url = "https://bot:glpat-SECRET123@127.0.0.1:9/platform/registry.git";
    let (code, err, _) = run(
        &[
            "serve".into(),
            "--registry".into(),
            dir.path().join("clone").display().to_string(),
            "--registry-git".into(),
            url.into(),
            "--branch".into(),
            "main".into(),
        ],
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("a URL with a password is refused"), "{err}");
    assert!(!err.contains("SECRET123"), "{err}");
    assert!(!dir.path().join("clone").exists(), "nothing was created");
    let (code, err, _) = run(&push_args(dir.path(), url, vec![]), Duration::from_secs(30));
    assert_eq!(code, Some(2), "{err}");
    assert!(!err.contains("SECRET123"), "{err}");
}
