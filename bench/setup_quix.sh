#!/usr/bin/env bash
# Idempotent set-up of bench/.venv-quix, the venv of the Quix Streams peer pipeline (bench/quix_app.py)
# that the freshness benchmark compares ours with. Its own venv so that quixstreams' dependencies
# cannot move freshvec's. Exact versions: bench/requirements-quix.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/venv.sh
VENV=bench/.venv-quix
peer_venv "Quix Streams" "$VENV" bench/requirements-quix.txt python
echo "quix: $VENV ready ($("$VENV/bin/python" -c 'import importlib.metadata as m; print(*(f"{p} {m.version(p)}" for p in ("quixstreams", "sentence-transformers", "torch")), sep=", ")'))"
