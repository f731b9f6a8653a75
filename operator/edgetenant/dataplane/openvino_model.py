"""OpenVINO as a Triton Python-backend model: the shim for the Intel NCS2 and for OpenVINO on CPUs.

Self-contained like ``onnx_model.py``: copied into the model repository as ``model.py`` and run
in Triton's Python-backend stub with ``openvino`` and numpy<2, where edgetenant is not installed.
Runs on every OpenVINO since 2022.3 LTS (``openvino.runtime.Core`` there, ``openvino.Core`` now):

- 2022.3 LTS is the last release with the MYRIAD plugin, which drives the NCS2; its PyPI wheels
  carry only CPU and GPU, the MYRIAD plugin comes with Intel's archive and Docker images
  (``images/tritonserver-openvino2022.3``).
- 2023.0 and later drive CPU, Intel GPU and (2024+) NPU, not MYRIAD. The lab runs the current
  release on the CPU device as the stand-in for the stick.

Config it reads (the native ``openvino`` backend's names where it has them):

- ``parameters.openvino_device``: the OpenVINO device: ``CPU`` (default), ``MYRIAD`` (NCS2),
  ``GPU``, ``NPU``, or OpenVINO's own fallback such as ``AUTO:MYRIAD,CPU``. A device that is not
  there fails the load, naming the devices OpenVINO sees.
- ``parameters.INFERENCE_NUM_THREADS``: threads per instance (the native backend's key). Every
  UPPER_CASE parameter (``NUM_STREAMS``, ``PERFORMANCE_HINT``, ``INFERENCE_PRECISION_HINT``, ...)
  is an OpenVINO property: passed to ``compile_model`` when the device supports it, logged as
  ignored when it does not (MYRIAD has no thread count).
- Threads are not pinned to cores (``ENABLE_CPU_PINNING: False``, ``CPU_BIND_THREAD: NO`` on
  2022.3) unless the config sets one of them: every instance is a process of its own, and pinned
  they would all start on core 0 (``UNPINNED``).
- ``max_batch_size > 0`` with dynamic batching: the requests Triton hands over are concatenated,
  run once and split back. Devices without dynamic shapes (MYRIAD, HDDL; or any with
  ``parameters.openvino_static_batch: true``) get the batch axis fixed at 1 and run a batch item
  by item.
- ``parameters.model_filename``: the model (default ``model.xml``, its weights the ``.bin`` of the
  same name beside it; OpenVINO reads ``.onnx`` too).

Each instance publishes the device it really runs on as the gauge ``edgetenant_shim_device_info``
on Triton's metrics endpoint and says it in one log line.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_MODEL_FILENAME = "model.xml"
DEFAULT_DEVICE = "CPU"
# 2022.3's VPU plugins compile static shapes only.
STATIC_SHAPE_DEVICES = frozenset({"MYRIAD", "HDDL"})
# OpenVINO element type names -> Triton data types.
OPENVINO_TO_TRITON = {
    "f32": "TYPE_FP32",
    "f16": "TYPE_FP16",
    "f64": "TYPE_FP64",
    "bf16": "TYPE_BF16",
    "i8": "TYPE_INT8",
    "i16": "TYPE_INT16",
    "i32": "TYPE_INT32",
    "i64": "TYPE_INT64",
    "u8": "TYPE_UINT8",
    "u16": "TYPE_UINT16",
    "u32": "TYPE_UINT32",
    "u64": "TYPE_UINT64",
    "boolean": "TYPE_BOOL",
}
DEVICE_METRIC = "edgetenant_shim_device_info"
# Triton runs each instance in a stub process of its own, and OpenVINO's CPU plugin pins its threads
# from core 0 in every process, so N instances of one thread each shared core 0 (MobileNet V2, 2
# instances on 2 cores: 69 + 70/s pinned, 156 + 161/s not). The first of these the device supports
# (2023.0+, then 2022.3's name) is set to "off" unless the config sets either.
UNPINNED: tuple[tuple[str, str], ...] = (("ENABLE_CPU_PINNING", "False"), ("CPU_BIND_THREAD", "NO"))


def _parameter(config: dict[str, Any], key: str) -> str | None:
    entry = config.get("parameters", {}).get(key)
    if entry is None:
        return None
    value = entry.get("string_value") if isinstance(entry, dict) else entry
    return None if value is None else str(value)


def _openvino() -> Any:
    """The OpenVINO runtime module (``openvino`` since 2023.1, ``openvino.runtime`` in 2022.3).

    NB: since 2023 ``import openvino`` sends a usage event to Google Analytics (``openvino-telemetry``,
    on unless a consent file says no). A served model must not phone home, so the telemetry module is
    blocked before the import; OpenVINO then falls back to its own no-op stub.
    """
    sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
    import openvino  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415

    if hasattr(openvino, "Core"):
        return openvino
    from openvino import runtime  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415

    return runtime


def _core() -> Any:
    return _openvino().Core()


def openvino_version() -> str:
    return str(_openvino().get_version()).split("-")[0]


def base_device(device: str) -> str:
    """``MYRIAD.1.2-ma2480`` -> ``MYRIAD``; ``AUTO:MYRIAD,CPU`` -> ``AUTO``."""
    return device.split(":", maxsplit=1)[0].split(".", maxsplit=1)[0].upper()


def compile_properties(
    config: dict[str, Any], supported: Iterable[str]
) -> tuple[dict[str, str], dict[str, str]]:
    """The config's UPPER_CASE parameters split into (passed to OpenVINO, ignored by this device)."""
    supported = set(supported)
    wanted = {
        key: str(_parameter(config, key))
        for key in config.get("parameters", {})
        if key.isupper() and _parameter(config, key) not in (None, "")
    }
    used = {key: value for key, value in wanted.items() if key in supported}
    return used, {key: value for key, value in wanted.items() if key not in supported}


def without_pinning(properties: dict[str, str], supported: Iterable[str]) -> dict[str, str]:
    """``properties`` plus the device's way to leave threads unpinned, unless they already choose."""
    if any(key in properties for key, _ in UNPINNED):
        return properties
    supported = set(supported)
    return next(({**properties, key: off} for key, off in UNPINNED if key in supported), properties)


def triton_dims(shape: Iterable[Any]) -> list[int]:
    """OpenVINO partial-shape dimensions to Triton dims (dynamic = -1)."""
    return [-1 if dim.is_dynamic else int(dim.get_length()) for dim in shape]


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


class OpenVinoModel:
    """The model compiled for one device: read, reshape if the device needs it, compile, run."""

    def __init__(self, path: Path, config: dict[str, Any]) -> None:
        self.device = _parameter(config, "openvino_device") or DEFAULT_DEVICE
        core = _core()
        available = list(core.available_devices)
        model = core.read_model(str(path))
        self.batching = int(config.get("max_batch_size", 0)) > 0
        forced = (_parameter(config, "openvino_static_batch") or "").lower() in {"1", "true", "yes"}
        self.static_batch = self.batching and (forced or base_device(self.device) in STATIC_SHAPE_DEVICES)
        if self.static_batch:
            model.reshape({port.get_any_name(): _batch_of_one(port) for port in model.inputs})
        try:
            supported = core.get_property(base_device(self.device), "SUPPORTED_PROPERTIES")
        except Exception as exc:
            raise RuntimeError(
                f"OpenVINO device {self.device!r} is not available (OpenVINO {openvino_version()} sees "
                f"{available}): {exc}"
            ) from exc
        used, self.ignored = compile_properties(config, supported)
        self.properties = without_pinning(used, supported)
        self.compiled = core.compile_model(model, self.device, self.properties)
        self.request = self.compiled.create_infer_request()
        self.input_names = [port.get_any_name() for port in self.compiled.inputs]
        self.output_names = [port.get_any_name() for port in self.compiled.outputs]
        try:
            self.execution_devices = [str(d) for d in self.compiled.get_property("EXECUTION_DEVICES")]
        except Exception:  # 2022.3 CPU/MYRIAD do not report it: the device named is the one used
            self.execution_devices = [self.device]

    def _infer(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.request.infer(feeds)
        return [np.array(self.request.get_output_tensor(i).data) for i in range(len(self.output_names))]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if not self.static_batch:
            return self._infer(feeds)
        size = len(next(iter(feeds.values())))
        items = [self._infer({name: value[i : i + 1] for name, value in feeds.items()}) for i in range(size)]
        return [np.concatenate(parts) for parts in zip(*items, strict=True)]


def _batch_of_one(port: Any) -> list[int]:
    dims = triton_dims(port.get_partial_shape())
    if any(dim < 0 for dim in dims[1:]):
        raise RuntimeError(
            f"input {port.get_any_name()!r} has shape {dims}: only the batch axis may be dynamic "
            "on a device without dynamic shapes"
        )
    return [1, *dims[1:]]


class TritonPythonModel:
    """One instance = one compiled model and infer request."""

    @staticmethod
    def auto_complete_config(auto_complete_model_config: Any) -> Any:
        import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]  # noqa: PLC0415

        config = auto_complete_model_config.as_dict()
        # NB: auto-complete gets no paths; this file sits in <repo>/<model>/<version>/.
        path = Path(__file__).resolve().parent / (
            _parameter(config, "model_filename") or DEFAULT_MODEL_FILENAME
        )
        try:
            model = _core().read_model(str(path))
        except Exception as exc:
            raise pb_utils.TritonModelException(
                f"edgetenant openvino shim: cannot read OpenVINO model {path} (and its .bin): {exc}"
            ) from exc
        batching = int(config.get("max_batch_size", 0)) > 0
        for kind, ports in (("input", model.inputs), ("output", model.outputs)):
            for port in ports:
                dims = triton_dims(port.get_partial_shape())
                if batching:
                    if not dims or dims[0] != -1:
                        raise pb_utils.TritonModelException(
                            f"edgetenant openvino shim: {path}: {kind} {port.get_any_name()!r} has shape "
                            f"{dims}, whose first dimension is not variable, so the model cannot batch; "
                            "set max_batch_size 0"
                        )
                    dims = dims[1:]
                entry = {
                    "name": port.get_any_name(),
                    "data_type": OPENVINO_TO_TRITON.get(
                        port.get_element_type().get_type_name(), "TYPE_INVALID"
                    ),
                    "dims": dims,
                }
                if kind == "input":
                    auto_complete_model_config.add_input(entry)
                else:
                    auto_complete_model_config.add_output(entry)
        return auto_complete_model_config

    def initialize(self, args: dict[str, str]) -> None:
        import triton_python_backend_utils as pb_utils  # noqa: PLC0415  (only inside Triton)

        self.pb_utils = pb_utils
        self.config = json.loads(args["model_config"])
        self.name = args["model_name"]
        version_dir = Path(args["model_repository"]) / args["model_version"]
        path = version_dir / (_parameter(self.config, "model_filename") or DEFAULT_MODEL_FILENAME)
        if not path.is_file():
            raise pb_utils.TritonModelException(f"edgetenant openvino shim: model file {path} does not exist")
        try:
            self.model = OpenVinoModel(path, self.config)
        except Exception as exc:
            raise pb_utils.TritonModelException(
                f"edgetenant openvino shim: {self.name}: OpenVINO cannot load {path}: {exc}"
            ) from exc
        runs_on = ",".join(self.model.execution_devices)
        self.device_metric, metric_problem = publish_device_info(
            pb_utils,
            {
                "model": self.name,
                "version": args["model_version"],
                "instance": args.get("model_instance_name", ""),
                "runtime": f"openvino {openvino_version()}",
                "requested": self.model.device,
                "device": runs_on,
            },
        )
        ignored = (
            f"; ignored (not supported by {self.model.device}): {self.model.ignored}"
            if self.model.ignored
            else ""
        )
        pb_utils.Logger.log_info(
            f"edgetenant openvino shim: {self.name} instance {args.get('model_instance_name')} runs on "
            f"{runs_on} (OpenVINO {openvino_version()}, device {self.model.device!r}, properties "
            f"{self.model.properties}{ignored}{', batch item by item' if self.model.static_batch else ''}; "
            f"model {path}, pid {os.getpid()})"
            + (f"; no device metric: {metric_problem}" if metric_problem else "")
        )

    def execute(self, requests: list[Any]) -> list[Any]:
        pb_utils = self.pb_utils
        try:
            feeds = [
                {
                    name: pb_utils.get_input_tensor_by_name(r, name).as_numpy()
                    for name in self.model.input_names
                }
                for r in requests
            ]
        except Exception as exc:
            return [
                pb_utils.InferenceResponse(error=pb_utils.TritonError(f"bad input: {exc}")) for _ in requests
            ]
        groups = [feeds]
        if not (self.model.batching and len(requests) > 1):
            groups = [[feed] for feed in feeds]
        responses = []
        for group in groups:
            names = self.model.input_names
            joined = (
                group[0] if len(group) == 1 else {n: np.concatenate([f[n] for f in group]) for n in names}
            )
            try:
                outputs = self.model.run(joined)
            except Exception as exc:
                error = pb_utils.TritonError(f"edgetenant openvino shim: {self.name}: {exc}")
                responses += [pb_utils.InferenceResponse(error=error) for _ in group]
                continue
            start = 0
            for feed in group:
                stop = start + len(feed[names[0]]) if len(group) > 1 else None
                tensors = [
                    pb_utils.Tensor(name, np.ascontiguousarray(value[start:stop]))
                    for name, value in zip(self.model.output_names, outputs, strict=True)
                ]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
                start = stop or 0
        return responses

    def finalize(self) -> None:
        self.model = None  # type: ignore[assignment]
        self.device_metric = None
