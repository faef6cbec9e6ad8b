//! The tenant's Certificate (cert-manager) and Ingress.

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};

use crate::plan::TenantPlan;
use crate::render::crd::*;
use crate::render::objects::{annotate, meta, wave};

/// The Secret cert-manager writes the tenant's certificate into; the Ingress serves it.
pub const TLS_SECRET: &str = "tenant-tls-secret";

pub(super) fn certificate(plan: &TenantPlan<'_>) -> CustomResource<CertificateSpec> {
    let c = &plan.platform.certificates;
    CustomResource {
        api_version: CERTIFICATE_API,
        kind: "Certificate",
        metadata: meta(plan, "tenant-tls", wave::EXPOSURE, &[]),
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
