//! `provisio website-status`, the real binary against a websites-service double on
//! 127.0.0.1 that checks the method, the path, the bearer token and the body: the record of
//! an active tenant is set `active`, of a cancelled one `deprovisioning`, once (a re-run
//! changes nothing and sends no PATCH); a wrong token, an unknown record and two records for
//! one tenant are refused with nothing changed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

use provisio::setup::secrets::{FileStore, SecretStore};
use serde_json::{Value, json};

const TOKEN: &str = "internal-token-0123456789abcdef";
const TENANT: &str = "abc-corporation-7f3a9c";
const DOMAIN: &str = "abc-corporation.collectverything.com";

/// What the double holds and saw.
#[derive(Default)]
struct Service {
    records: Vec<Value>,
    /// `METHOD path` of every request, in order.
    seen: Vec<String>,
    /// Wrap the list in `{"data": …}` (Laravel's resource collections).
    wrapped: bool,
}

fn start(service: Arc<Mutex<Service>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() || line.is_empty() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (method, target) = (
                parts.next().unwrap_or("").to_owned(),
                parts.next().unwrap_or("").to_owned(),
            );
            let (mut length, mut auth) = (0usize, String::new());
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                let (k, v) = h.split_once(':').unwrap();
                match k.to_ascii_lowercase().as_str() {
                    "content-length" => length = v.trim().parse().unwrap(),
                    "authorization" => auth = v.trim().to_owned(),
                    _ => {}
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let (status, answer) = answer(&service, &method, &target, &auth, &body);
            let text = answer.to_string();
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    addr
}

fn answer(
    service: &Mutex<Service>,
    method: &str,
    target: &str,
    auth: &str,
    body: &[u8],
) -> (u16, Value) {
    let mut s = service.lock().unwrap();
    s.seen.push(format!("{method} {target}"));
    if auth != format!("Bearer {TOKEN}") {
        return (401, json!({"message": "Unauthenticated."}));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match (method, path) {
        ("GET", "/api/v1/websites") => {
            let domain = query.strip_prefix("domain=").unwrap_or("");
            let list: Vec<Value> = s
                .records
                .iter()
                .filter(|r| r["domain"] == domain)
                .cloned()
                .collect();
            if s.wrapped {
                (200, json!({ "data": list }))
            } else {
                (200, Value::Array(list))
            }
        }
        ("PATCH", p) if p.starts_with("/api/v1/websites/") => {
            let id = &p["/api/v1/websites/".len()..];
            let patch: Value = serde_json::from_slice(body).unwrap();
            assert_eq!(
                patch.as_object().unwrap().len(),
                1,
                "only the status: {patch}"
            );
            let Some(r) = s
                .records
                .iter_mut()
                .find(|r| r["id"].to_string().trim_matches('"') == id)
            else {
                return (404, json!({"message": "Not Found"}));
            };
            r["status"] = patch["status"].clone();
            (200, r.clone())
        }
        _ => (404, json!({"message": "Not Found"})),
    }
}

fn record(id: u64, status: &str) -> Value {
    // The seed's answer to the POST: id, name, domain, tenant_id, subscription_id, tier, status.
    json!({"id": id, "name": "ABC Corporation Store", "domain": DOMAIN, "tenant_id": TENANT,
           "subscription_id": "sub_abc123", "tier": "premium", "status": status,
           "created_at": "2025-01-15T10:31:00Z", "updated_at": "2025-01-15T10:31:00Z"})
}

struct Run {
    dir: tempfile::TempDir,
}

impl Run {
    fn new(token: &str) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().join("store"));
        let key = format!("/e-commerce/tenants/{TENANT}/internal-api");
        let value = [("tenant", TENANT), ("token", token)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        store.create(&key, &value).unwrap();
        Run { dir }
    }

    fn website_status(&self, addr: SocketAddr, id: Option<&str>, status: &str) -> (i32, String) {
        let mut website = json!({
            "url": format!("http://{addr}/api/v1/websites"),
            "tokenSecret": format!("/e-commerce/tenants/{TENANT}/internal-api"),
            "domain": DOMAIN,
            "status": status,
        });
        if let Some(id) = id {
            website["id"] = json!(id);
        }
        let spec = json!({"version": 1, "tenant": TENANT, "website": website});
        let file = self.dir.path().join("spec.json");
        std::fs::write(&file, serde_json::to_string_pretty(&spec).unwrap()).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_provisio"))
            .args(["website-status", "--spec"])
            .arg(&file)
            .arg("--secret-store")
            .arg(format!("file:{}", self.dir.path().join("store").display()))
            .args(["--attempts", "2", "--backoff-ms", "10"])
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

fn patches(service: &Mutex<Service>) -> usize {
    service
        .lock()
        .unwrap()
        .seen
        .iter()
        .filter(|s| s.starts_with("PATCH"))
        .count()
}

#[test]
fn the_record_follows_the_tenant_once_and_a_rerun_changes_nothing() {
    let service = Arc::new(Mutex::new(Service {
        records: vec![record(789, "active")],
        ..Service::default()
    }));
    let addr = start(service.clone());
    let run = Run::new(TOKEN);

    // Active and already so: looked up, nothing patched.
    let (code, out) = run.website_status(addr, Some("789"), "active");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("website-status: unchanged"), "{out}");
    assert_eq!(patches(&service), 0);
    {
        let s = service.lock().unwrap();
        assert_eq!(
            s.seen[0],
            "GET /api/v1/websites?domain=abc-corporation.collectverything.com"
        );
    }

    // Cancelled: the seed's soft delete, once.
    let (code, out) = run.website_status(addr, Some("789"), "deprovisioning");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("(789) deprovisioning: updated"), "{out}");
    assert_eq!(patches(&service), 1);
    assert_eq!(
        service.lock().unwrap().records[0]["status"],
        "deprovisioning"
    );
    let (code, out) = run.website_status(addr, Some("789"), "deprovisioning");
    assert_eq!(code, 0, "{out}");
    assert_eq!(patches(&service), 1, "a re-run sends no PATCH");

    // Reinstated, the record looked up by domain (no id recorded), the list wrapped in `data`.
    service.lock().unwrap().wrapped = true;
    let (code, out) = run.website_status(addr, None, "active");
    assert_eq!(code, 0, "{out}");
    assert_eq!(patches(&service), 2);
    assert_eq!(service.lock().unwrap().records[0]["status"], "active");
    assert!(!out.contains(TOKEN), "the token is never printed: {out}");
}

#[test]
fn a_wrong_token_an_unknown_record_or_two_records_are_refused_with_nothing_changed() {
    let service = Arc::new(Mutex::new(Service {
        records: vec![record(789, "active")],
        ..Service::default()
    }));
    let addr = start(service.clone());

    let wrong = Run::new("another-token-0123456789abcdef");
    let (code, out) = wrong.website_status(addr, Some("789"), "deprovisioning");
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("refused the tenant's token"), "{out}");

    let run = Run::new(TOKEN);
    let (code, out) = run.website_status(addr, Some("790"), "deprovisioning");
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("790") && out.contains("id 789"), "{out}");

    service.lock().unwrap().records.push(record(791, "active"));
    let (code, out) = run.website_status(addr, None, "deprovisioning");
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("2 website records") && out.contains("id 791"),
        "{out}"
    );

    assert_eq!(patches(&service), 0);
    assert!(
        service
            .lock()
            .unwrap()
            .records
            .iter()
            .all(|r| r["status"] == "active")
    );
}
