//! Test support: the bundled example registry as [`Sources`]. Tests may read files; the
//! library may not (this module is compiled for tests only).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use crate::registry::Sources;

/// The example registry at the repository root (`registry/`), read the way the `provisio`
/// crate's reader does (top-level files and the files directly in `products/`, `teams/`, `tenants/`).
pub fn example_sources() -> Sources {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../registry");
    let mut sources = Sources::new();
    for name in ["platform.yaml", "tiers.yaml"] {
        sources.insert(
            name.to_owned(),
            std::fs::read_to_string(root.join(name)).expect("the example registry"),
        );
    }
    for dir in crate::registry::layout::ENTRY_DIRS {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries {
            let entry = entry.expect("a directory entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            sources.insert(
                format!("{dir}/{name}"),
                std::fs::read_to_string(entry.path()).expect("a registry file"),
            );
        }
    }
    sources
}

/// The example's active tenant: `premium`, `us-east`, every product.
pub const ACTIVE: &str = "abc-corporation-7f3a9c";
/// The example's new tenant: `standard`, `eu-west`, domain derived from its id.
pub const PROVISIONING: &str = "cafe-creme-93b31b";
/// The example's cancelled tenant: `business`, own domain, overrides, a cancellation.
pub const DEPROVISIONING: &str = "nordwind-logistik-7ace77";

/// The fixed `now` of plans in tests: after the example's cancellation request, before its
/// deletion date.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    "2025-06-15T12:00:00Z".parse().expect("a date")
}

/// A registry from its files; panics with the rendered diagnostics if it does not load.
pub fn registry_from(sources: Sources) -> crate::registry::Registry {
    crate::registry::load_sources(sources)
        .into_result()
        .unwrap_or_else(|report| panic!("the test registry does not load:\n{}", report.render()))
}

/// The example registry, loaded.
pub fn example_registry() -> crate::registry::Registry {
    registry_from(example_sources())
}

/// The example registry after `edit` changed its files.
pub fn edited_registry(edit: impl FnOnce(&mut Sources)) -> crate::registry::Registry {
    let mut sources = example_sources();
    edit(&mut sources);
    registry_from(sources)
}

/// Replaces `from` (which must occur) by `to` in one file of the registry.
pub fn replace_in(sources: &mut Sources, file: &str, from: &str, to: &str) {
    let text = sources
        .get_mut(file)
        .expect("a file of the example registry");
    assert!(text.contains(from), "`{from}` is not in {file}");
    *text = text.replace(from, to);
}

/// Leaves the gateway as the only product: no database, no bucket (a tenant without MySQL
/// or MinIO; the gateway still publishes to RabbitMQ). The deprovisioning tenant, whose
/// overrides name other products, is left out.
pub fn keep_only_the_gateway(sources: &mut Sources) {
    sources.retain(|path, _| {
        !(path.starts_with("products/") && path != "products/api-gateway.yaml")
            && *path != format!("tenants/{DEPROVISIONING}.yaml")
    });
    // Without the websites product, activation registers no website.
    replace_in(
        sources,
        "platform.yaml",
        "  websites:\n    product: websites\n    path: /api/v1/websites\n    tokenEnv: INTERNAL_SERVICE_TOKEN\n",
        "",
    );
}

/// The example registry after [`keep_only_the_gateway`].
pub fn gateway_only_registry() -> crate::registry::Registry {
    edited_registry(keep_only_the_gateway)
}

/// The plan of tenant `id` of `reg` at [`now`].
pub fn plan<'r>(reg: &'r crate::registry::Registry, id: &str) -> crate::plan::TenantPlan<'r> {
    crate::plan::plan_tenant(reg, &reg.tenants[id], now())
}

/// The tenants of `tests/data/lifecycle/` (one per lifecycle phase) with their phase at
/// [`now`].
pub const LIFECYCLE_TENANTS: [(&str, crate::lifecycle::Phase); 10] = {
    use crate::lifecycle::Phase;
    use crate::registry::PurgeStep;
    [
        ("life-provisioning-0a0001", Phase::Provisioning),
        ("life-failed-0a0002", Phase::Failed),
        ("life-active-0a0003", Phase::Active),
        ("life-grace-0a0004", Phase::Grace),
        ("life-due-0a0005", Phase::Due),
        (
            "life-workloads-0a0006",
            Phase::Purging(PurgeStep::Workloads),
        ),
        ("life-teardown-0a0007", Phase::Purging(PurgeStep::Teardown)),
        (
            "life-namespace-0a0008",
            Phase::Purging(PurgeStep::Namespace),
        ),
        ("life-removed-0a0009", Phase::Removed),
        (
            "life-rolledback-0a000a",
            Phase::Purging(PurgeStep::Workloads),
        ),
    ]
};

/// The example registry plus `tests/data/lifecycle/tenants/`: a tenant in every phase.
pub fn lifecycle_sources() -> Sources {
    let mut sources = example_sources();
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/lifecycle/tenants");
    for entry in std::fs::read_dir(dir).expect("tests/data/lifecycle/tenants") {
        let entry = entry.expect("a directory entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        sources.insert(
            format!("tenants/{name}"),
            std::fs::read_to_string(entry.path()).expect("a tenant file"),
        );
    }
    sources
}

/// [`lifecycle_sources`], loaded.
pub fn lifecycle_registry() -> crate::registry::Registry {
    registry_from(lifecycle_sources())
}
