//! The lifecycle reports of tenants' Jobs, over real HTTP on 127.0.0.1 against a real git
//! repository (docs/lifecycle.md): each report signed with its tenant's key, committed to the
//! tenant file with the report in the commit; a repeat is a no-op; a report signed with
//! another tenant's key, for an unknown tenant, before the deletion date or out of order is
//! refused with nothing changed.

use crate::serve_support;

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use provisio::services::serve::{self, LIFECYCLE_PREFIX, Running, auth::Secret};
use provisio_core::lifecycle::signature;
use serde_json::{Value, json};
use serve_support::*;

const MASTER: &str = "test-report-master";
const CAFE: &str = "cafe-creme-93b31b";
const ABC: &str = "abc-corporation-7f3a9c";
const NORD: &str = "nordwind-logistik-7ace77";

fn start_at(f: &Fixture, at: DateTime<Utc>) -> Running {
    let mut c = f.config();
    c.report_secrets = vec![Secret::new(MASTER).unwrap()];
    c.clock = Arc::new(move || at);
    serve::spawn(c, "127.0.0.1:0".parse().unwrap(), 2).unwrap()
}

/// A lifecycle request to `tenant`'s route, signed with the key of `signer` derived from
/// `master`, at `at` (unix seconds).
fn signed(
    addr: SocketAddr,
    method: &str,
    tenant: &str,
    signer: &str,
    master: &str,
    at: i64,
    body: &Value,
) -> Answer {
    let (path, bytes) = if method == "GET" {
        (format!("{LIFECYCLE_PREFIX}{tenant}"), Vec::new())
    } else {
        (
            format!("{LIFECYCLE_PREFIX}{tenant}/reports"),
            body.to_string().into_bytes(),
        )
    };
    let key = signature::derive_key(master.as_bytes(), signer);
    let sig = signature::header(&key, signer, at, method, &path, &bytes);
    request(
        &agent(),
        method,
        addr,
        &path,
        &[
            (signature::HEADER, sig.as_str()),
            ("content-type", "application/json"),
        ],
        &bytes,
    )
}

/// A report for `tenant`, signed with its own key at the fixture's `now`.
fn report(addr: SocketAddr, tenant: &str, body: &Value) -> Answer {
    signed(
        addr,
        "POST",
        tenant,
        tenant,
        MASTER,
        now().timestamp(),
        body,
    )
}

fn head(f: &Fixture) -> String {
    f.repo().head().unwrap().map(|o| o.to_string()).unwrap()
}

/// The committed tenant file, quotes dropped (the editor quotes timestamps and ids).
fn tenant_file(f: &Fixture, id: &str) -> String {
    f.committed(&format!("registry/tenants/{id}.yaml"))
        .unwrap()
        .replace('"', "")
}

fn welcome(id: &str) -> Value {
    json!({"kind": "welcome-sent", "id": id, "at": "2025-06-15T11:59:00Z",
           "messageId": "<welcome.cafe-creme-93b31b@collectverything.com>"})
}

fn backup(id: &str, sha: &str) -> Value {
    json!({"kind": "backup-completed", "id": id, "at": "2025-07-15T00:41:07Z",
           "location": format!("s3://ecommerce-tenant-archives/{NORD}/20250715T000312Z/"),
           "manifestSha256": sha, "files": 4, "bytes": 350689})
}

#[test]
fn activation_reports_are_committed_once_with_the_report_in_the_commit() {
    let f = Fixture::new();
    let server = start_at(&f, now());
    let before = f.commits().len();

    let a = report(server.addr(), CAFE, &welcome("welcome-sent:job-1"));
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["recorded"], true);
    assert_eq!(a.json()["lifecycle"]["status"], "provisioning");
    assert_eq!(
        a.json()["lifecycle"]["activation"]["welcomeSent"],
        "2025-06-15T11:59:00Z"
    );
    let text = tenant_file(&f, CAFE);
    assert!(text.contains("welcomeSent: 2025-06-15T11:59:00Z"), "{text}");
    assert!(text.contains("status: provisioning"), "{text}");
    let commits = f.commits();
    assert_eq!(commits.len(), before + 1);
    let message = &commits[0];
    assert!(
        message.starts_with(&format!("lifecycle: {CAFE} welcome-sent")),
        "{message}"
    );
    // The report's JSON is in the commit, and its trailer names it.
    assert!(
        message.contains("\"messageId\": \"<welcome.cafe-creme-93b31b@collectverything.com>\""),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "Provisio-Report: {CAFE} welcome-sent welcome-sent:job-1 "
        )),
        "{message}"
    );

    // The same report again (a retried pod): 200, not recorded, no commit.
    let again = report(server.addr(), CAFE, &welcome("welcome-sent:job-1"));
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json()["recorded"], false);
    // The same effect under another id (a second activate Job): also a repeat.
    let other = report(server.addr(), CAFE, &welcome("welcome-sent:job-2"));
    assert_eq!(other.status, 200, "{}", other.body);
    assert_eq!(other.json()["recorded"], false);
    assert_eq!(f.commits().len(), before + 1);

    let act = json!({"kind": "activated", "id": "activated:job-1", "at": "2025-06-15T11:59:30Z",
                     "website": {"id": "1001"}});
    let a = report(server.addr(), CAFE, &act);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["recorded"], true);
    assert_eq!(a.json()["lifecycle"]["status"], "active");
    let text = tenant_file(&f, CAFE);
    assert!(text.contains("status: active"), "{text}");
    assert!(text.contains("activated: 2025-06-15T11:59:30Z"), "{text}");
    assert!(text.contains("website: 1001"), "{text}");
    assert_eq!(f.commits().len(), before + 2);
    assert!(
        f.commits()[0].starts_with(&format!("lifecycle: {CAFE} activated → active")),
        "{}",
        f.commits()[0]
    );

    // The records, read back with the same signature.
    let v = signed(
        server.addr(),
        "GET",
        CAFE,
        CAFE,
        MASTER,
        now().timestamp(),
        &Value::Null,
    );
    assert_eq!(v.status, 200, "{}", v.body);
    assert_eq!(v.json()["status"], "active");
    assert_eq!(v.json()["activation"]["website"], "1001");
    // A retried pod of the same Job: the same id, its own `at`; the effect is recorded.
    let mut retried = act.clone();
    retried["at"] = json!("2025-06-15T11:59:45Z");
    let r = report(server.addr(), CAFE, &retried);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["recorded"], false);
    // The same id for another report is a reused id, not a repeat.
    let reused = json!({"kind": "welcome-sent", "id": "activated:job-1",
                        "at": "2025-06-15T11:59:50Z", "messageId": "<other@collectverything.com>"});
    let r = report(server.addr(), CAFE, &reused);
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.error().0, "report_id_reused");
    assert_eq!(f.commits().len(), before + 2);

    // The whole registry still validates after the reports.
    provisio::io::registry_dir::load_dir(&f.registry)
        .unwrap()
        .into_result()
        .unwrap();
    server.stop().unwrap();
}

#[test]
fn a_report_signed_with_another_tenants_key_or_for_an_unknown_tenant_is_refused() {
    let f = Fixture::new();
    let server = start_at(&f, now());
    let (before, file) = (head(&f), tenant_file(&f, CAFE));
    let t = now().timestamp();

    // Tenant A's (abc's) valid key, for tenant B's (cafe's) route.
    let a = signed(
        server.addr(),
        "POST",
        CAFE,
        ABC,
        MASTER,
        t,
        &welcome("welcome-sent:x"),
    );
    assert_eq!(a.status, 403, "{}", a.body);
    assert_eq!(a.error().0, "wrong_tenant");
    let m = a.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(m.contains(ABC) && m.contains(CAFE), "{m}");
    // Reading B's records with A's key: refused the same way.
    let g = signed(server.addr(), "GET", CAFE, ABC, MASTER, t, &Value::Null);
    assert_eq!(g.status, 403, "{}", g.body);

    // A key derived from another master (a forged one): unauthorized.
    let forged = signed(
        server.addr(),
        "POST",
        CAFE,
        CAFE,
        "not-the-master",
        t,
        &welcome("welcome-sent:x"),
    );
    assert_eq!(forged.status, 401, "{}", forged.body);
    assert_eq!(forged.error().0, "unauthorized");
    // A signature from a Job whose clock is 10 minutes off.
    let late = signed(
        server.addr(),
        "POST",
        CAFE,
        CAFE,
        MASTER,
        t - 600,
        &welcome("welcome-sent:x"),
    );
    assert_eq!(late.status, 401, "{}", late.body);
    assert_eq!(late.error().0, "signature_expired");
    // No signature at all.
    let none = request(
        &agent(),
        "POST",
        server.addr(),
        &format!("{LIFECYCLE_PREFIX}{CAFE}/reports"),
        &[("content-type", "application/json")],
        welcome("welcome-sent:x").to_string().as_bytes(),
    );
    assert_eq!(none.status, 401, "{}", none.body);

    // A tenant the registry does not have (the signature is valid for that id).
    let unknown = report(server.addr(), "nobody-000000", &welcome("welcome-sent:x"));
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert_eq!(unknown.error().0, "unknown_tenant");

    // A body that is not a report, properly signed.
    let bad = report(
        server.addr(),
        CAFE,
        &json!({"kind": "exploded", "id": "x", "at": "2025-06-15T11:00:00Z"}),
    );
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert_eq!(bad.error(), ("unknown_kind".into(), Some("kind".into())));

    assert_eq!(head(&f), before, "nothing committed");
    assert_eq!(tenant_file(&f, CAFE), file);
    server.stop().unwrap();
}

#[test]
fn a_server_without_a_report_secret_refuses_every_report() {
    let f = Fixture::new();
    let server = f.start();
    let a = report(server.addr(), CAFE, &welcome("welcome-sent:x"));
    assert_eq!(a.status, 401, "{}", a.body);
    let m = a.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(m.contains("PROVISIO_REPORT_SECRET"), "{m}");
    server.stop().unwrap();
}

#[test]
fn a_backup_is_recorded_only_after_the_deletion_date_and_never_replaced() {
    let f = Fixture::new();
    let sha = "a4eb82fc5de84f24d591929c4a477cc30ca8f75ce5026888193f7f1c279011c2";
    let before = head(&f);

    // Serve's clock before nordwind's deletion date (2025-07-15): not due.
    let server = start_at(&f, now());
    let mut body = backup("backup-completed:job-1", sha);
    body["at"] = json!("2025-06-15T11:59:00Z");
    let early = report(server.addr(), NORD, &body);
    assert_eq!(early.status, 409, "{}", early.body);
    assert_eq!(early.error().0, "not_due");
    // A report dated past serve's clock (and its 300 s of skew) is refused as such.
    let future = report(server.addr(), NORD, &backup("backup-completed:job-1", sha));
    assert_eq!(future.status, 422, "{}", future.body);
    assert_eq!(
        future.error(),
        ("invalid_field".to_owned(), Some("at".to_owned()))
    );
    assert!(
        future.body.contains("later than serve's clock"),
        "{}",
        future.body
    );
    // Out of order: the purge steps need a recorded backup first.
    let pruned = report(
        server.addr(),
        NORD,
        &json!({"kind": "workloads-pruned", "id": "workloads-pruned:job-1", "at": "2025-06-15T11:00:00Z"}),
    );
    assert_eq!(pruned.status, 409, "{}", pruned.body);
    assert_eq!(pruned.error().0, "invalid_transition");
    assert_eq!(head(&f), before);
    server.stop().unwrap();

    // After the date: recorded, the tenant is purging at step `workloads`.
    let after: DateTime<Utc> = "2025-07-15T01:00:00Z".parse().unwrap();
    let at = after.timestamp();
    let server = start_at(&f, after);
    let post_at = |addr, body: &Value| signed(addr, "POST", NORD, NORD, MASTER, at, body);
    let ok = post_at(server.addr(), &backup("backup-completed:job-1", sha));
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["recorded"], true);
    assert_eq!(ok.json()["lifecycle"]["status"], "purging");
    let text = tenant_file(&f, NORD);
    assert!(text.contains("status: purging"), "{text}");
    assert!(text.contains(&format!("manifestSha256: {sha}")), "{text}");
    assert!(text.contains("step: workloads"), "{text}");
    let recorded = head(&f);
    server.stop().unwrap();

    // After a restart the report id is known from the commit's trailer: a repeat.
    let server = start_at(&f, after);
    let again = signed(
        server.addr(),
        "POST",
        NORD,
        NORD,
        MASTER,
        at,
        &backup("backup-completed:job-1", sha),
    );
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json()["recorded"], false);
    // Another backup (another hash) never replaces the recorded one.
    let other = "b".repeat(64);
    let conflict = signed(
        server.addr(),
        "POST",
        NORD,
        NORD,
        MASTER,
        at,
        &backup("backup-completed:job-2", &other),
    );
    assert_eq!(conflict.status, 409, "{}", conflict.body);
    assert_eq!(conflict.error().0, "conflicting_report");
    assert_eq!(head(&f), recorded);

    // The ordered purge: workloads → teardown → namespace → removed.
    let steps = [
        (
            json!({"kind": "workloads-pruned", "id": "workloads-pruned:job-1", "at": "2025-07-15T00:50:00Z"}),
            "step: teardown",
        ),
        (
            json!({"kind": "teardown-completed", "id": "teardown-completed:job-1", "at": "2025-07-15T00:55:00Z",
                   "removed": {"databases": 2, "mysqlUsers": 2, "vhosts": 1, "rabbitmqUsers": 1,
                               "buckets": 2, "objectVersions": 10, "minioUsers": 1, "secrets": 4}}),
            "step: namespace",
        ),
        (
            json!({"kind": "namespace-removed", "id": "namespace-removed:job-1", "at": "2025-07-15T00:58:00Z"}),
            "status: removed",
        ),
    ];
    for (body, expect) in steps {
        let a = signed(server.addr(), "POST", NORD, NORD, MASTER, at, &body);
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.json()["recorded"], true, "{}", a.body);
        let text = tenant_file(&f, NORD);
        assert!(text.contains(expect), "{expect}: {text}");
    }
    provisio::io::registry_dir::load_dir(&f.registry)
        .unwrap()
        .into_result()
        .unwrap();
    server.stop().unwrap();
}

#[test]
fn a_subscription_reinstated_before_the_deletion_date_is_active_again_and_not_after() {
    let f = Fixture::new();
    let before_file = tenant_file(&f, NORD);
    assert!(
        before_file.contains("status: deprovisioning"),
        "{before_file}"
    );

    // After the deletion date (2025-07-15): refused, nothing changed.
    let late = start_at(&f, "2025-07-15T00:00:01Z".parse().unwrap());
    let mut ev = updated("sub_nord789", "business", "evt_reinstate_late");
    ev["data"]["status"] = json!("active");
    let a = post(late.addr(), "subscription-updated", &ev);
    assert_eq!(a.status, 409, "{}", a.body);
    assert_eq!(a.error().0, "deletion_due");
    assert_eq!(tenant_file(&f, NORD), before_file);
    late.stop().unwrap();

    // Before it: active again, the cancellation gone, the activation record kept.
    let server = start_at(&f, now());
    let mut ev = updated("sub_nord789", "business", "evt_reinstate");
    ev["data"]["status"] = json!("active");
    let a = post(server.addr(), "subscription-updated", &ev);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["status"], "active");
    let text = tenant_file(&f, NORD);
    assert!(text.contains("status: active"), "{text}");
    assert!(!text.contains("cancellation"), "{text}");
    assert!(text.contains("activated: 2024-11-20T14:12:40Z"), "{text}");
    provisio::io::registry_dir::load_dir(&f.registry)
        .unwrap()
        .into_result()
        .unwrap();
    server.stop().unwrap();
}

/// `provisio report`, the signed client the README uses to play the Jobs' part.
fn report_cli(addr: SocketAddr, env: (&str, &str), args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_provisio"))
        .arg("report")
        .args(args)
        .args([
            "--url",
            &format!("http://{addr}"),
            "--now",
            "2025-06-15T12:00:00Z",
        ])
        .env_remove("PROVISIO_REPORT_SECRET")
        .env_remove("PROVISIO_REPORT_KEY")
        .env(env.0, env.1)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_report_command_signs_sends_and_maps_the_answers_to_exit_codes() {
    let f = Fixture::new();
    let server = start_at(&f, now());
    let master = ("PROVISIO_REPORT_SECRET", MASTER);
    let welcome = [
        "welcome-sent",
        "--tenant",
        CAFE,
        "--key-from-master",
        "--id",
        "welcome-sent:cli",
        "--message-id",
        "<welcome.cafe-creme-93b31b@collectverything.com>",
    ];
    let (code, err) = report_cli(server.addr(), master, &welcome);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("welcome-sent recorded (provisioning: provisioning)"),
        "{err}"
    );
    assert!(tenant_file(&f, CAFE).contains("welcomeSent: 2025-06-15T12:00:00Z"));
    let (code, err) = report_cli(server.addr(), master, &welcome);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("was already recorded"), "{err}");
    let head_after = head(&f);

    // The tenant's own key, as a Job holds it, works too; abc's key does not sign for cafe.
    let own = hex::encode(signature::derive_key(MASTER.as_bytes(), CAFE));
    let (code, err) = report_cli(
        server.addr(),
        ("PROVISIO_REPORT_KEY", &own),
        &["activated", "--tenant", CAFE, "--website", "77"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(tenant_file(&f, CAFE).contains("status: active"));
    let other = hex::encode(signature::derive_key(MASTER.as_bytes(), ABC));
    let before = head(&f);
    let (code, err) = report_cli(
        server.addr(),
        ("PROVISIO_REPORT_KEY", &other),
        &["failed", "--tenant", CAFE, "--reason", "x"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unauthorized"), "{err}");
    // A backup before the deletion date: refused by serve's guard, exit 4.
    let (code, err) = report_cli(
        server.addr(),
        master,
        &[
            "backup-completed",
            "--tenant",
            NORD,
            "--key-from-master",
            "--location",
            "s3://ecommerce-tenant-archives/nordwind-logistik-7ace77/b1/",
            "--manifest-sha256",
            &"a".repeat(64),
            "--files",
            "1",
            "--bytes",
            "10",
        ],
    );
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("not_due"), "{err}");
    // A report missing its kind's field never leaves.
    let (code, err) = report_cli(
        server.addr(),
        master,
        &["failed", "--tenant", CAFE, "--key-from-master"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("reason"), "{err}");
    assert_eq!(head(&f), before);
    assert_ne!(before, head_after);
    server.stop().unwrap();
}

/// The key chain of a tenant's Jobs: `setup credentials` (the PreSync Job, with the spec
/// rendered for the tenant and the master secret) stores the tenant's report key; a report
/// signed with that stored key is accepted by serve, which only knows the master.
#[test]
fn the_report_key_stored_by_setup_credentials_is_accepted_by_serve() {
    use provisio::setup::secrets::{FileStore, SecretStore};
    use provisio_core::plan::lifecycle::CredentialsSpec;

    let f = Fixture::new();
    let (reg, _) = provisio::ops::load::load(&f.registry).unwrap();
    let plan = provisio_core::plan::plan_tenant(&reg, &reg.tenants[CAFE], now());
    let spec = CredentialsSpec::from_plan(&plan);
    let dir = tempfile::tempdir().unwrap();
    let spec_file = dir.path().join("spec.json");
    std::fs::write(&spec_file, serde_json::to_string_pretty(&spec).unwrap()).unwrap();
    let store_dir = dir.path().join("store");
    let setup = |master: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_provisio"))
            .args(["setup", "credentials", "--spec"])
            .arg(&spec_file)
            .arg("--secret-store")
            .arg(format!("file:{}", store_dir.display()))
            .env("PROVISIO_REPORT_SECRET", master)
            .output()
            .unwrap()
    };
    let out = setup(MASTER);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("credentials: 3 change(s)"), "{stdout}");
    let again = setup(MASTER);
    assert!(String::from_utf8_lossy(&again.stdout).contains("credentials: unchanged"));
    // A Job run with another master never replaces the stored key.
    let other = setup("another-master");
    assert_eq!(other.status.code(), Some(2));
    let store = FileStore::new(&store_dir);
    let stored = store
        .get(&spec.credentials.report.secret_key)
        .unwrap()
        .unwrap();
    assert_eq!(stored["tenant"], CAFE);
    // Nothing secret on the Job's output.
    let password = store
        .get(&spec.credentials.admin.secret_key)
        .unwrap()
        .unwrap()["password"]
        .clone();
    assert!(!stdout.contains(&password) && !stdout.contains(&stored["key"]));

    let server = start_at(&f, now());
    let (code, err) = report_cli(
        server.addr(),
        ("PROVISIO_REPORT_KEY", &stored["key"]),
        &[
            "failed",
            "--tenant",
            CAFE,
            "--reason",
            "setup-mysql: unreachable",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(tenant_file(&f, CAFE).contains("status: failed"));
    server.stop().unwrap();
}

/// A Kubernetes API double: `GET path` → the JSON stored for it, 404 otherwise.
fn kube_double(
    objects: Arc<std::sync::Mutex<std::collections::BTreeMap<String, Value>>>,
) -> SocketAddr {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut h = String::new();
            while reader.read_line(&mut h).is_ok() && h.trim_end() != "" {
                h.clear();
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
            let found = objects.lock().unwrap().get(&path).cloned();
            let (status, body) = match found {
                Some(v) => (200, v.to_string()),
                None => (404, json!({"kind": "Status", "code": 404}).to_string()),
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

/// The purge checks verify their step on the cluster before they report it: something left
/// is refused (exit 4) naming it, nothing recorded; once it is gone the step is reported, and
/// a retried pod of the same Job is answered as a repeat. The namespace check, the tenant's
/// last report, deletes the report key once serve recorded it.
#[test]
fn purge_checks_report_a_step_only_once_the_cluster_shows_it_done() {
    use provisio::setup::secrets::{FileStore, SecretStore};
    let f = Fixture::new();
    let real_now = chrono::Utc::now();
    let server = start_at(&f, real_now);
    let t = real_now.timestamp();
    let sha = "a4eb82fc5de84f24d591929c4a477cc30ca8f75ce5026888193f7f1c279011c2";
    let ok = signed(
        server.addr(),
        "POST",
        NORD,
        NORD,
        MASTER,
        t,
        &backup("backup-completed:j", sha),
    );
    assert_eq!(ok.status, 200, "{}", ok.body);

    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path().join("store"));
    let key_secret = format!("/e-commerce/tenants/{NORD}/report");
    store_report_key(&store, &key_secret, MASTER, NORD);
    let ns = format!("e-commerce-{NORD}");
    let objects = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
    let list = |items: Value| json!({"kind": "List", "items": items});
    let deployments = format!("/apis/apps/v1/namespaces/{ns}/deployments");
    let pods = format!("/api/v1/namespaces/{ns}/pods");
    objects.lock().unwrap().insert(
        deployments.clone(),
        list(json!([{"metadata": {"name": "api-gateway"}}])),
    );
    objects.lock().unwrap().insert(
        pods.clone(),
        list(json!([{"metadata": {"name": "backup-x"}, "status": {"phase": "Succeeded"}}])),
    );
    let kube = kube_double(objects.clone());
    let check = |check: &str| {
        let spec = json!({"version": 1, "tenant": NORD, "check": check, "namespace": ns,
            "report": {"url": format!("http://{}{LIFECYCLE_PREFIX}{NORD}/reports", server.addr()),
                       "keySecret": key_secret}});
        let file = dir.path().join(format!("{check}.json"));
        std::fs::write(&file, spec.to_string()).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_provisio"))
            .args(["purge-check", "--spec"])
            .arg(&file)
            .arg("--secret-store")
            .arg(format!("file:{}", dir.path().join("store").display()))
            .args(["--attempts", "2", "--backoff-ms", "10"])
            .env("PROVISIO_KUBE_API", format!("http://{kube}"))
            .env("PROVISIO_JOB_UID", format!("uid-{check}"))
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // A Deployment still there: refused, nothing recorded.
    let before = head(&f);
    let (code, err) = check("workloads-gone");
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("Deployment api-gateway") && !err.contains("backup-x"),
        "{err}"
    );
    assert_eq!(head(&f), before);
    // Pruned (a completed Job's pod does not count): reported, step teardown.
    objects.lock().unwrap().insert(deployments, list(json!([])));
    let (code, err) = check("workloads-gone");
    assert_eq!(code, 0, "{err}");
    assert!(tenant_file(&f, NORD).contains("step: teardown"));
    // The same Job's pod again (its answer lost): a repeat.
    let (code, err) = check("workloads-gone");
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("was already recorded"), "{err}");
    assert!(store.get(&key_secret).unwrap().is_some());

    let done = json!({"kind": "teardown-completed", "id": "teardown-completed:j",
        "at": real_now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "removed": {"databases": 2, "mysqlUsers": 2, "vhosts": 1, "rabbitmqUsers": 1,
                    "buckets": 2, "objectVersions": 0, "minioUsers": 1, "secrets": 4}});
    let a = signed(server.addr(), "POST", NORD, NORD, MASTER, t, &done);
    assert_eq!(a.status, 200, "{}", a.body);
    // The namespace still answers: not removed yet.
    let namespace = format!("/api/v1/namespaces/{ns}");
    objects
        .lock()
        .unwrap()
        .insert(namespace.clone(), json!({"kind": "Namespace"}));
    let before = head(&f);
    let (code, err) = check("namespace-gone");
    assert_eq!(code, 4, "{err}");
    assert!(err.contains(&format!("Namespace {ns}")), "{err}");
    assert_eq!(head(&f), before);
    objects.lock().unwrap().remove(&namespace);
    // The key is still there for it (the teardown keeps it): reported, then deleted — the
    // tenant's last report.
    assert!(store.get(&key_secret).unwrap().is_some());
    let (code, err) = check("namespace-gone");
    assert_eq!(code, 0, "{err}");
    assert!(tenant_file(&f, NORD).contains("status: removed"));
    assert!(store.get(&key_secret).unwrap().is_none());
    server.stop().unwrap();
}

/// The SyncFail Job: the first failed Job of the shared namespace, with its pod's termination
/// message, is the reason serve records (`failed`, attempts counted per Job).
#[test]
fn report_sync_failed_records_why_the_sync_failed() {
    use provisio::setup::secrets::FileStore;
    let f = Fixture::new();
    let real_now = chrono::Utc::now();
    let server = start_at(&f, real_now);
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path().join("store"));
    let key_secret = format!("/e-commerce/tenants/{CAFE}/report");
    store_report_key(&store, &key_secret, MASTER, CAFE);
    let objects = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
    let shared = "e-commerce-shared";
    objects.lock().unwrap().insert(
        format!("/apis/batch/v1/namespaces/{shared}/jobs/setup-mysql-{CAFE}"),
        json!({"status": {"conditions": [{"type": "Complete", "status": "True"}]}}),
    );
    objects.lock().unwrap().insert(
        format!("/apis/batch/v1/namespaces/{shared}/jobs/setup-rabbitmq-{CAFE}"),
        json!({"status": {"conditions": [{"type": "Failed", "status": "True",
            "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}}),
    );
    objects.lock().unwrap().insert(
        format!("/api/v1/namespaces/{shared}/pods?labelSelector=job-name%3Dsetup-rabbitmq-{CAFE}"),
        json!({"items": [{"status": {"containerStatuses": [{"state": {"terminated": {
            "exitCode": 3, "message": "rabbitmq: cannot reach rabbitmq.e-commerce-shared:15672\n(after 6 attempt(s))"}}}]}}]}),
    );
    let kube = kube_double(objects.clone());
    let spec = json!({"version": 1, "tenant": CAFE,
        "report": {"url": format!("http://{}{LIFECYCLE_PREFIX}{CAFE}/reports", server.addr()),
                   "keySecret": key_secret},
        "inspect": {"sharedNamespace": shared, "tenantNamespace": format!("e-commerce-{CAFE}"),
                    "jobs": [format!("setup-mysql-{CAFE}"), format!("setup-rabbitmq-{CAFE}")],
                    "deployments": ["api-gateway"], "certificate": "tenant-tls"}});
    let file = dir.path().join("spec.json");
    std::fs::write(&file, spec.to_string()).unwrap();
    let run = |uid: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_provisio"))
            .args(["report", "sync-failed", "--spec"])
            .arg(&file)
            .arg("--secret-store")
            .arg(format!("file:{}", dir.path().join("store").display()))
            .env("PROVISIO_KUBE_API", format!("http://{kube}"))
            .env("PROVISIO_JOB_UID", uid)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run("uid-1");
    assert_eq!(code, 0, "{err}");
    let text = tenant_file(&f, CAFE);
    assert!(text.contains("status: failed"), "{text}");
    assert!(
        text.contains(&format!("reason: setup-rabbitmq-{CAFE}: rabbitmq: cannot reach rabbitmq.e-commerce-shared:15672 / (after 6 attempt(s))")),
        "{text}"
    );
    assert!(text.contains("attempts: 1"), "{text}");
    // The same Job's pod again: a repeat; the next failed sync (another Job): attempt 2.
    let (code, _) = run("uid-1");
    assert_eq!(code, 0);
    assert!(tenant_file(&f, CAFE).contains("attempts: 1"));
    let (code, err) = run("uid-2");
    assert_eq!(code, 0, "{err}");
    assert!(tenant_file(&f, CAFE).contains("attempts: 2"));
    server.stop().unwrap();
}

/// `failed` reports through serve, `n` of them, each from another Job (its own id).
fn fail(addr: SocketAddr, tenant: &str, n: std::ops::RangeInclusive<u32>) -> Vec<Answer> {
    n.map(|i| {
        let a = report(
            addr,
            tenant,
            &json!({"kind": "failed", "id": format!("failed:job-{i}"), "at": "2025-06-15T11:50:00Z",
                    "reason": format!("setup-mysql-{tenant}: cannot reach mysql (attempt {i})")}),
        );
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.json()["recorded"], true, "{}", a.body);
        a
    })
    .collect()
}

/// The tree `provisio generate --now` renders for `tenant` from serve's registry: file names.
fn rendered(f: &Fixture, tenant: &str) -> Vec<String> {
    let out = f.dir.path().join("out");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_provisio"))
        .arg("generate")
        .arg("--registry")
        .arg(&f.registry)
        .arg("--out")
        .arg(&out)
        .args(["--now", "2025-06-15T12:00:00Z"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut names: Vec<String> = std::fs::read_dir(out.join("tenants-out").join(tenant))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn the_automatic_rollback_policy_rolls_back_at_the_nth_failed_report_through_serve() {
    let f = Fixture::edited(|registry| {
        let path = registry.join("platform.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("afterFailedAttempts: 0"));
        std::fs::write(
            &path,
            text.replace("afterFailedAttempts: 0", "afterFailedAttempts: 3"),
        )
        .unwrap();
    });
    let server = start_at(&f, now());
    // N - 1 failures: failed, counted, nothing rolled back; the full tree stays.
    fail(server.addr(), CAFE, 1..=2);
    let text = tenant_file(&f, CAFE);
    assert!(text.contains("status: failed"), "{text}");
    assert!(text.contains("attempts: 2"), "{text}");
    assert!(
        !text.contains("rollback:") && !text.contains("purge:"),
        "{text}"
    );
    assert!(rendered(&f, CAFE).contains(&"deployments".to_owned()));
    // The N-th: serve rolls the tenant back in the same commit, the report in its message.
    let answers = fail(server.addr(), CAFE, 3..=3);
    assert_eq!(answers[0].json()["lifecycle"]["status"], "purging");
    let text = tenant_file(&f, CAFE);
    assert!(text.contains("status: purging"), "{text}");
    assert!(
        text.contains("reason: automatic after 3 failed sync attempts"),
        "{text}"
    );
    assert!(text.contains("step: workloads"), "{text}");
    assert!(!text.contains("backup:"), "{text}");
    let message = f.commits().into_iter().next().unwrap();
    assert!(message.contains("failed:job-3"), "{message}");
    // The rollback way: the tree is reduced to the purge (no workloads), then the ordered
    // removal without a backup, each step reported to serve.
    let tree = rendered(&f, CAFE);
    assert!(tree.contains(&"purge.yaml".to_owned()), "{tree:?}");
    assert!(!tree.contains(&"deployments".to_owned()), "{tree:?}");
    for (body, expect) in [
        (
            json!({"kind": "workloads-pruned", "id": "workloads-pruned:job-1", "at": "2025-06-15T11:55:00Z"}),
            "step: teardown",
        ),
        (
            json!({"kind": "teardown-completed", "id": "teardown-completed:job-1", "at": "2025-06-15T11:56:00Z",
                   "removed": {"databases": 4, "mysqlUsers": 4, "vhosts": 1, "rabbitmqUsers": 1,
                               "buckets": 3, "objectVersions": 0, "minioUsers": 1, "secrets": 9}}),
            "step: namespace",
        ),
        (
            json!({"kind": "namespace-removed", "id": "namespace-removed:job-1", "at": "2025-06-15T11:57:00Z"}),
            "status: removed",
        ),
    ] {
        let a = report(server.addr(), CAFE, &body);
        assert_eq!(a.status, 200, "{}", a.body);
        assert!(tenant_file(&f, CAFE).contains(expect), "{expect}");
    }
    assert!(rendered(&f, CAFE).is_empty());
    server.stop().unwrap();

    // With the policy off (the example's default), failures never roll back.
    let f = Fixture::new();
    let server = start_at(&f, now());
    fail(server.addr(), CAFE, 1..=5);
    let text = tenant_file(&f, CAFE);
    assert!(text.contains("status: failed"), "{text}");
    assert!(text.contains("attempts: 5"), "{text}");
    assert!(
        !text.contains("rollback:") && !text.contains("purge:"),
        "{text}"
    );
    server.stop().unwrap();
}
