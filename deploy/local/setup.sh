#!/usr/bin/env bash
# Idempotent set-up of everything freshvec runs on locally: the Python venv
# (.venv, exact versions from requirements.lock), Kafka's jars and the
# weaviate-server binary. Downloads and builds are cached under
# $FRESHVEC_CACHE (default ~/.cache/freshvec), so a clean clone sets up fast.
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE="${FRESHVEC_CACHE:-$HOME/.cache/freshvec}"
source deploy/local/versions.env
UV_VERSION=0.13.9
start=$(date +%s)
mkdir -p "$CACHE"

# --- Python ----------------------------------------------------------------
# uv lives in its own small venv in the cache: `uv pip sync` would otherwise
# remove it from .venv, which it keeps exactly equal to the lock file.
UV="$CACHE/uv-$UV_VERSION/bin/uv"
if [[ ! -x "$UV" ]]; then
  python3 -m venv "$CACHE/uv-$UV_VERSION"
  "$CACHE/uv-$UV_VERSION/bin/pip" install -q "uv==$UV_VERSION"
fi
export UV_CACHE_DIR="$CACHE/uv-cache" UV_PYTHON_DOWNLOADS=never
[[ -x .venv/bin/python ]] || "$UV" venv -q --python python3 .venv
stamp="$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)"
if [[ "$(cat .venv/.freshvec-setup 2>/dev/null)" != "$stamp" ]]; then
  echo "installing Python packages from requirements.lock into .venv ..."
  "$UV" pip sync -q --python .venv/bin/python requirements.lock
  "$UV" pip install -q --python .venv/bin/python --no-deps -e .
  echo "$stamp" > .venv/.freshvec-setup
fi
echo "python: .venv ready ($(.venv/bin/python -c 'import ray, torch; print("ray", ray.__version__, "torch", torch.__version__)'))"

# --- Kafka -----------------------------------------------------------------
KAFKA_LIBS="$CACHE/kafka/$KAFKA_VERSION/libs"
if [[ ! -f "$KAFKA_LIBS/.complete" ]]; then
  command -v mvn >/dev/null || { echo "error: 'mvn' not found; Maven resolves Kafka's jars" >&2; exit 1; }
  echo "resolving Apache Kafka $KAFKA_VERSION jars with Maven ..."
  rm -rf "$KAFKA_LIBS"
  mvn -B -q -f deploy/local/kafka/pom.xml -Dmaven.repo.local="$CACHE/m2" -Dkafka.version="$KAFKA_VERSION" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS"
  touch "$KAFKA_LIBS/.complete"
fi
echo "kafka: $KAFKA_VERSION jars in $KAFKA_LIBS"

# --- Weaviate --------------------------------------------------------------
bash deploy/local/weaviate/build.sh

echo "setup done in $(( $(date +%s) - start )) s"
