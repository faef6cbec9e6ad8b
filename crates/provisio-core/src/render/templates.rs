//! Text that is not Kubernetes (the Grafana dashboards' JSON: a tenant's, and a product's
//! service dashboard in its platform-tools folder; the welcome email `provisio activate`
//! sends), rendered with minijinja from `templates/`. The templates are compiled into the binary, so rendering does no I/O.

use serde::Serialize;

use super::yaml::RenderError;
use crate::plan::TenantPlan;
use crate::plan::lifecycle::WelcomeContext;

pub use minijinja::Environment;

const DASHBOARD: &str = "grafana-dashboard.json.j2";
const PRODUCT_DASHBOARD: &str = "product-dashboard.json.j2";
const WELCOME_EMAIL: &str = "welcome-email.txt.j2";

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
    env.add_template(
        WELCOME_EMAIL,
        include_str!("../../../../templates/welcome-email.txt.j2"),
    )
    .expect("the bundled welcome email template parses (tested)");
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

/// The welcome email's subject and plain-text body. Holds the admin's password: no `Debug`.
pub struct WelcomeText {
    pub subject: String,
    pub body: String,
}

#[derive(Serialize)]
struct WelcomeTemplateContext<'a> {
    #[serde(flatten)]
    spec: &'a WelcomeContext,
    password: &'a str,
}

/// The welcome email of `ctx` with the admin's initial `password`: the template's first line
/// is `Subject: …`, then one empty line, then the body. A value the template uses and the
/// context lacks is an error (strict undefined), never an empty string.
pub fn welcome_email(
    env: &Environment<'_>,
    ctx: &WelcomeContext,
    password: &str,
) -> Result<WelcomeText, RenderError> {
    let err = |source| RenderError::Template {
        name: WELCOME_EMAIL.to_owned(),
        source,
    };
    let text = env
        .get_template(WELCOME_EMAIL)
        .map_err(err)?
        .render(minijinja::value::Serde(&WelcomeTemplateContext {
            spec: ctx,
            password,
        }))
        .map_err(err)?;
    let shape = || {
        err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            "expected a `Subject: ` line, an empty line, then the body",
        ))
    };
    let (first, body) = text.split_once("\n\n").ok_or_else(shape)?;
    let subject = first.strip_prefix("Subject: ").ok_or_else(shape)?;
    if subject.trim().is_empty() || subject.contains('\n') {
        return Err(shape());
    }
    let mut body = body.to_owned();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    Ok(WelcomeText {
        subject: subject.trim().to_owned(),
        body,
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::lifecycle::{GrafanaLogin, TenantName, TierOffer};

    fn context(offer: bool) -> WelcomeContext {
        WelcomeContext {
            tenant: TenantName {
                id: "abc-corporation-7f3a9c".into(),
                name: "ABC Corporation".into(),
            },
            store_url: "https://abc-corporation.collectverything.com".into(),
            admin_url: "https://abc-corporation.collectverything.com/admin".into(),
            admin_username: "admin@abc-corp.com".into(),
            grafana: GrafanaLogin {
                url: "https://grafana.collectverything.com".into(),
                login: "abc-corporation-7f3a9c-admin".into(),
            },
            tier: TierOffer {
                name: "premium".into(),
                title: "Premium".into(),
                sites: 3,
                cpu: offer.then(|| "6".into()),
                memory: offer.then(|| "12Gi".into()),
                storage: offer.then(|| "150Gi".into()),
            },
            docs_url: "https://docs.collectverything.com".into(),
            support_email: "support@collectverything.com".into(),
            brand: "Collect & Verything".into(),
        }
    }

    #[test]
    fn the_welcome_email_has_its_subject_and_every_value_in_both_languages() {
        let w = welcome_email(&environment(), &context(true), "Pw-3xample!x").unwrap();
        assert_eq!(
            w.subject,
            "Welcome to Collect & Verything – your e-commerce platform is ready / Bienvenue sur Collect & Verything – votre plateforme est prête"
        );
        assert!(w.body.starts_with("(Version française ci-dessous.)\n"));
        for needle in [
            "Dear ABC Corporation team,",
            "  Store URL:     https://abc-corporation.collectverything.com\n",
            "  Admin portal:  https://abc-corporation.collectverything.com/admin\n",
            "  Username:            admin@abc-corp.com\n",
            "  Temporary password:  Pw-3xample!x\n",
            "Sign in as abc-corporation-7f3a9c-admin (or admin@abc-corp.com)",
            "  Plan:       Premium tier\n",
            "  Sites:      3 e-commerce sites\n  Resources:  6 CPU cores, 12 GB RAM, 150 GB storage\n\n",
            "  5. Invite your team members.\n",
            "Documentation: https://docs.collectverything.com\n",
            "Mot de passe temporaire : Pw-3xample!x\n",
            "  Ressources : 6 cœurs CPU, 12 Go RAM, 150 Go de stockage\n",
            "Support :       support@collectverything.com\n",
        ] {
            assert!(w.body.contains(needle), "missing {needle:?} in\n{}", w.body);
        }
        assert!(!w.body.contains("Subject:") && !w.body.contains("{{"));
    }

    #[test]
    fn a_tier_without_an_offer_promises_no_resources() {
        let w = welcome_email(&environment(), &context(false), "p").unwrap();
        assert!(!w.body.contains("Resources") && !w.body.contains("Ressources"));
        assert!(
            w.body
                .contains("  Sites:      3 e-commerce sites\n\nGetting started\n")
        );
    }

    #[test]
    fn a_missing_template_value_is_an_error() {
        let mut env = environment();
        env.add_template(WELCOME_EMAIL, "Subject: x\n\n{{ docsUrlTypo }}")
            .unwrap();
        let e = welcome_email(&env, &context(true), "p").err().unwrap();
        assert!(matches!(e, RenderError::Template { .. }));
        let mut env = environment();
        env.add_template(WELCOME_EMAIL, "no subject line\n\nbody")
            .unwrap();
        assert!(welcome_email(&env, &context(true), "p").is_err());
    }
}
