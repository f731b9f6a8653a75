"""The ONNX shim under dynamic batching: requests are joined into one run and split back correctly."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import tritonclient.http.aio as triton_http

from edgetenant import zoo
from edgetenant.adapters.triton import ModelStatistics, TritonAdapter
from edgetenant.dataplane.local import TritonProcess
from edgetenant.render.triton import DynamicBatching, TritonModelSpec

Run = Callable[[Coroutine[Any, Any, Any]], Any]


def test_batched_requests_each_get_their_own_answer(
    serve: Callable[..., TritonModelSpec], triton: TritonProcess, zoo_models: dict[str, Path], run: Run
) -> None:
    # A long queue delay makes Triton gather the concurrent requests into batches.
    spec = serve(
        "batched-mobilenet",
        "mobilenet_v2",
        max_batch_size=8,
        dynamic_batching=DynamicBatching(max_queue_delay_microseconds=200_000),
    )
    rng = np.random.default_rng(3)
    images = [rng.standard_normal((1, 3, 224, 224), dtype=np.float32) for _ in range(6)]

    async def scenario() -> tuple[list[np.ndarray], ModelStatistics]:
        async with triton_http.InferenceServerClient(triton.http_endpoint) as client:

            async def one(image: np.ndarray) -> np.ndarray:
                request = triton_http.InferInput(zoo.INPUT_NAME, list(image.shape), "FP32")
                request.set_data_from_numpy(image)
                response = await client.infer(spec.name, [request])
                return response.as_numpy(zoo.OUTPUT_NAME)

            outputs = await asyncio.gather(*(one(image) for image in images))
        async with TritonAdapter(triton.url) as admin:
            stats = await admin.model_statistics(spec.name)
            await admin.unload_model(spec.name)
        return list(outputs), stats

    outputs, stats = run(scenario())
    assert stats.inference_count == len(images)
    assert stats.execution_count < stats.inference_count  # at least one real batch ran
    reference = ort.InferenceSession(str(zoo_models["mobilenet_v2"]), providers=["CPUExecutionProvider"])
    for image, logits in zip(images, outputs, strict=True):
        (expected,) = reference.run([zoo.OUTPUT_NAME], {zoo.INPUT_NAME: image})
        np.testing.assert_allclose(logits, expected, rtol=1e-3, atol=1e-3 * float(np.abs(expected).max()))
