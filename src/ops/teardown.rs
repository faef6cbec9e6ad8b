//! `teardown tenant`: the teardown Job of a purging tenant (docs/lifecycle.md, "The ordered
//! purge"). Refuses — before the first deletion, changing nothing — unless the spec says
//! `purging`/`teardown` and records a backup whose manifest, re-read from the archive, hashes
//! to the recorded SHA-256 (after the deletion date), or a rollback. Then removes the tenant's
//! RabbitMQ vhost and user, MySQL users and databases, MinIO user, policy and buckets, and
//! its secret-store entries but the report key, and reports `teardown-completed` with the
//! counts. The report key stays for the `namespace-check` Job, whose report follows and which
//! deletes it. A re-run after serve recorded the teardown (a pod retried after its report)
//! asks serve first and does nothing.

use std::path::PathBuf;

use chrono::{DateTime, Utc};

use super::backup::{archive_client, parse_location};
use super::report::{ReportError, Sent, Target, job_report_id, send, stored_key, view};
use super::setup::{Store, minio_s3_client, mysql_admin, rabbitmq_admin, spec_text};
use crate::io::retry::Policy;
use crate::setup::{self, Change, Report as Changes, SetupError, SetupSpec, aws, s3};
use provisio_core::lifecycle::report::Removed;
use provisio_core::lifecycle::{Report, ReportBody};
use provisio_core::registry::{PurgeStep, TenantStatus};

/// Why a teardown did not complete.
#[derive(Debug, thiserror::Error)]
pub enum TeardownError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Report(#[from] ReportError),
}

/// One run of `teardown tenant`.
#[derive(Debug, Clone)]
pub struct Request {
    pub spec: Option<PathBuf>,
    pub store: Store,
    pub retry: Policy,
    /// The time checked against the deletion date.
    pub now: DateTime<Utc>,
    /// Buckets through the S3 API only, without MinIO's admin API (S3 servers that have none).
    pub buckets_only: bool,
}

/// What [`run`] did.
#[derive(Debug)]
pub enum Done {
    /// Every object's line, the counts reported, serve's answer.
    TornDown {
        changes: Changes,
        removed: Removed,
        sent: Box<Sent>,
    },
    /// serve already records the teardown (the tenant is past it, or removed): nothing done.
    AlreadyRecorded { phase: String },
}

fn refuse(spec: &SetupSpec, reason: impl Into<String>) -> SetupError {
    SetupError::NotDue {
        tenant: spec.tenant.clone(),
        reason: reason.into(),
    }
}

/// The guard: `purging`/`teardown`, and a verified backup after the deletion date, or a
/// rollback. Reads the archive's manifest; deletes nothing.
pub fn check_teardown_allowed(
    spec: &SetupSpec,
    now: DateTime<Utc>,
    retry: Policy,
) -> Result<(), SetupError> {
    let l = &spec.lifecycle;
    if l.status != TenantStatus::Purging || l.purge_step != Some(PurgeStep::Teardown) {
        return Err(refuse(
            spec,
            format!(
                "its status is `{}`{}, not `purging` at step `teardown`: teardown needs a recorded backup (or a rollback)",
                l.status.as_str(),
                l.purge_step
                    .map(|s| format!(" at step `{}`", s.as_str()))
                    .unwrap_or_default()
            ),
        ));
    }
    match (&l.backup, l.rollback) {
        (None, false) => Err(refuse(spec, "it records neither a backup nor a rollback")),
        (None, true) => Ok(()),
        (Some(backup), _) => {
            match l.deletion_date {
                None => return Err(refuse(spec, "it has no deletion date")),
                Some(d) if d > now => {
                    return Err(refuse(
                        spec,
                        format!(
                            "its deletion date {} has not passed (now {})",
                            provisio_core::plan::timestamp(&d),
                            provisio_core::plan::timestamp(&now)
                        ),
                    ));
                }
                Some(_) => {}
            }
            let archive = spec
                .teardown
                .as_ref()
                .and_then(|t| t.archive.as_ref())
                .ok_or_else(|| refuse(spec, "the spec names no archive to re-read the backup"))?;
            let (bucket, prefix) = parse_location(&backup.location).ok_or_else(|| {
                refuse(
                    spec,
                    format!("the backup location `{}` is not s3://…/", backup.location),
                )
            })?;
            if bucket != archive.bucket || !prefix.starts_with(&archive.prefix) {
                return Err(refuse(
                    spec,
                    format!(
                        "the backup location {} is not below the archive s3://{}/{}",
                        backup.location, archive.bucket, archive.prefix
                    ),
                ));
            }
            let client = archive_client(archive, retry)?;
            let key = format!("{prefix}manifest.json");
            let manifest = s3::get_object(&client, bucket, &key)?.ok_or_else(|| {
                refuse(
                    spec,
                    format!(
                        "the backup's manifest {}manifest.json is missing",
                        backup.location
                    ),
                )
            })?;
            let sha = aws::sha256_hex(&manifest.body);
            if sha != backup.manifest_sha256 {
                return Err(refuse(
                    spec,
                    format!(
                        "the backup's manifest {}manifest.json hashes to {sha}, not the recorded {}",
                        backup.location, backup.manifest_sha256
                    ),
                ));
            }
            Ok(())
        }
    }
}

/// How many of `changes`' lines starting with `prefix` were deletions.
fn deleted(changes: &Changes, prefix: &str) -> u64 {
    changes
        .items
        .iter()
        .filter(|(what, c)| *c == Change::Deleted && what.starts_with(prefix))
        .count() as u64
}

/// Runs the teardown of the spec's tenant and reports it; `clock` gives the report's time.
pub fn run(req: &Request, clock: impl Fn() -> DateTime<Utc> + Copy) -> Result<Done, TeardownError> {
    let spec = SetupSpec::parse(&spec_text(req.spec.as_ref())?).map_err(SetupError::from)?;
    let part = spec.teardown.clone().ok_or_else(|| {
        SetupError::invalid(
            "setup spec",
            "no `teardown` part: not a teardown Job's spec",
        )
    })?;
    let retry = req.retry;
    check_teardown_allowed(&spec, req.now, retry)?;
    let store = req.store.open(retry)?;
    let key = stored_key(&*store, &part.report.key_secret, &spec.tenant).map_err(|_| {
        SetupError::invalid(
            format!("secret at `{}`", part.report.key_secret),
            format!(
                "no report key of tenant {}: the namespace-check Job deletes it once serve records the tenant removed, and otherwise `setup credentials` has not run; nothing torn down",
                spec.tenant
            ),
        )
    })?;
    let target = Target {
        url: part.report.url.clone(),
        tenant: spec.tenant.clone(),
        key,
    };
    // A re-run after serve recorded this teardown: nothing left to do, nothing to report.
    let current = view(&target, &retry, clock)?;
    if current.status == TenantStatus::Removed
        || current
            .purge
            .as_ref()
            .is_some_and(|p| p.teardown_completed.is_some())
    {
        return Ok(Done::AlreadyRecorded {
            phase: current.phase,
        });
    }
    // Every credential needed is read before the first deletion.
    let rabbit = spec
        .rabbitmq
        .as_ref()
        .map(|_| rabbitmq_admin())
        .transpose()?;
    let mysql = spec.mysql.as_ref().map(|_| mysql_admin()).transpose()?;
    let minio = match &spec.s3 {
        Some(_) => Some((
            super::setup::env("MINIO_ROOT_USER")?,
            super::setup::env("MINIO_ROOT_PASSWORD")?,
        )),
        None => None,
    };
    let mut changes = Changes::default();
    let mut object_versions = 0;
    if let (Some(r), Some(admin)) = (&spec.rabbitmq, &rabbit) {
        changes
            .items
            .extend(setup::rabbitmq::teardown(r, admin, &*store, &retry)?.items);
    }
    if let (Some(m), Some(admin)) = (&spec.mysql, &mysql) {
        changes
            .items
            .extend(setup::mysql::teardown(m, admin, &*store, &retry)?.items);
    }
    if let (Some(s), Some((user, password))) = (&spec.s3, &minio) {
        if !req.buckets_only {
            let admin = setup::madmin::MinioAdmin::new(
                minio_s3_client("minio admin API", s, user, password, retry)?,
                password.clone(),
            );
            changes
                .items
                .extend(setup::madmin::teardown_user(&admin, s, &*store)?.items);
        }
        let client = minio_s3_client("s3", s, user, password, retry)?;
        let (buckets, versions) = s3::teardown_buckets_counted(&client, s)?;
        object_versions = versions;
        changes.items.extend(buckets.items);
    }
    for k in &part.store_keys {
        changes.record(format!("secret {k}"), Change::deleted_if(store.delete(k)?));
    }
    let rabbit_user = spec.rabbitmq.as_ref().map(|r| format!("user {}", r.user));
    let removed = Removed {
        databases: deleted(&changes, "database "),
        mysql_users: spec
            .mysql
            .iter()
            .flat_map(|m| &m.databases)
            .filter(|d| changes.get(&format!("user {}", d.user)) == Some(Change::Deleted))
            .count() as u64,
        vhosts: deleted(&changes, "vhost "),
        rabbitmq_users: rabbit_user
            .as_deref()
            .map_or(0, |u| u64::from(changes.get(u) == Some(Change::Deleted))),
        buckets: deleted(&changes, "bucket "),
        object_versions,
        minio_users: spec.s3.as_ref().map_or(0, |s| {
            u64::from(changes.get(&format!("user {}", s.user)) == Some(Change::Deleted))
        }),
        secrets: deleted(&changes, "secret "),
    };
    let now = clock();
    let report = Report {
        id: job_report_id("teardown-completed", &spec.tenant, now),
        at: now,
        body: ReportBody::TeardownCompleted { removed },
    };
    let sent = send(&target, &report, &retry, clock)?;
    Ok(Done::TornDown {
        changes,
        removed,
        sent: Box::new(sent),
    })
}
