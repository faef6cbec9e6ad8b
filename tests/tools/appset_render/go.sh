#!/usr/bin/env bash
# Run the go tool on appset_render in GOPATH mode with Debian's packaged
# libraries (no module proxy is needed or used). Examples:
#   tests/tools/appset_render/go.sh build -o /tmp/appset_render .
#   tests/tools/appset_render/go.sh test .
# Needs: apt-get install golang-go golang-github-masterminds-sprig-dev \
#        golang-gopkg-yaml.v2-dev   (Debian bookworm: Go 1.19, sprig 3.2.3)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
command -v go >/dev/null || { echo "go.sh: 'go' not found (apt-get install golang-go)" >&2; exit 2; }
[ -d /usr/share/gocode/src/github.com/Masterminds/sprig ] || {
  echo "go.sh: sprig not found (apt-get install golang-github-masterminds-sprig-dev golang-gopkg-yaml.v2-dev)" >&2; exit 2; }
gopath="$(mktemp -d "${TMPDIR:-/tmp}/appset_render_gopath.XXXXXX")"
trap 'rm -rf "$gopath"' EXIT
# Debian installs sprig v3 without its /v3 import-path suffix; GOPATH mode
# needs the suffix as a directory, so link it (upstream imports .../sprig/v3).
mkdir -p "$gopath/src/github.com/Masterminds/sprig"
ln -s /usr/share/gocode/src/github.com/Masterminds/sprig "$gopath/src/github.com/Masterminds/sprig/v3"
export GO111MODULE=off GOPATH="$gopath:/usr/share/gocode" GOFLAGS=
export GOCACHE="${GOCACHE:-${TMPDIR:-/tmp}/appset_render_gocache}"
cd "$here"
exec go "$@"
