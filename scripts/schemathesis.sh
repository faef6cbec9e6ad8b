#!/usr/bin/env bash
# Fuzzes `provisio serve` with schemathesis against the committed OpenAPI document
# (docs/openapi.json): no generated request may cause a server error (5xx) or a response
# that contradicts the document. Starts the server on 127.0.0.1 with a scratch copy of the
# example registry in its own git repository, and stops it on exit.
# Usage: scripts/schemathesis.sh [SECONDS]   (needs `schemathesis` on PATH or in $SCHEMATHESIS)
set -euo pipefail
cd "$(dirname "$0")/.."
budget="${1:-60}"
st="${SCHEMATHESIS:-schemathesis}"
bin="${PROVISIO_BIN:-target/debug/provisio}"
[ -x "$bin" ] || cargo build --locked --quiet
work=$(mktemp -d)
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
cp -r registry "$work/registry"
git -C "$work" init -q
git -C "$work" -c user.name=ci -c user.email=ci@localhost add -A
git -C "$work" -c user.name=ci -c user.email=ci@localhost commit -qm "scratch registry"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PROVISIO_WEBHOOK_SECRET=fuzz-secret PROVISIO_LOG=warn "$bin" serve \
  --registry "$work/registry" --listen "127.0.0.1:$port" &
server=$!
for _ in $(seq 50); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null
# Tiers and regions come from the registry, so the document cannot enumerate them: a random
# tier is rightly refused (422), which schemathesis would call a rejected valid request.
"$st" run docs/openapi.json -u "http://127.0.0.1:$port" -H 'Authorization: Bearer fuzz-secret' \
  --max-time "$budget" --exclude-checks positive_data_acceptance
