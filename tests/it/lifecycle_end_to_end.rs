//! A tenant's offboarding end to end through a real `serve` (its registry in git, its clock
//! the real one) on real servers — MariaDB, RabbitMQ, moto's S3: two tenants set up, rows in
//! their databases, objects in their buckets, messages in their queues; tenant A cancelled by
//! the billing webhook; `provisio backup` reports to serve, which commits `backup-completed`;
//! `generate --now` renders the purge; the purge check's report; `provisio teardown tenant`
//! reports to serve; the namespace check's report removes the tenant. Then nothing of A is
//! left in any server (databases, users, buckets, vhost with its queues and messages, RabbitMQ
//! user) while B's data is untouched, and the archive holds A's rows, objects (byte for byte)
//! and queue counts under the manifest serve recorded. (moto has no MinIO admin API: the
//! MinIO user's removal is covered by `setup_minio_admin.rs`, not here.)

use crate::serve_support;
use crate::support_setup;

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use mysql::prelude::Queryable;
use provisio::io::http::seg;
use provisio::services::serve::{self, LIFECYCLE_PREFIX};
use provisio::setup::aws::sha256_hex;
use provisio::setup::s3;
use provisio::setup::secrets::FileStore;
use provisio_core::lifecycle::signature;
use provisio_core::plan::lifecycle::BackupSpec;
use provisio_core::plan::setup::SetupSpec;
use serde_json::{Value, json};
use support_setup::{
    MYSQL_ADMIN_PASSWORD, MYSQL_ADMIN_USER, MariaDb, Method, Moto, RABBIT_ADMIN_PASSWORD,
    RABBIT_ADMIN_USER, RabbitMq,
};

const MASTER: &str = "test-report-master";
const A: &str = "abc-corporation-7f3a9c";
const B: &str = "cafe-creme-93b31b";
const ARCHIVE: &str = "ecommerce-tenant-archives";

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let (code, out, err) = support_setup::provisio(args, env);
    (code, format!("{out}{err}"))
}

/// A signed report for `tenant` to serve, at the real time.
fn report(addr: std::net::SocketAddr, tenant: &str, body: &Value) -> serve_support::Answer {
    let path = format!("{LIFECYCLE_PREFIX}{tenant}/reports");
    let bytes = body.to_string().into_bytes();
    let key = signature::derive_key(MASTER.as_bytes(), tenant);
    let now = chrono::Utc::now();
    let sig = signature::header(&key, tenant, now.timestamp(), "POST", &path, &bytes);
    serve_support::request(
        &serve_support::agent(),
        "POST",
        addr,
        &path,
        &[
            (signature::HEADER, sig.as_str()),
            ("content-type", "application/json"),
        ],
        &bytes,
    )
}

fn plan_spec<T>(
    registry: &Path,
    tenant: &str,
    f: impl Fn(&provisio_core::plan::TenantPlan) -> T,
) -> T {
    let (reg, _) = provisio::ops::load::load(registry).unwrap();
    let plan = provisio_core::plan::plan_tenant(&reg, &reg.tenants[tenant], chrono::Utc::now());
    f(&plan)
}

/// Points a setup or teardown spec at the local servers.
fn local(mut spec: SetupSpec, db: &MariaDb, moto: &Moto, mq: &RabbitMq) -> SetupSpec {
    if let Some(m) = spec.mysql.as_mut() {
        (m.host, m.port) = ("127.0.0.1".into(), db.port);
    }
    if let Some(s) = spec.s3.as_mut() {
        (s.host, s.port, s.use_ssl) = ("127.0.0.1".into(), moto.port, false);
    }
    if let Some(r) = spec.rabbitmq.as_mut() {
        (r.host, r.management_port) = ("127.0.0.1".into(), mq.management_port);
    }
    if let Some(a) = spec.teardown.as_mut().and_then(|t| t.archive.as_mut()) {
        a.endpoint = Some(moto.endpoint());
    }
    spec
}

fn rendered(f: &serve_support::Fixture, tenant: &str) -> Vec<String> {
    let out = f.dir.path().join("out");
    let now = chrono::Utc::now().to_rfc3339();
    let (code, log) = run(
        &[
            "generate",
            "--registry",
            f.registry.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--now",
            &now,
        ],
        &[],
    );
    assert_eq!(code, 0, "{log}");
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
fn a_cancelled_tenant_is_backed_up_and_removed_through_serve_and_nothing_of_it_remains() {
    if !support_setup::require("mariadb-dump") {
        return;
    }
    let (Some(db), Some(moto), Some(mq)) = (MariaDb::start(), Moto::start(), RabbitMq::start())
    else {
        return;
    };
    let f = serve_support::Fixture::new();
    let mut c = f.jobs_config(MASTER);
    c.grace = chrono::Duration::zero();
    let server = serve::spawn(c, "127.0.0.1:0".parse().unwrap(), 2).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let store = FileStore::new(&store_dir);
    let store_arg = format!("file:{}", store_dir.display());
    let env = [
        ("MYSQL_ADMIN_USER", MYSQL_ADMIN_USER),
        ("MYSQL_ADMIN_PASSWORD", MYSQL_ADMIN_PASSWORD),
        ("RABBITMQ_ADMIN_USER", RABBIT_ADMIN_USER),
        ("RABBITMQ_ADMIN_PASSWORD", RABBIT_ADMIN_PASSWORD),
        ("MINIO_ROOT_USER", &moto.admin.access_key),
        ("MINIO_ROOT_PASSWORD", &moto.admin.secret_key),
        ("ARCHIVE_ACCESS_KEY_ID", &moto.admin.access_key),
        ("ARCHIVE_SECRET_ACCESS_KEY", &moto.admin.secret_key),
        ("MYSQL_BACKUP_USER", MYSQL_ADMIN_USER),
        ("MYSQL_BACKUP_PASSWORD", MYSQL_ADMIN_PASSWORD),
    ];

    // Both tenants provisioned as their setup Jobs do; their report keys stored.
    let mut specs = Vec::new();
    for t in [A, B] {
        let spec = local(
            plan_spec(&f.registry, t, SetupSpec::from_plan),
            &db,
            &moto,
            &mq,
        );
        let path = support_setup::write_spec(dir.path(), &format!("setup-{t}"), &spec);
        for (service, extra) in [
            ("mysql", None),
            ("rabbitmq", None),
            ("minio", Some("--buckets-only")),
        ] {
            let mut args = vec![
                "setup",
                service,
                "--spec",
                path.to_str().unwrap(),
                "--secret-store",
                &store_arg,
            ];
            args.extend(extra);
            let (code, log) = run(&args, &env);
            assert_eq!(code, 0, "setup {service} {t}: {log}");
        }
        serve_support::store_report_key(
            &store,
            &plan_spec(&f.registry, t, |p| p.report_remote_key.clone()),
            MASTER,
            t,
        );
        specs.push(spec);
    }
    let (sa, sb) = (&specs[0], &specs[1]);

    // Data: rows in every database, objects in every bucket, messages in every queue.
    for spec in [sa, sb] {
        for d in &spec.mysql.as_ref().unwrap().databases {
            let mut c = db
                .connect(MYSQL_ADMIN_USER, MYSQL_ADMIN_PASSWORD, Some(&d.database))
                .unwrap();
            c.query_drop("CREATE TABLE notes (id INT PRIMARY KEY, note VARCHAR(80))")
                .unwrap();
            c.exec_drop(
                "INSERT INTO notes VALUES (1, ?), (2, 'Grüße ✓')",
                (format!("{} {}", spec.tenant, d.database),),
            )
            .unwrap();
        }
    }
    let s3c = moto.client("s3", "s3", &moto.admin);
    let mut objects = Vec::new();
    for spec in [sa, sb] {
        for (i, b) in spec.s3.as_ref().unwrap().buckets.iter().enumerate() {
            let body: Vec<u8> = format!("{} object {i} \u{0}\u{ff}", spec.tenant).into_bytes();
            s3::put_object(&s3c, &b.name, "docs/a b.bin", &body, None, None).unwrap();
            objects.push((spec.tenant.clone(), b.name.clone(), body));
        }
    }
    for spec in [sa, sb] {
        let r = spec.rabbitmq.as_ref().unwrap();
        for q in &r.queues {
            let key = q.routing_keys.iter().find(|k| k.ends_with(".*")).unwrap();
            let (status, body) = mq.api(
                Method::Post,
                &format!("/exchanges/{}/{}/publish", seg(&r.vhost), seg(&r.exchange)),
                Some(json!({"properties": {"delivery_mode": 2}, "routing_key": key,
                            "payload": format!("{} message", q.name), "payload_encoding": "string"})),
            );
            assert_eq!((status, &body["routed"]), (200, &json!(true)), "{body}");
        }
    }

    // Cancelled by the billing system, effective now (serve's grace: none).
    let cancel = serve_support::cancelled("sub_abc123", &chrono::Utc::now().to_rfc3339());
    let answer = serve_support::post(server.addr(), "subscription-cancelled", &cancel);
    assert!(answer.status < 300, "{} {}", answer.status, answer.body);
    let file = || {
        f.committed(&format!("registry/tenants/{A}.yaml"))
            .unwrap()
            .replace('"', "")
    };
    assert!(file().contains("status: deprovisioning"), "{}", file());
    std::thread::sleep(Duration::from_millis(1100));

    // The backup Job, as rendered for the due tenant, pointed at the local servers.
    let mut backup: BackupSpec = plan_spec(&f.registry, A, |p| BackupSpec::from_plan(p).unwrap());
    backup.report.url = format!("http://{}{LIFECYCLE_PREFIX}{A}/reports", server.addr());
    let m = backup.mysql.as_mut().unwrap();
    (m.host, m.port) = ("127.0.0.1".into(), db.port);
    let s = backup.s3.as_mut().unwrap();
    (s.host, s.port, s.use_ssl) = ("127.0.0.1".into(), moto.port, false);
    let r = backup.rabbitmq.as_mut().unwrap();
    (r.host, r.port, r.management_port) = ("127.0.0.1".into(), mq.amqp_port, mq.management_port);
    backup.archive.endpoint = Some(moto.endpoint());
    backup.archive.storage_class = None;
    assert_eq!(
        s3c.send("PUT", &format!("/{ARCHIVE}"), &[], &[], b"")
            .unwrap()
            .status,
        200
    );
    let backup_file = dir.path().join("backup.json");
    std::fs::write(&backup_file, serde_json::to_string(&backup).unwrap()).unwrap();
    let (code, log) = run(
        &[
            "backup",
            "--spec",
            backup_file.to_str().unwrap(),
            "--secret-store",
            &store_arg,
            "--attempts",
            "2",
            "--backoff-ms",
            "100",
        ],
        &env,
    );
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("recorded"), "{log}");
    // serve committed it: purging, the manifest's hash recorded; the archive holds it.
    let text = file();
    assert!(
        text.contains("status: purging") && text.contains("step: workloads"),
        "{text}"
    );
    let location = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("location: "))
        .unwrap()
        .to_owned();
    let prefix = location
        .strip_prefix(&format!("s3://{ARCHIVE}/"))
        .unwrap()
        .to_owned();
    let manifest_bytes = s3::get_object(&s3c, ARCHIVE, &format!("{prefix}manifest.json"))
        .unwrap()
        .unwrap()
        .body;
    assert!(
        text.contains(&format!("manifestSha256: {}", sha256_hex(&manifest_bytes))),
        "{text}"
    );
    let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap();
    for file in manifest["files"].as_array().unwrap() {
        let body = s3::get_object(
            &s3c,
            ARCHIVE,
            &format!("{prefix}{}", file["path"].as_str().unwrap()),
        )
        .unwrap()
        .unwrap()
        .body;
        assert_eq!(sha256_hex(&body), file["sha256"].as_str().unwrap());
        match file["kind"].as_str().unwrap() {
            "object" => {
                let (_, _, written) = objects
                    .iter()
                    .find(|(t, b, _)| t == A && file["bucket"] == b.as_str())
                    .unwrap();
                assert_eq!(&body, written, "byte for byte");
            }
            _ => {
                let mut sql = String::new();
                flate2::read::GzDecoder::new(&body[..])
                    .read_to_string(&mut sql)
                    .unwrap();
                let database = file["database"].as_str().unwrap();
                // Both rows, as mariadb-dump writes them (one per line after `VALUES`).
                assert!(sql.contains("INSERT INTO `notes` VALUES"), "{sql}");
                assert!(sql.contains(&format!("(1,'{A} {database}')")), "{sql}");
                assert!(sql.contains("(2,'Grüße ✓')"), "{sql}");
            }
        }
    }
    let ra = sa.rabbitmq.as_ref().unwrap();
    let queues = manifest["sources"]["rabbitmq"]["queues"]
        .as_array()
        .unwrap();
    assert_eq!(queues.len(), ra.queues.len());
    assert!(queues.iter().all(|q| q["messages"] == 1), "{queues:?}");

    // The clock is past the deletion date and the backup is recorded: the purge is rendered.
    let tree = rendered(&f, A);
    assert!(
        tree.contains(&"purge.yaml".to_owned()) && !tree.contains(&"deployments".to_owned()),
        "{tree:?}"
    );
    assert!(rendered(&f, B).contains(&"deployments".to_owned()));
    let pruned = report(
        server.addr(),
        A,
        &json!({"kind": "workloads-pruned", "id": "workloads-pruned:e2e",
        "at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)}),
    );
    assert_eq!(pruned.status, 200, "{}", pruned.body);
    assert!(file().contains("step: teardown"));
    assert!(rendered(&f, A).contains(&"teardown.yaml".to_owned()));

    // The teardown Job, as rendered at that step: it re-reads the manifest serve recorded.
    let teardown = local(
        plan_spec(&f.registry, A, SetupSpec::teardown_from_plan),
        &db,
        &moto,
        &mq,
    );
    let mut teardown = teardown;
    teardown.teardown.as_mut().unwrap().report.url = backup.report.url.clone();
    let path = support_setup::write_spec(dir.path(), "teardown", &teardown);
    let (code, log) = run(
        &[
            "teardown",
            "tenant",
            "--spec",
            path.to_str().unwrap(),
            "--secret-store",
            &store_arg,
            "--buckets-only",
        ],
        &env,
    );
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("teardown: abc-corporation-7f3a9c recorded"),
        "{log}"
    );
    assert!(file().contains("step: namespace"));
    let gone = report(
        server.addr(),
        A,
        &json!({"kind": "namespace-removed", "id": "namespace-removed:e2e",
        "at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)}),
    );
    assert_eq!(gone.status, 200, "{}", gone.body);
    assert!(file().contains("status: removed"));
    assert!(rendered(&f, A).is_empty());

    // Nothing of A in any server; B untouched.
    let mut admin = db.admin();
    let schemas: Vec<String> = admin
        .query("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")
        .unwrap();
    let users: Vec<String> = admin.query("SELECT User FROM mysql.user").unwrap();
    for d in &sa.mysql.as_ref().unwrap().databases {
        assert!(
            !schemas.contains(&d.database) && !users.contains(&d.user),
            "{} left",
            d.database
        );
    }
    for d in &sb.mysql.as_ref().unwrap().databases {
        let n: Option<i64> = admin
            .query_first(format!("SELECT COUNT(*) FROM `{}`.notes", d.database))
            .unwrap();
        assert_eq!(n, Some(2), "{}", d.database);
    }
    for (t, bucket, body) in &objects {
        let head = s3c
            .send("HEAD", &format!("/{bucket}"), &[], &[], b"")
            .unwrap()
            .status;
        if t == A {
            assert_eq!(head, 404, "{bucket} left");
        } else {
            assert_eq!(
                &s3::get_object(&s3c, bucket, "docs/a b.bin")
                    .unwrap()
                    .unwrap()
                    .body,
                body
            );
        }
    }
    let rb = sb.rabbitmq.as_ref().unwrap();
    assert_eq!(
        mq.api(Method::Get, &format!("/vhosts/{}", seg(&ra.vhost)), None)
            .0,
        404
    );
    assert_eq!(
        mq.api(Method::Get, &format!("/users/{}", seg(&ra.user)), None)
            .0,
        404
    );
    assert_eq!(
        mq.api(Method::Get, &format!("/users/{}", seg(&rb.user)), None)
            .0,
        200
    );
    for q in &rb.queues {
        assert_eq!(mq.queued(&rb.vhost, &q.name), 1, "{}", q.name);
    }
    server.stop().unwrap();
}
