"""Concurrency sweeps on a real Triton, Model Analyzer brute-force style, and ModelProfile output.

For each configuration (threads per instance x dynamic batching on/off), instance counts go
1, 2, ...: load the config in place, warm up, measure with the closed-loop load generator at
``clients_per_instance`` clients per instance (enough to keep every instance busy), record
throughput, latency and the memory the server's process tree gained over its baseline. A
configuration's sweep stops early when a load fails or when throughput falls below ``drop_ratio``
of the best so far; either way that count is the ceiling: the lowest count that failed, as the
tuning loop records it too (placement and tuning stay below it).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgetenant.adapters.triton import TritonAdapter
from edgetenant.errors import ModelLoadError
from edgetenant.profiling.loadgen import LoadResult, run_load
from edgetenant.render.triton import DynamicBatching, TritonModelSpec


@dataclass(frozen=True, slots=True)
class SweepPoint:
    instances: int
    threads_per_instance: int | None
    batching: bool
    clients: int
    batch_size: int
    throughput: float  # inferences per second
    p50_ms: float
    p95_ms: float
    p99_ms: float
    requests: int
    errors: int
    memory_mib: float | None  # process-tree PSS over the no-model baseline
    load_s: float  # how long the in-place config change took
    measured_at: str


@dataclass(frozen=True, slots=True)
class SweepResult:
    model: str
    points: tuple[SweepPoint, ...]
    ceiling: int | None
    ceiling_reason: str

    def best(self) -> SweepPoint:
        return max(self.points, key=lambda p: p.throughput)

    def variant(self, threads: int | None, batching: bool) -> list[SweepPoint]:
        return _variant_points(self.points, threads, batching)

    def variants(self) -> list[tuple[int | None, bool]]:
        """(threads per instance, batching) pairs in the order they were swept."""
        return list(dict.fromkeys((p.threads_per_instance, p.batching) for p in self.points))

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "ceiling": self.ceiling,
            "ceiling_reason": self.ceiling_reason,
            "points": [asdict(p) for p in self.points],
        }


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found += [int(child) for child in handle.read().split()]
        except OSError:
            continue
    return found


def _pss_kib(pid: int) -> int:
    # PSS splits shared pages (the ORT library in every stub) fairly between processes.
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def process_tree_memory_mib(pid: int) -> float:
    """PSS of ``pid`` and all its descendants (Triton + its Python-backend stubs), MiB."""
    total, stack, seen = 0, [pid], set()
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        total += _pss_kib(current)
        stack += _children(current)
    return total / 1024


def _process_tree_size(pid: int) -> int:
    count, stack = 0, [pid]
    while stack:
        current = stack.pop()
        count += 1
        stack += _children(current)
    return count


async def settled_memory_mib(pid: int, *, timeout_s: float = 30.0) -> float:
    """The process tree's memory once it has stopped shrinking.

    NB: Triton answers an unload at once and stops the model's stub processes afterwards,
    so this waits for the tree to keep the same processes and memory for 1.5 s running.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    previous = (_process_tree_size(pid), process_tree_memory_mib(pid))
    steady = 0
    while loop.time() < deadline and steady < 3:
        await asyncio.sleep(0.5)
        current = (_process_tree_size(pid), process_tree_memory_mib(pid))
        steady = steady + 1 if current[0] == previous[0] and abs(current[1] - previous[1]) < 2.0 else 0
        previous = current
    return previous[1]


async def sweep(
    url: str,
    base: TritonModelSpec,
    *,
    max_instances: int = 8,
    threads: Sequence[int | None] = (1,),
    batching: Sequence[bool] = (False,),
    duration_s: float = 10.0,
    warmup_s: float = 2.0,
    clients_per_instance: int = 2,
    min_clients: int = 2,
    batch_size: int = 1,
    server_pid: int | None = None,
    drop_ratio: float | None = 0.8,
    on_point: Callable[[SweepPoint], None] | None = None,
) -> SweepResult:
    """Sweep instance counts for each (threads, batching) variant; see the module docstring."""
    points: list[SweepPoint] = []
    ceiling: int | None = None
    reason = "swept to the maximum without a failure or a fall"
    async with TritonAdapter(url) as triton:
        baseline = None
        if server_pid is not None:
            if await triton.model_ready(base.name):
                await triton.unload_model(base.name)
                for _ in range(150):  # up to 30 s for the unload to take effect
                    if not await triton.model_ready(base.name):
                        break
                    await asyncio.sleep(0.2)
            baseline = await settled_memory_mib(server_pid)
        for thread_count in threads:
            for batched in batching:
                best = 0.0
                for instances in range(1, max_instances + 1):
                    spec = replace(
                        base,
                        instance_count=instances,
                        threads_per_instance=thread_count,
                        dynamic_batching=DynamicBatching() if batched else None,
                        max_batch_size=max(base.max_batch_size, 1) if batched else base.max_batch_size,
                    )
                    started = asyncio.get_running_loop().time()
                    try:
                        await triton.apply_spec(spec)
                    except ModelLoadError as exc:
                        ceiling = instances if ceiling is None else min(ceiling, instances)
                        reason = f"loading {instances} instances failed: {exc}"
                        break
                    load_s = asyncio.get_running_loop().time() - started
                    clients = max(min_clients, clients_per_instance * instances)
                    result: LoadResult = await run_load(
                        url,
                        base.name,
                        concurrency=clients,
                        duration_s=duration_s,
                        warmup_s=warmup_s,
                        batch_size=batch_size,
                    )
                    memory = None
                    if server_pid is not None and baseline is not None:
                        memory = max(0.0, process_tree_memory_mib(server_pid) - baseline)
                    point = SweepPoint(
                        instances=instances,
                        threads_per_instance=thread_count,
                        batching=batched,
                        clients=clients,
                        batch_size=batch_size,
                        throughput=result.inferences_per_s,
                        p50_ms=result.p50_ms,
                        p95_ms=result.p95_ms,
                        p99_ms=result.p99_ms,
                        requests=result.requests,
                        errors=result.errors,
                        memory_mib=memory,
                        load_s=load_s,
                        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
                    )
                    points.append(point)
                    if on_point is not None:
                        on_point(point)
                    if drop_ratio is not None and best > 0 and point.throughput < drop_ratio * best:
                        peak = max(_variant_points(points, thread_count, batched), key=lambda p: p.throughput)
                        ceiling = instances if ceiling is None else min(ceiling, instances)
                        reason = (
                            f"throughput fell to {point.throughput:.1f}/s at {instances} instances, "
                            f"below {drop_ratio:.0%} of {best:.1f}/s at {peak.instances}"
                        )
                        break
                    best = max(best, point.throughput)
    return SweepResult(model=base.name, points=tuple(points), ceiling=ceiling, ceiling_reason=reason)


def _variant_points(points: Sequence[SweepPoint], threads: int | None, batching: bool) -> list[SweepPoint]:
    return [p for p in points if p.threads_per_instance == threads and p.batching == batching]


def build_model_profile(
    result: SweepResult,
    *,
    accelerator_class: str,
    model_format: str = "onnx",
    node: str | None = None,
    namespace: str | None = None,
) -> dict[str, Any]:
    """A ModelProfile object (plain dict, camelCase) from the best variant's points."""
    from edgetenant.api.models import ModelProfile  # noqa: PLC0415 - validation only

    best = result.best()
    chosen = result.variant(best.threads_per_instance, best.batching)
    name = f"{result.model}-{accelerator_class}".lower().replace("_", "-")
    metadata: dict[str, Any] = {
        "name": name,
        "labels": {"edgetenant.io/model": result.model, "edgetenant.io/accelerator-class": accelerator_class},
        "annotations": {
            "edgetenant.io/threads-per-instance": str(best.threads_per_instance or "default"),
            "edgetenant.io/dynamic-batching": str(best.batching).lower(),
            "edgetenant.io/ceiling-reason": result.ceiling_reason[:500],
        },
    }
    if namespace:
        metadata["namespace"] = namespace
    body: dict[str, Any] = {
        "apiVersion": "edgetenant.io/v1alpha1",
        "kind": "ModelProfile",
        "metadata": metadata,
        "spec": {
            "model": result.model,
            "format": model_format,
            "acceleratorClass": accelerator_class,
            "points": [
                {
                    "concurrency": p.instances,
                    "batchSize": p.batch_size,
                    "throughput": round(p.throughput, 3),
                    "latencyP95Ms": round(p.p95_ms, 3),
                    **({"memoryMiB": round(p.memory_mib)} if p.memory_mib is not None else {}),
                    "source": "Offline",
                    "measuredAt": p.measured_at,
                }
                for p in chosen
            ],
        },
    }
    if node:
        body["spec"]["node"] = node
    if result.ceiling is not None and result.ceiling >= 1:
        body["spec"]["ceiling"] = result.ceiling
    # Round-trip through the API model: what we write is what the CRD accepts.
    validated = ModelProfile.model_validate(body)
    dumped: dict[str, Any] = validated.model_dump(mode="json", by_alias=True, exclude_none=True)
    dumped["metadata"] = {key: value for key, value in dumped["metadata"].items() if value not in ([], {})}
    # Kubernetes' conventional key order, for people reading the file.
    return {key: dumped[key] for key in ("apiVersion", "kind", "metadata", "spec")}


def plot_sweep(result: SweepResult, path: Path, *, title: str | None = None) -> Path:
    """PNG: throughput (left axis) and p95 latency (right axis) against instance count, per variant."""
    import matplotlib  # noqa: PLC0415 - heavy, only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, throughput_axis = plt.subplots(figsize=(7, 4.2), dpi=110)
    latency_axis = throughput_axis.twinx()
    for index, (threads, batched) in enumerate(result.variants()):
        points = result.variant(threads, batched)
        label = f"{threads or 'default'} thr/inst" + (", dyn. batching" if batched else "")
        color = f"C{index}"
        xs = [p.instances for p in points]
        throughput_axis.plot(
            xs, [p.throughput for p in points], "o-", color=color, label=f"throughput, {label}"
        )
        latency_axis.plot(
            xs, [p.p95_ms for p in points], "s--", color=color, alpha=0.6, label=f"p95, {label}"
        )
    from matplotlib.ticker import MaxNLocator  # noqa: PLC0415

    throughput_axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    throughput_axis.set_xlabel("model instances (concurrency)")
    throughput_axis.set_ylabel("throughput (inferences/s)")
    latency_axis.set_ylabel("p95 latency (ms)")
    throughput_axis.set_ylim(bottom=0)
    latency_axis.set_ylim(bottom=0)
    if result.ceiling:
        throughput_axis.axvline(
            result.ceiling, color="grey", linestyle=":", label=f"ceiling {result.ceiling}"
        )
    handles = throughput_axis.get_legend_handles_labels()[0] + latency_axis.get_legend_handles_labels()[0]
    labels = throughput_axis.get_legend_handles_labels()[1] + latency_axis.get_legend_handles_labels()[1]
    throughput_axis.legend(handles, labels, fontsize=7, loc="upper left")
    throughput_axis.set_title(title or f"{result.model}: throughput and p95 vs concurrency")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
