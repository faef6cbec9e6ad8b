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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{ACTIVE, example_registry, plan};

    #[test]
    fn service_accounts_mount_no_token() {
        let reg = example_registry();
        let plan = plan(&reg, ACTIVE);
        let (sas, _, _) = rbac(&plan);
        let names: Vec<_> = sas
            .iter()
            .map(|s| s.metadata.name.as_deref().unwrap())
            .collect();
        assert_eq!(names, [APP_SERVICE_ACCOUNT, PROVISIO_SERVICE_ACCOUNT]);
        for sa in &sas {
            assert_eq!(sa.automount_service_account_token, Some(false));
            assert_eq!(sa.metadata.namespace.as_ref(), Some(&plan.namespace));
            assert_eq!(sa.secrets, None);
        }
    }

    #[test]
    fn the_role_only_reads_deployments_and_pods() {
        let reg = example_registry();
        let (_, role, _) = rbac(&plan(&reg, ACTIVE));
        assert_eq!(
            role.metadata.name.as_deref(),
            Some("provisio-health-reader")
        );
        let rules: Vec<_> = role
            .rules
            .iter()
            .flatten()
            .map(|r| {
                // Least privilege: no named exceptions, no URLs, no wildcard anywhere.
                assert_eq!((&r.resource_names, &r.non_resource_urls), (&None, &None));
                (
                    r.api_groups.clone().unwrap(),
                    r.resources.clone().unwrap(),
                    r.verbs.clone(),
                )
            })
            .collect();
        let read = vec!["get".to_owned(), "list".to_owned(), "watch".to_owned()];
        assert_eq!(
            rules,
            [
                (
                    vec!["apps".to_owned()],
                    vec!["deployments".to_owned()],
                    read.clone()
                ),
                (vec![String::new()], vec!["pods".to_owned()], read),
            ]
        );
    }

    #[test]
    fn the_binding_grants_the_role_to_provisio_alone() {
        let reg = example_registry();
        let plan = plan(&reg, ACTIVE);
        let (_, role, binding) = rbac(&plan);
        assert_eq!(binding.role_ref.kind, "Role", "never a ClusterRole");
        assert_eq!(binding.role_ref.api_group, "rbac.authorization.k8s.io");
        assert_eq!(Some(&binding.role_ref.name), role.metadata.name.as_ref());
        let subjects = binding.subjects.unwrap();
        let subjects: Vec<_> = subjects
            .iter()
            .map(|s| (s.kind.as_str(), s.name.as_str(), s.namespace.as_deref()))
            .collect();
        assert_eq!(
            subjects,
            [(
                "ServiceAccount",
                PROVISIO_SERVICE_ACCOUNT,
                Some(plan.namespace.as_str())
            )]
        );
    }
}
