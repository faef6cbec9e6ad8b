//! What `provisio serve` answers must be true and in the API's terms (issue 10, items 9, 11,
//! 12): a full shard refuses nobody (issue 9 places the tenant in the next one), colliding tenant ids are
//! resolved without refusing the customer, a created event for a provisioned subscription
//! with another plan is a conflict, and malformed envelopes are refused without library
//! wording. Real HTTP on 127.0.0.1 against a real git repository.

use crate::serve_support;

use provisio::io::repo::commit::FileChange;
use provisio::io::repo::{Author, Repo};
use serde_json::json;
use serve_support::*;

/// Commits `from` → `to` in one registry file, as a person would.
fn edit_committed(f: &Fixture, file: &str, from: &str, to: &str) {
    let path = format!("registry/{file}");
    let text = f.committed(&path).unwrap();
    assert!(text.contains(from), "`{from}` is not in {file}");
    f.repo()
        .commit_files(
            &[FileChange {
                path,
                content: Some(text.replace(from, to).into_bytes()),
            }],
            &format!("edit {file}"),
            &Author::default(),
        )
        .unwrap();
}

/// A full ApplicationSet shard never refuses a paying customer: the new tenant is placed in
/// the region's next shard and says so in its file. (Only a region whose every shard name is
/// full answers 503 `no_capacity` with `Retry-After`; the intake's unit tests and
/// `serve::error`'s cover that answer.)
#[test]
fn a_full_shard_places_the_new_tenant_in_the_next_one() {
    let f = Fixture::new();
    // us-east's shard 0 holds the example's ABC Corporation: make it full.
    edit_committed(
        &f,
        "platform.yaml",
        "maxTenantsPerShard: 500",
        "maxTenantsPerShard: 1",
    );
    let server = f.start();
    let commits = f.commits().len();
    let a = post(
        server.addr(),
        "subscription-created",
        &created("sub_full", "Full House"),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    let id = a.json()["tenant_id"].as_str().unwrap().to_owned();
    let file = f.committed(&format!("registry/tenants/{id}.yaml")).unwrap();
    assert!(file.contains("\nshard: 1\n"), "{file}");
    assert_eq!(f.commits().len(), commits + 1);
    server.stop().unwrap();
}

#[test]
fn colliding_tenant_ids_get_a_longer_suffix_and_the_customer_is_onboarded() {
    let f = Fixture::new();
    let server = f.start();
    // Constructed collision: same slug, and both subscriptions hash to 44b014….
    let first = post(
        server.addr(),
        "subscription-created",
        &created("sub_c566", "Acme Shop"),
    );
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(first.json()["tenant_id"], "acme-shop-44b014");
    let second = post(
        server.addr(),
        "subscription-created",
        &created("sub_c1748", "ACME shop!"),
    );
    assert_eq!(second.status, 201, "{}", second.body);
    assert_eq!(second.json()["tenant_id"], "acme-shop-44b01407");
    assert_eq!(
        second.json()["domain"],
        "acme-shop-44b01407.collectverything.com"
    );
    // The same event again, and after a restart: the same id, nothing new.
    let commits = f.commits().len();
    let mut again = created("sub_c1748", "ACME shop!");
    again["id"] = json!("evt_redelivered");
    let a = post(server.addr(), "subscription-created", &again);
    assert_eq!(
        (a.status, a.json()["tenant_id"].clone()),
        (200, json!("acme-shop-44b01407"))
    );
    server.stop().unwrap();
    let server = f.start();
    again["id"] = json!("evt_after_restart");
    let a = post(server.addr(), "subscription-created", &again);
    assert_eq!(
        (a.status, a.json()["tenant_id"].clone()),
        (200, json!("acme-shop-44b01407"))
    );
    assert_eq!(f.commits().len(), commits);
    provisio::io::registry_dir::load_dir(&f.registry)
        .unwrap()
        .into_result()
        .unwrap();
    server.stop().unwrap();
}

#[test]
fn created_again_with_another_tier_or_region_is_409_and_changes_nothing() {
    let f = Fixture::new();
    let server = f.start();
    let a = post(
        server.addr(),
        "subscription-created",
        &created("sub_plan", "Plan Shop"),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    let commits = f.commits().len();
    let mut tier = created("sub_plan", "Plan Shop");
    tier["data"]["plan"]["tier"] = json!("business");
    let c = post(server.addr(), "subscription-created", &tier);
    assert_eq!(c.status, 409, "{}", c.body);
    assert_eq!(
        c.error(),
        ("subscription_exists".into(), Some("data.plan.tier".into()))
    );
    let mut region = created("sub_plan", "Plan Shop");
    region["data"]["metadata"]["region"] = json!("apac");
    let c = post(server.addr(), "subscription-created", &region);
    assert_eq!(c.status, 409, "{}", c.body);
    assert_eq!(
        c.error(),
        (
            "subscription_exists".into(),
            Some("data.metadata.region".into())
        )
    );
    // The same plan again is still a redelivery.
    let mut same = created("sub_plan", "Plan Shop");
    same["id"] = json!("evt_same_plan");
    assert_eq!(
        post(server.addr(), "subscription-created", &same).status,
        200
    );
    assert_eq!(f.commits().len(), commits);
    server.stop().unwrap();
}

#[test]
fn malformed_envelopes_are_refused_in_the_apis_terms() {
    let f = Fixture::new();
    let server = f.start();
    let envelope = created("sub_shape", "Shape Shop");
    let positional = json!([
        null,
        "subscription.created",
        "2025-06-15T10:00:00Z",
        envelope["data"].clone()
    ]);
    let mut nested = envelope.clone();
    nested["data"]["customer"] = json!(["Shape Shop", "a@example.com"]);
    let mut number = envelope.clone();
    number["data"]["plan"]["tier"] = json!(3);
    let duplicate = envelope
        .to_string()
        .replacen('{', r#"{"event":"subscription.cancelled","#, 1);
    /// Body, status, code, field, message.
    type Case<'a> = (Vec<u8>, u16, &'a str, Option<&'a str>, &'a str);
    let cases: Vec<Case> = vec![
        (
            positional.to_string().into_bytes(),
            422,
            "invalid_field",
            None,
            "the body must be a JSON object (the event), got an array",
        ),
        (
            nested.to_string().into_bytes(),
            422,
            "invalid_field",
            Some("data.customer"),
            "`data.customer` must be an object, got an array",
        ),
        (
            number.to_string().into_bytes(),
            422,
            "invalid_field",
            Some("data.plan.tier"),
            "`data.plan.tier` must be a string, got a number",
        ),
        (
            duplicate.into_bytes(),
            400,
            "malformed_json",
            None,
            "the body is not valid JSON: the key `event` appears twice in one object at line 1 column 41",
        ),
    ];
    for (body, status, code, field, message) in cases {
        let a = post_bytes(server.addr(), "subscription-created", &body);
        assert_eq!(a.status, status, "{}", a.body);
        assert_eq!(
            a.error(),
            (code.to_owned(), field.map(str::to_owned)),
            "{}",
            a.body
        );
        assert_eq!(a.json()["error"]["message"], message, "{}", a.body);
    }
    assert_eq!(f.commits().len(), 1, "nothing was committed");
    drop(Repo::discover(f.dir.path()).unwrap());
    server.stop().unwrap();
}

/// `docs/openapi.json` (which schemathesis fuzzes in CI) documents these answers: 408 on
/// every operation that takes a body (all read it through `read_body`, under the body
/// timeout), `Retry-After` on every webhook's 503, and each new code.
#[test]
fn the_openapi_document_states_these_answers() {
    let doc: serde_json::Value =
        serde_json::from_str(include_str!("../../docs/openapi.json")).unwrap();
    let mut with_body = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if op.get("requestBody").is_some() {
                with_body.push(format!("{method} {path}"));
                let timeout = &op["responses"]["408"];
                assert!(timeout.is_object(), "{method} {path}: no 408");
                assert!(
                    timeout.to_string().contains("request_timeout"),
                    "{method} {path}: 408 without its code"
                );
            }
        }
    }
    assert!(
        with_body.iter().any(|o| o.contains("/reports")),
        "the lifecycle reports take a body: {with_body:?}"
    );
    assert_eq!(with_body.len(), 4, "{with_body:?}");
    for route in [
        "subscription-created",
        "subscription-updated",
        "subscription-cancelled",
    ] {
        let responses =
            &doc["paths"][format!("/api/v1/provisioning/webhooks/{route}")]["post"]["responses"];
        assert!(responses["408"].is_object(), "{route}: 408");
        assert!(
            responses["503"]["headers"]["Retry-After"].is_object(),
            "{route}: Retry-After"
        );
        let text = responses.to_string();
        for code in ["request_timeout", "uncommitted_changes", "unavailable"] {
            assert!(text.contains(code), "{route}: {code}");
        }
    }
    let created =
        doc["paths"]["/api/v1/provisioning/webhooks/subscription-created"]["post"]["responses"]
            .to_string();
    for needle in ["no_capacity", "data.plan.tier", "data.metadata.region"] {
        assert!(created.contains(needle), "{needle}");
    }
}
