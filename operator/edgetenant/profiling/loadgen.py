"""Load generator for a Triton model: closed loop (N clients) or open loop (Poisson arrivals).

``run_load`` is the library API; ``edgetenant load`` the command line. Inputs are random
tensors of the model's own input shape and type (read from its metadata and config), made
once per run. Counts only what completes inside the measured window (after warm-up), and
reports throughput, p50/p95/p99 latency and errors with a few sample messages.

With ``shared_memory`` the inputs are written once into POSIX shared memory registered with
Triton (its system shared-memory API) and each request only names the region, as a caller on
the same host (a sidecar, or a pod sharing the host's IPC namespace) can: no tensor bytes cross
the socket. BENCHMARKS.md §11 measures what that saves.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
import numpy as np
import tritonclient.http.aio as triton_http
import tritonclient.utils.shared_memory as system_shm
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

_MAX_ERROR_SAMPLES = 5


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What one load run measured. Latencies are client-side, in milliseconds."""

    model: str
    mode: str  # "closed" or "open"
    concurrency: int | None
    rate: float | None
    batch_size: int
    window_s: float  # the measured window (after warm-up)
    requests: int  # completed without error inside the window
    errors: int
    error_samples: tuple[str, ...]
    throughput: float  # requests per second
    inferences_per_s: float  # requests x batch size per second
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    started_at: float  # unix time the window opened
    finished_at: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class _Tally:
    window_open: float = math.inf  # perf_counter time from which results count
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    sent: int = 0

    def record(self, started: float, finished: float, error: str | None) -> None:
        if started < self.window_open:
            return
        if error is None:
            self.latencies.append(finished - started)
        else:
            self.errors += 1
            if len(self.error_samples) < _MAX_ERROR_SAMPLES:
                self.error_samples.append(error)


@dataclass(frozen=True, slots=True)
class _Request:
    inputs: list[triton_http.InferInput]
    outputs: list[triton_http.InferRequestedOutput]
    data: list[np.ndarray]  # each input's tensor, in the order of ``inputs``


async def _request_template(
    client: triton_http.InferenceServerClient, model: str, batch_size: int, seed: int
) -> _Request:
    metadata = await client.get_model_metadata(model)
    config = await client.get_model_config(model)
    batching = int(config.get("max_batch_size", 0)) > 0
    rng = np.random.default_rng(seed)
    inputs, arrays = [], []
    for tensor in metadata["inputs"]:
        shape = [int(d) for d in tensor["shape"]]
        if batching or (shape and shape[0] == -1):
            shape[0] = batch_size  # a variable leading axis is the batch, even without Triton batching
        if any(d < 0 for d in shape):
            raise ValueError(f"input {tensor['name']!r} of {model!r} has variable dims {shape}; cannot guess")
        dtype = triton_to_np_dtype(tensor["datatype"])
        if np.issubdtype(dtype, np.floating):
            data = rng.standard_normal(shape).astype(dtype)
        else:
            data = rng.integers(0, 100, size=shape).astype(dtype)
        infer_input = triton_http.InferInput(tensor["name"], shape, tensor["datatype"])
        infer_input.set_data_from_numpy(data, binary_data=True)
        inputs.append(infer_input)
        arrays.append(data)
    outputs = [triton_http.InferRequestedOutput(t["name"], binary_data=True) for t in metadata["outputs"]]
    return _Request(inputs, outputs, arrays)


@contextlib.asynccontextmanager
async def _in_shared_memory(
    client: triton_http.InferenceServerClient, request: _Request
) -> AsyncIterator[_Request]:
    """``request`` with its inputs in system shared memory registered with Triton, for the run's length.
    Every client reads the same regions: Triton only reads inputs, so they can be shared."""
    prefix = f"edgetenant-load-{os.getpid()}-{id(request):x}"
    handles: list[Any] = []
    registered: list[str] = []
    try:
        inputs = []
        for index, (template, data) in enumerate(zip(request.inputs, request.data, strict=True)):
            name = f"{prefix}-{index}"
            handles.append(system_shm.create_shared_memory_region(name, f"/{name}", data.nbytes))
            system_shm.set_shared_memory_region(handles[-1], [data])
            try:
                await client.register_system_shared_memory(name, f"/{name}", data.nbytes)
            except InferenceServerException as exc:
                raise RuntimeError(
                    f"Triton cannot map shared memory /{name}: with shared_memory, Triton must run on this "
                    f"host and see its /dev/shm ({exc})"
                ) from exc
            registered.append(name)
            shared = triton_http.InferInput(template.name(), list(data.shape), template.datatype())
            shared.set_shared_memory(name, data.nbytes)
            inputs.append(shared)
        yield _Request(inputs, request.outputs, request.data)
    finally:
        for name in registered:
            with contextlib.suppress(InferenceServerException, aiohttp.ClientError, OSError):
                await client.unregister_system_shared_memory(name)
        for handle in handles:
            system_shm.destroy_shared_memory_region(handle)


async def _one(
    client: triton_http.InferenceServerClient, model: str, request: _Request, tally: _Tally
) -> None:
    started = time.perf_counter()
    error: str | None = None
    try:
        await client.infer(model, request.inputs, outputs=request.outputs)
    except InferenceServerException as exc:
        error = str(exc)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    tally.record(started, time.perf_counter(), error)


def _percentile(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q) * 1000.0) if values.size else math.nan


async def run_load(
    url: str,
    model: str,
    *,
    concurrency: int | None = None,
    rate: float | None = None,
    duration_s: float | None = None,
    requests: int | None = None,
    warmup_s: float = 0.0,
    batch_size: int = 1,
    seed: int = 0,
    timeout_s: float = 60.0,
    progress: bool = False,
    on_tick: Callable[[int], None] | None = None,
    shared_memory: bool = False,
) -> LoadResult:
    """Send load to ``model`` on the Triton at ``url`` (``http://host:port`` or ``host:port``).

    Exactly one of ``concurrency`` (closed loop) and ``rate`` (open loop, req/s) is given;
    at least one of ``duration_s`` and ``requests`` bounds the measured window. Requests
    started during ``warmup_s`` are sent but not counted. ``shared_memory``: inputs through
    system shared memory (Triton on this host only).
    """
    if (concurrency is None) == (rate is None):
        raise ValueError("give exactly one of concurrency (closed loop) and rate (open loop)")
    if duration_s is None and requests is None:
        raise ValueError("give duration_s and/or requests to bound the run")
    if concurrency is not None and concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    if rate is not None and rate <= 0:
        raise ValueError("rate must be > 0")
    endpoint = url.removeprefix("http://").rstrip("/")
    conn_limit = concurrency if concurrency is not None else 1000
    client = triton_http.InferenceServerClient(endpoint, conn_limit=conn_limit, conn_timeout=timeout_s)
    tally = _Tally()
    regions = contextlib.AsyncExitStack()  # the shared-memory regions, released before the client closes
    try:
        template = await _request_template(client, model, batch_size, seed)
        if shared_memory:
            template = await regions.enter_async_context(_in_shared_memory(client, template))
        begin = time.perf_counter()
        tally.window_open = begin + warmup_s
        deadline = tally.window_open + duration_s if duration_s is not None else math.inf
        _inflight = [0]  # requests sent and not yet answered

        def more() -> bool:
            now = time.perf_counter()
            if now >= deadline:
                return False
            counted = len(tally.latencies) + tally.errors
            return requests is None or now < tally.window_open or counted + _inflight[0] < requests

        async def closed_client() -> None:
            while more():
                _inflight[0] += 1
                try:
                    await _one(client, model, template, tally)
                finally:
                    _inflight[0] -= 1

        async def open_loop() -> None:
            assert rate is not None
            arrivals = random.Random(seed)
            pending: set[asyncio.Task[None]] = set()
            next_at = time.perf_counter()
            while more():
                next_at += arrivals.expovariate(rate)
                delay = next_at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                if not more():
                    break
                task = asyncio.create_task(_tracked(client, model, template, tally, _inflight))
                pending.add(task)
                task.add_done_callback(pending.discard)
            if pending:
                await asyncio.gather(*pending)

        async def ticker() -> None:
            total = duration_s if duration_s is not None else float(requests or 0)
            with Progress(
                TextColumn(f"[bold]{model}[/]"),
                BarColumn(),
                TextColumn("{task.fields[done]} ok, {task.fields[errors]} errors"),
                TimeRemainingColumn(),
                disable=not progress,
                transient=True,
            ) as bar:
                task = bar.add_task("load", total=total, done=0, errors=0)
                while True:
                    await asyncio.sleep(0.5)
                    done = len(tally.latencies)
                    elapsed = max(0.0, time.perf_counter() - tally.window_open)
                    bar.update(
                        task,
                        completed=elapsed if duration_s is not None else done,
                        done=done,
                        errors=tally.errors,
                    )
                    if on_tick is not None:
                        on_tick(done)

        tick = asyncio.create_task(ticker())
        try:
            if concurrency is not None:
                await asyncio.gather(*(closed_client() for _ in range(concurrency)))
            else:
                await open_loop()
        finally:
            tick.cancel()
            await asyncio.gather(tick, return_exceptions=True)
        end = time.perf_counter()
    finally:
        try:
            await regions.aclose()
        finally:
            await client.close()
    # Requests started before the deadline and answered after it count, so the window runs
    # to the last answer: throughput is never overstated.
    window = max(end - max(tally.window_open, begin), 1e-9)
    latencies = np.asarray(tally.latencies)
    wall_end = time.time()
    return LoadResult(
        model=model,
        mode="closed" if concurrency is not None else "open",
        concurrency=concurrency,
        rate=rate,
        batch_size=batch_size,
        window_s=window,
        requests=len(tally.latencies),
        errors=tally.errors,
        error_samples=tuple(tally.error_samples),
        throughput=len(tally.latencies) / window,
        inferences_per_s=len(tally.latencies) * batch_size / window,
        p50_ms=_percentile(latencies, 50),
        p95_ms=_percentile(latencies, 95),
        p99_ms=_percentile(latencies, 99),
        mean_ms=float(latencies.mean() * 1000.0) if latencies.size else math.nan,
        max_ms=float(latencies.max() * 1000.0) if latencies.size else math.nan,
        started_at=wall_end - (end - max(tally.window_open, begin)),
        finished_at=wall_end,
    )


async def _tracked(
    client: triton_http.InferenceServerClient,
    model: str,
    request: _Request,
    tally: _Tally,
    inflight: list[int],
) -> None:
    inflight[0] += 1
    try:
        await _one(client, model, request, tally)
    finally:
        inflight[0] -= 1


def _parser() -> argparse.ArgumentParser:
    from edgetenant.cli import bounded  # noqa: PLC0415  (the command line's helpers, not the library's)

    parser = argparse.ArgumentParser(prog="edgetenant load", description=__doc__)
    parser.add_argument("--url", required=True, help="Triton HTTP endpoint, e.g. http://127.0.0.1:8000")
    parser.add_argument("--model", required=True, help="the served model's name")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--concurrency", type=bounded(int, 1, 4096), metavar="N", help="closed loop: this many clients"
    )
    mode.add_argument(
        "--rate",
        type=bounded(float, 0.001, 1e6, " req/s"),
        metavar="R",
        help="open loop: Poisson arrivals at this many req/s",
    )
    parser.add_argument(
        "--duration",
        type=bounded(float, 0.1, 86400, " s"),
        metavar="S",
        help="seconds to measure (default 10)",
    )
    parser.add_argument(
        "--requests", type=bounded(int, 1, 10**9), metavar="N", help="stop after this many requests"
    )
    parser.add_argument(
        "--warmup",
        type=bounded(float, 0, 3600, " s"),
        default=0.0,
        metavar="S",
        help="seconds sent but not counted first (default 0)",
    )
    parser.add_argument(
        "--batch-size",
        type=bounded(int, 1, 1024),
        default=1,
        metavar="N",
        help="images per request (default 1; at most the model's max_batch_size)",
    )
    parser.add_argument(
        "--shared-memory",
        action="store_true",
        help="send inputs through system shared memory (Triton on this host only; saves the socket copies)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.duration is None and args.requests is None:
        args.duration = 10.0
    result = asyncio.run(
        run_load(
            args.url,
            args.model,
            concurrency=args.concurrency,
            rate=args.rate,
            duration_s=args.duration,
            requests=args.requests,
            warmup_s=args.warmup,
            batch_size=args.batch_size,
            progress=sys.stderr.isatty() and not args.json,
            shared_memory=args.shared_memory,
        )
    )
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        load = (
            f"{result.concurrency} clients" if result.mode == "closed" else f"{result.rate:g} req/s offered"
        )
        print(
            f"{result.model}: {load}, {result.requests} ok / {result.errors} errors "
            f"in {result.window_s:.1f}s "
            f"-> {result.throughput:.1f} req/s; latency p50 {result.p50_ms:.1f} ms, "
            f"p95 {result.p95_ms:.1f} ms, p99 {result.p99_ms:.1f} ms"
        )
        for sample in result.error_samples:
            print(f"  error: {sample}")
    return 1 if result.errors else 0
