//! The reports a tenant's Jobs send to `serve` (`POST /api/v1/lifecycle/tenants/{tenant}/reports`):
//! the wire format, parsed strictly (unknown fields and duplicate keys refused: our own Jobs
//! send these, so a typo is a bug, not tolerance), and written by [`Report::to_json`] (the
//! client side, used by every lifecycle Job). `docs/openapi.json` describes the same bodies.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::refusal::Refusal;
use crate::registry::lifecycle_rules::{is_sha256_hex, is_website_id, reason_problem};
use crate::strict_json::{self, json_type, truncate};

/// What a report says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReportKind {
    /// activate: the SMTP server accepted the welcome email.
    WelcomeSent,
    /// activate: every probe passed; the tenant is active.
    Activated,
    /// sync-failed: a sync of a provisioning or failed tenant failed.
    Failed,
    /// backup: the archive holds the final backup.
    BackupCompleted,
    /// backup: an attempt failed.
    BackupFailed,
    /// purge-check: no workload, ingress, certificate, secret or Grafana object is left.
    WorkloadsPruned,
    /// teardown: an attempt failed.
    TeardownFailed,
    /// teardown: the tenant's data, users and secrets are gone from the shared services.
    TeardownCompleted,
    /// namespace-check: the namespace is gone.
    NamespaceRemoved,
}

impl ReportKind {
    pub const ALL: [ReportKind; 9] = [
        ReportKind::WelcomeSent,
        ReportKind::Activated,
        ReportKind::Failed,
        ReportKind::BackupCompleted,
        ReportKind::BackupFailed,
        ReportKind::WorkloadsPruned,
        ReportKind::TeardownFailed,
        ReportKind::TeardownCompleted,
        ReportKind::NamespaceRemoved,
    ];

    /// The `kind` on the wire (and on the command line: `provisio report <kind>`).
    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::WelcomeSent => "welcome-sent",
            ReportKind::Activated => "activated",
            ReportKind::Failed => "failed",
            ReportKind::BackupCompleted => "backup-completed",
            ReportKind::BackupFailed => "backup-failed",
            ReportKind::WorkloadsPruned => "workloads-pruned",
            ReportKind::TeardownFailed => "teardown-failed",
            ReportKind::TeardownCompleted => "teardown-completed",
            ReportKind::NamespaceRemoved => "namespace-removed",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// What the teardown removed (counts, for the commit message).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    pub databases: u64,
    pub mysql_users: u64,
    pub vhosts: u64,
    pub rabbitmq_users: u64,
    pub buckets: u64,
    pub object_versions: u64,
    pub minio_users: u64,
    pub secrets: u64,
}

impl Removed {
    /// The counts' names on the wire, in order.
    pub const FIELDS: [&'static str; 8] = [
        "databases",
        "mysqlUsers",
        "vhosts",
        "rabbitmqUsers",
        "buckets",
        "objectVersions",
        "minioUsers",
        "secrets",
    ];

    fn values(&self) -> [u64; 8] {
        [
            self.databases,
            self.mysql_users,
            self.vhosts,
            self.rabbitmq_users,
            self.buckets,
            self.object_versions,
            self.minio_users,
            self.secrets,
        ]
    }

    fn from_values(v: [u64; 8]) -> Self {
        Removed {
            databases: v[0],
            mysql_users: v[1],
            vhosts: v[2],
            rabbitmq_users: v[3],
            buckets: v[4],
            object_versions: v[5],
            minio_users: v[6],
            secrets: v[7],
        }
    }
}

/// A report's own fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportBody {
    WelcomeSent {
        /// The `Message-ID` of the email (`<…>`), to recognise a duplicate.
        message_id: String,
    },
    Activated {
        /// The websites-service's record id (absent when no websites product is configured).
        website: Option<String>,
    },
    Failed {
        reason: String,
    },
    BackupCompleted {
        /// `s3://<archive bucket>/<tenant>/<backup id>/`.
        location: String,
        /// SHA-256 of the manifest's bytes, as uploaded.
        manifest_sha256: String,
        files: u64,
        bytes: u64,
    },
    BackupFailed {
        reason: String,
    },
    WorkloadsPruned,
    TeardownFailed {
        reason: String,
    },
    TeardownCompleted {
        removed: Removed,
    },
    NamespaceRemoved,
}

/// One report of a Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Idempotency key: the Jobs send `<kind>:<Job uid>` (the same for every pod of a Job).
    pub id: String,
    /// When it happened by the Job's clock: recorded, never used for a check (serve uses its
    /// own clock).
    pub at: DateTime<Utc>,
    pub body: ReportBody,
}

impl Report {
    pub fn kind(&self) -> ReportKind {
        match self.body {
            ReportBody::WelcomeSent { .. } => ReportKind::WelcomeSent,
            ReportBody::Activated { .. } => ReportKind::Activated,
            ReportBody::Failed { .. } => ReportKind::Failed,
            ReportBody::BackupCompleted { .. } => ReportKind::BackupCompleted,
            ReportBody::BackupFailed { .. } => ReportKind::BackupFailed,
            ReportBody::WorkloadsPruned => ReportKind::WorkloadsPruned,
            ReportBody::TeardownFailed { .. } => ReportKind::TeardownFailed,
            ReportBody::TeardownCompleted { .. } => ReportKind::TeardownCompleted,
            ReportBody::NamespaceRemoved => ReportKind::NamespaceRemoved,
        }
    }

    /// The report as JSON (the wire format; keys in a fixed order).
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("kind".into(), json!(self.kind().as_str()));
        m.insert("id".into(), json!(self.id));
        m.insert(
            "at".into(),
            json!(self.at.to_rfc3339_opts(SecondsFormat::Secs, true)),
        );
        match &self.body {
            ReportBody::WelcomeSent { message_id } => {
                m.insert("messageId".into(), json!(message_id));
            }
            ReportBody::Activated { website } => {
                if let Some(id) = website {
                    m.insert("website".into(), json!({ "id": id }));
                }
            }
            ReportBody::Failed { reason }
            | ReportBody::BackupFailed { reason }
            | ReportBody::TeardownFailed { reason } => {
                m.insert("reason".into(), json!(reason));
            }
            ReportBody::BackupCompleted {
                location,
                manifest_sha256,
                files,
                bytes,
            } => {
                m.insert("location".into(), json!(location));
                m.insert("manifestSha256".into(), json!(manifest_sha256));
                m.insert("files".into(), json!(files));
                m.insert("bytes".into(), json!(bytes));
            }
            ReportBody::TeardownCompleted { removed } => {
                let counts: Map<String, Value> = Removed::FIELDS
                    .iter()
                    .zip(removed.values())
                    .map(|(k, v)| ((*k).to_owned(), json!(v)))
                    .collect();
                m.insert("removed".into(), Value::Object(counts));
            }
            ReportBody::WorkloadsPruned | ReportBody::NamespaceRemoved => {}
        }
        Value::Object(m)
    }

    /// The body a Job sends (compact JSON).
    pub fn to_json(&self) -> String {
        self.to_value().to_string()
    }

    /// Pretty JSON, as the commit message carries it.
    pub fn to_pretty_json(&self) -> String {
        serde_json::to_string_pretty(&self.to_value()).expect("a JSON value serializes")
    }

    /// 16 hex digits of SHA-256 over the canonical report: the same id with another
    /// fingerprint is not a repeat but a reused id.
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(self.to_json().as_bytes()))[..16].to_owned()
    }
}

/// An idempotency id: 1 to 128 of `[A-Za-z0-9_.:-]`.
pub fn is_report_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
}

/// A report body (bytes) → a checked [`Report`]. Field values that depend on the tenant (the
/// archive bucket of a backup location) are checked by [`super::decide`].
pub fn parse(body: &[u8]) -> Result<Report, Refusal> {
    let value = strict_json::read(body).map_err(|m| Refusal::new("malformed_json", m))?;
    let Value::Object(map) = &value else {
        return Err(Refusal::new(
            "invalid_field",
            format!(
                "the body must be a JSON object (the report), got {}",
                json_type(&value)
            ),
        ));
    };
    let f = Fields {
        map,
        path: String::new(),
    };
    let kind_name = f.string("kind")?;
    let Some(kind) = ReportKind::from_name(&kind_name) else {
        return Err(Refusal::field(
            "unknown_kind",
            "kind",
            format!(
                "unknown report kind `{}`; expected one of: {}",
                truncate(&kind_name),
                ReportKind::ALL.map(ReportKind::as_str).join(", ")
            ),
        ));
    };
    let id = f.string("id")?;
    if !is_report_id(&id) {
        return Err(Refusal::field(
            "invalid_field",
            "id",
            "`id` must be 1 to 128 letters, digits, `_`, `.`, `:` or `-`",
        ));
    }
    let at = f.time("at")?;
    let (body, fields): (ReportBody, &[&str]) = match kind {
        ReportKind::WelcomeSent => {
            let message_id = f.string("messageId")?;
            if !(message_id.starts_with('<')
                && message_id.ends_with('>')
                && message_id.len() <= 250
                && message_id.bytes().all(|b| b.is_ascii_graphic()))
            {
                return Err(Refusal::field(
                    "invalid_field",
                    "messageId",
                    "`messageId` must be a Message-ID such as `<welcome.t-1@example.com>`",
                ));
            }
            (ReportBody::WelcomeSent { message_id }, &["messageId"])
        }
        ReportKind::Activated => {
            let website = match map.get("website") {
                None | Some(Value::Null) => None,
                Some(Value::Object(w)) => {
                    let wf = Fields {
                        map: w,
                        path: "website".to_owned(),
                    };
                    wf.only(&["id"])?;
                    let id = wf.string("id")?;
                    if !is_website_id(&id) {
                        return Err(Refusal::field(
                            "invalid_field",
                            "website.id",
                            "`website.id` must be 1 to 64 letters, digits, `_` or `-`",
                        ));
                    }
                    Some(id)
                }
                Some(other) => {
                    return Err(Refusal::field(
                        "invalid_field",
                        "website",
                        format!("`website` must be an object, got {}", json_type(other)),
                    ));
                }
            };
            (ReportBody::Activated { website }, &["website"])
        }
        ReportKind::Failed | ReportKind::BackupFailed | ReportKind::TeardownFailed => {
            let reason = f.string("reason")?;
            if let Some(why) = reason_problem(&reason) {
                return Err(Refusal::field(
                    "invalid_field",
                    "reason",
                    format!("`reason` {why}"),
                ));
            }
            let body = match kind {
                ReportKind::Failed => ReportBody::Failed { reason },
                ReportKind::BackupFailed => ReportBody::BackupFailed { reason },
                _ => ReportBody::TeardownFailed { reason },
            };
            (body, &["reason"])
        }
        ReportKind::BackupCompleted => {
            let location = f.string("location")?;
            let manifest_sha256 = f.string("manifestSha256")?;
            if !is_sha256_hex(&manifest_sha256) {
                return Err(Refusal::field(
                    "invalid_field",
                    "manifestSha256",
                    "`manifestSha256` must be 64 lower-case hexadecimal digits",
                ));
            }
            let files = f.count("files")?;
            if files == 0 {
                return Err(Refusal::field(
                    "invalid_field",
                    "files",
                    "`files` must be at least 1: a backup holds at least its dumps or objects",
                ));
            }
            let bytes = f.count("bytes")?;
            (
                ReportBody::BackupCompleted {
                    location,
                    manifest_sha256,
                    files,
                    bytes,
                },
                &["location", "manifestSha256", "files", "bytes"],
            )
        }
        ReportKind::TeardownCompleted => {
            let r = f.object("removed")?;
            r.only(&Removed::FIELDS)?;
            let mut v = [0u64; 8];
            for (i, k) in Removed::FIELDS.iter().enumerate() {
                v[i] = r.count(k)?;
            }
            (
                ReportBody::TeardownCompleted {
                    removed: Removed::from_values(v),
                },
                &["removed"],
            )
        }
        ReportKind::WorkloadsPruned => (ReportBody::WorkloadsPruned, &[]),
        ReportKind::NamespaceRemoved => (ReportBody::NamespaceRemoved, &[]),
    };
    let mut known = vec!["kind", "id", "at"];
    known.extend_from_slice(fields);
    f.only(&known)?;
    Ok(Report { id, at, body })
}

/// One JSON object of the report and its dotted path.
struct Fields<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Fields<'a> {
    fn path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Unknown fields are refused: the Jobs are ours.
    fn only(&self, known: &[&str]) -> Result<(), Refusal> {
        // In key order, so the first unknown one named is always the same.
        let keys: BTreeMap<&String, ()> = self.map.keys().map(|k| (k, ())).collect();
        match keys.keys().find(|k| !known.contains(&k.as_str())) {
            None => Ok(()),
            Some(k) => {
                let path = self.path(k);
                Err(Refusal::field(
                    "invalid_field",
                    &path,
                    format!(
                        "unknown field `{}`; a report of this kind has: {}",
                        truncate(&path),
                        known.join(", ")
                    ),
                ))
            }
        }
    }

    fn required(&self, key: &str, expected: &str) -> Result<&'a Value, Refusal> {
        match self.map.get(key) {
            Some(v) if !v.is_null() => Ok(v),
            _ => {
                let path = self.path(key);
                Err(Refusal::field(
                    "invalid_field",
                    &path,
                    format!("`{path}` is missing: expected {expected}"),
                ))
            }
        }
    }

    fn wrong_type(&self, key: &str, expected: &str, got: &Value) -> Refusal {
        let path = self.path(key);
        Refusal::field(
            "invalid_field",
            &path,
            format!("`{path}` must be {expected}, got {}", json_type(got)),
        )
    }

    fn string(&self, key: &str) -> Result<String, Refusal> {
        match self.required(key, "a string")? {
            Value::String(s) => Ok(s.clone()),
            other => Err(self.wrong_type(key, "a string", other)),
        }
    }

    fn object(&self, key: &str) -> Result<Fields<'a>, Refusal> {
        match self.required(key, "an object")? {
            Value::Object(map) => Ok(Fields {
                map,
                path: self.path(key),
            }),
            other => Err(self.wrong_type(key, "an object", other)),
        }
    }

    fn count(&self, key: &str) -> Result<u64, Refusal> {
        match self.required(key, "a whole number")? {
            Value::Number(n) if n.as_u64().is_some() => Ok(n.as_u64().unwrap_or_default()),
            other => Err(self.wrong_type(key, "a whole number from 0", other)),
        }
    }

    fn time(&self, key: &str) -> Result<DateTime<Utc>, Refusal> {
        let s = self.string(key)?;
        DateTime::parse_from_rfc3339(s.trim())
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| {
                let path = self.path(key);
                Refusal::field(
                    "invalid_field",
                    &path,
                    format!(
                        "`{path}` must be a date and time such as `2025-01-15T10:00:00Z` (RFC 3339), got `{}`",
                        truncate(&s)
                    ),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> Report {
        parse(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e:?}"))
    }

    fn refused(body: &str) -> Refusal {
        parse(body.as_bytes()).unwrap_err()
    }

    /// The design's sample bodies (docs/openapi.json has them as examples).
    #[test]
    fn parses_every_kind_and_writes_it_back_identically() {
        for body in [
            r#"{"kind":"welcome-sent","id":"welcome-sent:2b7e","at":"2025-01-15T10:30:55Z","messageId":"<welcome.abc-corporation-7f3a9c@collectverything.com>"}"#,
            r#"{"kind":"activated","id":"activated:2b7e","at":"2025-01-15T10:31:00Z","website":{"id":"789"}}"#,
            r#"{"kind":"activated","id":"activated:2b7f","at":"2025-01-15T10:31:00Z"}"#,
            r#"{"kind":"failed","id":"failed:9c1d","at":"2025-01-15T10:20:00Z","reason":"activate: health answered 503"}"#,
            r#"{"kind":"backup-completed","id":"backup-completed:5e6f","at":"2025-07-15T00:41:07Z","location":"s3://ecommerce-tenant-archives/nordwind-logistik-7ace77/20250715T000312Z/","manifestSha256":"a4eb82fc5de84f24d591929c4a477cc30ca8f75ce5026888193f7f1c279011c2","files":4,"bytes":350689}"#,
            r#"{"kind":"backup-failed","id":"backup-failed:5e6f","at":"2025-07-15T00:09:40Z","reason":"mariadb-dump exited 2"}"#,
            r#"{"kind":"workloads-pruned","id":"workloads-pruned:0f1e","at":"2025-07-15T00:52:30Z"}"#,
            r#"{"kind":"teardown-failed","id":"teardown-failed:6a7b","at":"2025-07-15T01:00:00Z","reason":"mysql unreachable"}"#,
            r#"{"kind":"teardown-completed","id":"teardown-completed:6a7b","at":"2025-07-15T01:03:12Z","removed":{"databases":11,"mysqlUsers":11,"vhosts":1,"rabbitmqUsers":1,"buckets":3,"objectVersions":1734,"minioUsers":1,"secrets":16}}"#,
            r#"{"kind":"namespace-removed","id":"namespace-removed:7b8c","at":"2025-07-15T01:09:48Z"}"#,
        ] {
            let r = ok(body);
            assert_eq!(r.to_json(), body);
            assert_eq!(ok(&r.to_pretty_json()), r);
        }
    }

    #[test]
    fn refusals_name_the_field_in_the_apis_terms() {
        let e = refused(
            r#"{"kind":"activated","id":"a:1","at":"2025-01-15T10:31:00Z","website":{"id":"789"},"password":"nope"}"#,
        );
        assert_eq!(
            (e.code, e.field.as_deref()),
            ("invalid_field", Some("password"))
        );
        assert!(e.message.contains("unknown field `password`"), "{e}");
        let e = refused(
            r#"{"kind":"activated","id":"a:1","at":"2025-01-15T10:31:00Z","website":{"id":"7","x":1}}"#,
        );
        assert_eq!(e.field.as_deref(), Some("website.x"));
        let e = refused(r#"{"kind":"reticulated","id":"a:1","at":"2025-01-15T10:31:00Z"}"#);
        assert_eq!((e.code, e.field.as_deref()), ("unknown_kind", Some("kind")));
        let e = refused(
            r#"{"kind":"backup-completed","id":"b:1","at":"2025-07-15T00:41:07Z","location":"s3://x/y/","manifestSha256":"XYZ","files":1,"bytes":1}"#,
        );
        assert_eq!(e.field.as_deref(), Some("manifestSha256"));
        let e = refused(
            r#"{"kind":"backup-completed","id":"b:1","at":"2025-07-15T00:41:07Z","location":"s3://x/y/","manifestSha256":"a4eb82fc5de84f24d591929c4a477cc30ca8f75ce5026888193f7f1c279011c2","files":-1,"bytes":1}"#,
        );
        assert_eq!(e.field.as_deref(), Some("files"));
        assert!(e.message.contains("got a number"), "{e}");
        let e =
            refused(r#"{"kind":"failed","id":"f:1","at":"2025-01-15T10:31:00Z","reason":"a\nb"}"#);
        assert_eq!(e.field.as_deref(), Some("reason"));
        let e = refused(r#"{"kind":"failed","id":"f 1","at":"2025-01-15T10:31:00Z","reason":"x"}"#);
        assert_eq!(e.field.as_deref(), Some("id"));
        let e = refused(r#"{"kind":"failed","id":"f:1","at":"yesterday","reason":"x"}"#);
        assert_eq!(e.field.as_deref(), Some("at"));
        let e = refused(
            r#"{"kind":"failed","kind":"failed","id":"f:1","at":"2025-01-15T10:31:00Z","reason":"x"}"#,
        );
        assert_eq!(e.code, "malformed_json");
        let e = refused(r#"["failed"]"#);
        assert_eq!((e.code, e.field), ("invalid_field", None));
        let e = refused(
            r#"{"kind":"teardown-completed","id":"t:1","at":"2025-01-15T10:31:00Z","removed":{"databases":1}}"#,
        );
        assert_eq!(e.field.as_deref(), Some("removed.mysqlUsers"));
    }

    #[test]
    fn the_fingerprint_covers_every_field() {
        let a = ok(r#"{"kind":"failed","id":"f:1","at":"2025-01-15T10:31:00Z","reason":"x"}"#);
        let b = ok(r#"{"kind":"failed","id":"f:1","at":"2025-01-15T10:31:00Z","reason":"y"}"#);
        let c = ok(r#"{"reason":"x","at":"2025-01-15T10:31:00+00:00","id":"f:1","kind":"failed"}"#);
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(
            a.fingerprint(),
            c.fingerprint(),
            "the same report, written differently"
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = parse(&bytes);
        }
    }
}
