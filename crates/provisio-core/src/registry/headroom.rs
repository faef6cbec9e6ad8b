//! The quota headroom rule: a tier's ResourceQuota must hold what its tenants actually run at
//! the worst moment of a sync, not only the steady state. The API server refuses a pod whose
//! requests or limits would push the namespace past `hard` ("exceeded quota"); a refused
//! migration fails the sync, a refused surge pod leaves the rollout stuck until
//! `progressDeadlineSeconds`. So, for `requests.cpu`, `requests.memory`, `limits.cpu`,
//! `limits.memory` (and their aliases `cpu`, `memory`) and `pods`, the quota must be at least:
//!
//! - the steady state: every Deployment's replicas × its container's requests/limits;
//! - plus the migrations that run together: every migration Job is a Sync hook of the same
//!   wave, so all of them run at once (one pod each, the product's resources);
//! - plus one surge pod per Deployment (rendered with `maxSurge: 1`, `maxUnavailable: 0`; all
//!   Deployments roll in the same wave);
//! - plus cert-manager's HTTP-01 solver pods, one per name of the tenant's Certificate (at
//!   most two), with cert-manager's default resources.
//!
//! Finished pods (Succeeded/Failed) stop counting, which is why the setup Jobs (in the shared
//! namespace anyway) are not counted; the sum is deliberately pessimistic about the order in
//! which migrations and rollouts happen (a retried sync can overlap them).
//!
//! The rule runs per tier (with the tier's and products' replicas) and per tenant with
//! replica overrides (against its tier's quota).

use std::collections::BTreeMap;

use super::model::{CpuMemory, Product, Tenant, Tier};
use crate::diagnostic::{Diagnostic, at};

/// cert-manager's default resources of an ACME HTTP-01 solver pod (cert-manager v1.21
/// `internal/apis/config/controller/v1alpha1/defaults.go`: requests 10m CPU / 64Mi, limits
/// 100m / 64Mi), in milli-units.
const SOLVER_CPU_REQUEST: i128 = 10;
const SOLVER_CPU_LIMIT: i128 = 100;
const SOLVER_MEMORY: i128 = 64 * MI;
/// Names of a tenant's Certificate at most (its domain and `www.`): one solver pod each.
const MAX_SOLVER_PODS: i128 = 2;

/// One mebibyte in milli-bytes.
const MI: i128 = 1024 * 1024 * 1000;

/// A Kubernetes quantity times 1000, rounded up (`500m` → 500, `2` → 2000, `1Gi` →
/// 1073741824000); `None` when it is not a quantity, negative, or too large to matter.
pub fn milli(s: &str) -> Option<i128> {
    let s = s.strip_prefix('+').unwrap_or(s);
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(end);
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.len() + frac.len() == 0 || int.len() + frac.len() > 30 || frac.contains('.') {
        return None;
    }
    let mantissa: i128 = format!("{int}{frac}").parse().ok()?;
    let (binary, decimal): (i128, i32) = match suffix {
        "" => (1, 0),
        "n" => (1, -9),
        "u" => (1, -6),
        "m" => (1, -3),
        "k" => (1, 3),
        "M" => (1, 6),
        "G" => (1, 9),
        "T" => (1, 12),
        "P" => (1, 15),
        "E" => (1, 18),
        "Ki" => (1 << 10, 0),
        "Mi" => (1 << 20, 0),
        "Gi" => (1 << 30, 0),
        "Ti" => (1 << 40, 0),
        "Pi" => (1 << 50, 0),
        "Ei" => (1 << 60, 0),
        e if e.starts_with(['e', 'E']) => (1, e[1..].parse::<i32>().ok()?),
        _ => return None,
    };
    let exponent = decimal + 3 - frac.len() as i32;
    let scaled = mantissa.checked_mul(binary)?;
    if exponent >= 0 {
        scaled.checked_mul(10i128.checked_pow(exponent.try_into().ok()?)?)
    } else {
        let d = 10i128.checked_pow((-exponent).try_into().ok()?)?;
        Some((scaled + d - 1) / d)
    }
}

/// What runs in a tenant namespace, in milli-units (pods: count × 1000).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Load {
    cpu_requests: i128,
    cpu_limits: i128,
    memory_requests: i128,
    memory_limits: i128,
    pods: i128,
}

impl Load {
    /// `n` pods of one container with these resources (`None` when one does not parse: the
    /// product rules report it).
    fn pods(n: i128, requests: &CpuMemory, limits: &CpuMemory) -> Option<Load> {
        Some(Load {
            cpu_requests: n * milli(&requests.cpu.value)?,
            cpu_limits: n * milli(&limits.cpu.value)?,
            memory_requests: n * milli(&requests.memory.value)?,
            memory_limits: n * milli(&limits.memory.value)?,
            pods: n * 1000,
        })
    }

    fn add(self, o: Load) -> Load {
        Load {
            cpu_requests: self.cpu_requests + o.cpu_requests,
            cpu_limits: self.cpu_limits + o.cpu_limits,
            memory_requests: self.memory_requests + o.memory_requests,
            memory_limits: self.memory_limits + o.memory_limits,
            pods: self.pods + o.pods,
        }
    }
}

/// The parts of the peak, kept apart for the message.
#[derive(Debug, Clone, Copy, Default)]
struct Peak {
    steady: Load,
    migrations: Load,
    migration_jobs: i128,
    surge: Load,
    deployments: i128,
    solvers: Load,
}

impl Peak {
    fn total(&self) -> Load {
        self.steady
            .add(self.migrations)
            .add(self.surge)
            .add(self.solvers)
    }
}

/// The peak of a tenant whose products run `replicas(product)` replicas; `None` when a
/// product's resources do not parse.
fn peak<'a>(
    products: impl IntoIterator<Item = (&'a str, &'a Product)>,
    replicas: impl Fn(&str, &Product) -> u32,
) -> Option<Peak> {
    let mut p = Peak::default();
    for (name, product) in products {
        let r = &product.resources;
        let n = i128::from(replicas(name, product));
        p.steady = p.steady.add(Load::pods(n, &r.requests, &r.limits)?);
        if n > 0 {
            p.surge = p.surge.add(Load::pods(1, &r.requests, &r.limits)?);
            p.deployments += 1;
        }
        if product.migration.is_some() {
            p.migrations = p.migrations.add(Load::pods(1, &r.requests, &r.limits)?);
            p.migration_jobs += 1;
        }
    }
    p.solvers = Load {
        cpu_requests: MAX_SOLVER_PODS * SOLVER_CPU_REQUEST,
        cpu_limits: MAX_SOLVER_PODS * SOLVER_CPU_LIMIT,
        memory_requests: MAX_SOLVER_PODS * SOLVER_MEMORY,
        memory_limits: MAX_SOLVER_PODS * SOLVER_MEMORY,
        pods: MAX_SOLVER_PODS * 1000,
    };
    Some(p)
}

/// How a quota key's amounts print.
#[derive(Clone, Copy)]
enum Unit {
    Cpu,
    Memory,
    Count,
}

/// A quota key, how its amounts print, and the part of a [`Load`] it bounds.
type Checked = (&'static str, Unit, fn(&Load) -> i128);

fn checked_keys() -> [Checked; 7] {
    [
        ("requests.cpu", Unit::Cpu, |l| l.cpu_requests),
        ("cpu", Unit::Cpu, |l| l.cpu_requests),
        ("limits.cpu", Unit::Cpu, |l| l.cpu_limits),
        ("requests.memory", Unit::Memory, |l| l.memory_requests),
        ("memory", Unit::Memory, |l| l.memory_requests),
        ("limits.memory", Unit::Memory, |l| l.memory_limits),
        ("pods", Unit::Count, |l| l.pods),
    ]
}

/// An amount in milli-units as a quantity: CPU in millicores, memory in Mi (rounded up),
/// counts as integers.
fn show(unit: Unit, milli: i128) -> String {
    match unit {
        Unit::Cpu => format!("{milli}m"),
        Unit::Memory => format!("{}Mi", (milli + MI - 1) / MI),
        Unit::Count => format!("{}", (milli + 999) / 1000),
    }
}

/// Each quota key of `quota` the peak does not fit in: (key, its value, the explanation,
/// the least quota that fits).
fn shortfalls<'q>(
    quota: &'q BTreeMap<String, super::model::Sp<String>>,
    peak: &Peak,
) -> Vec<(&'q str, &'q super::model::Sp<String>, String, String)> {
    let total = peak.total();
    let mut out = Vec::new();
    for (key, unit, part) in checked_keys() {
        let Some(value) = quota.get(key) else {
            continue;
        };
        let Some(hard) = milli(&value.value) else {
            continue; // not a quantity (reported by the tier rules), or astronomically large
        };
        let need = part(&total);
        if need <= hard {
            continue;
        }
        let s = |l: &Load| show(unit, part(l));
        let why = format!(
            "steady state {} + {} migration Jobs running together {} + one surge pod for each of {} Deployments {} + {} HTTP-01 solver pods {} = {}",
            s(&peak.steady),
            peak.migration_jobs,
            s(&peak.migrations),
            peak.deployments,
            s(&peak.surge),
            MAX_SOLVER_PODS,
            s(&peak.solvers),
            show(unit, need)
        );
        out.push((key, value, why, show(unit, need)));
    }
    out
}

/// Every tier's quota against its own peak (the tier's and the products' replicas).
/// `products`: name → (file, product), as the loader holds them.
pub fn check_tiers(
    tiers: &BTreeMap<String, Tier>,
    products: &BTreeMap<String, (String, Product)>,
    path: &str,
    diags: &mut Vec<Diagnostic>,
) {
    for (name, tier) in tiers {
        let Some(peak) = peak(
            products.iter().map(|(n, (_, p))| (n.as_str(), p)),
            |_, p| p.replicas.unwrap_or(tier.replicas),
        ) else {
            continue;
        };
        for (key, value, why, least) in shortfalls(&tier.quota, &peak) {
            diags.push(
                at(
                    path,
                    value,
                    format!(
                        "tier `{name}`: quota `{key}: {}` cannot hold its tenants during a sync",
                        value.value
                    ),
                )
                .with_label(why)
                .with_help(format!(
                    "raise `{key}` to at least {least}, or lower the products' replicas or resources (pods beyond the quota are refused: \"exceeded quota\")"
                )),
            );
        }
    }
}

/// A tenant's replica overrides against its tier's quota; reported at the first override
/// that raises a product above its default, only when the tier itself holds its defaults.
pub fn check_tenant(
    tenant: &Tenant,
    tier: &Tier,
    products: &BTreeMap<String, (String, Product)>,
    path: &str,
    diags: &mut Vec<Diagnostic>,
) {
    let overrides = &tenant.overrides.replicas;
    if overrides.is_empty() || overrides.keys().any(|p| !products.contains_key(p)) {
        return;
    }
    let all = || products.iter().map(|(n, (_, p))| (n.as_str(), p));
    let default = |_: &str, p: &Product| p.replicas.unwrap_or(tier.replicas);
    let (Some(base), Some(peak)) = (
        peak(all(), default),
        peak(all(), |n, p| {
            overrides.get(n).map_or_else(|| default(n, p), |r| r.value)
        }),
    ) else {
        return;
    };
    if !shortfalls(&tier.quota, &base).is_empty() {
        return; // the tier's own error says it
    }
    let Some(raised) = overrides
        .iter()
        .find(|(n, r)| r.value > default(n, &products[*n].1))
        .map(|(_, r)| r)
    else {
        return;
    };
    for (key, value, why, least) in shortfalls(&tier.quota, &peak) {
        diags.push(
            at(
                path,
                raised,
                format!(
                    "the replica overrides exceed tier `{}`'s quota `{key}: {}` during a sync",
                    tenant.tier.value, value.value
                ),
            )
            .with_label(why)
            .with_help(format!(
                "lower the overrides, or move the tenant to a tier whose `{key}` is at least {least}"
            )),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{example_registry, replace_in};

    #[test]
    fn quantities_in_milli_units() {
        for (q, m) in [
            ("6", 6000),
            ("500m", 500),
            ("0.5", 500),
            ("1.5", 1500),
            ("12Gi", 12 * 1024 * MI),
            ("64Mi", 64 * MI),
            ("1k", 1_000_000),
            ("1e3", 1_000_000),
            ("100M", 100_000_000_000),
            ("1n", 1),
            ("+2", 2000),
        ] {
            assert_eq!(milli(q), Some(m), "{q}");
        }
        for bad in [
            "",
            "Gi",
            "12GB",
            "1.2.3",
            "-1",
            "five",
            "1e",
            "9".repeat(40).as_str(),
        ] {
            assert_eq!(milli(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_example_tiers_hold_steady_state_migrations_surge_and_solvers() {
        let reg = example_registry();
        let products = with_paths(&reg);
        let mut diags = Vec::new();
        check_tiers(&reg.tiers, &products, "tiers.yaml", &mut diags);
        assert_eq!(diags, []);
        // The premium peak, by hand: 12 products × 2 replicas; 11 migrations; 12 surge pods.
        let premium = &reg.tiers["premium"];
        let p = peak(reg.products.iter().map(|(n, p)| (n.as_str(), p)), |_, _| {
            premium.replicas
        })
        .unwrap();
        assert_eq!(p.steady.cpu_requests, 5400);
        assert_eq!(p.migrations.cpu_requests, 2200);
        assert_eq!(p.surge.cpu_requests, 2700);
        assert_eq!(p.total().cpu_requests, 10_320);
        assert_eq!(p.total().pods, 49_000);
        assert_eq!((p.migration_jobs, p.deployments), (11, 12));
    }

    /// The seed's premium figures (6 CPU requested) hold the steady state (5.4) only.
    #[test]
    fn a_quota_without_headroom_is_an_error_with_its_numbers() {
        let mut sources = crate::testing::example_sources();
        replace_in(
            &mut sources,
            "tiers.yaml",
            "  premium:\n    sites: 3\n    replicas: 2\n    quota:\n      requests.cpu: \"12\"\n",
            "  premium:\n    sites: 3\n    replicas: 2\n    quota:\n      requests.cpu: \"6\"\n",
        );
        let report = crate::registry::load_sources(sources).report;
        let [d] = &report.diagnostics[..] else {
            panic!("{}", report.render())
        };
        assert_eq!(d.file, "tiers.yaml");
        assert_eq!(
            d.message,
            "tier `premium`: quota `requests.cpu: 6` cannot hold its tenants during a sync"
        );
        assert_eq!(
            d.label.as_deref(),
            Some(
                "steady state 5400m + 11 migration Jobs running together 2200m + one surge pod for each of 12 Deployments 2700m + 2 HTTP-01 solver pods 20m = 10320m"
            )
        );
    }

    fn with_paths(reg: &crate::registry::Registry) -> BTreeMap<String, (String, Product)> {
        reg.products
            .iter()
            .map(|(n, p)| (n.clone(), (format!("products/{n}.yaml"), p.clone())))
            .collect()
    }

    #[test]
    fn replica_overrides_are_checked_against_the_tenants_tier() {
        let reg = example_registry();
        let t = &reg.tenants[crate::testing::DEPROVISIONING];
        let products = with_paths(&reg);
        let mut diags = Vec::new();
        check_tenant(t, &reg.tiers["business"], &products, "t.yaml", &mut diags);
        assert_eq!(diags, [], "api-gateway: 4 fits the business quota");

        let mut sources = crate::testing::example_sources();
        replace_in(
            &mut sources,
            "tenants/nordwind-logistik-7ace77.yaml",
            "    api-gateway: 4\n",
            "    api-gateway: 40\n",
        );
        let report = crate::registry::load_sources(sources).report;
        let messages: Vec<&str> = report
            .diagnostics
            .iter()
            .map(|d| d.message.as_str())
            .collect();
        assert!(
            messages.contains(
                &"the replica overrides exceed tier `business`'s quota `requests.cpu: 16` during a sync"
            ),
            "{}",
            report.render()
        );
        assert!(
            report
                .diagnostics
                .iter()
                .all(|d| d.file == "tenants/nordwind-logistik-7ace77.yaml" && d.line == 25),
            "{}",
            report.render()
        );
    }
}
