//! Text that is not Kubernetes (the Grafana dashboard JSON), rendered with minijinja from
//! `templates/`. The templates are compiled into the binary, so rendering does no I/O.

use serde::Serialize;

use super::yaml::RenderError;
use crate::plan::TenantPlan;

pub use minijinja::Environment;

const DASHBOARD: &str = "grafana-dashboard.json.j2";

/// The template environment, built once per render.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_template(
        DASHBOARD,
        include_str!("../../../../templates/grafana-dashboard.json.j2"),
    )
    .expect("the bundled dashboard template parses (tested)");
    env
}

#[derive(Serialize)]
struct DashboardContext<'a> {
    tenant: &'a str,
    name: &'a str,
    namespace: &'a str,
    tier: &'a str,
    region: &'a str,
    uid: String,
    products: Vec<&'a str>,
}

/// The dashboard JSON of a tenant, checked to be valid JSON and re-serialized canonically.
pub fn dashboard_json(env: &Environment<'_>, plan: &TenantPlan<'_>) -> Result<String, RenderError> {
    let ctx = DashboardContext {
        tenant: plan.id,
        name: &plan.tenant.name,
        namespace: &plan.namespace,
        tier: plan.tier_name,
        region: plan.region,
        // Grafana uids are at most 40 characters: a stable digest of the id fits any id.
        uid: {
            use sha2::Digest;
            format!(
                "tenant-{}",
                &hex::encode(sha2::Sha256::digest(plan.id))[..16]
            )
        },
        products: plan.products.iter().map(|p| p.name).collect(),
    };
    let err = |source| RenderError::Template {
        name: DASHBOARD.to_owned(),
        source,
    };
    let text = env
        .get_template(DASHBOARD)
        .map_err(err)?
        .render(minijinja::value::Serde(&ctx))
        .map_err(err)?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        err(minijinja::Error::new(
            minijinja::ErrorKind::BadSerialization,
            format!("the dashboard is not valid JSON: {e}"),
        ))
    })?;
    let mut out = serde_json::to_string_pretty(&value).expect("a JSON value serializes");
    out.push('\n');
    Ok(out)
}
