//! `provisio setup rabbitmq` / `teardown rabbitmq` against a real RabbitMQ broker (management
//! plugin) on 127.0.0.1: two tenants of the example registry, run twice (`unchanged`),
//! topology exactly as declared, a message routed by `order.created` lands in the orders
//! queue, tenant A's user is refused on tenant B's vhost over AMQP, convergence after a
//! registry change and after tampering, guarded teardown.

use crate::support_setup;

use std::collections::BTreeSet;
use std::path::Path;

use provisio::setup::secrets::{FileStore, SecretStore};
use provisio_core::plan::setup::QueueSpec;
use provisio_core::plan::setup::SetupSpec;
use provisio_core::registry::TenantStatus;
use serde_json::{Value, json};
use support_setup::{
    AmqpOpen, Method, RABBIT_ADMIN_PASSWORD, RABBIT_ADMIN_USER, RabbitMq, amqp_open, provisio,
};

const A: &str = "abc-corporation-7f3a9c";
const B: &str = "cafe-creme-93b31b";

fn spec_for(tenant: &str, port: u16) -> SetupSpec {
    let mut spec = support_setup::job_spec(tenant, "rabbitmq");
    let r = spec
        .rabbitmq
        .as_mut()
        .expect("the example tenants use RabbitMQ");
    r.host = "127.0.0.1".into();
    r.management_port = port;
    spec
}

fn run(verb: &str, spec: &Path, store: &Path, extra: &[&str]) -> (i32, String, String) {
    let store_arg = format!("file:{}", store.display());
    let mut args = vec![
        verb,
        "rabbitmq",
        "--spec",
        spec.to_str().unwrap(),
        "--secret-store",
        &store_arg,
    ];
    args.extend_from_slice(extra);
    provisio(
        &args,
        &[
            ("RABBITMQ_ADMIN_USER", RABBIT_ADMIN_USER),
            ("RABBITMQ_ADMIN_PASSWORD", RABBIT_ADMIN_PASSWORD),
        ],
    )
}

fn enc(s: &str) -> String {
    provisio::io::http::seg(s)
}

/// The broker's state of a tenant equals its spec: vhost, user without tags, permissions on
/// its vhost only, durable topic exchange, queues with their arguments, bindings.
fn assert_topology(mq: &RabbitMq, spec: &SetupSpec) {
    let r = spec.rabbitmq.as_ref().unwrap();
    let v = enc(&r.vhost);
    assert_eq!(mq.api(Method::Get, &format!("/vhosts/{v}"), None).0, 200);
    let (status, user) = mq.api(Method::Get, &format!("/users/{}", enc(&r.user)), None);
    assert_eq!(status, 200);
    assert_eq!(user["tags"], json!([]), "no management access");
    let (_, perms) = mq.api(
        Method::Get,
        &format!("/users/{}/permissions", enc(&r.user)),
        None,
    );
    assert_eq!(
        perms,
        json!([{"user": r.user, "vhost": r.vhost, "configure": ".*", "write": ".*", "read": ".*"}]),
        "permissions on its own vhost only"
    );
    let (_, ex) = mq.api(
        Method::Get,
        &format!("/exchanges/{v}/{}", enc(&r.exchange)),
        None,
    );
    assert_eq!(
        (ex["type"].as_str(), ex["durable"].as_bool()),
        (Some("topic"), Some(true))
    );
    let (_, queues) = mq.api(Method::Get, &format!("/queues/{v}"), None);
    let mut actual: Vec<(String, Value)> = queues
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            (
                q["name"].as_str().unwrap().to_owned(),
                q["arguments"].clone(),
            )
        })
        .collect();
    actual.sort_by(|a, b| a.0.cmp(&b.0));
    let mut wanted: Vec<(String, Value)> = r
        .queues
        .iter()
        .map(|q| {
            let mut args = serde_json::Map::new();
            if let Some(t) = q.message_ttl_ms {
                args.insert("x-message-ttl".into(), json!(t));
            }
            if let Some(m) = q.max_length {
                args.insert("x-max-length".into(), json!(m));
            }
            (q.name.clone(), Value::Object(args))
        })
        .collect();
    wanted.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(actual, wanted);
    let (_, bindings) = mq.api(
        Method::Get,
        &format!("/exchanges/{v}/{}/bindings/source", enc(&r.exchange)),
        None,
    );
    let actual: BTreeSet<(String, String)> = bindings
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["destination"].as_str().unwrap().to_owned(),
                b["routing_key"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let wanted: BTreeSet<(String, String)> = r
        .queues
        .iter()
        .flat_map(|q| q.routing_keys.iter().map(|k| (q.name.clone(), k.clone())))
        .collect();
    assert_eq!(actual, wanted);
}

fn publish(mq: &RabbitMq, spec: &SetupSpec, key: &str, payload: &str) -> Value {
    let r = spec.rabbitmq.as_ref().unwrap();
    mq.api(
        Method::Post,
        &format!("/exchanges/{}/{}/publish", enc(&r.vhost), enc(&r.exchange)),
        Some(json!({"properties": {}, "routing_key": key, "payload": payload, "payload_encoding": "string"})),
    )
    .1
}

fn get_one(mq: &RabbitMq, vhost: &str, queue: &str) -> Value {
    mq.api(
        Method::Post,
        &format!("/queues/{}/{}/get", enc(vhost), enc(queue)),
        Some(json!({"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"})),
    )
    .1
}

#[test]
fn setup_and_teardown_rabbitmq_on_a_real_broker() {
    let Some(mq) = RabbitMq::start() else { return };
    let work = tempfile::tempdir().unwrap();
    let store_dir = work.path().join("store");
    let store = FileStore::new(&store_dir);
    let spec_a = spec_for(A, mq.management_port);
    let spec_b = spec_for(B, mq.management_port);
    let file_a = support_setup::write_spec(work.path(), "a", &spec_a);
    let file_b = support_setup::write_spec(work.path(), "b", &spec_b);

    // A wrong admin password is a clear refusal.
    let store_arg = format!("file:{}", store_dir.display());
    let (code, _, err) = provisio(
        &[
            "setup",
            "rabbitmq",
            "--spec",
            file_a.to_str().unwrap(),
            "--secret-store",
            &store_arg,
        ],
        &[
            ("RABBITMQ_ADMIN_USER", RABBIT_ADMIN_USER),
            ("RABBITMQ_ADMIN_PASSWORD", "wrong"),
        ],
    );
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("rabbitmq refused to read vhost abc-corporation-7f3a9c: HTTP 401"),
        "{err}"
    );

    for file in [&file_a, &file_b] {
        let (code, out, err) = run("setup", file, &store_dir, &[]);
        assert_eq!(code, 0, "{out}\n{err}");
        assert!(out.contains(": created"), "{out}");
    }
    for file in [&file_a, &file_b] {
        let (code, out, err) = run("setup", file, &store_dir, &[]);
        assert_eq!(code, 0, "{err}");
        assert!(out.ends_with("rabbitmq: unchanged\n"), "{out}");
    }
    assert_topology(&mq, &spec_a);
    assert_topology(&mq, &spec_b);

    // order.created is routed to the orders queue, and only there.
    let ra = spec_a.rabbitmq.as_ref().unwrap();
    let orders = &ra
        .queues
        .iter()
        .find(|q| q.product == "orders")
        .unwrap()
        .name;
    assert_eq!(
        publish(&mq, &spec_a, "order.created", "o-1"),
        json!({"routed": true})
    );
    let got = get_one(&mq, &ra.vhost, orders);
    assert_eq!(got[0]["payload"], json!("o-1"), "{got}");
    assert_eq!(got[0]["routing_key"], json!("order.created"));
    for q in ra.queues.iter().filter(|q| &q.name != orders) {
        assert_eq!(
            get_one(&mq, &ra.vhost, &q.name),
            json!([]),
            "{} got a copy",
            q.name
        );
    }

    // Over AMQP: A opens its vhost, is refused on B's; B's password is not A's.
    let pw_a = store.get(&ra.secret_key).unwrap().unwrap()["password"].clone();
    let rb = spec_b.rabbitmq.as_ref().unwrap();
    let pw_b = store.get(&rb.secret_key).unwrap().unwrap()["password"].clone();
    assert_eq!(
        amqp_open(mq.amqp_port, &ra.user, &pw_a, &ra.vhost),
        AmqpOpen::Opened
    );
    match amqp_open(mq.amqp_port, &ra.user, &pw_a, &rb.vhost) {
        AmqpOpen::Closed(530, text) => assert!(text.contains("access to vhost"), "{text}"),
        other => panic!("tenant A on tenant B's vhost: {other:?}"),
    }
    assert_eq!(
        amqp_open(mq.amqp_port, &ra.user, &pw_b, &ra.vhost),
        AmqpOpen::LoginRefused
    );
    assert_eq!(
        amqp_open(mq.amqp_port, &rb.user, &pw_b, &rb.vhost),
        AmqpOpen::Opened
    );

    // A registry change converges: a new queue, a removed binding, a changed TTL.
    let mut changed = spec_a.clone();
    {
        let r = changed.rabbitmq.as_mut().unwrap();
        r.queues.push(QueueSpec {
            product: "reviews".into(),
            name: format!("{A}.reviews"),
            routing_keys: vec!["review.*".into()],
            message_ttl_ms: Some(60_000),
            max_length: None,
        });
        let baskets = r
            .queues
            .iter_mut()
            .find(|q| q.product == "baskets")
            .unwrap();
        assert!(baskets.routing_keys.len() >= 2);
        baskets.routing_keys.retain(|k| k != "product.deleted");
        let auth = r.queues.iter_mut().find(|q| q.product == "auth").unwrap();
        auth.message_ttl_ms = Some(3_600_000);
    }
    // Tampering: A's user also gets access to B's vhost.
    let (s, _) = mq.api(
        Method::Put,
        &format!("/permissions/{}/{}", enc(&rb.vhost), enc(&ra.user)),
        Some(json!({"configure": ".*", "write": ".*", "read": ".*"})),
    );
    assert_eq!(s, 201);
    let file_changed = support_setup::write_spec(work.path(), "a-changed", &changed);
    let (code, out, err) = run("setup", &file_changed, &store_dir, &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains(&format!("queue {A}.reviews: created")),
        "{out}"
    );
    assert!(
        out.contains(&format!("binding product.deleted -> {A}.baskets: deleted")),
        "{out}"
    );
    assert!(out.contains(&format!("queue {A}.auth: updated")), "{out}");
    assert!(
        out.contains(&format!(
            "permissions of {} on {}: deleted",
            ra.user, rb.vhost
        )),
        "{out}"
    );
    assert_topology(&mq, &changed);
    let (_, out, _) = run("setup", &file_changed, &store_dir, &[]);
    assert!(out.ends_with("rabbitmq: unchanged\n"), "{out}");
    match amqp_open(mq.amqp_port, &ra.user, &pw_a, &rb.vhost) {
        AmqpOpen::Closed(530, _) => {}
        other => panic!("the tampered permission must be gone: {other:?}"),
    }

    // A queue holding messages is never recreated: a clear refusal instead.
    assert_eq!(
        publish(&mq, &changed, "user.created", "u-1"),
        json!({"routed": true})
    );
    let mut ttl_again = changed.clone();
    ttl_again
        .rabbitmq
        .as_mut()
        .unwrap()
        .queues
        .iter_mut()
        .find(|q| q.product == "auth")
        .unwrap()
        .message_ttl_ms = Some(1_000);
    let file_ttl = support_setup::write_spec(work.path(), "a-ttl", &ttl_again);
    let (code, _, err) = run("setup", &file_ttl, &store_dir, &[]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("it has messages"), "{err}");

    // Drained, then back to the registry's spec: the TTL is restored, the extra queue goes,
    // the binding comes back.
    let auth = format!("{A}.auth");
    assert_eq!(get_one(&mq, &ra.vhost, &auth)[0]["payload"], json!("u-1"));
    let (code, out, err) = run("setup", &file_a, &store_dir, &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains(&format!("queue {A}.reviews: deleted")),
        "{out}"
    );
    assert!(
        out.contains(&format!("binding product.deleted -> {A}.baskets: created")),
        "{out}"
    );
    assert!(out.contains(&format!("queue {A}.auth: updated")), "{out}");
    assert_topology(&mq, &spec_a);

    // Teardown: refused for an active tenant; complete once due; B untouched.
    assert_eq!(spec_a.lifecycle.status, TenantStatus::Active);
    let (code, _, err) = run("teardown", &file_a, &store_dir, &[]);
    assert_eq!(code, 4, "{err}");
    assert_eq!(
        mq.api(Method::Get, &format!("/vhosts/{}", enc(&ra.vhost)), None)
            .0,
        200
    );
    let mut due = spec_a.clone();
    due.lifecycle.status = TenantStatus::Deprovisioning;
    due.lifecycle.deletion_date = Some("2025-03-01T00:00:00Z".parse().unwrap());
    let file_due = support_setup::write_spec(work.path(), "a-due", &due);
    let (code, out, err) = run(
        "teardown",
        &file_due,
        &store_dir,
        &["--now", "2025-03-02T00:00:00Z"],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains(&format!("vhost {}: deleted", ra.vhost)),
        "{out}"
    );
    let (_, out, _) = run(
        "teardown",
        &file_due,
        &store_dir,
        &["--now", "2025-03-02T00:00:00Z"],
    );
    assert!(out.ends_with("rabbitmq: unchanged\n"), "{out}");
    assert_eq!(
        mq.api(Method::Get, &format!("/vhosts/{}", enc(&ra.vhost)), None)
            .0,
        404
    );
    assert_eq!(
        mq.api(Method::Get, &format!("/users/{}", enc(&ra.user)), None)
            .0,
        404
    );
    assert!(store.get(&ra.secret_key).unwrap().is_none());
    assert_eq!(
        amqp_open(mq.amqp_port, &ra.user, &pw_a, &ra.vhost),
        AmqpOpen::LoginRefused
    );
    assert_topology(&mq, &spec_b);
    assert_eq!(
        amqp_open(mq.amqp_port, &rb.user, &pw_b, &rb.vhost),
        AmqpOpen::Opened
    );
}

#[test]
fn unreachable_management_api_is_a_clear_error() {
    let work = tempfile::tempdir().unwrap();
    let port = support_setup::free_port();
    let spec = spec_for(A, port);
    let file = support_setup::write_spec(work.path(), "a", &spec);
    let (code, out, err) = run(
        "setup",
        &file,
        &work.path().join("store"),
        &["--attempts", "2", "--backoff-ms", "10"],
    );
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(
        err.contains(&format!(
            "cannot reach rabbitmq at http://127.0.0.1:{port}/api (after 2 attempt(s))"
        )),
        "{err}"
    );
}
