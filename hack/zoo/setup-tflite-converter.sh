#!/usr/bin/env bash
# Prepare the zoo's TFLite converter: onnx2tf in a virtualenv OUTSIDE the repo, keyed by a hash of
# hack/zoo/tflite-converter.txt and the Python version, at $EDGETENANT_CACHE/tflite-converter-<hash>.
# onnx2tf 2.x needs Python >= 3.12: the first that runs of $EDGETENANT_CONVERTER_PYTHON, python3.12 and
# python3.13 on PATH, then pyenv's installed 3.12+ (the development machines have them, not active).
# Idempotent: a finished env has a stamp file.
# Prints `EDGETENANT_TFLITE_CONVERTER=<dir>` as its last line.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
req="$here/tflite-converter.txt"
cache_root="${EDGETENANT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edgetenant}"
log() { printf '[tflite-converter] %s\n' "$*" >&2; }

py=""
pyenv_root="$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"
for candidate in "${EDGETENANT_CONVERTER_PYTHON:-}" python3.12 python3.13 \
    $(ls -d "$pyenv_root"/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -V); do
  if [ -n "$candidate" ] && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
    py="$candidate"
    break
  fi
done
if [ -z "$py" ]; then
  log "onnx2tf 2.x needs Python >= 3.12 and none runs here (python3.12, python3.13, pyenv's versions);"
  log "install one (e.g. pyenv install 3.12) or set EDGETENANT_CONVERTER_PYTHON to its path"
  exit 1
fi
py="$("$py" -c 'import sys; print(sys.executable)')"   # resolve pyenv shims to the real interpreter
py_version="$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
key="$( { cat "$req"; echo "python=$py_version"; } | sha256sum | cut -c1-12)"
env_dir="$cache_root/tflite-converter-$key"

if [ -f "$env_dir/.ready" ]; then
  echo "EDGETENANT_TFLITE_CONVERTER=$env_dir"
  exit 0
fi
log "building $env_dir (python $py_version from $py)"
mkdir -p "$cache_root"
rm -rf "$env_dir"   # a half-built env is rebuilt from scratch; the stamp is written last
# Never download an interpreter: only the registries are reachable.
export UV_PYTHON_DOWNLOADS=never
if python3 -m uv --version >/dev/null 2>&1; then
  python3 -m uv venv --quiet --python "$py" "$env_dir"
  python3 -m uv pip install --quiet --python "$env_dir/bin/python" -r "$req"
else
  "$py" -m venv "$env_dir"
  "$env_dir/bin/python" -m pip install --quiet -r "$req"
fi
"$env_dir/bin/onnx2tf" -h >/dev/null
touch "$env_dir/.ready"
log "onnx2tf: $env_dir/bin/onnx2tf"
echo "EDGETENANT_TFLITE_CONVERTER=$env_dir"
