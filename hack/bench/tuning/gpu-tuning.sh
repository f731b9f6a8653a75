#!/usr/bin/env bash
# The tuning benchmark on a GPU machine (not part of CI): for each zoo model, the brute-force
# sweep of static KIND_GPU instance counts, then edgetenant's loop from one instance under
# the same load; prints the results JSON path. Self-contained from a clone:
#
#   hack/bench/tuning/gpu-tuning.sh                      # all zoo models, ~2-3 min per model
#   MODELS="resnet50 mobilenet_v2" hack/bench/tuning/gpu-tuning.sh
#
# Needs: an NVIDIA driver (nvidia-smi), Python 3.11, network access to PyPI (first run only),
# Debian/Ubuntu apt for Prometheus if it is not on PATH. Every server binds 127.0.0.1.
# The data-plane env is a GPU variant of hack/dataplane/setup.sh's (onnxruntime-gpu instead of
# onnxruntime), kept in its own cache directory so the CPU env is never touched.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
cd "$repo"
models="${MODELS:-mobilenet_v1 mobilenet_v2 resnet18 resnet50 inception_v3 efficientnet_b0}"
clients="${CLIENTS:-16}"
max_instances="${MAX_INSTANCES:-6}"
out_dir="${OUT_DIR:-$repo/hack/bench/tuning/gpu-$(date -u +%Y%m%dT%H%M%SZ)}"
ort_gpu="${ORT_GPU_VERSION:-1.20.1}"

log() { printf '[gpu-tuning] %s\n' "$*" >&2; }

command -v nvidia-smi >/dev/null || { log "nvidia-smi not found: this script needs an NVIDIA GPU"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2

# 1. The operator's venv (uv, from uv.lock).
command -v uv >/dev/null || python3 -m pip install --quiet --user 'uv==0.13.9'
export PATH="$HOME/.local/bin:$PATH"
uv sync --frozen --quiet

# 2. A GPU data-plane env: the normal one, built in a separate cache, with onnxruntime-gpu.
export EDGETENANT_CACHE="${EDGETENANT_GPU_CACHE:-$HOME/.cache/edgetenant-gpu}"
env_dir="$(bash hack/dataplane/setup.sh | sed -n 's/^EDGETENANT_DATAPLANE_ENV=//p' | tail -1)"
if ! "$env_dir/bin/python" -c 'import onnxruntime as o, sys; sys.exit("CUDAExecutionProvider" not in o.get_available_providers())' 2>/dev/null; then
  log "installing onnxruntime-gpu==$ort_gpu into $env_dir"
  uv pip uninstall --quiet --python "$env_dir/bin/python" onnxruntime || true
  uv pip install --quiet --python "$env_dir/bin/python" "onnxruntime-gpu==$ort_gpu"
fi
export EDGETENANT_DATAPLANE_ENV="$env_dir"
"$env_dir/bin/python" -c 'import onnxruntime as o; print("ORT providers:", o.get_available_providers())' >&2

# 3. The benchmark: sweep (brute force) and loop per model, KIND_GPU instances.
mkdir -p "$out_dir"
log "models: $models; clients $clients; up to $max_instances instances; results in $out_dir"
# shellcheck disable=SC2086
.venv/bin/python hack/bench/tuning/bench.py \
  --instance-kind KIND_GPU \
  --models $models \
  --clients "$clients" \
  --max "$max_instances" \
  --point-seconds 10 --warmup 3 \
  --interval 5 --intervals 24 --steady-seconds 60 \
  --profiles-dir "$out_dir/profiles" \
  --out "$out_dir/results.json" | tee "$out_dir/bench.log"
.venv/bin/python hack/bench/tuning/report.py "$out_dir/results.json" > "$out_dir/RESULTS.md"
log "done: $out_dir/RESULTS.md"
