//! The transition table, row by row and refusal by refusal, through the intake's state (so
//! every recorded file is also validated by the registry loader), and its properties: a
//! report applied twice is applied once; any sequence of reports leaves a loadable registry.

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;

use super::report::{Removed, Report, ReportBody};
use crate::intake::{DEFAULT_GRACE_DAYS, IntakeError, Outcome, State};
use crate::registry::{self, Sources, TenantStatus};
use crate::testing::{ACTIVE, DEPROVISIONING, PROVISIONING, example_sources, replace_in};

const MANIFEST: &str = "a4eb82fc5de84f24d591929c4a477cc30ca8f75ce5026888193f7f1c279011c2";
const OTHER_MANIFEST: &str = "b4eb82fc5de84f24d591929c4a477cc30ca8f75ce5026888193f7f1c279011c2";

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// Before the example's deletion date (2025-07-15) and after it.
fn grace() -> DateTime<Utc> {
    at("2025-06-20T00:00:00Z")
}
fn due() -> DateTime<Utc> {
    at("2025-07-15T00:30:00Z")
}

struct Life {
    sources: Sources,
    state: State,
}

impl Life {
    fn new() -> Self {
        Self::with(example_sources())
    }

    fn with(sources: Sources) -> Self {
        let state = State::new(sources.clone(), Duration::days(DEFAULT_GRACE_DAYS)).unwrap();
        Life { sources, state }
    }

    /// Applies a report; on a change, keeps the new file and checks the whole registry
    /// still loads.
    fn report(
        &mut self,
        tenant: &str,
        r: &Report,
        now: DateTime<Utc>,
    ) -> Result<Outcome, IntakeError> {
        let a = self.state.apply_report(tenant, r, now)?;
        if let Some(c) = &a.change {
            self.sources.insert(c.path.clone(), c.text.clone());
            let loaded = registry::load_sources(self.sources.clone());
            assert!(
                loaded.report.is_empty(),
                "{}\n{}",
                loaded.report.render(),
                c.text
            );
        }
        assert_eq!(
            a.lifecycle.as_ref().map(|l| l.tenant.as_str()),
            Some(tenant)
        );
        Ok(a.outcome)
    }

    fn text(&self, tenant: &str) -> &str {
        &self.sources[&format!("tenants/{tenant}.yaml")]
    }

    fn tenant(&self, tenant: &str) -> registry::Tenant {
        registry::parse::parse::<registry::Tenant>("t.yaml", self.text(tenant)).unwrap()
    }

    fn status(&self, tenant: &str) -> TenantStatus {
        self.tenant(tenant).status.value
    }
}

fn report(id: &str, when: &str, body: ReportBody) -> Report {
    Report {
        id: id.to_owned(),
        at: at(when),
        body,
    }
}

fn welcome(id: &str) -> Report {
    report(
        id,
        "2025-03-02T09:00:00Z",
        ReportBody::WelcomeSent {
            message_id: "<welcome.t@collectverything.com>".into(),
        },
    )
}
fn activated(id: &str) -> Report {
    report(
        id,
        "2025-03-02T09:01:00Z",
        ReportBody::Activated {
            website: Some("42".into()),
        },
    )
}
fn failed(id: &str) -> Report {
    report(
        id,
        "2025-03-02T09:30:00Z",
        ReportBody::Failed {
            reason: "setup-mysql: cannot reach mysql (after 6 attempt(s))".into(),
        },
    )
}
fn backup(id: &str, manifest: &str) -> Report {
    report(
        id,
        "2025-07-15T00:20:00Z",
        ReportBody::BackupCompleted {
            location: format!("s3://ecommerce-tenant-archives/{DEPROVISIONING}/20250715T000312Z/"),
            manifest_sha256: manifest.into(),
            files: 4,
            bytes: 350_689,
        },
    )
}
fn pruned(id: &str) -> Report {
    report(id, "2025-07-15T00:22:00Z", ReportBody::WorkloadsPruned)
}
fn torn_down(id: &str) -> Report {
    report(
        id,
        "2025-07-15T00:25:00Z",
        ReportBody::TeardownCompleted {
            removed: Removed {
                databases: 11,
                buckets: 3,
                ..Removed::default()
            },
        },
    )
}
fn gone(id: &str) -> Report {
    report(id, "2025-07-15T00:27:00Z", ReportBody::NamespaceRemoved)
}

fn code(e: IntakeError) -> &'static str {
    e.code()
}

#[test]
fn activation_records_the_welcome_then_the_activation() {
    let mut l = Life::new();
    let now = at("2025-03-02T09:05:00Z");
    assert_eq!(
        l.report(PROVISIONING, &welcome("w:1"), now).unwrap(),
        Outcome::Changed
    );
    assert_eq!(l.status(PROVISIONING), TenantStatus::Provisioning);
    assert!(l.tenant(PROVISIONING).welcome_sent().is_some());
    // The same report again, and the same effect under another id: repeats.
    assert_eq!(
        l.report(PROVISIONING, &welcome("w:1"), now).unwrap(),
        Outcome::Unchanged
    );
    assert_eq!(
        l.report(PROVISIONING, &welcome("w:2"), now).unwrap(),
        Outcome::Unchanged
    );
    assert_eq!(
        l.report(PROVISIONING, &activated("a:1"), now).unwrap(),
        Outcome::Changed
    );
    let t = l.tenant(PROVISIONING);
    assert_eq!(t.status.value, TenantStatus::Active);
    assert_eq!(
        t.activation.unwrap().website.unwrap().value,
        "42",
        "{}",
        l.text(PROVISIONING)
    );
    // A late duplicate after activation is harmless.
    assert_eq!(
        l.report(PROVISIONING, &activated("a:2"), now).unwrap(),
        Outcome::Unchanged
    );
}

#[test]
fn a_failed_sync_counts_attempts_and_a_later_activation_clears_it() {
    let mut l = Life::new();
    let now = at("2025-03-02T10:00:00Z");
    l.report(PROVISIONING, &failed("f:1"), now).unwrap();
    l.report(PROVISIONING, &failed("f:2"), now).unwrap();
    let t = l.tenant(PROVISIONING);
    assert_eq!(t.status.value, TenantStatus::Failed);
    assert_eq!(t.failure.unwrap().attempts.value, 2);
    l.report(PROVISIONING, &activated("a:1"), now).unwrap();
    let t = l.tenant(PROVISIONING);
    assert_eq!(t.status.value, TenantStatus::Active);
    assert!(t.failure.is_none(), "{}", l.text(PROVISIONING));
    // The SyncFail hook of an active tenant's stale tree is refused.
    let e = l.report(PROVISIONING, &failed("f:3"), now).unwrap_err();
    assert_eq!(code(e), "invalid_transition");
}

#[test]
fn the_automatic_rollback_happens_at_the_nth_failure_only_and_never_after_a_welcome() {
    let mut sources = example_sources();
    replace_in(
        &mut sources,
        "platform.yaml",
        "afterFailedAttempts: 0",
        "afterFailedAttempts: 3",
    );
    let now = at("2025-03-02T10:00:00Z");
    let mut l = Life::with(sources.clone());
    for i in 1..=2 {
        l.report(PROVISIONING, &failed(&format!("f:{i}")), now)
            .unwrap();
        assert_eq!(l.status(PROVISIONING), TenantStatus::Failed);
    }
    l.report(PROVISIONING, &failed("f:3"), now).unwrap();
    let t = l.tenant(PROVISIONING);
    assert_eq!(t.status.value, TenantStatus::Purging);
    assert_eq!(
        t.rollback.unwrap().reason.value,
        "automatic after 3 failed sync attempts"
    );
    assert_eq!(t.purge.unwrap().step.value, registry::PurgeStep::Workloads);

    // Once the welcome email went out, the customer has credentials: no automatic rollback.
    let mut l = Life::with(sources);
    l.report(PROVISIONING, &welcome("w:1"), now).unwrap();
    for i in 1..=5 {
        l.report(PROVISIONING, &failed(&format!("f:{i}")), now)
            .unwrap();
    }
    assert_eq!(l.status(PROVISIONING), TenantStatus::Failed);
}

#[test]
fn offboarding_goes_backup_workloads_teardown_namespace_removed() {
    let mut l = Life::new();
    // Before the deletion date: refused, nothing changed.
    let before = l.text(DEPROVISIONING).to_owned();
    let early = Report {
        at: grace(),
        ..backup("b:0", MANIFEST)
    };
    let e = l.report(DEPROVISIONING, &early, grace()).unwrap_err();
    assert_eq!(code(e.clone()), "not_due");
    assert!(e.to_string().contains("2025-07-15T00:00:00Z"), "{e}");
    assert_eq!(l.text(DEPROVISIONING), before);
    // Steps out of order are refused.
    for r in [pruned("p:0"), torn_down("t:0"), gone("g:0")] {
        let e = l.report(DEPROVISIONING, &r, due()).unwrap_err();
        assert_eq!(code(e), "invalid_transition", "{r:?}");
    }
    // A failed attempt is recorded, then the backup.
    l.report(
        DEPROVISIONING,
        &report(
            "bf:1",
            "2025-07-15T00:10:00Z",
            ReportBody::BackupFailed {
                reason: "mariadb-dump exited 2".into(),
            },
        ),
        due(),
    )
    .unwrap();
    assert_eq!(
        l.tenant(DEPROVISIONING).failure.unwrap().step.value,
        registry::FailureStep::Backup
    );
    l.report(DEPROVISIONING, &backup("b:1", MANIFEST), due())
        .unwrap();
    let t = l.tenant(DEPROVISIONING);
    assert_eq!(t.status.value, TenantStatus::Purging);
    assert!(t.failure.is_none());
    assert_eq!(t.backup.unwrap().manifest_sha256.value, MANIFEST);
    // The same backup under another id is a repeat; another backup is a conflict.
    assert_eq!(
        l.report(DEPROVISIONING, &backup("b:2", MANIFEST), due())
            .unwrap(),
        Outcome::Unchanged
    );
    let e = l
        .report(DEPROVISIONING, &backup("b:3", OTHER_MANIFEST), due())
        .unwrap_err();
    assert_eq!(code(e), "conflicting_report");
    // The teardown before the workloads are pruned is refused.
    let e = l
        .report(DEPROVISIONING, &torn_down("t:1"), due())
        .unwrap_err();
    assert_eq!(code(e), "invalid_transition");
    l.report(DEPROVISIONING, &pruned("p:1"), due()).unwrap();
    let e = l.report(DEPROVISIONING, &gone("g:1"), due()).unwrap_err();
    assert_eq!(code(e), "invalid_transition");
    l.report(
        DEPROVISIONING,
        &report(
            "tf:1",
            "2025-07-15T00:24:00Z",
            ReportBody::TeardownFailed {
                reason: "rabbitmq unreachable".into(),
            },
        ),
        due(),
    )
    .unwrap();
    l.report(DEPROVISIONING, &torn_down("t:1"), due()).unwrap();
    let t = l.tenant(DEPROVISIONING);
    let p = t.purge.unwrap();
    assert_eq!(p.step.value, registry::PurgeStep::Namespace);
    assert!(p.teardown_completed.is_some() && t.failure.is_none());
    assert_eq!(
        l.report(DEPROVISIONING, &pruned("p:2"), due()).unwrap(),
        Outcome::Unchanged
    );
    l.report(DEPROVISIONING, &gone("g:1"), due()).unwrap();
    let t = l.tenant(DEPROVISIONING);
    assert_eq!(t.status.value, TenantStatus::Removed);
    assert!(t.backup.is_some() && t.removed.is_some());
    for r in [pruned("p:3"), torn_down("t:3"), gone("g:3")] {
        assert_eq!(
            l.report(DEPROVISIONING, &r, due()).unwrap(),
            Outcome::Unchanged
        );
    }
}

#[test]
fn a_backup_outside_the_archive_or_before_the_date_by_the_jobs_clock_is_refused() {
    let mut l = Life::new();
    let mut r = backup("b:1", MANIFEST);
    if let ReportBody::BackupCompleted { location, .. } = &mut r.body {
        *location = format!("s3://elsewhere/{DEPROVISIONING}/x/");
    }
    let e = l.report(DEPROVISIONING, &r, due()).unwrap_err();
    assert_eq!((e.code(), e.field()), ("invalid_field", Some("location")));
    let mut r = backup("b:2", MANIFEST);
    r.at = at("2025-07-14T23:00:00Z");
    let e = l.report(DEPROVISIONING, &r, due()).unwrap_err();
    assert_eq!((e.code(), e.field()), ("invalid_field", Some("at")));
    assert_eq!(l.status(DEPROVISIONING), TenantStatus::Deprovisioning);
}

#[test]
fn report_ids_are_idempotency_keys() {
    let mut l = Life::new();
    let now = at("2025-03-02T10:00:00Z");
    l.report(PROVISIONING, &failed("f:1"), now).unwrap();
    // The same id with the same content: a repeat, not a second attempt.
    assert_eq!(
        l.report(PROVISIONING, &failed("f:1"), now).unwrap(),
        Outcome::Unchanged
    );
    assert_eq!(l.tenant(PROVISIONING).failure.unwrap().attempts.value, 1);
    // The same Job again (its id), having read another reason: still that one failure.
    let mut other = failed("f:1");
    other.body = ReportBody::Failed {
        reason: "something else".into(),
    };
    assert_eq!(
        l.report(PROVISIONING, &other, now).unwrap(),
        Outcome::Unchanged
    );
    assert_eq!(l.tenant(PROVISIONING).failure.unwrap().attempts.value, 1);
    // The same id on another kind of report is a reuse.
    let e = l.report(PROVISIONING, &welcome("f:1"), now).unwrap_err();
    assert_eq!(code(e), "report_id_reused");
    // Ids are each tenant's own: another tenant's Job using the same id is judged on its own
    // (here: an active tenant cannot fail a sync), never as a reuse.
    let e = l.report(ACTIVE, &failed("f:1"), now).unwrap_err();
    assert_eq!(code(e), "invalid_transition");
    // … and recorded when it is valid for that tenant.
    assert_eq!(
        l.report(DEPROVISIONING, &backup("f:1", MANIFEST), due())
            .unwrap(),
        Outcome::Changed
    );
    // A retried pod of one Job: the same id, its own `at`. Its effect is recorded: a repeat.
    l.report(PROVISIONING, &welcome("w:job"), now).unwrap();
    let mut retried = welcome("w:job");
    retried.at = at("2025-03-02T09:59:00Z");
    assert_ne!(retried.fingerprint(), welcome("w:job").fingerprint());
    assert_eq!(
        l.report(PROVISIONING, &retried, now).unwrap(),
        Outcome::Unchanged
    );
}

#[test]
fn a_report_for_an_unknown_tenant_is_refused() {
    let mut l = Life::new();
    let e = l
        .report("nobody-000000", &failed("f:1"), grace())
        .unwrap_err();
    assert_eq!(code(e), "unknown_tenant");
}

#[test]
fn reinstatement_before_the_date_restores_the_tenant_and_after_it_is_refused() {
    let reg = crate::testing::example_registry();
    let t = &reg.tenants[DEPROVISIONING];
    let c = super::reinstate(t, grace()).unwrap().unwrap();
    assert_eq!(c.status, TenantStatus::Active);
    assert!(c.remove.contains(&"cancellation"));
    let e = super::reinstate(t, at("2025-07-15T00:00:00Z")).unwrap_err();
    assert_eq!(e.code, "deletion_due");
    assert_eq!(
        super::reinstate(&reg.tenants[ACTIVE], grace()).unwrap(),
        None
    );
    // A tenant cancelled before it was ever activated goes back to provisioning.
    let reg = crate::testing::edited_registry(|s| {
        replace_in(
            s,
            &format!("tenants/{PROVISIONING}.yaml"),
            "status: provisioning\n",
            "status: deprovisioning\ncancellation: {requested: 2025-03-10T00:00:00Z, deletion: 2025-04-10T00:00:00Z}\n",
        );
    });
    let c = super::reinstate(&reg.tenants[PROVISIONING], at("2025-03-20T00:00:00Z"))
        .unwrap()
        .unwrap();
    assert_eq!(c.status, TenantStatus::Provisioning);
}

#[test]
fn rollback_is_for_never_activated_tenants_only() {
    let reg = crate::testing::example_registry();
    let now = at("2025-03-03T00:00:00Z");
    let c = super::rollback(&reg.tenants[PROVISIONING], now, "wrong customer").unwrap();
    assert_eq!(c.status, TenantStatus::Purging);
    let e = super::rollback(&reg.tenants[ACTIVE], now, "x").unwrap_err();
    assert_eq!(e.code, "refused");
    assert!(e.message.contains("activated"), "{e}");
    let e = super::rollback(&reg.tenants[DEPROVISIONING], now, "x").unwrap_err();
    assert_eq!(e.code, "refused");
    let reg = crate::testing::edited_registry(|s| {
        replace_in(
            s,
            &format!("tenants/{PROVISIONING}.yaml"),
            "status: provisioning\n",
            "status: provisioning\nactivation: {welcomeSent: 2025-03-02T09:00:00Z}\n",
        );
    });
    let e = super::rollback(&reg.tenants[PROVISIONING], now, "x").unwrap_err();
    assert!(e.message.contains("welcome email"), "{e}");
    let e = super::rollback(
        &crate::testing::example_registry().tenants[PROVISIONING],
        now,
        "",
    )
    .unwrap_err();
    assert_eq!(e.code, "invalid_field");
}

#[test]
fn a_rolled_back_tenant_is_removed_without_a_backup() {
    let mut sources = example_sources();
    let reg = registry::load_sources(sources.clone())
        .into_result()
        .unwrap();
    let now = at("2025-03-03T00:00:00Z");
    let c = super::rollback(&reg.tenants[PROVISIONING], now, "wrong customer").unwrap();
    let path = format!("tenants/{PROVISIONING}.yaml");
    let text = crate::intake::with_lifecycle_change(&sources[&path], &c).unwrap();
    sources.insert(path, text);
    let mut l = Life::with(sources);
    l.report(PROVISIONING, &pruned("p:1"), due()).unwrap();
    l.report(PROVISIONING, &torn_down("t:1"), due()).unwrap();
    l.report(PROVISIONING, &gone("g:1"), due()).unwrap();
    assert_eq!(l.status(PROVISIONING), TenantStatus::Removed);
}

#[test]
fn a_report_dated_past_serves_clock_and_its_skew_is_refused_with_nothing_changed() {
    let mut l = Life::new();
    let now = at("2025-03-02T09:00:00Z");
    let before = l.text(PROVISIONING).to_owned();
    let late = report(
        "f:late",
        "2025-03-02T09:05:01Z",
        ReportBody::Failed { reason: "x".into() },
    );
    let e = l.report(PROVISIONING, &late, now).unwrap_err();
    assert_eq!(code(e.clone()), "invalid_field");
    assert!(
        e.to_string().contains(
            "the report's time 2025-03-02T09:05:01Z is later than serve's clock 2025-03-02T09:00:00Z (at most 300 s ahead)"
        ),
        "{e}"
    );
    assert_eq!(l.text(PROVISIONING), before);
    // Within the skew: recorded.
    let ahead = report(
        "f:ahead",
        "2025-03-02T09:05:00Z",
        ReportBody::Failed { reason: "x".into() },
    );
    assert_eq!(
        l.report(PROVISIONING, &ahead, now).unwrap(),
        Outcome::Changed
    );
}

/// Any report, any tenant, any order, any time: the registry loads after every accepted
/// one, and an accepted report applied again changes nothing.
fn any_report() -> impl Strategy<Value = (usize, usize, bool)> {
    (0usize..8, 0usize..3, any::<bool>())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn any_sequence_of_reports_keeps_the_registry_loadable(
        steps in proptest::collection::vec(any_report(), 1..14)
    ) {
        let mut l = Life::new();
        let tenants = [PROVISIONING, ACTIVE, DEPROVISIONING];
        for (i, (kind, who, late)) in steps.into_iter().enumerate() {
            let id = format!("r:{i}");
            let r = match kind {
                0 => welcome(&id),
                1 => activated(&id),
                2 => failed(&id),
                3 => backup(&id, MANIFEST),
                4 => pruned(&id),
                5 => torn_down(&id),
                6 => gone(&id),
                _ => report(&id, "2025-07-15T00:12:00Z", ReportBody::BackupFailed { reason: "x".into() }),
            };
            let now = if late { due() } else { grace() };
            let tenant = tenants[who];
            if let Ok(Outcome::Changed) = l.report(tenant, &r, now) {
                let before = l.text(tenant).to_owned();
                prop_assert_eq!(l.report(tenant, &r, now).unwrap(), Outcome::Unchanged);
                prop_assert_eq!(l.text(tenant), before.as_str());
            }
        }
    }
}
