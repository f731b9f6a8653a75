"""Live instance changes, applied as the tuning loop applies them, under load: no request fails
and no inference waits for a change.

The short version of the soak (hack/bench/tuning/soak.py runs it for 10 minutes). Why model
control goes over Triton's gRPC endpoint: docs/dataplane.md, "Live instance changes".
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http.aio as triton_http
from dataplane_support import shim_spec

from edgetenant.adapters.triton import TritonAdapter, TritonControl
from edgetenant.dataplane import local, repository
from edgetenant.errors import ModelLoadError, TransientError
from edgetenant.profiling.loadgen import LoadResult, run_load
from edgetenant.render.triton import TritonModelSpec, model_config_json
from edgetenant.tuning.loop import TuningTarget, apply_setting, render_from_spec, target_for

Run = Callable[[Coroutine[Any, Any, Any]], Any]


def apply_path(spec: TritonModelSpec, control_url: str) -> TuningTarget:
    """The tuning loop's target for ``spec`` at ``control_url`` (its signals are never read here)."""
    return target_for(
        model=spec.name,
        endpoints=[control_url],
        prometheus_url="http://127.0.0.1:9",  # not contacted: nothing here reads signals
        render_config=render_from_spec(spec),
    )


def test_instance_count_changes_under_load_without_failed_requests(
    serve: Callable[..., TritonModelSpec], triton: local.TritonProcess, run: Run
) -> None:
    spec = serve("live-mobilenet", "mobilenet_v2", instance_count=1)
    target = apply_path(spec, triton.control_url)
    # Up, down, down, up; then batching on (a full reload) with a change, and off again.
    plan = [(3, False), (2, False), (1, False), (2, False), (3, True), (1, False)]

    async def scenario() -> tuple[LoadResult, list[tuple[int, bool]], list[tuple[int, bool]]]:
        applied: list[tuple[int, bool]] = []
        seen: list[tuple[int, bool]] = []
        load = asyncio.create_task(run_load(triton.url, spec.name, concurrency=4, duration_s=15.0))
        async with TritonAdapter(triton.url) as admin:
            for instances, batching in plan:
                await asyncio.sleep(1.5)
                await apply_setting(target, instances, batching)
                applied.append((instances, batching))
                config = await admin.model_config(spec.name)
                seen.append((int(config["instance_group"][0]["count"]), "dynamic_batching" in config))
            result = await load
            await admin.unload_model(spec.name)
        return result, applied, seen

    result, applied, seen = run(scenario())
    assert seen == applied == plan
    assert result.errors == 0, result.error_samples
    assert result.requests > 0


@pytest.fixture(scope="module")
def one_worker_triton(
    dataplane_env: local.DataplaneEnv, tmp_path_factory: pytest.TempPathFactory, zoo_models: dict[str, Path]
) -> Iterator[tuple[local.TritonProcess, TritonModelSpec]]:
    """A Triton with one HTTP worker thread, so every HTTP connection shares it with a load sent
    over HTTP (with Triton's default of 8, whether they share one depends on which worker
    accepted each connection)."""
    repo = tmp_path_factory.mktemp("one-worker") / "models"
    spec = shim_spec("one-worker", instance_count=1)
    repository.write_model(repo, spec, zoo_models["mobilenet_v2"])
    with local.start_triton(
        repo,
        dataplane=dataplane_env,
        load_models=[spec.name],
        extra_args=["--http-thread-count=1"],
        ready_timeout=120,
    ) as process:
        yield process, spec


async def answered_during(url: str, model: str, change: Coroutine[Any, Any, None]) -> int:
    """Requests one HTTP client sent after ``change`` began and got answered before it returned."""
    client = triton_http.InferenceServerClient(url.removeprefix("http://"), conn_limit=1, conn_timeout=120)
    try:
        metadata = await client.get_model_metadata(model)
        tensor = metadata["inputs"][0]
        shape = [1, *(int(d) for d in tensor["shape"][1:])]
        inputs = [triton_http.InferInput(tensor["name"], shape, tensor["datatype"])]
        inputs[0].set_data_from_numpy(np.zeros(shape, dtype=np.float32), binary_data=True)
        await client.infer(model, inputs)  # the connection is open before the change starts
        window: list[float] = []
        answered: list[float] = []
        done = asyncio.Event()

        async def closed_loop() -> None:
            while not done.is_set():
                started = time.monotonic()
                await client.infer(model, inputs)
                if window and started >= window[0]:
                    answered.append(time.monotonic())

        async def timed_change() -> None:
            window.append(time.monotonic())
            try:
                await change
            finally:
                window.append(time.monotonic())
                done.set()

        await asyncio.gather(closed_loop(), timed_change())
        return sum(1 for at in answered if at < window[1])
    finally:
        await client.close()


def test_a_live_change_does_not_hold_up_inference(
    one_worker_triton: tuple[local.TritonProcess, TritonModelSpec], run: Run
) -> None:
    triton, spec = one_worker_triton
    grpc_path, http_path = apply_path(spec, triton.control_url), apply_path(spec, triton.url)

    async def scenario() -> tuple[int, int]:
        await apply_setting(grpc_path, 1, False)  # from config.pbtxt: a full reload, before measuring
        over_grpc = await answered_during(triton.url, spec.name, apply_setting(grpc_path, 3, False))
        await apply_setting(grpc_path, 1, False)
        over_http = await answered_during(triton.url, spec.name, apply_setting(http_path, 3, False))
        return over_grpc, over_http

    over_grpc, over_http = run(scenario())
    # Each scale-up starts two instances (a Python stub and an ONNX Runtime session each): over
    # gRPC, inference goes on meanwhile. The same change over HTTP is the reason for gRPC: the
    # HTTP worker that runs the load answers nothing else until it returns. (Should that part
    # ever fail, Triton's HTTP loads no longer block their worker; see docs/dataplane.md.)
    assert over_grpc > 0
    assert over_http == 0


def test_control_errors_are_the_projects_own(
    serve: Callable[..., TritonModelSpec], triton: local.TritonProcess, run: Run
) -> None:
    spec = serve("control-errors", "mobilenet_v2", instance_count=1)
    gpu = dataclasses.replace(spec, instance_kind="KIND_GPU", gpus=(0,))  # this machine has none

    async def scenario() -> tuple[str, str, bool]:
        async with TritonControl(triton.control_url) as control:
            with pytest.raises(ModelLoadError) as refused:
                await control.load_model(spec.name, config=model_config_json(gpu))
            await control.unload_model(spec.name)
        async with TritonAdapter(triton.url) as admin:
            unloaded = not await admin.model_ready(spec.name)
        async with TritonControl(f"grpc://127.0.0.1:{local.free_port()}", timeout_s=10) as nobody:
            with pytest.raises(TransientError) as unreachable:
                await nobody.load_model(spec.name)
        return str(refused.value), str(unreachable.value), unloaded

    refused, unreachable, unloaded = run(scenario())
    assert spec.name in refused and "GPU" in refused
    assert "did not answer (StatusCode.UNAVAILABLE)" in unreachable
    assert unloaded
    with pytest.raises(ValueError, match="grpc://"):
        TritonControl(triton.url)
