//! Shared by the benchmarks: a synthetic registry of N tenants built from the bundled example.

use std::path::Path;

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), t).unwrap();
        }
    }
}

/// A registry of `n` tenants spread over the example's regions and tiers, each region's
/// tenants placed in ApplicationSet shards of at most 500, in order (as the intake does).
pub fn synthesise(root: &Path, n: usize) {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("registry");
    copy_dir(&example.join("products"), &root.join("products"));
    // The products name their owning teams.
    copy_dir(&example.join("teams"), &root.join("teams"));
    std::fs::copy(example.join("tiers.yaml"), root.join("tiers.yaml")).unwrap();
    std::fs::copy(example.join("platform.yaml"), root.join("platform.yaml")).unwrap();
    std::fs::create_dir_all(root.join("tenants")).unwrap();
    let regions = ["us-east", "us-west", "eu-west", "eu-central", "apac"];
    let tiers = ["standard", "premium", "business"];
    for i in 0..n {
        let name = format!("Customer {i} Shop");
        let sub = format!("sub_{i:06}");
        let id = provisio_core::naming::tenant_id(&name, &sub);
        std::fs::write(
            root.join(format!("tenants/{id}.yaml")),
            format!(
                "id: {id}\nname: {name}\ntier: {}\nregion: {}\nshard: {}\nsubscription: {sub}\ncontacts: {{admin: admin{i}@example.com, billing: billing{i}@example.com}}\ncreated: 2025-01-01T00:00:00Z\nstatus: active\n",
                tiers[i % 3],
                regions[i % 5],
                i / 5 / 500
            ),
        )
        .unwrap();
    }
}
