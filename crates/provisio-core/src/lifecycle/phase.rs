//! The phase of a tenant at a given time: its status, refined by the clock (a
//! `deprovisioning` tenant is in its grace period before its deletion date and *due* from it)
//! and by the purge step. The rendered tree is a function of the phase; the phase is the only
//! place the clock enters rendering.

use chrono::{DateTime, Utc};

use crate::registry::{PurgeStep, Tenant, TenantStatus};

/// What a tenant's tree looks like (docs/lifecycle.md, "What the rendered tree contains").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// The full tree, the activate (PostSync) and sync-failed (SyncFail) hooks.
    Provisioning,
    /// As `Provisioning`: a later successful sync activates it.
    Failed,
    /// The full tree and the website-status hook.
    Active,
    /// Cancelled, before the deletion date: the active tree, the namespace says so.
    Grace,
    /// From the deletion date until a backup is recorded: workloads at 0 replicas, no
    /// migrations, the backup Job.
    Due,
    /// Backed up (or rolled back): the tree reduced step by step.
    Purging(PurgeStep),
    /// Nothing: no tree, no Application.
    Removed,
}

impl Phase {
    /// Every phase, in the order of a tenant's life.
    pub const ALL: [Phase; 9] = [
        Phase::Provisioning,
        Phase::Failed,
        Phase::Active,
        Phase::Grace,
        Phase::Due,
        Phase::Purging(PurgeStep::Workloads),
        Phase::Purging(PurgeStep::Teardown),
        Phase::Purging(PurgeStep::Namespace),
        Phase::Removed,
    ];

    /// A stable name: in the state file's input fingerprints, the namespace annotation
    /// `lifecycle-phase` and the documentation.
    pub fn label(self) -> &'static str {
        match self {
            Phase::Provisioning => "provisioning",
            Phase::Failed => "failed",
            Phase::Active => "active",
            Phase::Grace => "deprovisioning/grace",
            Phase::Due => "deprovisioning/due",
            Phase::Purging(PurgeStep::Workloads) => "purging/workloads",
            Phase::Purging(PurgeStep::Teardown) => "purging/teardown",
            Phase::Purging(PurgeStep::Namespace) => "purging/namespace",
            Phase::Removed => "removed",
        }
    }

    /// The tenant's workloads, services, ingress and configuration are rendered (every phase
    /// before the purge).
    pub fn runs(self) -> bool {
        matches!(
            self,
            Phase::Provisioning | Phase::Failed | Phase::Active | Phase::Grace | Phase::Due
        )
    }

    /// Activation is pending: the activate and sync-failed hooks are rendered.
    pub fn activating(self) -> bool {
        matches!(self, Phase::Provisioning | Phase::Failed)
    }

    /// The tree has no file at all.
    pub fn is_removed(self) -> bool {
        self == Phase::Removed
    }
}

/// The phase of `t` at `now`.
pub fn phase(t: &Tenant, now: DateTime<Utc>) -> Phase {
    match t.status.value {
        TenantStatus::Provisioning => Phase::Provisioning,
        TenantStatus::Failed => Phase::Failed,
        TenantStatus::Active => Phase::Active,
        TenantStatus::Deprovisioning => match &t.cancellation {
            Some(c) if c.deletion.value <= now => Phase::Due,
            _ => Phase::Grace,
        },
        TenantStatus::Purging => Phase::Purging(
            t.purge
                .as_ref()
                .map_or(PurgeStep::Workloads, |p| p.step.value),
        ),
        TenantStatus::Removed => Phase::Removed,
    }
}

/// The earliest moment after `now` at which some tenant's phase changes by the clock alone
/// (a `deprovisioning` tenant's deletion date): when watch must wake up and regenerate.
pub fn next_deadline<'t>(
    tenants: impl IntoIterator<Item = &'t Tenant>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    tenants
        .into_iter()
        .filter(|t| t.status.value == TenantStatus::Deprovisioning)
        .filter_map(|t| t.cancellation.as_ref().map(|c| c.deletion.value))
        .filter(|d| *d > now)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{ACTIVE, DEPROVISIONING, PROVISIONING, example_registry};

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn the_clock_moves_a_cancelled_tenant_from_grace_to_due_at_its_deletion_date() {
        let reg = example_registry();
        let t = &reg.tenants[DEPROVISIONING];
        assert_eq!(phase(t, at("2025-07-14T23:59:59Z")), Phase::Grace);
        assert_eq!(phase(t, at("2025-07-15T00:00:00Z")), Phase::Due);
        assert_eq!(phase(t, at("2026-01-01T00:00:00Z")), Phase::Due);
        assert_eq!(
            phase(&reg.tenants[ACTIVE], at("2030-01-01T00:00:00Z")),
            Phase::Active
        );
        assert_eq!(
            phase(&reg.tenants[PROVISIONING], at("2030-01-01T00:00:00Z")),
            Phase::Provisioning
        );
    }

    #[test]
    fn the_next_deadline_is_the_earliest_deletion_date_still_ahead() {
        let reg = example_registry();
        let d = next_deadline(reg.tenants.values(), at("2025-06-15T12:00:00Z"));
        assert_eq!(d, Some(at("2025-07-15T00:00:00Z")));
        assert_eq!(
            next_deadline(reg.tenants.values(), at("2025-07-15T00:00:00Z")),
            None,
            "a date reached is no deadline any more"
        );
    }

    #[test]
    fn labels_are_distinct() {
        let labels: std::collections::BTreeSet<&str> =
            Phase::ALL.iter().map(|p| p.label()).collect();
        assert_eq!(labels.len(), Phase::ALL.len());
    }
}
