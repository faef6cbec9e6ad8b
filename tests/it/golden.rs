//! Golden tree: the committed `tenants-out/` and `argocd/` are exactly what `generate`
//! renders from the bundled `registry/`. After a deliberate change, regenerate them with
//! `PROVISIO_BLESS=1 cargo test --test it golden::` (or `cargo run -- generate --now
//! 2025-02-01T00:00:00Z`, the tests' time) and review the diff.

use crate::common;

use provisio::ops::generate::{self as pipeline, Paths};

#[test]
fn committed_output_matches_the_example_registry() {
    let root = common::repo_root();
    let paths = Paths {
        registry: root.join("registry"),
        out: root.clone(),
    };
    if common::bless() {
        pipeline::generate(&paths, &common::full(common::now())).unwrap();
    }
    let r = provisio::ops::check::check(&paths, common::now(), 40).unwrap();
    assert!(
        r.drifts.is_empty(),
        "the committed output is stale:\n{}\nrun `PROVISIO_BLESS=1 cargo test --test it golden::`",
        r.diff
    );
}
