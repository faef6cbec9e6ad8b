//! `backup`: the backup Job of a deprovisioning tenant from its deletion date (docs/lifecycle.md,
//! "Backup"). Refuses before the deletion date; then, under `s3://<archive>/<tenant>/<backupId>/`,
//! writes a gzip of each database's `mariadb-dump --single-transaction` (`setup::dump`), a copy
//! of each bucket's current objects, and last `manifest.json` (every file with its size and
//! SHA-256); checks the listing against the manifest and reports `backup-completed` with the
//! manifest's SHA-256. Dumps and objects pass a part at a time (`setup::multipart`): never
//! whole in memory. A failure removes what this attempt wrote (best effort) and reports
//! `backup-failed`.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::report::{ReportError, Sent, Target, job_report_id, send, stored_key};
use super::setup::{Store, spec_text};
use crate::io::http::seg;
use crate::io::retry::Policy;
use crate::setup::aws::{self, Credentials};
use crate::setup::multipart::{self, PartWriter};
use crate::setup::{SetupError, amqp, dump, management, rabbitmq, s3};
use provisio_core::lifecycle::{Report, ReportBody};
use provisio_core::plan::lifecycle::{Archive, BackupRabbit, BackupSpec};

/// S3's longest object key.
const MAX_KEY: usize = 1024;

/// Why a backup did not complete.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// Before the deletion date: nothing is done.
    #[error("refusing to back up tenant {tenant}: {reason}")]
    NotDue { tenant: String, reason: String },
    /// What the archive lists is not what was written.
    #[error("the archive at {location} does not hold what was written: {detail}")]
    Incomplete { location: String, detail: String },
    #[error(transparent)]
    Report(#[from] ReportError),
}

/// The manifest: what the archive holds, written last (`manifest.json`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub version: u32,
    pub tenant: String,
    pub backup_id: String,
    pub started: String,
    pub completed: String,
    pub deletion_date: String,
    pub location: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    pub sources: Sources,
    pub files: Vec<File>,
    pub totals: Totals,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sources {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mysql: Option<MysqlSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Source>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rabbitmq: Option<RabbitSource>,
}

/// The tenant's queues as the backup found them: names and message counts only — the
/// messages themselves are not archived (docs/lifecycle.md, "What a backup holds").
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RabbitSource {
    pub host: String,
    pub vhost: String,
    pub messages_archived: bool,
    pub queues: Vec<QueueCount>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueCount {
    pub name: String,
    /// Ready messages (the workloads are stopped: none is unacknowledged).
    pub messages: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MysqlSource {
    pub host: String,
    pub port: u16,
    pub tool: String,
    pub options: Vec<String>,
    pub compression: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct S3Source {
    pub endpoint: String,
    pub versions: String,
}

/// One archived file; `path` is relative to the location.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct File {
    pub path: String,
    pub size: u64,
    pub sha256: String,
    #[serde(flatten)]
    pub kind: FileKind,
}

#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum FileKind {
    #[serde(rename_all = "camelCase")]
    MysqlDump {
        database: String,
        product: String,
        uncompressed_size: u64,
        uncompressed_sha256: String,
    },
    #[serde(rename_all = "camelCase")]
    Object {
        bucket: String,
        key: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        version_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        etag: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        last_modified: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        content_type: Option<String>,
    },
}

#[derive(Debug, Serialize)]
pub struct Totals {
    pub files: u64,
    pub bytes: u64,
}

fn env(name: &str, what: &str) -> Result<String, SetupError> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => Err(SetupError::invalid(
            "environment",
            format!("{name} must be set ({what})"),
        )),
    }
}

/// The archive's S3 client (`ARCHIVE_ACCESS_KEY_ID`, `ARCHIVE_SECRET_ACCESS_KEY`, optional
/// `ARCHIVE_SESSION_TOKEN`); the spec's endpoint, else AWS S3 of its region.
pub fn archive_client(archive: &Archive, retry: Policy) -> Result<aws::Client, SetupError> {
    let endpoint = archive
        .endpoint
        .clone()
        .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", archive.region));
    aws::Client::new(
        "archive",
        "s3",
        &endpoint,
        &archive.region,
        Credentials {
            access_key: env("ARCHIVE_ACCESS_KEY_ID", "the archive bucket's writer")?,
            secret_key: env("ARCHIVE_SECRET_ACCESS_KEY", "the archive bucket's writer")?,
            session_token: std::env::var("ARCHIVE_SESSION_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
        },
        retry,
    )
}

/// `s3://<bucket>/<prefix>` → (bucket, prefix); the prefix ends in `/`.
pub fn parse_location(location: &str) -> Option<(&str, &str)> {
    let rest = location.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/')?;
    (!bucket.is_empty() && prefix.ends_with('/')).then_some((bucket, prefix))
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Where an object of bucket `short` goes below the backup's prefix: `buckets/<short>/<key>`,
/// or `buckets/<short>/.long/<sha256(key)>` when the whole key would pass S3's limit.
pub fn object_path(prefix: &str, short: &str, key: &str) -> String {
    let path = format!("buckets/{short}/{key}");
    if prefix.len() + path.len() <= MAX_KEY {
        path
    } else {
        format!(
            "buckets/{short}/.long/{}",
            hex::encode(Sha256::digest(key.as_bytes()))
        )
    }
}

/// The files written so far (removed when the attempt fails).
struct Written<'a> {
    client: &'a aws::Client,
    bucket: &'a str,
    keys: Vec<String>,
}

impl<'a> Written<'a> {
    fn put(
        &mut self,
        key: String,
        body: &[u8],
        content_type: Option<&str>,
        class: Option<&str>,
    ) -> Result<(), SetupError> {
        self.keys.push(key.clone());
        s3::put_object(self.client, self.bucket, &key, body, content_type, class)
    }

    /// A writer of `key` in parts of `part_size` (an unfinished upload is aborted by the
    /// writer itself; a finished one is removed with the rest when the attempt fails).
    fn writer(
        &mut self,
        key: &str,
        content_type: Option<&str>,
        class: Option<&str>,
        part_size: usize,
    ) -> Result<PartWriter<'a>, SetupError> {
        self.keys.push(key.to_owned());
        PartWriter::new(
            multipart::Target {
                client: self.client,
                bucket: self.bucket,
                key: key.to_owned(),
                content_type: content_type.map(str::to_owned),
                storage_class: class.map(str::to_owned),
            },
            part_size,
        )
    }

    /// Best effort: this attempt leaves no unfinished prefix.
    fn remove(&self) {
        for key in &self.keys {
            let path = format!(
                "/{}/{}",
                aws::uri_encode(self.bucket),
                key.split('/')
                    .map(aws::uri_encode)
                    .collect::<Vec<_>>()
                    .join("/")
            );
            if let Err(e) = self.client.send("DELETE", &path, &[], &[], b"") {
                tracing::warn!(key = %key, error = %e, "could not remove a file of the failed attempt");
            }
        }
    }
}

/// What [`run`] did.
#[derive(Debug)]
pub struct Done {
    pub location: String,
    pub manifest_sha256: String,
    pub files: u64,
    pub bytes: u64,
    pub sent: Sent,
}

/// Runs the backup of the spec's tenant and reports it: `now` is the run's start (checked
/// against the deletion date, the backup's id), `clock` the time of the manifest's end and
/// of the reports.
pub fn run(
    spec: Option<&PathBuf>,
    store: &Store,
    retry: Policy,
    part_size: usize,
    now: DateTime<Utc>,
    clock: impl Fn() -> DateTime<Utc> + Copy,
) -> Result<Done, BackupError> {
    let spec = BackupSpec::parse(&spec_text(spec)?).map_err(SetupError::from)?;
    let started = now;
    if started < spec.deletion_date {
        return Err(BackupError::NotDue {
            tenant: spec.tenant.clone(),
            reason: format!(
                "its deletion date {} has not passed (now {})",
                rfc3339(spec.deletion_date),
                rfc3339(started)
            ),
        });
    }
    // Everything the run needs is read before the first write.
    let store = store.open(retry)?;
    let target = Target {
        url: spec.report.url.clone(),
        tenant: spec.tenant.clone(),
        key: stored_key(&*store, &spec.report.key_secret, &spec.tenant)?,
    };
    let account = match &spec.mysql {
        Some(_) => Some(dump::Account {
            user: env("MYSQL_BACKUP_USER", "the read-only backup account")?,
            password: env("MYSQL_BACKUP_PASSWORD", "the read-only backup account")?,
        }),
        None => None,
    };
    let source = match &spec.s3 {
        Some(b) => {
            let scheme = if b.use_ssl { "https" } else { "http" };
            Some(aws::Client::new(
                "s3",
                "s3",
                &format!("{scheme}://{}:{}", b.host, b.port),
                &std::env::var("MINIO_REGION").unwrap_or_else(|_| "us-east-1".to_owned()),
                Credentials {
                    access_key: env("MINIO_ROOT_USER", "reading the tenant's buckets")?,
                    secret_key: env("MINIO_ROOT_PASSWORD", "reading the tenant's buckets")?,
                    session_token: None,
                },
                retry,
            )?)
        }
        None => None,
    };
    let rabbit = match &spec.rabbitmq {
        Some(r) => {
            let admin = super::setup::rabbitmq_admin()?;
            let client = management::Client::new(
                "rabbitmq",
                format!("http://{}:{}/api", r.host, r.management_port),
                &admin.user,
                &admin.password,
                retry,
            );
            Some((client, admin))
        }
        None => None,
    };
    let archive = archive_client(&spec.archive, retry)?;
    // An earlier attempt killed mid-upload could not abort its upload: nothing else will.
    // Best effort (a writer without s3:ListBucketMultipartUploads still backs up), but said.
    match multipart::abort_unfinished(&archive, &spec.archive.bucket, &spec.archive.prefix) {
        Ok(keys) if !keys.is_empty() => {
            tracing::info!(
                uploads = keys.len(),
                "aborted an earlier attempt's unfinished uploads"
            );
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not abort earlier unfinished uploads"),
    }
    let backup_id = started.format("%Y%m%dT%H%M%SZ").to_string();
    let prefix = format!("{}{backup_id}/", spec.archive.prefix);
    let location = format!("s3://{}/{prefix}", spec.archive.bucket);
    let mut written = Written {
        client: &archive,
        bucket: &spec.archive.bucket,
        keys: Vec::new(),
    };
    let result = write_archive(
        &spec,
        account.as_ref(),
        source.as_ref(),
        rabbit.as_ref(),
        &mut written,
        &prefix,
        &location,
        part_size,
        started,
        clock,
    );
    let (manifest_sha256, totals) = match result {
        Ok(r) => r,
        Err(e) => {
            written.remove();
            let now = clock();
            let failed = Report {
                id: job_report_id("backup-failed", &spec.tenant, now),
                at: now,
                body: ReportBody::BackupFailed {
                    // One line (the report's rule): the first line of the error.
                    reason: e
                        .to_string()
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .chars()
                        .filter(|c| !c.is_control())
                        .take(500)
                        .collect(),
                },
            };
            if let Err(r) = send(&target, &failed, &retry, clock) {
                tracing::warn!(error = %r, "could not report the failure");
            }
            return Err(e);
        }
    };
    let now = clock();
    let report = Report {
        id: job_report_id("backup-completed", &spec.tenant, now),
        at: now,
        body: ReportBody::BackupCompleted {
            location: location.clone(),
            manifest_sha256: manifest_sha256.clone(),
            files: totals.files,
            bytes: totals.bytes,
        },
    };
    let sent = send(&target, &report, &retry, clock)?;
    Ok(Done {
        location,
        manifest_sha256,
        files: totals.files,
        bytes: totals.bytes,
        sent,
    })
}

/// Dumps, objects, manifest, listing check; returns the manifest's SHA-256 and the totals.
#[allow(clippy::too_many_arguments)]
fn write_archive(
    spec: &BackupSpec,
    account: Option<&dump::Account>,
    source: Option<&aws::Client>,
    rabbit: Option<&(management::Client, rabbitmq::Admin)>,
    written: &mut Written<'_>,
    prefix: &str,
    location: &str,
    part_size: usize,
    started: DateTime<Utc>,
    clock: impl Fn() -> DateTime<Utc>,
) -> Result<(String, Totals), BackupError> {
    let class = spec
        .archive
        .storage_class
        .as_deref()
        .filter(|c| !c.is_empty());
    let mut files = Vec::new();
    let mut mysql_source = None;
    if let (Some(m), Some(account)) = (&spec.mysql, account) {
        mysql_source = Some(MysqlSource {
            host: m.host.clone(),
            port: m.port,
            tool: dump::tool_version()?,
            options: dump::DUMP_OPTIONS.iter().map(|o| (*o).to_owned()).collect(),
            compression: format!("gzip -{}", dump::GZIP_LEVEL),
        });
        for db in &m.databases {
            // mariadb-dump → gzip → the archive, a part at a time.
            let path = format!("mysql/{}.sql.gz", db.database);
            let key = format!("{prefix}{path}");
            let mut out = written.writer(&key, Some("application/gzip"), class, part_size)?;
            let dumped = dump::dump_database(&m.host, m.port, account, &db.database, &mut out);
            let d = match (dumped, out.take_error()) {
                (Ok(d), None) => d,
                (_, Some(upload)) => return Err(upload.into()),
                (Err(e), None) => return Err(e.into()),
            };
            let gz = out.finish()?;
            tracing::info!(database = %db.database, bytes = gz.size, "dumped");
            files.push(File {
                path,
                size: gz.size,
                sha256: gz.sha256,
                kind: FileKind::MysqlDump {
                    database: db.database.clone(),
                    product: db.product.clone(),
                    uncompressed_size: d.uncompressed_size,
                    uncompressed_sha256: d.uncompressed_sha256,
                },
            });
        }
    }
    let mut s3_source = None;
    if let (Some(b), Some(client)) = (&spec.s3, source) {
        s3_source = Some(S3Source {
            endpoint: client.endpoint.clone(),
            versions: b.versions.clone(),
        });
        let mut buckets: Vec<_> = b.buckets.iter().collect();
        buckets.sort_by(|x, y| x.short.cmp(&y.short));
        for bucket in buckets {
            for listed in s3::list_current(client, &bucket.name, "")? {
                let path = object_path(prefix, &bucket.short, &listed.key);
                let key = format!("{prefix}{path}");
                // Read in ranges of a part, each sent on as it comes (If-Match the listed
                // ETag: an object changed meanwhile is an error, never a mixed copy).
                let copied = multipart::copy_object(
                    client,
                    &bucket.name,
                    &listed.key,
                    listed.size,
                    &listed.etag,
                    part_size,
                    |content_type, part_size| written.writer(&key, content_type, class, part_size),
                )?;
                // The workloads are at 0 replicas from the deletion date, so a listed object
                // that cannot be read is not "deleted meanwhile": it is a key read wrong or a
                // store that lost it, and an archive without it must never be reported whole
                // (the teardown would then delete the only copy).
                let Some((object, copy)) = copied else {
                    return Err(SetupError::Refused {
                        service: "s3",
                        action: format!("read object {} of bucket {}", listed.key, bucket.name),
                        detail: "listed, but answered 404 Not Found".to_owned(),
                    }
                    .into());
                };
                files.push(File {
                    path,
                    size: copy.size,
                    sha256: copy.sha256,
                    kind: FileKind::Object {
                        bucket: bucket.name.clone(),
                        key: listed.key,
                        version_id: object.version_id,
                        etag: object.etag,
                        last_modified: object.last_modified,
                        content_type: object.content_type,
                    },
                });
            }
        }
    }
    let rabbitmq = match (&spec.rabbitmq, rabbit) {
        (Some(r), Some((client, admin))) => Some(RabbitSource {
            host: r.host.clone(),
            vhost: r.vhost.clone(),
            messages_archived: false,
            queues: queue_counts(client, r, admin)?,
        }),
        _ => None,
    };
    let totals = Totals {
        files: files.len() as u64,
        bytes: files.iter().map(|f| f.size).sum(),
    };
    let manifest = Manifest {
        version: 1,
        tenant: spec.tenant.clone(),
        backup_id: prefix
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned(),
        started: rfc3339(started),
        completed: rfc3339(clock()),
        deletion_date: rfc3339(spec.deletion_date),
        location: location.to_owned(),
        storage_class: class.map(str::to_owned),
        sources: Sources {
            mysql: mysql_source,
            s3: s3_source,
            rabbitmq,
        },
        files,
        totals: Totals {
            files: totals.files,
            bytes: totals.bytes,
        },
    };
    let mut bytes = serde_json::to_vec_pretty(&manifest).expect("plain data serializes");
    bytes.push(b'\n');
    written.put(
        format!("{prefix}manifest.json"),
        &bytes,
        Some("application/json"),
        Some(&spec.archive.manifest_storage_class),
    )?;
    check_listing(
        written.client,
        &spec.archive.bucket,
        prefix,
        location,
        &manifest,
        class,
    )?;
    Ok((aws::sha256_hex(&bytes), totals))
}

/// The vhost's queues, by name (the management API), with their ready messages (AMQP: a
/// passive `Queue.Declare` each, the broker's own count rather than the management API's
/// sampled statistics), as the backup's admin account.
fn queue_counts(
    client: &management::Client,
    r: &BackupRabbit,
    admin: &rabbitmq::Admin,
) -> Result<Vec<QueueCount>, SetupError> {
    let action = format!("list the queues of vhost {}", r.vhost);
    let answer = client.expect_ok(
        management::Method::Get,
        &format!("/queues/{}?columns=name", seg(&r.vhost)),
        None,
        &action,
    )?;
    #[derive(serde::Deserialize)]
    struct Named {
        name: String,
    }
    let mut names: Vec<String> = answer
        .json::<Vec<Named>>()
        .map_err(|e| SetupError::Refused {
            service: "rabbitmq",
            action: action.clone(),
            detail: format!("not a list of queues: {e}"),
        })?
        .into_iter()
        .map(|q| q.name)
        .collect();
    names.sort();
    let login = amqp::Login {
        host: &r.host,
        port: r.port,
        vhost: &r.vhost,
        user: &admin.user,
        password: &admin.password,
    };
    let counts = amqp::queue_counts(&login, &names, Duration::from_secs(60)).map_err(|e| {
        SetupError::Refused {
            service: "rabbitmq",
            action: format!("count the messages of vhost {}", r.vhost),
            detail: e.to_string(),
        }
    })?;
    Ok(names
        .into_iter()
        .zip(counts)
        .map(|(name, messages)| QueueCount {
            name,
            messages: u64::from(messages),
        })
        .collect())
}

/// The prefix holds exactly the manifest's files (sizes, storage class) and `manifest.json`.
fn check_listing(
    client: &aws::Client,
    bucket: &str,
    prefix: &str,
    location: &str,
    manifest: &Manifest,
    class: Option<&str>,
) -> Result<(), BackupError> {
    let listed = s3::list_current(client, bucket, prefix)?;
    let incomplete = |detail: String| BackupError::Incomplete {
        location: location.to_owned(),
        detail,
    };
    let mut wanted: std::collections::BTreeMap<String, u64> = manifest
        .files
        .iter()
        .map(|f| (format!("{prefix}{}", f.path), f.size))
        .collect();
    for l in &listed {
        if l.key == format!("{prefix}manifest.json") {
            continue;
        }
        match wanted.remove(&l.key) {
            Some(size) if size == l.size => {}
            Some(size) => {
                return Err(incomplete(format!(
                    "{} is {} bytes, expected {size}",
                    l.key, l.size
                )));
            }
            None => return Err(incomplete(format!("{} is not in the manifest", l.key))),
        }
        if let Some(c) = class
            && l.storage_class != c
        {
            return Err(incomplete(format!(
                "{} is in storage class {}, expected {c}",
                l.key, l.storage_class
            )));
        }
    }
    match wanted.keys().next() {
        Some(missing) => Err(incomplete(format!("{missing} is missing"))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_keys_go_under_dot_long_with_their_hash() {
        let prefix = "t-alpha/20250715T000312Z/";
        assert_eq!(
            object_path(prefix, "media", "a/b.png"),
            "buckets/media/a/b.png"
        );
        let long = "k".repeat(1000);
        let p = object_path(prefix, "media", &long);
        assert_eq!(
            p,
            format!(
                "buckets/media/.long/{}",
                hex::encode(Sha256::digest(long.as_bytes()))
            )
        );
    }

    #[test]
    fn locations_split_into_bucket_and_prefix() {
        assert_eq!(
            parse_location("s3://archive/t-alpha/20250715T000312Z/"),
            Some(("archive", "t-alpha/20250715T000312Z/"))
        );
        assert_eq!(parse_location("s3://archive/t-alpha"), None);
        assert_eq!(parse_location("https://archive/x/"), None);
    }
}
