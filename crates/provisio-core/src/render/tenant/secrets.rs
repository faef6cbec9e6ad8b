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
    out
}
