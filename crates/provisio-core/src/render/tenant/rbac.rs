//! The tenant's ServiceAccounts and the least Role provisio's in-namespace Jobs need.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};

use crate::plan::TenantPlan;
use crate::render::objects::{meta, wave};

/// Service account of the tenant's workloads (no API access, no token mounted).
pub const APP_SERVICE_ACCOUNT: &str = "tenant-app";

/// Service account of provisio's in-namespace Jobs (reads workload health only).
pub const PROVISIO_SERVICE_ACCOUNT: &str = "provisio";

pub(super) fn rbac(plan: &TenantPlan<'_>) -> (Vec<ServiceAccount>, Role, RoleBinding) {
    let sa = |name: &str| ServiceAccount {
        metadata: meta(plan, name, wave::GUARDRAILS, &[]),
        automount_service_account_token: Some(false),
        ..Default::default()
    };
    let role = Role {
        metadata: meta(plan, "provisio-health-reader", wave::GUARDRAILS, &[]),
        rules: Some(vec![
            PolicyRule {
                api_groups: Some(vec!["apps".into()]),
                resources: Some(vec!["deployments".into()]),
                verbs: vec!["get".into(), "list".into(), "watch".into()],
                ..Default::default()
            },
            PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["pods".into()]),
                verbs: vec!["get".into(), "list".into(), "watch".into()],
                ..Default::default()
            },
        ]),
    };
    let binding = RoleBinding {
        metadata: meta(plan, "provisio-health-reader", wave::GUARDRAILS, &[]),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: "provisio-health-reader".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: PROVISIO_SERVICE_ACCOUNT.into(),
            namespace: Some(plan.namespace.clone()),
            ..Default::default()
        }]),
    };
    (
        vec![sa(APP_SERVICE_ACCOUNT), sa(PROVISIO_SERVICE_ACCOUNT)],
        role,
        binding,
    )
}
