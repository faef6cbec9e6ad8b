//! The text of `tenants/<id>.yaml` as the intake writes it: a new file for a new
//! subscription ([`render_new_tenant`]), and in-place edits of an existing one (tier,
//! cancellation) that keep every other key and the file's leading comment.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::error::IntakeError;
use crate::registry::TenantStatus;

/// RFC 3339, seconds, `Z`: the format of the registry's dates.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The fields of a new tenant file.
pub struct NewTenant<'a> {
    pub event_id: &'a str,
    pub id: &'a str,
    pub name: &'a str,
    pub tier: &'a str,
    pub region: &'a str,
    /// The ApplicationSet shard of the region it is placed in (`tenants-<region>-<nn>`).
    pub shard: u32,
    pub subscription: &'a str,
    pub admin: &'a str,
    pub billing: &'a str,
    pub created: DateTime<Utc>,
}

#[derive(Serialize)]
struct TenantFile<'a> {
    id: &'a str,
    name: &'a str,
    tier: &'a str,
    region: &'a str,
    shard: u32,
    subscription: &'a str,
    contacts: ContactsFile<'a>,
    created: String,
    status: &'static str,
}

#[derive(Serialize)]
struct ContactsFile<'a> {
    admin: &'a str,
    billing: &'a str,
}

/// `tenants/<id>.yaml` for a new subscription, `status: provisioning`, with a comment naming
/// the event (the event id is a checked token: no line breaks).
pub fn render_new_tenant(t: &NewTenant<'_>) -> Result<String, IntakeError> {
    let file = TenantFile {
        id: t.id,
        name: t.name,
        tier: t.tier,
        region: t.region,
        shard: t.shard,
        subscription: t.subscription,
        contacts: ContactsFile {
            admin: t.admin,
            billing: t.billing,
        },
        created: timestamp(t.created),
        status: TenantStatus::Provisioning.as_str(),
    };
    let yaml = serde_saphyr::to_string(&file)
        .map_err(|e| IntakeError::Internal(format!("cannot write YAML: {e}")))?;
    Ok(format!(
        "# Written by provisio serve from billing event {}.\n{yaml}",
        t.event_id
    ))
}

/// The tenant file with another `tier`.
pub(crate) fn with_tier(text: &str, tier: &str) -> Result<String, IntakeError> {
    edit_tenant(text, |m| {
        m.insert("tier".to_owned(), json!(tier));
    })
}

/// What a cancellation writes into the tenant file.
pub(crate) struct NewCancellation<'a> {
    pub requested: DateTime<Utc>,
    pub deletion: DateTime<Utc>,
    pub reason: Option<&'a str>,
}

/// The tenant file with `status: deprovisioning` and its `cancellation` block.
pub(crate) fn with_cancellation(
    text: &str,
    c: &NewCancellation<'_>,
) -> Result<String, IntakeError> {
    edit_tenant(text, |m| {
        m.insert(
            "status".to_owned(),
            json!(TenantStatus::Deprovisioning.as_str()),
        );
        let mut cancellation = Map::new();
        cancellation.insert("requested".to_owned(), json!(timestamp(c.requested)));
        cancellation.insert("deletion".to_owned(), json!(timestamp(c.deletion)));
        if let Some(r) = c.reason {
            cancellation.insert("reason".to_owned(), json!(r));
        }
        m.insert("cancellation".to_owned(), Value::Object(cancellation));
    })
}

/// The tenant file with a lifecycle change's records written (keys removed first, then set
/// in order; a key already present keeps its place, a new one goes at the end).
pub(crate) fn with_change(text: &str, c: &crate::lifecycle::Change) -> Result<String, IntakeError> {
    edit_tenant(text, |m| {
        for k in &c.remove {
            m.shift_remove(*k);
        }
        for (k, v) in &c.set {
            m.insert((*k).to_owned(), v.clone());
        }
    })
}

/// [`with_change`] for callers outside the intake (`provisio rollback` edits a tenant file
/// the same way).
pub fn with_lifecycle_change(
    text: &str,
    c: &crate::lifecycle::Change,
) -> Result<String, IntakeError> {
    with_change(text, c)
}

/// Changes top-level keys of an existing tenant file, keeping every other key (including
/// ones this version does not know) in order, and the file's leading comment lines. Other
/// comments are lost (the YAML emitter does not keep them).
fn edit_tenant(
    text: &str,
    edit: impl FnOnce(&mut Map<String, Value>),
) -> Result<String, IntakeError> {
    let mut value: Value = serde_saphyr::from_str(text)
        .map_err(|e| IntakeError::Internal(format!("cannot read the tenant file back: {e}")))?;
    let Value::Object(map) = &mut value else {
        return Err(IntakeError::Internal(
            "the tenant file is not a mapping".to_owned(),
        ));
    };
    edit(map);
    let yaml = serde_saphyr::to_string(&value)
        .map_err(|e| IntakeError::Internal(format!("cannot write YAML: {e}")))?;
    let header: String = text
        .lines()
        .take_while(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    Ok(format!("{header}{yaml}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::naming;
    use crate::registry;
    use proptest::prelude::*;

    fn now() -> DateTime<Utc> {
        "2025-06-15T12:00:00Z".parse().unwrap()
    }

    const FILE: &str = "# first comment\n# second comment\nid: t-1\ntier: standard\n# lost\nfuture: {keep: me}\nstatus: active\n";

    #[test]
    fn a_tier_edit_keeps_the_header_and_unknown_keys_in_order() {
        let text = with_tier(FILE, "premium").unwrap();
        assert_eq!(
            text,
            "# first comment\n# second comment\nid: t-1\ntier: premium\nfuture:\n  keep: me\nstatus: active\n"
        );
    }

    #[test]
    fn a_cancellation_sets_the_status_and_appends_its_block() {
        let c = NewCancellation {
            requested: now(),
            deletion: "2025-07-15T12:00:00Z".parse().unwrap(),
            reason: Some("too: expensive # really"),
        };
        let text = with_cancellation(FILE, &c).unwrap();
        assert!(text.starts_with("# first comment\n"), "{text}");
        assert!(text.contains("status: deprovisioning\n"), "{text}");
        assert!(
            text.contains(
                "cancellation:\n  requested: \"2025-06-15T12:00:00Z\"\n  deletion: \"2025-07-15T12:00:00Z\"\n"
            ),
            "{text}"
        );
        let back: Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(
            back["cancellation"]["reason"],
            json!("too: expensive # really")
        );
        let without = with_cancellation(FILE, &NewCancellation { reason: None, ..c }).unwrap();
        assert!(!without.contains("reason"), "{without}");
    }

    #[test]
    fn a_file_that_is_not_a_mapping_is_an_internal_error() {
        let e = with_tier("- a\n- b\n", "premium").unwrap_err();
        assert_eq!(e.code(), "internal");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Any printable name survives YAML and the loader unchanged.
        #[test]
        fn names_round_trip_through_the_tenant_file(name in "\\PC{1,60}") {
            prop_assume!(!name.trim().is_empty());
            let name = name.trim();
            let id = naming::tenant_id(name, "sub_p");
            let text = render_new_tenant(&NewTenant {
                event_id: "evt_p", id: &id, name, tier: "premium", region: "us-east", shard: 0,
                subscription: "sub_p", admin: "a@example.com", billing: "b@example.com",
                created: now(),
            }).unwrap();
            let mut all = crate::testing::example_sources();
            all.insert(format!("tenants/{id}.yaml"), text.clone());
            let reg = registry::load_sources(all).into_result().map_err(|r| {
                TestCaseError::fail(format!("{}\n{text}", r.render()))
            })?;
            prop_assert_eq!(&reg.tenants[&id].name, name);
        }
    }
}
