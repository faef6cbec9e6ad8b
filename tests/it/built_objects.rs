//! What the controllers receive: the example's trees built with `kubectl kustomize` (as
//! Argo CD's repo-server builds them), then inspected for the behaviour a cluster would show
//! and no schema can see. Needs `kubectl` (skipped without it, a failure with
//! `PROVISIO_REQUIRE_TOOLS=1`).
//!
//! - The network policies, evaluated the way a NetworkPolicy implementation does, admit
//!   cert-manager's HTTP-01 solver traffic from the ingress controller's pods, and nothing
//!   more than needed.
//! - Certificates and Ingresses name `www.` only where its record can exist.
//! - No object is an Argo CD delete hook.
//! - The AppProject lets Argo CD show what runs under a tenant's objects.
//! - Each setup Job mounts its own service's spec, readable, and leaves nothing behind.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use common::Workspace;
use serde_json::Value;

/// The example, generated and built: tree name (`<tenant-id>` or `argocd`) → objects.
fn built() -> Option<&'static BTreeMap<String, Vec<Value>>> {
    static BUILT: OnceLock<Option<BTreeMap<String, Vec<Value>>>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let kubectl = common::tool("kubectl")?;
            let ws = workspace();
            let mut trees: Vec<_> = std::fs::read_dir(ws.out().join("tenants-out"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            trees.push(ws.out().join("argocd"));
            Some(
                trees
                    .iter()
                    .map(|dir| {
                        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
                        (name, kustomize(&kubectl, dir))
                    })
                    .collect(),
            )
        })
        .as_ref()
}

/// The generated example (kept for the whole test run).
fn workspace() -> &'static Workspace {
    static WS: OnceLock<Workspace> = OnceLock::new();
    WS.get_or_init(|| {
        let ws = Workspace::new();
        ws.generate();
        ws
    })
}

fn kustomize(kubectl: &str, dir: &Path) -> Vec<Value> {
    let out = Command::new(kubectl)
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_saphyr::from_multiple(std::str::from_utf8(&out.stdout).unwrap()).unwrap()
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

const TENANTS: [&str; 3] = [
    "abc-corporation-7f3a9c",
    "cafe-creme-93b31b",
    "nordwind-logistik-7ace77",
];

// --- network policies ------------------------------------------------------------------------

/// A pod as a NetworkPolicy sees it: its namespace's labels and its own.
struct Pod {
    namespace: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
}

impl Pod {
    fn new(namespace: &str, pod: &[(&str, &str)]) -> Pod {
        Pod {
            namespace: labels(&[("kubernetes.io/metadata.name", namespace)]),
            labels: labels(pod),
        }
    }
}

/// `matchLabels` only (provisio writes no `matchExpressions`); an empty selector matches all.
fn selects(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    assert!(
        selector.get("matchExpressions").is_none(),
        "not evaluated here: {selector}"
    );
    selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str())
}

/// Whether the policies of `to`'s namespace admit a TCP connection from `from` to `to` on
/// `port`, per the NetworkPolicy API: isolated for ingress when any policy with type
/// `Ingress` selects the pod; then allowed when a rule of one of those policies admits the
/// peer (pod selector alone: same namespace; namespace selector: those namespaces; both:
/// both) and the port.
fn admits(policies: &[&Value], from: &Pod, to: &Pod, port: i64) -> bool {
    let selecting: Vec<&Value> = policies
        .iter()
        .map(|p| &p["spec"])
        .filter(|s| {
            s["policyTypes"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t == "Ingress"))
                && selects(&s["podSelector"], &to.labels)
        })
        .collect();
    if selecting.is_empty() {
        return true;
    }
    selecting.iter().any(|s| {
        s["ingress"].as_array().into_iter().flatten().any(|rule| {
            let peer_ok = match rule["from"].as_array() {
                None => true,
                Some(peers) => peers.iter().any(|p| {
                    assert!(p.get("ipBlock").is_none(), "not evaluated here: {p}");
                    let ns_ok = match p.get("namespaceSelector") {
                        Some(sel) => selects(sel, &from.namespace),
                        None => from.namespace == to.namespace,
                    };
                    let pod_ok = p
                        .get("podSelector")
                        .is_none_or(|sel| selects(sel, &from.labels));
                    ns_ok && pod_ok
                }),
            };
            let port_ok = match rule["ports"].as_array() {
                None => true,
                Some(ports) => ports
                    .iter()
                    .any(|p| p["protocol"] == "TCP" && p["port"].as_i64() == Some(port)),
            };
            peer_ok && port_ok
        })
    })
}

#[test]
fn the_ingress_controller_reaches_the_http01_solver_and_the_gateway_only() {
    let Some(built) = built() else { return };
    // cert-manager v1.21.1 `pkg/issuer/acme/http/pod.go` (`buildDefaultPod`): the solver pod
    // runs in the Certificate's namespace with these labels, listening on 8089.
    let solver_labels = [
        ("acme.cert-manager.io/http01-solver", "true"),
        ("acme.cert-manager.io/http-domain", "1932458317"),
        ("acme.cert-manager.io/http-token", "1009463420"),
    ];
    // The ingress-nginx chart's controller pods, and another pod of its namespace (the
    // admission webhook's patch Job).
    let controller = Pod::new(
        "ingress-nginx",
        &[
            ("app.kubernetes.io/name", "ingress-nginx"),
            ("app.kubernetes.io/instance", "ingress-nginx"),
            ("app.kubernetes.io/component", "controller"),
        ],
    );
    let webhook_job = Pod::new(
        "ingress-nginx",
        &[
            ("app.kubernetes.io/name", "ingress-nginx"),
            ("app.kubernetes.io/component", "admission-webhook"),
        ],
    );
    let stranger = Pod::new("default", &[("app.kubernetes.io/component", "controller")]);
    for tenant in TENANTS {
        let objects = &built[tenant];
        let policies = of_kind(objects, "NetworkPolicy");
        let ns = format!("e-commerce-{tenant}");
        let solver = Pod::new(&ns, &solver_labels);
        let gateway = Pod::new(&ns, &[("app", "api-gateway"), ("tenant", tenant)]);
        let orders = Pod::new(&ns, &[("app", "orders"), ("tenant", tenant)]);
        assert!(
            admits(&policies, &controller, &solver, 8089),
            "{tenant}: the ACME HTTP-01 solver is unreachable: the Certificate never becomes Ready"
        );
        assert!(admits(&policies, &controller, &gateway, 8100), "{tenant}");
        for (from, to, port, what) in [
            (&controller, &solver, 80, "the solver on another port"),
            (
                &webhook_job,
                &solver,
                8089,
                "another pod of the controller's namespace",
            ),
            (&stranger, &solver, 8089, "a pod of another namespace"),
            (&controller, &orders, 8000, "a product behind the gateway"),
            (
                &webhook_job,
                &gateway,
                8100,
                "the gateway from a non-controller pod",
            ),
        ] {
            assert!(
                !admits(&policies, from, to, port),
                "{tenant}: {what} is reachable"
            );
        }
        // Inside the namespace everything talks (the products call each other).
        assert!(admits(&policies, &gateway, &orders, 8000), "{tenant}");
    }
}

// --- host names ------------------------------------------------------------------------------

/// One ACME order covers every name of a Certificate, so a `www.` name without a DNS record
/// fails the tenant's whole certificate: the alias exists only under the platform's domain
/// and for apex domains, and the Ingress serves exactly the Certificate's names.
#[test]
fn www_is_served_only_where_its_record_can_exist() {
    let Some(built) = built() else { return };
    for (tenant, hosts) in [
        (
            "abc-corporation-7f3a9c",
            &[
                "abc-corporation.collectverything.com",
                "www.abc-corporation.collectverything.com",
            ][..],
        ),
        (
            "cafe-creme-93b31b",
            &[
                "cafe-creme-93b31b.collectverything.com",
                "www.cafe-creme-93b31b.collectverything.com",
            ][..],
        ),
        // A customer's own subdomain: `www.shop.nordwind-logistik.de` has no record.
        (
            "nordwind-logistik-7ace77",
            &["shop.nordwind-logistik.de"][..],
        ),
    ] {
        let objects = &built[tenant];
        let [cert] = of_kind(objects, "Certificate")[..] else {
            panic!("{tenant}: one Certificate")
        };
        let names: Vec<&str> = cert["spec"]["dnsNames"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(names, hosts, "{tenant}: Certificate dnsNames");
        let [ingress] = of_kind(objects, "Ingress")[..] else {
            panic!("{tenant}: one Ingress")
        };
        let spec = &ingress["spec"];
        let rules: Vec<&str> = spec["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["host"].as_str().unwrap())
            .collect();
        assert_eq!(rules, hosts, "{tenant}: Ingress rules");
        let [tls] = spec["tls"].as_array().unwrap().as_slice() else {
            panic!("{tenant}: one TLS entry")
        };
        let tls_hosts: Vec<&str> = tls["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(tls_hosts, hosts, "{tenant}: Ingress TLS hosts");
        assert_eq!(tls["secretName"], cert["spec"]["secretName"], "{tenant}");
    }
}

// --- offboarding -----------------------------------------------------------------------------

/// No object is an Argo CD delete hook: Argo CD renders PreDelete/PostDelete hooks from git,
/// where a departing tenant's tree is already gone, so its Application would hang in
/// Deleting (argo-cd #18070); a failing one is recreated on every reconcile; v3.5 may delete
/// them before they run (#29100); a post-delete finalizer also blocks deletion when the
/// destination is invalid (#19571). Teardown is run as ordinary steps instead
/// (docs/registry.md, "Offboarding").
#[test]
fn no_object_is_a_delete_hook_and_no_application_cascades() {
    let Some(built) = built() else { return };
    for (tree, objects) in built {
        for o in objects {
            let hooks = o["metadata"]["annotations"]["argocd.argoproj.io/hook"]
                .as_str()
                .unwrap_or_default();
            assert!(
                !hooks.contains("Delete"),
                "{tree}: {} {} is a `{hooks}` hook",
                o["kind"],
                o["metadata"]["name"]
            );
        }
    }
    // A tenant that leaves the registry keeps its resources: the ApplicationSets preserve
    // them (no resources finalizer, argo-cd `RenderTemplateParams`), and the namespace is
    // never deleted by Argo CD.
    for set in of_kind(&built["argocd"], "ApplicationSet") {
        assert_eq!(
            set["spec"]["syncPolicy"]["preserveResourcesOnDeletion"],
            true
        );
        assert!(
            set["spec"]["template"]["metadata"]
                .get("finalizers")
                .is_none()
        );
    }
    for tenant in TENANTS {
        let [ns] = of_kind(&built[tenant], "Namespace")[..] else {
            panic!("{tenant}: one Namespace")
        };
        assert_eq!(
            ns["metadata"]["annotations"]["argocd.argoproj.io/sync-options"],
            "Prune=false,Delete=false"
        );
    }
}

// --- what Argo CD shows ----------------------------------------------------------------------

/// (group, kind) of an object's `apiVersion`/`kind`.
fn group_kind(o: &Value) -> (String, String) {
    let api = o["apiVersion"].as_str().unwrap();
    let group = api.rsplit_once('/').map_or("", |(g, _)| g);
    (group.to_owned(), o["kind"].as_str().unwrap().to_owned())
}

/// The children the cluster's controllers create under an object of a kind, as Argo CD's
/// cluster cache links them (owner references; Endpoints get their Service as an inferred
/// owner: gitops-engine `pkg/cache/references.go`).
fn children(group: &str, kind: &str) -> &'static [(&'static str, &'static str)] {
    match (group, kind) {
        ("apps", "Deployment") => &[("apps", "ReplicaSet")],
        ("apps", "ReplicaSet") | ("batch", "Job") => &[("", "Pod")],
        ("", "Service") => &[("", "Endpoints"), ("discovery.k8s.io", "EndpointSlice")],
        ("cert-manager.io", "Certificate") => &[("cert-manager.io", "CertificateRequest")],
        ("cert-manager.io", "CertificateRequest") => &[("acme.cert-manager.io", "Order")],
        ("acme.cert-manager.io", "Order") => &[("acme.cert-manager.io", "Challenge")],
        // cert-manager v1.21 `pkg/issuer/acme/http`: the solver's pod, service and ingress.
        ("acme.cert-manager.io", "Challenge") => &[
            ("", "Pod"),
            ("", "Service"),
            ("networking.k8s.io", "Ingress"),
        ],
        ("external-secrets.io", "ExternalSecret") => &[("", "Secret")],
        _ => &[],
    }
}

/// The resource tree Argo CD shows for the managed objects: argo-cd v3.5.1
/// `controller/appcontroller.go` `getResourceTree` walks the children and drops every child
/// the project does not permit, *with its subtree* (`IsGroupKindNamePermitted`: for
/// namespaced kinds, membership in `namespaceResourceWhitelist`).
fn shown_kinds(managed: &[&Value], whitelist: &[(String, String)]) -> Vec<(String, String)> {
    let mut shown = std::collections::BTreeSet::new();
    let mut todo: Vec<(String, String)> = managed.iter().map(|o| group_kind(o)).collect();
    while let Some((g, k)) = todo.pop() {
        for (cg, ck) in children(&g, &k) {
            let child = ((*cg).to_owned(), (*ck).to_owned());
            if whitelist.contains(&child) && shown.insert(child.clone()) {
                todo.push(child);
            }
        }
    }
    shown.into_iter().collect()
}

/// A platform engineer debugging a tenant in Argo CD sees the ReplicaSets and Pods under its
/// Deployments and Jobs, the endpoints of its Services and the whole ACME chain of its
/// Certificate (down to the solver pod); Secrets stay hidden (whitelisting them would let a
/// tree deploy one). The kinds shown this way are never in a tree.
#[test]
fn argo_cd_shows_what_runs_under_a_tenants_objects() {
    let Some(built) = built() else { return };
    // The tenants' project (argocd/ also holds the platform tools' own).
    let projects: Vec<&Value> = of_kind(&built["argocd"], "AppProject")
        .into_iter()
        .filter(|p| p["metadata"]["name"] == "tenants")
        .collect();
    let [project] = projects[..] else {
        panic!("one AppProject named tenants")
    };
    let whitelist: Vec<(String, String)> = project["spec"]["namespaceResourceWhitelist"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["group"].as_str().unwrap().to_owned(),
                g["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let pair = |g: &str, k: &str| (g.to_owned(), k.to_owned());
    for tenant in TENANTS {
        let managed: Vec<&Value> = built[tenant].iter().collect();
        let shown = shown_kinds(&managed, &whitelist);
        for needed in [
            pair("apps", "ReplicaSet"),
            pair("", "Pod"),
            pair("", "Endpoints"),
            pair("discovery.k8s.io", "EndpointSlice"),
            pair("cert-manager.io", "CertificateRequest"),
            pair("acme.cert-manager.io", "Order"),
            pair("acme.cert-manager.io", "Challenge"),
            pair("networking.k8s.io", "Ingress"),
        ] {
            assert!(
                shown.contains(&needed),
                "{tenant}: Argo CD hides {needed:?} (shown: {shown:?})"
            );
        }
        assert!(!shown.contains(&pair("", "Secret")), "{tenant}");
        // What the project permits beyond the rendered kinds is never rendered, and no
        // Secret at all.
        for o in &managed {
            let gk = group_kind(o);
            for shown_only in [
                pair("apps", "ReplicaSet"),
                pair("", "Pod"),
                pair("", "Endpoints"),
                pair("discovery.k8s.io", "EndpointSlice"),
                pair("cert-manager.io", "CertificateRequest"),
                pair("acme.cert-manager.io", "Order"),
                pair("acme.cert-manager.io", "Challenge"),
                pair("", "Secret"),
            ] {
                assert_ne!(gk, shown_only, "{tenant} renders a {shown_only:?}");
            }
        }
    }
    assert!(!whitelist.contains(&pair("", "Secret")));
}

// --- setup Jobs ------------------------------------------------------------------------------

/// Each setup Job mounts a ConfigMap (same name, same namespace, a PreSync hook one wave
/// earlier) holding its own service's spec, pretty-printed; both are hooks deleted once the
/// sync succeeds (and replaced by the next sync after a failure), so neither completed Jobs
/// nor their ConfigMaps pile up in the shared namespace.
#[test]
fn each_setup_job_mounts_its_own_readable_spec_and_is_cleaned_up() {
    let Some(built) = built() else { return };
    for tenant in TENANTS {
        let objects = &built[tenant];
        let shared: Vec<&Value> = objects
            .iter()
            .filter(|o| o["metadata"]["namespace"] == "e-commerce-shared")
            .collect();
        let all_jobs: Vec<&Value> = shared
            .iter()
            .copied()
            .filter(|o| o["kind"] == "Job")
            .collect();
        let maps: Vec<&Value> = shared
            .iter()
            .copied()
            .filter(|o| o["kind"] == "ConfigMap")
            .collect();
        // Every Job of the shared namespace (setup, and the lifecycle Jobs of the tenant's
        // phase) has its own spec.
        assert_eq!(maps.len(), all_jobs.len(), "{tenant}: one spec per Job");
        let service = |job: &Value| {
            let args = &job["spec"]["template"]["spec"]["containers"][0]["args"];
            args[0] == "setup"
                && ["mysql", "rabbitmq", "minio"].contains(&args[1].as_str().unwrap_or(""))
        };
        let jobs: Vec<&Value> = all_jobs.iter().copied().filter(|j| service(j)).collect();
        assert_eq!(jobs.len(), 3, "{tenant}: mysql, rabbitmq, minio");
        let mut sections = Vec::new();
        for job in jobs {
            let name = job["metadata"]["name"].as_str().unwrap();
            let ann = &job["metadata"]["annotations"];
            assert_eq!(ann["argocd.argoproj.io/hook"], "PreSync", "{name}");
            assert_eq!(
                ann["argocd.argoproj.io/hook-delete-policy"], "BeforeHookCreation,HookSucceeded",
                "{name}"
            );
            let pod = &job["spec"]["template"]["spec"];
            let volume = &pod["volumes"][0];
            let cm_name = volume["configMap"]["name"].as_str().unwrap();
            let container = &pod["containers"][0];
            let mount = &container["volumeMounts"][0];
            assert_eq!(mount["name"], volume["name"], "{name}");
            let args: Vec<&str> = container["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect();
            let spec_at = args.iter().position(|a| *a == "--spec").unwrap() + 1;
            let mount_path = mount["mountPath"].as_str().unwrap();
            let (dir, key) = args[spec_at].rsplit_once('/').unwrap();
            assert_eq!(dir, mount_path, "{name}: --spec points into the mount");
            assert!(
                container["env"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|e| e["name"] != "PROVISIO_SETUP_SPEC"),
                "{name}: no spec in a variable"
            );
            let cm = maps
                .iter()
                .find(|m| m["metadata"]["name"] == cm_name)
                .unwrap_or_else(|| panic!("{name}: ConfigMap {cm_name} is not in the tree"));
            let cm_ann = &cm["metadata"]["annotations"];
            assert_eq!(cm_ann["argocd.argoproj.io/hook"], "PreSync");
            assert_eq!(
                cm_ann["argocd.argoproj.io/hook-delete-policy"],
                "BeforeHookCreation,HookSucceeded"
            );
            let wave = |a: &Value| {
                a["argocd.argoproj.io/sync-wave"]
                    .as_str()
                    .unwrap()
                    .parse::<i32>()
                    .unwrap()
            };
            assert!(
                wave(cm_ann) < wave(ann),
                "{name}: the spec exists before the Job"
            );
            let text = cm["data"][key].as_str().unwrap();
            assert!(text.lines().count() > 5, "{name}: pretty-printed\n{text}");
            let spec: Value = serde_json::from_str(text).unwrap();
            let service = args[1];
            let own = match service {
                "minio" => "s3",
                other => other,
            };
            let present: Vec<&str> = ["mysql", "rabbitmq", "s3"]
                .into_iter()
                .filter(|k| spec.get(*k).is_some())
                .collect();
            assert_eq!(present, [own], "{name}: only its own service's spec");
            assert_eq!(spec["tenant"], tenant);
            sections.push(own);
        }
        sections.sort_unstable();
        assert_eq!(sections, ["mysql", "rabbitmq", "s3"], "{tenant}");
        // Readable in a diff: the file carries the spec as a block, no long line.
        let file = workspace()
            .out()
            .join(format!("tenants-out/{tenant}/setup-jobs.yaml"));
        let raw = std::fs::read_to_string(file).unwrap();
        let longest = raw.lines().map(str::len).max().unwrap();
        assert!(
            longest < 120,
            "{tenant}: a {longest}-character line in setup-jobs.yaml"
        );
    }
}
