//! MinIO's admin protocol, cross-checked with the official MinIO Python SDK (`minio`):
//! `minio.crypto` decrypts what provisio encrypts (both AEADs, one and several chunks),
//! provisio decrypts what `minio.crypto` encrypts, and provisio's admin requests have the
//! same method, path and query as `minio.MinioAdmin`'s for the same operations (both sent to
//! a recording HTTP server on 127.0.0.1), with SigV4 signatures for service `s3`.

use crate::support_setup;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use provisio::setup::aws::{Client, Credentials};
use provisio::setup::madmin::{self, Aead, MinioAdmin};
use serde_json::json;

const ADMIN_KEY: &str = "minio-root";
const ADMIN_SECRET: &str = "minio-root-secret-0123456789";

/// Runs a Python snippet; `None` (test skipped) when the SDK is missing and skipping is
/// allowed, otherwise a missing SDK fails the test.
fn python(script: &str, args: &[&str]) -> Option<String> {
    let probe = Command::new("python3")
        .args(["-c", "import minio.crypto, minio.minioadmin"])
        .output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        if std::env::var("PROVISIO_ALLOW_SKIP").is_ok_and(|v| v == "1") {
            eprintln!("SKIPPED: the `minio` Python SDK is not installed");
            return None;
        }
        panic!("the `minio` Python SDK is required: pip install minio");
    }
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

/// Python side of the crypto check: `decrypt <file> <secret>` prints the plaintext as hex;
/// `encrypt <in> <out> <secret>` writes `minio.crypto.encrypt(in)`.
const CRYPTO_PY: &str = r#"
import sys, io
from minio import crypto
class Body:
    """The part of a urllib3 response minio.crypto.decrypt reads."""
    def __init__(self, data): self.f = io.BytesIO(data)
    def read(self, n=-1): return self.f.read(n)
    def close(self): pass
    def release_conn(self): pass
if sys.argv[1] == "decrypt":
    data = open(sys.argv[2], "rb").read()
    print(crypto.decrypt(Body(data), sys.argv[3]).hex())
else:
    plain = open(sys.argv[2], "rb").read()
    open(sys.argv[3], "wb").write(crypto.encrypt(plain, sys.argv[4]))
"#;

#[test]
fn crypto_is_compatible_with_the_python_sdk() {
    let dir = tempfile::tempdir().unwrap();
    let small = br#"{"status":"enabled","secretKey":"tenant-secret"}"#.to_vec();
    let large: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 256) as u8).collect();
    for (name, plain) in [("small", &small), ("large", &large)] {
        for aead in [Aead::AesGcm, Aead::ChaCha20Poly1305] {
            // Ours → theirs.
            let sealed = madmin::encrypt(plain, ADMIN_SECRET, aead).unwrap();
            let path = dir.path().join(format!("{name}-{aead:?}.bin"));
            std::fs::write(&path, &sealed).unwrap();
            let Some(hex_out) = python(
                CRYPTO_PY,
                &["decrypt", path.to_str().unwrap(), ADMIN_SECRET],
            ) else {
                return;
            };
            assert_eq!(
                hex::decode(hex_out.trim()).unwrap(),
                *plain,
                "{name} {aead:?}"
            );
        }
        // Theirs → ours.
        let input = dir.path().join(format!("{name}.plain"));
        let output = dir.path().join(format!("{name}.sealed"));
        std::fs::write(&input, plain).unwrap();
        python(
            CRYPTO_PY,
            &[
                "encrypt",
                input.to_str().unwrap(),
                output.to_str().unwrap(),
                ADMIN_SECRET,
            ],
        )
        .unwrap();
        let sealed = std::fs::read(&output).unwrap();
        assert_eq!(
            madmin::decrypt(&sealed, ADMIN_SECRET).unwrap(),
            *plain,
            "{name}"
        );
        assert!(madmin::decrypt(&sealed, "not-the-secret").is_err());
    }
}

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    authorization: String,
    body: Vec<u8>,
}

/// An HTTP/1.1 server that records every request and answers `{}` (204 for policy attach).
fn recorder() -> (u16, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let log = log.clone();
            std::thread::spawn(move || {
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut parts = line.split_whitespace();
                    let method = parts.next().unwrap_or_default().to_owned();
                    let target = parts.next().unwrap_or_default().to_owned();
                    let mut headers = BTreeMap::new();
                    loop {
                        let mut h = String::new();
                        reader.read_line(&mut h).unwrap();
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                        }
                    }
                    let len: usize = headers
                        .get("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let mut body = vec![0u8; len];
                    reader.read_exact(&mut body).unwrap();
                    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
                    let query = query
                        .split('&')
                        .filter(|p| !p.is_empty())
                        .map(|p| {
                            let (k, v) = p.split_once('=').unwrap_or((p, ""));
                            (k.to_owned(), v.to_owned())
                        })
                        .collect();
                    let attach = path.ends_with("/policy/attach");
                    log.lock().unwrap().push(Seen {
                        method,
                        path: path.to_owned(),
                        query,
                        authorization: headers.get("authorization").cloned().unwrap_or_default(),
                        body,
                    });
                    let response = if attach {
                        "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n".to_owned()
                    } else {
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}".to_owned()
                    };
                    writer.write_all(response.as_bytes()).unwrap();
                }
            });
        }
    });
    (port, seen)
}

const ADMIN_PY: &str = r#"
import sys, json
from minio import MinioAdmin
from minio.credentials import StaticProvider
a = MinioAdmin(endpoint="127.0.0.1:" + sys.argv[1], credentials=StaticProvider(sys.argv[2], sys.argv[3]), region="us-east-1", secure=False)
policy = json.loads(sys.argv[4])
a.policy_add("abc-corporation-7f3a9c-app-buckets", policy=policy)
a.policy_info("abc-corporation-7f3a9c-app-buckets")
a.user_add("abc-corporation-7f3a9c-app", "tenant-secret-0123456789")
a.user_info("abc-corporation-7f3a9c-app")
a.attach_policy(["abc-corporation-7f3a9c-app-buckets"], user="abc-corporation-7f3a9c-app")
a.user_remove("abc-corporation-7f3a9c-app")
a.policy_remove("abc-corporation-7f3a9c-app-buckets")
"#;

#[test]
fn admin_requests_match_the_python_sdk() {
    let spec = support_setup::example_spec("abc-corporation-7f3a9c");
    let s3spec = spec.s3.as_ref().unwrap();
    let policy = provisio::setup::s3::tenant_policy(s3spec);
    let name = madmin::policy_name(s3spec);
    assert_eq!(name, "abc-corporation-7f3a9c-app-buckets");

    let (port, seen) = recorder();
    let Some(_) = python(
        ADMIN_PY,
        &[
            &port.to_string(),
            ADMIN_KEY,
            ADMIN_SECRET,
            &policy.to_string(),
        ],
    ) else {
        return;
    };
    let theirs: Vec<Seen> = std::mem::take(&mut *seen.lock().unwrap());

    let client = Client::new(
        "minio",
        "s3",
        &format!("http://127.0.0.1:{port}"),
        "us-east-1",
        Credentials {
            access_key: ADMIN_KEY.into(),
            secret_key: ADMIN_SECRET.into(),
            session_token: None,
        },
        provisio::io::retry::Policy::default(),
    )
    .unwrap();
    let admin = MinioAdmin::new(client, ADMIN_SECRET.into());
    admin.policy_add(&name, &policy).unwrap();
    admin.policy_info(&name).unwrap();
    admin
        .user_add(&s3spec.user, "tenant-secret-0123456789")
        .unwrap();
    admin.user_info(&s3spec.user).unwrap();
    admin.attach_policy(&[&name], &s3spec.user).unwrap();
    admin.user_remove(&s3spec.user).unwrap();
    admin.policy_remove(&name).unwrap();
    let ours: Vec<Seen> = std::mem::take(&mut *seen.lock().unwrap());

    let shape = |v: &[Seen]| -> Vec<(String, String, BTreeMap<String, String>)> {
        v.iter()
            .map(|s| (s.method.clone(), s.path.clone(), s.query.clone()))
            .collect()
    };
    assert_eq!(theirs.len(), 7, "{theirs:#?}");
    assert_eq!(shape(&ours), shape(&theirs));
    assert_eq!(ours[2].path, "/minio/admin/v3/add-user");
    for s in &ours {
        assert!(
            s.authorization
                .starts_with(&format!("AWS4-HMAC-SHA256 Credential={ADMIN_KEY}/"))
                && s.authorization.contains("/us-east-1/s3/aws4_request"),
            "{}",
            s.authorization
        );
    }
    // The policy travels as plain JSON, like the SDK's; user and attach bodies are
    // encrypted, and the SDK's crypto opens ours.
    let sent: serde_json::Value = serde_json::from_slice(&ours[0].body).unwrap();
    assert_eq!(
        sent,
        serde_json::from_slice::<serde_json::Value>(&theirs[0].body).unwrap()
    );
    let dir = tempfile::tempdir().unwrap();
    for (i, wanted) in [
        (
            2,
            json!({"status": "enabled", "secretKey": "tenant-secret-0123456789"}),
        ),
        (4, json!({"policies": [name], "user": s3spec.user})),
    ] {
        let path = dir.path().join(format!("body-{i}.bin"));
        std::fs::write(&path, &ours[i].body).unwrap();
        let plain = python(
            CRYPTO_PY,
            &["decrypt", path.to_str().unwrap(), ADMIN_SECRET],
        )
        .unwrap();
        let plain: serde_json::Value =
            serde_json::from_slice(&hex::decode(plain.trim()).unwrap()).unwrap();
        assert_eq!(plain, wanted);
        // And ours opens the SDK's body for the same request.
        let theirs_plain: serde_json::Value =
            serde_json::from_slice(&madmin::decrypt(&theirs[i].body, ADMIN_SECRET).unwrap())
                .unwrap();
        assert_eq!(theirs_plain, wanted);
    }
}
