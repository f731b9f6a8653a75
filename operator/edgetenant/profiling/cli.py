"""`edgetenant profile`: sweep a model's concurrency on a real Triton, write a ModelProfile and a plot.

Without ``--triton`` a local tritonserver (the data-plane env) is started on loopback with
the model on the ONNX Runtime Python-backend shim, and stopped afterwards; with ``--triton``
the named model must already be in that server's repository.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from edgetenant import zoo
from edgetenant.cli import bounded
from edgetenant.dataplane import local, repository
from edgetenant.profiling.sweep import SweepPoint, SweepResult, build_model_profile, plot_sweep, sweep
from edgetenant.render.triton import NATIVE_BACKENDS, SHIM_BACKEND, TritonModelSpec


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgetenant profile", description=__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model-file", type=Path, metavar="FILE", help="an ONNX model file")
    source.add_argument("--zoo", choices=sorted(zoo.ZOO), help="a zoo model (built if needed)")
    source.add_argument("--model", help="with --triton: a model already in that server's repository")
    parser.add_argument("--name", help="served model name (default: from the file or zoo name)")
    parser.add_argument(
        "--triton", metavar="URL", help="use this Triton (http://host:port) instead of starting one"
    )
    parser.add_argument(
        "--server-pid",
        type=bounded(int, 1, 2**22),
        metavar="PID",
        help="with --triton: its PID, to measure memory",
    )
    parser.add_argument("--backend", default=SHIM_BACKEND, help="Triton backend (default: the python shim)")
    parser.add_argument(
        "--max-instances",
        type=bounded(int, 1, 64),
        default=8,
        metavar="N",
        help="sweep 1..N instances (default 8)",
    )
    parser.add_argument(
        "--threads",
        type=bounded(int, 1, 256),
        nargs="+",
        default=[1],
        metavar="N",
        help="threads per instance to try (default 1)",
    )
    parser.add_argument(
        "--batching", choices=["off", "on", "both"], default="off", help="dynamic batching (default off)"
    )
    parser.add_argument(
        "--max-batch-size",
        type=bounded(int, 0, 1024),
        default=8,
        metavar="N",
        help="the model's max_batch_size (default 8)",
    )
    parser.add_argument(
        "--duration",
        type=bounded(float, 0.5, 3600, " s"),
        default=10.0,
        metavar="S",
        help="seconds measured per point (default 10)",
    )
    parser.add_argument(
        "--warmup",
        type=bounded(float, 0, 600, " s"),
        default=2.0,
        metavar="S",
        help="seconds of warm-up per point (default 2)",
    )
    parser.add_argument(
        "--clients-per-instance",
        type=bounded(int, 1, 256),
        default=2,
        metavar="N",
        help="closed-loop clients per instance (default 2)",
    )
    parser.add_argument("--no-early-stop", action="store_true", help="sweep every count even past a fall")
    parser.add_argument(
        "--accelerator-class", default="cpu", help="the AcceleratorClass the profile is for (default cpu)"
    )
    parser.add_argument("--namespace", help="namespace of the ModelProfile written (default: none)")
    parser.add_argument("--out", type=Path, default=Path("."), help="directory for YAML, JSON and PNG")
    return parser


def _print_point(console: Console, point: SweepPoint) -> None:
    memory = f"{point.memory_mib:.0f} MiB" if point.memory_mib is not None else "-"
    console.print(
        f"  instances {point.instances} (threads {point.threads_per_instance or 'default'}, "
        f"batching {'on' if point.batching else 'off'}, {point.clients} clients): "
        f"{point.throughput:7.1f}/s  p95 {point.p95_ms:7.1f} ms  +{memory}  errors {point.errors}"
    )


async def _profile(args: argparse.Namespace, console: Console) -> SweepResult:
    if args.triton:
        if not args.model and not args.name:
            raise SystemExit("--triton needs --model (or --name): the model must be in its repository")
        name = args.model or args.name
        spec = TritonModelSpec(name=name, backend=args.backend, max_batch_size=args.max_batch_size)
        return await _sweep(args, console, args.triton, spec, args.server_pid)
    if args.model:
        raise SystemExit("--model needs --triton; use --model-file or --zoo to profile on a local Triton")
    model_file = zoo.ensure_model(args.zoo) if args.zoo else args.model_file
    name = args.name or (args.zoo or model_file.stem).replace("_", "-")
    spec = TritonModelSpec(name=name, backend=args.backend, max_batch_size=args.max_batch_size)
    workdir = Path(tempfile.mkdtemp(prefix="edgetenant-profile-"))
    repository.write_model(workdir / "models", spec, model_file)
    console.print(f"starting a local tritonserver (log {workdir / 'tritonserver.log'})")
    with local.start_triton(workdir / "models", log_path=workdir / "tritonserver.log") as triton:
        console.print(f"tritonserver pid {triton.pid} at {triton.url}")
        return await _sweep(args, console, triton.url, spec, triton.pid)


async def _sweep(
    args: argparse.Namespace, console: Console, url: str, spec: TritonModelSpec, pid: int | None
) -> SweepResult:
    batching = {"off": [False], "on": [True], "both": [False, True]}[args.batching]
    console.print(f"sweeping {spec.name} on {url}: 1..{args.max_instances} instances")
    return await sweep(
        url,
        spec,
        max_instances=args.max_instances,
        threads=args.threads,
        batching=batching,
        duration_s=args.duration,
        warmup_s=args.warmup,
        clients_per_instance=args.clients_per_instance,
        server_pid=pid,
        drop_ratio=None if args.no_early_stop else 0.8,
        on_point=lambda point: _print_point(console, point),
    )


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    console = Console(stderr=True)
    if args.backend != SHIM_BACKEND and args.backend not in NATIVE_BACKENDS.values():
        console.print(f"unknown backend {args.backend!r}")
        return 2
    result = asyncio.run(_profile(args, console))
    if not result.points:
        console.print(f"no point could be measured: {result.ceiling_reason}")
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    profile = build_model_profile(result, accelerator_class=args.accelerator_class, namespace=args.namespace)
    stem = args.out / f"{result.model}-{args.accelerator_class}"
    profile_path = stem.with_name(stem.name + "-profile.yaml")
    profile_path.write_text(yaml.safe_dump(profile, sort_keys=False))
    stem.with_name(stem.name + "-sweep.json").write_text(json.dumps(result.as_dict(), indent=2))
    plot = plot_sweep(result, stem.with_name(stem.name + "-profile.png"))
    table = Table("instances", "threads", "batching", "inferences/s", "p95 ms", "memory MiB")
    for point in result.points:
        table.add_row(
            str(point.instances),
            str(point.threads_per_instance or "default"),
            "on" if point.batching else "off",
            f"{point.throughput:.1f}",
            f"{point.p95_ms:.1f}",
            f"{point.memory_mib:.0f}" if point.memory_mib is not None else "-",
        )
    console.print(table)
    best = result.best()
    console.print(
        f"best: {best.instances} instances ({best.throughput:.1f}/s); ceiling {result.ceiling or '-'} "
        f"({result.ceiling_reason})"
    )
    print(profile_path)
    print(plot)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
