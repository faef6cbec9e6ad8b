//! The platform tools' rules: what GitLab, Grafana, Artifactory and Kubernetes would refuse,
//! or what would silently do something else than the registry says, found before anything is
//! written (docs/platform-tools.md, "Validation rules and their errors"; the codes there, G7,
//! O2…, are in the comments below). Each rule pushes a positioned [`Diagnostic`] and carries
//! on, so one run reports everything.

use std::collections::{BTreeMap, BTreeSet};

use serde_saphyr::Location;

use super::layout::PLATFORM_FILE;
use super::model::*;
use super::rules::{check_cpu_memory, check_quantity, check_quota};
use super::tools::*;
use crate::diagnostic::{Diagnostic, at, located};
use crate::naming::{self, platform as names};

/// Longest team name (it prefixes object names such as `team--<team>--<okta>--<level>`).
pub const MAX_TEAM_NAME_LEN: usize = 30;
/// Longest environment name (`<product>-<env>` must stay a DNS label).
pub const MAX_ENVIRONMENT_LEN: usize = 12;

/// Everything the rules look at.
pub struct Context<'a> {
    pub platform: &'a Platform,
    /// Products by name: (file, product); only sound product files.
    pub products: &'a BTreeMap<String, (String, Product)>,
    /// Teams by file stem: (file, team); only sound team files.
    pub teams: &'a BTreeMap<String, (String, Team)>,
    /// Every tenant id of the registry (broken tenant files included).
    pub tenant_ids: &'a BTreeSet<&'a str>,
}

/// A product with a `tools` section.
struct Tooled<'a> {
    name: &'a str,
    path: &'a str,
    product: &'a Product,
    tools: &'a ProductTools,
}

/// Runs every platform-tools rule.
pub fn check(ctx: &Context<'_>, diags: &mut Vec<Diagnostic>) {
    let tooled: Vec<Tooled<'_>> = ctx
        .products
        .iter()
        .filter_map(|(name, (path, p))| {
            p.tools.as_ref().map(|tools| Tooled {
                name,
                path,
                product: p,
                tools,
            })
        })
        .collect();
    let Some(pt) = &ctx.platform.platform_tools else {
        // P1
        let mut users: Vec<String> = tooled.iter().map(|t| t.path.to_owned()).collect();
        users.extend(ctx.teams.values().map(|(path, _)| path.clone()));
        if !users.is_empty() {
            let shown = users.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
            let more = if users.len() > 3 { ", …" } else { "" };
            diags.push(
                Diagnostic::file(
                    PLATFORM_FILE,
                    "the registry describes platform tools but platform.yaml has no `platformTools`",
                )
                .with_label(format!("used by {shown}{more}"))
                .with_help("add the `platformTools` section (docs/platform-tools.md), or remove the products' `tools` and `teams/`"),
            );
        }
        return;
    };
    check_platform_tools(ctx, pt, diags);
    for (stem, (path, team)) in ctx.teams {
        check_team(pt, stem, path, team, diags);
    }
    check_teams_together(ctx, pt, diags);
    for t in &tooled {
        check_product(ctx, pt, t, diags);
    }
    check_products_together(ctx, pt, &tooled, diags);
}

// --- helpers ---------------------------------------------------------------------------------

fn suggest(wrong: &str, known: &[&str]) -> Option<String> {
    known
        .iter()
        .map(|k| {
            (
                strsim::levenshtein(&wrong.to_lowercase(), &k.to_lowercase()),
                *k,
            )
        })
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min()
        .map(|(_, k)| format!("did you mean `{k}`?"))
}

fn one_of(known: &[&str]) -> String {
    format!("expected one of: {}", known.join(", "))
}

/// A value of a closed set: `false` (and a diagnostic) when it is not one of `known`.
fn closed(
    path: &str,
    v: &Sp<String>,
    what: &str,
    known: &[&str],
    diags: &mut Vec<Diagnostic>,
) -> bool {
    if known.contains(&v.value.as_str()) {
        return true;
    }
    let label = if known.len() == 2 {
        format!("expected `{}` or `{}`", known[0], known[1])
    } else {
        one_of(known)
    };
    let mut d = at(path, v, format!("`{}` is not {what}", v.value)).with_label(label);
    if let Some(s) = suggest(&v.value, known) {
        d = d.with_help(s);
    }
    diags.push(d);
    false
}

/// G7: a GitLab access level.
fn access_level(path: &str, v: &Sp<String>, diags: &mut Vec<Diagnostic>) -> Option<u8> {
    if let Some(l) = gitlab_access_level(&v.value) {
        return Some(l);
    }
    let names: Vec<&str> = GITLAB_ACCESS_LEVELS.iter().map(|(n, _)| *n).collect();
    let mut d = at(
        path,
        v,
        format!("`{}` is not a GitLab access level", v.value),
    )
    .with_label(one_of(&names));
    let numeric = v.value.parse::<u8>().ok().and_then(|n| {
        GITLAB_ACCESS_LEVELS
            .iter()
            .find(|(_, l)| *l == n)
            .map(|(name, l)| format!("write `{name}` ({l})"))
    });
    if let Some(help) = numeric.or_else(|| suggest(&v.value, &names)) {
        d = d.with_help(help);
    }
    diags.push(d);
    None
}

/// G1, G2, G3: one path segment of a group or project provisio creates.
fn gitlab_path(path: &str, v: &Sp<String>, project: bool, diags: &mut Vec<Diagnostic>) -> bool {
    if let Some(why) = names::gitlab_path_refusal(&v.value) {
        diags.push(
            at(
                path,
                v,
                format!("GitLab would refuse the path `{}`", v.value),
            )
            .with_label(why),
        );
        return false;
    }
    if !names::is_provisio_path(&v.value) {
        diags.push(
            at(path, v, format!("`{}` is not a path provisio accepts", v.value)).with_label(
                "use lower-case letters, digits and single `-`, at most 63 (GitLab also allows `_` and `.`; provisio derives Kubernetes names from paths)",
            ),
        );
        return false;
    }
    if names::GITLAB_RESERVED_PATHS.contains(&v.value.as_str()) {
        diags.push(
            at(
                path,
                v,
                format!(
                    "GitLab reserves the {} path `{}`",
                    if project { "project" } else { "group" },
                    v.value
                ),
            )
            .with_label(format!(
                "reserved: {}",
                names::GITLAB_RESERVED_PATHS.join(", ")
            )),
        );
        return false;
    }
    true
}

/// O1: an Okta group name.
fn okta_group(path: &str, v: &Sp<String>, diags: &mut Vec<Diagnostic>) -> bool {
    if names::is_okta_group(&v.value) {
        return true;
    }
    diags.push(
        at(path, v, format!("invalid Okta group name `{}`", v.value)).with_label(
            "expected letters, digits, `.`, `_`, `-`, starting with a letter or digit, at most 64",
        ),
    );
    false
}

fn https(path: &str, v: &Sp<String>, what: &str, diags: &mut Vec<Diagnostic>) {
    let ok = v
        .value
        .strip_prefix("https://")
        .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace));
    if !ok {
        diags.push(at(path, v, format!("invalid {what}")).with_label("expected an `https://` URL"));
    }
}

fn dns_subdomain(path: &str, v: &Sp<String>, what: &str, diags: &mut Vec<Diagnostic>) {
    if !naming::is_dns_subdomain(&v.value) {
        diags.push(
            at(path, v, format!("invalid {what} `{}`", v.value))
                .with_label("expected a DNS subdomain: lower-case letters, digits, `-` and `.`"),
        );
    }
}

/// A display name (GitLab group name, Grafana team or folder title): 1 to 255 printable
/// characters.
fn display_text(path: &str, v: &Sp<String>, what: &str, diags: &mut Vec<Diagnostic>) {
    let n = v.value.chars().count();
    if v.value.trim().is_empty() || n > 255 || v.value.chars().any(char::is_control) {
        diags.push(
            at(path, v, format!("invalid {what}"))
                .with_label("expected 1 to 255 printable characters"),
        );
    }
}

fn positive_id(path: &str, v: &Sp<u64>, diags: &mut Vec<Diagnostic>) {
    if v.value == 0 {
        diags.push(
            at(path, v, "invalid GitLab id")
                .with_label("expected the group's or project's numeric id, at least 1"),
        );
    }
}

fn at_line(loc: Location) -> String {
    format!("{}:{}", loc.line(), loc.column())
}

// --- platform.yaml ---------------------------------------------------------------------------

fn check_platform_tools(ctx: &Context<'_>, pt: &PlatformTools, diags: &mut Vec<Diagnostic>) {
    let path = PLATFORM_FILE;
    let p = ctx.platform;
    if !naming::is_dns1123_label(&pt.namespace.value) {
        diags.push(
            at(
                path,
                &pt.namespace,
                format!("invalid namespace `{}`", pt.namespace.value),
            )
            .with_label("expected a DNS label: lower-case letters, digits and `-`, at most 63"),
        );
    } else if !p.namespace_prefix.value.is_empty()
        && pt.namespace.value.starts_with(&p.namespace_prefix.value)
    {
        diags.push(
            at(
                path,
                &pt.namespace,
                format!(
                    "namespace `{}` starts with the tenant prefix `{}`",
                    pt.namespace.value, p.namespace_prefix.value
                ),
            )
            .with_label("the tenants' AppProject may deploy into any namespace with that prefix"),
        );
    }
    https(path, &pt.cluster, "cluster URL", diags);
    if !naming::is_dns1123_label(&pt.argocd_project.value) {
        diags.push(
            at(path, &pt.argocd_project, "invalid AppProject name")
                .with_label("expected a DNS label"),
        );
    } else if pt.argocd_project.value == p.argocd.project {
        diags.push(
            at(
                path,
                &pt.argocd_project,
                format!(
                    "AppProject `{}` is the tenants' project",
                    pt.argocd_project.value
                ),
            )
            .with_label(
                "the platform tools need a project of their own (`argocd.project` is the tenants')",
            ),
        );
    }
    // P2
    dns_subdomain(
        path,
        &pt.gitlab.provider_config,
        "provider config name",
        diags,
    );
    dns_subdomain(
        path,
        &pt.grafana.provider_config,
        "provider config name",
        diags,
    );
    if let Some(why) = names::gitlab_path_refusal(&pt.gitlab.root_group.value) {
        diags.push(
            at(
                path,
                &pt.gitlab.root_group,
                format!(
                    "GitLab would refuse the path `{}`",
                    pt.gitlab.root_group.value
                ),
            )
            .with_label(format!(
                "{why}; `rootGroup` is the path of one existing group"
            )),
        );
    }
    positive_id(path, &pt.gitlab.root_group_id, diags);
    if let Some(a) = &pt.artifactory {
        dns_subdomain(path, &a.provider_config, "provider config name", diags);
        dns_subdomain(
            path,
            &a.platform_provider_config,
            "provider config name",
            diags,
        );
        for (key, r) in &a.remotes {
            if !names::is_repository_key(key.as_str()) {
                diags.push(repository_key_error(path, key.location(), key.as_str()));
            }
            let types: Vec<&str> = PACKAGE_TYPES.iter().map(|(t, _)| *t).collect();
            closed(
                path,
                &r.package_type,
                "a package type provisio renders",
                &types,
                diags,
            );
            https(path, &r.url, "remote URL", diags); // A7
            if let Some(u) = &r.registry_url {
                if r.package_type.value != "composer" {
                    diags.push(
                        at(path, u, "`registryUrl` is for composer remotes only").with_label(
                            format!("`{}` is a {} remote", key.as_str(), r.package_type.value),
                        ),
                    );
                } else {
                    https(path, u, "registry URL", diags);
                }
            }
        }
    }
    let k = &pt.kubernetes;
    if k.environments.is_empty() {
        // P3
        diags.push(
            at(
                path,
                &pt.cluster,
                "`platformTools.kubernetes.environments` names no environment",
            )
            .with_label("at least one environment is needed (products' namespaces live in them)"),
        );
    }
    for (env, e) in &k.environments {
        if let Some(why) = naming::check_dns_name(env.as_str(), MAX_ENVIRONMENT_LEN) {
            diags.push(located(
                path,
                env.location(),
                format!("invalid environment name: it {why}"),
            ));
        }
        https(path, &e.cluster, "cluster URL", diags);
        if e.quota.is_empty() {
            diags.push(
                located(
                    path,
                    env.location(),
                    format!("environment `{}` has no default quota", env.as_str()),
                )
                .with_label("give `quota` at least one resource, e.g. `pods`"),
            );
        }
        check_quota(path, &e.quota, diags);
        let lr = &e.limit_range.container;
        for cm in [&lr.max, &lr.min, &lr.default, &lr.default_request] {
            check_cpu_memory(path, cm, diags);
        }
        if let Some(pvc) = &e.limit_range.persistent_volume_claim {
            check_quantity(path, &pvc.max, "storage quantity", diags);
            check_quantity(path, &pvc.min, "storage quantity", diags);
        }
    }
}

fn repository_key_error(path: &str, loc: Location, key: &str) -> Diagnostic {
    // A3
    located(path, loc, format!("invalid repository key `{key}`"))
        .with_label("expected a letter, then lower-case letters, digits and `-`, at most 64")
}

// --- teams/ ----------------------------------------------------------------------------------

fn check_team(pt: &PlatformTools, stem: &str, path: &str, t: &Team, diags: &mut Vec<Diagnostic>) {
    if t.name.value != stem {
        // T1
        diags.push(
            at(
                path,
                &t.name,
                format!("team name `{}` does not match its file", t.name.value),
            )
            .with_label(format!("expected `{stem}`, the file name without `.yaml`")),
        );
    }
    if let Some(why) = naming::check_dns_name(&t.name.value, MAX_TEAM_NAME_LEN) {
        // T2
        diags.push(at(path, &t.name, format!("invalid team name: it {why}")));
    }
    if let Some(d) = &t.display_name {
        display_text(path, d, "display name", diags);
    }
    if let Some(g) = &t.gitlab.group {
        gitlab_path(path, g, false, diags);
    } else if naming::check_dns_name(&t.name.value, MAX_TEAM_NAME_LEN).is_none()
        && names::GITLAB_RESERVED_PATHS.contains(&t.name.value.as_str())
    {
        gitlab_path(path, &t.name, false, diags);
    }
    if let Some(v) = &t.gitlab.visibility {
        closed(path, v, "a GitLab visibility", &VISIBILITIES, diags);
    }
    if let Some(id) = &t.gitlab.id {
        positive_id(path, id, diags);
    }
    let mut seen: BTreeMap<&str, &TeamOkta> = BTreeMap::new();
    for o in &t.okta {
        okta_group(path, &o.group, diags);
        access_level(path, &o.gitlab, diags);
        if let Some(first) = seen.insert(&o.group.value, o) {
            diags.push(mapped_twice(
                path,
                &o.group,
                Some(&first.gitlab),
                Some(&o.gitlab),
                first.group.referenced,
                "the team's GitLab group",
            ));
        }
    }
    if let Some(name) = &t.grafana.team {
        display_text(path, name, "Grafana team name", diags);
    }
    for g in &t.grafana.sync {
        okta_group(path, g, diags);
    }
    if let Some(first) = t.grafana.sync.first()
        && !pt.grafana.team_sync
    {
        // T7
        diags.push(
            at(path, first, "Grafana team sync needs Grafana Enterprise")
                .with_help("set `platformTools.grafana.teamSync: true` in platform.yaml if your Grafana is Enterprise or Cloud, or remove `sync` and manage the team's members in Grafana"),
        );
    }
}

/// O2 / O3: an Okta group listed twice under one owner.
fn mapped_twice(
    path: &str,
    group: &Sp<String>,
    first_level: Option<&Sp<String>>,
    level: Option<&Sp<String>>,
    first_at: Location,
    gitlab_group: &str,
) -> Diagnostic {
    match (first_level, level) {
        (Some(a), Some(b)) if a.value != b.value => at(
            path,
            group,
            format!("Okta group `{}` is mapped twice to {gitlab_group}", group.value),
        )
        .with_label(format!("{} here, {} at line {}", b.value, a.value, first_at.line()))
        .with_help("GitLab keeps one SAML link per Okta group and group: keep one entry with the level you want"),
        _ => at(path, group, format!("Okta group `{}` is listed twice", group.value))
            .with_label(format!("first at line {}", first_at.line()))
            .with_help("merge the two entries"),
    }
}

fn check_teams_together(ctx: &Context<'_>, pt: &PlatformTools, diags: &mut Vec<Diagnostic>) {
    let root = &pt.gitlab.root_group.value;
    let mut paths: BTreeMap<String, (&str, Location)> = BTreeMap::new();
    let mut grafana: BTreeMap<&str, &str> = BTreeMap::new();
    for (path, t) in ctx.teams.values() {
        let seg = t.gitlab.group.as_ref().unwrap_or(&t.name);
        let full = format!("{root}/{}", seg.value);
        if let Some((first, loc)) = paths.get(&full) {
            // G4
            diags.push(
                at(path, seg, format!("GitLab group `{full}` is claimed twice"))
                    .with_label(format!("also claimed by {first}:{}", at_line(*loc))),
            );
        } else {
            paths.insert(full, (path, seg.referenced));
        }
        let name = t.grafana_team();
        if let Some(first) = grafana.insert(name, path) {
            // T8
            let loc = t
                .grafana
                .team
                .as_ref()
                .map_or(t.name.referenced, |n| n.referenced);
            diags.push(
                located(
                    path,
                    loc,
                    format!("Grafana team name `{name}` is used by two teams"),
                )
                .with_label(format!("also used by {first}")),
            );
        }
        if t.destroy() {
            let owned: Vec<&str> = ctx
                .products
                .iter()
                .filter(|(_, (_, p))| {
                    p.tools.is_some() && p.team.as_ref().is_some_and(|n| n.value == t.name.value)
                })
                .map(|(n, _)| n.as_str())
                .collect();
            if !owned.is_empty() {
                // T6
                let d = t.destroy.as_ref().expect("destroy() is true");
                diags.push(
                    at(path, d, format!("team `{}` cannot be destroyed while products name it", t.name.value))
                        .with_label(owned.join(", "))
                        .with_help("move or remove those products first; `destroy` arms the team's own group and Grafana team"),
                );
            }
        }
    }
}

// --- products/: `tools` ----------------------------------------------------------------------

fn check_product(
    ctx: &Context<'_>,
    pt: &PlatformTools,
    t: &Tooled<'_>,
    diags: &mut Vec<Diagnostic>,
) {
    let path = t.path;
    let tools = t.tools;
    if names::RESERVED_PRODUCT_NAMES.contains(&t.name) {
        // T5
        diags.push(
            at(
                path,
                &t.product.name,
                format!("product name `{}` is reserved", t.name),
            )
            .with_label("platform object names start with `team--`, `platform--` and `okta--`"),
        );
    }
    // T3, T4
    let team = match &t.product.team {
        None => {
            diags.push(
                at(
                    path,
                    &t.product.name,
                    "a product with `tools` needs a `team`",
                )
                .with_help("add `team: <name>` naming a file in teams/"),
            );
            None
        }
        Some(name) => match ctx.teams.get(&name.value) {
            Some((_, team)) => Some(team),
            None => {
                let known: Vec<&str> = ctx.teams.keys().map(String::as_str).collect();
                let mut d = at(path, name, format!("unknown team `{}`", name.value)).with_label(
                    if known.is_empty() {
                        "teams/ has no team".to_owned()
                    } else {
                        one_of(&known)
                    },
                );
                if let Some(s) = suggest(&name.value, &known) {
                    d = d.with_help(s);
                }
                diags.push(d);
                None
            }
        },
    };

    // GitLab
    let g = &tools.gitlab;
    match &g.group {
        Some(seg) => {
            gitlab_path(path, seg, false, diags);
        }
        None => {
            if names::GITLAB_RESERVED_PATHS.contains(&t.name) {
                gitlab_path(path, &t.product.name, false, diags);
            }
        }
    }
    let team_visibility = team
        .and_then(|tm| tm.gitlab.visibility.as_ref())
        .map_or("private", |v| v.value.as_str());
    let group_visibility = match &g.visibility {
        Some(v) => {
            if closed(path, v, "a GitLab visibility", &VISIBILITIES, diags)
                && visibility_rank(&v.value) > visibility_rank(team_visibility)
            {
                // G6
                diags.push(
                    at(
                        path,
                        v,
                        format!(
                            "group `{}` is `{}` but its team's group is `{team_visibility}`",
                            group_segment(t),
                            v.value
                        ),
                    )
                    .with_help("GitLab refuses a group more visible than its parent"),
                );
            }
            v.value.as_str()
        }
        None => "private",
    };
    if let Some(id) = &g.id {
        positive_id(path, id, diags);
    }
    let full_group = format!(
        "{}/{}/{}",
        pt.gitlab.root_group.value,
        team.map_or("?", |tm| tm.gitlab_path()),
        group_segment(t)
    );
    let mut projects: BTreeMap<&str, Location> = BTreeMap::new();
    for prj in &g.projects {
        gitlab_path(path, &prj.path, true, diags);
        if let Some(first) = projects.insert(&prj.path.value, prj.path.referenced) {
            // G5
            diags.push(
                at(
                    path,
                    &prj.path,
                    format!("project `{}` is listed twice", prj.path.value),
                )
                .with_label(format!("first at line {}", first.line())),
            );
        }
        if let Some(v) = &prj.visibility
            && closed(path, v, "a GitLab visibility", &VISIBILITIES, diags)
            && visibility_rank(&v.value) > visibility_rank(group_visibility)
        {
            // G6
            diags.push(
                at(
                    path,
                    v,
                    format!(
                        "project `{}` is `{}` but its group {full_group} is `{group_visibility}`",
                        prj.path.value, v.value
                    ),
                )
                .with_help("GitLab refuses a project more visible than its group"),
            );
        }
        if let Some(b) = &prj.default_branch {
            branch_name(path, b, false, diags);
        }
        if let Some(id) = &prj.id {
            positive_id(path, id, diags);
        }
        let mut branches: BTreeMap<&str, Location> = BTreeMap::new();
        for pb in &prj.protected_branches {
            branch_name(path, &pb.branch, true, diags);
            if let Some(first) = branches.insert(&pb.branch.value, pb.branch.referenced) {
                diags.push(
                    at(
                        path,
                        &pb.branch,
                        format!("branch `{}` is protected twice", pb.branch.value),
                    )
                    .with_label(format!("first at line {}", first.line())),
                );
            }
            for (who, v) in [("push", &pb.push), ("merge", &pb.merge)] {
                if let Some(v) = v
                    && branch_access_level(&v.value).is_none()
                {
                    // G8
                    let names: Vec<&str> = BRANCH_ACCESS_LEVELS.iter().map(|(n, _)| *n).collect();
                    let mut d = at(
                        path,
                        v,
                        format!(
                            "`{}` cannot be given {who} rights on a protected branch",
                            v.value
                        ),
                    )
                    .with_label(one_of(&names));
                    if let Some(s) = suggest(&v.value, &names) {
                        d = d.with_help(s);
                    }
                    diags.push(d);
                }
            }
        }
    }
    let mut users: BTreeMap<&str, Location> = BTreeMap::new();
    for m in &g.members {
        if names::gitlab_path_refusal(&m.user.value).is_some() {
            diags.push(
                at(path, &m.user, format!("invalid GitLab username `{}`", m.user.value))
                    .with_label("expected letters, digits, `_`, `.` and `-`, starting and ending with a letter or digit"),
            );
        }
        if let Some(first) = users.insert(&m.user.value, m.user.referenced) {
            // G10
            diags.push(
                at(
                    path,
                    &m.user,
                    format!("user `{}` is listed twice", m.user.value),
                )
                .with_label(format!("first at line {}", first.line())),
            );
        }
        access_level(path, &m.access, diags);
    }

    // Okta
    let envs: Vec<&str> = tools.namespaces.keys().map(Key::as_str).collect();
    let mut seen: BTreeMap<&str, &OktaGrant> = BTreeMap::new();
    for o in &tools.okta {
        okta_group(path, &o.group, diags);
        if let Some(first) = seen.insert(&o.group.value, o) {
            diags.push(mapped_twice(
                path,
                &o.group,
                first.gitlab.as_ref(),
                o.gitlab.as_ref(),
                first.group.referenced,
                &format!("GitLab group {full_group}"),
            ));
        }
        if o.gitlab.is_none() && o.kubernetes.is_empty() && o.artifactory.is_none() {
            // O4
            diags.push(
                at(
                    path,
                    &o.group,
                    format!("Okta group `{}` gets nothing", o.group.value),
                )
                .with_label("give it `gitlab`, `kubernetes` or `artifactory`, or remove it"),
            );
        }
        if let Some(l) = &o.gitlab {
            access_level(path, l, diags);
        }
        for (env, role) in &o.kubernetes {
            closed(
                path,
                role,
                "a role provisio binds",
                &KUBERNETES_ROLES,
                diags,
            ); // O5
            if !tools.namespaces.contains_key(env.as_str()) {
                // O6
                diags.push(
                    located(
                        path,
                        env.location(),
                        format!(
                            "Okta group `{}` is bound in `{}`, but {} has no `{}` namespace",
                            o.group.value,
                            env.as_str(),
                            t.name,
                            env.as_str()
                        ),
                    )
                    .with_label(if envs.is_empty() {
                        "`namespaces` is empty".to_owned()
                    } else {
                        format!("namespaces: {}", envs.join(", "))
                    }),
                );
            }
        }
        if let Some(a) = &o.artifactory {
            closed(path, a, "an Artifactory access", &ARTIFACTORY_ACCESS, diags); // O7
        }
    }

    // Artifactory (only when the product's switch is on; while off, nothing is rendered)
    let art = &tools.artifactory;
    if art.enabled() && !art.packages.is_empty() {
        let remotes = pt.artifactory.as_ref().map(|a| &a.remotes);
        let types: Vec<&str> = PACKAGE_TYPES.iter().map(|(t, _)| *t).collect();
        for (ptype, pk) in &art.packages {
            if package_kinds(ptype.as_str()).is_none() {
                // A1
                let mut d = located(
                    path,
                    ptype.location(),
                    format!("unknown package type `{}`", ptype.as_str()),
                )
                .with_label(one_of(&types));
                if let Some(s) = suggest(ptype.as_str(), &types) {
                    d = d.with_help(s);
                }
                diags.push(d);
                continue;
            }
            if let Some(m) = &pk.max_unique_tags
                && !TAG_LIMITED_PACKAGE_TYPES.contains(&ptype.as_str())
            {
                // A4
                diags.push(
                    at(
                        path,
                        m,
                        format!(
                            "`maxUniqueTags` does not apply to {} repositories",
                            ptype.as_str()
                        ),
                    )
                    .with_label("Artifactory keeps a tag limit for docker and helmoci only"),
                );
            }
            for key in [&pk.local_key, &pk.virtual_key].into_iter().flatten() {
                if !names::is_repository_key(&key.value) {
                    diags.push(repository_key_error(path, key.referenced, &key.value));
                }
            }
            let mut listed = BTreeSet::new();
            for r in &pk.remotes {
                let known: Vec<&str> =
                    remotes.map_or(Vec::new(), |m| m.keys().map(Key::as_str).collect());
                match remotes.and_then(|m| m.get(r.value.as_str())) {
                    None => {
                        // A5
                        let mut d = at(path, r, format!("unknown remote `{}`", r.value)).with_label(
                            if known.is_empty() {
                                "platform.yaml defines no Artifactory remote (`platformTools.artifactory.remotes`)".to_owned()
                            } else {
                                one_of(&known)
                            },
                        );
                        if let Some(s) = suggest(&r.value, &known) {
                            d = d.with_help(s);
                        }
                        diags.push(d);
                    }
                    Some(remote) if remote.package_type.value != ptype.as_str() => {
                        // A6
                        diags.push(at(
                            path,
                            r,
                            format!(
                                "remote `{}` is a {} remote, not {}",
                                r.value,
                                remote.package_type.value,
                                ptype.as_str()
                            ),
                        ));
                    }
                    Some(_) => {}
                }
                if !listed.insert(r.value.as_str()) {
                    diags.push(at(path, r, format!("remote `{}` is listed twice", r.value)));
                }
            }
        }
        if pt.artifactory.is_none() {
            let first = art.packages.keys().next().expect("not empty");
            diags.push(
                located(path, first.location(), "platform.yaml has no `platformTools.artifactory` section")
                    .with_help("configure Artifactory in platform.yaml, or turn it off for this product with `artifactory: {enabled: false}`"),
            );
        }
    }

    // Grafana
    if let Some(f) = &tools.grafana.folder {
        display_text(path, f, "Grafana folder title", diags);
    }
    if let Some(p) = &tools.grafana.team_permission {
        closed(
            path,
            p,
            "a team permission provisio grants",
            &TEAM_PERMISSIONS,
            diags,
        ); // F2
    }

    // Namespaces
    let env_names: Vec<&str> = pt.kubernetes.environments.keys().map(Key::as_str).collect();
    let p = ctx.platform;
    let reserved_namespaces: Vec<&str> = vec![
        "default",
        &p.shared_services.namespace,
        &p.argocd.namespace,
        &pt.namespace.value,
        &p.dns_namespace,
        &p.ingress.controller_namespace,
        &p.monitoring.prometheus_namespace,
    ];
    for (env, ns) in &tools.namespaces {
        if !pt.kubernetes.environments.contains_key(env.as_str()) {
            // K1
            let mut d = located(
                path,
                env.location(),
                format!("unknown environment `{}`", env.as_str()),
            )
            .with_label(one_of(&env_names));
            if let Some(s) = suggest(env.as_str(), &env_names) {
                d = d.with_help(s);
            }
            diags.push(d);
            continue;
        }
        check_quota(path, &ns.quota, diags); // K6
        let name = names::product_namespace(t.name, env.as_str());
        let prefix = &p.namespace_prefix.value;
        if !prefix.is_empty() && name.starts_with(prefix.as_str()) {
            // K2
            diags.push(
                located(path, env.location(), format!("namespace `{name}` starts with the tenant prefix `{prefix}`"))
                    .with_label(format!("tenant namespaces are `{prefix}<tenant id>` and the tenants' AppProject may deploy into any of them")),
            );
        } else if prefix.is_empty() && ctx.tenant_ids.contains(name.as_str()) {
            // K3
            diags.push(
                located(
                    path,
                    env.location(),
                    format!("namespace `{name}` is a tenant's namespace"),
                )
                .with_label(format!(
                    "tenant `{name}` (platform.yaml has no `namespacePrefix`)"
                )),
            );
        } else if name.starts_with("kube-") || reserved_namespaces.contains(&name.as_str()) {
            // K5
            diags.push(
                located(path, env.location(), format!("namespace `{name}` is reserved"))
                    .with_label("`default`, `kube-*`, the shared-services, Argo CD, platform-tools, DNS, ingress and Prometheus namespaces are not product namespaces"),
            );
        }
    }
}

fn group_segment<'a>(t: &'a Tooled<'_>) -> &'a str {
    t.tools.gitlab.group.as_ref().map_or(t.name, |g| &g.value)
}

fn branch_name(path: &str, v: &Sp<String>, wildcard: bool, diags: &mut Vec<Diagnostic>) {
    if !names::is_branch_name(&v.value, wildcard) {
        // G9
        diags.push(
            at(path, v, format!("invalid branch name `{}`", v.value)).with_label(if wildcard {
                "expected a git branch name (`git check-ref-format --branch`) or a wildcard such as `release/*`"
            } else {
                "expected a git branch name (`git check-ref-format --branch`)"
            }),
        );
    }
}

fn check_products_together(
    ctx: &Context<'_>,
    pt: &PlatformTools,
    tooled: &[Tooled<'_>],
    diags: &mut Vec<Diagnostic>,
) {
    // G4: full group paths, across teams and products.
    let root = &pt.gitlab.root_group.value;
    let mut paths: BTreeMap<String, (&str, Location)> = BTreeMap::new();
    for (path, team) in ctx.teams.values() {
        let seg = team.gitlab.group.as_ref().unwrap_or(&team.name);
        paths
            .entry(format!("{root}/{}", seg.value))
            .or_insert((path, seg.referenced));
    }
    // A2: repository keys, across the platform remotes and every product.
    let mut keys: BTreeMap<String, String> = BTreeMap::new();
    if let Some(a) = pt.artifactory_on() {
        for key in a.remotes.keys() {
            keys.insert(
                key.as_str().to_owned(),
                format!("remote `{}` in platform.yaml", key.as_str()),
            );
        }
    }
    let mut folders: BTreeMap<&str, &str> = BTreeMap::new();
    let mut namespaces: BTreeMap<String, String> = BTreeMap::new();
    for t in tooled {
        if let Some(team) = t
            .product
            .team
            .as_ref()
            .and_then(|n| ctx.teams.get(&n.value))
        {
            let seg = t.tools.gitlab.group.as_ref().unwrap_or(&t.product.name);
            let full = format!("{root}/{}/{}", team.1.gitlab_path(), seg.value);
            match paths.get(&full) {
                Some((first, loc)) => diags.push(
                    at(
                        t.path,
                        seg,
                        format!("GitLab group `{full}` is claimed twice"),
                    )
                    .with_label(format!("also claimed by {first}:{}", at_line(*loc))),
                ),
                None => {
                    paths.insert(full, (t.path, seg.referenced));
                }
            }
        }
        let art = &t.tools.artifactory;
        if pt.artifactory_on().is_some() && art.enabled() {
            for (ptype, pk) in &art.packages {
                if package_kinds(ptype.as_str()).is_none() {
                    continue;
                }
                let local = pk.local_key.as_ref().map_or_else(
                    || (names::local_key(t.name, ptype.as_str()), ptype.location()),
                    |k| (k.value.clone(), k.referenced),
                );
                let virt = pk.virtual_key.as_ref().map_or_else(
                    || (names::virtual_key(t.name, ptype.as_str()), ptype.location()),
                    |k| (k.value.clone(), k.referenced),
                );
                for (key, loc) in [local, virt] {
                    let here = match loc.line() {
                        0 => t.path.to_owned(),
                        _ => format!("{}:{}", t.path, at_line(loc)),
                    };
                    match keys.get(&key) {
                        Some(first) => diags.push(
                            located(t.path, loc, format!("repository key `{key}` is used twice"))
                                .with_label(format!("also used by {first}")),
                        ),
                        None => {
                            keys.insert(key, here);
                        }
                    }
                }
            }
        }
        let folder = t.tools.grafana.folder.as_ref();
        let title = folder.map_or(t.name, |f| f.value.as_str());
        if let Some(first) = folders.insert(title, t.path) {
            // F1
            let loc = folder.map_or(t.product.name.referenced, |f| f.referenced);
            diags.push(
                located(
                    t.path,
                    loc,
                    format!("Grafana folder `{title}` is used by two products"),
                )
                .with_label(format!("also used by {first}")),
            );
        }
        for env in t.tools.namespaces.keys() {
            let name = names::product_namespace(t.name, env.as_str());
            let who = format!("product `{}` in `{}`", t.name, env.as_str());
            if let Some(first) = namespaces.get(&name) {
                // K4
                diags.push(
                    located(
                        t.path,
                        env.location(),
                        format!("namespace `{name}` is derived twice"),
                    )
                    .with_label(format!("{first}, {who}")),
                );
            } else {
                namespaces.insert(name, who);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::registry::Sources;
    use crate::testing::{example_sources, replace_in};

    /// The diagnostics (one line each) of the example registry after `edit`.
    fn diagnostics(edit: impl FnOnce(&mut Sources)) -> Vec<String> {
        let mut s = example_sources();
        edit(&mut s);
        crate::registry::load_sources(s)
            .report
            .diagnostics
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn the_example_registry_is_valid() {
        assert_eq!(diagnostics(|_| {}), Vec::<String>::new());
    }

    /// The rules the data-driven cases (`tests/data/invalid/platform-*`) do not show, one edit
    /// each: (file, text, replacement, the one diagnostic expected).
    #[test]
    fn each_rule_reports_at_the_offending_value() {
        let cases: &[(&str, &str, &str, &str)] = &[
            // T1, T2
            (
                "teams/identity.yaml",
                "name: identity",
                "name: identity-team",
                "teams/identity.yaml:1:7: team name `identity-team` does not match its file (expected `identity`, the file name without `.yaml`)",
            ),
            // T5
            (
                "products/auth.yaml",
                "name: auth",
                "name: okta",
                "products/auth.yaml:1:7: product name `okta` does not match its file (expected `auth`, the file name without `.yaml`)",
            ),
            // G4: two teams claiming one GitLab group
            (
                "teams/identity.yaml",
                "group: identity",
                "group: commerce",
                "teams/identity.yaml:4:10: GitLab group `ecommerce/commerce` is claimed twice (also claimed by teams/commerce.yaml:5:10)",
            ),
            // G5
            (
                "products/auth.yaml",
                "  okta:\n",
                "      - path: auth-service\n  okta:\n",
                "products/auth.yaml:32:15: project `auth-service` is listed twice (first at line 26)",
            ),
            // G6: a project more visible than its group
            (
                "products/auth.yaml",
                "      - path: auth-service\n",
                "      - path: auth-service\n        visibility: internal\n",
                "products/auth.yaml:27:21: project `auth-service` is `internal` but its group ecommerce/identity/auth is `private`",
            ),
            // G8
            (
                "products/auth.yaml",
                "push: no-one",
                "push: reporter",
                "products/auth.yaml:30:19: `reporter` cannot be given push rights on a protected branch (expected one of: no-one, developer, maintainer)",
            ),
            // G9
            (
                "products/auth.yaml",
                "branch: main",
                "branch: main..x",
                "products/auth.yaml:29:21: invalid branch name `main..x` (expected a git branch name (`git check-ref-format --branch`) or a wildcard such as `release/*`)",
            ),
            // G10
            (
                "products/orders.yaml",
                "        access: developer\n",
                "        access: developer\n      - user: renovate-bot\n        access: reporter\n",
                "products/orders.yaml:34:15: user `renovate-bot` is listed twice (first at line 32)",
            ),
            // O5
            (
                "products/auth.yaml",
                "kubernetes: {dev: edit, prod: view}",
                "kubernetes: {dev: admin, prod: view}",
                "products/auth.yaml:35:25: `admin` is not a role provisio binds (expected `edit` or `view`)",
            ),
            // O7
            (
                "products/auth.yaml",
                "kubernetes: {dev: edit, prod: view}",
                "kubernetes: {dev: edit, prod: view}\n      artifactory: write",
                "products/auth.yaml:36:20: `write` is not an Artifactory access (expected `read` or `deploy`)",
            ),
            // A3
            (
                "products/orders.yaml",
                "        maxUniqueTags: 100\n",
                "        maxUniqueTags: 100\n        localKey: Orders_Docker\n",
                "products/orders.yaml:47:19: invalid repository key `Orders_Docker` (expected a letter, then lower-case letters, digits and `-`, at most 64)",
            ),
            // A7
            (
                "platform.yaml",
                "url: https://registry-1.docker.io/",
                "url: http://registry-1.docker.io/",
                "platform.yaml:112:14: invalid remote URL (expected an `https://` URL)",
            ),
            // F1
            (
                "products/auth.yaml",
                "folder: Auth",
                "folder: Orders",
                "products/orders.yaml:51:13: Grafana folder `Orders` is used by two products (also used by products/auth.yaml)",
            ),
            // F2
            (
                "products/auth.yaml",
                "teamPermission: Admin",
                "teamPermission: View",
                "products/auth.yaml:43:21: `View` is not a team permission provisio grants (expected `Edit` or `Admin`)",
            ),
            // K5
            (
                "platform.yaml",
                "  namespace: platform-tools\n",
                "  namespace: auth-dev\n",
                "products/auth.yaml:45:5: namespace `auth-dev` is reserved (`default`, `kube-*`, the shared-services, Argo CD, platform-tools, DNS, ingress and Prometheus namespaces are not product namespaces)",
            ),
            // P2
            (
                "platform.yaml",
                "providerConfig: gitlab",
                "providerConfig: GitLab",
                "platform.yaml:96:21: invalid provider config name `GitLab` (expected a DNS subdomain: lower-case letters, digits, `-` and `.`)",
            ),
            // The platform's project is not the tenants'
            (
                "platform.yaml",
                "argocdProject: platform",
                "argocdProject: tenants",
                "platform.yaml:93:18: AppProject `tenants` is the tenants' project (the platform tools need a project of their own (`argocd.project` is the tenants'))",
            ),
        ];
        let mut wrong = Vec::new();
        for (file, from, to, expected) in cases {
            let d = diagnostics(|s| replace_in(s, file, from, to));
            if d != [expected.to_string()] {
                wrong.push(format!(
                    "{file}: {from:?} → {to:?}\n  expected {expected}\n  got {d:?}"
                ));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    /// T5: a product named like an object-name prefix.
    #[test]
    fn reserved_product_names() {
        let d = diagnostics(|s| {
            let auth = s["products/auth.yaml"].clone();
            s.insert(
                "products/okta.yaml".into(),
                auth.replace("name: auth", "name: okta")
                    .replace("group: auth", "group: okta")
                    .replace("folder: Auth", "folder: Okta")
                    .replace("    dev: {}\n    prod: {}", "    dev: {}"),
            );
        });
        assert!(
            d.contains(&"products/okta.yaml:1:7: product name `okta` is reserved (platform object names start with `team--`, `platform--` and `okta--`)".to_owned()),
            "{d:#?}"
        );
    }

    /// K3 needs a registry the example is not: no namespace prefix, and a product and an
    /// environment that spell a tenant's id.
    #[test]
    fn a_namespace_clashes_with_a_tenants_without_prefix() {
        let d = diagnostics(|s| {
            replace_in(
                s,
                "platform.yaml",
                "namespacePrefix: e-commerce-",
                "namespacePrefix: \"\"",
            );
            replace_in(
                s,
                "platform.yaml",
                "      staging:\n",
                "      7f3a9c:\n        cluster: https://kubernetes.default.svc\n        quota: {pods: \"1\"}\n        limitRange: {container: {max: {cpu: \"1\", memory: 1Gi}, min: {cpu: 1m, memory: 1Mi}, default: {cpu: 1m, memory: 1Mi}, defaultRequest: {cpu: 1m, memory: 1Mi}}}\n      staging:\n",
            );
            let auth = s["products/auth.yaml"].clone();
            s.insert(
                "products/abc-corporation.yaml".into(),
                auth.replace("name: auth", "name: abc-corporation")
                    .replace("group: auth", "group: abc-corporation")
                    .replace("folder: Auth", "folder: ABC")
                    .replace("    dev: {}\n    prod: {}", "    7f3a9c: {}"),
            );
        });
        let clash: Vec<&String> = d.iter().filter(|d| d.contains("namespace `")).collect();
        assert_eq!(
            clash,
            [&"products/abc-corporation.yaml:45:5: namespace `abc-corporation-7f3a9c` is a tenant's namespace (tenant `abc-corporation-7f3a9c` (platform.yaml has no `namespacePrefix`))".to_owned()],
            "{d:#?}"
        );
    }
}
