//! The ApplicationSets rendered the way Argo CD's ApplicationSet controller renders them.
//!
//! No schema sees a template that produces the wrong value: `source.path: "{{ .path }}"` is a
//! valid string, and only the controller's parameters (argo-cd v3.5.1
//! `applicationset/generators/git.go`, `generateParamsFromGitFile`: the file's keys, then
//! `path` *replaced* by a map of path facts) turn it into `map[…]`. So these tests build
//! `tests/tools/appset_render` (a Go emulation of the controller's git files generator in
//! goTemplate mode, with Go's `text/template` and sprig; see its README) and run it with
//! `-check` over freshly generated output: every tenant tree is the `source.path` of exactly
//! one Application, whose destination namespace is the tree's and whose name is a valid
//! object name. On top of that, with the registry as the oracle: each tenant's Application
//! comes from the ApplicationSet of its region and recorded shard, no ApplicationSet holds
//! more than `maxTenantsPerShard`, and every file a generator reads becomes one of its
//! Applications (the pattern selects, no post-selector throws parameters away). A synthetic
//! registry built by the intake (many tenants, several regions and shards) is checked the
//! same way, then changed (tenants leave and arrive, the limit grows): nobody moves. The
//! platform tools' plain Applications go through the same harness (`-apps`), as far as it
//! applies: no templating, the same source-path and namespace checks.
//!
//! Needs Debian's `golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v2-dev`:
//! skipped without them, a failure with `PROVISIO_REQUIRE_TOOLS=1` (CI).

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::Workspace;
use serde_json::Value;

const SPRIG: &str = "/usr/share/gocode/src/github.com/Masterminds/sprig";

/// The harness binary, built once per test process into a temporary directory; `None` when
/// Go or sprig is missing and that is allowed.
fn harness() -> Option<&'static Path> {
    static BUILT: OnceLock<Option<(tempfile::TempDir, PathBuf)>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            common::tool("go")?;
            if !Path::new(SPRIG).is_dir() {
                assert!(
                    !common::tools_required(),
                    "sprig is required (PROVISIO_REQUIRE_TOOLS=1): apt-get install golang-github-masterminds-sprig-dev golang-gopkg-yaml.v2-dev"
                );
                eprintln!("SKIPPED: no sprig at {SPRIG} (apt-get install golang-github-masterminds-sprig-dev golang-gopkg-yaml.v2-dev)");
                return None;
            }
            let dir = tempfile::tempdir().unwrap();
            let bin = dir.path().join("appset_render");
            let tool = common::repo_root().join("tests/tools/appset_render");
            let out = Command::new("bash")
                .arg(tool.join("go.sh"))
                .args(["build", "-o"])
                .arg(&bin)
                .arg(".")
                .env("TMPDIR", dir.path())
                .output()
                .expect("run go.sh");
            assert!(
                out.status.success(),
                "building appset_render failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            Some((dir, bin))
        })
        .as_ref()
        .map(|(_, bin)| bin.as_path())
}

/// One generated Application: which ApplicationSet made it, from which file, and the
/// Application itself.
#[derive(Debug)]
struct Generated {
    application_set: String,
    file: String,
    name: String,
    path: String,
    namespace: String,
    server: String,
}

/// Runs the harness with `-check` over `out` (exit 0 required) and returns what the
/// controller would generate.
fn render(bin: &Path, out: &Path) -> Vec<Generated> {
    let run = Command::new(bin)
        .arg("-check")
        .arg(out)
        .output()
        .expect("run appset_render");
    assert!(
        run.status.success(),
        "appset_render -check failed (exit {:?}): the controller would not deploy this output\n{}",
        run.status.code(),
        String::from_utf8_lossy(&run.stderr)
    );
    let apps: Vec<Value> = serde_json::from_slice(&run.stdout).unwrap();
    apps.iter()
        .map(|a| {
            let app = &a["application"];
            let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            Generated {
                application_set: s(&a["applicationSet"]),
                file: s(&a["file"]),
                name: s(&app["metadata"]["name"]),
                path: s(&app["spec"]["source"]["path"]),
                namespace: s(&app["spec"]["destination"]["namespace"]),
                server: s(&app["spec"]["destination"]["server"]),
            }
        })
        .collect()
}

/// The registry's view: tenant id → (ApplicationSet, namespace, cluster), for every tenant
/// that has a tree (a removed tenant has none, so no Application).
fn expected(registry: &Path) -> (BTreeMap<String, (String, String, String)>, u32) {
    let (reg, _) = provisio::ops::load::load(registry).unwrap();
    let tenants = reg
        .tenants
        .values()
        .filter(|t| !provisio_core::lifecycle::phase(t, common::now()).is_removed())
        .map(|t| {
            let plan = provisio_core::plan::plan_tenant(&reg, t, common::now());
            (
                plan.id.to_owned(),
                (
                    plan.shard.clone(),
                    plan.namespace.clone(),
                    plan.cluster.to_owned(),
                ),
            )
        })
        .collect();
    (tenants, reg.platform.argocd.max_tenants_per_shard.value)
}

/// Each ApplicationSet's generators, by name.
fn generators(out: &Path) -> Vec<(String, Value)> {
    let mut sets = Vec::new();
    for e in std::fs::read_dir(out.join("argocd/applicationsets")).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        let doc: Value = serde_saphyr::from_str(&text).unwrap();
        sets.push((
            doc["metadata"]["name"].as_str().unwrap().to_owned(),
            doc["spec"]["generators"].clone(),
        ));
    }
    sets.sort_by(|a, b| a.0.cmp(&b.0));
    sets
}

/// Everything the issue asks of the generated Applications, with the registry as oracle.
/// Returns tenant id → ApplicationSet.
fn assert_deployable(registry: &Path, out: &Path) -> BTreeMap<String, String> {
    let bin = harness().expect("checked by the caller");
    let apps = render(bin, out);
    let (tenants, max) = expected(registry);
    assert_eq!(apps.len(), tenants.len(), "one Application per tenant");
    let mut placed = BTreeMap::new();
    let mut per_set: BTreeMap<&str, u32> = BTreeMap::new();
    for a in &apps {
        let id = a
            .path
            .strip_prefix("tenants-out/")
            .unwrap_or_else(|| panic!("{a:?}: source.path is not a tenant tree"));
        let (shard, namespace, server) = &tenants[id];
        assert_eq!(a.name, format!("tenant-{id}"), "{a:?}");
        assert_eq!(&a.namespace, namespace, "{a:?}");
        assert_eq!(&a.server, server, "{a:?}");
        assert_eq!(
            &a.application_set, shard,
            "{a:?}: not its shard's ApplicationSet"
        );
        assert!(
            a.file.starts_with(&format!("tenants-out/{id}/")) && a.file.matches('/').count() == 2,
            "{a:?}: the parameters come from a file at the top of the tenant's tree"
        );
        assert!(
            placed
                .insert(id.to_owned(), a.application_set.clone())
                .is_none(),
            "{id} has two Applications"
        );
        *per_set.entry(&a.application_set).or_default() += 1;
    }
    for (set, n) in per_set {
        assert!(
            n <= max,
            "{set} holds {n} Applications, more than maxTenantsPerShard ({max})"
        );
    }
    // Each generator reads only its own tenants' files: no post-selector drops parameters it
    // read (every file it reads made one of the Applications above, each from its own
    // ApplicationSet), and its pattern names its own file.
    for (set, gens) in generators(out) {
        let [g] = gens.as_array().unwrap().as_slice() else {
            panic!("{set}: one generator")
        };
        assert!(
            g.get("selector").is_none(),
            "{set}: a post-selector drops files it read"
        );
        assert_eq!(
            g["git"]["files"],
            serde_json::json!([{"path": format!("tenants-out/*/config.{set}.json")}]),
            "{set}"
        );
    }
    placed
}

#[test]
fn the_example_deploys_every_tenant_from_its_tree() {
    if harness().is_none() {
        return;
    }
    let ws = Workspace::new();
    ws.generate();
    let placed = assert_deployable(&ws.registry(), &ws.out());
    assert_eq!(
        placed.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        BTreeSet::from([
            "abc-corporation-7f3a9c",
            "cafe-creme-93b31b",
            "nordwind-logistik-7ace77"
        ])
    );
}

/// Every lifecycle phase (`tests/data/lifecycle/`): each tree, the purge steps' included, is
/// still deployed by exactly one Application of its shard's ApplicationSet (the last purge
/// step, which has no Namespace object, into the namespace being pruned), the removed tenant
/// by none; only the last purge step lifts Argo CD's allow-empty guard.
#[test]
fn every_lifecycle_phase_is_deployed_until_it_is_meant_to_go() {
    let Some(bin) = harness() else {
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
    let placed = assert_deployable(&ws.registry(), &ws.out());
    for id in [
        "life-provisioning-0a0001",
        "life-failed-0a0002",
        "life-active-0a0003",
        "life-grace-0a0004",
        "life-due-0a0005",
        "life-workloads-0a0006",
        "life-teardown-0a0007",
        "life-namespace-0a0008",
        "life-rolledback-0a000a",
    ] {
        assert!(placed.contains_key(id), "{id} has no Application");
    }
    assert!(!placed.contains_key("life-removed-0a0009"));
    let run = Command::new(bin).arg(ws.out()).output().unwrap();
    assert!(run.status.success());
    let apps: Vec<Value> = serde_json::from_slice(&run.stdout).unwrap();
    let empty_allowed: BTreeSet<&str> = apps
        .iter()
        .filter(|a| a["application"]["spec"]["syncPolicy"]["automated"]["allowEmpty"] == true)
        .map(|a| a["application"]["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        empty_allowed,
        BTreeSet::from(["tenant-life-namespace-0a0008"]),
        "allowEmpty only at the last purge step"
    );
}

/// A registry written by the intake: `n` subscriptions spread over `regions`, each tenant
/// file exactly as `provisio serve` would commit it.
fn onboard(registry: &Path, subscriptions: std::ops::Range<usize>, regions: &[&str]) {
    use provisio_core::intake::{self, EventKind, Outcome, State};
    let sources = provisio::io::registry_dir::read_dir(registry).unwrap();
    let mut state = State::new(sources, chrono::Duration::days(30)).unwrap();
    for i in subscriptions {
        let tier = ["standard", "premium", "business"][i % 3];
        let body = serde_json::json!({
            "event": "subscription.created", "timestamp": "2025-06-15T10:00:00Z",
            "data": {"subscription_id": format!("sub_syn_{i}"),
                     "customer": {"name": format!("Synthetic Shop {i}"), "email": "a@example.com",
                                  "billing_email": "b@example.com"},
                     "plan": {"tier": tier},
                     "metadata": {"region": regions[i % regions.len()]}}
        });
        let ev = intake::parse(EventKind::Created, body.to_string().as_bytes()).unwrap();
        let a = state.apply(&ev, common::now()).unwrap();
        assert_eq!(a.outcome, Outcome::Created);
        let change = a.change.unwrap();
        std::fs::write(registry.join(&change.path), change.text).unwrap();
    }
}

fn set_max_per_shard(registry: &Path, max: u32) {
    let path = registry.join("platform.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find("maxTenantsPerShard: ").unwrap();
    let end = start + text[start..].find('\n').unwrap();
    let edited = format!(
        "{}maxTenantsPerShard: {max}{}",
        &text[..start],
        &text[end..]
    );
    std::fs::write(path, edited).unwrap();
}

/// Many tenants, several regions, several ApplicationSets per region: every tenant is
/// deployed by exactly one, from its tree. Then a quarter of them leave, new ones arrive and
/// the limit grows: every tenant that stayed keeps its ApplicationSet (moving would delete and
/// recreate its Application), and the newcomers fill the shards with room.
#[test]
fn a_large_registry_deploys_everyone_and_nobody_moves() {
    if harness().is_none() {
        return;
    }
    let ws = Workspace::new();
    let registry = ws.registry();
    let regions = ["us-east", "eu-west", "eu-central", "apac"];
    set_max_per_shard(&registry, 6);
    onboard(&registry, 0..120, &regions);
    ws.generate();
    let first = assert_deployable(&registry, &ws.out());
    let sets: BTreeSet<&String> = first.values().collect();
    assert!(
        sets.len() >= 20,
        "several ApplicationSets per region: {sets:?}"
    );
    for region in regions {
        assert!(
            sets.iter()
                .filter(|s| s.starts_with(&format!("tenants-{region}-")))
                .count()
                >= 5,
            "{region}: {sets:?}"
        );
    }

    // A quarter leave, the limit grows, newcomers arrive.
    let leaving: Vec<String> = first
        .keys()
        .filter(|id| id.starts_with("synthetic-shop-"))
        .step_by(4)
        .cloned()
        .collect();
    for id in &leaving {
        std::fs::remove_file(registry.join(format!("tenants/{id}.yaml"))).unwrap();
    }
    set_max_per_shard(&registry, 8);
    onboard(&registry, 120..160, &regions);
    let opts = provisio::ops::generate::GenerateOptions {
        mass_delete: provisio::ops::generate::MassDeleteGuard {
            allow: true,
            ..Default::default()
        },
        ..provisio::ops::generate::GenerateOptions::new(common::now())
    };
    provisio::ops::generate::generate(&ws.paths(), &opts).unwrap();
    let second = assert_deployable(&registry, &ws.out());
    for (id, set) in &first {
        match second.get(id) {
            Some(now) => assert_eq!(now, set, "{id} moved to another ApplicationSet"),
            None => assert!(leaving.contains(id), "{id} disappeared"),
        }
    }
    let newcomers = second.keys().filter(|id| !first.contains_key(*id)).count();
    assert_eq!(newcomers, 40);
}

/// The platform tools are synced by plain Applications (no generator, so nothing to
/// template): the harness takes them as they are (`-apps`) and checks them with the tenants'
/// like the controller would see them: every platform tree is the source of exactly one
/// Application, whose path exists; `platform-tools` deploys into the tree's namespace; a
/// namespaces tree's Application has no destination namespace and every namespaced object of
/// the tree names its own. Beyond the harness: they belong to the platform project, carry no
/// deletion finalizer, and the project admits every object of their trees.
#[test]
fn the_platform_applications_deploy_the_platform_trees() {
    let Some(bin) = harness() else {
        return;
    };
    let ws = Workspace::new();
    ws.generate();
    let out = ws.out();
    let run = |out: &Path| {
        Command::new(bin)
            .args(["-check", "-trees"])
            .arg("tenants-out/*,platform-out/tools,platform-out/namespaces/*")
            .args(["-apps", "argocd/platform-*.yaml"])
            .arg(out)
            .output()
            .expect("run appset_render")
    };
    let o = run(&out);
    assert!(
        o.status.success(),
        "appset_render -check failed (exit {:?}):\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    let apps: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    let plain: BTreeMap<&str, &Value> = apps
        .iter()
        .filter(|a| a["applicationSet"].as_str().unwrap_or_default().is_empty())
        .map(|a| {
            let app = &a["application"];
            (app["metadata"]["name"].as_str().unwrap(), app)
        })
        .collect();
    assert_eq!(
        plain.keys().copied().collect::<Vec<_>>(),
        [
            "platform-namespaces-dev",
            "platform-namespaces-prod",
            "platform-namespaces-staging",
            "platform-tools"
        ]
    );
    assert_eq!(
        apps.len(),
        3 + 4,
        "three tenants and four platform Applications"
    );
    let project = |name: &str| -> Value {
        let text = std::fs::read_to_string(out.join("argocd/platform-project.yaml")).unwrap();
        let p: Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(p["metadata"]["name"], name);
        p
    };
    let p = project("platform");
    let allowed_kinds: BTreeSet<(String, String)> = p["spec"]["namespaceResourceWhitelist"]
        .as_array()
        .unwrap()
        .iter()
        .chain(p["spec"]["clusterResourceWhitelist"].as_array().unwrap())
        .map(|g| {
            (
                g["group"].as_str().unwrap().to_owned(),
                g["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let destinations: BTreeSet<(String, String)> = p["spec"]["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["server"].as_str().unwrap().to_owned(),
                d["namespace"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (name, app) in &plain {
        assert_eq!(app["spec"]["project"], "platform", "{name}");
        assert!(
            app["metadata"]
                .get("finalizers")
                .is_none_or(|f| f.as_array().unwrap().is_empty()),
            "{name}: deleting the Application would delete what it deployed"
        );
        assert_eq!(
            app["spec"]["syncPolicy"]["automated"]["prune"], true,
            "{name}"
        );
        // Every object the Application deploys is admitted by the project.
        let server = app["spec"]["destination"]["server"].as_str().unwrap();
        let tree = out.join(app["spec"]["source"]["path"].as_str().unwrap());
        for file in provisio::io::output::write::list_files(&tree).unwrap() {
            if file.ends_with("kustomization.yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            for doc in serde_saphyr::from_multiple::<Value>(&text).unwrap() {
                let api = doc["apiVersion"].as_str().unwrap();
                let group = api.rsplit_once('/').map_or("", |(g, _)| g).to_owned();
                let kind = doc["kind"].as_str().unwrap().to_owned();
                assert!(
                    allowed_kinds.contains(&(group.clone(), kind.clone())),
                    "{name}: the project does not permit {group}/{kind}"
                );
                let ns = if kind == "Namespace" {
                    doc["metadata"]["name"].as_str()
                } else {
                    doc["metadata"]["namespace"].as_str()
                }
                .unwrap()
                .to_owned();
                assert!(
                    destinations.contains(&(server.to_owned(), ns.clone())),
                    "{name}: the project does not admit {server} {ns}"
                );
            }
        }
    }
    // The harness is no rubber stamp: an object without a namespace in a namespaces tree.
    let quota = out.join("platform-out/namespaces/dev/orders/resource-quota.yaml");
    let text = std::fs::read_to_string(&quota).unwrap();
    std::fs::write(&quota, text.replace("  namespace: orders-dev\n", "")).unwrap();
    let o = run(&out);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(
            "Application platform-namespaces-dev (from argocd/platform-applications.yaml): no destination namespace, and ResourceQuota product-quota (orders/resource-quota.yaml) names none"
        ),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
