//! Shared test helpers: temporary copies of the example registry, fixed times, tree reads,
//! and the rule for external tools (skip locally, fail in CI).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

/// A port on 127.0.0.1 that nobody listens on now, for a server process a test starts (the
/// port is closed again before that server binds it). Taken below the kernel's ephemeral
/// range (`net.ipv4.ip_local_port_range`), from which every client socket draws its local
/// port — the integration tests share one process, and some open hundreds of connections at
/// once — and never handed out twice by this process, so two servers started side by side
/// cannot be given the same one.
pub fn free_port() -> u16 {
    use std::collections::BTreeSet;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .unwrap_or_else(|_| "32768 60999".to_owned());
    let ports = free_port_candidates(&range);
    let span = ports.end - ports.start;
    // Where this process starts in the range: another test process (another checkout's run)
    // most likely starts elsewhere.
    let start = std::process::id().wrapping_mul(7919) % span.max(1);
    for _ in 0..span {
        let port = (ports.start + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span) as u16;
        let mut given = GIVEN.lock().unwrap();
        if given.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    assert!(
        span == 0,
        "no free port on 127.0.0.1 in {ports:?} (ephemeral: {range})"
    );
    // The ephemeral range leaves no unprivileged port outside it: the kernel's choice, as
    // before, still never handed out twice.
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if GIVEN.lock().unwrap().insert(port) {
            return port;
        }
    }
}

/// The ports [`free_port`] picks from, given `ip_local_port_range` ("low high"): up to 22,768
/// below the ephemeral range, else those above it — never a privileged one (below 1024: a
/// server run as another user cannot bind it, nor can the tests unless root). Empty when the
/// ephemeral range leaves none ("1024 65535").
pub fn free_port_candidates(ip_local_port_range: &str) -> std::ops::Range<u32> {
    let mut bounds = ip_local_port_range
        .split_whitespace()
        .map(|b| b.parse::<u32>().ok());
    let (low, high) = match (bounds.next().flatten(), bounds.next().flatten()) {
        (Some(l), Some(h)) if l <= h => (l, h.min(65535)),
        _ => (32768, 60999),
    };
    let floor = 10_000u32.min(low / 2).max(1024);
    if floor < low {
        floor..low
    } else {
        (high + 1).max(1024)..65536
    }
}

#[test]
fn common_free_ports_are_never_privileged_nor_ephemeral() {
    for (range, expected) in [
        ("32768\t60999\n", 10_000..32768),
        ("4000 65000", 2000..4000),
        ("1024 65535", 65536..65536),
        ("1024 60999", 61000..65536),
        ("1500 65535", 1024..1500),
        ("1 60999", 61000..65536),
        ("garbage", 10_000..32768),
    ] {
        let ports = free_port_candidates(range);
        assert_eq!(ports, expected, "{range:?}");
    }
    let port = free_port();
    assert!(port >= 1024);
    assert_ne!(free_port(), port);
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The time every test renders for.
pub fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-02-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A temporary directory holding `registry/` (a copy of the example) and `out/`.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&repo_root().join("registry"), &dir.path().join("registry"));
        std::fs::create_dir_all(dir.path().join("out")).unwrap();
        Workspace { dir }
    }
    pub fn registry(&self) -> PathBuf {
        self.dir.path().join("registry")
    }
    pub fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }
    pub fn paths(&self) -> provisio::ops::generate::Paths {
        provisio::ops::generate::Paths {
            registry: self.registry(),
            out: self.out(),
        }
    }
    pub fn write(&self, rel: &str, text: &str) {
        let p = self.registry().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    pub fn remove(&self, rel: &str) {
        std::fs::remove_file(self.registry().join(rel)).unwrap();
    }
    pub fn generate(&self) -> provisio::io::output::Summary {
        provisio::ops::generate::generate(
            &self.paths(),
            &provisio::ops::generate::GenerateOptions::new(now()),
        )
        .expect("generate")
    }
    /// Every file of the output root (including the state file) with its bytes.
    pub fn snapshot(&self) -> std::collections::BTreeMap<String, Vec<u8>> {
        let mut files = provisio::io::output::read_tree(&self.out()).unwrap();
        if let Ok(b) = std::fs::read(self.out().join(provisio::io::output::STATE_FILE)) {
            files.insert(provisio::io::output::STATE_FILE.to_owned(), b);
        }
        files
    }
}

/// Whether a missing external tool fails the test (CI) or skips it (a laptop without it).
pub fn tools_required() -> bool {
    std::env::var("PROVISIO_REQUIRE_TOOLS").is_ok_and(|v| v == "1")
}

/// `Some(path)` of a tool on PATH; `None` (after saying so) when absent and allowed.
pub fn tool(name: &str) -> Option<String> {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    match found {
        Some(p) => Some(p),
        None if tools_required() => {
            panic!("{name} is required (PROVISIO_REQUIRE_TOOLS=1) but not on PATH")
        }
        None => {
            eprintln!("SKIPPED: {name} not on PATH (set PROVISIO_REQUIRE_TOOLS=1 to fail instead)");
            None
        }
    }
}

/// The upstream CRD directory: `PROVISIO_CRD_DIR`, else `../shared/crds`.
pub fn crd_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("PROVISIO_CRD_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/crds"));
    if dir.is_dir() {
        Some(dir)
    } else if tools_required() {
        panic!(
            "the upstream CRDs are required but {} is missing",
            dir.display()
        );
    } else {
        eprintln!(
            "SKIPPED: no CRD directory at {} (set PROVISIO_CRD_DIR)",
            dir.display()
        );
        None
    }
}

/// Options for a `--full` run.
pub fn full(now: DateTime<Utc>) -> provisio::ops::generate::GenerateOptions {
    provisio::ops::generate::GenerateOptions {
        full: true,
        ..provisio::ops::generate::GenerateOptions::new(now)
    }
}

/// `PROVISIO_BLESS=1`: every snapshot (golden tree, expected diagnostics, CLI transcripts)
/// is rewritten from what the code produces instead of compared. Review the diff before
/// committing.
pub fn bless() -> bool {
    std::env::var("PROVISIO_BLESS").is_ok_and(|v| v == "1")
}
