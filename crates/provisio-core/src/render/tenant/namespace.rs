//! The tenant's namespace (labels, annotations, Pod Security "restricted", never pruned or
//! deleted by Argo CD), its ResourceQuota and its LimitRange.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, ResourceQuota, ResourceQuotaSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::plan::{self, TenantPlan};
use crate::registry::TenantStatus;
use crate::render::objects::{self, cpu_memory, meta, quantity, wave};

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
    let mut annotations = BTreeMap::from([
        (objects::SYNC_WAVE.to_owned(), wave::NAMESPACE.to_string()),
        // Argo CD never deletes a tenant namespace, neither by pruning nor when the
        // Application goes: deletion is `provisio teardown`'s, after grace period and backup.
        (
            objects::SYNC_OPTIONS.to_owned(),
            "Prune=false,Delete=false".to_owned(),
        ),
        ("domain".to_owned(), plan.domain.clone()),
        ("subscription-id".to_owned(), t.subscription.value.clone()),
        ("created-date".to_owned(), plan::timestamp(&t.created)),
        ("billing-email".to_owned(), t.contacts.billing.value.clone()),
        ("tenant-name".to_owned(), t.name.clone()),
    ]);
    if plan.status == TenantStatus::Deprovisioning {
        labels.insert("deprovisioning".into(), "true".into());
        if let Some(c) = &t.cancellation {
            annotations.insert("deprovisioning".into(), "true".into());
            annotations.insert("deprovisioning-date".into(), plan::timestamp(&c.requested));
            annotations.insert("deletion-date".into(), plan::timestamp(&c.deletion.value));
            annotations.insert("backup-required".into(), "true".into());
            if let Some(r) = &c.reason {
                annotations.insert("cancellation-reason".into(), r.clone());
            }
        }
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
