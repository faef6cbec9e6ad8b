//! The tenant's workloads: the tenant ConfigMap (non-secret endpoints), one Deployment and
//! Service per product, and the products' migration Jobs.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapEnvSource, Container, ContainerPort, EnvFromSource, EnvVar, HTTPGetAction,
    PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SecretEnvSource, Service, ServicePort,
    ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sha2::{Digest, Sha256};

use super::rbac::APP_SERVICE_ACCOUNT;
use crate::plan::{self, ProductPlan, TenantPlan};
use crate::render::objects::{
    self, annotate, cpu_memory, match_labels, meta, pod_security_context,
    restricted_security_context, wave,
};

/// The tenant ConfigMap: identity, plan, and the non-secret endpoints of shared services.
pub(super) fn tenant_config(plan: &TenantPlan<'_>) -> ConfigMap {
    let p = plan.platform;
    let s = &p.shared_services;
    let mut data = BTreeMap::from([
        ("TENANT_ID".to_owned(), plan.id.to_owned()),
        ("TENANT_NAME".to_owned(), plan.tenant.name.clone()),
        ("TENANT_TIER".to_owned(), plan.tier_name.to_owned()),
        ("TENANT_REGION".to_owned(), plan.region.to_owned()),
        ("TENANT_DOMAIN".to_owned(), plan.domain.clone()),
        ("TENANT_SITES".to_owned(), plan.tier.sites.to_string()),
        ("TENANT_STATUS".to_owned(), plan.status.as_str().to_owned()),
        ("APP_ENV".to_owned(), p.environment.clone()),
        ("APP_DEBUG".to_owned(), "false".to_owned()),
        ("APP_URL".to_owned(), format!("https://{}", plan.domain)),
        ("LOG_LEVEL".to_owned(), "info".to_owned()),
    ]);
    if plan.uses_mysql() {
        data.insert("DB_CONNECTION".into(), "mysql".into());
        data.insert("DB_HOST".into(), s.mysql.host.clone());
        data.insert("DB_PORT".into(), s.mysql.port.to_string());
    }
    if plan.uses_minio() {
        data.insert(
            "MINIO_ENDPOINT".into(),
            format!("{}:{}", s.minio.host, s.minio.port),
        );
        data.insert("MINIO_USE_SSL".into(), s.minio.use_ssl.to_string());
        for b in &plan.buckets {
            data.insert(
                format!("MINIO_BUCKET_{}", b.short.to_ascii_uppercase()),
                b.name.clone(),
            );
        }
    }
    if plan.uses_rabbitmq() {
        data.insert("RABBITMQ_HOST".into(), s.rabbitmq.host.clone());
        data.insert("RABBITMQ_PORT".into(), s.rabbitmq.port.to_string());
        data.insert("RABBITMQ_VHOST".into(), plan.rabbitmq.vhost.clone());
        data.insert("RABBITMQ_EXCHANGE".into(), plan.rabbitmq.exchange.clone());
    }
    ConfigMap {
        metadata: meta(plan, plan::TENANT_CONFIG, wave::CONFIG, &[]),
        data: Some(data),
        ..Default::default()
    }
}

/// SHA-256 of the ConfigMap data, put on pod templates so a config change rolls the pods.
pub(super) fn hash_config(cm: &ConfigMap) -> String {
    let mut h = Sha256::new();
    for (k, v) in cm.data.iter().flatten() {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..16])
}

/// Environment of a product's containers: the tenant ConfigMap, its own credentials only.
pub(super) fn env_sources(
    plan: &TenantPlan<'_>,
    p: &ProductPlan<'_>,
) -> (Vec<EnvFromSource>, Vec<EnvVar>) {
    let mut from = vec![EnvFromSource {
        config_map_ref: Some(ConfigMapEnvSource {
            name: plan::TENANT_CONFIG.to_owned(),
            optional: Some(false),
        }),
        ..Default::default()
    }];
    let secret = |name: &str| EnvFromSource {
        secret_ref: Some(SecretEnvSource {
            name: name.to_owned(),
            optional: Some(false),
        }),
        ..Default::default()
    };
    let mut env = Vec::new();
    if let Some(db) = &p.database {
        from.push(secret(&db.secret_name));
        env.push(EnvVar {
            name: "DB_DATABASE".into(),
            value: Some(db.database.clone()),
            ..Default::default()
        });
    }
    if p.uses_minio {
        from.push(secret(plan::MINIO_SECRET));
    }
    if p.uses_rabbitmq {
        from.push(secret(plan::RABBITMQ_SECRET));
    }
    if plan.websites().is_some_and(|w| w.name == p.name) {
        from.push(secret(super::secrets::INTERNAL_API_SECRET));
    }
    if let Some(q) = &p.queue {
        env.push(EnvVar {
            name: "RABBITMQ_QUEUE".into(),
            value: Some(q.name.clone()),
            ..Default::default()
        });
    }
    env.extend(p.product.env.iter().map(|(k, v)| EnvVar {
        name: k.clone(),
        value: Some(v.clone()),
        ..Default::default()
    }));
    (from, env)
}

pub(super) fn http_probe(probe: &crate::registry::Probe, port: u16) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(probe.path.clone()),
            port: IntOrString::Int(i32::from(port)),
            ..Default::default()
        }),
        initial_delay_seconds: Some(probe.initial_delay_seconds),
        period_seconds: Some(probe.period_seconds),
        ..Default::default()
    }
}

pub(super) fn resources(p: &ProductPlan<'_>) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(cpu_memory(&p.product.resources.requests)),
        limits: Some(cpu_memory(&p.product.resources.limits)),
        ..Default::default()
    }
}

pub(super) fn deployment(
    plan: &TenantPlan<'_>,
    p: &ProductPlan<'_>,
    config_hash: &str,
) -> Deployment {
    let product = p.product;
    let mut ports = vec![ContainerPort {
        name: Some("http".into()),
        container_port: i32::from(product.port.value),
        protocol: Some("TCP".into()),
        ..Default::default()
    }];
    if let Some(m) = &product.metrics_port {
        ports.push(ContainerPort {
            name: Some("metrics".into()),
            container_port: i32::from(m.value),
            protocol: Some("TCP".into()),
            ..Default::default()
        });
    }
    let (env_from, env) = env_sources(plan, p);
    let mut pod_labels = plan.labels.clone();
    pod_labels.insert("app".into(), p.name.to_owned());
    pod_labels.insert("version".into(), p.version.to_owned());
    // From the deletion date until the backup is recorded, nothing of the tenant runs: the
    // backup is its final state, and databases and buckets describe the same moment.
    let quiesced = plan.phase == crate::lifecycle::Phase::Due;
    let mut metadata = meta(plan, p.name, wave::WORKLOADS, &[("app", p.name)]);
    if quiesced {
        metadata = annotate(
            metadata,
            [("provisio/quiesced".to_owned(), "deletion-due".to_owned())],
        );
    }
    Deployment {
        metadata,
        spec: Some(DeploymentSpec {
            replicas: Some(if quiesced { 0 } else { p.replicas as i32 }),
            revision_history_limit: Some(5),
            // Only `app`: selectors are immutable, and the tier label changes on upgrades.
            selector: match_labels(&[("app", p.name)]),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(BTreeMap::from([(
                        "provisio/config-hash".to_owned(),
                        config_hash.to_owned(),
                    )])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(APP_SERVICE_ACCOUNT.into()),
                    automount_service_account_token: Some(false),
                    security_context: Some(pod_security_context()),
                    containers: vec![Container {
                        name: p.name.to_owned(),
                        image: Some(p.image.clone()),
                        image_pull_policy: plan.platform.images.pull_policy.clone(),
                        ports: Some(ports),
                        env_from: Some(env_from),
                        env: (!env.is_empty()).then_some(env),
                        resources: Some(resources(p)),
                        liveness_probe: Some(http_probe(
                            &product.probes.liveness,
                            product.port.value,
                        )),
                        readiness_probe: Some(http_probe(
                            &product.probes.readiness,
                            product.port.value,
                        )),
                        security_context: Some(restricted_security_context()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(super) fn service(plan: &TenantPlan<'_>, p: &ProductPlan<'_>) -> Service {
    let product = p.product;
    let mut ports = vec![ServicePort {
        name: Some("http".into()),
        port: i32::from(product.port.value),
        target_port: Some(IntOrString::String("http".into())),
        protocol: Some("TCP".into()),
        ..Default::default()
    }];
    let mut extra = vec![("app", p.name)];
    if let Some(m) = &product.metrics_port {
        ports.push(ServicePort {
            name: Some("metrics".into()),
            port: i32::from(m.value),
            target_port: Some(IntOrString::String("metrics".into())),
            protocol: Some("TCP".into()),
            ..Default::default()
        });
        extra.push(("provisio/metrics", "true"));
    }
    Service {
        metadata: meta(plan, p.name, wave::WORKLOADS, &extra),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(objects::labels(&[("app", p.name)])),
            ports: Some(ports),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A product's schema migration: an Argo CD Sync hook that runs before the workloads roll.
pub(super) fn migration_job(plan: &TenantPlan<'_>, p: &ProductPlan<'_>) -> Option<Job> {
    let m = p.product.migration.as_ref()?;
    let name = format!("migrate-{}", p.name);
    let (env_from, env) = env_sources(plan, p);
    let metadata = annotate(
        meta(plan, &name, wave::MIGRATIONS, &[("app", p.name)]),
        [
            (objects::HOOK.to_owned(), "Sync".to_owned()),
            (
                objects::HOOK_DELETE_POLICY.to_owned(),
                "BeforeHookCreation".to_owned(),
            ),
        ],
    );
    Some(Job {
        metadata,
        spec: Some(JobSpec {
            backoff_limit: Some(3),
            active_deadline_seconds: Some(900),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(objects::labels(&[("app", p.name), ("tenant", plan.id)])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    service_account_name: Some(APP_SERVICE_ACCOUNT.into()),
                    automount_service_account_token: Some(false),
                    security_context: Some(pod_security_context()),
                    containers: vec![Container {
                        name: "migrate".into(),
                        image: Some(p.image.clone()),
                        command: Some(m.command.clone()),
                        env_from: Some(env_from),
                        env: (!env.is_empty()).then_some(env),
                        resources: Some(resources(p)),
                        security_context: Some(restricted_security_context()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{
        ACTIVE, DEPROVISIONING, PROVISIONING, edited_registry, example_registry,
        gateway_only_registry, plan, replace_in,
    };

    fn product<'a>(plan: &'a TenantPlan<'_>, name: &str) -> &'a ProductPlan<'a> {
        plan.products
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no product {name}"))
    }

    fn pod(d: &Deployment) -> &PodSpec {
        d.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
    }

    /// Names of the ConfigMap and Secrets a container reads its environment from.
    fn env_from(c: &Container) -> Vec<String> {
        c.env_from
            .iter()
            .flatten()
            .map(|e| match (&e.config_map_ref, &e.secret_ref) {
                (Some(cm), None) => format!("configmap/{}", cm.name),
                (None, Some(s)) => format!("secret/{}", s.name),
                _ => panic!("one source per entry"),
            })
            .collect()
    }

    fn env(c: &Container) -> BTreeMap<String, String> {
        c.env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone().unwrap()))
            .collect()
    }

    fn q(
        m: &Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
    ) -> (String, String) {
        let m = m.as_ref().unwrap();
        (m["cpu"].0.clone(), m["memory"].0.clone())
    }

    #[test]
    fn the_tenant_config_holds_identity_plan_and_endpoints_but_no_credential() {
        let reg = example_registry();
        let plan = plan(&reg, ACTIVE);
        let cm = tenant_config(&plan);
        assert_eq!(cm.metadata.name.as_deref(), Some(plan::TENANT_CONFIG));
        let wave_of = &cm.metadata.annotations.as_ref().unwrap()[objects::SYNC_WAVE];
        assert_eq!(*wave_of, wave::CONFIG.to_string());
        let data = cm.data.unwrap();
        for (k, v) in [
            ("TENANT_ID", ACTIVE),
            ("TENANT_NAME", "ABC Corporation"),
            ("TENANT_TIER", "premium"),
            ("TENANT_REGION", "us-east"),
            ("TENANT_DOMAIN", "abc-corporation.collectverything.com"),
            ("TENANT_SITES", "3"),
            ("TENANT_STATUS", "active"),
            ("APP_ENV", "production"),
            ("APP_DEBUG", "false"),
            ("APP_URL", "https://abc-corporation.collectverything.com"),
            ("DB_CONNECTION", "mysql"),
            ("DB_HOST", "mysql.e-commerce-shared.svc.cluster.local"),
            ("DB_PORT", "3306"),
            (
                "MINIO_ENDPOINT",
                "minio.e-commerce-shared.svc.cluster.local:9000",
            ),
            ("MINIO_USE_SSL", "false"),
            (
                "RABBITMQ_HOST",
                "rabbitmq.e-commerce-shared.svc.cluster.local",
            ),
            ("RABBITMQ_PORT", "5672"),
        ] {
            assert_eq!(data.get(k).map(String::as_str), Some(v), "{k}");
        }
        assert_eq!(data["RABBITMQ_VHOST"], plan.rabbitmq.vhost);
        assert_eq!(data["RABBITMQ_EXCHANGE"], plan.rabbitmq.exchange);
        for b in &plan.buckets {
            assert_eq!(
                data[&format!("MINIO_BUCKET_{}", b.short.to_ascii_uppercase())],
                b.name
            );
        }
        for k in data.keys() {
            for secret in ["PASSWORD", "SECRET", "ACCESS_KEY", "USER"] {
                assert!(!k.contains(secret), "{k} looks like a credential");
            }
        }
    }

    #[test]
    fn the_tenant_config_names_only_the_services_in_use() {
        let reg = gateway_only_registry();
        let data = tenant_config(&plan(&reg, ACTIVE)).data.unwrap();
        assert!(
            data.keys()
                .all(|k| !k.starts_with("DB_") && !k.starts_with("MINIO_")),
            "{data:?}"
        );
        assert!(data.contains_key("RABBITMQ_HOST"));
    }

    #[test]
    fn the_config_hash_is_stable_short_and_follows_every_value() {
        let reg = example_registry();
        let cm = tenant_config(&plan(&reg, ACTIVE));
        let h = hash_config(&cm);
        assert_eq!(h, hash_config(&cm.clone()));
        assert_eq!(h.len(), 32);
        assert!(h.bytes().all(|b| b.is_ascii_hexdigit()));
        let mut changed = cm.clone();
        changed
            .data
            .as_mut()
            .unwrap()
            .insert("LOG_LEVEL".into(), "debug".into());
        assert_ne!(hash_config(&changed), h);
        // Keys and values are delimited: moving a character across the boundary counts.
        let pair = |k: &str, v: &str| ConfigMap {
            data: Some(BTreeMap::from([(k.to_owned(), v.to_owned())])),
            ..Default::default()
        };
        assert_ne!(hash_config(&pair("ab", "c")), hash_config(&pair("a", "bc")));
        // Another tenant's config is another hash.
        assert_ne!(hash_config(&tenant_config(&plan(&reg, PROVISIONING))), h);
    }

    #[test]
    fn a_deployment_runs_its_product_restricted_with_probes_resources_and_config_hash() {
        let reg = example_registry();
        let plan = plan(&reg, ACTIVE);
        let orders = product(&plan, "orders");
        let d = deployment(&plan, orders, "0123abcd");
        assert_eq!(d.metadata.name.as_deref(), Some("orders"));
        assert_eq!(d.metadata.labels.as_ref().unwrap()["app"], "orders");
        let spec = d.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(2), "premium runs 2 replicas");
        assert_eq!(spec.selector, match_labels(&[("app", "orders")]));
        let strategy = spec
            .strategy
            .as_ref()
            .unwrap()
            .rolling_update
            .as_ref()
            .unwrap();
        assert_eq!(strategy.max_unavailable, Some(IntOrString::Int(0)));
        let template = spec.template.metadata.as_ref().unwrap();
        assert_eq!(
            template.annotations.as_ref().unwrap()["provisio/config-hash"],
            "0123abcd"
        );
        let pod_labels = template.labels.as_ref().unwrap();
        assert_eq!(
            (pod_labels["app"].as_str(), pod_labels["version"].as_str()),
            ("orders", "v1.2.3")
        );
        assert_eq!(pod_labels["tenant"], ACTIVE);

        let pod = pod(&d);
        assert_eq!(
            pod.service_account_name.as_deref(),
            Some(APP_SERVICE_ACCOUNT)
        );
        assert_eq!(pod.automount_service_account_token, Some(false));
        let psc = pod.security_context.as_ref().unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(
            psc.seccomp_profile.as_ref().unwrap().type_,
            "RuntimeDefault"
        );
        let [c] = pod.containers.as_slice() else {
            panic!("one container")
        };
        assert_eq!(
            c.image.as_deref(),
            Some("registry.collectverything.com/ecommerce/orders-service:v1.2.3")
        );
        assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop.as_deref(),
            Some(&["ALL".to_owned()][..])
        );
        assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        assert_eq!(sc.privileged, None);

        let res = c.resources.as_ref().unwrap();
        assert_eq!(q(&res.requests), ("200m".into(), "256Mi".into()));
        assert_eq!(q(&res.limits), ("250m".into(), "512Mi".into()));

        let probe = |p: &Option<Probe>| {
            let p = p.as_ref().unwrap();
            let get = p.http_get.as_ref().unwrap();
            (
                get.path.clone().unwrap(),
                get.port.clone(),
                p.initial_delay_seconds.unwrap(),
                p.period_seconds.unwrap(),
            )
        };
        assert_eq!(
            probe(&c.liveness_probe),
            ("/health".into(), IntOrString::Int(8000), 30, 10)
        );
        assert_eq!(
            probe(&c.readiness_probe),
            ("/ready".into(), IntOrString::Int(8000), 10, 5)
        );
        let ports: Vec<_> = c
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone().unwrap(), p.container_port))
            .collect();
        assert_eq!(
            ports,
            [("http".to_owned(), 8000), ("metrics".to_owned(), 9090)]
        );
    }

    #[test]
    fn a_container_reads_the_tenant_config_and_only_its_own_credentials() {
        let reg = example_registry();
        let plan = plan(&reg, ACTIVE);
        let orders = product(&plan, "orders");
        let d = deployment(&plan, orders, "h");
        let c = &pod(&d).containers[0];
        assert_eq!(
            env_from(c),
            [
                "configmap/tenant-config",
                "secret/orders-db-credentials",
                "secret/rabbitmq-credentials"
            ]
        );
        let db = orders.database.as_ref().unwrap();
        let queue = orders.queue.as_ref().unwrap();
        assert_eq!(
            env(c),
            BTreeMap::from([
                ("DB_DATABASE".to_owned(), db.database.clone()),
                ("RABBITMQ_QUEUE".to_owned(), queue.name.clone()),
            ])
        );
        // Every product: its own database secret, never another's; MinIO only with buckets.
        for p in &plan.products {
            let sources = env_from(&pod(&deployment(&plan, p, "h")).containers[0]);
            let dbs: Vec<_> = sources
                .iter()
                .filter(|s| s.ends_with("-db-credentials"))
                .collect();
            match &p.database {
                Some(db) => assert_eq!(dbs, [&format!("secret/{}", db.secret_name)], "{}", p.name),
                None => assert!(dbs.is_empty(), "{}", p.name),
            }
            assert_eq!(
                sources.contains(&format!("secret/{}", plan::MINIO_SECRET)),
                !p.product.needs.buckets.is_empty(),
                "{}",
                p.name
            );
        }
        // The gateway has no database and no queue: no env at all beyond the sources.
        let gw = deployment(&plan, product(&plan, "api-gateway"), "h");
        let c = &pod(&gw).containers[0];
        assert_eq!(
            env_from(c),
            ["configmap/tenant-config", "secret/rabbitmq-credentials"]
        );
        assert_eq!(c.env, None);
    }

    #[test]
    fn product_env_is_passed_after_the_derived_variables() {
        let reg = edited_registry(|s| {
            replace_in(
                s,
                "products/orders.yaml",
                "needs:\n",
                "env:\n  FEATURE_X: \"on\"\nneeds:\n",
            );
        });
        let plan = plan(&reg, ACTIVE);
        let d = deployment(&plan, product(&plan, "orders"), "h");
        let names: Vec<_> = pod(&d).containers[0]
            .env
            .iter()
            .flatten()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(names, ["DB_DATABASE", "RABBITMQ_QUEUE", "FEATURE_X"]);
    }

    #[test]
    fn overrides_set_replicas_and_version() {
        let reg = example_registry();
        let plan = plan(&reg, DEPROVISIONING);
        let gw = deployment(&plan, product(&plan, "api-gateway"), "h");
        assert_eq!(gw.spec.as_ref().unwrap().replicas, Some(4), "overridden");
        let orders = deployment(&plan, product(&plan, "orders"), "h");
        assert_eq!(
            orders.spec.as_ref().unwrap().replicas,
            Some(3),
            "business tier"
        );
        let c = &pod(&orders).containers[0];
        assert!(
            c.image
                .as_deref()
                .unwrap()
                .ends_with("/orders-service:v1.2.4")
        );
        let labels = orders
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap();
        assert_eq!(labels["version"], "v1.2.4");
        // Standard tier: one replica.
        let standard = crate::testing::plan(&reg, PROVISIONING);
        let d = deployment(&standard, product(&standard, "orders"), "h");
        assert_eq!(d.spec.as_ref().unwrap().replicas, Some(1));
    }

    #[test]
    fn a_service_exposes_http_and_metrics_by_name_and_marks_itself_for_scraping() {
        let reg = example_registry();
        let plan = plan(&reg, ACTIVE);
        let s = service(&plan, product(&plan, "orders"));
        let labels = s.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["provisio/metrics"], "true");
        assert_eq!(labels["tenant"], ACTIVE);
        let spec = s.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(spec.selector, Some(objects::labels(&[("app", "orders")])));
        let ports: Vec<_> = spec
            .ports
            .iter()
            .flatten()
            .map(|p| {
                (
                    p.name.clone().unwrap(),
                    p.port,
                    p.target_port.clone().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            ports,
            [
                ("http".to_owned(), 8000, IntOrString::String("http".into())),
                (
                    "metrics".to_owned(),
                    9090,
                    IntOrString::String("metrics".into())
                ),
            ]
        );
    }

    #[test]
    fn a_service_without_metrics_port_is_not_scraped() {
        let reg = edited_registry(|s| {
            replace_in(s, "products/orders.yaml", "metricsPort: 9090\n", "");
        });
        let plan = plan(&reg, ACTIVE);
        let s = service(&plan, product(&plan, "orders"));
        assert!(
            !s.metadata
                .labels
                .as_ref()
                .unwrap()
                .contains_key("provisio/metrics")
        );
        assert_eq!(s.spec.unwrap().ports.unwrap().len(), 1);
    }

    #[test]
    fn the_migration_is_a_sync_hook_before_the_workloads_replaced_by_the_next_one() {
        let reg = example_registry();
        let plan = plan(&reg, ACTIVE);
        let orders = product(&plan, "orders");
        let job = migration_job(&plan, orders).expect("orders migrates");
        assert_eq!(job.metadata.name.as_deref(), Some("migrate-orders"));
        let a = job.metadata.annotations.as_ref().unwrap();
        assert_eq!(a[objects::HOOK], "Sync");
        assert_eq!(a[objects::HOOK_DELETE_POLICY], "BeforeHookCreation");
        let w: i32 = a[objects::SYNC_WAVE].parse().unwrap();
        assert!(
            wave::CONFIG < w && w < wave::WORKLOADS,
            "after secrets, before rollout"
        );
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(
            (spec.backoff_limit, spec.active_deadline_seconds),
            (Some(3), Some(900))
        );
        let job_pod = spec.template.spec.as_ref().unwrap();
        assert_eq!(job_pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(job_pod.automount_service_account_token, Some(false));
        let c = &job_pod.containers[0];
        assert_eq!(
            c.command.as_deref(),
            Some(&["php", "artisan", "migrate", "--force"].map(String::from)[..])
        );
        // The same image and environment as the product's pods.
        let d = deployment(&plan, orders, "h");
        let app = &pod(&d).containers[0];
        assert_eq!(c.image, app.image);
        assert_eq!(env_from(c), env_from(app));
        assert_eq!(c.env, app.env);
        assert_eq!(c.security_context, Some(restricted_security_context()));
        assert_eq!(c.resources, app.resources);
        // A product without a migration has no Job.
        assert!(migration_job(&plan, product(&plan, "api-gateway")).is_none());
    }

    /// From the deletion date, nothing of the tenant runs while it is backed up.
    #[test]
    fn a_tenant_due_for_deletion_is_quiesced() {
        use crate::testing::{lifecycle_registry, now};
        let reg = lifecycle_registry();
        for (id, quiesced) in [("life-due-0a0005", true), ("life-grace-0a0004", false)] {
            let plan = crate::plan::plan_tenant(&reg, &reg.tenants[id], now());
            for p in &plan.products {
                let d = deployment(&plan, p, "h");
                let replicas = d.spec.as_ref().unwrap().replicas.unwrap();
                let ann = d.metadata.annotations.as_ref().unwrap();
                if quiesced {
                    assert_eq!(replicas, 0, "{id}/{}", p.name);
                    assert_eq!(ann["provisio/quiesced"], "deletion-due");
                } else {
                    assert!(replicas > 0);
                    assert!(!ann.contains_key("provisio/quiesced"));
                }
            }
        }
    }

    /// Only the websites product reads the internal API token.
    #[test]
    fn only_the_websites_product_reads_the_internal_token() {
        let reg = example_registry();
        let plan = plan(&reg, ACTIVE);
        for p in &plan.products {
            let d = deployment(&plan, p, "h");
            let from = env_from(&pod(&d).containers[0]);
            assert_eq!(
                from.iter().any(|s| s == "secret/internal-api-token"),
                p.name == "websites",
                "{}",
                p.name
            );
        }
    }
}
