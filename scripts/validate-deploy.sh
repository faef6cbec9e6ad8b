#!/usr/bin/env bash
# Validates deploy/ the way the tenant trees are validated:
#   1. `kubectl kustomize deploy/` builds;
#   2. built-in objects pass `kubernetes-validate --strict` for Kubernetes 1.32;
#   3. custom resources (ServiceMonitor, PrometheusRule, and deploy/argocd-application.yaml)
#      pass tests/tools/validate_crs.py against the upstream CRDs ($PROVISIO_CRD_DIR, default
#      ../shared/crds);
#   4. the PrometheusRule's groups pass `promtool check rules`, and its unit tests
#      (deploy/tests/*.test.yaml) pass `promtool test rules`;
#   5. the Grafana dashboard is JSON whose panels only query metrics of the contract;
#   6. policy checks the validators do not make: every container runs restricted, with
#      probes and resources, every Secret is referenced by name only, one writer each.
# Tools: kubectl (with kustomize), kubernetes-validate (pip, .ci/requirements.txt), python3
# with PyYAML and jsonschema, promtool (Debian: prometheus). Exit 0 when everything passes.
set -euo pipefail
cd "$(dirname "$0")/.."
crd_dir=${PROVISIO_CRD_DIR:-$(cd .. && pwd)/shared/crds}
k8s_version=${K8S_VERSION:-1.32.0}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
step() { printf '\n==> %s\n' "$*"; }
missing=()
for tool in kubectl kubernetes-validate promtool python3; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
((${#missing[@]} == 0)) || { echo "error: missing tools: ${missing[*]}" >&2; exit 1; }
[ -d "$crd_dir" ] || { echo "error: CRD directory $crd_dir is missing (set PROVISIO_CRD_DIR)" >&2; exit 1; }

step "kubectl kustomize deploy/"
kubectl kustomize deploy/ >"$tmp/all.yaml"
# Split into built-in objects and custom resources (by API group), one stream each.
python3 - "$tmp" <<'EOF'
import sys, yaml
tmp = sys.argv[1]
docs = [d for d in yaml.safe_load_all(open(f"{tmp}/all.yaml")) if d]
builtin, custom, kinds = [], [], []
for d in docs:
    group = d["apiVersion"].split("/")[0] if "/" in d["apiVersion"] else ""
    custom_group = "." in group and not group.endswith(".k8s.io")
    (custom if custom_group else builtin).append(d)
    kinds.append(f'{d["kind"]}/{d["metadata"]["name"]}')
    if d["kind"] == "PrometheusRule":
        with open(f"{tmp}/provisio-rules.yaml", "w") as f:
            yaml.safe_dump(d["spec"], f, sort_keys=False)
yaml.safe_dump_all(builtin, open(f"{tmp}/builtin.yaml", "w"), sort_keys=False)
yaml.safe_dump_all(custom, open(f"{tmp}/custom.yaml", "w"), sort_keys=False)
print(f"{len(docs)} objects: {len(builtin)} built-in, {len(custom)} custom")
print("  " + "\n  ".join(kinds))
EOF

step "kubernetes-validate --strict -k $k8s_version (built-in objects)"
out=$(kubernetes-validate --strict --quiet --kubernetes-version "$k8s_version" "$tmp/builtin.yaml" 2>&1) || {
  echo "$out"; exit 1; }
# It only warns about a kind it has no schema for: none is acceptable here.
if grep -qE 'WARN|ERROR' <<<"$out"; then echo "$out"; exit 1; fi
echo "ok"

step "validate_crs.py (custom resources, CRDs from $crd_dir)"
python3 tests/tools/validate_crs.py --crd-dir "$crd_dir" "$tmp/custom.yaml" deploy/argocd-application.yaml

step "promtool check rules"
[ -s "$tmp/provisio-rules.yaml" ] || { echo "error: no PrometheusRule in deploy/" >&2; exit 1; }
promtool check rules "$tmp/provisio-rules.yaml"

step "promtool test rules deploy/tests/*.test.yaml"
cp deploy/tests/*.test.yaml "$tmp/"
(cd "$tmp" && promtool test rules ./*.test.yaml)
# Every alert has at least one unit test and a runbook section.
python3 - "$tmp/provisio-rules.yaml" docs/operations.md deploy/tests/*.test.yaml <<'EOF'
import re, sys, yaml
rules, runbook, tests = sys.argv[1], sys.argv[2], sys.argv[3:]
alerts = [r["alert"] for g in yaml.safe_load(open(rules))["groups"] for r in g["rules"] if "alert" in r]
tested = {c["alertname"] for f in tests for t in yaml.safe_load(open(f))["tests"]
          for c in t.get("alert_rule_test", []) if c.get("exp_alerts")}
headings = set(re.findall(r"^### (\w+)", open(runbook).read(), re.M))
bad = [f"{a}: no firing test" for a in alerts if a not in tested]
bad += [f"{a}: no runbook section (### {a}) in {runbook}" for a in alerts if a not in headings]
for b in bad:
    print("error:", b)
print(f"{len(alerts)} alerts, each with a firing unit test and a runbook section" if not bad else "")
sys.exit(1 if bad else 0)
EOF

step "Grafana dashboard and policy checks"
python3 - "$tmp/all.yaml" deploy/dashboards/provisio.json docs/operations.md <<'EOF'
import json, re, sys, yaml
all_yaml, dashboard, contract_doc = sys.argv[1:4]
docs = [d for d in yaml.safe_load_all(open(all_yaml)) if d]
errors = []

# The dashboard: valid JSON, unique panel ids, and every metric it queries is in the contract.
dash = json.load(open(dashboard))
contract = set(re.findall(r"^\| `(provisio_[a-z_]+)`", open(contract_doc).read(), re.M))
ids, queried = [], set()
for p in dash["panels"]:
    ids.append(p["id"])
    for t in p.get("targets", []):
        queried |= set(re.findall(r"\b(provisio_[a-z_]+?)(?:_bucket|_sum|_count)?\b", t["expr"]))
if len(ids) != len(set(ids)):
    errors.append("dashboard: duplicate panel ids")
unknown = sorted(m for m in queried if m not in contract)
if unknown:
    errors.append(f"dashboard queries metrics outside the contract: {unknown}")
cms = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
if len(cms) != 1:
    errors.append("expected one ConfigMap labelled grafana_dashboard=1")

# Workloads: restricted, probes, resources, one writer, Secrets by name only.
secret_refs = set()
for d in docs:
    if d["kind"] == "Secret":
        errors.append(f"Secret/{d['metadata']['name']}: Secrets are referenced, never shipped")
    if d["kind"] != "Deployment":
        continue
    name = d["metadata"]["name"]
    spec = d["spec"]
    if spec.get("replicas") != 1 or spec.get("strategy", {}).get("type") != "Recreate":
        errors.append(f"{name}: one writer: replicas 1 and strategy Recreate")
    pod = spec["template"]["spec"]
    psc = pod.get("securityContext", {})
    if not psc.get("runAsNonRoot") or psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        errors.append(f"{name}: pod must run as non-root with seccomp RuntimeDefault")
    if pod.get("automountServiceAccountToken") is not False:
        errors.append(f"{name}: no service account token")
    for v in pod.get("volumes", []):
        if "secret" in v:
            secret_refs.add(v["secret"]["secretName"])
    for c in pod["containers"]:
        sc = c.get("securityContext", {})
        if sc.get("readOnlyRootFilesystem") is not True or sc.get("allowPrivilegeEscalation") is not False \
                or sc.get("capabilities", {}).get("drop") != ["ALL"]:
            errors.append(f"{name}/{c['name']}: read-only root, no privilege escalation, drop ALL")
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            if c.get(probe, {}).get("httpGet", {}).get("path") != path:
                errors.append(f"{name}/{c['name']}: {probe} on {path}")
        res = c.get("resources", {})
        if not res.get("requests", {}).get("cpu") or not res.get("limits", {}).get("memory"):
            errors.append(f"{name}/{c['name']}: cpu request and memory limit")
        for e in c.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                secret_refs.add(ref["name"])
            if re.search(r"(?i)secret|token|password", e["name"]) and "value" in e:
                errors.append(f"{name}/{c['name']}: {e['name']} holds a value; use a Secret")
        for a in c.get("args", []):
            if re.match(r"--[a-z-]*(secret|token|password)[a-z-]*=(?!/)", a) and not a.split("=", 1)[0].endswith("-file"):
                errors.append(f"{name}/{c['name']}: {a.split('=')[0]} takes a value on the command line")
documented = set(re.findall(r"^\| `(provisio-[a-z-]+)` \| Secret", open(contract_doc).read(), re.M))
if secret_refs != documented:
    errors.append(f"Secrets referenced {sorted(secret_refs)} != documented in docs/operations.md {sorted(documented)}")
for e in errors:
    print("error:", e)
if errors:
    sys.exit(1)
print(f"dashboard: {len(ids)} panels, {len(queried)} metrics, all in the contract")
print(f"workloads restricted, probed, bounded; Secrets referenced by name only: {', '.join(sorted(secret_refs))}")
EOF

step "promtool check rules on the dashboard's queries (they must parse)"
python3 - deploy/dashboards/provisio.json "$tmp/dashboard-rules.yaml" <<'EOF'
import json, sys, yaml
dash = json.load(open(sys.argv[1]))
rules = []
for p in dash["panels"]:
    for t in p.get("targets", []):
        # Grafana's variables, as Grafana would substitute them.
        expr = t["expr"].replace("$__rate_interval", "5m").replace("$namespace", "provisio")
        rules.append({"record": f"dashboard:panel_{p['id']}_{t['refId']}", "expr": expr})
yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, open(sys.argv[2], "w"))
EOF
promtool check rules "$tmp/dashboard-rules.yaml"

step "deploy/ is valid"
