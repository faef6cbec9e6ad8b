//! `provisio serve` as a command: the secret comes from the environment or a file (never a
//! flag), and a tenant provisioned over HTTP is rendered by `provisio generate`.

use crate::serve_support;

use std::process::Command;

use serve_support::*;

#[test]
fn refuses_to_start_without_a_secret() {
    let f = Fixture::new();
    let out = Command::new(env!("CARGO_BIN_EXE_provisio"))
        .args(["serve", "--registry"])
        .arg(&f.registry)
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("PROVISIO_WEBHOOK_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("PROVISIO_WEBHOOK_SECRET") && err.contains("--secret-file"),
        "{err}"
    );
    // There is no flag taking the secret's value.
    let help = Command::new(env!("CARGO_BIN_EXE_provisio"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--secret-file") && !help.contains("--secret "),
        "{help}"
    );
}

#[test]
fn provision_with_one_request_then_generate_renders_the_tenant() {
    let f = Fixture::new();
    let server = start_binary(&f, SecretFrom::File);
    let a = post(
        server.addr,
        "subscription-created",
        &created("sub_cli_1", "Nouvelle Épicerie"),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    let id = a.json()["tenant_id"].as_str().unwrap().to_owned();
    drop(server);

    let out_dir = f.dir.path().join("out");
    let generated = Command::new(env!("CARGO_BIN_EXE_provisio"))
        .args(["generate", "--registry"])
        .arg(&f.registry)
        .arg("--out")
        .arg(&out_dir)
        .args(["--now", "2025-06-15T12:00:00Z"])
        .output()
        .unwrap();
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let tree = out_dir.join("tenants-out").join(&id);
    assert!(
        tree.join("kustomization.yaml").is_file(),
        "no tree for {id}"
    );
    let ns = std::fs::read_to_string(tree.join("namespace.yaml")).unwrap();
    assert!(ns.contains(&format!("e-commerce-{id}")), "{ns}");
}
