//! GitLab through provider-gitlab's namespaced kinds: the root group (observed only), one
//! group per team and per product below it, the products' projects and protected branches,
//! one SAML group link per (group, Okta group, level) and direct members. Everything is linked
//! by references (`parentIdRef`, `namespaceIdRef`, `projectIdRef`, `groupIdRef`), never by
//! numeric ids, except where an existing object is adopted (`crossplane.io/external-name`).
//!
//! A SAML link cannot be updated (the provider's update does nothing while its up-to-date check
//! compares the level), so the level is part of the link's name: a changed level is a new
//! object and the old one is pruned. Its external name is the Okta group, so a link that
//! already exists in GitLab is adopted rather than duplicated.

use super::crossplane::*;
use super::{Ctx, FileSet, Owner, TOOLS_DIR, Tooled};
use crate::naming::platform::{self as names, object_name, slug};
use crate::registry::{Team, branch_access_level, gitlab_access_level};
use crate::render::yaml::RenderError;

/// Name of the root group's managed resource.
pub const ROOT: &str = "platform--root";

/// The group's name for its team's managed resource: `team--<team>`.
pub fn team_group(team: &str) -> String {
    object_name(&[names::TEAM, team])
}

pub(super) fn root(ctx: &Ctx<'_>, set: &mut FileSet) -> Result<(), RenderError> {
    let g = &ctx.pt.gitlab;
    let group = managed(
        GITLAB_GROUPS_API,
        "Group",
        ctx.meta(
            ROOT,
            &Owner::Platform,
            Some(g.root_group_id.value.to_string()),
        ),
        GroupParams {
            description: None,
            name: None,
            parent_id_ref: None,
            path: g.root_group.value.clone(),
            permanently_remove: None,
            remove_finalizer_on_pending_deletion: None,
            visibility: None,
        },
        Policies::Observe,
        &g.provider_config.value,
    );
    set.push(
        &format!("{TOOLS_DIR}/gitlab-root.yaml"),
        &Owner::Platform,
        &group,
    )
}

/// `(permanentlyRemove, removeFinalizerOnPendingDeletion)` on a destroy-armed group or
/// project; nothing otherwise.
fn on_destroy(ctx: &Ctx<'_>, destroy: bool) -> (Option<bool>, Option<bool>) {
    if destroy {
        let o = &ctx.pt.gitlab.on_destroy;
        (
            Some(o.permanently_remove),
            Some(o.remove_finalizer_on_pending_deletion),
        )
    } else {
        (None, None)
    }
}

fn data_policies(destroy: bool) -> Policies {
    if destroy {
        Policies::All
    } else {
        Policies::Keep
    }
}

pub(super) fn team(ctx: &Ctx<'_>, team: &Team, set: &mut FileSet) -> Result<(), RenderError> {
    let name = &team.name.value;
    let owner = Owner::Team(name.clone());
    let file = format!("{TOOLS_DIR}/teams/{name}/gitlab.yaml");
    let pc = &ctx.pt.gitlab.provider_config.value;
    let group_name = team_group(name);
    let (permanently_remove, remove_finalizer) = on_destroy(ctx, team.destroy());
    set.push(
        &file,
        &owner,
        &managed(
            GITLAB_GROUPS_API,
            "Group",
            ctx.meta(
                &group_name,
                &owner,
                team.gitlab.id.as_ref().map(|i| i.value.to_string()),
            ),
            GroupParams {
                description: None,
                name: Some(team.display_name().to_owned()),
                parent_id_ref: Some(to(ROOT)),
                path: team.gitlab_path().to_owned(),
                permanently_remove,
                remove_finalizer_on_pending_deletion: remove_finalizer,
                visibility: Some(
                    team.gitlab
                        .visibility
                        .as_ref()
                        .map_or("private", |v| &v.value)
                        .to_owned(),
                ),
            },
            data_policies(team.destroy()),
            pc,
        ),
    )?;
    let mut okta: Vec<_> = team.okta.iter().collect();
    okta.sort_by(|a, b| a.group.value.cmp(&b.group.value));
    for o in okta {
        saml_link(
            ctx,
            set,
            &file,
            &owner,
            &[names::TEAM, name],
            &group_name,
            &o.group.value,
            &o.gitlab.value,
        )?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn saml_link(
    ctx: &Ctx<'_>,
    set: &mut FileSet,
    file: &str,
    owner: &Owner,
    prefix: &[&str],
    group: &str,
    okta: &str,
    level: &str,
) -> Result<(), RenderError> {
    let okta_part = slug(okta);
    let mut parts = prefix.to_vec();
    parts.extend([okta_part.as_str(), level]);
    let link = managed(
        GITLAB_GROUPS_API,
        "SamlGroupLink",
        ctx.meta(&object_name(&parts), owner, Some(okta.to_owned())),
        SamlGroupLinkParams {
            access_level: gitlab_access_level(level).expect("validated"),
            group_id_ref: to(group),
            name: okta.to_owned(),
        },
        Policies::All,
        &ctx.pt.gitlab.provider_config.value,
    );
    set.push(file, owner, &link)
}

pub(super) fn product(ctx: &Ctx<'_>, t: &Tooled<'_>, set: &mut FileSet) -> Result<(), RenderError> {
    let name = t.name;
    let owner = Owner::Product(name.to_owned());
    let file = format!("{TOOLS_DIR}/products/{name}/gitlab.yaml");
    let pc = &ctx.pt.gitlab.provider_config.value;
    let g = &t.tools.gitlab;
    let destroy = t.tools.destroy();
    let (permanently_remove, remove_finalizer) = on_destroy(ctx, destroy);
    let visibility = g.visibility.as_ref().map_or("private", |v| &v.value);
    set.push(
        &file,
        &owner,
        &managed(
            GITLAB_GROUPS_API,
            "Group",
            ctx.meta(name, &owner, g.id.as_ref().map(|i| i.value.to_string())),
            GroupParams {
                description: t.product.description.clone(),
                name: Some(name.to_owned()),
                parent_id_ref: Some(to(&team_group(&t.team.name.value))),
                path: g.group.as_ref().map_or(name, |s| &s.value).to_owned(),
                permanently_remove,
                remove_finalizer_on_pending_deletion: remove_finalizer,
                visibility: Some(visibility.to_owned()),
            },
            data_policies(destroy),
            pc,
        ),
    )?;
    let mut projects: Vec<_> = g.projects.iter().collect();
    projects.sort_by(|a, b| a.path.value.cmp(&b.path.value));
    for prj in projects {
        let path = &prj.path.value;
        let project_name = object_name(&[name, path]);
        set.push(
            &file,
            &owner,
            &managed(
                GITLAB_PROJECTS_API,
                "Project",
                ctx.meta(
                    &project_name,
                    &owner,
                    prj.id.as_ref().map(|i| i.value.to_string()),
                ),
                ProjectParams {
                    default_branch: prj.default_branch().to_owned(),
                    description: prj.description.clone(),
                    initialize_with_readme: true,
                    name: path.clone(),
                    namespace_id_ref: to(name),
                    path: path.clone(),
                    permanently_remove,
                    remove_finalizer_on_pending_deletion: remove_finalizer,
                    visibility: prj
                        .visibility
                        .as_ref()
                        .map_or(visibility, |v| &v.value)
                        .to_owned(),
                },
                data_policies(destroy),
                pc,
            ),
        )?;
        let mut branches: Vec<_> = prj.protected_branches.iter().collect();
        branches.sort_by(|a, b| a.branch.value.cmp(&b.branch.value));
        for b in branches {
            let level = |v: &Option<crate::registry::Sp<String>>| AccessLevel {
                access_level: branch_access_level(v.as_ref().map_or("maintainer", |v| &v.value))
                    .expect("validated"),
            };
            set.push(
                &file,
                &owner,
                &managed(
                    GITLAB_PROJECTS_API,
                    "ProtectedBranch",
                    ctx.meta(
                        &object_name(&[name, path, &slug(&b.branch.value)]),
                        &owner,
                        None,
                    ),
                    ProtectedBranchParams {
                        allow_force_push: b.allow_force_push,
                        branch_name: b.branch.value.clone(),
                        merge_access_levels: vec![level(&b.merge)],
                        project_id_ref: to(&project_name),
                        push_access_levels: vec![level(&b.push)],
                    },
                    data_policies(destroy),
                    pc,
                ),
            )?;
        }
    }
    let mut okta: Vec<_> = t.tools.okta.iter().filter(|o| o.gitlab.is_some()).collect();
    okta.sort_by(|a, b| a.group.value.cmp(&b.group.value));
    for o in okta {
        let level = &o.gitlab.as_ref().expect("filtered").value;
        saml_link(
            ctx,
            set,
            &file,
            &owner,
            &[name],
            name,
            &o.group.value,
            level,
        )?;
    }
    let mut members: Vec<_> = g.members.iter().collect();
    members.sort_by(|a, b| a.user.value.cmp(&b.user.value));
    for m in members {
        set.push(
            &file,
            &owner,
            &managed(
                GITLAB_GROUPS_API,
                "Member",
                ctx.meta(&object_name(&[name, &slug(&m.user.value)]), &owner, None),
                MemberParams {
                    access_level: gitlab_access_level(&m.access.value).expect("validated"),
                    group_id_ref: to(name),
                    user_name: m.user.value.clone(),
                },
                Policies::All,
                pc,
            ),
        )?;
    }
    Ok(())
}
