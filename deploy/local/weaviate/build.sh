#!/usr/bin/env bash
# Build weaviate-server from Weaviate's Go module at a pinned tag, once.
# The binary and Go's module/build caches live under $FRESHVEC_CACHE so a clean
# clone (CI) reuses them; a second run returns at once.
set -euo pipefail
source "$(dirname "$0")/../versions.env"
CACHE="${FRESHVEC_CACHE:-$HOME/.cache/freshvec}"
BIN_DIR="$CACHE/weaviate/$WEAVIATE_VERSION"
BIN="$BIN_DIR/weaviate-server"

if [[ -x "$BIN" ]]; then
  echo "weaviate-server $WEAVIATE_VERSION: cached at $BIN"
  exit 0
fi
command -v go >/dev/null || { echo "error: 'go' not found; Go 1.26 is needed to build weaviate-server" >&2; exit 1; }

mkdir -p "$BIN_DIR"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOBIN="$BIN_DIR.tmp"
echo "building weaviate-server $WEAVIATE_VERSION with go install (cold: 10-25 min on 2 cores)..."
start=$(date +%s)
rm -rf "$GOBIN"
go install -trimpath -ldflags="-s -w" "github.com/weaviate/weaviate/cmd/weaviate-server@$WEAVIATE_VERSION"
# Move into place only when complete, so an interrupted build is never mistaken for a cached one.
mv "$GOBIN/weaviate-server" "$BIN"
rm -rf "$GOBIN"
echo "built $BIN in $(( $(date +%s) - start )) s"
