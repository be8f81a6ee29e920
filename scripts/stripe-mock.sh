#!/usr/bin/env bash
# Builds stripe-mock (Stripe's mock API server, which checks requests against Stripe's published
# OpenAPI spec) with this machine's Go, once, into deck's tools cache. billing/stripe/provider.test.ts
# runs it; under CI=true that test fails when the binary is missing, so CI runs this script first.
#
#   scripts/stripe-mock.sh          build if needed, then print the binary's path
#   scripts/stripe-mock.sh --path   print where the binary is (or would be), build nothing
set -euo pipefail

VERSION=v0.203.0 # stripe-mock's go.mod asks for Go 1.22 or newer
dir="${DECK_TOOLS_DIR:-$HOME/.cache/deck-tools}/stripe-mock/$VERSION"
bin="$dir/stripe-mock"

if [ "${1:-}" = "--path" ]; then echo "$bin"; exit 0; fi
if [ -x "$bin" ]; then echo "$bin"; exit 0; fi

# The Go under /usr/local/go is the machine's own, newer than Debian's golang-go (1.19 on Debian 12,
# too old for stripe-mock); put it first so Debian's go never shadows it.
if [ -x /usr/local/go/bin/go ]; then export PATH="/usr/local/go/bin:$PATH"; fi
if ! command -v go >/dev/null; then
  echo "stripe-mock: no Go toolchain found (looked in /usr/local/go/bin and PATH)" >&2
  exit 1
fi
go_version=$(go env GOVERSION) # e.g. go1.26.8
minor=$(echo "$go_version" | sed -E 's/^go1\.([0-9]+).*/\1/')
if ! [ "$minor" -ge 22 ] 2>/dev/null; then
  echo "stripe-mock: needs Go 1.22 or newer, found $go_version at $(command -v go)" >&2
  exit 1
fi

echo "stripe-mock: building $VERSION with $go_version into $dir" >&2
mkdir -p "$dir"
# Built in a temp dir and moved into place, so an interrupted build never leaves a half-written binary.
tmp=$(mktemp -d "$dir/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
GOBIN="$tmp" go install "github.com/stripe/stripe-mock@$VERSION" >&2
mv "$tmp/stripe-mock" "$bin"
echo "$bin"
