//! The tenant's ServiceAccount and the least Role provisio's lifecycle Jobs need in its
//! namespace: read-only, bound to the shared-services namespace's `provisio-setup` account
//! (the Jobs run there, next to the credentials they need; nothing of theirs runs in the
//! tenant namespace).

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};

use crate::plan::TenantPlan;
use crate::render::jobs::SETUP_SERVICE_ACCOUNT;
use crate::render::objects::{meta, wave};

/// Service account of the tenant's workloads (no API access, no token mounted).
pub const APP_SERVICE_ACCOUNT: &str = "tenant-app";

/// The Role (and RoleBinding) letting the lifecycle Jobs read the tenant's namespace.
pub const LIFECYCLE_READER: &str = "provisio-lifecycle-reader";

/// What the lifecycle Jobs read: activate (Deployments' rollout, Grafana objects `Ready`),
/// sync-failed (why a sync failed), backup (no pod running), purge-check (nothing left).
const READ: &[(&str, &[&str])] = &[
    ("apps", &["deployments"]),
    ("", &["pods"]),
    ("batch", &["jobs"]),
    ("networking.k8s.io", &["ingresses"]),
    ("cert-manager.io", &["certificates"]),
    ("external-secrets.io", &["externalsecrets"]),
    (
        "oss.grafana.m.crossplane.io",
        &[
            "dashboards",
            "folderpermissions",
            "folders",
            "teams",
            "users",
        ],
    ),
];

/// The workloads' ServiceAccount (while the tenant runs), and the lifecycle reader Role and
/// its binding (until the namespace goes).
pub(super) fn rbac(
    plan: &TenantPlan<'_>,
    with_workloads: bool,
) -> (Vec<ServiceAccount>, Role, RoleBinding) {
    let sa = |name: &str| ServiceAccount {
        metadata: meta(plan, name, wave::GUARDRAILS, &[]),
        automount_service_account_token: Some(false),
        ..Default::default()
    };
    let role = Role {
        metadata: meta(plan, LIFECYCLE_READER, wave::GUARDRAILS, &[]),
        rules: Some(
            READ.iter()
                .map(|(group, resources)| PolicyRule {
                    api_groups: Some(vec![(*group).to_owned()]),
                    resources: Some(resources.iter().map(|r| (*r).to_owned()).collect()),
                    verbs: vec!["get".into(), "list".into(), "watch".into()],
                    ..Default::default()
                })
                .collect(),
        ),
    };
    let binding = RoleBinding {
        metadata: meta(plan, LIFECYCLE_READER, wave::GUARDRAILS, &[]),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: LIFECYCLE_READER.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: SETUP_SERVICE_ACCOUNT.into(),
            namespace: Some(plan.platform.shared_services.namespace.clone()),
            ..Default::default()
        }]),
    };
    let sas = if with_workloads {
        vec![sa(APP_SERVICE_ACCOUNT)]
    } else {
        Vec::new()
    };
    (sas, role, binding)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{ACTIVE, example_registry, plan};

    #[test]
    fn the_service_account_mounts_no_token() {
        let reg = example_registry();
        let plan = plan(&reg, ACTIVE);
        let (sas, _, _) = rbac(&plan, true);
        let names: Vec<_> = sas
            .iter()
            .map(|s| s.metadata.name.as_deref().unwrap())
            .collect();
        assert_eq!(names, [APP_SERVICE_ACCOUNT]);
        for sa in &sas {
            assert_eq!(sa.automount_service_account_token, Some(false));
            assert_eq!(sa.metadata.namespace.as_ref(), Some(&plan.namespace));
            assert_eq!(sa.secrets, None);
        }
        assert!(rbac(&plan, false).0.is_empty());
    }

    #[test]
    fn the_role_only_reads() {
        let reg = example_registry();
        let (_, role, _) = rbac(&plan(&reg, ACTIVE), true);
        assert_eq!(role.metadata.name.as_deref(), Some(LIFECYCLE_READER));
        for r in role.rules.iter().flatten() {
            // Least privilege: no named exceptions, no URLs, no wildcard, reads only; never
            // Secrets.
            assert_eq!((&r.resource_names, &r.non_resource_urls), (&None, &None));
            assert_eq!(r.verbs, ["get", "list", "watch"]);
            let resources = r.resources.as_ref().unwrap();
            assert!(!resources.iter().any(|x| x == "secrets" || x.contains('*')));
        }
    }

    #[test]
    fn the_binding_grants_the_role_to_the_shared_namespaces_provisio_setup_alone() {
        let reg = example_registry();
        let plan = plan(&reg, ACTIVE);
        let (_, role, binding) = rbac(&plan, true);
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
                SETUP_SERVICE_ACCOUNT,
                Some("e-commerce-shared")
            )]
        );
    }
}
