"""The CME experiment on this machine: every zoo model, 1..8 model instances, on a real Triton.

Reproduces the concurrent-model-execution measurements of the research (throughput against the
number of concurrently executing instances) on this machine's CPU, with Triton's Python-backend
ONNX Runtime shim, one intra-op thread per instance (the CME-style setting), plus the
"1 instance x all cores" point for comparison. Writes results.json, RESULTS.md and PNG plots
beside this file. Compares each model's best throughput x FLOPs with a measured matrix-multiply
peak of the same cores (numpy/OpenBLAS and ONNX Runtime MatMul).

    .venv/bin/python hack/bench/cme/cme.py                  # everything (~15 min on 2 cores)
    .venv/bin/python hack/bench/cme/cme.py --models resnet18 --duration 5 --max-instances 4
    .venv/bin/python hack/bench/cme/cme.py --report-only    # re-render RESULTS.md from results.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgetenant import zoo
from edgetenant.adapters.triton import TritonAdapter
from edgetenant.dataplane import local, repository
from edgetenant.profiling.loadgen import LoadResult, run_load
from edgetenant.profiling.sweep import SweepPoint, settled_memory_mib
from edgetenant.render.triton import SHIM_BACKEND, TritonModelSpec

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import noise  # noqa: E402

# NB: before onnxruntime is first imported (lazily, below): ORT 1.32's Linux wheel posts telemetry to
# Microsoft without it (tests/conftest.py says more). The matmul child inherits it.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"


def matmul_peak_gflops(threads: int, *, size: int = 1024, seconds: float = 3.0) -> dict[str, float]:
    """Best sustained GFLOP/s of a float32 square matmul, numpy (OpenBLAS) and ONNX Runtime."""
    import onnxruntime as ort  # noqa: PLC0415
    from onnx import TensorProto, helper  # noqa: PLC0415

    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    flops = 2 * size**3

    def best_rate(run: Any) -> float:
        run()  # warm
        best, deadline = 0.0, time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            run()
            best = max(best, flops / (time.perf_counter() - start) / 1e9)
        return best

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "mm",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [size, size]) for n in ("a", "b")],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [size, size])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return {
        "numpy": best_rate(lambda: a @ b),
        "onnxruntime": best_rate(lambda: session.run(["c"], {"a": a, "b": b})),
    }


def measure_peaks(cores: int) -> dict[str, Any]:
    """Run the matmul peak in a child with the BLAS thread count pinned (it is read at import)."""
    code = (
        f"import json, sys; sys.path.insert(0, {str(HERE)!r}); from cme import matmul_peak_gflops; "
        f"print(json.dumps({{'1': matmul_peak_gflops(1), '{cores}': matmul_peak_gflops({cores})}}))"
    )
    env = os.environ | {"OMP_NUM_THREADS": str(cores), "OPENBLAS_NUM_THREADS": str(cores)}
    output = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    peaks: dict[str, Any] = json.loads(output)
    return peaks


GPU_PEAK_SCRIPT = """
import json, sys, time
import numpy as np, onnxruntime as ort
path, size = sys.argv[1], int(sys.argv[2])
session = ort.InferenceSession(path, providers=["CUDAExecutionProvider"])
assert session.get_providers()[0] == "CUDAExecutionProvider", session.get_providers()
host = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
a = ort.OrtValue.ortvalue_from_numpy(host, "cuda", 0)
binding = session.io_binding()
binding.bind_ortvalue_input("a", a)
binding.bind_ortvalue_input("b", a)
binding.bind_output("c", "cuda")
for _ in range(3):
    session.run_with_iobinding(binding)
runs, start = 50, time.perf_counter()
for _ in range(runs):
    session.run_with_iobinding(binding)
binding.synchronize_outputs()
print(json.dumps({"onnxruntime-cuda": runs * 2 * size**3 / (time.perf_counter() - start) / 1e9}))
"""


def measure_gpu_peak(env: local.DataplaneEnv, *, size: int = 8192) -> dict[str, Any]:
    """FP32 matmul GFLOP/s on GPU 0 through ONNX Runtime's CUDA provider (the data-plane env)."""
    from onnx import TensorProto, helper, save  # noqa: PLC0415

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "mm",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [size, size]) for n in ("a", "b")],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [size, size])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = Path(tempfile.mkdtemp()) / "matmul.onnx"
    save(model, path)
    output = subprocess.run(
        [str(env.python), "-c", GPU_PEAK_SCRIPT, str(path), str(size)],
        env=env.process_env(), capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    peaks: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return peaks


async def profile_model(
    name: str, triton: local.TritonProcess, args: argparse.Namespace, cores: int
) -> dict[str, Any]:
    """Measure every configuration ``args.rounds`` times, interleaved, and keep the medians.

    The machine is shared, so its free CPU changes from minute to minute. Sweeping 1..8 once
    would confound instance count with time; visiting every configuration once per round
    (ascending, then descending) spreads the other tenants' load over all of them alike.
    """
    served = f"cme-{name.replace('_', '-')}"
    parameters = (("execution_provider", args.provider),) if args.provider else ()
    base = TritonModelSpec(
        name=served,
        backend=SHIM_BACKEND,
        max_batch_size=0,
        instance_kind=args.instance_kind,
        parameters=parameters,
    )
    repository.write_model(triton.model_repository, base, zoo.ensure_model(name))
    configs = [(n, 1) for n in range(1, args.max_instances + 1)]
    if not args.gpu:  # threads per instance mean nothing on a GPU
        configs.append((1, cores))
    results: dict[tuple[int, int], list[LoadResult]] = {config: [] for config in configs}
    memory: dict[tuple[int, int], float] = {}
    loads: list[float] = []
    baseline = await settled_memory_mib(triton.pid)
    async with TritonAdapter(triton.url) as admin:
        for round_index in range(args.rounds):
            order = configs if round_index % 2 == 0 else configs[::-1]
            for instances, threads in order:
                spec = replace(base, instance_count=instances, threads_per_instance=threads)
                await admin.apply_spec(spec)
                result = await run_load(
                    triton.url,
                    served,
                    concurrency=max(2, 2 * instances),
                    duration_s=args.duration,
                    warmup_s=args.warmup,
                )
                results[(instances, threads)].append(result)
                loads.append(os.getloadavg()[0])  # how busy the shared machine was
                if (instances, threads) not in memory:
                    memory[(instances, threads)] = max(0.0, await settled_memory_mib(triton.pid) - baseline)
                print(
                    f"  {name} round {round_index + 1}: {instances} inst x {threads} thr -> "
                    f"{result.throughput:6.1f}/s p95 {result.p95_ms:7.1f} ms errors {result.errors} "
                    f"(load avg {loads[-1]:.1f})",
                    flush=True,
                )
        await admin.unload_model(served)

    def point(config: tuple[int, int]) -> dict[str, Any]:
        runs = results[config]
        return asdict(
            SweepPoint(
                instances=config[0],
                threads_per_instance=config[1],
                batching=False,
                clients=max(2, 2 * config[0]),
                batch_size=1,
                throughput=statistics.median(r.throughput for r in runs),
                p50_ms=statistics.median(r.p50_ms for r in runs),
                p95_ms=statistics.median(r.p95_ms for r in runs),
                p99_ms=statistics.median(r.p99_ms for r in runs),
                requests=sum(r.requests for r in runs),
                errors=sum(r.errors for r in runs),
                memory_mib=memory[config],
                load_s=0.0,
                measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(runs[-1].finished_at)),
            )
        )

    cme = {"points": [point((n, 1)) for n in range(1, args.max_instances + 1)]}
    all_cores = {"points": [point((1, cores))]} if not args.gpu else cme
    rounds = {f"{n}x{t}": [round(r.throughput, 2) for r in results[(n, t)]] for n, t in configs}
    return {"cme": cme, "all_cores": all_cores, "rounds": rounds, "loadavg": loads}


def _points(raw: dict[str, Any]) -> list[SweepPoint]:
    return [SweepPoint(**p) for p in raw["points"]]


def render_report(results: dict[str, Any], *, suffix: str = "") -> str:
    """RESULTS.md text from results.json."""
    peaks = results["peaks"]
    cores = results["machine"]["cores"]
    peak_all = max(peaks[str(cores)].values())
    if "gpu" in peaks:  # the GPU run compares with the GPU's own matmul peak
        peak_all = peaks["gpu"]["onnxruntime-cuda"]
    peak_one = max(peaks["1"].values())
    lines = [
        "# Concurrent model execution (CME) on this machine's CPU",
        "",
        "Generated by `hack/bench/cme/cme.py` from `results.json`; do not edit by hand.",
        "",
        f"- Machine: {results['machine']['cpu']}, **{cores} cores** visible, "
        f"{results['machine']['memory_gib']:.0f} GiB; Python {results['machine']['python']}.",
        f"- Measured: {results['measured_at']} (load average at start {results['machine']['loadavg']}, "
        f"at end {results['machine'].get('loadavg_end', '?')}).",
        "- Server: tritonserver 2.51 (nvidia-pytriton 0.7.0 wheel), ONNX Runtime "
        f"{results['runtime']['onnxruntime']} in Triton's Python backend (edgetenant's shim), "
        "`KIND_CPU` instances, no batching (`max_batch_size: 0`), batch 1 per request.",
        f"- Load: closed loop, 2 clients per instance, {results['settings']['warmup']:g} s warm-up + "
        f"{results['settings']['duration']:g} s measured per point; every configuration measured "
        f"{results['settings'].get('rounds', 1)} times, interleaved (ascending, then descending), "
        "medians reported; the load generator runs on the same cores as the server.",
        (
            f"- Largest spread of any point's rounds: {results['max_spread']:.0%} "
            f"(published at most {noise.MAX_SPREAD:.0%} unless --force"
            + ("; this run was forced: **noisy**)." if results.get("noisy") else ").")
            if "max_spread" in results  # runs before the spread rule have none
            else "- Spread: not checked (measured before hack/bench/noise.py)."
        ),
        f"- Matrix-multiply peak of these cores (float32 1024x1024, best of a run before and after "
        f"the sweep): {peak_all:.1f} GFLOP/s with "
        f"{cores} threads, {peak_one:.1f} GFLOP/s with 1 "
        f"(numpy/OpenBLAS {peaks[str(cores)]['numpy']:.1f}, "
        f"ONNX Runtime {peaks[str(cores)]['onnxruntime']:.1f}).",
        "",
        "## Summary",
        "",
        f"| model | GFLOPs/inference | 1 instance (1 thread) | best | best instances | gain over 1 | "
        f"1 instance x {cores} threads | p95 at best | best x FLOPs | of matmul peak |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, entry in results["models"].items():
        cme = _points(entry["cme"])
        one = cme[0]
        best = max(cme, key=lambda p: p.throughput)
        wide = _points(entry["all_cores"])[0]
        gflops = entry["flops"] / 1e9
        achieved = best.throughput * gflops
        lines.append(
            f"| {name} | {gflops:.2f} | {one.throughput:.1f}/s | {best.throughput:.1f}/s "
            f"| {best.instances} | "
            f"{best.throughput / one.throughput:.2f}x | {wide.throughput:.1f}/s | {best.p95_ms:.0f} ms | "
            f"{achieved:.1f} GFLOP/s | {achieved / peak_all:.0%} |"
        )
    lines += [
        "",
        f"![throughput vs instances](cme{suffix}-throughput.png)",
        "",
        f"![p95 latency vs instances](cme{suffix}-latency.png)",
        "",
        "## Throughput (inferences/s) per instance count, 1 thread per instance: "
        "median (min–max of the rounds)",
        "",
        "| model | " + " | ".join(str(i) for i in range(1, results["settings"]["max_instances"] + 1)) + " |",
        "|---|" + "---:|" * results["settings"]["max_instances"],
    ]
    for name, entry in results["models"].items():
        rounds = entry.get("rounds", {})
        cells = []
        for p in _points(entry["cme"]):
            runs = rounds.get(f"{p.instances}x1", [])
            spread = f" ({min(runs):.1f}–{max(runs):.1f})" if len(runs) > 1 else ""
            cells.append(f"{p.throughput:.1f}{spread}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Load average of the shared machine during each model's sweep (1-minute, min / median / max)",
        "",
        "| model | min | median | max |",
        "|---|---:|---:|---:|",
    ]
    for name, entry in results["models"].items():
        loads = entry.get("loadavg") or [math.nan]
        lines.append(f"| {name} | {min(loads):.1f} | {statistics.median(loads):.1f} | {max(loads):.1f} |")
    lines += [
        "",
        "## Memory (PSS of tritonserver + its Python-backend stubs over the no-model baseline, MiB)",
        "",
        "| model | " + " | ".join(str(i) for i in range(1, results["settings"]["max_instances"] + 1)) + " |",
        "|---|" + "---:|" * results["settings"]["max_instances"],
    ]
    for name, entry in results["models"].items():
        cells = [f"{p.memory_mib:.0f}" if p.memory_mib is not None else "-" for p in _points(entry["cme"])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", results.get("discussion", ""), ""]
    return "\n".join(lines)


def plot(results: dict[str, Any], *, suffix: str = "") -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    from matplotlib.ticker import MaxNLocator  # noqa: PLC0415

    for metric, ylabel, filename in [
        ("throughput", "throughput relative to 1 instance", f"cme{suffix}-throughput.png"),
        ("p95_ms", "p95 latency (ms)", f"cme{suffix}-latency.png"),
    ]:
        figure, axis = plt.subplots(figsize=(7, 4.2), dpi=110)
        for index, (name, entry) in enumerate(results["models"].items()):
            points = _points(entry["cme"])
            xs = [p.instances for p in points]
            values = [getattr(p, metric) for p in points]
            if metric == "throughput":
                values = [v / values[0] for v in values]
            axis.plot(xs, values, "o-", color=f"C{index}", label=name)
        gpu = "gpu" in results["peaks"]
        if metric == "throughput":
            axis.axhline(1, color="black", linewidth=0.5)
            if not gpu:
                cores = results["machine"]["cores"]
                axis.axhline(cores, color="grey", linestyle=":", label=f"{cores} cores (ideal bound)")
        else:
            axis.set_yscale("log")
        device = "one GPU" if gpu else f"{results['machine']['cores']} CPU cores"
        axis.set_xlabel("model instances executing concurrently" + ("" if gpu else " (1 ORT thread each)"))
        axis.set_ylabel(ylabel)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_title(f"CME on {device}, Triton + ONNX Runtime")
        axis.legend(fontsize=7)
        figure.tight_layout()
        figure.savefig(HERE / filename)
        plt.close(figure)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    info = noise.machine()
    cores = info["cores"]
    env = local.find_dataplane_env()
    print(f"measuring the matmul peak of {cores} cores ...", flush=True)
    peaks = measure_peaks(cores)
    if args.gpu:
        peaks["gpu"] = measure_gpu_peak(env)
    print(f"  {peaks}", flush=True)
    ort_version = subprocess.run(  # noqa: ASYNC221 - once, before any load runs
        [str(env.python), "-c", "import onnxruntime; print(onnxruntime.__version__)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    results: dict[str, Any] = {
        "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": info,
        "runtime": {"onnxruntime": ort_version, "triton": "2.51.0"},
        "settings": {
            "duration": args.duration,
            "warmup": args.warmup,
            "max_instances": args.max_instances,
            "rounds": args.rounds,
            "instance_kind": args.instance_kind,
            "provider": args.provider or ("cuda" if args.gpu else "cpu"),
        },
        "peaks": peaks,
        "models": {},
    }
    workdir = Path(tempfile.mkdtemp(prefix="edgetenant-cme-"))
    (workdir / "models").mkdir()
    with local.start_triton(workdir / "models", log_path=workdir / "tritonserver.log") as triton:
        for name in args.models:
            print(f"{name}: sweeping 1..{args.max_instances} instances", flush=True)
            entry = await profile_model(name, triton, args, cores)
            entry["flops"] = zoo.model_info(name).flops
            results["models"][name] = entry
            (HERE / f"results{args.suffix}.json").write_text(json.dumps(results, indent=2))  # partial too
    # The machine is shared: measure the peak again at the end and keep the better of the two.
    end_peaks = measure_peaks(cores)
    for threads, by_library in end_peaks.items():
        for library, value in by_library.items():
            peaks[threads][library] = max(peaks[threads][library], value)
    results["peaks"] = peaks
    results["machine"]["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=list(zoo.ZOO), choices=list(zoo.ZOO))
    parser.add_argument("--max-instances", type=int, default=8)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions; medians reported")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--gpu", action="store_true", help="KIND_GPU instances on ORT's CUDA provider")
    parser.add_argument("--instance-kind", help="default KIND_CPU, or KIND_GPU with --gpu")
    parser.add_argument("--provider", choices=["cpu", "cuda"], help="force the shim's ORT provider")
    noise.add_arguments(parser)
    args = parser.parse_args()
    args.instance_kind = args.instance_kind or ("KIND_GPU" if args.gpu else "KIND_CPU")
    args.suffix = "-gpu" if args.gpu else ""
    results_path = HERE / f"results{args.suffix}.json"
    if args.report_only:
        results = json.loads(results_path.read_text())
    else:
        if noise.too_busy(args):
            return noise.EXIT_BUSY
        results = asyncio.run(run(args))
        spreads = {
            f"{name} {config}": noise.spread(runs)
            for name, entry in results["models"].items()
            for config, runs in entry["rounds"].items()
        }
        if noise.reject(results, spreads, args, HERE / f"results{args.suffix}.rejected.json"):
            return noise.EXIT_NOISY
    discussion = HERE / f"discussion{args.suffix}.md"
    results["discussion"] = discussion.read_text() if discussion.is_file() else ""
    plot(results, suffix=args.suffix)
    report = HERE / f"RESULTS{args.suffix.upper()}.md"
    report.write_text(render_report(results, suffix=args.suffix))
    print(f"wrote {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
