//! Shared by the `serve*` tests: a registry in a fresh git repository (the example registry
//! copied below a sub-directory, so the registry-inside-a-repository path is exercised), a
//! server on 127.0.0.1 with a random port and an injected clock, and a small HTTP client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use provisio::io::repo::{Author, Repo};
use provisio::services::serve::{self, Config, Running, auth::Secret};

pub const SECRET: &str = "test-webhook-secret";

/// The fixed "now" of the tests.
pub fn now() -> DateTime<Utc> {
    "2025-06-15T12:00:00Z".parse().unwrap()
}

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub registry: PathBuf,
}

impl Fixture {
    /// `<tmp>/registry` = the example registry, committed as the first commit.
    pub fn new() -> Self {
        Self::edited(|_| {})
    }

    /// [`Fixture::new`] with the copied registry changed by `edit` before the first commit.
    pub fn edited(edit: impl FnOnce(&Path)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let registry = dir.path().join("registry");
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("registry"),
            &registry,
        );
        edit(&registry);
        std::fs::write(dir.path().join("README.md"), "test registry repository\n").unwrap();
        Repo::init_with_all(dir.path(), "initial registry", &Author::default()).unwrap();
        Fixture { dir, registry }
    }

    pub fn config(&self) -> Config {
        let mut c = Config::new(self.registry.clone(), Secret::new(SECRET).unwrap());
        c.clock = Arc::new(now);
        c
    }

    pub fn start(&self) -> Running {
        serve::spawn(self.config(), "127.0.0.1:0".parse().unwrap(), 2).unwrap()
    }

    /// [`Fixture::config`] taking the lifecycle reports of Jobs signed with keys derived from
    /// `master`, on the real clock: serve checks a report's signature time against its own
    /// clock, and a Job signs with the real one.
    pub fn jobs_config(&self, master: &str) -> Config {
        let mut c = self.config();
        c.report_secrets = vec![Secret::new(master).unwrap()];
        c.clock = Arc::new(chrono::Utc::now);
        c
    }

    /// serve started on [`Fixture::jobs_config`].
    pub fn start_for_jobs(&self, master: &str) -> Running {
        serve::spawn(self.jobs_config(master), "127.0.0.1:0".parse().unwrap(), 2).unwrap()
    }

    pub fn repo(&self) -> Repo {
        Repo::discover(self.dir.path()).unwrap()
    }

    pub fn commits(&self) -> Vec<String> {
        self.repo().messages().unwrap()
    }

    /// Tenant files as committed (HEAD), by file name.
    pub fn committed_tenants(&self) -> Vec<String> {
        self.repo()
            .read_committed("registry/tenants")
            .unwrap()
            .into_keys()
            .collect()
    }

    pub fn committed(&self, path: &str) -> Option<String> {
        self.repo()
            .read_committed("")
            .unwrap()
            .remove(path)
            .map(|b| String::from_utf8(b).unwrap())
    }
}

fn copy_dir(from: &Path, to: &Path) {
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

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub content_type: String,
    /// Every header, names in lower case.
    pub headers: Vec<(String, String)>,
}

impl Answer {
    /// The value of header `name` (lower case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// Asserts the error shape and returns (code, field).
    pub fn error(&self) -> (String, Option<String>) {
        let v = self.json();
        let e = &v["error"];
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        assert!(
            e.get("field").is_some(),
            "field must be present (null allowed): {v}"
        );
        (
            e["code"].as_str().unwrap().to_owned(),
            e["field"].as_str().map(str::to_owned),
        )
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(30)))
        .build()
        .into()
}

pub fn request(
    agent: &ureq::Agent,
    method: &str,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let mut b = ureq::http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let mut resp = agent.run(b.body(body.to_vec()).unwrap()).unwrap();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    Answer {
        status: resp.status().as_u16(),
        body: resp.body_mut().read_to_string().unwrap(),
        content_type,
        headers,
    }
}

/// POST to a webhook route with the bearer secret and JSON content type.
pub fn post(addr: SocketAddr, route: &str, body: &serde_json::Value) -> Answer {
    post_bytes(addr, route, body.to_string().as_bytes())
}

/// POST raw bytes to a webhook route with the bearer secret and JSON content type.
pub fn post_bytes(addr: SocketAddr, route: &str, body: &[u8]) -> Answer {
    let bearer = format!("Bearer {SECRET}");
    request(
        &agent(),
        "POST",
        addr,
        &format!("{}{route}", serve::WEBHOOK_PREFIX),
        &[
            ("authorization", bearer.as_str()),
            ("content-type", "application/json"),
        ],
        body,
    )
}

/// A `subscription.created` event in the seed's shape.
pub fn created(sub: &str, name: &str) -> serde_json::Value {
    serde_json::json!({
        "event": "subscription.created",
        "timestamp": "2025-06-15T10:00:00Z",
        "data": {
            "subscription_id": sub,
            "customer": {"name": name, "email": "admin@example.com", "billing_email": "billing@example.com"},
            "plan": {"tier": "premium", "price": 124.99, "currency": "EUR", "billing_period": "monthly"},
            "metadata": {"company_size": "50-200", "industry": "retail", "region": "us-east"}
        }
    })
}

pub fn updated(sub: &str, tier: &str, id: &str) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "event": "subscription.updated",
        "timestamp": "2025-06-15T11:00:00Z",
        "data": {"subscription_id": sub, "plan": {"tier": tier}}
    })
}

pub fn cancelled(sub: &str, effective: &str) -> serde_json::Value {
    serde_json::json!({
        "event": "subscription.cancelled",
        "timestamp": "2025-06-15T10:00:00Z",
        "data": {"subscription_id": sub, "cancellation_reason": "downgrade", "effective_date": effective}
    })
}

/// An address nobody listens on right now ([`crate::common::free_port`]).
pub fn free_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], crate::common::free_port()))
}

/// The server process; killed (SIGKILL) and reaped when dropped, so a failing test leaves
/// no process behind.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
}

impl Server {
    /// A server process started by the caller.
    pub fn new(child: Child, addr: SocketAddr) -> Server {
        Server { child, addr }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Where the binary gets its webhook secret.
pub enum SecretFrom {
    Env,
    File,
}

/// `provisio serve` as a separate process on a free port, once it answers `/readyz`.
pub fn start_binary(f: &Fixture, secret: SecretFrom) -> Server {
    let addr = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_provisio"));
    cmd.args(["serve", "--registry"])
        .arg(&f.registry)
        .args(["--listen", &addr.to_string()])
        .env_remove("PROVISIO_WEBHOOK_SECRET");
    match secret {
        SecretFrom::Env => {
            cmd.env("PROVISIO_WEBHOOK_SECRET", SECRET);
        }
        SecretFrom::File => {
            let file = f.dir.path().join("webhook-secret");
            std::fs::write(&file, format!("{SECRET}\n")).unwrap();
            cmd.arg("--secret-file").arg(file);
        }
    }
    let server = Server {
        child: cmd
            .env("PROVISIO_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
        addr,
    };
    let agent = agent();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = ureq::http::Request::builder()
            .uri(format!("http://{addr}/readyz"))
            .body(Vec::new())
            .ok()
            .and_then(|r| agent.run(r).ok())
            .is_some_and(|r| r.status() == 200);
        if ready {
            return server;
        }
        assert!(Instant::now() < deadline, "the server did not become ready");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What `setup credentials` leaves in the secret store for tenant `tenant`'s Jobs: its report
/// key, derived from serve's `master` secret, at `secret`.
pub fn store_report_key(
    store: &dyn provisio::setup::secrets::SecretStore,
    secret: &str,
    master: &str,
    tenant: &str,
) {
    let key = hex::encode(provisio_core::lifecycle::signature::derive_key(
        master.as_bytes(),
        tenant,
    ));
    let entry = [("tenant", tenant), ("key", key.as_str())]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    store.create(secret, &entry).unwrap();
}
