"""The EdgeTPU/TFLite shim: a real TFLite model served by Triton, falling back to CPU here (no EdgeTPU)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
import pytest
import tritonclient.http.aio as triton_http
from dataplane_support import run_sync, shim_spec

from edgetenant.adapters.triton import TritonAdapter
from edgetenant.dataplane import repository
from edgetenant.dataplane.local import TritonProcess
from edgetenant.dataplane.tflite_model import DelegateChoice, choose_delegate
from edgetenant.errors import ModelLoadError

Run = Callable[[Coroutine[Any, Any, Any]], Any]
RELU = 19  # tflite BuiltinOperator.RELU


def _int_vector(builder: flatbuffers.Builder, values: list[int]) -> int:
    builder.StartVector(4, len(values), 4)
    for value in reversed(values):
        builder.PrependInt32(value)
    return int(builder.EndVector())


def _table_vector(builder: flatbuffers.Builder, offsets: list[int]) -> int:
    builder.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        builder.PrependUOffsetTRelative(offset)
    return int(builder.EndVector())


def relu_tflite(width: int = 4) -> bytes:
    """A one-op TFLite model, y = relu(x), x: [batch, width] float32, written with the schema's field ids."""
    b = flatbuffers.Builder(1024)
    tensors = []
    for index, name in enumerate(["x", "y"]):
        name_offset = b.CreateString(name)
        shape = _int_vector(b, [1, width])
        signature = _int_vector(b, [-1, width])
        b.StartObject(8)  # Tensor
        b.PrependUOffsetTRelativeSlot(0, shape, 0)
        b.PrependInt8Slot(1, 0, 0)  # FLOAT32
        b.PrependUint32Slot(2, index + 1, 0)  # its own (empty) buffer
        b.PrependUOffsetTRelativeSlot(3, name_offset, 0)
        b.PrependUOffsetTRelativeSlot(7, signature, 0)
        tensors.append(b.EndObject())
    op_inputs, op_outputs = _int_vector(b, [0]), _int_vector(b, [1])
    b.StartObject(3)  # Operator
    b.PrependUint32Slot(0, 0, 0)
    b.PrependUOffsetTRelativeSlot(1, op_inputs, 0)
    b.PrependUOffsetTRelativeSlot(2, op_outputs, 0)
    operator = b.EndObject()
    tensor_vector = _table_vector(b, tensors)
    graph_inputs, graph_outputs = _int_vector(b, [0]), _int_vector(b, [1])
    operators = _table_vector(b, [operator])
    graph_name = b.CreateString("main")
    b.StartObject(5)  # SubGraph
    b.PrependUOffsetTRelativeSlot(0, tensor_vector, 0)
    b.PrependUOffsetTRelativeSlot(1, graph_inputs, 0)
    b.PrependUOffsetTRelativeSlot(2, graph_outputs, 0)
    b.PrependUOffsetTRelativeSlot(3, operators, 0)
    b.PrependUOffsetTRelativeSlot(4, graph_name, 0)
    subgraph = b.EndObject()
    b.StartObject(4)  # OperatorCode
    b.PrependInt8Slot(0, RELU, 0)
    b.PrependInt32Slot(2, 1, 1)
    b.PrependInt32Slot(3, RELU, 0)
    opcode = b.EndObject()
    buffers = []
    for _ in range(3):  # buffer 0 is the conventional empty sentinel
        b.StartObject(1)
        buffers.append(b.EndObject())
    opcodes, subgraphs, buffer_vector = (
        _table_vector(b, [opcode]),
        _table_vector(b, [subgraph]),
        _table_vector(b, buffers),
    )
    description = b.CreateString("edgetenant test relu")
    b.StartObject(5)  # Model
    b.PrependUint32Slot(0, 3, 0)
    b.PrependUOffsetTRelativeSlot(1, opcodes, 0)
    b.PrependUOffsetTRelativeSlot(2, subgraphs, 0)
    b.PrependUOffsetTRelativeSlot(3, description, 0)
    b.PrependUOffsetTRelativeSlot(4, buffer_vector, 0)
    model = b.EndObject()
    b.Finish(model, file_identifier=b"TFL3")
    return bytes(b.Output())


# -- the delegate choice, as a plain function --------------------------------------------------


def _missing(library: str, options: dict[str, str]) -> Any:
    raise ValueError(f"Failed to load delegate from {library}")


def test_auto_falls_back_to_cpu_and_says_why() -> None:
    choice = choose_delegate("auto", None, _missing, system="Linux")
    assert choice == DelegateChoice(
        [], False, "EdgeTPU not available: libedgetpu.so.1 did not load "
        "(Failed to load delegate from libedgetpu.so.1); falling back to CPU",
    )  # fmt: skip


def test_required_refuses_without_the_device() -> None:
    with pytest.raises(RuntimeError, match=r"EdgeTPU required .* libedgetpu.so.1 did not load"):
        choose_delegate("required", None, _missing, system="Linux")


def test_a_loadable_delegate_is_used_with_the_device_option() -> None:
    loaded: list[tuple[str, dict[str, str]]] = []

    def load(library: str, options: dict[str, str]) -> str:
        loaded.append((library, options))
        return "delegate"

    choice = choose_delegate("auto", "usb", load, system="Linux")
    assert (choice.delegates, choice.on_edgetpu) == (["delegate"], True)
    assert loaded == [("libedgetpu.so.1", {"device": "usb"})]
    assert choose_delegate("off", None, load, system="Linux").delegates == []


# -- the shim in a real Triton ------------------------------------------------------------------


def test_tflite_model_serves_on_cpu_when_there_is_no_edgetpu(
    triton: TritonProcess, model_repository: Path, tmp_path: Path, run: Run
) -> None:
    source = tmp_path / "relu.tflite"
    source.write_bytes(relu_tflite())
    spec = shim_spec("tflite-relu", format="tflite", max_batch_size=4, threads_per_instance=1)
    repository.write_model(model_repository, spec, source)
    x = np.array([[-1.0, 2.0, -3.0, 4.0], [0.5, -0.5, 1.5, -1.5], [1, 1, -1, -1]], dtype=np.float32)

    async def scenario() -> tuple[np.ndarray, dict[str, Any]]:
        async with TritonAdapter(triton.url) as admin:
            await admin.load_model(spec.name)
            config = await admin.model_config(spec.name)
            async with triton_http.InferenceServerClient(triton.http_endpoint) as client:
                request = triton_http.InferInput("x", list(x.shape), "FP32")
                request.set_data_from_numpy(x)
                response = await client.infer(spec.name, [request])
            await admin.unload_model(spec.name)
            return response.as_numpy("y"), config

    y, config = run(scenario())
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    assert [(t["name"], t["dims"]) for t in config["input"]] == [("x", [4])]
    log = triton.process.log_tail(200_000)
    assert "tflite-relu: EdgeTPU not available: libedgetpu.so.1 did not load" in log
    assert "falling back to CPU" in log


def test_edgetpu_required_fails_the_load_clearly(
    triton: TritonProcess, model_repository: Path, tmp_path: Path
) -> None:
    source = tmp_path / "relu.tflite"
    source.write_bytes(relu_tflite())
    spec = shim_spec(
        "tflite-needs-tpu", format="tflite", max_batch_size=0, parameters=(("edgetpu", "required"),)
    )
    repository.write_model(model_repository, spec, source)

    async def load() -> None:
        async with TritonAdapter(triton.url) as admin:
            await admin.load_model(spec.name)

    with pytest.raises(ModelLoadError, match="EdgeTPU required") as failure:
        run_sync(load())
    assert "tflite-needs-tpu" in str(failure.value)
