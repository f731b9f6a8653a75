"""Triton model configuration (config.pbtxt and its JSON twin), rendered from one spec.

Pure: no I/O. The same spec renders for the official Triton images (native ``onnxruntime``,
``tensorrt``, ``openvino`` backends) and for edgetenant's Python-backend shims
(``backend: "python"``, see ``edgetenant.dataplane``); the two differ only in the backend
line, because the shims read the same parameter names as the native backend they stand in
for. Inputs and outputs are left out on purpose: Triton's auto-complete (native backends,
and the shims' ``auto_complete_config``) reads them from the model file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Final

# Triton instance kinds (model_config.proto, ModelInstanceGroup.Kind).
INSTANCE_KINDS: Final = frozenset({"KIND_AUTO", "KIND_CPU", "KIND_GPU", "KIND_MODEL"})

# Which native backend serves each model format, and the file name it loads by default.
NATIVE_BACKENDS: Final[dict[str, str]] = {
    "onnx": "onnxruntime",
    "tensorrt": "tensorrt",
    "openvino": "openvino",
    "tflite": "tflite",
}
DEFAULT_MODEL_FILENAMES: Final[dict[str, str]] = {
    "onnx": "model.onnx",
    "tensorrt": "model.plan",
    "openvino": "model.xml",
    "tflite": "model.tflite",
}
# The backend line that selects an edgetenant shim instead of a native backend.
SHIM_BACKEND: Final = "python"

# Per-instance thread-count parameters, named as the native backend for the format reads
# them (the onnxruntime and openvino backends' documented keys; the tflite key is the one
# the Arm NN TFLite backend and our TFLite shim read). TensorRT has no such knob.
THREAD_PARAMETERS: Final[dict[str, tuple[str, ...]]] = {
    "onnx": ("intra_op_thread_count",),
    "openvino": ("INFERENCE_NUM_THREADS",),
    "tflite": ("tflite_num_threads",),
    "tensorrt": (),
}
# The native onnxruntime backend defaults inter-op threads to the core count; one per
# instance keeps an instance's footprint at exactly `threads_per_instance` cores.
_FIXED_PARAMETERS: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    "onnx": (("inter_op_thread_count", "1"),),
}


@dataclass(frozen=True, slots=True)
class DynamicBatching:
    """Triton dynamic batching; a zero delay batches only what is already queued."""

    max_queue_delay_microseconds: int = 0
    preferred_batch_sizes: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class TritonModelSpec:
    """Everything that decides a model's Triton config. Frozen, so it can key caches."""

    name: str
    format: str = "onnx"
    backend: str = "onnxruntime"  # a native backend, or SHIM_BACKEND for the Python shims
    max_batch_size: int = 8
    instance_count: int = 1
    instance_kind: str = "KIND_CPU"
    gpus: tuple[int, ...] = ()  # device ids for KIND_GPU; empty = all visible
    threads_per_instance: int | None = None  # None: the backend's own default
    dynamic_batching: DynamicBatching | None = None  # None: batching off
    model_filename: str | None = None  # None: the backend's default file name
    parameters: tuple[tuple[str, str], ...] = field(default=())  # extra key/value pairs

    def __post_init__(self) -> None:
        problems = validate_spec(self)
        if problems:
            raise ValueError(f"invalid Triton model spec {self.name!r}: " + "; ".join(problems))


def validate_spec(spec: TritonModelSpec) -> list[str]:
    """Reasons the spec cannot render, in words a person understands; empty when fine."""
    problems: list[str] = []
    if not spec.name or "/" in spec.name or spec.name in {".", ".."}:
        problems.append("name must be a non-empty directory name")
    if spec.format not in NATIVE_BACKENDS:
        problems.append(f"format {spec.format!r} is not one of {sorted(NATIVE_BACKENDS)}")
    if spec.instance_kind not in INSTANCE_KINDS:
        problems.append(f"instance kind {spec.instance_kind!r} is not one of {sorted(INSTANCE_KINDS)}")
    if spec.instance_count < 1:
        problems.append("instance count must be at least 1")
    if spec.max_batch_size < 0:
        problems.append("max batch size must be 0 (no batching dimension) or more")
    if spec.threads_per_instance is not None and spec.threads_per_instance < 1:
        problems.append("threads per instance must be at least 1")
    if spec.gpus and spec.instance_kind != "KIND_GPU":
        problems.append("gpus may only be given with KIND_GPU")
    if spec.dynamic_batching is not None:
        if spec.max_batch_size == 0:
            problems.append("dynamic batching needs max batch size > 0")
        if spec.dynamic_batching.max_queue_delay_microseconds < 0:
            problems.append("max queue delay must be >= 0")
        if any(not 0 < size <= spec.max_batch_size for size in spec.dynamic_batching.preferred_batch_sizes):
            problems.append("preferred batch sizes must lie in 1..max batch size")
    return problems


def build_dynamic_batching(
    mode: str,
    *,
    max_queue_delay_microseconds: int | None = None,
    preferred_batch_sizes: tuple[int, ...] = (),
) -> DynamicBatching | None:
    """Map an InferenceTenant ``batching.mode`` (Auto | Disabled | Fixed) to Triton's setting.

    Auto batches what is queued without adding delay (Triton's zero-delay default), so it
    never costs latency; Fixed uses the tenant's delay and preferred sizes as given.
    """
    if mode in {"Disabled", "Off"}:  # the API's wire value is "Disabled" (YAML reads Off as false)
        return None
    if mode == "Auto":
        return DynamicBatching()
    if mode == "Fixed":
        return DynamicBatching(
            max_queue_delay_microseconds=max_queue_delay_microseconds or 0,
            preferred_batch_sizes=tuple(preferred_batch_sizes),
        )
    raise ValueError(f"batching mode {mode!r} is not one of Auto, Disabled, Fixed")


def model_parameters(spec: TritonModelSpec) -> dict[str, str]:
    """The config's ``parameters`` map (sorted by key when rendered).

    A shim gets a custom model file name as the ``model_filename`` parameter, because the
    Python backend's own ``default_model_filename`` names the shim's model.py.
    """
    params: dict[str, str] = {}
    if spec.threads_per_instance is not None:
        for key in THREAD_PARAMETERS[spec.format]:
            params[key] = str(spec.threads_per_instance)
        params.update(_FIXED_PARAMETERS.get(spec.format, ()))
    if spec.backend == SHIM_BACKEND and spec.model_filename:
        params["model_filename"] = spec.model_filename
    params.update(spec.parameters)
    return params


def _default_model_filename(spec: TritonModelSpec) -> str | None:
    if spec.backend == SHIM_BACKEND:
        return None
    return spec.model_filename


def model_config_dict(spec: TritonModelSpec) -> dict[str, object]:
    """The config as Triton's JSON (protobuf JSON mapping), as ``load_model(config=...)`` takes it."""
    config: dict[str, object] = {"name": spec.name, "backend": spec.backend}
    filename = _default_model_filename(spec)
    if filename:
        config["default_model_filename"] = filename
    config["max_batch_size"] = spec.max_batch_size
    group: dict[str, object] = {"count": spec.instance_count, "kind": spec.instance_kind}
    if spec.gpus:
        group["gpus"] = list(spec.gpus)
    config["instance_group"] = [group]
    if spec.dynamic_batching is not None:
        batching: dict[str, object] = {}
        if spec.dynamic_batching.preferred_batch_sizes:
            batching["preferred_batch_size"] = list(spec.dynamic_batching.preferred_batch_sizes)
        if spec.dynamic_batching.max_queue_delay_microseconds:
            batching["max_queue_delay_microseconds"] = spec.dynamic_batching.max_queue_delay_microseconds
        config["dynamic_batching"] = batching
    params = model_parameters(spec)
    if params:
        config["parameters"] = {key: {"string_value": params[key]} for key in sorted(params)}
    return config


def model_config_json(spec: TritonModelSpec) -> str:
    """Deterministic JSON text for Triton's model-control load API."""
    return json.dumps(model_config_dict(spec), sort_keys=True, separators=(",", ":"))


def _quote(value: str) -> str:
    return json.dumps(value)  # protobuf text format accepts JSON-style double-quoted strings


def render_model_config(spec: TritonModelSpec) -> str:
    """config.pbtxt text: deterministic (fixed field order, sorted parameters), ends in a newline."""
    lines = [f"name: {_quote(spec.name)}", f"backend: {_quote(spec.backend)}"]
    filename = _default_model_filename(spec)
    if filename:
        lines.append(f"default_model_filename: {_quote(filename)}")
    lines.append(f"max_batch_size: {spec.max_batch_size}")
    lines.append("instance_group [")
    lines.append("  {")
    lines.append(f"    count: {spec.instance_count}")
    lines.append(f"    kind: {spec.instance_kind}")
    if spec.gpus:
        lines.append(f"    gpus: [ {', '.join(str(gpu) for gpu in spec.gpus)} ]")
    lines.append("  }")
    lines.append("]")
    if spec.dynamic_batching is not None:
        lines.append("dynamic_batching {")
        if spec.dynamic_batching.preferred_batch_sizes:
            sizes = ", ".join(str(size) for size in spec.dynamic_batching.preferred_batch_sizes)
            lines.append(f"  preferred_batch_size: [ {sizes} ]")
        if spec.dynamic_batching.max_queue_delay_microseconds:
            lines.append(
                f"  max_queue_delay_microseconds: {spec.dynamic_batching.max_queue_delay_microseconds}"
            )
        lines.append("}")
    params = model_parameters(spec)
    for key in sorted(params):
        lines.append("parameters {")
        lines.append(f"  key: {_quote(key)}")
        lines.append(f"  value: {{ string_value: {_quote(params[key])} }}")
        lines.append("}")
    return "\n".join(lines) + "\n"


def native_spec_for(spec: TritonModelSpec) -> TritonModelSpec:
    """The same model on its native backend (what the official Triton images run)."""
    return replace(spec, backend=NATIVE_BACKENDS[spec.format])


def shim_spec_for(spec: TritonModelSpec) -> TritonModelSpec:
    """The same model on an edgetenant Python-backend shim (what the bundled Triton runs)."""
    return replace(spec, backend=SHIM_BACKEND)
