//! The tenant's monitoring: ServiceMonitor and PrometheusRule (its Grafana dashboard is a
//! Grafana resource of `grafana.rs`, in the tenant's own folder).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::plan::TenantPlan;
use crate::render::crd::*;
use crate::render::objects::{self, match_labels, meta, wave};

pub(super) fn monitoring_meta(plan: &TenantPlan<'_>, name: &str) -> ObjectMeta {
    let extra: Vec<(&str, &str)> = plan
        .platform
        .monitoring
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    meta(plan, name, wave::MONITORING, &extra)
}

pub(super) fn service_monitor(plan: &TenantPlan<'_>) -> CustomResource<ServiceMonitorSpec> {
    CustomResource {
        api_version: MONITORING_API,
        kind: "ServiceMonitor",
        metadata: monitoring_meta(plan, "tenant-monitoring"),
        spec: ServiceMonitorSpec {
            selector: match_labels(&[("tenant", plan.id), ("provisio/metrics", "true")]),
            namespace_selector: NamespaceSelector {
                match_names: vec![plan.namespace.clone()],
            },
            endpoints: vec![MonitorEndpoint {
                port: "metrics".into(),
                interval: plan.platform.monitoring.interval.clone(),
                path: "/metrics".into(),
            }],
        },
    }
}

/// The seed's three alerts, with two of its mistakes fixed: `kube_resourcequota` has a `type`
/// label (`hard`/`used`), so the memory ratio must select `type="hard"` or it halves; and
/// restarts use `increase` over the window so one restart is not a "loop".
pub(super) fn prometheus_rule(plan: &TenantPlan<'_>) -> CustomResource<PrometheusRuleSpec> {
    let ns = &plan.namespace;
    let id = plan.id;
    let labels = |severity: &str| {
        objects::labels(&[
            ("severity", severity),
            ("tenant", id),
            ("tier", plan.tier_name),
        ])
    };
    let annotations = |summary: String, description: &str| {
        BTreeMap::from([
            ("summary".to_owned(), summary),
            ("description".to_owned(), description.to_owned()),
        ])
    };
    let rules = vec![
        AlertRule {
            alert: "TenantHighErrorRate".into(),
            expr: format!(
                "sum(rate(http_requests_total{{namespace=\"{ns}\",status=~\"5..\"}}[5m]))\n  /\nsum(rate(http_requests_total{{namespace=\"{ns}\"}}[5m])) > 0.05\n"
            ),
            for_: "5m".into(),
            labels: labels("warning"),
            annotations: annotations(
                format!("High HTTP error rate for tenant {id}"),
                "5xx responses are {{ $value | humanizePercentage }} of all requests.",
            ),
        },
        AlertRule {
            alert: "TenantHighMemoryUsage".into(),
            expr: format!(
                "sum(container_memory_working_set_bytes{{namespace=\"{ns}\",container!=\"\"}})\n  /\nsum(kube_resourcequota{{namespace=\"{ns}\",resource=\"limits.memory\",type=\"hard\"}}) > 0.90\n"
            ),
            for_: "10m".into(),
            labels: labels("warning"),
            annotations: annotations(
                format!("Memory use of tenant {id} is close to its quota"),
                "Memory in use is {{ $value | humanizePercentage }} of the tier's limit.",
            ),
        },
        AlertRule {
            alert: "TenantPodCrashLooping".into(),
            expr: format!(
                "increase(kube_pod_container_status_restarts_total{{namespace=\"{ns}\"}}[15m]) > 2\n"
            ),
            for_: "5m".into(),
            labels: labels("critical"),
            annotations: annotations(
                format!("A pod of tenant {id} keeps restarting"),
                "Pod {{ $labels.pod }} restarted {{ $value }} times in 15 minutes.",
            ),
        },
    ];
    CustomResource {
        api_version: MONITORING_API,
        kind: "PrometheusRule",
        metadata: monitoring_meta(plan, "tenant-alerts"),
        spec: PrometheusRuleSpec {
            groups: vec![RuleGroup {
                name: format!("tenant-{id}"),
                interval: plan.platform.monitoring.interval.clone(),
                rules,
            }],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::templates;
    use crate::render::tenant::workloads::service;
    use crate::testing::{
        ACTIVE, DEPROVISIONING, edited_registry, example_registry, plan, replace_in,
    };

    #[test]
    fn the_service_monitor_selects_the_tenants_metrics_services_on_their_metrics_port() {
        let reg = example_registry();
        let plan = plan(&reg, ACTIVE);
        let sm = service_monitor(&plan);
        assert_eq!(sm.api_version, MONITORING_API);
        assert_eq!(
            sm.metadata.labels.as_ref().unwrap()["release"],
            "kube-prometheus-stack"
        );
        let wave_of = &sm.metadata.annotations.as_ref().unwrap()[objects::SYNC_WAVE];
        assert_eq!(*wave_of, wave::MONITORING.to_string());
        let selector = sm.spec.selector.match_labels.as_ref().unwrap();
        assert_eq!(
            selector,
            &objects::labels(&[("provisio/metrics", "true"), ("tenant", ACTIVE)])
        );
        assert_eq!(
            sm.spec.namespace_selector.match_names,
            [plan.namespace.as_str()]
        );
        let [e] = sm.spec.endpoints.as_slice() else {
            panic!("one endpoint")
        };
        assert_eq!(
            (e.port.as_str(), e.path.as_str(), e.interval.as_str()),
            ("metrics", "/metrics", "30s")
        );
        // Every product Service with a metrics port matches the selector and names the port.
        for p in &plan.products {
            let s = service(&plan, p);
            let labels = s.metadata.labels.as_ref().unwrap();
            assert!(
                selector.iter().all(|(k, v)| labels.get(k) == Some(v)),
                "{}",
                p.name
            );
            let ports = s.spec.unwrap().ports.unwrap();
            assert!(
                ports
                    .iter()
                    .any(|sp| sp.name.as_deref() == Some(e.port.as_str())),
                "{}",
                p.name
            );
        }
    }

    #[test]
    fn the_scrape_interval_comes_from_platform_yaml() {
        let reg = edited_registry(|s| {
            replace_in(s, "platform.yaml", "interval: 30s", "interval: 1m");
        });
        let plan = plan(&reg, ACTIVE);
        assert_eq!(service_monitor(&plan).spec.endpoints[0].interval, "1m");
        assert_eq!(prometheus_rule(&plan).spec.groups[0].interval, "1m");
    }

    #[test]
    fn the_alerts_are_the_three_of_the_tenant_with_the_hard_quota_ratio() {
        let reg = example_registry();
        let plan = plan(&reg, DEPROVISIONING);
        let rule = prometheus_rule(&plan);
        assert_eq!(rule.metadata.name.as_deref(), Some("tenant-alerts"));
        assert_eq!(
            rule.metadata.labels.as_ref().unwrap()["release"],
            "kube-prometheus-stack"
        );
        let [group] = rule.spec.groups.as_slice() else {
            panic!("one group")
        };
        assert_eq!(group.name, format!("tenant-{DEPROVISIONING}"));
        let names: Vec<_> = group.rules.iter().map(|r| r.alert.as_str()).collect();
        assert_eq!(
            names,
            [
                "TenantHighErrorRate",
                "TenantHighMemoryUsage",
                "TenantPodCrashLooping"
            ]
        );
        let ns = format!("namespace=\"{}\"", plan.namespace);
        for r in &group.rules {
            assert!(r.expr.contains(&ns), "{}: {}", r.alert, r.expr);
            assert_eq!(r.labels["tenant"], DEPROVISIONING);
            assert_eq!(r.labels["tier"], "business");
            assert!(["warning", "critical"].contains(&r.labels["severity"].as_str()));
            assert!(
                r.annotations.contains_key("summary") && r.annotations.contains_key("description")
            );
        }
        let memory = &group.rules[1].expr;
        assert!(
            memory.contains("kube_resourcequota{")
                && memory.contains("resource=\"limits.memory\",type=\"hard\"}"),
            "the quota side must select the hard limit, not hard + used: {memory}"
        );
        let restarts = &group.rules[2];
        assert!(
            restarts
                .expr
                .starts_with("increase(kube_pod_container_status_restarts_total{")
        );
        assert!(restarts.expr.contains("[15m]) > 2"));
        assert_eq!(restarts.labels["severity"], "critical");
    }

    #[test]
    fn the_dashboard_is_valid_json_with_a_short_uid_per_tenant_and_escaped_names() {
        let reg = edited_registry(|s| {
            replace_in(
                s,
                "tenants/abc-corporation-7f3a9c.yaml",
                "name: ABC Corporation",
                "name: 'ABC \"Corp\" {{ x }}'",
            );
        });
        let env = templates::environment();
        let plan = plan(&reg, ACTIVE);
        let json: serde_json::Value =
            serde_json::from_str(&templates::dashboard_json(&env, &plan).unwrap())
                .expect("valid JSON");
        let uid = json["uid"].as_str().unwrap();
        assert!(
            uid.len() <= 40,
            "Grafana uids are at most 40 characters: {uid}"
        );
        assert_eq!(json["title"], "Tenant: ABC \"Corp\" {{ x }}");
        assert_eq!(json["templating"]["list"][0]["query"], plan.namespace);
        assert!(json["panels"].as_array().is_some_and(|p| !p.is_empty()));
        // Another tenant: another uid.
        let other: serde_json::Value = serde_json::from_str(
            &templates::dashboard_json(&env, &crate::testing::plan(&reg, DEPROVISIONING)).unwrap(),
        )
        .unwrap();
        assert_ne!(other["uid"].as_str().unwrap(), uid);
    }
}
