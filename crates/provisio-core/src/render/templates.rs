//! Text that is not Kubernetes (the Grafana dashboards' JSON: a tenant's, and a product's
//! service dashboard in its platform-tools folder), rendered with minijinja from `templates/`. The templates are compiled into the binary, so rendering does no I/O.

use serde::Serialize;

use super::yaml::RenderError;
use crate::plan::TenantPlan;

pub use minijinja::Environment;

const DASHBOARD: &str = "grafana-dashboard.json.j2";
const PRODUCT_DASHBOARD: &str = "product-dashboard.json.j2";

/// The template environment, built once per render.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_template(
        DASHBOARD,
        include_str!("../../../../templates/grafana-dashboard.json.j2"),
    )
    .expect("the bundled dashboard template parses (tested)");
    env.add_template(
        PRODUCT_DASHBOARD,
        include_str!("../../../../templates/product-dashboard.json.j2"),
    )
    .expect("the bundled product dashboard template parses (tested)");
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

#[derive(Serialize)]
struct ProductDashboardContext<'a> {
    product: &'a str,
    team: &'a str,
    uid: &'a str,
}

/// The service dashboard of a product (its Grafana folder's), as canonical JSON.
pub fn product_dashboard_json(
    env: &Environment<'_>,
    product: &str,
    team: &str,
    uid: &str,
) -> Result<String, RenderError> {
    let err = |source| RenderError::Template {
        name: PRODUCT_DASHBOARD.to_owned(),
        source,
    };
    let text = env
        .get_template(PRODUCT_DASHBOARD)
        .map_err(err)?
        .render(minijinja::value::Serde(&ProductDashboardContext {
            product,
            team,
            uid,
        }))
        .map_err(err)?;
    canonical_json(&text).map_err(err)
}

/// `text` parsed as JSON and pretty-printed (keys in the template's order), ending in a
/// newline.
fn canonical_json(text: &str) -> Result<String, minijinja::Error> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        minijinja::Error::new(
            minijinja::ErrorKind::BadSerialization,
            format!("the dashboard is not valid JSON: {e}"),
        )
    })?;
    let mut out = serde_json::to_string_pretty(&value).expect("a JSON value serializes");
    out.push('\n');
    Ok(out)
}
