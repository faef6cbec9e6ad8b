//! Small builders shared by the renderers: object metadata with the tenant's labels and an
//! Argo CD sync wave, label selectors, quantities.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, PodSecurityContext, SeccompProfile, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use crate::plan::TenantPlan;
use crate::registry::Registry;

pub const SYNC_WAVE: &str = "argocd.argoproj.io/sync-wave";
pub const HOOK: &str = "argocd.argoproj.io/hook";
pub const HOOK_DELETE_POLICY: &str = "argocd.argoproj.io/hook-delete-policy";
pub const SYNC_OPTIONS: &str = "argocd.argoproj.io/sync-options";
/// The `app` label of every lifecycle Job (`render::lifecycle`); the tenant's NetworkPolicy
/// (`render::tenant::network`) admits these pods to the websites product.
pub const LIFECYCLE_APP: &str = "provisio-lifecycle";
/// The tenant's Certificate (its host names; `render::tenant::ingress`), which the lifecycle
/// Jobs' specs name (`render::lifecycle`).
pub const CERTIFICATE: &str = "tenant-tls";

/// Sync waves: what must exist before what, so a first sync on an empty cluster works.
pub mod wave {
    pub const NAMESPACE: i32 = -10;
    pub const GUARDRAILS: i32 = -9;
    pub const CONFIG: i32 = -8;
    pub const MIGRATIONS: i32 = -1;
    pub const WORKLOADS: i32 = 0;
    pub const EXPOSURE: i32 = 1;
    pub const MONITORING: i32 = 2;
    /// The tenant's Grafana access (after the dashboard's data and the admin's Secret).
    pub const ACCESS: i32 = 3;
    /// The spec ConfigMaps of the ordinary lifecycle Jobs (backup, teardown)…
    pub const LIFECYCLE_SPEC: i32 = 9;
    /// …and the Jobs: after every other wave of the tree is applied and healthy (the backup
    /// after the Deployments scaled to 0).
    pub const LIFECYCLE_JOB: i32 = 10;
}

/// Metadata of a namespaced object of the tenant: name, namespace, the tenant's labels plus
/// `extra`, and its sync wave.
pub fn meta(plan: &TenantPlan<'_>, name: &str, wave: i32, extra: &[(&str, &str)]) -> ObjectMeta {
    let mut labels = plan.labels.clone();
    for (k, v) in extra {
        labels.insert((*k).to_owned(), (*v).to_owned());
    }
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(plan.namespace.clone()),
        labels: Some(labels),
        annotations: Some(BTreeMap::from([(SYNC_WAVE.to_owned(), wave.to_string())])),
        ..Default::default()
    }
}

/// Adds annotations to metadata built by [`meta`].
pub fn annotate(
    mut m: ObjectMeta,
    pairs: impl IntoIterator<Item = (String, String)>,
) -> ObjectMeta {
    m.annotations
        .get_or_insert_with(BTreeMap::new)
        .extend(pairs);
    m
}

pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

pub fn match_labels(pairs: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels(pairs)),
        ..Default::default()
    }
}

pub fn match_map(map: &BTreeMap<String, String>) -> LabelSelector {
    LabelSelector {
        match_labels: Some(map.clone()),
        ..Default::default()
    }
}

pub fn quantity(s: &str) -> Quantity {
    Quantity(s.to_owned())
}

/// `{cpu: …, memory: …}` as a resource list.
pub fn cpu_memory(cm: &crate::registry::CpuMemory) -> BTreeMap<String, Quantity> {
    BTreeMap::from([
        ("cpu".to_owned(), quantity(&cm.cpu.value)),
        ("memory".to_owned(), quantity(&cm.memory.value)),
    ])
}

/// Container security context meeting the `restricted` Pod Security Standard.
pub fn restricted_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Pod security context meeting the `restricted` Pod Security Standard.
pub fn pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Metadata of an Argo CD object provisio owns: in Argo CD's namespace, labelled as ours.
pub fn argocd_meta(reg: &Registry, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(reg.platform.argocd.namespace.clone()),
        labels: Some(BTreeMap::from([(
            "managed-by".to_owned(),
            "provisio".to_owned(),
        )])),
        ..Default::default()
    }
}
