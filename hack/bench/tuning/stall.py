"""Reproduce the failed requests of a live scale-down sent over Triton's HTTP model control.

The mechanism (docs/dataplane.md, "Live instance changes") needs two things at once: the load
runs on the HTTP worker thread that carries an inference client, and other clients keep the
model's queue busy so that the removed instances cannot stop. In the test tier that happened by
chance (which worker accepts which connection); here it is arranged: Triton gets one HTTP
worker, one closed-loop HTTP client (the project's load generator, 60 s timeout) shares it with
the load, and ``--grpc-clients`` closed-loop gRPC clients keep the queue busy. A 3 -> 1 change
is then sent over HTTP (``--control http``: the HTTP client's requests wait for the whole
change and time out) or over gRPC (``--control grpc``: they do not).

    .venv/bin/python hack/bench/tuning/stall.py --control http
    .venv/bin/python hack/bench/tuning/stall.py --control grpc
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc.aio as triton_grpc

from edgetenant import zoo
from edgetenant.adapters.triton import TritonAdapter, TritonControl
from edgetenant.dataplane.local import TritonProcess, start_triton
from edgetenant.dataplane.repository import write_model
from edgetenant.profiling.loadgen import run_load
from edgetenant.render.triton import SHIM_BACKEND, TritonModelSpec, model_config_json


async def grpc_client(triton: TritonProcess, model: str, stop: asyncio.Event) -> int:
    client = triton_grpc.InferenceServerClient(triton.grpc_url)
    try:
        metadata = await client.get_model_metadata(model, as_json=True)
        tensor = metadata["inputs"][0]
        shape = [1, *(int(d) for d in tensor["shape"][1:])]
        request = triton_grpc.InferInput(tensor["name"], shape, tensor["datatype"])
        request.set_data_from_numpy(np.zeros(shape, dtype=np.float32))
        answered = 0
        while not stop.is_set():
            await client.infer(model, [request])
            answered += 1
        return answered
    finally:
        await client.close()


async def scenario(triton: TritonProcess, spec: TritonModelSpec, args: argparse.Namespace) -> dict[str, Any]:
    async with TritonControl(triton.control_url) as control:  # from JSON once: the 3 -> 1 is in place
        await control.load_model(spec.name, config=model_config_json(spec))
    stop = asyncio.Event()
    busy = [asyncio.create_task(grpc_client(triton, spec.name, stop)) for _ in range(args.grpc_clients)]
    http = asyncio.create_task(
        run_load(triton.url, spec.name, concurrency=1, duration_s=75.0, timeout_s=60.0)
    )
    await asyncio.sleep(3.0)
    config = model_config_json(dataclasses.replace(spec, instance_count=1))
    began = time.monotonic()
    if args.control == "http":
        async with TritonAdapter(triton.url, timeout_s=900.0) as adapter:
            await adapter.load_model(spec.name, config=config)
    else:
        async with TritonControl(triton.control_url, timeout_s=900.0) as control:
            await control.load_model(spec.name, config=config)
    change_s = time.monotonic() - began
    result = await http
    stop.set()
    grpc_answered = sum(await asyncio.gather(*busy))
    return {
        "control": args.control,
        "change_3_to_1_s": round(change_s, 1),
        "http_requests": result.requests,
        "http_failed": result.errors,
        "http_failure_samples": list(result.error_samples),
        "http_max_ms": round(result.max_ms),
        "grpc_requests": grpc_answered,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--control", choices=("http", "grpc"), required=True)
    p.add_argument("--grpc-clients", type=int, default=8, help="clients keeping the queue busy (8)")
    args = p.parse_args()
    spec = TritonModelSpec(
        name="mobilenet_v2", backend=SHIM_BACKEND, max_batch_size=8, instance_count=3, threads_per_instance=1
    )
    with tempfile.TemporaryDirectory(prefix="edgetenant-stall-") as tmp:
        repo = Path(tmp) / "repo"
        write_model(repo, spec, zoo.ensure_model(spec.name))
        with start_triton(
            repo, load_models=[spec.name], extra_args=["--http-thread-count=1"], ready_timeout=120
        ) as triton:
            result = asyncio.run(scenario(triton, spec, args))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
