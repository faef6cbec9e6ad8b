#!/usr/bin/env bash
# Smoke test of appset_render (issue 9, defect 1).
#   tests/tools/appset_render/smoke.sh [OUTPUT_ROOT]     (default: /work/main)
# 1. builds the tool into a temp dir (GOPATH mode, see go.sh);
# 2. renders OUTPUT_ROOT's committed argocd/ + tenants-out/ and expects the
#    defect: source.path rendered as "map[...]" and -check failing (exit 3).
#    Once the generator output is fixed, run with EXPECT_COMMITTED=ok;
# 3. copies argocd/ and tenants-out/ into a temp dir, fixes the copy two ways
#    (template uses {{ .path.path }}; or config.json's "path" key renamed to
#    "sourcePath" and the template uses {{ .sourcePath }}), and expects every
#    tenant tree to be the source of exactly one Application (-check exit 0).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="${1:-/work/main}"
expect_committed="${EXPECT_COMMITTED:-bug}"
work="$(mktemp -d "${TMPDIR:-/tmp}/appset_render_smoke.XXXXXX")"
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

echo "== build"
"$here/go.sh" build -o "$work/appset_render" .

echo "== committed output: $root"
set +e
"$work/appset_render" -check "$root" >"$work/committed.json" 2>"$work/committed.err"
rc=$?
set -e
cat "$work/committed.err"
python3 - "$work/committed.json" <<'EOF'
import json, sys
for a in json.load(open(sys.argv[1])):
    app = a["application"]
    print(f'{a["applicationSet"]:24} {app["metadata"]["name"]:36} source.path={app["spec"]["source"]["path"]!r}')
EOF
case "$expect_committed" in
  bug)
    [ "$rc" -eq 3 ] || fail "expected -check to find the defect (exit 3), got exit $rc"
    grep -q '"path": "map\[' "$work/committed.json" || fail "expected source.path rendered as map[...]"
    echo "OK: the committed output shows the defect (source.path is the path map; exit $rc)";;
  ok)
    [ "$rc" -eq 0 ] || fail "expected the committed output to pass -check, got exit $rc";;
  *) fail "EXPECT_COMMITTED must be bug or ok";;
esac

run_fixed() { # name, then a command that edits the copy in $1
  local name="$1"; shift
  local copy="$work/$name"
  mkdir -p "$copy"
  cp -R "$root/argocd" "$root/tenants-out" "$copy/"
  "$@" "$copy"
  echo "== fixed copy ($name)"
  set +e
  "$work/appset_render" -check "$copy" >"$copy.json"
  local rc=$?
  set -e
  [ "$rc" -eq 0 ] || fail "$name: expected -check to pass, got exit $rc"
  python3 - "$copy.json" "$copy" <<'EOF'
import json, os, sys
apps = json.load(open(sys.argv[1]))
trees = sorted(d for d in os.listdir(os.path.join(sys.argv[2], "tenants-out")))
assert apps, "no Application generated"
for a in apps:
    app = a["application"]
    path = app["spec"]["source"]["path"]
    assert path == os.path.dirname(a["file"]), (path, a["file"])
    print(f'{a["applicationSet"]:24} {app["metadata"]["name"]:36} source.path={path!r} namespace={app["spec"]["destination"]["namespace"]}')
assert sorted(os.path.basename(a["application"]["spec"]["source"]["path"]) for a in apps) == trees
EOF
  echo "OK: $name"
}

fix_template() {
  sed -i 's/path: "{{ \.path }}"/path: "{{ .path.path }}"/' "$1"/argocd/applicationsets/*.yaml
  ! grep -q '{{ \.path }}' "$1"/argocd/applicationsets/*.yaml || fail "template not rewritten"
}
fix_key() {
  sed -i 's/path: "{{ \.path }}"/path: "{{ .sourcePath }}"/' "$1"/argocd/applicationsets/*.yaml
  sed -i 's/^  "path":/  "sourcePath":/' "$1"/tenants-out/*/config.json
}
run_fixed template-path-path fix_template
run_fixed config-key-renamed fix_key
echo "smoke: all OK"
