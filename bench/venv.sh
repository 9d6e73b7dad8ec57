# Sourced by the set-up scripts of the peers' venvs (setup_quix.sh, setup_infinity.sh): one venv per
# peer, from its own lock file, stamped with the lock's hash and left alone while that matches.
# uv (installed by deploy/local/setup.sh) when it is there, else python3 -m venv + pip.
CACHE="${FRESHVEC_CACHE:-$HOME/.cache/freshvec}"
UV="$CACHE/uv-0.13.9/bin/uv"

# peer_venv NAME VENV LOCK BIN: set up VENV from LOCK unless its stamp matches and VENV/bin/BIN exists.
peer_venv() {
  local name=$1 venv=$2 lock=$3 bin=$4 stamp
  stamp="$(sha256sum "$lock" | cut -c1-16)"
  [[ "$(cat "$venv/.freshvec-setup" 2>/dev/null)" == "$stamp" && -x "$venv/bin/$bin" ]] && return 0
  echo "installing $name into $venv (packages from $lock) ..."
  if [[ -x "$UV" ]]; then
    export UV_CACHE_DIR="$CACHE/uv-cache" UV_PYTHON_DOWNLOADS=never
    [[ -x "$venv/bin/python" ]] || "$UV" venv -q --python python3 "$venv"
    "$UV" pip sync -q --python "$venv/bin/python" "$lock"
  else
    [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
    "$venv/bin/pip" install -q -r "$lock"
  fi
  echo "$stamp" > "$venv/.freshvec-setup"
}
