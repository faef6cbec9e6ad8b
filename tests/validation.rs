//! The bundled example, validated by the real tools: every tenant tree and `argocd/` build
//! with `kubectl kustomize`; built-in objects pass `kubernetes-validate --strict` for
//! Kubernetes 1.32; custom resources validate against the upstream CRD schemas
//! (`tests/tools/validate_crs.py`, strict: unknown fields are errors); alert rules pass
//! `promtool check rules`. A missing tool skips locally and fails in CI
//! (`PROVISIO_REQUIRE_TOOLS=1`).

mod common;

use std::path::Path;
use std::process::Command;

use common::Workspace;
use serde_json::Value;

const BUILTIN_GROUPS: &[&str] = &[
    "v1",
    "apps/v1",
    "batch/v1",
    "networking.k8s.io/v1",
    "rbac.authorization.k8s.io/v1",
    "policy/v1",
];

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `kubectl kustomize` of every tree; returns (tree, built YAML).
fn build_all(kubectl: &str, out: &Path) -> Vec<(String, String)> {
    let mut dirs: Vec<_> = std::fs::read_dir(out.join("tenants-out"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    dirs.push(out.join("argocd"));
    dirs.iter()
        .map(|d| {
            let built = run(Command::new(kubectl).arg("kustomize").arg(d));
            (d.file_name().unwrap().to_string_lossy().into_owned(), built)
        })
        .collect()
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml).expect("kustomize output parses")
}

#[test]
fn example_trees_build_and_validate() {
    let Some(kubectl) = common::tool("kubectl") else {
        return;
    };
    let ws = Workspace::new();
    ws.generate();
    let built = build_all(&kubectl, &ws.out());
    assert_eq!(built.len(), 4, "three tenants and argocd/");

    let tmp = tempfile::tempdir().unwrap();
    let mut builtin_files = Vec::new();
    let mut custom_files = Vec::new();
    let mut rule_files = Vec::new();
    let mut kinds = std::collections::BTreeSet::new();
    for (tree, yaml) in &built {
        let docs = documents(yaml);
        assert!(!docs.is_empty());
        for (i, doc) in docs.iter().enumerate() {
            let api = doc["apiVersion"].as_str().unwrap();
            let kind = doc["kind"].as_str().unwrap();
            kinds.insert(format!("{api}/{kind}"));
            let file = tmp.path().join(format!("{tree}-{i:03}-{kind}.json"));
            std::fs::write(&file, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
            if BUILTIN_GROUPS.contains(&api) {
                builtin_files.push(file);
            } else {
                custom_files.push(file);
            }
            if kind == "PrometheusRule" {
                let rules = tmp.path().join(format!("{tree}-rules.yaml"));
                std::fs::write(&rules, serde_saphyr::to_string(&doc["spec"]).unwrap()).unwrap();
                rule_files.push(rules);
            }
        }
    }
    for expected in [
        "v1/Namespace",
        "apps/v1/Deployment",
        "networking.k8s.io/v1/NetworkPolicy",
        "external-secrets.io/v1/ExternalSecret",
        "cert-manager.io/v1/Certificate",
        "monitoring.coreos.com/v1/PrometheusRule",
        "argoproj.io/v1alpha1/ApplicationSet",
        "argoproj.io/v1alpha1/AppProject",
    ] {
        assert!(
            kinds.contains(expected),
            "no {expected} in the output: {kinds:?}"
        );
    }

    if let Some(kv) = common::tool("kubernetes-validate") {
        let out = run(Command::new(kv)
            .args(["--strict", "--quiet", "--kubernetes-version", "1.32.0"])
            .args(&builtin_files));
        // It only warns (exit 0) about kinds it has no schema for: none is acceptable here.
        assert!(!out.contains("WARN") && !out.contains("ERROR"), "{out}");
    }
    if let Some(crds) = common::crd_dir() {
        let script = common::repo_root().join("tests/tools/validate_crs.py");
        let report = run(Command::new("python3")
            .arg(script)
            .arg("--crd-dir")
            .arg(crds)
            .args(&custom_files));
        assert!(
            report.contains(&format!("{} validated, 0 errors", custom_files.len())),
            "{report}"
        );
    }
    if let Some(promtool) = common::tool("promtool") {
        let out = run(Command::new(promtool)
            .arg("check")
            .arg("rules")
            .args(&rule_files));
        assert!(out.contains("SUCCESS: 3 rules found"), "{out}");
    }
}

/// The validators are not rubber stamps: a broken object is refused by each.
#[test]
fn validators_reject_broken_objects() {
    let tmp = tempfile::tempdir().unwrap();
    if let Some(kv) = common::tool("kubernetes-validate") {
        let bad = tmp.path().join("deploy.yaml");
        std::fs::write(
            &bad,
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: x}}\n  template:\n    metadata: {labels: {app: x}}\n    spec:\n      containers: [{name: x, image: x, bogus: 1}]\n",
        )
        .unwrap();
        let out = Command::new(kv)
            .args(["--strict", "--quiet", "--kubernetes-version", "1.32.0"])
            .arg(&bad)
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "kubernetes-validate accepted an unknown field"
        );
    }
    if let Some(crds) = common::crd_dir() {
        let bad = tmp.path().join("es.yaml");
        std::fs::write(
            &bad,
            "apiVersion: external-secrets.io/v1beta1\nkind: ExternalSecret\nmetadata: {name: x, namespace: y}\nspec: {secretStoreRef: {name: s, kind: ClusterSecretStore}}\n",
        )
        .unwrap();
        let out = Command::new("python3")
            .arg(common::repo_root().join("tests/tools/validate_crs.py"))
            .arg("--crd-dir")
            .arg(crds)
            .arg(&bad)
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "the seed's v1beta1 ExternalSecret was accepted"
        );
    }
    if let Some(promtool) = common::tool("promtool") {
        let bad = tmp.path().join("rules.yaml");
        std::fs::write(
            &bad,
            "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: sum(rate(x[5m]) > \n",
        )
        .unwrap();
        let out = Command::new(promtool)
            .arg("check")
            .arg("rules")
            .arg(&bad)
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "promtool accepted a broken expression"
        );
    }
}
