//! `setup rabbitmq` / `teardown rabbitmq` through the management HTTP API
//! ([`super::management`]): the tenant's vhost, its user (no management tags) with
//! permissions on that vhost only, the topic exchange, one durable queue per product with
//! `x-message-ttl` / `x-max-length`, and the bindings by routing key. Converges: queues and
//! bindings the spec no longer lists go (a queue only when empty), changed queue arguments
//! recreate an empty queue.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256, Sha512};

use super::management::{Client, Method};
use super::secrets::{self, SecretStore};
use super::{Change, JsonAnswer, Policy, Report, SetupError};
use crate::io::http::seg;
use provisio_core::plan::setup::{QueueSpec, RabbitSpec};

const SERVICE: &str = "rabbitmq";

/// The administrative account setup authenticates with (from the Job's environment).
#[derive(Clone)]
pub struct Admin {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

fn client(spec: &RabbitSpec, admin: &Admin, retry: &Policy) -> Client {
    Client::new(
        SERVICE,
        format!("http://{}:{}/api", spec.host, spec.management_port),
        &admin.user,
        &admin.password,
        *retry,
    )
}

/// Permissions of the tenant user, on its own vhost only (the vhost holds nothing else).
fn wanted_permissions() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([("configure", ".*"), ("write", ".*"), ("read", ".*")])
}

/// Queue arguments as declared.
pub fn queue_arguments(q: &QueueSpec) -> BTreeMap<String, Value> {
    let mut args = BTreeMap::new();
    if let Some(ttl) = q.message_ttl_ms {
        args.insert("x-message-ttl".to_owned(), json!(ttl));
    }
    if let Some(max) = q.max_length {
        args.insert("x-max-length".to_owned(), json!(max));
    }
    args
}

/// Whether `password` matches a RabbitMQ password hash (base64 of a 4-byte salt followed by
/// the digest of salt ‖ password).
pub fn password_matches(algorithm: &str, hash_b64: &str, password: &str) -> bool {
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(hash_b64) else {
        return false;
    };
    if raw.len() < 4 {
        return false;
    }
    let (salt, digest) = raw.split_at(4);
    let mut input = salt.to_vec();
    input.extend_from_slice(password.as_bytes());
    match algorithm {
        "rabbit_password_hashing_sha256" => Sha256::digest(&input).as_slice() == digest,
        "rabbit_password_hashing_sha512" => Sha512::digest(&input).as_slice() == digest,
        _ => false,
    }
}

#[derive(Deserialize)]
struct UserInfo {
    #[serde(default)]
    password_hash: String,
    #[serde(default)]
    hashing_algorithm: String,
    #[serde(default)]
    tags: Value,
}

#[derive(Deserialize)]
struct Permission {
    vhost: String,
    configure: String,
    write: String,
    read: String,
}

#[derive(Deserialize)]
struct ExchangeInfo {
    #[serde(rename = "type")]
    kind: String,
    durable: bool,
    auto_delete: bool,
}

#[derive(Deserialize)]
struct QueueInfo {
    name: String,
    #[serde(default)]
    arguments: BTreeMap<String, Value>,
    #[serde(default)]
    durable: bool,
    #[serde(default)]
    auto_delete: bool,
}

#[derive(Deserialize)]
struct BindingInfo {
    destination: String,
    destination_type: String,
    routing_key: String,
    properties_key: String,
}

/// Creates or converges the tenant's vhost, user, permissions and topology.
pub fn setup(
    spec: &RabbitSpec,
    admin: &Admin,
    store: &dyn SecretStore,
    retry: &Policy,
) -> Result<Report, SetupError> {
    let api = client(spec, admin, retry);
    let mut report = Report::default();
    let vhost = seg(&spec.vhost);

    // The vhost.
    let what = format!("vhost {}", spec.vhost);
    let r = api.send(Method::Get, &format!("/vhosts/{vhost}"), None)?;
    match r.status {
        404 => {
            api.expect_ok(
                Method::Put,
                &format!("/vhosts/{vhost}"),
                Some(&json!({"description": format!("tenant {}", spec.vhost)})),
                &format!("create {what}"),
            )?;
            report.record(what, Change::Created);
        }
        _ if r.ok() => report.record(what, Change::Unchanged),
        _ => return Err(api.refused(&format!("read {what}"), &r)),
    }

    // The user, its password from the secret store.
    let (password, stored) =
        secrets::ensure(store, &spec.secret_key, "username", &spec.user, "password")?;
    report.record(format!("secret {}", spec.secret_key), stored);
    let user = seg(&spec.user);
    let what = format!("user {}", spec.user);
    let put_user = |api: &Client| {
        api.expect_ok(
            Method::Put,
            &format!("/users/{user}"),
            Some(&json!({"password": password, "tags": ""})),
            &format!("write {what}"),
        )
    };
    let r = api.send(Method::Get, &format!("/users/{user}"), None)?;
    match r.status {
        404 => {
            put_user(&api)?;
            report.record(what, Change::Created);
        }
        _ if r.ok() => {
            let info: UserInfo = r.answer(SERVICE, &format!("read {what}"))?;
            let no_tags = match &info.tags {
                Value::Array(a) => a.is_empty(),
                Value::String(s) => s.is_empty(),
                _ => false,
            };
            if no_tags && password_matches(&info.hashing_algorithm, &info.password_hash, &password)
            {
                report.record(what, Change::Unchanged);
            } else {
                put_user(&api)?;
                report.record(what, Change::Updated);
            }
        }
        _ => return Err(api.refused(&format!("read {what}"), &r)),
    }

    // Permissions: exactly one entry, on the tenant's vhost.
    let what = format!("permissions of {} on {}", spec.user, spec.vhost);
    let current: Vec<Permission> = api
        .expect_ok(
            Method::Get,
            &format!("/users/{user}/permissions"),
            None,
            &format!("read {what}"),
        )?
        .answer(SERVICE, &format!("read {what}"))?;
    let wanted = wanted_permissions();
    let mut own_ok = false;
    for p in &current {
        if p.vhost == spec.vhost {
            own_ok = p.configure == wanted["configure"]
                && p.write == wanted["write"]
                && p.read == wanted["read"];
        } else {
            api.expect_ok(
                Method::Delete,
                &format!("/permissions/{}/{user}", seg(&p.vhost)),
                None,
                &format!("remove the permissions of {} on {}", spec.user, p.vhost),
            )?;
            report.record(
                format!("permissions of {} on {}", spec.user, p.vhost),
                Change::Deleted,
            );
        }
    }
    if own_ok {
        report.record(what, Change::Unchanged);
    } else {
        api.expect_ok(
            Method::Put,
            &format!("/permissions/{vhost}/{user}"),
            Some(&json!(wanted)),
            &format!("write {what}"),
        )?;
        let had = current.iter().any(|p| p.vhost == spec.vhost);
        report.record(
            what,
            if had {
                Change::Updated
            } else {
                Change::Created
            },
        );
    }

    // The topic exchange.
    let exchange = seg(&spec.exchange);
    let what = format!("exchange {}", spec.exchange);
    let r = api.send(Method::Get, &format!("/exchanges/{vhost}/{exchange}"), None)?;
    match r.status {
        404 => {
            api.expect_ok(
                Method::Put,
                &format!("/exchanges/{vhost}/{exchange}"),
                Some(&json!({"type": "topic", "durable": true, "auto_delete": false, "internal": false, "arguments": {}})),
                &format!("create {what}"),
            )?;
            report.record(what, Change::Created);
        }
        _ if r.ok() => {
            let info: ExchangeInfo = r.answer(SERVICE, &format!("read {what}"))?;
            if info.kind != "topic" || !info.durable || info.auto_delete {
                return Err(SetupError::Refused {
                    service: SERVICE,
                    action: format!("converge {what}"),
                    detail: format!(
                        "it exists as a {}{} exchange; delete it by hand to let setup recreate it as a durable topic exchange",
                        if info.durable {
                            "durable "
                        } else {
                            "transient "
                        },
                        info.kind
                    ),
                });
            }
            report.record(what, Change::Unchanged);
        }
        _ => return Err(api.refused(&format!("read {what}"), &r)),
    }

    // Queues.
    let existing: Vec<QueueInfo> = api
        .expect_ok(
            Method::Get,
            &format!("/queues/{vhost}?columns=name,arguments,durable,auto_delete"),
            None,
            &format!("list the queues of {}", spec.vhost),
        )?
        .answer(SERVICE, "list queues")?;
    let existing: BTreeMap<&str, &QueueInfo> =
        existing.iter().map(|q| (q.name.as_str(), q)).collect();
    let declare = |q: &QueueSpec| {
        api.expect_ok(
            Method::Put,
            &format!("/queues/{vhost}/{}", seg(&q.name)),
            Some(&json!({"durable": true, "auto_delete": false, "arguments": queue_arguments(q)})),
            &format!("declare queue {}", q.name),
        )
    };
    let delete_if_empty = |name: &str| -> Result<bool, SetupError> {
        let r = api.send(
            Method::Delete,
            &format!("/queues/{vhost}/{}?if-empty=true", seg(name)),
            None,
        )?;
        match r.status {
            s if (200..300).contains(&s) => Ok(true),
            404 => Ok(true),
            // 400 "not empty" (the server checks atomically).
            400 => Ok(false),
            _ => Err(api.refused(&format!("delete queue {name}"), &r)),
        }
    };
    for q in &spec.queues {
        let what = format!("queue {}", q.name);
        match existing.get(q.name.as_str()) {
            None => {
                declare(q)?;
                report.record(what, Change::Created);
            }
            Some(info)
                if info.arguments == queue_arguments(q) && info.durable && !info.auto_delete =>
            {
                report.record(what, Change::Unchanged)
            }
            Some(info) => {
                // Queue arguments are immutable: recreate the queue, only when it is empty.
                if !delete_if_empty(&q.name)? {
                    return Err(SetupError::Refused {
                        service: SERVICE,
                        action: format!("change the arguments of {what}"),
                        detail: format!(
                            "it has messages; its arguments are {}, the registry wants {}: drain it, then re-run",
                            json!(info.arguments),
                            json!(queue_arguments(q))
                        ),
                    });
                }
                declare(q)?;
                report.record(what, Change::Updated);
            }
        }
    }
    let wanted_queues: BTreeSet<&str> = spec.queues.iter().map(|q| q.name.as_str()).collect();
    for name in existing.keys().filter(|n| !wanted_queues.contains(*n)) {
        if delete_if_empty(name)? {
            report.record(format!("queue {name}"), Change::Deleted);
        } else {
            tracing::warn!(queue = %name, "no longer in the registry but not empty: kept");
            report.record(format!("queue {name} (not empty, kept)"), Change::Unchanged);
        }
    }

    // Bindings from the exchange to the queues.
    let bindings: Vec<BindingInfo> = api
        .expect_ok(
            Method::Get,
            &format!("/exchanges/{vhost}/{exchange}/bindings/source"),
            None,
            &format!("list the bindings of {}", spec.exchange),
        )?
        .answer(SERVICE, "list bindings")?;
    let wanted: BTreeSet<(&str, &str)> = spec
        .queues
        .iter()
        .flat_map(|q| q.routing_keys.iter().map(|k| (q.name.as_str(), k.as_str())))
        .collect();
    let mut present = BTreeSet::new();
    for b in &bindings {
        let key = (b.destination.as_str(), b.routing_key.as_str());
        if b.destination_type == "queue" && wanted.contains(&key) {
            present.insert(key);
            continue;
        }
        let kind = if b.destination_type == "queue" {
            "q"
        } else {
            "e"
        };
        api.expect_ok(
            Method::Delete,
            &format!(
                "/bindings/{vhost}/e/{exchange}/{kind}/{}/{}",
                seg(&b.destination),
                // The properties key is already URL-encoded by the server.
                b.properties_key
            ),
            None,
            &format!("delete binding {} -> {}", b.routing_key, b.destination),
        )?;
        report.record(
            format!("binding {} -> {}", b.routing_key, b.destination),
            Change::Deleted,
        );
    }
    for (queue, key) in &wanted {
        let what = format!("binding {key} -> {queue}");
        if present.contains(&(*queue, *key)) {
            report.record(what, Change::Unchanged);
            continue;
        }
        api.expect_ok(
            Method::Post,
            &format!("/bindings/{vhost}/e/{exchange}/q/{}", seg(queue)),
            Some(&json!({"routing_key": key, "arguments": {}})),
            &format!("create {what}"),
        )?;
        report.record(what, Change::Created);
    }
    Ok(report)
}

/// Deletes the tenant's user and vhost (with everything in it) and its secret-store entry.
/// The caller has checked that the tenant is due for deletion.
pub fn teardown(
    spec: &RabbitSpec,
    admin: &Admin,
    store: &dyn SecretStore,
    retry: &Policy,
) -> Result<Report, SetupError> {
    let api = client(spec, admin, retry);
    let mut report = Report::default();
    for (what, path) in [
        (
            format!("user {}", spec.user),
            format!("/users/{}", seg(&spec.user)),
        ),
        (
            format!("vhost {}", spec.vhost),
            format!("/vhosts/{}", seg(&spec.vhost)),
        ),
    ] {
        let r = api.send(Method::Delete, &path, None)?;
        match r.status {
            404 => report.record(what, Change::Unchanged),
            _ if r.ok() => report.record(what, Change::Deleted),
            _ => return Err(api.refused(&format!("delete {what}"), &r)),
        }
    }
    report.record(
        format!("secret {}", spec.secret_key),
        Change::deleted_if(store.delete(&spec.secret_key)?),
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hashes() {
        // Salt 0x01020304, password "abc": base64(salt ‖ sha256(salt ‖ "abc")).
        let salt = [1u8, 2, 3, 4];
        let mut input = salt.to_vec();
        input.extend_from_slice(b"abc");
        let mut raw = salt.to_vec();
        raw.extend_from_slice(&Sha256::digest(&input));
        let hash = base64::engine::general_purpose::STANDARD.encode(raw);
        assert!(password_matches(
            "rabbit_password_hashing_sha256",
            &hash,
            "abc"
        ));
        assert!(!password_matches(
            "rabbit_password_hashing_sha256",
            &hash,
            "abd"
        ));
        assert!(!password_matches(
            "rabbit_password_hashing_md5",
            &hash,
            "abc"
        ));
        assert!(!password_matches(
            "rabbit_password_hashing_sha256",
            "!!",
            "abc"
        ));
    }
}
