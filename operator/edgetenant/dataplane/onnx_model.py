"""ONNX Runtime as a Triton Python-backend model: the shim for Triton builds without a native
``onnxruntime`` backend (such as the tritonserver in the nvidia-pytriton wheel).

Self-contained on purpose: it is copied into a model repository as
``<model>/<version>/model.py`` and runs inside Triton's Python-backend stub, in the
data-plane environment (numpy<2, onnxruntime), where the edgetenant package is not
installed. It reads the same config as the native onnxruntime backend:

- ``instance_group.count``: Triton starts one stub process per instance; each builds its own
  ORT session in ``initialize``.
- ``parameters.intra_op_thread_count`` / ``inter_op_thread_count``: ORT threads per instance
  (absent or 0 = ORT's default, all cores).
- ``max_batch_size > 0`` with ``dynamic_batching``: Triton hands ``execute`` several requests;
  they are concatenated along the batch axis, run once, and split back.
- ``KIND_GPU`` instances use ORT's CUDA provider on the instance's device (onnxruntime-gpu);
  ``parameters.execution_provider: cuda`` forces it for any instance kind.
- Inputs and outputs may be left out of the config: ``auto_complete_config`` reads them from
  the ONNX file, as the native backend's auto-complete does.
- The ONNX file is ``model.onnx`` beside this file, or ``parameters.model_filename``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]

DEFAULT_MODEL_FILENAME = "model.onnx"

# ONNX Runtime type strings -> Triton data types.
ORT_TO_TRITON = {
    "tensor(float)": "TYPE_FP32",
    "tensor(float16)": "TYPE_FP16",
    "tensor(double)": "TYPE_FP64",
    "tensor(bfloat16)": "TYPE_BF16",
    "tensor(int8)": "TYPE_INT8",
    "tensor(int16)": "TYPE_INT16",
    "tensor(int32)": "TYPE_INT32",
    "tensor(int64)": "TYPE_INT64",
    "tensor(uint8)": "TYPE_UINT8",
    "tensor(uint16)": "TYPE_UINT16",
    "tensor(uint32)": "TYPE_UINT32",
    "tensor(uint64)": "TYPE_UINT64",
    "tensor(bool)": "TYPE_BOOL",
    "tensor(string)": "TYPE_STRING",
}


def _parameter(config: dict[str, Any], key: str) -> str | None:
    entry = config.get("parameters", {}).get(key)
    if entry is None:
        return None
    value = entry.get("string_value") if isinstance(entry, dict) else entry
    return None if value is None else str(value)


def _model_path(config: dict[str, Any], version_dir: Path) -> Path:
    return version_dir / (_parameter(config, "model_filename") or DEFAULT_MODEL_FILENAME)


def _dims(shape: list[Any]) -> list[int]:
    # Symbolic or unknown dimensions are variable (-1) for Triton.
    return [dim if isinstance(dim, int) and dim >= 0 else -1 for dim in shape]


def _describe(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


class TritonPythonModel:
    """One instance = one ORT session."""

    @staticmethod
    def auto_complete_config(auto_complete_model_config: Any) -> Any:
        config = auto_complete_model_config.as_dict()
        # NB: auto-complete gets no paths; this file sits in <repo>/<model>/<version>/.
        path = _model_path(config, Path(__file__).resolve().parent)
        try:
            session = _describe(path)
        except Exception as exc:
            raise pb_utils.TritonModelException(
                f"edgetenant onnx shim: cannot read ONNX model {path}: {exc}"
            ) from exc
        batching = int(config.get("max_batch_size", 0)) > 0
        for kind, tensors in (("input", session.get_inputs()), ("output", session.get_outputs())):
            for tensor in tensors:
                dims = _dims(list(tensor.shape))
                if batching:
                    if not dims or dims[0] != -1:
                        raise pb_utils.TritonModelException(
                            f"edgetenant onnx shim: {path}: {kind} {tensor.name!r} has shape {dims}, whose "
                            "first dimension is not variable, so the model cannot batch; set max_batch_size 0"
                        )
                    dims = dims[1:]
                entry = {
                    "name": tensor.name,
                    "data_type": ORT_TO_TRITON.get(tensor.type, "TYPE_INVALID"),
                    "dims": dims,
                }
                if kind == "input":
                    auto_complete_model_config.add_input(entry)
                else:
                    auto_complete_model_config.add_output(entry)
        return auto_complete_model_config

    def initialize(self, args: dict[str, str]) -> None:
        self.config = json.loads(args["model_config"])
        self.name = args["model_name"]
        version_dir = Path(args["model_repository"]) / args["model_version"]
        path = _model_path(self.config, version_dir)
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(_parameter(self.config, "intra_op_thread_count") or 0)
        options.inter_op_num_threads = int(_parameter(self.config, "inter_op_thread_count") or 0)
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers: list[Any] = ["CPUExecutionProvider"]
        # KIND_GPU instances run on their own GPU; `execution_provider: cuda` forces CUDA (device
        # 0) for Triton builds that only offer KIND_CPU instances to the Python backend.
        forced = (_parameter(self.config, "execution_provider") or "").lower()
        if args.get("model_instance_kind") == "GPU" or forced == "cuda":
            device = int(args.get("model_instance_device_id", "0") or 0)
            providers = [("CUDAExecutionProvider", {"device_id": device}), "CPUExecutionProvider"]
        if not path.is_file():
            raise pb_utils.TritonModelException(f"edgetenant onnx shim: model file {path} does not exist")
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:
            raise pb_utils.TritonModelException(
                f"edgetenant onnx shim: ONNX Runtime cannot load {path}: {exc}"
            ) from exc
        self.input_names = [tensor.name for tensor in self.session.get_inputs()]
        self.output_names = [tensor.name for tensor in self.session.get_outputs()]
        self.batching = int(self.config.get("max_batch_size", 0)) > 0
        if (
            providers[0] != "CPUExecutionProvider"
            and self.session.get_providers()[0] != "CUDAExecutionProvider"
        ):
            raise pb_utils.TritonModelException(
                f"edgetenant onnx shim: {self.name}: CUDA was asked for but ONNX Runtime offers "
                f"{self.session.get_providers()} (install onnxruntime-gpu and the CUDA libraries)"
            )
        pb_utils.Logger.log_info(
            f"edgetenant onnx shim: {self.name} instance {args.get('model_instance_name')} loaded {path} "
            f"(providers {self.session.get_providers()}, intra-op threads "
            f"{options.intra_op_num_threads or 'default'}, pid {os.getpid()})"
        )

    def _inputs(self, request: Any) -> dict[str, np.ndarray]:
        return {
            name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.input_names
        }

    def _respond(self, outputs: list[np.ndarray], start: int, stop: int | None) -> Any:
        tensors = [
            pb_utils.Tensor(name, np.ascontiguousarray(value[start:stop] if stop is not None else value))
            for name, value in zip(self.output_names, outputs, strict=True)
        ]
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def execute(self, requests: list[Any]) -> list[Any]:
        try:
            feeds = [self._inputs(request) for request in requests]
        except Exception as exc:
            return [
                pb_utils.InferenceResponse(error=pb_utils.TritonError(f"bad input: {exc}")) for _ in requests
            ]
        if self.batching and len(requests) > 1:
            sizes = [len(feed[self.input_names[0]]) for feed in feeds]
            joined = {name: np.concatenate([feed[name] for feed in feeds]) for name in self.input_names}
            try:
                outputs = self.session.run(self.output_names, joined)
            except Exception as exc:
                error = pb_utils.TritonError(f"edgetenant onnx shim: {self.name}: {exc}")
                return [pb_utils.InferenceResponse(error=error) for _ in requests]
            responses = []
            start = 0
            for size in sizes:
                responses.append(self._respond(outputs, start, start + size))
                start += size
            return responses
        responses = []
        for feed in feeds:
            try:
                responses.append(self._respond(self.session.run(self.output_names, feed), 0, None))
            except Exception as exc:
                error = pb_utils.TritonError(f"edgetenant onnx shim: {self.name}: {exc}")
                responses.append(pb_utils.InferenceResponse(error=error))
        return responses

    def finalize(self) -> None:
        self.session = None
