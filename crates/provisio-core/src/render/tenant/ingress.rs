//! The tenant's Certificate (cert-manager) and Ingress.

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};

use crate::plan::TenantPlan;
use crate::render::crd::*;
use crate::render::objects::{annotate, meta, wave};

pub use crate::render::objects::CERTIFICATE;
/// The Secret cert-manager writes the tenant's certificate into; the Ingress serves it.
pub const TLS_SECRET: &str = "tenant-tls-secret";

pub(super) fn certificate(plan: &TenantPlan<'_>) -> CustomResource<CertificateSpec> {
    let c = &plan.platform.certificates;
    CustomResource {
        api_version: CERTIFICATE_API,
        kind: "Certificate",
        metadata: meta(plan, CERTIFICATE, wave::EXPOSURE, &[]),
        spec: CertificateSpec {
            secret_name: TLS_SECRET.into(),
            issuer_ref: IssuerRef {
                name: c.issuer.clone(),
                kind: c.issuer_kind.value.clone(),
                group: "cert-manager.io",
            },
            dns_names: plan.hosts.clone(),
        },
    }
}

/// The Ingress. No `cert-manager.io/cluster-issuer` annotation (the seed has one): the
/// Certificate above already manages the TLS secret, and the annotation would make
/// cert-manager create a second Certificate fighting over it.
pub(super) fn ingress(plan: &TenantPlan<'_>) -> Ingress {
    let gw = plan.gateway();
    let backend = IngressBackend {
        service: Some(IngressServiceBackend {
            name: gw.name.to_owned(),
            port: Some(ServiceBackendPort {
                number: Some(i32::from(gw.product.port.value)),
                ..Default::default()
            }),
        }),
        ..Default::default()
    };
    let ann = plan
        .platform
        .ingress
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()));
    Ingress {
        metadata: annotate(meta(plan, "tenant-ingress", wave::EXPOSURE, &[]), ann),
        spec: Some(IngressSpec {
            ingress_class_name: Some(plan.platform.ingress.class_name.clone()),
            tls: Some(vec![IngressTLS {
                hosts: Some(plan.hosts.clone()),
                secret_name: Some(TLS_SECRET.into()),
            }]),
            rules: Some(
                plan.hosts
                    .iter()
                    .map(|h| IngressRule {
                        host: Some(h.clone()),
                        http: Some(HTTPIngressRuleValue {
                            paths: vec![HTTPIngressPath {
                                path: Some("/".into()),
                                path_type: "Prefix".into(),
                                backend: backend.clone(),
                            }],
                        }),
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::render::objects::SYNC_WAVE;
    use crate::testing::{
        ACTIVE, DEPROVISIONING, PROVISIONING, edited_registry, example_registry, plan, replace_in,
    };

    #[test]
    fn the_certificate_covers_exactly_the_tenants_hosts_from_the_platform_issuer() {
        let reg = example_registry();
        for id in [ACTIVE, PROVISIONING, DEPROVISIONING] {
            let plan = plan(&reg, id);
            let c = certificate(&plan);
            assert_eq!(c.kind, "Certificate");
            assert_eq!(c.api_version, CERTIFICATE_API);
            assert_eq!(c.spec.dns_names, plan.hosts, "{id}");
            assert_eq!(c.spec.dns_names[0], plan.domain, "{id}");
            assert_eq!(c.spec.secret_name, TLS_SECRET);
            assert_eq!(c.spec.issuer_ref.name, "letsencrypt-prod");
            assert_eq!(c.spec.issuer_ref.kind, "ClusterIssuer");
            assert_eq!(c.spec.issuer_ref.group, "cert-manager.io");
            assert_eq!(c.metadata.namespace.as_ref(), Some(&plan.namespace));
        }
        let c = certificate(&plan(&reg, ACTIVE));
        assert_eq!(
            c.spec.dns_names,
            [
                "abc-corporation.collectverything.com",
                "www.abc-corporation.collectverything.com"
            ]
        );
        let c = certificate(&plan(&reg, PROVISIONING));
        assert_eq!(
            c.spec.dns_names[0],
            "cafe-creme-93b31b.collectverything.com"
        );
        let c = certificate(&plan(&reg, DEPROVISIONING));
        assert_eq!(c.spec.dns_names[0], "shop.nordwind-logistik.de");
    }

    #[test]
    fn issuer_and_www_alias_come_from_platform_yaml() {
        let reg = edited_registry(|s| {
            replace_in(s, "platform.yaml", "wwwAlias: true", "wwwAlias: false");
            replace_in(
                s,
                "platform.yaml",
                "issuer: letsencrypt-prod",
                "issuer: internal-ca",
            );
            replace_in(
                s,
                "platform.yaml",
                "issuerKind: ClusterIssuer",
                "issuerKind: Issuer",
            );
        });
        let plan = plan(&reg, ACTIVE);
        let c = certificate(&plan);
        assert_eq!(c.spec.dns_names, ["abc-corporation.collectverything.com"]);
        assert_eq!(
            (
                c.spec.issuer_ref.name.as_str(),
                c.spec.issuer_ref.kind.as_str()
            ),
            ("internal-ca", "Issuer")
        );
        let i = ingress(&plan).spec.unwrap();
        assert_eq!(i.rules.unwrap().len(), 1);
        assert_eq!(
            i.tls.unwrap()[0].hosts.as_deref(),
            Some(&c.spec.dns_names[..])
        );
    }

    #[test]
    fn the_ingress_routes_every_host_to_the_gateway_over_the_certificates_secret() {
        let reg = example_registry();
        let plan = plan(&reg, ACTIVE);
        let cert = certificate(&plan);
        let ing = ingress(&plan);
        assert_eq!(ing.metadata.name.as_deref(), Some("tenant-ingress"));
        let spec = ing.spec.as_ref().unwrap();
        assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
        let [tls] = spec.tls.as_deref().unwrap() else {
            panic!("one TLS entry")
        };
        assert_eq!(
            tls.secret_name.as_deref(),
            Some(cert.spec.secret_name.as_str())
        );
        assert_eq!(tls.hosts.as_deref(), Some(&cert.spec.dns_names[..]));
        let rules = spec.rules.as_deref().unwrap();
        let hosts: Vec<_> = rules.iter().map(|r| r.host.clone().unwrap()).collect();
        assert_eq!(hosts, plan.hosts);
        for r in rules {
            let [path] = r.http.as_ref().unwrap().paths.as_slice() else {
                panic!("one path")
            };
            assert_eq!(
                (path.path.as_deref(), path.path_type.as_str()),
                (Some("/"), "Prefix")
            );
            let svc = path.backend.service.as_ref().unwrap();
            assert_eq!(svc.name, "api-gateway");
            assert_eq!(svc.port.as_ref().unwrap().number, Some(8100));
        }
        assert_eq!(spec.default_backend, None);
    }

    #[test]
    fn the_ingress_annotations_are_the_platforms_plus_its_wave_and_no_issuer() {
        let reg = example_registry();
        let plan = plan(&reg, ACTIVE);
        let a = ingress(&plan).metadata.annotations.unwrap();
        let mut expected: BTreeMap<String, String> = plan
            .platform
            .ingress
            .annotations
            .clone()
            .into_iter()
            .collect();
        expected.insert(SYNC_WAVE.to_owned(), wave::EXPOSURE.to_string());
        assert_eq!(a, expected);
        assert_eq!(a["nginx.ingress.kubernetes.io/ssl-redirect"], "true");
        // The Certificate manages the TLS secret; a second owner would fight over it.
        assert!(a.keys().all(|k| !k.starts_with("cert-manager.io/")));
        // Exposed together with its certificate.
        let cert_wave = &certificate(&plan).metadata.annotations.unwrap()[SYNC_WAVE];
        assert_eq!(*cert_wave, a[SYNC_WAVE]);
    }
}
