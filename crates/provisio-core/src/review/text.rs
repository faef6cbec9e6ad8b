//! The text of `provisio plan`: a header naming the products and teams added, changed and
//! removed, then LOSES (DESTROYS, PRUNES, REMOVES, RELEASES), CHANGES and GAINS, each grouped
//! by system, and a summary line. Lines speak of the external objects (a GitLab group by its
//! full path, a Grafana folder by its title, a repository by its key), not of manifests.
//! Stable: the same two registries give the same text.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::Value;

use super::{Difference, Effect, Index, Review, System};
use crate::render::platform::{Object, Owner};

/// What the caller knows beyond the platform trees.
#[derive(Debug, Clone, Default)]
pub struct Header {
    /// The base, as given (`origin/main`, a directory).
    pub base: String,
    /// The registry reviewed, as given (`registry/`).
    pub head: String,
    /// Tenant trees that change too: (changed, total); `None` when none does.
    pub tenants: Option<(usize, usize)>,
}

fn owner_name(o: &Owner) -> String {
    match o {
        Owner::Platform => "the platform".into(),
        Owner::Team(t) => t.clone(),
        Owner::Product(p) => p.clone(),
    }
}

/// The whole text.
pub fn render(r: &Review, h: &Header) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "provisio plan (platform tools): {} → {}",
        h.base, h.head
    );
    let names = |pick: fn(&Owner) -> bool, set: &std::collections::BTreeSet<Owner>| {
        set.iter()
            .filter(|o| pick(o))
            .map(owner_name)
            .collect::<Vec<_>>()
    };
    let is_product = |o: &Owner| matches!(o, Owner::Product(_));
    let is_team = |o: &Owner| matches!(o, Owner::Team(_));
    for (what, pick) in [
        ("products", is_product as fn(&Owner) -> bool),
        ("teams", is_team),
    ] {
        for (verb, set) in [
            ("added", &r.added),
            ("changed", &r.changed),
            ("removed", &r.removed),
        ] {
            let n = names(pick, set);
            if n.is_empty() {
                continue;
            }
            let _ = write!(out, "  {what} {verb}: {}", n.join(", "));
            if verb == "removed" {
                let over = n.len() > r.max_removals as usize;
                let _ = write!(
                    out,
                    " ({} of {}; at most {} per change, platformTools.maxProductRemovals{})",
                    n.len(),
                    if what == "products" {
                        r.base_products
                    } else {
                        r.base_teams
                    },
                    r.max_removals,
                    if over {
                        ": `generate` refuses this without --allow-mass-delete"
                    } else {
                        ""
                    }
                );
            }
            out.push('\n');
        }
    }
    for owner in &r.removed {
        let who = owner_name(owner);
        let kind = if matches!(owner, Owner::Team(_)) {
            "team"
        } else {
            "product"
        };
        if r.armed.contains(owner) {
            let (name, flag) = if kind == "team" {
                (format!("team {who}"), "destroy: true")
            } else {
                (who.clone(), "tools.destroy: true")
            };
            let _ = writeln!(
                out,
                "  {name} was armed for destruction (`{flag}`): its data objects are deleted (DESTROYS below)."
            );
        } else if kind == "team" {
            let _ = writeln!(
                out,
                "  team {who} has no `destroy` flag: nothing is destroyed. Its GitLab group and Grafana team are kept and released (no longer managed)."
            );
        } else {
            let _ = writeln!(
                out,
                "  {who} has no `destroy` flag: nothing is destroyed. Its GitLab group and projects, Grafana folder and dashboard, Artifactory repositories and namespaces are kept and released (no longer managed)."
            );
        }
    }
    if let Some((changed, total)) = h.tenants {
        let _ = writeln!(
            out,
            "  Tenant trees change too ({changed} of {total} tenants): `provisio check` shows that diff."
        );
    }

    // LOSES
    out.push('\n');
    let loses: usize = [
        Effect::Destroys,
        Effect::Prunes,
        Effect::Removes,
        Effect::Releases,
    ]
    .iter()
    .map(|e| r.of(*e).count())
    .sum();
    if loses == 0 {
        out.push_str("== LOSES: nothing ==\n");
    } else {
        let _ = writeln!(out, "== LOSES: {loses} ==");
        for (effect, title, always) in [
            (Effect::Destroys, "DESTROYS: data deleted", true),
            (
                Effect::Prunes,
                "PRUNES: data deleted by a lower retention",
                false,
            ),
            (
                Effect::Removes,
                "REMOVES: access or settings deleted",
                false,
            ),
            (
                Effect::Releases,
                "RELEASES: kept in the external system, no longer managed",
                false,
            ),
        ] {
            let ds: Vec<&Difference> = r.of(effect).collect();
            if ds.is_empty() && !always {
                continue;
            }
            let _ = writeln!(out, "{title} ({})", ds.len());
            for (system, group) in by_system(&ds) {
                let _ = writeln!(out, "  {}", system.name());
                for d in group {
                    let _ = writeln!(out, "  {}", line(r, d));
                }
            }
        }
    }
    for (effect, title) in [(Effect::Changes, "CHANGES"), (Effect::Creates, "GAINS")] {
        out.push('\n');
        let ds: Vec<&Difference> = r.of(effect).collect();
        if ds.is_empty() {
            let _ = writeln!(out, "== {title}: nothing ==");
            continue;
        }
        let _ = writeln!(out, "== {title}: {} ==", ds.len());
        for (system, group) in by_system(&ds) {
            let _ = writeln!(out, "{} ({})", system.name(), group.len());
            for d in &group {
                let _ = writeln!(out, "  {}", line(r, d));
            }
            if effect == Effect::Creates
                && group.iter().any(|d| d.object().kind() == "SamlGroupLink")
            {
                out.push_str(
                    "  (GitLab applies SAML links to a user at their next SAML sign-in)\n",
                );
            }
        }
    }

    // Summary.
    out.push('\n');
    let mut per_system: BTreeMap<System, [usize; 3]> = BTreeMap::new();
    for d in &r.differences {
        let i = match (&d.before, &d.after) {
            (Some(_), None) => 0,
            (Some(_), Some(_)) => 1,
            _ => 2,
        };
        per_system.entry(d.system).or_default()[i] += 1;
    }
    let parts: Vec<String> = per_system
        .iter()
        .map(|(s, [minus, tilde, plus])| {
            let counts: Vec<String> = [("-", minus), ("~", tilde), ("+", plus)]
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(sign, n)| format!("{sign}{n}"))
                .collect();
            format!("{} {}", s.name(), counts.join(" "))
        })
        .collect();
    let n = r.differences.len();
    let destroys = r.of(Effect::Destroys).count();
    let prunes = r.of(Effect::Prunes).count();
    let verdict = if loses == 0 {
        "Nothing is lost.".to_owned()
    } else if destroys + prunes == 0 {
        "Nothing is destroyed.".to_owned()
    } else {
        let mut v = Vec::new();
        if destroys > 0 {
            v.push(format!(
                "{destroys} object{} DESTROYED with {} data",
                if destroys == 1 { "" } else { "s" },
                if destroys == 1 { "its" } else { "their" }
            ));
        }
        if prunes > 0 {
            v.push(format!(
                "{prunes} lose{} data (retention)",
                if prunes == 1 { "s" } else { "" }
            ));
        }
        format!("{}.", v.join(", "))
    };
    if n == 0 {
        out.push_str("No change to the platform tools.\n");
    } else {
        let _ = writeln!(
            out,
            "{n} change{}: {}. {verdict}",
            if n == 1 { "" } else { "s" },
            parts.join(", ")
        );
    }
    out
}

fn by_system<'a>(ds: &[&'a Difference]) -> Vec<(System, Vec<&'a Difference>)> {
    let mut m: BTreeMap<System, Vec<&Difference>> = BTreeMap::new();
    for d in ds {
        m.entry(d.system).or_default().push(d);
    }
    m.into_iter().collect()
}

// --- one line --------------------------------------------------------------------------------

fn fp(o: &Object) -> &Value {
    &o.value["spec"]["forProvider"]
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_default()
}

fn level(n: u64) -> &'static str {
    match n {
        0 => "No one",
        5 => "Minimal Access",
        10 => "Guest",
        15 => "Planner",
        20 => "Reporter",
        30 => "Developer",
        40 => "Maintainer",
        50 => "Owner",
        60 => "Admin",
        _ => "?",
    }
}

/// The full path of a GitLab group managed resource.
fn group_path(idx: &Index, name: &str) -> String {
    let mut parts = Vec::new();
    let mut current = name.to_owned();
    for _ in 0..8 {
        let Some(g) = idx.get("Group", &current).filter(|g| {
            g["apiVersion"]
                .as_str()
                .is_some_and(|a| a.starts_with("groups.gitlab"))
        }) else {
            break;
        };
        let p = &g["spec"]["forProvider"];
        parts.push(s(p, "path").to_owned());
        match p["parentIdRef"]["name"].as_str() {
            Some(parent) => current = parent.to_owned(),
            None => break,
        }
    }
    parts.reverse();
    parts.join("/")
}

fn project_path(idx: &Index, name: &str) -> String {
    match idx.get("Project", name) {
        Some(p) => {
            let p = &p["spec"]["forProvider"];
            format!(
                "{}/{}",
                group_path(
                    idx,
                    p["namespaceIdRef"]["name"].as_str().unwrap_or_default()
                ),
                s(p, "path")
            )
        }
        None => name.to_owned(),
    }
}

fn folder_title(idx: &Index, name: &str) -> String {
    idx.get("Folder", name)
        .map_or(name, |f| s(&f["spec"]["forProvider"], "title"))
        .to_owned()
}

fn team_title(idx: &Index, name: &str) -> String {
    idx.get("Team", name)
        .map_or(name, |t| s(&t["spec"]["forProvider"], "name"))
        .to_owned()
}

/// `docker` for a repository kind (`DockerV2Repository` → docker).
fn package_type(kind: &str) -> String {
    let t = kind.trim_end_matches("Repository").trim_end_matches("V2");
    match t {
        "HelmOCI" => "helmoci".into(),
        "NPM" => "npm".into(),
        t => t.to_lowercase(),
    }
}

fn repo_tier(o: &Object) -> &'static str {
    match o.group().split('.').next() {
        Some("local") => "local",
        Some("remote") => "remote",
        _ => "virtual",
    }
}

fn folder_permissions(idx: &Index, o: &Object) -> String {
    fp(o)["permissions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(
            |p| match (p["teamRef"]["name"].as_str(), p["role"].as_str()) {
                (Some(t), _) => format!("team {} {}", team_title(idx, t), s(p, "permission")),
                (_, Some(role)) => format!("role {role} {}", s(p, "permission")),
                _ => s(p, "permission").to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join(", ")
}

fn permission_summary(o: &Object) -> (String, String) {
    let a = &fp(o)["artifact"];
    let targets: Vec<&str> = a["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str())
        .collect();
    let groups: Vec<String> = a["actions"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| {
            let perms: Vec<&str> = g["permissions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            format!("{} {}", s(g, "name"), perms.join(" "))
        })
        .collect();
    (targets.join(", "), groups.join(", "))
}

fn quota(o: &Object) -> BTreeMap<String, String> {
    o.value["spec"]["hard"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn limits(o: &Object) -> String {
    let pair = |v: &Value| format!("{}/{}", s(v, "cpu"), s(v, "memory"));
    o.value["spec"]["limits"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| match s(l, "type") {
            "Container" => format!(
                "container default {}, default request {}, min {}, max {}",
                pair(&l["default"]),
                pair(&l["defaultRequest"]),
                pair(&l["min"]),
                pair(&l["max"])
            ),
            t => format!(
                "{} min {}, max {}",
                t,
                s(&l["min"], "storage"),
                s(&l["max"], "storage")
            ),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `<subject> to ClusterRole <role> in <namespace>`.
fn binding(o: &Object, to: &str) -> String {
    let subject = o.value["subjects"][0]["name"].as_str().unwrap_or_default();
    format!(
        "{subject} {to} ClusterRole {} in {}",
        s(&o.value["roleRef"], "name"),
        o.namespace()
    )
}

/// What the object is, as its system knows it: `Group ecommerce/commerce/orders`.
fn what(idx: &Index, o: &Object) -> String {
    let p = fp(o);
    match o.kind() {
        "Group" if o.group().starts_with("groups.gitlab") => {
            format!("Group {}", group_path(idx, o.name()))
        }
        "Project" => format!("Project {}", project_path(idx, o.name())),
        "ProtectedBranch" => format!(
            "the protection of branch {} of {}",
            s(p, "branchName"),
            project_path(idx, p["projectIdRef"]["name"].as_str().unwrap_or_default())
        ),
        "SamlGroupLink" => format!(
            "SamlGroupLink {}→{} on group {}",
            s(p, "name"),
            level(p["accessLevel"].as_u64().unwrap_or_default()),
            group_path(idx, p["groupIdRef"]["name"].as_str().unwrap_or_default())
        ),
        "Member" => format!(
            "member {} ({}) of group {}",
            s(p, "userName"),
            level(p["accessLevel"].as_u64().unwrap_or_default()),
            group_path(idx, p["groupIdRef"]["name"].as_str().unwrap_or_default())
        ),
        "Team" => format!("team \"{}\"", s(p, "name")),
        "Folder" => format!("folder \"{}\"", s(p, "title")),
        "FolderPermission" => format!(
            "the permissions of folder \"{}\"",
            folder_title(idx, p["folderRef"]["name"].as_str().unwrap_or_default())
        ),
        "Dashboard" => {
            let model: Value = serde_json::from_str(s(p, "configJson")).unwrap_or(Value::Null);
            format!("dashboard \"{}\"", s(&model, "title"))
        }
        "Group" => format!("group {}", s(p, "name")),
        "Permission" => format!("permission {}", s(p, "name")),
        "Namespace" => format!("namespace {}", o.name()),
        "ResourceQuota" => format!("the quota of {}", o.namespace()),
        "LimitRange" => format!("the limit range of {}", o.namespace()),
        "RoleBinding" => format!("the binding {}", binding(o, "to")),
        k if k.ends_with("Repository") => {
            format!(
                "{} {} repository {}",
                repo_tier(o),
                package_type(k),
                o.name()
            )
        }
        k => format!("{k} {}", o.name()),
    }
}

/// The level change a SAML link or role binding is part of, when one was removed and the
/// other created for the same group and Okta group (or namespace and subject).
fn replacement(r: &Review, d: &Difference) -> Option<String> {
    let o = d.object();
    let ident = |o: &Object| -> Option<(String, String, String)> {
        match o.kind() {
            "SamlGroupLink" => Some((
                fp(o)["groupIdRef"]["name"].as_str()?.to_owned(),
                s(fp(o), "name").to_owned(),
                level(fp(o)["accessLevel"].as_u64()?).to_owned(),
            )),
            "RoleBinding" => Some((
                o.namespace().to_owned(),
                o.value["subjects"][0]["name"].as_str()?.to_owned(),
                s(&o.value["roleRef"], "name").to_owned(),
            )),
            _ => None,
        }
    };
    let (a, b, mine) = ident(o)?;
    let other_effect = if d.effect == Effect::Creates {
        Effect::Removes
    } else {
        Effect::Creates
    };
    let other = r
        .of(other_effect)
        .filter(|x| x.object().kind() == o.kind())
        .find_map(|x| ident(x.object()).filter(|(xa, xb, _)| *xa == a && *xb == b))?;
    let theirs = other.2;
    let word = if o.kind() == "RoleBinding" {
        "role"
    } else {
        "level"
    };
    Some(if d.effect == Effect::Creates {
        format!(" ({word} change {theirs} → {mine})")
    } else {
        format!(" ({word} change {mine} → {theirs}: removed, then created)")
    })
}

fn line(r: &Review, d: &Difference) -> String {
    let idx = &r.index;
    let o = d.object();
    let w = what(idx, o);
    let p = fp(o);
    let owner = owner_name(d.owner());
    match d.effect {
        Effect::Destroys => {
            let detail = match o.kind() {
                "Group" if o.group().starts_with("groups.gitlab") => {
                    if p["permanentlyRemove"].as_bool() == Some(true) {
                        " and every project in it (removed at once: permanentlyRemove)"
                    } else {
                        " and every project in it (GitLab keeps it pending deletion for its retention period, 7 days by default)"
                    }
                }
                "Project" => " and its repository",
                "Folder" => " (refused while it holds dashboards the registry does not declare)",
                "Namespace" => " and everything in it",
                k if k.ends_with("Repository") && repo_tier(o) != "virtual" => " and its artifacts",
                _ => "",
            };
            format!("!! DESTROYS {w}{detail}")
        }
        Effect::Prunes => {
            let before = d.before.as_ref().expect("changed");
            let after = d.after.as_ref().expect("changed");
            let tags = |o: &Object| fp(o)["maxUniqueTags"].as_u64();
            let n = tags(after).unwrap_or_default();
            format!(
                "- lowers the retention of {}: maxUniqueTags {} → {n}; Artifactory deletes the oldest tags beyond {n} of each image",
                o.name(),
                tags(before).map_or("none".to_owned(), |t| t.to_string())
            )
        }
        Effect::Removes => {
            let text = match o.kind() {
                "FolderPermission" => format!(
                    "removes every permission of folder \"{}\" (was: {})",
                    folder_title(idx, p["folderRef"]["name"].as_str().unwrap_or_default()),
                    folder_permissions(idx, o)
                ),
                "Permission" => {
                    let (targets, groups) = permission_summary(o);
                    format!(
                        "removes permission {} on {targets} ({groups})",
                        s(p, "name")
                    )
                }
                "Member" => format!(
                    "removes member {} ({}) from group {}",
                    s(p, "userName"),
                    level(p["accessLevel"].as_u64().unwrap_or_default()),
                    group_path(idx, p["groupIdRef"]["name"].as_str().unwrap_or_default())
                ),
                "RoleBinding" => format!("unbinds {}", binding(o, "from")),
                _ => format!("removes {w}"),
            };
            format!("- {text}{}", replacement(r, d).unwrap_or_default())
        }
        Effect::Releases => {
            let kept = match o.kind() {
                "Group" if o.group().starts_with("groups.gitlab") => {
                    let parent = p["parentIdRef"]["name"]
                        .as_str()
                        .map(|parent| group_path(idx, parent));
                    match parent {
                        Some(parent) if matches!(d.owner(), Owner::Product(_)) => format!(
                            "kept with its projects; reached only through {parent} and direct members"
                        ),
                        _ => "kept with its subgroups and projects".to_owned(),
                    }
                }
                "Team" => "kept with its members".into(),
                "Folder" => "kept with its dashboards".into(),
                "Namespace" => "kept with everything in it: Argo CD Prune=false".into(),
                k if k.ends_with("Repository") && repo_tier(o) == "local" => {
                    "kept with its artifacts".into()
                }
                k if k.ends_with("Repository") && repo_tier(o) == "remote" => {
                    "kept with its cache".into()
                }
                _ => "kept".into(),
            };
            format!("- releases {w} ({kept})")
        }
        Effect::Changes => {
            let before = d.before.as_ref().expect("changed");
            match d.arming {
                Some(true) => {
                    let when = match o.kind() {
                        "Namespace" => "deleted with everything in it",
                        "Group" => "deleted with every project in it",
                        "Project" => "deleted with its repository",
                        "ProtectedBranch" => "removed",
                        "Folder" => {
                            "deleted unless it holds dashboards the registry does not declare"
                        }
                        k if k.ends_with("Repository") && repo_tier(o) != "virtual" => {
                            "deleted with its artifacts"
                        }
                        _ => "deleted",
                    };
                    format!("! arms destruction of {w} ({when} when {owner} leaves the registry)")
                }
                Some(false) => {
                    format!("~ disarms destruction of {w} (kept when {owner} leaves the registry)")
                }
                None => format!("~ changes {w}: {}", changes(idx, before, o)),
            }
        }
        Effect::Creates => {
            let text = match o.kind() {
                "Group" if o.group().starts_with("groups.gitlab") => {
                    format!("creates {w} ({})", s(p, "visibility"))
                }
                "Project" => format!(
                    "creates {w} ({}, default branch {})",
                    s(p, "visibility"),
                    s(p, "defaultBranch")
                ),
                "ProtectedBranch" => {
                    let lvl = |k: &str| level(p[k][0]["accessLevel"].as_u64().unwrap_or_default());
                    format!(
                        "protects branch {} of {}: push {}, merge {}, {}",
                        s(p, "branchName"),
                        project_path(idx, p["projectIdRef"]["name"].as_str().unwrap_or_default()),
                        lvl("pushAccessLevels"),
                        lvl("mergeAccessLevels"),
                        if p["allowForcePush"].as_bool() == Some(true) {
                            "force push allowed"
                        } else {
                            "no force push"
                        }
                    )
                }
                "Member" => format!(
                    "adds member {} as {} to group {}",
                    s(p, "userName"),
                    level(p["accessLevel"].as_u64().unwrap_or_default()),
                    group_path(idx, p["groupIdRef"]["name"].as_str().unwrap_or_default())
                ),
                "Folder" => format!("creates {w} (uid {})", s(p, "uid")),
                "FolderPermission" => {
                    format!("sets {w}: {} (nothing else)", folder_permissions(idx, o))
                }
                "Dashboard" => {
                    let model: Value =
                        serde_json::from_str(s(p, "configJson")).unwrap_or(Value::Null);
                    format!(
                        "creates {w} (uid {}) in folder \"{}\"",
                        s(&model, "uid"),
                        folder_title(idx, p["folderRef"]["name"].as_str().unwrap_or_default())
                    )
                }
                "Permission" => {
                    let (targets, groups) = permission_summary(o);
                    format!("creates permission {} on {targets}: {groups}", s(p, "name"))
                }
                "Namespace" => format!("creates {w} (pod security restricted)"),
                "ResourceQuota" => format!(
                    "sets {w}: {}",
                    quota(o)
                        .iter()
                        .map(|(k, v)| format!("{k} {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "LimitRange" => format!("sets {w}: {}", limits(o)),
                "RoleBinding" => format!("binds {}", binding(o, "to")),
                k if k.ends_with("Repository") => match repo_tier(o) {
                    "local" => match p["maxUniqueTags"].as_u64() {
                        Some(n) if n > 0 => {
                            format!("creates {w} (keeps the newest {n} tags of each image)")
                        }
                        _ => format!("creates {w}"),
                    },
                    "remote" => format!("creates {w} ({})", s(p, "url")),
                    _ => {
                        let repos: Vec<&str> = p["repositories"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                            .collect();
                        format!(
                            "creates {w}: {}; deploys go to {}",
                            repos.join(", then "),
                            s(p, "defaultDeploymentRepo")
                        )
                    }
                },
                _ => format!("creates {w}"),
            };
            format!("+ {text}{}", replacement(r, d).unwrap_or_default())
        }
    }
}

/// `field old → new` for what differs between two versions of an object.
fn changes(idx: &Index, before: &Object, after: &Object) -> String {
    match after.kind() {
        "ResourceQuota" => {
            let (a, b) = (quota(before), quota(after));
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            return keys
                .into_iter()
                .filter(|k| a.get(*k) != b.get(*k))
                .map(|k| {
                    format!(
                        "{k} {} → {}",
                        a.get(k).map_or("none", String::as_str),
                        b.get(k).map_or("none", String::as_str)
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
        }
        "LimitRange" => return format!("{} → {}", limits(before), limits(after)),
        "FolderPermission" => {
            return format!(
                "{} → {}",
                folder_permissions(idx, before),
                folder_permissions(idx, after)
            );
        }
        "Permission" => {
            let (t0, g0) = permission_summary(before);
            let (t1, g1) = permission_summary(after);
            let mut parts = Vec::new();
            if t0 != t1 {
                parts.push(format!("targets {t0} → {t1}"));
            }
            if g0 != g1 {
                parts.push(format!("groups {g0} → {g1}"));
            }
            return parts.join("; ");
        }
        _ => {}
    }
    let root = |o: &Object| {
        if o.value["spec"].get("forProvider").is_some() {
            o.value["spec"]["forProvider"].clone()
        } else {
            // Plain Kubernetes objects: what provisio sets besides the name.
            let mut v = o.value.clone();
            if let Some(m) = v.as_object_mut() {
                m.remove("apiVersion");
                m.remove("kind");
                if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.remove("name");
                    meta.remove("namespace");
                }
            }
            v
        }
    };
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    flatten("", &root(before), &mut a);
    flatten("", &root(after), &mut b);
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let parts: Vec<String> = keys
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            let v = |m: &BTreeMap<String, String>| m.get(k).cloned().unwrap_or("none".into());
            if k == "configJson" {
                "the dashboard's JSON".to_owned()
            } else {
                format!("{k} {} → {}", v(&a), v(&b))
            }
        })
        .collect();
    if parts.is_empty() {
        "its managed settings".to_owned()
    } else {
        parts.join(", ")
    }
}

fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_owned()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                flatten(&join(k), v, out);
            }
        }
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            let text: Vec<String> = items.iter().map(scalar).collect();
            out.insert(prefix.to_owned(), text.join(", "));
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), item, out);
            }
        }
        other => {
            out.insert(prefix.to_owned(), scalar(other));
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "none".into(),
        other => other.to_string(),
    }
}
