"""ONNX Runtime called directly, the way the Triton shim calls it: the baseline of overhead.py.

Runs in the data-plane environment (its onnxruntime and numpy, the shim's). ``--processes N``
worker processes each build one session with the shim's settings (one intra-op thread,
sequential execution, all graph optimisations) and run batch-1 inferences on one random input
in a closed loop; the runs that start inside the shared window are counted. Prints one JSON
object: throughput, latency percentiles and the workers' CPU seconds.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import time
from typing import Any

os.environ["ORT_DISABLE_TELEMETRY"] = "1"  # before onnxruntime loads

import numpy as np
import onnxruntime as ort


def session(path: str, threads: int) -> ort.InferenceSession:
    """The shim's session options (operator/edgetenant/dataplane/onnx_model.py, initialize)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 0
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])


def feeds_for(model: ort.InferenceSession, batch: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {}
    for tensor in model.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else batch for d in tensor.shape]
        feeds[tensor.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def worker(
    *, path: str, threads: int, batch: int, window: tuple[float, float], barrier: Any, out: Any
) -> None:
    model = session(path, threads)
    feeds = feeds_for(model, batch)
    model.run(None, feeds)  # the first run allocates
    barrier.wait()
    begin = time.time()
    start, stop = begin + window[0], begin + window[0] + window[1]
    cpu_start = None
    latencies: list[float] = []
    while (now := time.time()) < stop:
        if cpu_start is None and now >= start:
            cpu_start = time.process_time()
        t = time.perf_counter()
        model.run(None, feeds)
        if now >= start:
            latencies.append(time.perf_counter() - t)
    cpu = time.process_time() - (cpu_start if cpu_start is not None else time.process_time())
    # The window runs to the last answer, as the load generator's does: never overstated.
    rate = len(latencies) / max(time.time() - start, 1e-9)
    out.put((latencies, rate, cpu, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="the ONNX file")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per session")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    args = parser.parse_args()
    context = mp.get_context("fork")
    barrier = context.Barrier(args.processes)
    out = context.Queue()
    workers = [
        context.Process(
            target=worker,
            kwargs={
                "path": args.model,
                "threads": args.threads,
                "batch": args.batch,
                "window": (args.warmup, args.duration),
                "barrier": barrier,
                "out": out,
            },
        )
        for _ in range(args.processes)
    ]
    for process in workers:
        process.start()
    results = [out.get() for _ in workers]
    for process in workers:
        process.join()
    latencies = np.asarray([x for lat, _, _, _ in results for x in lat])
    print(
        json.dumps(
            {
                "processes": args.processes,
                "runs": int(latencies.size),
                "throughput": sum(rate for _, rate, _, _ in results) * args.batch,
                "p50_ms": float(np.percentile(latencies, 50) * 1000) if latencies.size else None,
                "p95_ms": float(np.percentile(latencies, 95) * 1000) if latencies.size else None,
                "cpu_s": sum(cpu for _, _, cpu, _ in results),
                "max_rss_mib": max(rss for _, _, _, rss in results) / 1024,
                "onnxruntime": ort.__version__,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
