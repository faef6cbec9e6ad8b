//! The same tenants the kustomize way, for the benchmarks that compare with it.

use std::path::Path;

use super::common::copy_dir;

/// The kustomize way: one base (a rendered tenant tree without its namespace-specific
/// objects) and one overlay per tenant setting namespace, labels and the tier's quota.
pub fn kustomize_overlays(root: &Path, base_tree: &Path, n: usize) {
    let base = root.join("base");
    copy_dir(base_tree, &base);
    // The ApplicationSet's parameters (`config.<shard>.json`) are not Kubernetes objects.
    for e in std::fs::read_dir(&base).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name.starts_with("config.") && name.ends_with(".json") {
            std::fs::remove_file(base.join(name)).unwrap();
        }
    }
    std::fs::remove_file(base.join("namespace.yaml")).unwrap();
    let k = std::fs::read_to_string(base.join("kustomization.yaml")).unwrap();
    std::fs::write(
        base.join("kustomization.yaml"),
        k.replace("- namespace.yaml\n", ""),
    )
    .unwrap();
    let mut top = String::from(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n",
    );
    for i in 0..n {
        let dir = root.join(format!("overlays/t{i:05}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("kustomization.yaml"),
            format!(
                "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: e-commerce-t{i:05}\nresources:\n- ../../base\nlabels:\n- pairs: {{tenant: t{i:05}, tier: premium}}\npatches:\n- target: {{kind: ResourceQuota, name: tenant-quota}}\n  patch: |-\n    - op: replace\n      path: /spec/hard/pods\n      value: \"{}\"\n",
                50 + i % 3 * 50
            ),
        )
        .unwrap();
        top.push_str(&format!("- overlays/t{i:05}\n"));
    }
    std::fs::write(root.join("kustomization.yaml"), top).unwrap();
}
