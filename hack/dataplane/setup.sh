#!/usr/bin/env bash
# Prepare the data-plane runtime: a virtualenv OUTSIDE the repo, keyed by a hash of
# hack/dataplane/requirements.txt, holding tritonserver (from the nvidia-pytriton wheel),
# ONNX Runtime and numpy<2, plus a Triton backend directory with the Python backend and the
# stub built for the venv's Python. Also makes sure a `prometheus` binary exists.
# Idempotent: a finished env is detected by its stamp file and the script returns at once.
# Prints `EDGETENANT_DATAPLANE_ENV=<dir>` as its last line.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
req="$here/requirements.txt"
cache_root="${EDGETENANT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edgetenant}"
py="${EDGETENANT_DATAPLANE_PYTHON:-$(command -v python3.11 || command -v python3)}"
py="$("$py" -c 'import sys; print(sys.executable)')"   # resolve pyenv shims to the real interpreter
py_version="$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
# The key covers the pins, the python minor version and this script's layout version.
key="$( { cat "$req"; echo "python=$py_version"; echo "layout=2"; } | sha256sum | cut -c1-12)"
env_dir="$cache_root/dataplane-$key"
stamp="$env_dir/.ready"

log() { printf '[dataplane-env] %s\n' "$*" >&2; }

ensure_prometheus() {
  if command -v prometheus >/dev/null 2>&1; then
    log "prometheus: $(command -v prometheus)"
    return
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    log "prometheus is not on PATH and apt-get is missing: install Prometheus >= 2.40 by hand"
    exit 1
  fi
  log "installing Debian package 'prometheus' (binary only; its service is not started)"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  # policy-rc.d exit 101 tells invoke-rc.d not to start services during the install.
  local made_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends prometheus >/dev/null
  [ -z "$made_policy" ] || $sudo rm -f /usr/sbin/policy-rc.d
  log "prometheus: $(command -v prometheus)"
}

ensure_prometheus

if [ -f "$stamp" ]; then
  log "ready (cached): $env_dir"
  echo "EDGETENANT_DATAPLANE_ENV=$env_dir"
  exit 0
fi

log "building $env_dir (python $py_version from $py)"
mkdir -p "$cache_root"
uv_bin="$(command -v uv || echo "$HOME/.local/bin/uv")"
if [ -x "$uv_bin" ]; then
  # A venv's scripts embed its path, so it is built in place; the stamp file written last
  # marks it complete, and a half-built one is rebuilt from scratch.
  rm -rf "$env_dir"
  "$uv_bin" venv --quiet --python "$py" "$env_dir"
  log "installing $(grep -cvE '^\s*(#|$)' "$req") pinned packages with uv"
  VIRTUAL_ENV="$env_dir" "$uv_bin" pip install --quiet --python "$env_dir/bin/python" -r "$req"
else
  rm -rf "$env_dir"
  "$py" -m venv "$env_dir"
  log "installing pinned packages with pip"
  "$env_dir/bin/python" -m pip install --quiet -r "$req"
fi

# Triton loads backends from <backend-dir>/<name>/; the Python backend needs its stub
# (built per Python minor version) beside libtriton_python.so. Both find their libraries
# through an $ORIGIN-relative RPATH into the wheel, so the stub goes into the wheel's own
# backend folder and $env_dir/backends is a symlink to it (pass its resolved path to Triton).
triton_root="$("$env_dir/bin/python" -c 'import pathlib, pytriton; print(pathlib.Path(pytriton.__file__).parent / "tritonserver")')"
stub="$triton_root/python_backend_stubs/$py_version/triton_python_backend_stub"
[ -x "$stub" ] || { log "no Python backend stub for python $py_version in the wheel"; exit 1; }
cp "$stub" "$triton_root/backends/python/"
ln -sfn "$triton_root/backends" "$env_dir/backends"
ln -sfn "$triton_root/bin/tritonserver" "$env_dir/bin/tritonserver"

# Smoke check: the binary links and prints its usage (`--help` exits non-zero by design).
usage="$("$env_dir/bin/tritonserver" --help 2>&1 || true)"
if [[ "$usage" != *"Usage: tritonserver"* ]]; then
  log "tritonserver does not start:"
  printf '%s\n' "$usage" | head -5 >&2
  exit 1
fi
"$env_dir/bin/python" -c 'import numpy, onnxruntime; assert numpy.__version__.startswith("1."), numpy.__version__'

touch "$stamp"
log "tritonserver: $env_dir/bin/tritonserver"
log "backends:     $triton_root/backends (python backend + stub for $py_version)"
log "python:       $env_dir/bin/python (numpy<2, onnxruntime)"
echo "EDGETENANT_DATAPLANE_ENV=$env_dir"
