//! `provisio serve` over real HTTP on 127.0.0.1 against a real git repository: each route,
//! each error class, idempotency under concurrency, durability across a restart.

use crate::serve_support;

use provisio::services::serve::{WEBHOOK_PREFIX, auth};
use provisio_core::naming;
use serde_json::json;
use serve_support::*;

#[test]
fn subscription_created_writes_commits_and_answers_idempotently() {
    let f = Fixture::new();
    let server = f.start();
    let before = f.commits().len();

    let a = post(
        server.addr(),
        "subscription-created",
        &created("sub_new1", "Café Crème Brûlée"),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    let id = naming::tenant_id("Café Crème Brûlée", "sub_new1");
    assert!(id.starts_with("cafe-creme-brulee-"), "{id}");
    let body = a.json();
    assert_eq!(body["tenant_id"], id);
    assert_eq!(body["namespace"], format!("e-commerce-{id}"));
    assert_eq!(body["domain"], format!("{id}.collectverything.com"));
    assert_eq!(body["status"], "provisioning");

    // Committed (HEAD) and in the work tree, and the whole registry still validates.
    let path = format!("registry/tenants/{id}.yaml");
    let text = f.committed(&path).expect("tenant file committed");
    assert!(text.contains("status: provisioning"), "{text}");
    assert!(text.contains("name: Café Crème Brûlée"), "{text}");
    assert_eq!(
        std::fs::read_to_string(f.dir.path().join(&path)).unwrap(),
        text
    );
    provisio::io::registry_dir::load_dir(&f.registry)
        .unwrap()
        .into_result()
        .unwrap();
    let commits = f.commits();
    assert_eq!(commits.len(), before + 1);
    assert!(
        commits[0].starts_with(&format!("intake: provision {id}")),
        "{}",
        commits[0]
    );
    assert!(
        commits[0].contains("Provisio-Event: derived:"),
        "{}",
        commits[0]
    );
    assert!(
        commits[0].contains("subscription.created sub_new1"),
        "{}",
        commits[0]
    );

    // Delivery retried: 200, same body, nothing new.
    let again = post(
        server.addr(),
        "subscription-created",
        &created("sub_new1", "Café Crème Brûlée"),
    );
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json(), body);
    // Same subscription under a new event id (the billing system re-sent it): also 200.
    let mut other = created("sub_new1", "Café Crème Brûlée");
    other["id"] = json!("evt_resent");
    assert_eq!(
        post(server.addr(), "subscription-created", &other).status,
        200
    );
    assert_eq!(f.commits().len(), before + 1);

    // A different name for a subscription that already has a tenant: conflict.
    let c = post(
        server.addr(),
        "subscription-created",
        &created("sub_new1", "Another Shop"),
    );
    assert_eq!(c.status, 409, "{}", c.body);
    assert_eq!(
        c.error(),
        (
            "subscription_exists".into(),
            Some("data.subscription_id".into())
        )
    );
    // The seed's own subscription belongs to the example tenant, whose id (the seed's
    // 7f3a9c) was not derived from it: the seed's event is recognised as already provisioned.
    let mut seed = created("sub_abc123", "ABC Corporation");
    seed["data"]["metadata"]["region"] = json!("us-east");
    let a = post(server.addr(), "subscription-created", &seed);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["tenant_id"], "abc-corporation-7f3a9c");
    let other = post(
        server.addr(),
        "subscription-created",
        &created("sub_abc123", "Someone Else"),
    );
    assert_eq!(other.status, 409, "{}", other.body);
    assert_eq!(f.commits().len(), before + 1);

    // The server is the only writer of the work tree it changed: git status is clean.
    let status = std::process::Command::new("git")
        .args(["status", "--porcelain"])
        .current_dir(f.dir.path())
        .output();
    if let Ok(out) = status {
        assert_eq!(String::from_utf8_lossy(&out.stdout), "", "work tree dirty");
    }
    server.stop().unwrap();
}

#[test]
fn twenty_concurrent_identical_events_make_one_file_and_one_commit() {
    let f = Fixture::new();
    let server = f.start();
    let before = f.commits().len();
    let addr = server.addr();
    let event = created("sub_twenty", "Twenty Times GmbH");
    let answers: Vec<Answer> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|_| s.spawn(|| post(addr, "subscription-created", &event)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    statuses.sort();
    assert_eq!(statuses[0], 200, "{statuses:?}");
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        19,
        "{statuses:?}"
    );
    let bodies: std::collections::BTreeSet<String> =
        answers.iter().map(|a| a.json().to_string()).collect();
    assert_eq!(
        bodies.len(),
        1,
        "every answer has the same body: {bodies:?}"
    );
    let id = naming::tenant_id("Twenty Times GmbH", "sub_twenty");
    let tenants = f.committed_tenants();
    assert_eq!(
        tenants
            .iter()
            .filter(|t| t.starts_with("twenty-times-gmbh-"))
            .count(),
        1
    );
    assert!(tenants.contains(&format!("{id}.yaml")));
    assert_eq!(f.commits().len(), before + 1);
}

#[test]
fn concurrent_distinct_events_are_grouped_into_few_commits_and_all_durable() {
    let f = Fixture::new();
    let server = f.start();
    let before = f.commits().len();
    let addr = server.addr();
    let answers: Vec<(String, Answer)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..40)
            .map(|i| {
                s.spawn(move || {
                    let sub = format!("sub_group_{i}");
                    let a = post(
                        addr,
                        "subscription-created",
                        &created(&sub, &format!("Shop {i}")),
                    );
                    (sub, a)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (sub, a) in &answers {
        assert_eq!(a.status, 201, "{sub}: {}", a.body);
        let id = a.json()["tenant_id"].as_str().unwrap().to_owned();
        assert!(
            f.committed(&format!("registry/tenants/{id}.yaml"))
                .is_some(),
            "{id}"
        );
    }
    let commits = f.commits();
    let new = commits.len() - before;
    assert!((1..=40).contains(&new), "{new} commits");
    let trailers: usize = commits
        .iter()
        .map(|m| m.matches("Provisio-Event:").count())
        .sum();
    assert_eq!(
        trailers, 40,
        "each event is named exactly once in the history"
    );
    provisio::io::registry_dir::load_dir(&f.registry)
        .unwrap()
        .into_result()
        .unwrap();
}

#[test]
fn tier_change_and_cancellation() {
    let f = Fixture::new();
    let server = f.start();
    let addr = server.addr();

    // Upgrade of the example tenant (premium → business).
    let a = post(
        addr,
        "subscription-updated",
        &updated("sub_abc123", "business", "evt_up1"),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["tier"], "business");
    assert_eq!(a.json()["previous_tier"], "premium");
    let path = "registry/tenants/abc-corporation-7f3a9c.yaml";
    let text = f.committed(path).unwrap();
    assert!(text.contains("tier: business"), "{text}");
    assert!(
        text.contains("domain: abc-corporation.collectverything.com"),
        "{text}"
    );
    assert!(
        f.commits()[0].contains("premium → business"),
        "{}",
        f.commits()[0]
    );

    // Unknown tier, unknown subscription, tenant mismatch.
    let e = post(
        addr,
        "subscription-updated",
        &updated("sub_abc123", "gold", "evt_up2"),
    );
    assert_eq!(
        (e.status, e.error()),
        (422, ("unknown_tier".into(), Some("data.plan.tier".into())))
    );
    let e = post(
        addr,
        "subscription-updated",
        &updated("sub_nobody", "standard", "evt_up3"),
    );
    assert_eq!(
        (e.status, e.error().0.as_str()),
        (404, "unknown_subscription")
    );
    let mut m = updated("sub_abc123", "standard", "evt_up4");
    m["data"]["tenant_id"] = json!("cafe-creme-93b31b");
    let e = post(addr, "subscription-updated", &m);
    assert_eq!(
        (e.status, e.error()),
        (
            409,
            ("tenant_mismatch".into(), Some("data.tenant_id".into()))
        )
    );

    // Cancellation effective in 3 days: the 30-day grace period from now wins.
    let c = post(
        addr,
        "subscription-cancelled",
        &cancelled("sub_abc123", "2025-06-18T00:00:00Z"),
    );
    assert_eq!(c.status, 200, "{}", c.body);
    let body = c.json();
    assert_eq!(body["status"], "deprovisioning");
    assert_eq!(body["deletion_date"], "2025-07-15T12:00:00Z");
    assert_eq!(body["cancellation_requested"], "2025-06-15T10:00:00Z");
    let text = f.committed(path).unwrap();
    assert!(text.contains("status: deprovisioning"), "{text}");
    let reg = provisio::io::registry_dir::load_dir(&f.registry)
        .unwrap()
        .into_result()
        .unwrap();
    let c = reg.tenants["abc-corporation-7f3a9c"]
        .cancellation
        .clone()
        .unwrap();
    assert_eq!(
        provisio_core::intake::timestamp(c.deletion.value),
        "2025-07-15T12:00:00Z"
    );
    assert_eq!(c.reason.as_deref(), Some("downgrade"));
    // Effective later than the grace period: the effective date stands.
    let c = post(
        addr,
        "subscription-cancelled",
        &cancelled("sub_cafe456", "2025-09-01T00:00:00Z"),
    );
    assert_eq!(c.json()["deletion_date"], "2025-09-01T00:00:00Z");
    // Unknown subscription.
    let c = post(
        addr,
        "subscription-cancelled",
        &cancelled("sub_unknown", "2025-09-01T00:00:00Z"),
    );
    assert_eq!(
        (c.status, c.error().0.as_str()),
        (404, "unknown_subscription")
    );
    // A tier change after the cancellation is refused.
    let e = post(
        addr,
        "subscription-updated",
        &updated("sub_abc123", "standard", "evt_up5"),
    );
    assert_eq!(
        (e.status, e.error().0.as_str()),
        (409, "tenant_deprovisioning")
    );
    provisio::io::registry_dir::load_dir(&f.registry)
        .unwrap()
        .into_result()
        .unwrap();
}

#[test]
fn every_error_class_answers_json_and_writes_nothing() {
    let f = Fixture::new();
    let server = f.start();
    let addr = server.addr();
    let agent = agent();
    let head = f.commits().len();
    let good = created("sub_err", "Error Class Inc").to_string();
    let bearer = format!("Bearer {SECRET}");
    let json_ct = ("content-type", "application/json");
    let route = format!("{WEBHOOK_PREFIX}subscription-created");

    let cases: Vec<Case<'_>> = vec![
        (
            "no auth",
            vec![],
            good.clone().into_bytes(),
            401,
            "unauthorized",
            None,
        ),
        (
            "wrong bearer",
            vec![("authorization", "Bearer nope".into())],
            good.clone().into_bytes(),
            401,
            "unauthorized",
            None,
        ),
        (
            "wrong content type",
            vec![
                ("authorization", bearer.clone()),
                ("content-type", "text/plain".into()),
            ],
            good.clone().into_bytes(),
            415,
            "unsupported_media_type",
            None,
        ),
        (
            "no content type",
            vec![("authorization", bearer.clone())],
            good.clone().into_bytes(),
            415,
            "unsupported_media_type",
            None,
        ),
        (
            "too large",
            vec![("authorization", bearer.clone()), json_ct_owned(json_ct)],
            vec![b' '; 64 * 1024 + 1],
            413,
            "payload_too_large",
            None,
        ),
        (
            "malformed JSON",
            vec![("authorization", bearer.clone()), json_ct_owned(json_ct)],
            b"{\"event\":".to_vec(),
            400,
            "malformed_json",
            None,
        ),
        (
            "missing field",
            vec![("authorization", bearer.clone()), json_ct_owned(json_ct)],
            good.replace("\"email\":\"admin@example.com\",", "")
                .into_bytes(),
            422,
            "invalid_field",
            Some("data.customer.email"),
        ),
        (
            "wrong type",
            vec![("authorization", bearer.clone()), json_ct_owned(json_ct)],
            good.replace("\"premium\"", "42").into_bytes(),
            422,
            "invalid_field",
            Some("data.plan.tier"),
        ),
        (
            "bad e-mail",
            vec![("authorization", bearer.clone()), json_ct_owned(json_ct)],
            good.replace("admin@example.com", "admin-at-example")
                .into_bytes(),
            422,
            "invalid_field",
            Some("data.customer.email"),
        ),
        (
            "unknown tier",
            vec![("authorization", bearer.clone()), json_ct_owned(json_ct)],
            good.replace("\"premium\"", "\"gold\"").into_bytes(),
            422,
            "unknown_tier",
            Some("data.plan.tier"),
        ),
        (
            "unknown region",
            vec![("authorization", bearer.clone()), json_ct_owned(json_ct)],
            good.replace("us-east", "mars").into_bytes(),
            422,
            "unknown_region",
            Some("data.metadata.region"),
        ),
        (
            "wrong event for route",
            vec![("authorization", bearer.clone()), json_ct_owned(json_ct)],
            good.replace("subscription.created", "subscription.cancelled")
                .into_bytes(),
            422,
            "invalid_field",
            Some("event"),
        ),
    ];
    for (what, headers, body, status, code, field) in cases {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let a = request(&agent, "POST", addr, &route, &h, &body);
        assert_eq!(a.status, status, "{what}: {}", a.body);
        assert!(
            a.content_type.starts_with("application/json"),
            "{what}: {}",
            a.content_type
        );
        assert_eq!(
            a.error(),
            (code.to_owned(), field.map(str::to_owned)),
            "{what}"
        );
    }

    // Routes.
    let a = request(
        &agent,
        "POST",
        addr,
        &format!("{WEBHOOK_PREFIX}subscription-paused"),
        &[("authorization", bearer.as_str()), json_ct],
        good.as_bytes(),
    );
    assert_eq!((a.status, a.error().0.as_str()), (404, "unknown_event"));
    let a = request(&agent, "GET", addr, "/nope", &[], b"");
    assert_eq!((a.status, a.error().0.as_str()), (404, "not_found"));
    let a = request(&agent, "GET", addr, &route, &[], b"");
    assert_eq!(
        (a.status, a.error().0.as_str()),
        (405, "method_not_allowed")
    );

    // Nothing of the above was written.
    assert_eq!(f.commits().len(), head);
    assert!(
        !f.committed_tenants()
            .iter()
            .any(|t| t.starts_with("error-class-inc"))
    );
    let unauth = request(&agent, "POST", addr, &route, &[json_ct], good.as_bytes());
    assert!(unauth.status == 401);
}

/// What is sent, and the status, code and field expected back.
type Case<'a> = (
    &'a str,
    Vec<(&'a str, String)>,
    Vec<u8>,
    u16,
    &'a str,
    Option<&'a str>,
);

fn json_ct_owned((k, v): (&'static str, &str)) -> (&'static str, String) {
    (k, v.to_owned())
}

#[test]
fn hmac_signatures_window_and_replay() {
    let f = Fixture::new();
    let server = f.start();
    let addr = server.addr();
    let agent = agent();
    let secret = auth::Secret::new(SECRET).unwrap();
    let route = format!("{WEBHOOK_PREFIX}subscription-created");
    let body = created("sub_hmac", "Signed Shop").to_string();
    let t = now().timestamp();
    let send = |sig: &str, body: &str| {
        request(
            &agent,
            "POST",
            addr,
            &route,
            &[("x-signature", sig), ("content-type", "application/json")],
            body.as_bytes(),
        )
    };
    let sig = auth::signature_header(&secret, t - 60, body.as_bytes());
    let a = send(&sig, &body);
    assert_eq!(a.status, 201, "{}", a.body);
    // The same signed request again: a replay.
    let a = send(&sig, &body);
    assert_eq!((a.status, a.error().0.as_str()), (401, "replayed"));
    // An honest retry signs again: answered idempotently.
    let a = send(&auth::signature_header(&secret, t, body.as_bytes()), &body);
    assert_eq!(a.status, 200, "{}", a.body);
    // Outside the 5-minute window.
    let a = send(
        &auth::signature_header(&secret, t - 301, body.as_bytes()),
        &body,
    );
    assert_eq!((a.status, a.error().0.as_str()), (401, "signature_expired"));
    // Tampered body.
    let sig = auth::signature_header(&secret, t + 1, body.as_bytes());
    let a = send(&sig, &body.replace("Signed Shop", "Evil Shop"));
    assert_eq!((a.status, a.error().0.as_str()), (401, "unauthorized"));
    let a = send("t=abc,v1=00", &body);
    assert_eq!((a.status, a.error().0.as_str()), (401, "unauthorized"));
}

#[test]
fn operational_endpoints() {
    let f = Fixture::new();
    let server = f.start();
    let addr = server.addr();
    let agent = agent();
    assert_eq!(
        request(&agent, "GET", addr, "/healthz", &[], b"").status,
        200
    );
    let r = request(&agent, "GET", addr, "/readyz", &[], b"");
    assert_eq!(
        (r.status, r.json()["status"].as_str()),
        (200, Some("ready"))
    );
    post(
        addr,
        "subscription-created",
        &created("sub_metrics", "Metric Shop"),
    );
    post(
        addr,
        "subscription-created",
        &created("sub_metrics", "Metric Shop"),
    );
    request(
        &agent,
        "POST",
        addr,
        &format!("{WEBHOOK_PREFIX}subscription-created"),
        &[],
        b"{}",
    );
    let m = request(&agent, "GET", addr, "/metrics", &[], b"");
    assert_eq!(m.status, 200);
    assert!(
        m.content_type.starts_with("application/openmetrics-text"),
        "{}",
        m.content_type
    );
    assert!(m.body.ends_with("# EOF\n"), "{}", m.body);
    for line in [
        "provisio_intake_events_total{event=\"created\",outcome=\"created\",status=\"201\"} 1",
        "provisio_intake_events_total{event=\"created\",outcome=\"ok\",status=\"200\"} 1",
        "provisio_intake_events_total{event=\"created\",outcome=\"unauthorized\",status=\"401\"} 1",
        "provisio_intake_request_duration_seconds_count 3",
        "provisio_intake_commits_total 1",
        "provisio_build_info{version=\"",
    ] {
        assert!(m.body.contains(line), "missing `{line}` in\n{}", m.body);
    }
    let doc = request(&agent, "GET", addr, "/openapi.json", &[], b"");
    assert_eq!(doc.status, 200);
    let committed: serde_json::Value =
        serde_json::from_str(include_str!("../../docs/openapi.json")).unwrap();
    assert_eq!(doc.json(), committed);
    assert!(
        doc.json()["paths"]["/api/v1/provisioning/webhooks/subscription-created"]["post"]
            .is_object()
    );
}

#[test]
fn history_survives_a_restart() {
    let f = Fixture::new();
    let server = f.start();
    let addr = server.addr();
    assert_eq!(
        post(
            addr,
            "subscription-updated",
            &updated("sub_cafe456", "premium", "evt_a")
        )
        .status,
        200
    );
    assert_eq!(
        post(
            addr,
            "subscription-updated",
            &updated("sub_cafe456", "business", "evt_b")
        )
        .status,
        200
    );
    server.stop().unwrap();
    let commits = f.commits().len();

    // A new process: the event ids come back from the commit trailers.
    let server = f.start();
    let addr = server.addr();
    // The old upgrade, redelivered after the newer one: recognised, not applied again.
    let a = post(
        addr,
        "subscription-updated",
        &updated("sub_cafe456", "premium", "evt_a"),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["tier"], "business");
    assert_eq!(f.commits().len(), commits);
    let text = f
        .committed("registry/tenants/cafe-creme-93b31b.yaml")
        .unwrap();
    assert!(text.contains("tier: business"), "{text}");
    // An event id reused for something else: conflict.
    let a = post(
        addr,
        "subscription-updated",
        &updated("sub_abc123", "business", "evt_a"),
    );
    assert_eq!((a.status, a.error().0.as_str()), (409, "event_id_reused"));
}

#[test]
fn a_commit_by_another_author_meanwhile_is_taken_into_account() {
    let f = Fixture::new();
    let server = f.start();
    let addr = server.addr();
    assert_eq!(
        post(
            addr,
            "subscription-created",
            &created("sub_first", "First Shop")
        )
        .status,
        201
    );
    // A person commits a tenant by hand while the server runs.
    let hand = "id: hand-made-shop\nname: Hand Made Shop\ntier: standard\nregion: eu-west\n\
                subscription: sub_hand\ncontacts:\n  admin: a@example.com\n  billing: b@example.com\n\
                created: 2025-06-01T00:00:00Z\nstatus: active\n";
    f.repo()
        .commit_files(
            &[provisio::io::repo::commit::FileChange {
                path: "registry/tenants/hand-made-shop.yaml".into(),
                content: Some(hand.as_bytes().to_vec()),
            }],
            "add a tenant by hand",
            &provisio::io::repo::Author::default(),
        )
        .unwrap();
    // The intake sees it: its subscription is known, and the history is kept (the same
    // plan: a created event with another one would be a conflict).
    let mut same = created("sub_hand", "Hand Made Shop");
    same["data"]["plan"]["tier"] = serde_json::json!("standard");
    same["data"]["metadata"]["region"] = serde_json::json!("eu-west");
    let a = post(addr, "subscription-created", &same);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["tenant_id"], "hand-made-shop");
    let c = post(
        addr,
        "subscription-created",
        &created("sub_hand", "Impostor"),
    );
    assert_eq!(
        (c.status, c.error().0.as_str()),
        (409, "subscription_exists")
    );
    let u = post(
        addr,
        "subscription-updated",
        &updated("sub_hand", "premium", "evt_h1"),
    );
    assert_eq!(u.status, 200, "{}", u.body);
    let commits = f.commits();
    assert!(commits[0].contains("standard → premium"), "{}", commits[0]);
    assert_eq!(commits[1], "add a tenant by hand");
    provisio::io::registry_dir::load_dir(&f.registry)
        .unwrap()
        .into_result()
        .unwrap();
}

#[test]
fn a_registry_outside_git_or_invalid_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = provisio::services::serve::Config::new(
        dir.path().join("registry"),
        auth::Secret::new("x").unwrap(),
    );
    std::fs::create_dir_all(&cfg.registry).unwrap();
    let e = provisio::services::serve::spawn(cfg, "127.0.0.1:0".parse().unwrap(), 1)
        .err()
        .expect("refused");
    assert!(e.to_string().contains("git"), "{e}");

    let f = Fixture::new();
    std::fs::write(f.registry.join("tenants/broken.yaml"), "id: [").unwrap();
    let repo = f.repo();
    repo.commit_files(
        &[provisio::io::repo::commit::FileChange {
            path: "registry/tenants/broken.yaml".into(),
            content: Some(b"id: [".to_vec()),
        }],
        "break it",
        &provisio::io::repo::Author::default(),
    )
    .unwrap();
    let e = provisio::services::serve::spawn(f.config(), "127.0.0.1:0".parse().unwrap(), 1)
        .err()
        .expect("refused");
    assert!(e.to_string().contains("registry is invalid"), "{e}");
}
