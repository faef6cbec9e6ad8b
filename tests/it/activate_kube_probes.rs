//! `provisio activate`'s Deployment and Grafana probes, which read the Kubernetes API: a
//! stand-in for that API in this test (`PROVISIO_KUBE_API`, a bearer token from
//! `PROVISIO_KUBE_TOKEN_FILE`) answers the tenant's Deployments and the Grafana provider's
//! objects as a cluster would, with a real serve. A Deployment is healthy as `kubectl rollout
//! status` judges it (its generation observed, every replica updated and available, no old
//! replica left: the Deployment status fields of the Kubernetes API reference); a Grafana
//! object of the Crossplane provider when its `Ready` and `Synced` conditions are `True`.
//! Each way of not being there keeps the activation probing until its deadline, exit 3
//! naming the probe and why; all healthy, every probe passes.

use crate::serve_support;
use crate::support_setup;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use provisio::services::serve::LIFECYCLE_PREFIX;
use provisio::setup::secrets::FileStore;
use provisio_core::plan::lifecycle::ActivationSpec;
use serde_json::{Value, json};
use support_setup::health_endpoint;

const MASTER: &str = "test-report-master";
const CAFE: &str = "cafe-creme-93b31b";
const TOKEN: &str = "kube-token-for-the-activate-job";

/// What the stand-in answers: a JSON object per API path (404 for any other), and the
/// Authorization header of every request it saw.
#[derive(Default)]
struct Api {
    objects: BTreeMap<String, Value>,
    auth: Vec<String>,
}

fn api_server(api: Arc<Mutex<Api>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let api = api.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                    return;
                }
                let mut auth = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("authorization:") {
                        auth = line[line.len() - v.len()..].trim().to_owned();
                    }
                }
                let path = request_line.split(' ').nth(1).unwrap_or("").to_owned();
                let (status, body) = {
                    let mut api = api.lock().unwrap();
                    api.auth.push(auth);
                    match api.objects.get(&path) {
                        Some(v) => ("200 OK", v.to_string()),
                        None => (
                            "404 Not Found",
                            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}).to_string(),
                        ),
                    }
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    url
}

/// What one case changes in the healthy answers.
type Change<'a> = dyn Fn(&mut BTreeMap<String, Value>) + 'a;

/// A Deployment as the API answers it: `spec.replicas`, then the status's fields.
fn deployment(
    generation: i64,
    wanted: i64,
    observed: i64,
    replicas: i64,
    updated: i64,
    available: i64,
) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"generation": generation},
        "spec": {"replicas": wanted},
        "status": {
            "observedGeneration": observed,
            "replicas": replicas,
            "updatedReplicas": updated,
            "readyReplicas": available,
            "availableReplicas": available,
        }
    })
}

/// A managed resource of the Crossplane provider with its two conditions.
fn managed(ready: &str, synced: &str) -> Value {
    json!({
        "status": {"conditions": [
            {"type": "Ready", "status": ready, "reason": "Available"},
            {"type": "Synced", "status": synced, "reason": "ReconcileSuccess"},
        ]}
    })
}

fn activate(spec: &Path, store: &Path, api: &str, token_file: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_provisio"))
        .args(["activate", "--spec"])
        .arg(spec)
        .arg("--secret-store")
        .arg(format!("file:{}", store.display()))
        .arg("--ca-file")
        .arg(spec.with_file_name("tls").join("ca.pem"))
        .arg("--termination-log")
        .arg(spec.with_file_name("termination-log"))
        .args(["--attempts", "2", "--backoff-ms", "200"])
        .env("PROVISIO_JOB_UID", "uid-kube")
        .env("PROVISIO_LOG", "info")
        .env("PROVISIO_KUBE_API", api)
        .env("PROVISIO_KUBE_TOKEN_FILE", token_file)
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), log)
}

#[test]
fn deployment_and_grafana_probes_wait_for_a_finished_rollout_and_ready_synced_objects() {
    if !support_setup::require("python3") {
        return;
    }
    let f = serve_support::Fixture::new();
    let server = f.start_for_jobs(MASTER);
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let store = FileStore::new(&store_dir);
    let api = Arc::new(Mutex::new(Api::default()));
    let api_url = api_server(api.clone());
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();

    let (reg, _) = provisio::ops::load::load(&f.registry).unwrap();
    let plan = provisio_core::plan::plan_tenant(&reg, &reg.tenants[CAFE], serve_support::now());
    let mut act = ActivationSpec::from_plan(&plan);
    act.deadline_seconds = 3;
    act.report.url = format!("http://{}{LIFECYCLE_PREFIX}{CAFE}/reports", server.addr());
    act.website = None;
    act.probes.mysql = None;
    act.probes.s3 = None;
    act.probes.rabbitmq = None;
    let (health_url, _health) = health_endpoint(dir.path(), 0);
    act.probes.health.url = health_url;
    let names = act.probes.deployments.names.clone();
    assert!(!names.is_empty(), "the example tenant has Deployments");
    assert!(
        !act.grafana.objects.is_empty(),
        "the example tenant has Grafana objects"
    );
    let ns = act.probes.deployments.namespace.clone();
    let deployment_path = |name: &str| format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}");
    let grafana_path = |kind: &str, name: &str| {
        format!(
            "/apis/{}/namespaces/{}/{}s/{name}",
            act.grafana.api_version,
            act.grafana.namespace,
            kind.to_ascii_lowercase()
        )
    };
    let spec_file = dir.path().join("activation.json");
    std::fs::write(&spec_file, serde_json::to_string_pretty(&act).unwrap()).unwrap();
    serve_support::store_report_key(&store, &act.report.key_secret, MASTER, CAFE);

    // Everything healthy but what each case changes.
    let healthy = || {
        let mut objects = BTreeMap::new();
        for n in &names {
            objects.insert(deployment_path(n), deployment(3, 2, 3, 2, 2, 2));
        }
        for o in &act.grafana.objects {
            objects.insert(grafana_path(&o.kind, &o.name), managed("True", "True"));
        }
        objects
    };
    let first = names[0].clone();
    let folder = act
        .grafana
        .objects
        .iter()
        .find(|o| o.kind == "Folder")
        .expect("a Folder")
        .clone();
    let cases: Vec<(&str, Box<Change<'_>>, String)> = vec![
        (
            "the controller has not seen the new spec yet",
            Box::new(|o| {
                o.insert(deployment_path(&first), deployment(4, 2, 3, 2, 2, 2));
            }),
            format!("deployment {first}: generation 4 not yet observed (3)"),
        ),
        (
            "an old replica still runs beside the updated ones",
            Box::new(|o| {
                o.insert(deployment_path(&first), deployment(3, 2, 3, 3, 2, 3));
            }),
            format!("deployment {first}: 3 available, 2 updated of 2 (3 in all)"),
        ),
        (
            "an updated replica is not available yet",
            Box::new(|o| {
                o.insert(deployment_path(&first), deployment(3, 2, 3, 2, 2, 1));
            }),
            format!("deployment {first}: 1 available, 2 updated of 2 (2 in all)"),
        ),
        (
            "the Deployment is not there",
            Box::new(|o| {
                o.remove(&deployment_path(&first));
            }),
            format!("deployment {first}: not found"),
        ),
        (
            "the Folder is synced but not ready",
            Box::new(|o| {
                o.insert(
                    grafana_path(&folder.kind, &folder.name),
                    managed("False", "True"),
                );
            }),
            format!("Grafana Folder {}: not Ready", folder.name),
        ),
        (
            "the Folder is ready but its last sync failed",
            Box::new(|o| {
                o.insert(
                    grafana_path(&folder.kind, &folder.name),
                    managed("True", "False"),
                );
            }),
            format!("Grafana Folder {}: not Synced", folder.name),
        ),
    ];
    for (what, change, expected) in &cases {
        let mut objects = healthy();
        change(&mut objects);
        api.lock().unwrap().objects = objects;
        let (code, log) = activate(&spec_file, &store_dir, &api_url, &token_file);
        assert_eq!(code, 3, "{what}: {log}");
        assert!(
            log.contains(expected.as_str()),
            "{what}: {expected:?} in\n{log}"
        );
        assert!(!log.contains("activate: active"), "{what}: {log}");
    }

    // All healthy: every probe passes (what follows, the email, is tests/it/activate.rs's).
    api.lock().unwrap().objects = healthy();
    let (_, log) = activate(&spec_file, &store_dir, &api_url, &token_file);
    for n in &names {
        assert!(
            log.lines()
                .any(|l| l.contains("passed") && l.contains(&format!("deployment {n}"))),
            "deployment {n} passes:\n{log}"
        );
    }
    for o in &act.grafana.objects {
        assert!(
            log.lines()
                .any(|l| l.contains("passed")
                    && l.contains(&format!("Grafana {} {}", o.kind, o.name))),
            "Grafana {} {} passes:\n{log}",
            o.kind,
            o.name
        );
    }
    assert!(!log.contains("not yet"), "{log}");
    // Every request to the API carried the Job's token.
    let auth = api.lock().unwrap().auth.clone();
    assert!(auth.len() > names.len());
    assert!(
        auth.iter()
            .all(|a| a == &format!("Bearer {TOKEN}") || a.is_empty()),
        "{auth:?}"
    );
    assert!(auth.iter().any(|a| a == &format!("Bearer {TOKEN}")));
}
