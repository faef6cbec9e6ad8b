//! `provisio backup` and `provisio teardown tenant` on real servers (MariaDB, moto's S3):
//! two tenants set up; rows and objects written for tenant A; the backup's dump restored into
//! a scratch database with the `mariadb` client compares equal (`CHECKSUM TABLE … EXTENDED`),
//! archived objects equal the written bytes, the manifest's hashes hold; a teardown without a
//! recorded backup is refused with nothing changed; the teardown removes A's databases,
//! users, buckets and store keys while B's data is untouched. Reports go to a recorder in this
//! test (not a real serve): their kind and body are checked.

use crate::support_setup;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use mysql::prelude::Queryable;
use provisio::io::http::seg;
use provisio::setup::aws::{Client, sha256_hex};
use provisio::setup::s3;
use provisio_core::plan::lifecycle::{
    Archive, BackupBucket, BackupDatabase, BackupMysql, BackupRabbit, BackupS3, BackupSpec,
    DeploymentsProbe, LIFECYCLE_SPEC_VERSION, ReportTarget,
};
use provisio_core::plan::setup::{BackupRef, QueueSpec, SetupSpec, TeardownPart};
use provisio_core::registry::{PurgeStep, TenantStatus};
use support_setup::{
    MYSQL_ADMIN_PASSWORD, MYSQL_ADMIN_USER, MariaDb, Method, Moto, RABBIT_ADMIN_PASSWORD,
    RABBIT_ADMIN_USER, RabbitMq, provisio,
};

const A: &str = "abc-corporation-7f3a9c";
const B: &str = "cafe-creme-93b31b";
const ARCHIVE: &str = "provisio-archive";

/// Answers every POST like serve's accepted report and keeps the bodies; answers a GET of the
/// tenant's view like serve would: at step `teardown`, then, once a `teardown-completed` was
/// posted, past it.
fn report_recorder() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let keep = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut len, mut line) = (0usize, String::new());
            reader.read_line(&mut line).unwrap();
            let get = line.starts_with("GET ");
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            if get {
                let torn_down = keep
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|r| r.contains(r#""kind":"teardown-completed""#));
                let view = if torn_down {
                    format!(
                        r#"{{"tenant":"{A}","status":"purging","phase":"purging/namespace","purge":{{"step":"namespace","started":"2025-02-01T00:00:00Z","teardownCompleted":"2025-02-02T00:00:00Z"}}}}"#
                    )
                } else {
                    format!(
                        r#"{{"tenant":"{A}","status":"purging","phase":"purging/teardown","purge":{{"step":"teardown","started":"2025-02-01T00:00:00Z"}}}}"#
                    )
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{view}",
                    view.len()
                );
                continue;
            }
            let body = String::from_utf8(body).unwrap();
            let tenant = serde_json::from_str::<serde_json::Value>(&body)
                .map(|_| ())
                .ok();
            assert!(tenant.is_some(), "a report is JSON");
            keep.lock().unwrap().push(body);
            let answer = format!(
                r#"{{"tenant":"{A}","recorded":true,"lifecycle":{{"tenant":"{A}","status":"purging","phase":"purging/workloads"}}}}"#
            );
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    (url, seen)
}

/// The keys of the bucket's unfinished multipart uploads.
fn unfinished_uploads(c: &Client, bucket: &str) -> Vec<String> {
    let r = c
        .send("GET", &format!("/{bucket}"), &[("uploads", "")], &[], b"")
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let mut keys: Vec<String> = s3::blocks(&r.body, "Upload")
        .into_iter()
        .flat_map(|u| s3::tag_values(u, "Key"))
        .collect();
    keys.sort();
    keys
}

fn setup(
    verb: &str,
    service: &str,
    spec: &Path,
    store: &Path,
    env: &[(&str, &str)],
    extra: &[&str],
) -> (i32, String, String) {
    let store_arg = format!("file:{}", store.display());
    let mut args = vec![
        verb,
        service,
        "--spec",
        spec.to_str().unwrap(),
        "--secret-store",
        &store_arg,
        "--attempts",
        "2",
        "--backoff-ms",
        "100",
    ];
    args.extend_from_slice(extra);
    provisio(&args, env)
}

fn checksums(db: &MariaDb, database: &str) -> Vec<(String, Option<u64>)> {
    let mut c = db.admin();
    let tables: Vec<String> = c
        .exec("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' ORDER BY 1", (database,))
        .unwrap();
    tables
        .into_iter()
        .map(|t| {
            let row: (String, Option<u64>) = c
                .query_first(format!("CHECKSUM TABLE `{database}`.`{t}` EXTENDED"))
                .unwrap()
                .unwrap();
            (t, row.1)
        })
        .collect()
}

fn schemas(db: &MariaDb) -> Vec<String> {
    db.admin()
        .query("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY 1")
        .unwrap()
}

fn users(db: &MariaDb) -> Vec<String> {
    db.admin()
        .query("SELECT User FROM mysql.user ORDER BY 1")
        .unwrap()
}

/// `n` messages published to queue `q` of the tenant of `spec` (through its exchange, with
/// its wildcard binding as the routing key), persistent; the broker counts them.
fn publish(mq: &RabbitMq, spec: &SetupSpec, q: &QueueSpec, n: u64) {
    let r = spec.rabbitmq.as_ref().unwrap();
    // A binding pattern as the key (`order.*`): it routes to this queue only (`order.paid`
    // would reach the deliveries' queue too).
    let key = q
        .routing_keys
        .iter()
        .find(|k| k.ends_with(".*"))
        .expect("a wildcard binding");
    for i in 0..n {
        let (status, body) = mq.api(
            Method::Post,
            &format!("/exchanges/{}/{}/publish", seg(&r.vhost), seg(&r.exchange)),
            Some(serde_json::json!({"properties": {"delivery_mode": 2},
                "routing_key": key, "payload": format!("{} #{i}", q.name),
                "payload_encoding": "string"})),
        );
        assert_eq!(
            (status, &body["routed"]),
            (200, &serde_json::json!(true)),
            "{body}"
        );
    }
    assert_eq!(mq.queued(&r.vhost, &q.name), n, "{}", q.name);
}

const MIB: usize = 1024 * 1024;
/// The largest object of the test.
const BIG: usize = 64 * MIB;

/// `n` bytes that gzip cannot shrink (xorshift from `seed`).
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// Runs `provisio <args>` with `env` under `tests/tools/peak_rss.py`: (exit code, stdout,
/// stderr, peak RSS in bytes).
fn measured(args: &[String], env: &[(&str, &str)]) -> (i32, String, String, u64) {
    let peak_file = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/tools/peak_rss.py"
        ))
        .arg(peak_file.path())
        .arg(env!("CARGO_BIN_EXE_provisio"))
        .args(args)
        .env_remove("PROVISIO_SETUP_SPEC")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let kib: u64 = std::fs::read_to_string(peak_file.path())
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        kib * 1024,
    )
}

#[test]
fn backup_restores_exactly_and_teardown_removes_only_the_tenant() {
    if !support_setup::require("mariadb-dump") || !support_setup::require("mariadb") {
        return;
    }
    let (Some(db), Some(moto), Some(mq)) = (MariaDb::start(), Moto::start(), RabbitMq::start())
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (report_url, reports) = report_recorder();
    let admin_env: Vec<(&str, &str)> = vec![
        ("MYSQL_ADMIN_USER", MYSQL_ADMIN_USER),
        ("MYSQL_ADMIN_PASSWORD", MYSQL_ADMIN_PASSWORD),
        ("MINIO_ROOT_USER", &moto.admin.access_key),
        ("MINIO_ROOT_PASSWORD", &moto.admin.secret_key),
        ("ARCHIVE_ACCESS_KEY_ID", &moto.admin.access_key),
        ("ARCHIVE_SECRET_ACCESS_KEY", &moto.admin.secret_key),
        ("MYSQL_BACKUP_USER", "provisio_backup"),
        ("MYSQL_BACKUP_PASSWORD", "backup-test-password-42"),
        ("RABBITMQ_ADMIN_USER", RABBIT_ADMIN_USER),
        ("RABBITMQ_ADMIN_PASSWORD", RABBIT_ADMIN_PASSWORD),
    ];
    // Both tenants set up as their Jobs do.
    let mut specs = Vec::new();
    for t in [A, B] {
        let mut spec: SetupSpec = support_setup::job_spec(t, "mysql");
        let m = spec.mysql.as_mut().unwrap();
        m.host = "127.0.0.1".into();
        m.port = db.port;
        let s = spec
            .s3
            .get_or_insert_with(|| support_setup::job_spec(t, "minio").s3.unwrap());
        s.host = "127.0.0.1".into();
        s.port = moto.port;
        let mut r = support_setup::job_spec(t, "rabbitmq").rabbitmq.unwrap();
        r.host = "127.0.0.1".into();
        r.management_port = mq.management_port;
        spec.rabbitmq = Some(r);
        let path = support_setup::write_spec(dir.path(), &format!("setup-{t}"), &spec);
        assert_eq!(setup("setup", "mysql", &path, &store, &admin_env, &[]).0, 0);
        let (rc, _, err) = setup("setup", "rabbitmq", &path, &store, &admin_env, &[]);
        assert_eq!(rc, 0, "{err}");
        let (rc, _, err) = setup(
            "setup",
            "minio",
            &path,
            &store,
            &admin_env,
            &["--buckets-only"],
        );
        assert_eq!(rc, 0, "{err}");
        specs.push(spec);
    }
    let (spec_a, spec_b) = (&specs[0], &specs[1]);
    // Data: rows with a BLOB, UTF-8 text and a trigger in each of A's databases, and B's.
    for spec in [spec_a, spec_b] {
        for d in &spec.mysql.as_ref().unwrap().databases {
            let mut c = db
                .connect(MYSQL_ADMIN_USER, MYSQL_ADMIN_PASSWORD, Some(&d.database))
                .unwrap();
            c.query_drop("CREATE TABLE orders (id INT PRIMARY KEY, note VARCHAR(100), data BLOB) ENGINE=InnoDB").unwrap();
            c.query_drop("CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, order_id INT) ENGINE=InnoDB").unwrap();
            c.query_drop("CREATE TRIGGER orders_audit AFTER INSERT ON orders FOR EACH ROW INSERT INTO audit (order_id) VALUES (NEW.id)").unwrap();
            if spec.tenant == A && d.database == spec.mysql.as_ref().unwrap().databases[0].database
            {
                // A dump larger than one part even gzipped (hex of noise): uploaded in parts.
                c.query_drop(
                    "CREATE TABLE media (id INT PRIMARY KEY, data LONGBLOB) ENGINE=InnoDB",
                )
                .unwrap();
                c.exec_drop("INSERT INTO media VALUES (1, ?)", (noise(6 * MIB, 3),))
                    .unwrap();
            }
            c.exec_drop(
                "INSERT INTO orders VALUES (1, ?, ?), (2, ?, ?)",
                (
                    "Grüße, ça va ✓",
                    vec![0u8, 255, 1, 2, 39, 92],
                    spec.tenant.as_str(),
                    vec![7u8; 3000],
                ),
            )
            .unwrap();
        }
    }
    let mut admin = db.admin();
    admin
        .query_drop("CREATE USER 'provisio_backup'@'%' IDENTIFIED BY 'backup-test-password-42'")
        .unwrap();
    admin
        .query_drop("GRANT SELECT, SHOW VIEW, TRIGGER, EVENT ON *.* TO 'provisio_backup'@'%'")
        .unwrap();
    admin
        .query_drop("GRANT SELECT ON mysql.proc TO 'provisio_backup'@'%'")
        .unwrap();
    let s3c: Client = moto.client("s3", "s3", &moto.admin);
    let long_key = format!("deep/{}", "k".repeat(1000));
    // Larger than one part (5 MiB with `--part-mib 5`): 13 parts, the last a short one.
    let big = noise(BIG, 7);
    let mut written = Vec::new();
    for (i, b) in spec_a.s3.as_ref().unwrap().buckets.iter().enumerate() {
        let mut objects: Vec<(String, Vec<u8>)> = vec![
            (
                format!("public/img {i}.png"),
                vec![0x89, b'P', b'N', b'G', 0, 1, 2, i as u8],
            ),
            (long_key.clone(), b"long".to_vec()),
        ];
        if i == 0 {
            objects.push(("big.bin".to_owned(), big.clone()));
        }
        for (k, v) in objects {
            s3::put_object(
                &s3c,
                &b.name,
                &k,
                &v,
                Some("application/octet-stream"),
                None,
            )
            .unwrap();
            written.push((format!("b{i}"), b.name.clone(), k, v));
        }
    }
    // Messages in the queues: i + 1 in A's i-th queue, 2 in B's first.
    let mut queued_a = Vec::new();
    for (i, q) in spec_a.rabbitmq.as_ref().unwrap().queues.iter().enumerate() {
        publish(&mq, spec_a, q, i as u64 + 1);
        queued_a.push((q.name.clone(), i as u64 + 1));
    }
    queued_a.sort();
    let b_queue = &spec_b.rabbitmq.as_ref().unwrap().queues[0];
    publish(&mq, spec_b, b_queue, 2);
    for b in &spec_b.s3.as_ref().unwrap().buckets {
        s3::put_object(&s3c, &b.name, "b.txt", b"tenant b", None, None).unwrap();
    }
    assert_eq!(
        s3c.send("PUT", &format!("/{ARCHIVE}"), &[], &[], b"")
            .unwrap()
            .status,
        200
    );
    // The report key `setup credentials` would have stored.
    let report_key_secret = format!("test/{A}/report");
    let key_file = store.join(format!("{report_key_secret}.json"));
    std::fs::create_dir_all(key_file.parent().unwrap()).unwrap();
    std::fs::write(
        &key_file,
        format!(r#"{{"tenant":"{A}","key":"{}"}}"#, "ab".repeat(32)),
    )
    .unwrap();
    let report = ReportTarget {
        url: format!("{report_url}/api/v1/lifecycle/tenants/{A}/reports"),
        key_secret: report_key_secret.clone(),
    };
    let archive = Archive {
        bucket: ARCHIVE.into(),
        region: "us-east-1".into(),
        endpoint: Some(moto.endpoint()),
        prefix: format!("{A}/"),
        storage_class: Some("STANDARD_IA".into()),
        manifest_storage_class: "STANDARD".into(),
    };
    let deletion = support_setup::now();
    let m = spec_a.mysql.as_ref().unwrap();
    let s = spec_a.s3.as_ref().unwrap();
    let backup = BackupSpec {
        version: LIFECYCLE_SPEC_VERSION,
        tenant: A.into(),
        deletion_date: deletion,
        deadline_seconds: 600,
        report: report.clone(),
        quiesce: DeploymentsProbe {
            namespace: A.into(),
            names: vec![],
        },
        mysql: Some(BackupMysql {
            host: m.host.clone(),
            port: m.port,
            databases: m
                .databases
                .iter()
                .map(|d| BackupDatabase {
                    product: d.product.clone(),
                    database: d.database.clone(),
                })
                .collect(),
        }),
        s3: Some(BackupS3 {
            host: s.host.clone(),
            port: s.port,
            use_ssl: false,
            buckets: s
                .buckets
                .iter()
                .enumerate()
                .map(|(i, b)| BackupBucket {
                    short: format!("b{i}"),
                    name: b.name.clone(),
                })
                .collect(),
            versions: "current".into(),
        }),
        rabbitmq: Some(BackupRabbit {
            host: "127.0.0.1".into(),
            port: mq.amqp_port,
            management_port: mq.management_port,
            vhost: spec_a.rabbitmq.as_ref().unwrap().vhost.clone(),
        }),
        archive: archive.clone(),
    };
    let backup_path = dir.path().join("backup.json");
    std::fs::write(&backup_path, serde_json::to_string(&backup).unwrap()).unwrap();
    let store_arg = format!("file:{}", store.display());
    let backup_args = |now: &str| {
        [
            "backup",
            "--spec",
            backup_path.to_str().unwrap(),
            "--secret-store",
            &store_arg,
            "--attempts",
            "2",
            "--backoff-ms",
            "100",
            "--part-mib",
            "5",
            "--now",
            now,
        ]
        .map(str::to_owned)
    };
    let run_backup = |now: &str| {
        let args = backup_args(now);
        provisio(
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            &admin_env,
        )
    };
    // Before the deletion date: refused, nothing written.
    let (rc, _, err) = run_backup("2025-01-31T23:59:59Z");
    assert_eq!(rc, 4, "{err}");
    assert!(err.contains("has not passed"), "{err}");
    assert!(s3::list_current(&s3c, ARCHIVE, "").unwrap().is_empty());
    let before_a: Vec<_> = m
        .databases
        .iter()
        .map(|d| checksums(&db, &d.database))
        .collect();
    let before_b: Vec<_> = spec_b
        .mysql
        .as_ref()
        .unwrap()
        .databases
        .iter()
        .map(|d| checksums(&db, &d.database))
        .collect();
    // Unfinished uploads as a killed attempt leaves them: A's is aborted by the next attempt;
    // B's, and one of a tenant whose id merely starts with A's, are not A's to abort.
    let planted = [
        format!("{A}/20250201T000001Z/mysql/killed.sql.gz"),
        format!("{A}x/20250201T000001Z/mysql/other.sql.gz"),
        format!("{B}/20250201T000001Z/mysql/other.sql.gz"),
    ];
    for key in &planted {
        let r = s3c
            .send(
                "POST",
                &format!("/{ARCHIVE}/{key}"),
                &[("uploads", "")],
                &[],
                b"",
            )
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let mut others = planted[1..].to_vec();
    others.sort();
    // An archive that fails a part half-way through the 13-part object (its 3rd part, every
    // attempt): backup-failed reported, nothing of the attempt left, its upload aborted.
    let (proxy, failed_parts) = support_setup::s3_fault_proxy(moto.port, |line| {
        line.contains("partNumber=3&").then(|| {
            let error = "<Error><Code>InternalError</Code><Message>injected</Message></Error>";
            support_setup::Fault::Answer(500, error.to_owned())
        })
    });
    let mut failing = backup.clone();
    failing.archive.endpoint = Some(proxy);
    let failing_path = dir.path().join("backup-failing.json");
    std::fs::write(&failing_path, serde_json::to_string(&failing).unwrap()).unwrap();
    let failing_args: Vec<String> = backup_args("2025-02-01T00:02:00Z")
        .into_iter()
        .map(|a| {
            if a == backup_path.to_str().unwrap() {
                failing_path.to_str().unwrap().to_owned()
            } else {
                a
            }
        })
        .collect();
    let (rc, out, err) = provisio(
        &failing_args.iter().map(String::as_str).collect::<Vec<_>>(),
        &admin_env,
    );
    assert_ne!(rc, 0, "{out}{err}");
    assert!(
        err.contains("InternalError"),
        "the error names the refusal: {err}"
    );
    assert_eq!(
        *failed_parts.lock().unwrap(),
        2,
        "the part was tried twice (--attempts 2)"
    );
    let sent: Vec<String> = std::mem::take(&mut *reports.lock().unwrap());
    assert_eq!(sent.len(), 1, "{sent:?}");
    let r: serde_json::Value = serde_json::from_str(&sent[0]).unwrap();
    assert_eq!(r["kind"], "backup-failed", "{r}");
    assert!(
        r["reason"].as_str().unwrap().contains("InternalError"),
        "{r}"
    );
    assert_eq!(unfinished_uploads(&s3c, ARCHIVE), others);
    assert!(
        s3::list_current(&s3c, ARCHIVE, &format!("{A}/"))
            .unwrap()
            .is_empty(),
        "the failed attempt removed what it wrote"
    );
    let (rc, out, err) = run_backup("2025-02-01T00:03:12Z");
    assert_eq!(rc, 0, "{out}{err}");
    assert!(!err.contains("backup-test-password-42") && !out.contains("backup-test-password-42"));
    // The report.
    let sent = reports.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let r: serde_json::Value = serde_json::from_str(&sent[0]).unwrap();
    assert_eq!(r["kind"], "backup-completed");
    assert_eq!(unfinished_uploads(&s3c, ARCHIVE), others);
    let location = format!("s3://{ARCHIVE}/{A}/20250201T000312Z/");
    assert_eq!(r["location"], location.as_str());
    let prefix = format!("{A}/20250201T000312Z/");
    let manifest_bytes = s3::get_object(&s3c, ARCHIVE, &format!("{prefix}manifest.json"))
        .unwrap()
        .unwrap()
        .body;
    assert_eq!(r["manifestSha256"], sha256_hex(&manifest_bytes).as_str());
    let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes).unwrap();
    let files = manifest["files"].as_array().unwrap();
    // The queues, named with their message counts; their messages are not archived.
    let rabbit = &manifest["sources"]["rabbitmq"];
    assert_eq!(rabbit["messagesArchived"], false);
    let queues: Vec<(String, u64)> = rabbit["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            (
                q["name"].as_str().unwrap().to_owned(),
                q["messages"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(queues, queued_a);
    assert_eq!(files.len(), m.databases.len() + written.len());
    assert_eq!(r["files"], files.len());
    // Every file's size and hash; every listed file is in the manifest with its class.
    let listed = s3::list_current(&s3c, ARCHIVE, &prefix).unwrap();
    assert_eq!(listed.len(), files.len() + 1);
    for f in files {
        let key = format!("{prefix}{}", f["path"].as_str().unwrap());
        let body = s3::get_object(&s3c, ARCHIVE, &key).unwrap().unwrap().body;
        assert_eq!(body.len() as u64, f["size"].as_u64().unwrap(), "{key}");
        assert_eq!(sha256_hex(&body), f["sha256"].as_str().unwrap(), "{key}");
        assert_eq!(
            listed.iter().find(|l| l.key == key).unwrap().storage_class,
            "STANDARD_IA"
        );
        match f["kind"].as_str().unwrap() {
            "object" => {
                let (_, _, _, v) = written
                    .iter()
                    .find(|(_, name, k, _)| f["bucket"] == name.as_str() && f["key"] == k.as_str())
                    .expect("an object written");
                assert_eq!(&body, v, "{key}");
                if f["key"] == long_key.as_str() {
                    assert!(key.contains("/.long/"), "{key}");
                }
            }
            "mysql-dump" => {
                let database = f["database"].as_str().unwrap();
                if database == m.databases[0].database {
                    // The 6 MiB row's dump, gzipped, is more than a part: a multipart upload.
                    assert!(body.len() > 5 * MIB, "{} bytes", body.len());
                }
                let mut sql = Vec::new();
                flate2::read::GzDecoder::new(&body[..])
                    .read_to_end(&mut sql)
                    .unwrap();
                assert_eq!(sha256_hex(&sql), f["uncompressedSha256"].as_str().unwrap());
                let scratch = format!("scratch_{}", &database[..database.len().min(40)]);
                db.admin().query_drop(format!("CREATE DATABASE `{scratch}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")).unwrap();
                let mut child = Command::new("mariadb")
                    .args([
                        "-h",
                        "127.0.0.1",
                        "-P",
                        &db.port.to_string(),
                        "-u",
                        MYSQL_ADMIN_USER,
                        &format!("-p{MYSQL_ADMIN_PASSWORD}"),
                        &scratch,
                    ])
                    .stdin(Stdio::piped())
                    .spawn()
                    .unwrap();
                child.stdin.take().unwrap().write_all(&sql).unwrap();
                assert!(child.wait().unwrap().success());
                let i = m
                    .databases
                    .iter()
                    .position(|d| d.database == database)
                    .unwrap();
                assert_eq!(checksums(&db, &scratch), before_a[i], "{database}");
                assert_eq!(before_a[i].len(), if i == 0 { 3 } else { 2 });
                let triggers: Vec<String> = db.admin().exec("SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ?", (&scratch,)).unwrap();
                assert_eq!(triggers, ["orders_audit"]);
                db.admin()
                    .query_drop(format!("DROP DATABASE `{scratch}`"))
                    .unwrap();
            }
            other => panic!("unexpected kind {other}"),
        }
    }
    // Peak memory, measured on a backup of the objects alone (a peak covers the process and
    // its children, and mariadb-dump's own for the 6 MiB row is larger than provisio's):
    // objects go through in 5 MiB parts, so the run stays below the 64 MiB
    // object — read whole and copied to be sent, it took more than twice that.
    let objects_only = dir.path().join("backup-objects.json");
    std::fs::write(
        &objects_only,
        serde_json::to_string(&BackupSpec {
            mysql: None,
            ..backup.clone()
        })
        .unwrap(),
    )
    .unwrap();
    let mut args = backup_args("2025-02-01T01:00:00Z");
    args[2] = objects_only.display().to_string();
    let (rc, out, err, peak) = measured(&args, &admin_env);
    assert_eq!(rc, 0, "{out}{err}");
    eprintln!("backup of the objects: peak RSS {} MiB", peak / MIB as u64);
    assert!(
        peak < BIG as u64,
        "the backup's peak RSS is {peak} bytes, its largest object {BIG}"
    );
    let again = s3::list_current(&s3c, ARCHIVE, &format!("{A}/20250201T010000Z/")).unwrap();
    let big_copy = again
        .iter()
        .find(|l| l.key.ends_with("/big.bin"))
        .expect("the large object archived");
    assert_eq!(big_copy.size, BIG as u64);
    reports.lock().unwrap().pop();
    // Teardown refused without a recorded backup: nothing changed.
    let teardown_spec = |lifecycle_backup: Option<BackupRef>, status: TenantStatus| {
        let mut t = spec_a.clone();
        t.lifecycle.status = status;
        t.lifecycle.deletion_date = Some(deletion);
        t.lifecycle.purge_step = (status == TenantStatus::Purging).then_some(PurgeStep::Teardown);
        t.lifecycle.backup = lifecycle_backup;
        t.teardown = Some(TeardownPart {
            namespace: A.into(),
            shared_namespace: "shared-services".into(),
            store_keys: vec![],
            report: report.clone(),
            archive: Some(archive.clone()),
        });
        t
    };
    let schemas_before = schemas(&db);
    let users_before = users(&db);
    let files_before = std::fs::read_dir(store.join("test"))
        .map(|d| d.count())
        .unwrap_or(0);
    for (name, spec) in [
        (
            "deprovisioning",
            teardown_spec(None, TenantStatus::Deprovisioning),
        ),
        (
            "wrong-hash",
            teardown_spec(
                Some(BackupRef {
                    location: location.clone(),
                    manifest_sha256: "0".repeat(64),
                }),
                TenantStatus::Purging,
            ),
        ),
    ] {
        let path = support_setup::write_spec(dir.path(), name, &spec);
        let (rc, out, err) = setup(
            "teardown",
            "tenant",
            &path,
            &store,
            &admin_env,
            &["--buckets-only", "--now", "2025-02-02T00:00:00Z"],
        );
        assert_eq!(rc, 4, "{name}: {out}{err}");
        assert!(err.contains("refusing to tear down"), "{err}");
        assert_eq!(schemas(&db), schemas_before);
        assert_eq!(users(&db), users_before);
        let ra = spec_a.rabbitmq.as_ref().unwrap();
        assert_eq!(mq.queued(&ra.vhost, &queued_a[0].0), queued_a[0].1);
        assert_eq!(
            std::fs::read_dir(store.join("test"))
                .map(|d| d.count())
                .unwrap_or(0),
            files_before
        );
        for b in &s.buckets {
            assert_eq!(
                s3c.send("HEAD", &format!("/{}", b.name), &[], &[], b"")
                    .unwrap()
                    .status,
                200
            );
        }
    }
    // With the verified backup: A is gone, B untouched.
    let spec = teardown_spec(
        Some(BackupRef {
            location: location.clone(),
            manifest_sha256: sha256_hex(&manifest_bytes),
        }),
        TenantStatus::Purging,
    );
    let path = support_setup::write_spec(dir.path(), "teardown", &spec);
    let teardown = || {
        setup(
            "teardown",
            "tenant",
            &path,
            &store,
            &admin_env,
            &["--buckets-only", "--now", "2025-02-02T00:00:00Z"],
        )
    };
    let (rc, out, err) = teardown();
    assert_eq!(rc, 0, "{out}{err}");
    let sent = reports.lock().unwrap().clone();
    let r: serde_json::Value = serde_json::from_str(sent.last().unwrap()).unwrap();
    assert_eq!(r["kind"], "teardown-completed");
    assert_eq!(r["removed"]["databases"], m.databases.len());
    assert_eq!(r["removed"]["mysqlUsers"], m.databases.len());
    assert_eq!(r["removed"]["buckets"], s.buckets.len());
    assert_eq!(r["removed"]["objectVersions"], written.len());
    let left = schemas(&db);
    for d in &m.databases {
        assert!(!left.contains(&d.database), "{} left", d.database);
        assert!(!users(&db).contains(&d.user), "{} left", d.user);
        assert!(!store.join(format!("{}.json", d.secret_key)).exists());
    }
    assert!(
        key_file.exists(),
        "the report key stays for the namespace-check Job"
    );
    for b in &s.buckets {
        assert_eq!(
            s3c.send("HEAD", &format!("/{}", b.name), &[], &[], b"")
                .unwrap()
                .status,
            404
        );
    }
    let (ra, rb) = (
        spec_a.rabbitmq.as_ref().unwrap(),
        spec_b.rabbitmq.as_ref().unwrap(),
    );
    assert_eq!(r["removed"]["vhosts"], 1);
    assert_eq!(r["removed"]["rabbitmqUsers"], 1);
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
    assert_eq!(mq.queued(&rb.vhost, &b_queue.name), 2, "B's messages stay");
    for (i, d) in spec_b.mysql.as_ref().unwrap().databases.iter().enumerate() {
        assert_eq!(checksums(&db, &d.database), before_b[i]);
        assert!(users(&db).contains(&d.user));
    }
    for b in &spec_b.s3.as_ref().unwrap().buckets {
        assert_eq!(
            s3::get_object(&s3c, &b.name, "b.txt")
                .unwrap()
                .unwrap()
                .body,
            b"tenant b"
        );
    }
    // The Job's pod again, after serve recorded the teardown: nothing done, nothing sent.
    let reports_before = reports.lock().unwrap().len();
    let (rc, out, err) = teardown();
    assert_eq!(rc, 0, "{out}{err}");
    assert!(
        out.contains("teardown: already recorded by serve (purging/namespace): nothing done"),
        "{out}"
    );
    assert_eq!(reports.lock().unwrap().len(), reports_before);
    // Once the namespace-check Job deleted the key, a re-run cannot ask serve: it says why.
    std::fs::remove_file(&key_file).unwrap();
    let (rc, out, err) = teardown();
    assert_eq!(rc, 2, "{out}{err}");
    assert!(
        err.contains("the namespace-check Job deletes it once serve records the tenant removed"),
        "{err}"
    );
    assert_eq!(reports.lock().unwrap().len(), reports_before);
    // The archive stays.
    assert_eq!(
        s3::list_current(&s3c, ARCHIVE, &prefix).unwrap().len(),
        files.len() + 1
    );
}
