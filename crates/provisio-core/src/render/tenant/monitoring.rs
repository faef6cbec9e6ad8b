//! The tenant's monitoring: ServiceMonitor, PrometheusRule and the Grafana dashboard.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::plan::TenantPlan;
use crate::render::crd::*;
use crate::render::objects::{self, annotate, match_labels, meta, wave};
use crate::render::templates::{self, Environment};
use crate::render::yaml::RenderError;

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

/// The Grafana dashboard as a ConfigMap the Grafana sidecar picks up (label and folder
/// annotation from `platform.monitoring`).
pub(super) fn dashboard(
    plan: &TenantPlan<'_>,
    env: &Environment,
) -> Result<ConfigMap, RenderError> {
    let m = &plan.platform.monitoring;
    let json = templates::dashboard_json(env, plan)?;
    let metadata = annotate(
        meta(
            plan,
            "tenant-dashboard",
            wave::MONITORING,
            &[(&m.dashboard_label, &m.dashboard_label_value)],
        ),
        [("grafana_folder".to_owned(), m.dashboard_folder.clone())],
    );
    Ok(ConfigMap {
        metadata,
        data: Some(BTreeMap::from([(format!("tenant-{}.json", plan.id), json)])),
        ..Default::default()
    })
}
