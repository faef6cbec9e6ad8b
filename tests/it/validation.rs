//! The bundled example, validated by the real tools: every tenant tree, the platform trees
//! (`platform-out/tools`, `platform-out/namespaces/<env>`) and `argocd/` build with
//! `kubectl kustomize`; built-in objects pass `kubernetes-validate --strict` for Kubernetes
//! 1.32; custom resources validate against the upstream CRD schemas
//! (`tests/tools/validate_crs.py`, strict: unknown fields are errors), and the Crossplane
//! CRDs' CEL rules, which that script does not evaluate, are evaluated here; alert rules pass
//! `promtool check rules`. A missing tool skips locally and fails in CI
//! (`PROVISIO_REQUIRE_TOOLS=1`).

use crate::common;

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

/// `kubectl kustomize` of every tree; returns (tree, built YAML), the tree named by its path
/// below the output root with `/` → `-`.
fn build_all(kubectl: &str, out: &Path) -> Vec<(String, String)> {
    let children = |dir: &Path| -> Vec<std::path::PathBuf> {
        let mut d: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .collect();
        d.sort();
        d
    };
    let mut dirs = children(&out.join("tenants-out"));
    dirs.push(out.join("platform-out/tools"));
    dirs.extend(children(&out.join("platform-out/namespaces")));
    dirs.push(out.join("argocd"));
    dirs.iter()
        .map(|d| {
            let built = run(Command::new(kubectl).arg("kustomize").arg(d));
            let rel = d
                .strip_prefix(out)
                .unwrap()
                .to_string_lossy()
                .replace('/', "-");
            (rel, built)
        })
        .collect()
}

/// The Crossplane CRDs' `x-kubernetes-validations` on `spec`, by (group, kind): each is the
/// upjet "required parameter" rule, `!('*' in self.managementPolicies || 'Create' in … ||
/// 'Update' in …) || has(self.forProvider.<field>) || (has(self.initProvider) && …)`; returns
/// the required fields. Any other rule fails the test (it would go unchecked).
fn required_by_cel(crds: &Path) -> std::collections::BTreeMap<(String, String), Vec<String>> {
    let mut out = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(crds).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if !name.contains(".m.crossplane.io_") || !name.ends_with(".yaml") {
            continue;
        }
        let crd: Value = serde_saphyr::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        let group = crd["spec"]["group"].as_str().unwrap().to_owned();
        let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_owned();
        let mut fields = Vec::new();
        for v in crd["spec"]["versions"].as_array().unwrap() {
            let rules =
                &v["schema"]["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-validations"];
            for r in rules.as_array().into_iter().flatten() {
                let rule = r["rule"].as_str().unwrap();
                let field = rule
                    .strip_prefix("!('*' in self.managementPolicies || 'Create' in self.managementPolicies || 'Update' in self.managementPolicies) || has(self.forProvider.")
                    .and_then(|rest| rest.split_once(')'))
                    .map(|(f, _)| f.to_owned());
                let Some(field) = field else {
                    panic!("{name}: a CEL rule this test cannot evaluate: {rule}")
                };
                fields.push(field);
            }
        }
        out.insert((group, kind), fields);
    }
    out
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
    assert_eq!(
        built.len(),
        8,
        "three tenants, the platform tools, three environments and argocd/"
    );

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
        "argoproj.io/v1alpha1/Application",
        "groups.gitlab.m.crossplane.io/v1alpha1/SamlGroupLink",
        "projects.gitlab.m.crossplane.io/v1alpha1/ProtectedBranch",
        "oss.grafana.m.crossplane.io/v1alpha1/FolderPermission",
        "local.artifactory.jfrog.m.crossplane.io/v1alpha1/DockerV2Repository",
        "virtual.artifactory.jfrog.m.crossplane.io/v1alpha1/ComposerRepository",
        "platform.jfrog.m.crossplane.io/v1alpha1/Permission",
        "rbac.authorization.k8s.io/v1/RoleBinding",
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
            .arg(&crds)
            .args(&custom_files));
        assert!(
            report.contains(&format!("{} validated, 0 errors", custom_files.len())),
            "{report}"
        );
        // CEL: a managed resource that may create or update carries the required parameters.
        let required = required_by_cel(&crds);
        let mut evaluated = 0;
        for (_, yaml) in &built {
            for doc in documents(yaml) {
                let api = doc["apiVersion"].as_str().unwrap();
                let group = api.rsplit_once('/').map_or("", |(g, _)| g).to_owned();
                let kind = doc["kind"].as_str().unwrap().to_owned();
                let Some(fields) = required.get(&(group, kind)) else {
                    continue;
                };
                let policies: Vec<&str> = doc["spec"]["managementPolicies"]
                    .as_array()
                    .map(|a| a.iter().map(|p| p.as_str().unwrap()).collect())
                    .unwrap_or_else(|| vec!["*"]);
                let writes = policies
                    .iter()
                    .any(|p| matches!(*p, "*" | "Create" | "Update"));
                for f in fields {
                    evaluated += 1;
                    assert!(
                        !writes || doc["spec"]["forProvider"].get(f).is_some(),
                        "{} {}: the CRD requires forProvider.{f} (CEL)",
                        doc["kind"],
                        doc["metadata"]["name"]
                    );
                }
            }
        }
        assert!(evaluated >= 10, "only {evaluated} CEL rules evaluated");
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
            .arg(&crds)
            .arg(&bad)
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "the seed's v1beta1 ExternalSecret was accepted"
        );
        // A SAML link with a field provider-gitlab does not have (`groupPath`).
        let bad = tmp.path().join("link.yaml");
        std::fs::write(
            &bad,
            "apiVersion: groups.gitlab.m.crossplane.io/v1alpha1\nkind: SamlGroupLink\nmetadata: {name: x, namespace: y}\nspec:\n  forProvider: {accessLevel: 30, name: okta-x, groupPath: a/b}\n  providerConfigRef: {kind: ClusterProviderConfig, name: gitlab}\n",
        )
        .unwrap();
        let out = Command::new("python3")
            .arg(common::repo_root().join("tests/tools/validate_crs.py"))
            .arg("--crd-dir")
            .arg(&crds)
            .arg(&bad)
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "a SamlGroupLink with an unknown field was accepted"
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

/// Every lifecycle phase's tree (`tests/data/lifecycle/`: one tenant per phase over the
/// example registry) builds with `kubectl kustomize`, its built-in objects pass
/// `kubernetes-validate --strict` and its custom resources the CRD schemas, like the
/// example's trees: the states of docs/lifecycle.md are deployable, not only the happy path.
#[test]
fn every_lifecycle_phase_builds_and_validates() {
    let Some(kubectl) = common::tool("kubectl") else {
        return;
    };
    let ws = Workspace::new();
    let data = common::repo_root().join("tests/data/lifecycle/tenants");
    for e in std::fs::read_dir(&data).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(
            &p,
            ws.registry().join("tenants").join(p.file_name().unwrap()),
        )
        .unwrap();
    }
    ws.generate();
    let trees = ws.out().join("tenants-out");
    let tmp = tempfile::tempdir().unwrap();
    let (mut builtin_files, mut custom_files) = (Vec::new(), Vec::new());
    let mut jobs_by_tenant = std::collections::BTreeMap::new();
    for (id, phase) in [
        ("life-provisioning-0a0001", "provisioning"),
        ("life-failed-0a0002", "failed"),
        ("life-active-0a0003", "active"),
        ("life-grace-0a0004", "deprovisioning/grace"),
        ("life-due-0a0005", "deprovisioning/due"),
        ("life-workloads-0a0006", "purging/workloads"),
        ("life-teardown-0a0007", "purging/teardown"),
        ("life-namespace-0a0008", "purging/namespace"),
        ("life-rolledback-0a000a", "purging/workloads"),
    ] {
        let built = run(Command::new(&kubectl).arg("kustomize").arg(trees.join(id)));
        let docs = documents(&built);
        assert!(!docs.is_empty(), "{id}");
        let mut jobs = Vec::new();
        for (i, doc) in docs.iter().enumerate() {
            let api = doc["apiVersion"].as_str().unwrap();
            let kind = doc["kind"].as_str().unwrap();
            if kind == "Job" {
                let name = doc["metadata"]["name"].as_str().unwrap();
                jobs.push(name.trim_end_matches(&format!("-{id}")).to_owned());
            }
            if kind == "Namespace" && phase != "purging/namespace" {
                let a = &doc["metadata"]["annotations"];
                match phase {
                    "provisioning" | "failed" | "active" | "deprovisioning/grace" => {
                        assert!(a.get("lifecycle-phase").is_none(), "{id}: {a}")
                    }
                    "deprovisioning/due" => assert_eq!(a["lifecycle-phase"], "deletion-due"),
                    _ => assert_eq!(a["lifecycle-phase"], phase, "{id}"),
                }
            }
            let file = tmp.path().join(format!("{id}-{i:03}-{kind}.json"));
            std::fs::write(&file, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
            if BUILTIN_GROUPS.contains(&api) {
                builtin_files.push(file);
            } else {
                custom_files.push(file);
            }
        }
        jobs.sort();
        jobs_by_tenant.insert(phase.to_owned() + " " + id, jobs);
    }
    // The lifecycle Jobs of each phase (setup and migration Jobs aside).
    let lifecycle: std::collections::BTreeMap<_, _> = jobs_by_tenant
        .iter()
        .map(|(k, jobs)| {
            let l: Vec<&str> = jobs
                .iter()
                .map(String::as_str)
                .filter(|j| {
                    [
                        "activate",
                        "sync-failed",
                        "website-status",
                        "backup",
                        "purge-check",
                        "teardown",
                        "namespace-check",
                    ]
                    .contains(j)
                })
                .collect();
            (k.split(' ').next().unwrap().to_owned(), l)
        })
        .collect();
    assert_eq!(lifecycle["provisioning"], ["activate", "sync-failed"]);
    assert_eq!(lifecycle["failed"], ["activate", "sync-failed"]);
    assert_eq!(lifecycle["active"], ["website-status"]);
    assert_eq!(lifecycle["deprovisioning/grace"], ["website-status"]);
    assert_eq!(
        lifecycle["deprovisioning/due"],
        ["backup", "website-status"]
    );
    assert_eq!(lifecycle["purging/workloads"], ["purge-check"]);
    assert_eq!(lifecycle["purging/teardown"], ["teardown"]);
    assert_eq!(lifecycle["purging/namespace"], ["namespace-check"]);
    assert!(
        !trees.join("life-removed-0a0009").exists(),
        "a removed tenant has no tree"
    );

    if let Some(kv) = common::tool("kubernetes-validate") {
        let out = run(Command::new(kv)
            .args(["--strict", "--quiet", "--kubernetes-version", "1.32.0"])
            .args(&builtin_files));
        assert!(!out.contains("WARN") && !out.contains("ERROR"), "{out}");
    }
    if let Some(crds) = common::crd_dir() {
        let script = common::repo_root().join("tests/tools/validate_crs.py");
        let report = run(Command::new("python3")
            .arg(script)
            .arg("--crd-dir")
            .arg(&crds)
            .args(&custom_files));
        assert!(
            report.contains(&format!("{} validated, 0 errors", custom_files.len())),
            "{report}"
        );
    }
}
