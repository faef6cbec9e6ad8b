//! `provisio setup mysql` / `teardown mysql` against a real MariaDB on 127.0.0.1: two tenants
//! of the example registry, run twice (the second run reports `unchanged`), exact privileges,
//! isolation between tenants, convergence after tampering and after a rotation on purpose,
//! teardown refused before the deletion date and complete after it, and a clear exit code
//! when the server is unreachable.

use crate::support_setup;

use std::collections::BTreeSet;
use std::path::Path;

use mysql::prelude::Queryable;
use provisio::setup::secrets::{Credential, FileStore, SecretStore};
use provisio_core::plan::setup::SetupSpec;
use provisio_core::registry::TenantStatus;
use support_setup::{MYSQL_ADMIN_PASSWORD, MYSQL_ADMIN_USER, MariaDb, provisio};

const A: &str = "abc-corporation-7f3a9c";
const B: &str = "cafe-creme-93b31b";

fn spec_for(tenant: &str, db: &MariaDb) -> SetupSpec {
    let mut spec = support_setup::job_spec(tenant, "mysql");
    let m = spec.mysql.as_mut().expect("the example tenants use MySQL");
    m.host = "127.0.0.1".into();
    m.port = db.port;
    spec
}

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("MYSQL_ADMIN_USER", MYSQL_ADMIN_USER),
        ("MYSQL_ADMIN_PASSWORD", MYSQL_ADMIN_PASSWORD),
    ]
}

fn run(verb: &str, spec: &Path, store: &Path, extra: &[&str]) -> (i32, String, String) {
    let store_arg = format!("file:{}", store.display());
    let mut args = vec![
        verb,
        "mysql",
        "--spec",
        spec.to_str().unwrap(),
        "--secret-store",
        &store_arg,
    ];
    args.extend_from_slice(extra);
    provisio(&args, &env())
}

fn password(store: &FileStore, key: &str) -> String {
    store.get(key).unwrap().expect("credential stored")["password"].clone()
}

/// `SHOW GRANTS` lines of an account, without the password hash.
fn grants(db: &MariaDb, user: &str) -> Vec<String> {
    let mut conn = db.admin();
    let rows: Vec<String> = conn.query(format!("SHOW GRANTS FOR '{user}'@'%'")).unwrap();
    rows.into_iter()
        .map(|g| match g.find(" IDENTIFIED BY PASSWORD") {
            Some(i) => g[..i].to_owned(),
            None => g,
        })
        .collect()
}

fn assert_exact_setup(db: &MariaDb, spec: &SetupSpec) {
    let mut conn = db.admin();
    for d in &spec.mysql.as_ref().unwrap().databases {
        let cs: Option<(String, String)> = conn
            .exec_first(
                "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
                (&d.database,),
            )
            .unwrap();
        assert_eq!(
            cs,
            Some(("utf8mb4".into(), "utf8mb4_unicode_ci".into())),
            "{}",
            d.database
        );
        let pattern = d.database.replace('_', r"\_");
        assert_eq!(
            grants(db, &d.user),
            vec![
                format!("GRANT USAGE ON *.* TO `{}`@`%`", d.user),
                format!(
                    "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, INDEX, ALTER ON `{pattern}`.* TO `{}`@`%`",
                    d.user
                ),
            ],
            "exactly the seed's privileges, on its own database only"
        );
    }
}

fn is_denied(e: &mysql::Error) -> bool {
    // 1044: access denied to database; 1142: command denied on table; 1045: login refused.
    matches!(e, mysql::Error::MySqlError(m) if [1044, 1045, 1142].contains(&m.code))
}

#[test]
fn setup_and_teardown_mysql_on_mariadb() {
    let Some(db) = MariaDb::start() else { return };
    let work = tempfile::tempdir().unwrap();
    let store_dir = work.path().join("store");
    let store = FileStore::new(&store_dir);
    let spec_a = spec_for(A, &db);
    let spec_b = spec_for(B, &db);
    let file_a = support_setup::write_spec(work.path(), "a", &spec_a);
    let file_b = support_setup::write_spec(work.path(), "b", &spec_b);
    let dbs_a = &spec_a.mysql.as_ref().unwrap().databases;
    let dbs_b = &spec_b.mysql.as_ref().unwrap().databases;
    assert!(
        dbs_a.len() >= 2,
        "the example has several products with a database"
    );

    // A wrong admin password is a clear refusal, not a retry loop.
    let store_arg = format!("file:{}", store_dir.display());
    let (code, _, err) = provisio(
        &[
            "setup",
            "mysql",
            "--spec",
            file_a.to_str().unwrap(),
            "--secret-store",
            &store_arg,
        ],
        &[
            ("MYSQL_ADMIN_USER", MYSQL_ADMIN_USER),
            ("MYSQL_ADMIN_PASSWORD", "wrong-password"),
        ],
    );
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains(&format!(
            "mysql refused to let `{MYSQL_ADMIN_USER}` log in at 127.0.0.1:{}",
            db.port
        )),
        "{err}"
    );
    assert!(
        !store_dir.exists(),
        "nothing stored before the server accepted the admin"
    );

    // First run creates everything; the second changes nothing.
    for file in [&file_a, &file_b] {
        let (code, out, err) = run("setup", file, &store_dir, &[]);
        assert_eq!(code, 0, "{out}\n{err}");
        assert!(out.contains(": created"), "{out}");
    }
    for file in [&file_a, &file_b] {
        let (code, out, err) = run("setup", file, &store_dir, &[]);
        assert_eq!(code, 0, "{err}");
        assert!(out.ends_with("mysql: unchanged\n"), "{out}");
        assert!(
            !out.contains(": created") && !out.contains(": updated"),
            "{out}"
        );
    }
    assert_exact_setup(&db, &spec_a);
    assert_exact_setup(&db, &spec_b);

    // Tenant A's user works in its own database…
    let a0 = &dbs_a[0];
    let pw_a = password(&store, &a0.secret_key);
    let mut conn_a = db.connect(&a0.user, &pw_a, Some(&a0.database)).unwrap();
    conn_a
        .query_drop("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))")
        .unwrap();
    conn_a
        .exec_drop("INSERT INTO t VALUES (?, ?)", (1, "a"))
        .unwrap();
    // …and is denied everywhere else: tenant B's database, another product's database of
    // its own tenant, and a name that `_` as a wildcard would have matched.
    let b0 = &dbs_b[0];
    let pw_b = password(&store, &b0.secret_key);
    db.connect(&b0.user, &pw_b, Some(&b0.database))
        .unwrap()
        .query_drop("CREATE TABLE secret (id INT)")
        .unwrap();
    let e = db.connect(&a0.user, &pw_a, Some(&b0.database)).unwrap_err();
    assert!(is_denied(&e), "{e}");
    let e = conn_a
        .query_drop(format!("SELECT * FROM `{}`.secret", b0.database))
        .unwrap_err();
    assert!(is_denied(&e), "{e}");
    let e = db
        .connect(&a0.user, &pw_a, Some(&dbs_a[1].database))
        .unwrap_err();
    assert!(is_denied(&e), "{e}");
    let lookalike: String = a0.database.replacen('_', "x", 1);
    db.admin()
        .query_drop(format!("CREATE DATABASE `{lookalike}`"))
        .unwrap();
    let e = db.connect(&a0.user, &pw_a, Some(&lookalike)).unwrap_err();
    assert!(is_denied(&e), "`_` must not act as a wildcard: {e}");
    // B's password does not log in as A.
    let e = db.connect(&a0.user, &pw_b, None).unwrap_err();
    assert!(is_denied(&e), "{e}");

    // Tampering converges back: an extra privilege and a changed password.
    let mut admin = db.admin();
    admin
        .query_drop(format!("GRANT DROP ON *.* TO '{}'@'%'", a0.user))
        .unwrap();
    admin
        .query_drop(format!(
            "ALTER USER '{}'@'%' IDENTIFIED BY 'something-else-entirely'",
            a0.user
        ))
        .unwrap();
    let (code, out, err) = run("setup", &file_a, &store_dir, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("mysql: user {}: updated", a0.user)),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "mysql: grants of {} on {}: updated",
            a0.user, a0.database
        )),
        "{out}"
    );
    assert_exact_setup(&db, &spec_a);
    db.connect(&a0.user, &pw_a, Some(&a0.database)).unwrap();
    let (_, out, _) = run("setup", &file_a, &store_dir, &[]);
    assert!(out.ends_with("mysql: unchanged\n"), "{out}");

    // Rotation on purpose: a new value in the store is applied by the next run.
    let mut rotated: Credential = store.get(&a0.secret_key).unwrap().unwrap();
    rotated.insert("password".into(), "Rotated0nPurpose0123456789".into());
    store.delete(&a0.secret_key).unwrap();
    store.create(&a0.secret_key, &rotated).unwrap();
    let (code, out, err) = run("setup", &file_a, &store_dir, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("mysql: user {}: updated", a0.user)),
        "{out}"
    );
    assert!(
        db.connect(&a0.user, &pw_a, None).is_err(),
        "the old password is gone"
    );
    db.connect(&a0.user, "Rotated0nPurpose0123456789", Some(&a0.database))
        .unwrap();

    // Teardown refuses an active tenant and changes nothing.
    assert_eq!(spec_a.lifecycle.status, TenantStatus::Active);
    let (code, _, err) = run("teardown", &file_a, &store_dir, &[]);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("refusing to tear down tenant abc-corporation-7f3a9c"),
        "{err}"
    );
    db.connect(&a0.user, "Rotated0nPurpose0123456789", Some(&a0.database))
        .unwrap();

    // Deprovisioning but before the deletion date: refused too.
    let mut due = spec_a.clone();
    due.lifecycle.status = TenantStatus::Deprovisioning;
    due.lifecycle.deletion_date = Some("2025-03-01T00:00:00Z".parse().unwrap());
    let file_due = support_setup::write_spec(work.path(), "a-due", &due);
    let (code, _, err) = run(
        "teardown",
        &file_due,
        &store_dir,
        &["--now", "2025-02-28T23:59:59Z"],
    );
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("has not passed"), "{err}");

    // After it: everything of A goes, twice is harmless, B is untouched.
    let (code, out, err) = run(
        "teardown",
        &file_due,
        &store_dir,
        &["--now", "2025-03-01T00:00:00Z"],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains(": deleted"), "{out}");
    let (code, out, _) = run(
        "teardown",
        &file_due,
        &store_dir,
        &["--now", "2025-03-02T00:00:00Z"],
    );
    assert_eq!(code, 0);
    assert!(out.ends_with("mysql: unchanged\n"), "{out}");
    let mut admin = db.admin();
    let users: BTreeSet<String> = admin
        .query("SELECT User FROM mysql.user")
        .unwrap()
        .into_iter()
        .collect();
    let schemas: BTreeSet<String> = admin
        .query("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")
        .unwrap()
        .into_iter()
        .collect();
    for d in dbs_a {
        assert!(!users.contains(&d.user), "{} left behind", d.user);
        assert!(!schemas.contains(&d.database), "{} left behind", d.database);
        assert!(
            store.get(&d.secret_key).unwrap().is_none(),
            "{} left in the store",
            d.secret_key
        );
    }
    for d in dbs_b {
        assert!(users.contains(&d.user) && schemas.contains(&d.database));
    }
    assert!(
        schemas.contains(&lookalike),
        "teardown only drops the spec's own databases"
    );
    assert_exact_setup(&db, &spec_b);
    let mut conn_b = db.connect(&b0.user, &pw_b, Some(&b0.database)).unwrap();
    conn_b.query_drop("SELECT * FROM secret").unwrap();
}

#[test]
fn unreachable_server_is_a_clear_error() {
    let work = tempfile::tempdir().unwrap();
    let mut spec = support_setup::example_spec(A);
    let port = support_setup::free_port();
    let m = spec.mysql.as_mut().unwrap();
    m.host = "127.0.0.1".into();
    m.port = port;
    let file = support_setup::write_spec(work.path(), "a", &spec);
    let store = work.path().join("store");
    let started = std::time::Instant::now();
    let (code, out, err) = run(
        "setup",
        &file,
        &store,
        &["--attempts", "3", "--backoff-ms", "50"],
    );
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(
        err.contains(&format!(
            "cannot reach mysql at 127.0.0.1:{port} (after 3 attempt(s))"
        )),
        "{err}"
    );
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(150),
        "backoff 50 + 100 ms"
    );
    assert!(
        !store.exists(),
        "nothing stored when nothing could be set up"
    );
}

#[test]
fn missing_admin_credentials_and_bad_specs_are_invalid_input() {
    let work = tempfile::tempdir().unwrap();
    let spec = support_setup::example_spec(A);
    let file = support_setup::write_spec(work.path(), "a", &spec);
    let store = format!("file:{}", work.path().join("store").display());
    let (code, _, err) = provisio(
        &[
            "setup",
            "mysql",
            "--spec",
            file.to_str().unwrap(),
            "--secret-store",
            &store,
        ],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("MYSQL_ADMIN_USER must be set"), "{err}");

    let mut bad = spec.clone();
    bad.mysql.as_mut().unwrap().databases[0].database = "x`; DROP DATABASE mysql; --".into();
    let file = support_setup::write_spec(work.path(), "bad", &bad);
    let (code, _, err) = run("setup", &file, &work.path().join("store"), &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("invalid MySQL database"), "{err}");
}

/// The store the rendered Jobs use: `--secret-store aws-secrets-manager` (moto's Secrets
/// Manager, signed requests checked) with MariaDB: passwords created once, the second run
/// `unchanged`, the stored password logs in, teardown deletes the secrets.
#[test]
fn mysql_with_the_aws_secrets_manager_store() {
    let Some(db) = MariaDb::start() else { return };
    let Some(moto) = support_setup::Moto::start() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let mut spec = spec_for(A, &db);
    spec.lifecycle.status = TenantStatus::Deprovisioning;
    spec.lifecycle.deletion_date = Some("2025-03-01T00:00:00Z".parse().unwrap());
    let file = support_setup::write_spec(work.path(), "a", &spec);
    let endpoint = moto.endpoint();
    let mut env = env();
    env.extend([
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", moto.admin.access_key.as_str()),
        ("AWS_SECRET_ACCESS_KEY", moto.admin.secret_key.as_str()),
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", endpoint.as_str()),
    ]);
    let args = |verb: &'static str| {
        vec![
            verb,
            "mysql",
            "--spec",
            file.to_str().unwrap(),
            "--secret-store",
            "aws-secrets-manager",
            "--now",
            "2025-03-02T00:00:00Z",
        ]
    };
    let (code, out, err) = provisio(&args("setup"), &env);
    assert_eq!(code, 0, "{out}\n{err}");
    let d = &spec.mysql.as_ref().unwrap().databases[0];
    assert!(
        out.contains(&format!("mysql: secret {}: created", d.secret_key)),
        "{out}"
    );
    let (code, out, err) = provisio(&args("setup"), &env);
    assert_eq!(code, 0, "{err}");
    assert!(out.ends_with("mysql: unchanged\n"), "{out}");
    let store = provisio::setup::secrets::AwsSecretsManager::new(moto.client(
        "secrets manager",
        "secretsmanager",
        &moto.admin,
    ));
    let stored = store
        .get(&d.secret_key)
        .unwrap()
        .expect("stored in Secrets Manager");
    assert_eq!(stored["username"], d.user);
    db.connect(&d.user, &stored["password"], Some(&d.database))
        .unwrap();
    let (code, out, err) = provisio(&args("teardown"), &env);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(store.get(&d.secret_key).unwrap().is_none(), "{out}");
}
