//! The intake's decisions: the committed registry as the intake sees it ([`State`]), and
//! what one checked [`Event`] does to it at a given time ([`State::apply`]): an [`Applied`]
//! decision (the [`Outcome`], the tenant as it now is, the change to commit) or an
//! [`IntakeError`]. No HTTP here: `provisio serve` maps decisions to statuses and bodies.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Duration, Utc};
use serde::{Serialize, Serializer};

use super::error::{IntakeError, StateError};
use super::event::{self, Event, EventBody, EventKind};
use super::tenant_file::{self, NewCancellation, NewTenant, render_new_tenant, timestamp};
use crate::diagnostic::Diagnostic;
use crate::lifecycle::{self, Decision, LifecycleView, Report};
use crate::naming;
use crate::registry::layout::{self, classify};
use crate::registry::rules::{self, tenant_domain};
use crate::registry::{self, Platform, Product, Sources, Tenant, TenantStatus, Tier};

/// Default grace period between a cancellation and the earliest deletion.
pub const DEFAULT_GRACE_DAYS: i64 = 30;

/// A file to write, relative to the registry root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: String,
    pub text: String,
}

/// What an accepted event did to the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A new tenant file: the subscription is provisioned.
    Created,
    /// An existing tenant file changed (tier, cancellation).
    Changed,
    /// The registry already says what the event asks (a retried or redelivered event):
    /// nothing to commit.
    Unchanged,
}

/// An accepted event: what it did, the tenant as it now is, and the change to commit (none
/// when the outcome is [`Outcome::Unchanged`]).
#[derive(Debug, Clone)]
pub struct Applied {
    pub outcome: Outcome,
    pub tenant: TenantView,
    pub change: Option<Change>,
    /// One line for the commit message (empty when nothing changed).
    pub summary: String,
    /// For a lifecycle report or view: the tenant's lifecycle records after it.
    pub lifecycle: Option<LifecycleView>,
    /// For a lifecycle report: its JSON, for the commit message's body.
    pub detail: Option<String>,
}

/// What `serve`'s single writer is asked to do: apply a billing event, record a Job's
/// lifecycle report, or read a tenant's lifecycle records (from the same state, so a Job
/// never reads a view older than a report it got an answer for).
#[derive(Debug, Clone)]
pub enum Submission {
    Event(Event),
    Report { tenant: String, report: Report },
    View { tenant: String },
}

/// Commit-message trailer naming each billing event a commit carries:
/// `Provisio-Event: <event id> <event name> <subscription id> <fingerprint>`.
pub const EVENT_TRAILER: &str = "Provisio-Event:";
/// Commit-message trailer naming each lifecycle report a commit carries:
/// `Provisio-Report: <tenant> <kind> <report id> <fingerprint>`.
pub const REPORT_TRAILER: &str = "Provisio-Report:";

impl Submission {
    /// The trailer naming it in a commit (none for a view, which commits nothing).
    pub fn trailer(&self) -> Option<String> {
        match self {
            Submission::Event(e) => Some(format!(
                "{EVENT_TRAILER} {} {} {} {}",
                e.id,
                e.kind().event_name(),
                e.subscription_id,
                e.fingerprint
            )),
            Submission::Report { tenant, report } => Some(format!(
                "{REPORT_TRAILER} {tenant} {} {} {}",
                report.kind().as_str(),
                report.id,
                report.fingerprint()
            )),
            Submission::View { .. } => None,
        }
    }

    /// A report (or a view) rather than a billing event.
    pub fn is_lifecycle(&self) -> bool {
        !matches!(self, Submission::Event(_))
    }
}

/// A report id found in the registry's history: the tenant it was for and its fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRecord {
    pub tenant: String,
    /// The report's kind (`welcome-sent`, …).
    pub kind: String,
    pub fingerprint: String,
}

/// The tenant as an accepted event leaves it: the fields the sender needs to know where and
/// what the tenant is. Serializes (field order included) to the webhook's success body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantView {
    pub tenant_id: String,
    pub namespace: String,
    pub domain: String,
    pub subscription_id: String,
    pub tier: String,
    pub region: String,
    pub status: TenantStatus,
    /// The tier before a tier change (only on the decision that changed it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_tier: Option<String>,
    /// The cancellation's dates (only on a cancellation's decision).
    #[serde(flatten)]
    pub cancellation: Option<CancellationDates>,
}

/// The dates of a cancelled tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CancellationDates {
    #[serde(serialize_with = "rfc3339_seconds")]
    pub cancellation_requested: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339_seconds")]
    pub deletion_date: DateTime<Utc>,
}

/// Dates as the registry writes them ([`timestamp`]).
fn rfc3339_seconds<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&timestamp(*t))
}

#[derive(Debug, Clone)]
struct Entry {
    path: String,
    text: String,
    tenant: Tenant,
}

/// What an event id did, so that a redelivery is recognised (and an old event replayed
/// after a newer one is never applied again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub kind: EventKind,
    pub subscription: String,
    /// [`Event::fingerprint`]; `None` when the history did not record it.
    pub fingerprint: Option<String>,
}

/// The committed registry as the intake sees it, with the indexes uniqueness needs.
/// Validation runs the loader on the shared files plus the one candidate tenant, so its cost
/// does not grow with the number of tenants; cross-tenant rules (unique id, subscription,
/// domain) are checked here against the indexes, and a new tenant is placed in a shard with
/// room.
pub struct State {
    /// `platform.yaml`, `tiers.yaml`, `products/*` as committed (for the full-loader cross
    /// check in debug builds).
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    shared: Sources,
    platform: Platform,
    tiers: Vec<String>,
    tier_specs: BTreeMap<String, Tier>,
    /// Product name → (file, product), as the loader's tenant rules take them.
    products: BTreeMap<String, (String, Product)>,
    tenants: BTreeMap<String, Entry>,
    by_subscription: HashMap<String, String>,
    by_domain: HashMap<String, String>,
    /// Region → number of tenants in each of its shards (index = shard).
    shard_counts: HashMap<String, Vec<u32>>,
    events: HashMap<String, EventRecord>,
    /// Report ids by (tenant, id): each tenant's Jobs choose their own ids, so one tenant's
    /// report can never make another's look reused.
    reports: HashMap<(String, String), ReportRecord>,
    grace: Duration,
}

impl State {
    /// From the registry files (as committed). Refuses a registry with any diagnostic: the
    /// intake must not add tenants next to a broken file (it could be a hidden collision).
    pub fn new(sources: Sources, grace: Duration) -> Result<Self, StateError> {
        let loaded = registry::load_sources(sources);
        if !loaded.report.is_empty() {
            let mut diags = loaded.report.diagnostics.clone();
            diags.sort();
            diags.dedup();
            return Err(StateError::Invalid {
                rendered: loaded.report.render(),
                lines: diags.iter().map(ToString::to_string).collect(),
            });
        }
        let sources = loaded.report.sources;
        let Some(reg) = loaded.registry else {
            return Err(StateError::Invalid {
                rendered: "the registry did not load".to_owned(),
                lines: vec!["the registry did not load".to_owned()],
            });
        };
        let shared: Sources = sources
            .iter()
            .filter(|(k, _)| classify(k).is_shared())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut state = State {
            shared,
            tiers: reg.tiers.keys().cloned().collect(),
            tier_specs: reg.tiers,
            products: reg
                .products
                .into_iter()
                .map(|(name, p)| (name.clone(), (layout::product_path(&name), p)))
                .collect(),
            platform: reg.platform,
            tenants: BTreeMap::new(),
            by_subscription: HashMap::new(),
            by_domain: HashMap::new(),
            shard_counts: HashMap::new(),
            events: HashMap::new(),
            reports: HashMap::new(),
            grace,
        };
        for (id, tenant) in reg.tenants {
            let path = layout::tenant_path(&id);
            let text = sources.get(&path).cloned().unwrap_or_default();
            state.index(Entry { path, text, tenant });
        }
        Ok(state)
    }

    pub fn tenant_count(&self) -> usize {
        self.tenants.len()
    }

    /// Remembers an event id found in the registry's history.
    pub fn record_event(&mut self, id: String, record: EventRecord) {
        self.events.insert(id, record);
    }

    pub fn knows_event(&self, id: &str) -> bool {
        self.events.contains_key(id)
    }

    /// Remembers a report id found in the registry's history.
    pub fn record_report(&mut self, id: String, record: ReportRecord) {
        self.reports.insert((record.tenant.clone(), id), record);
    }

    /// What `submission` does at `now` (see [`State::apply`] for events).
    pub fn submit(&mut self, s: &Submission, now: DateTime<Utc>) -> Result<Applied, IntakeError> {
        match s {
            Submission::Event(e) => self.apply(e, now),
            Submission::Report { tenant, report } => self.apply_report(tenant, report, now),
            Submission::View { tenant } => {
                let e = self
                    .tenants
                    .get(tenant)
                    .ok_or_else(|| IntakeError::UnknownTenant(tenant.clone()))?;
                let mut a = self.unchanged(EventKind::Updated, &e.tenant);
                a.lifecycle = Some(LifecycleView::of(&e.tenant, now));
                Ok(a)
            }
        }
    }

    /// Records a Job's report on tenant `tenant` at `now` (serve's clock): the transition
    /// table of [`lifecycle::decide`], a repeat (same id and content; or an effect already
    /// recorded), or a refusal. The new file is validated like any other before it is
    /// committed.
    pub fn apply_report(
        &mut self,
        tenant: &str,
        report: &Report,
        now: DateTime<Utc>,
    ) -> Result<Applied, IntakeError> {
        let entry = self
            .tenants
            .get(tenant)
            .ok_or_else(|| IntakeError::UnknownTenant(tenant.to_owned()))?;
        let fingerprint = report.fingerprint();
        let repeat = |state: &State, entry: &Entry| {
            let mut a = state.unchanged(EventKind::Updated, &entry.tenant);
            a.lifecycle = Some(LifecycleView::of(&entry.tenant, now));
            a
        };
        let policy = lifecycle::Policy {
            rollback_after: self.platform.lifecycle.rollback.after_failed_attempts,
            archive_bucket: &self.platform.lifecycle.archive.bucket.value,
        };
        if let Some(seen) = self.reports.get(&(tenant.to_owned(), report.id.clone())) {
            if seen.fingerprint == fingerprint {
                return Ok(repeat(self, entry));
            }
            // The Jobs' ids are `<kind>:<Job uid>`: the same id for the same tenant and kind
            // is the same Job again (a pod retried after its answer was lost), whose own `at`
            // (or a reason read again) may differ. Its report is recorded: a repeat.
            if seen.kind == report.kind().as_str() {
                return Ok(repeat(self, entry));
            }
            return Err(IntakeError::Conflict {
                code: "report_id_reused",
                field: Some("id"),
                message: format!(
                    "report id `{}` was already used by tenant `{tenant}` for a `{}` report",
                    report.id, seen.kind
                ),
            });
        }
        let change = match lifecycle::decide(&entry.tenant, report, now, &policy)? {
            Decision::Repeat => return Ok(repeat(self, entry)),
            Decision::Record(c) => c,
        };
        let (path, text) = (entry.path.clone(), entry.text.clone());
        let new_text = tenant_file::with_change(&text, &change)?;
        let t = self.validate(tenant, &path, &new_text)?;
        let view = self.view(EventKind::Updated, &t);
        let lifecycle = LifecycleView::of(&t, now);
        let change_out = self.replace(path, new_text, t);
        self.reports.insert(
            (tenant.to_owned(), report.id.clone()),
            ReportRecord {
                tenant: tenant.to_owned(),
                kind: report.kind().as_str().to_owned(),
                fingerprint,
            },
        );
        Ok(Applied {
            outcome: Outcome::Changed,
            tenant: view,
            change: Some(change_out),
            summary: change.summary,
            lifecycle: Some(lifecycle),
            detail: Some(report.to_pretty_json()),
        })
    }

    fn index(&mut self, e: Entry) {
        let t = &e.tenant;
        let id = t.id.value.clone();
        self.by_subscription
            .insert(t.subscription.value.clone(), id.clone());
        // A removed tenant (a tombstone) keeps its id and subscription, and frees its hosts
        // and its place in its shard.
        let live = !t.is_removed();
        if live {
            for host in rules::tenant_hosts(&self.platform, t) {
                self.by_domain.insert(host, id.clone());
            }
        }
        if live && self.platform.regions.contains_key(&t.region.value) {
            let counts = self.shard_counts.entry(t.region.value.clone()).or_default();
            let shard = t.shard() as usize;
            if counts.len() <= shard {
                counts.resize(shard + 1, 0);
            }
            counts[shard] += 1;
        }
        self.tenants.insert(id, e);
    }

    /// Decides what `ev` does at time `now`, and updates the state as if its change were
    /// committed. On a failed commit the caller must rebuild the state from the repository.
    pub fn apply(&mut self, ev: &Event, now: DateTime<Utc>) -> Result<Applied, IntakeError> {
        if let Some(rec) = self.events.get(&ev.id) {
            if rec.kind != ev.kind()
                || rec.subscription != ev.subscription_id
                || rec
                    .fingerprint
                    .as_ref()
                    .is_some_and(|f| *f != ev.fingerprint)
            {
                return Err(IntakeError::Conflict {
                    code: "event_id_reused",
                    field: Some("id"),
                    message: format!(
                        "event id `{}` was already used for a different {} of subscription `{}`",
                        ev.id,
                        rec.kind.event_name(),
                        rec.subscription
                    ),
                });
            }
            // A redelivery: never applied twice, answered with the tenant as it is now.
            let id = self
                .by_subscription
                .get(&ev.subscription_id)
                .cloned()
                .ok_or_else(|| IntakeError::UnknownSubscription(ev.subscription_id.clone()))?;
            return Ok(self.unchanged(ev.kind(), &self.tenants[&id].tenant));
        }
        let applied = match &ev.body {
            EventBody::Created(c) => self.created(ev, c)?,
            EventBody::Updated(u) => self.updated(ev, u, now)?,
            EventBody::Cancelled(c) => self.cancelled(ev, c, now)?,
        };
        self.events.insert(
            ev.id.clone(),
            EventRecord {
                kind: ev.kind(),
                subscription: ev.subscription_id.clone(),
                fingerprint: Some(ev.fingerprint.clone()),
            },
        );
        Ok(applied)
    }

    fn created(&mut self, ev: &Event, c: &event::Created) -> Result<Applied, IntakeError> {
        let candidates = naming::tenant_id_candidates(&c.company_name, &ev.subscription_id);
        if let Some(existing) = self.by_subscription.get(&ev.subscription_id) {
            // Already provisioned: a retried delivery when it names the same customer (the
            // registry's id stands, even one written by hand before the intake existed)…
            let t = &self.tenants[existing].tenant;
            if let Some(removed) = &t.removed {
                return Err(IntakeError::Conflict {
                    code: "subscription_exists",
                    field: Some("data.subscription_id"),
                    message: format!(
                        "subscription `{}` belonged to tenant `{existing}`, removed on {}; a tenant id is never reused: a returning customer subscribes anew (a new subscription id)",
                        ev.subscription_id,
                        timestamp(removed.value)
                    ),
                });
            }
            if !candidates.contains(existing) && t.name.trim() != c.company_name {
                return Err(IntakeError::Conflict {
                    code: "subscription_exists",
                    field: Some("data.subscription_id"),
                    message: format!(
                        "subscription `{}` already belongs to tenant `{existing}` ({})",
                        ev.subscription_id, t.name
                    ),
                });
            }
            // …and the same plan: a created event never changes an existing tenant, so a
            // different tier or region is a conflict, not a silent no-op.
            if t.tier.value != c.tier {
                return Err(IntakeError::Conflict {
                    code: "subscription_exists",
                    field: Some("data.plan.tier"),
                    message: format!(
                        "subscription `{}` already has tenant `{existing}` at tier `{}`, not `{}`; \
                         a tier change is a subscription-updated event",
                        ev.subscription_id, t.tier.value, c.tier
                    ),
                });
            }
            if t.region.value != c.region {
                return Err(IntakeError::Conflict {
                    code: "subscription_exists",
                    field: Some("data.metadata.region"),
                    message: format!(
                        "subscription `{}` already has tenant `{existing}` in region `{}`, not `{}`; \
                         a tenant never changes region",
                        ev.subscription_id, t.region.value, c.region
                    ),
                });
            }
            return Ok(self.unchanged(EventKind::Created, t));
        }
        // The first candidate no other subscription holds: the same event always gets the
        // same id, and a second customer whose slug and 6-digit suffix collide with an
        // existing tenant's gets a longer suffix instead of a refusal.
        let base = &self.platform.base_domain.value;
        let Some(id) = candidates
            .iter()
            .find(|id| {
                !self.tenants.contains_key(*id)
                    && !self.by_domain.contains_key(&format!("{id}.{base}"))
                    && !self.by_domain.contains_key(&format!("www.{id}.{base}"))
            })
            .cloned()
        else {
            return Err(IntakeError::Conflict {
                code: "tenant_id_collision",
                field: Some("data.customer.name"),
                message: format!(
                    "tenant id `{}` and every longer variant of it (up to {} hex digits) are already taken",
                    candidates[0],
                    naming::MAX_SUFFIX_LEN
                ),
            });
        };
        self.check_tier(&c.tier)?;
        if !self.platform.regions.contains_key(&c.region) {
            return Err(IntakeError::UnknownRegion {
                region: c.region.clone(),
                known: one_of(self.platform.regions.keys()),
            });
        }
        // Placement: the region's first ApplicationSet shard with room, recorded in the file
        // and never changed after (so nobody moves when others come or go, or when the limit
        // grows). There is always one: onboarding never waits for a re-shard.
        let counts = self.shard_counts.get(&c.region);
        let max = self.platform.argocd.max_tenants_per_shard.value;
        let shard = rules::first_shard_with_room(
            |n| counts.and_then(|c| c.get(n as usize)).copied().unwrap_or(0),
            max,
        );
        if shard > naming::MAX_SHARD {
            // Every ApplicationSet name a region can have is full: the platform's problem.
            return Err(IntakeError::NoCapacity(format!(
                "region `{}` has no room for a new tenant: its {} ApplicationSets hold their \
                 maximum ({max} tenants each); the platform team must raise \
                 `argocd.maxTenantsPerShard` in platform.yaml",
                c.region,
                naming::MAX_SHARD + 1
            )));
        }
        let text = render_new_tenant(&NewTenant {
            event_id: &ev.id,
            id: &id,
            name: &c.company_name,
            tier: &c.tier,
            region: &c.region,
            shard,
            subscription: &ev.subscription_id,
            admin: &c.admin_email,
            billing: &c.billing_email,
            created: ev.timestamp,
        })?;
        let path = layout::tenant_path(&id);
        let tenant = self.validate(&id, &path, &text)?;
        for host in rules::tenant_hosts(&self.platform, &tenant) {
            if let Some(other) = self.by_domain.get(&host) {
                return Err(IntakeError::Conflict {
                    code: "domain_collision",
                    field: Some("data.customer.name"),
                    message: format!("host `{host}` is already used by tenant `{other}`"),
                });
            }
        }
        let view = self.view(EventKind::Created, &tenant);
        self.index(Entry {
            path: path.clone(),
            text: text.clone(),
            tenant,
        });
        Ok(Applied {
            outcome: Outcome::Created,
            tenant: view,
            change: Some(Change { path, text }),
            summary: format!(
                "provision {id} ({}, {}, {})",
                c.tier, c.region, ev.subscription_id
            ),
            lifecycle: None,
            detail: None,
        })
    }

    fn updated(
        &mut self,
        ev: &Event,
        u: &event::Updated,
        now: DateTime<Utc>,
    ) -> Result<Applied, IntakeError> {
        let entry = self.lookup(ev, u.tenant_id.as_deref())?;
        self.check_tier(&u.tier)?;
        let t = &entry.tenant;
        if u.reinstated
            && let Some(change) = lifecycle::reinstate(t, now)?
        {
            // Back to active (or provisioning) with nothing lost; a tier in the same event
            // applies too.
            let previous = t.tier.value.clone();
            let (path, text) = (entry.path.clone(), entry.text.clone());
            let id = t.id.value.clone();
            let mut new_text = tenant_file::with_change(&text, &change)?;
            let mut summary = change.summary;
            if previous != u.tier {
                new_text = tenant_file::with_tier(&new_text, &u.tier)?;
                summary.push_str(&format!(", tier {previous} → {}", u.tier));
            }
            let tenant = self.validate(&id, &path, &new_text)?;
            let view = TenantView {
                previous_tier: (previous != u.tier).then_some(previous),
                ..self.view(EventKind::Updated, &tenant)
            };
            let change = self.replace(path, new_text, tenant);
            return Ok(Applied {
                outcome: Outcome::Changed,
                tenant: view,
                change: Some(change),
                summary,
                lifecycle: None,
                detail: None,
            });
        }
        if t.tier.value == u.tier {
            return Ok(self.unchanged(EventKind::Updated, t));
        }
        if matches!(
            t.status.value,
            TenantStatus::Deprovisioning | TenantStatus::Purging | TenantStatus::Removed
        ) {
            return Err(IntakeError::Conflict {
                code: "tenant_deprovisioning",
                field: Some("data.subscription_id"),
                message: format!(
                    "tenant `{}` is being deprovisioned ({}); its tier no longer changes",
                    t.id.value,
                    t.status.value.as_str()
                ),
            });
        }
        let previous = t.tier.value.clone();
        let (path, text) = (entry.path.clone(), entry.text.clone());
        let new_text = tenant_file::with_tier(&text, &u.tier)?;
        let id = t.id.value.clone();
        let tenant = self.validate(&id, &path, &new_text)?;
        let view = TenantView {
            previous_tier: Some(previous.clone()),
            ..self.view(EventKind::Updated, &tenant)
        };
        let change = self.replace(path, new_text, tenant);
        Ok(Applied {
            outcome: Outcome::Changed,
            tenant: view,
            change: Some(change),
            summary: format!("change tier of {id}: {previous} → {}", u.tier),
            lifecycle: None,
            detail: None,
        })
    }

    fn cancelled(
        &mut self,
        ev: &Event,
        c: &event::Cancelled,
        now: DateTime<Utc>,
    ) -> Result<Applied, IntakeError> {
        let entry = self.lookup(ev, c.tenant_id.as_deref())?;
        let t = &entry.tenant;
        if t.status.value == TenantStatus::Deprovisioning && t.cancellation.is_some() {
            // Already cancelled: the first cancellation's dates stand.
            return Ok(self.unchanged(EventKind::Cancelled, t));
        }
        if matches!(
            t.status.value,
            TenantStatus::Purging | TenantStatus::Removed
        ) {
            return Err(IntakeError::Conflict {
                code: "tenant_deprovisioning",
                field: Some("data.subscription_id"),
                message: format!(
                    "tenant `{}` is already being removed ({})",
                    t.id.value,
                    t.status.value.as_str()
                ),
            });
        }
        let deletion = deletion_date(c.effective_date, ev.timestamp, now, self.grace);
        let (path, text) = (entry.path.clone(), entry.text.clone());
        let id = t.id.value.clone();
        let new_text = tenant_file::with_cancellation(
            &text,
            &NewCancellation {
                requested: ev.timestamp,
                deletion,
                reason: c.reason.as_deref(),
            },
        )?;
        let tenant = self.validate(&id, &path, &new_text)?;
        let view = self.view(EventKind::Cancelled, &tenant);
        let change = self.replace(path, new_text, tenant);
        Ok(Applied {
            outcome: Outcome::Changed,
            tenant: view,
            change: Some(change),
            summary: format!(
                "deprovision {id}: deletion not before {}",
                timestamp(deletion)
            ),
            lifecycle: None,
            detail: None,
        })
    }

    fn lookup(&self, ev: &Event, claimed: Option<&str>) -> Result<&Entry, IntakeError> {
        let id = self
            .by_subscription
            .get(&ev.subscription_id)
            .ok_or_else(|| IntakeError::UnknownSubscription(ev.subscription_id.clone()))?;
        if let Some(claimed) = claimed
            && claimed != id
        {
            return Err(IntakeError::Conflict {
                code: "tenant_mismatch",
                field: Some("data.tenant_id"),
                message: format!(
                    "subscription `{}` belongs to tenant `{id}`, not `{claimed}`",
                    ev.subscription_id
                ),
            });
        }
        Ok(&self.tenants[id])
    }

    fn check_tier(&self, tier: &str) -> Result<(), IntakeError> {
        if self.tiers.iter().any(|t| t == tier) {
            Ok(())
        } else {
            Err(IntakeError::UnknownTier {
                tier: tier.to_owned(),
                known: one_of(self.tiers.iter()),
            })
        }
    }

    /// Validates one tenant file with the loader's own pieces: its parser
    /// ([`registry::parse::parse`]) and its tenant rules ([`rules::check_tenants`]) against the
    /// platform, tiers and products parsed once at start (re-parsing them for every event
    /// cost about 1 ms each). Debug builds cross-check the verdict with the whole loader
    /// ([`registry::load_sources`] on the shared files plus this file).
    fn validate(&self, id: &str, path: &str, text: &str) -> Result<Tenant, IntakeError> {
        let result = self.validate_with_rules(id, path, text);
        #[cfg(debug_assertions)]
        {
            let mut sources = self.shared.clone();
            sources.insert(path.to_owned(), text.to_owned());
            let full = registry::load_sources(sources);
            assert_eq!(
                full.report.diagnostics.first().map(rejection),
                result.as_ref().err().map(ToString::to_string),
                "the intake's validation disagrees with the registry loader on\n{text}"
            );
        }
        result
    }

    fn validate_with_rules(&self, id: &str, path: &str, text: &str) -> Result<Tenant, IntakeError> {
        let tenant = registry::parse::parse::<Tenant>(path, text)
            .map_err(|d| IntakeError::Rejected(rejection_message(&d)))?;
        let ctx = rules::TenantContext {
            platform: &self.platform,
            tiers: &self.tier_specs,
            products: &self.products,
        };
        let mut one = BTreeMap::from([(id.to_owned(), (path.to_owned(), tenant))]);
        let (mut broken, mut diags) = (BTreeSet::new(), Vec::new());
        rules::check_tenants(&ctx, &mut one, &mut broken, &mut diags);
        if let Some(d) = diags.first() {
            return Err(IntakeError::Rejected(rejection_message(d)));
        }
        one.remove(id)
            .map(|(_, t)| t)
            .ok_or_else(|| IntakeError::Internal(format!("tenant `{id}` did not load back")))
    }

    /// Records an edited tenant file and returns the change to commit.
    fn replace(&mut self, path: String, text: String, tenant: Tenant) -> Change {
        // Only tier, status and cancellation change in place: id, subscription, domain,
        // region and shard (the indexed fields) stay.
        let change = Change {
            path: path.clone(),
            text: text.clone(),
        };
        self.tenants
            .insert(tenant.id.value.clone(), Entry { path, text, tenant });
        change
    }

    fn unchanged(&self, kind: EventKind, t: &Tenant) -> Applied {
        Applied {
            outcome: Outcome::Unchanged,
            tenant: self.view(kind, t),
            change: None,
            summary: String::new(),
            lifecycle: None,
            detail: None,
        }
    }

    /// The tenant as it is, as an event of `kind` reports it (a cancellation's dates only
    /// to a cancellation).
    fn view(&self, kind: EventKind, t: &Tenant) -> TenantView {
        let id = &t.id.value;
        TenantView {
            tenant_id: id.clone(),
            namespace: naming::namespace(&self.platform.namespace_prefix.value, id),
            domain: tenant_domain(&self.platform, t),
            subscription_id: t.subscription.value.clone(),
            tier: t.tier.value.clone(),
            region: t.region.value.clone(),
            status: t.status.value,
            previous_tier: None,
            cancellation: t
                .cancellation
                .as_ref()
                .filter(|_| kind == EventKind::Cancelled)
                .map(|c| CancellationDates {
                    cancellation_requested: c.requested,
                    deletion_date: c.deletion.value,
                }),
        }
    }
}

fn rejection_message(d: &Diagnostic) -> String {
    if d.line > 0 {
        format!("{} ({}:{}:{})", d.message, d.file, d.line, d.column)
    } else {
        d.message.clone()
    }
}

#[cfg(debug_assertions)]
fn rejection(d: &Diagnostic) -> String {
    IntakeError::Rejected(rejection_message(d)).to_string()
}

/// The earliest moment a cancelled tenant may be deleted: the billing system's effective
/// date, but never before `now + grace` nor before the cancellation itself.
pub fn deletion_date(
    effective: DateTime<Utc>,
    requested: DateTime<Utc>,
    now: DateTime<Utc>,
    grace: Duration,
) -> DateTime<Utc> {
    effective.max(now + grace).max(requested)
}

fn one_of<'a>(known: impl Iterator<Item = &'a String>) -> String {
    known
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::parse;
    use serde_json::json;

    fn example() -> Sources {
        crate::testing::example_sources()
    }

    fn state() -> State {
        State::new(example(), Duration::days(DEFAULT_GRACE_DAYS)).unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn now() -> DateTime<Utc> {
        at("2025-06-15T12:00:00Z")
    }

    fn created(name: &str, sub: &str) -> Event {
        created_in(name, sub, "eu-west")
    }

    fn created_in(name: &str, sub: &str, region: &str) -> Event {
        let body = json!({
            "event": "subscription.created", "timestamp": "2025-06-15T10:00:00Z",
            "data": {"subscription_id": sub,
                     "customer": {"name": name, "email": "a@example.com", "billing_email": "b@example.com"},
                     "plan": {"tier": "premium"}, "metadata": {"region": region}}
        });
        parse(EventKind::Created, body.to_string().as_bytes()).unwrap()
    }

    /// The shard a tenant file records.
    fn shard_in(text: &str) -> u32 {
        let t: Tenant = registry::parse::parse("t.yaml", text).unwrap();
        assert!(t.shard.is_some(), "the intake records the shard:\n{text}");
        t.shard()
    }

    /// Onboarding never waits for a human: with room for 5 tenants per ApplicationSet, 300
    /// subscriptions in one region are all accepted, each placed in the first shard with
    /// room (the 20,000-tenant proof of the same rule, without the intake's per-event YAML
    /// work, is `registry::rules`' `twenty_thousand_tenants_in_one_region_never_block`).
    #[test]
    fn the_intake_places_every_new_tenant_and_never_refuses_for_capacity() {
        let mut sources = example();
        crate::testing::replace_in(
            &mut sources,
            "platform.yaml",
            "maxTenantsPerShard: 500",
            "maxTenantsPerShard: 5",
        );
        let mut s = State::new(sources.clone(), Duration::days(DEFAULT_GRACE_DAYS)).unwrap();
        // The example's us-east holds abc-corporation in shard 0.
        let mut counts = vec![1u32];
        for i in 0..300 {
            let ev = created_in(&format!("Shop {i}"), &format!("sub_bulk_{i}"), "us-east");
            let a = s
                .apply(&ev, now())
                .unwrap_or_else(|e| panic!("tenant {i}: {e}"));
            assert_eq!(a.outcome, Outcome::Created);
            let change = a.change.unwrap();
            let shard = shard_in(&change.text) as usize;
            let first_with_room = counts.iter().position(|&n| n < 5).unwrap_or(counts.len());
            assert_eq!(shard, first_with_room, "tenant {i}");
            if counts.len() == shard {
                counts.push(0);
            }
            counts[shard] += 1;
            sources.insert(change.path, change.text);
        }
        assert_eq!(counts.len(), 61);
        assert!(counts[..60].iter().all(|&n| n == 5) && counts[60] == 1);
        // What the intake wrote is a valid registry: no ApplicationSet over the limit.
        let loaded = registry::load_sources(sources);
        assert!(loaded.report.is_empty(), "{}", loaded.report.render());
    }

    /// Placement is recorded, so nobody moves: when tenants leave (their files removed) and
    /// when the limit grows, every remaining tenant keeps its ApplicationSet; a newcomer fills
    /// the first shard with room, around the others.
    #[test]
    fn placement_is_sticky_when_tenants_leave_and_capacity_grows() {
        let with_max = |sources: &mut Sources, max: u32| {
            crate::testing::replace_in(
                sources,
                "platform.yaml",
                "maxTenantsPerShard: 500",
                &format!("maxTenantsPerShard: {max}"),
            );
        };
        let mut sources = example();
        with_max(&mut sources, 3);
        let mut s = State::new(sources.clone(), Duration::days(DEFAULT_GRACE_DAYS)).unwrap();
        let mut placed = BTreeMap::new();
        for i in 0..10 {
            let a = s
                .apply(
                    &created_in(&format!("Shop {i}"), &format!("sub_st_{i}"), "apac"),
                    now(),
                )
                .unwrap();
            let change = a.change.unwrap();
            placed.insert(a.tenant.tenant_id, shard_in(&change.text));
            sources.insert(change.path, change.text);
        }
        let shards: Vec<u32> = placed.values().copied().collect();
        let mut sorted = shards.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [0, 0, 0, 1, 1, 1, 2, 2, 2, 3]);
        let shard_of = |reg: &registry::Registry, id: &str| {
            crate::plan::plan_tenant(reg, &reg.tenants[id], now()).shard
        };
        let reg = registry::load_sources(sources.clone())
            .into_result()
            .unwrap();
        let before: BTreeMap<String, String> = placed
            .keys()
            .map(|id| (id.clone(), shard_of(&reg, id)))
            .collect();
        // Every shard-1 tenant leaves, and the limit grows.
        let leaving: Vec<String> = placed
            .iter()
            .filter(|(_, s)| **s == 1)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &leaving {
            sources.remove(&layout::tenant_path(id));
        }
        crate::testing::replace_in(
            &mut sources,
            "platform.yaml",
            "maxTenantsPerShard: 3",
            "maxTenantsPerShard: 50",
        );
        let reg = registry::load_sources(sources.clone())
            .into_result()
            .unwrap();
        for (id, set) in &before {
            if !leaving.contains(id) {
                assert_eq!(&shard_of(&reg, id), set, "{id} moved");
            }
        }
        // A newcomer goes to the first shard with room, the others stay where they are.
        let mut s = State::new(sources.clone(), Duration::days(DEFAULT_GRACE_DAYS)).unwrap();
        let a = s
            .apply(&created_in("Newcomer", "sub_st_new", "apac"), now())
            .unwrap();
        assert_eq!(shard_in(&a.change.unwrap().text), 0);
    }

    fn cancelled(sub: &str, effective: &str) -> Event {
        let body = json!({
            "event": "subscription.cancelled", "timestamp": "2025-06-15T10:00:00Z",
            "data": {"subscription_id": sub, "cancellation_reason": "too: expensive # really",
                     "effective_date": effective}
        });
        parse(EventKind::Cancelled, body.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn created_writes_a_valid_provisioning_tenant_and_is_idempotent() {
        let mut s = state();
        let ev = created("Café Crème & Fils", "sub_new1");
        let a = s.apply(&ev, now()).unwrap();
        assert_eq!(a.outcome, Outcome::Created);
        let id = naming::tenant_id("Café Crème & Fils", "sub_new1");
        assert!(id.starts_with("cafe-creme-fils-"), "{id}");
        assert_eq!(a.tenant.tenant_id, id);
        let change = a.change.unwrap();
        assert_eq!(change.path, format!("tenants/{id}.yaml"));
        assert!(
            change.text.contains("status: provisioning"),
            "{}",
            change.text
        );
        assert_eq!(a.tenant.namespace, format!("e-commerce-{id}"));
        assert_eq!(a.tenant.domain, format!("{id}.collectverything.com"));
        assert_eq!(a.tenant.status, TenantStatus::Provisioning);

        // The whole registry, with the new file, still loads without a diagnostic.
        let mut all = example();
        all.insert(change.path, change.text);
        assert!(registry::load_sources(all).report.is_empty());

        // Same event again: recognised by its id. Same subscription, new event id: by state.
        let again = s.apply(&ev, now()).unwrap();
        assert_eq!(
            (again.outcome, again.change.is_none()),
            (Outcome::Unchanged, true)
        );
        assert_eq!(again.tenant, a.tenant);
        let mut retry = created("Café Crème & Fils", "sub_new1");
        retry.id = "evt_other".to_owned();
        let r = s.apply(&retry, now()).unwrap();
        assert_eq!((r.outcome, r.change.is_none()), (Outcome::Unchanged, true));
    }

    #[test]
    fn collisions_are_conflicts() {
        let mut s = state();
        // The example registry's sub_abc123 belongs to abc-corporation-7f3a9c.
        let e = s
            .apply(&created("Other Name", "sub_abc123"), now())
            .unwrap_err();
        assert!(matches!(e, IntakeError::Conflict { .. }), "{e:?}");
        assert_eq!(e.code(), "subscription_exists");
        // An event id reused for another subscription.
        s.apply(&created("First", "sub_1"), now()).unwrap();
        let mut reuse = created("Second", "sub_2");
        reuse.id = created("First", "sub_1").id;
        let e = s.apply(&reuse, now()).unwrap_err();
        assert_eq!((e.code(), e.field()), ("event_id_reused", Some("id")));
        // The same explicit id and subscription with other content is not a redelivery.
        let mut a = created("Fourth", "sub_4");
        a.id = "evt_x".to_owned();
        s.apply(&a, now()).unwrap();
        let mut b = created("Fourth Renamed", "sub_4");
        b.id = "evt_x".to_owned();
        assert_eq!(s.apply(&b, now()).unwrap_err().code(), "event_id_reused");
    }

    /// Two customers whose names give the same slug and whose subscriptions give the same
    /// six hex digits (a constructed collision): the second gets a longer suffix of its own
    /// hash, the same one on every retry and after a restart, never a refusal.
    #[test]
    fn colliding_ids_get_a_longer_suffix_deterministically() {
        let (a, b) = ("sub_c566", "sub_c1748");
        assert_eq!(naming::tenant_suffix(a), naming::tenant_suffix(b));
        let mut s = state();
        let first = s.apply(&created("Acme Shop", a), now()).unwrap();
        assert_eq!(first.tenant.tenant_id, naming::tenant_id("Acme Shop", a));
        let second = s.apply(&created("ACME shop!", b), now()).unwrap();
        assert_eq!(second.outcome, Outcome::Created);
        assert_eq!(second.tenant.tenant_id, "acme-shop-44b01407");
        let mut retry = created("ACME shop!", b);
        retry.id = "evt_again".to_owned();
        let again = s.apply(&retry, now()).unwrap();
        assert_eq!(
            (again.outcome, again.tenant.tenant_id.as_str()),
            (Outcome::Unchanged, "acme-shop-44b01407")
        );
        // A fresh state from the committed files (a restart) decides the same.
        let mut sources = example();
        for a in [&first, &second] {
            let c = a.change.as_ref().unwrap();
            sources.insert(c.path.clone(), c.text.clone());
        }
        let mut restarted = State::new(sources, Duration::days(30)).unwrap();
        let r = restarted.apply(&retry, now()).unwrap();
        assert_eq!(r.tenant.tenant_id, "acme-shop-44b01407");
    }

    /// A customer whose name starts like an S3-reserved bucket prefix is onboarded, with an
    /// id whose buckets S3 accepts (the loader refuses an id that is not).
    #[test]
    fn a_name_that_starts_like_a_reserved_bucket_prefix_is_onboarded() {
        let mut s = state();
        let a = s
            .apply(&created("Sthree Ltd", "sub_sthree"), now())
            .unwrap();
        assert_eq!(a.outcome, Outcome::Created);
        assert!(
            a.tenant.tenant_id.starts_with("t-sthree-ltd-"),
            "{}",
            a.tenant.tenant_id
        );
    }

    /// A created event for a provisioned subscription must agree on the plan: another tier
    /// or region is a conflict naming the field, never a 200 that keeps the old values.
    #[test]
    fn created_again_with_another_plan_is_a_conflict() {
        let mut s = state();
        s.apply(&created("Acme", "sub_plan"), now()).unwrap();
        let mut tier = created("Acme", "sub_plan");
        if let EventBody::Created(c) = &mut tier.body {
            c.tier = "business".to_owned();
        }
        tier.id = "evt_tier".to_owned();
        let e = s.apply(&tier, now()).unwrap_err();
        assert_eq!(
            (e.code(), e.field()),
            ("subscription_exists", Some("data.plan.tier"))
        );
        assert!(e.to_string().contains("subscription-updated"), "{e}");
        let mut region = created("Acme", "sub_plan");
        if let EventBody::Created(c) = &mut region.body {
            c.region = "us-east".to_owned();
        }
        region.id = "evt_region".to_owned();
        let e = s.apply(&region, now()).unwrap_err();
        assert_eq!(
            (e.code(), e.field()),
            ("subscription_exists", Some("data.metadata.region"))
        );
    }

    /// A full region is the platform's capacity problem: `NoCapacity`, not a rejection of
    /// the event.
    #[test]
    fn a_full_region_is_no_capacity() {
        let mut sources = example();
        crate::testing::replace_in(
            &mut sources,
            "platform.yaml",
            "maxTenantsPerShard: 500",
            "maxTenantsPerShard: 1",
        );
        let mut s = State::new(sources, Duration::days(30)).unwrap();
        // Every shard name of the region holds its one tenant (as if 10,000 were placed).
        s.shard_counts.insert(
            "eu-west".to_owned(),
            vec![1; naming::MAX_SHARD as usize + 1],
        );
        let e = s.apply(&created("Acme", "sub_full"), now()).unwrap_err();
        assert!(matches!(e, IntakeError::NoCapacity(_)), "{e:?}");
        assert_eq!(
            (e.code(), e.field()),
            ("no_capacity", Some("data.metadata.region"))
        );
        assert!(e.to_string().contains("argocd.maxTenantsPerShard"), "{e}");
        assert_eq!(s.tenant_count(), 3);
    }

    #[test]
    fn unknown_tier_and_region_are_refused_with_their_field() {
        let mut s = state();
        let mut ev = created("Acme", "sub_x");
        if let EventBody::Created(c) = &mut ev.body {
            c.tier = "gold".to_owned();
        }
        let e = s.apply(&ev, now()).unwrap_err();
        assert_eq!(
            (e.code(), e.field()),
            ("unknown_tier", Some("data.plan.tier"))
        );
        let mut ev = created("Acme", "sub_x");
        if let EventBody::Created(c) = &mut ev.body {
            c.region = "mars".to_owned();
        }
        let e = s.apply(&ev, now()).unwrap_err();
        assert_eq!(e.code(), "unknown_region");
        assert_eq!(s.tenant_count(), 3);
    }

    #[test]
    fn tier_change_keeps_the_rest_of_the_file() {
        let mut s = state();
        let body = json!({"event": "subscription.updated", "timestamp": "2025-06-16T00:00:00Z",
            "data": {"subscription_id": "sub_abc123", "plan": {"tier": "business"}}});
        let ev = parse(EventKind::Updated, body.to_string().as_bytes()).unwrap();
        let a = s.apply(&ev, now()).unwrap();
        assert_eq!(a.outcome, Outcome::Changed);
        assert_eq!(a.tenant.tier, "business");
        assert_eq!(a.tenant.previous_tier.as_deref(), Some("premium"));
        let text = a.change.unwrap().text;
        assert!(
            text.starts_with("# The customer of the onboarding workflow"),
            "{text}"
        );
        assert!(text.contains("tier: business"));
        assert!(text.contains("domain: abc-corporation.collectverything.com"));
        // Downgrade of a deprovisioning tenant: refused.
        let body = json!({"event": "subscription.updated", "timestamp": "2025-06-16T00:00:00Z",
            "data": {"subscription_id": "sub_nord789", "plan": {"tier": "standard"}}});
        let ev = parse(EventKind::Updated, body.to_string().as_bytes()).unwrap();
        assert_eq!(
            s.apply(&ev, now()).unwrap_err().code(),
            "tenant_deprovisioning"
        );
        // Unknown subscription.
        let body = json!({"event": "subscription.updated", "timestamp": "2025-06-16T00:00:00Z",
            "data": {"subscription_id": "sub_nope", "plan": {"tier": "standard"}}});
        let ev = parse(EventKind::Updated, body.to_string().as_bytes()).unwrap();
        assert!(matches!(
            s.apply(&ev, now()).unwrap_err(),
            IntakeError::UnknownSubscription(sub) if sub == "sub_nope"
        ));
    }

    #[test]
    fn cancellation_never_deletes_before_the_grace_period() {
        let mut s = state();
        // Effective tomorrow: the grace period wins.
        let a = s
            .apply(&cancelled("sub_abc123", "2025-06-16T00:00:00Z"), now())
            .unwrap();
        assert_eq!(a.outcome, Outcome::Changed);
        assert_eq!(a.tenant.status, TenantStatus::Deprovisioning);
        let dates = a.tenant.cancellation.unwrap();
        assert_eq!(dates.deletion_date, at("2025-07-15T12:00:00Z"));
        assert_eq!(dates.cancellation_requested, at("2025-06-15T10:00:00Z"));
        let text = a.change.unwrap().text;
        let mut all = example();
        all.insert(
            "tenants/abc-corporation-7f3a9c.yaml".to_owned(),
            text.clone(),
        );
        let reg = registry::load_sources(all).into_result().unwrap();
        let t = &reg.tenants["abc-corporation-7f3a9c"];
        assert_eq!(
            t.cancellation.as_ref().unwrap().reason.as_deref(),
            Some("too: expensive # really")
        );
        // A second cancellation (new event id) changes nothing.
        let mut again = cancelled("sub_abc123", "2026-01-01T00:00:00Z");
        again.id = "evt_2".to_owned();
        let b = s.apply(&again, now()).unwrap();
        assert_eq!((b.outcome, b.change.is_none()), (Outcome::Unchanged, true));
        assert_eq!(b.tenant.cancellation, Some(dates));
    }

    #[test]
    fn deletion_date_is_the_latest_of_the_three() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let g = Duration::days(30);
        let now = t("2025-06-15T00:00:00Z");
        assert_eq!(
            deletion_date(t("2025-09-01T00:00:00Z"), now, now, g),
            t("2025-09-01T00:00:00Z")
        );
        assert_eq!(
            deletion_date(t("2025-06-01T00:00:00Z"), now, now, g),
            t("2025-07-15T00:00:00Z")
        );
        assert_eq!(
            deletion_date(now, t("2026-01-01T00:00:00Z"), now, Duration::zero()),
            t("2026-01-01T00:00:00Z")
        );
    }

    /// The view serializes to the webhook's success body: these bytes are the answers
    /// `docs/openapi.json` and the serve tests pin (key order included).
    #[test]
    fn the_view_serializes_to_the_answer_bytes() {
        let mut s = state();
        let a = s.apply(&created("Acme", "sub_view"), now()).unwrap();
        let id = &a.tenant.tenant_id;
        assert_eq!(
            serde_json::to_string(&a.tenant).unwrap(),
            format!(
                r#"{{"tenant_id":"{id}","namespace":"e-commerce-{id}","domain":"{id}.collectverything.com","subscription_id":"sub_view","tier":"premium","region":"eu-west","status":"provisioning"}}"#
            )
        );
        let body = json!({"event": "subscription.updated", "timestamp": "2025-06-16T00:00:00Z",
            "data": {"subscription_id": "sub_abc123", "plan": {"tier": "business"}}});
        let ev = parse(EventKind::Updated, body.to_string().as_bytes()).unwrap();
        let a = s.apply(&ev, now()).unwrap();
        assert_eq!(
            serde_json::to_string(&a.tenant).unwrap(),
            r#"{"tenant_id":"abc-corporation-7f3a9c","namespace":"e-commerce-abc-corporation-7f3a9c","domain":"abc-corporation.collectverything.com","subscription_id":"sub_abc123","tier":"business","region":"us-east","status":"active","previous_tier":"premium"}"#
        );
        let a = s
            .apply(&cancelled("sub_abc123", "2025-09-01T00:00:00Z"), now())
            .unwrap();
        assert_eq!(
            serde_json::to_string(&a.tenant).unwrap(),
            r#"{"tenant_id":"abc-corporation-7f3a9c","namespace":"e-commerce-abc-corporation-7f3a9c","domain":"abc-corporation.collectverything.com","subscription_id":"sub_abc123","tier":"business","region":"us-east","status":"deprovisioning","cancellation_requested":"2025-06-15T10:00:00Z","deletion_date":"2025-09-01T00:00:00Z"}"#
        );
        // A later update of the cancelled tenant reports no cancellation dates (as before).
        let body = json!({"event": "subscription.updated", "timestamp": "2025-06-17T00:00:00Z",
            "data": {"subscription_id": "sub_abc123", "plan": {"tier": "business"}}});
        let ev = parse(EventKind::Updated, body.to_string().as_bytes()).unwrap();
        let a = s.apply(&ev, now()).unwrap();
        assert_eq!(a.outcome, Outcome::Unchanged);
        assert!(
            !serde_json::to_string(&a.tenant)
                .unwrap()
                .contains("deletion_date")
        );
    }
}
