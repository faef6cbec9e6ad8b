//! Real git servers on 127.0.0.1 for the tests, started by the harness with the scripts of
//! `tests/tools/` (git's smart-HTTP backend behind lighttpd with TLS and basic auth; OpenSSH's
//! sshd with a forced git-only command) and stopped when dropped; the provisio flags that
//! reach them; bare repositories on their disk; a tiny HTTP listener standing in for Argo CD;
//! and the provisio binary as `serve` or `watch` against them.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Https,
    Ssh,
}

/// A running server; stopped (with every process it started) when dropped.
pub struct GitServer {
    pub kind: Kind,
    dir: tempfile::TempDir,
    /// The `KEY=VALUE` lines the script printed.
    pub env: BTreeMap<String, String>,
}

fn script(kind: Kind) -> PathBuf {
    let name = match kind {
        Kind::Https => "git-https-server.sh",
        Kind::Ssh => "git-ssh-server.sh",
    };
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/tools")
        .join(name)
}

/// Whether a missing server fails the test (CI) or skips it.
fn required() -> bool {
    std::env::var("PROVISIO_REQUIRE_TOOLS").is_ok_and(|v| v == "1")
}

impl GitServer {
    /// Starts the server; `None` (after saying so) when its tools are missing and that is
    /// allowed (not CI).
    pub fn start(kind: Kind) -> Option<GitServer> {
        let tools: &[&str] = match kind {
            Kind::Https => &["lighttpd", "htpasswd", "openssl"],
            Kind::Ssh => &["ssh-keygen", "git-shell"],
        };
        let sshd = Path::new("/usr/sbin/sshd").exists();
        let missing: Vec<&str> = tools
            .iter()
            .copied()
            .filter(|t| {
                !Command::new("sh")
                    .args(["-c", &format!("command -v {t}")])
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
            .chain((kind == Kind::Ssh && !sshd).then_some("sshd"))
            .collect();
        if !missing.is_empty() {
            let msg = format!(
                "{kind:?} git server: missing {missing:?} (Debian: lighttpd lighttpd-mod-openssl apache2-utils openssh-server)"
            );
            if required() {
                panic!("{msg}");
            }
            eprintln!("SKIPPED: {msg}");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("bash")
            .arg(script(kind))
            .arg("start")
            .arg(dir.path().join("server"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{kind:?} git server did not start:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let env = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Some(GitServer { kind, dir, env })
    }

    pub fn var(&self, key: &str) -> &str {
        self.env
            .get(key)
            .unwrap_or_else(|| panic!("{key} missing from {:?}", self.env))
    }

    /// A scratch directory next to the server's state.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    fn repos(&self) -> PathBuf {
        PathBuf::from(match self.kind {
            Kind::Https => self.var("GIT_HTTPS_REPOS"),
            Kind::Ssh => self.var("GIT_SSH_REPOS"),
        })
    }

    /// The bare repository `name` on the server's disk.
    pub fn bare(&self, name: &str) -> PathBuf {
        self.repos().join(format!("{name}.git"))
    }

    /// The URL of repository `name`.
    pub fn url(&self, name: &str) -> String {
        match self.kind {
            Kind::Https => format!("{}/{name}.git", self.var("GIT_HTTPS_URL")),
            Kind::Ssh => format!("{}/{name}.git", self.var("GIT_SSH_URL")),
        }
    }

    /// An empty bare repository `name` whose HEAD names `main`.
    pub fn create(&self, name: &str) -> PathBuf {
        let path = self.bare(name);
        let r = git2::Repository::init_bare(&path).unwrap();
        r.set_head("refs/heads/main").unwrap();
        path
    }

    /// A bare repository `name` whose `main` holds the files below `src` at its root.
    pub fn create_with(&self, name: &str, src: &Path) -> PathBuf {
        let path = self.create(name);
        let work = tempfile::tempdir().unwrap();
        copy_dir(src, work.path());
        let repo = git2::Repository::init(work.path()).unwrap();
        let mut index = repo.index().unwrap();
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("seed", "seed@example.com").unwrap();
        let id = repo
            .commit(None, &sig, &sig, "registry: the example", &tree, &[])
            .unwrap();
        let bare = git2::Repository::open_bare(&path).unwrap();
        let odb = bare.odb().unwrap();
        // Copy the objects, then point main at the commit (a local copy, no transport).
        let source = repo.odb().unwrap();
        source
            .foreach(|oid| {
                let o = source.read(*oid).unwrap();
                odb.write(o.kind(), o.data()).unwrap();
                true
            })
            .unwrap();
        bare.reference("refs/heads/main", id, true, "seed").unwrap();
        path
    }

    /// The provisio flags that reach this server: https user, token file and CA; or the ssh
    /// key and known_hosts.
    pub fn flags(&self) -> Vec<String> {
        match self.kind {
            Kind::Https => vec![
                "--git-username".into(),
                self.var("GIT_HTTPS_USER").into(),
                "--git-token-file".into(),
                self.var("GIT_HTTPS_PASSWORD_FILE").into(),
                "--git-ca-file".into(),
                self.var("GIT_HTTPS_CA").into(),
            ],
            Kind::Ssh => vec![
                "--ssh-key-file".into(),
                self.var("GIT_SSH_KEY").into(),
                "--ssh-known-hosts-file".into(),
                self.var("GIT_SSH_KNOWN_HOSTS").into(),
            ],
        }
    }

    /// The password (https), for checking that it never appears in output.
    pub fn password(&self) -> Option<&str> {
        (self.kind == Kind::Https).then(|| self.var("GIT_HTTPS_PASSWORD"))
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script(self.kind))
            .arg("stop")
            .arg(self.dir.path().join("server"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// The commit `main` points at in a bare repository.
pub fn main_of(bare: &Path) -> Option<git2::Oid> {
    let r = git2::Repository::open_bare(bare).ok()?;
    let reference = r.find_reference("refs/heads/main").ok()?;
    reference.target()
}

/// The file at `path` in `main` of a bare repository.
pub fn file_at_main(bare: &Path, path: &str) -> Option<Vec<u8>> {
    let r = git2::Repository::open_bare(bare).ok()?;
    let commit = r
        .find_reference("refs/heads/main")
        .ok()?
        .peel_to_commit()
        .ok()?;
    let entry = commit.tree().ok()?.get_path(Path::new(path)).ok()?;
    let blob = r.find_blob(entry.id()).ok()?;
    Some(blob.content().to_vec())
}

/// Whether `main` of a bare repository has anything at `path` (a file or a directory).
pub fn has_path(bare: &Path, path: &str) -> bool {
    let Ok(r) = git2::Repository::open_bare(bare) else {
        return false;
    };
    let Ok(reference) = r.find_reference("refs/heads/main") else {
        return false;
    };
    let commit = reference.peel_to_commit().unwrap();
    commit.tree().unwrap().get_path(Path::new(path)).is_ok()
}

/// Commit messages of `main`, newest first.
pub fn messages(bare: &Path) -> Vec<String> {
    let r = git2::Repository::open_bare(bare).unwrap();
    let Some(head) = main_of(bare) else {
        return Vec::new();
    };
    let mut walk = r.revwalk().unwrap();
    walk.push(head).unwrap();
    walk.map(|c| {
        r.find_commit(c.unwrap())
            .unwrap()
            .message()
            .unwrap()
            .to_owned()
    })
    .collect()
}

/// Subscription → how many `Provisio-Event:` trailers of `main` name it.
pub fn trailers(bare: &Path) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for msg in messages(bare) {
        for line in msg.lines() {
            if let Some(rest) = line.strip_prefix("Provisio-Event: ") {
                let sub = rest.split_whitespace().nth(2).unwrap().to_owned();
                *m.entry(sub).or_default() += 1;
            }
        }
    }
    m
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes; panics with `what` and
/// `context()`.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    context: impl Fn() -> String,
    mut cond: impl FnMut() -> bool,
) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An address nobody listens on right now ([`crate::common::free_port`]).
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], crate::common::free_port()))
}

/// One request an [`ArgoCd`] stand-in received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Request line and headers, names in lower case.
    pub head: String,
    pub body: Vec<u8>,
    pub status: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim().eq_ignore_ascii_case(name)).then(|| v.trim())
        })
    }
}

/// A stand-in for Argo CD's `/api/webhook` on 127.0.0.1 that accepts only GitLab push events
/// carrying the expected token (200; 400 without `X-Gitlab-Event: Push Hook`, 403 with a
/// wrong token, as Argo CD answers), and records every request.
pub struct ArgoCd {
    pub url: String,
    pub received: Arc<Mutex<Vec<Received>>>,
}

impl ArgoCd {
    pub fn start(token: &str) -> ArgoCd {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/api/webhook", listener.local_addr().unwrap());
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let (rec, token) = (received.clone(), token.to_owned());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { break };
                let mut reader = BufReader::new(s.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line.to_ascii_lowercase());
                }
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0; len];
                let _ = reader.read_exact(&mut body);
                let mut r = Received {
                    head,
                    body,
                    status: 200,
                };
                // Header values were lower-cased with the names: compare the token as sent.
                let token_ok = r
                    .header("x-gitlab-token")
                    .is_some_and(|t| t == token.to_ascii_lowercase());
                r.status = match r.header("x-gitlab-event") {
                    Some("push hook") if token_ok => 200,
                    Some(_) => 403,
                    None => 400,
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 {} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    r.status
                );
                rec.lock().unwrap().push(r);
            }
        });
        ArgoCd { url, received }
    }

    pub fn accepted(&self) -> Vec<Received> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.status == 200)
            .cloned()
            .collect()
    }
}

/// The provisio binary as a child process with its stderr in a file; SIGKILLed when dropped.
pub struct Process {
    pub child: Child,
    pub log: PathBuf,
    pub addr: SocketAddr,
}

impl Process {
    /// Starts `provisio ARGS` (logs at info), with `envs`.
    pub fn spawn(args: &[String], envs: &[(&str, &str)], log: &Path, addr: SocketAddr) -> Process {
        let file = std::fs::File::create(log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_provisio"));
        cmd.args(args)
            .env("PROVISIO_LOG", "provisio=info")
            .env("NO_COLOR", "1")
            .env_remove("PROVISIO_GIT_TOKEN")
            .env_remove("PROVISIO_GIT_USERNAME")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        Process {
            child: cmd.spawn().unwrap(),
            log: log.to_path_buf(),
            addr,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `GET path` answers 200, or panics with the log (also when it exited).
    pub fn wait_ready(&mut self, path: &str, timeout: Duration) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "provisio exited ({status}) before it was ready:\n{}",
                    self.log()
                );
            }
            if http_get(self.addr, path).is_some_and(|(s, _)| s == 200) {
                return;
            }
            assert!(
                start.elapsed() < timeout,
                "not ready after {timeout:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the exit (bounded) and returns its code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                start.elapsed() < timeout,
                "still running after {timeout:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and the exit code.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.wait_exit(timeout)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `GET http://addr/path`: status and body, `None` when nothing answers.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    http(addr, "GET", path, &[], b"")
}

/// One HTTP/1.1 request with `Connection: close`.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// A `subscription.created` event.
pub fn created(sub: &str, name: &str) -> serde_json::Value {
    serde_json::json!({
        "event": "subscription.created",
        "timestamp": "2025-01-20T10:00:00Z",
        "data": {
            "subscription_id": sub,
            "customer": {"name": name, "email": "admin@example.com", "billing_email": "billing@example.com"},
            "plan": {"tier": "standard"},
            "metadata": {"region": "us-east"}
        }
    })
}

/// The webhook secret the serve processes of these tests use.
pub const BILLING_SECRET: &str = "billing-secret";

/// POSTs a billing event to serve; status and body.
pub fn post_created(addr: SocketAddr, sub: &str, name: &str) -> (u16, serde_json::Value) {
    let body = created(sub, name).to_string();
    let bearer = format!("Bearer {BILLING_SECRET}");
    let (status, text) = http(
        addr,
        "POST",
        "/api/v1/provisioning/webhooks/subscription-created",
        &[
            ("authorization", &bearer),
            ("content-type", "application/json"),
        ],
        body.as_bytes(),
    )
    .expect("serve answers");
    let v = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    (status, v)
}
