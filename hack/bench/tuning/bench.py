"""Benchmark of the concurrency loop on this machine's CPU: default vs loop vs brute force.

For each zoo model: one real Triton (ONNX Runtime shim, one thread per instance) and one real
Prometheus scraping it every second; a closed loop of ``--clients`` clients keeps demand
above capacity.

* ``sweep``: the brute-force search: every static instance count 1..max, without and (with
  ``--batching``) with Triton's dynamic batching, under the same load, measured by the load
  generator in ``--sweep-rounds`` interleaved rounds (medians, spread reported); writes a
  ModelProfile YAML (the unit tests' fixtures come from here) and the best static configuration.
* ``loop``: from one instance without batching, ``edgetenant``'s control loop under the same
  load (batching ``Auto`` with ``--batching``) for ``--intervals`` ticks, then on through a
  ``--steady-seconds`` window; records each decision, the interval at which throughput first
  reached 95 % of the brute-force best, the changes after that, and the throughput and failed
  requests of the steady window measured by the load generator.

Usage (see RESULTS.md for the exact runs):
    nice -n 10 .venv/bin/python hack/bench/tuning/bench.py --models mobilenet_v2 resnet18
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from edgetenant import zoo
from edgetenant.adapters.triton import TritonAdapter
from edgetenant.api.models import BatchingMode
from edgetenant.dataplane.local import (
    PrometheusProcess,
    TritonProcess,
    render_static_scrape_config,
    start_prometheus,
    start_triton,
)
from edgetenant.dataplane.repository import write_model
from edgetenant.profiling.loadgen import run_load
from edgetenant.render.triton import SHIM_BACKEND, DynamicBatching, TritonModelSpec, model_config_json
from edgetenant.tuning import TunerConfig
from edgetenant.tuning.loop import TickResult, TuningLoop, render_from_spec, target_for

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import noise  # noqa: E402

# Set from the command line: KIND_CPU with one intra-op thread per instance (concurrency, not
# ORT's thread pool, uses the cores), or KIND_GPU (ORT's CUDA provider) on a GPU machine.
INSTANCE_KIND = "KIND_CPU"


def model_spec(model: str, instances: int = 1, batching: bool = False) -> TritonModelSpec:
    gpu = INSTANCE_KIND == "KIND_GPU"
    return TritonModelSpec(
        name=model,
        backend=SHIM_BACKEND,
        max_batch_size=8,
        instance_count=instances,
        instance_kind=INSTANCE_KIND,
        threads_per_instance=None if gpu else 1,
        # As the tuning loop renders batching on (render_from_spec): zero queue delay.
        dynamic_batching=DynamicBatching() if batching else None,
    )


@contextlib.contextmanager
def serving(model: str, workdir: Path) -> Iterator[tuple[TritonProcess, PrometheusProcess]]:
    """A Triton serving ``model`` with one instance, and a Prometheus scraping it every second."""
    repo = workdir / "repo"
    write_model(repo, model_spec(model), zoo.ensure_model(model))
    triton = start_triton(repo, load_models=[model], ready_timeout=120)
    try:
        prometheus = start_prometheus(
            render_static_scrape_config([triton.metrics_target], interval="1s"), data_dir=workdir / "prom"
        )
        try:
            yield triton, prometheus
        finally:
            prometheus.stop()
    finally:
        triton.stop()


async def set_instances(triton: TritonProcess, model: str, instances: int, batching: bool = False) -> None:
    async with TritonAdapter(triton.url) as adapter:
        await adapter.load_model(model, config=model_config_json(model_spec(model, instances, batching)))


@dataclass
class SweepPoint:
    concurrency: int
    throughput: float  # the median of the rounds
    p95_ms: float
    errors: int  # over every round
    batching: bool = False
    rounds: list[float] = field(default_factory=list)  # each round's throughput


async def sweep(
    triton: TritonProcess,
    model: str,
    *,
    clients: int,
    max_instances: int,
    point_s: float,
    warmup_s: float,
    batching: bool,
    rounds: int,
) -> list[SweepPoint]:
    """Brute force: each static configuration under the same closed-loop load, rounds interleaved."""
    configs = [
        (instances, batched)
        for batched in ((False, True) if batching else (False,))
        for instances in range(1, max_instances + 1)
    ]
    samples: dict[tuple[int, bool], list[Any]] = {config: [] for config in configs}
    for round_index, (instances, batched) in noise.interleaved(configs, rounds):
        await set_instances(triton, model, instances, batched)
        result = await run_load(
            triton.url, model, concurrency=clients, duration_s=point_s, warmup_s=warmup_s, seed=instances
        )
        samples[(instances, batched)].append(result)
        print(
            f"  sweep {model} round {round_index + 1} x{instances}{' +batch' if batched else ''}: "
            f"{result.throughput:7.2f}/s p95 {result.p95_ms:7.1f} ms (load {noise.load1():.2f})",
            flush=True,
        )
    await set_instances(triton, model, 1)
    points = []
    for (instances, batched), results in samples.items():
        points.append(
            SweepPoint(
                concurrency=instances,
                throughput=statistics.median(r.throughput for r in results),
                p95_ms=statistics.median(r.p95_ms for r in results),
                errors=sum(r.errors for r in results),
                batching=batched,
                rounds=[round(r.throughput, 2) for r in results],
            )
        )
    return points


def profile_yaml(model: str, points: list[SweepPoint], *, clients: int) -> dict[str, Any]:
    gpu = INSTANCE_KIND == "KIND_GPU"
    now = datetime.now(UTC).replace(microsecond=0).isoformat()
    return {
        "apiVersion": "edgetenant.io/v1alpha1",
        "kind": "ModelProfile",
        "metadata": {
            "name": f"{model.replace('_', '-')}-{'nvidia-dgpu' if gpu else 'x86-cpu'}",
            "annotations": {
                "edgetenant.io/measured-by": "hack/bench/tuning/bench.py sweep "
                f"(closed loop, {clients} clients, ORT shim, "
                + ("CUDA provider, KIND_GPU)" if gpu else "1 thread/instance, 2-core shared VM)")
            },
        },
        "spec": {
            "model": model,
            "format": "onnx",
            "acceleratorClass": "nvidia-dgpu" if gpu else "x86-cpu",
            "points": [
                {
                    "concurrency": p.concurrency,
                    "batchSize": 8 if p.batching else 1,
                    "throughput": round(p.throughput, 3),
                    "latencyP95Ms": round(p.p95_ms, 3),
                    "source": "Offline",
                    "measuredAt": now,
                }
                for p in points
            ],
        },
    }


@dataclass
class LoopRun:
    decisions: list[dict[str, Any]] = field(default_factory=list)
    converged_at: int | None = None  # 1-based interval where throughput first reached 95 % of best
    changes_after: int = 0
    steady_throughput: float = 0.0
    steady_p95_ms: float = 0.0
    steady_failed: int = 0
    steady_s: float = 0.0
    final_instances: int = 0
    final_batching: bool = False


async def tune(
    triton: TritonProcess,
    prometheus: PrometheusProcess,
    model: str,
    *,
    clients: int,
    best: float,
    interval_s: float,
    intervals: int,
    steady_s: float,
    max_instances: int,
    batching: bool,
) -> LoopRun:
    """The loop from one instance under the sweep's load; then a measured steady window."""
    await set_instances(triton, model, 1)
    target = target_for(
        model=model,
        endpoints=[triton.control_url],  # live changes: gRPC model control
        prometheus_url=prometheus.url,
        render_config=render_from_spec(model_spec(model)),
        window_s=interval_s - 1.0,
    )
    config = TunerConfig(
        max=max_instances,
        down_cooldown_s=60.0,
        probe_readings=2,
        batching=BatchingMode.AUTO if batching else BatchingMode.DISABLED,
        max_batch_size=8,
    )
    loop = TuningLoop(target=target, config=config, interval_s=interval_s)
    run = LoopRun()

    def record(result: TickResult) -> None:
        d = result.decision
        index = len(run.decisions) + 1
        throughput = d.signals.throughput if d.signals else 0.0
        run.decisions.append(
            {
                "interval": index,
                "action": d.action.value,
                "target": d.target,
                "batching": d.batching,
                "reason": d.reason,
                "tput": throughput,
            }
        )
        if run.converged_at is None and throughput >= 0.95 * best and not d.changed:
            run.converged_at = index
        elif run.converged_at is not None and d.changed:
            run.changes_after += 1
        batch_mark = " +batch" if d.batching else ""
        print(
            f"  loop {index:3d} {d.action.value:<12} {d.previous}->{d.target}{batch_mark} "
            f"{throughput:7.2f}/s  {d.reason}"
        )

    async def load() -> Any:
        # Until the loop has had its intervals (a tick can take longer than the interval, so
        # counted in ticks, not seconds), in slices; then the measured steady window.
        while len(run.decisions) < intervals:
            await run_load(triton.url, model, concurrency=clients, duration_s=2 * interval_s, seed=7)
        return await run_load(triton.url, model, concurrency=clients, duration_s=steady_s, seed=8)

    load_task = asyncio.create_task(load())
    await asyncio.sleep(1.0)  # the first window should see load
    # The loop keeps deciding through the steady window (holding is what is measured there) and
    # stops with the load: a loop that saw the load end would rightly scale down.
    loop_task = asyncio.create_task(loop.run(on_tick=record))
    try:
        steady = await load_task
    finally:
        loop_task.cancel()
        await asyncio.gather(loop_task, return_exceptions=True)
    run.steady_throughput = steady.throughput
    run.steady_p95_ms = steady.p95_ms
    run.steady_failed = steady.errors
    run.steady_s = steady.window_s
    run.final_instances = loop.state.current if loop.state else 0
    run.final_batching = loop.state.batching if loop.state else False
    return run


async def paired(
    triton: TritonProcess,
    model: str,
    configs: dict[str, tuple[int, bool]],
    *,
    clients: int,
    seconds: float,
    rounds: int,
) -> dict[str, Any]:
    """Throughput of each named static configuration (instances, batching), measured in
    interleaved turns (A B C C B A ...): on a shared machine whose load drifts, back-to-back
    turns compare fairly where runs minutes apart do not. Medians, and each name's rounds."""
    samples: dict[str, list[float]] = {name: [] for name in configs}
    for _, name in noise.interleaved(list(configs), rounds):
        await set_instances(triton, model, *configs[name])
        result = await run_load(triton.url, model, concurrency=clients, duration_s=seconds, warmup_s=1.0)
        samples[name].append(result.throughput)
    return {name: noise.spread(v).median for name, v in samples.items()} | {"rounds": samples}


async def bench_model(args: argparse.Namespace, model: str) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix=f"tuning-bench-{model}-") as tmp,
        serving(model, Path(tmp)) as (
            triton,
            prometheus,
        ),
    ):
        # Warm the model once so the first sweep point is not paying for ORT's first runs.
        await run_load(triton.url, model, concurrency=2, duration_s=3.0, seed=0)
        points = await sweep(
            triton,
            model,
            clients=args.clients,
            max_instances=args.max,
            point_s=args.point_seconds,
            warmup_s=args.warmup,
            batching=args.batching,
            rounds=args.sweep_rounds,
        )
        best = max(points, key=lambda p: p.throughput)
        out: dict[str, Any] = {
            "model": model,
            "clients": args.clients,
            "default": asdict(points[0]),
            "best": asdict(best),
            "sweep": [asdict(p) for p in points],
            "sweep_seconds": round(len(points) * args.sweep_rounds * (args.point_seconds + args.warmup), 1),
        }
        if args.profiles_dir:
            args.profiles_dir.mkdir(parents=True, exist_ok=True)
            path = args.profiles_dir / f"{model}.yaml"
            path.write_text(
                yaml.safe_dump(profile_yaml(model, points, clients=args.clients), sort_keys=False)
            )
            print(f"  wrote {path}")
        if not args.sweep_only:
            interval = args.interval
            if args.requests_per_window:  # slow models get longer windows (counting noise)
                interval = min(
                    max(args.requests_per_window / points[0].throughput + 1.0, args.interval), 20.0
                )
            out["interval_s"] = round(interval, 1)
            run = await tune(
                triton,
                prometheus,
                model,
                clients=args.clients,
                best=best.throughput,
                interval_s=interval,
                intervals=args.intervals,
                steady_s=args.steady_seconds,
                max_instances=args.max,
                batching=args.batching,
            )
            out["loop"] = asdict(run)
            if args.paired_rounds:
                configs = {
                    "default": (1, False),
                    "loop": (run.final_instances, run.final_batching),
                    "best": (best.concurrency, best.batching),
                }
                out["paired"] = await paired(
                    triton,
                    model,
                    configs,
                    clients=args.clients,
                    seconds=args.point_seconds,
                    rounds=args.paired_rounds,
                )
                print(f"  paired {model}: {out['paired']}", flush=True)
        return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(zoo.ZOO))
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--max", type=int, default=4, help="most instances tried (sweep and loop)")
    p.add_argument("--point-seconds", type=float, default=8.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--interval", type=float, default=5.0)
    p.add_argument(
        "--intervals", type=int, default=10, help="the loop's ticks to converge in, before the steady window"
    )
    p.add_argument("--steady-seconds", type=float, default=30.0)
    p.add_argument("--sweep-only", action="store_true")
    p.add_argument("--sweep-rounds", type=int, default=1, help="interleaved rounds of the sweep (medians)")
    p.add_argument(
        "--batching", action="store_true", help="dynamic batching in the sweep, and Auto for the loop"
    )
    p.add_argument(
        "--requests-per-window",
        type=float,
        default=0.0,
        help="lengthen the interval (up to 20 s) so one window holds this many requests at 1 instance",
    )
    p.add_argument(
        "--paired-rounds", type=int, default=0, help="after the loop: default/loop/best measured in turn"
    )
    p.add_argument("--profiles-dir", type=Path, help="write each sweep as a ModelProfile YAML here")
    p.add_argument("--out", type=Path, default=HERE / "results.json")
    p.add_argument("--instance-kind", choices=["KIND_CPU", "KIND_GPU"], default="KIND_CPU")
    noise.add_arguments(p)
    args = p.parse_args(argv)
    global INSTANCE_KIND  # noqa: PLW0603  (a script-wide setting, fixed before anything runs)
    INSTANCE_KIND = args.instance_kind
    if noise.too_busy(args):
        return noise.EXIT_BUSY
    results = []
    started = time.time()
    # Written as it goes (a long run keeps what it measured), under a name that says unpublished.
    pending = args.out.with_suffix(".rejected.json")
    for model in args.models:
        print(f"== {model}", flush=True)
        results.append(asyncio.run(bench_model(args, model)))
        pending.write_text(json.dumps({"args": _jsonable(vars(args)), "results": results}, indent=2))
    noisy = [
        f"{r['model']} {problem}"
        for r in results
        for problem in noise.too_noisy(spreads_of(r), args.max_spread)
    ]
    if noisy and not args.force:
        print("not published, too noisy:\n  " + "\n  ".join(noisy) + f"\nraw figures: {pending}")
        return noise.EXIT_NOISY
    pending.replace(args.out)
    print(f"done in {time.time() - started:.0f}s; results in {args.out}")
    return 0


def spreads_of(result: dict[str, Any]) -> dict[str, noise.Spread]:
    """Every repeated measurement of one model: the sweep's points and the paired turns."""
    spreads = {
        f"sweep x{p['concurrency']}{' +batch' if p['batching'] else ''}": noise.spread(p["rounds"])
        for p in result["sweep"]
        if p["rounds"]
    }
    for name, rounds in result.get("paired", {}).get("rounds", {}).items():
        spreads[f"paired {name}"] = noise.spread(rounds)
    return spreads


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in values.items()}


if __name__ == "__main__":
    raise SystemExit(main())
