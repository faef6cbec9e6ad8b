//! Billing webhook payloads: raw JSON bytes → typed, checked events. Pure; never panics on
//! any input (property-tested). Unknown fields are ignored (billing systems add fields);
//! missing fields and wrong types are reported with the dotted path of the offending field.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::IntakeError;
use crate::strict_json::{self, json_type, truncate};

/// The three events the billing system sends, one route each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    Created,
    Updated,
    Cancelled,
}

impl EventKind {
    /// From the last segment of `/api/v1/provisioning/webhooks/<route>`.
    pub fn from_route(route: &str) -> Option<Self> {
        match route {
            "subscription-created" => Some(Self::Created),
            "subscription-updated" => Some(Self::Updated),
            "subscription-cancelled" => Some(Self::Cancelled),
            _ => None,
        }
    }

    /// The `event` value the payload must carry.
    pub fn event_name(self) -> &'static str {
        match self {
            Self::Created => "subscription.created",
            Self::Updated => "subscription.updated",
            Self::Cancelled => "subscription.cancelled",
        }
    }

    pub fn from_event_name(name: &str) -> Option<Self> {
        [Self::Created, Self::Updated, Self::Cancelled]
            .into_iter()
            .find(|k| k.event_name() == name)
    }

    /// Label value in metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Cancelled => "cancelled",
        }
    }
}

/// One checked billing event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The payload's `id`, or `derived:<fingerprint>` when the billing system sends none
    /// (the seed's payloads have none): the same content is then the same event.
    pub id: String,
    pub timestamp: DateTime<Utc>,
    pub subscription_id: String,
    pub body: EventBody,
    /// 16 hex digits over everything the event says (kind, subscription, timestamp, body):
    /// the same id with another fingerprint is not a redelivery.
    pub fingerprint: String,
}

impl Event {
    fn new(
        id: Option<String>,
        timestamp: DateTime<Utc>,
        subscription_id: String,
        body: EventBody,
    ) -> Self {
        let fingerprint = fingerprint(&subscription_id, &timestamp, &body);
        Event {
            id: id.unwrap_or_else(|| format!("derived:{fingerprint}")),
            timestamp,
            subscription_id,
            body,
            fingerprint,
        }
    }

    pub fn kind(&self) -> EventKind {
        match self.body {
            EventBody::Created(_) => EventKind::Created,
            EventBody::Updated(_) => EventKind::Updated,
            EventBody::Cancelled(_) => EventKind::Cancelled,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventBody {
    Created(Created),
    Updated(Updated),
    Cancelled(Cancelled),
}

/// `subscription.created`: a new paying customer.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    pub company_name: String,
    pub admin_email: String,
    pub billing_email: String,
    pub tier: String,
    pub region: String,
}

/// `subscription.updated`: a tier change (upgrade or downgrade), and/or a cancelled
/// subscription reinstated (`data.status: "active"`).
#[derive(Debug, Clone, PartialEq)]
pub struct Updated {
    pub tier: String,
    /// When given, must be the subscription's tenant.
    pub tenant_id: Option<String>,
    /// `data.status`: `active` says the subscription is active again (a cancelled tenant
    /// before its deletion date is reinstated). Absent: a tier change only.
    pub reinstated: bool,
}

/// `subscription.cancelled`: start of the grace period.
#[derive(Debug, Clone, PartialEq)]
pub struct Cancelled {
    pub effective_date: DateTime<Utc>,
    pub reason: Option<String>,
    /// When given, must be the subscription's tenant.
    pub tenant_id: Option<String>,
}

// --- wire format -------------------------------------------------------------------------
//
// The payload is read into a JSON value by a strict reader (an object naming the same key
// twice is refused: two JSON parsers may read two different events from such a body), then
// walked by hand, so that every refusal is said in the API's terms — the field's dotted path
// and the JSON type expected — and never in a library's ("invalid type: sequence, expected
// struct Envelope" is what a derived deserializer says about `[…]`, which it would even
// accept as a positional struct).

/// The body as a JSON value: 400 `malformed_json` when it is not JSON (or is ambiguous).
fn read_json(body: &[u8]) -> Result<Value, IntakeError> {
    strict_json::read(body).map_err(IntakeError::MalformedJson)
}

/// One JSON object of the payload and its dotted path (`""` for the body itself). Unknown
/// keys are ignored (billing systems add fields).
struct Fields<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Fields<'a> {
    /// The body: it must be an object (the event envelope).
    fn root(v: &'a Value) -> Result<Self, IntakeError> {
        match v {
            Value::Object(map) => Ok(Fields {
                map,
                path: String::new(),
            }),
            other => Err(IntakeError::invalid_opt(
                None,
                format!(
                    "the body must be a JSON object (the event), got {}",
                    json_type(other)
                ),
            )),
        }
    }

    fn path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// A required member: "`data.plan` is missing" otherwise.
    fn required(&self, key: &str, expected: &str) -> Result<&'a Value, IntakeError> {
        match self.map.get(key) {
            Some(v) if !v.is_null() => Ok(v),
            _ => {
                let path = self.path(key);
                Err(IntakeError::invalid(
                    &path,
                    format!("`{path}` is missing: expected {expected}"),
                ))
            }
        }
    }

    fn wrong_type(&self, key: &str, expected: &str, got: &Value) -> IntakeError {
        let path = self.path(key);
        IntakeError::invalid(
            &path,
            format!("`{path}` must be {expected}, got {}", json_type(got)),
        )
    }

    fn object(&self, key: &str) -> Result<Fields<'a>, IntakeError> {
        match self.required(key, "an object")? {
            Value::Object(map) => Ok(Fields {
                map,
                path: self.path(key),
            }),
            other => Err(self.wrong_type(key, "an object", other)),
        }
    }

    fn string(&self, key: &str) -> Result<String, IntakeError> {
        match self.required(key, "a string")? {
            Value::String(s) => Ok(s.clone()),
            other => Err(self.wrong_type(key, "a string", other)),
        }
    }

    /// An optional string: absent and `null` are the same.
    fn optional_string(&self, key: &str) -> Result<Option<String>, IntakeError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.wrong_type(key, "a string", other)),
        }
    }

    /// An RFC 3339 date and time with an offset, e.g. `2025-01-15T10:00:00Z`.
    fn time(&self, key: &str) -> Result<DateTime<Utc>, IntakeError> {
        let s = self.string(key)?;
        DateTime::parse_from_rfc3339(s.trim())
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| {
                let path = self.path(key);
                IntakeError::invalid(
                    &path,
                    format!(
                        "`{path}` must be a date and time such as `2025-01-15T10:00:00Z` (RFC 3339), got `{}`",
                        truncate(&s)
                    ),
                )
            })
    }
}

/// The envelope every event shares: `id` (optional), `event`, `timestamp`, `data`.
struct Envelope<'a> {
    id: Option<String>,
    event: String,
    timestamp: DateTime<Utc>,
    data: Fields<'a>,
}

fn envelope(body: &Value) -> Result<Envelope<'_>, IntakeError> {
    let root = Fields::root(body)?;
    Ok(Envelope {
        id: root.optional_string("id")?,
        event: root.string("event")?,
        timestamp: root.time("timestamp")?,
        data: root.object("data")?,
    })
}

/// Parses the body of a request to the route of `kind`.
pub fn parse(kind: EventKind, body: &[u8]) -> Result<Event, IntakeError> {
    let json = read_json(body)?;
    let e = envelope(&json)?;
    let (id, timestamp) = check_envelope(kind, &e)?;
    let d = &e.data;
    match kind {
        EventKind::Created => {
            let sub = check_subscription(d.string("subscription_id")?)?;
            let customer = d.object("customer")?;
            let name = check_name(customer.string("name")?)?;
            let admin = check_email(customer.string("email")?, "data.customer.email")?;
            let billing = match customer.optional_string("billing_email")? {
                Some(b) => check_email(b, "data.customer.billing_email")?,
                None => admin.clone(),
            };
            let tier = check_word(d.object("plan")?.string("tier")?, "data.plan.tier")?;
            let region = check_word(
                d.object("metadata")?.string("region")?,
                "data.metadata.region",
            )?;
            Ok(Event::new(
                id,
                timestamp,
                sub,
                EventBody::Created(Created {
                    company_name: name,
                    admin_email: admin,
                    billing_email: billing,
                    tier,
                    region,
                }),
            ))
        }
        EventKind::Updated => {
            let sub = check_subscription(d.string("subscription_id")?)?;
            let tier = check_word(d.object("plan")?.string("tier")?, "data.plan.tier")?;
            let tenant_id = d
                .optional_string("tenant_id")?
                .map(|t| check_word(t, "data.tenant_id"))
                .transpose()?;
            let reinstated = match d.optional_string("status")?.as_deref() {
                None => false,
                Some("active") => true,
                Some(other) => {
                    return Err(IntakeError::invalid(
                        "data.status",
                        format!(
                            "`data.status` must be `active` (the subscription is active again) when given, got `{}`",
                            truncate(other)
                        ),
                    ));
                }
            };
            Ok(Event::new(
                id,
                timestamp,
                sub,
                EventBody::Updated(Updated {
                    tier,
                    tenant_id,
                    reinstated,
                }),
            ))
        }
        EventKind::Cancelled => {
            let sub = check_subscription(d.string("subscription_id")?)?;
            let tenant_id = d
                .optional_string("tenant_id")?
                .map(|t| check_word(t, "data.tenant_id"))
                .transpose()?;
            let reason = match d.optional_string("cancellation_reason")? {
                Some(r) if r.chars().any(char::is_control) || r.chars().count() > 200 => {
                    return Err(IntakeError::invalid(
                        "data.cancellation_reason",
                        "must be at most 200 printable characters",
                    ));
                }
                Some(r) if r.trim().is_empty() => None,
                other => other,
            };
            let effective_date = d.time("effective_date")?;
            Ok(Event::new(
                id,
                timestamp,
                sub,
                EventBody::Cancelled(Cancelled {
                    effective_date,
                    reason,
                    tenant_id,
                }),
            ))
        }
    }
}

fn check_envelope(
    kind: EventKind,
    e: &Envelope<'_>,
) -> Result<(Option<String>, DateTime<Utc>), IntakeError> {
    if e.event != kind.event_name() {
        return Err(IntakeError::invalid(
            "event",
            format!(
                "this route takes `{}` events, got `{}`",
                kind.event_name(),
                truncate(&e.event)
            ),
        ));
    }
    let id = match &e.id {
        None => None,
        Some(id) => Some(check_token(id.clone(), "id")?),
    };
    Ok((id, e.timestamp))
}

/// Over the checked fields, each prefixed by its length, so two different events never
/// share the hashed input.
fn fingerprint(sub: &str, t: &DateTime<Utc>, body: &EventBody) -> String {
    let mut h = Sha256::new();
    let mut field = |s: &str| {
        h.update((s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    let ts = t.to_rfc3339();
    match body {
        EventBody::Created(c) => {
            for f in [
                EventKind::Created.event_name(),
                sub,
                &ts,
                &c.company_name,
                &c.admin_email,
                &c.billing_email,
                &c.tier,
                &c.region,
            ] {
                field(f);
            }
        }
        EventBody::Updated(u) => {
            for f in [
                EventKind::Updated.event_name(),
                sub,
                &ts,
                &u.tier,
                u.tenant_id.as_deref().unwrap_or(""),
            ] {
                field(f);
            }
            // Only when given, so the fingerprints of events recorded before reinstatement
            // existed stay the same.
            if u.reinstated {
                field("status=active");
            }
        }
        EventBody::Cancelled(c) => {
            let eff = c.effective_date.to_rfc3339();
            for f in [
                EventKind::Cancelled.event_name(),
                sub,
                &ts,
                &eff,
                c.reason.as_deref().unwrap_or(""),
                c.tenant_id.as_deref().unwrap_or(""),
            ] {
                field(f);
            }
        }
    }
    hex::encode(h.finalize())[..16].to_owned()
}

/// The registry's rule: 1 to 128 letters, digits, `_`, `-` or `.`.
fn check_subscription(s: String) -> Result<String, IntakeError> {
    check_token(s, "data.subscription_id")
}

fn check_token(s: String, field: &str) -> Result<String, IntakeError> {
    if s.is_empty()
        || s.len() > 128
        || !s
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
    {
        return Err(IntakeError::invalid(
            field,
            "expected 1 to 128 letters, digits, `_`, `-` or `.`",
        ));
    }
    Ok(s)
}

/// Tier, region, tenant id: a lower-case word such as `premium` or `us-east`.
fn check_word(s: String, field: &str) -> Result<String, IntakeError> {
    if s.is_empty()
        || s.len() > 63
        || !s
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        return Err(IntakeError::invalid(
            field,
            format!(
                "expected a lower-case name such as `premium` or `us-east`, got `{}`",
                truncate(&s)
            ),
        ));
    }
    Ok(s)
}

/// Any Unicode company name (the seed's ASCII-only rule rejects real customers such as
/// "Café Crème"): 1 to 200 printable characters, trimmed.
fn check_name(s: String) -> Result<String, IntakeError> {
    let t = s.trim();
    if t.is_empty() || t.chars().count() > 200 || t.chars().any(char::is_control) {
        return Err(IntakeError::invalid(
            "data.customer.name",
            "must be 1 to 200 printable characters",
        ));
    }
    Ok(t.to_owned())
}

fn check_email(s: String, field: &str) -> Result<String, IntakeError> {
    let t = s.trim();
    if !crate::registry::rules::is_email(t) {
        return Err(IntakeError::invalid(
            field,
            format!(
                "expected an address such as `admin@example.com`, got `{}`",
                truncate(t)
            ),
        ));
    }
    Ok(t.to_owned())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) const SEED_CREATED: &str = r#"{
      "event": "subscription.created",
      "timestamp": "2025-01-15T10:00:00Z",
      "data": {
        "subscription_id": "sub_abc123",
        "customer": {"name": "ABC Corporation", "email": "admin@abc-corp.com",
                     "billing_email": "billing@abc-corp.com"},
        "plan": {"tier": "premium", "price": 124.99, "currency": "EUR", "billing_period": "monthly"},
        "metadata": {"company_size": "50-200", "industry": "retail", "region": "us-east"}
      }
    }"#;

    const SEED_CANCELLED: &str = r#"{
      "event": "subscription.cancelled",
      "timestamp": "2025-06-15T10:00:00Z",
      "data": {
        "subscription_id": "sub_abc123",
        "tenant_id": "abc-corporation-7f3a9c",
        "cancellation_reason": "downgrade",
        "effective_date": "2025-07-15T00:00:00Z"
      }
    }"#;

    #[test]
    fn parses_the_seed_payloads() {
        let e = parse(EventKind::Created, SEED_CREATED.as_bytes()).unwrap();
        assert_eq!(e.subscription_id, "sub_abc123");
        assert!(e.id.starts_with("derived:"));
        let EventBody::Created(c) = &e.body else {
            panic!("wrong body")
        };
        assert_eq!(c.company_name, "ABC Corporation");
        assert_eq!(c.billing_email, "billing@abc-corp.com");
        assert_eq!((c.tier.as_str(), c.region.as_str()), ("premium", "us-east"));

        let e = parse(EventKind::Cancelled, SEED_CANCELLED.as_bytes()).unwrap();
        let EventBody::Cancelled(c) = &e.body else {
            panic!("wrong body")
        };
        assert_eq!(c.reason.as_deref(), Some("downgrade"));
        assert_eq!(c.tenant_id.as_deref(), Some("abc-corporation-7f3a9c"));
        assert_eq!(c.effective_date.to_rfc3339(), "2025-07-15T00:00:00+00:00");
    }

    #[test]
    fn derived_ids_are_stable_and_explicit_ids_win() {
        let a = parse(EventKind::Created, SEED_CREATED.as_bytes()).unwrap();
        let b = parse(EventKind::Created, SEED_CREATED.as_bytes()).unwrap();
        assert_eq!(a.id, b.id);
        let with_id = SEED_CREATED.replacen('{', r#"{"id": "evt_1","#, 1);
        assert_eq!(
            parse(EventKind::Created, with_id.as_bytes()).unwrap().id,
            "evt_1"
        );
    }

    #[test]
    fn errors_name_the_field() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("{", "malformed_json", None),
            (
                &SEED_CREATED.replace(r#""email": "admin@abc-corp.com","#, ""),
                "invalid_field",
                Some("data.customer.email"),
            ),
            (
                &SEED_CREATED.replace(r#""tier": "premium""#, r#""tier": 3"#),
                "invalid_field",
                Some("data.plan.tier"),
            ),
            (
                &SEED_CREATED.replace("admin@abc-corp.com", "not-an-email"),
                "invalid_field",
                Some("data.customer.email"),
            ),
            (
                &SEED_CREATED.replace("subscription.created", "subscription.cancelled"),
                "invalid_field",
                Some("event"),
            ),
            (
                &SEED_CREATED.replace("2025-01-15T10:00:00Z", "yesterday"),
                "invalid_field",
                Some("timestamp"),
            ),
            ("[]", "invalid_field", None),
        ];
        for (body, code, field) in cases {
            let e = parse(EventKind::Created, body.as_bytes()).unwrap_err();
            assert_eq!(e.code(), *code, "{body}: {e}");
            assert_eq!(e.field(), *field, "{body}: {e}");
        }
    }

    /// Every refusal names the field and the JSON type in the API's terms; no deserializer
    /// wording reaches the sender, and a positional array is never read as an event.
    #[test]
    fn refusals_speak_the_apis_terms() {
        let with_data = |data: &str| {
            format!(
                r#"{{"event": "subscription.created", "timestamp": "2025-01-15T10:00:00Z", "data": {data}}}"#
            )
        };
        let cases: Vec<(String, &str, Option<&str>, &str)> = vec![
            (
                "[]".into(),
                "invalid_field",
                None,
                "the body must be a JSON object (the event), got an array",
            ),
            (
                r#"[null, "subscription.created", "2025-01-15T10:00:00Z", {}]"#.into(),
                "invalid_field",
                None,
                "the body must be a JSON object (the event), got an array",
            ),
            (
                "\"subscription.created\"".into(),
                "invalid_field",
                None,
                "the body must be a JSON object (the event), got a string",
            ),
            (
                with_data(r#"["sub_1", {"name": "A", "email": "a@example.com"}]"#),
                "invalid_field",
                Some("data"),
                "`data` must be an object, got an array",
            ),
            (
                SEED_CREATED.replace(r#""tier": "premium""#, r#""tier": 3"#),
                "invalid_field",
                Some("data.plan.tier"),
                "`data.plan.tier` must be a string, got a number",
            ),
            (
                SEED_CREATED.replace(r#""plan": {"#, r#""plan": [], "x": {"#),
                "invalid_field",
                Some("data.plan"),
                "`data.plan` must be an object, got an array",
            ),
            (
                SEED_CREATED.replace(r#""email": "admin@abc-corp.com","#, ""),
                "invalid_field",
                Some("data.customer.email"),
                "`data.customer.email` is missing: expected a string",
            ),
            (
                SEED_CREATED.replacen('{', r#"{"id": 42,"#, 1),
                "invalid_field",
                Some("id"),
                "`id` must be a string, got a number",
            ),
            (
                SEED_CREATED.replace("2025-01-15T10:00:00Z", "yesterday"),
                "invalid_field",
                Some("timestamp"),
                "`timestamp` must be a date and time such as `2025-01-15T10:00:00Z` (RFC 3339), got `yesterday`",
            ),
            (
                SEED_CREATED.replacen('{', r#"{"event": "subscription.cancelled","#, 1),
                "malformed_json",
                None,
                "the key `event` appears twice in one object at line 2 column 13",
            ),
            (
                r#"{"event": "#.into(),
                "malformed_json",
                None,
                "the body ends before its JSON value does (line 1, column 10)",
            ),
        ];
        for (body, code, field, message) in cases {
            let e = parse(EventKind::Created, body.as_bytes()).unwrap_err();
            assert_eq!((e.code(), e.field()), (code, field), "{body}: {e}");
            let text = e.to_string();
            assert!(
                text.ends_with(message),
                "{body}:\n{text}\nshould end with\n{message}"
            );
            for library in [
                "invalid type",
                "struct",
                "u32",
                "DuplicateKeyPolicy",
                "Envelope",
            ] {
                assert!(!text.contains(library), "{text}");
            }
        }
    }

    #[test]
    fn unicode_names_are_accepted() {
        let body = SEED_CREATED.replace("ABC Corporation", "  Café Crème & Fils  ");
        let e = parse(EventKind::Created, body.as_bytes()).unwrap();
        let EventBody::Created(c) = e.body else {
            panic!("wrong body")
        };
        assert_eq!(c.company_name, "Café Crème & Fils");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            for kind in [EventKind::Created, EventKind::Updated, EventKind::Cancelled] {
                let _ = parse(kind, &bytes);
            }
        }

        #[test]
        fn arbitrary_field_values_never_panic(
            name in any::<String>(), email in any::<String>(), tier in any::<String>(),
            sub in any::<String>(), ts in any::<String>(),
        ) {
            let body = serde_json::json!({
                "event": "subscription.created", "timestamp": ts,
                "data": {"subscription_id": sub, "customer": {"name": name, "email": email},
                         "plan": {"tier": tier}, "metadata": {"region": "us-east"}}
            });
            let bytes = serde_json::to_vec(&body).unwrap();
            if let Err(e) = parse(EventKind::Created, &bytes) {
                prop_assert!(e.field().is_some(), "{e}");
            }
        }
    }
}
