//! Test harness of the setup tests: starts real servers on 127.0.0.1 (MariaDB, RabbitMQ
//! with its management plugin, moto's S3 server) on free ports in temporary folders, and
//! stops them when dropped. A missing server binary fails the test unless
//! `PROVISIO_ALLOW_SKIP=1` (CI never sets it). Also: tenant specs from the example registry,
//! and a runner for the `provisio` binary.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use provisio::setup::SetupSpec;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind an ephemeral port")
        .local_addr()
        .unwrap()
        .port()
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
        let out = Command::new(which("mariadb-install-db"))
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
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
        provisio::pipeline::load(&repo_root().join("registry")).expect("example registry");
    let t = reg
        .tenants
        .get(tenant)
        .expect("tenant in the example registry");
    let plan = provisio::plan::plan_tenant(&reg, t, now());
    SetupSpec::from_plan(&plan)
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
