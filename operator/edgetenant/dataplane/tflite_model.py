"""TensorFlow Lite (with the Coral EdgeTPU delegate when there is one) as a Triton Python-backend model.

Self-contained like ``onnx_model.py``: copied into the model repository as ``model.py`` and run
in Triton's Python-backend stub with ``tflite-runtime`` and numpy<2. Config it reads:

- ``parameters.tflite_num_threads``: CPU threads per instance (the Arm NN TFLite backend's key).
- ``parameters.edgetpu``: ``auto`` (default: use the EdgeTPU when its delegate loads, else run
  on the CPU and say so in one clear log line), ``required`` (fail the load without it) or
  ``off``. ``parameters.edgetpu_device`` picks a device (``usb``, ``pci``, ``:0``...).
- ``parameters.cpu_model_filename``: the CPU variant to run on fallback. An EdgeTPU-compiled
  model holds an ``edgetpu-custom-op`` no CPU can execute, so a fallback needs the plain model.
- ``parameters.model_filename``: the model file (default ``model.tflite``).

Each Triton instance builds its own interpreter (instance count = concurrent executions), says in
one log line whether it runs on the EdgeTPU delegate or the CPU, and publishes the same as the gauge
``edgetenant_shim_device_info`` (``device="EdgeTPU"`` or ``"CPU"``) on Triton's metrics endpoint, as
the OpenVINO shim does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_MODEL_FILENAME = "model.tflite"
EDGETPU_LIBRARY = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}
NUMPY_TO_TRITON = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "int8": "TYPE_INT8",
    "uint8": "TYPE_UINT8",
    "int16": "TYPE_INT16",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "bool": "TYPE_BOOL",
}


DEVICE_METRIC = "edgetenant_shim_device_info"


def publish_device_info(pb_utils: Any, labels: dict[str, str]) -> tuple[Any, str | None]:
    """A gauge (1 per instance) saying what the instance runs on: (handle to keep, why not)."""
    try:
        family = pb_utils.MetricFamily(
            name=DEVICE_METRIC,
            description="The device an edgetenant shim instance runs on (1 per instance)",
            kind=pb_utils.MetricFamily.GAUGE,
        )
        metric = family.Metric(labels=labels)
        metric.set(1)
    except Exception as exc:  # Triton < 2.32 has no custom metrics; metrics may be off
        return None, str(exc)
    return (family, metric), None


@dataclass(frozen=True)
class DelegateChoice:
    """What the shim runs on, and the one line it logs about it."""

    delegates: list[Any]
    on_edgetpu: bool
    message: str


def choose_delegate(
    mode: str, device: str | None, load_delegate: Callable[[str, dict[str, str]], Any] | None, *, system: str
) -> DelegateChoice:
    """Pick the EdgeTPU delegate or the CPU. Raises RuntimeError when ``mode`` is ``required``
    and no EdgeTPU can be used. ``load_delegate`` is tflite_runtime's (None if it is missing)."""
    if mode not in {"auto", "required", "off"}:
        raise RuntimeError(f"parameter edgetpu={mode!r}: expected auto, required or off")
    if mode == "off":
        return DelegateChoice([], False, "EdgeTPU disabled by parameter edgetpu=off: running on CPU")
    library = EDGETPU_LIBRARY.get(system, EDGETPU_LIBRARY["Linux"])
    options = {"device": device} if device else {}
    reason: str
    if load_delegate is None:
        reason = "tflite_runtime has no load_delegate"
    else:
        try:
            delegate = load_delegate(library, options)
        except (ValueError, OSError, RuntimeError) as exc:
            reason = f"{library} did not load ({exc})"
        else:
            where = device or "first device"
            return DelegateChoice([delegate], True, f"EdgeTPU delegate {library} loaded ({where})")
    if mode == "required":
        raise RuntimeError(f"EdgeTPU required (parameter edgetpu=required) but {reason}")
    return DelegateChoice([], False, f"EdgeTPU not available: {reason}; falling back to CPU")


def _parameter(config: dict[str, Any], key: str) -> str | None:
    entry = config.get("parameters", {}).get(key)
    if entry is None:
        return None
    value = entry.get("string_value") if isinstance(entry, dict) else entry
    return None if value is None else str(value)


def _dims(detail: dict[str, Any]) -> list[int]:
    signature = detail.get("shape_signature")
    shape = signature if signature is not None and len(signature) else detail["shape"]
    return [int(d) for d in shape]


class TritonPythonModel:
    """One instance = one TFLite interpreter."""

    @staticmethod
    def auto_complete_config(auto_complete_model_config: Any) -> Any:
        import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]  # noqa: PLC0415
        from tflite_runtime.interpreter import Interpreter  # type: ignore[import-not-found]  # noqa: PLC0415

        config = auto_complete_model_config.as_dict()
        version_dir = Path(__file__).resolve().parent
        # The CPU variant, if any, describes the same tensors and needs no EdgeTPU to read.
        name = _parameter(config, "cpu_model_filename") or _parameter(config, "model_filename")
        path = version_dir / (name or DEFAULT_MODEL_FILENAME)
        try:
            interpreter = Interpreter(model_path=str(path))
        except Exception as exc:
            raise pb_utils.TritonModelException(f"edgetenant tflite shim: cannot read {path}: {exc}") from exc
        batching = int(config.get("max_batch_size", 0)) > 0
        for kind, details in (
            ("input", interpreter.get_input_details()),
            ("output", interpreter.get_output_details()),
        ):
            for detail in details:
                dims = _dims(detail)
                if batching:
                    dims = dims[1:]  # the leading axis is the batch: resized per request
                entry = {
                    "name": detail["name"],
                    "data_type": NUMPY_TO_TRITON.get(np.dtype(detail["dtype"]).name, "TYPE_INVALID"),
                    "dims": dims,
                }
                if kind == "input":
                    auto_complete_model_config.add_input(entry)
                else:
                    auto_complete_model_config.add_output(entry)
        return auto_complete_model_config

    def initialize(self, args: dict[str, str]) -> None:
        import platform  # noqa: PLC0415

        import tflite_runtime  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415
        import triton_python_backend_utils as pb_utils  # noqa: PLC0415  (only inside Triton)
        from tflite_runtime import interpreter as tflite  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415

        self.pb_utils = pb_utils
        self.config = json.loads(args["model_config"])
        self.name = args["model_name"]
        version_dir = Path(args["model_repository"]) / args["model_version"]
        model_path = version_dir / (_parameter(self.config, "model_filename") or DEFAULT_MODEL_FILENAME)
        threads = int(_parameter(self.config, "tflite_num_threads") or 0) or None
        try:
            choice = choose_delegate(
                _parameter(self.config, "edgetpu") or "auto",
                _parameter(self.config, "edgetpu_device"),
                getattr(tflite, "load_delegate", None),
                system=platform.system(),
            )
        except RuntimeError as exc:
            raise pb_utils.TritonModelException(f"edgetenant tflite shim: {self.name}: {exc}") from exc
        if not choice.on_edgetpu and _parameter(self.config, "cpu_model_filename"):
            model_path = version_dir / str(_parameter(self.config, "cpu_model_filename"))
        log = pb_utils.Logger.log_info if choice.on_edgetpu else pb_utils.Logger.log_warn
        log(f"edgetenant tflite shim: {self.name}: {choice.message}; model {model_path}, pid {os.getpid()}")
        if not model_path.is_file():
            raise pb_utils.TritonModelException(
                f"edgetenant tflite shim: model file {model_path} does not exist"
            )
        try:
            self.interpreter = tflite.Interpreter(
                model_path=str(model_path), experimental_delegates=choice.delegates, num_threads=threads
            )
            self.interpreter.allocate_tensors()
        except Exception as exc:
            hint = ""
            if "edgetpu-custom-op" in str(exc):
                hint = " (an EdgeTPU-compiled model cannot run on CPU: set parameter cpu_model_filename)"
            raise pb_utils.TritonModelException(
                f"edgetenant tflite shim: TFLite cannot load {model_path}: {exc}{hint}"
            ) from exc
        self.inputs = self.interpreter.get_input_details()
        self.outputs = self.interpreter.get_output_details()
        self.batching = int(self.config.get("max_batch_size", 0)) > 0
        self.device_metric, metric_problem = publish_device_info(
            pb_utils,
            {
                "model": self.name,
                "version": args["model_version"],
                "instance": args.get("model_instance_name", ""),
                "runtime": f"tflite-runtime {getattr(tflite_runtime, '__version__', '?')}",
                "requested": _parameter(self.config, "edgetpu") or "auto",
                "device": "EdgeTPU" if choice.on_edgetpu else "CPU",
            },
        )
        if metric_problem:
            pb_utils.Logger.log_warn(
                f"edgetenant tflite shim: {self.name}: no device metric: {metric_problem}"
            )

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        for detail in self.inputs:
            value = feeds[detail["name"]]
            if list(value.shape) != list(detail["shape"]):
                self.interpreter.resize_tensor_input(detail["index"], list(value.shape))
                self.interpreter.allocate_tensors()
                self.inputs = self.interpreter.get_input_details()
                self.outputs = self.interpreter.get_output_details()
        for detail in self.inputs:
            self.interpreter.set_tensor(detail["index"], feeds[detail["name"]])
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(detail["index"]) for detail in self.outputs]

    def execute(self, requests: list[Any]) -> list[Any]:
        pb_utils = self.pb_utils
        responses = []
        for request in requests:
            try:
                feeds = {
                    detail["name"]: pb_utils.get_input_tensor_by_name(request, detail["name"]).as_numpy()
                    for detail in self.inputs
                }
                outputs = self._run(feeds)
                tensors = [
                    pb_utils.Tensor(detail["name"], np.ascontiguousarray(value))
                    for detail, value in zip(self.outputs, outputs, strict=True)
                ]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            except Exception as exc:
                error = pb_utils.TritonError(f"edgetenant tflite shim: {self.name}: {exc}")
                responses.append(pb_utils.InferenceResponse(error=error))
        return responses

    def finalize(self) -> None:
        self.interpreter = None
        self.device_metric = None
