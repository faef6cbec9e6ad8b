//! The tenant's namespace (labels, annotations, Pod Security "restricted", never pruned or
//! deleted by Argo CD), its ResourceQuota and its LimitRange.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, ResourceQuota, ResourceQuotaSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::lifecycle::Phase;
use crate::plan::{self, TenantPlan};
use crate::registry::{PurgeStep, TenantStatus};
use crate::render::objects::{self, cpu_memory, meta, quantity, wave};

/// Annotation saying where a tenant on its way out is (`deletion-due`, `purging/teardown`…).
pub const LIFECYCLE_PHASE: &str = "lifecycle-phase";

pub(super) fn namespace(plan: &TenantPlan<'_>) -> Namespace {
    let t = plan.tenant;
    let mut labels = plan.labels.clone();
    // Every pod of a tenant meets the `restricted` Pod Security Standard.
    labels.insert(
        "pod-security.kubernetes.io/enforce".into(),
        "restricted".into(),
    );
    labels.insert(
        "pod-security.kubernetes.io/enforce-version".into(),
        "v1.32".into(),
    );
    // Argo CD never deletes a tenant namespace, neither by pruning nor when the Application
    // goes: deleting it is the last step of the ordered removal (docs/lifecycle.md). At the
    // teardown step `Prune=false` goes, one state early, because Argo CD reads that option
    // from the *live* object when it prunes (gitops-engine `sync_context.go`,
    // `isPruningDisabled`): the namespace step's sync can then prune it.
    let sync_options = if plan.phase == Phase::Purging(PurgeStep::Teardown) {
        "Delete=false"
    } else {
        "Prune=false,Delete=false"
    };
    let mut annotations = BTreeMap::from([
        (objects::SYNC_WAVE.to_owned(), wave::NAMESPACE.to_string()),
        (objects::SYNC_OPTIONS.to_owned(), sync_options.to_owned()),
        ("domain".to_owned(), plan.domain.clone()),
        ("subscription-id".to_owned(), t.subscription.value.clone()),
        ("created-date".to_owned(), plan::timestamp(&t.created)),
        ("billing-email".to_owned(), t.contacts.billing.value.clone()),
        ("tenant-name".to_owned(), t.name.clone()),
    ]);
    if matches!(
        plan.status,
        TenantStatus::Deprovisioning | TenantStatus::Purging
    ) {
        // The seed's annotations of a tenant on its way out.
        if let Some(c) = &t.cancellation {
            labels.insert("deprovisioning".into(), "true".into());
            annotations.insert("deprovisioning".into(), "true".into());
            annotations.insert("deprovisioning-date".into(), plan::timestamp(&c.requested));
            annotations.insert("deletion-date".into(), plan::timestamp(&c.deletion.value));
            annotations.insert("backup-required".into(), t.backup.is_none().to_string());
            if let Some(r) = &c.reason {
                annotations.insert("cancellation-reason".into(), r.clone());
            }
        }
    }
    // Where the removal is, and what it rests on, for whoever looks at the namespace.
    match plan.phase {
        Phase::Due => {
            annotations.insert(LIFECYCLE_PHASE.into(), "deletion-due".into());
        }
        Phase::Purging(_) => {
            annotations.insert(LIFECYCLE_PHASE.into(), plan.phase.label().into());
            if let Some(b) = &t.backup {
                annotations.insert(
                    "backup-completed".into(),
                    plan::timestamp(&b.completed.value),
                );
                annotations.insert("backup-location".into(), b.location.value.clone());
                annotations.insert(
                    "backup-manifest-sha256".into(),
                    b.manifest_sha256.value.clone(),
                );
            }
            if let Some(r) = &t.rollback {
                annotations.insert(
                    "rollback-requested".into(),
                    plan::timestamp(&r.requested.value),
                );
            }
        }
        _ => {}
    }
    Namespace {
        metadata: ObjectMeta {
            name: Some(plan.namespace.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        ..Default::default()
    }
}

pub(super) fn resource_quota(plan: &TenantPlan<'_>) -> ResourceQuota {
    ResourceQuota {
        metadata: meta(plan, "tenant-quota", wave::GUARDRAILS, &[]),
        spec: Some(ResourceQuotaSpec {
            hard: Some(
                plan.tier
                    .quota
                    .iter()
                    .map(|(k, v)| (k.clone(), quantity(&v.value)))
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(super) fn limit_range(plan: &TenantPlan<'_>) -> LimitRange {
    let c = &plan.tier.limit_range.container;
    let mut limits = vec![LimitRangeItem {
        type_: "Container".to_owned(),
        max: Some(cpu_memory(&c.max)),
        min: Some(cpu_memory(&c.min)),
        default: Some(cpu_memory(&c.default)),
        default_request: Some(cpu_memory(&c.default_request)),
        ..Default::default()
    }];
    if let Some(pvc) = &plan.tier.limit_range.persistent_volume_claim {
        limits.push(LimitRangeItem {
            type_: "PersistentVolumeClaim".to_owned(),
            max: Some(BTreeMap::from([(
                "storage".to_owned(),
                quantity(&pvc.max.value),
            )])),
            min: Some(BTreeMap::from([(
                "storage".to_owned(),
                quantity(&pvc.min.value),
            )])),
            ..Default::default()
        });
    }
    LimitRange {
        metadata: meta(plan, "tenant-limits", wave::GUARDRAILS, &[]),
        spec: Some(LimitRangeSpec { limits }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    use crate::testing::{
        ACTIVE, DEPROVISIONING, PROVISIONING, edited_registry, example_registry, plan, replace_in,
    };

    fn annotations(m: &ObjectMeta) -> &BTreeMap<String, String> {
        m.annotations.as_ref().expect("annotations")
    }

    fn labels(m: &ObjectMeta) -> &BTreeMap<String, String> {
        m.labels.as_ref().expect("labels")
    }

    #[test]
    fn the_namespace_carries_the_tenant_and_is_never_pruned_nor_deleted() {
        let reg = example_registry();
        let plan = plan(&reg, ACTIVE);
        let ns = namespace(&plan);
        let m = &ns.metadata;
        assert_eq!(m.name.as_deref(), Some("e-commerce-abc-corporation-7f3a9c"));
        assert_eq!(m.namespace, None, "a Namespace is cluster-scoped");
        let expected_labels = BTreeMap::from([
            ("environment", "production"),
            ("managed-by", "provisio"),
            ("pod-security.kubernetes.io/enforce", "restricted"),
            ("pod-security.kubernetes.io/enforce-version", "v1.32"),
            ("region", "us-east"),
            ("tenant", ACTIVE),
            ("tier", "premium"),
        ])
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect::<BTreeMap<_, _>>();
        assert_eq!(labels(m), &expected_labels);
        let expected_annotations = BTreeMap::from([
            (
                "argocd.argoproj.io/sync-options",
                "Prune=false,Delete=false",
            ),
            ("argocd.argoproj.io/sync-wave", "-10"),
            ("billing-email", "billing@abc-corp.com"),
            ("created-date", "2025-01-15T10:00:00Z"),
            ("domain", "abc-corporation.collectverything.com"),
            ("subscription-id", "sub_abc123"),
            ("tenant-name", "ABC Corporation"),
        ])
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect::<BTreeMap<_, _>>();
        assert_eq!(annotations(m), &expected_annotations);
    }

    #[test]
    fn the_namespace_is_the_first_wave_of_every_tenant() {
        let reg = example_registry();
        for id in [ACTIVE, PROVISIONING, DEPROVISIONING] {
            let plan = plan(&reg, id);
            let a = annotations(&namespace(&plan).metadata).clone();
            assert_eq!(a[objects::SYNC_WAVE], wave::NAMESPACE.to_string(), "{id}");
            assert_eq!(a[objects::SYNC_OPTIONS], "Prune=false,Delete=false", "{id}");
            // Every other object of the tenant comes later.
            let quota = resource_quota(&plan);
            let later: i32 = annotations(&quota.metadata)[objects::SYNC_WAVE]
                .parse()
                .unwrap();
            assert!(wave::NAMESPACE < later);
        }
    }

    #[test]
    fn a_deprovisioning_namespace_says_so_with_its_dates_and_reason() {
        let reg = example_registry();
        let ns = namespace(&plan(&reg, DEPROVISIONING));
        assert_eq!(labels(&ns.metadata)["deprovisioning"], "true");
        let a = annotations(&ns.metadata);
        assert_eq!(a["deprovisioning"], "true");
        assert_eq!(a["deprovisioning-date"], "2025-06-15T10:00:00Z");
        assert_eq!(a["deletion-date"], "2025-07-15T00:00:00Z");
        assert_eq!(a["backup-required"], "true");
        assert_eq!(a["cancellation-reason"], "downgrade");
        assert_eq!(a["domain"], "shop.nordwind-logistik.de");
        // Still never pruned: the teardown is provisio's, not Argo CD's.
        assert_eq!(a[objects::SYNC_OPTIONS], "Prune=false,Delete=false");

        // Active and provisioning tenants carry none of it.
        for id in [ACTIVE, PROVISIONING] {
            let ns = namespace(&plan(&reg, id));
            assert!(!labels(&ns.metadata).contains_key("deprovisioning"), "{id}");
            let a = annotations(&ns.metadata);
            for key in ["deprovisioning", "deletion-date", "backup-required"] {
                assert!(!a.contains_key(key), "{id}: {key}");
            }
        }
    }

    #[test]
    fn the_quota_is_the_tiers_quota_key_for_key() {
        let reg = example_registry();
        for id in [ACTIVE, PROVISIONING, DEPROVISIONING] {
            let plan = plan(&reg, id);
            let q = resource_quota(&plan);
            assert_eq!(q.metadata.name.as_deref(), Some("tenant-quota"));
            assert_eq!(q.metadata.namespace.as_ref(), Some(&plan.namespace));
            let hard = q.spec.unwrap().hard.unwrap();
            let expected: BTreeMap<String, String> = plan
                .tier
                .quota
                .iter()
                .map(|(k, v)| (k.clone(), v.value.clone()))
                .collect();
            let got: BTreeMap<String, String> = hard.into_iter().map(|(k, v)| (k, v.0)).collect();
            assert_eq!(got, expected, "{id}");
        }
        // The figures of each tier, not one tier's for all.
        let hard = |id| {
            resource_quota(&plan(&reg, id))
                .spec
                .unwrap()
                .hard
                .unwrap()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect::<BTreeMap<_, _>>()
        };
        let (standard, premium, business) =
            (hard(PROVISIONING), hard(ACTIVE), hard(DEPROVISIONING));
        assert_eq!(standard["limits.cpu"], "14");
        assert_eq!(premium["limits.cpu"], "20");
        assert_eq!(business["limits.cpu"], "32");
        assert_eq!(premium["requests.memory"], "16Gi");
        assert_eq!(business["requests.storage"], "2Ti");
        assert_eq!(premium["count/deployments.apps"], "20");
        assert_eq!(standard["services.nodeports"], "0");
    }

    #[test]
    fn a_changed_tier_figure_reaches_the_quota() {
        let reg = edited_registry(|s| {
            replace_in(
                s,
                "tiers.yaml",
                "      limits.cpu: \"20\"",
                "      limits.cpu: \"21\"",
            );
        });
        let hard = resource_quota(&plan(&reg, ACTIVE))
            .spec
            .unwrap()
            .hard
            .unwrap();
        assert_eq!(hard["limits.cpu"].0, "21");
    }

    #[test]
    fn the_limit_range_defaults_come_from_the_tier() {
        let reg = example_registry();
        let item = |lr: &LimitRange, kind: &str| {
            lr.spec
                .as_ref()
                .unwrap()
                .limits
                .iter()
                .find(|l| l.type_ == kind)
                .cloned()
                .unwrap_or_else(|| panic!("no {kind} item"))
        };
        let q = |m: &Option<BTreeMap<String, Quantity>>, k: &str| m.as_ref().unwrap()[k].0.clone();

        let premium = limit_range(&plan(&reg, ACTIVE));
        assert_eq!(premium.metadata.name.as_deref(), Some("tenant-limits"));
        let c = item(&premium, "Container");
        assert_eq!(
            (q(&c.default, "cpu"), q(&c.default, "memory")),
            ("1".into(), "1Gi".into())
        );
        assert_eq!(
            (
                q(&c.default_request, "cpu"),
                q(&c.default_request, "memory")
            ),
            ("500m".into(), "512Mi".into())
        );
        assert_eq!(
            (q(&c.max, "cpu"), q(&c.max, "memory")),
            ("4".into(), "8Gi".into())
        );
        assert_eq!(
            (q(&c.min, "cpu"), q(&c.min, "memory")),
            ("100m".into(), "128Mi".into())
        );
        let pvc = item(&premium, "PersistentVolumeClaim");
        assert_eq!(
            (q(&pvc.max, "storage"), q(&pvc.min, "storage")),
            ("100Gi".into(), "1Gi".into())
        );
        assert_eq!(pvc.default, None, "a PVC gets no default size");

        let standard = item(&limit_range(&plan(&reg, PROVISIONING)), "Container");
        assert_eq!(q(&standard.default, "cpu"), "500m");
        assert_eq!(q(&standard.default_request, "memory"), "256Mi");
        assert_eq!(q(&standard.max, "memory"), "4Gi");
    }

    #[test]
    fn a_tier_without_a_pvc_range_gets_only_the_container_item() {
        let reg = edited_registry(|s| {
            replace_in(
                s,
                "tiers.yaml",
                "        defaultRequest: {cpu: 500m, memory: 512Mi}\n      persistentVolumeClaim:\n        max: 100Gi\n        min: 1Gi\n",
                "        defaultRequest: {cpu: 500m, memory: 512Mi}\n",
            );
        });
        let lr = limit_range(&plan(&reg, ACTIVE));
        let kinds: Vec<&str> = lr
            .spec
            .as_ref()
            .unwrap()
            .limits
            .iter()
            .map(|l| l.type_.as_str())
            .collect();
        assert_eq!(kinds, ["Container"]);
    }

    /// The namespace says where the removal is; `Prune=false` goes one state before the
    /// namespace step (Argo CD reads it from the live object), `Delete=false` never.
    #[test]
    fn the_namespace_follows_the_phase() {
        use crate::testing::{LIFECYCLE_TENANTS, lifecycle_registry, now};
        let reg = lifecycle_registry();
        for (id, phase) in LIFECYCLE_TENANTS {
            if matches!(phase, Phase::Removed | Phase::Purging(PurgeStep::Namespace)) {
                continue;
            }
            let plan = crate::plan::plan_tenant(&reg, &reg.tenants[id], now());
            let ns = namespace(&plan);
            let a = annotations(&ns.metadata);
            let expected = if phase == Phase::Purging(PurgeStep::Teardown) {
                "Delete=false"
            } else {
                "Prune=false,Delete=false"
            };
            assert_eq!(a[objects::SYNC_OPTIONS], expected, "{id}");
            let lifecycle_phase = a.get(LIFECYCLE_PHASE).map(String::as_str);
            match phase {
                Phase::Due => assert_eq!(lifecycle_phase, Some("deletion-due")),
                Phase::Purging(_) => {
                    assert_eq!(lifecycle_phase, Some(phase.label()), "{id}");
                }
                _ => assert_eq!(lifecycle_phase, None, "{id}"),
            }
        }
        let plan = crate::plan::plan_tenant(&reg, &reg.tenants["life-workloads-0a0006"], now());
        let a = annotations(&namespace(&plan).metadata).clone();
        assert_eq!(a["backup-required"], "false");
        assert!(a["backup-location"].starts_with("s3://ecommerce-tenant-archives/"));
        assert_eq!(a["backup-manifest-sha256"].len(), 64);
        let plan = crate::plan::plan_tenant(&reg, &reg.tenants["life-rolledback-0a000a"], now());
        let a = annotations(&namespace(&plan).metadata).clone();
        assert_eq!(a["rollback-requested"], "2025-01-02T11:02:00Z");
        assert!(!a.contains_key("backup-location"));
    }
}
