#!/usr/bin/env bash
# Idempotent set-up of bench/.venv-infinity, the venv of Infinity (infinity-emb), the embedding
# server that bench/serve.py compares ours with. Its own venv because it pins an older
# sentence-transformers (<4) and numpy (<2) than freshvec's. Exact versions: bench/requirements-infinity.txt.
# uv (installed by deploy/local/setup.sh) when it is there, else python3 -m venv + pip.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${FRESHVEC_CACHE:-$HOME/.cache/freshvec}"
UV="$CACHE/uv-0.13.9/bin/uv"
VENV=bench/.venv-infinity
LOCK=bench/requirements-infinity.txt
stamp="$(sha256sum "$LOCK" | cut -c1-16)"
[[ "$(cat "$VENV/.freshvec-setup" 2>/dev/null)" == "$stamp" && -x "$VENV/bin/infinity_emb" ]] && exit 0

echo "installing Infinity into $VENV (packages from $LOCK) ..."
if [[ -x "$UV" ]]; then
  export UV_CACHE_DIR="$CACHE/uv-cache" UV_PYTHON_DOWNLOADS=never
  [[ -x "$VENV/bin/python" ]] || "$UV" venv -q --python python3 "$VENV"
  "$UV" pip sync -q --python "$VENV/bin/python" "$LOCK"
else
  [[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r "$LOCK"
fi
echo "$stamp" > "$VENV/.freshvec-setup"
echo "infinity: $VENV ready ($("$VENV/bin/python" -c 'import importlib.metadata as m; print("infinity-emb", m.version("infinity-emb"))'))"
