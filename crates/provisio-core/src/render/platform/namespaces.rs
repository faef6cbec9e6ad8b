//! Kubernetes: the tools namespace, and per product and environment a namespace
//! (`<product>-<env>`, Pod Security `restricted`) with its ResourceQuota (the environment's
//! default, key by key overridden by the product's), LimitRange and RoleBindings giving the
//! product's Okta groups, as OIDC group subjects with the API server's prefix, the ClusterRole
//! `edit` or `view`. A RoleBinding's `roleRef` cannot change, so the role is part of its name.
//!
//! Namespaces are never pruned or deleted by Argo CD (`Prune=false,Delete=false`) unless their
//! product is armed for destruction.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, ResourceQuota, ResourceQuotaSpec,
};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{Ctx, FileSet, NAMESPACES_DIR, Owner, TOOLS_DIR, Tooled, labels};
use crate::naming::platform::{self as names, object_name, slug};
use crate::render::objects::{SYNC_OPTIONS, cpu_memory, quantity};
use crate::render::yaml::RenderError;

const KEEP: &str = "Prune=false,Delete=false";

/// The namespace of the managed resources.
pub(super) fn tools_namespace(ctx: &Ctx<'_>, set: &mut FileSet) -> Result<(), RenderError> {
    let owner = Owner::Platform;
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(ctx.pt.namespace.value.clone()),
            labels: Some(labels(&owner, ctx.reg)),
            annotations: Some(BTreeMap::from([(SYNC_OPTIONS.to_owned(), KEEP.to_owned())])),
            ..Default::default()
        },
        ..Default::default()
    };
    set.push(&format!("{TOOLS_DIR}/namespace.yaml"), &owner, &ns)
}

pub(super) fn product(ctx: &Ctx<'_>, t: &Tooled<'_>, set: &mut FileSet) -> Result<(), RenderError> {
    let name = t.name;
    let owner = Owner::Product(name.to_owned());
    let k = &ctx.pt.kubernetes;
    for (env_key, ns_spec) in &t.tools.namespaces {
        let env = env_key.as_str();
        let e = &k.environments[env];
        let namespace = names::product_namespace(name, env);
        let dir = format!("{NAMESPACES_DIR}/{env}/{name}");
        let mut env_labels = labels(&owner, ctx.reg);
        env_labels.insert("environment".into(), env.to_owned());
        let meta = |object: &str| ObjectMeta {
            name: Some(object.to_owned()),
            namespace: Some(namespace.clone()),
            labels: Some(env_labels.clone()),
            ..Default::default()
        };

        let mut ns_labels = env_labels.clone();
        ns_labels.insert(
            "pod-security.kubernetes.io/enforce".into(),
            "restricted".into(),
        );
        ns_labels.insert(
            "pod-security.kubernetes.io/enforce-version".into(),
            "v1.32".into(),
        );
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(namespace.clone()),
                labels: Some(ns_labels),
                annotations: (!t.tools.destroy())
                    .then(|| BTreeMap::from([(SYNC_OPTIONS.to_owned(), KEEP.to_owned())])),
                ..Default::default()
            },
            ..Default::default()
        };
        set.push(&format!("{dir}/namespace.yaml"), &owner, &ns)?;

        let mut hard: BTreeMap<String, _> = e
            .quota
            .iter()
            .map(|(k, v)| (k.clone(), quantity(&v.value)))
            .collect();
        for (k, v) in &ns_spec.quota {
            hard.insert(k.clone(), quantity(&v.value));
        }
        let quota = ResourceQuota {
            metadata: meta("product-quota"),
            spec: Some(ResourceQuotaSpec {
                hard: Some(hard),
                ..Default::default()
            }),
            ..Default::default()
        };
        set.push(&format!("{dir}/resource-quota.yaml"), &owner, &quota)?;

        let c = &e.limit_range.container;
        let mut limits = vec![LimitRangeItem {
            type_: "Container".into(),
            max: Some(cpu_memory(&c.max)),
            min: Some(cpu_memory(&c.min)),
            default: Some(cpu_memory(&c.default)),
            default_request: Some(cpu_memory(&c.default_request)),
            ..Default::default()
        }];
        if let Some(pvc) = &e.limit_range.persistent_volume_claim {
            limits.push(LimitRangeItem {
                type_: "PersistentVolumeClaim".into(),
                max: Some(BTreeMap::from([(
                    "storage".into(),
                    quantity(&pvc.max.value),
                )])),
                min: Some(BTreeMap::from([(
                    "storage".into(),
                    quantity(&pvc.min.value),
                )])),
                ..Default::default()
            });
        }
        let limit_range = LimitRange {
            metadata: meta("product-limits"),
            spec: Some(LimitRangeSpec { limits }),
        };
        set.push(&format!("{dir}/limit-range.yaml"), &owner, &limit_range)?;

        let mut grants: Vec<(&str, &str)> = t
            .tools
            .okta
            .iter()
            .filter_map(|o| {
                o.kubernetes
                    .get(env)
                    .map(|role| (o.group.value.as_str(), role.value.as_str()))
            })
            .collect();
        grants.sort();
        for (group, role) in grants {
            let binding = RoleBinding {
                metadata: meta(&object_name(&[names::OKTA, &slug(group), role])),
                role_ref: RoleRef {
                    api_group: "rbac.authorization.k8s.io".into(),
                    kind: "ClusterRole".into(),
                    name: role.to_owned(),
                },
                subjects: Some(vec![Subject {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "Group".into(),
                    name: format!("{}{group}", k.oidc_groups_prefix),
                    namespace: None,
                }]),
            };
            set.push(&format!("{dir}/rbac.yaml"), &owner, &binding)?;
        }
    }
    Ok(())
}
