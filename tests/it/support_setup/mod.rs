//! Test harness of the setup tests: starts real servers on 127.0.0.1 (MariaDB, RabbitMQ
//! with its management plugin, moto's S3 server) on free ports in temporary folders, and
//! stops them when dropped. A missing server binary fails the test unless
//! `PROVISIO_ALLOW_SKIP=1` (CI never sets it). Also: tenant specs from the example registry,
//! and a runner for the `provisio` binary.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use provisio_core::plan::setup::SetupSpec;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A port nobody listens on right now ([`crate::common::free_port`]).
pub fn free_port() -> u16 {
    crate::common::free_port()
}

/// Whether a server binary exists; panics (test fails) when it does not, unless skipping is
/// allowed, in which case the caller returns early.
pub fn require(binary: &str) -> bool {
    let found = if binary.contains('/') {
        Path::new(binary).exists()
    } else {
        std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(binary).is_file()))
            || ["/usr/sbin", "/sbin"]
                .iter()
                .any(|d| Path::new(d).join(binary).is_file())
    };
    if found {
        return true;
    }
    if std::env::var("PROVISIO_ALLOW_SKIP").is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED: `{binary}` is not installed (PROVISIO_ALLOW_SKIP=1)");
        false
    } else {
        panic!(
            "`{binary}` is not installed: install it (see docs/credentials.md, CI section) or set PROVISIO_ALLOW_SKIP=1"
        );
    }
}

fn which(binary: &str) -> PathBuf {
    for d in ["/usr/sbin", "/sbin", "/usr/bin", "/usr/local/bin"] {
        let p = Path::new(d).join(binary);
        if p.is_file() {
            return p;
        }
    }
    PathBuf::from(binary)
}

/// Polls `ok` until it returns true or `timeout` passes.
pub fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < timeout,
            "{what}: not ready after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn stop(child: &mut Child) {
    // SIGTERM first: servers flush and exit; SIGKILL if they do not within 15 s.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

// ---------------------------------------------------------------------------------------
// MariaDB
// ---------------------------------------------------------------------------------------

pub const MYSQL_ADMIN_USER: &str = "provisio_admin";
pub const MYSQL_ADMIN_PASSWORD: &str = "admin-test-password-1234";

pub struct MariaDb {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

impl MariaDb {
    /// Starts a fresh server; `None` when it is not installed and skipping is allowed.
    pub fn start() -> Option<MariaDb> {
        if !require("mariadbd") || !require("mariadb-install-db") {
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        // A temporary directory of its own: servers started at the same time (parallel tests,
        // other test runs sharing /tmp) otherwise collide on `/tmp/#sql-temptable-…` files.
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).expect("server tmpdir");
        let out = Command::new(which("mariadb-install-db"))
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg("--user=root")
            .arg("--auth-root-authentication-method=socket")
            .arg("--skip-test-db")
            .output()
            .expect("run mariadb-install-db");
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let socket = dir.path().join("mysqld.sock");
        let log = dir.path().join("error.log");
        let child = Command::new(which("mariadbd"))
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg("--user=root")
            .arg("--skip-name-resolve")
            .arg(format!(
                "--pid-file={}",
                dir.path().join("mysqld.pid").display()
            ))
            .arg(format!("--log-error={}", log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mariadbd");
        let mut db = MariaDb { dir, port, child };
        let socket_opts = || {
            mysql::OptsBuilder::new()
                .socket(Some(socket.display().to_string()))
                .user(Some("root"))
        };
        let mut conn = None;
        let start = Instant::now();
        while conn.is_none() {
            if let Ok(Some(status)) = db.child.try_wait() {
                panic!("mariadbd exited ({status}):\n{}", log_tail(&log));
            }
            match mysql::Conn::new(socket_opts()) {
                Ok(c) => conn = Some(c),
                Err(e) if start.elapsed() > Duration::from_secs(60) => {
                    panic!("mariadbd not ready: {e}\n{}", log_tail(&log))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
        use mysql::prelude::Queryable;
        let mut conn = conn.unwrap();
        for sql in [
            format!(
                "CREATE USER '{MYSQL_ADMIN_USER}'@'127.0.0.1' IDENTIFIED BY '{MYSQL_ADMIN_PASSWORD}'"
            ),
            format!(
                "GRANT ALL PRIVILEGES ON *.* TO '{MYSQL_ADMIN_USER}'@'127.0.0.1' WITH GRANT OPTION"
            ),
        ] {
            conn.query_drop(sql).expect("bootstrap the admin account");
        }
        db.child_ok();
        Some(db)
    }

    fn child_ok(&mut self) {
        assert!(
            matches!(self.child.try_wait(), Ok(None)),
            "mariadbd is not running"
        );
    }

    /// A connection as `user` over TCP, optionally selecting a database.
    pub fn connect(
        &self,
        user: &str,
        password: &str,
        db: Option<&str>,
    ) -> Result<mysql::Conn, mysql::Error> {
        mysql::Conn::new(
            mysql::OptsBuilder::new()
                .ip_or_hostname(Some("127.0.0.1"))
                .tcp_port(self.port)
                .prefer_socket(false)
                .user(Some(user))
                .pass(Some(password))
                .db_name(db),
        )
    }

    pub fn admin(&self) -> mysql::Conn {
        self.connect(MYSQL_ADMIN_USER, MYSQL_ADMIN_PASSWORD, None)
            .expect("admin connection")
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

// ---------------------------------------------------------------------------------------
// Specs and the binary
// ---------------------------------------------------------------------------------------

/// The setup spec of a tenant of the example registry, rendered at `now`.
pub fn example_spec(tenant: &str) -> SetupSpec {
    let (reg, _) =
        provisio::ops::load::load(&repo_root().join("registry")).expect("example registry");
    let t = reg
        .tenants
        .get(tenant)
        .expect("tenant in the example registry");
    let plan = provisio_core::plan::plan_tenant(&reg, t, now());
    SetupSpec::from_plan(&plan)
}

/// The spec the setup Job of `service` mounts for a tenant of the example registry: the
/// text of its rendered ConfigMap (`spec.json`), parsed. The setup tests run the servers with
/// exactly what a Job reads.
pub fn job_spec(tenant: &str, service: &str) -> SetupSpec {
    let (reg, _) =
        provisio::ops::load::load(&repo_root().join("registry")).expect("example registry");
    let t = reg
        .tenants
        .get(tenant)
        .expect("tenant in the example registry");
    let plan = provisio_core::plan::plan_tenant(&reg, t, now());
    let job = provisio_core::render::jobs::setup_jobs(&plan)
        .into_iter()
        .find(|j| j.service.as_str() == service)
        .expect("the tenant uses the service");
    let text =
        &job.spec.data.as_ref().expect("ConfigMap data")[provisio_core::render::jobs::SPEC_KEY];
    SetupSpec::parse(text).expect("the mounted spec parses")
}

pub fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-02-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// Writes `spec` as JSON into `dir/<name>.json`.
pub fn write_spec(dir: &Path, name: &str, spec: &SetupSpec) -> PathBuf {
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, spec.to_json()).expect("write spec");
    path
}

/// Runs `provisio <args>` with `env`; returns (exit code, stdout, stderr).
pub fn provisio(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_provisio"));
    cmd.args(args).env_remove("PROVISIO_SETUP_SPEC");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run provisio");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

// ---------------------------------------------------------------------------------------
// RabbitMQ (Debian `rabbitmq-server`, management plugin)
// ---------------------------------------------------------------------------------------

pub const RABBIT_ADMIN_USER: &str = "provisio-admin";
pub const RABBIT_ADMIN_PASSWORD: &str = "admin-test-password-5678";
const RABBIT_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

pub struct RabbitMq {
    pub dir: tempfile::TempDir,
    pub amqp_port: u16,
    pub management_port: u16,
    epmd_port: u16,
    child: Child,
}

impl RabbitMq {
    /// Starts a broker with the management plugin; `None` when RabbitMQ is not installed and
    /// skipping is allowed. As root, the broker runs as user `rabbitmq` (the Debian scripts'
    /// rule), so its folders are handed to that user.
    pub fn start() -> Option<RabbitMq> {
        use std::os::unix::process::CommandExt;
        if !require(RABBIT_SERVER) {
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let (amqp_port, management_port, dist_port) = (free_port(), free_port(), free_port());
        // A port-mapper daemon of its own, stopped in `drop` (it daemonizes, outside the
        // broker's process group); the machine's default one is left alone.
        let epmd_port = free_port();
        let conf = format!(
            "listeners.tcp.default = 127.0.0.1:{amqp_port}\n\
             management.tcp.port = {management_port}\n\
             management.tcp.ip = 127.0.0.1\n\
             default_user = {RABBIT_ADMIN_USER}\n\
             default_pass = {RABBIT_ADMIN_PASSWORD}\n\
             default_user_tags.administrator = true\n\
             loopback_users = none\n"
        );
        std::fs::write(dir.path().join("rabbitmq.conf"), conf).unwrap();
        std::fs::write(
            dir.path().join("enabled_plugins"),
            "[rabbitmq_management].\n",
        )
        .unwrap();
        let mut cmd = Command::new(RABBIT_SERVER);
        cmd.current_dir(dir.path())
            .env("RABBITMQ_MNESIA_BASE", dir.path().join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.path().join("log"))
            .env("RABBITMQ_NODE_PORT", amqp_port.to_string())
            .env("RABBITMQ_DIST_PORT", dist_port.to_string())
            .env(
                "RABBITMQ_NODENAME",
                format!("provisio-test-{amqp_port}@localhost"),
            )
            .env("RABBITMQ_CONFIG_FILE", dir.path().join("rabbitmq"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                dir.path().join("enabled_plugins"),
            )
            .env("RABBITMQ_PID_FILE", dir.path().join("rabbitmq.pid"))
            .env("ERL_EPMD_PORT", epmd_port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        if unsafe { libc::geteuid() } == 0 {
            let name = std::ffi::CString::new("rabbitmq").unwrap();
            let pw = unsafe { libc::getpwnam(name.as_ptr()) };
            assert!(
                !pw.is_null(),
                "running as root but there is no `rabbitmq` user"
            );
            let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
            chown_tree(dir.path(), uid, gid);
            cmd.uid(uid).gid(gid).env("HOME", "/var/lib/rabbitmq");
        }
        let child = cmd.spawn().expect("start rabbitmq-server");
        let mut broker = RabbitMq {
            dir,
            amqp_port,
            management_port,
            epmd_port,
            child,
        };
        let url = format!("http://127.0.0.1:{management_port}/api/overview");
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = broker.child.try_wait() {
                panic!("rabbitmq-server exited ({status}):\n{}", broker.logs());
            }
            if broker.api(Method::Get, &url, None).0 == 200 {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "RabbitMQ not ready:\n{}",
                broker.logs()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        Some(broker)
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        if let Ok(entries) = std::fs::read_dir(self.dir.path().join("log")) {
            for e in entries.flatten() {
                out.push_str(&log_tail(&e.path()));
            }
        }
        out
    }

    /// A management API call as the admin: (status, body as JSON or Null).
    pub fn api(
        &self,
        method: Method,
        url: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let url = if url.starts_with("http") {
            url.to_owned()
        } else {
            format!("http://127.0.0.1:{}/api{url}", self.management_port)
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let auth = format!(
            "Basic {}",
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                format!("{RABBIT_ADMIN_USER}:{RABBIT_ADMIN_PASSWORD}")
            )
        );
        let result = match method {
            Method::Get => agent.get(&url).header("Authorization", &auth).call(),
            Method::Delete => agent.delete(&url).header("Authorization", &auth).call(),
            Method::Put => agent
                .put(&url)
                .header("Authorization", &auth)
                .send_json(body.unwrap_or(serde_json::Value::Null)),
            Method::Post => agent
                .post(&url)
                .header("Authorization", &auth)
                .send_json(body.unwrap_or(serde_json::Value::Null)),
        };
        match result {
            Ok(mut r) => {
                let status = r.status().as_u16();
                let text = r.body_mut().read_to_string().unwrap_or_default();
                (
                    status,
                    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
                )
            }
            Err(_) => (0, serde_json::Value::Null),
        }
    }
}

impl RabbitMq {
    /// Messages ready in a queue, as the broker counts them (a passive declare over AMQP as
    /// the admin, as the backup counts; the management API's statistics are sampled and may
    /// lag or be absent).
    pub fn queued(&self, vhost: &str, queue: &str) -> u64 {
        let login = provisio::setup::amqp::Login {
            host: "127.0.0.1",
            port: self.amqp_port,
            vhost,
            user: RABBIT_ADMIN_USER,
            password: RABBIT_ADMIN_PASSWORD,
        };
        provisio::setup::amqp::queue_counts(&login, &[queue.to_owned()], Duration::from_secs(10))
            .unwrap()[0]
            .into()
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Method {
    Get,
    Put,
    Post,
    Delete,
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(
        unsafe { libc::chown(c.as_ptr(), uid, gid) },
        0,
        "chown {}",
        path.display()
    );
    if path.is_dir() {
        for e in std::fs::read_dir(path).unwrap().flatten() {
            chown_tree(&e.path(), uid, gid);
        }
    }
}

impl Drop for RabbitMq {
    fn drop(&mut self) {
        // The broker is the leader of its own process group (script, beam, helpers).
        let group = self.child.id() as i32;
        unsafe {
            libc::kill(-group, libc::SIGTERM);
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
        let _ = self.child.wait();
        let _ = Command::new("epmd")
            .args(["-port", &self.epmd_port.to_string(), "-kill"])
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// What an AMQP 0-9-1 client gets when it opens `vhost` with `user`/`password`.
#[derive(Debug, PartialEq, Eq)]
pub enum AmqpOpen {
    /// Connection.Open-Ok: the user may use the vhost.
    Opened,
    /// The login itself was refused (the server closed the connection).
    LoginRefused,
    /// Connection.Close with this reply code (530 NOT_ALLOWED: no access to the vhost).
    Closed(u16, String),
}

/// An AMQP 0-9-1 login (PLAIN) and `Connection.Open` of `vhost` with the `amqprs` client, as
/// provisio's vhost probe makes it: the broker itself decides whether `user` may open `vhost`.
pub fn amqp_open(port: u16, user: &str, password: &str, vhost: &str) -> AmqpOpen {
    use provisio::setup::amqp::{self, AmqpError};
    let login = amqp::Login {
        host: "127.0.0.1",
        port,
        vhost,
        user,
        password,
    };
    match amqp::open_vhost(&login, Duration::from_secs(10)) {
        Ok(()) => AmqpOpen::Opened,
        Err(AmqpError::LoginRefused { .. }) => AmqpOpen::LoginRefused,
        Err(AmqpError::VhostRefused { code, text, .. }) => AmqpOpen::Closed(code, text),
        Err(other) => panic!("AMQP session with {vhost} as {user}: {other}"),
    }
}

// ---------------------------------------------------------------------------------------
// moto (PyPI `moto[server]`): S3, IAM and Secrets Manager with access control on
// ---------------------------------------------------------------------------------------

pub struct Moto {
    pub port: u16,
    pub admin: provisio::setup::aws::Credentials,
    child: Child,
    _dir: tempfile::TempDir,
}

/// Requests moto serves before it starts checking credentials: exactly the three IAM calls
/// that create the admin user, its policy and its access key.
const MOTO_UNAUTHENTICATED: u32 = 3;

impl Moto {
    pub fn start() -> Option<Moto> {
        if !require("moto_server") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = dir.path().join("moto.log");
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env(
                "INITIAL_NO_AUTH_ACTION_COUNT",
                MOTO_UNAUTHENTICATED.to_string(),
            )
            .env("MOTO_ALLOW_NONEXISTENT_REGION", "true")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start moto_server");
        let mut moto = Moto {
            port,
            admin: provisio::setup::aws::Credentials {
                access_key: "bootstrap".into(),
                secret_key: "bootstrap".into(),
                session_token: None,
            },
            child,
            _dir: dir,
        };
        // A TCP connection is not a request: it does not use up an unauthenticated action.
        // The port must also be moto's own (its log says it runs on it): another test's server
        // may have taken a port `free_port` handed out a moment earlier.
        wait_until("moto_server", Duration::from_secs(60), || {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto_server exited ({status}):\n{}", log_tail(&log));
            }
            let running = std::fs::read_to_string(&log)
                .is_ok_and(|l| l.contains(&format!("127.0.0.1:{port}")));
            running && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        let admin_policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
        moto.iam_ok("CreateUser", &[("UserName", "provisio-admin")]);
        moto.iam_ok(
            "PutUserPolicy",
            &[
                ("UserName", "provisio-admin"),
                ("PolicyName", "all"),
                ("PolicyDocument", admin_policy),
            ],
        );
        moto.admin = moto.create_access_key("provisio-admin");
        Some(moto)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// moto's log so far (one line per request, with its path and query).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("moto.log")).unwrap_or_default()
    }

    pub fn client(
        &self,
        label: &'static str,
        service: &'static str,
        creds: &provisio::setup::aws::Credentials,
    ) -> provisio::setup::aws::Client {
        provisio::setup::aws::Client::new(
            label,
            service,
            &self.endpoint(),
            "us-east-1",
            creds.clone(),
            provisio::io::retry::Policy::new(2, Duration::from_millis(50)).without_jitter(),
        )
        .unwrap()
    }

    /// An IAM query-API call as the admin; (status, body).
    pub fn iam(&self, action: &str, params: &[(&str, &str)]) -> (u16, String) {
        let mut form = vec![("Action", action), ("Version", "2010-05-08")];
        form.extend_from_slice(params);
        let body = form
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    provisio::setup::aws::uri_encode(k),
                    provisio::setup::aws::uri_encode(v)
                )
            })
            .collect::<Vec<_>>()
            .join("&");
        let r = self
            .client("iam", "iam", &self.admin)
            .send(
                "POST",
                "/",
                &[],
                &[("content-type", "application/x-www-form-urlencoded")],
                body.as_bytes(),
            )
            .expect("IAM call");
        (r.status, r.body)
    }

    pub fn iam_ok(&self, action: &str, params: &[(&str, &str)]) -> String {
        let (status, body) = self.iam(action, params);
        assert_eq!(status, 200, "IAM {action}: {body}");
        body
    }

    pub fn create_access_key(&self, user: &str) -> provisio::setup::aws::Credentials {
        let body = self.iam_ok("CreateAccessKey", &[("UserName", user)]);
        let get = |tag: &str| {
            provisio::setup::s3::tag_values(&body, tag)
                .pop()
                .expect(tag)
        };
        provisio::setup::aws::Credentials {
            access_key: get("AccessKeyId"),
            secret_key: get("SecretAccessKey"),
            session_token: None,
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

// ---------------------------------------------------------------------------------------
// A fault-injecting proxy in front of an S3 server
// ---------------------------------------------------------------------------------------

/// What [`s3_fault_proxy`] does with one request.
pub enum Fault {
    /// Answer it with this status and XML body, not forwarding it.
    Answer(u16, String),
    /// Forward it, then close the connection without the answer (an answer lost).
    LoseAnswer,
}

/// A proxy in front of the S3 server on `upstream` that answers a request itself, or loses
/// the server's answer, when `inject` returns a [`Fault`] for its request line (`PUT /b/k?partNumber=3&… HTTP/1.1`)
/// and forwards the rest, one request per connection; returns its URL and how many requests
/// it answered itself. The signature stays valid: the Host header is the proxy's, as signed.
pub fn s3_fault_proxy(
    upstream: u16,
    inject: impl Fn(&str) -> Option<Fault> + Send + Sync + 'static,
) -> (String, Arc<Mutex<u32>>) {
    let inject = Arc::new(inject);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let failed = Arc::new(Mutex::new(0));
    let count = failed.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut client) = conn else { continue };
            let count = count.clone();
            let inject = inject.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(client.try_clone().unwrap());
                let mut head = Vec::new();
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                    // One request per connection: ureq opens a new one for the next.
                    if !lower.starts_with("connection:") {
                        head.extend_from_slice(line.as_bytes());
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let request_line = String::from_utf8_lossy(&head)
                    .lines()
                    .next()
                    .unwrap()
                    .to_owned();
                let fault = inject(&request_line);
                let answer = if let Some(Fault::Answer(status, xml)) = &fault {
                    *count.lock().unwrap() += 1;
                    format!(
                        "HTTP/1.1 {status} Injected\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{xml}",
                        xml.len()
                    )
                    .into_bytes()
                } else {
                    let mut up = std::net::TcpStream::connect(("127.0.0.1", upstream)).unwrap();
                    up.write_all(&head).unwrap();
                    up.write_all(b"connection: close\r\n\r\n").unwrap();
                    up.write_all(&body).unwrap();
                    let mut raw = Vec::new();
                    up.read_to_end(&mut raw).unwrap();
                    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
                    let head: String = String::from_utf8_lossy(&raw[..split])
                        .lines()
                        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
                        .map(|l| format!("{l}\r\n"))
                        .collect();
                    let mut out = head.into_bytes();
                    out.extend_from_slice(b"connection: close\r\n\r\n");
                    out.extend_from_slice(&raw[split + 4..]);
                    out
                };
                if matches!(fault, Some(Fault::LoseAnswer)) {
                    *count.lock().unwrap() += 1;
                    return;
                }
                let _ = client.write_all(&answer);
            });
        }
    });
    (url, failed)
}

/// A child process of a test (a stand-in server) killed and reaped when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_quiet(command: &mut Command) -> Killed {
    Killed(
        command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {command:?}: {e}")),
    )
}

/// `https://localhost:<port>/health` (activate wants `https://`), certified by a test CA
/// written to `dir/tls` (`ca.pem` for the client), answering 503 to the first `fail_first`
/// requests and 200 after. Returns the URL and the server.
pub fn health_endpoint(dir: &Path, fail_first: u32) -> (String, Killed) {
    let tls = dir.join("tls");
    let made = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/tools/make_test_ca.sh"
        ))
        .arg(&tls)
        .arg("localhost")
        .status()
        .unwrap();
    assert!(made.success(), "make_test_ca.sh failed");
    let port = free_port();
    let server = spawn_quiet(
        Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/tools/https_health.py"
            ))
            .args(["--port", &port.to_string()])
            .args(["--fail-first", &fail_first.to_string(), "--cert"])
            .arg(tls.join("server.pem"))
            .arg("--key")
            .arg(tls.join("server.key")),
    );
    wait_until("the health endpoint", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (format!("https://localhost:{port}/health"), server)
}

/// An SMTP sink on 127.0.0.1 (aiosmtpd from PyPI) delivering each message to the Maildir
/// `maildir`. Returns its port and the server.
pub fn smtp_sink(maildir: &Path) -> (u16, Killed) {
    let port = free_port();
    let server = spawn_quiet(
        Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir),
    );
    wait_until("the SMTP sink", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (port, server)
}
