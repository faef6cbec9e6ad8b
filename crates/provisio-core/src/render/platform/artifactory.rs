//! Artifactory through the community JFrog providers (pinned: one maintainer): the platform's
//! remote repositories, per product and package type one local repository and one virtual
//! repository aggregating it with the remotes it proxies, and JFrog platform permissions for
//! the product's Okta groups (read or deploy on its local repositories; read and write on the
//! remotes it uses, which filling a remote cache needs). An Okta group gets a JFrog group of the
//! same name, which SAML login associates users with. The repository key is the managed
//! resource's external name (the providers have no `key` field).
//!
//! Nothing is rendered when `platformTools.artifactory` is off or absent, nor for a product
//! whose `artifactory.enabled` is false: turning it off releases the repositories and removes
//! the permissions.

use std::collections::BTreeSet;

use super::crossplane::*;
use super::{Ctx, FileSet, Owner, TOOLS_DIR, Tooled};
use crate::naming::platform::{self as names, object_name, slug};
use crate::registry::{Key, PackageRepos, package_kinds};
use crate::render::yaml::RenderError;

/// Permissions of `read` and `deploy` on a product's local repositories.
fn artifact_actions(access: &str) -> Vec<&'static str> {
    match access {
        "deploy" => vec!["ANNOTATE", "READ", "WRITE"],
        _ => vec!["READ"],
    }
}

/// What filling a remote cache needs.
const CACHE_ACTIONS: [&str; 2] = ["READ", "WRITE"];

/// The repositories and permissions a product renders, if Artifactory is on for it.
struct ProductRepos<'a> {
    /// (package type, settings, local key, virtual key), by package type.
    packages: Vec<(&'a Key, &'a PackageRepos, String, String)>,
    /// (Okta group, `read`/`deploy`), by group.
    okta: Vec<(&'a str, &'a str)>,
}

fn product_repos<'a>(ctx: &Ctx<'_>, t: &Tooled<'a>) -> Option<ProductRepos<'a>> {
    ctx.pt.artifactory_on()?;
    let a = &t.tools.artifactory;
    if !a.enabled() || a.packages.is_empty() {
        return None;
    }
    let packages = a
        .packages
        .iter()
        .map(|(ptype, pk)| {
            let local = pk.local_key.as_ref().map_or_else(
                || names::local_key(t.name, ptype.as_str()),
                |k| k.value.clone(),
            );
            let virt = pk.virtual_key.as_ref().map_or_else(
                || names::virtual_key(t.name, ptype.as_str()),
                |k| k.value.clone(),
            );
            (ptype, pk, local, virt)
        })
        .collect();
    let mut okta: Vec<(&str, &str)> = t
        .tools
        .okta
        .iter()
        .filter_map(|o| {
            o.artifactory
                .as_ref()
                .map(|a| (o.group.value.as_str(), a.value.as_str()))
        })
        .collect();
    okta.sort();
    Some(ProductRepos { packages, okta })
}

/// The remotes one product's virtual repositories aggregate, sorted.
fn remotes_used(repos: &ProductRepos<'_>) -> BTreeSet<String> {
    repos
        .packages
        .iter()
        .flat_map(|(_, pk, _, _)| pk.remotes.iter().map(|r| r.value.clone()))
        .collect()
}

/// The remotes (`artifactory-remotes.yaml`) and one JFrog group per Okta group some product's
/// permission names (`jfrog-groups.yaml`).
pub(super) fn platform(
    ctx: &Ctx<'_>,
    tooled: &[Tooled<'_>],
    set: &mut FileSet,
) -> Result<(), RenderError> {
    let Some(a) = ctx.pt.artifactory_on() else {
        return Ok(());
    };
    let owner = Owner::Platform;
    for (key, r) in &a.remotes {
        let kinds = package_kinds(&r.package_type.value).expect("validated");
        set.push(
            &format!("{TOOLS_DIR}/artifactory-remotes.yaml"),
            &owner,
            &managed(
                REMOTE_REPOSITORY_API,
                kinds[1],
                ctx.meta(key.as_str(), &owner, Some(key.as_str().to_owned())),
                RemoteRepositoryParams {
                    composer_registry_url: r.registry_url.as_ref().map(|u| u.value.clone()),
                    description: format!(
                        "{} remote {} (platform-wide cache)",
                        r.package_type.value, r.url.value
                    ),
                    url: r.url.value.clone(),
                },
                Policies::Keep,
                &a.provider_config.value,
            ),
        )?;
    }
    let mut groups = BTreeSet::new();
    for t in tooled {
        if let Some(repos) = product_repos(ctx, t) {
            groups.extend(repos.okta.iter().map(|(g, _)| *g));
        }
    }
    for g in groups {
        set.push(
            &format!("{TOOLS_DIR}/jfrog-groups.yaml"),
            &owner,
            &managed(
                JFROG_PLATFORM_API,
                "Group",
                ctx.meta(&object_name(&[names::OKTA, &slug(g)]), &owner, None),
                JfrogGroupParams {
                    description: format!(
                        "Okta group {g}: users are associated with it at SAML login"
                    ),
                    name: g.to_owned(),
                },
                Policies::Keep,
                &a.platform_provider_config.value,
            ),
        )?;
    }
    Ok(())
}

pub(super) fn product(ctx: &Ctx<'_>, t: &Tooled<'_>, set: &mut FileSet) -> Result<(), RenderError> {
    let (Some(a), Some(repos)) = (ctx.pt.artifactory_on(), product_repos(ctx, t)) else {
        return Ok(());
    };
    let name = t.name;
    let owner = Owner::Product(name.to_owned());
    let file = format!("{TOOLS_DIR}/products/{name}/artifactory.yaml");
    let pc = &a.provider_config.value;
    let data = if t.tools.destroy() {
        Policies::All
    } else {
        Policies::Keep
    };
    let mut locals = BTreeSet::new();
    for (ptype, pk, local, virt) in &repos.packages {
        let kinds = package_kinds(ptype.as_str()).expect("validated");
        set.push(
            &file,
            &owner,
            &managed(
                LOCAL_REPOSITORY_API,
                kinds[0],
                ctx.meta(local, &owner, Some(local.clone())),
                LocalRepositoryParams {
                    description: format!(
                        "{name}: local {} repository (deploy here)",
                        ptype.as_str()
                    ),
                    max_unique_tags: pk.max_unique_tags.as_ref().map(|m| m.value),
                },
                data,
                pc,
            ),
        )?;
        let mut repositories = vec![local.clone()];
        repositories.extend(pk.remotes.iter().map(|r| r.value.clone()));
        set.push(
            &file,
            &owner,
            &managed(
                VIRTUAL_REPOSITORY_API,
                kinds[2],
                ctx.meta(virt, &owner, Some(virt.clone())),
                VirtualRepositoryParams {
                    default_deployment_repo: local.clone(),
                    description: format!(
                        "{name}: {}, resolves {}",
                        ptype.as_str(),
                        repositories.join(", then ")
                    ),
                    repositories,
                },
                data,
                pc,
            ),
        )?;
        locals.insert(local.clone());
    }
    if repos.okta.is_empty() {
        return Ok(());
    }
    let permission =
        |name: String, targets: &BTreeSet<String>, groups: Vec<PermissionGroup>| PermissionParams {
            artifact: PermissionArtifact {
                actions: PermissionActions { groups },
                targets: targets
                    .iter()
                    .map(|k| PermissionTarget { name: k.clone() })
                    .collect(),
            },
            name,
        };
    let ppc = &a.platform_provider_config.value;
    set.push(
        &file,
        &owner,
        &managed(
            JFROG_PLATFORM_API,
            "Permission",
            ctx.meta(&object_name(&[name, "artifacts"]), &owner, None),
            permission(
                names::artifacts_permission(name),
                &locals,
                repos
                    .okta
                    .iter()
                    .map(|(g, access)| PermissionGroup {
                        name: (*g).to_owned(),
                        permissions: artifact_actions(access),
                    })
                    .collect(),
            ),
            Policies::All,
            ppc,
        ),
    )?;
    let remotes = remotes_used(&repos);
    if !remotes.is_empty() {
        set.push(
            &file,
            &owner,
            &managed(
                JFROG_PLATFORM_API,
                "Permission",
                ctx.meta(&object_name(&[name, "remote-cache"]), &owner, None),
                permission(
                    names::remote_cache_permission(name),
                    &remotes,
                    repos
                        .okta
                        .iter()
                        .map(|(g, _)| PermissionGroup {
                            name: (*g).to_owned(),
                            permissions: CACHE_ACTIONS.to_vec(),
                        })
                        .collect(),
                ),
                Policies::All,
                ppc,
            ),
        )?;
    }
    Ok(())
}
