#!/usr/bin/env bash
# Idempotent set-up of bench/.venv-quix, the venv of the Quix Streams peer pipeline (bench/quix_app.py)
# that the freshness benchmark compares ours with. Its own venv so that quixstreams' dependencies
# cannot move freshvec's. Exact versions: bench/requirements-quix.txt.
# uv (installed by deploy/local/setup.sh) when it is there, else python3 -m venv + pip.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${FRESHVEC_CACHE:-$HOME/.cache/freshvec}"
UV="$CACHE/uv-0.13.9/bin/uv"
VENV=bench/.venv-quix
LOCK=bench/requirements-quix.txt
stamp="$(sha256sum "$LOCK" | cut -c1-16)"
[[ "$(cat "$VENV/.freshvec-setup" 2>/dev/null)" == "$stamp" && -x "$VENV/bin/python" ]] && exit 0

echo "installing Quix Streams into $VENV (packages from $LOCK) ..."
if [[ -x "$UV" ]]; then
  export UV_CACHE_DIR="$CACHE/uv-cache" UV_PYTHON_DOWNLOADS=never
  [[ -x "$VENV/bin/python" ]] || "$UV" venv -q --python python3 "$VENV"
  "$UV" pip sync -q --python "$VENV/bin/python" "$LOCK"
else
  [[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r "$LOCK"
fi
echo "$stamp" > "$VENV/.freshvec-setup"
echo "quix: $VENV ready ($("$VENV/bin/python" -c 'import importlib.metadata as m; print(*(f"{p} {m.version(p)}" for p in ("quixstreams", "sentence-transformers", "torch")), sep=", ")'))"
