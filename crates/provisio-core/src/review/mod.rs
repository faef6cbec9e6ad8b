//! What a registry change does to the external systems, for a reviewer (`provisio plan`): the
//! platform trees of two registries are rendered and their objects compared by (group, kind,
//! namespace, name); each difference is classified by what it does to GitLab, Grafana,
//! Artifactory or Kubernetes — destroys data, prunes it, removes access or settings, releases
//! an object (kept, no longer managed), changes, arms destruction, or creates — and [`text`]
//! prints it with the losses first.
//!
//! Pure: a function of the two registries. Objects of `argocd/` are not part of it (`check`
//! shows them), nor are tenant trees (the caller says whether they change too).

#[cfg(test)]
mod properties;
pub mod text;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::registry::Registry;
use crate::render::RenderError;
use crate::render::platform::{Object, Owner, render_platform};

/// The external system an object lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum System {
    GitLab,
    Grafana,
    Artifactory,
    Kubernetes,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::GitLab => "GitLab",
            System::Grafana => "Grafana",
            System::Artifactory => "Artifactory",
            System::Kubernetes => "Kubernetes",
        }
    }
}

/// What a kind of object is to its system, which decides what removing it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Holds data (groups, projects, repositories, folders, dashboards, namespaces).
    Data,
    /// An identity others refer to (Grafana teams, JFrog groups).
    Identity,
    /// Gives access (SAML links, members, folder and JFrog permissions, role bindings).
    Grant,
    /// A setting of a namespace (quota, limit range).
    Setting,
}

/// Where an object sits in its system's listing: (system, kind order, sort key).
fn placement(o: &Object) -> (System, u8, Class) {
    match (o.group(), o.kind()) {
        ("groups.gitlab.m.crossplane.io", "Group") => (System::GitLab, 0, Class::Data),
        ("projects.gitlab.m.crossplane.io", "Project") => (System::GitLab, 1, Class::Data),
        ("projects.gitlab.m.crossplane.io", "ProtectedBranch") => (System::GitLab, 2, Class::Data),
        ("groups.gitlab.m.crossplane.io", "SamlGroupLink") => (System::GitLab, 3, Class::Grant),
        ("groups.gitlab.m.crossplane.io", "Member") => (System::GitLab, 4, Class::Grant),
        ("oss.grafana.m.crossplane.io", "Team") => (System::Grafana, 0, Class::Identity),
        ("oss.grafana.m.crossplane.io", "Folder") => (System::Grafana, 1, Class::Data),
        ("oss.grafana.m.crossplane.io", "FolderPermission") => (System::Grafana, 2, Class::Grant),
        ("oss.grafana.m.crossplane.io", "Dashboard") => (System::Grafana, 3, Class::Data),
        ("remote.artifactory.jfrog.m.crossplane.io", _) => (System::Artifactory, 0, Class::Data),
        ("local.artifactory.jfrog.m.crossplane.io", _) => (System::Artifactory, 1, Class::Data),
        ("virtual.artifactory.jfrog.m.crossplane.io", _) => (System::Artifactory, 2, Class::Data),
        ("platform.jfrog.m.crossplane.io", "Group") => (System::Artifactory, 3, Class::Identity),
        ("platform.jfrog.m.crossplane.io", "Permission") => (System::Artifactory, 4, Class::Grant),
        ("", "Namespace") => (System::Kubernetes, 0, Class::Data),
        ("", "ResourceQuota") => (System::Kubernetes, 1, Class::Setting),
        ("", "LimitRange") => (System::Kubernetes, 2, Class::Setting),
        _ => (System::Kubernetes, 3, Class::Grant), // RoleBinding
    }
}

/// Whether removing `o` from the registry deletes its external object: a managed resource
/// whose policies include `Delete` or `*`; a namespace Argo CD may prune.
pub fn deletes_when_removed(o: &Object) -> bool {
    if o.kind() == "Namespace" && o.group().is_empty() {
        let opts = o.value["metadata"]["annotations"]["argocd.argoproj.io/sync-options"]
            .as_str()
            .unwrap_or_default();
        return !opts.contains("Prune=false");
    }
    let p = o.policies();
    if o.value["spec"].get("managementPolicies").is_none() {
        return true; // plain Kubernetes objects are pruned
    }
    p.iter().any(|x| matches!(*x, "*" | "Delete"))
}

/// What one difference does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Effect {
    /// A data or identity object removed while armed: deleted with its data.
    Destroys,
    /// A retention lowered: Artifactory deletes the oldest tags.
    Prunes,
    /// A grant or setting removed: access revoked, setting gone.
    Removes,
    /// A data or identity object removed without `Delete`: kept, no longer managed.
    Releases,
    /// Same object, different spec (`arms` when it becomes deletable).
    Changes,
    /// A new object.
    Creates,
}

/// One object difference.
#[derive(Debug, Clone)]
pub struct Difference {
    pub effect: Effect,
    pub system: System,
    /// The object before (none when created) and after (none when removed).
    pub before: Option<Object>,
    pub after: Option<Object>,
    /// For changes: destruction armed (`Some(true)`) or disarmed (`Some(false)`).
    pub arming: Option<bool>,
    order: (u8, String),
}

impl Difference {
    /// The object as it is now, or as it was.
    pub fn object(&self) -> &Object {
        self.after
            .as_ref()
            .or(self.before.as_ref())
            .expect("a difference has an object")
    }
    pub fn owner(&self) -> &Owner {
        &self.object().owner
    }
}

/// The difference between two registries' platform trees.
#[derive(Debug, Clone)]
pub struct Review {
    /// Every difference, in listing order (by system, kind, then name).
    pub differences: Vec<Difference>,
    /// Products (by name) and teams (`team <name>`) whose objects appeared, changed or went.
    pub added: BTreeSet<Owner>,
    pub changed: BTreeSet<Owner>,
    pub removed: BTreeSet<Owner>,
    /// Products with platform tools in the base.
    pub base_products: usize,
    /// Teams in the base.
    pub base_teams: usize,
    /// `platformTools.maxProductRemovals` of the new registry (else the base's; 0 without).
    pub max_removals: u32,
    /// Removed products and teams that were armed for destruction in the base.
    pub armed: BTreeSet<Owner>,
    /// The objects of both sides, for describing references (group paths, team names…).
    pub(crate) index: Index,
}

/// Objects of both sides by (kind, name), for resolving references in descriptions.
#[derive(Debug, Clone, Default)]
pub(crate) struct Index {
    before: BTreeMap<(String, String), Value>,
    after: BTreeMap<(String, String), Value>,
}

impl Index {
    /// The referenced object of `kind` and `name`, as it is after the change if it still
    /// exists, else as it was.
    pub(crate) fn get(&self, kind: &str, name: &str) -> Option<&Value> {
        let k = (kind.to_owned(), name.to_owned());
        self.after.get(&k).or_else(|| self.before.get(&k))
    }
}

type ObjectKey = (String, String, String, String);

fn key(o: &Object) -> ObjectKey {
    (
        o.group().to_owned(),
        o.kind().to_owned(),
        o.namespace().to_owned(),
        o.name().to_owned(),
    )
}

fn owned_by(objects: &[Object]) -> BTreeMap<Owner, Vec<&Object>> {
    let mut m: BTreeMap<Owner, Vec<&Object>> = BTreeMap::new();
    for o in objects {
        m.entry(o.owner.clone()).or_default().push(o);
    }
    m
}

/// Compares the platform trees of `base` and `head`.
pub fn review(base: &Registry, head: &Registry) -> Result<Review, RenderError> {
    let before = render_platform(base)?.objects;
    let after = render_platform(head)?.objects;
    let mut index = Index::default();
    for (side, objects) in [(&mut index.before, &before), (&mut index.after, &after)] {
        for o in objects.iter() {
            side.insert((o.kind().to_owned(), o.name().to_owned()), o.value.clone());
        }
    }
    let old: BTreeMap<ObjectKey, &Object> = before.iter().map(|o| (key(o), o)).collect();
    let new: BTreeMap<ObjectKey, &Object> = after.iter().map(|o| (key(o), o)).collect();
    let mut differences = Vec::new();
    for (k, o) in &old {
        match new.get(k) {
            None => {
                let (system, _, class) = placement(o);
                let effect = match class {
                    Class::Grant | Class::Setting => Effect::Removes,
                    _ if deletes_when_removed(o) => Effect::Destroys,
                    _ => Effect::Releases,
                };
                differences.push(Difference {
                    effect,
                    system,
                    before: Some((*o).clone()),
                    after: None,
                    arming: None,
                    order: listing_order(o),
                });
            }
            Some(n) if n.value != o.value => {
                let (system, _, class) = placement(n);
                let (was, is) = (deletes_when_removed(o), deletes_when_removed(n));
                let arming =
                    (class != Class::Grant && class != Class::Setting && was != is).then_some(is);
                let effect = if retention_lowered(o, n) {
                    Effect::Prunes
                } else {
                    Effect::Changes
                };
                differences.push(Difference {
                    effect,
                    system,
                    before: Some((*o).clone()),
                    after: Some((*n).clone()),
                    arming,
                    order: listing_order(n),
                });
            }
            Some(_) => {}
        }
    }
    for (k, n) in &new {
        if !old.contains_key(k) {
            let (system, _, _) = placement(n);
            differences.push(Difference {
                effect: Effect::Creates,
                system,
                before: None,
                after: Some((*n).clone()),
                arming: None,
                order: listing_order(n),
            });
        }
    }
    differences.sort_by(|a, b| (a.system, &a.order).cmp(&(b.system, &b.order)));

    let (old_owned, new_owned) = (owned_by(&before), owned_by(&after));
    let mut r = Review {
        differences,
        added: BTreeSet::new(),
        changed: BTreeSet::new(),
        removed: BTreeSet::new(),
        base_products: old_owned
            .keys()
            .filter(|o| matches!(o, Owner::Product(_)))
            .count(),
        base_teams: old_owned
            .keys()
            .filter(|o| matches!(o, Owner::Team(_)))
            .count(),
        max_removals: head
            .platform
            .platform_tools
            .as_ref()
            .or(base.platform.platform_tools.as_ref())
            .map_or(0, |pt| pt.max_product_removals.value),
        armed: BTreeSet::new(),
        index,
    };
    for owner in old_owned.keys().chain(new_owned.keys()) {
        if *owner == Owner::Platform {
            continue;
        }
        match (old_owned.contains_key(owner), new_owned.contains_key(owner)) {
            (false, true) => {
                r.added.insert(owner.clone());
            }
            (true, false) => {
                r.removed.insert(owner.clone());
                if armed(base, owner) {
                    r.armed.insert(owner.clone());
                }
            }
            _ => {
                if r.differences.iter().any(|d| d.owner() == owner) {
                    r.changed.insert(owner.clone());
                }
            }
        }
    }
    Ok(r)
}

/// The registry entry of `owner` says `destroy: true`.
fn armed(reg: &Registry, owner: &Owner) -> bool {
    match owner {
        Owner::Platform => false,
        Owner::Team(t) => reg.teams.get(t).is_some_and(|t| t.destroy()),
        Owner::Product(p) => reg
            .products
            .get(p)
            .and_then(|p| p.tools.as_ref())
            .is_some_and(|t| t.destroy()),
    }
}

/// Listing order within a system: by kind, then name; Kubernetes objects by the namespace
/// they concern, then kind, then name.
fn listing_order(o: &Object) -> (u8, String) {
    let (system, order, _) = placement(o);
    if system == System::Kubernetes {
        let ns = if o.kind() == "Namespace" {
            o.name()
        } else {
            o.namespace()
        };
        (0, format!("{ns}\u{0}{order}\u{0}{}", o.name()))
    } else {
        (order, o.name().to_owned())
    }
}

/// A local repository's `maxUniqueTags` set or lowered: Artifactory deletes tags beyond it.
fn retention_lowered(old: &Object, new: &Object) -> bool {
    let tags = |o: &Object| o.value["spec"]["forProvider"]["maxUniqueTags"].as_u64();
    match (tags(old), tags(new)) {
        (None, Some(n)) => n > 0,
        (Some(o), Some(n)) => n > 0 && (o == 0 || n < o),
        _ => false,
    }
}

impl Review {
    /// Differences of one effect.
    pub fn of(&self, effect: Effect) -> impl Iterator<Item = &Difference> {
        self.differences.iter().filter(move |d| d.effect == effect)
    }

    /// Whether anything is lost (destroyed, pruned, removed or released).
    pub fn loses(&self) -> bool {
        self.differences.iter().any(|d| {
            matches!(
                d.effect,
                Effect::Destroys | Effect::Prunes | Effect::Removes | Effect::Releases
            )
        })
    }
}
