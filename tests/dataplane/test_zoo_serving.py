"""Every zoo model loads in a real Triton through a rendered config and answers correctly."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http.aio as triton_http

from edgetenant import zoo
from edgetenant.adapters.triton import TritonAdapter
from edgetenant.dataplane.local import TritonProcess
from edgetenant.render.triton import TritonModelSpec

Run = Callable[[Coroutine[Any, Any, Any]], Any]


@pytest.mark.parametrize("zoo_model", sorted(zoo.ZOO))
def test_zoo_model_serves_the_same_logits_as_onnx_runtime(
    zoo_model: str,
    serve: Callable[..., TritonModelSpec],
    triton: TritonProcess,
    zoo_models: dict[str, Path],
    run: Run,
) -> None:
    served = f"zoo-{zoo_model}"
    serve(served, zoo_model, max_batch_size=4)
    info = zoo.model_info(zoo_model)
    images = np.random.default_rng(7).standard_normal((2, *info.input_shape), dtype=np.float32)

    async def infer() -> tuple[dict[str, Any], np.ndarray]:
        async with TritonAdapter(triton.url) as admin:
            config = await admin.model_config(served)
            async with triton_http.InferenceServerClient(triton.http_endpoint) as client:
                request = triton_http.InferInput(zoo.INPUT_NAME, list(images.shape), "FP32")
                request.set_data_from_numpy(images)
                response = await client.infer(served, [request])
            await admin.unload_model(served)  # keep the session's memory flat
            return config, response.as_numpy(zoo.OUTPUT_NAME)

    config, logits = run(infer())
    # The shim's auto-complete filled in the tensors the rendered config leaves out.
    assert [(t["name"], t["dims"]) for t in config["input"]] == [(zoo.INPUT_NAME, list(info.input_shape))]
    assert [(t["name"], t["dims"]) for t in config["output"]] == [(zoo.OUTPUT_NAME, [zoo.CLASSES])]
    assert config["instance_group"][0]["count"] == 1
    assert logits.shape == (2, zoo.CLASSES)
    reference = ort.InferenceSession(str(zoo_models[zoo_model]), providers=["CPUExecutionProvider"])
    (expected,) = reference.run([zoo.OUTPUT_NAME], {zoo.INPUT_NAME: images})
    # Different ORT builds (data plane 1.20 vs operator venv) may fuse ops differently.
    np.testing.assert_allclose(logits, expected, rtol=1e-3, atol=1e-3 * float(np.abs(expected).max()))
