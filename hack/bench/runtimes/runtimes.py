"""The CME experiment per runtime: ONNX Runtime, OpenVINO and TFLite, side by side on this CPU.

One Triton serves the same zoo model three ways, each through its Python-backend shim: the zoo's
ONNX on ONNX Runtime, its OpenVINO IR (``openvino.convert_model``, FP32) on OpenVINO's CPU device
(the lab's stand-in for the NCS2) and its TFLite export (onnx2tf, float32) on tflite-runtime's CPU
path (the stand-in for the Coral; no EdgeTPU). Each runtime is first checked against ONNX
Runtime in this process (max abs difference of the logits served for the same 2 images), then every
(runtime, instance count) configuration is measured once per round, all of them interleaved in one
order (ascending, then descending the next round), so the shared machine's changing load falls on
every runtime alike; the 1-minute load average is recorded at each point. Medians are reported, with
the rounds' spread; as every comparison benchmark here (``hack/bench/noise.py``), it starts only on
a quiet machine and does not publish a run whose rounds disagree by more than 15 %.

Settings as in ``hack/bench/cme``: 1 thread per instance (the CME-style setting), no batching
(``max_batch_size: 0``), batch 1 per request, closed loop with 2 clients per instance. Writes
results.json and RESULTS.md beside this file.

    .venv/bin/python hack/bench/runtimes/runtimes.py                   # mobilenet_v2, 1..4 instances
    .venv/bin/python hack/bench/runtimes/runtimes.py --report-only     # re-render RESULTS.md
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edgetenant import zoo
from edgetenant.adapters.triton import TritonAdapter
from edgetenant.dataplane import local, repository
from edgetenant.profiling.loadgen import LoadResult, run_load
from edgetenant.render.triton import SHIM_BACKEND, TritonModelSpec
from edgetenant.zoo import export

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import noise  # noqa: E402

# NB: set before onnxruntime is first imported (only in reference()): ORT 1.32 phones home without it
# (tests/conftest.py says more).
os.environ["ORT_DISABLE_TELEMETRY"] = "1"

# runtime -> (zoo format, extra shim parameters, what it stands in for)
RUNTIMES: dict[str, tuple[str, tuple[tuple[str, str], ...], str]] = {
    "onnxruntime": ("onnx", (), "x86 CPU class (production: the native onnxruntime backend)"),
    "openvino": (
        "openvino",
        (("openvino_device", "CPU"), ("INFERENCE_PRECISION_HINT", "f32")),
        "Intel NCS2 (MYRIAD needs OpenVINO 2022.3 LTS; here the CPU device)",
    ),
    "tflite": ("tflite", (("edgetpu", "auto"),), "Coral EdgeTPU (no libedgetpu here: the CPU path)"),
}
DATAPLANE_VERSIONS = (
    "import importlib.metadata as m, json; "
    "print(json.dumps({p: m.version(p) for p in ('onnxruntime', 'openvino', 'tflite-runtime', 'numpy')}))"
)


def reference(name: str, images: np.ndarray) -> np.ndarray:
    import onnxruntime as ort  # noqa: PLC0415

    session = ort.InferenceSession(str(zoo.ensure_model(name)), providers=["CPUExecutionProvider"])
    (logits,) = session.run([zoo.OUTPUT_NAME], {zoo.INPUT_NAME: images})
    return np.asarray(logits)


async def served_logits(triton: local.TritonProcess, model: str, images: np.ndarray) -> np.ndarray:
    import tritonclient.http.aio as triton_http  # noqa: PLC0415

    async with triton_http.InferenceServerClient(triton.http_endpoint) as client:
        request = triton_http.InferInput(zoo.INPUT_NAME, list(images.shape), "FP32")
        request.set_data_from_numpy(images)
        response = await client.infer(model, [request])
    return np.asarray(response.as_numpy(zoo.OUTPUT_NAME))


def prepare(name: str, triton: local.TritonProcess, runtimes: list[str]) -> dict[str, Any]:
    """Write every runtime's model; those whose export cannot be made here are left out, with why."""
    specs: dict[str, TritonModelSpec] = {}
    skipped: dict[str, str] = {}
    for runtime in runtimes:
        model_format, parameters, _ = RUNTIMES[runtime]
        try:
            path = zoo.ensure_model(name, format=model_format)
        except export.ConverterUnavailable as exc:
            skipped[runtime] = str(exc)
            continue
        spec = TritonModelSpec(
            name=f"{runtime}-{name.replace('_', '-')}",
            format=model_format,
            backend=SHIM_BACKEND,
            max_batch_size=0,
            parameters=parameters,
        )
        repository.write_model(triton.model_repository, spec, path)
        specs[runtime] = spec
    return {"specs": specs, "skipped": skipped}


async def check(name: str, triton: local.TritonProcess, specs: dict[str, TritonModelSpec]) -> dict[str, Any]:
    """Max abs difference of each runtime's served logits from ONNX Runtime's, 2 images."""
    shape = zoo.model_info(name).input_shape
    images = np.random.default_rng(7).standard_normal((2, *shape), dtype=np.float32)
    expected = reference(name, images)
    scale = float(np.abs(expected).max())
    out: dict[str, Any] = {"reference_max_abs_logit": scale}
    async with TritonAdapter(triton.url) as admin:
        for runtime, spec in specs.items():
            await admin.apply_spec(replace(spec, instance_count=1, threads_per_instance=1))
            logits = np.concatenate([await served_logits(triton, spec.name, image[None]) for image in images])
            out[runtime] = float(np.abs(logits - expected).max())
    return out


async def sweep(
    name: str, triton: local.TritonProcess, specs: dict[str, TritonModelSpec], args: argparse.Namespace
) -> dict[str, Any]:
    configs = [(runtime, n) for n in range(1, args.max_instances + 1) for runtime in specs]
    results: dict[tuple[str, int], list[LoadResult]] = {config: [] for config in configs}
    loads: dict[tuple[str, int], list[float]] = {config: [] for config in configs}
    async with TritonAdapter(triton.url) as admin:
        for round_index, (runtime, instances) in noise.interleaved(configs, args.rounds):
            spec = replace(specs[runtime], instance_count=instances, threads_per_instance=1)
            await admin.apply_spec(spec)
            result = await run_load(
                triton.url,
                spec.name,
                concurrency=2 * instances,
                duration_s=args.duration,
                warmup_s=args.warmup,
            )
            results[(runtime, instances)].append(result)
            load = noise.load1()
            loads[(runtime, instances)].append(load)
            print(
                f"  round {round_index + 1}: {runtime:11} {instances} inst -> {result.throughput:6.1f}/s "
                f"p95 {result.p95_ms:6.1f} ms errors {result.errors} (load avg {load:.2f})",
                flush=True,
            )
        for spec in specs.values():
            await admin.unload_model(spec.name)
    points: dict[str, list[dict[str, Any]]] = {runtime: [] for runtime in specs}
    for runtime, instances in configs:
        runs = results[(runtime, instances)]
        points[runtime].append(
            {
                "instances": instances,
                "throughput": statistics.median(r.throughput for r in runs),
                "p50_ms": statistics.median(r.p50_ms for r in runs),
                "p95_ms": statistics.median(r.p95_ms for r in runs),
                "rounds": [round(r.throughput, 2) for r in runs],
                "errors": sum(r.errors for r in runs),
                "loadavg": [round(x, 2) for x in loads[(runtime, instances)]],
            }
        )
    return points


async def run(args: argparse.Namespace) -> dict[str, Any]:
    info = noise.machine()
    env = local.find_dataplane_env()
    versions = json.loads(
        subprocess.run(  # noqa: ASYNC221 - once, before any load runs
            [str(env.python), "-c", DATAPLANE_VERSIONS],
            capture_output=True,
            text=True,
            check=True,
            env=env.process_env(),
        ).stdout
    )
    results: dict[str, Any] = {
        "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": info,
        "runtime": versions,
        "settings": vars(args) | {"runtimes": args.runtimes},
        "models": {},
    }
    workdir = Path(tempfile.mkdtemp(prefix="edgetenant-runtimes-"))
    (workdir / "models").mkdir()
    with local.start_triton(
        workdir / "models", log_path=workdir / "tritonserver.log", dataplane=env
    ) as triton:
        for name in args.models:
            prepared = prepare(name, triton, args.runtimes)
            print(f"{name}: skipped {prepared['skipped'] or 'nothing'}", flush=True)
            accuracy = await check(name, triton, prepared["specs"])
            print(f"{name}: max abs diff from ONNX Runtime {accuracy}", flush=True)
            results["models"][name] = {
                "skipped": prepared["skipped"],
                "accuracy": accuracy,
                "points": await sweep(name, triton, prepared["specs"], args),
                "flops": zoo.model_info(name).flops,
            }
        log = triton.process.log_tail(400_000)
    results["devices"] = shim_lines(log)
    results["machine"]["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return results


def shim_lines(log: str) -> list[str]:
    """The first line each shim logged about what it runs on, without Triton's prefix, paths or pids."""
    found: dict[str, str] = {}
    for line in log.splitlines():
        match = re.search(r'"(edgetenant (\w+) shim: .*)"$', line)
        if not match or match.group(2) in found or not re.search(r"runs on|loaded|EdgeTPU", line):
            continue
        text = re.sub(r"(;? model|,? loaded) /\S+", "", match.group(1))
        found[match.group(2)] = re.sub(r",? pid \d+", "", text)
    return list(found.values())


def render_report(results: dict[str, Any]) -> str:
    machine_info, settings = results["machine"], results["settings"]
    versions = results["runtime"]
    lines = [
        "# CME per runtime on this machine's CPU: ONNX Runtime vs OpenVINO vs TFLite",
        "",
        "Generated by `hack/bench/runtimes/runtimes.py` from `results.json`; do not edit by hand.",
        "",
        f"- Machine: {machine_info['cpu']}, **{machine_info['cores']} cores** visible, shared; "
        f"load average at start {machine_info['loadavg']}, at end {machine_info.get('loadavg_end', '?')}.",
        f"- Measured: {results['measured_at']}. One tritonserver 2.51, every runtime in Triton's Python "
        f"backend through edgetenant's shim: ONNX Runtime {versions['onnxruntime']}, OpenVINO "
        f"{versions['openvino']} (CPU device, FP32), tflite-runtime {versions['tflite-runtime']} "
        "(CPU; no EdgeTPU).",
        "- None of this ran on an accelerator: the OpenVINO and TFLite rows are the CPU stand-ins for "
        "the NCS2 and the Coral, not those devices.",
        f"- Load: closed loop, 2 clients per instance, {settings['warmup']:g} s warm-up + "
        f"{settings['duration']:g} s measured per point, 1 thread per instance, batch 1, no batching; every "
        f"(runtime, instances) point measured {settings['rounds']} times, all interleaved in one order "
        "(ascending, then descending), medians reported; the load generator shares the cores.",
        (
            f"- Largest spread of any point's rounds: {results['max_spread']:.0%} "
            f"(published at most {noise.MAX_SPREAD:.0%} unless --force"
            + ("; this run was forced: **noisy**)." if results.get("noisy") else ").")
            if "max_spread" in results  # runs before the spread rule have none
            else "- Spread: not checked (measured before hack/bench/noise.py)."
        ),
        "",
    ]
    for name, entry in results["models"].items():
        gflops = entry["flops"] / 1e9
        runtimes = list(entry["points"])
        accuracy = entry["accuracy"]
        lines += [
            f"## {name} ({gflops:.2f} GFLOPs per inference)",
            "",
            "Served logits against ONNX Runtime on the zoo's ONNX (2 images; largest reference logit "
            f"{accuracy['reference_max_abs_logit']:.2f}): "
            + ", ".join(f"{r} max abs diff {accuracy[r]:.1e}" for r in runtimes)
            + ".",
            "",
            "| runtime | "
            + " | ".join(f"{n} inst" for n in range(1, settings["max_instances"] + 1))
            + " | best x FLOPs | p95 at 1 inst | load avg (min–max) |",
            "|---|" + "---:|" * (settings["max_instances"] + 3),
        ]
        for runtime in runtimes:
            points = entry["points"][runtime]
            cells = [
                f"{p['throughput']:.1f}/s ({min(p['rounds']):.1f}–{max(p['rounds']):.1f})" for p in points
            ]
            best = max(p["throughput"] for p in points)
            loads = [x for p in points for x in p["loadavg"]]
            lines.append(
                f"| {runtime} | "
                + " | ".join(cells)
                + f" | {best * gflops:.1f} GFLOP/s | {points[0]['p95_ms']:.0f} ms"
                + f" | {min(loads):.2f}–{max(loads):.2f} |"
            )
        if entry["skipped"]:
            lines += ["", "Skipped: " + "; ".join(f"{r}: {why}" for r, why in entry["skipped"].items())]
        lines.append("")
    lines += ["What each shim said it runs on (Triton's log):", ""]
    lines += [f"- `{line}`" for line in results.get("devices", [])]
    lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["mobilenet_v2"], choices=list(zoo.ZOO))
    parser.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=list(RUNTIMES))
    parser.add_argument("--max-instances", type=int, default=4)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions; medians reported")
    parser.add_argument("--report-only", action="store_true")
    noise.add_arguments(parser)
    args = parser.parse_args()
    if args.report_only:
        results = json.loads((HERE / "results.json").read_text())
    else:
        if noise.too_busy(args):
            return noise.EXIT_BUSY
        results = asyncio.run(run(args))
        spreads = {
            f"{name} {point['instances']} inst {runtime}": noise.spread(point["rounds"])
            for name, entry in results["models"].items()
            for runtime, points in entry["points"].items()
            for point in points
        }
        if noise.reject(results, spreads, args, HERE / "results.rejected.json"):
            return noise.EXIT_NOISY
        (HERE / "results.json").write_text(json.dumps(results, indent=2))
    report = HERE / "RESULTS.md"
    report.write_text(render_report(results))
    print(f"wrote {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
