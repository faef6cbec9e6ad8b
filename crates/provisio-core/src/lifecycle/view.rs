//! A tenant's lifecycle records as `serve` answers them (`GET /api/v1/lifecycle/tenants/{id}`
//! and every report's answer): what the Jobs read before they act (activate: was the welcome
//! email sent? backup: is a backup already recorded? teardown: is the tenant at step
//! `teardown`?). Serializes to, and deserializes from, the API's JSON.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::phase::phase;
use crate::registry::{FailureStep, PurgeStep, Tenant, TenantStatus};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LifecycleView {
    pub tenant: String,
    pub status: TenantStatus,
    /// [`super::Phase::label`] at serve's clock (`deprovisioning/due`, `purging/teardown`…).
    pub phase: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation: Option<ActivationView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancellation: Option<CancellationView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge: Option<PurgeView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActivationView {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub welcome_sent: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FailureView {
    pub step: FailureStep,
    pub reason: String,
    pub attempts: u32,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CancellationView {
    pub requested: DateTime<Utc>,
    pub deletion: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupView {
    pub completed: DateTime<Utc>,
    pub location: String,
    pub manifest_sha256: String,
    pub files: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RollbackView {
    pub requested: DateTime<Utc>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PurgeView {
    pub step: PurgeStep,
    pub started: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teardown_completed: Option<DateTime<Utc>>,
}

impl LifecycleView {
    /// The view of `t` at `now` (serve's clock).
    pub fn of(t: &Tenant, now: DateTime<Utc>) -> Self {
        LifecycleView {
            tenant: t.id.value.clone(),
            status: t.status.value,
            phase: phase(t, now).label().to_owned(),
            activation: t.activation.as_ref().map(|a| ActivationView {
                welcome_sent: a.welcome_sent.as_ref().map(|w| w.value),
                website: a.website.as_ref().map(|w| w.value.clone()),
                activated: a.activated.as_ref().map(|w| w.value),
            }),
            failure: t.failure.as_ref().map(|f| FailureView {
                step: f.step.value,
                reason: f.reason.value.clone(),
                attempts: f.attempts.value,
                at: f.at,
            }),
            cancellation: t.cancellation.as_ref().map(|c| CancellationView {
                requested: c.requested,
                deletion: c.deletion.value,
                reason: c.reason.clone(),
            }),
            backup: t.backup.as_ref().map(|b| BackupView {
                completed: b.completed.value,
                location: b.location.value.clone(),
                manifest_sha256: b.manifest_sha256.value.clone(),
                files: b.files.value,
                bytes: b.bytes,
            }),
            rollback: t.rollback.as_ref().map(|r| RollbackView {
                requested: r.requested.value,
                reason: r.reason.value.clone(),
            }),
            purge: t.purge.as_ref().map(|p| PurgeView {
                step: p.step.value,
                started: p.started.value,
                teardown_completed: p.teardown_completed.as_ref().map(|x| x.value),
            }),
            removed: t.removed.as_ref().map(|r| r.value),
        }
    }

    /// The welcome email was accepted by the SMTP server (activate sends none again).
    pub fn welcome_sent(&self) -> bool {
        self.activation
            .as_ref()
            .is_some_and(|a| a.welcome_sent.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{ACTIVE, DEPROVISIONING, example_registry, now};

    #[test]
    fn the_view_round_trips_through_json() {
        let reg = example_registry();
        for id in [ACTIVE, DEPROVISIONING] {
            let v = LifecycleView::of(&reg.tenants[id], now());
            let json = serde_json::to_string(&v).unwrap();
            let back: LifecycleView = serde_json::from_str(&json).unwrap();
            assert_eq!(back, v, "{json}");
        }
        let v = serde_json::to_value(LifecycleView::of(&reg.tenants[ACTIVE], now())).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "tenant": ACTIVE, "status": "active", "phase": "active",
                "activation": {"welcomeSent": "2025-01-15T10:30:55Z", "website": "789",
                               "activated": "2025-01-15T10:31:00Z"}
            })
        );
        assert!(LifecycleView::of(&reg.tenants[ACTIVE], now()).welcome_sent());
    }
}
