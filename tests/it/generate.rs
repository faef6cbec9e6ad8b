//! `generate` behaviour on real directories: determinism, no rewrite when unchanged, a
//! one-tenant change rewrites only that tenant, removal of a deleted tenant, hand-edit repair,
//! incremental output equal to a full render, and crash leftovers.

use crate::common;

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use common::Workspace;
use provisio::ops::generate as pipeline;

const ABC: &str = "abc-corporation-7f3a9c";

fn mtimes(ws: &Workspace) -> Vec<(String, SystemTime)> {
    ws.snapshot()
        .keys()
        .map(|k| {
            let m = std::fs::metadata(ws.out().join(k))
                .unwrap()
                .modified()
                .unwrap();
            (k.clone(), m)
        })
        .collect()
}

#[test]
fn same_registry_same_bytes() {
    let (a, b) = (Workspace::new(), Workspace::new());
    a.generate();
    b.generate();
    let (sa, sb) = (a.snapshot(), b.snapshot());
    assert!(
        sa.len() > 80,
        "expected a full tree, got {} files",
        sa.len()
    );
    assert_eq!(sa, sb);
}

#[test]
fn second_run_changes_nothing() {
    let ws = Workspace::new();
    let first = ws.generate();
    assert!(!first.is_noop());
    let before = mtimes(&ws);
    std::thread::sleep(Duration::from_millis(20));
    let second = ws.generate();
    assert!(second.is_noop(), "{second:?}");
    assert_eq!(before, mtimes(&ws), "a file was rewritten");
    // `--full` re-renders everything and still writes nothing.
    let full = pipeline::generate(&ws.paths(), &common::full(common::now())).unwrap();
    assert!(full.is_noop(), "{full:?}");
    assert_eq!(before, mtimes(&ws));
}

#[test]
fn one_tenant_change_rewrites_only_that_tenant() {
    let ws = Workspace::new();
    ws.generate();
    let before = ws.snapshot();
    let path = format!("tenants/{ABC}.yaml");
    let text = std::fs::read_to_string(ws.registry().join(&path)).unwrap();
    ws.write(&path, &text.replace("tier: premium", "tier: business"));
    let s = ws.generate();
    assert_eq!(s.tenants_changed, BTreeSet::from([ABC.to_owned()]));
    let after = ws.snapshot();
    for (k, v) in &after {
        let in_abc = k.starts_with(&format!("tenants-out/{ABC}/"));
        if !in_abc && k != provisio::io::output::STATE_FILE {
            assert_eq!(before.get(k), Some(v), "{k} changed");
        }
    }
    let quota = String::from_utf8(after[&format!("tenants-out/{ABC}/resource-quota.yaml")].clone())
        .unwrap();
    assert!(quota.contains("requests.cpu: \"16\""), "{quota}");
}

#[test]
fn removed_tenant_tree_is_deleted_and_others_untouched() {
    let ws = Workspace::new();
    ws.generate();
    let before = ws.snapshot();
    ws.remove("tenants/cafe-creme-93b31b.yaml");
    let s = ws.generate();
    assert_eq!(
        s.tenants_removed,
        BTreeSet::from(["cafe-creme-93b31b".to_owned()])
    );
    assert!(!ws.out().join("tenants-out/cafe-creme-93b31b").exists());
    let after = ws.snapshot();
    for (k, v) in &after {
        if k != provisio::io::output::STATE_FILE {
            assert_eq!(before.get(k), Some(v), "{k} changed");
        }
    }
    let state = String::from_utf8(after[provisio::io::output::STATE_FILE].clone()).unwrap();
    assert!(
        !state.contains("cafe-creme"),
        "the state still lists the removed tenant"
    );
}

#[test]
fn hand_edits_are_reported_by_check_and_repaired_by_full_generate() {
    let ws = Workspace::new();
    ws.generate();
    let file = ws
        .out()
        .join(format!("tenants-out/{ABC}/resource-quota.yaml"));
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("pods: \"100\"", "pods: \"1000\"")).unwrap();
    std::fs::write(ws.out().join("tenants-out/stray.yaml"), "x: 1\n").unwrap();
    let r = provisio::ops::check::check(&ws.paths(), common::now(), 40).unwrap();
    let paths: Vec<&str> = r.drifts.iter().map(|d| d.path()).collect();
    assert_eq!(
        paths,
        vec![
            format!("tenants-out/{ABC}/resource-quota.yaml").as_str(),
            "tenants-out/stray.yaml"
        ]
    );
    let text = &r.diff;
    assert!(
        text.contains("-    pods: \"1000\"") && text.contains("+    pods: \"100\""),
        "{text}"
    );
    pipeline::generate(&ws.paths(), &common::full(common::now())).unwrap();
    std::fs::remove_file(ws.out().join("tenants-out/stray.yaml")).unwrap();
    assert!(
        provisio::ops::check::check(&ws.paths(), common::now(), 40)
            .unwrap()
            .drifts
            .is_empty()
    );
}

#[test]
fn incremental_output_equals_a_full_render() {
    let inc = Workspace::new();
    inc.generate();
    // A product change affects every tenant; a tenant change one; a new tenant adds a tree.
    let p = inc.registry().join("products/orders.yaml");
    let text = std::fs::read_to_string(&p).unwrap();
    inc.write("products/orders.yaml", &text.replace("v1.2.3", "v1.3.0"));
    inc.write(
        "tenants/new-shop-abcdef.yaml",
        "id: new-shop-abcdef\nname: New Shop\ntier: standard\nregion: apac\nsubscription: sub_new\ncontacts: {admin: a@new.shop, billing: b@new.shop}\ncreated: 2025-01-31T00:00:00Z\nstatus: provisioning\n",
    );
    inc.generate();
    let full = Workspace::new();
    common::copy_dir(&inc.registry(), &full.registry());
    full.generate();
    assert_eq!(inc.snapshot(), full.snapshot());
}

#[test]
fn crash_leftovers_and_a_lost_state_file_converge() {
    let ws = Workspace::new();
    ws.generate();
    let good = ws.snapshot();
    // A crash after some writes: a half-written temporary file, an old file, no state.
    let dir = ws.out().join(format!("tenants-out/{ABC}"));
    std::fs::write(dir.join(".provisio-XXXX"), "partial").unwrap();
    std::fs::write(dir.join("ingress.yaml"), "old").unwrap();
    std::fs::remove_file(ws.out().join(provisio::io::output::STATE_FILE)).unwrap();
    // …and a new tenant's staging directory that was never renamed into place.
    let staging = ws
        .out()
        .join("tenants-out/.provisio-staging-new-shop-abcdef");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join("namespace.yaml"), "half").unwrap();
    ws.generate();
    assert_eq!(good, ws.snapshot());
    assert!(!staging.exists());
}

#[test]
fn generated_tree_contains_no_secret_material() {
    let ws = Workspace::new();
    ws.generate();
    for (path, bytes) in ws.snapshot() {
        let text = String::from_utf8(bytes).unwrap();
        assert!(!text.contains("kind: Secret\n"), "{path} holds a Secret");
        for word in ["password:", "stringData", "admin:admin", "secret_key:"] {
            assert!(
                !text.to_lowercase().contains(word),
                "{path} contains `{word}`"
            );
        }
    }
}

#[test]
fn mass_deletion_is_refused_unless_allowed() {
    let ws = Workspace::new();
    ws.generate();
    let before = ws.snapshot();
    // Two of three tenants gone (e.g. a bad merge): refused, nothing written.
    ws.remove("tenants/cafe-creme-93b31b.yaml");
    ws.remove("tenants/nordwind-logistik-7ace77.yaml");
    let opts = pipeline::GenerateOptions::new(common::now());
    let err = pipeline::generate(&ws.paths(), &opts).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("refusing to remove 2 of 3 tenants")
            && msg.contains("cafe-creme-93b31b, nordwind-logistik-7ace77")
            && msg.contains("--allow-mass-delete"),
        "{msg}"
    );
    assert_eq!(before, ws.snapshot());
    // Allowed on purpose: both trees go.
    let mut opts = opts;
    opts.mass_delete.allow = true;
    let s = pipeline::generate(&ws.paths(), &opts).unwrap();
    assert_eq!(s.tenants_removed.len(), 2);
}

#[test]
fn mass_delete_guard_thresholds() {
    let g = pipeline::MassDeleteGuard::default();
    let ids = |n: usize| (0..n).map(|i| format!("t{i}")).collect::<Vec<_>>();
    assert!(g.check(ids(1), 3).is_ok(), "one removal is always allowed");
    assert!(g.check(ids(2), 20).is_ok(), "10% of 20");
    assert!(g.check(ids(3), 20).is_err());
    assert!(g.check(ids(100), 1000).is_ok());
    assert!(g.check(ids(101), 1000).is_err());
}

#[test]
fn a_tree_deleted_by_hand_is_restored_by_an_incremental_run() {
    let ws = Workspace::new();
    ws.generate();
    let good = ws.snapshot();
    std::fs::remove_dir_all(ws.out().join("tenants-out/cafe-creme-93b31b")).unwrap();
    let s = ws.generate();
    assert_eq!(
        s.tenants_changed,
        BTreeSet::from(["cafe-creme-93b31b".to_owned()])
    );
    assert_eq!(good, ws.snapshot());
}

/// The registry's products without their `tools` section (their platform tools leave).
fn without_tools(ws: &Workspace, products: &[&str]) {
    for p in products {
        let path = format!("products/{p}.yaml");
        let text = std::fs::read_to_string(ws.registry().join(&path)).unwrap();
        let cut = text.find("\ntools:\n").expect("a tooled product");
        ws.write(&path, &text[..=cut]);
    }
}

#[test]
fn removing_the_platform_tools_of_several_products_is_refused_unless_allowed() {
    let ws = Workspace::new();
    ws.generate();
    let before = ws.snapshot();
    without_tools(&ws, &["orders", "baskets"]);
    let opts = pipeline::GenerateOptions::new(common::now());
    let err = pipeline::generate(&ws.paths(), &opts).unwrap_err();
    assert_eq!(
        err.to_string(),
        "refusing to remove the platform tools of 2 products at once (more than platformTools.maxProductRemovals = 1): baskets, orders; if this is intended, run again with --allow-mass-delete"
    );
    assert_eq!(before, ws.snapshot(), "nothing written");
    // One is within the budget.
    let ws1 = Workspace::new();
    ws1.generate();
    without_tools(&ws1, &["orders"]);
    let s = ws1.generate();
    assert!(
        s.removed
            .iter()
            .any(|f| f == "platform-out/tools/products/orders/gitlab.yaml")
    );
    assert!(
        !ws1.out()
            .join("platform-out/namespaces/dev/orders")
            .exists()
    );
    // Allowed on purpose.
    let mut opts = opts;
    opts.mass_delete.allow = true;
    pipeline::generate(&ws.paths(), &opts).unwrap();
    for p in ["orders", "baskets"] {
        assert!(
            !ws.out()
                .join(format!("platform-out/tools/products/{p}"))
                .exists()
        );
    }
}

/// A team's change is a platform change only: no tenant tree is rendered again or written.
#[test]
fn a_team_change_rewrites_only_the_platform_tree() {
    let ws = Workspace::new();
    ws.generate();
    let before = ws.snapshot();
    let text = std::fs::read_to_string(ws.registry().join("teams/commerce.yaml")).unwrap();
    ws.write(
        "teams/commerce.yaml",
        &text.replace("gitlab: reporter", "gitlab: developer"),
    );
    let s = ws.generate();
    assert_eq!(s.tenants_skipped, 3, "no tenant re-rendered");
    assert_eq!(
        s.written,
        ["platform-out/tools/teams/commerce/gitlab.yaml"],
        "{s:?}"
    );
    let after = ws.snapshot();
    for (k, v) in &after {
        if !k.starts_with("platform-out/") && k != provisio::io::output::STATE_FILE {
            assert_eq!(before.get(k), Some(v), "{k} changed");
        }
    }
    let link =
        String::from_utf8(after["platform-out/tools/teams/commerce/gitlab.yaml"].clone()).unwrap();
    assert!(
        link.contains("name: team--commerce--okta-commerce--developer"),
        "{link}"
    );
    assert!(!link.contains("okta-commerce--reporter"), "{link}");
}

/// Two runs on one output tree never interleave: while another process holds the tree (its
/// directory `flock`ed), `generate` refuses before writing anything; afterwards it runs.
#[test]
fn a_second_generate_on_the_same_output_is_refused() {
    let ws = Workspace::new();
    ws.generate();
    let held = std::fs::File::open(ws.out()).unwrap();
    held.try_lock().unwrap();
    let set = |v: &str| {
        let rel = "products/orders.yaml";
        let text = std::fs::read_to_string(ws.registry().join(rel)).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("version:"))
            .unwrap()
            .to_owned();
        ws.write(rel, &text.replacen(&line, &format!("version: {v}"), 1));
    };
    set("v7.0.0");
    let before = ws.snapshot();
    let err = pipeline::generate(
        &pipeline::Paths {
            registry: ws.registry(),
            out: ws.out(),
        },
        &pipeline::GenerateOptions::new(common::now()),
    )
    .unwrap_err();
    assert!(err.to_string().contains("cannot lock"), "{err}");
    assert_eq!(ws.snapshot(), before, "nothing written");
    drop(held);
    ws.generate();
    assert_ne!(ws.snapshot(), before);
}
