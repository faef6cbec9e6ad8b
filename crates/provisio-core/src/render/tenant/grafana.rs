//! The tenant's Grafana access, declarative (seed phase 11.3), as managed resources of
//! Grafana's Crossplane provider in the tenant namespace: a folder holding the tenant's
//! dashboard, the admin user (password from the `tenant-admin` Secret, copied from the secret
//! store by an ExternalSecret), a team with that user, and the folder's permissions: View for
//! that team only. FolderPermission owns the folder's whole permission list ("items omitted
//! from the list will be removed"), so the default Viewer/Editor role grants go and no other
//! tenant sees the folder. Every object is deletable (`*`): the purge's first step prunes them
//! and Crossplane removes them from Grafana.
//!
//! Isolation limit (documented in docs/lifecycle.md): one Grafana organisation, so a data
//! source is usable by every member; only the folder and dashboard are isolated.

use crate::plan::TenantPlan;
use crate::plan::lifecycle::{GRAFANA_OBJECTS, grafana_login};
use crate::render::objects::{meta, wave};
use crate::render::platform::crossplane::*;
use crate::render::templates::{self, Environment};
use crate::render::yaml::{RenderError, to_yaml};

/// The Secret (in the tenant namespace) holding the admin's initial password, key `password`.
pub const ADMIN_SECRET: &str = "tenant-admin";

/// A 16-hex digest of the tenant id: Grafana uids are at most 40 characters.
pub fn uid_digest(id: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(id))[..16].to_owned()
}

/// The five objects, as YAML documents, in [`GRAFANA_OBJECTS`] order.
pub(super) fn grafana(
    plan: &TenantPlan<'_>,
    env: &Environment,
) -> Result<Vec<String>, RenderError> {
    let t = plan.tenant;
    let pc = &plan.platform.lifecycle.grafana.provider_config;
    let m = |name: &str| meta(plan, name, wave::ACCESS, &[]);
    let title = format!("{} ({})", t.name, plan.id);
    let [folder, dashboard, user, team, permission] = GRAFANA_OBJECTS.map(|(_, name)| name);
    let docs = vec![
        to_yaml(
            "Folder",
            &managed(
                GRAFANA_API,
                "Folder",
                m(folder),
                FolderParams {
                    prevent_destroy_if_not_empty: false,
                    title: title.clone(),
                    uid: format!("tenant-folder-{}", uid_digest(plan.id)),
                },
                Policies::All,
                pc,
            ),
        )?,
        to_yaml(
            "Dashboard",
            &managed(
                GRAFANA_API,
                "Dashboard",
                m(dashboard),
                DashboardParams {
                    config_json: templates::dashboard_json(env, plan)?,
                    folder_ref: to(folder),
                    overwrite: true,
                },
                Policies::All,
                pc,
            ),
        )?,
        to_yaml(
            "User",
            &managed(
                GRAFANA_API,
                "User",
                m(user),
                UserParams {
                    email: t.contacts.admin.value.clone(),
                    is_admin: false,
                    login: grafana_login(plan.id),
                    name: format!("{} Admin", t.name),
                    password_secret_ref: SecretKeyRef {
                        key: "password".into(),
                        name: ADMIN_SECRET.into(),
                    },
                },
                Policies::All,
                pc,
            ),
        )?,
        to_yaml(
            "Team",
            &managed(
                GRAFANA_API,
                "Team",
                m(team),
                TeamParams {
                    member_refs: Some(vec![to(user)]),
                    name: title,
                    team_sync: None,
                },
                Policies::All,
                pc,
            ),
        )?,
        to_yaml(
            "FolderPermission",
            &managed(
                GRAFANA_API,
                "FolderPermission",
                m(permission),
                FolderPermissionParams {
                    folder_ref: to(folder),
                    permissions: vec![FolderPermissionItem {
                        permission: "View".into(),
                        role: None,
                        team_ref: Some(to(team)),
                    }],
                },
                Policies::All,
                pc,
            ),
        )?,
    ];
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::templates::environment;
    use crate::testing::{ACTIVE, example_registry, plan};

    #[test]
    fn the_api_version_the_activation_spec_names_is_the_renderers() {
        assert_eq!(crate::plan::lifecycle::GRAFANA_API, GRAFANA_API);
    }

    #[test]
    fn the_team_views_its_folder_only_and_the_user_reads_its_password_from_its_namespace() {
        let reg = example_registry();
        let plan = plan(&reg, ACTIVE);
        let docs = grafana(&plan, &environment()).unwrap();
        let v: Vec<serde_json::Value> = docs
            .iter()
            .map(|d| serde_saphyr::from_str(d).unwrap())
            .collect();
        let kinds: Vec<&str> = v.iter().map(|o| o["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            ["Folder", "Dashboard", "User", "Team", "FolderPermission"]
        );
        for o in &v {
            assert_eq!(o["metadata"]["namespace"], plan.namespace);
            assert_eq!(o["spec"]["managementPolicies"], serde_json::json!(["*"]));
            assert_eq!(o["spec"]["providerConfigRef"]["name"], "grafana");
        }
        let user = &v[2]["spec"]["forProvider"];
        assert_eq!(user["email"], "admin@abc-corp.com");
        assert_eq!(user["login"], "abc-corporation-7f3a9c-admin");
        assert_eq!(user["isAdmin"], false);
        assert_eq!(
            user["passwordSecretRef"],
            serde_json::json!({"key": "password", "name": "tenant-admin"})
        );
        assert_eq!(
            v[4]["spec"]["forProvider"]["permissions"],
            serde_json::json!([{"permission": "View", "teamRef": {"name": "tenant"}}]),
            "one grant: the tenant's team views its folder; the role defaults are removed"
        );
        assert_eq!(
            v[3]["spec"]["forProvider"]["memberRefs"],
            serde_json::json!([{"name": "tenant-admin"}])
        );
        let uid = v[0]["spec"]["forProvider"]["uid"].as_str().unwrap();
        assert!(uid.len() <= 40, "{uid}");
    }
}
