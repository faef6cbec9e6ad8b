//! The transitions: what a report does to a tenant ([`decide`], the table of
//! docs/lifecycle.md, "Transitions"), a person's rollback of a never-activated tenant
//! ([`rollback`]) and a reinstated subscription ([`reinstate`]). Each returns the records to
//! write (a [`Change`] of top-level keys of the tenant file, which the intake's editor applies
//! keeping every other key), that nothing is to be done (a repeat), or a [`Refusal`].
//!
//! Times: every check uses `now` (serve's clock; a person's `--now`). A Job's `at` is
//! recorded as given, but never before the record it follows (a Job whose clock is behind
//! cannot write dates out of order, which the loader would refuse).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use super::refusal::Refusal;
use super::report::{Report, ReportBody};
use crate::registry::lifecycle_rules::{backup_location_problem, reason_problem};
use crate::registry::{Activation, FailureStep, PurgeStep, Tenant, TenantStatus};

/// The platform's settings a decision needs.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    /// `lifecycle.rollback.afterFailedAttempts` (0: never automatic).
    pub rollback_after: u32,
    /// `lifecycle.archive.bucket`: where a backup must be.
    pub archive_bucket: &'a str,
}

/// The records to write: top-level keys of the tenant file set (in this order) or removed.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub status: TenantStatus,
    pub set: Vec<(&'static str, Value)>,
    pub remove: Vec<&'static str>,
    /// One line for the commit message (`<tenant> backup-completed → purging (workloads)`).
    pub summary: String,
}

/// What a report does.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Its effect is already recorded: answered 200, nothing committed.
    Repeat,
    /// Records to commit.
    Record(Change),
}

fn ts(t: DateTime<Utc>) -> Value {
    json!(ts_text(t))
}

fn ts_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn transition(code: &'static str, t: &Tenant, needs: &str) -> Refusal {
    Refusal::new(
        code,
        format!(
            "tenant `{}` is `{}`{}: {needs}",
            t.id.value,
            t.status.value.as_str(),
            t.purge
                .as_ref()
                .filter(|_| t.status.value == TenantStatus::Purging)
                .map(|p| format!(" at step `{}`", p.step.value.as_str()))
                .unwrap_or_default()
        ),
    )
}

fn activation_value(a: Option<&Activation>, edit: impl FnOnce(&mut Map<String, Value>)) -> Value {
    let mut m = Map::new();
    if let Some(a) = a {
        if let Some(w) = &a.welcome_sent {
            m.insert("welcomeSent".into(), ts(w.value));
        }
        if let Some(w) = &a.website {
            m.insert("website".into(), json!(w.value));
        }
        if let Some(w) = &a.activated {
            m.insert("activated".into(), ts(w.value));
        }
    }
    edit(&mut m);
    Value::Object(m)
}

fn failure_value(t: &Tenant, step: FailureStep, reason: &str, at: DateTime<Utc>) -> (u32, Value) {
    let attempts = match &t.failure {
        Some(f) if f.step.value == step => f.attempts.value.saturating_add(1),
        _ => 1,
    };
    let v = json!({
        "step": step.as_str(),
        "reason": reason,
        "attempts": attempts,
        "at": ts(at),
    });
    (attempts, v)
}

fn purge_value(step: PurgeStep, started: DateTime<Utc>, teardown: Option<DateTime<Utc>>) -> Value {
    let mut m = Map::new();
    m.insert("step".into(), json!(step.as_str()));
    m.insert("started".into(), ts(started));
    if let Some(tc) = teardown {
        m.insert("teardownCompleted".into(), ts(tc));
    }
    Value::Object(m)
}

fn never_welcomed(t: &Tenant) -> bool {
    t.activated().is_none() && t.welcome_sent().is_none()
}

/// How far past serve's clock a report's `at` may be (the signatures' skew): a Job's clock a
/// little ahead is tolerated, a report from later than that is not, as its time would be
/// recorded (a backup completed "tomorrow", a failure dated after the next one).
pub const MAX_REPORT_SKEW_SECONDS: i64 = 300;

/// What report `r` does to tenant `t` at `now`.
pub fn decide(
    t: &Tenant,
    r: &Report,
    now: DateTime<Utc>,
    policy: &Policy<'_>,
) -> Result<Decision, Refusal> {
    use TenantStatus as S;
    if r.at > now + chrono::Duration::seconds(MAX_REPORT_SKEW_SECONDS) {
        return Err(Refusal::field(
            "invalid_field",
            "at",
            format!(
                "the report's time {} is later than serve's clock {} (at most {MAX_REPORT_SKEW_SECONDS} s ahead): check the Job's clock",
                ts_text(r.at),
                ts_text(now)
            ),
        ));
    }
    let id = &t.id.value;
    let status = t.status.value;
    let kind = r.kind().as_str();
    let step = t.purge.as_ref().map(|p| p.step.value);
    let record = |status: TenantStatus,
                  set: Vec<(&'static str, Value)>,
                  remove: Vec<&'static str>,
                  effect: String| {
        let mut set = set;
        set.insert(0, ("status", json!(status.as_str())));
        Ok(Decision::Record(Change {
            status,
            set,
            remove,
            summary: format!("{id} {kind} → {effect}"),
        }))
    };
    match &r.body {
        ReportBody::WelcomeSent { .. } => {
            if t.welcome_sent().is_some() {
                return Ok(Decision::Repeat);
            }
            if !matches!(status, S::Provisioning | S::Failed) {
                return Err(transition(
                    "invalid_transition",
                    t,
                    "a welcome email is recorded only while the tenant is provisioning or failed",
                ));
            }
            let at = r.at.max(t.created);
            record(
                status,
                vec![(
                    "activation",
                    activation_value(t.activation.as_ref(), |m| {
                        m.insert("welcomeSent".into(), ts(at));
                    }),
                )],
                vec![],
                format!("welcome email sent ({})", status.as_str()),
            )
        }
        ReportBody::Activated { website } => {
            if t.activated().is_some() {
                return Ok(Decision::Repeat);
            }
            if !matches!(status, S::Provisioning | S::Failed) {
                return Err(transition(
                    "invalid_transition",
                    t,
                    "only a provisioning or failed tenant is activated",
                ));
            }
            let at =
                r.at.max(t.created)
                    .max(t.welcome_sent().unwrap_or(t.created));
            record(
                S::Active,
                vec![(
                    "activation",
                    activation_value(t.activation.as_ref(), |m| {
                        if let Some(w) = website {
                            m.insert("website".into(), json!(w));
                        }
                        m.insert("activated".into(), ts(at));
                    }),
                )],
                vec!["failure"],
                "active".to_owned(),
            )
        }
        ReportBody::Failed { reason } => {
            if !matches!(status, S::Provisioning | S::Failed) {
                return Err(transition(
                    "invalid_transition",
                    t,
                    "a failed sync is recorded only for a provisioning or failed tenant",
                ));
            }
            let (attempts, failure) = failure_value(t, FailureStep::Sync, reason, r.at);
            let n = policy.rollback_after;
            if n > 0 && attempts >= n && never_welcomed(t) {
                // The automatic policy: the same commit rolls the tenant back.
                return record(
                    S::Purging,
                    vec![
                        ("failure", failure),
                        (
                            "rollback",
                            json!({
                                "requested": ts(now),
                                "reason": format!("automatic after {attempts} failed sync attempts"),
                            }),
                        ),
                        ("purge", purge_value(PurgeStep::Workloads, now, None)),
                    ],
                    vec![],
                    format!(
                        "failed ({attempts} attempts), rolled back automatically → purging (workloads)"
                    ),
                );
            }
            record(
                S::Failed,
                vec![("failure", failure)],
                vec![],
                format!("failed (attempt {attempts})"),
            )
        }
        ReportBody::BackupCompleted {
            location,
            manifest_sha256,
            files,
            bytes,
        } => {
            if let Some(b) = &t.backup {
                if b.manifest_sha256.value == *manifest_sha256 {
                    return Ok(Decision::Repeat);
                }
                return Err(Refusal::new(
                    "conflicting_report",
                    format!(
                        "a backup of tenant `{id}` is already recorded: {} (manifest {}) at {}; the first backup stands",
                        b.location.value,
                        b.manifest_sha256.value,
                        b.completed.value.to_rfc3339_opts(SecondsFormat::Secs, true)
                    ),
                ));
            }
            if status != S::Deprovisioning {
                return Err(transition(
                    "invalid_transition",
                    t,
                    "a backup is recorded only for a deprovisioning tenant past its deletion date",
                ));
            }
            let deletion = t
                .cancellation
                .as_ref()
                .map(|c| c.deletion.value)
                .expect("the loader requires a cancellation of a deprovisioning tenant");
            if now < deletion {
                return Err(not_due(t, deletion, now));
            }
            if let Some(why) = backup_location_problem(location, policy.archive_bucket, id) {
                return Err(Refusal::field(
                    "invalid_field",
                    "location",
                    format!("the backup location {why}"),
                ));
            }
            if r.at < deletion {
                return Err(Refusal::field(
                    "invalid_field",
                    "at",
                    format!(
                        "the report says the backup completed at {}, before the deletion date {}: the backup Job's clock is behind",
                        r.at.to_rfc3339_opts(SecondsFormat::Secs, true),
                        deletion.to_rfc3339_opts(SecondsFormat::Secs, true)
                    ),
                ));
            }
            let started = now.max(r.at);
            record(
                S::Purging,
                vec![
                    (
                        "backup",
                        json!({
                            "completed": ts(r.at),
                            "location": location,
                            "manifestSha256": manifest_sha256,
                            "files": files,
                            "bytes": bytes,
                        }),
                    ),
                    ("purge", purge_value(PurgeStep::Workloads, started, None)),
                ],
                vec!["failure"],
                "purging (workloads)".to_owned(),
            )
        }
        ReportBody::BackupFailed { reason } => {
            if status != S::Deprovisioning {
                return Err(transition(
                    "invalid_transition",
                    t,
                    "a failed backup is recorded only for a deprovisioning tenant past its deletion date",
                ));
            }
            let deletion = t.cancellation.as_ref().map(|c| c.deletion.value);
            if let Some(d) = deletion
                && now < d
            {
                return Err(not_due(t, d, now));
            }
            let (attempts, failure) = failure_value(t, FailureStep::Backup, reason, r.at);
            record(
                S::Deprovisioning,
                vec![("failure", failure)],
                vec![],
                format!("backup failed (attempt {attempts})"),
            )
        }
        ReportBody::WorkloadsPruned => match (status, step) {
            (S::Purging, Some(PurgeStep::Workloads)) => {
                let p = t.purge.as_ref().expect("purging has purge");
                record(
                    S::Purging,
                    vec![(
                        "purge",
                        purge_value(PurgeStep::Teardown, p.started.value, None),
                    )],
                    vec![],
                    "purging (teardown)".to_owned(),
                )
            }
            (S::Purging, Some(_)) | (S::Removed, _) => Ok(Decision::Repeat),
            _ => Err(transition(
                "invalid_transition",
                t,
                "workloads are reported pruned only for a purging tenant",
            )),
        },
        ReportBody::TeardownFailed { reason } => match (status, step) {
            (S::Purging, Some(PurgeStep::Teardown)) => {
                let (attempts, failure) = failure_value(t, FailureStep::Teardown, reason, r.at);
                record(
                    S::Purging,
                    vec![("failure", failure)],
                    vec![],
                    format!("teardown failed (attempt {attempts})"),
                )
            }
            _ => Err(transition(
                "invalid_transition",
                t,
                "a failed teardown is recorded only at step `teardown`",
            )),
        },
        ReportBody::TeardownCompleted { removed } => match (status, step) {
            (S::Purging, Some(PurgeStep::Teardown)) => {
                // Deletion without a recorded backup is never reachable: a purging tenant
                // has its backup (taken at or after the deletion date) or its rollback.
                match (&t.backup, &t.rollback) {
                    (Some(_), _) => {
                        let deletion = t.cancellation.as_ref().map(|c| c.deletion.value);
                        if let Some(d) = deletion
                            && now < d
                        {
                            return Err(not_due(t, d, now));
                        }
                    }
                    (None, Some(_)) if never_welcomed(t) => {}
                    _ => {
                        return Err(transition(
                            "invalid_transition",
                            t,
                            "a teardown is recorded only after a recorded backup or the rollback of a never-activated tenant",
                        ));
                    }
                }
                let p = t.purge.as_ref().expect("purging has purge");
                let at = r.at.max(p.started.value);
                record(
                    S::Purging,
                    vec![(
                        "purge",
                        purge_value(PurgeStep::Namespace, p.started.value, Some(at)),
                    )],
                    vec!["failure"],
                    format!(
                        "purging (namespace); removed {} databases, {} buckets ({} object versions), {} vhosts, {} secrets",
                        removed.databases,
                        removed.buckets,
                        removed.object_versions,
                        removed.vhosts,
                        removed.secrets
                    ),
                )
            }
            (S::Purging, Some(PurgeStep::Namespace)) | (S::Removed, _) => Ok(Decision::Repeat),
            _ => Err(transition(
                "invalid_transition",
                t,
                "a teardown is recorded only at step `teardown` (after the workloads are reported pruned)",
            )),
        },
        ReportBody::NamespaceRemoved => match (status, step) {
            (S::Purging, Some(PurgeStep::Namespace)) => {
                let p = t.purge.as_ref().expect("purging has purge");
                let floor = p
                    .teardown_completed
                    .as_ref()
                    .map_or(p.started.value, |x| x.value);
                record(
                    S::Removed,
                    vec![("removed", ts(r.at.max(floor)))],
                    vec![],
                    "removed".to_owned(),
                )
            }
            (S::Removed, _) => Ok(Decision::Repeat),
            _ => Err(transition(
                "invalid_transition",
                t,
                "the namespace is reported gone only at step `namespace` (after the teardown)",
            )),
        },
    }
}

fn not_due(t: &Tenant, deletion: DateTime<Utc>, now: DateTime<Utc>) -> Refusal {
    Refusal::new(
        "not_due",
        format!(
            "the deletion date of tenant `{}` is {}; it is {} now: nothing of the tenant is backed up for removal or deleted before that date",
            t.id.value,
            deletion.to_rfc3339_opts(SecondsFormat::Secs, true),
            now.to_rfc3339_opts(SecondsFormat::Secs, true)
        ),
    )
}

/// A person's rollback of a tenant that was never activated (`provisio rollback`): it goes
/// through the same ordered removal as an offboarded tenant, without a backup (there is no
/// customer data yet). Refused for a tenant that was activated or welcomed.
pub fn rollback(t: &Tenant, now: DateTime<Utc>, reason: &str) -> Result<Change, Refusal> {
    let id = &t.id.value;
    if let Some(why) = reason_problem(reason) {
        return Err(Refusal::field(
            "invalid_field",
            "reason",
            format!("the reason {why}"),
        ));
    }
    if let Some(when) = t.activated() {
        return Err(Refusal::new(
            "refused",
            format!(
                "tenant `{id}` was activated at {}: it may hold customer data, so it is offboarded with a cancellation (grace period, backup), never rolled back",
                when.to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
        ));
    }
    if let Some(when) = t.welcome_sent() {
        return Err(Refusal::new(
            "refused",
            format!(
                "tenant `{id}` received its welcome email at {} (with its credentials): it may hold customer data, so it is offboarded with a cancellation, never rolled back",
                when.to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
        ));
    }
    if !matches!(
        t.status.value,
        TenantStatus::Provisioning | TenantStatus::Failed
    ) {
        return Err(transition(
            "refused",
            t,
            "only a provisioning or failed tenant is rolled back",
        ));
    }
    let mut set = vec![
        ("status", json!(TenantStatus::Purging.as_str())),
        (
            "rollback",
            json!({"requested": ts(now.max(t.created)), "reason": reason}),
        ),
        (
            "purge",
            purge_value(PurgeStep::Workloads, now.max(t.created), None),
        ),
    ];
    // A failed sync stays recorded (it explains the rollback); a backup cannot exist.
    set.shrink_to_fit();
    Ok(Change {
        status: TenantStatus::Purging,
        set,
        remove: vec![],
        summary: format!("{id} rolled back → purging (workloads)"),
    })
}

/// A subscription reinstated (`subscription.updated` with `data.status: active`): a
/// cancelled tenant before its deletion date comes back with nothing lost — `active`, or
/// `provisioning` when it was never activated. `Ok(None)`: nothing to do (the tenant is not
/// cancelled). Refused at or after the deletion date, and for a tenant being removed.
pub fn reinstate(t: &Tenant, now: DateTime<Utc>) -> Result<Option<Change>, Refusal> {
    let id = &t.id.value;
    match t.status.value {
        TenantStatus::Provisioning | TenantStatus::Failed | TenantStatus::Active => Ok(None),
        TenantStatus::Purging | TenantStatus::Removed => Err(Refusal::field(
            "tenant_deprovisioning",
            "data.status",
            format!(
                "tenant `{id}` is `{}`: its removal has started and cannot be undone; subscribe anew",
                t.status.value.as_str()
            ),
        )),
        TenantStatus::Deprovisioning => {
            let deletion = t
                .cancellation
                .as_ref()
                .map(|c| c.deletion.value)
                .expect("the loader requires a cancellation of a deprovisioning tenant");
            if now >= deletion {
                return Err(Refusal::field(
                    "deletion_due",
                    "data.status",
                    format!(
                        "the deletion date of tenant `{id}` ({}) has passed; the tenant is being removed — subscribe anew",
                        deletion.to_rfc3339_opts(SecondsFormat::Secs, true)
                    ),
                ));
            }
            let status = if t.activated().is_some() {
                TenantStatus::Active
            } else {
                TenantStatus::Provisioning
            };
            Ok(Some(Change {
                status,
                set: vec![("status", json!(status.as_str()))],
                remove: vec!["cancellation", "failure"],
                summary: format!("reinstate {id} → {}", status.as_str()),
            }))
        }
    }
}
