//! Grafana through Grafana's Crossplane provider: one Team per team (its members follow Okta
//! groups only on Grafana Enterprise or Cloud, `teamSync`), and per product a Folder holding
//! its service dashboard, with a FolderPermission that owns the folder's permissions (the
//! team's, and View for the Viewer role). FolderPermissionItem is not used: it has no
//! references, so it would need the team's numeric id.

use super::crossplane::*;
use super::{Ctx, FileSet, Owner, TOOLS_DIR, Tooled};
use crate::naming::platform::{self as names, object_name};
use crate::registry::Team;
use crate::render::templates;
use crate::render::yaml::RenderError;

pub(super) fn team(ctx: &Ctx<'_>, team: &Team, set: &mut FileSet) -> Result<(), RenderError> {
    let name = &team.name.value;
    let owner = Owner::Team(name.clone());
    let team_sync = (ctx.pt.grafana.team_sync && !team.grafana.sync.is_empty()).then(|| {
        let mut groups: Vec<String> = team.grafana.sync.iter().map(|g| g.value.clone()).collect();
        groups.sort();
        groups.dedup();
        vec![TeamSync { groups }]
    });
    // No LateInitialize: members added in Grafana are not copied into the spec and re-imposed.
    let policies = if team.destroy() {
        Policies::DestroyNoLateInit
    } else {
        Policies::KeepNoLateInit
    };
    set.push(
        &format!("{TOOLS_DIR}/teams/{name}/grafana.yaml"),
        &owner,
        &managed(
            GRAFANA_API,
            "Team",
            ctx.meta(&super::gitlab::team_group(name), &owner, None),
            TeamParams {
                member_refs: None,
                name: team.grafana_team().to_owned(),
                team_sync,
            },
            policies,
            &ctx.pt.grafana.provider_config.value,
        ),
    )
}

pub(super) fn product(ctx: &Ctx<'_>, t: &Tooled<'_>, set: &mut FileSet) -> Result<(), RenderError> {
    let name = t.name;
    let owner = Owner::Product(name.to_owned());
    let file = format!("{TOOLS_DIR}/products/{name}/grafana.yaml");
    let pc = &ctx.pt.grafana.provider_config.value;
    let g = &t.tools.grafana;
    let data = if t.tools.destroy() {
        Policies::All
    } else {
        Policies::Keep
    };
    set.push(
        &file,
        &owner,
        &managed(
            GRAFANA_API,
            "Folder",
            ctx.meta(name, &owner, None),
            FolderParams {
                // A destroyed folder that still holds dashboards the registry does not declare
                // is not deleted (Grafana ≥ 10.2).
                prevent_destroy_if_not_empty: true,
                title: g.folder.as_ref().map_or(name, |f| &f.value).to_owned(),
                // Fixed, so a released folder is found again when the product comes back.
                uid: name.to_owned(),
            },
            data,
            pc,
        ),
    )?;
    let mut permissions = vec![FolderPermissionItem {
        permission: g
            .team_permission
            .as_ref()
            .map_or("Edit", |p| &p.value)
            .to_owned(),
        role: None,
        team_ref: Some(to(&super::gitlab::team_group(&t.team.name.value))),
    }];
    if g.org_viewers.unwrap_or(true) {
        permissions.push(FolderPermissionItem {
            permission: "View".into(),
            role: Some("Viewer".into()),
            team_ref: None,
        });
    }
    set.push(
        &file,
        &owner,
        &managed(
            GRAFANA_API,
            "FolderPermission",
            ctx.meta(name, &owner, None),
            FolderPermissionParams {
                folder_ref: to(name),
                permissions,
            },
            Policies::All,
            pc,
        ),
    )?;
    if g.dashboard.unwrap_or(true) {
        let json = templates::product_dashboard_json(
            &ctx.env,
            name,
            &t.team.name.value,
            &names::dashboard_uid(name),
        )?;
        set.push(
            &file,
            &owner,
            &managed(
                GRAFANA_API,
                "Dashboard",
                ctx.meta(&object_name(&[name, "service"]), &owner, None),
                DashboardParams {
                    config_json: json,
                    folder_ref: to(name),
                    overwrite: true,
                },
                data,
                pc,
            ),
        )?;
    }
    Ok(())
}
