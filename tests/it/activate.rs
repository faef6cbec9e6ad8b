//! `provisio activate` against real local servers: serve (its view and the reports, committed
//! to git), an SMTP sink (aiosmtpd, Maildir), an HTTPS `/health` with a test CA, and a
//! websites-service double that checks method, path, bearer and body. The database, bucket,
//! vhost probes run in `activate_probes.rs` (real MariaDB, RabbitMQ and moto); the spec here
//! carries the health probe only.

use crate::serve_support;
use crate::support_setup;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use provisio::services::serve::LIFECYCLE_PREFIX;
use provisio::setup::secrets::{FileStore, SecretStore};
use provisio_core::plan::lifecycle::ActivationSpec;
use serde_json::{Value, json};
use serve_support::*;
use support_setup::{health_endpoint, smtp_sink};

const MASTER: &str = "test-report-master";
const CAFE: &str = "cafe-creme-93b31b";
const TOKEN: &str = "internal-token-0123456789";
const PASSWORD: &str = "Tq7-admin.Pw#9xK2mZr4";

/// What the websites double saw and holds.
#[derive(Default)]
struct Websites {
    requests: Vec<(String, String, String, String)>,
    records: Vec<Value>,
}

/// The websites-service double: `GET /api/v1/websites?domain=` lists, `POST /api/v1/websites`
/// creates (the first POST's answer is lost: the connection closes), anything else 404; every
/// request is recorded with its authorization header and body.
fn websites_double(state: Arc<Mutex<Websites>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let (mut auth, mut len) = (String::new(), 0usize);
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim_end().is_empty() {
                    break;
                }
                let (k, v) = h.split_once(':').unwrap_or((&h, ""));
                match k.to_ascii_lowercase().as_str() {
                    "authorization" => auth = v.trim().to_owned(),
                    "content-length" => len = v.trim().parse().unwrap_or(0),
                    _ => {}
                }
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let body = String::from_utf8_lossy(&body).into_owned();
            let mut parts = line.split_whitespace();
            let (method, path) = (
                parts.next().unwrap_or("").to_owned(),
                parts.next().unwrap_or("").to_owned(),
            );
            let mut s = state.lock().unwrap();
            s.requests
                .push((method.clone(), path.clone(), auth.clone(), body.clone()));
            let (status, answer) = if auth != format!("Bearer {TOKEN}") {
                (401, json!({"message": "Unauthenticated."}))
            } else if method == "GET" && path.starts_with("/api/v1/websites?domain=") {
                (200, json!({"data": s.records}))
            } else if method == "POST" && path == "/api/v1/websites" {
                let mut record: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                record["id"] = json!(789);
                s.records.push(record.clone());
                if s.records.len() == 1 {
                    continue; // the answer is lost: the connection closes unanswered
                }
                (201, json!({"data": record}))
            } else {
                (404, json!({"message": "Not Found"}))
            };
            drop(s);
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

fn messages(maildir: &Path) -> Vec<Value> {
    if !maildir.join("new").exists() {
        return Vec::new();
    }
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/tools/read_maildir.py"
        ))
        .arg(maildir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn activation_registers_the_website_sends_one_welcome_email_and_reports_active() {
    let f = Fixture::new();
    let server = f.start_for_jobs(MASTER);
    let dir = tempfile::tempdir().unwrap();

    // The HTTPS health endpoint, certified by a test CA, answering 503 twice first.
    let (health_url, _health) = health_endpoint(dir.path(), 2);
    let tls = dir.path().join("tls");
    // The SMTP sink.
    let maildir = dir.path().join("maildir");
    let (smtp_port, _smtp) = smtp_sink(&maildir);
    let websites = Arc::new(Mutex::new(Websites::default()));
    let websites_addr = websites_double(websites.clone());

    // The spec rendered for the tenant, pointed at the local servers.
    let (reg, _) = provisio::ops::load::load(&f.registry).unwrap();
    let plan = provisio_core::plan::plan_tenant(&reg, &reg.tenants[CAFE], now());
    let mut spec = ActivationSpec::from_plan(&plan);
    spec.deadline_seconds = 60;
    spec.report.url = format!("http://{}{LIFECYCLE_PREFIX}{CAFE}/reports", server.addr());
    spec.probes.deployments.names.clear();
    spec.probes.mysql = None;
    spec.probes.s3 = None;
    spec.probes.rabbitmq = None;
    spec.probes.health.url = health_url;
    spec.grafana.objects.clear();
    let website = spec
        .website
        .as_mut()
        .expect("the example has a websites product");
    website.url = format!("http://{websites_addr}/api/v1/websites");
    spec.welcome.smtp.host = "127.0.0.1".to_owned();
    spec.welcome.smtp.port = smtp_port;
    spec.welcome.smtp.security = "none".to_owned();
    let spec_file = dir.path().join("spec.json");
    std::fs::write(&spec_file, serde_json::to_string_pretty(&spec).unwrap()).unwrap();

    // The store as `setup credentials` leaves it.
    let store_dir = dir.path().join("store");
    let store = FileStore::new(&store_dir);
    let entry = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    store_report_key(&store, &spec.report.key_secret, MASTER, CAFE);
    store
        .create(
            &spec.welcome.admin_secret,
            &entry(&[("tenant", CAFE), ("password", PASSWORD)]),
        )
        .unwrap();
    store
        .create(
            &spec.website.as_ref().unwrap().token_secret,
            &entry(&[("tenant", CAFE), ("token", TOKEN)]),
        )
        .unwrap();

    let activate = |uid: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_provisio"))
            .args(["activate", "--spec"])
            .arg(&spec_file)
            .arg("--secret-store")
            .arg(format!("file:{}", store_dir.display()))
            .arg("--ca-file")
            .arg(tls.join("ca.pem"))
            .arg("--termination-log")
            .arg(dir.path().join("termination-log"))
            .args(["--attempts", "3", "--backoff-ms", "200"])
            .env("PROVISIO_JOB_UID", uid)
            .env("PROVISIO_LOG", "trace")
            .output()
            .unwrap();
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), log)
    };

    let (code, log) = activate("uid-1");
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("activate: website 789 created"), "{log}");
    assert!(log.contains("welcome email sent"), "{log}");
    assert!(!log.contains(PASSWORD) && !log.contains(TOKEN), "{log}");

    // The websites-service: looked up, one POST whose answer was lost, looked up again.
    {
        let w = websites.lock().unwrap();
        let calls: Vec<(&str, &str)> = w
            .requests
            .iter()
            .map(|(m, p, _, _)| (m.as_str(), p.as_str()))
            .collect();
        let list = format!("/api/v1/websites?domain={}", plan.domain);
        assert_eq!(
            calls,
            [
                ("GET", list.as_str()),
                ("POST", "/api/v1/websites"),
                ("GET", list.as_str())
            ]
        );
        assert!(w.requests.iter().all(|r| r.2 == format!("Bearer {TOKEN}")));
        let body: Value = serde_json::from_str(&w.requests[1].3).unwrap();
        assert_eq!(
            body,
            json!({"name": format!("{} Store", reg.tenants[CAFE].name), "domain": plan.domain,
                   "tenant_id": CAFE, "subscription_id": reg.tenants[CAFE].subscription.value,
                   "tier": plan.tier_name, "status": "active"})
        );
        assert_eq!(w.records.len(), 1);
    }

    // Exactly one email, with the seed's content and the stored password.
    let mails = messages(&maildir);
    assert_eq!(mails.len(), 1, "{mails:?}");
    let m = &mails[0];
    assert_eq!(m["to"], spec.welcome.to);
    assert_eq!(m["messageId"], spec.welcome.message_id);
    assert!(m["subject"].as_str().unwrap().starts_with("Welcome to "));
    let body = m["body"].as_str().unwrap();
    let ctx = &spec.welcome.context;
    for needle in [
        ctx.store_url.as_str(),
        ctx.admin_url.as_str(),
        ctx.admin_username.as_str(),
        PASSWORD,
        ctx.tier.title.as_str(),
        "5. Invite your team members.",
        "Mot de passe temporaire",
        ctx.docs_url.as_str(),
    ] {
        assert!(body.contains(needle), "missing {needle} in {body}");
    }

    // serve recorded the welcome and the activation.
    let file = f
        .committed(&format!("registry/tenants/{CAFE}.yaml"))
        .unwrap()
        .replace('"', "");
    assert!(file.contains("status: active"), "{file}");
    assert!(
        file.contains("welcomeSent:") && file.contains("website: 789"),
        "{file}"
    );
    assert!(!file.contains(PASSWORD));

    // A second run (the hook again): nothing sent, no record created.
    let (code, log) = activate("uid-2");
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("already active since"), "{log}");
    assert_eq!(messages(&maildir).len(), 1);
    assert_eq!(websites.lock().unwrap().records.len(), 1);
    server.stop().unwrap();
}
