#!/usr/bin/env bash
# Idempotent set-up of the venvs of Infinity (infinity-emb), the embedding server that
# bench/serve.py compares ours with:  bash bench/setup_infinity.sh [torch] [onnx]  (default: both)
#   torch  bench/.venv-infinity       its torch engine; it pins an older sentence-transformers (<4)
#                                     and numpy (<2) than freshvec's. bench/requirements-infinity.txt
#   onnx   bench/.venv-infinity-onnx  its ONNX engine (--engine optimum); it needs optimum 1.24,
#                                     which caps transformers below the torch venv's.
#                                     bench/requirements-infinity-onnx.txt
# Each venv is stamped with its lock file's hash and left alone while that matches.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/venv.sh

setup() {  # setup VENV LOCK
  peer_venv Infinity "$1" "$2" infinity_emb
  echo "infinity: $1 ready ($("$1/bin/python" -c 'import importlib.metadata as m; print("infinity-emb", m.version("infinity-emb"))'))"
}

variants=("$@")
(( ${#variants[@]} )) || variants=(torch onnx)
for v in "${variants[@]}"; do
  case "$v" in
    torch) setup bench/.venv-infinity bench/requirements-infinity.txt ;;
    onnx) setup bench/.venv-infinity-onnx bench/requirements-infinity-onnx.txt ;;
    *) echo "usage: $0 [torch] [onnx]" >&2; exit 2 ;;
  esac
done
