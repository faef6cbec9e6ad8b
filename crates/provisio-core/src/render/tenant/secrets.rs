//! ExternalSecrets: the tenant's credentials, referenced by key in the secret store (no
//! secret value is ever rendered).

use crate::plan::{self, TenantPlan};
use crate::render::crd::*;
use crate::render::objects::{meta, wave};

pub(super) fn external_secret(
    plan: &TenantPlan<'_>,
    name: &str,
    remote_key: &str,
    keys: &[(&str, &str)],
) -> CustomResource<ExternalSecretSpec> {
    let store = &plan.platform.secret_store;
    CustomResource {
        api_version: EXTERNAL_SECRET_API,
        kind: "ExternalSecret",
        metadata: meta(plan, name, wave::CONFIG, &[]),
        spec: ExternalSecretSpec {
            refresh_interval: store.refresh_interval.clone(),
            secret_store_ref: SecretStoreRef {
                name: store.name.clone(),
                kind: store.kind.value.clone(),
            },
            target: ExternalSecretTarget {
                name: name.to_owned(),
                creation_policy: "Owner",
                deletion_policy: "Retain",
            },
            data: keys
                .iter()
                .map(|(secret_key, property)| ExternalSecretData {
                    secret_key: (*secret_key).to_owned(),
                    remote_ref: RemoteRef {
                        key: remote_key.to_owned(),
                        property: (*property).to_owned(),
                        conversion_strategy: "Default",
                        decoding_strategy: "None",
                    },
                })
                .collect(),
        },
    }
}

/// Only credentials come from the secret store; host names, ports, databases and buckets are
/// not secret and live in the tenant ConfigMap or the Deployment.
pub(super) fn external_secrets(plan: &TenantPlan<'_>) -> Vec<CustomResource<ExternalSecretSpec>> {
    let mut out: Vec<_> = plan
        .products
        .iter()
        .filter_map(|p| p.database.as_ref())
        .map(|db| {
            external_secret(
                plan,
                &db.secret_name,
                &db.remote_key,
                &[("DB_USERNAME", "username"), ("DB_PASSWORD", "password")],
            )
        })
        .collect();
    if plan.uses_minio() {
        out.push(external_secret(
            plan,
            plan::MINIO_SECRET,
            &plan.minio_remote_key,
            &[
                ("MINIO_ACCESS_KEY", "access_key"),
                ("MINIO_SECRET_KEY", "secret_key"),
            ],
        ));
    }
    if plan.uses_rabbitmq() {
        out.push(external_secret(
            plan,
            plan::RABBITMQ_SECRET,
            &plan.rabbitmq_remote_key,
            &[
                ("RABBITMQ_USER", "username"),
                ("RABBITMQ_PASSWORD", "password"),
            ],
        ));
    }
    out.extend(lifecycle_secrets(plan));
    out
}

/// The Secret the websites product reads its bearer token from (`lifecycle.websites`).
pub const INTERNAL_API_SECRET: &str = "internal-api-token";

/// The tenant's own lifecycle credentials: the admin's initial password (for the Grafana
/// User's `passwordSecretRef`; no workload mounts it) and the websites-service's token (the
/// websites product's only). Never the report key: nothing in the tenant namespace can sign a
/// report.
pub(super) fn lifecycle_secrets(plan: &TenantPlan<'_>) -> Vec<CustomResource<ExternalSecretSpec>> {
    let mut out = vec![external_secret(
        plan,
        super::grafana::ADMIN_SECRET,
        &plan.admin_remote_key,
        &[("password", "password")],
    )];
    if let Some(w) = &plan.platform.lifecycle.websites
        && plan.websites().is_some()
    {
        out.push(external_secret(
            plan,
            INTERNAL_API_SECRET,
            &plan.internal_api_remote_key,
            &[(w.token_env.value.as_str(), "token")],
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{ACTIVE, example_registry, gateway_only_registry, plan};
    use serde_json::Value;

    fn keys(v: &Value) -> Vec<&str> {
        let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        k.sort_unstable();
        k
    }

    #[test]
    fn each_database_and_shared_service_gets_one_external_secret() {
        let reg = example_registry();
        let plan = plan(&reg, ACTIVE);
        let secrets = external_secrets(&plan);
        let mut names: Vec<&str> = secrets
            .iter()
            .map(|s| s.metadata.name.as_deref().unwrap())
            .collect();
        names.sort_unstable();
        let mut expected: Vec<String> = plan
            .products
            .iter()
            .filter(|p| p.product.needs.database)
            .map(|p| format!("{}-db-credentials", p.name))
            .chain([
                plan::MINIO_SECRET.to_owned(),
                plan::RABBITMQ_SECRET.to_owned(),
                super::super::grafana::ADMIN_SECRET.to_owned(),
                INTERNAL_API_SECRET.to_owned(),
            ])
            .collect();
        expected.sort_unstable();
        assert_eq!(names, expected);
        assert_eq!(
            names.len(),
            15,
            "11 databases, MinIO, RabbitMQ, the admin's password, the websites token"
        );
    }

    #[test]
    fn external_secrets_reference_store_keys() {
        let reg = example_registry();
        let plan = plan(&reg, ACTIVE);
        let secrets = external_secrets(&plan);
        let find = |name: &str| {
            secrets
                .iter()
                .find(|s| s.metadata.name.as_deref() == Some(name))
                .unwrap_or_else(|| panic!("no ExternalSecret {name}"))
        };
        let refs = |s: &CustomResource<ExternalSecretSpec>| -> Vec<(String, String, String)> {
            s.spec
                .data
                .iter()
                .map(|d| {
                    (
                        d.secret_key.clone(),
                        d.remote_ref.key.clone(),
                        d.remote_ref.property.clone(),
                    )
                })
                .collect()
        };
        let prefix = "/e-commerce/tenants/abc-corporation-7f3a9c";
        let t = |a: &str, b: String, c: &str| (a.to_owned(), b, c.to_owned());
        assert_eq!(
            refs(find("orders-db-credentials")),
            [
                t("DB_USERNAME", format!("{prefix}/orders-db"), "username"),
                t("DB_PASSWORD", format!("{prefix}/orders-db"), "password"),
            ]
        );
        assert_eq!(
            refs(find(plan::MINIO_SECRET)),
            [
                t("MINIO_ACCESS_KEY", format!("{prefix}/minio"), "access_key"),
                t("MINIO_SECRET_KEY", format!("{prefix}/minio"), "secret_key"),
            ]
        );
        assert_eq!(
            refs(find(plan::RABBITMQ_SECRET)),
            [
                t("RABBITMQ_USER", format!("{prefix}/rabbitmq"), "username"),
                t(
                    "RABBITMQ_PASSWORD",
                    format!("{prefix}/rabbitmq"),
                    "password"
                ),
            ]
        );
        for s in &secrets {
            assert_eq!(s.api_version, EXTERNAL_SECRET_API);
            assert_eq!(s.metadata.namespace.as_ref(), Some(&plan.namespace));
            assert_eq!(s.spec.secret_store_ref.name, "aws-secrets-manager");
            assert_eq!(s.spec.secret_store_ref.kind, "ClusterSecretStore");
            assert_eq!(s.spec.refresh_interval, "1h");
            // The Secret is named after the ExternalSecret, owned by it, kept if it goes.
            assert_eq!(Some(&s.spec.target.name), s.metadata.name.as_ref());
            assert_eq!(s.spec.target.creation_policy, "Owner");
            assert_eq!(s.spec.target.deletion_policy, "Retain");
        }
    }

    /// The rendered objects have no place for a value: the spec is references only (no
    /// `template`, no `dataFrom`, no literal data).
    #[test]
    fn external_secrets_never_contain_a_secret_value() {
        let reg = example_registry();
        for s in external_secrets(&plan(&reg, ACTIVE)) {
            let v = serde_json::to_value(&s).unwrap();
            assert_eq!(keys(&v), ["apiVersion", "kind", "metadata", "spec"]);
            let spec = &v["spec"];
            assert_eq!(
                keys(spec),
                ["data", "refreshInterval", "secretStoreRef", "target"]
            );
            assert_eq!(
                keys(&spec["target"]),
                ["creationPolicy", "deletionPolicy", "name"]
            );
            for d in spec["data"].as_array().unwrap() {
                assert_eq!(keys(d), ["remoteRef", "secretKey"]);
                assert_eq!(
                    keys(&d["remoteRef"]),
                    ["conversionStrategy", "decodingStrategy", "key", "property"]
                );
            }
        }
    }

    #[test]
    fn a_tenant_without_database_or_bucket_gets_only_the_rabbitmq_credentials() {
        let reg = gateway_only_registry();
        let names: Vec<_> = external_secrets(&plan(&reg, ACTIVE))
            .into_iter()
            .map(|s| s.metadata.name.unwrap())
            .collect();
        assert_eq!(names, [plan::RABBITMQ_SECRET, "tenant-admin"]);
    }

    /// The admin's password is copied for the Grafana User only; the report key never
    /// reaches the tenant namespace (nothing there can sign a report).
    #[test]
    fn the_tenant_namespace_gets_the_admin_password_and_the_websites_token_never_the_report_key() {
        let reg = example_registry();
        let plan = plan(&reg, ACTIVE);
        let all = external_secrets(&plan);
        let keys: Vec<&str> = all
            .iter()
            .flat_map(|s| s.spec.data.iter().map(|d| d.remote_ref.key.as_str()))
            .collect();
        assert!(keys.contains(&"/e-commerce/tenants/abc-corporation-7f3a9c/admin"));
        assert!(keys.contains(&"/e-commerce/tenants/abc-corporation-7f3a9c/internal-api"));
        assert!(!keys.iter().any(|k| k.ends_with("/report")), "{keys:?}");
        let token = all
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(INTERNAL_API_SECRET))
            .unwrap();
        assert_eq!(token.spec.data[0].secret_key, "INTERNAL_SERVICE_TOKEN");
    }
}
