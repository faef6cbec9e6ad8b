//! Buckets through the S3 API and the AWS Secrets Manager store, against moto's server with
//! its access control on (every request signed and checked): `provisio setup minio` twice
//! (`unchanged`), versioning, the lifecycle rule and the public-prefix policy exactly as
//! declared, convergence after a registry change and tampering, tenant A's key (with the
//! policy setup gives tenant users) refused on tenant B's bucket, guarded teardown that
//! removes every version; the secret store creates once, never overwrites, deletes.

use crate::support_setup;

use std::path::Path;

use provisio::setup::Change;
use provisio::setup::aws::{Client, Credentials};
use provisio::setup::s3::{self, lifecycle_xml, public_policy, tag_values};
use provisio::setup::secrets::{self, AwsSecretsManager, SecretStore};
use provisio_core::plan::setup::{BucketSpec, SetupSpec};
use provisio_core::registry::TenantStatus;
use support_setup::{Moto, provisio};

const A: &str = "abc-corporation-7f3a9c";
const B: &str = "cafe-creme-93b31b";

fn spec_for(tenant: &str, moto: &Moto) -> SetupSpec {
    let mut spec = support_setup::job_spec(tenant, "minio");
    let s = spec.s3.as_mut().expect("the example tenants use buckets");
    s.host = "127.0.0.1".into();
    s.port = moto.port;
    spec
}

fn run(moto: &Moto, verb: &str, spec: &Path, extra: &[&str]) -> (i32, String, String) {
    let store = spec.parent().unwrap().join("store");
    let store_arg = format!("file:{}", store.display());
    let mut args = vec![
        verb,
        "minio",
        "--spec",
        spec.to_str().unwrap(),
        "--secret-store",
        &store_arg,
        // moto has no MinIO admin API (tests/it/setup_minio_admin.rs covers that protocol).
        "--buckets-only",
    ];
    args.extend_from_slice(extra);
    provisio(
        &args,
        &[
            ("MINIO_ROOT_USER", &moto.admin.access_key),
            ("MINIO_ROOT_PASSWORD", &moto.admin.secret_key),
        ],
    )
}

fn get(c: &Client, path: &str, query: &[(&str, &str)]) -> (u16, String) {
    let r = c.send("GET", path, query, &[], b"").unwrap();
    (r.status, r.body)
}

fn put_object(c: &Client, bucket: &str, key: &str, body: &[u8]) -> u16 {
    c.send("PUT", &format!("/{bucket}/{key}"), &[], &[], body)
        .unwrap()
        .status
}

fn assert_buckets(admin: &Client, spec: &SetupSpec) {
    for b in &spec.s3.as_ref().unwrap().buckets {
        let path = format!("/{}", b.name);
        let (status, body) = get(admin, &path, &[("versioning", "")]);
        assert_eq!(status, 200);
        assert_eq!(tag_values(&body, "Status"), ["Enabled"], "{}", b.name);
        let (status, body) = get(admin, &path, &[("lifecycle", "")]);
        assert_eq!(status, 200, "{body}");
        assert_eq!(tag_values(&body, "Rule").len(), 1, "{body}");
        assert_eq!(tag_values(&body, "NoncurrentDays"), ["30"], "{body}");
        assert_eq!(
            tag_values(&body, "ExpiredObjectDeleteMarker"),
            ["true"],
            "{body}"
        );
        assert!(lifecycle_xml().contains("<ID>provisio-expire-noncurrent</ID>"));
        let (status, body) = get(admin, &path, &[("policy", "")]);
        match &b.public_prefix {
            Some(prefix) => {
                assert_eq!(status, 200, "{body}");
                let policy: serde_json::Value = serde_json::from_str(&body).unwrap();
                assert_eq!(policy, public_policy(&b.name, prefix));
                assert_eq!(
                    policy["Statement"][0]["Resource"][0],
                    format!("arn:aws:s3:::{}/{prefix}*", b.name),
                    "anonymous read on the public prefix only"
                );
            }
            None => assert_eq!(
                status, 404,
                "private bucket {} has a policy: {body}",
                b.name
            ),
        }
    }
}

#[test]
fn buckets_on_moto_with_access_control() {
    let Some(moto) = Moto::start() else { return };
    let work = tempfile::tempdir().unwrap();
    let admin = moto.client("s3", "s3", &moto.admin);
    let spec_a = spec_for(A, &moto);
    let spec_b = spec_for(B, &moto);
    let file_a = support_setup::write_spec(work.path(), "a", &spec_a);
    let file_b = support_setup::write_spec(work.path(), "b", &spec_b);
    let sa = spec_a.s3.as_ref().unwrap();
    let sb = spec_b.s3.as_ref().unwrap();
    assert!(sa.buckets.iter().any(|b| b.public_prefix.is_some()));
    assert!(sa.buckets.iter().any(|b| b.public_prefix.is_none()));

    for file in [&file_a, &file_b] {
        let (code, out, err) = run(&moto, "setup", file, &[]);
        assert_eq!(code, 0, "{out}\n{err}");
        assert!(out.contains(": created"), "{out}");
    }
    for file in [&file_a, &file_b] {
        let (code, out, err) = run(&moto, "setup", file, &[]);
        assert_eq!(code, 0, "{err}");
        assert!(out.ends_with("minio: unchanged\n"), "{out}");
    }
    assert_buckets(&admin, &spec_a);
    assert_buckets(&admin, &spec_b);

    // Tenant keys with the policy setup gives tenant users: own buckets yes, B's no.
    let key_for = |tenant: &str, spec: &SetupSpec| -> Credentials {
        let user = format!("{tenant}-app");
        moto.iam_ok("CreateUser", &[("UserName", &user)]);
        let policy = s3::tenant_policy(spec.s3.as_ref().unwrap()).to_string();
        moto.iam_ok(
            "PutUserPolicy",
            &[
                ("UserName", &user),
                ("PolicyName", "tenant"),
                ("PolicyDocument", &policy),
            ],
        );
        moto.create_access_key(&user)
    };
    let as_a = moto.client("s3", "s3", &key_for(A, &spec_a));
    let own = &sa.buckets[0].name;
    let other = &sb.buckets[0].name;
    assert_eq!(
        put_object(&admin, other, "secret.txt", b"tenant B data"),
        200
    );
    assert_eq!(put_object(&as_a, own, "mine.txt", b"tenant A data"), 200);
    assert_eq!(
        get(&as_a, &format!("/{own}/mine.txt"), &[]),
        (200, "tenant A data".into())
    );
    assert_eq!(get(&as_a, &format!("/{own}"), &[("list-type", "2")]).0, 200);
    let (status, body) = get(&as_a, &format!("/{other}/secret.txt"), &[]);
    assert_eq!(status, 403, "tenant A read tenant B's object: {body}");
    assert!(body.contains("AccessDenied"), "{body}");
    assert_eq!(
        get(&as_a, &format!("/{other}"), &[("list-type", "2")]).0,
        403
    );
    assert_eq!(put_object(&as_a, other, "x.txt", b"x"), 403);

    // Convergence: the public prefix removed, a bucket added, versioning suspended by hand.
    let mut changed = spec_a.clone();
    {
        let s = changed.s3.as_mut().unwrap();
        for b in &mut s.buckets {
            b.public_prefix = None;
        }
        s.buckets.push(BucketSpec {
            name: format!("{A}-reviews"),
            public_prefix: Some("thumbs/".into()),
        });
    }
    let suspended = r#"<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>Suspended</Status></VersioningConfiguration>"#;
    let r = admin
        .send(
            "PUT",
            &format!("/{own}"),
            &[("versioning", "")],
            &[],
            suspended.as_bytes(),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let file_changed = support_setup::write_spec(work.path(), "a-changed", &changed);
    let (code, out, err) = run(&moto, "setup", &file_changed, &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let public = &sa
        .buckets
        .iter()
        .find(|b| b.public_prefix.is_some())
        .unwrap()
        .name;
    assert!(
        out.contains(&format!("policy of {public}: deleted")),
        "{out}"
    );
    assert!(
        out.contains(&format!("bucket {A}-reviews: created")),
        "{out}"
    );
    assert!(
        out.contains(&format!("versioning of {own}: updated")),
        "{out}"
    );
    assert_buckets(&admin, &changed);
    let (_, out, _) = run(&moto, "setup", &file_changed, &[]);
    assert!(out.ends_with("minio: unchanged\n"), "{out}");

    // Teardown: refused while active; once due, every version goes, then the bucket.
    assert_eq!(put_object(&admin, own, "mine.txt", b"second version"), 200);
    let r = admin
        .send("DELETE", &format!("/{own}/mine.txt"), &[], &[], b"")
        .unwrap();
    assert!(r.ok(), "a delete marker: {}", r.body);
    assert_eq!(spec_a.lifecycle.status, TenantStatus::Active);
    let (code, _, err) = run(&moto, "teardown", &file_changed, &[]);
    assert_eq!(code, 4, "{err}");
    let mut due = changed.clone();
    due.lifecycle.status = TenantStatus::Deprovisioning;
    due.lifecycle.deletion_date = Some("2025-03-01T00:00:00Z".parse().unwrap());
    let file_due = support_setup::write_spec(work.path(), "a-due", &due);
    let (code, out, err) = run(
        &moto,
        "teardown",
        &file_due,
        &["--now", "2025-03-01T00:00:01Z"],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    for b in &due.s3.as_ref().unwrap().buckets {
        assert!(
            out.contains(&format!("bucket {}: deleted", b.name)),
            "{out}"
        );
        assert_eq!(
            get(&admin, &format!("/{}", b.name), &[("versioning", "")]).0,
            404
        );
    }
    let (_, out, _) = run(
        &moto,
        "teardown",
        &file_due,
        &["--now", "2025-03-01T00:00:01Z"],
    );
    assert!(out.ends_with("minio: unchanged\n"), "{out}");
    assert_buckets(&admin, &spec_b);
    assert_eq!(
        get(&admin, &format!("/{other}/secret.txt"), &[]),
        (200, "tenant B data".into())
    );
}

#[test]
fn aws_secrets_manager_store_on_moto() {
    let Some(moto) = Moto::start() else { return };
    let store =
        AwsSecretsManager::new(moto.client("secrets manager", "secretsmanager", &moto.admin));
    let key = "/e-commerce/tenants/abc-corporation-7f3a9c/orders-db";
    assert_eq!(store.get(key).unwrap(), None);
    let (p1, c1) = secrets::ensure(&store, key, "username", "abc_orders", "password").unwrap();
    assert_eq!(c1, Change::Created);
    let (p2, c2) = secrets::ensure(&store, key, "username", "abc_orders", "password").unwrap();
    assert_eq!(
        (p2.as_str(), c2),
        (p1.as_str(), Change::Unchanged),
        "never rotated by a re-run"
    );
    let stored = store.get(key).unwrap().unwrap();
    assert_eq!(stored["username"], "abc_orders");
    assert_eq!(stored["password"], p1);
    // create never overwrites.
    let other = secrets::Credential::from([
        ("username".into(), "x".into()),
        ("password".into(), "y".repeat(20)),
    ]);
    assert_eq!(
        store.create(key, &other).unwrap(),
        secrets::Created::AlreadyExists
    );
    assert_eq!(store.get(key).unwrap().unwrap()["password"], p1);
    assert!(store.delete(key).unwrap());
    assert!(!store.delete(key).unwrap());
    assert_eq!(store.get(key).unwrap(), None);
    // A wrong secret key is refused by moto's signature check, with a clear error.
    let bad = AwsSecretsManager::new(moto.client(
        "secrets manager",
        "secretsmanager",
        &Credentials {
            secret_key: "wrong".into(),
            ..moto.admin.clone()
        },
    ));
    let e = bad.get(key).unwrap_err().to_string();
    assert!(e.contains("secret store: cannot read"), "{e}");
    let source = std::error::Error::source(&bad.get(key).unwrap_err())
        .unwrap()
        .to_string();
    assert!(source.contains("HTTP 403"), "{source}");
}

#[test]
fn unreachable_s3_is_a_clear_error() {
    let work = tempfile::tempdir().unwrap();
    let port = support_setup::free_port();
    let mut spec = support_setup::example_spec(A);
    let s = spec.s3.as_mut().unwrap();
    s.host = "127.0.0.1".into();
    s.port = port;
    let file = support_setup::write_spec(work.path(), "a", &spec);
    let (code, out, err) = provisio(
        &[
            "setup",
            "minio",
            "--spec",
            file.to_str().unwrap(),
            "--secret-store",
            &format!("file:{}", work.path().join("store").display()),
            "--attempts",
            "2",
            "--backoff-ms",
            "10",
            "--buckets-only",
        ],
        &[("MINIO_ROOT_USER", "x"), ("MINIO_ROOT_PASSWORD", "y")],
    );
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(
        err.contains(&format!(
            "cannot reach s3 at http://127.0.0.1:{port} (after 2 attempt(s))"
        )),
        "{err}"
    );
}

/// Our SigV4 signature of a query whose values hold `/`, a space, `+`, `=`, `&`, `~` and
/// non-ASCII letters equals the one botocore (the AWS SDK's signer) computes for the same
/// request: every byte but the unreserved ones percent-encoded, `/` as `%2F`.
#[test]
fn query_values_are_signed_as_botocore_signs_them() {
    if !support_setup::require("python3") {
        return;
    }
    let creds = Credentials {
        access_key: "AKIDEXAMPLE".into(),
        secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        session_token: None,
    };
    let now: chrono::DateTime<chrono::Utc> = "2025-01-02T03:04:05Z".parse().unwrap();
    let query = [
        ("prefix", "abc-7f3a9c/2025-01-02 é/+=&~*"),
        ("list-type", "2"),
        ("continuation-token", "1/abc=="),
    ];
    let signed = provisio::setup::aws::sign(
        &provisio::setup::aws::Request {
            method: "GET",
            host: "127.0.0.1:9000",
            path: "/provisio-archive",
            query: &query,
            headers: &[],
            body: b"",
        },
        &creds,
        "us-east-1",
        "s3",
        now,
    );
    let header = |name: &str| {
        signed
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let request = serde_json::json!({
        "method": "GET",
        "url": "http://127.0.0.1:9000/provisio-archive",
        "query": query,
        "headers": {"host": "127.0.0.1:9000",
                    "x-amz-content-sha256": header("x-amz-content-sha256"),
                    "x-amz-date": header("x-amz-date")},
        "body": "",
        "region": "us-east-1",
        "service": "s3",
        "access_key": creds.access_key,
        "secret_key": creds.secret_key,
        "amz_date": header("x-amz-date"),
    });
    let mut child = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/tools/sigv4_botocore.py"
        ))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        request.to_string().as_bytes(),
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        header("authorization"),
        String::from_utf8(out.stdout).unwrap().trim_end()
    );
    assert_eq!(
        provisio::setup::aws::canonical_query(&query),
        "continuation-token=1%2Fabc%3D%3D&list-type=2&prefix=abc-7f3a9c%2F2025-01-02%20%C3%A9%2F%2B%3D%26~%2A"
    );
}

/// `ListObjectsV2` below a prefix holding `/` and a space: only the keys below it, with the
/// prefix's leading unreserved run (`s3::server_prefix`) sent to the server — `list_current`
/// refuses a key outside that, so a server that ignored it would fail this test. (moto refuses
/// a `%2F` in a signed query value, getmoto/moto#5948, hence not the whole prefix.)
#[test]
fn listing_narrows_on_the_server_and_keeps_only_the_prefix() {
    let Some(moto) = Moto::start() else { return };
    let admin = moto.client("s3", "s3", &moto.admin);
    let bucket = "provisio-listing";
    assert_eq!(
        admin
            .send("PUT", &format!("/{bucket}"), &[], &[], b"")
            .unwrap()
            .status,
        200
    );
    let inside = ["tenant-1/2025 q/a.txt", "tenant-1/2025 q/deep/b.bin"];
    let outside = [
        "tenant-1/2024/a.txt",
        "tenant-1/2025 q",
        "tenant-2/2025 q/a.txt",
    ];
    for k in inside.iter().chain(&outside) {
        s3::put_object(&admin, bucket, k, k.as_bytes(), None, None).unwrap();
    }
    assert_eq!(s3::server_prefix("tenant-1/2025 q/"), "tenant-1");
    let listed = s3::list_current(&admin, bucket, "tenant-1/2025 q/").unwrap();
    let keys: Vec<&str> = listed.iter().map(|l| l.key.as_str()).collect();
    assert_eq!(keys, inside);
    assert_eq!(listed[0].size, inside[0].len() as u64);
    let log = moto.log();
    assert!(
        log.contains(&format!(
            "GET /{bucket}?list-type=2&max-keys=1000&prefix=tenant-1 "
        )),
        "the server was not asked to narrow the listing:\n{log}"
    );
    assert_eq!(s3::list_current(&admin, bucket, "").unwrap().len(), 5);
    assert!(
        s3::list_current(&admin, bucket, "tenant-3/")
            .unwrap()
            .is_empty()
    );
}
