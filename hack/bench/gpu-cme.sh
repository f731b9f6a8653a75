#!/usr/bin/env bash
# The CME sweep on a GPU: every zoo model at 1..8 KIND_GPU instances, each running ONNX Runtime's
# CUDA provider inside Triton's Python backend (edgetenant's shim), measured with the same
# closed-loop load generator as the CPU run. Self-contained: builds the operator venv and a GPU
# data-plane venv (tritonserver from the nvidia-pytriton wheel, onnxruntime-gpu, the CUDA/cuDNN
# runtime wheels, numpy<2) from the package registry, then writes
# hack/bench/cme/RESULTS-GPU.md, results-gpu.json and cme-gpu-*.png.
#
#   hack/bench/gpu-cme.sh                       # all models, 1..8 instances, 6 s per point (~5 min)
#   hack/bench/gpu-cme.sh --models resnet50 --max-instances 4
#   EDGETENANT_GPU_CME_KIND=KIND_CPU hack/bench/gpu-cme.sh   # Triton builds whose Python backend
#                                    # refuses KIND_GPU: CPU-kind instances forced onto CUDA
#
# Not part of CI (needs an NVIDIA GPU with a driver for CUDA 12.x). Every server binds 127.0.0.1.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
log() { printf '[gpu-cme] %s\n' "$*" >&2; }

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >&2 \
  || { log "no nvidia-smi: this needs an NVIDIA GPU"; exit 1; }

make venv >&2

cache_root="${EDGETENANT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edgetenant}"
py="$(command -v python3.11 || command -v python3)"
py="$("$py" -c 'import sys; print(sys.executable)')"
py_version="$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
req="$(mktemp)"
cat > "$req" <<'REQ'
nvidia-pytriton==0.7.0
onnxruntime-gpu==1.20.2
numpy==1.26.4
nvidia-cuda-runtime-cu12==12.6.77
nvidia-cublas-cu12==12.6.4.1
nvidia-cufft-cu12==11.3.0.4
nvidia-curand-cu12==10.3.7.77
nvidia-cudnn-cu12==9.5.1.17
REQ
key="$( { cat "$req"; echo "python=$py_version"; } | sha256sum | cut -c1-12)"
env_dir="$cache_root/dataplane-gpu-$key"
if [ ! -f "$env_dir/.ready" ]; then
  log "building the GPU data-plane env in $env_dir"
  rm -rf "$env_dir"
  uv_bin="$(command -v uv || echo "$HOME/.local/bin/uv")"
  "$uv_bin" venv --quiet --python "$py" "$env_dir"
  "$uv_bin" pip install --quiet --python "$env_dir/bin/python" -r "$req"
  triton_root="$("$env_dir/bin/python" -c 'import pathlib, pytriton; print(pathlib.Path(pytriton.__file__).parent / "tritonserver")')"
  cp "$triton_root/python_backend_stubs/$py_version/triton_python_backend_stub" "$triton_root/backends/python/"
  ln -sfn "$triton_root/backends" "$env_dir/backends"
  ln -sfn "$triton_root/bin/tritonserver" "$env_dir/bin/tritonserver"
  touch "$env_dir/.ready"
fi
rm -f "$req"

# onnxruntime-gpu 1.20 finds CUDA and cuDNN through the loader path: the nvidia-* wheels' lib dirs.
site="$("$env_dir/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cuda_libs="$(find "$site/nvidia" -maxdepth 2 -type d -name lib | tr '\n' ':')"
export LD_LIBRARY_PATH="${cuda_libs}${LD_LIBRARY_PATH:-}"
export EDGETENANT_DATAPLANE_ENV="$env_dir"

log "checking that ONNX Runtime sees CUDA"
"$env_dir/bin/python" -c 'import onnxruntime as o; p = o.get_available_providers(); print(p); assert "CUDAExecutionProvider" in p'

kind="${EDGETENANT_GPU_CME_KIND:-KIND_GPU}"
extra=()
[ "$kind" = "KIND_GPU" ] || extra=(--provider cuda)
log "sweeping (instance kind $kind)"
.venv/bin/python hack/bench/cme/cme.py --gpu --instance-kind "$kind" "${extra[@]}" --duration 6 --warmup 2 "$@"
log "results: hack/bench/cme/RESULTS-GPU.md"
