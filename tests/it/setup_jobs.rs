//! The setup Jobs rendered into the example tenants' trees: one PreSync Job per shared
//! service a tenant uses, in the shared namespace (admin credentials never referenced from a
//! tenant namespace), each mounting a ConfigMap with its own service's part of the tenant's
//! spec (derived from its plan, no secret value), which `provisio setup --spec` reads; no
//! teardown Job and no delete hook, even for a tenant in `deprovisioning`.

use crate::support_setup;

use provisio_core::plan::setup::{SPEC_ENV, SetupSpec};
use provisio_core::render::jobs;

#[test]
fn example_tenants_get_their_jobs() {
    let (reg, _) = provisio::ops::load::load(&support_setup::repo_root().join("registry")).unwrap();
    let shared = &reg.platform.shared_services.namespace;
    let mut saw_deprovisioning = false;
    for tenant in reg.tenants.values() {
        let plan = provisio_core::plan::plan_tenant(&reg, tenant, support_setup::now());
        let spec = SetupSpec::from_plan(&plan);
        spec.validate().unwrap();
        let all = jobs::setup_jobs(&plan);
        saw_deprovisioning |= plan.status == provisio_core::registry::TenantStatus::Deprovisioning;
        let services: Vec<&str> = [
            ("mysql", spec.mysql.is_some()),
            ("rabbitmq", spec.rabbitmq.is_some()),
            ("minio", spec.s3.is_some()),
        ]
        .into_iter()
        .filter(|(_, used)| *used)
        .map(|(s, _)| s)
        .collect();
        assert_eq!(all.len(), services.len(), "{}", plan.id);
        for s in &all {
            let (job, cm) = (&s.job, &s.spec);
            let meta = &job.metadata;
            assert_eq!(
                meta.namespace.as_deref(),
                Some(shared.as_str()),
                "admin side only"
            );
            assert_eq!(cm.metadata.namespace, meta.namespace);
            let ann = meta.annotations.as_ref().unwrap();
            let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
            let c = &pod.containers[0];
            let args = c.args.as_ref().unwrap();
            let (verb, service) = (args[0].as_str(), args[1].as_str());
            assert!(services.contains(&service), "{service}");
            assert_eq!(service, s.service.as_str());
            assert_eq!(
                &args[2..],
                [
                    "--spec",
                    "/etc/provisio/spec.json",
                    "--secret-store",
                    jobs::STORE_ARG
                ]
            );
            let hook = ann["argocd.argoproj.io/hook"].as_str();
            assert_eq!((verb, hook), ("setup", "PreSync"), "{}", plan.id);
            assert_eq!(
                meta.name.as_deref(),
                Some(jobs::job_name(verb, service, plan.id).as_str())
            );
            // The mounted spec is this service's part only, round-trips and holds no secret
            // value; no variable carries a spec any more.
            let json = &cm.data.as_ref().unwrap()[jobs::SPEC_KEY];
            let mounted = SetupSpec::parse(json).unwrap();
            assert_eq!(Some(mounted), spec.for_service(s.service));
            assert!(!json.to_ascii_lowercase().contains("password"), "{json}");
            let env = c.env.as_ref().unwrap();
            assert!(
                env.iter()
                    .all(|e| e.value_from.is_none() && e.name != SPEC_ENV)
            );
            let from: Vec<&str> = c
                .env_from
                .as_ref()
                .unwrap()
                .iter()
                .map(|e| e.secret_ref.as_ref().unwrap().name.as_str())
                .collect();
            assert_eq!(
                from,
                [jobs::admin_secret(service).as_str(), jobs::STORE_SECRET]
            );
            assert_eq!(
                pod.service_account_name.as_deref(),
                Some(jobs::SETUP_SERVICE_ACCOUNT)
            );
        }
    }
    assert!(
        saw_deprovisioning,
        "the example registry has a deprovisioning tenant"
    );
}

/// `provisio setup <service> --spec FILE` reads what a Job mounts: with the ConfigMap's text
/// as the file and no admin credentials, each run gets past the spec and stops at the missing
/// credentials (exit 2), the first thing it needs from its environment.
#[test]
fn the_setup_command_reads_the_mounted_spec() {
    let (reg, _) = provisio::ops::load::load(&support_setup::repo_root().join("registry")).unwrap();
    let plan = provisio_core::plan::plan_tenant(
        &reg,
        &reg.tenants["abc-corporation-7f3a9c"],
        support_setup::now(),
    );
    let work = tempfile::tempdir().unwrap();
    let store = format!("file:{}", work.path().join("store").display());
    for s in jobs::setup_jobs(&plan) {
        let service = s.service.as_str();
        let file = work.path().join(format!("{service}.json"));
        std::fs::write(&file, &s.spec.data.as_ref().unwrap()[jobs::SPEC_KEY]).unwrap();
        let (code, out, err) = support_setup::provisio(
            &[
                "setup",
                service,
                "--spec",
                file.to_str().unwrap(),
                "--secret-store",
                &store,
            ],
            &[],
        );
        let missing = match service {
            "mysql" => "MYSQL_ADMIN_USER",
            "rabbitmq" => "RABBITMQ_ADMIN_USER",
            _ => "MINIO_ROOT_USER",
        };
        assert_eq!(code, 2, "{service}: {out}{err}");
        assert!(
            err.contains(&format!("{missing} must be set")),
            "{service}: {err}"
        );
    }
}

#[test]
fn rendered_trees_never_reference_admin_secrets_in_tenant_namespaces() {
    let (reg, _) = provisio::ops::load::load(&support_setup::repo_root().join("registry")).unwrap();
    let out = provisio_core::render::render_all(&reg, support_setup::now()).unwrap();
    let shared = format!("namespace: {}", reg.platform.shared_services.namespace);
    for (tenant, files) in &out.tenants {
        for (path, bytes) in files {
            let text = String::from_utf8_lossy(bytes);
            for doc in text.split("\n---\n") {
                if doc.contains("provisio-admin-") {
                    assert!(
                        doc.contains(&shared),
                        "{tenant} {path}: admin secret outside {shared}"
                    );
                }
            }
        }
        assert!(
            files.keys().any(|k| k.ends_with("/setup-jobs.yaml")),
            "{tenant} has no setup Jobs"
        );
    }
}
