"""Instance count changes live through the model-control API while load runs: no request fails."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

from edgetenant.adapters.triton import TritonAdapter
from edgetenant.dataplane.local import TritonProcess
from edgetenant.profiling.loadgen import LoadResult, run_load
from edgetenant.render.triton import TritonModelSpec

Run = Callable[[Coroutine[Any, Any, Any]], Any]


def test_instance_count_changes_under_load_without_failed_requests(
    serve: Callable[..., TritonModelSpec], triton: TritonProcess, run: Run
) -> None:
    spec = serve("live-mobilenet", "mobilenet_v2", instance_count=1)
    plan = [3, 2, 1, 2]  # up, down, down, up

    async def scenario() -> tuple[LoadResult, list[int], list[int]]:
        applied: list[int] = []
        seen: list[int] = []
        load = asyncio.create_task(run_load(triton.url, spec.name, concurrency=4, duration_s=12.0))
        async with TritonAdapter(triton.url) as admin:
            for count in plan:
                await asyncio.sleep(1.5)
                await admin.apply_spec(replace(spec, instance_count=count))
                applied.append(count)
                config = await admin.model_config(spec.name)
                seen.append(int(config["instance_group"][0]["count"]))
            result = await load
            await admin.unload_model(spec.name)
        return result, applied, seen

    result, applied, seen = run(scenario())
    assert seen == applied == plan
    assert result.errors == 0, result.error_samples
    assert result.requests > 0
