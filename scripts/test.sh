#!/usr/bin/env bash
# The test command (README): every test, including the ones that build tenant trees with
# kubectl kustomize, validate them with kubernetes-validate, the upstream CRD schemas and
# promtool, and run setup commands against real MariaDB, RabbitMQ and S3 servers.
set -euo pipefail
cd "$(dirname "$0")/.."
export PROVISIO_CRD_DIR="${PROVISIO_CRD_DIR:-$(cd .. && pwd)/shared/crds}"
exec cargo test --locked --workspace --lib --bins --tests "$@"
