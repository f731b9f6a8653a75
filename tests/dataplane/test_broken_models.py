"""Models that cannot load fail with a clear error, and the server keeps serving the others."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from dataplane_support import run_sync, shim_spec
from onnx import TensorProto, helper

from edgetenant.adapters.triton import TritonAdapter, TritonClient
from edgetenant.dataplane import repository
from edgetenant.dataplane.local import TritonProcess
from edgetenant.errors import ModelLoadError
from edgetenant.profiling.loadgen import run_load
from edgetenant.render.triton import TritonModelSpec, model_config_dict

Run = Callable[[Coroutine[Any, Any, Any]], Any]


def _fixed_batch_model(path: Path) -> Path:
    """A valid ONNX model whose batch axis is fixed at 1, so it cannot batch."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "fixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _load_error(triton: TritonProcess, name: str, config: str | None = None) -> str:
    async def load() -> None:
        async with TritonAdapter(triton.url) as admin:
            await admin.load_model(name, config=config)

    with pytest.raises(ModelLoadError) as failure:
        run_sync(load())
    return str(failure.value)


@pytest.fixture(scope="module")
def healthy(serve: Callable[..., TritonModelSpec]) -> TritonModelSpec:
    return serve("healthy-mobilenet", "mobilenet_v1")


def _still_serving(triton: TritonProcess, healthy: TritonModelSpec, run: Run) -> None:
    result = run(run_load(triton.url, healthy.name, concurrency=1, requests=5))
    assert (result.requests, result.errors) == (5, 0)
    ready, why = run(TritonClient().model_ready(triton.url, healthy.name))
    assert ready, why


def test_a_corrupt_model_file_is_refused_with_the_path_and_onnx_runtime_reason(
    triton: TritonProcess, model_repository: Path, healthy: TritonModelSpec, tmp_path: Path, run: Run
) -> None:
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    spec = shim_spec("broken-file")
    repository.write_model(model_repository, spec, garbage)
    message = _load_error(triton, spec.name)
    assert str(model_repository / spec.name / "1" / "model.onnx") in message
    assert "ONNX" in message or "protobuf" in message.lower(), message
    ready, why = run(TritonClient().model_ready(triton.url, spec.name))
    assert not ready
    assert "UNAVAILABLE" in why
    _still_serving(triton, healthy, run)


def test_a_model_that_cannot_batch_is_refused_when_the_config_asks_for_batching(
    triton: TritonProcess, model_repository: Path, healthy: TritonModelSpec, tmp_path: Path
) -> None:
    spec = shim_spec("fixed-batch", max_batch_size=8)
    repository.write_model(model_repository, spec, _fixed_batch_model(tmp_path / "fixed.onnx"))
    message = _load_error(triton, spec.name)
    assert "cannot batch" in message, message
    assert "[1, 4]" in message


def test_an_impossible_input_shape_is_refused_and_names_both_shapes(
    triton: TritonProcess, healthy: TritonModelSpec, run: Run
) -> None:
    config = model_config_dict(replace(healthy, instance_count=2))
    config["input"] = [{"name": "input", "data_type": "TYPE_FP32", "dims": [3, 100, 100]}]
    message = _load_error(triton, healthy.name, json.dumps(config))
    assert "[3, 224, 224]" in message, message
    assert "[3, 100, 100]" in message, message
    # The failed reload leaves the loaded version serving, unchanged.
    _still_serving(triton, healthy, run)


def test_a_missing_model_directory_is_refused(triton: TritonProcess, healthy: TritonModelSpec) -> None:
    message = _load_error(triton, "no-such-model")
    assert "no-such-model" in message
