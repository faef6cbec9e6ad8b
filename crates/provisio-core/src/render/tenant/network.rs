//! The tenant's NetworkPolicies: default deny, then exactly the traffic the tenant needs
//! (ingress controller → gateway, ingress controller → cert-manager's HTTP-01 solver, same
//! namespace, Prometheus → metrics, DNS, the shared services it uses, HTTPS out).

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::plan::TenantPlan;
use crate::render::objects::{match_labels, match_map, meta, wave};

/// Label cert-manager puts on its ACME HTTP-01 solver pods (cert-manager v1.21
/// `pkg/apis/acme/v1/types.go`; the pods are built in `pkg/issuer/acme/http/pod.go`, in the
/// Certificate's namespace).
pub const HTTP01_SOLVER_LABEL: &str = "acme.cert-manager.io/http01-solver";
/// Port the solver listens on (`acmeSolverListenPort`, `pkg/issuer/acme/http/http.go`).
pub const HTTP01_SOLVER_PORT: u16 = 8089;

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

/// Default deny, then: the ingress controller to the gateway and to cert-manager's HTTP-01
/// solver, the namespace to itself, Prometheus to metrics ports; out: DNS, the shared
/// MySQL/RabbitMQ/MinIO, HTTPS.
pub(super) fn network_policies(plan: &TenantPlan<'_>) -> Vec<NetworkPolicy> {
    let p = plan.platform;
    let shared = &p.shared_services;
    let policy = |name: &str, spec: NetworkPolicySpec| NetworkPolicy {
        metadata: meta(plan, name, wave::GUARDRAILS, &[]),
        spec: Some(spec),
    };
    let all_pods = LabelSelector::default();
    let gateway = plan.gateway();
    let controller_pods =
        (!p.ingress.controller_pod_labels.is_empty()).then_some(&p.ingress.controller_pod_labels);
    let from_ingress_controller = || {
        Some(vec![namespace_peer(
            &p.ingress.controller_namespace,
            controller_pods,
        )])
    };
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
                    from: from_ingress_controller(),
                    ports: Some(vec![tcp(gateway.product.port.value)]),
                }]),
                ..Default::default()
            },
        ),
        // The ACME HTTP-01 challenge: Let's Encrypt (and cert-manager's own self-check)
        // fetch `/.well-known/acme-challenge/<token>` through the ingress controller, which
        // proxies to the solver pod cert-manager starts in this namespace. Without this the
        // Certificate never becomes Ready and the sync stops at its wave.
        policy(
            "allow-acme-http01-solver",
            NetworkPolicySpec {
                pod_selector: Some(match_labels(&[(HTTP01_SOLVER_LABEL, "true")])),
                policy_types: Some(vec!["Ingress".into()]),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: from_ingress_controller(),
                    ports: Some(vec![tcp(HTTP01_SOLVER_PORT)]),
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
    // The lifecycle Jobs (shared namespace) call the websites-service: activate registers
    // the tenant's website, website-status keeps its status. That pod, that port, only.
    if let Some(w) = plan.websites() {
        out.push(policy(
            "allow-provisio-lifecycle",
            NetworkPolicySpec {
                pod_selector: Some(match_labels(&[("app", w.name)])),
                policy_types: Some(vec!["Ingress".into()]),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(vec![namespace_peer(
                        &shared.namespace,
                        Some(&BTreeMap::from([(
                            "app".to_owned(),
                            crate::render::objects::LIFECYCLE_APP.to_owned(),
                        )])),
                    )]),
                    ports: Some(vec![tcp(w.product.port.value)]),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{
        ACTIVE, DEPROVISIONING, PROVISIONING, edited_registry, example_registry,
        gateway_only_registry, keep_only_the_gateway, plan, replace_in,
    };

    fn spec<'a>(policies: &'a [NetworkPolicy], name: &str) -> &'a NetworkPolicySpec {
        policies
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
            .and_then(|p| p.spec.as_ref())
            .unwrap_or_else(|| panic!("no NetworkPolicy {name}"))
    }

    fn names(policies: &[NetworkPolicy]) -> Vec<&str> {
        policies
            .iter()
            .map(|p| p.metadata.name.as_deref().unwrap())
            .collect()
    }

    fn types(s: &NetworkPolicySpec) -> Vec<&str> {
        s.policy_types
            .iter()
            .flatten()
            .map(String::as_str)
            .collect()
    }

    /// A peer as (namespace name, pod labels): the namespace is `None` for a peer in the
    /// policy's own namespace.
    fn peer(p: &NetworkPolicyPeer) -> (Option<&str>, BTreeMap<String, String>) {
        let ns = p
            .namespace_selector
            .as_ref()
            .map(|s| s.match_labels.as_ref().unwrap()["kubernetes.io/metadata.name"].as_str());
        let pods = p
            .pod_selector
            .as_ref()
            .and_then(|s| s.match_labels.clone())
            .unwrap_or_default();
        (ns, pods)
    }

    fn ports(ports: &Option<Vec<NetworkPolicyPort>>) -> Vec<(String, i32)> {
        ports
            .iter()
            .flatten()
            .map(|p| {
                let Some(IntOrString::Int(n)) = p.port else {
                    panic!("a numeric port")
                };
                (p.protocol.clone().unwrap(), n)
            })
            .collect()
    }

    /// The lifecycle Jobs reach the websites product's port, from the shared namespace, and
    /// nothing else of the tenant.
    #[test]
    fn the_lifecycle_jobs_reach_the_websites_service_only() {
        let reg = example_registry();
        let plan = plan(&reg, ACTIVE);
        let policies = network_policies(&plan);
        let s = spec(&policies, "allow-provisio-lifecycle");
        assert_eq!(
            s.pod_selector.as_ref().unwrap().match_labels,
            Some(app("websites"))
        );
        let rule = &s.ingress.as_ref().unwrap()[0];
        let (ns, pods) = peer(&rule.from.as_ref().unwrap()[0]);
        assert_eq!(ns, Some("e-commerce-shared"));
        assert_eq!(pods, app("provisio-lifecycle"));
        assert_eq!(ports(&rule.ports), [("TCP".to_owned(), 8000)]);
        // Without a websites product, no such policy.
        let reg = gateway_only_registry();
        assert!(
            !names(&network_policies(&crate::testing::plan(&reg, ACTIVE)))
                .contains(&"allow-provisio-lifecycle")
        );
    }

    fn app(name: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("app".to_owned(), name.to_owned())])
    }

    #[test]
    fn every_tenant_gets_the_same_policies_in_its_namespace_as_guardrails() {
        let reg = example_registry();
        for id in [ACTIVE, PROVISIONING, DEPROVISIONING] {
            let plan = plan(&reg, id);
            let policies = network_policies(&plan);
            assert_eq!(
                names(&policies),
                [
                    "default-deny",
                    "allow-ingress-controller",
                    "allow-acme-http01-solver",
                    "allow-same-namespace",
                    "allow-prometheus",
                    "allow-provisio-lifecycle",
                    "allow-egress"
                ]
            );
            for p in &policies {
                assert_eq!(p.metadata.namespace.as_ref(), Some(&plan.namespace));
                let wave =
                    &p.metadata.annotations.as_ref().unwrap()[crate::render::objects::SYNC_WAVE];
                assert_eq!(*wave, wave::GUARDRAILS.to_string());
            }
        }
    }

    #[test]
    fn default_deny_selects_every_pod_both_ways_and_allows_nothing() {
        let reg = example_registry();
        let policies = network_policies(&plan(&reg, ACTIVE));
        let deny = spec(&policies, "default-deny");
        assert_eq!(deny.pod_selector, Some(LabelSelector::default()));
        assert_eq!(types(deny), ["Ingress", "Egress"]);
        assert_eq!(deny.ingress, None);
        assert_eq!(deny.egress, None);
    }

    #[test]
    fn the_ingress_controller_reaches_only_the_gateway_port() {
        let reg = example_registry();
        let policies = network_policies(&plan(&reg, ACTIVE));
        let s = spec(&policies, "allow-ingress-controller");
        assert_eq!(
            s.pod_selector,
            Some(match_labels(&[("app", "api-gateway")]))
        );
        assert_eq!(types(s), ["Ingress"]);
        assert_eq!(s.egress, None);
        let [rule] = s.ingress.as_deref().unwrap() else {
            panic!("one rule")
        };
        let from: Vec<_> = rule.from.iter().flatten().map(peer).collect();
        assert_eq!(from, [(Some("ingress-nginx"), controller())]);
        assert_eq!(ports(&rule.ports), [("TCP".to_owned(), 8100)]);
    }

    /// The ingress-nginx controller's pod labels, as the example platform names them.
    fn controller() -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                "app.kubernetes.io/component".to_owned(),
                "controller".to_owned(),
            ),
            (
                "app.kubernetes.io/name".to_owned(),
                "ingress-nginx".to_owned(),
            ),
        ])
    }

    #[test]
    fn the_ingress_controller_reaches_the_http01_solver_on_its_port_only() {
        let reg = example_registry();
        let policies = network_policies(&plan(&reg, PROVISIONING));
        let s = spec(&policies, "allow-acme-http01-solver");
        assert_eq!(
            s.pod_selector,
            Some(match_labels(&[(
                "acme.cert-manager.io/http01-solver",
                "true"
            )]))
        );
        assert_eq!(types(s), ["Ingress"]);
        assert_eq!(s.egress, None);
        let [rule] = s.ingress.as_deref().unwrap() else {
            panic!("one rule")
        };
        let from: Vec<_> = rule.from.iter().flatten().map(peer).collect();
        assert_eq!(from, [(Some("ingress-nginx"), controller())]);
        assert_eq!(ports(&rule.ports), [("TCP".to_owned(), 8089)]);
    }

    #[test]
    fn without_controller_pod_labels_the_whole_controller_namespace_is_admitted() {
        let reg = edited_registry(|s| {
            let text = &s["platform.yaml"];
            let start = text.find("  controllerPodLabels:").unwrap();
            let end = start + text[start..].find("  wwwAlias").unwrap();
            let cut = text[start..end].to_owned();
            replace_in(s, "platform.yaml", &cut, "");
        });
        let policies = network_policies(&plan(&reg, ACTIVE));
        for name in ["allow-ingress-controller", "allow-acme-http01-solver"] {
            let s = spec(&policies, name);
            let from: Vec<_> = s.ingress.as_deref().unwrap()[0]
                .from
                .iter()
                .flatten()
                .map(peer)
                .collect();
            assert_eq!(from, [(Some("ingress-nginx"), BTreeMap::new())], "{name}");
        }
    }

    #[test]
    fn the_namespace_talks_to_itself_on_any_port_and_to_no_other_namespace() {
        let reg = example_registry();
        let policies = network_policies(&plan(&reg, ACTIVE));
        let s = spec(&policies, "allow-same-namespace");
        assert_eq!(types(s), ["Ingress", "Egress"]);
        let [inbound] = s.ingress.as_deref().unwrap() else {
            panic!("one ingress rule")
        };
        let [outbound] = s.egress.as_deref().unwrap() else {
            panic!("one egress rule")
        };
        for (peers, p) in [
            (&inbound.from, &inbound.ports),
            (&outbound.to, &outbound.ports),
        ] {
            let peers: Vec<_> = peers.iter().flatten().map(peer).collect();
            assert_eq!(
                peers,
                [(None, BTreeMap::new())],
                "pods of this namespace only"
            );
            assert_eq!(*p, None);
        }
    }

    #[test]
    fn prometheus_reaches_only_the_metrics_ports() {
        let reg = example_registry();
        let policies = network_policies(&plan(&reg, ACTIVE));
        let s = spec(&policies, "allow-prometheus");
        assert_eq!(types(s), ["Ingress"]);
        let [rule] = s.ingress.as_deref().unwrap() else {
            panic!("one rule")
        };
        let from: Vec<_> = rule.from.iter().flatten().map(peer).collect();
        assert_eq!(from, [(Some("monitoring"), BTreeMap::new())]);
        // Every product serves metrics on 9090: one port, not one per product.
        assert_eq!(ports(&rule.ports), [("TCP".to_owned(), 9090)]);
    }

    #[test]
    fn without_a_metrics_port_there_is_no_prometheus_policy() {
        let reg = edited_registry(|s| {
            keep_only_the_gateway(s);
            replace_in(s, "products/api-gateway.yaml", "metricsPort: 9090\n", "");
        });
        let policies = network_policies(&plan(&reg, ACTIVE));
        assert!(
            !names(&policies).contains(&"allow-prometheus"),
            "{:?}",
            names(&policies)
        );
    }

    #[test]
    fn egress_is_dns_the_shared_services_in_use_and_https_outside_the_metadata_address() {
        let reg = example_registry();
        let policies = network_policies(&plan(&reg, ACTIVE));
        let s = spec(&policies, "allow-egress");
        assert_eq!(s.pod_selector, Some(LabelSelector::default()));
        assert_eq!(types(s), ["Egress"]);
        assert_eq!(s.ingress, None);
        let rules = s.egress.as_deref().unwrap();
        let summary: Vec<_> = rules
            .iter()
            .filter(|r| r.to.iter().flatten().all(|p| p.ip_block.is_none()))
            .map(|r| {
                let [to] = r.to.as_deref().unwrap() else {
                    panic!("one peer per rule")
                };
                (peer(to), ports(&r.ports))
            })
            .collect();
        let tcp = |n| ("TCP".to_owned(), n);
        assert_eq!(
            summary,
            [
                (
                    (Some("kube-system"), BTreeMap::new()),
                    vec![("UDP".to_owned(), 53), tcp(53)]
                ),
                ((Some("e-commerce-shared"), app("mysql")), vec![tcp(3306)]),
                (
                    (Some("e-commerce-shared"), app("rabbitmq")),
                    vec![tcp(5672)]
                ),
                ((Some("e-commerce-shared"), app("minio")), vec![tcp(9000)]),
            ]
        );
        let https = rules.last().unwrap();
        let block = https.to.as_deref().unwrap()[0].ip_block.as_ref().unwrap();
        assert_eq!(block.cidr, "0.0.0.0/0");
        assert_eq!(
            block.except.as_deref(),
            Some(&["169.254.169.254/32".to_owned()][..])
        );
        assert_eq!(ports(&https.ports), [tcp(443)]);
    }

    #[test]
    fn a_tenant_without_a_database_or_bucket_has_no_mysql_or_minio_egress() {
        let reg = gateway_only_registry();
        let policies = network_policies(&plan(&reg, ACTIVE));
        let s = spec(&policies, "allow-egress");
        let shared: Vec<_> = s
            .egress
            .iter()
            .flatten()
            .flat_map(|r| r.to.iter().flatten())
            .map(peer)
            .filter(|(ns, _)| *ns == Some("e-commerce-shared"))
            .map(|(_, pods)| pods)
            .collect();
        assert_eq!(shared, [app("rabbitmq")]);
    }
}
