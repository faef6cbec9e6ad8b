//! `provisio activate`'s probes against the real servers the setup tests start — MariaDB,
//! RabbitMQ (AMQP 0-9-1 and its management API) and moto's S3 with access control on — with a
//! real serve (view and reports committed to git) and an SMTP sink (aiosmtpd). The tenant is
//! set up by the setup commands as its Jobs would; then each probe is broken in turn (a wrong
//! database password, a missing bucket, a bucket the tenant may read but not write, the
//! tenant user's permission on its vhost removed): activation probes in rounds until its
//! deadline, exits 3 naming the failing probe, sends no email and leaves the tenant
//! un-activated. With everything repaired it activates and sends one email.

use crate::serve_support;
use crate::support_setup;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use provisio::services::serve::LIFECYCLE_PREFIX;
use provisio::setup::s3;
use provisio::setup::secrets::{FileStore, SecretStore};
use provisio_core::plan::lifecycle::ActivationSpec;
use support_setup::{
    MYSQL_ADMIN_PASSWORD, MYSQL_ADMIN_USER, MariaDb, Method, Moto, RABBIT_ADMIN_PASSWORD,
    RABBIT_ADMIN_USER, RabbitMq, health_endpoint, smtp_sink,
};

const MASTER: &str = "test-report-master";
const CAFE: &str = "cafe-creme-93b31b";
const PASSWORD: &str = "Tq7-admin.Pw#9xK2mZr4";
/// Each broken run's deadline: long enough for several rounds of 200 ms, 400 ms, 800 ms….
const DEADLINE: u64 = 4;

fn mails(maildir: &Path) -> usize {
    std::fs::read_dir(maildir.join("new")).map_or(0, |d| d.count())
}

/// Runs `provisio activate` (200 ms between the first rounds); (exit code, log, elapsed).
fn activate(spec: &Path, store: &Path, uid: &str) -> (i32, String, Duration) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_provisio"))
        .args(["activate", "--spec"])
        .arg(spec)
        .arg("--secret-store")
        .arg(format!("file:{}", store.display()))
        .arg("--ca-file")
        .arg(spec.with_file_name("tls").join("ca.pem"))
        .arg("--termination-log")
        .arg(spec.with_file_name("termination-log"))
        .args(["--attempts", "2", "--backoff-ms", "200"])
        .env("PROVISIO_JOB_UID", uid)
        .env("PROVISIO_LOG", "info")
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), log, started.elapsed())
}

fn setup(service: &str, spec: &Path, store: &Path, env: &[(&str, &str)], extra: &[&str]) {
    let store_arg = format!("file:{}", store.display());
    let mut args = vec![
        "setup",
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
    let (code, out, err) = support_setup::provisio(&args, env);
    assert_eq!(code, 0, "setup {service}: {out}{err}");
}

#[test]
fn activation_probes_the_real_servers_and_waits_for_each_broken_probe() {
    let (Some(db), Some(mq), Some(moto)) = (MariaDb::start(), RabbitMq::start(), Moto::start())
    else {
        return;
    };
    if !support_setup::require("python3") {
        return;
    }
    let f = serve_support::Fixture::new();
    let server = f.start_for_jobs(MASTER);
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let store = FileStore::new(&store_dir);

    // The tenant set up as its PreSync Jobs do: databases and users, vhost, user and
    // topology, buckets.
    let mut spec = support_setup::job_spec(CAFE, "mysql");
    let m = spec.mysql.as_mut().unwrap();
    (m.host, m.port) = ("127.0.0.1".into(), db.port);
    let mut s3_spec = support_setup::job_spec(CAFE, "minio").s3.unwrap();
    (s3_spec.host, s3_spec.port) = ("127.0.0.1".into(), moto.port);
    spec.s3 = Some(s3_spec);
    let mut rabbit = support_setup::job_spec(CAFE, "rabbitmq").rabbitmq.unwrap();
    rabbit.host = "127.0.0.1".into();
    rabbit.management_port = mq.management_port;
    spec.rabbitmq = Some(rabbit);
    let setup_file = support_setup::write_spec(dir.path(), "setup", &spec);
    let env = [
        ("MYSQL_ADMIN_USER", MYSQL_ADMIN_USER),
        ("MYSQL_ADMIN_PASSWORD", MYSQL_ADMIN_PASSWORD),
        ("RABBITMQ_ADMIN_USER", RABBIT_ADMIN_USER),
        ("RABBITMQ_ADMIN_PASSWORD", RABBIT_ADMIN_PASSWORD),
        ("MINIO_ROOT_USER", &moto.admin.access_key),
        ("MINIO_ROOT_PASSWORD", &moto.admin.secret_key),
    ];
    setup("mysql", &setup_file, &store_dir, &env, &[]);
    setup("rabbitmq", &setup_file, &store_dir, &env, &[]);
    setup("minio", &setup_file, &store_dir, &env, &["--buckets-only"]);
    // The migrations' tables (a migrated product's database must hold one).
    for d in &spec.mysql.as_ref().unwrap().databases {
        let mut c = db
            .connect(MYSQL_ADMIN_USER, MYSQL_ADMIN_PASSWORD, Some(&d.database))
            .unwrap();
        c.query_drop("CREATE TABLE migrations (id INT PRIMARY KEY)")
            .unwrap();
    }
    // The tenant's S3 user as `setup minio` makes it on MinIO (moto has no admin API): an IAM
    // user with the tenant policy, its key in the store.
    let s3_spec = spec.s3.as_ref().unwrap();
    let s3_user = format!("{CAFE}-app");
    moto.iam_ok("CreateUser", &[("UserName", &s3_user)]);
    let put_policy = |policy: &serde_json::Value| {
        moto.iam_ok(
            "PutUserPolicy",
            &[
                ("UserName", &s3_user),
                ("PolicyName", "tenant"),
                ("PolicyDocument", &policy.to_string()),
            ],
        );
    };
    let tenant_policy = s3::tenant_policy(s3_spec);
    put_policy(&tenant_policy);
    let key = moto.create_access_key(&s3_user);
    let entry = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };

    // The activation spec rendered for the tenant, pointed at the local servers.
    let (reg, _) = provisio::ops::load::load(&f.registry).unwrap();
    let plan = provisio_core::plan::plan_tenant(&reg, &reg.tenants[CAFE], serve_support::now());
    let mut act = ActivationSpec::from_plan(&plan);
    act.deadline_seconds = DEADLINE;
    act.report.url = format!("http://{}{LIFECYCLE_PREFIX}{CAFE}/reports", server.addr());
    act.probes.deployments.names.clear();
    act.grafana.objects.clear();
    act.website = None;
    let probes = &mut act.probes;
    let pm = probes
        .mysql
        .as_mut()
        .expect("the example tenant has databases");
    (pm.host, pm.port) = ("127.0.0.1".into(), db.port);
    let ps = probes.s3.as_mut().expect("the example tenant has buckets");
    (ps.host, ps.port, ps.use_ssl) = ("127.0.0.1".into(), moto.port, false);
    let pr = probes
        .rabbitmq
        .as_mut()
        .expect("the example tenant has a vhost");
    (pr.host, pr.port) = ("127.0.0.1".into(), mq.amqp_port);
    let (health_url, _health) = health_endpoint(dir.path(), 0);
    probes.health.url = health_url;
    let maildir = dir.path().join("maildir");
    let (smtp_port, _smtp) = smtp_sink(&maildir);
    act.welcome.smtp.host = "127.0.0.1".to_owned();
    act.welcome.smtp.port = smtp_port;
    act.welcome.smtp.security = "none".to_owned();
    let spec_file = dir.path().join("activate.json");
    std::fs::write(&spec_file, serde_json::to_string_pretty(&act).unwrap()).unwrap();
    // What `setup credentials` and `setup minio` leave in the store.
    serve_support::store_report_key(&store, &act.report.key_secret, MASTER, CAFE);
    store
        .create(
            &act.welcome.admin_secret,
            &entry(&[("tenant", CAFE), ("password", PASSWORD)]),
        )
        .unwrap();
    let s3_key = &act.probes.s3.as_ref().unwrap().secret_key;
    store
        .create(
            s3_key,
            &entry(&[
                ("tenant", CAFE),
                ("access_key", &key.access_key),
                ("secret_key", &key.secret_key),
            ]),
        )
        .unwrap();

    let tenant_file = || {
        f.committed(&format!("registry/tenants/{CAFE}.yaml"))
            .unwrap()
            .replace('"', "")
    };
    // A broken probe: exit 3 at the deadline, after several rounds, naming the probe; no
    // email, nothing recorded.
    let mut run = 0;
    let mut refused = |probe: &str, why: &str| {
        run += 1;
        let (code, log, elapsed) = activate(&spec_file, &store_dir, &format!("uid-{run}"));
        assert_eq!(code, 3, "{probe}: {log}");
        let reason = std::fs::read_to_string(dir.path().join("termination-log")).unwrap();
        assert!(
            reason.starts_with(&format!("not healthy after {DEADLINE} s: {probe}: ")),
            "{reason}"
        );
        assert!(reason.contains(why), "{probe}: {reason}");
        assert_eq!(
            reason.matches("; ").count(),
            0,
            "only {probe} fails: {reason}"
        );
        let rounds = log
            .lines()
            .filter(|l| l.contains("not yet") && l.contains(probe))
            .count();
        assert!(rounds >= 3, "{probe}: {rounds} round(s) only:\n{log}");
        assert!(
            elapsed < Duration::from_secs(DEADLINE + 10),
            "{probe}: the deadline was not kept ({elapsed:?})"
        );
        assert_eq!(mails(&maildir), 0, "no email while {probe} fails");
        let file = tenant_file();
        assert!(file.contains("status: provisioning"), "{file}");
        assert!(!file.contains("welcomeSent") && !file.contains("activated:"));
    };

    // 1. A product's database with a wrong password in the store.
    let d0 = spec.mysql.as_ref().unwrap().databases[0].clone();
    let good = store.get(&d0.secret_key).unwrap().unwrap();
    let mut wrong = good.clone();
    wrong.insert("password".into(), "not-the-password".into());
    store.delete(&d0.secret_key).unwrap();
    store.create(&d0.secret_key, &wrong).unwrap();
    refused(&format!("database {}", d0.database), "Access denied");
    store.delete(&d0.secret_key).unwrap();
    store.create(&d0.secret_key, &good).unwrap();

    // 2. A bucket that is not there.
    let admin_s3 = moto.client("s3", "s3", &moto.admin);
    let b0 = s3_spec.buckets[0].name.clone();
    let mut only_b0 = s3_spec.clone();
    only_b0.buckets.truncate(1);
    s3::teardown_buckets(&admin_s3, &only_b0).unwrap();
    refused(&format!("bucket {b0}"), "HTTP 404 NoSuchBucket");
    setup("minio", &setup_file, &store_dir, &env, &["--buckets-only"]);

    // 3. A bucket the tenant's user may list and read but not write (the others as set up).
    let mut read_only = tenant_policy.clone();
    let objects = read_only["Statement"][1]["Resource"]
        .as_array_mut()
        .unwrap();
    objects.retain(|r| r != &format!("arn:aws:s3:::{b0}/*"));
    assert_eq!(objects.len(), s3_spec.buckets.len() - 1);
    read_only["Statement"].as_array_mut().unwrap().push(
        serde_json::json!({"Effect": "Allow", "Action": ["s3:GetObject"],
                                 "Resource": [format!("arn:aws:s3:::{b0}/*")]}),
    );
    put_policy(&read_only);
    refused(
        &format!("bucket {b0}"),
        "PUT /{b0}/.provisio/activation-probe: HTTP 403 AccessDenied"
            .replace("{b0}", &b0)
            .as_str(),
    );
    put_policy(&tenant_policy);

    // 4. The tenant user's permission on its vhost gone.
    let r = spec.rabbitmq.as_ref().unwrap();
    let permission = format!(
        "/permissions/{}/{}",
        provisio::io::http::seg(&r.vhost),
        provisio::io::http::seg(&r.user)
    );
    assert_eq!(mq.api(Method::Delete, &permission, None).0, 204);
    refused(&format!("vhost {}", r.vhost), "530");
    setup("rabbitmq", &setup_file, &store_dir, &env, &[]);

    // Everything provisioned: activated, one email.
    let (code, log, _) = activate(&spec_file, &store_dir, "uid-ok");
    assert_eq!(code, 0, "{log}");
    for probe in [
        format!("database {}", d0.database),
        format!("bucket {b0}"),
        format!("vhost {}", r.vhost),
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains("passed") && l.contains(&probe)),
            "{probe} did not pass:\n{log}"
        );
    }
    assert!(!log.contains(PASSWORD), "{log}");
    assert_eq!(mails(&maildir), 1);
    let file = tenant_file();
    assert!(file.contains("status: active"), "{file}");
    server.stop().unwrap();
}
