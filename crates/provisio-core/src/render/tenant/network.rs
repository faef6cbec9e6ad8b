//! The tenant's NetworkPolicies: default deny, then exactly the traffic the tenant needs
//! (ingress controller → gateway, same namespace, Prometheus → metrics, DNS, the shared
//! services it uses, HTTPS out).

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::plan::TenantPlan;
use crate::render::objects::{match_labels, match_map, meta, wave};

pub(super) fn tcp(port: u16) -> NetworkPolicyPort {
    NetworkPolicyPort {
        protocol: Some("TCP".to_owned()),
        port: Some(IntOrString::Int(i32::from(port))),
        ..Default::default()
    }
}

pub(super) fn namespace_peer(
    ns: &str,
    pods: Option<&BTreeMap<String, String>>,
) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(match_labels(&[("kubernetes.io/metadata.name", ns)])),
        pod_selector: pods.map(match_map),
        ..Default::default()
    }
}

/// Default deny, then: the ingress controller to the gateway, the namespace to itself,
/// Prometheus to metrics ports; out: DNS, the shared MySQL/RabbitMQ/MinIO, HTTPS.
pub(super) fn network_policies(plan: &TenantPlan<'_>) -> Vec<NetworkPolicy> {
    let p = plan.platform;
    let shared = &p.shared_services;
    let policy = |name: &str, spec: NetworkPolicySpec| NetworkPolicy {
        metadata: meta(plan, name, wave::GUARDRAILS, &[]),
        spec: Some(spec),
    };
    let all_pods = LabelSelector::default();
    let gateway = plan.gateway();
    let mut metrics_ports: Vec<u16> = plan
        .products
        .iter()
        .filter_map(|pp| pp.product.metrics_port.as_ref().map(|m| m.value))
        .collect();
    metrics_ports.sort_unstable();
    metrics_ports.dedup();

    let mut out = vec![
        policy(
            "default-deny",
            NetworkPolicySpec {
                pod_selector: Some(all_pods.clone()),
                policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
                ..Default::default()
            },
        ),
        policy(
            "allow-ingress-controller",
            NetworkPolicySpec {
                pod_selector: Some(match_labels(&[("app", gateway.name)])),
                policy_types: Some(vec!["Ingress".into()]),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(vec![namespace_peer(&p.ingress.controller_namespace, None)]),
                    ports: Some(vec![tcp(gateway.product.port.value)]),
                }]),
                ..Default::default()
            },
        ),
        policy(
            "allow-same-namespace",
            NetworkPolicySpec {
                pod_selector: Some(all_pods.clone()),
                policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(vec![NetworkPolicyPeer {
                        pod_selector: Some(all_pods.clone()),
                        ..Default::default()
                    }]),
                    ports: None,
                }]),
                egress: Some(vec![NetworkPolicyEgressRule {
                    to: Some(vec![NetworkPolicyPeer {
                        pod_selector: Some(all_pods.clone()),
                        ..Default::default()
                    }]),
                    ports: None,
                }]),
            },
        ),
    ];
    if !metrics_ports.is_empty() {
        out.push(policy(
            "allow-prometheus",
            NetworkPolicySpec {
                pod_selector: Some(all_pods.clone()),
                policy_types: Some(vec!["Ingress".into()]),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(vec![namespace_peer(
                        &p.monitoring.prometheus_namespace,
                        None,
                    )]),
                    ports: Some(metrics_ports.into_iter().map(tcp).collect()),
                }]),
                ..Default::default()
            },
        ));
    }
    let dns_ports = ["UDP", "TCP"]
        .into_iter()
        .map(|proto| NetworkPolicyPort {
            protocol: Some(proto.to_owned()),
            port: Some(IntOrString::Int(53)),
            ..Default::default()
        })
        .collect();
    let mut egress = vec![NetworkPolicyEgressRule {
        to: Some(vec![namespace_peer(&p.dns_namespace, None)]),
        ports: Some(dns_ports),
    }];
    let mut shared_rule = |labels: &BTreeMap<String, String>, port: u16| {
        egress.push(NetworkPolicyEgressRule {
            to: Some(vec![namespace_peer(&shared.namespace, Some(labels))]),
            ports: Some(vec![tcp(port)]),
        })
    };
    if plan.uses_mysql() {
        shared_rule(&shared.mysql.pod_labels, shared.mysql.port);
    }
    if plan.uses_rabbitmq() {
        shared_rule(&shared.rabbitmq.pod_labels, shared.rabbitmq.port);
    }
    if plan.uses_minio() {
        shared_rule(&shared.minio.pod_labels, shared.minio.port);
    }
    egress.push(NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            ip_block: Some(IPBlock {
                cidr: "0.0.0.0/0".to_owned(),
                // Cloud instance metadata stays out of reach.
                except: Some(vec!["169.254.169.254/32".to_owned()]),
            }),
            ..Default::default()
        }]),
        ports: Some(vec![tcp(443)]),
    });
    out.push(policy(
        "allow-egress",
        NetworkPolicySpec {
            pod_selector: Some(all_pods),
            policy_types: Some(vec!["Egress".into()]),
            egress: Some(egress),
            ..Default::default()
        },
    ));
    out
}
