"""Soak: live instance changes under load, applied as the tuning loop applies them, lose no request.

One real Triton serving a zoo model on the ONNX Runtime shim (one thread per instance), a closed
loop of ``--clients`` clients from the project's load generator for ``--minutes``, and every
``--interval`` seconds a new setting applied exactly as a tuning tick applies a decision
(``edgetenant.tuning.loop.apply_setting`` to the model-control endpoint): the instance count
walks at random over 1..``--max`` (never the current count, so every change is a real one, up
or down), and every ``--batching-every``-th change also flips dynamic batching (a full model
reload in Triton). A change starts an interval after the previous one started, or as soon as it
returned when its load took longer than that (removed instances drain first).

Records requests, failed requests (with samples), latency percentiles, every change (from, to,
seconds its load took) and the 1-minute load average every interval. Zero failed requests is
the bar; ``--control http`` runs the old path (model control over Triton's HTTP endpoint) for
comparison.

    nice -n 10 .venv/bin/python hack/bench/tuning/soak.py --minutes 10 \
        --out hack/bench/tuning/results-soak.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from edgetenant import zoo
from edgetenant.adapters import prometheus
from edgetenant.dataplane.local import TritonProcess, start_triton
from edgetenant.dataplane.repository import write_model
from edgetenant.errors import EdgeTenantError
from edgetenant.profiling.loadgen import run_load
from edgetenant.render.triton import SHIM_BACKEND, TritonModelSpec
from edgetenant.tuning.data import Signals
from edgetenant.tuning.loop import TuningTarget, apply_setting, render_from_spec, triton_load_model


@dataclass(frozen=True, slots=True)
class Change:
    at_s: float  # since the load started
    instances: tuple[int, int]  # from, to
    batching: tuple[bool, bool]
    load_s: float  # how long the load took (a scale-down waits for the removed instances to drain)
    error: str = ""


@dataclass
class Soak:
    model: str
    control: str
    clients: int
    interval_s: float
    changes: list[Change] = field(default_factory=list)
    load_average: list[float] = field(default_factory=list)  # 1-minute, sampled every interval


async def _no_signals(query: prometheus.SignalQuery, at: datetime) -> Signals:
    raise AssertionError("the soak applies settings; it reads no signals")


def next_setting(
    rnd: random.Random, current: int, batching: bool, count: int, args: argparse.Namespace
) -> tuple[int, bool]:
    instances = rnd.choice([n for n in range(1, args.max + 1) if n != current])
    flip = args.batching_every > 0 and count % args.batching_every == 0
    return instances, batching != flip


async def change_every_interval(
    target: TuningTarget, soak: Soak, args: argparse.Namespace, started: float, until: float
) -> None:
    rnd = random.Random(args.seed)
    instances, batching = 1, False
    next_at = started + args.interval
    while next_at + args.interval <= until:
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        soak.load_average.append(os.getloadavg()[0])
        wanted = next_setting(rnd, instances, batching, len(soak.changes) + 1, args)
        begin = time.monotonic()
        error = ""
        try:
            await apply_setting(target, *wanted)
        except EdgeTenantError as exc:
            error = str(exc)
        took = time.monotonic() - begin
        soak.changes.append(
            Change(
                round(begin - started, 1),
                (instances, wanted[0]),
                (batching, wanted[1]),
                round(took, 2),
                error,
            )
        )
        print(
            f"  {begin - started:6.1f}s  {instances}->{wanted[0]} instances"
            f"{'' if batching == wanted[1] else f', batching {batching}->{wanted[1]}'}: {took:.1f}s"
            f"{' ERROR ' + error if error else ''}",
            flush=True,
        )
        if not error:
            instances, batching = wanted
        next_at = max(next_at + args.interval, time.monotonic())


async def soak(triton: TritonProcess, spec: TritonModelSpec, args: argparse.Namespace) -> dict[str, Any]:
    control_url = triton.control_url if args.control == "grpc" else triton.url
    target = TuningTarget(
        model=spec.name,
        endpoints=(control_url,),
        render_config=render_from_spec(spec),
        query=prometheus.SignalQuery(model=spec.name),
        load_model=triton_load_model,  # the tuning loop's own apply path
        read_signals=_no_signals,
    )
    await apply_setting(target, 1, False)  # the first change from config.pbtxt is a full reload
    await run_load(triton.url, spec.name, concurrency=2, duration_s=3.0)  # warm ORT up
    record = Soak(spec.name, args.control, args.clients, args.interval)
    duration = args.minutes * 60.0
    started = time.monotonic()
    load = asyncio.create_task(
        run_load(triton.url, spec.name, concurrency=args.clients, duration_s=duration, timeout_s=args.timeout)
    )
    await change_every_interval(target, record, args, started, started + duration)
    result = await load
    loads = [c.load_s for c in record.changes]
    downs = [
        c.load_s for c in record.changes if c.instances[1] < c.instances[0] and c.batching[0] == c.batching[1]
    ]
    return {
        "command": " ".join(sys.argv),
        "model": spec.name,
        "control": args.control,
        "clients": args.clients,
        "interval_s": args.interval,
        "minutes": args.minutes,
        "request_timeout_s": args.timeout,
        "requests": result.requests,
        "failed_requests": result.errors,
        "failure_samples": list(result.error_samples),
        "throughput": round(result.throughput, 2),
        "p50_ms": round(result.p50_ms, 1),
        "p99_ms": round(result.p99_ms, 1),
        "max_ms": round(result.max_ms, 1),
        "changes": len(record.changes),
        "changes_failed": sum(1 for c in record.changes if c.error),
        "scale_ups": sum(1 for c in record.changes if c.instances[1] > c.instances[0]),
        "scale_downs": sum(1 for c in record.changes if c.instances[1] < c.instances[0]),
        "batching_flips": sum(1 for c in record.changes if c.batching[0] != c.batching[1]),
        "load_s_median": round(statistics.median(loads), 2) if loads else None,
        "load_s_max": max(loads, default=None),
        "scale_down_load_s_max": max(downs, default=None),
        "load_average_1m_mean": round(statistics.fmean(record.load_average), 2)
        if record.load_average
        else None,
        "load_average_1m_max": round(max(record.load_average, default=0.0), 2),
        "change_log": [asdict(c) for c in record.changes],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mobilenet_v2", choices=sorted(zoo.ZOO))
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument(
        "--interval", type=float, default=4.0, help="seconds between changes (the test tier's interval)"
    )
    p.add_argument(
        "--clients", type=int, default=6, help="closed-loop clients (6: above what 3 instances serve)"
    )
    p.add_argument("--max", type=int, default=3, help="highest instance count")
    p.add_argument(
        "--batching-every", type=int, default=5, help="flip dynamic batching every Nth change (0: never)"
    )
    p.add_argument("--control", choices=("grpc", "http"), default="grpc", help="model-control endpoint")
    p.add_argument(
        "--timeout", type=float, default=60.0, help="client-side request timeout (loadgen's default)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="write the result JSON here")
    p.add_argument("--keep-log", type=Path, help="copy Triton's log here")
    p.add_argument(
        "--log-verbose", type=int, default=0, help="Triton's --log-verbose (1: instance life cycle)"
    )
    args = p.parse_args()

    spec = TritonModelSpec(
        name=args.model, backend=SHIM_BACKEND, max_batch_size=8, instance_count=1, threads_per_instance=1
    )
    with tempfile.TemporaryDirectory(prefix="edgetenant-soak-") as tmp:
        repo = Path(tmp) / "repo"
        write_model(repo, spec, zoo.ensure_model(args.model))
        log = Path(tmp) / "tritonserver.log"
        with start_triton(
            repo,
            load_models=[spec.name],
            log_path=log,
            ready_timeout=120,
            extra_args=[f"--log-verbose={args.log_verbose}"],
        ) as triton:
            print(
                f"soak: {args.model}, {args.clients} clients, a change every {args.interval:g} s "
                f"for {args.minutes:g} min, model control over {args.control}",
                flush=True,
            )
            result = asyncio.run(soak(triton, spec, args))
        if args.keep_log:
            args.keep_log.write_bytes(log.read_bytes())
    summary = {k: v for k, v in result.items() if k != "change_log"}
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["failed_requests"] == 0 and result["changes_failed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
