//! Properties of the platform tree over generated registries (proptest): the example's
//! platform, tiers, teams, gateway and tenants, plus generated products with platform tools
//! (GitLab projects, branches, members, Okta grants of every kind, Artifactory packages on or
//! off, Grafana settings, namespaces in some environments).
//!
//! - Renaming nothing keeps every object name: an edit that renames nothing (list entries
//!   reordered, descriptions, visibilities, protection levels, member levels, retention,
//!   quotas, Grafana settings changed) leaves the set of (kind, namespace, name) as it was.
//! - Adding a product changes no other product's, team's or platform object (platform-owned
//!   JFrog groups may be added).
//! - Removing a product without the destroy flag leaves no data-holding object whose
//!   management policies include deletion among the removed objects: every removed object
//!   that deletes its external object when it goes is a grant or a namespace setting (access
//!   is revoked, data is kept), and no namespace loses its `Prune=false`.
//! - Names are DNS labels and unique per kind and namespace.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::{Class, Effect, deletes_when_removed, placement, review};
use crate::registry::Sources;
use crate::render::platform::{Object, Owner, render_platform};
use crate::testing::{keep_only_the_gateway, registry_from};

/// A generated product with platform tools.
#[derive(Debug, Clone)]
struct Spec {
    name: String,
    team: &'static str,
    description: String,
    projects: Vec<ProjectSpec>,
    members: Vec<(String, &'static str)>,
    okta: Vec<OktaSpec>,
    artifactory_on: bool,
    packages: Vec<(&'static str, Option<u32>)>,
    team_permission: &'static str,
    org_viewers: bool,
    dashboard: bool,
    /// (environment, pods quota)
    namespaces: Vec<(&'static str, u32)>,
}

#[derive(Debug, Clone)]
struct ProjectSpec {
    path: String,
    description: String,
    branches: Vec<(String, &'static str, &'static str, bool)>,
}

#[derive(Debug, Clone)]
struct OktaSpec {
    group: &'static str,
    gitlab: Option<&'static str>,
    /// (environment, role); only environments the product has.
    kubernetes: Vec<(&'static str, &'static str)>,
    artifactory: Option<&'static str>,
}

const LEVELS: [&str; 6] = [
    "guest",
    "planner",
    "reporter",
    "developer",
    "maintainer",
    "owner",
];
const BRANCH_LEVELS: [&str; 3] = ["no-one", "developer", "maintainer"];
const OKTA: [&str; 5] = [
    "okta-a",
    "okta-b",
    "okta-sre",
    "Okta.Mixed_Case",
    "okta-checkout",
];
const ENVS: [&str; 3] = ["dev", "staging", "prod"];

fn yaml(s: &Spec) -> String {
    let mut y = format!(
        "name: {n}\ndescription: \"{d}\"\nteam: {t}\nimage: {n}\nversion: v1\nport: 8000\nprobes:\n  liveness: {{path: /health}}\n  readiness: {{path: /ready}}\nresources:\n  requests: {{cpu: 100m, memory: 128Mi}}\n  limits: {{cpu: 100m, memory: 128Mi}}\ntools:\n  gitlab:\n",
        n = s.name,
        d = s.description,
        t = s.team
    );
    y += "    projects:\n";
    for p in &s.projects {
        y += &format!(
            "      - path: {}\n        description: \"{}\"\n        protectedBranches:\n",
            p.path, p.description
        );
        for (b, push, merge, force) in &p.branches {
            y += &format!(
                "          - {{branch: \"{b}\", push: {push}, merge: {merge}, allowForcePush: {force}}}\n"
            );
        }
        if p.branches.is_empty() {
            y += "          []\n";
        }
    }
    if s.projects.is_empty() {
        y += "      []\n";
    }
    y += "    members:\n";
    for (u, a) in &s.members {
        y += &format!("      - {{user: {u}, access: {a}}}\n");
    }
    if s.members.is_empty() {
        y += "      []\n";
    }
    y += "  okta:\n";
    for o in &s.okta {
        y += &format!("    - group: {}\n", o.group);
        if let Some(l) = o.gitlab {
            y += &format!("      gitlab: {l}\n");
        }
        if !o.kubernetes.is_empty() {
            let k: Vec<String> = o
                .kubernetes
                .iter()
                .map(|(e, r)| format!("{e}: {r}"))
                .collect();
            y += &format!("      kubernetes: {{{}}}\n", k.join(", "));
        }
        if let Some(a) = o.artifactory {
            y += &format!("      artifactory: {a}\n");
        }
    }
    if s.okta.is_empty() {
        y += "    []\n";
    }
    y += &format!(
        "  artifactory:\n    enabled: {}\n    packages:\n",
        s.artifactory_on
    );
    for (t, tags) in &s.packages {
        let remotes = match *t {
            "docker" => "[dockerhub]",
            "composer" => "[packagist]",
            _ => "[]",
        };
        let tags = tags.map_or(String::new(), |n| format!(", maxUniqueTags: {n}"));
        y += &format!("      {t}: {{remotes: {remotes}{tags}}}\n");
    }
    if s.packages.is_empty() {
        y += "      {}\n";
    }
    y += &format!(
        "  grafana:\n    folder: \"{} folder\"\n    teamPermission: {}\n    orgViewers: {}\n    dashboard: {}\n  namespaces:\n",
        s.name, s.team_permission, s.org_viewers, s.dashboard
    );
    for (e, pods) in &s.namespaces {
        y += &format!("    {e}: {{quota: {{pods: \"{pods}\"}}}}\n");
    }
    if s.namespaces.is_empty() {
        y += "    {}\n";
    }
    y
}

fn spec(name: String) -> impl Strategy<Value = Spec> {
    let project = (
        "[a-z][a-z0-9]{1,10}(-[a-z0-9]{1,6})?",
        "[a-zA-Z ]{0,20}",
        prop::collection::vec(
            (
                prop::sample::select(vec!["main", "release/*", "develop", "hotfix/x.1"]),
                prop::sample::select(BRANCH_LEVELS.to_vec()),
                prop::sample::select(BRANCH_LEVELS.to_vec()),
                any::<bool>(),
            ),
            0..3,
        ),
    )
        .prop_filter("not a GitLab reserved word", |(p, _, _)| {
            !crate::naming::platform::GITLAB_RESERVED_PATHS.contains(&p.as_str())
        })
        .prop_map(|(path, description, mut branches)| {
            branches.sort_by(|a, b| a.0.cmp(b.0));
            branches.dedup_by(|a, b| a.0 == b.0);
            ProjectSpec {
                path,
                description,
                branches: branches
                    .into_iter()
                    .map(|(b, p, m, f)| (b.to_owned(), p, m, f))
                    .collect(),
            }
        });
    let envs = prop::sample::subsequence(ENVS.to_vec(), 0..=3);
    (
        prop::sample::select(vec!["commerce", "identity"]),
        "[a-zA-Z ]{0,30}",
        prop::collection::vec(project, 0..3),
        prop::collection::vec(
            (
                "[a-z][a-z0-9]{0,5}([._-][a-z0-9]{1,4}){0,2}",
                prop::sample::select(LEVELS.to_vec()),
            ),
            0..3,
        ),
        envs,
        prop::sample::subsequence(OKTA.to_vec(), 0..=4),
        prop::collection::vec(
            (
                prop::option::of(prop::sample::select(LEVELS.to_vec())),
                any::<u8>(),
                prop::option::of(prop::sample::select(vec!["read", "deploy"])),
            ),
            4,
        ),
        any::<bool>(),
        prop::sample::subsequence(vec!["composer", "docker", "npm"], 0..=3),
        prop::option::of(1u32..200),
        (
            prop::sample::select(vec!["Edit", "Admin"]),
            any::<bool>(),
            any::<bool>(),
        ),
    )
        .prop_map(
            move |(
                team,
                description,
                mut projects,
                mut members,
                envs,
                groups,
                grants,
                artifactory_on,
                packages,
                tags,
                (team_permission, org_viewers, dashboard),
            )| {
                projects.sort_by(|a, b| a.path.cmp(&b.path));
                projects.dedup_by(|a, b| a.path == b.path);
                members.sort_by(|a, b| a.0.cmp(&b.0));
                members.dedup_by(|a, b| a.0 == b.0);
                let okta = groups
                    .into_iter()
                    .zip(grants)
                    .map(|(group, (gitlab, roles, artifactory))| {
                        let kubernetes: Vec<(&str, &str)> = envs
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| roles & (1 << i) != 0)
                            .map(|(i, e)| {
                                (
                                    *e,
                                    if roles & (8 << i) != 0 {
                                        "edit"
                                    } else {
                                        "view"
                                    },
                                )
                            })
                            .collect();
                        let gitlab =
                            if gitlab.is_none() && kubernetes.is_empty() && artifactory.is_none() {
                                Some("reporter")
                            } else {
                                gitlab
                            };
                        OktaSpec {
                            group,
                            gitlab,
                            kubernetes,
                            artifactory,
                        }
                    })
                    .collect();
                Spec {
                    name: name.clone(),
                    team,
                    description,
                    projects,
                    members,
                    okta,
                    artifactory_on,
                    packages: packages
                        .into_iter()
                        .map(|t| (t, if t == "docker" { tags } else { None }))
                        .collect(),
                    team_permission,
                    org_viewers,
                    dashboard,
                    namespaces: envs.into_iter().map(|e| (e, 10)).collect(),
                }
            },
        )
}

/// One to three generated products with distinct names.
fn specs() -> impl Strategy<Value = Vec<Spec>> {
    prop::sample::subsequence(vec!["alpha", "bravo", "charlie-x", "delta"], 1..=3).prop_flat_map(
        |names| {
            names
                .into_iter()
                .map(|n| spec(n.to_owned()))
                .collect::<Vec<_>>()
        },
    )
}

fn sources(specs: &[Spec]) -> Sources {
    let mut s = crate::testing::example_sources();
    keep_only_the_gateway(&mut s);
    for sp in specs {
        s.insert(format!("products/{}.yaml", sp.name), yaml(sp));
    }
    s
}

fn objects(specs: &[Spec]) -> Vec<Object> {
    render_platform(&registry_from(sources(specs)))
        .expect("renders")
        .objects
}

fn names(objects: &[Object]) -> BTreeSet<(String, String, String, String)> {
    objects
        .iter()
        .map(|o| {
            (
                o.group().to_owned(),
                o.kind().to_owned(),
                o.namespace().to_owned(),
                o.name().to_owned(),
            )
        })
        .collect()
}

/// An edit that renames nothing: list entries reversed, and every field that is not part of
/// a name changed.
fn renaming_nothing(specs: &[Spec], flip: u8) -> Vec<Spec> {
    specs
        .iter()
        .map(|s| {
            let mut s = s.clone();
            s.description.push_str(" (edited)");
            s.projects.reverse();
            for p in &mut s.projects {
                p.description = format!("{} v2", p.description);
                p.branches.reverse();
                for b in &mut p.branches {
                    b.1 = BRANCH_LEVELS[(flip as usize) % 3];
                    b.3 = !b.3;
                }
            }
            s.members.reverse();
            for m in &mut s.members {
                m.1 = LEVELS[(flip as usize) % 6];
            }
            s.okta.reverse();
            for o in &mut s.okta {
                if o.artifactory.is_some() {
                    o.artifactory = Some(if flip.is_multiple_of(2) {
                        "read"
                    } else {
                        "deploy"
                    });
                }
            }
            s.packages.reverse();
            for p in &mut s.packages {
                if let Some(t) = &mut p.1 {
                    *t = t.saturating_add(u32::from(flip) + 1);
                }
            }
            s.team_permission = if s.team_permission == "Edit" {
                "Admin"
            } else {
                "Edit"
            };
            s.org_viewers = !s.org_viewers;
            s.namespaces.reverse();
            for n in &mut s.namespaces {
                n.1 += 5;
            }
            s
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn renaming_nothing_keeps_every_object_name(specs in specs(), flip in any::<u8>()) {
        let before = objects(&specs);
        let after = objects(&renaming_nothing(&specs, flip));
        prop_assert_eq!(names(&before), names(&after));
        // And the same registry renders the same bytes.
        prop_assert_eq!(&render_platform(&registry_from(sources(&specs))).unwrap(),
            &render_platform(&registry_from(sources(&specs))).unwrap());
    }

    #[test]
    fn adding_a_product_changes_no_other_object(
        specs in specs(),
        extra in spec("echo-new".to_owned()),
    ) {
        let before = objects(&specs);
        let mut more = specs.clone();
        more.push(extra);
        let after = objects(&more);
        let after_by_key: BTreeMap<_, &Object> = after
            .iter()
            .map(|o| ((o.kind().to_owned(), o.namespace().to_owned(), o.name().to_owned(), o.group().to_owned()), o))
            .collect();
        for o in &before {
            let k = (o.kind().to_owned(), o.namespace().to_owned(), o.name().to_owned(), o.group().to_owned());
            let now = after_by_key.get(&k);
            prop_assert!(now.is_some(), "{:?} disappeared", k);
            prop_assert_eq!(&now.unwrap().value, &o.value, "{:?} changed", k);
        }
        for o in &after {
            if !before.iter().any(|b| b.kind() == o.kind() && b.name() == o.name() && b.namespace() == o.namespace() && b.group() == o.group()) {
                let ok = o.owner == Owner::Product("echo-new".into())
                    || (o.owner == Owner::Platform && o.kind() == "Group" && o.group() == "platform.jfrog.m.crossplane.io");
                prop_assert!(ok, "a new object not of the new product: {} {}", o.kind(), o.name());
            }
        }
    }

    #[test]
    fn removing_a_product_without_destroy_deletes_no_data(specs in specs(), which in any::<prop::sample::Index>()) {
        let gone = which.index(specs.len());
        let mut fewer = specs.clone();
        let removed = fewer.remove(gone);
        let base = registry_from(sources(&specs));
        let head = registry_from(sources(&fewer));
        let r = review(&base, &head).unwrap();
        prop_assert_eq!(r.of(Effect::Destroys).count(), 0);
        for d in &r.differences {
            let o = d.object();
            prop_assert!(d.effect != Effect::Creates, "removing creates {} {}", o.kind(), o.name());
            if d.after.is_none() {
                let (_, _, class) = placement(o);
                // No data-holding object whose management policies include deletion.
                if deletes_when_removed(o) {
                    prop_assert!(
                        matches!(class, Class::Grant | Class::Setting),
                        "{} {} of class {:?} is deleted", o.kind(), o.name(), class
                    );
                }
                if o.kind() == "Namespace" {
                    prop_assert!(!deletes_when_removed(o));
                }
                prop_assert!(
                    o.owner == Owner::Product(removed.name.clone()) || o.owner == Owner::Platform,
                    "{} {} of {:?} removed", o.kind(), o.name(), o.owner
                );
            }
        }
    }

    #[test]
    fn names_are_labels_and_unique_per_kind(specs in specs()) {
        let objects = objects(&specs);
        let mut seen = BTreeSet::new();
        for o in &objects {
            prop_assert!(crate::naming::is_dns1123_label(o.name()), "{}", o.name());
            prop_assert!(seen.insert((o.group(), o.kind(), o.namespace(), o.name())), "{} {} twice", o.kind(), o.name());
        }
    }
}
